//! [`ContextExt::named`](crate::ContextExt::named): a name for a context's errors' origins.

use core::future::Future;
use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::origin::Naming;
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context whose errors say its name in their [`Origin`](crate::Origin); built by
/// [`ContextExt::named`](crate::ContextExt::named). Entered and exited as the context itself.
///
/// ```
/// use async_with::{resource, with, ContextExt, Named, Outcome};
///
/// let db: Named<_> = resource(async || Err::<(), _>("refused"), async |(), _: Outcome<'_, &str>| Ok(())).named("db");
/// # futures::executor::block_on(async {
/// let err = with(db, async |()| Ok(())).await.unwrap_err();
/// assert_eq!(format!("{err:#}"), "refused (in the enter of `db`)");
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct Named<C> {
    context: C,
    name: &'static str,
}

impl<C> Named<C> {
    pub(crate) fn new(context: C, name: &'static str) -> Self {
        Named { context, name }
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of a [`Named`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct NamedState<S> {
        #[pin]
        inner: S,
        name: &'static str,
    }
}

impl<S> Sealed for NamedState<S> {}

impl<C: IntoLocalContext> IntoLocalContext for Named<C> {
    type Value = C::Value;
    type Error = C::Error;
    type LocalContext = NamedState<C::LocalContext>;

    fn into_local_context(self) -> Self::LocalContext {
        NamedState { inner: self.context.into_local_context(), name: self.name }
    }
}

impl<C: IntoContext> IntoContext for Named<C> {
    type Context = NamedState<C::Context>;

    fn into_context(self) -> Self::Context {
        NamedState { inner: self.context.into_context(), name: self.name }
    }
}

macro_rules! named_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        impl<S: $Protocol> $Protocol for NamedState<S> {
            type Value = S::Value;
            type Error = S::Error;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<S::Value>> $(+ $send)? {
                let this = self.project();
                Naming::new(this.inner.enter(unwind), *this.name)
            }

            fn exit(self: Pin<&mut Self>, value: S::Value, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
                let this = self.project();
                Naming::new(this.inner.exit(value, unwind), *this.name)
            }

            fn fallback(self: Pin<&mut Self>, value: S::Value) {
                self.project().inner.fallback(value)
            }
        }
    };
}

named_protocol!(Protocol);
named_protocol!(SendProtocol + Send);
