//! [`ContextExt::eval_map`](crate::ContextExt::eval_map): Cats Effect's `Resource.evalMap`.

use core::pin::Pin;

use super::StepFn;
use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Held, Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context followed by an async step on its value, whose result the body sees; built by
/// [`ContextExt::eval_map`](crate::ContextExt::eval_map).
///
/// ```
/// use async_with::{resource, with, ContextExt, EvalMap, Outcome};
///
/// let conn = resource(async || Ok::<_, ()>(1_u8), async |_, _: Outcome<'_, ()>| Ok(()));
/// let ready: EvalMap<_, _> = conn.eval_map(async |c: &mut u8| Ok(*c + 1));
/// # futures::executor::block_on(async {
/// assert_eq!(with(ready, async |n| Ok(*n)).await.unwrap(), 2);
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct EvalMap<C, F> {
    context: C,
    f: F,
}

impl<C, F> EvalMap<C, F> {
    pub(crate) fn new(context: C, f: F) -> Self {
        EvalMap { context, f }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of an [`EvalMap`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct EvalMapState<S, F, V> {
        #[pin]
        inner: S,
        f: Option<F>,
        // The inner context's value, kept for its exit while the body has the step's result.
        kept: Option<V>,
    }
}

impl<S, F, V> Sealed for EvalMapState<S, F, V> {}

impl<C: IntoLocalContext, F, W> IntoLocalContext for EvalMap<C, F>
where
    F: AsyncFnOnce(&mut C::Value) -> Result<W, C::Error>,
{
    type Value = W;
    type Error = C::Error;
    type LocalContext = EvalMapState<C::LocalContext, F, C::Value>;

    fn into_local_context(self) -> Self::LocalContext {
        EvalMapState { inner: self.context.into_local_context(), f: Some(self.f), kept: None }
    }
}

impl<C: IntoContext, F, W> IntoContext for EvalMap<C, F>
where
    F: AsyncFnOnce(&mut C::Value) -> Result<W, C::Error>,
    F: for<'a> StepFn<'a, C::Value, W, C::Error> + Send,
    for<'a> <F as StepFn<'a, C::Value, W, C::Error>>::Future: Send,
    W: Send,
{
    type Context = EvalMapState<C::Context, F, C::Value>;

    fn into_context(self) -> Self::Context {
        EvalMapState { inner: self.context.into_context(), f: Some(self.f), kept: None }
    }
}

// The two flavours differ in how the step is seen: the local one as `AsyncFnOnce`, the `Send` one
// as a plain `FnOnce` whose named future can be declared `Send`.
macro_rules! eval_map_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<W>> $(+ $send)? {
            let this = self.project();
            async move {
                let mut inner = this.inner;
                let value = inner.as_mut().enter(unwind).await?;
                // Held: if the scope is dropped during the step, the inner context falls back.
                let mut held = Held::new(inner, value, <S as $Protocol>::fallback);
                let step = this.f.take().expect("async-with: a context is entered once");
                let stepped = if unwind.cancel_requested() {
                    None // cancelled while the inner context entered: no further step
                } else {
                    let value = held.value();
                    unwind.enter(move || step(value)).await
                };
                let (inner, value) = held.release();
                match stepped {
                    Some(stepped) => {
                        *this.kept = Some(value);
                        Some(stepped)
                    }
                    None => {
                        inner.exit(value, unwind).await;
                        None
                    }
                }
            }
        }

        fn exit(self: Pin<&mut Self>, stepped: W, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
            let this = self.project();
            async move {
                unwind.drop_value(stepped);
                let value = this.kept.take().expect("async-with: a context is exited once");
                this.inner.exit(value, unwind).await;
            }
        }

        fn fallback(self: Pin<&mut Self>, stepped: W) {
            let this = self.project();
            crate::catch_unwind::quietly(|| drop(stepped));
            if let Some(value) = this.kept.take() {
                this.inner.fallback(value);
            }
        }
    };
}

impl<S: Protocol, F, W> Protocol for EvalMapState<S, F, S::Value>
where
    F: AsyncFnOnce(&mut S::Value) -> Result<W, S::Error>,
{
    type Value = W;
    type Error = S::Error;
    eval_map_protocol!(Protocol);
}

impl<S: SendProtocol, F, W> SendProtocol for EvalMapState<S, F, S::Value>
where
    F: AsyncFnOnce(&mut S::Value) -> Result<W, S::Error>,
    F: for<'a> StepFn<'a, S::Value, W, S::Error> + Send,
    for<'a> <F as StepFn<'a, S::Value, W, S::Error>>::Future: Send,
    W: Send,
{
    type Value = W;
    type Error = S::Error;
    eval_map_protocol!(SendProtocol + Send);
}
