//! A cancelled scope says why (issue 14, item 6): which of its signals fired (the index of its
//! `cancel_on` call), or that the scope around it was cancelled, with the reason a
//! `CancellationToken` was given by `cancel_with`; `{:#}` shows it.

mod common;

use std::future::pending;
use std::sync::{Arc, Mutex};

use async_with::{
    CancellationToken, CancelledBy, Error, ExitStack, IntoContext, Outcome, Scope, resource, with,
};
use common::{ready_on_poll, yield_now};
use futures::executor::block_on;

fn conn() -> impl IntoContext<Value = (), Error = String> {
    resource(async || Ok(()), async |(), _: Outcome<'_, String>| Ok(()))
}

async fn forever() -> Result<(), Error<String>> {
    pending().await
}

#[test]
fn the_signal_that_fired_is_named_by_its_cancel_on_index() {
    for fires in 0..3 {
        let never = || pending::<()>();
        let signal = |i: usize| -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            if i == fires { Box::pin(ready_on_poll(2)) } else { Box::pin(never()) }
        };
        let err = block_on(
            Scope::new()
                .cancel_on(signal(0))
                .cancel_on(signal(1))
                .cancel_on(signal(2))
                .with(conn(), async |()| forever().await),
        )
        .unwrap_err();
        assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: fires, reason: None }));
        assert_eq!(format!("{err:#}"), format!("the scope was cancelled (by signal {fires} of `cancel_on`)"));
        assert_eq!(err.to_string(), "the scope was cancelled", "the plain form is unchanged");
    }
}

#[test]
fn signals_that_fire_together_count_as_the_first_of_them() {
    let err = block_on(
        Scope::new()
            .cancel_on(pending::<()>())
            .cancel_on(ready_on_poll(1))
            .cancel_on(ready_on_poll(1))
            .with(conn(), async |()| forever().await),
    )
    .unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 1, reason: None }));
}

#[test]
fn a_token_cancelled_with_a_reason_gives_it_and_a_plain_cancel_gives_none() {
    for reason in [Some("shutting down"), None] {
        let token = CancellationToken::new();
        let stop = token.clone();
        let err = block_on(Scope::new().cancel_on(token.cancelled()).with(conn(), async |()| {
            yield_now().await;
            match reason {
                Some(reason) => stop.cancel_with(reason),
                None => stop.cancel(),
            }
            forever().await
        }))
        .unwrap_err();
        assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 0, reason }));
        assert_eq!(err.cancelled_by().unwrap().reason(), reason);
    }
}

#[test]
fn a_token_wrapped_in_another_future_still_gives_its_reason() {
    let token = CancellationToken::new();
    let child = token.child_token();
    token.cancel_with("deploy");
    let signal = async move {
        yield_now().await;
        child.cancelled().await;
    };
    let err = block_on(Scope::new().cancel_on(signal).with(conn(), async |()| forever().await)).unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 0, reason: Some("deploy") }));
}

#[test]
fn an_inner_scope_is_cancelled_by_its_parent_and_carries_the_parents_reason() {
    let token = CancellationToken::new();
    let stop = token.clone();
    let inner_saw: Arc<Mutex<Option<Option<CancelledBy>>>> = Arc::default();
    let saw = inner_saw.clone();
    let outer = block_on(Scope::new().cancel_on(token.cancelled()).with(conn(), async |()| {
        // A scope of its own inside the body, with a signal that never fires: it is cancelled
        // with its parent.
        let inner = Scope::new()
            .cancel_on(pending::<()>())
            .with(conn(), async |()| {
                stop.cancel_with("timeout");
                forever().await
            })
            .await;
        *saw.lock().unwrap() = Some(inner.unwrap_err().cancelled_by());
        forever().await
    }))
    .unwrap_err();
    assert_eq!(outer.cancelled_by(), Some(CancelledBy::Signal { index: 0, reason: Some("timeout") }));
    let inner = inner_saw.lock().unwrap().take().expect("the inner scope ended");
    assert_eq!(inner, Some(CancelledBy::Parent { reason: Some("timeout") }));
    assert_eq!(inner.unwrap().to_string(), "with the scope around it: timeout");
}

#[test]
fn an_exit_stack_scope_says_why_too() {
    let err = block_on(Scope::new().cancel_on(pending::<()>()).cancel_on(ready_on_poll(3)).scope(
        async |stack: &mut ExitStack<String>| {
            stack.enter(conn()).await?;
            forever().await
        },
    ))
    .unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 1, reason: None }));
}

#[test]
fn errors_that_are_not_cancellations_have_no_cause() {
    let failed =
        block_on(with(conn(), async |()| Err::<(), _>("body failed".to_string().into()))).unwrap_err();
    assert_eq!(failed.cancelled_by(), None);
    let from: Error<String> = "made by hand".to_string().into();
    assert_eq!(from.cancelled_by(), None);
    // `map` keeps the cause.
    let token = CancellationToken::new();
    token.cancel_with("early");
    let err = block_on(Scope::new().cancel_on(token.cancelled()).with(conn(), async |()| forever().await))
        .unwrap_err()
        .map(|e| e.len());
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 0, reason: Some("early") }));
}

#[test]
fn the_first_cancellation_of_a_token_keeps_its_reason_whatever_races_it() {
    for _ in 0..if cfg!(miri) { 2 } else { 50 } {
        let token = CancellationToken::new();
        let child = token.child_token();
        let threads: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|reason| {
                let token = token.clone();
                std::thread::spawn(move || token.cancel_with(reason))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let reason = token.reason().expect("cancelled with a reason");
        assert!(["a", "b", "c", "d"].contains(&reason));
        assert_eq!(child.reason(), Some(reason), "the child got the winner's reason");
    }
}

#[test]
fn an_inner_cancellation_passed_on_with_question_mark_keeps_its_cause() {
    let token = CancellationToken::new();
    token.cancel_with("inner shut down");
    let inner = token.clone();
    let err = block_on(with(conn(), async move |_| {
        Scope::new().cancel_on(inner.cancelled()).with(conn(), async |_| forever().await).await?;
        Ok(())
    }))
    .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 0, reason: Some("inner shut down") }));
    // Through two bodies, and on an exit stack's scope.
    let inner = token.clone();
    let err = block_on(async_with::scope(async move |_: &mut ExitStack<String>| {
        with(conn(), async move |_| {
            Scope::new().cancel_on(inner.cancelled()).with(conn(), async |_| forever().await).await?;
            Ok(())
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 0, reason: Some("inner shut down") }));
}
