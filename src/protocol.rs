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

#[cfg(feature = "std")]
use alloc::boxed::Box;
#[cfg(feature = "std")]
use alloc::vec::Vec;
#[cfg(feature = "std")]
use core::task::{Context, Poll};

#[cfg(feature = "std")]
use crate::error::Suppressed;
#[cfg(feature = "std")]
use crate::stack::arena::{Arena, Orphans};
use crate::unwind::Unwind;
#[cfg(feature = "std")]
use crate::unwind::{Seed, Settle};

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
            crate::catch_unwind::quietly(|| fallback(state, value));
        }
    }
}

// ----- Exit stacks, as the contexts that enter themselves into one see them. -----
//
// A context kind with a cheaper way into a stack than boxing its protocol state (a resource, an
// `AsyncContext`, a generator, a nested stack) says so in `IntoContext::enter_stack`, through
// these traits: so a context kind names what it needs of a stack, not the stack (which names
// the contexts it enters).

/// An entry of an exit stack, as the stack sees it (sealed): what a context that enters itself
/// into a stack hands it (a generator context does).
#[cfg(feature = "std")]
#[doc(hidden)]
pub trait Entry<E> {
    /// Runs the entry's exit, seeing the stack's current outcome and recording into it.
    fn poll_exit(self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Poll<()>;

    /// If this entry is a nested exit stack (and its exit has not started): takes its entries
    /// and orphaned errors out, as a `Send` stack holds them, for the stack around it to close or
    /// drop in its own loop. What is left is an empty stack.
    fn splice_send(self: Pin<&mut Self>) -> Option<Spliced<dyn Entry<E> + Send, E>> {
        None
    }

    /// [`Entry::splice_send`] as a local stack whose entries live for `'a` holds them.
    fn splice_local<'a>(self: Pin<&mut Self>) -> Option<Spliced<dyn Entry<E> + 'a, E>>
    where
        Self: 'a,
    {
        None
    }
}

/// The entries and orphaned errors of a nested stack, taken over by the stack around it.
#[cfg(feature = "std")]
#[doc(hidden)]
pub struct Spliced<D: ?Sized, E> {
    pub(crate) entries: Arena<D, Orphans<E>>,
    pub(crate) orphans: Vec<Suppressed<E>>,
}

#[cfg(feature = "std")]
impl<D: ?Sized, E> core::fmt::Debug for Spliced<D, E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Spliced").field("orphans", &self.orphans.len()).finish_non_exhaustive()
    }
}

/// Makes an entry's exit block from what it owns and what the scope hands it.
#[cfg(feature = "std")]
pub type MakeExit<X, V, E, F> = fn(X, V, Seed<E>) -> F;

/// Runs an entry's synchronous fallback, when the stack is dropped without closing.
#[cfg(feature = "std")]
pub type Fallback<X, V> = fn(X, V);

/// What entering into a stack gives: the entry's key and its value, lent for as long as the stack
/// is borrowed; or the enter's first error (`None` when it gave up on a cancellation).
#[cfg(feature = "std")]
pub type Entered<'a, K, V, E> = Result<(K, &'a mut V), Option<E>>;

/// An exit stack whose entries are `Send` (sealed): [`ExitStack`](crate::ExitStack). Its methods
/// lend `&mut` values from `&self`: that is what a stack is for (see `stack/arena.rs`).
#[cfg(feature = "std")]
#[doc(hidden)]
pub trait SendStack<E: Send + Sync + 'static>: Sync {
    /// What names an entry for an early exit.
    type Key: Send;

    /// Pushes an entry that owns its exit `exit` and its value: `make` builds the exit block.
    #[allow(clippy::mut_from_ref)]
    fn push_context<X, V, F>(
        &self,
        exit: X,
        value: V,
        make: MakeExit<X, V, E, F>,
        fallback: Fallback<X, V>,
    ) -> (Self::Key, &mut V)
    where
        X: Send + 'static,
        V: Send + 'static,
        F: Future<Output: Settle<E>> + Send + 'static;

    /// Pushes an entry of its own kind, and lends the value `value` finds in it.
    #[allow(clippy::mut_from_ref)]
    fn push_entry<T, V>(&self, entry: Pin<Box<T>>, value: fn(Pin<&mut T>) -> &mut V) -> (Self::Key, &mut V)
    where
        T: Entry<E> + Send + 'static;

    /// Enters a protocol state, boxed so that it stays pinned, exiting through its protocol.
    fn enter_boxed<P>(
        &self,
        state: Pin<Box<P>>,
    ) -> impl Future<Output = Entered<'_, Self::Key, P::Value, E>> + Send
    where
        P: SendProtocol<Error = E> + Send + 'static,
        P::Value: Send + 'static;

    /// What the caller of an enter that failed gets (its first error; the stack keeps the others).
    fn failed(&self, unwind: Unwind<E>) -> Option<E>;
}

/// An exit stack whose entries live for `'env` (sealed): [`LocalExitStack`](crate::LocalExitStack).
#[cfg(feature = "std")]
#[doc(hidden)]
pub trait LocalStack<'env, E: 'env> {
    /// What names an entry for an early exit.
    type Key;

    /// [`SendStack::push_context`].
    #[allow(clippy::mut_from_ref)]
    fn push_context<X, V, F>(
        &self,
        exit: X,
        value: V,
        make: MakeExit<X, V, E, F>,
        fallback: Fallback<X, V>,
    ) -> (Self::Key, &mut V)
    where
        X: 'env,
        V: 'env,
        F: Future<Output: Settle<E>> + 'env;

    /// [`SendStack::push_entry`].
    #[allow(clippy::mut_from_ref)]
    fn push_entry<T, V>(&self, entry: Pin<Box<T>>, value: fn(Pin<&mut T>) -> &mut V) -> (Self::Key, &mut V)
    where
        T: Entry<E> + 'env;

    /// [`SendStack::enter_boxed`].
    fn enter_boxed<'s, P>(
        &'s self,
        state: Pin<Box<P>>,
    ) -> impl Future<Output = Entered<'s, Self::Key, P::Value, E>>
    where
        P: Protocol<Error = E> + 'env,
        P::Value: 'env,
        'env: 's;

    /// [`SendStack::failed`].
    fn failed(&self, unwind: Unwind<E>) -> Option<E>;
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn spliced_entries_show_how_many_errors_they_carry() {
        let spliced = Spliced::<dyn Entry<u8>, u8> { entries: Arena::new(), orphans: Vec::new() };
        assert_eq!(alloc::format!("{spliced:?}"), "Spliced { orphans: 0, .. }");
    }
}
