//! A context that only provides a value: Python's `contextlib.nullcontext`.

use core::fmt;
use core::marker::PhantomData;
use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context that provides `value` and has nothing more to undo than dropping it: Python's
/// `contextlib.nullcontext(value)`, Cats Effect's `Resource.pure`. Useful where a context is
/// optional, as the identity of [`and_then`](crate::ContextExt::and_then), and to give any
/// `Drop` value (a lock guard, a temporary file) its place among async contexts: it is dropped
/// at exit, in reverse order with the others.
///
/// ```
/// use async_with::{nullcontext, resource, with, Outcome};
///
/// # futures::executor::block_on(async {
/// // A caller-provided connection is used as is; otherwise one is opened and closed.
/// async fn run(given: Option<u32>) -> Result<u32, async_with::Error<String>> {
///     match given {
///         Some(conn) => with(nullcontext(conn), async |c| Ok(*c)).await,
///         None => with(resource(async || Ok(7), async |_, _: Outcome<'_, String>| Ok(())), async |c| Ok(*c)).await,
///     }
/// }
/// assert_eq!(run(Some(1)).await.unwrap(), 1);
/// assert_eq!(run(None).await.unwrap(), 7);
/// # });
/// ```
pub fn nullcontext<T, E>(value: T) -> NullContext<T, E> {
    NullContext { value: Some(value), error: PhantomData }
}

/// A context that only provides a value; built by [`nullcontext`].
///
/// ```
/// use async_with::{nullcontext, NullContext};
/// let _: NullContext<&str, ()> = nullcontext("as is");
/// ```
#[must_use = "a context does nothing until a scope enters it"]
pub struct NullContext<T, E> {
    value: Option<T>,
    // `fn() -> E`: the error type is only named, never held, so it does not affect `Send`.
    error: PhantomData<fn() -> E>,
}

impl<T: fmt::Debug, E> fmt::Debug for NullContext<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NullContext").field(&self.value).finish()
    }
}

impl<T: Clone, E> Clone for NullContext<T, E> {
    fn clone(&self) -> Self {
        NullContext { value: self.value.clone(), error: PhantomData }
    }
}

// The value is moved out on enter, never pinned.
impl<T, E> Unpin for NullContext<T, E> {}
impl<T, E> Sealed for NullContext<T, E> {}

impl<T, E> IntoLocalContext for NullContext<T, E> {
    type Value = T;
    type Error = E;
    type LocalContext = Self;

    fn into_local_context(self) -> Self {
        self
    }
}

impl<T: Send, E: Send + Sync> IntoContext for NullContext<T, E> {
    type Context = Self;

    fn into_context(self) -> Self {
        self
    }
}

macro_rules! null_protocol {
    ($($send:ident)?) => {
        fn enter(self: Pin<&mut Self>, _: &mut Unwind<E>) -> impl Future<Output = Option<T>> $(+ $send)? {
            core::future::ready(Some(self.get_mut().value.take().expect("async-with: a context is entered once")))
        }

        fn exit(self: Pin<&mut Self>, value: T, unwind: &mut Unwind<E>) -> impl Future<Output = ()> $(+ $send)? {
            // Nothing to await: the value is dropped as the exit is made, which is when it runs.
            unwind.drop_value(value);
            core::future::ready(())
        }

        fn fallback(self: Pin<&mut Self>, value: T) {
            drop(value);
        }
    };
}

impl<T, E> Protocol for NullContext<T, E> {
    type Value = T;
    type Error = E;
    null_protocol!();
}

impl<T: Send, E: Send + Sync> SendProtocol for NullContext<T, E> {
    type Value = T;
    type Error = E;
    null_protocol!(Send);
}
