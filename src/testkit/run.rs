//! The interpreter: builds a scenario out of the real crate (`with`, tuples, `scope` and its exit
//! stack, contexts written the three ways) and runs it, journaling what happens.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Mutex;

use super::plan::{PBody, PItem, PNode, plan};
use super::report::{Ending, Event, Fault, Report, Seen};
use super::scenario::{Act, Deadline, Interrupt, Kind, Leaf, Scenario, Signal, Step};
use crate::adapter::nullcontext;
use crate::cancel::{CancellationToken, WaitForCancellation};
use crate::combinator::{ContextExt, join, join_all};
use crate::context::{AsyncContext, IntoContext};
use crate::detach::{DetachSignal, Detached, detach_on_drop};
use crate::error::{Error, ForeignError};
use crate::generator::{Cx, context};
use crate::origin::Step as Place;
use crate::outcome::Outcome;
use crate::resource::resource;
use crate::stack::ExitStack;
use crate::stack::Key;
use crate::with::Scope;

/// What a run's future gives: the root scope's result, or `None` if it was dropped.
pub type Finished = Option<Result<(), Error<Fault>>>;

/// The future a run hands to the executor.
pub type RunFuture = Pin<Box<dyn Future<Output = Finished> + Send>>;

type Scoped = Pin<Box<dyn Future<Output = Result<(), Error<Fault>>> + Send>>;

/// A context of yours, as the kit drives it inside a scenario's leaf (see [`check_with`](super::check_with)).
///
/// Implemented for every [`AsyncContext`] whose error type is [`Fault`]: adapt a real context
/// by mapping its errors, for instance with a [`resource`](crate::resource) or a small wrapper.
pub trait Hosted: Send {
    /// Enters the context, keeping its value.
    fn enter(&mut self) -> Pin<Box<dyn Future<Output = Result<(), Fault>> + Send + '_>>;
    /// Exits the context with its value, seeing `outcome`.
    fn exit<'a>(
        self: Box<Self>,
        outcome: Outcome<'a, Fault>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Fault>> + Send + 'a>>;
    /// The synchronous fallback, when the scenario's scope is dropped.
    fn exit_on_drop(self: Box<Self>);
}

/// A context and its value, as hosted by a scenario leaf.
struct Host<C: AsyncContext> {
    context: C,
    value: Option<C::Value>,
}

impl<C: AsyncContext<Error = Fault> + 'static> Hosted for Host<C> {
    fn enter(&mut self) -> Pin<Box<dyn Future<Output = Result<(), Fault>> + Send + '_>> {
        Box::pin(async move {
            self.value = Some(self.context.enter().await?);
            Ok(())
        })
    }

    fn exit<'a>(
        self: Box<Self>,
        outcome: Outcome<'a, Fault>,
    ) -> Pin<Box<dyn Future<Output = Result<(), Fault>> + Send + 'a>> {
        let Host { context, value } = *self;
        Box::pin(context.exit(value.expect("entered before exiting"), outcome))
    }

    fn exit_on_drop(self: Box<Self>) {
        let Host { context, value } = *self;
        context.exit_on_drop(value.expect("entered before falling back"));
    }
}

type Make = Arc<dyn Fn(usize) -> Box<dyn Hosted> + Send + Sync>;

/// The journal and the hook's errors, shared by everything a run builds, and the maker of the
/// user's contexts, if any. A scenario's run without them also keeps what its errors' origins
/// depend on (to check those and the cancellation's cause), and every run the token its
/// signals' tokens are children of.
#[derive(Clone, Default)]
struct Shared {
    events: Arc<Mutex<Vec<Event>>>,
    lost: Arc<Mutex<Vec<Fault>>>,
    make: Option<Make>,
    marks: Option<Arc<Mutex<Marks>>>,
    token: CancellationToken,
}

/// The leaves and callbacks of a scenario's run that its errors' origins depend on.
#[derive(Default)]
struct Marks {
    /// The [`Kind::Mapped`] leaves built with `named`.
    named: Vec<usize>,
    /// What the run pushed on exit stacks: their `enter` and `release` return plain errors,
    /// which the body passes on as its own.
    stacked: Vec<usize>,
    /// Whether an entry was released (its exit's deadline error, too, is then passed on).
    released: bool,
}

/// The user's context of one leaf, entered after the leaf's injected enter and exited before
/// its injected exit.
#[derive(Default)]
struct Guest(Option<Box<dyn Hosted>>);

impl Guest {
    fn new(shared: &Shared, n: usize) -> Self {
        Guest(shared.make.as_ref().map(|make| make(n)))
    }

    async fn enter(&mut self) -> Result<(), Fault> {
        match &mut self.0 {
            Some(hosted) => hosted.enter().await,
            None => Ok(()),
        }
    }

    async fn exit(&mut self, outcome: Outcome<'_, Fault>) -> Result<(), Fault> {
        match self.0.take() {
            Some(hosted) => hosted.exit(outcome).await,
            None => Ok(()),
        }
    }

    fn exit_on_drop(&mut self) {
        if let Some(hosted) = self.0.take() {
            hosted.exit_on_drop();
        }
    }
}

impl Shared {
    fn push(&self, event: Event) {
        lock(&self.events).push(event);
    }
}

/// Builds `scenario` and runs it with `execute` (an executor's `block_on`, or a poll pattern
/// around one), catching the panic the root may resume.
///
/// ```
/// use async_with::testkit::{self, Body, Interrupt, Kind, Leaf, Node, Scenario, Step};
///
/// let leaf = Leaf { kind: Kind::Generator, enter: Step::ok(), exit: Step::ok() };
/// let scenario = Scenario { root: Node::With(vec![leaf], Body::step(Step::ok())), interrupt: Interrupt::None };
/// let report = testkit::run(&scenario, futures::executor::block_on);
/// assert_eq!(report, testkit::expect(&scenario));
/// ```
pub fn run(scenario: &Scenario, execute: impl FnOnce(RunFuture) -> Finished) -> Report {
    run_hosting(scenario, execute, None)
}

/// [`run`], with a context of yours (made by `make` for each leaf number) inside every leaf:
/// entered after the leaf's injected enter step succeeded, exited before the leaf's injected
/// exit step, falling back with it. Its errors are reported like the leaf's.
///
/// ```
/// use async_with::testkit::{self, Fault, Scenario};
/// use async_with::{AsyncContext, Outcome};
/// use std::sync::{atomic::{AtomicI32, Ordering::SeqCst}, Arc};
///
/// // A fake pool: every connection taken must be given back, whatever happens.
/// struct Checkout(Arc<AtomicI32>);
/// impl AsyncContext for Checkout {
///     type Value = ();
///     type Error = Fault;
///     async fn enter(&mut self) -> Result<(), Fault> { self.0.fetch_add(1, SeqCst); Ok(()) }
///     async fn exit(self, (): (), _: Outcome<'_, Fault>) -> Result<(), Fault> { self.0.fetch_sub(1, SeqCst); Ok(()) }
///     fn exit_on_drop(self, (): ()) { self.0.fetch_sub(1, SeqCst); }
/// }
///
/// let scenario: Scenario = testkit::example();
/// let open = Arc::new(AtomicI32::new(0));
/// let pool = open.clone();
/// testkit::check_with(&scenario, futures::executor::block_on, move |_| Checkout(pool.clone())).unwrap();
/// assert_eq!(open.load(SeqCst), 0);
/// ```
pub fn run_with<C, M>(scenario: &Scenario, execute: impl FnOnce(RunFuture) -> Finished, make: M) -> Report
where
    C: AsyncContext<Error = Fault> + 'static,
    M: Fn(usize) -> C + Send + Sync + 'static,
{
    let make: Make = Arc::new(move |n| Box::new(Host { context: make(n), value: None }));
    run_hosting(scenario, execute, Some(make))
}

fn run_hosting(
    scenario: &Scenario,
    execute: impl FnOnce(RunFuture) -> Finished,
    make: Option<Make>,
) -> Report {
    // A hosted context's errors are the user's: only the kit's own say where they came from.
    let marks = make.is_none().then(Arc::default);
    let shared = Shared { make, marks, ..Shared::default() };
    let root = plan(&scenario.root);
    let interrupt = scenario.interrupt;
    let (scoped, detached): (Scoped, _) = match interrupt {
        Interrupt::DetachAt(_) => {
            let slot = Arc::new(Mutex::new(None::<Detached>));
            let spawned = slot.clone();
            let (shared, spawn) = (shared.clone(), move |task| *lock(&spawned) = Some(task));
            let scoped =
                detach_on_drop(spawn, move |signal| node(root, shared, Some(interrupt), Some(signal)));
            (Box::pin(scoped), Some(slot))
        }
        _ => (node(root, shared.clone(), Some(interrupt), None), None),
    };
    let limit = match interrupt {
        Interrupt::DropAt(polls) | Interrupt::DetachAt(polls) => Some(u32::from(polls)),
        _ => None,
    };
    let future: RunFuture = Box::pin(DropAfter { scoped: Some(scoped), polls_left: limit, detached });
    report(&shared, execute, future)
}

/// Runs `future` with `execute`, catching the panic it may resume, and collects the report.
fn report(shared: &Shared, execute: impl FnOnce(RunFuture) -> Finished, future: RunFuture) -> Report {
    let finished = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| execute(future)));
    let ending = match finished {
        Ok(Some(Ok(()))) => Ending::Returned,
        Ok(Some(Err(error))) => {
            let cancelled = error.is_cancelled();
            // Mapped to its own type, an error must keep every error and origin: what follows
            // and the report check the mapped one.
            let error = error.map(core::convert::identity);
            let listed: Vec<Fault> = error.iter().cloned().collect();
            let text = (format!("{error}"), format!("{error:#}"), format!("{error:?}"));
            assert_views_agree(&error);
            if let Some(marks) = &shared.marks {
                assert_origins_and_cause(&error, &lock(marks));
            }
            let primary = error.primary().cloned();
            let suppressed: Vec<Fault> = error.suppressed().iter().map(|s| s.error().clone()).collect();
            assert_consumed_alike(error, &primary, &suppressed, &text.0);
            let parts: Vec<Fault> = primary.iter().chain(&suppressed).cloned().collect();
            assert_eq!(listed, parts, "async-with testkit: `iter` and the parts disagree");
            assert_text_names_every_error(&text, primary.as_ref(), &parts, cancelled);
            Ending::Failed { primary, suppressed, cancelled }
        }
        Ok(None) => Ending::Dropped,
        Err(payload) => Ending::Panicked(message(payload)),
    };
    let events = core::mem::take(&mut *lock(&shared.events));
    let lost = core::mem::take(&mut *lock(&shared.lost));
    Report { events, ending, lost }
}

/// Checks that an error's accessors say the same as its parts: `primary`, `suppressed` (with
/// `error()` and `into_error()`), `is_cancelled` and `cancelled_by`, an origin for each error a
/// scope recorded. The report compares the parts with the oracle's; this holds the other views
/// of the same error to them.
fn assert_views_agree(error: &Error<Fault>) {
    let said = "async-with testkit: an error's accessors disagree";
    let suppressed: Vec<&Fault> = error.suppressed().iter().map(|s| s.error()).collect();
    let listed: Vec<&Fault> = error.iter().collect();
    let from_parts: Vec<&Fault> = error.primary().into_iter().chain(suppressed.iter().copied()).collect();
    assert_eq!(listed, from_parts, "{said}: `iter` is not the primary error then the suppressed ones");
    assert_eq!(
        error.is_cancelled(),
        error.cancelled_by().is_some(),
        "{said}: `is_cancelled` and `cancelled_by`"
    );
    assert!(!(error.is_cancelled() && error.primary().is_some()), "{said}: cancelled with a primary error");
    assert_eq!(
        error.primary().is_some(),
        error.origin().is_some(),
        "{said}: a primary error without an origin"
    );
    for s in error.suppressed() {
        assert!(s.origin().is_some(), "{said}: suppressed {:?} has no origin", s.error());
        assert_eq!(s.clone().into_error(), *s.error(), "{said}: `into_error` of a suppressed error");
        // A suppressed error reads, prints and compares as its error.
        let (shown, own) =
            ((format!("{s}"), format!("{s:?}")), (format!("{}", s.error()), format!("{:?}", s.error())));
        assert_eq!(shown, own, "{said}: the text of suppressed {:?}", s.error());
        assert!(
            *s == *s.error() && core::ptr::eq(&**s, s.error()),
            "{said}: suppressed {:?} derefs elsewhere",
            s.error()
        );
    }
}

/// Consumes the error one of three ways (by how many errors it holds), each of which must give
/// what its views gave: `into_parts`, `into_primary`, or `into_boxed` (its text; the primary
/// error as the `source`, before and after boxing).
fn assert_consumed_alike(error: Error<Fault>, primary: &Option<Fault>, suppressed: &[Fault], plain: &str) {
    let said = "async-with testkit: a consumed error disagrees with its views";
    match (usize::from(primary.is_some()) + suppressed.len()) % 3 {
        0 => assert_eq!(error.into_parts(), (primary.clone(), suppressed.to_vec()), "{said}: `into_parts`"),
        1 => assert_eq!(error.into_primary(), *primary, "{said}: `into_primary`"),
        _ => {
            let source = core::error::Error::source(&error).map(|e| format!("{e}"));
            assert_eq!(source, primary.as_ref().map(|p| format!("{p}")), "{said}: `source`");
            let boxed = error.into_boxed();
            assert_eq!(format!("{boxed}"), plain, "{said}: `into_boxed`'s text");
            // Only a primary error that is itself a boxed error is the boxed one's source.
            assert!(boxed.source().is_none(), "{said}: a `Fault` became a source");
        }
    }
}

/// The names of [`Kind::Mapped`] leaves built with `named`: leaf `n` is `NAMES[n % 8]`.
const NAMES: [&str; 8] = ["leaf 0", "leaf 1", "leaf 2", "leaf 3", "leaf 4", "leaf 5", "leaf 6", "leaf 7"];

/// The reason every scenario signal cancels its token with.
const REASON: &str = "the scenario's signal";

/// Checks what a scenario's error says about where each error came from and why the scope was
/// cancelled: an enter's error comes from an enter, an exit's or a deadline's from an exit, a
/// body's from a body; a named leaf's errors carry its name and no other error carries one (a
/// deadline's aside: it is the exit's, named or not); a cancellation gives its signal's reason.
/// An error that an exit stack's `enter` or `release` returned to the body is the body's (the
/// stack returns it plain); one of its exits run when it closes is that exit's.
fn assert_origins_and_cause(error: &Error<Fault>, marks: &Marks) {
    let said = "async-with testkit: an error's origin is wrong";
    let primary = error.primary().zip(error.origin());
    let suppressed = error.suppressed().iter().map(|s| (s.error(), s.origin().expect("checked")));
    for (fault, origin) in primary.into_iter().chain(suppressed) {
        let (step, leaf) = match *fault {
            Fault::Enter(n) => (Place::Enter, Some(n)),
            Fault::Exit(n) => (Place::Exit, Some(n)),
            Fault::Deadline(_) if marks.released && origin.step() == Place::Body => continue,
            Fault::Deadline(_) => (Place::Exit, None),
            Fault::Body(_) => (Place::Body, None),
        };
        if let Some(n) = leaf {
            let name = marks.named.contains(&n).then(|| NAMES[n % NAMES.len()]);
            let passed_on = (origin.step(), origin.name()) == (Place::Body, None);
            if marks.stacked.contains(&n) && (step == Place::Enter || passed_on) {
                assert!(passed_on, "{said}: {fault:?}, returned by a stack, comes from {origin:?}");
                continue;
            }
            assert_eq!(origin.name(), name, "{said}: {fault:?} comes from {origin:?}");
        }
        assert_eq!(origin.step(), step, "{said}: {fault:?} comes from {origin:?}");
    }
    if let Some(by) = error.cancelled_by() {
        assert_eq!(by.reason(), Some(REASON), "async-with testkit: a cancellation lost its reason: {by:?}");
    }
}

/// Checks that an error's text names every error it holds: the plain form starts with the
/// primary error (or says the scope was cancelled), the alternate form has each one's text, the
/// `Debug` form each one's `Debug`.
fn assert_text_names_every_error(
    (plain, alternate, debug): &(String, String, String),
    primary: Option<&Fault>,
    errors: &[Fault],
    cancelled: bool,
) {
    let said = "async-with testkit: an error's text leaves something out";
    match primary {
        Some(p) => assert!(plain.starts_with(&format!("{p}")), "{said}: {plain:?} does not start with {p}"),
        None => assert!(cancelled && plain.contains("cancelled"), "{said}: {plain:?} is no cancellation"),
    }
    for e in errors {
        assert!(alternate.contains(&format!("{e}")), "{said}: {alternate:?} does not name {e}");
        assert!(debug.contains(&format!("{e:?}")), "{said}: {debug:?} does not name {e:?}");
    }
}

/// A journal for contexts you compose yourself, with the combinators or by hand, to check that
/// two compositions which must behave the same do: the same enters and exits, in the same order,
/// seeing the same outcomes, and the same ending. The crate's laws (`tests/laws.rs`) use it.
///
/// ```
/// use async_with::testkit::{Act, Journal, Step};
/// use async_with::{with, ContextExt};
///
/// let run = |nested: bool| {
///     let journal = Journal::new();
///     let (a, b) = (journal.context(0, Step::ok(), Step::ok()), journal.context(1, Step::ok(), Step::ok()));
///     let body = journal.body(0, Step { pending: 1, act: Act::Fail });
///     let future = if nested {
///         Box::pin(with(a.and_then(move |_| b), async move |_| body.await)) as async_with::testkit::ScopeFuture
///     } else {
///         Box::pin(with((a, b), async move |_| body.await))
///     };
///     journal.run(futures::executor::block_on, future)
/// };
/// assert_eq!(run(true), run(false)); // `and_then` orders like a tuple
/// ```
#[derive(Clone, Default)]
pub struct Journal {
    shared: Shared,
}

/// A scope's future, as [`Journal::run`] takes it.
pub type ScopeFuture = Pin<Box<dyn Future<Output = Result<(), Error<Fault>>> + Send>>;

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events = lock(&self.shared.events);
        f.debug_struct("Journal").field("events", &*events).finish()
    }
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context numbered `n` whose enter and exit do what `enter` and `exit` say (succeed,
    /// fail, panic, after some pending polls), journaling `Enter(n)` once entered and
    /// `Exit(n, outcome)` when its exit starts (or `Fallback(n)` when its scope is dropped).
    pub fn context(
        &self,
        n: usize,
        enter: Step,
        exit: Step,
    ) -> impl IntoContext<Value = (), Error = Fault> + use<> {
        typed(&self.shared, (n, Leaf { kind: Kind::Context, enter, exit }))
    }

    /// A body numbered `n` that journals `Body(n)`, then does what `step` says.
    pub fn body(
        &self,
        n: usize,
        step: Step,
    ) -> impl Future<Output = Result<(), Error<Fault>>> + Send + use<> {
        let shared = self.shared.clone();
        async move {
            shared.push(Event::Body(n));
            pending(step).await;
            Ok(end(step.act, Fault::Body(n), || format!("body of scope {n} panicked"))?)
        }
    }

    /// Runs a scope built from this journal's contexts with `execute`, and reports what
    /// happened. The journal is emptied, so that it can be used again.
    pub fn run(&self, execute: impl FnOnce(RunFuture) -> Finished, scope: ScopeFuture) -> Report {
        let future: RunFuture = Box::pin(async move { Some(scope.await) });
        report(&self.shared, execute, future)
    }
}

fn message(payload: Box<dyn core::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => String::from(*message),
            Err(_) => String::from("<a panic without a message>"),
        },
    }
}

/// Locks `mutex`, whether or not a panic poisoned it (scenarios panic on purpose).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls the root `polls_left` times at most, then drops it (drop cancellation); when the root
/// runs under `detach_on_drop`, the task its drop spawned into `detached` is then driven to its
/// end, here, one poll per `Pending` as before.
struct DropAfter {
    scoped: Option<Scoped>,
    polls_left: Option<u32>,
    detached: Option<Arc<Mutex<Option<Detached>>>>,
}

impl Future for DropAfter {
    type Output = Finished;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Finished> {
        if self.polls_left == Some(0) {
            self.scoped = None; // dropped here, running the fallbacks (or detaching)
            let spawned = self.detached.take().and_then(|slot| lock(&slot).take());
            if let Some(mut spawned) = spawned {
                // The task catches the scope's panic itself: it only ever ends.
                while spawned.as_mut().poll(task).is_pending() {}
            }
            return Poll::Ready(None);
        }
        if let Some(left) = &mut self.polls_left {
            *left -= 1;
        }
        let scoped = self.scoped.as_mut().expect("polled after completion");
        let out = core::task::ready!(scoped.as_mut().poll(task));
        self.scoped = None;
        Poll::Ready(Some(out))
    }
}

/// Returns `Pending` once, waking its task: one cancellation point.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<()> {
        if core::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            task.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

async fn pending(step: Step) {
    for _ in 0..step.pending {
        YieldOnce(false).await;
    }
}

/// A signal that completes (or panics) on its `k + 1`-th poll. It does not wake its task: every
/// step that waits wakes it already, so the root is polled exactly once per `Pending`.
///
/// It fires through a [`CancellationToken`] of its own (a child of the run's): it polls the
/// token's `cancelled()` while it waits, then cancels the token with [`REASON`] and completes
/// when that future does. So every scenario with a signal drives the token too, and the
/// cancelled error must say the reason.
struct SignalAt {
    polls: u32,
    at: u32,
    panics: bool,
    id: usize,
    token: CancellationToken,
    cancelled: WaitForCancellation,
}

impl SignalAt {
    fn new(Signal { at, panics }: Signal, id: usize, parent: &CancellationToken) -> Self {
        let token = parent.child_token();
        let cancelled = token.cancelled();
        SignalAt { polls: 0, at: u32::from(at), panics, id, token, cancelled }
    }
}

impl Future for SignalAt {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<()> {
        self.polls += 1;
        if self.polls <= self.at {
            // Waiting on a token nobody cancelled (its wake on `cancel_with` below comes while
            // the root is being polled, with the wake of the step that waits: it adds no poll).
            let waiting = Pin::new(&mut self.cancelled).poll(task);
            assert!(waiting.is_pending(), "async-with testkit: a token nobody cancelled completed");
            return Poll::Pending;
        }
        if self.panics {
            std::panic::panic_any(format!("signal of scope {} panicked", self.id));
        }
        self.token.cancel_with(REASON);
        debug_assert!(self.token.is_cancelled() && self.token.reason() == Some(REASON));
        let fired = Pin::new(&mut self.cancelled).poll(task);
        assert!(fired.is_ready(), "async-with testkit: a cancelled token's signal is still pending");
        fired
    }
}

/// An exit deadline that completes with [`Fault::Deadline`] (or panics) on its `k + 1`-th poll.
struct DeadlineAt {
    polls: u32,
    after: u32,
    panics: bool,
    id: usize,
}

impl Future for DeadlineAt {
    type Output = Fault;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Fault> {
        self.polls += 1;
        if self.polls <= self.after {
            return Poll::Pending;
        }
        if self.panics {
            std::panic::panic_any(format!("deadline of scope {} panicked", self.id));
        }
        Poll::Ready(Fault::Deadline(self.id))
    }
}

/// What an exit saw; the outcome's accessors must say the same.
fn seen(outcome: Outcome<'_, Fault>) -> Seen {
    let seen = match outcome {
        Outcome::Completed => Seen::Completed,
        Outcome::Failed(e) => Seen::Failed(e.clone()),
        Outcome::Panicked => Seen::Panicked,
        Outcome::Cancelled => Seen::Cancelled,
    };
    let accessors =
        (outcome.is_completed(), outcome.is_failed(), outcome.is_panicked(), outcome.is_cancelled());
    let variant = (
        seen == Seen::Completed,
        matches!(seen, Seen::Failed(_)),
        seen == Seen::Panicked,
        seen == Seen::Cancelled,
    );
    let error = match &seen {
        Seen::Failed(e) => Some(e),
        _ => None,
    };
    let copy = outcome;
    assert!(
        accessors == variant && outcome.error() == error && copy == outcome,
        "async-with testkit: an outcome's accessors disagree with it: {outcome:?}"
    );
    seen
}

fn end(act: Act, fault: Fault, panic: impl FnOnce() -> String) -> Result<(), Fault> {
    match act {
        Act::Succeed => Ok(()),
        Act::Fail => Err(fault),
        Act::Panic => std::panic::panic_any(panic()),
    }
}

/// Journals `Fallback(n)` when dropped, unless disarmed first (after the fallback of the guest
/// it may hold).
struct Unless(Option<(Shared, usize)>, Option<Guest>);

impl Unless {
    fn armed(shared: &Shared, n: usize) -> Self {
        Unless(Some((shared.clone(), n)), None)
    }

    fn disarm(&mut self) -> Guest {
        self.0 = None;
        self.1.take().unwrap_or_default()
    }
}

impl Drop for Unless {
    fn drop(&mut self) {
        if let Some((shared, n)) = self.0.take() {
            if let Some(mut guest) = self.1.take() {
                guest.exit_on_drop();
            }
            shared.push(Event::Fallback(n));
        }
    }
}

// ----- The three ways to write a context. -----

async fn enter_step(shared: &Shared, n: usize, leaf: Leaf, guest: &mut Guest) -> Result<(), Fault> {
    enter_act(n, leaf.enter).await?;
    guest.enter().await?;
    shared.push(Event::Enter(n));
    Ok(())
}

async fn exit_step(
    shared: &Shared,
    n: usize,
    leaf: Leaf,
    outcome: Outcome<'_, Fault>,
    guest: &mut Guest,
) -> Result<(), Fault> {
    shared.push(Event::Exit(n, seen(outcome)));
    guest.exit(outcome).await?;
    pending(leaf.exit).await;
    end(leaf.exit.act, Fault::Exit(n), || format!("exit #{n} panicked"))
}

/// A context written as a type implementing `AsyncContext`.
struct Typed {
    shared: Shared,
    n: usize,
    leaf: Leaf,
    guest: Guest,
}

impl AsyncContext for Typed {
    type Value = ();
    type Error = Fault;

    async fn enter(&mut self) -> Result<(), Fault> {
        enter_step(&self.shared, self.n, self.leaf, &mut self.guest).await
    }

    async fn exit(mut self, (): (), outcome: Outcome<'_, Fault>) -> Result<(), Fault> {
        exit_step(&self.shared, self.n, self.leaf, outcome, &mut self.guest).await
    }

    fn exit_on_drop(mut self, (): ()) {
        self.guest.exit_on_drop();
        self.shared.push(Event::Fallback(self.n));
    }
}

fn typed(shared: &Shared, (n, leaf): (usize, Leaf)) -> Typed {
    Typed { shared: shared.clone(), n, leaf, guest: Guest::new(shared, n) }
}

/// A context written as a closure pair.
fn closures(
    shared: &Shared,
    (n, leaf): (usize, Leaf),
) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    let (entering, exiting, dropping) = (shared.clone(), shared.clone(), shared.clone());
    let guest = Arc::new(Mutex::new(Guest::new(shared, n)));
    let (entered, exited, fallen) = (guest.clone(), guest.clone(), guest);
    resource(
        async move || {
            let mut guest = core::mem::take(&mut *lock(&entered));
            let result = enter_step(&entering, n, leaf, &mut guest).await;
            *lock(&entered) = guest;
            result
        },
        async move |(), outcome: Outcome<'_, Fault>| {
            let mut guest = core::mem::take(&mut *lock(&exited));
            exit_step(&exiting, n, leaf, outcome, &mut guest).await
        },
    )
    .on_drop(move |()| {
        lock(&fallen).exit_on_drop();
        dropping.push(Event::Fallback(n));
    })
}

/// A context written as a generator.
fn generator(
    shared: &Shared,
    (n, leaf): (usize, Leaf),
) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    let shared = shared.clone();
    let mut guest = Guest::new(&shared, n);
    context(async move |mut cx: Cx<(), Fault>| {
        enter_act(n, leaf.enter).await?;
        guest.enter().await?;
        let mut dropped = Unless::armed(&shared, n);
        dropped.1 = Some(guest);
        shared.push(Event::Enter(n));
        let ((), outcome) = cx.provide(()).await;
        let mut guest = dropped.disarm();
        shared.push(Event::Exit(n, seen(outcome)));
        guest.exit(outcome).await?;
        pending(leaf.exit).await;
        end(leaf.exit.act, Fault::Exit(n), || format!("exit #{n} panicked"))
    })
}

/// A [`Kind::Context`] seen through `map`.
fn mapped(shared: &Shared, leaf: (usize, Leaf)) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    typed(shared, leaf).map(|(): &mut ()| ())
}

/// A [`Kind::Context`] with an error type of its own, seen through `map_err`.
fn mapped_err(shared: &Shared, leaf: (usize, Leaf)) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    Foreign(typed(shared, leaf)).map_err(|error: Shown| match error {
        Shown::Own(fault) => fault,
        Shown::Scope(text) => fault_in(&text),
    })
}

/// A [`Kind::Context`] given a name, which its errors must carry.
fn named(shared: &Shared, (n, leaf): (usize, Leaf)) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    if let Some(marks) = &shared.marks {
        lock(marks).named.push(n);
    }
    typed(shared, (n, leaf)).named(NAMES[n % NAMES.len()])
}

/// The error type of a [`mapped_err`] leaf's own context: its own error, or the scope's failure
/// `map_err` shows it (as a [`ForeignError`], its text).
enum Shown {
    Own(Fault),
    Scope(String),
}

impl From<ForeignError> for Shown {
    fn from(failed: ForeignError) -> Self {
        Shown::Scope(String::from(failed.message()))
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Own(fault) => fault.fmt(f),
            Shown::Scope(text) => f.write_str(text),
        }
    }
}

/// The scenario's error whose text `map_err` showed (a [`Fault`] displays as `exit #3 failed`
/// or `body of scope 1 failed`): the exit then journals the outcome it would have seen without
/// `map_err`. Any other text is a bug of `map_err`, and panics.
fn fault_in(text: &str) -> Fault {
    let parsed = text.strip_suffix(" failed").and_then(|t| {
        let (what, n) = t.rsplit_once(' ')?;
        match (what, n.strip_prefix('#')) {
            ("enter", Some(n)) => Some(Fault::Enter(n.parse().ok()?)),
            ("exit", Some(n)) => Some(Fault::Exit(n.parse().ok()?)),
            ("body of scope", None) => Some(Fault::Body(n.parse().ok()?)),
            ("deadline of scope", None) => Some(Fault::Deadline(n.parse().ok()?)),
            _ => None,
        }
    });
    parsed.unwrap_or_else(|| panic!("async-with testkit: `map_err` showed {text:?}, no scenario error"))
}

/// A [`Typed`] context with [`Shown`] as its error type.
struct Foreign(Typed);

impl AsyncContext for Foreign {
    type Value = ();
    type Error = Shown;

    async fn enter(&mut self) -> Result<(), Shown> {
        self.0.enter().await.map_err(Shown::Own)
    }

    async fn exit(self, (): (), outcome: Outcome<'_, Shown>) -> Result<(), Shown> {
        let shown;
        let outcome = match outcome {
            Outcome::Completed => Outcome::Completed,
            Outcome::Failed(Shown::Own(fault)) => Outcome::Failed(fault),
            Outcome::Failed(Shown::Scope(text)) => {
                shown = fault_in(text);
                Outcome::Failed(&shown)
            }
            Outcome::Panicked => Outcome::Panicked,
            Outcome::Cancelled => Outcome::Cancelled,
        };
        self.0.exit((), outcome).await.map_err(Shown::Own)
    }

    fn exit_on_drop(self, (): ()) {
        self.0.exit_on_drop(());
    }
}

/// A resource that enters after the first half of the leaf's pending polls, then an `eval_map`
/// step that takes the rest and ends as the leaf's enter does.
fn eval_mapped(
    shared: &Shared,
    (n, leaf): (usize, Leaf),
) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    let (resource, step) = before_step(shared, (n, leaf));
    resource.eval_map(async move |(): &mut ()| enter_act(n, step).await)
}

/// [`eval_mapped`] with `eval_tap`, which behaves the same.
fn eval_tapped(
    shared: &Shared,
    (n, leaf): (usize, Leaf),
) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    let (resource, step) = before_step(shared, (n, leaf));
    resource.eval_tap(async move |(): &mut ()| enter_act(n, step).await)
}

/// The resource of a [`Kind::EvalMapped`] leaf, which enters after the first half of the leaf's
/// pending enter polls, and the step that does the rest of the leaf's enter after it.
fn before_step(
    shared: &Shared,
    (n, leaf): (usize, Leaf),
) -> (impl IntoContext<Value = (), Error = Fault> + use<>, Step) {
    let (first, step) = leaf.enter.eval_map_halves();
    (closures(shared, (n, Leaf { enter: first, ..leaf })), step)
}

/// The injected part of leaf `n`'s enter: `step`'s pending polls, then its act.
async fn enter_act(n: usize, step: Step) -> Result<(), Fault> {
    pending(step).await;
    end(step.act, Fault::Enter(n), || format!("enter #{n} panicked"))
}

/// A resource whose exit succeeds at once, then an `on_finalize` action that journals what it
/// sees and ends as the leaf's exit does.
fn finalized(
    shared: &Shared,
    (n, leaf): (usize, Leaf),
) -> impl IntoContext<Value = (), Error = Fault> + use<> {
    let journal = shared.clone();
    closures(shared, (n, Leaf { exit: Step::ok(), ..leaf })).on_finalize(
        async move |outcome: Outcome<'_, Fault>| {
            journal.push(Event::Finalize(n, seen(outcome)));
            pending(leaf.exit).await;
            end(leaf.exit.act, Fault::Exit(n), || format!("exit #{n} panicked"))
        },
    )
}

/// `$go!($args.., make)` with the function that makes `$kind`'s contexts, for the kinds written
/// without a combinator (whose scopes take the scenario's own options; see [`is_combinator`]).
macro_rules! base_kind {
    ($kind:expr, $go:ident $(, $arg:expr)*) => {
        match $kind {
            Kind::Context => $go!($($arg,)* typed),
            Kind::Resource => $go!($($arg,)* closures),
            Kind::Generator => $go!($($arg,)* generator),
            kind => unreachable!("{kind:?} is built with a combinator: its scope takes every option"),
        }
    };
}

/// `$go!($args.., make)` with the function that makes the contexts of a [`Kind::Mapped`] leaf
/// numbered `$n`: `map`, `map_err` or `named` by turns (each behaves as the plain context).
macro_rules! mapped_kind {
    ($n:expr, $go:ident $(, $arg:expr)*) => {
        match $n % 3 {
            0 => $go!($($arg,)* mapped),
            1 => $go!($($arg,)* mapped_err),
            _ => $go!($($arg,)* named),
        }
    };
}

/// `$go!($args.., make)` with the function that makes the contexts of a [`Kind::EvalMapped`]
/// leaf numbered `$n`: `eval_map` or `eval_tap` by turns (they behave the same).
macro_rules! eval_mapped_kind {
    ($n:expr, $go:ident $(, $arg:expr)*) => {
        if $n % 2 == 0 { $go!($($arg,)* eval_mapped) } else { $go!($($arg,)* eval_tapped) }
    };
}

/// `$go!($args.., make)` with the function that makes the contexts of `$kind` for a tuple whose
/// first leaf is numbered `$n`, for every kind.
macro_rules! each_kind {
    ($kind:expr, $n:expr, $go:ident $(, $arg:expr)*) => {
        match $kind {
            Kind::Mapped => mapped_kind!($n, $go $(, $arg)*),
            Kind::EvalMapped => eval_mapped_kind!($n, $go $(, $arg)*),
            Kind::Finalized => $go!($($arg,)* finalized),
            kind => base_kind!(kind, $go $(, $arg)*),
        }
    };
}

/// Either signal of a scope: the task's detach signal (polled first), or its own.
struct Signals {
    detach: Option<DetachSignal>,
    own: Option<SignalAt>,
}

impl Future for Signals {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some(detach) = &mut this.detach {
            if Pin::new(detach).poll(task).is_ready() {
                return Poll::Ready(());
            }
        }
        match &mut this.own {
            Some(own) => Pin::new(own).poll(task),
            None => Poll::Pending,
        }
    }
}

// ----- Scopes. -----

type BodyFuture = Pin<Box<dyn Future<Output = Result<(), Error<Fault>>> + Send>>;

/// A body, built before its scope starts, running (and journaling that it started) only when
/// the scope awaits it.
fn body(shared: Shared, id: usize, body: PBody, journal_start: bool) -> BodyFuture {
    Box::pin(async move {
        if journal_start {
            shared.push(Event::Body(id));
        }
        if let Some(nested) = body.nested {
            // An inner scope's error passes through `?` whole: primary, suppressed, cancellation.
            node(*nested, shared.clone(), None, None).await?;
        }
        pending(body.step).await;
        Ok(end(body.step.act, Fault::Body(id), || format!("body of scope {id} panicked"))?)
    })
}

/// The options of a scope of a run: every scope reports errors lost to a panic into the journal
/// (its hook panics after that if the scenario says so); a scope with a signal (its own, or the
/// scenario's for the root) is cancelled on it; a scope with a deadline bounds its exits with it.
macro_rules! scope_for {
    ($shared:expr, $id:expr, $interrupt:expr, $detach:expr, $body:expr) => {{
        let (lost, id, hook_panics) = ($shared.lost.clone(), $id, $body.hook_panics);
        let root = match $interrupt {
            Some(Interrupt::CancelAt(at)) => Some(Signal { at, panics: false }),
            _ => None,
        };
        // Both signals would be polled together, so the earlier one is the one that fires (the
        // root's when both fire at the same poll: it is polled first).
        let signal = match (root, $body.signal) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        };
        let scope = Scope::new().on_error_during_panic(move |e: Fault| {
            lock(&lost).push(e);
            if hook_panics {
                std::panic::panic_any(format!("hook of scope {id} panicked"));
            }
        });
        let own = signal.map(|signal| SignalAt::new(signal, id, &$shared.token));
        let detach: Option<DetachSignal> = $detach;
        let signal = (own.is_some() || detach.is_some()).then(|| Signals { detach, own });
        // Without a deadline, one that never fires (for scopes built with every option).
        let deadline_at = move |deadline: Option<Deadline>| {
            let (after, panics) = deadline.map_or((u32::MAX, false), |d| (u32::from(d.after), d.panics));
            move || DeadlineAt { polls: 0, after, panics, id }
        };
        let deadline = $body.deadline.map(|d| deadline_at(Some(d)));
        (scope, signal, deadline, deadline_at($body.deadline))
    }};
}

fn node(node: PNode, shared: Shared, interrupt: Option<Interrupt>, detach: Option<DetachSignal>) -> Scoped {
    let (id, options) = match &node {
        PNode::With { id, body, .. } | PNode::Stack { id, body, .. } | PNode::Join { id, body, .. } => {
            (*id, body)
        }
    };
    let (scope, signal, deadline, any_deadline) = scope_for!(shared, id, interrupt, detach, options);
    // One scope type per combination of options, so that each runs the crate's own path for it.
    macro_rules! options {
        ($run:ident) => {
            match (signal, deadline) {
                (None, None) => $run!(scope),
                (Some(signal), None) => $run!(scope.cancel_on(signal)),
                (None, Some(deadline)) => $run!(scope.exit_deadline(deadline)),
                (Some(signal), Some(deadline)) => $run!(scope.cancel_on(signal).exit_deadline(deadline)),
            }
        };
    }
    // One scope type with every option, those the scenario does not set never firing (as if
    // absent): for the combinators, whose code does not depend on the options, so that each
    // adds one scope type per shape rather than four (the fuzz target's build and its rate pay
    // for every monomorphized scope).
    macro_rules! every_option {
        ($run:ident) => {{
            let signal = signal.unwrap_or(Signals { detach: None, own: None });
            $run!(scope.cancel_on(signal).exit_deadline(any_deadline))
        }};
    }
    match node {
        PNode::With { id, leaves, body: b, chain } => {
            let (first, kind) = (leaves[0].0, leaves[0].1.kind);
            let count = leaves.len();
            let b = body(shared.clone(), id, b, true);
            let s = &shared;
            let mut l = leaves.into_iter();
            let mut next = move || l.next().expect("counted");
            macro_rules! tuple {
                ($scope:expr, $make:ident) => {
                    match count {
                        1 => Box::pin($scope.with($make(s, next()), async move |_| b.await)),
                        2 => Box::pin(
                            $scope.with(($make(s, next()), $make(s, next())), async move |_| b.await),
                        ),
                        3 => {
                            Box::pin($scope.with(
                                ($make(s, next()), $make(s, next()), $make(s, next())),
                                async move |_| b.await,
                            ))
                        }
                        _ => Box::pin($scope.with(
                            ($make(s, next()), $make(s, next()), $make(s, next()), $make(s, next())),
                            async move |_| b.await,
                        )),
                    }
                };
            }
            macro_rules! chain {
                ($scope:expr, $make:ident) => {
                    match count {
                        1 => {
                            let a = $make(s, next());
                            Box::pin($scope.with(a.and_then(|_| nullcontext(())), async move |_| b.await))
                        }
                        2 => {
                            let (a, c) = ($make(s, next()), $make(s, next()));
                            Box::pin($scope.with(a.and_then(move |_| c), async move |_| b.await))
                        }
                        3 => {
                            let (a, c, d) = ($make(s, next()), $make(s, next()), $make(s, next()));
                            let chain = a.and_then(move |_| c).and_then(move |_| d);
                            Box::pin($scope.with(chain, async move |_| b.await))
                        }
                        _ => {
                            let (a, c, d) = ($make(s, next()), $make(s, next()), $make(s, next()));
                            let e = $make(s, next());
                            let chain = a.and_then(move |_| c).and_then(move |_| d).and_then(move |_| e);
                            Box::pin($scope.with(chain, async move |_| b.await))
                        }
                    }
                };
            }
            macro_rules! tuples {
                ($scope:expr) => {
                    base_kind!(kind, tuple, $scope)
                };
            }
            macro_rules! combinators {
                ($scope:expr) => {
                    match kind {
                        _ if chain => each_kind!(kind, first, chain, $scope),
                        Kind::Mapped => mapped_kind!(first, tuple, $scope),
                        Kind::EvalMapped => eval_mapped_kind!(first, tuple, $scope),
                        Kind::Finalized => tuple!($scope, finalized),
                        _ => unreachable!("the base kinds' tuples take the scenario's options"),
                    }
                };
            }
            if chain || is_combinator(kind) { every_option!(combinators) } else { options!(tuples) }
        }
        PNode::Stack { id, items, body: b } => {
            // A stack's body starts with its items: it is journaled before them.
            let b = body(shared.clone(), id, b, false);
            let run = async move |stack: &mut ExitStack<Fault>| {
                shared.push(Event::Body(id));
                // The keys of the entries still on the stack that have one, oldest first.
                let mut keys = Vec::new();
                for item in items {
                    push(stack, &shared, item, &mut keys).await?;
                }
                b.await
            };
            macro_rules! stack {
                ($scope:expr) => {
                    Box::pin($scope.scope(run))
                };
            }
            options!(stack)
        }
        PNode::Join { id, all, leaves, body: b } => {
            let (first, kind) = (leaves[0].0, leaves[0].1.kind);
            let b = body(shared.clone(), id, b, true);
            let s = &shared;
            macro_rules! go {
                ($scope:expr, $make:ident) => {{
                    let mut l = leaves.iter().copied();
                    let mut next = move || $make(s, l.next().expect("counted"));
                    if all || leaves.len() != 2 {
                        let branches: Vec<_> = (0..leaves.len()).map(|_| next()).collect();
                        Box::pin($scope.with(join_all(branches), async move |_| b.await))
                    } else {
                        Box::pin($scope.with(join(next(), next()), async move |_| b.await))
                    }
                }};
            }
            macro_rules! kinds {
                ($scope:expr) => {
                    base_kind!(kind, go, $scope)
                };
            }
            macro_rules! combinators {
                ($scope:expr) => {
                    match kind {
                        Kind::Mapped => mapped_kind!(first, go, $scope),
                        Kind::Finalized => go!($scope, finalized),
                        _ => unreachable!("{kind:?} is no join branch with every option"),
                    }
                };
            }
            if is_combinator(kind) { every_option!(combinators) } else { options!(kinds) }
        }
    }
}

/// Whether a leaf's context is built with a combinator (whose scopes take every option).
fn is_combinator(kind: Kind) -> bool {
    matches!(kind, Kind::Mapped | Kind::EvalMapped | Kind::Finalized)
}

/// Does one item on the stack, as the scenario's body does; `keys` are those of the entries
/// still on the stack that have one, oldest first.
async fn push(
    stack: &mut ExitStack<Fault>,
    shared: &Shared,
    item: PItem,
    keys: &mut Vec<Key>,
) -> Result<(), Error<Fault>> {
    let ignored = matches!(item, PItem::TryEnter(_));
    if let Some(marks) = &shared.marks {
        let mut marks = lock(marks);
        match &item {
            PItem::Enter(leaves) | PItem::TryEnter(leaves) | PItem::EnterKeyed(leaves) => {
                marks.stacked.extend(leaves.iter().map(|(n, _)| n));
            }
            PItem::Defer(n, _) | PItem::PushExit(n, _) | PItem::Callback(n, _) => marks.stacked.push(*n),
            PItem::Release(_) => marks.released = true,
            PItem::PopAll => {}
        }
    }
    match item {
        PItem::Release(n) => {
            if !keys.is_empty() {
                let key = keys.remove(keys.len() - 1 - usize::from(n) % keys.len());
                stack.release(key).await?;
            }
            Ok(())
        }
        PItem::PopAll => {
            keys.clear();
            stack.pop_all().close().await
        }
        PItem::EnterKeyed(leaves) => {
            let kind = leaves[0].1.kind;
            let s = shared;
            let mut l = leaves.iter().copied();
            let count = leaves.len();
            let mut next = move || l.next().expect("counted");
            macro_rules! go {
                ($make:ident) => {
                    match count {
                        1 => stack.enter_with_key($make(s, next())).await.map(|(_, key)| key),
                        2 => stack
                            .enter_with_key(($make(s, next()), $make(s, next())))
                            .await
                            .map(|(_, key)| key),
                        _ => stack
                            .enter_with_key(($make(s, next()), $make(s, next()), $make(s, next())))
                            .await
                            .map(|(_, key)| key),
                    }
                };
            }
            let key = each_kind!(kind, leaves[0].0, go)?;
            keys.push(key);
            Ok(())
        }
        PItem::Enter(leaves) | PItem::TryEnter(leaves) => {
            let kind = leaves[0].1.kind;
            let s = shared;
            let mut l = leaves.iter().copied();
            let count = leaves.len();
            let mut next = move || l.next().expect("counted");
            macro_rules! go {
                ($make:ident) => {
                    match count {
                        1 => stack.enter($make(s, next())).await.map(drop),
                        2 => stack.enter(($make(s, next()), $make(s, next()))).await.map(drop),
                        _ => stack
                            .enter(($make(s, next()), $make(s, next()), $make(s, next())))
                            .await
                            .map(drop),
                    }
                };
            }
            let entered = each_kind!(kind, leaves[0].0, go);
            if !ignored {
                entered?;
            }
            Ok(())
        }
        PItem::Defer(n, step) => {
            let (shared, mut dropped) = (shared.clone(), Unless::armed(shared, n));
            keys.push(stack.defer(async move || {
                let _ = dropped.disarm();
                shared.push(Event::Exit(n, Seen::NotShown));
                pending(step).await;
                end(step.act, Fault::Exit(n), || format!("exit #{n} panicked"))
            }));
            Ok(())
        }
        PItem::PushExit(n, step) => {
            let (shared, mut dropped) = (shared.clone(), Unless::armed(shared, n));
            keys.push(stack.push_exit(async move |outcome: Outcome<'_, Fault>| {
                let _ = dropped.disarm();
                shared.push(Event::Exit(n, seen(outcome)));
                pending(step).await;
                end(step.act, Fault::Exit(n), || format!("exit #{n} panicked"))
            }));
            Ok(())
        }
        PItem::Callback(n, act) => {
            let (shared, mut dropped) = (shared.clone(), Unless::armed(shared, n));
            keys.push(stack.callback(move || {
                let _ = dropped.disarm();
                shared.push(Event::Exit(n, Seen::NotShown));
                end(act, Fault::Exit(n), || format!("exit #{n} panicked"))
            }));
            Ok(())
        }
    }
}
