//! Decodes bytes into a sequence of operations on exit stacks, runs them on
//! `futures::executor::block_on` (no OS runtime), and asserts after every operation that the
//! stacks did what a reference model of the stacks says (G1, G2, G4 and G5 for exit stacks).
//! Every input runs twice, on `ExitStack<String>`s and then on `LocalExitStack<String>`s: the two
//! share their API and the contract, not their code.
//!
//! The operations are the stack's own API: `enter`, `enter_with_key` and `enter_with_handle` of a
//! context whose enter and exit each succeed or fail (written as a type, as a `resource` of two
//! closures, or as a tuple with a `nullcontext` seen through `map`: each takes its own path into
//! a stack), `defer`, `push_exit` and `callback`,
//! `release` of a key handed out earlier, `pop_all` (the stack it returns joins the list, and
//! later operations may target it like any other), `close` and `close_with`, a drop, `new`, and entering
//! a new stack into a stack, then pushing entries on the nested stack it lends, and a fresh stack
//! run as a scope's own context (`with`, `scope`, in a tuple, `with_local`), or dropped there. Each
//! exit journals `exit N: <the outcome it saw>` (or `exit N` for `defer` and `callback`, which see
//! no outcome), each enter `enter N`.
//!
//! The model is a `Vec` per stack of the pending entries, oldest first:
//! - an enter that succeeds pushes its entry; one that fails pushes nothing and returns its error;
//! - `release(key)` removes that entry and runs its exit now, seeing `Completed`; its error is
//!   the result (a key follows its entry into the stack `pop_all` returned);
//! - `close` runs the remaining exits newest first (G2), each seeing `Completed` until one fails
//!   and then `Failed` with the newest error (G4); the result's primary error is the first one,
//!   the suppressed ones are the rest, in the order the exits ran (G5). `close_with(cause)`
//!   starts from `cause` (the exits see `Failed(cause)`, and it is the primary error);
//! - `pop_all` moves every entry to a new stack and leaves the original open and empty;
//! - a stack dropped unclosed runs its contexts' fallbacks (`fallback N`) newest first, and no
//!   exit;
//! - a stack entered into a stack is one entry whose entries, when the stack around it closes
//!   (or moves it), exit in their place: the model splices them in, in order. Released by its
//!   key, its entries exit now, newest first, starting from `Completed`; the first error is the
//!   result, the others stay with the stack around it (orphans), and its close starts from them
//!   (after a `close_with` cause); `pop_all` moves them with the entries.
//! - a fresh stack as a scope's own context closes with the scope: its entries exit newest
//!   first, as a `close` would, starting from the body's error if it failed (the exits see
//!   `Failed` with it, and it is the scope's primary error), as a `close_with` would.
//!
//! At the end every stack still open is closed, so that every entry pushed must have exited
//! exactly once (G1): an exit that never ran, ran twice or ran in another stack's close shows as a
//! journal that differs from the model's.
//!
//! Only valid keys are released (a key of an entry still pending): misuse panics are
//! `tests/stack_model.rs`'s business, as are panicking exits.
#![no_main]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arbitrary::{Arbitrary, Unstructured};
use async_with::{
    AsyncContext, ContextExt, Error, ExitStack, Key, LocalExitStack, Outcome, nullcontext, resource, scope,
    scope_local, with, with_local,
};
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;

/// The longest sequence of operations a case runs: longer inputs are cut there.
const MAX_OPS: usize = 40;

fuzz_target!(
    init: {
        // Scopes are dropped on purpose: the default drop hook would print a line for each.
        async_with::set_drop_hook(|_| {});
    },
    |ops: Ops| {
    run::<ExitStack<String>>(&ops);
    run::<LocalExitStack<'static, String>>(&ops);
    }
);

fn run<S: Stack>(ops: &Ops) {
    let mut run = Run::<S>::default();
    for (n, op) in ops.0.iter().enumerate() {
        run.apply(n, op);
    }
    run.close_the_rest();
}

// ----- The operations -----

/// How an enter or an exit ends.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Succeed,
    Fail,
}

/// Which enter method.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// `enter`.
    Plain,
    /// `enter_with_key`: the key joins those `Release` picks from.
    Keyed,
    /// `enter_with_handle`, the handle dropped at once: the entry stays in the stack.
    Handle,
    /// `enter_with_handle`, then `handle.release()` at once: the exit runs now, seeing
    /// `Completed`, and its error is the result.
    HandleReleased,
}

/// How the entered context is written.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// [`Res`] itself, a type implementing `AsyncContext`.
    Typed,
    /// A `resource` whose closures do what `Res` does.
    Closures,
    /// `(res, nullcontext(())).map(..)`: a composite context, its value `Res`'s.
    Tuple,
}

/// The entries pushed without an enter (each gives a key).
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Push {
    /// `push_exit`: an async exit that sees the outcome.
    Exit,
    /// `defer`: an async callback.
    Defer,
    /// `callback`: a synchronous one.
    Callback,
}

/// How [`Op::Scoped`] runs a fresh stack as a scope's own context.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Scoping {
    /// `with(S::new(), body)` (`with_local` for a `LocalExitStack`).
    With,
    /// `scope(body)` (`scope_local`).
    Scope,
    /// `with((S::new(), nullcontext(())), ..)`: the stack as one context of a tuple.
    Tuple,
    /// `with_local(S::new(), body)`, an `ExitStack` through the local protocol.
    Local,
}

/// How the body of [`Op::Scoped`] ends, once its entries are on the stack.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// `Ok(())`: the exits see `Completed`.
    Returns,
    /// `Err("body N failed")`: the exits see `Failed` with it, and it is the primary error.
    Fails,
    /// It waits forever, and the scope's future is dropped there: the contexts' fallbacks run,
    /// newest first, and no exit.
    Dropped,
}

/// An entry the body of [`Op::Scoped`] puts on its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Each {
    Push(Push),
    /// `enter` of a [`Res`] (typed) whose enter succeeds.
    Enter,
}

/// One operation. `stack` picks one of the open stacks (modulo their number), `key` one of the
/// keys whose entry is still pending; an operation with nothing to pick from is skipped.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Op {
    Enter {
        stack: u8,
        how: How,
        written: Written,
        enter: Act,
        exit: Act,
        yields: bool,
    },
    Push {
        stack: u8,
        push: Push,
        exit: Act,
        yields: bool,
    },
    Release {
        key: u8,
    },
    PopAll {
        stack: u8,
    },
    Close {
        stack: u8,
    },
    CloseWith {
        stack: u8,
    },
    New,
    /// `stack.enter(S::new())`, then `count % 4` entries pushed on the nested stack it lends:
    /// `push_exit`, `defer` and `callback` by turns, entry `j` failing if bit `j` of `fails` is
    /// set. With `count & 4`, `enter_with_key`: the key joins those `Release` picks from. With
    /// `count & 8`, into a `LocalExitStack`, the stack entered is an `ExitStack` (whose entries
    /// the local stack takes over as its own).
    Nest {
        stack: u8,
        count: u8,
        fails: u8,
        yields: bool,
    },
    /// The stack dropped unclosed: its contexts' fallbacks run, newest first (the callbacks
    /// have none); no exit runs.
    Drop {
        stack: u8,
    },
    /// A scope of its own around a fresh stack, run as `how` says: its body puts `count % 5`
    /// entries on the stack (`push_exit`, `defer`, `callback` and `enter` by turns, entry `j`'s
    /// exit failing if bit `j` of `fails` is set), then ends as `body` says. The stack closes
    /// with the scope: its exits see how the body ended, newest first, and the scope's error is
    /// the body's, then theirs (G4, G5). A scope dropped instead runs its contexts' fallbacks.
    Scoped {
        how: Scoping,
        count: u8,
        fails: u8,
        body: Ends,
        yields: bool,
    },
}

/// At most [`MAX_OPS`] operations.
#[derive(Debug)]
struct Ops(Vec<Op>);

impl<'a> Arbitrary<'a> for Ops {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        u.arbitrary_iter()?.take(MAX_OPS).collect::<arbitrary::Result<_>>().map(Ops)
    }

    // The fuzz input: a byte that says "one more" (odd) or "the end" (even), then an operation,
    // and so on.
    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<Self> {
        u.arbitrary_take_rest_iter()?.take(MAX_OPS).collect::<arbitrary::Result<_>>().map(Ops)
    }
}

// ----- The model -----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A context (any enter method): its exit sees the outcome.
    Context,
    PushExit,
    Defer,
    Callback,
}

impl Push {
    fn kind(self) -> Kind {
        match self {
            Push::Exit => Kind::PushExit,
            Push::Defer => Kind::Defer,
            Push::Callback => Kind::Callback,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The number of the operation that pushed it: `exit N`.
    id: usize,
    /// The number of the `Nest` operation whose nested stack holds it, if any.
    group: Option<usize>,
    kind: Kind,
    exit: Act,
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ret {
    Ok,
    /// The error of an enter or of a release.
    Err(String),
    /// The error of a close: the primary error and the suppressed ones, in order.
    Closed(Option<String>, Vec<String>),
}

/// Runs `entries` (oldest first) newest first, starting from `errors` (empty, or a
/// `close_with` cause): each exit sees `Failed` with the newest error, or `Completed`. Returns
/// what the close returns.
fn model_close(entries: Vec<Entry>, mut errors: Vec<String>, journal: &mut Vec<String>) -> Ret {
    for entry in entries.into_iter().rev() {
        let outcome = match errors.last() {
            Some(newest) => format!("Failed({newest})"),
            None => "Completed".to_string(),
        };
        journal.push(match entry.kind {
            Kind::Context | Kind::PushExit => format!("exit {}: {outcome}", entry.id),
            Kind::Defer | Kind::Callback => format!("exit {}", entry.id),
        });
        if entry.exit == Act::Fail {
            errors.push(format!("exit {} failed", entry.id));
        }
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ret::Ok,
        primary => Ret::Closed(primary, errors.collect()),
    }
}

/// A stack dropped unclosed, holding `entries` (oldest first): its contexts' fallbacks run,
/// newest first; no exit runs.
fn model_drop(entries: &[Entry], journal: &mut Vec<String>) {
    for entry in entries.iter().rev().filter(|e| e.kind == Kind::Context) {
        journal.push(format!("fallback {}", entry.id));
    }
}

/// The number and the exit of entry `j` of operation `n`'s own stack (`Nest`, `Scoped`): a
/// number no operation has (operations are numbered below `MAX_OPS`), failing if bit `j` of
/// `fails` is set.
fn inner_entry(n: usize, j: usize, fails: u8) -> (usize, Act) {
    let exit = if fails & (1 << j) != 0 { Act::Fail } else { Act::Succeed };
    (MAX_OPS * (j + 1) + n, exit)
}

/// A release of one entry, or of a nested stack's entries (oldest first): they exit now, newest
/// first, starting from `Completed`; the first error is the result, the others are left to the
/// stack they were in (returned, for its orphans).
fn model_release(entries: Vec<Entry>, journal: &mut Vec<String>) -> (Ret, Vec<String>) {
    match model_close(entries, Vec::new(), journal) {
        Ret::Ok => (Ret::Ok, Vec::new()),
        Ret::Closed(Some(first), rest) => (Ret::Err(first), rest),
        other => unreachable!("a close without a cause has a primary error: {other:?}"),
    }
}

// ----- What the real stacks run -----

/// Where every enter and exit writes what it saw.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Returns `Pending` once (waking itself), so that an enter or an exit really suspends.
fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        if std::mem::replace(&mut yielded, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}

fn describe(outcome: Outcome<'_, String>) -> String {
    match outcome {
        Outcome::Completed => "Completed".into(),
        Outcome::Failed(e) => format!("Failed({e})"),
        Outcome::Panicked => "Panicked".into(),
        Outcome::Cancelled => "Cancelled".into(),
    }
}

fn exit_result(act: Act, id: usize) -> Result<(), String> {
    match act {
        Act::Succeed => Ok(()),
        Act::Fail => Err(format!("exit {id} failed")),
    }
}

/// The context of operation `id`: journals `enter N` and `exit N: <outcome>`; its value is `id`,
/// which its exit checks it gets back.
#[derive(Clone)]
struct Res {
    id: usize,
    enter: Act,
    exit: Act,
    yields: bool,
    journal: Journal,
}

impl AsyncContext for Res {
    type Value = usize;
    type Error = String;

    async fn enter(&mut self) -> Result<usize, String> {
        if self.yields {
            yield_now().await;
        }
        self.journal.push(format!("enter {}", self.id));
        match self.enter {
            Act::Succeed => Ok(self.id),
            Act::Fail => Err(format!("enter {} failed", self.id)),
        }
    }

    async fn exit(self, value: usize, outcome: Outcome<'_, String>) -> Result<(), String> {
        assert_eq!(value, self.id, "an exit got another context's value");
        if self.yields {
            yield_now().await;
        }
        self.journal.push(format!("exit {}: {}", self.id, describe(outcome)));
        exit_result(self.exit, self.id)
    }

    fn exit_on_drop(self, value: usize) {
        assert_eq!(value, self.id, "a fallback got another context's value");
        self.journal.push(format!("fallback {}", self.id));
    }
}

/// A `resource` whose closures are `res`'s enter and exit.
fn closures(res: Res) -> impl async_with::IntoContext<Value = usize, Error = String> + use<> {
    let (mut entering, exiting, dropping) = (res.clone(), res.clone(), res);
    resource(
        async move || entering.enter().await,
        async move |value, outcome| exiting.exit(value, outcome).await,
    )
    .on_drop(move |value| dropping.exit_on_drop(value))
}

/// `res` in a tuple with a `nullcontext`, its value `res`'s.
fn tuple(res: Res) -> impl async_with::IntoContext<Value = usize, Error = String> + use<> {
    (res, nullcontext(())).map(|(value, ()): &mut (usize, ())| *value)
}

/// `$body` with `$ctx` the context `$res` written as `$written` says.
macro_rules! written {
    ($written:expr, $res:expr, |$ctx:ident| $body:expr) => {
        match $written {
            Written::Typed => {
                let $ctx = $res;
                $body
            }
            Written::Closures => {
                let $ctx = closures($res);
                $body
            }
            Written::Tuple => {
                let $ctx = tuple($res);
                $body
            }
        }
    };
}

/// What the run needs of a stack, each call driven to its end: `ExitStack` and `LocalExitStack`
/// implement it with the same code (their methods share names and meanings).
trait Stack: Sized {
    fn new() -> Self;
    /// `enter` of `res` written as `written` says: the value lent.
    fn enter(&mut self, res: Res, written: Written) -> Result<usize, String>;
    /// `enter_with_key`: the value lent and the key.
    fn enter_with_key(&mut self, res: Res, written: Written) -> Result<(usize, Key), String>;
    /// `enter_with_handle`: the value lent, the handle dropped at once (or released, with
    /// `release`: the release's error is the result).
    fn enter_with_handle(&mut self, res: Res, written: Written, release: bool) -> Result<usize, String>;
    /// `push_exit`, `defer` or `callback` of an exit that journals as operation `n`'s.
    fn push(&mut self, push: Push, n: usize, exit: Act, yields: bool, journal: Journal) -> Key;
    fn release(&mut self, key: Key) -> Result<(), String>;
    fn pop_all(&mut self) -> Self;
    fn close(self) -> Result<(), Error<String>>;
    fn close_with(self, cause: String) -> Result<(), Error<String>>;
    /// `enter` of a new stack (`enter_with_key` if `keyed`: its key; an `ExitStack` if `send`),
    /// then each `(push, n, exit)` pushed on the nested stack.
    fn nest(
        &mut self,
        keyed: bool,
        send: bool,
        pushes: &[(Push, usize, Act)],
        yields: bool,
        journal: &Journal,
    ) -> Result<Option<Key>, String>;
    /// A scope around a fresh stack, as `how` says, whose body puts each `(each, id, exit)` on
    /// it, then ends as `body` says (`body N failed`, for operation `n`). Dropped, `Ok`.
    fn scoped(
        how: Scoping,
        entries: &[(Each, usize, Act)],
        body: Ends,
        n: usize,
        yields: bool,
        journal: &Journal,
    ) -> Result<(), Error<String>>;
}

/// [`Stack::nest`] for a `$Nested` entered into `$stack`, a `$Stack`.
macro_rules! nest {
    ($stack:expr, $Stack:ty, $Nested:ty, $keyed:expr, $pushes:expr, $yields:expr, $journal:expr) => {
        block_on(async {
            let (nested, key) = if $keyed {
                let (nested, key) = <$Stack>::enter_with_key($stack, <$Nested>::new()).await?;
                (nested, Some(key))
            } else {
                (<$Stack>::enter($stack, <$Nested>::new()).await?, None)
            };
            for &(push, n, exit) in $pushes {
                let _key = Stack::push(nested, push, n, exit, $yields, $journal.clone());
            }
            Ok(key)
        })
    };
}

macro_rules! stack {
    ($Stack:ty, $Send:ty, $with:ident, $scope:ident) => {
        impl Stack for $Stack {
            fn new() -> Self {
                <$Stack>::new()
            }

            fn enter(&mut self, res: Res, written: Written) -> Result<usize, String> {
                written!(written, res, |ctx| block_on(async { Ok(*<$Stack>::enter(self, ctx).await?) }))
            }

            fn enter_with_key(&mut self, res: Res, written: Written) -> Result<(usize, Key), String> {
                written!(written, res, |ctx| block_on(async {
                    <$Stack>::enter_with_key(self, ctx).await.map(|(value, key)| (*value, key))
                }))
            }

            fn enter_with_handle(
                &mut self,
                res: Res,
                written: Written,
                release: bool,
            ) -> Result<usize, String> {
                written!(written, res, |ctx| block_on(async {
                    let handle = <$Stack>::enter_with_handle(self, ctx).await?;
                    let value = *handle;
                    if release {
                        handle.release().await?;
                    }
                    Ok(value)
                }))
            }

            fn push(&mut self, push: Push, n: usize, exit: Act, yields: bool, journal: Journal) -> Key {
                match push {
                    Push::Exit => self.push_exit(async move |outcome: Outcome<'_, String>| {
                        if yields {
                            yield_now().await;
                        }
                        journal.push(format!("exit {n}: {}", describe(outcome)));
                        exit_result(exit, n)
                    }),
                    Push::Defer => self.defer(move || async move {
                        if yields {
                            yield_now().await;
                        }
                        journal.push(format!("exit {n}"));
                        exit_result(exit, n)
                    }),
                    Push::Callback => self.callback(move || {
                        journal.push(format!("exit {n}"));
                        exit_result(exit, n)
                    }),
                }
            }

            fn release(&mut self, key: Key) -> Result<(), String> {
                block_on(<$Stack>::release(self, key))
            }

            fn pop_all(&mut self) -> Self {
                <$Stack>::pop_all(self)
            }

            fn close(self) -> Result<(), Error<String>> {
                block_on(<$Stack>::close(self))
            }

            fn close_with(self, cause: String) -> Result<(), Error<String>> {
                block_on(<$Stack>::close_with(self, cause))
            }

            fn nest(
                &mut self,
                keyed: bool,
                send: bool,
                pushes: &[(Push, usize, Act)],
                yields: bool,
                journal: &Journal,
            ) -> Result<Option<Key>, String> {
                if send {
                    nest!(self, $Stack, $Send, keyed, pushes, yields, journal)
                } else {
                    nest!(self, $Stack, $Stack, keyed, pushes, yields, journal)
                }
            }

            fn scoped(
                how: Scoping,
                entries: &[(Each, usize, Act)],
                body: Ends,
                n: usize,
                yields: bool,
                journal: &Journal,
            ) -> Result<(), Error<String>> {
                let waiting = std::cell::Cell::new(false);
                let waiting = &waiting;
                let fill = async move |stack: &mut $Stack| -> Result<(), Error<String>> {
                    for &(each, id, exit) in entries {
                        let journal = journal.clone();
                        match each {
                            Each::Push(push) => {
                                let _key = Stack::push(stack, push, id, exit, yields, journal);
                            }
                            Each::Enter => {
                                let res = Res { id, enter: Act::Succeed, exit, yields, journal };
                                assert_eq!(*<$Stack>::enter(stack, res).await?, id, "lent the wrong value");
                            }
                        }
                    }
                    match body {
                        Ends::Returns => Ok(()),
                        Ends::Fails => Err(format!("body {n} failed").into()),
                        Ends::Dropped => {
                            waiting.set(true);
                            std::future::pending().await
                        }
                    }
                };
                let scope = async move {
                    match how {
                        Scoping::With => $with(<$Stack>::new(), fill).await,
                        Scoping::Scope => $scope(fill).await,
                        Scoping::Tuple => {
                            let pair = (<$Stack>::new(), nullcontext(()));
                            $with(pair, async move |(stack, ())| fill(stack).await).await
                        }
                        Scoping::Local => with_local(<$Stack>::new(), fill).await,
                    }
                };
                if body != Ends::Dropped {
                    return block_on(scope);
                }
                // Polled until the body waits (each yield wakes at once), then dropped there.
                let mut scope = std::pin::pin!(scope);
                let mut task = Context::from_waker(std::task::Waker::noop());
                while !waiting.get() {
                    assert!(scope.as_mut().poll(&mut task).is_pending(), "a body that waits forever ended");
                }
                Ok(())
            }
        }
    };
}

// A nested stack of the other kind can only be an `ExitStack` in a `LocalExitStack`.
stack!(ExitStack<String>, ExitStack<String>, with, scope);
stack!(LocalExitStack<'static, String>, ExitStack<String>, with_local, scope_local);

fn ret(result: Result<(), String>) -> Ret {
    match result {
        Ok(()) => Ret::Ok,
        Err(e) => Ret::Err(e),
    }
}

fn closed(result: Result<(), Error<String>>) -> Ret {
    match result {
        Ok(()) => Ret::Ok,
        Err(e) => {
            assert!(!e.is_cancelled(), "a close that nothing cancelled says cancelled");
            let (primary, suppressed) = e.into_parts();
            Ret::Closed(primary, suppressed)
        }
    }
}

/// The real stacks and the model's, side by side: index `i` of `stacks` is index `i` of
/// `model` (`None` once closed).
struct Run<S> {
    stacks: Vec<Option<S>>,
    model: Vec<Option<Vec<Entry>>>,
    /// The errors each stack keeps for its close (a nested stack's released past the first).
    orphans: Vec<Vec<String>>,
    /// Every key handed out, with the id of its entry.
    keys: Vec<(Key, usize)>,
    journal: Journal,
}

impl<S: Stack> Default for Run<S> {
    fn default() -> Self {
        Run {
            stacks: vec![Some(S::new())],
            model: vec![Some(Vec::new())],
            orphans: vec![Vec::new()],
            keys: Vec::new(),
            journal: Journal::default(),
        }
    }
}

impl<S: Stack> Run<S> {
    /// The open stack `pick` chooses, if any is open.
    fn pick(&self, pick: u8) -> Option<usize> {
        let open: Vec<usize> = (0..self.model.len()).filter(|&i| self.model[i].is_some()).collect();
        (!open.is_empty()).then(|| open[usize::from(pick) % open.len()])
    }

    fn stack(&mut self, i: usize) -> &mut S {
        self.stacks[i].as_mut().expect("the model says this stack is open")
    }

    fn entries(&mut self, i: usize) -> &mut Vec<Entry> {
        self.model[i].as_mut().expect("picked among the open stacks")
    }

    /// Where the entry `id` is pending (stack, position), if it is.
    fn find(&self, id: usize) -> Option<(usize, usize)> {
        self.model
            .iter()
            .enumerate()
            .find_map(|(s, entries)| entries.as_ref()?.iter().position(|e| e.id == id).map(|at| (s, at)))
    }

    /// Where the entries of the stack nested by operation `group` are pending (stack, range), if
    /// it holds any.
    fn find_group(&self, group: usize) -> Option<(usize, std::ops::Range<usize>)> {
        self.model.iter().enumerate().find_map(|(s, entries)| {
            let entries = entries.as_ref()?;
            let first = entries.iter().position(|e| e.group == Some(group))?;
            let count = entries[first..].iter().take_while(|e| e.group == Some(group)).count();
            Some((s, first..first + count))
        })
    }

    /// Runs operation number `n` on the stacks and on the model, and asserts that the stacks
    /// journaled and returned what the model says.
    fn apply(&mut self, n: usize, op: &Op) {
        let mut expected = Vec::new();
        let (want, got) = match *op {
            Op::Enter { stack, how, written, enter, exit, yields } => {
                let Some(s) = self.pick(stack) else { return };
                expected.push(format!("enter {n}"));
                let entry = Entry { id: n, group: None, kind: Kind::Context, exit };
                let want = match (enter, how) {
                    (Act::Fail, _) => Ret::Err(format!("enter {n} failed")),
                    (Act::Succeed, How::HandleReleased) => {
                        let (want, orphans) = model_release(vec![entry], &mut expected);
                        self.orphans[s].extend(orphans);
                        want
                    }
                    (Act::Succeed, _) => {
                        self.entries(s).push(entry);
                        Ret::Ok
                    }
                };
                let res = Res { id: n, enter, exit, yields, journal: self.journal.clone() };
                let stack = self.stack(s);
                let lent = |value: usize| assert_eq!(value, n, "lent the wrong value");
                let got = match how {
                    How::Plain => ret(stack.enter(res, written).map(lent)),
                    How::Keyed => match stack.enter_with_key(res, written) {
                        Ok((value, key)) => {
                            lent(value);
                            self.keys.push((key, n));
                            Ret::Ok
                        }
                        Err(e) => Ret::Err(e),
                    },
                    How::Handle | How::HandleReleased => {
                        ret(stack.enter_with_handle(res, written, how == How::HandleReleased).map(lent))
                    }
                };
                (want, got)
            }
            Op::Push { stack, push, exit, yields } => {
                let Some(s) = self.pick(stack) else { return };
                self.entries(s).push(Entry { id: n, group: None, kind: push.kind(), exit });
                let journal = self.journal.clone();
                let key = self.stack(s).push(push, n, exit, yields, journal);
                self.keys.push((key, n));
                (Ret::Ok, Ret::Ok)
            }
            Op::Release { key } => {
                // Only the keys of entries still pending, in the order they were handed out.
                let live: Vec<(Key, usize)> = self
                    .keys
                    .iter()
                    .copied()
                    .filter(|&(_, id)| self.find(id).is_some() || self.find_group(id).is_some())
                    .collect();
                if live.is_empty() {
                    return;
                }
                let (key, id) = live[usize::from(key) % live.len()];
                let (s, entries) = match self.find(id) {
                    Some((s, at)) => (s, vec![self.entries(s).remove(at)]),
                    None => {
                        // A nested stack: all of its entries.
                        let (s, range) = self.find_group(id).expect("live");
                        (s, self.entries(s).drain(range).collect())
                    }
                };
                let (want, orphans) = model_release(entries, &mut expected);
                self.orphans[s].extend(orphans);
                let got = ret(self.stack(s).release(key));
                (want, got)
            }
            Op::PopAll { stack } => {
                let Some(s) = self.pick(stack) else { return };
                let moved = std::mem::take(self.entries(s));
                self.model.push(Some(moved));
                let orphans = std::mem::take(&mut self.orphans[s]);
                self.orphans.push(orphans);
                let popped = self.stack(s).pop_all();
                self.stacks.push(Some(popped));
                (Ret::Ok, Ret::Ok)
            }
            Op::Close { stack } | Op::CloseWith { stack } => {
                let Some(s) = self.pick(stack) else { return };
                let entries = self.model[s].take().expect("open");
                let stack = self.stacks[s].take().expect("open");
                let orphans = std::mem::take(&mut self.orphans[s]);
                if let Op::CloseWith { .. } = op {
                    let cause = format!("cause {n}");
                    let errors = std::iter::once(cause.clone()).chain(orphans).collect();
                    let want = model_close(entries, errors, &mut expected);
                    (want, closed(stack.close_with(cause)))
                } else {
                    let want = model_close(entries, orphans, &mut expected);
                    (want, closed(stack.close()))
                }
            }
            Op::Drop { stack } => {
                let Some(s) = self.pick(stack) else { return };
                let entries = self.model[s].take().expect("open");
                self.orphans[s].clear();
                model_drop(&entries, &mut expected);
                drop(self.stacks[s].take().expect("open"));
                (Ret::Ok, Ret::Ok)
            }
            Op::New => {
                self.model.push(Some(Vec::new()));
                self.orphans.push(Vec::new());
                self.stacks.push(Some(S::new()));
                (Ret::Ok, Ret::Ok)
            }
            Op::Nest { stack, count, fails, yields } => {
                let Some(s) = self.pick(stack) else { return };
                let pushes: Vec<(Push, usize, Act)> = (0..usize::from(count % 4))
                    .map(|j| {
                        let (id, exit) = inner_entry(n, j, fails);
                        ([Push::Exit, Push::Defer, Push::Callback][j % 3], id, exit)
                    })
                    .collect();
                for &(push, id, exit) in &pushes {
                    self.entries(s).push(Entry { id, group: Some(n), kind: push.kind(), exit });
                }
                let journal = self.journal.clone();
                match self.stack(s).nest(count & 4 != 0, count & 8 != 0, &pushes, yields, &journal) {
                    Ok(key) => {
                        self.keys.extend(key.map(|key| (key, n)));
                        (Ret::Ok, Ret::Ok)
                    }
                    Err(e) => (Ret::Ok, Ret::Err(e)),
                }
            }
            Op::Scoped { how, count, fails, body, yields } => {
                let each = [
                    Each::Push(Push::Exit),
                    Each::Push(Push::Defer),
                    Each::Push(Push::Callback),
                    Each::Enter,
                ];
                let entries: Vec<(Each, usize, Act)> = (0..usize::from(count % 5))
                    .map(|j| {
                        let (id, exit) = inner_entry(n, j, fails);
                        (each[j % 4], id, exit)
                    })
                    .collect();
                let mut model = Vec::new();
                for &(each, id, exit) in &entries {
                    let kind = match each {
                        Each::Push(push) => push.kind(),
                        Each::Enter => {
                            expected.push(format!("enter {id}"));
                            Kind::Context
                        }
                    };
                    model.push(Entry { id, group: None, kind, exit });
                }
                let want = match body {
                    Ends::Returns => model_close(model, Vec::new(), &mut expected),
                    Ends::Fails => model_close(model, vec![format!("body {n} failed")], &mut expected),
                    Ends::Dropped => {
                        model_drop(&model, &mut expected);
                        Ret::Ok
                    }
                };
                (want, closed(S::scoped(how, &entries, body, n, yields, &self.journal)))
            }
        };
        assert_eq!(
            (self.journal.take(), got),
            (expected, want),
            "operation {n} ({op:?}): the stack (left) differs from the model (right)"
        );
    }

    /// Closes every stack still open, in order, and checks each as a `Close` operation.
    fn close_the_rest(mut self) {
        for s in 0..self.stacks.len() {
            if let Some(stack) = self.stacks[s].take() {
                let mut expected = Vec::new();
                let entries = self.model[s].take().expect("open in the model too");
                let orphans = std::mem::take(&mut self.orphans[s]);
                let want = model_close(entries, orphans, &mut expected);
                let got = closed(stack.close());
                assert_eq!(
                    (self.journal.take(), got),
                    (expected, want),
                    "closing stack {s} at the end: the stack (left) differs from the model (right)"
                );
            }
        }
    }
}
