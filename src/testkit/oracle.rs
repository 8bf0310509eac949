//! The oracle: what a scenario must produce, computed from the scenario alone.
//!
//! This is an independent model of the contract (DESIGN.md, G1-G7), not a replay of the crate:
//! a plain sequential simulation that walks the scenario, counts polls (every `Pending` of a
//! step ends a poll of the root scope), and applies the rules as the contract states them:
//!
//! - contexts are entered in order and exited in reverse; a failed, panicking or unfinished
//!   enter is never exited; a tuple that fails at its k-th context exits the k-1 others;
//! - each exit sees `Panicked` while a panic is pending, else `Cancelled` after a cancellation,
//!   else `Failed` with the newest error, else `Completed`; the first error is the primary one,
//!   unless the scope was cancelled first, and every later one is suppressed, in order; a body
//!   that passes an inner scope's error on brings its primary error (or its cancellation) and
//!   its suppressed errors, in that order;
//! - an exit-stack enter that fails half-way (a tuple) gives the caller its first error and
//!   leaves the others with the stack, which records them when it closes: after the body's
//!   error, before the errors of its exits (which see them, as the newest);
//! - the branches of a join enter together and exit together: polled in one poll each, in
//!   branch order; the exits all start at once, seeing the same outcome, each bounded by its
//!   own deadline; their errors (and the first panic) are taken a branch after the other, in
//!   branch order, whenever they happened. A branch that fails to enter has the others exit
//!   (together) seeing its error, and the join is not entered;
//! - an exit-stack `release` runs that entry's exit at once, seeing `Completed` at first: its
//!   first error is the body's (the others stay with the stack), its panic is the body's (every
//!   error stays with the stack). `pop_all` moves every entry and kept error to a new stack,
//!   out of the scope (no deadline), whose `close` runs at once as the stack's close would, its
//!   result passed on by the body whole. Both are shielded, like every exit;
//! - the first panic resumes after every exit; the errors then go to the hook;
//! - cancellation is structured. At each poll of the root, the scopes that are running (the
//!   root, the scope in its body, and so on inward) are looked at from the outside in: one not
//!   yet cancelled nor exiting is cancelled if the scope around it is, or else if its own signal
//!   fires (a signal is polled once per poll, from the scope's first poll on, and not once the
//!   scope is cancelled or exiting). A cancelled scope enters nothing more (an enter in progress
//!   finishes; one not started never starts) and its body stops at its next own await, but not
//!   while a scope inside it, or an exit-stack enter, is still running: those finish first
//!   (the inner scopes, cancelled too, run their exits), innermost first. A body that ends in a
//!   cancelled scope counts as cancelled. Exits are shielded;
//! - a dropped scope runs the synchronous fallback of every context entered and not yet exiting,
//!   newest first, innermost scope first;
//! - the combinators change no rule: a `Mapped` context is its leaf (mapping adds no await and no
//!   cancellation point); an `EvalMapped` one enters its resource over half the enter's pending
//!   polls, then runs the leaf's enter act as its `eval_map` step, and a step that fails, panics
//!   or never starts (the scope was cancelled first) has the resource exit at once, seeing it,
//!   with no deadline; a `Finalized` context's exit succeeds at once and its finalizer then runs
//!   the leaf's exit step, journaled after the exit; a chain (`and_then`) enters and exits as a
//!   tuple of its leaves;
//! - a detached root (`detach_on_drop`) dropped before its first poll is dropped with its
//!   contexts; dropped later, it goes on in a task of its own as a scope cancelled at that poll,
//!   and the report, which nobody receives, ends as `Dropped`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::plan::{PBody, PItem, PNode, plan};
use super::report::{Ending, Event, Fault, Report, Seen};
use super::scenario::{Act, Deadline, Interrupt, Kind, Leaf, Scenario, Signal, Step};

/// Computes the report `scenario` must produce.
pub fn expect(scenario: &Scenario) -> Report {
    let mut model = Model {
        unbounded: false,
        events: Vec::new(),
        lost: Vec::new(),
        interrupt: scenario.interrupt,
        polls: 0,
        running: Vec::new(),
    };
    let root = plan(&scenario.root);
    let ending = match model.dropped().and_then(|()| model.node(&root, true)) {
        Ok(End::Ok) => Ending::Returned,
        Ok(End::Err(primary, suppressed)) => {
            Ending::Failed { cancelled: primary.is_none(), primary, suppressed }
        }
        Ok(End::Panic(message)) => Ending::Panicked(message),
        Err(Stop::Dropped) => Ending::Dropped,
        Err(Stop::Cancel) => unreachable!("a scope handles its own cancellation"),
    };
    // Detached: the scope went on as a cancelled one, in a task whose result nobody sees.
    let ending = match scenario.interrupt {
        Interrupt::DetachAt(k) if model.polls >= u32::from(k) => Ending::Dropped,
        _ => ending,
    };
    Report { events: model.events, ending, lost: model.lost }
}

/// What stops the walk: the root future is dropped, or the innermost scope's body is stopped
/// by its cancellation (dropped at its current await; that scope handles it).
#[derive(Debug, Clone, Copy)]
enum Stop {
    Dropped,
    Cancel,
}

/// Which step is waiting: one of the innermost scope's body (where a cancellation stops it), or
/// an enter or an exit (shielded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Body,
    Shielded,
}

/// A scope that is running, as the cancellation rules see it.
struct Running {
    id: usize,
    /// Its signal completes (or panics) on its `at + 1`-th poll.
    signal: Option<Signal>,
    signal_polls: u32,
    cancelled: bool,
    exiting: bool,
    /// Its signal panicked: a panic of the scope, recorded where it records its cancellation.
    signal_panic: Option<String>,
    deadline: Option<Deadline>,
}

impl Running {
    /// One poll of the scope: it is cancelled with the scope around it, or by its own signal.
    fn poll(&mut self, outer_cancelled: bool) {
        if self.exiting || self.cancelled {
            return;
        }
        if outer_cancelled {
            self.cancelled = true;
        } else if let Some(Signal { at, panics }) = self.signal {
            self.signal_polls += 1;
            self.cancelled = self.signal_polls > u32::from(at);
            if self.cancelled && panics {
                self.signal_panic = Some(format!("signal of scope {} panicked", self.id));
            }
        }
    }
}

/// A scope's errors: the contract's G4-G6 bookkeeping, stated afresh.
#[derive(Default)]
struct Errors {
    first: Option<Fault>,
    later: Vec<Fault>,
    panic: Option<String>,
    cancelled: bool,
}

impl Errors {
    fn seen(&self) -> Seen {
        if self.panic.is_some() {
            Seen::Panicked
        } else if self.cancelled {
            Seen::Cancelled
        } else if let Some(newest) = self.later.last().or(self.first.as_ref()) {
            Seen::Failed(newest.clone())
        } else {
            Seen::Completed
        }
    }

    fn fail(&mut self, error: Fault) {
        if self.first.is_none() && !self.cancelled {
            self.first = Some(error);
        } else {
            self.later.push(error);
        }
    }

    fn panic(&mut self, message: String) {
        self.panic.get_or_insert(message);
    }

    fn cancel(&mut self) {
        if self.first.is_none() {
            self.cancelled = true;
        }
    }

    fn all(self) -> Vec<Fault> {
        self.first.into_iter().chain(self.later).collect()
    }
}

/// How a step, an enter or a body ended.
enum Done {
    Ok,
    Err(Fault),
    Panic(String),
    /// A body that passed on a nested scope's error: its primary error (none when it was
    /// cancelled) and its suppressed ones.
    Nested(Option<Fault>, Vec<Fault>),
}

/// How an enter ended: as a step does (`Ok`: entered), or, for an `EvalMapped` context whose
/// resource entered, with its step failed or panicked (or, `None`, never started: the scope was
/// cancelled first), so that the resource must exit.
enum Entering {
    Done(Done),
    Undo(Option<Done>),
}

/// How a scope ended.
enum End {
    Ok,
    Err(Option<Fault>, Vec<Fault>),
    Panic(String),
}

/// What an exit stack holds.
enum Entry {
    /// Contexts entered; with a key (`enter_with_key`) or not.
    Leaves(Vec<(usize, Leaf)>, bool),
    Defer(usize, Step),
    PushExit(usize, Step),
    Callback(usize, Act),
}

struct Model {
    /// An exit runs without the innermost scope's deadline (a stack taken by `pop_all`).
    unbounded: bool,
    events: Vec<Event>,
    lost: Vec<Fault>,
    interrupt: Interrupt,
    /// Polls of the root that returned `Pending`.
    polls: u32,
    /// The scopes running, outermost first.
    running: Vec<Running>,
}

/// How a `with` (in reverse) or a `join` (together) exits what it entered.
type ExitAll = fn(&mut Model, &[(usize, Leaf)], &mut Errors) -> Result<(), Stop>;

impl Model {
    /// The root's future is dropped instead of polled again, after `k` polls.
    fn dropped(&self) -> Result<(), Stop> {
        match self.interrupt {
            Interrupt::DropAt(k) if u32::from(k) == self.polls => Err(Stop::Dropped),
            // Never polled: nothing is detached, the scope is dropped with its contexts.
            Interrupt::DetachAt(0) if self.polls == 0 => Err(Stop::Dropped),
            _ => Ok(()),
        }
    }

    /// A scope starts, in the middle of a poll: its first poll.
    fn start(&mut self, id: usize, body: &PBody, root: bool) {
        let root_signal = match self.interrupt {
            // The detach signal fires when the future is dropped, after `at` polls.
            Interrupt::CancelAt(at) | Interrupt::DetachAt(at) if root => Some(Signal { at, panics: false }),
            _ => None,
        };
        // Polled together, the earlier fires; on the same poll, the root's (polled first).
        let signal = match (body.signal, root_signal) {
            (Some(own), Some(root)) => Some(if own.at < root.at { own } else { root }),
            (a, b) => a.or(b),
        };
        let outer = self.running.last().is_some_and(|scope| scope.cancelled);
        let mut scope = Running {
            id,
            signal,
            signal_polls: 0,
            cancelled: false,
            exiting: false,
            signal_panic: None,
            deadline: body.deadline,
        };
        scope.poll(outer);
        self.running.push(scope);
    }

    /// Records the innermost scope's cancellation into `errors`, or first the panic of its signal
    /// if that is what cancelled it (once: the first place that records it takes it).
    fn cancel_into(&mut self, errors: &mut Errors) {
        if let Some(message) = self.running.last_mut().and_then(|scope| scope.signal_panic.take()) {
            errors.panic(message);
        }
        errors.cancel();
    }

    fn innermost(&mut self) -> &mut Running {
        self.running.last_mut().expect("inside a scope")
    }

    fn cancelled(&self) -> bool {
        self.running.last().is_some_and(|scope| scope.cancelled)
    }

    /// A step returned `Pending`: the root's poll ends there; the next one looks at every
    /// running scope, from the outside in.
    fn tick(&mut self) -> Result<(), Stop> {
        self.polls += 1;
        self.dropped()?;
        let mut outer = false;
        for scope in &mut self.running {
            scope.poll(outer);
            outer = scope.cancelled;
        }
        Ok(())
    }

    fn step(&mut self, step: Step, at: Where, fault: Fault, panic: String) -> Result<Done, Stop> {
        for _ in 0..step.pending {
            // A body of a cancelled scope stops at this await: at once if it already was, or
            // at the next poll if it is by then.
            if at == Where::Body && self.cancelled() {
                return Err(Stop::Cancel);
            }
            self.tick()?;
            if at == Where::Body && self.cancelled() {
                return Err(Stop::Cancel);
            }
        }
        Ok(match step.act {
            Act::Succeed => Done::Ok,
            Act::Fail => Done::Err(fault),
            Act::Panic => Done::Panic(panic),
        })
    }

    /// An exit's step, bounded by the innermost scope's deadline: polled after each `Pending`
    /// of the exit, it ends the exit there (in the same poll) if it fires, with its error; if it
    /// panics, that panic is recorded and the exit goes on without it.
    fn exit_step(
        &mut self,
        step: Step,
        errors: &mut Errors,
        fault: Fault,
        panic: String,
    ) -> Result<Done, Stop> {
        let (id, mut deadline) = match self.running.last() {
            Some(scope) if !self.unbounded => (scope.id, scope.deadline),
            _ => (0, None),
        };
        for polls in 1..=u32::from(step.pending) {
            if let Some(Deadline { after, panics }) = deadline {
                if polls > u32::from(after) {
                    if !panics {
                        return Ok(Done::Err(Fault::Deadline(id)));
                    }
                    errors.panic(format!("deadline of scope {id} panicked"));
                    deadline = None;
                }
            }
            self.tick()?;
        }
        Ok(match step.act {
            Act::Succeed => Done::Ok,
            Act::Fail => Done::Err(fault),
            Act::Panic => Done::Panic(panic),
        })
    }

    fn enter(&mut self, (n, leaf): (usize, Leaf)) -> Result<Entering, Stop> {
        let panic = format!("enter #{n} panicked");
        if leaf.kind != Kind::EvalMapped {
            let done = self.step(leaf.enter, Where::Shielded, Fault::Enter(n), panic)?;
            if let Done::Ok = done {
                self.events.push(Event::Enter(n));
            }
            return Ok(Entering::Done(done));
        }
        // The resource, over the first half of the pending polls.
        let (first, step) = leaf.enter.eval_map_halves();
        self.step(first, Where::Shielded, Fault::Enter(n), panic.clone())?;
        self.events.push(Event::Enter(n));
        if self.cancelled() {
            return Ok(Entering::Undo(None)); // the step never starts
        }
        // The step, over the rest; dropped meanwhile, the resource falls back.
        match self.step(step, Where::Shielded, Fault::Enter(n), panic) {
            Ok(Done::Ok) => Ok(Entering::Done(Done::Ok)),
            Ok(done) => Ok(Entering::Undo(Some(done))),
            Err(stop) => {
                self.events.push(Event::Fallback(n));
                Err(stop)
            }
        }
    }

    fn record(errors: &mut Errors, done: Done) {
        match done {
            Done::Ok => {}
            Done::Err(fault) => errors.fail(fault),
            Done::Panic(message) => errors.panic(message),
            Done::Nested(primary, suppressed) => {
                match primary {
                    Some(primary) => errors.fail(primary),
                    None => errors.cancel(),
                }
                for fault in suppressed {
                    errors.fail(fault);
                }
            }
        }
    }

    /// How a body ended, in its scope: one that ends after the scope was cancelled counts as
    /// cancelled (its error, if any, comes after the cancellation).
    fn body_ended(&mut self, errors: &mut Errors, out: Result<Done, Stop>) -> Result<(), Stop> {
        match out {
            Ok(done) => {
                if self.cancelled() {
                    self.cancel_into(errors);
                }
                Self::record(errors, done);
                Ok(())
            }
            Err(Stop::Cancel) => {
                self.cancel_into(errors);
                Ok(())
            }
            Err(stop) => Err(stop),
        }
    }

    /// A context's exit starts, seeing `seen`: a finalized one's resource exits at once, and its
    /// action starts, seeing the same (the leaf's exit step is then the action's).
    fn exit_events(&mut self, n: usize, leaf: &Leaf, seen: Seen) {
        if leaf.kind == Kind::Finalized {
            self.events.push(Event::Exit(n, seen.clone()));
            self.events.push(Event::Finalize(n, seen));
        } else {
            self.events.push(Event::Exit(n, seen));
        }
    }

    fn fall_back(&mut self, entered: &[(usize, Leaf)]) {
        for (n, _) in entered.iter().rev() {
            self.events.push(Event::Fallback(*n));
        }
    }

    /// Exits `entered` newest first; if dropped meanwhile, the ones not reached fall back.
    fn exit_all(&mut self, entered: &[(usize, Leaf)], errors: &mut Errors) -> Result<(), Stop> {
        for (i, (n, leaf)) in entered.iter().enumerate().rev() {
            self.exit_events(*n, leaf, errors.seen());
            match self.exit_step(leaf.exit, errors, Fault::Exit(*n), format!("exit #{n} panicked")) {
                Ok(done) => Self::record(errors, done),
                Err(stop) => {
                    self.fall_back(&entered[..i]);
                    return Err(stop);
                }
            }
        }
        Ok(())
    }

    /// Enters `leaves` in order into `errors`; `None` (after exiting what was entered) when one
    /// failed or panicked, or when the innermost scope is cancelled before the next one starts
    /// (looked at before each context, and after the last one when `after_last`).
    fn enter_all(
        &mut self,
        leaves: &[(usize, Leaf)],
        errors: &mut Errors,
        after_last: bool,
    ) -> Result<Option<Vec<(usize, Leaf)>>, Stop> {
        let mut entered = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            if self.cancelled() {
                self.cancel_into(errors);
                self.exit_all(&entered, errors)?;
                return Ok(None);
            }
            let entering = match self.enter(*leaf) {
                Ok(entering) => entering,
                Err(stop) => {
                    self.fall_back(&entered);
                    return Err(stop);
                }
            };
            match entering {
                Entering::Done(Done::Ok) => entered.push(*leaf),
                Entering::Done(other) => {
                    Self::record(errors, other);
                    self.exit_all(&entered, errors)?;
                    return Ok(None);
                }
                Entering::Undo(done) => {
                    match done {
                        Some(done) => Self::record(errors, done),
                        None => self.cancel_into(errors),
                    }
                    // Its resource exits first, inside its enter; then the ones before it.
                    entered.push(*leaf);
                    self.exit_all(&entered, errors)?;
                    return Ok(None);
                }
            }
            if i + 1 == leaves.len() && after_last && self.cancelled() {
                self.cancel_into(errors);
                self.exit_all(&entered, errors)?;
                return Ok(None);
            }
        }
        Ok(Some(entered))
    }

    fn node(&mut self, node: &PNode, root: bool) -> Result<End, Stop> {
        let (id, body) = match node {
            PNode::With { id, body, .. } | PNode::Stack { id, body, .. } | PNode::Join { id, body, .. } => {
                (*id, body)
            }
        };
        self.start(id, body, root);
        let end = match node {
            PNode::With { id, leaves, body, .. } => self.with(*id, leaves, body),
            PNode::Stack { id, items, body } => self.stack(*id, items, body),
            PNode::Join { id, leaves, body, .. } => self.join(*id, leaves, body),
        };
        self.running.pop();
        end
    }

    fn with(&mut self, id: usize, leaves: &[(usize, Leaf)], body: &PBody) -> Result<End, Stop> {
        let mut errors = Errors::default();
        let entered = self.enter_all(leaves, &mut errors, true)?;
        self.run_entered(id, body, entered, errors, Self::exit_all)
    }

    /// `with` over branches entered concurrently, then exited concurrently (`join` and
    /// `join_all` alike: a branch's errors, then the next branch's).
    fn join(&mut self, id: usize, leaves: &[(usize, Leaf)], body: &PBody) -> Result<End, Stop> {
        let mut errors = Errors::default();
        if self.cancelled() {
            // Cancelled before the enters started: none starts.
            self.cancel_into(&mut errors);
            return Ok(self.finish(errors));
        }
        let entered = self.join_enter(leaves, &mut errors)?;
        self.run_entered(id, body, entered, errors, Self::join_exit)
    }

    /// The rest of a `with` or a `join` once its enters ended: the body if they all entered,
    /// then `exit` over what entered.
    fn run_entered(
        &mut self,
        id: usize,
        body: &PBody,
        entered: Option<Vec<(usize, Leaf)>>,
        mut errors: Errors,
        exit: ExitAll,
    ) -> Result<End, Stop> {
        let Some(entered) = entered else {
            // A failed enter: a cancellation that came meanwhile is recorded too (it changes
            // nothing but a panicking signal's panic, which is the scope's).
            if self.cancelled() {
                self.cancel_into(&mut errors);
            }
            return Ok(self.finish(errors));
        };
        self.events.push(Event::Body(id));
        let out = self.body(id, body);
        if let Err(Stop::Dropped) = out {
            self.fall_back(&entered);
            return Err(Stop::Dropped);
        }
        self.body_ended(&mut errors, out)?;
        self.innermost().exiting = true;
        exit(self, &entered, &mut errors)?;
        Ok(self.finish(errors))
    }

    /// The branches' enters, polled together (in branch order in each poll; each shielded):
    /// `None` when one failed or panicked, or the scope is cancelled once all are done; then
    /// the ones that entered are exited, together, seeing that.
    fn join_enter(
        &mut self,
        leaves: &[(usize, Leaf)],
        errors: &mut Errors,
    ) -> Result<Option<Vec<(usize, Leaf)>>, Stop> {
        let mut ended: Vec<Option<Done>> = leaves.iter().map(|_| None).collect();
        let polls = leaves.iter().map(|(_, leaf)| leaf.enter.pending).max().unwrap_or(0);
        for poll in 0..=polls {
            if poll > 0 {
                if let Err(stop) = self.tick() {
                    let entered: Vec<_> = leaves
                        .iter()
                        .zip(&ended)
                        .filter(|(_, done)| matches!(done, Some(Done::Ok)))
                        .map(|(leaf, _)| *leaf)
                        .collect();
                    self.fall_back(&entered);
                    return Err(stop);
                }
            }
            for ((n, leaf), done) in leaves.iter().zip(ended.iter_mut()) {
                if leaf.enter.pending == poll {
                    let end = match leaf.enter.act {
                        Act::Succeed => {
                            self.events.push(Event::Enter(*n));
                            Done::Ok
                        }
                        Act::Fail => Done::Err(Fault::Enter(*n)),
                        Act::Panic => Done::Panic(format!("enter #{n} panicked")),
                    };
                    *done = Some(end);
                }
            }
        }
        let mut entered = Vec::new();
        for (leaf, done) in leaves.iter().zip(ended) {
            match done.expect("every enter ended") {
                Done::Ok => entered.push(*leaf),
                other => Self::record(errors, other),
            }
        }
        let failed = entered.len() < leaves.len();
        if self.cancelled() {
            self.cancel_into(errors);
        } else if !failed {
            return Ok(Some(entered));
        }
        self.join_exit(&entered, errors)?;
        Ok(None)
    }

    /// The exits of `entered`, started together (in branch order) and polled together, each
    /// seeing what the next exit would see, each bounded by its own deadline; their errors
    /// (and panics) are recorded a branch after the other, in branch order.
    fn join_exit(&mut self, entered: &[(usize, Leaf)], errors: &mut Errors) -> Result<(), Stop> {
        let seen = errors.seen();
        for (n, leaf) in entered {
            self.exit_events(*n, leaf, seen.clone());
        }
        let (id, deadline) = match self.running.last() {
            Some(scope) if !self.unbounded => (scope.id, scope.deadline),
            _ => (0, None),
        };
        // Per branch: its deadline (until it panics), its deadline's panic, how it ended.
        let mut branches: Vec<(Option<Deadline>, Option<String>, Option<Done>)> =
            entered.iter().map(|_| (deadline, None, None)).collect();
        let mut poll = 0u32;
        loop {
            for ((n, leaf), (deadline, panic, done)) in entered.iter().zip(branches.iter_mut()) {
                if done.is_some() {
                    continue;
                }
                if u32::from(leaf.exit.pending) == poll {
                    *done = Some(match leaf.exit.act {
                        Act::Succeed => Done::Ok,
                        Act::Fail => Done::Err(Fault::Exit(*n)),
                        Act::Panic => Done::Panic(format!("exit #{n} panicked")),
                    });
                } else if let Some(Deadline { after, panics }) = *deadline {
                    if poll + 1 > u32::from(after) {
                        if panics {
                            *panic = Some(format!("deadline of scope {id} panicked"));
                            *deadline = None;
                        } else {
                            *done = Some(Done::Err(Fault::Deadline(id)));
                        }
                    }
                }
            }
            if branches.iter().all(|(_, _, done)| done.is_some()) {
                break;
            }
            self.tick()?;
            poll += 1;
        }
        for (_, panic, done) in branches {
            if let Some(message) = panic {
                errors.panic(message);
            }
            Self::record(errors, done.expect("every exit ended"));
        }
        Ok(())
    }

    /// A body: its nested scope (whose error passes through, ending the body), then its step.
    fn body(&mut self, id: usize, body: &PBody) -> Result<Done, Stop> {
        if let Some(nested) = &body.nested {
            match self.node(nested, false)? {
                End::Ok => {}
                End::Err(primary, suppressed) => return Ok(Done::Nested(primary, suppressed)),
                End::Panic(message) => return Ok(Done::Panic(message)),
            }
        }
        self.step(body.step, Where::Body, Fault::Body(id), format!("body of scope {id} panicked"))
    }

    fn stack(&mut self, id: usize, items: &[PItem], body: &PBody) -> Result<End, Stop> {
        let mut errors = Errors::default();
        let mut entries = Vec::new();
        let mut orphans = Vec::new();
        let out = if self.cancelled() {
            Err(Stop::Cancel) // cancelled before the body started
        } else {
            self.events.push(Event::Body(id));
            self.stack_body(id, items, body, &mut entries, &mut orphans)
        };
        if let Err(Stop::Dropped) = out {
            self.fall_back_entries(&entries);
            return Err(Stop::Dropped);
        }
        self.body_ended(&mut errors, out)?;
        self.innermost().exiting = true;
        // The orphaned errors happened during the body, before any exit that runs at close:
        // they come first (G5), and the exits see the newest of them (G4).
        for orphan in orphans {
            errors.fail(orphan);
        }
        for i in (0..entries.len()).rev() {
            if let Err(stop) = self.exit_entry(&entries[i], &mut errors) {
                self.fall_back_entries(&entries[..i]);
                return Err(stop);
            }
        }
        Ok(self.finish(errors))
    }

    fn stack_body(
        &mut self,
        id: usize,
        items: &[PItem],
        body: &PBody,
        entries: &mut Vec<Entry>,
        orphans: &mut Vec<Fault>,
    ) -> Result<Done, Stop> {
        for item in items {
            match item {
                PItem::Defer(n, step) => entries.push(Entry::Defer(*n, *step)),
                PItem::PushExit(n, step) => entries.push(Entry::PushExit(*n, *step)),
                PItem::Callback(n, act) => entries.push(Entry::Callback(*n, *act)),
                PItem::Release(n) => {
                    if let Some(done) = self.release(*n, entries, orphans)? {
                        return Ok(done);
                    }
                }
                PItem::PopAll => {
                    if let Some(done) = self.pop_all(entries, orphans)? {
                        return Ok(done);
                    }
                }
                PItem::Enter(leaves) | PItem::EnterKeyed(leaves) | PItem::TryEnter(leaves) => {
                    if self.cancelled() {
                        // The enter never starts: the body stops here.
                        return Err(Stop::Cancel);
                    }
                    let keyed = matches!(item, PItem::EnterKeyed(_));
                    match self.stack_enter(leaves, orphans)? {
                        Some(Done::Ok) => entries.push(Entry::Leaves(leaves.clone(), keyed)),
                        // Its error is ignored: the body goes on.
                        Some(Done::Err(_)) if matches!(item, PItem::TryEnter(_)) => {}
                        Some(done) => return Ok(done),
                        // Cancelled half-way (its cleanup done): the body stops here.
                        None => return Err(Stop::Cancel),
                    }
                }
            }
        }
        self.body(id, body)
    }

    /// `release(key)?` of the `n % count`-th newest entry that has a key: its exit runs now
    /// (shielded, under the scope's deadline), seeing `Completed` at first; the caller gets its
    /// first error (which ends the body), the stack keeps the others; a panic resumes in the
    /// body, every error kept by the stack. `None`: the body goes on.
    fn release(
        &mut self,
        n: u8,
        entries: &mut Vec<Entry>,
        orphans: &mut Vec<Fault>,
    ) -> Result<Option<Done>, Stop> {
        let keyed: Vec<usize> =
            (0..entries.len()).filter(|&i| !matches!(entries[i], Entry::Leaves(_, false))).collect();
        if keyed.is_empty() {
            return Ok(None);
        }
        let entry = entries.remove(keyed[keyed.len() - 1 - usize::from(n) % keyed.len()]);
        let mut errors = Errors::default();
        self.exit_entry(&entry, &mut errors)?;
        let panic = errors.panic.take();
        let mut all = errors.all().into_iter();
        let done = match panic {
            Some(message) => Some(Done::Panic(message)),
            None => all.next().map(Done::Err),
        };
        orphans.extend(all);
        Ok(done)
    }

    /// `pop_all().close().await?`: every entry and every kept error move to a new stack, which
    /// closes at once as a stack does (its kept errors first, then its exits, newest first,
    /// seeing `Completed` at first), outside the scope: without its deadline. A panic resumes
    /// in the body; the errors then go to the process-wide hook, which the journal does not
    /// see. `None`: it closed without an error, the body goes on.
    fn pop_all(&mut self, entries: &mut Vec<Entry>, orphans: &mut Vec<Fault>) -> Result<Option<Done>, Stop> {
        let taken = core::mem::take(entries);
        let mut errors = Errors::default();
        for orphan in core::mem::take(orphans) {
            errors.fail(orphan);
        }
        self.unbounded = true;
        for i in (0..taken.len()).rev() {
            if let Err(stop) = self.exit_entry(&taken[i], &mut errors) {
                self.unbounded = false;
                self.fall_back_entries(&taken[..i]);
                return Err(stop);
            }
        }
        self.unbounded = false;
        if let Some(message) = errors.panic.take() {
            return Ok(Some(Done::Panic(message)));
        }
        Ok(errors.first.take().map(|primary| Done::Nested(Some(primary), errors.later)))
    }

    /// An exit-stack enter: a context, or a tuple, entered with its own error list. The caller
    /// gets the first error; the others stay with the stack (orphans). `None`: cancelled.
    fn stack_enter(
        &mut self,
        leaves: &[(usize, Leaf)],
        orphans: &mut Vec<Fault>,
    ) -> Result<Option<Done>, Stop> {
        let mut errors = Errors::default();
        match self.enter_all(leaves, &mut errors, false)? {
            Some(_) => Ok(Some(Done::Ok)),
            None => {
                let cancelled = errors.first.is_none() && errors.panic.is_none() && errors.cancelled;
                let panic = errors.panic.take();
                let mut all = errors.all().into_iter();
                if let Some(message) = panic {
                    orphans.extend(all);
                    return Ok(Some(Done::Panic(message)));
                }
                if cancelled {
                    orphans.extend(all);
                    return Ok(None);
                }
                let primary = all.next().expect("a failed enter has an error");
                orphans.extend(all);
                Ok(Some(Done::Err(primary)))
            }
        }
    }

    fn exit_entry(&mut self, entry: &Entry, errors: &mut Errors) -> Result<(), Stop> {
        let (n, step, seen) = match entry {
            Entry::Leaves(leaves, _) => return self.exit_all(leaves, errors),
            Entry::Defer(n, step) => (*n, *step, Seen::NotShown),
            Entry::PushExit(n, step) => (*n, *step, errors.seen()),
            Entry::Callback(n, act) => (*n, Step { pending: 0, act: *act }, Seen::NotShown),
        };
        self.events.push(Event::Exit(n, seen));
        let done = self.exit_step(step, errors, Fault::Exit(n), format!("exit #{n} panicked"))?;
        Self::record(errors, done);
        Ok(())
    }

    fn fall_back_entries(&mut self, entries: &[Entry]) {
        for entry in entries.iter().rev() {
            match entry {
                Entry::Leaves(leaves, _) => self.fall_back(leaves),
                Entry::Defer(n, _) | Entry::PushExit(n, _) | Entry::Callback(n, _) => {
                    self.events.push(Event::Fallback(*n))
                }
            }
        }
    }

    fn finish(&mut self, mut errors: Errors) -> End {
        if let Some(message) = errors.panic.take() {
            self.lost.extend(errors.all());
            return End::Panic(message);
        }
        match errors.first.take() {
            Some(primary) => End::Err(Some(primary), errors.later),
            None if errors.cancelled => End::Err(None, errors.later),
            None => End::Ok,
        }
    }
}
