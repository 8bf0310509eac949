//! Model-based properties of the exit stacks (issue 15, item 6): random sequences of operations
//! on [`ExitStack`] and [`LocalExitStack`], checked after every operation against a reference
//! model, and shrunk to the smallest failing sequence by `proptest-state-machine`.
//!
//! The model ([`Model`]) knows, for every stack made so far (the first one, those `pop_all`
//! returned, those made with `new`), whether it is still open, its entries (oldest first: a
//! context, a `push_exit`, a `defer` or a `callback`, each with a name and how its exit ends:
//! succeeds, fails with its own error, or panics; or a whole stack entered into it), the errors
//! it keeps for no caller, and which entries the keys given out so far name. Each operation
//! gives the journal it must write (every enter, exit, fallback and hook report, in order) and
//! its result: a value, an error, the errors of a close (primary first, then the suppressed
//! ones in order), or a panic with its message. The rules are the crate's: exits run newest
//! first, each seeing `Completed`, or `Failed(newest error)` once an exit failed or after
//! `close_with(e)`, or `Panicked` once one panicked (G4); the first panic resumes after every
//! exit, its errors going to the error hook (G6); a released exit sees `Completed` and its error
//! is returned; a key follows its entry into the stack `pop_all` returns; releasing a released
//! key, or one of another stack, panics with a clear message (tested here as an operation).
//!
//! `PROPTEST_CASES` sets the number of cases per test (2,000 by default, of up to
//! [`MAX_OPS`] operations; a few under Miri).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once};

use async_with::{AsyncContext, Error, ExitStack, Key, LocalAsyncContext, LocalExitStack, Outcome};
use futures::executor::block_on;

mod common;
use common::{describe, yield_now};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// The longest sequence of operations a case runs.
const MAX_OPS: usize = if cfg!(miri) { 12 } else { 30 };

fn config() -> Config {
    let default = if cfg!(miri) { 2 } else { 2000 };
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default),
        // The minimal failing sequence is printed; no regressions file is written.
        failure_persistence: None,
        ..Config::default()
    }
}

const ANOTHER_STACK: &str = "async-with: this key belongs to another exit stack";
const RELEASED: &str = "async-with: this entry was already released (or closed with the stack)";
/// How a case that differs from the model fails.
const MISMATCH: &str = "the stack differs from the model ";

// ----- The operations -----

/// The name of an entry (and of its key), or of the error of a `close_with`. Names and stack
/// ids are drawn from counters when the operations are generated, so that deleting an operation
/// while shrinking does not change what the others refer to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Name(u32);

/// A stack: the first one is `s0`; `new` and `pop_all` name the stack they make.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StackId(u32);

impl fmt::Debug for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

/// How an enter or an exit ends (after yielding to the executor once, for the async ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Succeed,
    Fail,
    Panic,
}

/// The entries pushed without an enter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Push {
    Exit,
    Defer,
    Callback,
}

/// One operation.
#[derive(Clone, Debug)]
enum Op {
    /// `ExitStack::new()` (or `LocalExitStack::new()`).
    New {
        id: StackId,
    },
    /// `enter` of a context, or `enter_with_key` if `keyed` (the key is named after the entry).
    Enter {
        stack: StackId,
        name: Name,
        enter: Act,
        exit: Act,
        keyed: bool,
    },
    /// `push_exit`, `defer` or `callback`: each gives a key.
    Push {
        stack: StackId,
        name: Name,
        push: Push,
        exit: Act,
    },
    /// `release` of any key given out so far: live in this stack, released, or another stack's.
    Release {
        stack: StackId,
        key: Name,
    },
    /// `pop_all`, the returned stack named `into`.
    PopAll {
        stack: StackId,
        into: StackId,
    },
    /// `outer.enter(inner)`: a stack entered into a stack (`enter_with_key` if `key` is some).
    Nest {
        outer: StackId,
        inner: StackId,
        key: Option<Name>,
    },
    Close {
        stack: StackId,
    },
    /// `close_with(format!("cause {error}"))`.
    CloseWith {
        stack: StackId,
        error: Name,
    },
    /// Drops the stack without closing it: the fallbacks run, newest first.
    Drop {
        stack: StackId,
    },
}

/// What an operation returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Ret {
    #[default]
    Ok,
    /// The error of an enter or a release.
    Err(String),
    /// The error of a close: its primary error and the suppressed ones.
    Closed(Option<String>, Vec<String>),
    /// The operation panicked with this message.
    Panic(String),
}

/// What an operation did: every line it journaled, in order, and what it returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Observed {
    journal: Vec<String>,
    ret: Ret,
}

// ----- The reference model -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Context,
    PushExit,
    Defer,
    Callback,
}

#[derive(Clone, Debug)]
enum What {
    /// An exit of its own.
    Exit { name: Name, kind: Kind, act: Act },
    /// A stack entered into the stack: its entries (oldest first) and its kept errors.
    Nested { entries: Vec<Entry>, orphans: Vec<String> },
}

#[derive(Clone, Debug)]
struct Entry {
    /// Unique among all entries of a case.
    id: u32,
    what: What,
}

#[derive(Clone, Debug)]
struct Stack {
    /// Not yet closed, dropped or entered into another stack.
    open: bool,
    /// Changes on `pop_all` (the returned stack takes the old one, with the entries).
    identity: u32,
    /// Oldest first.
    entries: Vec<Entry>,
    /// Errors that belong to no caller (the further errors of a release), reported first at
    /// close.
    orphans: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct ModelKey {
    identity: u32,
    entry: u32,
}

#[derive(Clone, Debug)]
struct Model {
    /// Every stack made so far.
    stacks: BTreeMap<StackId, Stack>,
    /// Every key given out so far, by the name of its entry.
    keys: BTreeMap<Name, ModelKey>,
    /// For generating operations.
    next_name: u32,
    next_stack: u32,
    next_identity: u32,
    next_entry: u32,
    /// What the last operation must have done.
    last: Observed,
}

impl Model {
    fn new_stack(&mut self, id: StackId) {
        let identity = self.fresh_identity();
        self.stacks.insert(id, Stack { open: true, identity, entries: Vec::new(), orphans: Vec::new() });
    }

    fn fresh_identity(&mut self) -> u32 {
        self.next_identity += 1;
        self.next_identity - 1
    }

    fn stack(&mut self, stack: StackId) -> &mut Stack {
        self.stacks.get_mut(&stack).expect("the preconditions checked it")
    }

    fn push_entry(&mut self, stack: StackId, what: What, key: Option<Name>) {
        let id = self.next_entry;
        self.next_entry += 1;
        let stack = self.stacks.get_mut(&stack).expect("the preconditions checked it");
        stack.entries.push(Entry { id, what });
        if let Some(key) = key {
            self.keys.insert(key, ModelKey { identity: stack.identity, entry: id });
        }
    }

    fn is_open(&self, stack: StackId) -> bool {
        self.stacks.get(&stack).is_some_and(|s| s.open)
    }

    fn is_new(&self, stack: StackId) -> bool {
        !self.stacks.contains_key(&stack)
    }

    fn open(&self) -> Vec<StackId> {
        self.stacks.iter().filter(|(_, s)| s.open).map(|(&id, _)| id).collect()
    }
}

/// An unwinding stack, as the model sees it.
#[derive(Default)]
struct Unwinding {
    errors: Vec<String>,
    panic: Option<String>,
}

impl Unwinding {
    fn outcome(&self) -> String {
        match (&self.panic, self.errors.last()) {
            (Some(_), _) => "Panicked".to_string(),
            (None, Some(newest)) => format!("Failed({newest})"),
            (None, None) => "Completed".to_string(),
        }
    }

    /// Runs `entries` (oldest first) newest first; a nested stack's kept errors are recorded
    /// when it is reached, then its entries run.
    fn run(&mut self, entries: Vec<Entry>, journal: &mut Vec<String>) {
        for entry in entries.into_iter().rev() {
            match entry.what {
                What::Exit { name, kind, act } => {
                    journal.push(match kind {
                        Kind::Context | Kind::PushExit => format!("exit {name}: {}", self.outcome()),
                        Kind::Defer | Kind::Callback => format!("exit {name}"),
                    });
                    match act {
                        Act::Succeed => {}
                        Act::Fail => self.errors.push(format!("{name} failed")),
                        Act::Panic => {
                            self.panic.get_or_insert_with(|| format!("planned: {name} panicked"));
                        }
                    }
                }
                What::Nested { entries, orphans } => {
                    self.errors.extend(orphans);
                    self.run(entries, journal);
                }
            }
        }
    }

    /// The end of a close: the first panic resumes, every error going to the hook (G6); or
    /// every error, the first one primary.
    fn finish(self, journal: &mut Vec<String>) -> Ret {
        if let Some(panic) = self.panic {
            journal.extend(self.errors.iter().map(|e| format!("hook: {e:?}")));
            return Ret::Panic(panic);
        }
        let mut errors = self.errors.into_iter();
        match errors.next() {
            None => Ret::Ok,
            Some(primary) => Ret::Closed(Some(primary), errors.collect()),
        }
    }
}

/// Dropping entries (oldest first) runs their fallbacks, newest first, nested stacks' in place.
fn fall_back(entries: Vec<Entry>, journal: &mut Vec<String>) {
    for entry in entries.into_iter().rev() {
        match entry.what {
            What::Exit { name, kind: Kind::Context, .. } => journal.push(format!("fallback {name}")),
            What::Exit { name, .. } => journal.push(format!("drop {name}")),
            What::Nested { entries, .. } => fall_back(entries, journal),
        }
    }
}

fn model_close(stack: &mut Stack, cause: Option<String>, journal: &mut Vec<String>) -> Ret {
    stack.open = false;
    let mut unwinding = Unwinding::default();
    unwinding.errors.extend(cause);
    unwinding.errors.append(&mut stack.orphans);
    unwinding.run(std::mem::take(&mut stack.entries), journal);
    unwinding.finish(journal)
}

fn model_drop(stack: &mut Stack, journal: &mut Vec<String>) {
    stack.open = false;
    stack.orphans.clear();
    fall_back(std::mem::take(&mut stack.entries), journal);
}

struct StackMachine;

fn enter_act() -> BoxedStrategy<Act> {
    prop_oneof![8 => Just(Act::Succeed), 1 => Just(Act::Fail), 1 => Just(Act::Panic)].boxed()
}

fn exit_act() -> BoxedStrategy<Act> {
    prop_oneof![5 => Just(Act::Succeed), 3 => Just(Act::Fail), 1 => Just(Act::Panic)].boxed()
}

impl ReferenceStateMachine for StackMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        let mut model = Model {
            stacks: BTreeMap::new(),
            keys: BTreeMap::new(),
            next_name: 0,
            next_stack: 1,
            next_identity: 0,
            next_entry: 0,
            last: Observed::default(),
        };
        model.new_stack(StackId(0));
        Just(model).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let open = state.open();
        let id = StackId(state.next_stack);
        if open.is_empty() {
            return Just(Op::New { id }).boxed();
        }
        let name = Name(state.next_name);
        let stack = proptest::sample::select(open.clone());
        let mut choices: Vec<(u32, BoxedStrategy<Op>)> = vec![
            (
                6,
                (stack.clone(), enter_act(), exit_act(), any::<bool>())
                    .prop_map(move |(stack, enter, exit, keyed)| Op::Enter {
                        stack,
                        name,
                        enter,
                        exit,
                        keyed,
                    })
                    .boxed(),
            ),
            (
                5,
                (
                    stack.clone(),
                    prop_oneof![Just(Push::Exit), Just(Push::Defer), Just(Push::Callback)],
                    exit_act(),
                )
                    .prop_map(move |(stack, push, exit)| Op::Push { stack, name, push, exit })
                    .boxed(),
            ),
            (2, stack.clone().prop_map(move |stack| Op::PopAll { stack, into: id }).boxed()),
            (1, stack.clone().prop_map(|stack| Op::Close { stack }).boxed()),
            (1, stack.clone().prop_map(move |stack| Op::CloseWith { stack, error: name }).boxed()),
            (1, stack.clone().prop_map(|stack| Op::Drop { stack }).boxed()),
            (1, Just(Op::New { id }).boxed()),
        ];
        // Releases: mostly of a live key of the stack, sometimes of any key (misuse included).
        let live: Vec<(StackId, Name)> = state
            .keys
            .iter()
            .filter_map(|(&key, k)| {
                let (&stack, s) = state.stacks.iter().find(|(_, s)| s.open && s.identity == k.identity)?;
                s.entries.iter().any(|e| e.id == k.entry).then_some((stack, key))
            })
            .collect();
        if !live.is_empty() {
            choices.push((
                5,
                proptest::sample::select(live).prop_map(|(stack, key)| Op::Release { stack, key }).boxed(),
            ));
        }
        if !state.keys.is_empty() {
            let keys: Vec<Name> = state.keys.keys().copied().collect();
            choices.push((
                1,
                (stack, proptest::sample::select(keys))
                    .prop_map(|(stack, key)| Op::Release { stack, key })
                    .boxed(),
            ));
        }
        if open.len() >= 2 {
            let pairs: Vec<(StackId, StackId)> = open
                .iter()
                .flat_map(|&o| open.iter().filter(move |&&i| i != o).map(move |&i| (o, i)))
                .collect();
            choices.push((
                2,
                (proptest::sample::select(pairs), any::<bool>())
                    .prop_map(move |((outer, inner), keyed)| Op::Nest {
                        outer,
                        inner,
                        key: keyed.then_some(name),
                    })
                    .boxed(),
            ));
        }
        Union::new_weighted(choices).boxed()
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        match *op {
            Op::New { id } => state.is_new(id),
            Op::Enter { stack, .. }
            | Op::Push { stack, .. }
            | Op::Close { stack }
            | Op::CloseWith { stack, .. }
            | Op::Drop { stack } => state.is_open(stack),
            Op::PopAll { stack, into } => state.is_open(stack) && state.is_new(into),
            Op::Release { stack, key } => state.is_open(stack) && state.keys.contains_key(&key),
            Op::Nest { outer, inner, .. } => outer != inner && state.is_open(outer) && state.is_open(inner),
        }
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        let mut journal = Vec::new();
        let ret = match *op {
            Op::New { id } => {
                state.next_stack += 1;
                state.new_stack(id);
                Ret::Ok
            }
            Op::Enter { stack, name, enter, exit, keyed } => {
                state.next_name += 1;
                journal.push(format!("enter {name}"));
                match enter {
                    Act::Succeed => {
                        let key = keyed.then_some(name);
                        state.push_entry(stack, What::Exit { name, kind: Kind::Context, act: exit }, key);
                        Ret::Ok
                    }
                    Act::Fail => Ret::Err(format!("enter {name} failed")),
                    Act::Panic => Ret::Panic(format!("planned: enter {name} panicked")),
                }
            }
            Op::Push { stack, name, push, exit } => {
                state.next_name += 1;
                let kind = match push {
                    Push::Exit => Kind::PushExit,
                    Push::Defer => Kind::Defer,
                    Push::Callback => Kind::Callback,
                };
                state.push_entry(stack, What::Exit { name, kind, act: exit }, Some(name));
                Ret::Ok
            }
            Op::Release { stack, key } => {
                let key = state.keys[&key];
                let stack = state.stack(stack);
                if key.identity != stack.identity {
                    Ret::Panic(ANOTHER_STACK.to_string())
                } else if let Some(at) = stack.entries.iter().position(|e| e.id == key.entry) {
                    let entry = stack.entries.remove(at);
                    let mut unwinding = Unwinding::default();
                    unwinding.run(vec![entry], &mut journal);
                    if let Some(panic) = unwinding.panic {
                        // The panic resumes at once: every error is kept, for the close.
                        stack.orphans.extend(unwinding.errors);
                        Ret::Panic(panic)
                    } else {
                        let mut errors = unwinding.errors.into_iter();
                        let first = errors.next();
                        stack.orphans.extend(errors);
                        first.map_or(Ret::Ok, Ret::Err)
                    }
                } else {
                    Ret::Panic(RELEASED.to_string())
                }
            }
            Op::PopAll { stack, into } => {
                state.next_stack += 1;
                let fresh = state.fresh_identity();
                let old = state.stack(stack);
                let popped = Stack {
                    open: true,
                    identity: std::mem::replace(&mut old.identity, fresh),
                    entries: std::mem::take(&mut old.entries),
                    orphans: std::mem::take(&mut old.orphans),
                };
                state.stacks.insert(into, popped);
                Ret::Ok
            }
            Op::Nest { outer, inner, key } => {
                state.next_name += 1;
                let inner = state.stack(inner);
                inner.open = false;
                let what = What::Nested {
                    entries: std::mem::take(&mut inner.entries),
                    orphans: std::mem::take(&mut inner.orphans),
                };
                state.push_entry(outer, what, key);
                Ret::Ok
            }
            Op::Close { stack } => model_close(state.stack(stack), None, &mut journal),
            Op::CloseWith { stack, error } => {
                state.next_name += 1;
                model_close(state.stack(stack), Some(format!("cause {error}")), &mut journal)
            }
            Op::Drop { stack } => {
                model_drop(state.stack(stack), &mut journal);
                Ret::Ok
            }
        };
        state.last = Observed { journal, ret };
        state
    }
}

// ----- What the real stacks run -----

/// Where entries journal: shared (`Send`) for an `ExitStack`, a borrowed local for a
/// `LocalExitStack`.
trait Log: Clone {
    fn push(&self, line: String);
    fn take(&self) -> Vec<String>;
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<String>>>);

impl Log for Shared {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A borrow of a local of the test: neither `Send` nor `'static`, so only a local stack holds it.
#[derive(Clone, Copy)]
struct Borrowed<'a>(&'a RefCell<Vec<String>>);

impl Log for Borrowed<'_> {
    fn push(&self, line: String) {
        self.0.borrow_mut().push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

std::thread_local! {
    /// What the process-wide error hook was handed on this thread (G6).
    static HOOKED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Sends the error hook to [`HOOKED`], and keeps the panics the model expects off stderr.
fn install_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        async_with::set_error_hook(|e| HOOKED.with(|h| h.borrow_mut().push(format!("hook: {e:?}"))));
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            let expected = message.is_some_and(|m| {
                m.starts_with("planned: ")
                    || m.starts_with(MISMATCH)
                    || m == RELEASED
                    || m.contains(ANOTHER_STACK)
            });
            if !expected {
                default(info);
            }
        }));
    });
}

/// Returns `Pending` once (waking itself), so that every async enter and exit really suspends.
fn act(act: Act, what: String) -> Result<(), String> {
    match act {
        Act::Succeed => Ok(()),
        Act::Fail => Err(format!("{what} failed")),
        Act::Panic => std::panic::panic_any(format!("planned: {what} panicked")),
    }
}

/// A context that journals `enter {name}`, `exit {name}: {outcome}` and `fallback {name}`.
struct Res<L> {
    name: Name,
    enter: Act,
    exit: Act,
    log: L,
}

async fn res_enter<L: Log>(res: &mut Res<L>) -> Result<String, String> {
    yield_now().await;
    res.log.push(format!("enter {}", res.name));
    act(res.enter, format!("enter {}", res.name)).map(|()| res.name.to_string())
}

async fn res_exit<L: Log>(res: Res<L>, value: String, outcome: Outcome<'_, String>) -> Result<(), String> {
    assert_eq!(value, res.name.to_string(), "an exit got another context's value");
    yield_now().await;
    res.log.push(format!("exit {}: {}", res.name, describe(outcome)));
    act(res.exit, res.name.to_string())
}

fn res_fallback<L: Log>(res: Res<L>, value: String) {
    assert_eq!(value, res.name.to_string(), "a fallback got another context's value");
    res.log.push(format!("fallback {}", res.name));
}

impl AsyncContext for Res<Shared> {
    type Value = String;
    type Error = String;

    async fn enter(&mut self) -> Result<String, String> {
        res_enter(self).await
    }

    async fn exit(self, value: String, outcome: Outcome<'_, String>) -> Result<(), String> {
        res_exit(self, value, outcome).await
    }

    fn exit_on_drop(self, value: String) {
        res_fallback(self, value);
    }
}

impl<'a> LocalAsyncContext for Res<Borrowed<'a>> {
    type Value = String;
    type Error = String;

    async fn enter(&mut self) -> Result<String, String> {
        res_enter(self).await
    }

    async fn exit(self, value: String, outcome: Outcome<'_, String>) -> Result<(), String> {
        res_exit(self, value, outcome).await
    }

    fn exit_on_drop(self, value: String) {
        res_fallback(self, value);
    }
}

/// Moved into a pushed exit: journals `drop {name}` if the exit is dropped without running.
struct Unrun<L: Log> {
    log: Option<L>,
    name: Name,
}

impl<L: Log> Unrun<L> {
    fn ran(mut self) -> L {
        self.log.take().expect("run once")
    }
}

impl<L: Log> Drop for Unrun<L> {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.push(format!("drop {}", self.name));
        }
    }
}

/// The real stacks that are open (not closed, dropped or entered into another); every key given
/// out, by the name of its entry; the journal.
struct Sut<S, L> {
    stacks: BTreeMap<StackId, S>,
    keys: BTreeMap<Name, Key>,
    log: L,
    /// How many operations ran.
    ran: usize,
}

impl<S, L: Log> Sut<S, L> {
    fn new(model: &Model, log: L, new: impl Fn() -> S) -> Self {
        let stacks = model.open().into_iter().map(|id| (id, new())).collect();
        Sut { stacks, keys: BTreeMap::new(), log, ran: 0 }
    }

    fn stack(&self, stack: StackId) -> &S {
        self.stacks.get(&stack).expect("the model says the stack is open")
    }

    fn stack_mut(&mut self, stack: StackId) -> &mut S {
        self.stacks.get_mut(&stack).expect("the model says the stack is open")
    }

    fn take(&mut self, stack: StackId) -> S {
        self.stacks.remove(&stack).expect("the model says the stack is open")
    }

    /// What the operation just run journaled (the error hook's reports last: they come at its
    /// very end), with `ret`.
    fn observed(&self, ret: Ret) -> Observed {
        let mut journal = self.log.take();
        journal.extend(HOOKED.with(|h| std::mem::take(&mut *h.borrow_mut())));
        Observed { journal, ret }
    }
}

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => {
            payload.downcast::<&'static str>().map_or("<not a string>".to_string(), |s| s.to_string())
        }
    };
    // `assert_eq!` writes its message after a prefix, and the values on the next lines.
    let first = message.lines().next().unwrap_or_default();
    first.strip_prefix("assertion `left == right` failed: ").unwrap_or(first).to_string()
}

fn catching<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(message)
}

fn ret(result: Result<Result<(), String>, String>) -> Ret {
    match result {
        Ok(Ok(())) => Ret::Ok,
        Ok(Err(e)) => Ret::Err(e),
        Err(panic) => Ret::Panic(panic),
    }
}

fn closed(result: Result<Result<(), Error<String>>, String>) -> Ret {
    match result {
        Ok(Ok(())) => Ret::Ok,
        Ok(Err(e)) => {
            let (primary, suppressed) = e.into_parts();
            Ret::Closed(primary, suppressed)
        }
        Err(panic) => Ret::Panic(panic),
    }
}

/// One driver per stack type: the two have the same methods, under different bounds.
macro_rules! driver {
    ($(#[$doc:meta])* fn $run:ident $(<$lt:lifetime>)? ($stack:ty, $log:ty)) => {
        $(#[$doc])*
        fn $run $(<$lt>)? (sut: &mut Sut<$stack, $log>, op: &Op) -> Ret {
            let log = sut.log.clone();
            match *op {
                Op::New { id } => {
                    sut.stacks.insert(id, <$stack>::new());
                    Ret::Ok
                }
                Op::Enter { stack, name, enter, exit, keyed } => {
                    let s = sut.stack(stack);
                    let context = Res { name, enter, exit, log };
                    let entered = if keyed {
                        catching(|| block_on(s.enter_with_key(context)).map(|(_, key)| Some((name, key))))
                    } else {
                        catching(|| block_on(s.enter(context)).map(|_| None))
                    };
                    match entered {
                        Ok(Ok(key)) => {
                            sut.keys.extend(key);
                            Ret::Ok
                        }
                        Ok(Err(e)) => Ret::Err(e),
                        Err(panic) => Ret::Panic(panic),
                    }
                }
                Op::Push { stack, name, push, exit } => {
                    let s = sut.stack(stack);
                    let unrun = Unrun { log: Some(log), name };
                    let key = match push {
                        Push::Callback => s.callback(move || {
                            unrun.ran().push(format!("exit {name}"));
                            act(exit, name.to_string())
                        }),
                        Push::Defer => s.defer(move || async move {
                            yield_now().await;
                            unrun.ran().push(format!("exit {name}"));
                            act(exit, name.to_string())
                        }),
                        Push::Exit => s.push_exit(async move |outcome: Outcome<'_, String>| {
                            yield_now().await;
                            unrun.ran().push(format!("exit {name}: {}", describe(outcome)));
                            act(exit, name.to_string())
                        }),
                    };
                    sut.keys.insert(name, key);
                    Ret::Ok
                }
                Op::Release { stack, key } => {
                    let key = sut.keys[&key];
                    let s = sut.stack_mut(stack);
                    ret(catching(|| block_on(s.release(key))))
                }
                Op::PopAll { stack, into } => {
                    let popped = sut.stack_mut(stack).pop_all();
                    sut.stacks.insert(into, popped);
                    Ret::Ok
                }
                Op::Nest { outer, inner, key } => {
                    let inner = sut.take(inner);
                    let s = sut.stack(outer);
                    let entered = if let Some(name) = key {
                        catching(|| block_on(s.enter_with_key(inner)).map(|(_, key)| Some((name, key))))
                    } else {
                        catching(|| block_on(s.enter(inner)).map(|_| None))
                    };
                    match entered {
                        Ok(Ok(key)) => {
                            sut.keys.extend(key);
                            Ret::Ok
                        }
                        Ok(Err(e)) => Ret::Err(e),
                        Err(panic) => Ret::Panic(panic),
                    }
                }
                Op::Close { stack } => {
                    let s = sut.take(stack);
                    closed(catching(|| block_on(s.close())))
                }
                Op::CloseWith { stack, error } => {
                    let s = sut.take(stack);
                    closed(catching(|| block_on(s.close_with(format!("cause {error}")))))
                }
                Op::Drop { stack } => {
                    let s = sut.take(stack);
                    ret(catching(|| drop(s)).map(Ok))
                }
            }
        }
    };
}

driver!(
    /// Runs `op` on `ExitStack`s.
    fn run_send(ExitStack<String>, Shared)
);

driver!(
    /// Runs `op` on `LocalExitStack`s whose entries borrow a local.
    fn run_local<'env>(LocalExitStack<'env, String>, Borrowed<'env>)
);

/// Compares what `op` did with what the model says it must have done.
fn check<S, L: Log>(sut: &mut Sut<S, L>, model: &Model, op: &Op, ret: Ret) {
    sut.ran += 1;
    let observed = sut.observed(ret);
    if observed != model.last || sut.keys.len() != model.keys.len() {
        // The shrinker may leave operations after this one in the sequence it prints (when a
        // shorter sequence fails earlier): they did not run.
        mismatch(format_args!(
            "after operation {} ({op:?})\n  the stack did {observed:?}\n  the model says {:?}\n  keys given out: {} (model: {})",
            sut.ran,
            model.last,
            sut.keys.len(),
            model.keys.len()
        ));
    }
}

/// Fails the case. The message is not printed here (the hook skips it), since the shrinker
/// fails many cases: proptest prints it once, with the minimal failing sequence.
fn mismatch(what: fmt::Arguments<'_>) -> ! {
    std::panic::panic_any(format!("{MISMATCH}{what}"))
}

/// The end of a case: the stacks still open are dropped, in order, each running its fallbacks.
fn drop_the_rest<S, L: Log>(mut sut: Sut<S, L>, mut model: Model) {
    let mut expected = Vec::new();
    for stack in model.stacks.values_mut().filter(|s| s.open) {
        model_drop(stack, &mut expected);
    }
    // In the same order as the model: by id.
    let ret = ret(catching(|| std::mem::take(&mut sut.stacks).into_values().for_each(drop)).map(Ok));
    let observed = sut.observed(ret);
    let expected = Observed { journal: expected, ret: Ret::Ok };
    if observed != expected {
        mismatch(format_args!(
            "dropping the stacks left open at the end\n  the stacks did {observed:?}\n  the model says {expected:?}"
        ));
    }
}

struct ExitStackTest;

impl StateMachineTest for ExitStackTest {
    type SystemUnderTest = Sut<ExitStack<String>, Shared>;
    type Reference = StackMachine;

    fn init_test(model: &Model) -> Self::SystemUnderTest {
        install_hooks();
        Sut::new(model, Shared::default(), ExitStack::new)
    }

    fn apply(mut sut: Self::SystemUnderTest, model: &Model, op: Op) -> Self::SystemUnderTest {
        let ret = run_send(&mut sut, &op);
        check(&mut sut, model, &op, ret);
        sut
    }

    fn teardown(sut: Self::SystemUnderTest, model: Model) {
        drop_the_rest(sut, model);
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    /// `ExitStack<String>` against the model.
    #[test]
    fn exit_stack_follows_the_model(sequential 1..=MAX_OPS => ExitStackTest);
}

/// `LocalExitStack<'_, String>` against the model, every entry borrowing a local of the case
/// (`log`): a `StateMachineTest`'s system under test cannot borrow from the test, so this one
/// runs the model's sequences itself, as `StateMachineTest::test_sequential` does.
#[test]
fn local_exit_stack_follows_the_model() {
    install_hooks();
    let mut runner = TestRunner::new(config());
    let result = runner.run(&StackMachine::sequential_strategy(1..=MAX_OPS), |(mut model, ops, seen)| {
        let log = RefCell::new(Vec::new());
        let mut sut = Sut::new(&model, Borrowed(&log), LocalExitStack::new);
        for op in ops {
            // Tells the shrinker how far the case got (it drops the operations never reached).
            if let Some(seen) = &seen {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            model = StackMachine::apply(model, &op);
            let ret = run_local(&mut sut, &op);
            check(&mut sut, &model, &op, ret);
        }
        drop_the_rest(sut, model);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}
