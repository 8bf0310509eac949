//! The three situations of Python's `async with` tutorial, for real, on smol:
//!
//! (a) an HTTP client session that fetches JSON from a server this example starts on 127.0.0.1,
//!     reusing one keep-alive connection and closing it on exit;
//! (b) a database-like connection with async setup and async cleanup (smol timers) whose cleanup
//!     runs even though the body fails;
//! (c) two contexts entered on one line and exited in reverse.
//!
//! Run with `cargo run -p quickstart` from the repository's root. Every line it prints is numbered in the order it
//! happened, so the order of enters and exits is visible.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_with::{AsyncContext, Outcome, resource, with};
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::{TcpListener, TcpStream};

static LINE: AtomicUsize = AtomicUsize::new(1);

fn say(who: &str, what: impl std::fmt::Display) {
    println!("{:>2}. {who:<7} {what}", LINE.fetch_add(1, Ordering::SeqCst));
}

// One error type for enters, bodies and exits. `std::io::Error` fits: sockets produce it, and
// `serde_json` errors convert into it.
type Error = std::io::Error;

fn error(message: impl Into<String>) -> Error {
    Error::other(message.into())
}

// ---------------------------------------------------------------------------------------------
// (a) An HTTP client session, as `aiohttp.ClientSession` / `httpx.AsyncClient`: one keep-alive
// connection opened on enter, used for several requests, closed on exit whatever happened.

/// The session's configuration: the context itself.
struct HttpClient {
    addr: std::net::SocketAddr,
}

/// What the body borrows: an open connection.
struct Session {
    conn: BufReader<TcpStream>,
    requests: usize,
}

impl AsyncContext for HttpClient {
    type Value = Session;
    type Error = Error;

    async fn enter(&mut self) -> Result<Session, Error> {
        let stream = TcpStream::connect(self.addr).await?;
        say("client", format!("connected to {}", self.addr));
        Ok(Session { conn: BufReader::new(stream), requests: 0 })
    }

    async fn exit(self, session: Session, outcome: Outcome<'_, Error>) -> Result<(), Error> {
        let mut stream = session.conn.into_inner();
        stream.close().await?; // flush and shut down our side; the server sees end-of-stream
        let n = session.requests;
        let requests = if n == 1 { "request" } else { "requests" };
        say("client", format!("closed the connection after {n} {requests} ({outcome:?})"));
        Ok(())
    }
}

impl Session {
    /// `GET path` on the open connection, parsed as JSON.
    async fn get_json(&mut self, path: &str) -> Result<serde_json::Value, Error> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
        self.conn.get_mut().write_all(request.as_bytes()).await?;
        let (status, body) =
            read_message(&mut self.conn).await?.ok_or_else(|| error("the server closed the connection"))?;
        self.requests += 1;
        if !status.contains(" 200 ") {
            return Err(error(format!("{path}: {status}")));
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// Reads one HTTP/1.1 message: its first line and its `Content-Length` body. `None` at a clean
/// end of stream.
async fn read_message(conn: &mut BufReader<TcpStream>) -> Result<Option<(String, Vec<u8>)>, Error> {
    let mut first = String::new();
    if conn.read_line(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        conn.read_line(&mut header).await?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().map_err(|_| error("bad content-length"))?;
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await?;
    Ok(Some((first.trim_end().to_string(), body)))
}

/// A small JSON API on 127.0.0.1 that logs when connections open and close.
async fn serve(listener: TcpListener) -> Result<(), Error> {
    loop {
        let (stream, peer) = listener.accept().await?;
        smol::spawn(async move {
            say("server", format!("connection from port {} opened", peer.port()));
            let mut conn = BufReader::new(stream);
            while let Ok(Some((request, _))) = read_message(&mut conn).await {
                let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, body) = match path.strip_prefix("/users/") {
                    Some(name) => {
                        ("200 OK", serde_json::json!({ "login": name, "repos": name.len() }).to_string())
                    }
                    None => ("404 Not Found", String::new()),
                };
                let response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                if conn.get_mut().write_all(response.as_bytes()).await.is_err() {
                    break;
                }
            }
            say("server", format!("connection from port {} closed", peer.port()));
        })
        .detach();
    }
}

// ---------------------------------------------------------------------------------------------
// (b) and (c): a connection with async setup and async cleanup, written as two closures.

fn database(name: &'static str) -> impl async_with::IntoContext<Value = String, Error = Error> {
    resource(
        async move || {
            say("db", format!("{name}: connecting..."));
            smol::Timer::after(Duration::from_millis(30)).await;
            say("db", format!("{name}: connected"));
            Ok(format!("{name}-connection"))
        },
        async move |conn, outcome: Outcome<'_, Error>| {
            let verdict = match outcome {
                Outcome::Completed => "commit".to_string(),
                Outcome::Failed(e) => format!("rollback, because: {e}"),
                Outcome::Panicked | Outcome::Cancelled => "rollback".to_string(),
            };
            say("db", format!("{name}: {verdict}; closing {conn}..."));
            smol::Timer::after(Duration::from_millis(30)).await;
            say("db", format!("{name}: closed"));
            Ok(())
        },
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = smol::spawn(serve(listener));

        println!("(a) an HTTP client session");
        let repos = with(HttpClient { addr }, async |session| {
            let ada = session.get_json("/users/ada").await?;
            let grace = session.get_json("/users/grace").await?;
            say("body", format!("got {ada} and {grace} on one connection"));
            Ok(ada["repos"].as_u64().unwrap_or(0) + grace["repos"].as_u64().unwrap_or(0))
        })
        .await?;
        say("main", format!("total repos: {repos}"));
        smol::Timer::after(Duration::from_millis(20)).await; // let the server log the close

        println!("\n(b) async cleanup runs even when the body fails");
        let result = with(database("orders"), async |conn| -> Result<(), async_with::Error<Error>> {
            say("body", format!("querying with {conn}..."));
            Err(error("no such table: orders").into())
        })
        .await;
        match result {
            Ok(()) => unreachable!("the body failed"),
            Err(error) => say("main", format!("the caller gets the body's error: {error}")),
        }

        println!("\n(c) two contexts on one line, exited in reverse");
        with((database("primary"), HttpClient { addr }), async |(db, session)| {
            let user = session.get_json("/users/linus").await?;
            say("body", format!("storing {user} through {db}"));
            Ok(())
        })
        .await?;
        smol::Timer::after(Duration::from_millis(20)).await;

        server.cancel().await;
        Ok(())
    })
}
