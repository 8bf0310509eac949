//! The default drop hook, with no hook set: in a debug build without the `tracing` feature, a
//! dropped scope writes one line to standard error naming the scope and its context type, and
//! how to silence it. (With `tracing`, it is a `warn` event instead: tests/tracing.rs.) The
//! scenario runs in a child process, whose standard error the test reads.
#![cfg(all(not(feature = "tracing"), debug_assertions, not(miri)))]

mod common;

use std::task::{Context, Waker};

use async_with::with;
use common::Journal;

const CHILD: &str = "ASYNC_WITH_DROP_WARNING_CHILD";

#[test]
fn a_dropped_scope_says_so_on_standard_error() {
    if std::env::var_os(CHILD).is_some() {
        let j = Journal::new();
        let mut scope = Box::pin(with(j.probe("a"), async |_| {
            std::future::pending::<()>().await;
            Ok(())
        }));
        let mut task = Context::from_waker(Waker::noop());
        for _ in 0..4 {
            assert!(scope.as_mut().poll(&mut task).is_pending());
        }
        drop(scope); // a runtime's timeout would do this
        drop(with(j.probe("b"), async |_| Ok(()))); // never polled: nothing to say
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_dropped_scope_says_so_on_standard_error", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(child.status.success(), "{child:?}");
    let stderr = String::from_utf8(child.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("async-with:")).collect();
    assert_eq!(lines.len(), 1, "one line for the one dropped scope: {stderr}");
    assert!(
        lines[0].contains("a `with` scope over `drop_warning::common::Probe` was dropped"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("Scope::cancel_on") && lines[0].contains("set_drop_hook(|_| {})"),
        "{}",
        lines[0]
    );
}
