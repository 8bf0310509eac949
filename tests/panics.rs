//! G6: a panic in an enter, the body or an exit is caught, the remaining exits run seeing
//! `Panicked`, then the first panic resumes with its original payload. Errors that cannot ride on
//! the panic reach the scope's hook, in order.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use async_with::{Error, Outcome, Scope, resource, with};
use common::{Act, Journal, block_on_catching, journaling_scope};

#[test]
fn a_panicking_enter_is_not_exited_and_the_panic_resumes() {
    let j = Journal::new();
    let panic = block_on_catching(with(j.probe("a").enter(Act::Panic), async |_| Ok(()))).unwrap_err();
    assert_eq!(panic, "enter a panicked");
    assert_eq!(j.take(), ["enter a"]);
}

#[test]
fn a_panicking_second_enter_exits_the_first_with_panicked() {
    let j = Journal::new();
    let ctxs = (j.probe("a"), j.probe("b").enter(Act::Panic), j.probe("c"));
    let panic = block_on_catching(with(ctxs, async |_| Ok(()))).unwrap_err();
    assert_eq!(panic, "enter b panicked");
    assert_eq!(j.take(), ["enter a", "enter b", "exit a: Panicked"]);
}

#[test]
fn a_panicking_body_runs_every_exit_with_panicked_then_resumes() {
    let j = Journal::new();
    let panic =
        block_on_catching(with((j.probe("a"), j.probe("b")), async |_| -> Result<(), Error<String>> {
            j.push("body");
            panic!("body panicked")
        }))
        .unwrap_err();
    assert_eq!(panic, "body panicked");
    assert_eq!(j.take(), ["enter a", "enter b", "body", "exit b: Panicked", "exit a: Panicked"]);
}

#[test]
fn a_panicking_exit_lets_the_outer_exits_run_with_panicked() {
    let j = Journal::new();
    let ctxs = (j.probe("a"), j.probe("b"), j.probe("c").exit(Act::Panic));
    let panic = block_on_catching(with(ctxs, async |_| Ok("discarded"))).unwrap_err();
    assert_eq!(panic, "exit c panicked");
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "enter c", "exit c: Completed", "exit b: Panicked", "exit a: Panicked"]
    );
}

#[test]
fn the_first_panic_wins_and_later_ones_do_not_abort() {
    let j = Journal::new();
    let ctxs = (j.probe("a").exit(Act::Panic), j.probe("b").exit(Act::Panic));
    let panic =
        block_on_catching(with(ctxs, async |_| -> Result<(), Error<String>> { panic!("body panicked") }))
            .unwrap_err();
    assert_eq!(panic, "body panicked");
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Panicked", "exit a: Panicked"]);
}

#[test]
fn the_original_payload_is_resumed_unchanged() {
    #[derive(Debug, PartialEq)]
    struct Payload(u32);
    let j = Journal::new();
    let caught = catch_unwind(AssertUnwindSafe(|| {
        futures::executor::block_on(with(j.probe("a"), async |_| -> Result<(), Error<String>> {
            std::panic::panic_any(Payload(42))
        }))
    }))
    .unwrap_err();
    assert_eq!(caught.downcast_ref::<Payload>(), Some(&Payload(42)));
    assert_eq!(j.take(), ["enter a", "exit a: Panicked"]);
}

#[test]
fn errors_that_cannot_ride_on_the_panic_reach_the_hook_in_order() {
    let j = Journal::new();
    // The body fails first; then an exit fails; then another exit panics; then one more fails.
    let ctxs = (j.probe("a").exit(Act::Fail), j.probe("b").exit(Act::Panic), j.probe("c").exit(Act::Fail));
    let panic = block_on_catching(
        journaling_scope(&j).with(ctxs, async |_| Err::<(), _>("body failed".to_string().into())),
    )
    .unwrap_err();
    assert_eq!(panic, "exit b panicked");
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "enter c",
            "exit c: Failed(body failed)",
            "exit b: Failed(exit c failed)",
            "exit a: Panicked",
            "hook: body failed",
            "hook: exit c failed",
            "hook: exit a failed",
        ]
    );
}

#[test]
fn a_hook_that_panics_does_not_replace_the_panic() {
    let ctx =
        resource(async || Ok::<_, String>(()), async |(), _: Outcome<'_, String>| Err("close".to_string()));
    let scope = Scope::new().on_error_during_panic(|_: String| panic!("hook panicked"));
    let panic = block_on_catching(
        scope.with(ctx, async |_| -> Result<(), Error<String>> { panic!("body panicked") }),
    )
    .unwrap_err();
    assert_eq!(panic, "body panicked");
}

#[test]
fn a_panic_while_building_an_exit_future_is_caught_too() {
    // A closure that panics when called, before it returns a future.
    let j = Journal::new();
    let jj = j.clone();
    let ctx = resource(
        async || Ok::<_, String>(()),
        move |(), _: Outcome<'_, String>| -> std::future::Ready<Result<(), String>> {
            jj.push("exit called");
            panic!("exit closure panicked")
        },
    );
    let outer = j.probe("outer");
    let panic = block_on_catching(with((outer, ctx), async |_| Ok(()))).unwrap_err();
    assert_eq!(panic, "exit closure panicked");
    assert_eq!(j.take(), ["enter outer", "exit called", "exit outer: Panicked"]);
}

#[test]
fn a_panic_while_building_an_enter_future_is_caught_too() {
    // An enter closure that panics when called, before it returns a future: the enter is not
    // exited, the context entered before it is, seeing the panic, and the panic resumes.
    let j = Journal::new();
    let jj = j.clone();
    let ctx = resource(
        move || -> std::future::Ready<Result<(), String>> {
            jj.push("enter called");
            panic!("enter closure panicked")
        },
        async |(), _: Outcome<'_, String>| Ok(()),
    );
    let outer = j.probe("outer");
    let panic = block_on_catching(with((outer, ctx), async |_| Ok(()))).unwrap_err();
    assert_eq!(panic, "enter closure panicked");
    assert_eq!(j.take(), ["enter outer", "enter called", "exit outer: Panicked"]);
}

/// A value whose destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("drop panicked")
    }
}

#[test]
fn a_panicking_destructor_of_a_dropped_value_is_an_exit_panic() {
    let j = Journal::new();
    let ctxs = (j.probe("a"), async_with::nullcontext(PanicsOnDrop), j.probe("c"));
    let panic = block_on_catching(with(ctxs, async |_| Ok(()))).unwrap_err();
    assert_eq!(panic, "drop panicked");
    assert_eq!(j.take(), ["enter a", "enter c", "exit c: Completed", "exit a: Panicked"]);
}
