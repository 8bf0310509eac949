//! The process-wide drop hook: told once when a scope future is dropped before it finished, after
//! the fallbacks ran; never for a scope that finished. Its own test binary: the hook is global.

mod common;

use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

use async_with::{ExitStack, scope, set_drop_hook, with};
use common::Journal;

#[test]
fn a_dropped_scope_is_reported_once_after_its_fallbacks() {
    let j = Journal::new();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (jj, sink) = (j.clone(), reports.clone());
    set_drop_hook(move |dropped| {
        jj.push(format!("dropped {}", dropped.scope()));
        sink.lock().unwrap().push(dropped.to_string());
    });
    let mut task = Context::from_waker(Waker::noop());

    // Never polled: nothing was entered, so nothing ran instead of an exit, and nothing is told.
    drop(with(j.probe("never"), async |_| Ok(())));

    let mut pending_with = Box::pin(with(j.probe("a"), async |_| {
        std::future::pending::<()>().await;
        Ok(())
    }));
    for _ in 0..4 {
        assert!(pending_with.as_mut().poll(&mut task).is_pending());
    }
    drop(pending_with);

    let jj = j.clone();
    let mut pending_scope = Box::pin(scope(async move |stack: &mut ExitStack<String>| {
        stack.enter(jj.probe("b")).await?;
        std::future::pending::<()>().await;
        Ok(())
    }));
    for _ in 0..4 {
        assert!(pending_scope.as_mut().poll(&mut task).is_pending());
    }
    drop(pending_scope);

    futures::executor::block_on(with(j.probe("c"), async |_| Ok(()))).unwrap();

    assert_eq!(
        j.take(),
        [
            "enter a",
            "fallback a",
            "dropped with",
            "enter b",
            "fallback b",
            "dropped scope",
            "enter c",
            "exit c: Completed"
        ]
    );
    assert_eq!(
        reports.lock().unwrap()[0],
        "a `with` scope over `drop_hook::common::Probe` was dropped before it finished: its remaining contexts ran their synchronous fallbacks"
    );
}
