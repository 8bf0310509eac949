//! `join` really is concurrent, on every executor: both enters and both exits make progress
//! together (an exit that waits for its sibling's exit finishes), and a cancellation during the
//! concurrent enter exits the branch that entered and never the one that was interrupted.

mod common;

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use async_with::{Error, ExitStack, IntoContext, Outcome, Scope, join, join_all, resource, with};
use common::{Journal, describe, ready_on_poll};
use futures::channel::oneshot;

/// Runs `make()`'s future on a fresh thread with `block_on`; `None` if it has not finished after
/// ten seconds (it deadlocked: no executor takes that long for a few polls).
fn finishes<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    block_on: fn(F) -> T,
    make: impl FnOnce() -> F + Send + 'static,
) -> Option<T> {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(block_on(make()));
    });
    finished.recv_timeout(Duration::from_secs(10)).ok()
}

fn on_futures<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}
fn on_smol<F: Future>(f: F) -> F::Output {
    smol::block_on(f)
}
fn on_async_std<F: Future>(f: F) -> F::Output {
    async_std::task::block_on(f)
}
fn on_tokio<F: Future + Send + 'static>(f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move { tokio::spawn(f).await.unwrap() })
}

/// A context whose exit first sends on each of `tell`, then waits on `wait` (if any).
fn peer(
    journal: &Journal,
    name: &'static str,
    tell: Vec<oneshot::Sender<()>>,
    wait: Option<oneshot::Receiver<()>>,
) -> impl IntoContext<Value = String, Error = String> + use<> {
    // An owned value: a borrowed one trips rust-lang/rust#110338 in spawned scopes.
    let journal = journal.clone();
    resource(
        async move || Ok(name.to_string()),
        async move |name, outcome: Outcome<'_, String>| {
            for tell in tell {
                let _ = tell.send(());
            }
            if let Some(wait) = wait {
                wait.await.map_err(|_| format!("{name}'s peer went away"))?;
            }
            journal.push(format!("exit {name}: {}", describe(outcome)));
            Ok(())
        },
    )
}

/// The first branch's exit waits for the second's (`second_waits`: the other way round). Run
/// one exit after the other, one of the two orders would wait forever.
fn exits_that_wait_for_each_other(second_waits: bool) -> (Journal, impl Future<Output = Result<(), String>>) {
    let journal = Journal::new();
    let (tx, rx) = oneshot::channel();
    let both = if second_waits {
        join(peer(&journal, "a", vec![tx], None), peer(&journal, "b", vec![], Some(rx)))
    } else {
        join(peer(&journal, "a", vec![], Some(rx)), peer(&journal, "b", vec![tx], None))
    };
    let scope = async move { with(both, async |_| Ok(())).await.map_err(|e| e.to_string()) };
    (journal, scope)
}

macro_rules! exits_run_concurrently_on {
    ($name:ident, $block_on:ident) => {
        #[test]
        #[cfg_attr(miri, ignore = "the runtime calls into the OS")]
        fn $name() {
            for second_waits in [false, true] {
                let (journal, scope) = exits_that_wait_for_each_other(second_waits);
                let out = finishes($block_on, move || scope);
                assert_eq!(out, Some(Ok(())), "the exits deadlocked (second_waits: {second_waits})");
                let mut lines = journal.take();
                lines.sort();
                assert_eq!(lines, ["exit a: Completed", "exit b: Completed"]);
            }
        }
    };
}

exits_run_concurrently_on!(exits_run_concurrently_on_futures_executor, on_futures);
exits_run_concurrently_on!(exits_run_concurrently_on_smol, on_smol);
exits_run_concurrently_on!(exits_run_concurrently_on_async_std, on_async_std);
exits_run_concurrently_on!(exits_run_concurrently_on_tokio_multi_thread, on_tokio);

/// Enters that wait for each other too: `a`'s enter needs `b`'s to have started.
#[test]
fn enters_run_concurrently() {
    let out = finishes(on_futures, || async {
        let (tx, rx) = oneshot::channel::<()>();
        let a = resource(
            async move || rx.await.map_err(|_| "no b".to_string()),
            async |(), _: Outcome<'_, String>| Ok(()),
        );
        let b = resource(
            async move || {
                let _ = tx.send(());
                Ok(())
            },
            async |(), _: Outcome<'_, String>| Ok(()),
        );
        with(join(a, b), async |_| Ok(())).await.map_err(|e| e.to_string())
    });
    assert_eq!(out, Some(Ok(())), "the enters deadlocked");
}

/// `b`'s enter never finishes on its own; `a`'s finishes at once.
fn slow_and_fast(journal: &Journal) -> impl IntoContext<Value = ((), ()), Error = String> + use<> {
    let (ja, jb1, jb2) = (journal.clone(), journal.clone(), journal.clone());
    let a = resource(
        async move || {
            ja.push("enter a");
            Ok(())
        },
        async move |(), outcome: Outcome<'_, String>| {
            jb1.push(format!("exit a: {}", describe(outcome)));
            Ok(())
        },
    );
    let b = resource(
        async move || {
            ready_on_poll(5).await;
            jb2.push("enter b");
            Ok(())
        },
        async |(), _: Outcome<'_, String>| -> Result<(), String> {
            panic!("b's enter was interrupted: never exited")
        },
    );
    join(a, b)
}

#[test]
fn an_interrupted_concurrent_enter_is_never_exited_and_the_entered_branch_is() {
    let journal = Journal::new();
    let scope = Scope::new().cancel_on(ready_on_poll(2)).interrupt_enters();
    let error = on_futures(scope.with(slow_and_fast(&journal), async |_| -> Result<(), Error<String>> {
        unreachable!("cancelled before the body")
    }))
    .unwrap_err();
    assert!(error.is_cancelled());
    assert_eq!(journal.take(), ["enter a", "exit a: Cancelled"]);
}

#[test]
fn without_interrupting_enters_a_cancellation_lets_both_enters_finish_then_exits_both() {
    let journal = Journal::new();
    let j = journal.clone();
    let (a, b) = (journal.probe("a"), journal.probe("b"));
    // Fires while both enter (each yields once).
    let scope = Scope::new().cancel_on(ready_on_poll(1));
    let error = on_futures(scope.with(join(a, b), async |_| -> Result<(), Error<String>> {
        j.push("body");
        Ok(())
    }))
    .unwrap_err();
    assert!(error.is_cancelled());
    assert_eq!(journal.take(), ["enter a", "enter b", "exit a: Cancelled", "exit b: Cancelled"]);
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn join_all_exits_concurrently_too() {
    let out = finishes(on_smol, || async {
        let journal = Journal::new();
        let (tx, rx) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        // The first and the last wait for the middle one: exiting one after the other, in the
        // order of the list or in reverse, would wait forever.
        let all = join_all([
            peer(&journal, "first", vec![], Some(rx)),
            peer(&journal, "middle", vec![tx, tx2], None),
            peer(&journal, "last", vec![], Some(rx2)),
        ]);
        with(all, async |names| Ok(names.len())).await.map_err(|e| e.to_string())
    });
    assert_eq!(out, Some(Ok(3)), "the exits deadlocked");
}

#[test]
fn a_stack_in_one_branch_shows_its_exits_the_error_both_branches_share() {
    let journal = Journal::new();
    let j = journal.clone();
    let stack = ExitStack::<String>::new();
    stack.push_exit(async move |outcome: Outcome<'_, String>| {
        j.push(format!("stack exit: {}", describe(outcome)));
        Ok(())
    });
    let error =
        on_futures(with(join(stack, journal.probe("b")), async |_| Err::<(), _>("boom".to_string().into())))
            .unwrap_err();
    assert_eq!(error.primary(), Some(&"boom".to_string()));
    let mut seen = journal.take();
    seen.sort();
    assert_eq!(seen, ["enter b", "exit b: Failed(boom)", "stack exit: Failed(boom)"]);
}

#[test]
fn a_cancellation_after_a_failed_concurrent_enter_leaves_the_scope_failed() {
    let journal = Journal::new();
    let (ja, jb) = (journal.clone(), journal.clone());
    let a = resource(
        async || Err::<(), _>("a failed".to_string()),
        async |(), _: Outcome<'_, String>| unreachable!("a failed enter is never exited"),
    );
    let b = resource(
        async move || {
            ready_on_poll(5).await;
            ja.push("enter b");
            Ok(())
        },
        async move |(), outcome: Outcome<'_, String>| {
            jb.push(format!("exit b: {}", describe(outcome)));
            Ok(())
        },
    );
    // The signal fires while `b` still enters, after `a` failed: too late to be the cause.
    let scope = Scope::new().cancel_on(ready_on_poll(2));
    let error = on_futures(
        scope.with(join(a, b), async |_| -> Result<(), Error<String>> { unreachable!("an enter failed") }),
    )
    .unwrap_err();
    assert!(!error.is_cancelled(), "{error:?}");
    assert_eq!(error.primary(), Some(&"a failed".to_string()));
    assert_eq!(journal.take(), ["enter b", "exit b: Failed(a failed)"]);
}
