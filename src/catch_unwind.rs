//! Futures that turn a panic inside `poll` (or inside the call that makes the future) into a
//! value, so that the unwinder can run the remaining exits before resuming it. Without `std`
//! there is no way to catch a panic: [`Caught`] is then a plain pass-through and a panic unwinds
//! (or aborts) as it would without this crate.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(feature = "std")]
pub(crate) type Payload = alloc::boxed::Box<dyn core::any::Any + Send + 'static>;

/// Nothing can be caught without `std`, so no payload can exist.
#[cfg(not(feature = "std"))]
pub(crate) type Payload = core::convert::Infallible;

#[cfg(feature = "std")]
pin_project_lite::pin_project! {
    /// A future whose panics are caught: what a detached scope's task runs in.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        future: F,
    }
}

#[cfg(feature = "std")]
pub(crate) fn catch_unwind<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind { future }
}

#[cfg(feature = "std")]
impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Payload>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        // The future is never polled again after it panicked (the caller drops it), so no
        // broken invariant inside it can be observed: asserting unwind safety is sound here.
        let poll = core::panic::AssertUnwindSafe(|| future.poll(cx));
        match std::panic::catch_unwind(poll) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A future made by calling a closure, polled in place: a panic in the call itself (a
    /// hand-written `fn exit(..) -> impl Future` may run code before it returns its future) is
    /// caught like one in `poll`. Used instead of an `async move { f().await }` block, which
    /// would store the closure's arguments a second time. The closure is called by the first
    /// poll, inside the same `catch_unwind` as that poll: one catch per step, not two.
    #[project = CaughtProj]
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) enum Caught<M, F> {
        Make {
            make: Option<M>,
        },
        Running {
            #[pin]
            future: F,
        },
        Done,
    }
}

/// The future `make` makes, to poll in place; `make` is called by its first poll (a panic in it
/// is then caught as one of that poll).
#[inline]
pub(crate) fn call<M: FnOnce() -> F, F: Future>(make: M) -> Caught<M, F> {
    Caught::Make { make: Some(make) }
}

impl<M: FnOnce() -> F, F: Future> Caught<M, F> {
    /// Makes the future if it is not made yet, and polls it.
    #[inline]
    fn poll_made(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let CaughtProj::Make { make } = self.as_mut().project() {
            let make = make.take().expect("async-with: made once");
            self.set(Caught::Running { future: make() });
        }
        match self.project() {
            CaughtProj::Running { future } => future.poll(cx),
            _ => unreachable!("async-with: made above"),
        }
    }
}

impl<M: FnOnce() -> F, F: Future> Future for Caught<M, F> {
    type Output = Result<F::Output, Payload>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Through the projection, never `*self`: a shared borrow of a running future that holds
        // references into itself would invalidate them (Miri reports it).
        if let CaughtProj::Done = self.as_mut().project() {
            panic!("async-with: polled after it ended");
        }
        #[cfg(feature = "std")]
        let out = {
            // As in `CatchUnwind`: the future is dropped after it panicked, never polled.
            let poll = core::panic::AssertUnwindSafe(|| self.as_mut().poll_made(cx));
            match std::panic::catch_unwind(poll) {
                Ok(Poll::Ready(out)) => Ok(out),
                Ok(Poll::Pending) => return Poll::Pending,
                Err(payload) => Err(payload),
            }
        };
        #[cfg(not(feature = "std"))]
        let out: Result<F::Output, Payload> = Ok(core::task::ready!(self.as_mut().poll_made(cx)));
        self.set(Caught::Done);
        Poll::Ready(out)
    }
}

/// Runs `f`, which drops user values, so that a panic in a destructor cannot become a double
/// panic (or escape a `Drop`): it is swallowed, after the panic hook of `std` printed it.
pub(crate) fn quietly(f: impl FnOnce()) {
    #[cfg(feature = "std")]
    if let Err(payload) = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)) {
        drop_payload(payload);
    }
    #[cfg(not(feature = "std"))]
    f();
}

/// Drops a caught panic's payload. Its destructor is user code and may panic in turn (a payload
/// whose `Drop` panics): that panic's payload is dropped the same way, until one drops quietly,
/// so that nothing escapes (from a `Drop` of the crate's, or into a double panic).
#[cfg(feature = "std")]
pub(crate) fn drop_payload(payload: Payload) {
    let mut next = Some(payload);
    while let Some(payload) = next.take() {
        if let Err(again) = std::panic::catch_unwind(core::panic::AssertUnwindSafe(move || drop(payload))) {
            next = Some(again);
        }
    }
}
