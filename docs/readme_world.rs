// The imaginary world README.md's examples live in: a database client, a connection pool, an
// HTTP client and a cache, faked in a few lines each, with the types a real one would have. Every
// ```rust block of the README brings it in with one hidden line,
//
//     # mod world { include!("../docs/readme_world.rs"); } use world::*;
//
// and is compiled as a doctest (`ReadmeDoctests` at the end of src/lib.rs, with `--all-features`).
// Nothing here runs: the doctests only have to compile.
//
// `include!` in a function body (where rustdoc puts a doctest) takes one expression, not items:
// hence the module around it. The path is relative to src/lib.rs, the file whose attribute holds
// the README. The glob import lets a block's own `use` lines take precedence over the names
// re-exported here instead of clashing with them.
pub use async_with::{
    AsyncContext, CancellationToken, ContextExt, ExitStack, IntoContext, Outcome, Scope, context,
    detach_on_drop, join, resource, scope, testkit, with,
};
pub use proptest::prelude::{TestCaseError, prop_assert_eq, proptest};
pub use std::io;
pub use std::time::Duration;
pub use tokio::time::sleep;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// The error of every database call, written `Error` in some examples.
#[derive(Debug)]
pub enum DbError {
    Query(String),
    CloseTimedOut,
}
pub type Error = DbError;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: u64,
    pub name: String,
}

/// A database client: `Db::connect` is its async setup, `close` its async teardown.
pub struct Db {
    name: String,
    rows: Vec<Row>,
}

impl Db {
    pub async fn connect(name: &str) -> Result<Db, DbError> {
        Ok(Db { name: name.to_string(), rows: Vec::new() })
    }
    pub async fn count(&self, table: &str) -> Result<usize, DbError> {
        match table {
            "users" => Ok(self.rows.len()),
            _ => Err(DbError::Query(format!("{}: no table {table}", self.name))),
        }
    }
    pub async fn long_query(&self) -> Result<Vec<Row>, DbError> {
        sleep(Duration::from_secs(60)).await;
        Ok(self.rows.clone())
    }
    pub async fn commit(&self) -> Result<(), DbError> {
        Ok(())
    }
    pub async fn rollback(&self) -> Result<(), DbError> {
        Ok(())
    }
    pub async fn close(self) -> Result<(), DbError> {
        Ok(())
    }
}

/// A database as a context of its own: a handle that can be entered any number of times.
#[derive(Clone, Copy)]
pub struct Database {
    pub name: &'static str,
}

impl AsyncContext for Database {
    type Value = Db;
    type Error = DbError;
    async fn enter(&mut self) -> Result<Db, DbError> {
        Db::connect(self.name).await
    }
    async fn exit(self, db: Db, _: Outcome<'_, DbError>) -> Result<(), DbError> {
        db.close().await
    }
}

/// A connection to one database (or shard, or replica).
pub struct Conn {
    pub name: String,
    rows: Vec<Row>,
    authenticated: bool,
}

impl Conn {
    fn open(name: &str) -> Conn {
        Conn { name: name.to_string(), rows: Vec::new(), authenticated: false }
    }
    pub async fn authenticate(&mut self) -> Result<(), DbError> {
        self.authenticated = true;
        Ok(())
    }
    pub async fn insert(&mut self, row: Row) -> Result<(), DbError> {
        self.rows.push(row);
        Ok(())
    }
    pub async fn close(self) -> Result<(), DbError> {
        Ok(())
    }
}

pub fn connect(name: &'static str) -> impl IntoContext<Value = Conn, Error = DbError> {
    resource(
        async move || Ok(Conn::open(name)),
        async |conn: Conn, _: Outcome<'_, DbError>| conn.close().await,
    )
}

pub fn replica(region: &'static str) -> impl IntoContext<Value = Conn, Error = DbError> {
    connect(region)
}

/// A transaction on a connection: its rows reach the connection if the body completed.
pub struct Transaction<'a> {
    conn: &'a mut Conn,
}

pub struct Tx {
    rows: Vec<Row>,
}

impl Tx {
    pub async fn insert(&mut self, row: Row) -> Result<(), DbError> {
        self.rows.push(row);
        Ok(())
    }
}

pub fn transaction(conn: &mut Conn) -> Transaction<'_> {
    Transaction { conn }
}

impl AsyncContext for Transaction<'_> {
    type Value = Tx;
    type Error = DbError;
    async fn enter(&mut self) -> Result<Tx, DbError> {
        Ok(Tx { rows: Vec::new() })
    }
    async fn exit(self, tx: Tx, outcome: Outcome<'_, DbError>) -> Result<(), DbError> {
        if outcome.is_completed() {
            self.conn.rows.extend(tx.rows); // commit
        }
        Ok(())
    }
}

/// A connection pool that counts the connections checked out.
#[derive(Clone, Default)]
pub struct Pool {
    url: String,
    checked_out: Arc<AtomicUsize>,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }
    pub fn checkout<E>(&self) -> Checkout<E> {
        Checkout { pool: self.clone(), error: PhantomData }
    }
    pub fn checked_out(&self) -> usize {
        self.checked_out.load(SeqCst)
    }
}

pub fn pool(url: &'static str) -> impl IntoContext<Value = Pool, Error = DbError> {
    resource(
        async move || Ok(Pool { url: url.to_string(), ..Pool::new() }),
        async |_: Pool, _: Outcome<'_, DbError>| Ok(()),
    )
}

pub fn connection(pool: Pool) -> Checkout<DbError> {
    pool.checkout()
}

/// A connection taken from a pool and given back, whatever the error type of the scope.
pub struct Checkout<E> {
    pool: Pool,
    error: PhantomData<fn() -> E>,
}

impl<E: Send + Sync> AsyncContext for Checkout<E> {
    type Value = Conn;
    type Error = E;
    async fn enter(&mut self) -> Result<Conn, E> {
        self.pool.checked_out.fetch_add(1, SeqCst);
        Ok(Conn::open(&self.pool.url))
    }
    async fn exit(self, _: Conn, _: Outcome<'_, E>) -> Result<(), E> {
        self.pool.checked_out.fetch_sub(1, SeqCst);
        Ok(())
    }
    fn exit_on_drop(self, _: Conn) {
        self.pool.checked_out.fetch_sub(1, SeqCst);
    }
}

pub async fn query_all(conns: &mut [&mut Conn]) -> Result<usize, DbError> {
    Ok(conns.iter().map(|conn| conn.rows.len()).sum())
}

pub async fn compare(eu: &mut Conn, us: &mut Conn) -> Result<bool, DbError> {
    Ok(eu.rows == us.rows)
}

static FINISHED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

pub async fn metrics(outcome: Outcome<'_, DbError>) -> Result<(), DbError> {
    FINISHED.fetch_add(1, SeqCst);
    if !outcome.is_completed() {
        FAILED.fetch_add(1, SeqCst);
    }
    Ok(())
}

pub async fn flush_metrics() -> Result<(), DbError> {
    FINISHED.store(0, SeqCst);
    FAILED.store(0, SeqCst);
    Ok(())
}

/// A cache as a context: its entries are lent to the body.
#[derive(Default)]
pub struct Cache {
    entries: HashMap<String, Row>,
}

impl AsyncContext for Cache {
    type Value = HashMap<String, Row>;
    type Error = DbError;
    async fn enter(&mut self) -> Result<Self::Value, DbError> {
        Ok(std::mem::take(&mut self.entries))
    }
    async fn exit(self, _: Self::Value, _: Outcome<'_, DbError>) -> Result<(), DbError> {
        Ok(())
    }
}

/// An HTTP client; the README makes it a context whose value is a `Session`.
pub struct HttpClient {
    pub host: String,
}

impl HttpClient {
    pub async fn connect(&self) -> io::Result<Session> {
        Ok(Session { host: self.host.clone(), requests: 0 })
    }
}

/// An open keep-alive connection.
pub struct Session {
    pub host: String,
    pub requests: usize,
}

impl Session {
    pub async fn close(self) -> io::Result<()> {
        Ok(())
    }
}
