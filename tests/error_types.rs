//! Contexts with different error types in one scope (`map_err`, `err_into`): a tuple and an
//! exit stack mixing three of them. Each context's errors reach the caller converted, in order;
//! each exit sees a failure of the scope as an error of its own type (never `Completed`), and a
//! cancellation or a panic as they are.

mod common;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use async_with::{
    ContextExt, Error, ExitStack, ForeignError, IntoContext, Outcome, Scope, resource, scope, with,
};
use common::{block_on_catching, ready_on_poll};

#[derive(Debug, Clone, PartialEq)]
enum DbError {
    Query(&'static str),
    ScopeFailed(String),
}

impl From<ForeignError> for DbError {
    fn from(failed: ForeignError) -> Self {
        DbError::ScopeFailed(failed.message().to_string())
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug)]
enum AppError {
    Db(DbError),
    Io(io::Error),
    Cache(String),
    Body(&'static str),
}

impl From<io::Error> for AppError {
    fn from(error: io::Error) -> Self {
        AppError::Io(error)
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Db(e) => write!(f, "db: {e}"),
            AppError::Io(e) => write!(f, "io: {e}"),
            AppError::Cache(e) => write!(f, "cache: {e}"),
            AppError::Body(e) => write!(f, "body: {e}"),
        }
    }
}

type Log = Arc<Mutex<Vec<String>>>;

fn db(log: &Log, exit_fails: bool) -> impl IntoContext<Value = (), Error = DbError> + use<> {
    let log = log.clone();
    resource(
        async || Ok(()),
        async move |(), outcome: Outcome<'_, DbError>| {
            log.lock().unwrap().push(format!("db saw {outcome:?}"));
            if exit_fails { Err(DbError::Query("rollback failed")) } else { Ok(()) }
        },
    )
}

fn file(log: &Log) -> impl IntoContext<Value = (), Error = io::Error> + use<> {
    let log = log.clone();
    resource(
        async || Ok(()),
        async move |(), outcome: Outcome<'_, io::Error>| {
            let seen = match outcome {
                Outcome::Failed(e) => format!("Failed({e})"),
                other => format!("{other:?}"),
            };
            log.lock().unwrap().push(format!("file saw {seen}"));
            Err(io::Error::other("flush failed"))
        },
    )
}

fn cache(log: &Log) -> impl IntoContext<Value = (), Error = String> + use<> {
    let log = log.clone();
    resource(
        async || Ok(()),
        async move |(), outcome: Outcome<'_, String>| {
            log.lock().unwrap().push(format!("cache saw {outcome:?}"));
            Ok(())
        },
    )
}

fn texts(error: &Error<AppError>) -> Vec<String> {
    error.iter().map(ToString::to_string).collect()
}

#[test]
fn a_tuple_of_three_error_types_converts_each_and_shows_each_the_failure_in_its_own() {
    let log = Log::default();
    let contexts = (
        db(&log, true).map_err(AppError::Db),
        file(&log).err_into::<AppError>(),
        cache(&log).map_err(AppError::Cache),
    );
    let error = futures::executor::block_on(with(contexts, async |_| {
        Err::<(), _>(AppError::Body("insert failed").into())
    }))
    .unwrap_err();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "cache saw Failed(\"the scope failed: body: insert failed\")",
            "file saw Failed(the scope failed: body: insert failed)",
            // The newest error by then is the file's, converted into the scope's type and back.
            "db saw Failed(ScopeFailed(\"io: flush failed\"))",
        ]
    );
    assert_eq!(texts(&error), ["body: insert failed", "io: flush failed", "db: Query(\"rollback failed\")"]);
}

#[test]
fn an_exit_stack_mixes_three_error_types() {
    let log = Log::default();
    let l = log.clone();
    let error = futures::executor::block_on(scope(
        async move |stack: &mut ExitStack<AppError>| -> Result<(), Error<AppError>> {
            stack.enter(db(&l, false).map_err(AppError::Db)).await?;
            stack.enter(file(&l).err_into()).await?;
            stack.enter(cache(&l).map_err(AppError::Cache)).await?;
            Err(AppError::Body("query failed").into())
        },
    ))
    .unwrap_err();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "cache saw Failed(\"the scope failed: body: query failed\")",
            "file saw Failed(the scope failed: body: query failed)",
            "db saw Failed(ScopeFailed(\"io: flush failed\"))",
        ]
    );
    assert_eq!(texts(&error), ["body: query failed", "io: flush failed"]);
}

#[test]
fn a_converted_context_sees_completed_cancelled_and_panicked_as_they_are() {
    let log = Log::default();
    futures::executor::block_on(with(cache(&log).map_err(AppError::Cache), async |()| Ok(()))).unwrap();
    let cancelled = futures::executor::block_on(
        Scope::new()
            .cancel_on(ready_on_poll(1))
            .with(cache(&log).map_err(AppError::Cache), async |()| -> Result<(), Error<AppError>> {
                std::future::pending().await
            }),
    );
    assert!(cancelled.unwrap_err().is_cancelled());
    let panicked = block_on_catching(with(
        cache(&log).map_err(AppError::Cache),
        async |()| -> Result<(), Error<AppError>> { panic!("body panicked") },
    ));
    assert_eq!(panicked.unwrap_err(), "body panicked");
    assert_eq!(*log.lock().unwrap(), ["cache saw Completed", "cache saw Cancelled", "cache saw Panicked"]);
}

#[test]
fn a_converted_enter_error_is_converted_and_the_others_are_exited() {
    let log = Log::default();
    let refusing = resource(
        async || Err::<(), _>(DbError::Query("refused")),
        async |(), _: Outcome<'_, DbError>| Ok(()),
    );
    let error = futures::executor::block_on(with(
        (cache(&log).map_err(AppError::Cache), refusing.map_err(AppError::Db)),
        async |_| -> Result<(), Error<AppError>> { unreachable!("no body") },
    ))
    .unwrap_err();
    assert_eq!(texts(&error), ["db: Query(\"refused\")"]);
    assert_eq!(*log.lock().unwrap(), ["cache saw Failed(\"the scope failed: db: Query(\\\"refused\\\")\")"]);
}
