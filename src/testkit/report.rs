//! What a run produced, in terms both the interpreter and the oracle can state and compare.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// An error of a scenario: which step failed, or the errors of a nested scope.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Context (or stack entry) number `n` failed to enter.
    Enter(usize),
    /// Context (or callback) number `n` failed to exit.
    Exit(usize),
    /// The body of scope number `n` failed.
    Body(usize),
    /// An exit of scope number `n` was still running when the scope's exit deadline fired.
    Deadline(usize),
}

/// The outcome an exit saw.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Seen {
    /// [`Outcome::Completed`](crate::Outcome::Completed).
    Completed,
    /// [`Outcome::Failed`](crate::Outcome::Failed) with this error.
    Failed(Fault),
    /// [`Outcome::Panicked`](crate::Outcome::Panicked).
    Panicked,
    /// [`Outcome::Cancelled`](crate::Outcome::Cancelled).
    Cancelled,
    /// A callback that is not shown the outcome (`defer`, `callback`).
    NotShown,
}

/// One thing that happened, in order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// Context number `n` finished entering (for a generator: it reached `provide`).
    Enter(usize),
    /// The body of scope number `n` started.
    Body(usize),
    /// The exit of number `n` (a context or a callback) started, seeing this outcome.
    Exit(usize, Seen),
    /// Number `n` ran its synchronous fallback instead (its scope was dropped).
    Fallback(usize),
    /// The [`on_finalize`](crate::ContextExt::on_finalize) action of number `n` (a
    /// [`Kind::Finalized`](super::Kind::Finalized) context) started, seeing this outcome.
    Finalize(usize, Seen),
}

/// How the root scope ended.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Ending {
    /// It returned the body's value.
    Returned,
    /// It returned an error: the primary one (none when cancelled), then the suppressed ones.
    Failed {
        /// The primary error.
        primary: Option<Fault>,
        /// The suppressed errors, in order.
        suppressed: Vec<Fault>,
        /// `true` when the scope was cancelled.
        cancelled: bool,
    },
    /// It panicked with this message.
    Panicked(String),
    /// Its future was dropped before it finished.
    Dropped,
}

/// Everything observable about one run: what ran, how the root ended, and which errors went to
/// the hooks because a panic was propagating.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Report {
    /// What happened, in order.
    pub events: Vec<Event>,
    /// How the root scope ended.
    pub ending: Ending,
    /// The errors handed to the error hooks (they could not ride on a panic), in order.
    pub lost: Vec<Fault>,
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Enter(n) => write!(f, "enter #{n}"),
            Fault::Exit(n) => write!(f, "exit #{n}"),
            Fault::Body(n) => write!(f, "body of scope {n}"),
            Fault::Deadline(n) => write!(f, "deadline of scope {n}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} failed")
    }
}

impl core::error::Error for Fault {}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Completed => f.write_str("Completed"),
            Seen::Failed(e) => write!(f, "Failed({e:?})"),
            Seen::Panicked => f.write_str("Panicked"),
            Seen::Cancelled => f.write_str("Cancelled"),
            Seen::NotShown => f.write_str("-"),
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Enter(n) => write!(f, "enter #{n}"),
            Event::Body(n) => write!(f, "body of scope {n}"),
            Event::Exit(n, seen) => write!(f, "exit #{n} ({seen:?})"),
            Event::Fallback(n) => write!(f, "fallback #{n}"),
            Event::Finalize(n, seen) => write!(f, "finalize #{n} ({seen:?})"),
        }
    }
}

impl fmt::Debug for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Returned => f.write_str("returned"),
            Ending::Failed { primary: Some(p), suppressed, .. } => {
                write!(f, "failed: {p:?}, suppressed {suppressed:?}")
            }
            Ending::Failed { primary: None, suppressed, .. } => {
                write!(f, "cancelled, suppressed {suppressed:?}")
            }
            Ending::Panicked(message) => write!(f, "panicked: {message}"),
            Ending::Dropped => f.write_str("dropped"),
        }
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\n")?;
        for event in &self.events {
            writeln!(f, "    {event:?}")?;
        }
        write!(f, "    => {:?}", self.ending)?;
        if !self.lost.is_empty() {
            write!(f, "; to the hook: {:?}", self.lost)?;
        }
        Ok(())
    }
}
