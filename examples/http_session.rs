//! An HTTP client session as a context, like `httpx.AsyncClient` in Python's async tutorials
//! (`async with httpx.AsyncClient() as client: r = await client.get(url)`).
//!
//! The example starts a tiny HTTP/1.1 server on 127.0.0.1 (a port the OS picks) and stops it at
//! the end. The server runs on plain threads, so that it counts connections independently of the
//! client and of the runtime. `HttpClient` connects on enter and sends keep-alive requests on one
//! connection; on exit it closes the connection gracefully: it shuts down its side, then waits
//! until the server has closed too, which only an async exit can do. After every scope the
//! server must count no open connection, also after a body that failed half-way.
//!
//! The client is written once over `futures::io` and runs on smol and on async-std.
//!
//! Run with `cargo run --example http_session`.

use std::error::Error;
use std::io::{self, BufRead, BufReader as StdBufReader, Write};
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use async_with::{AsyncContext, Outcome, with};
use futures::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

fn say(who: &str, what: impl std::fmt::Display) {
    println!("  {who:<8} {what}");
}

// ---------------------------------------------------------------------------------------------
// The client: the context.

/// A runtime's TCP stream. smol's and async-std's both implement the `futures::io` traits, and
/// have the same `connect` and `shutdown`, but no trait for them.
pub trait Tcp: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self>> + Send;
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Tcp for smol::net::TcpStream {
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self>> + Send {
        smol::net::TcpStream::connect(addr)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        smol::net::TcpStream::shutdown(self, how)
    }
}

impl Tcp for async_std::net::TcpStream {
    fn connect(addr: SocketAddr) -> impl Future<Output = io::Result<Self>> + Send {
        async_std::net::TcpStream::connect(addr)
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        async_std::net::TcpStream::shutdown(self, how)
    }
}

/// `httpx.AsyncClient(base_url=...)`: the configuration, entered by `with`.
struct HttpClient<S> {
    name: &'static str,
    addr: SocketAddr,
    stream: PhantomData<fn() -> S>,
}

fn client<S>(name: &'static str, addr: SocketAddr) -> HttpClient<S> {
    HttpClient { name, addr, stream: PhantomData }
}

/// What the body borrows: one open keep-alive connection.
struct Session<S> {
    conn: BufReader<S>,
    requests: usize,
}

impl<S: Tcp> AsyncContext for HttpClient<S> {
    type Value = Session<S>;
    type Error = io::Error;

    async fn enter(&mut self) -> io::Result<Session<S>> {
        let stream = S::connect(self.addr).await?;
        say(self.name, format!("connected to {}", self.addr));
        Ok(Session { conn: BufReader::new(stream), requests: 0 })
    }

    async fn exit(self, session: Session<S>, outcome: Outcome<'_, io::Error>) -> io::Result<()> {
        let mut stream = session.conn.into_inner();
        // Shut down our side, so that the server reads end-of-stream. (`close()` would not do:
        // async-std's only flushes.)
        stream.flush().await?;
        stream.shutdown(Shutdown::Write)?;
        // Wait for the server's end-of-stream, discarding what the body left unread: once it
        // arrives, the server has closed its side too and nothing of the connection is left.
        stream.read_to_end(&mut Vec::new()).await?;
        let how = match outcome {
            Outcome::Failed(e) => format!("the body failed: {e}"),
            _ => format!("{outcome:?}"),
        };
        say(self.name, format!("closed the connection after {} request(s) ({how})", session.requests));
        Ok(())
    }
}

impl<S: Tcp> Session<S> {
    /// `GET path` on the open connection, parsed as JSON.
    async fn get_json(&mut self, path: &str) -> io::Result<serde_json::Value> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.conn.get_mut().write_all(request.as_bytes()).await?;
        let (mut status, mut length) = (String::new(), 0);
        self.conn.read_line(&mut status).await?;
        loop {
            let mut header = String::new();
            self.conn.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break; // the empty line before the body
            }
            if let Some(n) = header.strip_prefix("Content-Length: ") {
                length = n.parse().map_err(io::Error::other)?;
            }
        }
        let mut body = vec![0; length];
        self.conn.read_exact(&mut body).await?;
        self.requests += 1;
        if !status.starts_with("HTTP/1.1 200 ") {
            return Err(io::Error::other(format!("GET {path}: {}", status.trim_end())));
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// Both scopes, with the client on the runtime `S` belongs to.
pub async fn run<S: Tcp>(server: &Server) -> Result<(), Box<dyn Error>> {
    println!("one session, two requests on one keep-alive connection");
    let repos = with(client::<S>("client", server.addr), async |session| {
        let ada = session.get_json("/users/ada").await?;
        let grace = session.get_json("/users/grace").await?;
        say("body", format!("got {ada} and {grace}"));
        Ok(ada["repos"].as_u64().unwrap_or(0) + grace["repos"].as_u64().unwrap_or(0))
    })
    .await?;
    assert_eq!(repos, 8);
    assert_eq!((server.opened(), server.open()), (1, 0), "one connection, closed");

    println!("two sessions on one line; the body fails while both are open");
    let err =
        with((client::<S>("client a", server.addr), client::<S>("client b", server.addr)), async |(a, b)| {
            a.get_json("/users/ada").await?;
            b.get_json("/users/linus").await?;
            assert_eq!(server.open(), 2);
            Ok(b.get_json("/users/nobody").await?) // 404
        })
        .await
        .expect_err("there is no such user");
    say("main", format!("the caller gets the body's error: {err}"));
    assert_eq!((server.opened(), server.open()), (3, 0), "both connections closed, b first");
    Ok(())
}

pub fn on_smol() -> Result<(), Box<dyn Error>> {
    println!("== http_session on smol ==");
    let server = Server::start()?;
    smol::block_on(run::<smol::net::TcpStream>(&server))?;
    server.stop()
}

pub fn on_async_std() -> Result<(), Box<dyn Error>> {
    println!("== http_session on async-std ==");
    let server = Server::start()?;
    async_std::task::block_on(run::<async_std::net::TcpStream>(&server))?;
    server.stop()
}

fn main() -> Result<(), Box<dyn Error>> {
    on_smol()?;
    on_async_std()
}

// ---------------------------------------------------------------------------------------------
// The server: blocking std::net, one thread per connection. `GET /users/<name>` answers JSON,
// anything else 404.

pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<io::Result<()>>,
}

#[derive(Default)]
struct Shared {
    opened: AtomicUsize,
    closed: AtomicUsize,
    stop: AtomicBool,
}

impl Server {
    fn start() -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?; // so that the accept loop notices `stop`
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept = thread::spawn({
            let shared = shared.clone();
            move || {
                let mut connections = Vec::new();
                while !shared.stop.load(SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false)?;
                            let n = shared.opened.fetch_add(1, SeqCst) + 1;
                            say("server", format!("connection {n} opened"));
                            let shared = shared.clone();
                            connections.push(thread::spawn(move || {
                                let served = respond(&stream);
                                // Counted before the socket closes: when the client sees the
                                // end of the stream, the count is already down.
                                shared.closed.fetch_add(1, SeqCst);
                                say("server", format!("connection {n} closed"));
                                served
                            }));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(1))
                        }
                        Err(e) => return Err(e),
                    }
                }
                connections.into_iter().try_for_each(|c| c.join().expect("a connection thread panicked"))
            }
        });
        Ok(Server { addr, shared, accept })
    }

    /// Connections accepted so far.
    fn opened(&self) -> usize {
        self.shared.opened.load(SeqCst)
    }

    /// Connections accepted and not yet closed.
    fn open(&self) -> usize {
        self.opened() - self.shared.closed.load(SeqCst)
    }

    fn stop(self) -> Result<(), Box<dyn Error>> {
        self.shared.stop.store(true, SeqCst);
        Ok(self.accept.join().expect("the accept thread panicked")?)
    }
}

/// Answers requests on one connection until the client closes it.
fn respond(mut stream: &std::net::TcpStream) -> io::Result<()> {
    let mut reader = StdBufReader::new(stream);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(()); // end of stream: the client closed the connection
        }
        loop {
            // Skip the headers, up to the empty line: the requests here have no body.
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim_end().is_empty() {
                break;
            }
        }
        let (status, body) = match request.split(' ').nth(1).and_then(|p| p.strip_prefix("/users/")) {
            Some(name @ ("ada" | "grace" | "linus")) => {
                ("200 OK", serde_json::json!({ "login": name, "repos": name.len() }).to_string())
            }
            _ => ("404 Not Found", String::new()),
        };
        let response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(response.as_bytes())?;
    }
}
