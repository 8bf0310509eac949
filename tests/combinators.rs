//! `map`, `eval_map`, `and_then`, `on_finalize`, `join` and `join_all`: each combined context
//! enters and exits as a unit with G1-G6: the exact sequence of enters and exits, the outcome
//! every exit sees, the caller's errors, panics, and the fallbacks when the scope is dropped.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_with::{
    ContextExt, Error, ExitStack, Outcome, join, join_all, nullcontext, scope, with, with_local,
};
use common::{Act, Handle, Journal, block_on_catching, journaling_scope};

fn run<F: Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

#[test]
fn map_shows_the_body_a_value_made_from_the_context_and_exits_with_the_original() {
    let journal = Journal::new();
    let a = journal.probe("a").map(|handle: &mut Handle| format!("{} mapped", handle.name));
    let out = run(with(a, async |mapped: &mut String| Ok(mapped.clone()))).unwrap();
    assert_eq!(out, "a mapped");
    // The probe checks that its exit got its own handle back.
    assert_eq!(journal.take(), ["enter a", "exit a: Completed"]);
}

#[test]
fn a_panic_in_map_exits_the_context_with_panicked_and_resumes() {
    let journal = Journal::new();
    let a = journal.probe("a").map(|_: &mut Handle| -> u32 { panic!("map panicked") });
    let out = block_on_catching(with(a, async |_| -> Result<(), Error<String>> { unreachable!("no body") }));
    assert_eq!(out.unwrap_err(), "map panicked");
    assert_eq!(journal.take(), ["enter a", "exit a: Panicked"]);
}

#[test]
fn eval_map_runs_an_async_step_whose_failure_exits_the_context() {
    let journal = Journal::new();
    let ok = journal.probe("a").eval_map(async |handle: &mut Handle| {
        common::yield_now().await;
        Ok(handle.name.len())
    });
    assert_eq!(run(with(ok, async |n| Ok(*n))).unwrap(), 1);
    assert_eq!(journal.take(), ["enter a", "exit a: Completed"]);

    let failing =
        journal.probe("a").eval_map(async |_: &mut Handle| Err::<usize, _>("step failed".to_string()));
    let error =
        run(with(failing, async |_| -> Result<(), Error<String>> { unreachable!("no body") })).unwrap_err();
    assert_eq!(error.primary().unwrap(), "step failed");
    assert_eq!(journal.take(), ["enter a", "exit a: Failed(step failed)"]);
}

#[test]
fn and_then_enters_in_order_and_exits_the_second_first() {
    let journal = Journal::new();
    let j = journal.clone();
    let chain = journal.probe("a").and_then(move |a: &mut Handle| {
        a.uses += 1;
        j.probe("b")
    });
    run(with(chain, async |b: &mut Handle| {
        assert_eq!(b.name, "b");
        Ok::<_, Error<String>>(())
    }))
    .unwrap();
    assert_eq!(journal.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Completed"]);
}

#[test]
fn and_then_exits_the_first_when_the_second_fails_to_enter_and_never_exits_the_second() {
    let journal = Journal::new();
    let j = journal.clone();
    let chain = journal.probe("a").and_then(move |_: &mut Handle| j.probe("b").enter(Act::Fail));
    let error =
        run(with(chain, async |_| -> Result<(), Error<String>> { unreachable!("no body") })).unwrap_err();
    assert_eq!(error.primary().unwrap(), "enter b failed");
    assert_eq!(journal.take(), ["enter a", "enter b", "exit a: Failed(enter b failed)"]);
}

#[test]
fn a_panic_while_making_the_second_context_exits_the_first() {
    let journal = Journal::new();
    let chain =
        journal.probe("a").and_then(|_: &mut Handle| -> common::Probe { panic!("and_then panicked") });
    let out =
        block_on_catching(with(chain, async |_| -> Result<(), Error<String>> { unreachable!("no body") }));
    assert_eq!(out.unwrap_err(), "and_then panicked");
    assert_eq!(journal.take(), ["enter a", "exit a: Panicked"]);
}

#[test]
fn an_exit_error_inside_and_then_is_seen_by_the_first_and_kept() {
    let journal = Journal::new();
    let j = journal.clone();
    let chain =
        journal.probe("a").exit(Act::Fail).and_then(move |_: &mut Handle| j.probe("b").exit(Act::Fail));
    let error = run(with(chain, async |_| Err::<(), _>("body failed".to_string().into()))).unwrap_err();
    assert_eq!(error.primary().unwrap(), "body failed");
    assert_eq!(error.suppressed(), ["exit b failed", "exit a failed"]);
    assert_eq!(
        journal.take(),
        ["enter a", "enter b", "exit b: Failed(body failed)", "exit a: Failed(exit b failed)"]
    );
}

#[test]
fn on_finalize_runs_after_the_exit_and_sees_the_newest_outcome() {
    let journal = Journal::new();
    let j = journal.clone();
    let ctx = journal.probe("a").exit(Act::Fail).on_finalize(async move |outcome: Outcome<'_, String>| {
        j.push(format!("finalize: {}", common::describe(outcome)));
        Err("finalize failed".to_string())
    });
    let error = run(with(ctx, async |_| Ok::<_, Error<String>>(()))).unwrap_err();
    assert_eq!(error.primary().unwrap(), "exit a failed");
    assert_eq!(error.suppressed(), ["finalize failed"]);
    assert_eq!(journal.take(), ["enter a", "exit a: Completed", "finalize: Failed(exit a failed)"]);
}

#[test]
fn join_enters_and_exits_both_and_hands_the_body_both_values() {
    let journal = Journal::new();
    let both = join(journal.probe("a"), journal.probe("b"));
    let names =
        run(with(both, async |(a, b): &mut (Handle, Handle)| Ok::<_, Error<String>>((a.name, b.name))))
            .unwrap();
    assert_eq!(names, ("a", "b"));
    let lines = journal.take();
    // Polled together: both enters yield once, then finish in the order they are polled.
    assert_eq!(lines, ["enter a", "enter b", "exit a: Completed", "exit b: Completed"]);
}

#[test]
fn when_one_branch_fails_to_enter_the_other_is_exited_with_that_failure() {
    let journal = Journal::new();
    let both = join(journal.probe("a"), journal.probe("b").enter(Act::Fail));
    let error =
        run(with(both, async |_| -> Result<(), Error<String>> { unreachable!("no body") })).unwrap_err();
    assert_eq!(error.primary().unwrap(), "enter b failed");
    assert_eq!(journal.take(), ["enter a", "enter b", "exit a: Failed(enter b failed)"]);

    let both = join(journal.probe("a").enter(Act::Fail), journal.probe("b").enter(Act::Fail));
    let error =
        run(with(both, async |_| -> Result<(), Error<String>> { unreachable!("no body") })).unwrap_err();
    assert_eq!(error.primary().unwrap(), "enter a failed");
    assert_eq!(error.suppressed(), ["enter b failed"]);
    assert_eq!(journal.take(), ["enter a", "enter b"]);
}

#[test]
fn both_branches_see_the_same_outcome_and_their_errors_are_kept_first_branch_first() {
    let journal = Journal::new();
    let both = join(journal.probe("a").exit(Act::Fail), journal.probe("b").exit(Act::Fail));
    let outer = journal.probe("outer");
    let error =
        run(with((outer, both), async |_| Err::<(), _>("body failed".to_string().into()))).unwrap_err();
    assert_eq!(error.primary().unwrap(), "body failed");
    assert_eq!(error.suppressed(), ["exit a failed", "exit b failed"]);
    assert_eq!(
        journal.take(),
        [
            "enter outer",
            "enter a",
            "enter b",
            "exit a: Failed(body failed)",
            "exit b: Failed(body failed)",
            "exit outer: Failed(exit b failed)",
        ]
    );
}

#[test]
fn a_panicking_branch_exit_lets_the_other_finish_then_resumes() {
    let journal = Journal::new();
    let scope = journaling_scope(&journal);
    let both = join(journal.probe("a").exit(Act::Panic), journal.probe("b").exit(Act::Fail));
    let out = block_on_catching(scope.with(both, async |_| Ok::<_, Error<String>>(())));
    assert_eq!(out.unwrap_err(), "exit a panicked");
    assert_eq!(
        journal.take(),
        ["enter a", "enter b", "exit a: Completed", "exit b: Completed", "hook: exit b failed"]
    );
}

#[test]
fn join_all_keeps_the_order_of_values_and_exits_every_entered_branch_on_failure() {
    let journal = Journal::new();
    let all = join_all(["a", "b", "c"].map(|name| journal.probe(name)));
    let names = run(with(all, async |handles: &mut Vec<Handle>| {
        Ok::<_, Error<String>>(handles.iter().map(|h| h.name).collect::<Vec<_>>())
    }))
    .unwrap();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(
        journal.take(),
        ["enter a", "enter b", "enter c", "exit a: Completed", "exit b: Completed", "exit c: Completed"]
    );

    let all = join_all([journal.probe("a"), journal.probe("b").enter(Act::Fail), journal.probe("c")]);
    let error =
        run(with(all, async |_| -> Result<(), Error<String>> { unreachable!("no body") })).unwrap_err();
    assert_eq!(error.primary().unwrap(), "enter b failed");
    assert_eq!(
        journal.take(),
        ["enter a", "enter b", "enter c", "exit a: Failed(enter b failed)", "exit c: Failed(enter b failed)"]
    );
}

#[test]
fn dropping_the_scope_runs_the_fallbacks_of_combined_contexts_newest_first() {
    let journal = Journal::new();
    let j = journal.clone();
    let chain = journal.probe("a").and_then(move |_: &mut Handle| j.probe("b")).map(|b: &mut Handle| b.name);
    let both = join(chain, journal.probe("c"));
    let mut scope = Box::pin(with(both, async |_| {
        std::future::pending::<()>().await;
        Ok::<_, Error<String>>(())
    }));
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..10 {
        assert!(scope.as_mut().poll(&mut task).is_pending());
    }
    drop(scope);
    assert_eq!(journal.take(), ["enter a", "enter c", "enter b", "fallback c", "fallback b", "fallback a"]);
}

#[test]
fn combined_contexts_enter_an_exit_stack_as_one_entry() {
    let journal = Journal::new();
    let j = journal.clone();
    run(scope(async |stack: &mut ExitStack<String>| {
        let chain = j.probe("a").and_then({
            let j = j.clone();
            move |_: &mut Handle| j.probe("b")
        });
        let b = stack.enter(chain).await?;
        assert_eq!(b.name, "b");
        let c = stack.enter(j.probe("c").map(|c: &mut Handle| c.name)).await?;
        assert_eq!(*c, "c");
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        journal.take(),
        ["enter a", "enter b", "enter c", "exit c: Completed", "exit b: Completed", "exit a: Completed"]
    );
}

#[test]
fn nullcontext_is_a_context_with_nothing_to_undo() {
    assert_eq!(run(with(nullcontext::<_, ()>(5), async |n| Ok(*n + 1))).unwrap(), 6);
    // `with_local` takes values that are not `Send`.
    let shared = std::rc::Rc::new(5);
    assert_eq!(run(with_local(nullcontext::<_, ()>(shared), async |n| Ok(**n))).unwrap(), 5);
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn combined_send_contexts_make_send_scopes_and_run_on_a_multi_threaded_runtime() {
    let journal = Journal::new();
    let j = journal.clone();
    let ctx = join(
        journal
            .probe("a")
            .and_then(move |_: &mut Handle| j.probe("b"))
            .eval_map(async |b: &mut Handle| Ok(b.name)),
        journal.probe("c").map(|c: &mut Handle| c.name).on_finalize(async |_: Outcome<'_, String>| Ok(())),
    );
    let scope = assert_send(with(ctx, async |(b, c)| Ok::<_, Error<String>>(format!("{b}{c}"))));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    assert_eq!(runtime.block_on(async { tokio::spawn(scope).await.unwrap() }).unwrap(), "bc");
    let mut lines = journal.take();
    lines.sort();
    assert_eq!(
        lines,
        ["enter a", "enter b", "enter c", "exit a: Completed", "exit b: Completed", "exit c: Completed"]
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "AssertUnmoved reads the whole self-referential future through a shared reference, which Stacked Borrows rejects"
)]
fn futures_are_polled_in_place_without_moving() {
    use futures_test::future::FutureTestExt;
    let journal = Journal::new();
    let both =
        join(journal.probe("a"), journal.probe("b")).map(|(a, b): &mut (Handle, Handle)| a.uses + b.uses);
    let out = run(with(both, async |n| Ok::<_, Error<String>>(*n)).assert_unmoved()).unwrap();
    assert_eq!(out, 0);
    assert_eq!(journal.take().len(), 4);
}

#[test]
fn a_cancelled_scope_enters_nothing_after_the_first_context_of_a_chain() {
    let journal = Journal::new();
    let j = journal.clone();
    let chain = journal.probe("a").and_then(move |_: &mut Handle| j.probe("b"));
    // Fires while `a` enters (its enter yields once): `a` finishes entering (enters are not
    // interrupted), then is exited.
    let error = run(async_with::Scope::new()
        .cancel_on(common::ready_on_poll(1))
        .with(chain, async |_| -> Result<(), Error<String>> { unreachable!("no body") }))
    .unwrap_err();
    assert!(error.is_cancelled());
    assert_eq!(journal.take(), ["enter a", "exit a: Cancelled"]);
}

#[test]
fn combinators_over_ready_contexts_complete_in_one_poll() {
    let ctx = nullcontext::<u8, ()>(1).map(|n: &mut u8| *n + 1).and_then(|n: &mut u8| nullcontext(*n * 2));
    let mut scope = pin!(with(ctx, async |n| Ok(*n)));
    let mut task = Context::from_waker(Waker::noop());
    assert!(matches!(scope.as_mut().poll(&mut task), Poll::Ready(Ok(4))));
}

#[test]
fn eval_tap_runs_a_step_on_the_value_the_body_then_sees() {
    let journal = Journal::new();
    let j = journal.clone();
    let tapped = journal.probe("a").eval_tap(async move |handle: &mut Handle| {
        handle.uses += 1;
        j.push("tap");
        Ok(())
    });
    let uses = run(with(tapped, async |handle| Ok::<_, Error<String>>(handle.uses))).unwrap();
    assert_eq!(uses, 1);
    assert_eq!(journal.take(), ["enter a", "tap", "exit a: Completed"]);
}

#[test]
fn eval_tap_that_fails_exits_the_context_with_its_error_and_the_body_never_runs() {
    let journal = Journal::new();
    let tapped = journal.probe("a").eval_tap(async |_: &mut Handle| Err("login refused".to_string()));
    let error =
        run(with(tapped, async |_| -> Result<(), Error<String>> { unreachable!("no body") })).unwrap_err();
    assert_eq!(error.primary().unwrap(), "login refused");
    assert_eq!(journal.take(), ["enter a", "exit a: Failed(login refused)"]);
}

#[test]
fn eval_tap_that_panics_exits_the_context_with_panicked_and_resumes() {
    let journal = Journal::new();
    let tapped =
        journal.probe("a").eval_tap(async |_: &mut Handle| -> Result<(), String> { panic!("tap panicked") });
    let out = common::block_on_catching(with(tapped, async |_| -> Result<(), Error<String>> {
        unreachable!("no body")
    }));
    assert_eq!(out.unwrap_err(), "tap panicked");
    assert_eq!(journal.take(), ["enter a", "exit a: Panicked"]);
}
