//! G4 and G5: the outcome each exit sees, and the caller's error list (primary first, then every
//! suppressed error in the order it happened).

mod common;

use async_with::{Outcome, resource, with};
use common::{Act, Journal};
use futures::executor::block_on;

#[test]
fn a_body_error_is_the_primary_error_and_every_exit_sees_it() {
    let j = Journal::new();
    let err = block_on(with((j.probe("a"), j.probe("b")), async |_| {
        Err::<(), _>("body failed".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "body failed");
    assert!(err.suppressed().is_empty());
    assert!(!err.is_cancelled());
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "exit b: Failed(body failed)", "exit a: Failed(body failed)"]
    );
}

#[test]
fn an_exit_error_after_a_good_body_is_primary_and_the_outer_exits_see_it() {
    let j = Journal::new();
    let err = block_on(with((j.probe("a"), j.probe("b").exit(Act::Fail)), async |_| Ok(7))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit b failed");
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Failed(exit b failed)"]);
}

#[test]
fn later_exit_errors_are_suppressed_in_order_and_each_exit_sees_the_newest() {
    let j = Journal::new();
    let ctxs = (j.probe("a").exit(Act::Fail), j.probe("b"), j.probe("c").exit(Act::Fail));
    let err = block_on(with(ctxs, async |_| Err::<(), _>("body failed".to_string().into()))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "body failed");
    assert_eq!(err.suppressed(), ["exit c failed", "exit a failed"]);
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "enter c",
            "exit c: Failed(body failed)",
            "exit b: Failed(exit c failed)",
            "exit a: Failed(exit c failed)"
        ]
    );
}

#[test]
fn an_enter_error_keeps_the_cleanup_errors_of_the_contexts_before_it() {
    let j = Journal::new();
    let ctxs = (j.probe("a").exit(Act::Fail), j.probe("b").exit(Act::Fail), j.probe("c").enter(Act::Fail));
    let err = block_on(with(ctxs, async |_| Ok(()))).unwrap_err();
    assert_eq!(
        err.iter().map(String::as_str).collect::<Vec<_>>(),
        ["enter c failed", "exit b failed", "exit a failed"]
    );
}

#[test]
fn the_body_value_is_dropped_when_an_exit_fails() {
    let j = Journal::new();
    let out = block_on(with(j.probe("a").exit(Act::Fail), async |_| Ok("value")));
    assert_eq!(out.unwrap_err().into_parts(), (Some("exit a failed".to_string()), vec![]));
}

#[test]
fn display_lists_the_primary_then_the_suppressed_errors() {
    let j = Journal::new();
    let ctxs = (j.probe("a").exit(Act::Fail), j.probe("b").exit(Act::Fail));
    let err = block_on(with(ctxs, async |_| Err::<(), _>("body failed".to_string().into()))).unwrap_err();
    assert_eq!(err.to_string(), "body failed (and 2 suppressed errors: exit b failed; exit a failed)");
    assert_eq!(
        format!("{err:?}"),
        r#"Error { primary: "body failed", suppressed: ["exit b failed", "exit a failed"] }"#
    );
    let one = block_on(with(j.probe("c").exit(Act::Fail), async |_| Err::<(), _>("x".to_string().into())))
        .unwrap_err();
    assert_eq!(one.to_string(), "x (and 1 suppressed error: exit c failed)");
    let alone = block_on(with(j.probe("d"), async |_| Err::<(), _>("y".to_string().into()))).unwrap_err();
    assert_eq!(alone.to_string(), "y");
}

#[test]
fn source_is_the_primary_error() {
    use std::error::Error as _;
    use std::io;
    let ctx = resource(
        async || Ok::<_, io::Error>(()),
        async |(), _: Outcome<'_, io::Error>| Err(io::Error::other("close failed")),
    );
    let err = block_on(with(ctx, async |_| {
        Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "no table").into())
    }))
    .unwrap_err();
    let source = err.source().unwrap().downcast_ref::<io::Error>().unwrap();
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
    assert_eq!(err.suppressed()[0].to_string(), "close failed");
    // Converting back to the plain error type keeps the primary error.
    let back: io::Error = err.into_primary().unwrap();
    assert_eq!(back.kind(), io::ErrorKind::NotFound);
}

#[test]
fn map_converts_every_error_in_place() {
    let j = Journal::new();
    let err = block_on(with(j.probe("a").exit(Act::Fail), async |_| Err::<(), _>("body".to_string().into())))
        .unwrap_err();
    let err = err.map(|e| e.len());
    assert_eq!((err.primary(), err.suppressed()), (Some(&4), &[13][..]));
}
