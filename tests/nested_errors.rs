//! Errors through nesting: `?` on an inner scope's `Result<_, Error<E>>` inside a body passes the
//! whole inner error on, so the caller's `Error` holds, in causal order, the inner primary error,
//! the inner suppressed errors, then the errors of the outer exits (G5 across scopes). An inner
//! cancellation passed on this way makes the outer scope cancelled; an inner panic propagates
//! through the outer scope after every exit ran.

mod common;

use std::future::pending;

use async_with::{CancellationToken, Error, ExitStack, Outcome, Scope, scope, with};
use common::{Act, Journal, block_on_catching, describe, journaling_scope, yield_now};
use futures::executor::block_on;

fn parse(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

fn at_most_40(n: u32) -> Result<u32, String> {
    if n <= 40 { Ok(n) } else { Err(format!("too big: {n}")) }
}

fn no_errors() -> [String; 0] {
    []
}

#[test]
fn the_inner_body_error_then_the_inner_exit_errors_then_the_outer_exit_errors() {
    let j = Journal::new();
    let outer = (j.probe("o1").exit(Act::Fail), j.probe("o2").exit(Act::Fail));
    let err = block_on(with(outer, async |_| {
        let inner = (j.probe("i1").exit(Act::Fail), j.probe("i2").exit(Act::Fail));
        with(inner, async |_| -> Result<(), Error<String>> { Err("inner body failed".to_string().into()) })
            .await?;
        j.push("the outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert!(!err.is_cancelled());
    assert_eq!(err.primary().unwrap(), "inner body failed");
    assert_eq!(err.suppressed(), ["exit i2 failed", "exit i1 failed", "exit o2 failed", "exit o1 failed"]);
    assert_eq!(
        err.iter().collect::<Vec<_>>(),
        ["inner body failed", "exit i2 failed", "exit i1 failed", "exit o2 failed", "exit o1 failed"]
    );
    assert_eq!(
        j.take(),
        [
            "enter o1",
            "enter o2",
            "enter i1",
            "enter i2",
            "exit i2: Failed(inner body failed)",
            "exit i1: Failed(exit i2 failed)",
            // The outer exits see the newest error, which came from the inner scope.
            "exit o2: Failed(exit i1 failed)",
            "exit o1: Failed(exit o2 failed)",
        ]
    );
}

#[test]
fn inner_exit_errors_alone_lead_the_outer_error() {
    let j = Journal::new();
    let err = block_on(with(j.probe("outer").exit(Act::Fail), async |_| {
        let inner = (j.probe("i1").exit(Act::Fail), j.probe("i2").exit(Act::Fail));
        let n = with(inner, async |_| Ok(5)).await?;
        j.push(format!("the outer body got {n}"));
        Ok(n)
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit i2 failed");
    assert_eq!(err.suppressed(), ["exit i1 failed", "exit outer failed"]);
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter i1",
            "enter i2",
            "exit i2: Completed",
            "exit i1: Failed(exit i2 failed)",
            "exit outer: Failed(exit i1 failed)",
        ]
    );
}

/// A body with `?` on its own error type before and after `?` on an inner scope.
fn parse_double_check(
    input: &'static str,
    inner_exit: Act,
    outer_exit: Act,
) -> (Result<u32, Error<String>>, Vec<String>) {
    let j = Journal::new();
    let out = block_on(with(j.probe("outer").exit(outer_exit), async |_| {
        let n = parse(input)?; // `?` on a `Result<_, String>`
        let doubled = with(j.probe("inner").exit(inner_exit), async |_| Ok(n * 2)).await?; // on a scope
        Ok(at_most_40(doubled)?) // on a `Result<_, String>` again
    }));
    (out, j.take())
}

#[test]
fn question_marks_on_the_error_type_and_on_an_inner_scope_mix_in_one_body() {
    let (out, journal) = parse_double_check("20", Act::Succeed, Act::Succeed);
    assert_eq!(out.unwrap(), 40);
    assert_eq!(journal, ["enter outer", "enter inner", "exit inner: Completed", "exit outer: Completed"]);

    // The body's own error, before the inner scope: it never starts.
    let (out, journal) = parse_double_check("x", Act::Succeed, Act::Fail);
    let err = out.unwrap_err();
    assert_eq!(err.primary().unwrap(), "not a number: x");
    assert_eq!(err.suppressed(), ["exit outer failed"]);
    assert_eq!(journal, ["enter outer", "exit outer: Failed(not a number: x)"]);

    // The inner scope's error, passed on whole.
    let (out, journal) = parse_double_check("20", Act::Fail, Act::Fail);
    let err = out.unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit inner failed");
    assert_eq!(err.suppressed(), ["exit outer failed"]);
    assert_eq!(
        journal,
        ["enter outer", "enter inner", "exit inner: Completed", "exit outer: Failed(exit inner failed)"]
    );

    // The body's own error, after the inner scope ended well.
    let (out, journal) = parse_double_check("21", Act::Succeed, Act::Fail);
    let err = out.unwrap_err();
    assert_eq!(err.primary().unwrap(), "too big: 42");
    assert_eq!(err.suppressed(), ["exit outer failed"]);
    assert_eq!(
        journal,
        ["enter outer", "enter inner", "exit inner: Completed", "exit outer: Failed(too big: 42)"]
    );
}

#[test]
fn an_inner_scope_cancelled_by_its_own_signal_makes_the_outer_one_cancelled_through_question_mark() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let outer = (j.probe("o1"), j.probe("o2").exit(Act::Fail));
    let err = block_on(with(outer, async |_| {
        Scope::new()
            .cancel_on(token.cancelled())
            .with((j.probe("i1").exit(Act::Fail), j.probe("i2")), async |_| -> Result<(), Error<String>> {
                token.cancel();
                pending().await
            })
            .await?;
        j.push("the outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.primary(), None);
    assert_eq!(
        err.suppressed(),
        ["exit i1 failed", "exit o2 failed"],
        "the inner suppressed errors are kept"
    );
    assert_eq!(
        j.take(),
        [
            "enter o1",
            "enter o2",
            "enter i1",
            "enter i2",
            "exit i2: Cancelled",
            "exit i1: Cancelled",
            "exit o2: Cancelled",
            "exit o1: Cancelled",
        ]
    );
}

#[test]
fn three_levels_with_an_error_at_the_innermost_keep_every_error_in_causal_order() {
    let j = Journal::new();
    let err = block_on(with(j.probe("outer").exit(Act::Fail), async |_| {
        scope(async |stack: &mut ExitStack<String>| {
            stack.enter(j.probe("middle").exit(Act::Fail)).await?;
            let jj = j.clone();
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                let seen = describe(outcome);
                yield_now().await;
                jj.push(format!("push_exit: {seen}"));
                Err("push_exit failed".to_string())
            });
            with(j.probe("inner").exit(Act::Fail), async |_| -> Result<(), Error<String>> {
                Err("deepest body failed".to_string().into())
            })
            .await?;
            j.push("the middle body goes on");
            Ok(())
        })
        .await?;
        j.push("the outer body goes on");
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "deepest body failed");
    assert_eq!(
        err.suppressed(),
        ["exit inner failed", "push_exit failed", "exit middle failed", "exit outer failed"]
    );
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter middle",
            "enter inner",
            "exit inner: Failed(deepest body failed)",
            "push_exit: Failed(exit inner failed)",
            "exit middle: Failed(push_exit failed)",
            "exit outer: Failed(exit middle failed)",
        ]
    );
}

#[test]
fn three_levels_of_question_marks_on_an_inner_cancellation_keep_it_cancelled() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(with(j.probe("outer"), async |_| {
        with(j.probe("middle").exit(Act::Fail), async |_| {
            Scope::new()
                .cancel_on(token.cancelled())
                .with(j.probe("inner").exit(Act::Fail), async |_| -> Result<(), Error<String>> {
                    token.cancel();
                    pending().await
                })
                .await?;
            Ok(())
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.suppressed(), ["exit inner failed", "exit middle failed"]);
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter middle",
            "enter inner",
            "exit inner: Cancelled",
            "exit middle: Cancelled",
            "exit outer: Cancelled",
        ]
    );
}

/// A value that journals when it is dropped.
#[derive(Debug)]
struct Noisy(Journal);

impl Drop for Noisy {
    fn drop(&mut self) {
        self.0.push("value dropped");
    }
}

#[test]
fn a_body_that_returns_after_its_scope_was_cancelled_counts_as_cancelled() {
    // Its error becomes a suppressed one...
    let j = Journal::new();
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(
        j.probe("outer").exit(Act::Fail),
        async |_| {
            let inner = with(j.probe("inner"), async |_| -> Result<(), Error<String>> {
                token.cancel();
                pending().await
            })
            .await;
            assert!(inner.unwrap_err().is_cancelled());
            // Returned without another await, after the scope was cancelled.
            Err::<(), _>("late body error".to_string().into())
        },
    ))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.suppressed(), ["late body error", "exit outer failed"]);
    assert_eq!(j.take(), ["enter outer", "enter inner", "exit inner: Cancelled", "exit outer: Cancelled"]);

    // ...and its value is dropped before the exits run.
    let token = CancellationToken::new();
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(j.probe("outer"), async |_| {
        let inner = with(j.probe("inner"), async |_| -> Result<(), Error<String>> {
            token.cancel();
            pending().await
        })
        .await;
        assert!(inner.unwrap_err().is_cancelled());
        Ok(Noisy(j.clone()))
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.suppressed(), no_errors());
    assert_eq!(
        j.take(),
        ["enter outer", "enter inner", "exit inner: Cancelled", "value dropped", "exit outer: Cancelled"]
    );
}

#[test]
fn a_panic_in_an_inner_body_propagates_through_the_outer_scope_after_every_exit() {
    let j = Journal::new();
    let outer = (j.probe("o1"), j.probe("o2").exit(Act::Fail));
    let caught = block_on_catching(journaling_scope(&j).with(outer, async |_| {
        let inner = (j.probe("i1").exit(Act::Fail), j.probe("i2"));
        journaling_scope(&j)
            .with(inner, async |_| -> Result<(), Error<String>> { panic!("inner body panicked") })
            .await?;
        j.push("the outer body goes on");
        Ok(())
    }));
    assert_eq!(caught.unwrap_err(), "inner body panicked");
    assert_eq!(
        j.take(),
        [
            "enter o1",
            "enter o2",
            "enter i1",
            "enter i2",
            "exit i2: Panicked",
            "exit i1: Panicked",
            "hook: exit i1 failed", // the inner scope's errors cannot ride on the panic
            "exit o2: Panicked",
            "exit o1: Panicked",
            "hook: exit o2 failed",
        ]
    );
}

#[test]
fn a_panic_in_an_inner_exit_propagates_through_the_outer_scope_after_every_exit() {
    let j = Journal::new();
    let caught = block_on_catching(journaling_scope(&j).with(j.probe("outer"), async |_| {
        scope(async |stack: &mut ExitStack<String>| {
            stack.enter(j.probe("s")).await?;
            with((j.probe("i1"), j.probe("i2").exit(Act::Panic)), async |_| Ok(())).await?;
            j.push("the stack body goes on");
            Ok(())
        })
        .await?;
        j.push("the outer body goes on");
        Ok(())
    }));
    assert_eq!(caught.unwrap_err(), "exit i2 panicked");
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter s",
            "enter i1",
            "enter i2",
            "exit i2: Completed",
            "exit i1: Panicked",
            "exit s: Panicked",
            "exit outer: Panicked",
        ]
    );
}

#[test]
fn an_inner_error_the_body_handles_is_not_passed_on() {
    let j = Journal::new();
    let out = block_on(with(j.probe("outer"), async |_| {
        let inner = with(j.probe("inner").exit(Act::Fail), async |_| -> Result<(), Error<String>> {
            Err("inner body failed".to_string().into())
        })
        .await;
        let err = inner.unwrap_err();
        Ok(err.iter().cloned().collect::<Vec<_>>())
    }));
    assert_eq!(out.unwrap(), ["inner body failed", "exit inner failed"]);
    assert_eq!(
        j.take(),
        ["enter outer", "enter inner", "exit inner: Failed(inner body failed)", "exit outer: Completed"]
    );
}
