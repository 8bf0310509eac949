//! Drop cancellation with async cleanup: the rest of a dropped scope finishes in a task.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

use crate::error::Error;
use crate::hook::{ErrorHook, GlobalHook};

/// A boxed, `Send` cleanup task, as handed to the spawn function of [`detach_on_drop`].
pub type Detached = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs a scope so that, if its future is dropped before it finished (by a `select!`, a
/// runtime's `timeout`, a dropped task), the rest of it finishes in a task started with `spawn`:
/// the *detach* drop policy.
///
/// `make` gets a [`DetachSignal`] and builds the scope, cancelling on it:
/// `|signal| Scope::new().cancel_on(signal).with(..)`. When the returned future is dropped
/// early, the signal fires and the scope's future is handed to `spawn`, still pinned where it was:
/// it goes on exactly as a cooperatively cancelled scope does. An exit that was running goes on
/// running; an enter that was running finishes and is exited at once; the body, if it was
/// running, is dropped; then every remaining exit runs to completion, newest first, seeing
/// [`Outcome::Cancelled`](crate::Outcome::Cancelled). Its errors go to the process-wide error
/// hook ([`set_error_hook`](crate::set_error_hook)), since nobody awaits them: every one, in
/// order, even if the hook panics on one.
///
/// Nothing is spawned for a future dropped before its first poll (nothing was entered: the
/// scope is simply dropped, with its contexts), nor for one whose scope finished or panicked
/// (the panic propagated out of `poll`, after the scope's exits ran).
///
/// The scope's future is boxed (one allocation), and so is the task at detach time. Nothing blocks
/// in `Drop`: `spawn` only has to start the task, as `smol::spawn(task).detach()` or
/// `tokio::spawn(task)` do. The task owns the scope, so `make`'s future must be `Send + 'static`.
///
/// ```
/// use async_with::{detach_on_drop, resource, Outcome, Scope};
/// use std::time::Duration;
///
/// # smol::block_on(async {
/// let (closed, closing) = smol::channel::bounded(1);
/// let conn = resource(async || Ok::<_, String>("conn"), async move |_, outcome: Outcome<'_, String>| {
///     smol::Timer::after(Duration::from_millis(5)).await; // async cleanup, in the detached task
///     closed.send(outcome.is_cancelled()).await.ok();
///     Ok(())
/// });
/// let query = detach_on_drop(
///     |task| smol::spawn(task).detach(),
///     |signal| Scope::new().cancel_on(signal).with(conn, async |_| {
///         smol::Timer::after(Duration::from_secs(3600)).await; // a slow query
///         Ok(())
///     }),
/// );
/// // A runtime's timeout drops the scope...
/// let timed_out = smol::future::or(async { Some(query.await) }, async {
///     smol::Timer::after(Duration::from_millis(10)).await;
///     None
/// })
/// .await;
/// assert!(timed_out.is_none());
/// // ...and the connection is still closed asynchronously, knowing why.
/// assert_eq!(closing.recv().await, Ok(true));
/// # });
/// ```
///
/// The same on tokio, with `tokio::time::timeout`:
///
/// ```
/// use async_with::{detach_on_drop, resource, Outcome, Scope};
/// use std::time::Duration;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (closed, closing) = tokio::sync::oneshot::channel();
/// let conn = resource(async || Ok::<_, String>("conn"), async move |_, outcome: Outcome<'_, String>| {
///     tokio::time::sleep(Duration::from_millis(5)).await;
///     let _ = closed.send(outcome.is_cancelled());
///     Ok(())
/// });
/// let query = detach_on_drop(
///     |task| drop(tokio::spawn(task)),
///     |signal| Scope::new().cancel_on(signal).with(conn, async |_| {
///         tokio::time::sleep(Duration::from_secs(3600)).await;
///         Ok(())
///     }),
/// );
/// assert!(tokio::time::timeout(Duration::from_millis(10), query).await.is_err());
/// assert_eq!(closing.await, Ok(true));
/// # });
/// ```
pub fn detach_on_drop<M, F, T, E, S>(spawn: S, make: M) -> DetachOnDrop<T, E, S>
where
    M: FnOnce(DetachSignal) -> F,
    F: Future<Output = Result<T, Error<E>>> + Send + 'static,
    S: FnOnce(Detached),
    T: Send + 'static,
    E: fmt::Debug + Send + 'static,
{
    let dropped = Arc::new(AtomicBool::new(false));
    let scope = make(DetachSignal { dropped: dropped.clone() });
    DetachOnDrop {
        scope: Some(Box::pin(scope)),
        polled: false,
        dropped,
        spawn: Some(spawn),
        rest: finish_detached::<T, E>,
    }
}

type Scoped<T, E> = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;

/// The detached task: finishes the scope and reports what it could not return.
fn finish_detached<T: Send + 'static, E: fmt::Debug + Send + 'static>(mut scope: Scoped<T, E>) -> Detached {
    Box::pin(async move {
        let finished = crate::catch_unwind::catch_unwind(scope.as_mut()).await;
        match finished {
            Ok(Err(error)) => {
                // Nobody awaits this task: its errors go to the process-wide hook, each one
                // offered in order, whatever the hook did with the one before (a panic in it is
                // swallowed after the panic hook printed it).
                let mut hook = GlobalHook;
                let (primary, suppressed) = error.into_parts();
                for e in primary.into_iter().chain(suppressed) {
                    crate::catch_unwind::quietly(|| hook.report(e));
                }
            }
            Ok(Ok(value)) => crate::catch_unwind::quietly(move || drop(value)),
            // A panic was printed by the panic hook when it happened; the task ends quietly.
            Err(payload) => crate::catch_unwind::drop_payload(payload),
        }
    })
}

/// The cancellation signal of a scope run by [`detach_on_drop`]: it completes when that scope's
/// future is dropped early.
///
/// ```
/// use async_with::{detach_on_drop, Scope};
/// let run = detach_on_drop(|task| drop(task), |signal| {
///     Scope::new().cancel_on(signal).scope(async |_: &mut async_with::ExitStack<String>| Ok(()))
/// });
/// # drop(run);
/// ```
#[derive(Debug, Clone)]
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct DetachSignal {
    dropped: Arc<AtomicBool>,
}

impl Future for DetachSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        // No waker to register: the flag is set in `Drop`, after which the scope is polled again
        // by the task it was handed to, which sees it.
        if self.dropped.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// The future of [`detach_on_drop`]: the scope's result, or, if dropped early, a detached task
/// that finishes the scope.
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct DetachOnDrop<T, E, S: FnOnce(Detached)> {
    /// `None` once the scope finished or panicked: nothing is left to detach.
    scope: Option<Scoped<T, E>>,
    /// Whether the scope was polled at least once: one never polled entered nothing, and is
    /// dropped rather than detached.
    polled: bool,
    dropped: Arc<AtomicBool>,
    spawn: Option<S>,
    rest: fn(Scoped<T, E>) -> Detached,
}

impl<T, E, S: FnOnce(Detached)> fmt::Debug for DetachOnDrop<T, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetachOnDrop").field("finished", &self.scope.is_none()).finish()
    }
}

// Nothing is pinned in place: the scope is boxed.
impl<T, E, S: FnOnce(Detached)> Unpin for DetachOnDrop<T, E, S> {}

impl<T, E, S: FnOnce(Detached)> Future for DetachOnDrop<T, E, S> {
    type Output = Result<T, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let scope = this.scope.as_mut().expect("async-with: `DetachOnDrop` polled after completion");
        this.polled = true;
        // A scope that panicked is over (its exits ran, then its panic resumed): it must not be
        // detached, whose task would poll it again. The future is never polled again after a
        // panic, so no broken invariant inside it can be observed.
        let poll = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| scope.as_mut().poll(task)));
        match poll {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                this.scope = None;
                Poll::Ready(out)
            }
            Err(payload) => {
                let scope = this.scope.take();
                crate::catch_unwind::quietly(move || drop(scope));
                std::panic::resume_unwind(payload)
            }
        }
    }
}

impl<T, E, S: FnOnce(Detached)> Drop for DetachOnDrop<T, E, S> {
    fn drop(&mut self) {
        match (self.scope.take(), self.spawn.take()) {
            (Some(scope), Some(spawn)) if self.polled => {
                self.dropped.store(true, Ordering::Release);
                let rest = (self.rest)(scope);
                crate::catch_unwind::quietly(|| spawn(rest));
            }
            // Finished or panicked (no scope left), or never polled (nothing was entered, so
            // nothing is detached: the contexts are dropped with the scope). Their destructors
            // and the spawn function's are user code, and this may run during unwinding.
            leftovers => crate::catch_unwind::quietly(move || drop(leftovers)),
        }
    }
}
