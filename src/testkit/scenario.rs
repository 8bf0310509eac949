//! What a scenario is: a tree of scopes whose every enter, body and exit succeeds, fails, panics
//! or stays pending for a few polls, plus an interruption at a chosen poll.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

/// How a step ends, after it has returned `Pending` [`Step::pending`] times.
#[derive(Clone, Copy, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum Act {
    /// Returns `Ok`.
    Succeed,
    /// Returns an error.
    Fail,
    /// Panics.
    Panic,
}

/// One enter, exit or body: `pending` times `Pending` (each waking its task), then `act`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Step {
    /// How many times the step returns `Pending` before it ends (a cancellation point each).
    pub pending: u8,
    /// How it ends.
    pub act: Act,
}

impl Step {
    /// A step that succeeds at once.
    ///
    /// ```
    /// use async_with::testkit::{Act, Step};
    /// assert_eq!(Step::ok(), Step { pending: 0, act: Act::Succeed });
    /// ```
    pub const fn ok() -> Self {
        Step { pending: 0, act: Act::Succeed }
    }

    /// A [`Kind::EvalMapped`] leaf's enter, split in two: the resource's enter (the first half
    /// of the pending polls, then success), and the `eval_map` step (the rest, then the act).
    pub(crate) const fn eval_map_halves(self) -> (Step, Step) {
        let first = Step { pending: self.pending / 2, act: Act::Succeed };
        (first, Step { pending: self.pending - first.pending, act: self.act })
    }
}

/// Which way the context of a leaf is written: each goes through a different path of the crate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, arbitrary::Arbitrary)]
pub enum Kind {
    /// A type implementing [`AsyncContext`](crate::AsyncContext).
    Context,
    /// A [`resource`](crate::resource) made of two closures.
    Resource,
    /// A generator [`context`](crate::context).
    Generator,
    /// A [`Kind::Context`] seen through a combinator that changes nothing it does: by the
    /// number of the first leaf of its tuple (or join, or stack entry) `n`, through
    /// [`map`](crate::ContextExt::map) (`n % 3 == 0`), through
    /// [`map_err`](crate::ContextExt::map_err) from an error type of its own, which shows it
    /// the scope's failure as a [`ForeignError`](crate::ForeignError) (1), or
    /// [`named`](crate::ContextExt::named) `"leaf {n % 8}"`, a name its errors must carry (2).
    Mapped,
    /// A [`resource`](crate::resource) followed by an [`eval_map`](crate::ContextExt::eval_map)
    /// step: the resource enters (journaled as `Enter`) after the first half of the leaf's
    /// pending enter polls (`pending / 2`), then the step takes the rest and does what the
    /// leaf's enter does. If the step fails or panics, or the scope is cancelled before it
    /// starts, the resource exits at once (its exit is the leaf's exit) seeing that, and the
    /// context is not entered. The step is [`eval_tap`](crate::ContextExt::eval_tap)'s, which
    /// behaves the same, when the first leaf's number is odd. Not a join's branch (the model does not run exits inside a
    /// join's enters): [`expect`](super::expect) and [`run`](super::run) panic on one.
    EvalMapped,
    /// A [`resource`](crate::resource) with an [`on_finalize`](crate::ContextExt::on_finalize)
    /// action: the resource's exit succeeds at once, then the action journals
    /// [`Finalize`](super::Event::Finalize) with the outcome it sees and does what the leaf's
    /// exit does. A dropped scope runs the resource's fallback only.
    Finalized,
}

/// A context of the scenario: how its enter and its exit behave.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// How the context is written.
    pub kind: Kind,
    /// Its enter (for a generator: the setup before `provide`).
    pub enter: Step,
    /// Its exit (for a generator: the teardown after `provide`).
    pub exit: Step,
}

/// A scope's own cancellation signal ([`Scope::cancel_on`](crate::Scope::cancel_on)). It fires
/// by cancelling a [`CancellationToken`](crate::CancellationToken) with a reason, which the
/// scope's error must then give in [`cancelled_by`](crate::Error::cancelled_by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal {
    /// It completes (or panics) on the scope's `at + 1`-th poll.
    pub at: u16,
    /// It panics instead of completing: a panic of the scope, which still cancels it.
    pub panics: bool,
}

/// A scope's exit deadline ([`Scope::exit_deadline`](crate::Scope::exit_deadline)): each exit
/// gets a new one, polled after each `Pending` of the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    /// It completes (or panics) on its `after + 1`-th poll: an exit that returns `Pending` more
    /// than `after` times is dropped there, its error [`Fault::Deadline`](super::Fault::Deadline).
    pub after: u8,
    /// It panics instead of completing: a panic of the scope; the exit goes on without it.
    pub panics: bool,
}

/// What a scope's body does: first the nested scope, if any, then its own step; and the scope's
/// options: its own cancellation signal, exit deadline and error hook.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Body {
    /// A scope run inside the body; its error passes through the body (with `?`) whole.
    pub nested: Option<Box<Node>>,
    /// The body's own step.
    pub step: Step,
    /// The scope's own signal. A scope is also cancelled when the scope it runs in is.
    pub signal: Option<Signal>,
    /// The scope's exit deadline.
    pub deadline: Option<Deadline>,
    /// The scope's hook for errors during a panic panics after it took each error (which must
    /// change nothing: every error is still offered, and the first panic resumes).
    pub hook_panics: bool,
}

impl Body {
    /// A body that runs `step`, with nothing nested, no signal, no deadline, a quiet hook.
    ///
    /// ```
    /// use async_with::testkit::{Body, Step};
    /// let body = Body::step(Step::ok());
    /// assert_eq!((body.nested, body.signal, body.deadline, body.hook_panics), (None, None, None, false));
    /// ```
    pub const fn step(step: Step) -> Self {
        Body { nested: None, step, signal: None, deadline: None, hook_panics: false }
    }
}

/// An entry pushed on an exit stack.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// `stack.enter(..)` of one context, or of a tuple of them.
    Enter(Vec<Leaf>),
    /// `stack.defer(..)`: an async callback; its step is its run.
    Defer(Step),
    /// `stack.push_exit(..)`: an async exit that sees the outcome.
    PushExit(Step),
    /// `stack.callback(..)`: a synchronous callback (its `pending` is ignored).
    Callback(Act),
    /// `stack.enter_with_key(..)` of one context, or of a tuple of them: an [`Item::Enter`]
    /// whose key a later [`Item::Release`] may use.
    EnterKeyed(Vec<Leaf>),
    /// `stack.release(key)?` of an entry still on the stack that has a key (pushed by
    /// [`Item::EnterKeyed`], [`Item::Defer`], [`Item::PushExit`] or [`Item::Callback`]): the
    /// `n % count`-th newest of them. Nothing when there is none. Its exit sees `Completed`;
    /// its first error ends the body.
    Release(u8),
    /// `stack.pop_all().close().await?`: every entry moves to a new stack, closed at once
    /// (without the scope's exit deadline); the items after it push on the emptied stack.
    PopAll,
    /// `let _ = stack.enter(..).await`: an [`Item::Enter`] whose error the body ignores (its
    /// panic still resumes in the body), so that errors kept by the stack meet later items.
    TryEnter(Vec<Leaf>),
}

/// A scope.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// `with(..)` over one context, or a tuple of them.
    With(Vec<Leaf>, Body),
    /// `with(..)` over the contexts chained with [`and_then`](crate::ContextExt::and_then):
    /// `a.and_then(|_| b).and_then(|_| c)`, which enters and exits as the tuple `(a, b, c)` does.
    /// One context alone is chained to a [`nullcontext`](crate::nullcontext).
    Chain(Vec<Leaf>, Body),
    /// `scope(..)`: the items are pushed in order, then the body runs.
    Stack(Vec<Item>, Body),
    /// `with(..)` over contexts entered and exited concurrently: `join(a, b)` of two branches,
    /// or `join_all(branches)` when `all` (or when there are not two branches).
    Join {
        /// `join_all` rather than `join`.
        all: bool,
        /// The branches, in order (one kind, as a `join_all`'s contexts are).
        branches: Vec<Leaf>,
        /// The body.
        body: Body,
    },
}

/// What interrupts the root scope.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interrupt {
    /// Nothing: the scope runs to its end.
    None,
    /// A cooperative cancellation: the root's signal completes on its `n + 1`-th poll (the
    /// root's [`Body::signal`] and this one both apply; the earlier one wins).
    CancelAt(u16),
    /// The scope's future is dropped after `n` polls (the default drop policy).
    DropAt(u16),
    /// The root runs under [`detach_on_drop`](crate::detach_on_drop) and its future is dropped
    /// after `n` polls: the rest of the scope then runs in the spawned task (which the run
    /// drives to its end) as a scope cancelled at that poll does. Its errors go to the
    /// process-wide error hook, which the report does not see; it ends [`Dropped`](super::Ending::Dropped).
    DetachAt(u16),
}

/// A whole scenario: a root scope and what interrupts it.
///
/// ```
/// use async_with::testkit::{Act, Body, Interrupt, Kind, Leaf, Node, Scenario, Step};
///
/// let leaf = Leaf { kind: Kind::Resource, enter: Step::ok(), exit: Step { pending: 1, act: Act::Fail } };
/// let scenario = Scenario {
///     root: Node::With(vec![leaf, leaf], Body::step(Step::ok())),
///     interrupt: Interrupt::None,
/// };
/// assert_eq!(format!("{scenario:?}"), "with(#0 resource ok, exit pending 1 then fail; #1 resource ok, exit pending 1 then fail) { ok }");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scenario {
    /// The root scope.
    pub root: Node,
    /// What interrupts it.
    pub interrupt: Interrupt,
}

// ----- Readable `Debug`: what a person reads in a shrunk failing case. -----

impl fmt::Debug for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Act::Succeed => "ok",
            Act::Fail => "fail",
            Act::Panic => "panic",
        })
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pending {
            0 => write!(f, "{:?}", self.act),
            n => write!(f, "pending {n} then {:?}", self.act),
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Context => "context",
            Kind::Resource => "resource",
            Kind::Generator => "generator",
            Kind::Mapped => "mapped context",
            Kind::EvalMapped => "eval_mapped resource",
            Kind::Finalized => "finalized resource",
        })
    }
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}, exit {:?}", self.kind, self.enter, self.exit)
    }
}

/// Writes leaves with the numbers the interpreter and the oracle give them (depth first).
struct Numbered<'a, T> {
    value: &'a T,
    next: &'a core::cell::Cell<usize>,
}

impl fmt::Debug for Numbered<'_, Leaf> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.next.get();
        self.next.set(n + 1);
        write!(f, "#{n} {:?}", self.value)
    }
}

fn leaves(f: &mut fmt::Formatter<'_>, leaves: &[Leaf], next: &core::cell::Cell<usize>) -> fmt::Result {
    for (i, leaf) in leaves.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{:?}", Numbered { value: leaf, next })?;
    }
    Ok(())
}

impl fmt::Debug for Numbered<'_, Body> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ ")?;
        if let Some(nested) = &self.value.nested {
            write!(f, "{:?}; ", Numbered { value: &**nested, next: self.next })?;
        }
        write!(f, "{:?} }}", self.value.step)?;
        if let Some(Signal { at, panics }) = self.value.signal {
            let what = if panics { "signal panics" } else { "cancelled" };
            write!(f, " {what} at its poll {at}")?;
        }
        if let Some(Deadline { after, panics }) = self.value.deadline {
            let what = if panics { "panics" } else { "fires" };
            write!(f, " deadline {what} after {after}")?;
        }
        if self.value.hook_panics {
            f.write_str(" hook panics")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Numbered<'_, Node> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Node::With(ctxs, body) => {
                f.write_str("with(")?;
                leaves(f, ctxs, self.next)?;
                write!(f, ") {:?}", Numbered { value: body, next: self.next })
            }
            Node::Chain(ctxs, body) => {
                f.write_str("with(and_then(")?;
                leaves(f, ctxs, self.next)?;
                write!(f, ")) {:?}", Numbered { value: body, next: self.next })
            }
            Node::Stack(items, body) => {
                f.write_str("scope[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match item {
                        Item::Enter(ctxs) => {
                            f.write_str("enter(")?;
                            leaves(f, ctxs, self.next)?;
                            f.write_str(")")?;
                        }
                        Item::Defer(step) => {
                            write!(f, "#{} defer {step:?}", self.next.get())?;
                            self.next.set(self.next.get() + 1);
                        }
                        Item::PushExit(step) => {
                            write!(f, "#{} push_exit {step:?}", self.next.get())?;
                            self.next.set(self.next.get() + 1);
                        }
                        Item::Callback(act) => {
                            write!(f, "#{} callback {act:?}", self.next.get())?;
                            self.next.set(self.next.get() + 1);
                        }
                        Item::EnterKeyed(ctxs) => {
                            f.write_str("enter_with_key(")?;
                            leaves(f, ctxs, self.next)?;
                            f.write_str(")")?;
                        }
                        Item::Release(n) => write!(f, "release({n})")?,
                        Item::PopAll => f.write_str("pop_all+close")?,
                        Item::TryEnter(ctxs) => {
                            f.write_str("try enter(")?;
                            leaves(f, ctxs, self.next)?;
                            f.write_str(")")?;
                        }
                    }
                }
                write!(f, "] {:?}", Numbered { value: body, next: self.next })
            }
            Node::Join { all, branches, body } => {
                f.write_str(if *all { "with(join_all(" } else { "with(join(" })?;
                leaves(f, branches, self.next)?;
                write!(f, ")) {:?}", Numbered { value: body, next: self.next })
            }
        }
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Numbered { value: self, next: &core::cell::Cell::new(0) })
    }
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Numbered as if it were the first item of a stack.
        let node = Node::Stack(alloc::vec![self.clone()], Body::step(Step::ok()));
        write!(f, "{node:?}")
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Numbered { value: self, next: &core::cell::Cell::new(0) })
    }
}

impl fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interrupt::None => Ok(()),
            Interrupt::CancelAt(n) => write!(f, ", cancelled at poll {n}"),
            Interrupt::DropAt(n) => write!(f, ", dropped after {n} polls"),
            Interrupt::DetachAt(n) => write!(f, ", detached after {n} polls"),
        }
    }
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{:?}", self.root, self.interrupt)
    }
}
