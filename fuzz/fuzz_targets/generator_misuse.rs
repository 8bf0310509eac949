//! Decodes bytes into generator contexts (`context(async |cx| ..)`) that behave well or badly,
//! runs them, and asserts the documented result of each misuse (G5, G6, G9): which panic
//! resumes (the exact message), which errors the caller gets (primary and suppressed) or the
//! error hook gets (while a panic resumes), what every setup, teardown and destructor journaled,
//! in order, and that nothing leaked or hung.
//!
//! A case is one to three generator contexts, entered in order by one of three drivers, and a
//! body that succeeds, fails or panics:
//! - `With`: `Scope::new().on_error_during_panic(..).with(g0 | (g0, g1) | (g0, g1, g2), body)`;
//! - `Scope`: the same scope's `scope(async |stack| ..)`, each context entered into the stack;
//! - `Stack`: an `ExitStack::new()` driven by hand: each enter's error or panic is returned to
//!   the caller, then the stack is closed (`close` for a body that succeeds, `close_with` for one
//!   that fails), or dropped without closing (for a body that panics: no teardown may run then,
//!   the value and the closure's future are dropped). Its panics report errors to the global
//!   error hook.
//!
//! What a generator does (each may yield to the executor before its setup and its teardown):
//! - its setup provides a value; or fails (an enter error); or panics; or returns `Ok` without
//!   providing (misuse: "returned without calling `provide`"); or polls `provide` once and drops
//!   it, then returns (misuse: "returned while its body had the value"), or goes on (the body
//!   runs with the value; misuse at exit: "returned before its `provide` future resumed");
//! - its teardown returns `Ok` or an error; or panics; or calls `provide` a second time (misuse:
//!   "called twice"); or moves its `Cx` into a shared slot that outlives it, then returns `Ok` or
//!   an error (misuse, if the `Cx` holds the error the scope lent it: "outlived its closure and
//!   kept the scope's error"; harmless otherwise).
//!
//! The model (`expect`) follows the crate's rules: exits run newest first, each seeing
//! `Panicked` once a panic is pending, else `Failed(newest error)`, else `Completed` (G4); a
//! teardown borrows the newest error and gives it back in its place however it ends, unless its
//! `Cx` outlives it (then that one error stays with the `Cx`); a misuse is a panic like any other;
//! the first panic resumes after every exit ran, every error going to the hook in order (G6);
//! without a panic the first error is the primary one (G5).
#![no_main]

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arbitrary::{Arbitrary, Unstructured};
use async_with::{Cx, Error, ExitStack, IntoContext, Outcome, Scope, context};
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;

const NEVER: &str = "async-with: a generator context returned without calling `provide`";
const TWICE: &str = "async-with: `provide` was called twice in one generator context";
const KEPT: &str = "async-with: a generator context's `Cx` outlived its closure and kept the scope's error";
const DROPPED: &str = "async-with: a generator context returned before its `provide` future resumed (was the `provide` future dropped?)";
const HAD_THE_VALUE: &str = "async-with: a generator context returned while its body had the value (was the `provide` future dropped?)";

/// The most generator contexts in a case (the largest tuple `With` enters).
const MAX_GENERATORS: usize = 3;

/// How many polls a scope may take: far more than any case needs (each context yields at most
/// three times). A scope that keeps waking itself without finishing fails the case with a clear
/// message; one that stops waking itself hangs `block_on`, and libFuzzer's `-timeout` reports it.
const MAX_POLLS: usize = 1000;

fuzz_target!(
    init: {
        // The global error hook (used by the `Stack` driver's `close`) writes to the journal of
        // the case running on this thread.
        async_with::set_error_hook(|e| HOOKED.with(|h| h.borrow_mut().push(format!("hook: {e:?}"))));
        // The cases panic on purpose, and the crate catches and resumes those panics.
        // libFuzzer's hook aborts on any panic: keep it for every other one (a mismatch, a
        // `unreachable!`, a bug in the crate).
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload_as_str().is_some_and(planted) {
                abort(info);
            }
        }));
    },
    |case: Case| {
        let (journal, rets) = run(&case);
        let (want_journal, want_rets) = expect(&case);
        assert_eq!(
            (journal, rets),
            (want_journal, want_rets),
            "{case:?}: the crate (left) differs from the model (right)"
        );
    }
);

/// The panics a case plants, and the crate's messages for the misuse it plants.
fn planted(message: &str) -> bool {
    if [NEVER, TWICE, KEPT, DROPPED, HAD_THE_VALUE, "body panicked"].contains(&message) {
        return true;
    }
    let Some(what) = message.strip_suffix(" panicked") else { return false };
    let number = ["setup ", "teardown "].into_iter().find_map(|prefix| what.strip_prefix(prefix));
    number.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

// ----- The cases -----

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// `cx.provide(value).await`, then the teardown.
    Provide,
    /// Returns `Err("setup N failed")` before providing.
    Fail,
    /// Panics with `setup N panicked` before providing.
    Panic,
    /// Returns `Ok(())` without providing.
    Never,
    /// Polls `provide(value)` once (handing the value over), drops it, returns `Ok(())`.
    AbandonAndReturn,
    /// Polls `provide(value)` once, drops it, yields (the body runs with the value meanwhile),
    /// then runs its teardown, which never got the value back.
    AbandonAndContinue,
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Teardown {
    Succeed,
    /// Returns `Err("teardown N failed")`.
    Fail,
    /// Panics with `teardown N panicked`.
    Panic,
    /// Calls `provide` a second time.
    ProvideAgain,
    /// Moves its `Cx` into a slot that outlives the closure, returns `Ok(())`.
    KeepCx,
    /// The same, then returns `Err("teardown N failed")`.
    KeepCxAndFail,
}

#[derive(Arbitrary, Clone, Copy, Debug)]
struct Generator {
    setup: Setup,
    teardown: Teardown,
    yield_in_setup: bool,
    yield_in_teardown: bool,
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// `Ok(7)` (for `Stack`: `close()`).
    Succeed,
    /// `Err("body failed")` (for `Stack`: `close_with("body failed")`).
    Fail,
    /// Panics with `body panicked` (for `Stack`: the stack is dropped without closing).
    Panic,
}

#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    With,
    Scope,
    Stack,
}

#[derive(Debug)]
struct Case {
    driver: Driver,
    body: Body,
    /// One to [`MAX_GENERATORS`], entered in order.
    generators: Vec<Generator>,
}

impl<'a> Arbitrary<'a> for Case {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let (driver, body, first) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
        let rest = u.arbitrary_iter()?.take(MAX_GENERATORS - 1).collect::<arbitrary::Result<Vec<_>>>()?;
        Ok(Case { driver, body, generators: std::iter::once(first).chain(rest).collect() })
    }

    // The fuzz input: the driver, the body, the first generator, then for each further one a
    // byte that says "one more" (odd) or "the end" (even) and the generator.
    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        let (driver, body, first) = (u.arbitrary()?, u.arbitrary()?, u.arbitrary()?);
        let rest = u.arbitrary_take_rest_iter()?.take(MAX_GENERATORS - 1);
        let rest = rest.collect::<arbitrary::Result<Vec<_>>>()?;
        Ok(Case { driver, body, generators: std::iter::once(first).chain(rest).collect() })
    }
}

/// What a run returned: a value, the caller's errors (primary, suppressed), an enter's error,
/// or a panic's message. A `Stack` run returns one for each enter that failed, then one for the
/// close (or the drop).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ret {
    Ok,
    Err(Option<String>, Vec<String>),
    EnterErr(String),
    Panic(String),
}

// ----- The model -----

/// The model of one unwinding scope (or close).
#[derive(Default)]
struct Unwinding {
    errors: Vec<String>,
    panic: Option<String>,
    journal: Vec<String>,
}

impl Unwinding {
    fn outcome(&self) -> String {
        match (&self.panic, self.errors.last()) {
            (Some(_), _) => "Panicked".to_string(),
            (None, Some(newest)) => format!("Failed({newest})"),
            (None, None) => "Completed".to_string(),
        }
    }

    /// Only the first panic resumes.
    fn panicked(&mut self, message: &str) {
        self.panic.get_or_insert_with(|| message.to_string());
    }

    fn line(&mut self, line: String) {
        self.journal.push(line);
    }

    /// The setup of generator `i`: how it failed, or `None` if it provided (then the scope has
    /// a value to lend and a teardown to run).
    fn setup(&mut self, i: usize, g: &Generator) -> Option<Ret> {
        self.line(format!("setup {i}"));
        let (failure, dropped) = match g.setup {
            Setup::Provide | Setup::AbandonAndContinue => return None,
            Setup::Fail => (Ret::EnterErr(format!("setup {i} failed")), None),
            Setup::Panic => (Ret::Panic(format!("setup {i} panicked")), None),
            Setup::Never => (Ret::Panic(NEVER.to_string()), None),
            // The value it handed over is dropped after the closure returned.
            Setup::AbandonAndReturn => {
                (Ret::Panic(HAD_THE_VALUE.to_string()), Some(format!("drop value {i}")))
            }
        };
        // The closure ended (returned or unwound): its local goes.
        self.line(format!("drop local {i}"));
        self.journal.extend(dropped);
        Some(failure)
    }

    /// The exit of generator `i`: its teardown, seeing the outcome so far.
    fn teardown(&mut self, i: usize, g: &Generator) {
        let kept = matches!(g.teardown, Teardown::KeepCx | Teardown::KeepCxAndFail);
        let abandoned = g.setup == Setup::AbandonAndContinue;
        let outcome = self.outcome();
        // A failed outcome lends the newest error to the teardown, which gives it back in its
        // place when its `Cx` goes, at the latest when the closure returns or unwinds. A `Cx`
        // kept past the closure keeps it; a teardown that abandoned its `provide` never took it.
        let lent_and_kept = outcome.starts_with("Failed") && kept && !abandoned;
        if lent_and_kept {
            self.errors.pop();
        }
        if abandoned {
            self.line(format!("teardown {i}: abandoned"));
        } else {
            self.line(format!("teardown {i}: {outcome}"));
            self.line(format!("drop value {i}"));
        }
        if g.teardown == Teardown::ProvideAgain {
            // The second value is dropped before the panic, then the closure unwinds.
            self.line(format!("drop second value {i}"));
        }
        self.line(format!("drop local {i}"));
        match g.teardown {
            Teardown::Succeed | Teardown::KeepCx => {}
            Teardown::Fail | Teardown::KeepCxAndFail => self.errors.push(format!("teardown {i} failed")),
            Teardown::Panic => self.panicked(&format!("teardown {i} panicked")),
            Teardown::ProvideAgain => self.panicked(TWICE),
        }
        if lent_and_kept {
            self.panicked(KEPT);
        }
        if abandoned {
            // The value the body used was never taken back: dropped by the scope, after.
            self.panicked(DROPPED);
            self.line(format!("drop value {i}"));
        }
    }

    /// The end: the first panic resumes, every error going to the hook first; or the errors.
    fn finish(mut self, rets: &mut Vec<Ret>) -> Vec<String> {
        let ret = if let Some(panic) = self.panic.take() {
            self.journal.extend(self.errors.iter().map(|e| format!("hook: {e:?}")));
            Ret::Panic(panic)
        } else {
            let mut errors = std::mem::take(&mut self.errors).into_iter();
            match errors.next() {
                None => Ret::Ok,
                primary => Ret::Err(primary, errors.collect()),
            }
        };
        rets.push(ret);
        self.journal
    }
}

/// What the case must journal and return.
fn expect(case: &Case) -> (Vec<String>, Vec<Ret>) {
    let mut m = Unwinding::default();
    let mut rets = Vec::new();
    let mut entered = Vec::new();
    for (i, g) in case.generators.iter().enumerate() {
        // An enter's failure stops the enters. A `Stack`'s `enter` returns it to the caller
        // (who then closes the stack); a scope records it as the body's error or panic.
        match (m.setup(i, g), case.driver) {
            (None, _) => entered.push(i),
            (Some(failure), Driver::Stack) => {
                rets.push(failure);
                break;
            }
            (Some(Ret::EnterErr(e)), _) => {
                m.errors.push(e);
                break;
            }
            (Some(Ret::Panic(p)), _) => {
                m.panicked(&p);
                break;
            }
            (Some(other), _) => unreachable!("a setup fails or panics: {other:?}"),
        }
    }
    let all_entered = entered.len() == case.generators.len();
    if case.driver == Driver::Stack {
        match case.body {
            Body::Succeed => {}
            Body::Fail => m.errors.push("body failed".to_string()),
            Body::Panic => {
                // Dropped without closing: each entry drops its value, then its closure's
                // future, newest first. No teardown runs.
                for &i in entered.iter().rev() {
                    m.line(format!("drop value {i}"));
                    m.line(format!("drop local {i}"));
                }
                rets.push(Ret::Ok);
                return (m.journal, rets);
            }
        }
    } else if all_entered {
        m.line("body".to_string());
        match case.body {
            Body::Succeed => {}
            Body::Fail => m.errors.push("body failed".to_string()),
            Body::Panic => m.panicked("body panicked"),
        }
    }
    for &i in entered.iter().rev() {
        m.teardown(i, &case.generators[i]);
    }
    let journal = m.finish(&mut rets);
    (journal, rets)
}

// ----- What the real contexts run -----

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

std::thread_local! {
    /// What the global error hook was handed on this thread.
    static HOOKED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A value or a local that journals `line` when dropped; it holds `alive`, so that a leak of
/// either shows.
struct Guard {
    line: String,
    journal: Journal,
    _alive: Arc<()>,
}

impl Guard {
    fn new(line: String, journal: &Journal, alive: &Arc<()>) -> Self {
        Guard { line, journal: journal.clone(), _alive: alive.clone() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.journal.push(std::mem::take(&mut self.line));
    }
}

/// Where a teardown moves its `Cx` to keep it past its closure.
type Stash = Arc<Mutex<Vec<Cx<Guard, String>>>>;

/// Returns `Pending` once (waking itself), so that the scope really suspends there.
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

/// Polls `cx.provide(value)` once, handing the value over, and drops it.
async fn abandon(cx: &mut Cx<Guard, String>, value: Guard) {
    let mut provide = cx.provide(value);
    std::future::poll_fn(|task| {
        assert!(Pin::new(&mut provide).poll(task).is_pending(), "a first `provide` hands over and waits");
        Poll::Ready(())
    })
    .await;
}

/// Generator context number `i`, doing what `g` says. Every generator of a case has this one
/// type, so that `With` can enter them as a tuple.
fn generator(
    i: usize,
    g: Generator,
    journal: &Journal,
    stash: &Stash,
    alive: &Arc<()>,
) -> impl IntoContext<Value = Guard, Error = String> + Send + 'static + use<> {
    let (j, stash, alive) = (journal.clone(), stash.clone(), alive.clone());
    context(async move |mut cx: Cx<Guard, String>| {
        let _local = Guard::new(format!("drop local {i}"), &j, &alive);
        if g.yield_in_setup {
            yield_now().await;
        }
        j.push(format!("setup {i}"));
        let value = || Guard::new(format!("drop value {i}"), &j, &alive);
        match g.setup {
            Setup::Provide => {
                let (value, outcome) = cx.provide(value()).await;
                assert_eq!(value.line, format!("drop value {i}"), "a teardown got another value back");
                let seen = describe(outcome);
                if g.yield_in_teardown {
                    yield_now().await;
                }
                j.push(format!("teardown {i}: {seen}"));
                drop(value);
            }
            Setup::Fail => return Err(format!("setup {i} failed")),
            Setup::Panic => panic!("setup {i} panicked"),
            Setup::Never => return Ok(()),
            Setup::AbandonAndReturn => {
                abandon(&mut cx, value()).await;
                return Ok(());
            }
            Setup::AbandonAndContinue => {
                abandon(&mut cx, value()).await;
                yield_now().await; // the scope runs the body meanwhile
                if g.yield_in_teardown {
                    yield_now().await;
                }
                j.push(format!("teardown {i}: abandoned"));
            }
        }
        match g.teardown {
            Teardown::Succeed => Ok(()),
            Teardown::Fail => Err(format!("teardown {i} failed")),
            Teardown::Panic => panic!("teardown {i} panicked"),
            Teardown::ProvideAgain => {
                let _ = cx.provide(Guard::new(format!("drop second value {i}"), &j, &alive)).await;
                unreachable!("a second `provide` never resumes");
            }
            Teardown::KeepCx => {
                stash.lock().unwrap().push(cx);
                Ok(())
            }
            Teardown::KeepCxAndFail => {
                stash.lock().unwrap().push(cx);
                Err(format!("teardown {i} failed"))
            }
        }
    })
}

/// Counts the polls of a scope, failing the case if it keeps going past [`MAX_POLLS`].
struct Bounded<F> {
    future: Pin<Box<F>>,
    polls: usize,
}

impl<F: Future> Future for Bounded<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<F::Output> {
        self.polls += 1;
        assert!(self.polls <= MAX_POLLS, "hang: the scope is still pending after {MAX_POLLS} polls");
        self.future.as_mut().poll(task)
    }
}

/// Runs `future` to its end on `block_on`, and returns its output or its panic's message.
fn finish<F: Future>(future: F) -> Result<F::Output, String> {
    let bounded = Bounded { future: Box::pin(future), polls: 0 };
    catch_unwind(AssertUnwindSafe(|| block_on(bounded))).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "<a panic without a message>".to_string())
    })
}

fn scope_ret(result: Result<Result<u32, Error<String>>, String>) -> Ret {
    match result {
        Ok(Ok(seven)) => {
            assert_eq!(seven, 7, "the scope returned another value than its body's");
            Ret::Ok
        }
        Ok(Err(e)) => {
            assert!(!e.is_cancelled(), "a scope that nothing cancelled says cancelled");
            let (primary, suppressed) = e.into_parts();
            Ret::Err(primary, suppressed)
        }
        Err(panic) => Ret::Panic(panic),
    }
}

/// The body of the `With` and `Scope` drivers.
fn body(body: Body, journal: &Journal) -> Result<u32, Error<String>> {
    journal.push("body".to_string());
    match body {
        Body::Succeed => Ok(7),
        Body::Fail => Err("body failed".to_string().into()),
        Body::Panic => panic!("body panicked"),
    }
}

/// Runs the case; returns what it journaled (the global hook's reports last) and returned.
fn run(case: &Case) -> (Vec<String>, Vec<Ret>) {
    let journal = Journal::default();
    let stash = Stash::default();
    let alive = Arc::new(());
    let j = &journal;
    let make = |i: usize| generator(i, case.generators[i], j, &stash, &alive);
    let scope = || {
        let j = journal.clone();
        Scope::new().on_error_during_panic(move |e: String| j.push(format!("hook: {e:?}")))
    };
    let mut rets = Vec::new();
    match case.driver {
        Driver::With => {
            let result = match case.generators.len() {
                1 => finish(scope().with(make(0), async |_: &mut Guard| body(case.body, j))),
                2 => finish(
                    scope().with((make(0), make(1)), async |_: &mut (Guard, Guard)| body(case.body, j)),
                ),
                _ => finish(
                    scope().with((make(0), make(1), make(2)), async |_: &mut (Guard, Guard, Guard)| {
                        body(case.body, j)
                    }),
                ),
            };
            rets.push(scope_ret(result));
        }
        Driver::Scope => {
            let result = finish(scope().scope(async |stack: &mut ExitStack<String>| {
                for i in 0..case.generators.len() {
                    stack.enter(make(i)).await?;
                }
                body(case.body, j)
            }));
            rets.push(scope_ret(result));
        }
        Driver::Stack => {
            let stack = ExitStack::<String>::new();
            for i in 0..case.generators.len() {
                match finish(stack.enter(make(i))) {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        rets.push(Ret::EnterErr(e));
                        break;
                    }
                    Err(panic) => {
                        rets.push(Ret::Panic(panic));
                        break;
                    }
                }
            }
            let closed = match case.body {
                Body::Succeed => finish(stack.close()),
                Body::Fail => finish(stack.close_with("body failed".to_string())),
                Body::Panic => {
                    // No teardown can run: every value and closure's future is dropped.
                    let dropped = catch_unwind(AssertUnwindSafe(move || drop(stack)));
                    assert!(dropped.is_ok(), "a stack's drop let a panic escape");
                    Ok(Ok(()))
                }
            };
            rets.push(match closed {
                Ok(Ok(())) => Ret::Ok,
                Ok(Err(e)) => {
                    assert!(!e.is_cancelled(), "a close that nothing cancelled says cancelled");
                    let (primary, suppressed) = e.into_parts();
                    Ret::Err(primary, suppressed)
                }
                Err(panic) => Ret::Panic(panic),
            });
        }
    }
    // A kept `Cx` is harmless to drop later: it has nowhere to give its error back.
    stash.lock().unwrap().clear();
    let mut lines = journal.take();
    lines.extend(HOOKED.with(|h| std::mem::take(&mut *h.borrow_mut())));
    assert_eq!(Arc::strong_count(&alive), 1, "{case:?}: a value or a closure's future leaked");
    (lines, rets)
}
