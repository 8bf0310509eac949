//! [`ContextExt::map_err`](crate::ContextExt::map_err) and
//! [`ContextExt::err_into`](crate::ContextExt::err_into): a context of one error type inside a
//! scope of another.

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::error::ForeignError;
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::{Unwind, exit_within};

/// A context whose errors are converted into another type; built by
/// [`ContextExt::map_err`](crate::ContextExt::map_err) and
/// [`ContextExt::err_into`](crate::ContextExt::err_into).
///
/// ```
/// use async_with::{resource, with, ContextExt, MapErr, Outcome};
///
/// let ctx = resource(async || Err::<(), _>("refused".to_string()), async |(), _: Outcome<'_, String>| Ok(()));
/// let ctx: MapErr<_, _, String> = ctx.map_err(|e: String| format!("db: {e}"));
/// # futures::executor::block_on(async {
/// let error = with(ctx, async |()| Ok(())).await.unwrap_err();
/// assert_eq!(error.primary().unwrap(), "db: refused");
/// # });
/// ```
#[must_use = "a context does nothing until a scope enters it"]
pub struct MapErr<C, F, E> {
    context: C,
    f: F,
    // The error type converted into: named, never held.
    error: PhantomData<fn() -> E>,
}

impl<C: fmt::Debug, F, E> fmt::Debug for MapErr<C, F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapErr").field("context", &self.context).finish_non_exhaustive()
    }
}

impl<C, F, E> MapErr<C, F, E> {
    pub(crate) fn new(context: C, f: F) -> Self {
        MapErr { context, f, error: PhantomData }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of a [`MapErr`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct MapErrState<S, F, E> {
        #[pin]
        inner: S,
        f: F,
        error: PhantomData<fn() -> E>,
    }
}

impl<S, F, E> Sealed for MapErrState<S, F, E> {}

impl<C, F, E> IntoLocalContext for MapErr<C, F, E>
where
    C: IntoLocalContext<Error: From<ForeignError>>,
    F: FnMut(C::Error) -> E,
    E: fmt::Display,
{
    type Value = C::Value;
    type Error = E;
    type LocalContext = MapErrState<C::LocalContext, F, E>;

    fn into_local_context(self) -> Self::LocalContext {
        MapErrState { inner: self.context.into_local_context(), f: self.f, error: PhantomData }
    }
}

impl<C, F, E> IntoContext for MapErr<C, F, E>
where
    C: IntoContext<Error: From<ForeignError>>,
    F: FnMut(C::Error) -> E + Send,
    E: fmt::Display + Send + Sync,
{
    type Context = MapErrState<C::Context, F, E>;

    fn into_context(self) -> Self::Context {
        MapErrState { inner: self.context.into_context(), f: self.f, error: PhantomData }
    }
}

// The inner context runs under an unwind of its own error type, which starts out seeing this
// scope's outcome (a failure shown as a `ForeignError`); what it records comes back converted.
macro_rules! map_err_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        impl<S: $Protocol<Error: From<ForeignError> $(+ $send)?>, F, E> $Protocol for MapErrState<S, F, E>
        where
            F: FnMut(S::Error) -> E $(+ $send)?,
            E: fmt::Display $(+ $send + Sync)?,
        {
            type Value = S::Value;
            type Error = E;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<E>) -> impl Future<Output = Option<S::Value>> $(+ $send)? {
                let this = self.project();
                let (state, f) = (this.inner, this.f);
                async move {
                    let mut inner = unwind.presented_as::<S::Error>();
                    let entered = state.enter(&mut inner).await;
                    unwind.merge_mapped(inner, f);
                    entered
                }
            }

            fn exit(self: Pin<&mut Self>, value: S::Value, unwind: &mut Unwind<E>) -> impl Future<Output = ()> $(+ $send)? {
                let this = self.project();
                let (state, f) = (this.inner, this.f);
                async move {
                    let mut inner = unwind.presented_as::<S::Error>();
                    // The inner context's own unwind has no deadline: this scope's bounds it.
                    let deadline = unwind.deadline();
                    let exited = {
                        let inner = &mut inner;
                        exit_within(deadline, move || async move {
                            state.exit(value, inner).await;
                            Ok(())
                        })
                        .await
                    };
                    unwind.exited_mapped(exited, inner, f);
                }
            }

            fn fallback(self: Pin<&mut Self>, value: S::Value) {
                self.project().inner.fallback(value);
            }
        }
    };
}

map_err_protocol!(Protocol);
map_err_protocol!(SendProtocol + Send);
