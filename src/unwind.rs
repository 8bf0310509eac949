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
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(feature = "std")]
use crate::catch_unwind::drop_payload;
use crate::catch_unwind::{Caught, Payload, call};
use crate::error::{Cause, Error, ForeignError, Suppressed};
use crate::frame;
use crate::hook::ErrorHook;
use crate::origin::{Origin, Step};
use crate::outcome::Outcome;

/// A deadline for one exit: completes with the error to report if the exit is still running.
pub(crate) type Deadline<E> = Pin<Box<dyn Future<Output = E> + Send>>;

/// Makes a [`Deadline`] for each exit, shared by a scope and everything that exits inside it
/// (stack entries included). Only a scope with [`exit_deadline`](crate::Scope::exit_deadline)
/// has one.
/// (An `Arc` of a `Box`, so that the pointer a scope holds is thin.)
pub(crate) type Deadlines<E> = Arc<Box<dyn Fn() -> Deadline<E> + Send + Sync>>;

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
/// kind, the lent error and the scope's exit deadlines.
#[cfg(feature = "std")]
#[doc(hidden)]
pub struct Seed<E> {
    kind: Kind,
    lent: Option<Lent<E>>,
    deadlines: Option<Deadlines<E>>,
}

#[cfg(feature = "std")]
impl<E> core::fmt::Debug for Seed<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Seed").field("kind", &self.kind).finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
impl<E> Seed<E> {
    /// Starts one exit from the seed, without an unwind of its own: the exit's deadline, the
    /// outcome it sees (through [`Start::outcome`], borrowing the lent error) and the error to
    /// hand back.
    /// A deadline function that panics leaves the exit without a deadline, seeing `Panicked`,
    /// as an exit run under the seeded unwind would.
    #[inline]
    pub(crate) fn start(self) -> (Within<E>, Start, Option<Lent<E>>) {
        let Seed { kind, lent, deadlines } = self;
        // The deadline function's panic is the scope's: held where a deadline's own panic would
        // be (there is no deadline then) and recorded first, as it came first.
        let (deadline, also) = match deadlines.as_ref().map(make_deadline) {
            None => (None, None),
            Some(Ok(deadline)) => (Some(deadline), None),
            Some(Err(payload)) => (None, Some(payload)),
        };
        let panicked = also.is_some();
        let kind = if panicked { Kind::Panicked } else { kind };
        (Within { deadline, also }, Start { kind, panicked }, lent)
    }
}

/// An exit block run from a [`Seed`]: starts the exit, then evaluates to the block that calls
/// `$exit` with the outcome the exit sees bound to `$outcome`, under the scope's exit deadline,
/// and ends with the [`Ran`] to hand back. The outcome borrows the lent error, which the
/// block owns until the exit ended.
#[cfg(feature = "std")]
macro_rules! exit_from_seed {
    ($seed:expr, |$outcome:ident| $exit:expr) => {{
        // Started before the block, so that the block keeps only what the start gives it (an
        // `async fn` would keep its seed argument for its whole life besides), and keeps what
        // bounds the exit once: the exit's race borrows it from the block.
        let (mut within, start, lent) = $seed.start();
        async move {
            let $outcome = start.outcome(&lent);
            let exited = within.run(move || $exit).await;
            start.ran(lent, exited)
        }
    }};
}
#[cfg(feature = "std")]
pub(crate) use exit_from_seed;

/// One exit started from a [`Seed`] (see [`Seed::start`]).
#[cfg(feature = "std")]
pub(crate) struct Start {
    kind: Kind,
    /// The deadline function panicked: the panic waits in the exit's [`Within`].
    panicked: bool,
}

#[cfg(feature = "std")]
impl Start {
    /// What the exit sees: the lent error is the one it fails with.
    #[inline]
    pub(crate) fn outcome<'a, E>(&self, lent: &'a Option<Lent<E>>) -> Outcome<'a, E> {
        match (self.kind, lent) {
            (Kind::Panicked, _) => Outcome::Panicked,
            (Kind::Cancelled, _) => Outcome::Cancelled,
            (Kind::Failed, Some(lent)) => Outcome::Failed(lent.get()),
            _ => Outcome::Completed,
        }
    }

    /// How the exit ended, to hand back with the lent error.
    #[inline]
    pub(crate) fn ran<E>(self, lent: Option<Lent<E>>, exited: Exited<E>) -> Ran<E> {
        Ran { lent, deadline_panicked: self.panicked, exited }
    }
}

/// What an exit block that ran away from its scope (in an exit stack's entry) hands back to it.
#[doc(hidden)]
pub trait Settle<E> {
    /// Records it in the scope's unwind.
    fn settle(self, unwind: &mut Unwind<E>);
}

/// An exit block with an unwind of its own (a composite exit): merged back.
impl<E> Settle<E> for Unwind<E> {
    #[inline]
    fn settle(self, unwind: &mut Unwind<E>) {
        unwind.merge(self);
    }
}

/// One exit run from a [`Seed`]: the error it was lent, and how it ended (with a panic of its
/// deadline function, if it had one, in `exited`).
#[cfg(feature = "std")]
pub(crate) struct Ran<E> {
    lent: Option<Lent<E>>,
    deadline_panicked: bool,
    exited: Exited<E>,
}

/// In the order the seeded unwind would have recorded them: the deadline function's panic (it
/// came first), the lent error back in its place, then the exit's end.
#[cfg(feature = "std")]
impl<E> Settle<E> for Ran<E> {
    #[inline]
    fn settle(self, unwind: &mut Unwind<E>) {
        let Ran { lent, deadline_panicked, mut exited } = self;
        if deadline_panicked {
            if let Some(payload) = exited.also.take() {
                unwind.panicked(payload);
            }
        }
        if let Some(lent) = lent {
            unwind.restore(lent);
        }
        unwind.exited(exited);
    }
}

/// The error an exit sees, lent to it for as long as it runs: moved out of the scope's list
/// (and put back in its place afterwards), or shared by concurrent exits (`join`'s branches),
/// which all see the same error while each keeps its own list.
#[cfg(feature = "std")]
pub(crate) enum Lent<E> {
    Owned(E, Origin),
    Shared(Arc<E>),
}

#[cfg(feature = "std")]
impl<E> Lent<E> {
    pub(crate) fn get(&self) -> &E {
        match self {
            Lent::Owned(error, _) => error,
            Lent::Shared(error) => error,
        }
    }
}

/// How a body ended: it returned (or panicked), or the scope's cancellation stopped it (and
/// dropping it there may have panicked: a panic of the scope too).
pub(crate) enum BodyEnd<T> {
    Ended(Result<T, Payload>),
    Stopped(Option<Payload>),
}

/// What concurrent branches start from; see [`Unwind::fork`].
pub(crate) struct Fork<E> {
    inherited_panic: bool,
    cancelled: bool,
    /// The shared error, and its origin when it was taken out of the forking unwind's list.
    shared: Option<(Arc<E>, Option<Origin>)>,
    deadlines: Option<Deadlines<E>>,
}

impl<E> Fork<E> {
    /// An unwind for one branch.
    pub(crate) fn branch(&self) -> Unwind<E> {
        let mut branch = Unwind::with_deadlines(self.deadlines.clone());
        if self.inherited_panic {
            branch.rest().inherited_panic = true;
        }
        if self.cancelled {
            branch.head = Head::Cancelled;
        }
        if let Some((shared, _)) = &self.shared {
            branch.rest().shared = Some(shared.clone());
        }
        branch
    }
}

/// The first error, or the cancellation that came before any: the two exclude each other (a
/// scope that failed stays failed; once cancelled, every error is a suppressed one).
/// The first error's origin is kept beside it (four bytes, often in the tag's padding).
enum Head<E> {
    Clean,
    Cancelled,
    Failed(E, Origin),
}

impl<E> Head<E> {
    fn first(&self) -> Option<&E> {
        match self {
            Head::Failed(error, _) => Some(error),
            _ => None,
        }
    }
}

/// What an unwind rarely holds: kept out of line, so that the scope's future stays small.
struct Rest<E> {
    panic: Option<Payload>,
    /// A panic is pending in the scope this one runs an exit for (see [`Unwind::seeded`]).
    inherited_panic: bool,
    /// The error of the scope this one runs a concurrent branch for: seen until this one has
    /// its own, never returned by it (see [`Unwind::fork`]).
    shared: Option<Arc<E>>,
    deadlines: Option<Deadlines<E>>,
    /// Why an inner scope was cancelled, when its cancellation, passed on by the body, is this
    /// scope's (its first): what the result's `cancelled_by` says, rather than this scope's frame.
    passed_on: Option<Cause>,
}

/// The state of a scope that is unwinding. Public only so that the sealed protocol can name it.
#[doc(hidden)]
pub struct Unwind<E> {
    head: Head<E>,
    /// The errors after the first, oldest first, each with its origin: the list the caller's
    /// [`Error`] gets, so that each error after the first costs at most one allocation.
    later: Vec<Suppressed<E>>,
    rest: Option<Box<Rest<E>>>,
}

impl<E: core::fmt::Debug> core::fmt::Debug for Unwind<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Unwind")
            .field("first", &self.head.first())
            .field("later", &self.later)
            .field("panicking", &self.panicking())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl<E> Unwind<E> {
    #[cfg(feature = "std")]
    pub(crate) fn new() -> Self {
        Self::with_deadlines(None)
    }

    /// An empty unwind; a scope with exit deadlines keeps them out of line (one allocation).
    #[inline]
    pub(crate) fn with_deadlines(deadlines: Option<Deadlines<E>>) -> Self {
        let mut unwind = Unwind { head: Head::Clean, later: Vec::new(), rest: None };
        if deadlines.is_some() {
            unwind.rest().deadlines = deadlines;
        }
        unwind
    }

    fn rest(&mut self) -> &mut Rest<E> {
        self.rest.get_or_insert_with(|| {
            Box::new(Rest {
                panic: None,
                inherited_panic: false,
                shared: None,
                deadlines: None,
                passed_on: None,
            })
        })
    }

    fn deadlines(&self) -> Option<Deadlines<E>> {
        self.rest.as_ref()?.deadlines.clone()
    }

    fn is_cancelled(&self) -> bool {
        matches!(self.head, Head::Cancelled)
    }

    fn newest_later(&self) -> Option<&E> {
        self.later.last().map(Suppressed::error)
    }

    fn shared(&self) -> Option<&Arc<E>> {
        self.rest.as_ref()?.shared.as_ref()
    }

    fn panicking(&self) -> bool {
        self.rest.as_ref().is_some_and(|rest| rest.inherited_panic || rest.panic.is_some())
    }

    /// Records that the scope was cancelled: the exits from now on see `Cancelled`, and errors
    /// are suppressed ones (the result says *cancelled*). A scope that already failed stays
    /// failed: the cancellation came too late to be the cause. Returns whether it is the
    /// scope's outcome now (the scope was clean).
    pub(crate) fn cancel(&mut self) -> bool {
        crate::trace::event!("cancelled");
        let first = matches!(self.head, Head::Clean) && self.shared().is_none();
        if first {
            self.head = Head::Cancelled;
        }
        first
    }

    /// `true` (and recorded) when the scope is cancelled: what composite enters check between
    /// their parts, so that nothing more is entered after a cancellation.
    pub(crate) fn cancel_requested(&mut self) -> bool {
        let requested = frame::current().cancelled;
        if requested && !self.is_cancelled() {
            self.cancelled_by_frame();
        }
        requested || self.is_cancelled()
    }

    /// Records the cancellation the scope's frame says, or, when it came from a signal that
    /// panicked, that panic: the exits then see `Panicked`, and it resumes after them.
    pub(crate) fn cancelled_by_frame(&mut self) {
        #[cfg(feature = "std")]
        if let Some(payload) = frame::take_signal_panic() {
            self.panicked(payload);
        }
        self.cancel();
    }

    /// A deadline for the next exit, if the scope has one. A deadline function that panics is a
    /// panic of the scope: recorded (the exit then runs without a deadline, seeing `Panicked`).
    #[inline]
    pub(crate) fn deadline(&mut self) -> Option<Deadline<E>> {
        match make_deadline(self.rest.as_ref()?.deadlines.as_ref()?) {
            Ok(deadline) => Some(deadline),
            Err(payload) => {
                self.panicked(payload);
                None
            }
        }
    }

    /// An unwind for running one exit away from the scope (in a stack entry): it starts out
    /// seeing what the scope's next exit would see, owning the lent error. Its results go back
    /// with [`Unwind::merge`].
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn seeded(Seed { kind, lent, deadlines }: Seed<E>) -> Self {
        let mut unwind = Self::with_deadlines(deadlines);
        match (kind, lent) {
            (Kind::Failed, Some(Lent::Owned(error, origin))) => unwind.head = Head::Failed(error, origin),
            (Kind::Failed, Some(Lent::Shared(error))) => unwind.rest().shared = Some(error),
            (Kind::Panicked, _) => unwind.rest().inherited_panic = true,
            (Kind::Cancelled, _) => unwind.head = Head::Cancelled,
            _ => {}
        }
        unwind
    }

    /// The newest error, taken out of the list (to be put back in its place later).
    fn take_newest(&mut self) -> Option<(E, Origin)> {
        if let Some(newest) = self.later.pop() {
            return Some(newest.into_parts());
        }
        match core::mem::replace(&mut self.head, Head::Clean) {
            Head::Failed(error, origin) => Some((error, origin)),
            head => {
                self.head = head;
                None
            }
        }
    }

    /// Starts concurrent branches (`join`): each [`Fork::branch`] sees what the next exit here
    /// would see, sharing the newest error, which [`Unwind::join`] puts back in its place.
    pub(crate) fn fork(&mut self) -> Fork<E> {
        let (inherited_panic, cancelled, shared) = match self.outcome() {
            Outcome::Completed => (false, false, None),
            Outcome::Panicked => (true, false, None),
            Outcome::Cancelled => (false, true, None),
            Outcome::Failed(_) => match self.take_newest() {
                Some((error, origin)) => (false, false, Some((Arc::new(error), Some(origin)))),
                // Already shared with this unwind (a fork inside a branch): it stays there.
                None => (false, false, self.shared().cloned().map(|shared| (shared, None))),
            },
        };
        Fork { inherited_panic, cancelled, shared, deadlines: self.deadlines() }
    }

    /// Ends concurrent branches: puts the shared error back in its place, then takes the
    /// branches' errors (the first branch's before the next one's) and the first panic.
    pub(crate) fn join(&mut self, fork: Fork<E>, branches: &mut [Unwind<E>]) {
        let Fork { shared, .. } = fork;
        // Every branch must let go of the shared error before it can come back.
        for branch in branches.iter_mut() {
            if let Some(rest) = &mut branch.rest {
                rest.shared = None;
            }
        }
        if let Some((shared, Some(origin))) = shared {
            // Only a generator's `Cx` kept past its closure can still hold it, and that was
            // reported as misuse already.
            if let Ok(error) = Arc::try_unwrap(shared) {
                self.fail(error, origin);
            }
        }
        // Each branch's errors say its place already: its enter and exit were polled saying it.
        for branch in branches {
            self.merge(core::mem::replace(branch, Unwind::with_deadlines(None)));
        }
    }

    /// An unwind of another error type for a context inside this scope (`map_err`): it starts
    /// out seeing what this scope's next exit would see, a failure shown as an `E2` made from a
    /// [`ForeignError`] (never returned: it is this scope's error, not the context's). No exit
    /// deadline: the outer scope bounds the context's exit with its own.
    pub(crate) fn presented_as<E2: From<ForeignError>>(&self) -> Unwind<E2>
    where
        E: core::fmt::Display,
    {
        let mut inner = Unwind::with_deadlines(None);
        match self.outcome() {
            Outcome::Completed => {}
            Outcome::Panicked => inner.rest().inherited_panic = true,
            Outcome::Cancelled => inner.head = Head::Cancelled,
            Outcome::Failed(error) => inner.rest().shared = Some(Arc::new(E2::from(ForeignError::of(error)))),
        }
        inner
    }

    /// Takes back what an unwind of [`presented_as`](Unwind::presented_as) recorded, each error
    /// converted by `f`: its cancellation, its errors in order, then its panic.
    pub(crate) fn merge_mapped<E1>(&mut self, inner: Unwind<E1>, mut f: impl FnMut(E1) -> E) {
        let Unwind { head, later, rest } = inner;
        match head {
            Head::Failed(error, origin) => self.fail(f(error), origin),
            Head::Cancelled => {
                self.cancel();
            }
            Head::Clean => {}
        }
        for error in later {
            let (error, origin) = error.into_parts();
            self.fail(f(error), origin);
        }
        if let Some(payload) = rest.and_then(|rest| rest.panic) {
            self.panicked(payload);
        }
    }

    /// How an exit run under an unwind of [`presented_as`](Unwind::presented_as) ended: what the
    /// inner unwind recorded (see [`merge_mapped`](Unwind::merge_mapped)), with the panic of
    /// the exit's deadline in its place in time. A deadline that panicked did so while the exit
    /// was still running, before what the inner exits did next (for one inner context: before
    /// all it recorded, as one that panics ends there); a panic in dropping the exit past its
    /// deadline came after all of it.
    pub(crate) fn exited_mapped<E1>(&mut self, exited: Exited<E>, inner: Unwind<E1>, f: impl FnMut(E1) -> E) {
        let Exited { result, also, dropping } = exited;
        let (before, after) = if dropping { (None, also) } else { (also, None) };
        if let Some(payload) = before {
            self.panicked(payload);
        }
        self.merge_mapped(inner, f);
        self.exited(Exited { result, also: after, dropping });
    }

    /// Takes back what a [`seeded`](Unwind::seeded) unwind recorded: the lent error first (it
    /// was the newest here), then its new errors in order, then its panic.
    #[inline]
    pub(crate) fn merge(&mut self, other: Unwind<E>) {
        let Unwind { head, later, rest } = other;
        if let Head::Failed(error, origin) = head {
            self.fail(error, origin);
        }
        for error in later {
            let (error, origin) = error.into_parts();
            self.fail(error, origin);
        }
        if let Some(payload) = rest.and_then(|rest| rest.panic) {
            self.panicked(payload);
        }
    }

    /// Splits a finished unwind into its errors, oldest first, each with its origin, and its
    /// panic.
    #[cfg(feature = "std")]
    pub(crate) fn into_parts(self) -> (Vec<Suppressed<E>>, Option<Payload>) {
        let Unwind { head, mut later, rest } = self;
        if let Head::Failed(first, origin) = head {
            later.insert(0, Suppressed::new(first, origin));
        }
        (later, rest.and_then(|rest| rest.panic))
    }

    /// What the next exit sees.
    #[inline]
    pub(crate) fn outcome(&self) -> Outcome<'_, E> {
        if self.panicking() {
            Outcome::Panicked
        } else if self.is_cancelled() {
            Outcome::Cancelled
        } else if let Some(newest) = self.newest_later().or(self.head.first()).or(self.shared().map(|e| &**e))
        {
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
                let owned = self.take_newest().map(|(error, origin)| Lent::Owned(error, origin));
                (Kind::Failed, owned.or_else(|| self.shared().cloned().map(Lent::Shared)))
            }
        }
    }

    /// What an exit run away from the scope starts from: see [`Unwind::seeded`].
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn seed(&mut self) -> Seed<E> {
        let (kind, lent) = self.lend();
        Seed { kind, lent, deadlines: self.deadlines() }
    }

    /// Puts back the error [`Unwind::lend`] took, where it was.
    #[cfg(feature = "std")]
    pub(crate) fn restore(&mut self, error: Lent<E>) {
        match error {
            // It was the newest error, so appending it puts it back in its place.
            Lent::Owned(error, origin) => self.fail(error, origin),
            // Never taken out of the list of the scope that shares it.
            Lent::Shared(_) => {}
        }
    }

    /// Records a panic raised by the crate itself (misuse detected at run time), so that it
    /// follows the same path as the user's panics.
    #[cfg(feature = "std")]
    pub(crate) fn misuse(&mut self, message: &'static str) {
        self.panicked(Box::new(message));
    }

    /// Runs the enter `make` makes, shielded from cancellation unless the scope interrupts
    /// enters: `None` when it failed or panicked (then it is recorded), or when the scope was
    /// cancelled before it started or, interrupting enters, while it ran (then it is dropped and
    /// never exited).
    #[inline]
    pub(crate) fn enter<M: FnOnce() -> F, F: Future>(&mut self, make: M) -> Enter<'_, M, F, E> {
        Enter { enter: call(make), started: false, unwind: self }
    }

    /// Runs a context's synchronous step on its value (`map`'s function): not a cancellation
    /// point, so that a mapped context enters exactly as the context does; a panic in it is
    /// recorded as the scope's (`None`).
    #[inline]
    pub(crate) fn call<T>(&mut self, f: impl FnOnce() -> T) -> Option<T> {
        #[cfg(feature = "std")]
        {
            let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| Ok(f())));
            self.settle(Step::Enter, result)
        }
        #[cfg(not(feature = "std"))]
        Some(f())
    }

    /// Records how a body ended: `None` when it was stopped by a cancellation (recorded), or
    /// when it failed or panicked. A body that ends after its scope was cancelled counts as
    /// cancelled: its value is dropped and its error is a suppressed one. A destructor that
    /// panicked as a stopped body was dropped is a panic of the scope.
    #[inline]
    pub(crate) fn body_ended<T>(&mut self, ended: BodyEnd<Result<T, Error<E>>>) -> Option<T> {
        let cancelled = matches!(ended, BodyEnd::Stopped(_)) || frame::current().cancelled;
        if cancelled {
            self.cancelled_by_frame();
        }
        let ended = match ended {
            BodyEnd::Ended(ended) => ended,
            BodyEnd::Stopped(dropping) => {
                if let Some(payload) = dropping {
                    self.panicked(payload);
                }
                return None;
            }
        };
        let value = match ended {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => {
                crate::trace::event!(ended = "failed", "body");
                self.absorb(error);
                return None;
            }
            Err(payload) => {
                crate::trace::event!(ended = "panicked", "body");
                self.panicked(payload);
                return None;
            }
        };
        crate::trace::event!(ended = "ok", "body");
        if cancelled {
            self.drop_value(value);
            return None;
        }
        Some(value)
    }

    /// Takes in everything an inner scope's error holds, as it happened there: its primary error
    /// (or its cancellation), then its suppressed errors in order (G5 across nesting), each with
    /// the origin it had there; one that has none (made with `?` from a plain error) came from
    /// the body.
    pub(crate) fn absorb(&mut self, error: Error<E>) {
        let body = |origin: Origin| if origin.is_known() { origin } else { Origin::of(Step::Body) };
        let (primary, suppressed) = error.into_origins();
        match primary {
            Ok((primary, origin)) => self.fail(primary, body(origin)),
            Err(cause) => {
                if self.cancel() {
                    self.rest().passed_on = Some(cause);
                }
            }
        }
        for error in suppressed {
            let (error, origin) = error.into_parts();
            self.fail(error, body(origin));
        }
    }

    /// Records how an exit ended. The exit future itself is awaited by the caller, because it
    /// borrows the outcome from `self`; see [`crate::context`] for the pattern.
    #[inline]
    pub(crate) fn exited(&mut self, exited: impl Into<Exited<E>>) {
        let Exited { result, also, .. } = exited.into();
        crate::trace::event!(saw = self.outcome().name(), "exit");
        // A panic of the deadline came before the exit ended: it is the one that resumes.
        if let Some(payload) = also {
            self.panicked(payload);
        }
        self.settle(Step::Exit, result);
    }

    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    #[inline]
    fn settle<T>(&mut self, step: Step, result: Result<Result<T, E>, Payload>) -> Option<T> {
        crate::trace::event!(
            ended = match &result {
                Ok(Ok(_)) => "ok",
                Ok(Err(_)) => "failed",
                Err(_) => "panicked",
            },
            "{}",
            if step == Step::Enter { "enter" } else { "exit" }
        );
        match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.fail(error, Origin::here(step));
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

    /// Records an error that did not come out of `enter`, a body or `exited`, from `origin`.
    #[cfg(feature = "std")]
    pub(crate) fn failed(&mut self, error: E, origin: Origin) {
        self.fail(error, origin);
    }

    fn fail(&mut self, error: E, origin: Origin) {
        if let Head::Clean = self.head {
            self.head = Head::Failed(error, origin);
        } else {
            self.later.push(Suppressed::new(error, origin));
        }
    }

    #[cfg_attr(not(feature = "std"), allow(clippy::needless_pass_by_value))]
    pub(crate) fn panicked(&mut self, payload: Payload) {
        let rest = self.rest();
        if rest.panic.is_none() {
            rest.panic = Some(payload);
        } else {
            // Only the first panic resumes; the others were printed by the panic hook already.
            #[cfg(feature = "std")]
            drop_payload(payload);
        }
    }

    /// Ends the scope: resumes the first panic (after handing every error to `hook`), or returns
    /// the body's value, or every error.
    #[inline]
    pub(crate) fn finish<T>(self, value: Option<T>, hook: &mut impl ErrorHook<E>) -> Result<T, Error<E>> {
        // The happy path, inlined: nothing failed (so no later error either), nothing panicked,
        // nothing was cancelled, and the body gave its value.
        match (&self.head, &self.rest, value) {
            (Head::Clean, None, Some(value)) => {
                let Unwind { head, later, rest } = self;
                // Both hold nothing (matched above): forgotten, they cost no out-of-line drop.
                core::mem::forget((head, rest));
                drop(later);
                Ok(value)
            }
            (_, _, value) => self.finish_slow(value, hook),
        }
    }

    fn finish_slow<T>(self, value: Option<T>, hook: &mut impl ErrorHook<E>) -> Result<T, Error<E>> {
        let Unwind { head, later, rest } = self;
        let (panic, passed_on) = rest.map_or((None, None), |rest| (rest.panic, rest.passed_on));
        if let Some(payload) = panic {
            let first = match head {
                Head::Failed(first, _) => Some(first),
                _ => None,
            };
            resume(payload, first.into_iter().chain(later.into_iter().map(Suppressed::into_error)), hook);
        }
        match head {
            Head::Failed(primary, origin) => Err(Error::failed(primary, origin, later)),
            // Run by the scope's own code, so the frame is the scope's: it says why, unless the
            // first cancellation was an inner scope's, passed on by the body.
            Head::Cancelled => Err(Error::cancelled(later, passed_on.unwrap_or_else(frame::cause))),
            Head::Clean => Ok(value.expect("async-with: a scope without errors has its body's value")),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Unwind::enter`]: an enter polled in place.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct Enter<'u, M, F, E> {
        #[pin]
        enter: Caught<M, F>,
        started: bool,
        unwind: &'u mut Unwind<E>,
    }
}

impl<M: FnOnce() -> F, F: Future<Output = Result<V, E>>, V, E> Future for Enter<'_, M, F, E> {
    type Output = Option<V>;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Option<V>> {
        let mut this = self.project();
        // The scope computes whether it is cancelled before it polls what it runs, so the
        // frame is up to date here.
        let scope = frame::current();
        if scope.cancelled && (scope.interrupt_enters || !*this.started) {
            // Dropping an interrupted enter runs user code: a panic there is the scope's.
            #[cfg(feature = "std")]
            if let Err(payload) =
                std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| this.enter.set(Caught::Done)))
            {
                this.unwind.panicked(payload);
            }
            #[cfg(not(feature = "std"))]
            this.enter.set(Caught::Done);
            this.unwind.cancelled_by_frame();
            return Poll::Ready(None);
        }
        *this.started = true;
        let running = this.enter.as_mut();
        let result = core::task::ready!(frame::shielded_step(running, task));
        Poll::Ready(this.unwind.settle(Step::Enter, result))
    }
}

/// What bounds one exit: its deadline if the scope has one, and a panic that happened around it.
pub(crate) struct Within<E> {
    deadline: Option<Deadline<E>>,
    // A panic of the deadline (or of the function that makes it), or of dropping an exit past
    // it: the scope's too.
    also: Option<Payload>,
}

impl<E> Within<E> {
    /// [`exit_within`], the deadline borrowed from where it is kept (an exit block that owns it
    /// then keeps it once).
    #[cfg(feature = "std")]
    #[inline]
    pub(crate) fn run<M: FnOnce() -> F, F: Future>(&mut self, make: M) -> ExitWithin<M, F, &mut Self> {
        ExitWithin { exit: call(make), within: self }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`exit_within`]: an exit, and what bounds it (owned, or borrowed through
    /// `W`).
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct ExitWithin<M, F, W> {
        #[pin]
        exit: Caught<M, F>,
        within: W,
    }
}

/// How an exit ended, and a panic that happened around it (in its deadline, or while dropping
/// it past its deadline), which is a panic of the scope as well.
pub(crate) struct Exited<E> {
    result: Result<Result<(), E>, Payload>,
    also: Option<Payload>,
    // `also` came from dropping the exit past its deadline (after all it did), rather than
    // from its deadline while it ran (before what it did next).
    dropping: bool,
}

impl<E> From<Result<Result<(), E>, Payload>> for Exited<E> {
    fn from(result: Result<Result<(), E>, Payload>) -> Self {
        Exited { result, also: None, dropping: false }
    }
}

/// Runs the exit `make` makes, shielded from cancellation and bounded by `deadline` if there is
/// one: an exit still running when its deadline completes is dropped, and the deadline's error
/// is its result.
#[inline]
pub(crate) fn exit_within<M: FnOnce() -> F, F: Future, E>(
    deadline: Option<Deadline<E>>,
    make: M,
) -> ExitWithin<M, F, Within<E>> {
    ExitWithin { exit: call(make), within: Within { deadline, also: None } }
}

impl<M, F, E, W> Future for ExitWithin<M, F, W>
where
    M: FnOnce() -> F,
    F: Future<Output = Result<(), E>>,
    W: core::borrow::BorrowMut<Within<E>>,
{
    type Output = Exited<E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Within { deadline: deadline_slot, also: also_slot } = this.within.borrow_mut();
        let running = this.exit.as_mut();
        if let Poll::Ready(result) = frame::shielded_step(running, task) {
            // The deadline is dropped here, where a panic in its destructor is caught: it came
            // after all the exit did. (It never panicked before, or it would be gone already.)
            return Poll::Ready(match drop_deadline(deadline_slot) {
                None => Exited { result, also: also_slot.take(), dropping: false },
                dropped => Exited { result, also: dropped, dropping: true },
            });
        }
        let Some(deadline) = deadline_slot.as_mut() else { return Poll::Pending };
        #[cfg(feature = "std")]
        let polled = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| deadline.as_mut().poll(task)));
        #[cfg(not(feature = "std"))]
        let polled: Result<_, Payload> = Ok(deadline.as_mut().poll(task));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(late)) => {
                // Past its deadline: the exit is dropped; a panic in doing so is the scope's.
                #[cfg(feature = "std")]
                let dropping =
                    std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| this.exit.set(Caught::Done)))
                        .err();
                #[cfg(not(feature = "std"))]
                let dropping: Option<Payload> = {
                    this.exit.set(Caught::Done);
                    None
                };
                // The deadline fired, so it did not panic before: `also` is a drop's panic (the
                // exit's first: a second is only printed, as for any second panic).
                let also = match (dropping, drop_deadline(deadline_slot)) {
                    #[cfg(feature = "std")]
                    (Some(first), Some(second)) => {
                        drop_payload(second);
                        Some(first)
                    }
                    (first, second) => first.or(second),
                };
                Poll::Ready(Exited { result: Ok(Err(late)), also, dropping: true })
            }
            // A deadline that panics is a panic of the scope: the exit goes on without one.
            Err(payload) => {
                *deadline_slot = None;
                *also_slot = Some(payload);
                Poll::Pending
            }
        }
    }
}

/// Calls the scope's deadline function for one exit; its panic is returned (user code).
#[inline]
fn make_deadline<E>(make: &Deadlines<E>) -> Result<Deadline<E>, Payload> {
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| make()))
    }
    #[cfg(not(feature = "std"))]
    {
        Ok(make())
    }
}

/// Drops a deadline that is no longer needed, returning the panic of its destructor (user code).
#[inline]
fn drop_deadline<E>(deadline: &mut Option<Deadline<E>>) -> Option<Payload> {
    let deadline = deadline.take()?;
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(move || drop(deadline))).err()
    }
    #[cfg(not(feature = "std"))]
    {
        drop(deadline);
        None
    }
}

#[cfg(feature = "std")]
fn resume<E>(payload: Payload, errors: impl Iterator<Item = E>, hook: &mut impl ErrorHook<E>) -> ! {
    for error in errors {
        // A hook that panics must not replace the panic being resumed.
        let report = core::panic::AssertUnwindSafe(|| hook.report(error));
        if let Err(payload) = std::panic::catch_unwind(report) {
            drop_payload(payload);
        }
    }
    std::panic::resume_unwind(payload)
}

#[cfg(not(feature = "std"))]
fn resume<E>(payload: Payload, _: impl Iterator<Item = E>, _: &mut impl ErrorHook<E>) -> ! {
    match payload {}
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn an_unwind_shows_its_errors_and_how_it_ends() {
        let mut unwind = Unwind::<u8>::new();
        assert_eq!(
            alloc::format!("{unwind:?}"),
            "Unwind { first: None, later: [], panicking: false, cancelled: false }"
        );
        unwind.cancel();
        assert!(alloc::format!("{unwind:?}").ends_with("panicking: false, cancelled: true }"), "{unwind:?}");
    }
}
