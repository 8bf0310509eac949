//! Generator contexts driven by hostile closures: destructors that panic, `provide` futures that
//! are dropped or polled from another task, a `Cx` kept past its closure. Each misuse gets its own
//! clear message, the body's error is never lost (the caller or, during a panic, the error hook
//! gets it), and nothing hangs (G5, G6, G9).

mod common;

use std::future::{Future, pending};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_with::{
    Cx, Error, ExitStack, IntoContext, LocalExitStack, Outcome, Scope, context, with, with_local,
};
use common::{Act, Journal, block_on_catching, catching, describe, journaling_scope, yield_now};
use futures::StreamExt;
use futures::executor::{LocalPool, block_on};
use futures::stream::FuturesUnordered;
use futures::task::LocalSpawnExt;

const TWICE: &str = "async-with: `provide` was called twice in one generator context";
const NEVER: &str = "async-with: a generator context returned without calling `provide`";
const KEPT: &str = "async-with: a generator context's `Cx` outlived its closure and kept the scope's error";
const DROPPED: &str = "async-with: a generator context returned before its `provide` future resumed (was the `provide` future dropped?)";
const ENDED: &str = "async-with: `provide` was polled after its generator context ended";
const HAD_THE_VALUE: &str = "async-with: a generator context returned while its body had the value (was the `provide` future dropped?)";

/// A value whose destructor journals `drop {name}`, then panics if asked to.
struct Noisy {
    name: &'static str,
    journal: Journal,
    panics: bool,
}

impl Noisy {
    fn new(journal: &Journal, name: &'static str, panics: bool) -> Self {
        Noisy { name, journal: journal.clone(), panics }
    }
}

impl Drop for Noisy {
    fn drop(&mut self) {
        self.journal.push(format!("drop {}", self.name));
        if self.panics {
            panic!("drop {} panicked", self.name);
        }
    }
}

/// A generator whose setup keeps a local `local` alive across `provide`, and provides `value`.
/// `alive` is held by the closure's future and by the value, so a leak of either shows.
fn noisy(
    j: &Journal,
    alive: &Arc<()>,
    value_panics: bool,
    local_panics: bool,
) -> impl IntoContext<Value = Noisy, Error = String> + use<> {
    let (j, alive) = (j.clone(), alive.clone());
    context(async move |mut cx: Cx<Noisy, String>| {
        let _local = (Noisy::new(&j, "local", local_panics), alive.clone());
        let value = Noisy::new(&j, "value", value_panics);
        let (value, _) = cx.provide(value).await;
        drop((value, alive));
        j.push("teardown");
        Ok(())
    })
}

/// Runs `f` on a thread of its own; fails the test instead of hanging if it has not returned
/// within `seconds`.
fn within<T: Send + 'static>(seconds: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match outcome.recv_timeout(Duration::from_secs(seconds)) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => resume_unwind(payload),
        Err(_) => panic!("hung: still running after {seconds} s"),
    }
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

// ----- Issue 13, item 2: a stack dropped without closing, with a panicking destructor. -----

#[test]
fn a_stack_dropped_unclosed_contains_a_panicking_value_and_still_drops_the_closure() {
    for (value_panics, local_panics) in [(true, false), (false, true), (true, true)] {
        let j = Journal::new();
        let alive = Arc::new(());
        let stack = ExitStack::<String>::new();
        block_on(async { stack.enter(noisy(&j, &alive, value_panics, local_panics)).await.map(|_| ()) })
            .unwrap();
        let dropped = catch_unwind(AssertUnwindSafe(move || drop(stack)));
        assert!(
            dropped.is_ok(),
            "a destructor's panic escaped the stack's drop ({value_panics}, {local_panics})"
        );
        assert_eq!(j.take(), ["drop value", "drop local"], "({value_panics}, {local_panics})");
        assert_eq!(Arc::strong_count(&alive), 1, "the closure's future or the value leaked");
    }
}

#[test]
fn a_local_stack_dropped_unclosed_contains_a_panicking_value_and_still_drops_the_closure() {
    let j = Journal::new();
    let alive = Arc::new(());
    let stack = LocalExitStack::<String>::new();
    block_on(async { stack.enter(noisy(&j, &alive, true, false)).await.map(|_| ()) }).unwrap();
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(stack)));
    assert!(dropped.is_ok(), "the value's panic escaped the stack's drop");
    assert_eq!(j.take(), ["drop value", "drop local"]);
    assert_eq!(Arc::strong_count(&alive), 1, "the closure's future or the value leaked");
}

#[test]
fn a_dropped_with_contains_a_panicking_value_and_drops_the_closure_at_once() {
    let j = Journal::new();
    let alive = Arc::new(());
    let mut scope = Box::pin(with(noisy(&j, &alive, true, false), async |_| {
        pending::<()>().await;
        Ok(())
    }));
    assert!(poll_once(scope.as_mut()).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(move || drop(scope)));
    assert!(dropped.is_ok(), "the value's panic escaped the scope's drop");
    assert_eq!(j.take(), ["drop value", "drop local"]);
    assert_eq!(Arc::strong_count(&alive), 1, "the closure's future or the value leaked");
}

// ----- Item 13: one fallback order, in `with` and in exit stacks. -----

#[test]
fn the_fallback_drops_the_value_then_the_setup_locals_in_with_and_in_stacks() {
    let j = Journal::new();
    let alive = Arc::new(());

    let mut scope = Box::pin(with(noisy(&j, &alive, false, false), async |_| {
        pending::<()>().await;
        Ok(())
    }));
    assert!(poll_once(scope.as_mut()).is_pending());
    drop(scope);
    assert_eq!(j.take(), ["drop value", "drop local"], "with");

    let stack = ExitStack::<String>::new();
    block_on(async { stack.enter(noisy(&j, &alive, false, false)).await.map(|_| ()) }).unwrap();
    drop(stack);
    assert_eq!(j.take(), ["drop value", "drop local"], "ExitStack");

    let stack = LocalExitStack::<String>::new();
    block_on(async { stack.enter(noisy(&j, &alive, false, false)).await.map(|_| ()) }).unwrap();
    drop(stack);
    assert_eq!(j.take(), ["drop value", "drop local"], "LocalExitStack");

    // A scope over a stack, dropped while its body holds the entry.
    let mut scope = Box::pin(async_with::scope(async |stack: &mut ExitStack<String>| {
        stack.enter(noisy(&j, &alive, false, false)).await?;
        pending::<()>().await;
        Ok(())
    }));
    assert!(poll_once(scope.as_mut()).is_pending());
    drop(scope);
    assert_eq!(j.take(), ["drop value", "drop local"], "scope");
    assert_eq!(Arc::strong_count(&alive), 1);
}

// ----- Item 3: a `provide` future dropped after one poll. -----

/// A generator that hands its value over with a `provide` future it then drops (by hand, or by
/// losing a `select`), so that the body runs; its teardown then returns `Ok`, or calls `provide`
/// again.
fn drops_its_provide(
    j: &Journal,
    by_select: bool,
    provide_again: bool,
) -> impl IntoContext<Value = u8, Error = String> + use<> {
    let j = j.clone();
    context(async move |mut cx: Cx<u8, String>| {
        if by_select {
            let lost = futures::future::select(cx.provide(1), std::future::ready(())).await;
            assert!(matches!(lost, futures::future::Either::Right(_)), "`ready` wins the second poll");
        } else {
            let mut provide = Box::pin(cx.provide(1));
            std::future::poll_fn(|task| {
                assert!(provide.as_mut().poll(task).is_pending());
                Poll::Ready(())
            })
            .await;
        }
        yield_now().await; // the scope runs the body meanwhile
        j.push("teardown");
        if provide_again {
            let _ = cx.provide(2).await;
            unreachable!("the second provide never resumes");
        }
        Ok(())
    })
}

#[test]
fn a_dropped_provide_is_reported_and_the_body_error_reaches_the_hook() {
    for by_select in [false, true] {
        let j = Journal::new();
        let ctxs = (j.probe("a"), drops_its_provide(&j, by_select, false));
        let panic = block_on_catching(
            journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body".to_string().into())),
        );
        assert_eq!(panic.unwrap_err(), DROPPED, "select: {by_select}");
        assert_eq!(
            j.take(),
            ["enter a", "teardown", "exit a: Panicked", "hook: body"],
            "select: {by_select}"
        );
    }
}

#[test]
fn a_dropped_provide_then_a_second_provide_is_reported_as_called_twice() {
    for by_select in [false, true] {
        let j = Journal::new();
        let ctxs = (j.probe("a"), drops_its_provide(&j, by_select, true));
        let panic = block_on_catching(
            journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body".to_string().into())),
        );
        assert_eq!(panic.unwrap_err(), TWICE, "select: {by_select}");
        assert_eq!(
            j.take(),
            ["enter a", "teardown", "exit a: Panicked", "hook: body"],
            "select: {by_select}"
        );
    }
}

#[test]
fn a_dropped_provide_in_an_exit_stack_is_reported_the_same_way() {
    for provide_again in [false, true] {
        let j = Journal::new();
        let ctx = drops_its_provide(&j, false, provide_again);
        let panic = block_on_catching(journaling_scope(&j).scope(async |stack: &mut ExitStack<String>| {
            stack.enter(ctx).await?;
            Err::<(), _>("body".to_string().into())
        }));
        assert_eq!(panic.unwrap_err(), if provide_again { TWICE } else { DROPPED });
        assert_eq!(j.take(), ["teardown", "hook: body"]);
    }
}

#[test]
fn a_dropped_provide_after_a_clean_body_is_still_reported() {
    let j = Journal::new();
    let panic = block_on_catching(with(drops_its_provide(&j, false, false), async |_| Ok(())));
    assert_eq!(panic.unwrap_err(), DROPPED);
    assert_eq!(j.take(), ["teardown"]);
}

#[test]
fn a_setup_that_drops_its_provide_and_fails_is_reported_and_keeps_its_error() {
    let j = Journal::new();
    let ctx = context(async |mut cx: Cx<u8, String>| {
        let mut provide = Box::pin(cx.provide(1));
        std::future::poll_fn(|task| {
            assert!(provide.as_mut().poll(task).is_pending());
            Poll::Ready(())
        })
        .await;
        drop(provide);
        Err("setup failed".to_string())
    });
    let panic = block_on_catching(
        journaling_scope(&j).with(ctx, async |_| -> Result<(), Error<String>> { unreachable!("no body") }),
    );
    assert_eq!(panic.unwrap_err(), HAD_THE_VALUE);
    assert_eq!(j.take(), ["hook: setup failed"]);
}

// ----- Item 4: `provide` awaited in another task. -----

/// A generator whose closure moves its `Cx` into a task it spawns with `spawn`, awaits the
/// task's handle, and returns the task's result. The task provides `conn` and journals what its
/// teardown saw.
fn provides_in_a_task<S, H>(
    j: &Journal,
    spawn: S,
) -> impl IntoContext<Value = String, Error = String> + use<S, H>
where
    S: FnOnce(std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>) -> H + Send + 'static,
    H: Future<Output = Result<(), String>> + Send + 'static,
{
    let j = j.clone();
    context(async move |mut cx: Cx<String, String>| {
        let task = spawn(Box::pin(async move {
            yield_now().await;
            let (conn, outcome) = cx.provide("conn".to_string()).await;
            yield_now().await;
            j.push(format!("teardown {conn}: {}", describe(outcome)));
            Err("teardown failed".to_string())
        }));
        task.await
    })
}

fn check_provided_in_a_task(j: &Journal, result: Result<(), Error<String>>) {
    let err = result.unwrap_err();
    assert_eq!(err.iter().map(String::as_str).collect::<Vec<_>>(), ["body used conn", "teardown failed"]);
    assert_eq!(j.take(), ["teardown conn: Failed(body used conn)"]);
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn provide_in_a_task_spawned_on_a_multi_threaded_tokio_runtime_works() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_time().build().unwrap();
    for _ in 0..200 {
        let j = Journal::new();
        let ctx = provides_in_a_task(&j, |task| async move { tokio::spawn(task).await.unwrap() });
        let scope = with(ctx, async |conn| Err::<(), _>(format!("body used {conn}").into()));
        let out =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), tokio::spawn(scope)).await });
        check_provided_in_a_task(&j, out.expect("hung: the scope never finished").unwrap());
    }
}

#[test]
fn provide_in_a_task_spawned_on_a_futures_thread_pool_works() {
    within(30, || {
        use futures::task::SpawnExt;
        let pool = futures::executor::ThreadPool::builder().pool_size(3).create().unwrap();
        // Under Miri, a few rounds still explore its thread interleavings.
        for _ in 0..if cfg!(miri) { 3 } else { 200 } {
            let j = Journal::new();
            let spawner = pool.clone();
            let ctx = provides_in_a_task(&j, move |task| spawner.spawn_with_handle(task).unwrap());
            let result = block_on(with(ctx, async |conn| Err::<(), _>(format!("body used {conn}").into())));
            check_provided_in_a_task(&j, result);
        }
    });
}

#[test]
fn provide_in_a_local_task_on_the_same_thread_works() {
    within(30, || {
        let j = Journal::new();
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let ctx = {
            let j = j.clone();
            context(async move |mut cx: Cx<String, String>| {
                let j = j.clone();
                let task = spawner
                    .spawn_local_with_handle(async move {
                        let (conn, outcome) = cx.provide("conn".to_string()).await;
                        j.push(format!("teardown {conn}: {}", describe(outcome)));
                        Err::<(), _>("teardown failed".to_string())
                    })
                    .unwrap();
                task.await
            })
        };
        let result =
            pool.run_until(with_local(ctx, async |conn| Err::<(), _>(format!("body used {conn}").into())));
        check_provided_in_a_task(&j, result);
    });
}

#[test]
fn provide_polled_by_a_futures_unordered_is_woken_when_the_body_ends() {
    within(30, || {
        let j = Journal::new();
        let jj = j.clone();
        let ctx = context(async move |mut cx: Cx<u8, String>| {
            let mut set = FuturesUnordered::new();
            set.push(cx.provide(1));
            let (one, outcome) = set.next().await.expect("one provide");
            jj.push(format!("teardown {one}: {}", describe(outcome)));
            Ok(())
        });
        assert_eq!(block_on(with(ctx, async |one| Ok(*one + 1))).unwrap(), 2);
        assert_eq!(j.take(), ["teardown 1: Completed"]);
    });
}

#[test]
fn a_provide_in_a_task_after_its_context_ended_panics_instead_of_hanging() {
    within(30, || {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let (go, wait) = futures::channel::oneshot::channel::<()>();
        let (report, reported) = futures::channel::oneshot::channel();
        let ctx = context(async move |mut cx: Cx<u8, String>| {
            spawner
                .spawn_local(async move {
                    let provided = catching(async move {
                        wait.await.unwrap();
                        let _ = cx.provide(1).await;
                    })
                    .await;
                    report.send(provided).unwrap();
                })
                .unwrap();
            Ok(()) // returns without waiting for the task, which has the `Cx`
        });
        let panic = pool.run_until(catching(with_local(ctx, async |_| Ok(()))));
        assert_eq!(panic.unwrap_err(), NEVER);
        go.send(()).unwrap();
        assert_eq!(pool.run_until(reported).unwrap().unwrap_err(), ENDED);
    });
}

#[test]
fn a_provide_in_a_task_after_its_scope_was_dropped_during_setup_panics_instead_of_hanging() {
    within(30, || {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let (go, wait) = futures::channel::oneshot::channel::<()>();
        let (report, reported) = futures::channel::oneshot::channel();
        let ctx = context(async move |mut cx: Cx<u8, String>| {
            spawner
                .spawn_local(async move {
                    let provided = catching(async move {
                        wait.await.unwrap();
                        let _ = cx.provide(1).await;
                    })
                    .await;
                    report.send(provided).unwrap();
                })
                .unwrap();
            pending().await // the setup never ends: the scope is dropped while it waits
        });
        let mut scope = Box::pin(with_local(ctx, async |_| Ok::<_, Error<String>>(())));
        assert!(poll_once(scope.as_mut()).is_pending());
        drop(scope); // no exit, no fallback: only the drop of the context ends the hand-over
        go.send(()).unwrap();
        assert_eq!(pool.run_until(reported).unwrap().unwrap_err(), ENDED);
    });
}

#[test]
fn a_provide_in_a_task_waiting_when_the_closure_returns_panics_instead_of_hanging() {
    within(30, || {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let (report, reported) = futures::channel::oneshot::channel();
        let (handed, handed_over) = futures::channel::oneshot::channel::<()>();
        let ctx = context(async move |mut cx: Cx<u8, String>| {
            spawner
                .spawn_local(async move {
                    let provided = catching(async move {
                        let mut provide = pin!(cx.provide(1));
                        let mut handed = Some(handed);
                        let _ = std::future::poll_fn(|task| {
                            let polled = provide.as_mut().poll(task);
                            if let Some(handed) = handed.take() {
                                handed.send(()).unwrap();
                            }
                            polled
                        })
                        .await;
                    })
                    .await;
                    report.send(provided).unwrap();
                })
                .unwrap();
            handed_over.await.unwrap();
            yield_now().await;
            Ok(()) // the body is over, but the task's `provide` was never resumed
        });
        let panic =
            pool.run_until(catching(journaling_scope(&Journal::new()).with_local(ctx, async |_| Ok(()))));
        assert_eq!(panic.unwrap_err(), DROPPED);
        assert_eq!(pool.run_until(reported).unwrap().unwrap_err(), ENDED);
    });
}

// ----- The other misuse paths: exact messages, no lost error. -----

#[test]
fn never_providing_is_reported_and_the_other_errors_reach_the_hook() {
    let j = Journal::new();
    let silent = context(async |_cx: Cx<u8, String>| Ok(()));
    let panic = block_on_catching(
        journaling_scope(&j)
            .with((j.probe("a").exit(Act::Fail), silent), async |_| Ok::<(), Error<String>>(())),
    );
    assert_eq!(panic.unwrap_err(), NEVER);
    assert_eq!(j.take(), ["enter a", "exit a: Panicked", "hook: exit a failed"]);

    let silent = context(async |_cx: Cx<u8, String>| Ok(()));
    let panic = block_on_catching(journaling_scope(&j).scope(async |stack: &mut ExitStack<String>| {
        let _ = stack.callback(|| Err("callback failed".to_string()));
        stack.enter(silent).await?;
        Ok(())
    }));
    assert_eq!(panic.unwrap_err(), NEVER);
    assert_eq!(j.take(), ["hook: callback failed"]);
}

/// A generator that provides, journals its teardown, then provides again.
fn provides_twice(j: &Journal) -> impl IntoContext<Value = u8, Error = String> + use<> {
    let j = j.clone();
    context(async move |mut cx: Cx<u8, String>| {
        let (_, outcome) = cx.provide(1).await;
        j.push(format!("teardown: {}", describe(outcome)));
        let _ = cx.provide(2).await;
        unreachable!("the second provide never resumes")
    })
}

#[test]
fn providing_twice_is_reported_and_the_body_error_reaches_the_hook() {
    let j = Journal::new();
    let ctxs = (j.probe("a"), provides_twice(&j));
    let panic =
        block_on_catching(journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body".to_string().into())));
    assert_eq!(panic.unwrap_err(), TWICE);
    assert_eq!(j.take(), ["enter a", "teardown: Failed(body)", "exit a: Panicked", "hook: body"]);

    let ctx = provides_twice(&j);
    let panic = block_on_catching(journaling_scope(&j).scope(async |stack: &mut ExitStack<String>| {
        stack.enter(ctx).await?;
        Err::<(), _>("body".to_string().into())
    }));
    assert_eq!(panic.unwrap_err(), TWICE);
    assert_eq!(j.take(), ["teardown: Failed(body)", "hook: body"]);
}

#[test]
fn providing_twice_during_setup_is_reported() {
    let j = Journal::new();
    let ctx = context(async |mut cx: Cx<u8, String>| {
        let mut first = Box::pin(cx.provide(1));
        std::future::poll_fn(|task| {
            assert!(first.as_mut().poll(task).is_pending());
            Poll::Ready(())
        })
        .await;
        drop(first);
        let _ = cx.provide(2).await;
        unreachable!("the second provide never resumes")
    });
    let panic = block_on_catching(
        journaling_scope(&j).with((j.probe("a").exit(Act::Fail), ctx), async |_| Ok::<(), Error<String>>(())),
    );
    assert_eq!(panic.unwrap_err(), TWICE);
    assert_eq!(j.take(), ["enter a", "exit a: Panicked", "hook: exit a failed"]);
}

#[test]
fn a_cx_kept_past_its_closure_is_reported_and_the_other_errors_reach_the_hook() {
    static STASH: Mutex<Vec<Cx<u8, String>>> = Mutex::new(Vec::new());
    let j = Journal::new();
    let keeps = context(async |mut cx: Cx<u8, String>| {
        let (_, outcome) = cx.provide(1).await;
        assert!(outcome.is_failed());
        STASH.lock().unwrap().push(cx); // the lent error goes with it
        Err("teardown failed".to_string())
    });
    let ctxs = (j.probe("a").exit(Act::Fail), keeps);
    let panic =
        block_on_catching(journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body".to_string().into())));
    assert_eq!(panic.unwrap_err(), KEPT);
    // The body's error stays with the kept `Cx` (which owns it, and which no scope can reach);
    // everything else reaches the hook.
    assert_eq!(j.take(), ["enter a", "exit a: Panicked", "hook: teardown failed", "hook: exit a failed"]);
    // Dropping the kept `Cx` later is harmless: it has nowhere to give the error back.
    STASH.lock().unwrap().clear();
}

#[test]
fn a_cx_kept_by_a_task_past_its_closure_is_reported() {
    within(30, || {
        let mut pool = LocalPool::new();
        let spawner = pool.spawner();
        let (release, released) = futures::channel::oneshot::channel::<()>();
        let keeps = context(async move |mut cx: Cx<u8, String>| {
            let (_, outcome) = cx.provide(1).await;
            assert!(outcome.is_failed());
            spawner
                .spawn_local(async move {
                    released.await.unwrap();
                    drop(cx);
                })
                .unwrap();
            Ok(())
        });
        let j = Journal::new();
        let panic = pool.run_until(catching(
            journaling_scope(&j).with_local(keeps, async |_| Err::<(), _>("body".to_string().into())),
        ));
        assert_eq!(panic.unwrap_err(), KEPT);
        release.send(()).unwrap();
        pool.run();
        assert!(j.take().is_empty());
    });
}

#[test]
fn a_panicking_teardown_resumes_and_the_body_error_reaches_the_hook() {
    let j = Journal::new();
    let panics = |j: &Journal| {
        let j = j.clone();
        context(async move |mut cx: Cx<u8, String>| {
            let (_, outcome) = cx.provide(1).await;
            j.push(format!("teardown: {}", describe(outcome)));
            panic!("teardown panicked")
        })
    };
    let ctxs = (j.probe("a").exit(Act::Fail), panics(&j));
    let panic =
        block_on_catching(journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body".to_string().into())));
    assert_eq!(panic.unwrap_err(), "teardown panicked");
    assert_eq!(
        j.take(),
        ["enter a", "teardown: Failed(body)", "exit a: Panicked", "hook: body", "hook: exit a failed"]
    );

    let ctx = panics(&j);
    let panic = block_on_catching(journaling_scope(&j).scope(async |stack: &mut ExitStack<String>| {
        let _ = stack.callback(|| Err("callback failed".to_string()));
        stack.enter(ctx).await?;
        Err::<(), _>("body".to_string().into())
    }));
    assert_eq!(panic.unwrap_err(), "teardown panicked");
    assert_eq!(j.take(), ["teardown: Failed(body)", "hook: body", "hook: callback failed"]);
}

#[test]
fn a_panicking_setup_resumes_and_the_other_errors_reach_the_hook() {
    let j = Journal::new();
    let panics = || {
        context(async |mut cx: Cx<u8, String>| {
            yield_now().await;
            if true {
                panic!("setup panicked");
            }
            let _ = cx.provide(1).await;
            Ok(())
        })
    };
    let ctxs = (j.probe("a").exit(Act::Fail), panics());
    let panic = block_on_catching(
        journaling_scope(&j).with(ctxs, async |_| -> Result<(), Error<String>> { unreachable!() }),
    );
    assert_eq!(panic.unwrap_err(), "setup panicked");
    assert_eq!(j.take(), ["enter a", "exit a: Panicked", "hook: exit a failed"]);

    let ctx = panics();
    let panic = block_on_catching(journaling_scope(&j).scope(async |stack: &mut ExitStack<String>| {
        let _ = stack.callback(|| Err("callback failed".to_string()));
        stack.enter(ctx).await?;
        Ok(())
    }));
    assert_eq!(panic.unwrap_err(), "setup panicked");
    assert_eq!(j.take(), ["hook: callback failed"]);
}

#[test]
fn a_teardown_error_after_a_clean_body_is_returned() {
    // The baseline the misuse tests are measured against: no misuse, every error returned.
    let ctx = context(async |mut cx: Cx<u8, String>| {
        let (_, outcome) = cx.provide(1).await;
        assert!(matches!(outcome, Outcome::Completed));
        Err("teardown failed".to_string())
    });
    let err = block_on(with(ctx, async |_| Ok(()))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "teardown failed");
}

// ----- The scope's own rules (issue 13, items 1 and 12) on the generator's paths: a deadline or
// a destructor that panics while the scope drives the closure is a panic of the scope. -----

/// A signal that panics with `message` on its `n + 1`-th poll.
fn panics_on_poll(n: usize, message: &'static str) -> impl Future<Output = ()> + Send {
    let mut polls = 0;
    std::future::poll_fn(move |cx| {
        polls += 1;
        if polls > n {
            panic!("{message}");
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

#[test]
fn a_deadline_that_panics_during_a_teardown_lets_it_finish_and_the_other_exits_run() {
    let j = Journal::new();
    let jj = j.clone();
    let slow = context(async move |mut cx: Cx<u8, String>| {
        let (_, outcome) = cx.provide(1).await;
        yield_now().await;
        jj.push(format!("teardown: {}", describe(outcome)));
        Ok(())
    });
    let panic = block_on_catching(
        Scope::new()
            .exit_deadline(|| async {
                panics_on_poll(0, "the deadline broke").await;
                String::from("never")
            })
            .with((j.probe("a"), slow), async |_| Ok(())),
    );
    assert_eq!(panic.unwrap_err(), "the deadline broke");
    assert_eq!(j.take(), ["enter a", "teardown: Completed", "exit a: Panicked"]);
}

#[test]
fn a_destructor_that_panics_in_a_teardown_past_its_deadline_is_a_panic_of_the_scope() {
    let j = Journal::new();
    let jj = j.clone();
    let stuck = context(async move |mut cx: Cx<u8, String>| {
        let _ = cx.provide(1).await;
        let _guard = Noisy::new(&jj, "guard", true);
        pending::<()>().await;
        Ok(())
    });
    // Each exit's deadline passes at its second poll: `a`'s exit is done by then.
    let scope = journaling_scope(&j).exit_deadline(|| async {
        common::ready_on_poll(1).await;
        String::from("too slow")
    });
    let panic = block_on_catching(scope.with((j.probe("a"), stuck), async |_| Ok(())));
    assert_eq!(panic.unwrap_err(), "drop guard panicked");
    assert_eq!(j.take(), ["enter a", "drop guard", "exit a: Panicked", "hook: too slow"]);
}

#[test]
fn a_destructor_that_panics_in_an_interrupted_setup_is_a_panic_of_the_scope() {
    let j = Journal::new();
    let jj = j.clone();
    let stuck = context(async move |mut cx: Cx<u8, String>| {
        let _guard = Noisy::new(&jj, "guard", true);
        pending::<()>().await;
        let _ = cx.provide(1).await;
        Ok(())
    });
    // `a` enters at the second poll, the setup starts then; the third poll interrupts it.
    let scope = Scope::new().cancel_on(common::ready_on_poll(2)).interrupt_enters();
    let panic = block_on_catching(
        scope.with((j.probe("a"), stuck), async |_| -> Result<(), Error<String>> { unreachable!("no body") }),
    );
    assert_eq!(panic.unwrap_err(), "drop guard panicked");
    assert_eq!(j.take(), ["enter a", "drop guard", "exit a: Panicked"]);
}

#[test]
fn a_signal_that_panics_while_a_setup_is_interrupted_resumes_after_the_exits() {
    let j = Journal::new();
    let jj = j.clone();
    let stuck = context(async move |mut cx: Cx<u8, String>| {
        let _guard = Noisy::new(&jj, "setup's guard", false);
        pending::<()>().await;
        let _ = cx.provide(1).await;
        Ok(())
    });
    let scope = Scope::new().cancel_on(panics_on_poll(2, "the signal broke")).interrupt_enters();
    let panic = block_on_catching(
        scope.with((j.probe("a"), stuck), async |_| -> Result<(), Error<String>> { unreachable!("no body") }),
    );
    assert_eq!(panic.unwrap_err(), "the signal broke");
    assert_eq!(j.take(), ["enter a", "drop setup's guard", "exit a: Panicked"]);
}
