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
//!   unless the scope was cancelled first, and every later one is suppressed, in order;
//! - the first panic resumes after every exit; the errors then go to the hook;
//! - the root's signal is polled at each of its polls while it enters or runs its body (and once
//!   more when the body starts); once it fires, an enter finishes and nothing more is entered; a
//!   body stops at its next `Pending`, unless an exit-stack enter is running (it finishes first);
//!   an exit-stack enter started after the signal never starts its context; exits are shielded;
//! - a dropped scope runs the synchronous fallback of every context entered and not yet exiting,
//!   newest first, innermost scope first.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::plan::{PBody, PItem, PNode, plan};
use super::report::{Ending, Event, Fault, Report, Seen};
use super::scenario::{Act, Interrupt, Leaf, Scenario, Step};

/// Computes the report `scenario` must produce.
pub fn expect(scenario: &Scenario) -> Report {
    let mut model = Model {
        events: Vec::new(),
        lost: Vec::new(),
        clock: Clock {
            interrupt: scenario.interrupt,
            polls: 0,
            signal_polls: 0,
            requested: false,
            phase: Phase::Entering,
            entering: 0,
        },
    };
    let root = plan(&scenario.root);
    if let PNode::Stack { .. } = root {
        model.clock.phase = Phase::Body; // a scope's body starts at once
    }
    let ending = match model.clock.dropped().and_then(|()| model.node(&root, true)) {
        Ok(End::Ok) => Ending::Returned,
        Ok(End::Err(primary, suppressed)) => {
            Ending::Failed { cancelled: primary.is_none(), primary: primary.map(|p| *p), suppressed }
        }
        Ok(End::Panic(message)) => Ending::Panicked(message),
        Err(Stop::Dropped) => Ending::Dropped,
        Err(Stop::Cancel) => unreachable!("the root scope handles its own cancellation"),
    };
    Report { events: model.events, ending, lost: model.lost }
}

/// What stops the walk: the root future is dropped, or the root's body is cancelled (dropped at
/// its current await). Both unwind through the scopes in the body, which fall back.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Dropped,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Entering,
    Body,
    Exiting,
}

/// Counts the root's polls and its signal's.
struct Clock {
    interrupt: Interrupt,
    polls: u32,
    signal_polls: u32,
    requested: bool,
    phase: Phase,
    /// Exit-stack enters of the root's own stack in progress (shielded from cancellation).
    entering: u32,
}

impl Clock {
    fn poll_signal(&mut self) {
        if let Interrupt::CancelAt(k) = self.interrupt {
            if !self.requested {
                self.signal_polls += 1;
                self.requested = self.signal_polls > u32::from(k);
            }
        }
    }

    fn stops_body(&self) -> bool {
        self.phase == Phase::Body && self.requested && self.entering == 0
    }

    /// The root's future is dropped instead of polled again, after `k` polls.
    fn dropped(&self) -> Result<(), Stop> {
        match self.interrupt {
            Interrupt::DropAt(k) if u32::from(k) == self.polls => Err(Stop::Dropped),
            _ => Ok(()),
        }
    }

    /// A root poll (not the first: see the scopes) starts.
    fn begin_poll(&mut self) -> Result<(), Stop> {
        self.dropped()?;
        if self.phase != Phase::Exiting {
            self.poll_signal();
        }
        if self.stops_body() { Err(Stop::Cancel) } else { Ok(()) }
    }

    /// A step returned `Pending`: the root's poll ends there (or its body stops at once).
    fn tick(&mut self) -> Result<(), Stop> {
        if self.stops_body() {
            return Err(Stop::Cancel);
        }
        self.polls += 1;
        self.begin_poll()
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
    /// A body that passed on a nested scope's error with `?`: its primary error (none when it
    /// was cancelled) and its suppressed ones.
    Nested(Option<Fault>, Vec<Fault>),
}

/// How a scope ended.
enum End {
    Ok,
    Err(Option<Box<Fault>>, Vec<Fault>),
    Panic(String),
}

/// What an exit stack holds.
enum Entry {
    Leaves(Vec<(usize, Leaf)>),
    Defer(usize, Step),
    PushExit(usize, Step),
    Callback(usize, Act),
}

struct Model {
    events: Vec<Event>,
    lost: Vec<Fault>,
    clock: Clock,
}

impl Model {
    fn step(&mut self, step: Step, fault: Fault, panic: String) -> Result<Done, Stop> {
        for _ in 0..step.pending {
            self.clock.tick()?;
        }
        Ok(match step.act {
            Act::Succeed => Done::Ok,
            Act::Fail => Done::Err(fault),
            Act::Panic => Done::Panic(panic),
        })
    }

    fn enter(&mut self, (n, leaf): (usize, Leaf)) -> Result<Done, Stop> {
        let done = self.step(leaf.enter, Fault::Enter(n), format!("enter #{n} panicked"))?;
        if let Done::Ok = done {
            self.events.push(Event::Enter(n));
        }
        Ok(done)
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

    fn fall_back(&mut self, entered: &[(usize, Leaf)]) {
        for (n, _) in entered.iter().rev() {
            self.events.push(Event::Fallback(*n));
        }
    }

    /// Exits `entered` newest first; if dropped meanwhile, the ones not reached fall back.
    fn exit_all(&mut self, entered: &[(usize, Leaf)], errors: &mut Errors) -> Result<(), Stop> {
        for (i, (n, leaf)) in entered.iter().enumerate().rev() {
            self.events.push(Event::Exit(*n, errors.seen()));
            match self.step(leaf.exit, Fault::Exit(*n), format!("exit #{n} panicked")) {
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
    /// failed, panicked, or when the root was cancelled and `check_after` says to look.
    fn enter_all(
        &mut self,
        leaves: &[(usize, Leaf)],
        errors: &mut Errors,
        check_after: impl Fn(usize) -> bool,
    ) -> Result<Option<Vec<(usize, Leaf)>>, Stop> {
        let mut entered = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            let done = match self.enter(*leaf) {
                Ok(done) => done,
                Err(stop) => {
                    self.fall_back(&entered);
                    return Err(stop);
                }
            };
            match done {
                Done::Ok => entered.push(*leaf),
                other => {
                    Self::record(errors, other);
                    self.exit_all(&entered, errors)?;
                    return Ok(None);
                }
            }
            if check_after(i) && self.clock.requested {
                errors.cancel();
                self.exit_all(&entered, errors)?;
                return Ok(None);
            }
        }
        Ok(Some(entered))
    }

    fn node(&mut self, node: &PNode, root: bool) -> Result<End, Stop> {
        match node {
            PNode::With { id, leaves, body } => self.with(*id, leaves, body, root),
            PNode::Stack { id, items, body } => self.stack(*id, items, body, root),
        }
    }

    fn with(&mut self, id: usize, leaves: &[(usize, Leaf)], body: &PBody, root: bool) -> Result<End, Stop> {
        let mut errors = Errors::default();
        if root {
            self.clock.poll_signal(); // the first poll
        }
        // Only the root has a signal: it is checked after each context enters.
        let Some(entered) = self.enter_all(leaves, &mut errors, |_| root)? else {
            return Ok(self.finish(errors));
        };
        if root {
            self.clock.phase = Phase::Body;
            self.clock.poll_signal(); // the body's first poll looks at the signal again
        }
        let out = if root && self.clock.stops_body() {
            Err(Stop::Cancel)
        } else {
            self.events.push(Event::Body(id));
            self.body(id, body)
        };
        match out {
            Ok(done) => Self::record(&mut errors, done),
            Err(Stop::Cancel) if root => errors.cancel(),
            Err(stop) => {
                self.fall_back(&entered);
                return Err(stop);
            }
        }
        if root {
            self.clock.phase = Phase::Exiting;
        }
        self.exit_all(&entered, &mut errors)?;
        Ok(self.finish(errors))
    }

    fn body(&mut self, id: usize, body: &PBody) -> Result<Done, Stop> {
        if let Some(nested) = &body.nested {
            match self.node(nested, false)? {
                End::Ok => {}
                End::Err(primary, suppressed) => return Ok(Done::Nested(primary.map(|p| *p), suppressed)),
                End::Panic(message) => return Ok(Done::Panic(message)),
            }
        }
        self.step(body.step, Fault::Body(id), format!("body of scope {id} panicked"))
    }

    fn stack(&mut self, id: usize, items: &[PItem], body: &PBody, root: bool) -> Result<End, Stop> {
        let mut errors = Errors::default();
        let mut entries = Vec::new();
        let mut orphans = Vec::new();
        let out = if root && {
            self.clock.poll_signal(); // the first poll
            self.clock.stops_body()
        } {
            Err(Stop::Cancel) // cancelled before the body starts
        } else {
            self.events.push(Event::Body(id));
            self.stack_body(id, items, body, root, &mut entries, &mut orphans)
        };
        match out {
            Ok(done) => Self::record(&mut errors, done),
            Err(Stop::Cancel) if root => errors.cancel(),
            Err(stop) => {
                self.fall_back_entries(&entries);
                return Err(stop);
            }
        }
        if root {
            self.clock.phase = Phase::Exiting;
        }
        for i in (0..entries.len()).rev() {
            if let Err(stop) = self.exit_entry(&entries[i], &mut errors) {
                self.fall_back_entries(&entries[..i]);
                return Err(stop);
            }
        }
        for orphan in orphans {
            errors.fail(orphan);
        }
        Ok(self.finish(errors))
    }

    fn stack_body(
        &mut self,
        id: usize,
        items: &[PItem],
        body: &PBody,
        root: bool,
        entries: &mut Vec<Entry>,
        orphans: &mut Vec<Fault>,
    ) -> Result<Done, Stop> {
        for item in items {
            match item {
                PItem::Defer(n, step) => entries.push(Entry::Defer(*n, *step)),
                PItem::PushExit(n, step) => entries.push(Entry::PushExit(*n, *step)),
                PItem::Callback(n, act) => entries.push(Entry::Callback(*n, *act)),
                PItem::Enter(leaves) => {
                    if root && self.clock.requested {
                        // The enter parks before its context starts: the body stops here.
                        return Err(Stop::Cancel);
                    }
                    if root {
                        self.clock.entering += 1;
                    }
                    let entered = self.stack_enter(leaves, root, orphans);
                    if root {
                        self.clock.entering -= 1;
                    }
                    match entered? {
                        Some(Done::Ok) => entries.push(Entry::Leaves(leaves.clone())),
                        Some(done) => return Ok(done),
                        // Cancelled half-way (its cleanup done): the body stops here.
                        None => return Err(Stop::Cancel),
                    }
                }
            }
        }
        self.body(id, body)
    }

    /// An exit-stack enter: a context, or a tuple entered with its own error list. The caller
    /// gets the first error; the others stay with the stack (orphans). `None`: cancelled.
    fn stack_enter(
        &mut self,
        leaves: &[(usize, Leaf)],
        root: bool,
        orphans: &mut Vec<Fault>,
    ) -> Result<Option<Done>, Stop> {
        if let [leaf] = leaves {
            return self.enter(*leaf).map(Some);
        }
        let mut errors = Errors::default();
        let last = leaves.len() - 1;
        match self.enter_all(leaves, &mut errors, |i| root && i < last)? {
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
            Entry::Leaves(leaves) => return self.exit_all(leaves, errors),
            Entry::Defer(n, step) => (*n, *step, Seen::NotShown),
            Entry::PushExit(n, step) => (*n, *step, errors.seen()),
            Entry::Callback(n, act) => (*n, Step { pending: 0, act: *act }, Seen::NotShown),
        };
        self.events.push(Event::Exit(n, seen));
        let done = self.step(step, Fault::Exit(n), format!("exit #{n} panicked"))?;
        Self::record(errors, done);
        Ok(())
    }

    fn fall_back_entries(&mut self, entries: &[Entry]) {
        for entry in entries.iter().rev() {
            match entry {
                Entry::Leaves(leaves) => self.fall_back(leaves),
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
            Some(primary) => End::Err(Some(Box::new(primary)), errors.later),
            None if errors.cancelled => End::Err(None, errors.later),
            None => End::Ok,
        }
    }
}
