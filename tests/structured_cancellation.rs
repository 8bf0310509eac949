//! Structured cancellation: a scope polled inside the body of another scope is its child. When
//! the outer scope is cancelled cooperatively, every scope inside it is cancelled too: its body
//! stops at its current await and each of its exits runs async, to completion, seeing
//! `Cancelled`, innermost scope first; only then does the outer scope drop the rest of its body
//! and run its own exits. No synchronous fallback runs. A scope polled by another task is not a
//! child, and an inner scope's own signal cancels only that scope and those inside it.
//!
//! The contexts here journal every step, and their exits await before they journal, so an exit
//! that was dropped instead of run to completion leaves its line out (and a dropped scope writes
//! `fallback` lines): each test states the exact journal.

mod common;

use std::future::{Future, pending};
use std::pin::Pin;
use std::time::Duration;

use async_with::{
    AsyncContext, CancellationToken, Cx, Error, ExitStack, IntoContext, Outcome, Scope, context, join,
    resource, scope, with,
};
use common::{Journal, describe, yield_now};
use futures::executor::block_on;

/// A context whose enter and exit each await twice, journaling when they start and when they
/// end; its enter can cancel a token half-way (so that the cancellation comes during the enter).
struct Slow {
    name: &'static str,
    journal: Journal,
    cancel_while_entering: Option<CancellationToken>,
}

impl Slow {
    fn new(journal: &Journal, name: &'static str) -> Self {
        Slow { name, journal: journal.clone(), cancel_while_entering: None }
    }

    fn cancelling(mut self, token: &CancellationToken) -> Self {
        self.cancel_while_entering = Some(token.clone());
        self
    }
}

impl AsyncContext for Slow {
    type Value = &'static str;
    type Error = String;

    async fn enter(&mut self) -> Result<&'static str, String> {
        self.journal.push(format!("entering {}", self.name));
        if let Some(token) = &self.cancel_while_entering {
            token.cancel();
        }
        yield_now().await;
        yield_now().await;
        self.journal.push(format!("entered {}", self.name));
        Ok(self.name)
    }

    async fn exit(self, _: &'static str, outcome: Outcome<'_, String>) -> Result<(), String> {
        self.journal.push(format!("exiting {}: {}", self.name, describe(outcome)));
        yield_now().await;
        yield_now().await;
        self.journal.push(format!("exited {}", self.name));
        Ok(())
    }

    fn exit_on_drop(self, _: &'static str) {
        self.journal.push(format!("fallback {}", self.name));
    }
}

/// A generator context whose teardown awaits before it journals what it saw.
fn generator(
    journal: &Journal,
    name: &'static str,
) -> impl IntoContext<Value = &'static str, Error = String> + use<> {
    let j = journal.clone();
    context(async move |mut cx: Cx<&'static str, String>| {
        j.push(format!("setup {name}"));
        let (_, outcome) = cx.provide(name).await;
        let seen = describe(outcome);
        yield_now().await;
        j.push(format!("teardown {name}: {seen}"));
        Ok(())
    })
}

fn no_errors() -> [String; 0] {
    []
}

// ----- Nested scopes sharing one token: every scope is `cancel_on(token.cancelled())`. -----

#[test]
fn a_with_inside_a_with_sharing_a_token_exits_innermost_first() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .with(j.probe("inner"), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                token.cancel();
                pending().await
            })
            .await?;
        j.push("outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.suppressed(), no_errors());
    assert_eq!(
        j.take(),
        ["enter outer", "enter inner", "inner body", "exit inner: Cancelled", "exit outer: Cancelled"]
    );
}

#[test]
fn a_tuple_inside_a_with_sharing_a_token_exits_right_to_left_before_the_outer_context() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .with((j.probe("a"), j.probe("b"), j.probe("c")), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                token.cancel();
                pending().await
            })
            .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "enter b",
            "enter c",
            "inner body",
            "exit c: Cancelled",
            "exit b: Cancelled",
            "exit a: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn a_scope_inside_a_with_sharing_a_token_closes_its_stack_before_the_outer_context_exits() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .scope(async |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
                stack.enter(j.probe("a")).await?;
                let jj = j.clone();
                stack.defer(async move || {
                    yield_now().await;
                    jj.push("deferred");
                    Ok(())
                });
                let jj = j.clone();
                stack.push_exit(async move |outcome: Outcome<'_, String>| {
                    let seen = describe(outcome);
                    yield_now().await;
                    jj.push(format!("push_exit: {seen}"));
                    Ok(())
                });
                stack.enter(j.probe("b")).await?;
                j.push("stack body");
                token.cancel();
                pending().await
            })
            .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "enter b",
            "stack body",
            "exit b: Cancelled",
            "push_exit: Cancelled",
            "deferred",
            "exit a: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn a_with_inside_a_scope_sharing_a_token_exits_before_the_stack_closes() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err =
        block_on(Scope::new().cancel_on(token.cancelled()).scope(async |stack: &mut ExitStack<String>| {
            stack.enter(j.probe("a")).await?;
            let jj = j.clone();
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                let seen = describe(outcome);
                yield_now().await;
                jj.push(format!("push_exit: {seen}"));
                Ok(())
            });
            Scope::new()
                .cancel_on(token.cancelled())
                .with((j.probe("w1"), j.probe("w2")), async |_| -> Result<(), Error<String>> {
                    j.push("inner body");
                    token.cancel();
                    pending().await
                })
                .await?;
            j.push("stack body goes on");
            Ok(())
        }))
        .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter w1",
            "enter w2",
            "inner body",
            "exit w2: Cancelled",
            "exit w1: Cancelled",
            "push_exit: Cancelled",
            "exit a: Cancelled",
        ]
    );
}

#[test]
fn a_generator_inside_a_with_sharing_a_token_tears_down_before_the_outer_context_exits() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .with((generator(&j, "g"), j.probe("p")), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                token.cancel();
                pending().await
            })
            .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "setup g",
            "enter p",
            "inner body",
            "exit p: Cancelled",
            "teardown g: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn a_with_inside_a_generator_scope_sharing_a_token_exits_before_the_teardown() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(generator(&j, "g"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .with(j.probe("inner"), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                token.cancel();
                pending().await
            })
            .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        ["setup g", "enter inner", "inner body", "exit inner: Cancelled", "teardown g: Cancelled"]
    );
}

#[test]
fn a_join_inside_a_with_sharing_a_token_exits_both_branches_before_the_outer_context() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .with(join(Slow::new(&j, "a"), Slow::new(&j, "b")), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                token.cancel();
                pending().await
            })
            .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "entering a",
            "entering b",
            "entered a",
            "entered b",
            "inner body",
            // The branches exit concurrently, each to its end, before the outer context.
            "exiting a: Cancelled",
            "exiting b: Cancelled",
            "exited a",
            "exited b",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn three_levels_sharing_a_token_exit_innermost_first() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .scope(async |stack: &mut ExitStack<String>| {
                stack.enter(j.probe("middle")).await?;
                let jj = j.clone();
                stack.defer(async move || {
                    yield_now().await;
                    jj.push("deferred");
                    Ok(())
                });
                Scope::new()
                    .cancel_on(token.cancelled())
                    .with((j.probe("i1"), generator(&j, "i2")), async |_| -> Result<(), Error<String>> {
                        j.push("innermost body");
                        token.cancel();
                        pending().await
                    })
                    .await?;
                j.push("middle body goes on");
                Ok(())
            })
            .await?;
        j.push("outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.suppressed(), no_errors());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter middle",
            "enter i1",
            "setup i2",
            "innermost body",
            "teardown i2: Cancelled",
            "exit i1: Cancelled",
            "deferred",
            "exit middle: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

// ----- Only the outermost scope has a signal: the inner scopes are cancelled with it. -----

#[test]
fn a_plain_with_inside_a_cancelled_with_is_cancelled_with_it() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        with((j.probe("a"), j.probe("b")), async |_| -> Result<(), Error<String>> {
            j.push("inner body");
            token.cancel();
            pending().await
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "enter b",
            "inner body",
            "exit b: Cancelled",
            "exit a: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn a_plain_scope_inside_a_cancelled_with_closes_its_stack_with_cancelled() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        scope(async |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
            stack.enter(j.probe("a")).await?;
            let jj = j.clone();
            stack.defer(async move || {
                yield_now().await;
                jj.push("deferred");
                Ok(())
            });
            let jj = j.clone();
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                let seen = describe(outcome);
                yield_now().await;
                jj.push(format!("push_exit: {seen}"));
                Ok(())
            });
            stack.enter(Slow::new(&j, "b")).await?;
            j.push("stack body");
            token.cancel();
            pending().await
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "entering b",
            "entered b",
            "stack body",
            "exiting b: Cancelled",
            "exited b",
            "push_exit: Cancelled",
            "deferred",
            "exit a: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn a_plain_with_inside_a_cancelled_scope_exits_before_the_stack_closes() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err =
        block_on(Scope::new().cancel_on(token.cancelled()).scope(async |stack: &mut ExitStack<String>| {
            stack.enter(j.probe("a")).await?;
            with(Slow::new(&j, "w"), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                token.cancel();
                pending().await
            })
            .await?;
            Ok(())
        }))
        .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter a",
            "entering w",
            "entered w",
            "inner body",
            "exiting w: Cancelled",
            "exited w",
            "exit a: Cancelled"
        ]
    );
}

#[test]
fn a_plain_generator_scope_inside_a_cancelled_with_tears_down_with_cancelled() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        with(generator(&j, "g"), async |_| -> Result<(), Error<String>> {
            j.push("inner body");
            token.cancel();
            pending().await
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        ["enter outer", "setup g", "inner body", "teardown g: Cancelled", "exit outer: Cancelled"]
    );
}

#[test]
fn three_plain_levels_inside_a_cancelled_with_exit_innermost_first() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        scope(async |stack: &mut ExitStack<String>| {
            stack.enter(j.probe("middle")).await?;
            let jj = j.clone();
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                let seen = describe(outcome);
                yield_now().await;
                jj.push(format!("push_exit: {seen}"));
                Ok(())
            });
            with((j.probe("i1"), Slow::new(&j, "i2")), async |_| {
                with(j.probe("deepest"), async |_| -> Result<(), Error<String>> {
                    j.push("deepest body");
                    token.cancel();
                    pending().await
                })
                .await
            })
            .await?;
            Ok(())
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.suppressed(), no_errors());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter middle",
            "enter i1",
            "entering i2",
            "entered i2",
            "enter deepest",
            "deepest body",
            "exit deepest: Cancelled",
            "exiting i2: Cancelled",
            "exited i2",
            "exit i1: Cancelled",
            "push_exit: Cancelled",
            "exit middle: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn two_child_scopes_joined_in_a_body_are_both_cancelled_and_both_exit() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        let first = with(j.probe("a"), async |_| -> Result<(), Error<String>> {
            yield_now().await;
            j.push("body a");
            token.cancel();
            pending().await
        });
        let second = with(j.probe("b"), async |_| -> Result<(), Error<String>> {
            j.push("body b");
            pending().await
        });
        let (a, b) = futures::join!(first, second);
        j.push(format!("joined: {} {}", a.unwrap_err().is_cancelled(), b.unwrap_err().is_cancelled()));
        yield_now().await; // the outer body is cancelled: dropped here
        j.push("outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "enter b",
            "body b",
            "body a",
            "exit a: Cancelled",
            "exit b: Cancelled",
            "joined: true true",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn the_outer_body_resumes_once_the_inner_scope_has_exited_and_stops_at_its_next_await() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        let inner = with(j.probe("inner"), async |_| -> Result<(), Error<String>> {
            token.cancel();
            pending().await
        })
        .await;
        // The inner scope is over (its exit ran): the outer body sees its result...
        j.push(format!("inner returned: cancelled = {}", inner.unwrap_err().is_cancelled()));
        // ...and is dropped at its next await, before the outer exit runs.
        yield_now().await;
        j.push("outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter inner",
            "exit inner: Cancelled",
            "inner returned: cancelled = true",
            "exit outer: Cancelled"
        ]
    );
}

// ----- Enters of an inner scope when the outer one is cancelled. -----

#[test]
fn an_inner_enter_in_progress_finishes_and_is_exited_and_nothing_more_is_entered() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        with(
            (j.probe("a"), Slow::new(&j, "b").cancelling(&token), j.probe("c")),
            async |_| -> Result<(), Error<String>> { unreachable!("the body never starts") },
        )
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "entering b",
            "entered b",
            "exiting b: Cancelled",
            "exited b",
            "exit a: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

#[test]
fn an_inner_scope_that_interrupts_enters_drops_its_enter_in_progress_when_the_outer_is_cancelled() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        Scope::new()
            .interrupt_enters()
            .with(
                (j.probe("a"), Slow::new(&j, "b").cancelling(&token), j.probe("c")),
                async |_| -> Result<(), Error<String>> { unreachable!("the body never starts") },
            )
            .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        ["enter outer", "enter a", "entering b", "exit a: Cancelled", "exit outer: Cancelled"]
    );
}

// ----- An exit stack entered into another stack: its enters are shielded like direct ones. -----

/// A scope whose stack enters `a`, then either a nested stack (`nested`) or itself, into which it
/// enters `b`, then `c` (whose enter cancels the scope), then `d`.
fn stack_enter_during_cancellation(
    nested: bool,
    interrupt_enters: bool,
) -> (Result<(), Error<String>>, Vec<String>) {
    let j = Journal::new();
    let token = CancellationToken::new();
    let mut options = Scope::new().cancel_on(token.cancelled());
    if interrupt_enters {
        options = options.interrupt_enters();
    }
    let out = block_on(options.scope(async |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
        stack.enter(j.probe("a")).await?;
        let target: &ExitStack<String> = if nested { stack.enter(ExitStack::new()).await? } else { stack };
        target.enter(j.probe("b")).await?;
        target.enter(Slow::new(&j, "c").cancelling(&token)).await?;
        target.enter(j.probe("d")).await?;
        unreachable!("no enter starts after the cancellation")
    }));
    (out, j.take())
}

#[test]
fn an_enter_into_a_nested_stack_in_progress_finishes_and_is_exited_with_cancelled() {
    let (out, journal) = stack_enter_during_cancellation(true, false);
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(
        journal,
        [
            "enter a",
            "enter b",
            "entering c",
            "entered c",
            "exiting c: Cancelled",
            "exited c",
            "exit b: Cancelled",
            "exit a: Cancelled",
        ]
    );
    // Exactly what a direct stack enter does.
    let (out, direct) = stack_enter_during_cancellation(false, false);
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(journal, direct);
}

#[test]
fn an_enter_into_a_nested_stack_in_progress_is_dropped_when_the_scope_interrupts_enters() {
    let (out, journal) = stack_enter_during_cancellation(true, true);
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(journal, ["enter a", "enter b", "entering c", "exit b: Cancelled", "exit a: Cancelled"]);
    let (out, direct) = stack_enter_during_cancellation(false, true);
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(journal, direct);
}

// ----- What is not a child, and signals of inner scopes. -----

#[test]
fn an_inner_scope_cancelled_by_its_own_signal_leaves_the_outer_scope_running() {
    let j = Journal::new();
    let outer_token = CancellationToken::new();
    let inner_token = CancellationToken::new();
    let out = block_on(Scope::new().cancel_on(outer_token.cancelled()).with(j.probe("outer"), async |_| {
        let inner = Scope::new()
            .cancel_on(inner_token.cancelled())
            .with((j.probe("a"), j.probe("b")), async |_| -> Result<(), Error<String>> {
                j.push("inner body");
                inner_token.cancel();
                pending().await
            })
            .await;
        j.push(format!("inner returned: cancelled = {}", inner.unwrap_err().is_cancelled()));
        yield_now().await; // not cancelled: the outer body goes on past its awaits
        j.push("outer body goes on");
        Ok(42)
    }));
    assert_eq!(out.unwrap(), 42);
    assert!(!outer_token.is_cancelled());
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter a",
            "enter b",
            "inner body",
            "exit b: Cancelled",
            "exit a: Cancelled",
            "inner returned: cancelled = true",
            "outer body goes on",
            "exit outer: Completed",
        ]
    );
}

#[test]
fn a_middle_scope_cancelled_by_its_own_signal_cancels_the_scopes_inside_it_only() {
    let j = Journal::new();
    let middle_token = CancellationToken::new();
    let out = block_on(with(j.probe("outer"), async |_| {
        let middle = Scope::new()
            .cancel_on(middle_token.cancelled())
            .with(j.probe("middle"), async |_| {
                with(j.probe("inner"), async |_| -> Result<(), Error<String>> {
                    j.push("inner body");
                    middle_token.cancel();
                    pending().await
                })
                .await
            })
            .await;
        j.push(format!("middle returned: cancelled = {}", middle.unwrap_err().is_cancelled()));
        yield_now().await;
        j.push("outer body goes on");
        Ok("done")
    }));
    assert_eq!(out.unwrap(), "done");
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter middle",
            "enter inner",
            "inner body",
            "exit inner: Cancelled",
            "exit middle: Cancelled",
            "middle returned: cancelled = true",
            "outer body goes on",
            "exit outer: Completed",
        ]
    );
}

#[test]
fn a_scope_run_by_an_exit_is_shielded_from_the_cancellation() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let jj = j.clone();
    let cleaning = context(async move |mut cx: Cx<(), String>| {
        let ((), outcome) = cx.provide(()).await;
        jj.push(format!("teardown: {}", describe(outcome)));
        // A scope inside an exit is not a child of the cancelled scope: it runs to its end.
        let flushed = with(jj.probe("flush"), async |_| {
            yield_now().await;
            jj.push("flush body");
            Ok(1)
        })
        .await;
        jj.push(format!("flushed: {flushed:?}"));
        Ok(())
    });
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(
        cleaning,
        async |_| -> Result<(), Error<String>> {
            token.cancel();
            pending().await
        },
    ))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(
        j.take(),
        ["teardown: Cancelled", "enter flush", "flush body", "exit flush: Completed", "flushed: Ok(1)"]
    );
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn a_scope_spawned_on_tokio_from_a_body_is_not_a_child() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (j, token) = (Journal::new(), CancellationToken::new());
    let (started, release) = (CancellationToken::new(), CancellationToken::new());
    let (err, spawned) = rt.block_on(async {
        let mut handle = None;
        let err = Scope::new()
            .cancel_on(token.cancelled())
            .with(j.probe("outer"), async |_| -> Result<(), Error<String>> {
                let (jj, running, gate) = (j.clone(), started.clone(), release.clone());
                handle = Some(tokio::spawn(async move {
                    with(jj.probe("spawned"), async |_| {
                        running.cancel();
                        gate.cancelled().await; // opened once the outer scope is over
                        jj.push("spawned body done");
                        Ok(7)
                    })
                    .await
                }));
                started.cancelled().await;
                token.cancel();
                pending().await
            })
            .await
            .unwrap_err();
        j.push("outer scope returned");
        release.cancel();
        (err, handle.unwrap().await.unwrap())
    });
    assert!(err.is_cancelled());
    assert_eq!(spawned.unwrap(), 7);
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter spawned",
            "exit outer: Cancelled",
            "outer scope returned",
            "spawned body done",
            "exit spawned: Completed",
        ]
    );
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn a_scope_spawned_on_smol_from_a_body_is_not_a_child() {
    let (j, token) = (Journal::new(), CancellationToken::new());
    let (started, release) = (CancellationToken::new(), CancellationToken::new());
    let (err, spawned) = smol::block_on(async {
        let mut task = None;
        let err = Scope::new()
            .cancel_on(token.cancelled())
            .with(j.probe("outer"), async |_| -> Result<(), Error<String>> {
                let (jj, running, gate) = (j.clone(), started.clone(), release.clone());
                task = Some(smol::spawn(async move {
                    Scope::new()
                        .with((jj.probe("s1"), jj.probe("s2")), async |_| {
                            running.cancel();
                            gate.cancelled().await;
                            jj.push("spawned body done");
                            Ok("spawned")
                        })
                        .await
                }));
                started.cancelled().await;
                token.cancel();
                pending().await
            })
            .await
            .unwrap_err();
        j.push("outer scope returned");
        release.cancel();
        (err, task.unwrap().await)
    });
    assert!(err.is_cancelled());
    assert_eq!(spawned.unwrap(), "spawned");
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter s1",
            "enter s2",
            "exit outer: Cancelled",
            "outer scope returned",
            "spawned body done",
            "exit s2: Completed",
            "exit s1: Completed",
        ]
    );
}

// ----- The main shapes on every executor, exits awaiting each runtime's own timer. -----

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A context that sleeps on the runtime's timer in its enter and its exit, with a fallback that
/// journals (it must never run here). Its exit can wait for `after` before it ends, and cancels
/// `done` once it has, so that concurrent exits end in a known order.
fn timed<S, F>(
    j: &Journal,
    name: &'static str,
    sleep: S,
    after: Option<CancellationToken>,
    done: Option<CancellationToken>,
) -> impl IntoContext<Value = String, Error = String> + Send + 'static + use<S, F>
where
    S: Fn(Duration) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send,
{
    let (enter_j, exit_j, drop_j) = (j.clone(), j.clone(), j.clone());
    let exit_sleep = sleep.clone();
    resource(
        async move || {
            // Journaled as it starts, so that concurrent enters (`join`) write in polling order.
            enter_j.push(format!("enter {name}"));
            sleep(ms(1)).await;
            // An owned value: see executors.rs (rust-lang/rust#110338).
            Ok(name.to_string())
        },
        async move |name, outcome: Outcome<'_, String>| {
            exit_j.push(format!("exiting {name}: {}", describe(outcome)));
            exit_sleep(ms(2)).await;
            if let Some(after) = after {
                after.cancelled().await;
            }
            exit_j.push(format!("exited {name}"));
            if let Some(done) = done {
                done.cancel();
            }
            Ok(())
        },
    )
    .on_drop(move |name: String| drop_j.push(format!("fallback {name}")))
}

type Spawn = Box<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// The shapes every executor must run identically. `spawn` starts another task.
async fn shapes<S, F>(sleep: S, spawn: Spawn) -> Vec<(String, Vec<String>)>
where
    S: Fn(Duration) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send,
{
    let mut results = Vec::new();
    let t = |j: &Journal, name| timed(j, name, sleep.clone(), None, None);

    // A `with` in a `with` sharing a token, cancelled from the innermost body.
    let j = Journal::new();
    let token = CancellationToken::new();
    let out = Scope::new()
        .cancel_on(token.cancelled())
        .with(t(&j, "outer"), async |_| {
            Scope::new()
                .cancel_on(token.cancelled())
                .with(t(&j, "inner"), async |_| -> Result<(), Error<String>> {
                    j.push("inner body");
                    token.cancel();
                    pending().await
                })
                .await?;
            Ok(())
        })
        .await;
    results.push((format!("{out:?}"), j.take()));

    // Three levels (`with`, `scope`, `with` of a tuple); only the outermost has a signal: the
    // runtime's timer, started once the innermost body runs.
    let j = Journal::new();
    let ready = CancellationToken::new();
    let timer = {
        let (ready, sleep) = (ready.clone(), sleep.clone());
        async move {
            ready.cancelled().await;
            sleep(ms(5)).await;
        }
    };
    let out = Scope::new()
        .cancel_on(timer)
        .with(t(&j, "outer"), async |_| {
            scope(async |stack: &mut ExitStack<String>| {
                stack.enter(t(&j, "middle")).await?;
                let (jj, nap) = (j.clone(), sleep.clone());
                stack.defer(async move || {
                    nap(ms(1)).await;
                    jj.push("deferred");
                    Ok(())
                });
                with((t(&j, "a"), t(&j, "b")), async |_| -> Result<(), Error<String>> {
                    j.push("innermost body");
                    ready.cancel();
                    pending().await
                })
                .await?;
                Ok(())
            })
            .await?;
            Ok(())
        })
        .await;
    results.push((format!("{out:?}"), j.take()));

    // A `join` in a `with` sharing a token, cancelled by another task. The second branch's exit
    // waits for the first's: they run concurrently, and both to their end.
    let j = Journal::new();
    let (token, ready, first_done) =
        (CancellationToken::new(), CancellationToken::new(), CancellationToken::new());
    spawn(Box::pin({
        let (token, ready, sleep) = (token.clone(), ready.clone(), sleep.clone());
        async move {
            ready.cancelled().await;
            sleep(ms(2)).await;
            token.cancel();
        }
    }));
    let both = join(
        timed(&j, "a", sleep.clone(), None, Some(first_done.clone())),
        timed(&j, "b", sleep.clone(), Some(first_done), None),
    );
    let out = Scope::new()
        .cancel_on(token.cancelled())
        .with(t(&j, "outer"), async |_| {
            Scope::new()
                .cancel_on(token.cancelled())
                .with(both, async |_| -> Result<(), Error<String>> {
                    j.push("inner body");
                    ready.cancel();
                    pending().await
                })
                .await?;
            Ok(())
        })
        .await;
    results.push((format!("{out:?}"), j.take()));

    results
}

fn expected() -> Vec<(String, Vec<String>)> {
    let cancelled =
        "Err(Error { cancelled: true, cancelled_by: Some(Signal { index: 0, reason: None }), suppressed: [] })".to_string();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            cancelled.clone(),
            s(&[
                "enter outer",
                "enter inner",
                "inner body",
                "exiting inner: Cancelled",
                "exited inner",
                "exiting outer: Cancelled",
                "exited outer",
            ]),
        ),
        (
            cancelled.clone(),
            s(&[
                "enter outer",
                "enter middle",
                "enter a",
                "enter b",
                "innermost body",
                "exiting b: Cancelled",
                "exited b",
                "exiting a: Cancelled",
                "exited a",
                "deferred",
                "exiting middle: Cancelled",
                "exited middle",
                "exiting outer: Cancelled",
                "exited outer",
            ]),
        ),
        (
            cancelled,
            s(&[
                "enter outer",
                "enter a",
                "enter b",
                "inner body",
                "exiting a: Cancelled",
                "exiting b: Cancelled",
                "exited a",
                "exited b",
                "exiting outer: Cancelled",
                "exited outer",
            ]),
        ),
    ]
}

/// A timer that needs no runtime: a thread that wakes the task.
fn thread_sleep(d: Duration) -> impl Future<Output = ()> + Send {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

#[test]
fn the_shapes_on_futures_block_on() {
    let spawn: Spawn = Box::new(|task| {
        std::thread::spawn(move || block_on(task));
    });
    assert_eq!(block_on(shapes(thread_sleep, spawn)), expected());
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn the_shapes_on_smol() {
    let sleep = |d| async move {
        smol::Timer::after(d).await;
    };
    let spawn: Spawn = Box::new(|task| smol::spawn(task).detach());
    assert_eq!(smol::block_on(smol::spawn(shapes(sleep, spawn))), expected());
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn the_shapes_on_async_std() {
    let spawn: Spawn = Box::new(|task| {
        async_std::task::spawn(task);
    });
    assert_eq!(
        async_std::task::block_on(async_std::task::spawn(shapes(async_std::task::sleep, spawn))),
        expected()
    );
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn the_shapes_on_tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let spawn: Spawn = Box::new(|task| {
        tokio::spawn(task);
    });
    // Spawned: the scopes move between worker threads from one poll to the next.
    assert_eq!(rt.block_on(rt.spawn(shapes(tokio::time::sleep, spawn))).unwrap(), expected());
}
