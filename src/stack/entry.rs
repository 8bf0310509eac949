//! What an exit stack keeps for each entry, and how each kind of entry runs its exit in place.
//!
//! An entry's exit runs where the entry lives (inside its one allocation): at close, the entry
//! builds its *exit block*, an async block that owns what the exit needs (the context, the value,
//! and the error the scope lends it), and polls it there. The block's type is fixed when the
//! entry is created, by the function that makes it, so no second allocation is needed.
//!
//! A stack entered into a stack ([`NestedEntry`]) is the one entry that is not exited in place:
//! the stack around it takes its entries over ([`Entry::splice_send`], [`Entry::splice_local`])
//! and closes or drops them in its own loop, so that stacks nested however deep close and drop
//! without recursion. Its exits see the same outcome there, in the same order, as they would if
//! the nested stack closed itself.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};

use crate::outcome::Outcome;
use crate::outcome::OutcomeFn;
use crate::protocol::{Entry, Fallback, MakeExit};
use crate::protocol::{Protocol, SendProtocol};
use crate::unwind::{ExitWithin, Ran, Seed, Settle, Unwind, Within, exit_from_seed, exit_within};

pin_project_lite::pin_project! {
    /// An entry whose exit owns what it needs: a context, exit closure or callback `X` and its
    /// value `V`, held until the exit starts; then the exit block `F` made from them, in the same
    /// place.
    #[project = OwnedProj]
    pub(crate) enum Owned<X, V, E, F> {
        Waiting { held: Held<X, V>, make: MakeExit<X, V, E, F> },
        Running { #[pin] block: F },
        Done,
    }
}

/// What an entry holds until its exit starts. Dropped before that (the stack was dropped, not
/// closed), it hands them to the fallback, whose panic is contained.
pub(crate) struct Held<X, V> {
    parts: Option<(X, V)>,
    fallback: Fallback<X, V>,
}

impl<X, V> Drop for Held<X, V> {
    fn drop(&mut self) {
        if let Some((exit, value)) = self.parts.take() {
            let fallback = self.fallback;
            crate::catch_unwind::quietly(|| fallback(exit, value));
        }
    }
}

impl<X, V, E, F> Owned<X, V, E, F> {
    pub(crate) fn new(exit: X, value: V, make: MakeExit<X, V, E, F>, fallback: Fallback<X, V>) -> Self {
        Owned::Waiting { held: Held { parts: Some((exit, value)), fallback }, make }
    }

    /// Where the value lives, for the stack to lend it.
    pub(crate) fn value(self: Pin<&mut Self>) -> &mut V {
        match self.project() {
            OwnedProj::Waiting { held: Held { parts: Some((_, value)), .. }, .. } => value,
            _ => unreachable!("async-with: the value is lent before the exit"),
        }
    }
}

impl<X, V, E, F: Future<Output: Settle<E>>> Entry<E> for Owned<X, V, E, F> {
    fn poll_exit(mut self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Poll<()> {
        // The block may hold references into itself, so the entry is only ever touched through
        // `Pin<&mut>` and its projections (a shared borrow of it would invalidate them, which
        // Miri reports).
        if let OwnedProj::Waiting { held, make } = self.as_mut().project() {
            let (exit, value) = held.parts.take().expect("async-with: an entry is exited once");
            let block = make(exit, value, unwind.seed());
            self.set(Owned::Running { block });
        }
        let OwnedProj::Running { block } = self.as_mut().project() else {
            unreachable!("async-with: an entry is exited once")
        };
        let done = ready!(block.poll(task));
        self.set(Owned::Done);
        done.settle(unwind);
        Poll::Ready(())
    }
}

pin_project_lite::pin_project! {
    /// `defer` and `callback`: an exit that does not see the outcome. It needs no unwind of its
    /// own, so no exit block: it runs against the stack's unwind, passed to each poll, and records
    /// into it when it ends. The exit is made by `callback` when it starts, bounded by the scope's
    /// exit deadline as every exit is. A callback never called is dropped with the entry, which
    /// the stack drops inside `catch_unwind::quietly` as it drops every entry.
    #[project = DeferredProj]
    pub(crate) enum Deferred<C, F, E> {
        Waiting { callback: Option<C> },
        Running { #[pin] exit: ExitWithin<C, F, Within<E>> },
    }
}

impl<C, F, E> Deferred<C, F, E> {
    pub(crate) fn new(callback: C) -> Self {
        Deferred::Waiting { callback: Some(callback) }
    }

    /// The entry's value, for the stack's push: there is none.
    pub(crate) fn value(self: Pin<&mut Self>) -> &mut () {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(())) // a zero-sized box: no allocation
    }
}

impl<C: FnOnce() -> F, F: Future<Output = Result<(), E>>, E> Entry<E> for Deferred<C, F, E> {
    fn poll_exit(mut self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Poll<()> {
        if let DeferredProj::Waiting { callback } = self.as_mut().project() {
            let callback = callback.take().expect("async-with: an entry is exited once");
            let deadline = unwind.deadline();
            self.set(Deferred::Running { exit: exit_within(deadline, callback) });
        }
        let DeferredProj::Running { exit } = self.as_mut().project() else {
            unreachable!("async-with: an entry is exited once")
        };
        // Nothing is left to drop before recording: the exit dropped its deadline as it ended.
        unwind.exited(ready!(exit.poll(task)));
        Poll::Ready(())
    }
}

/// `push_exit`: an exit closure without a value of its own.
pub(crate) fn outcome_exit<F, E>(exit: F, (): (), seed: Seed<E>) -> impl Future<Output = Ran<E>>
where
    F: for<'a> OutcomeFn<'a, E>,
{
    exit_from_seed!(seed, |outcome| exit(outcome))
}

pub(crate) fn local_outcome_exit<F, E>(exit: F, (): (), seed: Seed<E>) -> impl Future<Output = Ran<E>>
where
    F: AsyncFnOnce(Outcome<'_, E>) -> Result<(), E>,
{
    exit_from_seed!(seed, |outcome| exit(outcome))
}

/// The fallback of entries that have nothing to fall back on (callbacks): dropping them.
pub(crate) fn drop_both<X, V>(exit: X, value: V) {
    drop(value);
    drop(exit);
}

/// The fallback of a composite entry: its protocol's.
pub(crate) fn composite_fallback<S: SendProtocol>(mut state: Pin<alloc::boxed::Box<S>>, value: S::Value) {
    SendProtocol::fallback(state.as_mut(), value);
}

/// The fallback of a local composite entry.
pub(crate) fn local_composite_fallback<S: Protocol>(mut state: Pin<alloc::boxed::Box<S>>, value: S::Value) {
    Protocol::fallback(state.as_mut(), value);
}

/// A composite context (a tuple, a combinator): its protocol state, boxed so that it stays
/// pinned while the block owns it, runs its own exits under the seeded unwind.
pub(crate) async fn composite_exit<S: SendProtocol>(
    mut state: Pin<alloc::boxed::Box<S>>,
    value: S::Value,
    seed: Seed<S::Error>,
) -> Unwind<S::Error> {
    let mut unwind = Unwind::seeded(seed);
    SendProtocol::exit(state.as_mut(), value, &mut unwind).await;
    unwind
}

pub(crate) async fn local_composite_exit<S: Protocol>(
    mut state: Pin<alloc::boxed::Box<S>>,
    value: S::Value,
    seed: Seed<S::Error>,
) -> Unwind<S::Error> {
    let mut unwind = Unwind::seeded(seed);
    Protocol::exit(state.as_mut(), value, &mut unwind).await;
    unwind
}
