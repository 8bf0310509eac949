//! [`ContextExt::on_finalize`](crate::ContextExt::on_finalize): Cats Effect's
//! `Resource.onFinalizeCase`.

use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::outcome::Outcome;
use crate::outcome::OutcomeFn;
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::{Unwind, exit_within};

/// A context with one more async exit action, run after its own exit; built by
/// [`ContextExt::on_finalize`](crate::ContextExt::on_finalize).
///
/// ```
/// use async_with::{nullcontext, with, ContextExt, OnFinalize, Outcome};
///
/// let ctx: OnFinalize<_, _> = nullcontext::<_, String>(1)
///     .on_finalize(async |_: Outcome<'_, String>| Err("flush failed".to_string()));
/// # futures::executor::block_on(async {
/// let error = with(ctx, async |n| Ok(*n)).await.unwrap_err();
/// assert_eq!(error.primary().unwrap(), "flush failed");
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct OnFinalize<C, F> {
    context: C,
    f: F,
}

impl<C, F> OnFinalize<C, F> {
    pub(crate) fn new(context: C, f: F) -> Self {
        OnFinalize { context, f }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of an [`OnFinalize`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct OnFinalizeState<S, F> {
        #[pin]
        inner: S,
        f: Option<F>,
    }
}

impl<S, F> Sealed for OnFinalizeState<S, F> {}

impl<C: IntoLocalContext, F> IntoLocalContext for OnFinalize<C, F>
where
    F: AsyncFnOnce(Outcome<'_, C::Error>) -> Result<(), C::Error>,
{
    type Value = C::Value;
    type Error = C::Error;
    type LocalContext = OnFinalizeState<C::LocalContext, F>;

    fn into_local_context(self) -> Self::LocalContext {
        OnFinalizeState { inner: self.context.into_local_context(), f: Some(self.f) }
    }
}

impl<C: IntoContext, F> IntoContext for OnFinalize<C, F>
where
    F: AsyncFnOnce(Outcome<'_, C::Error>) -> Result<(), C::Error>,
    F: for<'a> OutcomeFn<'a, C::Error> + Send,
    for<'a> <F as OutcomeFn<'a, C::Error>>::Future: Send,
{
    type Context = OnFinalizeState<C::Context, F>;

    fn into_context(self) -> Self::Context {
        OnFinalizeState { inner: self.context.into_context(), f: Some(self.f) }
    }
}

macro_rules! on_finalize_protocol {
    ($($send:ident)?) => {
        fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<S::Value>> $(+ $send)? {
            self.project().inner.enter(unwind)
        }

        fn exit(self: Pin<&mut Self>, value: S::Value, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
            let this = self.project();
            async move {
                this.inner.exit(value, unwind).await;
                let finalize = this.f.take().expect("async-with: a context is exited once");
                let deadline = unwind.deadline();
                let outcome = unwind.outcome();
                let result = exit_within(deadline, move || finalize(outcome)).await;
                unwind.exited(result);
            }
        }

        fn fallback(self: Pin<&mut Self>, value: S::Value) {
            let this = self.project();
            *this.f = None;
            this.inner.fallback(value);
        }
    };
}

impl<S: Protocol, F> Protocol for OnFinalizeState<S, F>
where
    F: AsyncFnOnce(Outcome<'_, S::Error>) -> Result<(), S::Error>,
{
    type Value = S::Value;
    type Error = S::Error;
    on_finalize_protocol!();
}

impl<S: SendProtocol, F> SendProtocol for OnFinalizeState<S, F>
where
    F: for<'a> OutcomeFn<'a, S::Error> + Send,
    for<'a> <F as OutcomeFn<'a, S::Error>>::Future: Send,
{
    type Value = S::Value;
    type Error = S::Error;
    on_finalize_protocol!(Send);
}
