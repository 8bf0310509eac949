//! Runs every example in `examples/` on each of its runtimes, so that none can rot. Each example
//! asserts that its resources were really released: connections closed (as the server saw it),
//! processes reaped, directories removed, transactions committed or rolled back.

#![cfg(not(miri))] // real sockets, processes, files and SQLite

use std::fmt::Display;
use std::panic::resume_unwind;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

// `#[allow(dead_code)]`: each example's `main`, which runs every runtime in turn; here each
// runtime is a test of its own.
#[allow(dead_code)]
#[path = "../examples/child_process.rs"]
mod child_process;
#[allow(dead_code)]
#[path = "../examples/database.rs"]
mod database;
#[allow(dead_code)]
#[path = "../examples/http_session.rs"]
mod http_session;
#[allow(dead_code)]
#[path = "../examples/temp_dir.rs"]
mod temp_dir;

/// Runs an example on a thread of its own and fails if it fails, panics, or takes more than a
/// minute: an exit that waits forever (for a close the server never sends, a child that never
/// exits) fails the test instead of hanging the suite.
fn check<E: Display + 'static>(example: fn() -> Result<(), E>) {
    let (finished, done) = mpsc::channel();
    let thread = thread::spawn(move || {
        let result = example().map_err(|e| e.to_string());
        let _ = finished.send(());
        result
    });
    match done.recv_timeout(Duration::from_secs(60)) {
        // Disconnected: the example panicked before it could say it finished.
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("the example failed: {error}"),
            Err(panic) => resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => panic!("the example did not finish within a minute"),
    }
}

#[test]
fn http_session_on_smol() {
    check(http_session::on_smol);
}

#[test]
fn http_session_on_async_std() {
    check(http_session::on_async_std);
}

#[test]
fn child_process_on_tokio() {
    check(child_process::on_tokio);
}

#[test]
fn child_process_on_smol() {
    check(child_process::on_smol);
}

#[test]
fn temp_dir_on_smol() {
    check(temp_dir::on_smol);
}

#[test]
fn temp_dir_on_tokio() {
    check(temp_dir::on_tokio);
}

#[test]
fn temp_dir_on_async_std() {
    check(temp_dir::on_async_std);
}

#[test]
fn database_on_tokio() {
    check(database::on_tokio);
}

#[test]
fn database_on_async_std() {
    check(database::on_async_std);
}
