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

use alloc::vec::Vec;
use core::future::Future;

use crate::catch_unwind::{Payload, catch_unwind};
use crate::{Error, ErrorHook, Outcome};

/// What an exit sees, without the error: what a generator context is told when it resumes.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Completed,
    Failed,
    Panicked,
    Cancelled,
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
    pub(crate) fn new() -> Self {
        Unwind { first: None, later: Vec::new(), panic: None, inherited_panic: false, cancelled: false }
    }

    /// An unwind for running one exit away from the scope (in a stack entry): it starts out
    /// seeing what the scope's next exit would see, owning the lent error. Its results go back
    /// with [`Unwind::merge`].
    #[cfg(feature = "std")]
    pub(crate) fn seeded(kind: Kind, lent: Option<E>) -> Self {
        let mut unwind = Self::new();
        match kind {
            Kind::Completed => {}
            Kind::Failed => unwind.first = lent,
            Kind::Panicked => unwind.inherited_panic = true,
            Kind::Cancelled => unwind.cancelled = true,
        }
        unwind
    }

    /// Takes back what a [`seeded`](Unwind::seeded) unwind recorded: the lent error first (it
    /// was the newest here), then its new errors in order, then its panic.
    #[cfg(feature = "std")]
    pub(crate) fn merge(&mut self, other: Unwind<E>) {
        let Unwind { first, later, panic, .. } = other;
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
    pub(crate) fn outcome(&self) -> Outcome<'_, E> {
        if self.panic.is_some() || self.inherited_panic {
            Outcome::Panicked
        } else if self.cancelled {
            Outcome::Cancelled
        } else if let Some(newest) = self.later.last().or(self.first.as_ref()) {
            Outcome::Failed(newest)
        } else {
            Outcome::Completed
        }
    }

    /// Moves the error the next exit would see out of the list, for an exit that must own it
    /// for a while (a generator context, whose future was created before the error existed). It
    /// goes back with [`Unwind::restore`] before anything else is recorded, so the order holds.
    #[cfg(feature = "std")]
    pub(crate) fn lend(&mut self) -> (Kind, Option<E>) {
        match self.outcome() {
            Outcome::Completed => (Kind::Completed, None),
            Outcome::Panicked => (Kind::Panicked, None),
            Outcome::Cancelled => (Kind::Cancelled, None),
            Outcome::Failed(_) => (Kind::Failed, self.later.pop().or_else(|| self.first.take())),
        }
    }

    /// Puts back the error [`Unwind::lend`] took, where it was.
    #[cfg(feature = "std")]
    pub(crate) fn restore(&mut self, error: E) {
        // It was the newest error, so appending it puts it back in its place.
        self.fail(error);
    }

    /// Records a panic raised by the crate itself (misuse detected at run time), so that it
    /// follows the same path as the user's panics.
    #[cfg(feature = "std")]
    pub(crate) fn misuse(&mut self, message: &'static str) {
        self.panicked(alloc::boxed::Box::new(message));
    }

    /// Runs an enter; `None` when it failed or panicked (then it is recorded).
    pub(crate) async fn enter<V>(&mut self, enter: impl Future<Output = Result<V, E>>) -> Option<V> {
        self.settle(catch_unwind(enter).await)
    }

    /// Runs the body; `None` when it failed or panicked (then it is recorded).
    pub(crate) async fn body<T>(&mut self, body: impl Future<Output = Result<T, E>>) -> Option<T> {
        self.settle(catch_unwind(body).await)
    }

    /// Records how an exit ended. The exit future itself is awaited by the caller, because it
    /// borrows the outcome from `self`; see [`crate::context`] for the pattern.
    pub(crate) fn exited(&mut self, result: Result<Result<(), E>, Payload>) {
        self.settle(result);
    }

    fn settle<T>(&mut self, result: Result<Result<T, E>, Payload>) -> Option<T> {
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
