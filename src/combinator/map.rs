//! [`ContextExt::map`](crate::ContextExt::map): Cats Effect's `Resource.map`.

use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context whose body sees a value made from another context's value; built by
/// [`ContextExt::map`](crate::ContextExt::map).
///
/// ```
/// use async_with::{resource, with, ContextExt, Map, Outcome};
///
/// let db = resource(async || Ok::<_, ()>(vec![1, 2, 3]), async |_, _: Outcome<'_, ()>| Ok(()));
/// let len: Map<_, _> = db.map(|rows: &mut Vec<i32>| rows.len());
/// # futures::executor::block_on(async {
/// assert_eq!(with(len, async |n| Ok(*n)).await.unwrap(), 3);
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct Map<C, F> {
    context: C,
    f: F,
}

impl<C, F> Map<C, F> {
    pub(crate) fn new(context: C, f: F) -> Self {
        Map { context, f }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of a [`Map`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct MapState<S, F, V> {
        #[pin]
        inner: S,
        f: Option<F>,
        // The inner context's value, kept for its exit while the body has the mapped one.
        kept: Option<V>,
    }
}

impl<S, F, V> Sealed for MapState<S, F, V> {}

impl<C: IntoLocalContext, F, W> IntoLocalContext for Map<C, F>
where
    F: FnOnce(&mut C::Value) -> W,
{
    type Value = W;
    type Error = C::Error;
    type LocalContext = MapState<C::LocalContext, F, C::Value>;

    fn into_local_context(self) -> Self::LocalContext {
        MapState { inner: self.context.into_local_context(), f: Some(self.f), kept: None }
    }
}

impl<C: IntoContext, F, W> IntoContext for Map<C, F>
where
    F: FnOnce(&mut C::Value) -> W + Send,
    W: Send,
{
    type Context = MapState<C::Context, F, C::Value>;

    fn into_context(self) -> Self::Context {
        MapState { inner: self.context.into_context(), f: Some(self.f), kept: None }
    }
}

macro_rules! map_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        impl<S: $Protocol, F, W> $Protocol for MapState<S, F, S::Value>
        where
            F: FnOnce(&mut S::Value) -> W $(+ $send)?,
            W: $($send)?,
        {
            type Value = W;
            type Error = S::Error;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<W>> $(+ $send)? {
                let mut this = self.project();
                async move {
                    let mut value = this.inner.as_mut().enter(unwind).await?;
                    let f = this.f.take().expect("async-with: a context is entered once");
                    // Not a cancellation point (a cancellation now is the scope's to see, as
                    // for the context alone); a panic in `f` exits the inner context.
                    match unwind.call(|| f(&mut value)) {
                        Some(mapped) => {
                            *this.kept = Some(value);
                            Some(mapped)
                        }
                        None => {
                            this.inner.exit(value, unwind).await;
                            None
                        }
                    }
                }
            }

            fn exit(self: Pin<&mut Self>, mapped: W, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
                let this = self.project();
                async move {
                    // The mapped value goes first: it was made from the inner one.
                    unwind.drop_value(mapped);
                    let value = this.kept.take().expect("async-with: a context is exited once");
                    this.inner.exit(value, unwind).await;
                }
            }

            fn fallback(self: Pin<&mut Self>, mapped: W) {
                let this = self.project();
                crate::catch_unwind::quietly(|| drop(mapped));
                if let Some(value) = this.kept.take() {
                    this.inner.fallback(value);
                }
            }
        }
    };
}

map_protocol!(Protocol);
map_protocol!(SendProtocol + Send);
