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
    // A suppressed error compares as its error: equal to that, and to nothing else.
    assert_ne!(err.suppressed(), ["exit a failed", "exit c failed"]);
    assert!(err.suppressed()[0] != "exit a failed");
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
    assert_eq!((err.primary(), err.suppressed()[0].error()), (Some(&4), &13));
}

/// `Error<E>` back to a plain error type in one call, for `?` in functions that return one.
mod back_to_a_plain_error {
    use async_with::{CancellationToken, Cancelled, Error, Outcome, Scope, resource, with};
    use std::io;

    fn file(close_fails: bool) -> impl async_with::IntoContext<Value = (), Error = io::Error> {
        resource(
            async || Ok(()),
            async move |(), _: Outcome<'_, io::Error>| {
                if close_fails { Err(io::Error::other("close failed")) } else { Ok(()) }
            },
        )
    }

    async fn fails() -> Result<(), Error<io::Error>> {
        with(file(true), async |()| Err(io::Error::other("write failed").into())).await
    }

    #[test]
    fn into_error_gives_the_primary_error_for_a_question_mark() {
        async fn run() -> io::Result<()> {
            fails().await.map_err(Error::into_error)?;
            Ok(())
        }
        let error = futures::executor::block_on(run()).unwrap_err();
        assert_eq!(error.to_string(), "write failed");
    }

    #[test]
    fn into_error_gives_the_cancellation_as_an_error_of_the_type() {
        let token = CancellationToken::new();
        token.cancel();
        let cancelled = futures::executor::block_on(
            Scope::new()
                .cancel_on(token.cancelled())
                .with(file(false), async |()| -> Result<(), Error<io::Error>> {
                    std::future::pending().await
                }),
        );
        let error: io::Error = cancelled.unwrap_err().into_error();
        assert_eq!(error.kind(), io::ErrorKind::Interrupted);
        assert_eq!(error.to_string(), Cancelled.to_string());
        let text: String = Error::<String>::from("x".to_string()).into_error();
        assert_eq!(text, "x");
        // A cancelled scope whose error type is `String` says so in the text.
        let token = CancellationToken::new();
        token.cancel();
        let ctx = resource(async || Ok::<_, String>(()), async |(), _: Outcome<'_, String>| Ok(()));
        let cancelled = futures::executor::block_on(
            Scope::new()
                .cancel_on(token.cancelled())
                .with(ctx, async |()| -> Result<(), Error<String>> { std::future::pending().await }),
        );
        let text: String = cancelled.unwrap_err().into_error();
        assert_eq!(text, "the scope was cancelled");
    }

    #[test]
    fn a_std_error_converts_with_question_mark_into_a_box_and_into_anyhow() {
        async fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            fails().await?;
            Ok(())
        }
        async fn with_anyhow() -> anyhow::Result<()> {
            fails().await?;
            Ok(())
        }
        let boxed = futures::executor::block_on(boxed()).unwrap_err();
        assert_eq!(boxed.to_string(), "write failed (and 1 suppressed error: close failed)");
        let error = futures::executor::block_on(with_anyhow()).unwrap_err();
        // The whole `Error` is inside, and can be taken back out.
        let inner = error.downcast_ref::<Error<io::Error>>().expect("the scope's error");
        assert_eq!(inner.suppressed()[0].to_string(), "close failed");
    }

    #[test]
    fn other_error_types_go_into_a_box_or_anyhow_in_one_call() {
        // `String` is not a `std::error::Error`, so `Error<String>` is not one either (coherence
        // keeps it from being one without losing `source` for the error types that are).
        async fn scope_error() -> Result<(), Error<String>> {
            with(resource(async || Ok(()), async |(), _: Outcome<'_, String>| Ok(())), async |()| {
                Err("no".to_string().into())
            })
            .await
        }
        async fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            scope_error().await.map_err(Error::into_boxed)?;
            Ok(())
        }
        async fn with_anyhow() -> anyhow::Result<()> {
            scope_error().await.map_err(anyhow::Error::msg)?;
            Ok(())
        }
        assert_eq!(futures::executor::block_on(boxed()).unwrap_err().to_string(), "no");
        assert_eq!(futures::executor::block_on(with_anyhow()).unwrap_err().to_string(), "no");
    }
}
