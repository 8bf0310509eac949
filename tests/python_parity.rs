//! The behaviours of CPython's tests for `contextlib.asynccontextmanager`
//! (`Lib/test/test_contextlib_async.py`, `AsyncContextManagerTestCase`) that apply to Rust,
//! rewritten from the behaviour. Each runs on `futures::executor`, smol and tokio.
//!
//! Two deliberate differences, each tested below:
//! - Python lets a generator swallow the exception thrown into it
//!   (`test_contextmanager_no_reraise`); here the teardown only borrows the error, and the caller
//!   always gets it (guarantee G5).
//! - In asyncio, an `__aexit__` that raises while a `CancelledError` propagates replaces it: the
//!   task ends with the cleanup error, and the scopes outside see that error, not the
//!   cancellation (a known pitfall). Here one precedence rule decides what every exit sees,
//!   `Panicked` over `Cancelled` over `Failed(newest error)`: a cleanup error after a
//!   cancellation is kept as a suppressed error, and the exits outside still see `Cancelled`.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};

use async_with::{CancellationToken, Cx, Error, IntoContext, Outcome, Scope, context, resource, with};
use common::catching;

type State = Arc<Mutex<Vec<i32>>>;

/// Runs the scenario built by `make` on three executors; each run must give the same result.
fn on_each_executor<F, Fut, T>(make: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let a = futures::executor::block_on(make());
    if cfg!(miri) {
        return a; // smol and tokio call into the OS, which Miri cannot run
    }
    let b = smol::block_on(make());
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let c = rt.block_on(make());
    assert_eq!(a, b, "futures::executor and smol disagree");
    assert_eq!(a, c, "futures::executor and tokio disagree");
    a
}

/// `@asynccontextmanager async def woohoo(): state.append(1); yield 42; state.append(999)`
fn woohoo(state: &State) -> impl IntoContext<Value = i32, Error = String> {
    let state = state.clone();
    context(async move |mut cx: Cx<i32, String>| {
        state.lock().unwrap().push(1);
        let (_, _) = cx.provide(42).await;
        state.lock().unwrap().push(999);
        Ok(())
    })
}

#[test]
fn contextmanager_plain() {
    let state = on_each_executor(|| async {
        let state = State::default();
        with(woohoo(&state), async |x| {
            assert_eq!(*state.lock().unwrap(), [1]);
            assert_eq!(*x, 42);
            state.lock().unwrap().push(*x);
            Ok(())
        })
        .await
        .unwrap();
        state.lock().unwrap().clone()
    });
    assert_eq!(state, [1, 42, 999]);
}

#[test]
fn contextmanager_finally_runs_teardown_and_the_error_propagates() {
    let (state, error) = on_each_executor(|| async {
        let state = State::default();
        let s = state.clone();
        let ctx = context(async move |mut cx: Cx<i32, String>| {
            s.lock().unwrap().push(1);
            let (_, _) = cx.provide(42).await; // `try: yield 42 finally: state.append(999)`
            s.lock().unwrap().push(999);
            Ok(())
        });
        let err = with(ctx, async |x| {
            state.lock().unwrap().push(*x);
            Err::<(), _>("ZeroDivisionError".to_string().into())
        })
        .await
        .unwrap_err();
        let s = state.lock().unwrap().clone();
        (s, err.into_primary())
    });
    assert_eq!(state, [1, 42, 999]);
    assert_eq!(error.as_deref(), Some("ZeroDivisionError"));
}

#[test]
fn contextmanager_except_sees_the_error_value() {
    let (state, error) = on_each_executor(|| async {
        let state = State::default();
        let s = state.clone();
        let ctx = context(async move |mut cx: Cx<i32, String>| {
            s.lock().unwrap().push(1);
            let (_, outcome) = cx.provide(42).await;
            if let Outcome::Failed(e) = outcome {
                // `except ZeroDivisionError as e: state.append(e.args[0])`
                s.lock().unwrap().push(e.parse().unwrap());
            }
            Ok(())
        });
        let err = with(ctx, async |x| {
            state.lock().unwrap().push(*x);
            Err::<(), _>("999".to_string().into())
        })
        .await
        .unwrap_err();
        let s = state.lock().unwrap().clone();
        (s, err.into_primary())
    });
    assert_eq!(state, [1, 42, 999]);
    assert_eq!(error.as_deref(), Some("999"));
}

#[test]
fn contextmanager_no_reraise_still_reaches_the_caller() {
    // Python: the generator catches the exception and does not re-raise, so `__aexit__` returns
    // True and the exception is suppressed. Here the teardown only borrowed it.
    let error = on_each_executor(|| async {
        let ctx = context(async |mut cx: Cx<i32, String>| {
            let (_, outcome) = cx.provide(42).await;
            assert!(outcome.is_failed());
            Ok(()) // "swallows" it
        });
        with(ctx, async |_| Err::<(), _>("TypeError".to_string().into())).await.unwrap_err().into_primary()
    });
    assert_eq!(error.as_deref(), Some("TypeError"));
}

#[test]
fn contextmanager_trap_no_yield() {
    let message = on_each_executor(|| async {
        let ctx = context(async |_cx: Cx<i32, String>| Ok(()));
        catching(with(ctx, async |_| Ok(()))).await.unwrap_err()
    });
    assert_eq!(message, "async-with: a generator context returned without calling `provide`");
}

#[test]
fn contextmanager_trap_second_yield() {
    let message = on_each_executor(|| async {
        let ctx = context(async |mut cx: Cx<i32, String>| {
            let (_, _) = cx.provide(1).await;
            let (_, _) = cx.provide(2).await;
            Ok(())
        });
        catching(with(ctx, async |_| Ok(()))).await.unwrap_err()
    });
    assert_eq!(message, "async-with: `provide` was called twice in one generator context");
}

#[test]
fn contextmanager_trap_yield_after_throw() {
    // The generator is resumed with an error and tries to provide again.
    let message = on_each_executor(|| async {
        let ctx = context(async |mut cx: Cx<i32, String>| {
            let (_, outcome) = cx.provide(1).await;
            assert!(outcome.is_failed());
            let (_, _) = cx.provide(2).await;
            Ok(())
        });
        catching(with(ctx, async |_| Err::<(), _>("thrown".to_string().into()))).await.unwrap_err()
    });
    assert_eq!(message, "async-with: `provide` was called twice in one generator context");
}

#[test]
fn contextmanager_setup_error_propagates_without_running_the_body() {
    // `test_contextmanager_except_pep479`-like: an error raised before the yield is the caller's.
    let (error, ran) = on_each_executor(|| async {
        let ctx = context(async |mut cx: Cx<i32, String>| {
            Err::<(), _>("setup failed".to_string())?;
            let (_, _) = cx.provide(1).await;
            Ok(())
        });
        let mut ran = false;
        let err = with(ctx, async |_| {
            ran = true;
            Ok(())
        })
        .await
        .unwrap_err();
        (err.into_primary(), ran)
    });
    assert_eq!((error.as_deref(), ran), (Some("setup failed"), false));
}

/// Nested `async with` blocks, as in Python: the inner exit sees the body's exception, the outer
/// one sees the newest exception (the one the inner exit raised), and the caller gets the
/// first, with the later one kept (Python chains it as `__context__`).
#[test]
fn nested_async_with_sees_the_newest_error_outside() {
    let (seen, error) = on_each_executor(|| async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let exit = |name: &'static str, fails: bool| {
            let seen = seen.clone();
            resource(
                async || Ok::<_, String>(()),
                async move |(), outcome: Outcome<'_, String>| {
                    seen.lock().unwrap().push(format!("{name} saw {outcome:?}"));
                    if fails { Err(format!("{name} exit failed")) } else { Ok(()) }
                },
            )
        };
        let error = with(exit("outer", false), async |_| {
            with(exit("inner", true), async |_| Err::<(), _>("body failed".to_string().into())).await?;
            Ok(())
        })
        .await
        .unwrap_err();
        let seen = seen.lock().unwrap().clone();
        (
            seen,
            (
                error.primary().cloned(),
                error.suppressed().iter().map(|e| e.error().clone()).collect::<Vec<_>>(),
            ),
        )
    });
    assert_eq!(seen, [r#"inner saw Failed("body failed")"#, r#"outer saw Failed("inner exit failed")"#]);
    assert_eq!(error, (Some("body failed".to_string()), vec!["inner exit failed".to_string()]));
}

/// Where this crate differs from asyncio on purpose: an exit that fails while the scope is
/// cancelled does not turn the cancellation into a failure. The exits outside still see
/// `Cancelled`, and the caller's error says *cancelled*, with the cleanup error kept.
#[test]
fn a_cleanup_error_after_a_cancellation_does_not_hide_it() {
    let (seen, cancelled, suppressed) = on_each_executor(|| async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let token = CancellationToken::new();
        let exit = |name: &'static str, fails: bool| {
            let seen = seen.clone();
            resource(
                async || Ok::<_, String>(()),
                async move |(), outcome: Outcome<'_, String>| {
                    seen.lock().unwrap().push(format!("{name} saw {outcome:?}"));
                    if fails { Err(format!("{name} exit failed")) } else { Ok(()) }
                },
            )
        };
        let stop = token.clone();
        let error = Scope::new()
            .cancel_on(token.cancelled())
            .with((exit("outer", false), exit("inner", true)), async |_| -> Result<(), Error<String>> {
                stop.cancel();
                std::future::pending().await
            })
            .await
            .unwrap_err();
        let seen = seen.lock().unwrap().clone();
        (seen, error.is_cancelled(), error.suppressed().iter().map(|e| e.error().clone()).collect::<Vec<_>>())
    });
    assert_eq!(seen, ["inner saw Cancelled", "outer saw Cancelled"]);
    assert!(cancelled);
    assert_eq!(suppressed, ["inner exit failed"]);
}
