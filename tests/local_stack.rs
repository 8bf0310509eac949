//! `LocalExitStack` keeps every promise `ExitStack` does (release, `pop_all`, close, a failing
//! composite enter, cancellation), and either stack can be the context of a scope, keeping what
//! was entered into it before.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use async_with::{
    CancellationToken, Error, ExitStack, LocalExitStack, Scope, nullcontext, scope_local, with, with_local,
};
use common::{Act, Journal, ready_on_poll};
use futures::executor::block_on;

type Local<'env> = LocalExitStack<'env, String>;

#[test]
fn release_runs_one_exit_now_and_returns_its_error() {
    let j = Journal::new();
    block_on(scope_local(async |stack: &mut Local<'_>| {
        stack.enter(j.probe("a")).await?;
        let (_, key) = stack.enter_with_key(j.probe("b").exit(Act::Fail)).await?;
        stack.enter(j.probe("c")).await?;
        assert_eq!(stack.release(key).await, Err("exit b failed".to_string()));
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "enter c", "exit b: Completed", "exit c: Completed", "exit a: Completed"]
    );
}

#[test]
fn pop_all_moves_every_pending_exit_to_a_new_stack() {
    let j = Journal::new();
    let moved = block_on(async {
        let mut stack = Local::new();
        stack.enter(j.probe("a")).await.unwrap();
        stack.enter(j.probe("b")).await.unwrap();
        let moved = stack.pop_all();
        stack.close().await.unwrap(); // nothing left in it
        moved
    });
    assert_eq!(j.take(), ["enter a", "enter b"]);
    block_on(moved.close()).unwrap();
    assert_eq!(j.take(), ["exit b: Completed", "exit a: Completed"]);
}

#[test]
fn close_returns_every_exit_error_and_close_with_shows_the_error_to_every_exit() {
    let j = Journal::new();
    let error = block_on(async {
        let stack = Local::new();
        stack.enter(j.probe("a").exit(Act::Fail)).await.unwrap();
        stack.enter(j.probe("b").exit(Act::Fail)).await.unwrap();
        stack.close().await
    })
    .unwrap_err();
    assert_eq!(error.primary().unwrap(), "exit b failed");
    assert_eq!(error.suppressed(), ["exit a failed"]);

    let error = block_on(async {
        let stack = Local::new();
        stack.enter(j.probe("c")).await.unwrap();
        stack.close_with("gave up".to_string()).await
    })
    .unwrap_err();
    assert_eq!(error.primary().unwrap(), "gave up");
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "exit b: Completed",
            "exit a: Failed(exit b failed)",
            "enter c",
            "exit c: Failed(gave up)"
        ]
    );
}

#[test]
fn a_tuple_that_fails_half_way_gives_its_error_and_cleans_up_at_once() {
    let j = Journal::new();
    let error = block_on(scope_local(async |stack: &mut Local<'_>| -> Result<(), Error<String>> {
        stack.enter((j.probe("a"), j.probe("b").enter(Act::Fail))).await?;
        unreachable!("the enter failed");
    }))
    .unwrap_err();
    assert_eq!(error.primary().unwrap(), "enter b failed");
    assert_eq!(j.take(), ["enter a", "enter b", "exit a: Failed(enter b failed)"]);
}

#[test]
fn a_cancelled_local_scope_finishes_the_enter_in_progress_then_exits_it() {
    let j = Journal::new();
    let token = CancellationToken::new();
    let t = token.clone();
    let error = block_on(Scope::new().cancel_on(token.cancelled()).scope_local(
        async |stack: &mut Local<'_>| -> Result<(), Error<String>> {
            stack.enter(j.probe("a")).await?;
            t.cancel(); // the next enter still starts: the body is stopped at its next await
            stack.enter(j.probe("b")).await?;
            j.push("after b");
            ready_on_poll(3).await;
            unreachable!("stopped at the await above");
        },
    ))
    .unwrap_err();
    assert!(error.is_cancelled());
    assert_eq!(j.take(), ["enter a", "enter b", "after b", "exit b: Cancelled", "exit a: Cancelled"]);
}

#[test]
fn an_exit_stack_entered_as_a_context_keeps_what_was_entered_before() {
    let j = Journal::new();
    let stack = block_on(async {
        let stack = ExitStack::<String>::new();
        stack.enter(j.probe("a")).await.unwrap();
        stack
    });
    block_on(with(stack, async |stack| {
        stack.enter(j.probe("b")).await?;
        Ok::<_, Error<String>>(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Completed"]);
}

#[test]
fn an_exit_stack_entered_with_with_local_closes_too() {
    let j = Journal::new();
    let stack = ExitStack::<String>::new();
    block_on(stack.enter(j.probe("a"))).unwrap();
    let not_send = Rc::new(());
    block_on(with_local(stack, async |stack| {
        stack.enter(j.probe("b")).await?;
        let _held = not_send.clone(); // a `!Send` body, as `with_local` allows
        Err::<(), _>("body failed".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "exit b: Failed(body failed)", "exit a: Failed(body failed)"]
    );
}

#[test]
fn a_local_exit_stack_entered_as_a_context_keeps_what_was_entered_before() {
    let j = Journal::new();
    let log = RefCell::new(Vec::new());
    let stack = Local::new();
    stack.callback(|| {
        log.borrow_mut().push("callback");
        Ok(())
    });
    block_on(with_local(stack, async |stack| {
        stack.enter(j.probe("b")).await?;
        Ok::<_, Error<String>>(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["enter b", "exit b: Completed"]);
    assert_eq!(*log.borrow(), ["callback"]);
}

/// The body of a scope whose context is the stack `$stack`: enters `a` (whose exit fails), then
/// fails.
macro_rules! enter_and_fail {
    ($j:expr, $stack:expr) => {{
        $stack.enter($j.probe("a").exit(Act::Fail)).await?;
        Err::<(), _>(Error::from("body failed".to_string()))
    }};
}

#[test]
fn a_stack_as_a_scopes_context_exits_seeing_how_the_body_ended() {
    // Each way a stack is a scope's own context: its exits see the body's error, and theirs
    // follow it.
    let j = Journal::new();
    let results = [
        block_on(with(ExitStack::new(), async |stack| enter_and_fail!(j, stack))),
        block_on(with_local(ExitStack::new(), async |stack| enter_and_fail!(j, stack))),
        block_on(with_local(Local::new(), async |stack| enter_and_fail!(j, stack))),
        block_on(with((ExitStack::new(), nullcontext(())), async |(stack, ())| enter_and_fail!(j, stack))),
        block_on(with_local((Local::new(), nullcontext(())), async |(stack, ())| enter_and_fail!(j, stack))),
    ];
    for (way, result) in results.into_iter().enumerate() {
        let error = result.unwrap_err();
        assert_eq!(error.primary().map(String::as_str), Some("body failed"), "way {way}");
        assert_eq!(error.suppressed(), ["exit a failed"], "way {way}");
    }
    assert_eq!(j.take(), ["enter a", "exit a: Failed(body failed)"].repeat(5));
}

#[test]
fn dropping_a_scope_whose_context_is_a_stack_runs_its_fallbacks() {
    let j = Journal::new();
    let stack = ExitStack::<String>::new();
    block_on(stack.enter(j.probe("a"))).unwrap();
    let mut scope = Box::pin(with(stack, async |stack| {
        stack.enter(j.probe("b")).await?;
        std::future::pending::<()>().await;
        Ok::<_, Error<String>>(())
    }));
    let mut task = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..5 {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    drop(scope);
    assert_eq!(j.take(), ["enter a", "enter b", "fallback b", "fallback a"]);
}

#[test]
fn push_exit_sees_the_outcome_and_its_error_is_kept() {
    let seen = RefCell::new(Vec::new());
    let error = block_on(async {
        let stack = Local::new();
        stack.push_exit(async |outcome| {
            seen.borrow_mut().push(common::describe(outcome));
            Err("push_exit failed".to_string())
        });
        stack.callback(|| Err("callback failed".to_string()));
        stack.close_with("gave up".to_string()).await
    })
    .unwrap_err();
    assert_eq!(error.primary().unwrap(), "gave up");
    assert_eq!(error.suppressed(), ["callback failed", "push_exit failed"]);
    assert_eq!(*seen.borrow(), ["Failed(callback failed)"]);
}

#[test]
fn a_tuple_in_a_local_stack_exits_or_falls_back_as_one_entry_newest_first() {
    let j = Journal::new();
    block_on(async {
        let stack = Local::new();
        stack.enter((j.probe("a"), j.probe("b"))).await.unwrap();
        stack.close().await.unwrap();
        let dropped = Local::new();
        dropped.enter((j.probe("c"), j.probe("d"))).await.unwrap();
        drop(dropped);
    });
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "exit b: Completed",
            "exit a: Completed",
            "enter c",
            "enter d",
            "fallback d",
            "fallback c"
        ]
    );
}
