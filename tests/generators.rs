//! Generator-style contexts (`context(async |cx| ..)`): setup and teardown around `provide`,
//! following G1-G6 like every other context, and bad use reported clearly, never a hang.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use async_with::{Cx, Error, IntoContext, Outcome, context, with, with_local};
use common::{Act, Journal, block_on_catching, describe, journaling_scope, yield_now};
use futures::executor::block_on;

/// A generator context that journals `setup {name}` and `teardown {name}: {outcome}`.
fn generator(
    j: &Journal,
    name: &'static str,
    setup: Act,
    teardown: Act,
) -> impl IntoContext<Value = String, Error = String> {
    let j = j.clone();
    context(async move |mut cx: Cx<String, String>| {
        yield_now().await;
        j.push(format!("setup {name}"));
        match setup {
            Act::Succeed => {}
            Act::Fail => return Err(format!("setup {name} failed")),
            Act::Panic => panic!("setup {name} panicked"),
        }
        let (value, outcome) = cx.provide(name.to_string()).await;
        assert_eq!(value, name, "the teardown got its own value back");
        yield_now().await;
        j.push(format!("teardown {name}: {}", describe(outcome)));
        match teardown {
            Act::Succeed => Ok(()),
            Act::Fail => Err(format!("teardown {name} failed")),
            Act::Panic => panic!("teardown {name} panicked"),
        }
    })
}

fn ok(j: &Journal, name: &'static str) -> impl IntoContext<Value = String, Error = String> {
    generator(j, name, Act::Succeed, Act::Succeed)
}

#[test]
fn setup_body_and_teardown_run_in_order_among_other_contexts() {
    let j = Journal::new();
    let out = block_on(with((j.probe("a"), ok(&j, "g"), j.probe("c")), async |(_, g, _)| {
        j.push(format!("body with {g}"));
        Ok(g.len())
    }));
    assert_eq!(out.unwrap(), 1);
    assert_eq!(
        j.take(),
        [
            "enter a",
            "setup g",
            "enter c",
            "body with g",
            "exit c: Completed",
            "teardown g: Completed",
            "exit a: Completed"
        ]
    );
}

#[test]
fn a_failed_setup_means_no_body_and_no_teardown() {
    let j = Journal::new();
    let err = block_on(with(
        (j.probe("a"), generator(&j, "g", Act::Fail, Act::Succeed)),
        async |_| -> Result<(), Error<String>> { unreachable!("no body after a failed setup") },
    ))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "setup g failed");
    assert_eq!(j.take(), ["enter a", "setup g", "exit a: Failed(setup g failed)"]);
}

#[test]
fn teardown_sees_the_body_error_and_its_own_error_is_suppressed() {
    let j = Journal::new();
    let ctxs = (j.probe("a"), generator(&j, "g", Act::Succeed, Act::Fail));
    let err = block_on(with(ctxs, async |_| Err::<(), _>("body failed".to_string().into()))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "body failed");
    assert_eq!(err.suppressed(), ["teardown g failed"]);
    assert_eq!(
        j.take(),
        ["enter a", "setup g", "teardown g: Failed(body failed)", "exit a: Failed(teardown g failed)"]
    );
}

#[test]
fn teardown_sees_the_newest_error_and_gives_it_back() {
    let j = Journal::new();
    // The inner exit fails after a good body: the teardown sees that error, ignores it, and the
    // caller still gets it as the primary error.
    let ctxs = (ok(&j, "g"), j.probe("b").exit(Act::Fail));
    let err = block_on(with(ctxs, async |_| Ok(()))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit b failed");
    assert!(err.suppressed().is_empty());
    assert_eq!(j.take(), ["setup g", "enter b", "exit b: Completed", "teardown g: Failed(exit b failed)"]);
}

#[test]
fn a_lent_suppressed_error_goes_back_in_its_place() {
    let j = Journal::new();
    let ctxs = (j.probe("a").exit(Act::Fail), ok(&j, "g"), j.probe("c").exit(Act::Fail));
    let err = block_on(with(ctxs, async |_| Err::<(), _>("body".to_string().into()))).unwrap_err();
    assert_eq!(
        err.iter().map(String::as_str).collect::<Vec<_>>(),
        ["body", "exit c failed", "exit a failed"]
    );
    assert_eq!(
        j.take(),
        [
            "enter a",
            "setup g",
            "enter c",
            "exit c: Failed(body)",
            "teardown g: Failed(exit c failed)",
            "exit a: Failed(exit c failed)"
        ]
    );
}

#[test]
fn panics_in_setup_body_and_teardown_follow_g6() {
    let j = Journal::new();
    let panic =
        block_on_catching(with((j.probe("a"), generator(&j, "g", Act::Panic, Act::Succeed)), async |_| {
            Ok(())
        }));
    assert_eq!(panic.unwrap_err(), "setup g panicked");
    assert_eq!(j.take(), ["enter a", "setup g", "exit a: Panicked"]);

    let panic =
        block_on_catching(with((j.probe("a"), ok(&j, "g")), async |_| -> Result<(), Error<String>> {
            panic!("body panicked")
        }));
    assert_eq!(panic.unwrap_err(), "body panicked");
    assert_eq!(j.take(), ["enter a", "setup g", "teardown g: Panicked", "exit a: Panicked"]);

    let ctxs = (j.probe("a"), generator(&j, "g", Act::Succeed, Act::Panic));
    let panic =
        block_on_catching(journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body".to_string().into())));
    assert_eq!(panic.unwrap_err(), "teardown g panicked");
    // The lent error came back although the teardown unwound, and reached the hook.
    assert_eq!(
        j.take(),
        ["enter a", "setup g", "teardown g: Failed(body)", "exit a: Panicked", "hook: body"]
    );
}

#[test]
fn returning_without_provide_is_reported_as_a_panic_and_cleans_up() {
    let j = Journal::new();
    let jj = j.clone();
    let silent = context(async move |_cx: Cx<u8, String>| {
        jj.push("setup without provide");
        Ok(())
    });
    let panic = block_on_catching(with((j.probe("a"), silent), async |_| -> Result<(), Error<String>> {
        unreachable!()
    }));
    assert_eq!(panic.unwrap_err(), "async-with: a generator context returned without calling `provide`");
    assert_eq!(j.take(), ["enter a", "setup without provide", "exit a: Panicked"]);
}

#[test]
fn a_second_provide_is_reported_runs_no_second_body_and_drops_the_value() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    let j = Journal::new();
    let jj = j.clone();
    let twice = context(async move |mut cx: Cx<Counted, String>| {
        let (first, _) = cx.provide(Counted).await;
        drop(first);
        jj.push("provide again");
        let _ = cx.provide(Counted).await;
        unreachable!("the second provide never resumes");
    });
    let bodies = AtomicUsize::new(0);
    let panic = block_on_catching(with((j.probe("a"), twice), async |_| {
        bodies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }));
    assert_eq!(panic.unwrap_err(), "async-with: `provide` was called twice in one generator context");
    assert_eq!(bodies.load(Ordering::SeqCst), 1);
    assert_eq!(DROPPED.load(Ordering::SeqCst), 2, "both values dropped, neither leaked");
    assert_eq!(j.take(), ["enter a", "provide again", "exit a: Panicked"]);
}

#[test]
fn a_provide_future_dropped_mid_way_is_reported() {
    let ctx = context(async |mut cx: Cx<u8, String>| {
        // Poll `provide` once (handing the value over) and then abandon it.
        let mut provide = pin!(cx.provide(1));
        std::future::poll_fn(|task| {
            let _ = provide.as_mut().poll(task);
            Poll::Ready(())
        })
        .await;
        Ok(())
    });
    let panic = block_on_catching(with(ctx, async |_| Ok(())));
    assert_eq!(
        panic.unwrap_err(),
        "async-with: a generator context returned while its body had the value (was the `provide` future dropped?)"
    );
}

#[test]
fn a_cx_that_outlives_its_closure_cannot_swallow_the_error() {
    static STASH: Mutex<Vec<Cx<u8, String>>> = Mutex::new(Vec::new());
    let ctx = context(async |mut cx: Cx<u8, String>| {
        let (_, outcome) = cx.provide(1).await;
        assert!(outcome.is_failed());
        STASH.lock().unwrap().push(cx); // keeps the lent error away from the scope
        Ok(())
    });
    let panic = block_on_catching(with(ctx, async |_| Err::<(), _>("body".to_string().into())));
    assert_eq!(
        panic.unwrap_err(),
        "async-with: a generator context's `Cx` outlived its closure and kept the scope's error"
    );
    STASH.lock().unwrap().clear();
}

#[test]
fn a_scope_future_polled_after_completion_panics_clearly() {
    let j = Journal::new();
    let mut future = pin!(with(ok(&j, "g"), async |_| Ok(())));
    let mut cx = Context::from_waker(Waker::noop());
    let done = loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            break out;
        }
    };
    assert!(done.is_ok());
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
    let message = common::panic_message(again.unwrap_err());
    assert!(message.contains("resumed after completion"), "{message}");
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn generator_scopes_are_send_and_run_on_a_multi_threaded_runtime() {
    fn db(name: &'static str) -> impl IntoContext<Value = String, Error = String> {
        context(async move |mut cx: Cx<String, String>| {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let (conn, outcome) = cx.provide(format!("{name}-conn")).await;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            if let Outcome::Failed(e) = outcome {
                return Err(format!("{conn} rolled back after {e}"));
            }
            Ok(())
        })
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let out = rt.block_on(rt.spawn(with((db("a"), db("b")), async |(a, b)| Ok(format!("{a}+{b}"))))).unwrap();
    assert_eq!(out.unwrap(), "a-conn+b-conn");
    let err = rt
        .block_on(rt.spawn(with(db("a"), async |_| Err::<(), _>("boom".to_string().into()))))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.iter().map(String::as_str).collect::<Vec<_>>(), ["boom", "a-conn rolled back after boom"]);
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn a_not_send_generator_runs_with_with_local() {
    let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let inner = log.clone();
    let ctx = context(async move |mut cx: Cx<u32, ()>| {
        inner.borrow_mut().push("setup");
        yield_now().await;
        let (n, _) = cx.provide(41).await;
        inner.borrow_mut().push(if n == 42 { "teardown saw 42" } else { "teardown saw something else" });
        Ok(())
    });
    let ex = smol::LocalExecutor::new();
    let out = smol::block_on(ex.run(with_local(ctx, async |n| {
        *n += 1;
        Ok(*n)
    })));
    assert_eq!(out.unwrap(), 42);
    assert_eq!(*log.borrow(), ["setup", "teardown saw 42"]);
}
