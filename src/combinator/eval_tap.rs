//! [`ContextExt::eval_tap`](crate::ContextExt::eval_tap): Cats Effect's `Resource.evalTap`.

use core::future::Future;
use core::pin::Pin;

use super::StepFn;
use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Held, Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context followed by an async step on its value (authenticate a connection, run a
/// migration), the body then seeing the value itself; built by
/// [`ContextExt::eval_tap`](crate::ContextExt::eval_tap).
///
/// ```
/// use async_with::{resource, with, ContextExt, EvalTap, Outcome};
///
/// let conn = resource(async || Ok::<_, String>(vec!["connected"]), async |_, _: Outcome<'_, String>| Ok(()));
/// let authed: EvalTap<_, _> = conn.eval_tap(async |log: &mut Vec<&str>| { log.push("authenticated"); Ok(()) });
/// # futures::executor::block_on(async {
/// assert_eq!(with(authed, async |log| Ok(log.clone())).await.unwrap(), ["connected", "authenticated"]);
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct EvalTap<C, F> {
    context: C,
    f: F,
}

impl<C, F> EvalTap<C, F> {
    pub(crate) fn new(context: C, f: F) -> Self {
        EvalTap { context, f }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of an [`EvalTap`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct EvalTapState<S, F> {
        #[pin]
        inner: S,
        f: Option<F>,
    }
}

impl<S, F> Sealed for EvalTapState<S, F> {}

impl<C: IntoLocalContext, F> IntoLocalContext for EvalTap<C, F>
where
    F: AsyncFnOnce(&mut C::Value) -> Result<(), C::Error>,
{
    type Value = C::Value;
    type Error = C::Error;
    type LocalContext = EvalTapState<C::LocalContext, F>;

    fn into_local_context(self) -> Self::LocalContext {
        EvalTapState { inner: self.context.into_local_context(), f: Some(self.f) }
    }
}

impl<C: IntoContext, F> IntoContext for EvalTap<C, F>
where
    F: AsyncFnOnce(&mut C::Value) -> Result<(), C::Error>,
    F: for<'a> StepFn<'a, C::Value, (), C::Error> + Send,
    for<'a> <F as StepFn<'a, C::Value, (), C::Error>>::Future: Send,
{
    type Context = EvalTapState<C::Context, F>;

    fn into_context(self) -> Self::Context {
        EvalTapState { inner: self.context.into_context(), f: Some(self.f) }
    }
}

// As for `eval_map`: the local flavour sees the step as `AsyncFnOnce`, the `Send` one as a plain
// `FnOnce` whose named future can be declared `Send`.
macro_rules! eval_tap_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<S::Value>> $(+ $send)? {
            let this = self.project();
            async move {
                let mut inner = this.inner;
                let value = inner.as_mut().enter(unwind).await?;
                // Held: if the scope is dropped during the step, the inner context falls back.
                let mut held = Held::new(inner, value, <S as $Protocol>::fallback);
                let step = this.f.take().expect("async-with: a context is entered once");
                let tapped = if unwind.cancel_requested() {
                    None // cancelled while the inner context entered: no further step
                } else {
                    // Run like an enter: an error or a panic of the step exits the context.
                    let value = held.value();
                    unwind.enter(move || step(value)).await
                };
                let (inner, value) = held.release();
                match tapped {
                    Some(()) => Some(value),
                    None => {
                        inner.exit(value, unwind).await;
                        None
                    }
                }
            }
        }

        fn exit(self: Pin<&mut Self>, value: S::Value, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
            self.project().inner.exit(value, unwind)
        }

        fn fallback(self: Pin<&mut Self>, value: S::Value) {
            self.project().inner.fallback(value);
        }
    };
}

impl<S: Protocol, F> Protocol for EvalTapState<S, F>
where
    F: AsyncFnOnce(&mut S::Value) -> Result<(), S::Error>,
{
    type Value = S::Value;
    type Error = S::Error;
    eval_tap_protocol!(Protocol);
}

impl<S: SendProtocol, F> SendProtocol for EvalTapState<S, F>
where
    F: AsyncFnOnce(&mut S::Value) -> Result<(), S::Error>,
    F: for<'a> StepFn<'a, S::Value, (), S::Error> + Send,
    for<'a> <F as StepFn<'a, S::Value, (), S::Error>>::Future: Send,
{
    type Value = S::Value;
    type Error = S::Error;
    eval_tap_protocol!(SendProtocol + Send);
}
