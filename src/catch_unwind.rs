//! A future that turns a panic inside `poll` into a value, so that the unwinder can run the
//! remaining exits before resuming it. Without `std` there is no way to catch a panic: the future
//! is then a plain pass-through and a panic unwinds (or aborts) as it would without this crate.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(feature = "std")]
pub(crate) type Payload = alloc::boxed::Box<dyn core::any::Any + Send + 'static>;

/// Nothing can be caught without `std`, so no payload can exist.
#[cfg(not(feature = "std"))]
pub(crate) type Payload = core::convert::Infallible;

pin_project_lite::pin_project! {
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        future: F,
    }
}

pub(crate) fn catch_unwind<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind { future }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Payload>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        #[cfg(feature = "std")]
        {
            // The future is never polled again after it panicked (the caller drops it), so no
            // broken invariant inside it can be observed: asserting unwind safety is sound here.
            let poll = core::panic::AssertUnwindSafe(|| future.poll(cx));
            match std::panic::catch_unwind(poll) {
                Ok(poll) => poll.map(Ok),
                Err(payload) => Poll::Ready(Err(payload)),
            }
        }
        #[cfg(not(feature = "std"))]
        future.poll(cx).map(Ok)
    }
}
