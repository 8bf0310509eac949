//! Structured cancellation: how a scope tells the scopes running inside it that it is cancelled,
//! and learns whether they are still busy, with no allocation and no runtime.
//!
//! The way `tracing::Instrument` sets the current span: while a scope polls what runs inside it,
//! a thread-local *frame* says whether that scope is cancelled. A scope polled inside another
//! one's body reads the frame at the start of each of its polls: if its parent is cancelled, so
//! is it (its body stops at its current await, its exits run to completion seeing `Cancelled`).
//! Whenever it returns `Pending`, it marks the frame it was polled in as having a *busy child*:
//! the parent then keeps polling its body instead of dropping it, until no child is busy. So
//! the cancellation travels down, innermost scopes exit first, and no inner scope is dropped
//! while it is exiting.
//!
//! What is a child is decided by the poll stack, not by types: a scope polled by another task
//! (spawned) is not a child, one polled by `join!` or `select!` inside a body is. Enters and exits
//! are polled in a *shielded* frame (not cancelled): acquisition and cleanup are not
//! interrupted, and neither are the scopes they run.
//!
//! Without `std` there are no thread-locals: every frame reads as "not cancelled", and a
//! scope's cancellation reaches only its own body, which is dropped.

use crate::error::Cause;

/// What a scope tells what it polls, and what it learns from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The scope is cancelled: what runs inside stops at its next await.
    pub(crate) cancelled: bool,
    /// The scope interrupts enters in progress when cancelled.
    pub(crate) interrupt_enters: bool,
    /// Set by what ran inside: a child scope (or an exit-stack enter or release) returned
    /// `Pending`, so it is still busy.
    pub(crate) busy: bool,
    /// Set by the scope itself once it runs its exits: its signal no longer matters.
    pub(crate) exiting: bool,
    /// The scope's signal panicked: its payload waits in [`SIGNAL_PANIC`] for the scope's
    /// unwinder, which records it where it would have recorded the cancellation.
    pub(crate) panicking: bool,
}

impl Frame {
    /// The frame of code that runs shielded from cancellation: enters and exits.
    pub(crate) const SHIELDED: Frame =
        Frame { cancelled: false, interrupt_enters: false, busy: false, exiting: false, panicking: false };
}

#[cfg(feature = "std")]
std::thread_local! {
    static CURRENT: core::cell::Cell<Frame> = const { core::cell::Cell::new(Frame::SHIELDED) };
    /// Why the polling scope is cancelled, when its frame says it is: kept apart from the frame,
    /// so that the frame stays a few bytes and this is only written by scopes that are cancelled.
    static CAUSE: core::cell::Cell<Cause> = const { core::cell::Cell::new(Cause::NONE) };
    /// The reason a signal gave as it fired ([`report_reason`]), read by the scope that polled it.
    static SIGNAL_REASON: core::cell::Cell<Option<&'static str>> = const { core::cell::Cell::new(None) };
    /// The payload of a scope's panicking signal, while the scope polls what it runs.
    static SIGNAL_PANIC: core::cell::Cell<Option<crate::catch_unwind::Payload>> = const { core::cell::Cell::new(None) };
}

/// Offers the payload of the polling scope's panicked signal for the duration of `poll`; what
/// the scope's unwinder did not take is given back, and the slot is left as it was found (a
/// scope polled inside another one's body must not lose the outer one's payload).
#[cfg(feature = "std")]
pub(crate) fn offering<T>(payload: &mut Option<crate::catch_unwind::Payload>, poll: impl FnOnce() -> T) -> T {
    struct TakeBack<'a> {
        payload: &'a mut Option<crate::catch_unwind::Payload>,
        found: Option<crate::catch_unwind::Payload>,
    }
    impl Drop for TakeBack<'_> {
        fn drop(&mut self) {
            *self.payload = SIGNAL_PANIC.with(|slot| slot.replace(self.found.take()));
        }
    }
    let found = SIGNAL_PANIC.with(|slot| slot.replace(payload.take()));
    let take_back = TakeBack { payload, found };
    let out = poll();
    drop(take_back);
    out
}

/// Takes the payload of the polling scope's panicked signal, if its frame says there is one.
#[cfg(feature = "std")]
pub(crate) fn take_signal_panic() -> Option<crate::catch_unwind::Payload> {
    if current().panicking { SIGNAL_PANIC.with(core::cell::Cell::take) } else { None }
}

/// Tells the scope polling this signal why it fired: called by a signal as it completes (the
/// future of [`CancellationToken::cancelled`](crate::CancellationToken::cancelled)).
#[cfg(feature = "std")]
pub(crate) fn report_reason(reason: Option<&'static str>) {
    SIGNAL_REASON.with(|slot| slot.set(reason));
}

/// Polls a signal, and returns what it reported with [`report_reason`] while it was polled.
#[cfg(feature = "std")]
#[inline]
pub(crate) fn reason_of<T>(poll: impl FnOnce() -> T) -> (T, Option<&'static str>) {
    let before = SIGNAL_REASON.with(|slot| slot.take());
    let out = poll();
    (out, SIGNAL_REASON.with(|slot| slot.replace(before)))
}

/// Why the scope polling the caller is cancelled ([`Cause::NONE`] when it is not).
pub(crate) fn cause() -> Cause {
    #[cfg(feature = "std")]
    if current().cancelled {
        return CAUSE.with(core::cell::Cell::get);
    }
    Cause::NONE
}

/// Runs `poll` with `cause` as the current scope's cause (see [`cause`]); the previous one is
/// restored, even if `poll` unwinds.
#[cfg(feature = "std")]
pub(crate) fn with_cause<T>(cause: Cause, poll: impl FnOnce() -> T) -> T {
    struct Restore(Cause);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAUSE.with(|cell| cell.set(self.0));
        }
    }
    let _restore = Restore(CAUSE.with(|cell| cell.replace(cause)));
    poll()
}

/// The frame of the scope polling the caller (the shielded one outside any scope).
#[inline]
pub(crate) fn current() -> Frame {
    #[cfg(feature = "std")]
    {
        CURRENT.with(core::cell::Cell::get)
    }
    #[cfg(not(feature = "std"))]
    Frame::SHIELDED
}

/// Tells the frame of the scope polling the caller that something inside it is still busy.
#[inline]
pub(crate) fn mark_busy() {
    #[cfg(feature = "std")]
    CURRENT.with(|cell| {
        let mut frame = cell.get();
        frame.busy = true;
        cell.set(frame);
    });
}

/// Whether something polled since the last call marked the caller's frame busy; clears the mark.
/// What a body is polled under: its scope's own frame, read back after each poll of the body.
#[inline]
pub(crate) fn take_busy() -> bool {
    #[cfg(feature = "std")]
    {
        CURRENT.with(|cell| {
            let mut frame = cell.get();
            let busy = core::mem::replace(&mut frame.busy, false);
            cell.set(frame);
            busy
        })
    }
    #[cfg(not(feature = "std"))]
    false
}

/// Tells the frame of the scope polling the caller that this scope now runs its exits.
#[inline]
pub(crate) fn mark_exiting() {
    #[cfg(feature = "std")]
    CURRENT.with(|cell| {
        let mut frame = cell.get();
        frame.exiting = true;
        cell.set(frame);
    });
}

/// Runs `poll` with `frame` as the current frame; returns its result and the frame as `poll`
/// left it. The previous frame is restored, even if `poll` unwinds.
///
/// `frame` says nothing busy and not exiting: those two are what `poll` reports back, so each
/// poll starts with them clear. Every caller passes a frame built from [`Frame::SHIELDED`] (a
/// scope's own frame, a shielded exit-stack step). A body is not run through here: it is polled
/// in its scope's frame, which [`take_busy`] reads back, checked clear the same way by
/// `RunBody`. Checked in debug builds, so every test and fuzz input that polls a scope checks it.
#[inline]
pub(crate) fn within<T>(frame: Frame, poll: impl FnOnce() -> T) -> (T, Frame) {
    debug_assert!(!frame.busy && !frame.exiting, "a poll starts with nothing busy, not exiting: {frame:?}");
    #[cfg(feature = "std")]
    {
        struct Restore(Frame);
        impl Drop for Restore {
            #[inline]
            fn drop(&mut self) {
                CURRENT.with(|cell| cell.set(self.0));
            }
        }
        let restore = Restore(CURRENT.with(|cell| cell.replace(frame)));
        let out = poll();
        let left = CURRENT.with(core::cell::Cell::get);
        drop(restore);
        (out, left)
    }
    #[cfg(not(feature = "std"))]
    {
        (poll(), frame)
    }
}

/// Polls a caught step (an enter's or an exit's user code) shielded from cancellation. A
/// [`Caught`](crate::catch_unwind::Caught) future turns every panic inside into its output, so
/// this poll never unwinds and the frame is put back without [`within`]'s guard (which keeps
/// the compiler from inlining the step into its caller).
#[inline]
pub(crate) fn shielded_step<M: FnOnce() -> F, F: core::future::Future>(
    step: core::pin::Pin<&mut crate::catch_unwind::Caught<M, F>>,
    task: &mut core::task::Context<'_>,
) -> core::task::Poll<Result<F::Output, crate::catch_unwind::Payload>> {
    #[cfg(feature = "std")]
    {
        let outer = CURRENT.with(|cell| cell.replace(Frame::SHIELDED));
        let poll = core::future::Future::poll(step, task);
        CURRENT.with(|cell| cell.set(outer));
        poll
    }
    #[cfg(not(feature = "std"))]
    core::future::Future::poll(step, task)
}

/// Runs `poll` shielded from cancellation (an enter's or an exit's user code).
#[cfg(feature = "std")]
#[inline]
pub(crate) fn shielded<T>(poll: impl FnOnce() -> T) -> T {
    within(Frame::SHIELDED, poll).0
}

#[cfg(feature = "std")]
pin_project_lite::pin_project! {
    /// Exits run from a body (an exit-stack `release` or `close`): shielded, and while they run,
    /// busy, so that a cancelled scope waits for them to finish before it drops its body.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct Busy<F> {
        #[pin]
        future: F,
    }
}

#[cfg(feature = "std")]
impl<F> Busy<F> {
    #[inline]
    pub(crate) fn new(future: F) -> Self {
        Busy { future }
    }
}

#[cfg(feature = "std")]
impl<F: core::future::Future> core::future::Future for Busy<F> {
    type Output = F::Output;

    #[inline]
    fn poll(
        self: core::pin::Pin<&mut Self>,
        task: &mut core::task::Context<'_>,
    ) -> core::task::Poll<F::Output> {
        let future = self.project().future;
        let poll = shielded(|| future.poll(task));
        if poll.is_pending() {
            mark_busy();
        }
        poll
    }
}

#[cfg(feature = "std")]
pin_project_lite::pin_project! {
    /// An exit-stack enter run from a body. Once the scope polling it is cancelled, no enter
    /// starts: it never completes, so the body stops at this await. One that started goes on
    /// (it sees the scope's frame, so that an interruptible enter is interrupted and a tuple
    /// enters nothing more) and is busy until it ends, so the body is not dropped under it.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct Entering<F> {
        started: bool,
        #[pin]
        future: F,
    }
}

#[cfg(feature = "std")]
impl<F> Entering<F> {
    #[inline]
    pub(crate) fn new(future: F) -> Self {
        Entering { started: false, future }
    }
}

#[cfg(feature = "std")]
impl<F: core::future::Future> core::future::Future for Entering<F> {
    type Output = F::Output;

    #[inline]
    fn poll(
        self: core::pin::Pin<&mut Self>,
        task: &mut core::task::Context<'_>,
    ) -> core::task::Poll<F::Output> {
        let this = self.project();
        if !*this.started {
            if current().cancelled {
                return core::task::Poll::Pending;
            }
            *this.started = true;
        }
        let poll = this.future.poll(task);
        if poll.is_pending() {
            mark_busy();
        }
        poll
    }
}

#[cfg(feature = "std")]
pin_project_lite::pin_project! {
    /// The enter of one context entered into an exit stack: shielded, unless its scope is
    /// cancelled and interrupts enters; then it is dropped (never exited) and gives `None`.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct StackEnter<F> {
        #[pin]
        future: F,
    }
}

#[cfg(feature = "std")]
impl<F> StackEnter<F> {
    #[inline]
    pub(crate) fn new(future: F) -> Self {
        StackEnter { future }
    }
}

#[cfg(feature = "std")]
impl<F: core::future::Future> core::future::Future for StackEnter<F> {
    type Output = Option<F::Output>;

    #[inline]
    fn poll(
        self: core::pin::Pin<&mut Self>,
        task: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Self::Output> {
        let scope = current();
        if scope.cancelled && scope.interrupt_enters {
            return core::task::Poll::Ready(None);
        }
        let future = self.project().future;
        shielded(|| future.poll(task)).map(Some)
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_restored_and_reports_busy_children() {
        assert_eq!(current(), Frame::SHIELDED);
        let cancelled = Frame { cancelled: true, ..Frame::SHIELDED };
        let ((), left) = within(cancelled, || {
            assert!(current().cancelled);
            // A child sees its parent's frame, and shields what it runs itself.
            shielded(|| assert!(!current().cancelled));
            mark_busy();
        });
        assert!(left.busy);
        assert_eq!(current(), Frame::SHIELDED);
        let ((), left) = within(cancelled, || ());
        assert!(!left.busy, "each poll starts with no busy child");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a poll starts with nothing busy")]
    fn a_poll_never_starts_busy() {
        let _ = within(Frame { busy: true, ..Frame::SHIELDED }, || ());
    }

    #[test]
    fn a_frame_is_restored_when_the_poll_unwinds() {
        let cancelled = Frame { cancelled: true, ..Frame::SHIELDED };
        let caught = std::panic::catch_unwind(|| within(cancelled, || panic!("in a body")));
        assert!(caught.is_err());
        assert_eq!(current(), Frame::SHIELDED);
    }
}
