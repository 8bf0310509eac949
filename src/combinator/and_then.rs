//! [`ContextExt::and_then`](crate::ContextExt::and_then): Cats Effect's `Resource.flatMap`.

use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Held, Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context, then a second one made from its value; built by
/// [`ContextExt::and_then`](crate::ContextExt::and_then).
///
/// ```
/// use async_with::{nullcontext, with, AndThen, ContextExt};
///
/// let pair: AndThen<_, _> = nullcontext::<_, ()>(2).and_then(|n: &mut i32| nullcontext(*n * 10));
/// # futures::executor::block_on(async {
/// assert_eq!(with(pair, async |n| Ok(*n)).await.unwrap(), 20);
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct AndThen<C, F> {
    context: C,
    f: F,
}

impl<C, F> AndThen<C, F> {
    pub(crate) fn new(context: C, f: F) -> Self {
        AndThen { context, f }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of an [`AndThen`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct AndThenState<S, F, V, T> {
        #[pin]
        first: S,
        f: Option<F>,
        // The first context's value, kept for its exit while the body has the second one's.
        kept: Option<V>,
        #[pin]
        second: Option<T>,
    }
}

impl<S, F, V, T> Sealed for AndThenState<S, F, V, T> {}

impl<C: IntoLocalContext, F, N> IntoLocalContext for AndThen<C, F>
where
    F: FnOnce(&mut C::Value) -> N,
    N: IntoLocalContext<Error = C::Error>,
{
    type Value = N::Value;
    type Error = C::Error;
    type LocalContext = AndThenState<C::LocalContext, F, C::Value, N::LocalContext>;

    fn into_local_context(self) -> Self::LocalContext {
        AndThenState { first: self.context.into_local_context(), f: Some(self.f), kept: None, second: None }
    }
}

impl<C: IntoContext, F, N> IntoContext for AndThen<C, F>
where
    F: FnOnce(&mut C::Value) -> N + Send,
    N: IntoContext<Error = C::Error>,
{
    type Context = AndThenState<C::Context, F, C::Value, N::Context>;

    fn into_context(self) -> Self::Context {
        AndThenState { first: self.context.into_context(), f: Some(self.f), kept: None, second: None }
    }
}

macro_rules! and_then_protocol {
    ($Protocol:ident, $Into:ident, $Ctx:ident, $into:ident $(+ $send:ident)?) => {
        impl<S: $Protocol, F, N> $Protocol for AndThenState<S, F, S::Value, N::$Ctx>
        where
            F: FnOnce(&mut S::Value) -> N $(+ $send)?,
            N: $Into<Error = S::Error>,
        {
            type Value = N::Value;
            type Error = S::Error;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<N::Value>> $(+ $send)? {
                let this = self.project();
                async move {
                    let mut first = this.first;
                    let value = first.as_mut().enter(unwind).await?;
                    // Held: if the scope is dropped while the second enters, the first falls back.
                    let mut held = Held::new(first, value, <S as $Protocol>::fallback);
                    let make = this.f.take().expect("async-with: a context is entered once");
                    let next = if unwind.cancel_requested() {
                        None // cancelled while the first entered: enter nothing more
                    } else {
                        let value = held.value();
                        // Run like an enter, so that a panic in `make` exits the first context.
                        unwind.enter(move || core::future::ready(Ok(make(value).$into()))).await
                    };
                    let entered = match next {
                        Some(next) => {
                            let mut second = this.second;
                            second.set(Some(next));
                            let second = second.as_pin_mut().expect("set above");
                            second.enter(unwind).await
                        }
                        None => None,
                    };
                    let (first, value) = held.release();
                    match entered {
                        Some(entered) => {
                            *this.kept = Some(value);
                            Some(entered)
                        }
                        None => {
                            // The second failed (and cleaned up after itself): undo the first.
                            first.exit(value, unwind).await;
                            None
                        }
                    }
                }
            }

            fn exit(self: Pin<&mut Self>, entered: N::Value, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
                let this = self.project();
                async move {
                    let value = this.kept.take().expect("async-with: a context is exited once");
                    let held = Held::new(this.first, value, <S as $Protocol>::fallback);
                    let second = this.second.as_pin_mut().expect("async-with: exit after a successful enter");
                    second.exit(entered, unwind).await;
                    let (first, value) = held.release();
                    first.exit(value, unwind).await;
                }
            }

            fn fallback(self: Pin<&mut Self>, entered: N::Value) {
                let this = self.project();
                if let Some(second) = this.second.as_pin_mut() {
                    crate::catch_unwind::quietly(|| second.fallback(entered));
                }
                if let Some(value) = this.kept.take() {
                    this.first.fallback(value);
                }
            }
        }
    };
}

and_then_protocol!(Protocol, IntoLocalContext, LocalContext, into_local_context);
and_then_protocol!(SendProtocol, IntoContext, Context, into_context + Send);
