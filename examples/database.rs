//! A database transaction as a context, on a real database: SQLite through sqlx, in memory.
//!
//! `Atomic` (Django's `transaction.atomic()`, asyncpg's `conn.transaction()`) runs `BEGIN` on
//! enter and, on exit, `COMMIT` when the body completed or `ROLLBACK` when it failed, panicked or
//! was cancelled. Each case inserts one order; at the end the table must hold exactly the orders
//! of the committed transactions. One more case drops the scope's future half-way, as a runtime's
//! timeout does: no async exit can run then, and the default fallback (dropping the value) is the
//! right one, because sqlx's own `Drop` for a transaction queues a `ROLLBACK`.
//!
//! The same `run` runs as a task on tokio's multi-threaded runtime and on async-std.
//!
//! Run with `cargo run --example database`.

use std::error::Error;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_with::{AsyncContext, Outcome, Scope, with};
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{Either, select};
use sqlx::sqlite::{Sqlite, SqlitePool, SqlitePoolOptions};

type BoxError = Box<dyn Error + Send + Sync>;

/// What the body borrows: a transaction on a connection taken from the pool. A newtype, because
/// rustc cannot yet prove a spawned scope `Send` when the value's type has a lifetime parameter,
/// even `'static` (rust-lang/rust#110338; see the README's known limitations).
struct Tx(sqlx::Transaction<'static, Sqlite>);

fn say(who: &str, what: impl std::fmt::Display) {
    println!("  {who:<5} {what}");
}

/// A transaction as a context: `with(Atomic { pool }, async |tx| ...)`.
struct Atomic {
    pool: SqlitePool,
}

impl AsyncContext for Atomic {
    type Value = Tx;
    type Error = sqlx::Error;

    async fn enter(&mut self) -> Result<Tx, sqlx::Error> {
        let tx = self.pool.begin().await?;
        say("tx", "BEGIN");
        Ok(Tx(tx))
    }

    async fn exit(self, Tx(tx): Tx, outcome: Outcome<'_, sqlx::Error>) -> Result<(), sqlx::Error> {
        // The only place that decides: the body cannot forget to commit or to roll back.
        match outcome {
            Outcome::Completed => {
                tx.commit().await?;
                say("tx", "COMMIT");
            }
            Outcome::Failed(e) => {
                tx.rollback().await?;
                say("tx", format!("ROLLBACK, because: {e}"));
            }
            Outcome::Panicked | Outcome::Cancelled => {
                tx.rollback().await?;
                say("tx", format!("ROLLBACK ({outcome:?})"));
            }
        }
        Ok(())
    }

    // No `exit_on_drop`: the default drops the transaction, which makes sqlx queue a ROLLBACK
    // that runs before the connection is used again. Nothing is awaited inside `Drop`.
}

async fn insert(tx: &mut Tx, id: i64, item: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO orders (id, item) VALUES (?, ?)")
        .bind(id)
        .bind(item)
        .execute(&mut *tx.0)
        .await?;
    say("body", format!("INSERT order {id}: {item}"));
    Ok(())
}

/// Every case, on whatever runtime polls it; `sleep` is that runtime's timer.
pub async fn run<S>(sleep: fn(Duration) -> S) -> Result<(), BoxError>
where
    S: Future<Output = ()> + Send,
{
    let pool = SqlitePoolOptions::new()
        // An in-memory database lives as long as its connection: keep one, and keep it open.
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await?;
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)").execute(&pool).await?;
    let atomic = || Atomic { pool: pool.clone() };

    println!("completed: committed");
    with(atomic(), async |tx| Ok(insert(tx, 1, "apples").await?)).await?;

    println!("failed: rolled back, and the caller gets the database's error");
    let err = with(atomic(), async |tx| {
        insert(tx, 2, "bananas").await?;
        Ok(insert(tx, 1, "cherries").await?) // order 1 exists: a UNIQUE constraint violation
    })
    .await
    .expect_err("the second insert reuses id 1");
    say("main", format!("error: {err}"));
    assert!(matches!(err.primary(), Some(sqlx::Error::Database(e)) if e.is_unique_violation()));
    assert!(err.suppressed().is_empty(), "the ROLLBACK itself succeeded");

    println!("panicked: rolled back, then the panic resumes (its message below is expected)");
    let panicked =
        AssertUnwindSafe(with(atomic(), async |tx| -> Result<(), async_with::Error<sqlx::Error>> {
            insert(tx, 3, "dates").await?;
            panic!("a bug in the middle of a transaction");
        }))
        .catch_unwind()
        .await;
    assert!(panicked.is_err(), "the panic reaches the caller after the ROLLBACK");
    say("main", "caught the panic");

    println!("cancelled: a cooperative timeout interrupts a slow body, then the exit rolls back");
    let err = Scope::new()
        .cancel_on(sleep(Duration::from_millis(50)))
        .with(atomic(), async |tx| {
            insert(tx, 4, "elderberries").await?;
            sleep(Duration::from_secs(3600)).await; // a slow client, a long computation...
            Ok(())
        })
        .await
        .expect_err("the timeout fires first");
    assert!(err.is_cancelled());
    say("main", "cancelled");

    println!("dropped: the scope's future is dropped mid-body; sqlx queues the ROLLBACK");
    let (inserted, after_insert) = oneshot::channel();
    let scope = Box::pin(with(atomic(), async |tx| {
        insert(tx, 5, "figs").await?;
        let _ = inserted.send(());
        sleep(Duration::from_secs(3600)).await;
        Ok(())
    }));
    // A `select!` that stops waiting (the client went away), as a runtime's `timeout` would.
    match select(scope, after_insert).await {
        Either::Left(_) => unreachable!("the body sleeps for an hour"),
        Either::Right((_, scope)) => drop(scope), // the scope's future, stopped mid-body
    }
    say("main", "dropped the scope");

    println!("completed again: the queued ROLLBACK ran first, so this is a new transaction");
    with(atomic(), async |tx| Ok(insert(tx, 6, "grapes").await?)).await?;

    let items: Vec<String> =
        sqlx::query_scalar("SELECT item FROM orders ORDER BY id").fetch_all(&pool).await?;
    say("main", format!("orders in the table: {items:?}"));
    assert_eq!(items, ["apples", "grapes"], "exactly the committed orders");
    pool.close().await;
    Ok(())
}

/// On tokio's multi-threaded runtime, spawned as a task: the scopes' futures are `Send`.
pub fn on_tokio() -> Result<(), BoxError> {
    println!("== database on tokio ==");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(runtime.spawn(run(tokio::time::sleep)))?
}

pub fn on_async_std() -> Result<(), BoxError> {
    println!("== database on async-std ==");
    async_std::task::block_on(run(async_std::task::sleep))
}

fn main() -> Result<(), BoxError> {
    on_tokio()?;
    on_async_std()
}
