//! The sealed protocol between a scope and what it entered.
//!
//! Every context becomes a *protocol state* that the scope pins and drives with `enter` and
//! `exit`. The semantics of errors and panics live in [`Unwind`]; implementations only sequence
//! calls into it.
//!
//! There are two flavours with the same methods: [`SendProtocol`] declares its futures `Send`, so
//! that `Send` survives behind `impl IntoContext` (a caller cannot see through an opaque type, only
//! through the bounds a trait declares); [`Protocol`] does not, for `!Send` contexts. Stable Rust
//! cannot yet write "the future of this method is `Send`" at the use site (return type notation),
//! hence the pair, as in the `trait-variant` crate.

use core::future::Future;
use core::pin::Pin;

use crate::unwind::Unwind;

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// The local protocol. `enter` either succeeds completely (`Some`) or, before returning `None`,
/// exits whatever it had entered itself: a scope never calls `exit` after a failed `enter`. `exit`
/// is called at most once, with the value `enter` gave.
#[doc(hidden)]
pub trait Protocol: Sealed {
    type Value;
    type Error;
    fn enter(
        self: Pin<&mut Self>,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = Option<Self::Value>>;
    fn exit(
        self: Pin<&mut Self>,
        value: Self::Value,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = ()>;
    /// What runs instead of `exit` when the scope is dropped before it could exit: synchronous,
    /// inside `Drop`. By default the value is dropped.
    fn fallback(self: Pin<&mut Self>, value: Self::Value);
}

/// The same protocol, with `Send` futures.
#[doc(hidden)]
pub trait SendProtocol: Sealed + Send {
    type Value: Send;
    type Error: Send + Sync;
    fn enter(
        self: Pin<&mut Self>,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = Option<Self::Value>> + Send;
    fn exit(
        self: Pin<&mut Self>,
        value: Self::Value,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = ()> + Send;
    /// See [`Protocol::fallback`].
    fn fallback(self: Pin<&mut Self>, value: Self::Value);
}

pin_project_lite::pin_project! {
    /// A future whose output goes through `f`: how a protocol state passes on its inner state's
    /// future without an `async` layer of its own.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct MapOutput<F, G> {
        #[pin]
        future: F,
        f: Option<G>,
    }
}

impl<F, G> MapOutput<F, G> {
    #[inline]
    pub(crate) fn new(future: F, f: G) -> Self {
        MapOutput { future, f: Some(f) }
    }
}

impl<F: Future, G: FnOnce(F::Output) -> T, T> Future for MapOutput<F, G> {
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut core::task::Context<'_>) -> core::task::Poll<T> {
        let this = self.project();
        let out = core::task::ready!(this.future.poll(task));
        core::task::Poll::Ready((this.f.take().expect("async-with: polled after it ended"))(out))
    }
}

/// A value entered but not exited yet, held with the state that exits it: if the scope is
/// dropped meanwhile (drop cancellation), `Drop` runs the state's synchronous fallback instead.
/// `F` is the fallback function's own (zero-sized) type, not a pointer.
pub(crate) struct Held<'a, T: ?Sized, V, F: Fn(Pin<&mut T>, V)> {
    state: Option<Pin<&'a mut T>>,
    value: Option<V>,
    fallback: F,
}

impl<'a, T: ?Sized, V, F: Fn(Pin<&mut T>, V)> Held<'a, T, V, F> {
    #[inline]
    pub(crate) fn new(state: Pin<&'a mut T>, value: V, fallback: F) -> Self {
        Held { state: Some(state), value: Some(value), fallback }
    }

    #[inline]
    pub(crate) fn value(&mut self) -> &mut V {
        self.value.as_mut().expect("held until released")
    }

    /// Takes the state and the value back, for the async exit.
    #[inline]
    pub(crate) fn release(mut self) -> (Pin<&'a mut T>, V) {
        let state = self.state.take().expect("held until released");
        let value = self.value.take().expect("held until released");
        (state, value)
    }
}

impl<T: ?Sized, V, F: Fn(Pin<&mut T>, V)> Drop for Held<'_, T, V, F> {
    fn drop(&mut self) {
        if let (Some(state), Some(value)) = (self.state.take(), self.value.take()) {
            let fallback = &self.fallback;
            crate::unwind::quietly(|| fallback(state, value));
        }
    }
}
