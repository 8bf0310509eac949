//! The one place that owns the semantics of unwinding (G3-G6).
//!
//! Every scope (`with`, tuples, generator contexts, later the stack and the combinators) feeds the
//! results of its enters, its body and its exits into one [`Unwind`], and asks it which
//! [`Outcome`] the next exit must see. Nothing else decides what an error or a panic does to the
//! outcome or to the caller's error list: contexts only sequence calls.
//!
//! The rules, in one place:
//! - an enter or body error, and every exit error, is appended to the error list; the first one
//!   is the primary error, the rest are suppressed, in the order they happened (G5);
//! - the outcome seen by the next exit is `Panicked` while a panic is pending, else `Cancelled`
//!   after a cancellation, else `Failed(newest error)`, else `Completed` (G4);
//! - the first panic is kept and resumed by [`Unwind::finish`] once every exit has run; later
//!   panics are dropped (the panic hook of `std` has already printed them), and the collected
//!   errors go to the scope's [`ErrorHook`] since they cannot ride on the panic (G6).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::task::Poll;

use crate::catch_unwind::{Payload, catch_unwind};
use crate::{Error, ErrorHook, Outcome};

/// A deadline for one exit: completes with the error to report if the exit is still running.
pub(crate) type Deadline<E> = Pin<Box<dyn Future<Output = E> + Send>>;

/// Makes a [`Deadline`] for each exit.
pub(crate) type DeadlineFn<E> = Box<dyn Fn() -> Deadline<E> + Send + Sync>;

/// How a cancellable scope is cancelled, shared by the scope (which sets `requested` when its
/// signal fires) and by whatever enters and exits inside it. Only cancellable scopes have one.
pub(crate) struct Control<E> {
    requested: AtomicBool,
    interrupt_enters: bool,
    deadline: Option<DeadlineFn<E>>,
    /// Exit-stack enters running in the scope's body: a cancellation waits for them (enters are
    /// not interrupted unless the scope says so).
    entering: AtomicUsize,
}

impl<E> Control<E> {
    pub(crate) fn new(interrupt_enters: bool, deadline: Option<DeadlineFn<E>>) -> Self {
        Control {
            requested: AtomicBool::new(false),
            interrupt_enters,
            deadline,
            entering: AtomicUsize::new(0),
        }
    }

    /// An exit-stack enter starts; it ends when the guard drops.
    #[cfg(feature = "std")]
    pub(crate) fn entering(&self) -> Entering<'_> {
        self.entering.fetch_add(1, Ordering::AcqRel);
        Entering(&self.entering)
    }

    /// `true` when the scope must stop its body now: cancelled, and no enter to wait for.
    pub(crate) fn stops_body(&self) -> bool {
        self.requested() && (self.interrupt_enters || self.entering.load(Ordering::Acquire) == 0)
    }

    /// The scope's signal fired.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub(crate) fn interrupts_enters(&self) -> bool {
        self.interrupt_enters
    }
}

/// An exit-stack enter in progress; see [`Control::entering`].
#[cfg(feature = "std")]
pub(crate) struct Entering<'a>(&'a AtomicUsize);

#[cfg(feature = "std")]
impl Drop for Entering<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What an exit sees, without the error: what a generator context is told when it resumes.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Completed,
    Failed,
    Panicked,
    Cancelled,
}

/// What a scope hands an exit that runs away from it (in an exit stack's entry): the outcome
/// kind, the lent error and the scope's cancellation control (for deadlines).
#[cfg(feature = "std")]
pub(crate) struct Seed<E> {
    kind: Kind,
    lent: Option<Lent<E>>,
    control: Option<Arc<Control<E>>>,
}

/// The error an exit sees, lent to it for as long as it runs: moved out of the scope's list
/// (and put back in its place afterwards), or shared by concurrent exits (`join`'s branches),
/// which all see the same error while each keeps its own list.
#[cfg(feature = "std")]
pub(crate) enum Lent<E> {
    Owned(E),
    Shared(Arc<E>),
}

#[cfg(feature = "std")]
impl<E> Lent<E> {
    pub(crate) fn get(&self) -> &E {
        match self {
            Lent::Owned(error) => error,
            Lent::Shared(error) => error,
        }
    }
}

/// What concurrent branches start from; see [`Unwind::fork`].
pub(crate) struct Fork<E> {
    inherited_panic: bool,
    cancelled: bool,
    /// The shared error, and whether it was taken out of the forking unwind's list.
    shared: Option<(Arc<E>, bool)>,
    control: Option<Arc<Control<E>>>,
}

impl<E> Fork<E> {
    /// An unwind for one branch.
    pub(crate) fn branch(&self) -> Unwind<E> {
        let mut branch = Unwind::with_control(self.control.clone());
        branch.inherited_panic = self.inherited_panic;
        branch.cancelled = self.cancelled;
        branch.shared = self.shared.as_ref().map(|(shared, _)| shared.clone());
        branch
    }
}

/// The state of a scope that is unwinding. Public only so that the sealed protocol can name it.
#[doc(hidden)]
pub struct Unwind<E> {
    first: Option<E>,
    later: Vec<E>,
    panic: Option<Payload>,
    /// A panic is pending in the scope this one runs an exit for (see [`Unwind::seeded`]).
    inherited_panic: bool,
    cancelled: bool,
    /// The error of the scope this one runs a concurrent branch for: seen until this one has
    /// its own, never returned by it (see [`Unwind::branch`]).
    shared: Option<Arc<E>>,
    control: Option<Arc<Control<E>>>,
}

impl<E: core::fmt::Debug> core::fmt::Debug for Unwind<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Unwind")
            .field("first", &self.first)
            .field("later", &self.later)
            .field("panicking", &(self.panic.is_some() || self.inherited_panic))
            .field("cancelled", &self.cancelled)
            .finish()
    }
}

impl<E> Unwind<E> {
    #[cfg(feature = "std")]
    pub(crate) fn new() -> Self {
        Self::with_control(None)
    }

    #[inline]
    pub(crate) fn with_control(control: Option<Arc<Control<E>>>) -> Self {
        Unwind {
            first: None,
            later: Vec::new(),
            panic: None,
            inherited_panic: false,
            cancelled: false,
            shared: None,
            control,
        }
    }

    /// Records that the scope was cancelled: the exits from now on see `Cancelled`, and errors
    /// are suppressed ones (the result says *cancelled*). A scope that already failed stays
    /// failed: the cancellation came too late to be the cause.
    pub(crate) fn cancel(&mut self) {
        crate::trace::event!("cancelled");
        if self.first.is_none() && self.shared.is_none() {
            self.cancelled = true;
        }
    }

    /// `true` (and recorded) when the scope's signal fired: what composite enters check between
    /// their parts, so that nothing more is entered after a cancellation.
    pub(crate) fn cancel_requested(&mut self) -> bool {
        let requested = self.control.as_ref().is_some_and(|c| c.requested());
        if requested {
            self.cancel();
        }
        requested || self.cancelled
    }

    /// What a body run by `body_watching` gave: its result, or `None` once the cancellation that
    /// cut it short is recorded.
    #[inline]
    pub(crate) fn watched<T>(&mut self, watched: Option<Option<T>>) -> Option<T> {
        watched.unwrap_or_else(|| {
            self.cancel();
            None
        })
    }

    /// A deadline for the next exit, if the scope has one.
    #[inline]
    pub(crate) fn deadline(&self) -> Option<Deadline<E>> {
        self.control.as_ref()?.deadline.as_ref().map(|make| make())
    }

    /// An unwind for running one exit away from the scope (in a stack entry): it starts out
    /// seeing what the scope's next exit would see, owning the lent error. Its results go back
    /// with [`Unwind::merge`].
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn seeded(Seed { kind, lent, control }: Seed<E>) -> Self {
        let mut unwind = Self::with_control(control);
        match (kind, lent) {
            (Kind::Failed, Some(Lent::Owned(error))) => unwind.first = Some(error),
            (Kind::Failed, Some(Lent::Shared(error))) => unwind.shared = Some(error),
            (Kind::Panicked, _) => unwind.inherited_panic = true,
            (Kind::Cancelled, _) => unwind.cancelled = true,
            _ => {}
        }
        unwind
    }

    /// Starts concurrent branches (`join`): each [`Fork::branch`] sees what the next exit here
    /// would see, sharing the newest error, which [`Unwind::join`] puts back in its place.
    pub(crate) fn fork(&mut self) -> Fork<E> {
        let (inherited_panic, cancelled, shared) = match self.outcome() {
            Outcome::Completed => (false, false, None),
            Outcome::Panicked => (true, false, None),
            Outcome::Cancelled => (false, true, None),
            Outcome::Failed(_) => match self.later.pop().or_else(|| self.first.take()) {
                Some(error) => (false, false, Some((Arc::new(error), true))),
                // Already shared with this unwind (a fork inside a branch): it stays there.
                None => (false, false, self.shared.clone().map(|shared| (shared, false))),
            },
        };
        Fork { inherited_panic, cancelled, shared, control: self.control.clone() }
    }

    /// Ends concurrent branches: puts the shared error back in its place, then takes the
    /// branches' errors (the first branch's before the next one's) and the first panic.
    pub(crate) fn join(&mut self, fork: Fork<E>, branches: &mut [Unwind<E>]) {
        let Fork { shared, .. } = fork;
        // Every branch must let go of the shared error before it can come back.
        for branch in branches.iter_mut() {
            branch.shared = None;
        }
        if let Some((shared, true)) = shared {
            // Only a generator's `Cx` kept past its closure can still hold it, and that was
            // reported as misuse already.
            if let Ok(error) = Arc::try_unwrap(shared) {
                self.fail(error);
            }
        }
        for branch in branches {
            self.merge(core::mem::replace(branch, Unwind::with_control(None)));
        }
    }

    /// Takes back what a [`seeded`](Unwind::seeded) unwind recorded: the lent error first (it
    /// was the newest here), then its new errors in order, then its panic.
    #[inline]
    pub(crate) fn merge(&mut self, other: Unwind<E>) {
        let Unwind { first, later, panic, .. } = other;
        if first.is_none() && later.is_empty() && panic.is_none() {
            return; // the usual case: the exit went well
        }
        for error in first.into_iter().chain(later) {
            self.fail(error);
        }
        if let Some(payload) = panic {
            self.panicked(payload);
        }
    }

    /// Splits a finished unwind into its errors, oldest first, and its panic.
    #[cfg(feature = "std")]
    pub(crate) fn into_parts(self) -> (Vec<E>, Option<Payload>) {
        let Unwind { first, mut later, panic, .. } = self;
        if let Some(first) = first {
            later.insert(0, first);
        }
        (later, panic)
    }

    /// What the next exit sees.
    #[inline]
    pub(crate) fn outcome(&self) -> Outcome<'_, E> {
        if self.panic.is_some() || self.inherited_panic {
            Outcome::Panicked
        } else if self.cancelled {
            Outcome::Cancelled
        } else if let Some(newest) = self.later.last().or(self.first.as_ref()).or(self.shared.as_deref()) {
            Outcome::Failed(newest)
        } else {
            Outcome::Completed
        }
    }

    /// Moves the error the next exit would see out of the list, for an exit that must own it
    /// for a while (a generator context, whose future was created before the error existed). It
    /// goes back with [`Unwind::restore`] before anything else is recorded, so the order holds.
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn lend(&mut self) -> (Kind, Option<Lent<E>>) {
        match self.outcome() {
            Outcome::Completed => (Kind::Completed, None),
            Outcome::Panicked => (Kind::Panicked, None),
            Outcome::Cancelled => (Kind::Cancelled, None),
            Outcome::Failed(_) => {
                let owned = self.later.pop().or_else(|| self.first.take()).map(Lent::Owned);
                (Kind::Failed, owned.or_else(|| self.shared.clone().map(Lent::Shared)))
            }
        }
    }

    /// What an exit run away from the scope starts from: see [`Unwind::seeded`].
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn seed(&mut self) -> Seed<E> {
        let (kind, lent) = self.lend();
        Seed { kind, lent, control: self.control.clone() }
    }

    /// Puts back the error [`Unwind::lend`] took, where it was.
    #[cfg(feature = "std")]
    pub(crate) fn restore(&mut self, error: Lent<E>) {
        match error {
            // It was the newest error, so appending it puts it back in its place.
            Lent::Owned(error) => self.fail(error),
            // Never taken out of the list of the scope that shares it.
            Lent::Shared(_) => {}
        }
    }

    /// Records a panic raised by the crate itself (misuse detected at run time), so that it
    /// follows the same path as the user's panics.
    #[cfg(feature = "std")]
    pub(crate) fn misuse(&mut self, message: &'static str) {
        self.panicked(alloc::boxed::Box::new(message));
    }

    /// Runs an enter; `None` when it failed or panicked (then it is recorded), or when the scope
    /// interrupts enters and was cancelled meanwhile (then the enter is dropped: never exited).
    pub(crate) async fn enter<V>(&mut self, enter: impl Future<Output = Result<V, E>>) -> Option<V> {
        let control = match &self.control {
            Some(control) if control.interrupts_enters() => control.clone(),
            _ => return self.settle("enter", catch_unwind(enter).await),
        };
        let mut enter = pin!(Some(catch_unwind(enter)));
        // The scope polls its signal just before this future, in the same `poll` (the signal's
        // waker wakes the scope when it fires): checking the flag first sees a cancellation at once.
        let done = poll_fn(|task| {
            if control.requested() {
                return Poll::Ready(None);
            }
            let running = enter.as_mut().as_pin_mut().expect("dropped only after it is done");
            running.poll(task).map(Some)
        })
        .await;
        match done {
            Some(result) => self.settle("enter", result),
            None => {
                quietly(|| enter.set(None));
                self.cancel();
                None
            }
        }
    }

    /// Runs the body; `None` when it failed or panicked (then it is recorded).
    pub(crate) async fn body<T>(&mut self, body: impl Future<Output = Result<T, E>>) -> Option<T> {
        self.settle("body", catch_unwind(body).await)
    }

    /// Records how an exit ended. The exit future itself is awaited by the caller, because it
    /// borrows the outcome from `self`; see [`crate::context`] for the pattern.
    #[inline]
    pub(crate) fn exited(&mut self, result: Result<Result<(), E>, Payload>) {
        crate::trace::event!(saw = self.outcome().name(), "exit");
        self.settle("exit", result);
    }

    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    #[inline]
    fn settle<T>(&mut self, step: &'static str, result: Result<Result<T, E>, Payload>) -> Option<T> {
        crate::trace::event!(
            ended = match &result {
                Ok(Ok(_)) => "ok",
                Ok(Err(_)) => "failed",
                Err(_) => "panicked",
            },
            "{step}"
        );
        match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.fail(error);
                None
            }
            Err(payload) => {
                self.panicked(payload);
                None
            }
        }
    }

    /// Drops a value the scope is done with, as part of an exit: a panic in its destructor is
    /// recorded like any other.
    pub(crate) fn drop_value<V>(&mut self, value: V) {
        #[cfg(feature = "std")]
        if let Err(payload) = std::panic::catch_unwind(core::panic::AssertUnwindSafe(move || drop(value))) {
            self.panicked(payload);
        }
        #[cfg(not(feature = "std"))]
        drop(value);
    }

    /// Records an error that did not come out of `enter`, `body` or `exited`.
    #[cfg(feature = "std")]
    pub(crate) fn failed(&mut self, error: E) {
        self.fail(error);
    }

    fn fail(&mut self, error: E) {
        if self.first.is_none() && !self.cancelled {
            self.first = Some(error);
        } else {
            self.later.push(error);
        }
    }

    #[cfg_attr(not(feature = "std"), allow(clippy::needless_pass_by_value))]
    pub(crate) fn panicked(&mut self, payload: Payload) {
        if self.panic.is_none() {
            self.panic = Some(payload);
        } else {
            // Only the first panic resumes. Dropping a payload runs user code, which may panic
            // in turn: that must not become a double panic.
            #[cfg(feature = "std")]
            drop(std::panic::catch_unwind(core::panic::AssertUnwindSafe(move || drop(payload))));
        }
    }

    /// Ends the scope: resumes the first panic (after handing every error to `hook`), or returns
    /// the body's value, or every error.
    pub(crate) fn finish<T>(self, value: Option<T>, hook: &mut impl ErrorHook<E>) -> Result<T, Error<E>> {
        let Unwind { first, later, panic, cancelled, .. } = self;
        if let Some(payload) = panic {
            resume(payload, first.into_iter().chain(later), hook);
        }
        match (first, cancelled) {
            (Some(primary), _) => Err(Error::failed(primary, later)),
            (None, true) => Err(Error::cancelled(later)),
            (None, false) => Ok(value.expect("async-with: a scope without errors has its body's value")),
        }
    }
}

/// Runs an exit, bounded by `deadline` if there is one: an exit still running when its
/// deadline completes is dropped, and the deadline's error is its result.
pub(crate) async fn exit_within<E>(
    deadline: Option<Deadline<E>>,
    exit: impl Future<Output = Result<(), E>>,
) -> Result<Result<(), E>, Payload> {
    let Some(mut deadline) = deadline else { return catch_unwind(exit).await };
    let mut exit = pin!(Some(catch_unwind(exit)));
    let done = poll_fn(|task| {
        let running = exit.as_mut().as_pin_mut().expect("dropped only after it is done");
        if let Poll::Ready(result) = running.poll(task) {
            return Poll::Ready(Ok(result));
        }
        deadline.as_mut().poll(task).map(Err)
    })
    .await;
    match done {
        Ok(result) => result,
        Err(late) => {
            quietly(|| exit.set(None));
            Ok(Err(late))
        }
    }
}

/// Runs `f`, which drops user values, so that a panic in a destructor cannot become a double
/// panic (or escape a `Drop`): it is swallowed, after the panic hook of `std` printed it.
pub(crate) fn quietly(f: impl FnOnce()) {
    #[cfg(feature = "std")]
    drop(std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)));
    #[cfg(not(feature = "std"))]
    f();
}

#[cfg(feature = "std")]
fn resume<E>(payload: Payload, errors: impl Iterator<Item = E>, hook: &mut impl ErrorHook<E>) -> ! {
    for error in errors {
        // A hook that panics must not replace the panic being resumed.
        let report = core::panic::AssertUnwindSafe(|| hook.report(error));
        drop(std::panic::catch_unwind(report));
    }
    std::panic::resume_unwind(payload)
}

#[cfg(not(feature = "std"))]
fn resume<E>(payload: Payload, _: impl Iterator<Item = E>, _: &mut impl ErrorHook<E>) -> ! {
    match payload {}
}
