//! What users see when they print the crate's types (`{:?}` in a log line, a failed assertion)
//! and the small accessors: each says what the value is and the state it is in.

use std::pin::pin;
use std::task::{Context, Waker};

use async_with::{
    CancellationToken, Cx, ExitStack, IntoContext, LocalExitStack, Outcome, context, detach_on_drop,
    resource, with,
};

fn debug(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}")
}

#[test]
fn a_cancellation_token_shows_whether_it_was_cancelled() {
    let token = CancellationToken::new();
    assert_eq!(debug(&token), "CancellationToken { cancelled: false }");
    let cancelled = token.cancelled();
    token.cancel();
    assert_eq!(debug(&token), "CancellationToken { cancelled: true }");
    assert!(debug(&cancelled).starts_with("WaitForCancellation"), "{cancelled:?}");
}

#[test]
fn stacks_show_their_identity() {
    let (one, two) = (ExitStack::<String>::new(), ExitStack::<String>::new());
    assert!(debug(&one).starts_with("ExitStack { id: "), "{one:?}");
    assert_ne!(debug(&one), debug(&two), "each stack has its own identity (its keys carry it)");
    let local = LocalExitStack::<String>::new();
    assert!(debug(&local).starts_with("LocalExitStack { id: "), "{local:?}");
}

#[test]
fn contexts_and_their_states_name_themselves() {
    let r = resource(async || Ok::<_, ()>(1), async |_, _: Outcome<'_, ()>| Ok(()));
    assert_eq!(debug(&r), "Resource { entered: false, exited: false }");
    let g = context(async |mut cx: Cx<u8, ()>| {
        assert!(debug(&cx).starts_with("Cx"));
        let provide = cx.provide(1);
        assert_eq!(debug(&provide), "Provide { handed_over: false }");
        let _ = provide.await;
        Ok(())
    });
    assert!(debug(&g).starts_with("Generator"), "{g:?}");
    futures::executor::block_on(with(g, async |_| Ok(()))).unwrap();
    // Converted, not entered yet: its closure has not started.
    let running = context(async |_: Cx<u8, ()>| Ok(())).into_context();
    assert_eq!(debug(&running), "Running { started: false, .. }");
}

#[test]
fn a_detached_scope_names_itself() {
    let scope = detach_on_drop(drop, |_signal| with(async_with::nullcontext::<u8, ()>(1), async |n| Ok(*n)));
    let mut scope = pin!(scope);
    assert!(debug(&scope).starts_with("DetachOnDrop"), "{scope:?}");
    let done = scope.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(matches!(done, std::task::Poll::Ready(Ok(1))));
}

#[test]
fn outcome_error_and_equality() {
    let e = "boom".to_string();
    assert_eq!(Outcome::Failed(&e).error(), Some(&e));
    assert_eq!(Outcome::<String>::Cancelled.error(), None);
    let other = "other".to_string();
    assert_eq!(Outcome::Failed(&e), Outcome::Failed(&e.clone()));
    assert_ne!(Outcome::Failed(&e), Outcome::Failed(&other));
    assert_ne!(Outcome::Failed(&e), Outcome::Completed);
    for kind in [Outcome::<String>::Completed, Outcome::Panicked, Outcome::Cancelled] {
        assert_eq!(kind, kind);
    }
    assert_ne!(Outcome::<String>::Completed, Outcome::Panicked);
    assert_ne!(Outcome::<String>::Panicked, Outcome::Cancelled);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[test]
fn a_boxed_error_keeps_its_text_and_its_source() {
    let failing = resource(
        async || Ok::<_, BoxError>(()),
        async |(), _: Outcome<'_, BoxError>| Err(std::io::Error::other("close failed").into()),
    );
    let error = futures::executor::block_on(with(failing, async |_| {
        Err::<(), _>(BoxError::from(std::io::Error::new(std::io::ErrorKind::NotFound, "no table")).into())
    }))
    .unwrap_err();
    let shown = (error.to_string(), debug(&error));
    let boxed: Box<dyn std::error::Error + Send + Sync> = error.into_boxed();
    assert_eq!((boxed.to_string(), debug(&boxed)), shown);
    assert_eq!(boxed.to_string(), "no table (and 1 suppressed error: close failed)");
    let source = boxed.source().expect("the primary error is the source");
    assert_eq!(source.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_child_token_made_after_another_is_still_cancelled_with_its_parent() {
    let parent = CancellationToken::new();
    let first = parent.child_token();
    let second = parent.child_token(); // making it forgets only the children that were dropped
    drop(parent.child_token());
    let third = parent.child_token();
    parent.cancel();
    assert!(first.is_cancelled() && second.is_cancelled() && third.is_cancelled());
}

#[test]
fn each_outcome_accessor_is_true_for_its_variant_only() {
    let e = 1;
    let all = [Outcome::Completed, Outcome::Failed(&e), Outcome::Panicked, Outcome::Cancelled];
    let flags = all.map(|o| [o.is_completed(), o.is_failed(), o.is_panicked(), o.is_cancelled()]);
    let expected = [
        [true, false, false, false],
        [false, true, false, false],
        [false, false, true, false],
        [false, false, false, true],
    ];
    assert_eq!(flags, expected);
}

#[test]
fn adapters_show_their_value_or_state() {
    assert_eq!(debug(&async_with::nullcontext::<_, ()>(7)), "NullContext(Some(7))");
    #[cfg(feature = "futures-io")]
    assert_eq!(debug(&async_with::closing(Vec::<u8>::new())), "Closing { entered: false }");
}

#[test]
fn a_context_with_its_errors_converted_shows_the_context_inside() {
    use async_with::ContextExt;
    let r = resource(async || Ok::<_, String>(1), async |_, _: Outcome<'_, String>| Ok(()));
    let converted = r.map_err(|e: String| e.len());
    assert_eq!(debug(&converted), "MapErr { context: Resource { entered: false, exited: false }, .. }");
}

#[test]
fn a_scope_shows_its_settings() {
    let plain = debug(&async_with::Scope::new());
    assert!(plain.starts_with("Scope {") && plain.contains("own_signal: false"), "{plain}");
    let cancellable = async_with::Scope::new().cancel_on(std::future::pending::<()>()).interrupt_enters();
    let shown = debug(&cancellable);
    assert!(shown.contains("own_signal: true") && shown.contains("interrupt_enters: true"), "{shown}");
}
