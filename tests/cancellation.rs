//! G7, cooperative cancellation: a signal fired during the body drops the body and runs every
//! exit to completion with `Cancelled`; during an enter, the enter finishes (or is interrupted,
//! by choice) and nothing more is entered; exits are shielded and bounded by a deadline. And
//! cancellation by drop: the synchronous fallbacks run, newest first, or the scope finishes in a
//! detached task.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use async_with::{
    AsyncContext, CancellationToken, Cx, Error, ExitStack, Outcome, Scope, context, detach_on_drop, resource,
};
use common::{Act, Journal, describe, ready_on_poll, yield_now};
use futures::executor::block_on;

/// A context whose enter and exit wait for `gate` to open before they finish.
struct Gated {
    name: &'static str,
    journal: Journal,
    enter_gate: Option<CancellationToken>,
    exit_gate: Option<CancellationToken>,
}

impl Gated {
    fn new(journal: &Journal, name: &'static str) -> Self {
        Gated { name, journal: journal.clone(), enter_gate: None, exit_gate: None }
    }
}

impl AsyncContext for Gated {
    type Value = &'static str;
    type Error = String;
    async fn enter(&mut self) -> Result<&'static str, String> {
        self.journal.push(format!("entering {}", self.name));
        if let Some(gate) = &self.enter_gate {
            gate.cancelled().await;
        }
        self.journal.push(format!("enter {}", self.name));
        Ok(self.name)
    }
    async fn exit(self, _: &'static str, outcome: Outcome<'_, String>) -> Result<(), String> {
        self.journal.push(format!("exiting {}: {}", self.name, describe(outcome)));
        if let Some(gate) = &self.exit_gate {
            gate.cancelled().await;
        }
        self.journal.push(format!("exit {}", self.name));
        Ok(())
    }
    fn exit_on_drop(self, _: &'static str) {
        self.journal.push(format!("fallback {}", self.name));
    }
}

#[test]
fn a_signal_during_the_body_drops_it_and_every_exit_runs_with_cancelled() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let stop = token.clone();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(
        (j.probe("a"), j.probe("b").exit(Act::Fail)),
        async |_| -> Result<(), Error<String>> {
            j.push("body starts");
            stop.cancel();
            yield_now().await; // the body is dropped at this await
            j.push("body goes on");
            Ok(())
        },
    ))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.primary(), None);
    assert_eq!(err.suppressed(), ["exit b failed"], "exit errors are kept");
    assert_eq!(j.take(), ["enter a", "enter b", "body starts", "exit b: Cancelled", "exit a: Cancelled"]);
}

#[test]
fn a_signal_during_an_enter_lets_it_finish_then_exits_it_and_enters_nothing_more() {
    let j = Journal::new();
    let gate = CancellationToken::new();
    let token = CancellationToken::new();
    let mut b = Gated::new(&j, "b");
    b.enter_gate = Some(gate.clone());
    let ctxs = (j.probe("a"), b, j.probe("c"));
    let scope = Scope::new()
        .cancel_on(token.cancelled())
        .with(ctxs, async |_| -> Result<(), Error<String>> { unreachable!("the body never starts") });
    let mut scope = pin!(scope);
    let mut task = Context::from_waker(Waker::noop());
    while !j.take_peek().contains(&"entering b".to_string()) {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    token.cancel(); // while b enters
    assert!(scope.as_mut().poll(&mut task).is_pending(), "the enter is not interrupted");
    gate.cancel(); // b's enter can finish now
    let err = block_on(scope).unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        ["enter a", "entering b", "enter b", "exiting b: Cancelled", "exit b", "exit a: Cancelled"]
    );
}

#[test]
fn an_interruptible_enter_is_dropped_and_never_exited() {
    let j = Journal::new();
    let gate = CancellationToken::new();
    let token = CancellationToken::new();
    let mut b = Gated::new(&j, "b");
    b.enter_gate = Some(gate);
    let scope = Scope::new()
        .cancel_on(token.cancelled())
        .interrupt_enters()
        .with((j.probe("a"), b), async |_| -> Result<(), Error<String>> {
            unreachable!("the body never starts")
        });
    let mut scope = pin!(scope);
    let mut task = Context::from_waker(Waker::noop());
    while !j.take_peek().contains(&"entering b".to_string()) {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    token.cancel();
    let err = block_on(scope).unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(j.take(), ["enter a", "entering b", "exit a: Cancelled"]);
}

#[test]
fn exits_are_shielded_from_the_signal() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let stop = token.clone();
    let closing = resource(
        async || Ok::<_, String>(()),
        async move |(), outcome: Outcome<'_, String>| {
            stop.cancel(); // fires while exiting
            yield_now().await;
            assert!(outcome.is_completed());
            Ok(())
        },
    );
    let out =
        block_on(Scope::new().cancel_on(token.cancelled()).with((j.probe("a"), closing), async |_| Ok(7)));
    assert_eq!(out.unwrap(), 7, "the body had finished: the result is not a cancellation");
    assert_eq!(j.take(), ["enter a", "exit a: Completed"]);
}

#[test]
fn an_exit_past_its_deadline_is_dropped_and_reported_and_the_others_still_run() {
    let j = Journal::new();
    let never = CancellationToken::new(); // never cancelled: this exit hangs
    let mut stuck = Gated::new(&j, "stuck");
    stuck.exit_gate = Some(never);
    let scope = Scope::new().exit_deadline(|| async {
        for _ in 0..3 {
            yield_now().await;
        }
        "exit too slow".to_string()
    });
    let err = block_on(scope.with((j.probe("a"), stuck, j.probe("c")), async |_| Ok(()))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit too slow");
    assert_eq!(
        j.take(),
        [
            "enter a",
            "entering stuck",
            "enter stuck",
            "enter c",
            "exit c: Completed",
            "exiting stuck: Completed",
            "exit a: Failed(exit too slow)"
        ]
    );
}

#[test]
fn a_generator_sees_cancelled_in_its_teardown() {
    let j = Journal::new();
    let jj = j.clone();
    let g = context(async move |mut cx: Cx<u8, String>| {
        jj.push("setup");
        let (_, outcome) = cx.provide(1).await;
        jj.push(format!("teardown: {}", describe(outcome)));
        Ok(())
    });
    let err = block_on(Scope::new().cancel_on(ready_on_poll(2)).with(g, async |_| {
        std::future::pending::<()>().await;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(j.take(), ["setup", "teardown: Cancelled"]);
}

#[test]
fn a_cancelled_scope_finishes_the_stack_enter_in_progress_and_starts_no_other() {
    let j = Journal::new();
    let gate = CancellationToken::new();
    let token = CancellationToken::new();
    let (g, t) = (gate.clone(), token.clone());
    let jj = j.clone();
    let scope =
        Scope::new().cancel_on(token.cancelled()).scope(async move |stack: &mut ExitStack<String>| {
            stack.enter(Gated::new(&jj, "a")).await?;
            let mut b = Gated::new(&jj, "b");
            b.enter_gate = Some(g);
            t.cancel(); // cancelled before b's enter starts... no: it starts, and is shielded
            stack.enter(b).await?;
            jj.push("after b");
            stack.enter(Gated::new(&jj, "c")).await?;
            unreachable!("no enter starts after the cancellation");
            #[allow(unreachable_code)]
            Ok(())
        });
    let mut scope = pin!(scope);
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        let _ = scope.as_mut().poll(&mut task);
    }
    gate.cancel();
    let err = block_on(scope).unwrap_err();
    assert!(err.is_cancelled());
    let journal = j.take();
    assert!(!journal.contains(&"entering c".to_string()), "{journal:?}");
    assert_eq!(journal.last().unwrap(), "exit a");
}

#[test]
fn a_token_cancelled_from_another_thread_wakes_the_scope() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let child = token.child_token();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
    });
    let err = block_on(Scope::new().cancel_on(child.cancelled()).with(j.probe("a"), async |_| {
        std::future::pending::<()>().await;
        Ok(())
    }))
    .unwrap_err();
    canceller.join().unwrap();
    assert!(err.is_cancelled());
    assert_eq!(j.take(), ["enter a", "exit a: Cancelled"]);
}

#[test]
fn dropping_a_scope_runs_the_fallbacks_newest_first_and_no_async_exit() {
    let j = Journal::new();
    let g = Gated::new(&j, "g");
    let scope = async_with::with((j.probe("a"), g, j.probe("c")), async |_| {
        std::future::pending::<()>().await;
        Ok(())
    });
    let mut scope = Box::pin(scope);
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..10 {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    drop(scope);
    assert_eq!(
        j.take(),
        ["enter a", "entering g", "enter g", "enter c", "fallback c", "fallback g", "fallback a"]
    );
}

#[test]
fn dropping_a_scope_mid_exit_does_not_also_run_that_fallback() {
    let j = Journal::new();
    let mut g = Gated::new(&j, "g");
    g.exit_gate = Some(CancellationToken::new()); // hangs in its exit
    let scope = async_with::with((j.probe("a"), g, j.probe("c")), async |_| Ok(()));
    let mut scope = Box::pin(scope);
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..10 {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    drop(scope);
    assert_eq!(
        j.take(),
        [
            "enter a",
            "entering g",
            "enter g",
            "enter c",
            "exit c: Completed",
            "exiting g: Completed",
            "fallback a"
        ]
    );
}

#[test]
fn a_dropped_stack_scope_falls_back_newest_first() {
    let j = Journal::new();
    let jj = j.clone();
    let scope = async_with::scope(async move |stack: &mut ExitStack<String>| {
        stack.enter(jj.probe("a")).await?;
        let jjj = jj.clone();
        stack.callback(move || {
            jjj.push("callback ran");
            Ok(())
        });
        stack.enter(jj.probe("b")).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let mut scope = Box::pin(scope);
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..10 {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    drop(scope);
    assert_eq!(j.take(), ["enter a", "enter b", "fallback b", "fallback a"]);
}

#[test]
fn a_detached_scope_finishes_its_exits_in_a_task() {
    let j = Journal::new();
    let pool = futures::executor::ThreadPool::new().unwrap(); // kept alive until the test ends
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let jj = j.clone();
    let spawner = pool.clone();
    let run = detach_on_drop(
        move |task| spawner.spawn_ok(task),
        |signal| {
            Scope::new().cancel_on(signal).with((jj.probe("a"), jj.probe("b")), async move |_| {
                std::future::pending::<()>().await;
                drop(done_tx);
                Ok(())
            })
        },
    );
    let mut run = Box::pin(run);
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..6 {
        assert!(run.as_mut().poll(&mut task).is_pending());
    }
    drop(run); // the owner: this is the drop that detaches
    // The body (holding `done_tx`) is dropped by the detached task; then the exits run there.
    assert!(done_rx.recv_timeout(Duration::from_secs(5)).is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while j.take_peek().len() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Cancelled", "exit a: Cancelled"]);
}

#[test]
fn cancelling_a_child_token_leaves_the_parent_alone() {
    let parent = CancellationToken::new();
    let child = parent.child_token();
    let grandchild = child.child_token();
    child.cancel();
    assert!(grandchild.is_cancelled() && child.is_cancelled() && !parent.is_cancelled());
    let late = parent.child_token();
    parent.cancel();
    assert!(late.is_cancelled());
    assert!(parent.child_token().is_cancelled(), "a child of a cancelled token starts cancelled");
}
