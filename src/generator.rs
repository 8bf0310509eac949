//! Generator-style contexts: Python's `@asynccontextmanager`.
//!
//! One async closure holds setup and teardown around `cx.provide(value).await`, which hands the
//! value to the body and resumes with it and the outcome. The closure's future lives inline in
//! the scope's pinned state; the value travels through one shared slot, the only allocation.
//!
//! The outcome borrows the scope's error, which did not exist when the closure's future was
//! created. So the scope *lends* its newest error into the `Cx` for the teardown, and the `Cx`
//! gives it back when it is dropped (at the latest when the closure returns, or unwinds): a
//! teardown that ignores the error cannot suppress it.
//!
//! `provide` may be awaited away from the scope's own poll (in a task the closure spawned, or
//! under a combinator that polls only what was woken, such as `FuturesUnordered`), so each
//! hand-over wakes the other side: the scope when the value comes, the `provide` future when the
//! body is over. Once the scope is done with the context, the slot says so, and a `provide`
//! still around panics instead of waiting forever.

use alloc::sync::Arc;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::sync::{Mutex, MutexGuard};

use crate::context::{IntoContext, IntoLocalContext};
use crate::frame;
use crate::origin::{self, Origin};
use crate::outcome::Outcome;
use crate::protocol::{Entry, LocalStack, Protocol, Sealed, SendProtocol, SendStack};
use crate::unwind::{Deadline, Kind, Lent, Unwind};

/// Makes a context from one async closure: setup, then `cx.provide(value).await`, then teardown.
/// Python's `@asynccontextmanager`.
///
/// `provide` hands `value` to the body and resumes, once the body is over, with the value back
/// and the [`Outcome`] of the body, so that teardown can commit, roll back or log. An error
/// returned before `provide` is an enter error (no body, no teardown); one returned after it is
/// an exit error, kept with the others. The outcome's error is only *lent* to the teardown: the
/// caller gets it whatever the teardown does with it.
///
/// ```
/// use async_with::{context, with, Outcome};
///
/// struct Conn { log: Vec<String> }
///
/// # futures::executor::block_on(async {
/// let db = context(async |mut cx| {
///     let conn = Conn { log: vec!["BEGIN".into()] };           // setup
///     let (mut conn, outcome) = cx.provide(conn).await;        // the body runs here
///     let end = if outcome.is_completed() { "COMMIT" } else { "ROLLBACK" };
///     conn.log.push(end.into());                               // teardown
///     println!("{:?}", conn.log);
///     Ok::<_, String>(())
/// });
/// let n = with(db, async |conn| {
///     conn.log.push("INSERT".into());
///     Ok(conn.log.len())
/// })
/// .await
/// .unwrap();
/// assert_eq!(n, 2);
/// # });
/// ```
///
/// Use `context` when teardown needs what setup had in scope (a lock, a temp path, a child
/// handle), so that cleanup sits next to what it undoes; use [`resource`](crate::resource) when
/// setup and teardown are two separate functions already. A generator context costs one small
/// allocation per entry (the slot that carries the value out and back); `resource` costs none.
///
/// `provide` may be awaited in a task the closure spawns (the [`Cx`] is `Send`), as long as the
/// closure waits for that task: the context ends when the closure returns.
///
/// If the scope is dropped before it could exit (a dropped scope future, or an exit stack
/// dropped without closing), no teardown can run. Then, in [`with`](crate::with) as in exit
/// stacks, the value is dropped first, then the closure's future with the setup's locals (in
/// their own reverse order), at once; a panic in one of these destructors is contained, and the
/// others still run.
///
/// ```
/// use async_with::{context, Cx, ExitStack};
/// use std::sync::{Arc, Mutex};
///
/// struct Journaled(&'static str, Arc<Mutex<Vec<&'static str>>>);
/// impl Drop for Journaled {
///     fn drop(&mut self) { self.1.lock().unwrap().push(self.0) }
/// }
///
/// let dropped = Arc::new(Mutex::new(Vec::new()));
/// let log = dropped.clone();
/// let stack = ExitStack::<()>::new();
/// futures::executor::block_on(stack.enter(context(async move |mut cx: Cx<Journaled, ()>| {
///     let _lock = Journaled("setup's lock", log.clone());
///     let _ = cx.provide(Journaled("value", log)).await;
///     Ok(())
/// })))
/// .unwrap();
/// drop(stack); // not closed: no teardown
/// assert_eq!(*dropped.lock().unwrap(), ["value", "setup's lock"]);
/// ```
///
/// Misuse is reported as a panic with a clear message, which the scope treats like any panic
/// (the other exits run, then it resumes; the body's error is never lost, it goes to the
/// caller's error hook): returning `Ok` without calling `provide` (Python's "generator didn't
/// yield"); calling `provide` a second time (Python's "generator didn't stop"; the second value
/// is dropped and no second body runs); returning before the `provide` future resumed (it was
/// dropped, say by a `select!`; the value is dropped); keeping the `Cx` past the closure while it
/// holds the body's error (the one error that then cannot come back); and polling `provide`
/// after the context ended.
pub fn context<F, Fut, V, E>(generator: F) -> Generator<F, V, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    Generator { generator, types: PhantomData }
}

/// A generator-style context, built by [`context`].
///
/// ```
/// use async_with::{context, with};
///
/// # futures::executor::block_on(async {
/// let ctx = context(async |mut cx| {
///     let (_value, _outcome) = cx.provide(1).await;
///     Ok::<_, ()>(())
/// });
/// assert_eq!(with(ctx, async |one| Ok(*one)).await.unwrap(), 1);
/// # });
/// ```
#[must_use = "a context does nothing until a scope enters it"]
pub struct Generator<F, V, E> {
    generator: F,
    // The closure takes a `Cx<V, E>`: recorded here, since a closure type alone does not fix its
    // argument types. A function pointer keeps `Generator` `Send` and `Sync` whatever `V` is.
    types: PhantomData<fn(Cx<V, E>)>,
}

impl<F, V, E> fmt::Debug for Generator<F, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator").finish_non_exhaustive()
    }
}

/// The handle a generator context's closure gets: [`provide`](Cx::provide) hands the value to
/// the body.
///
/// ```
/// use async_with::{context, with, Cx, Outcome};
///
/// async fn teardown_logged(mut cx: Cx<String, String>) -> Result<(), String> {
///     let (name, outcome) = cx.provide("db".to_string()).await;
///     if let Outcome::Failed(e) = outcome {
///         println!("closing {name} after: {e}");
///     }
///     Ok(())
/// }
///
/// # futures::executor::block_on(async {
/// let err = with(context(teardown_logged), async |_| Err::<(), _>("boom".to_string().into())).await.unwrap_err();
/// assert_eq!(err.primary().unwrap(), "boom"); // the teardown only borrowed it
/// # });
/// ```
pub struct Cx<V, E> {
    slot: Arc<Slot<V, E>>,
    /// The scope's error, while the teardown borrows it; given back on drop.
    lent: Option<Lent<E>>,
}

impl<V, E> fmt::Debug for Cx<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx").finish_non_exhaustive()
    }
}

impl<V, E> Cx<V, E> {
    /// Hands `value` to the body and waits until the body is over; resumes with the value back
    /// and how the body ended. Call it once.
    ///
    /// ```
    /// use async_with::{context, with};
    ///
    /// # futures::executor::block_on(async {
    /// let ctx = context(async |mut cx| {
    ///     let (v, outcome) = cx.provide(vec![1, 2]).await;
    ///     assert_eq!(v, [1, 2, 3]);
    ///     assert!(outcome.is_completed());
    ///     Ok::<_, ()>(())
    /// });
    /// with(ctx, async |v| { v.push(3); Ok(()) }).await.unwrap();
    /// # });
    /// ```
    pub fn provide(&mut self, value: V) -> Provide<'_, V, E> {
        Provide { cx: Some(self), value: Some(value) }
    }
}

impl<V, E> Drop for Cx<V, E> {
    fn drop(&mut self) {
        if let Some(error) = self.lent.take() {
            self.slot.lock().returned = Some(error);
        }
    }
}

/// The future of [`Cx::provide`].
///
/// Await it to its end: dropping it after it has handed the value over (losing a `select!`) is
/// misuse, reported when the closure returns.
///
/// ```
/// use async_with::{context, Provide};
/// let ctx = context(async |mut cx| {
///     let provide: Provide<'_, u8, ()> = cx.provide(7);
///     let (_seven, _outcome) = provide.await;
///     Ok(())
/// });
/// # let _ = ctx;
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct Provide<'cx, V, E> {
    cx: Option<&'cx mut Cx<V, E>>,
    value: Option<V>,
}

impl<V, E> fmt::Debug for Provide<'_, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provide").field("handed_over", &self.value.is_none()).finish()
    }
}

// Nothing in `Provide` is pinned: it holds a reference and an optional value.
impl<V, E> Unpin for Provide<'_, V, E> {}

impl<'cx, V, E> Future for Provide<'cx, V, E> {
    type Output = (V, Outcome<'cx, E>);

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let cx = this.cx.as_mut().expect("async-with: `Provide` polled after completion");
        let mut slot = cx.slot.lock();
        let misuse = match (&slot.state, this.value.is_some()) {
            (State::Ended, _) => Some("async-with: `provide` was polled after its generator context ended"),
            (State::Setup, true) | (_, false) => None,
            (_, true) => Some("async-with: `provide` was called twice in one generator context"),
        };
        if let Some(message) = misuse {
            drop(slot);
            // Dropped now, not while the panic unwinds: its destructor may panic too.
            let value = this.value.take();
            crate::catch_unwind::quietly(|| drop(value));
            panic!("{message}");
        }
        if let Some(value) = this.value.take() {
            slot.state = State::Provided(value);
            // A scope that is polling the closure right now sees the value when that poll ends.
            let scope = if slot.polling { None } else { slot.scope.take() };
            register(&mut slot.provide, task);
            drop(slot);
            if let Some(scope) = scope {
                scope.wake();
            }
            return Poll::Pending;
        }
        match core::mem::replace(&mut slot.state, State::Teardown) {
            State::Resumed(value, kind, lent) => {
                let waker = slot.provide.take();
                drop(slot);
                drop(waker);
                let cx = this.cx.take().expect("checked above");
                cx.lent = lent;
                let outcome = match (kind, &cx.lent) {
                    (Kind::Completed, _) => Outcome::Completed,
                    (Kind::Failed, Some(error)) => Outcome::Failed(error.get()),
                    (Kind::Failed, None) => {
                        unreachable!("async-with: a failed outcome lends its error")
                    }
                    (Kind::Panicked, _) => Outcome::Panicked,
                    (Kind::Cancelled, _) => Outcome::Cancelled,
                };
                Poll::Ready((value, outcome))
            }
            state => {
                // The body has the value: woken when the scope resumes this future.
                slot.state = state;
                register(&mut slot.provide, task);
                Poll::Pending
            }
        }
    }
}

/// Keeps `task`'s waker in `waker`, cloning it only if it is not the one kept already.
fn register(waker: &mut Option<Waker>, task: &Context<'_>) {
    if !waker.as_ref().is_some_and(|kept| kept.will_wake(task.waker())) {
        *waker = Some(task.waker().clone());
    }
}

/// A generator closure seen as a function of `Cx<V, E>`, naming its future (which the
/// parenthesized `FnOnce(..)` syntax cannot do on stable Rust), so that the protocol state can hold
/// it and be `'static` whenever the closure is.
#[doc(hidden)]
pub trait GeneratorFn<V, E>: FnOnce(Cx<V, E>) -> <Self as GeneratorFn<V, E>>::Future {
    type Future: Future<Output = Result<(), E>>;
}

impl<F, Fut, V, E> GeneratorFn<V, E> for F
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Future = Fut;
}

/// What the scope and the closure's future share.
struct Slot<V, E> {
    inner: Mutex<Shared<V, E>>,
}

struct Shared<V, E> {
    state: State<V, E>,
    returned: Option<Lent<E>>,
    /// The scope is polling the closure right now: a hand-over made meanwhile needs no wake.
    polling: bool,
    /// The scope's waker, while its setup waits for a value handed over outside its polls.
    scope: Option<Waker>,
    /// The waker of the `provide` future waiting for the body to end.
    provide: Option<Waker>,
}

enum State<V, E> {
    /// The closure runs its setup.
    Setup,
    /// `provide` handed this over; the scope takes it.
    Provided(V),
    /// The body has the value.
    Body,
    /// The scope gives the value back, with the outcome and the error it lends.
    Resumed(V, Kind, Option<Lent<E>>),
    /// The closure took it back and runs its teardown.
    Teardown,
    /// The scope is done with the context: nothing more is handed over.
    Ended,
}

impl<V, E> Slot<V, E> {
    fn new(polling: bool) -> Self {
        let shared = Shared { state: State::Setup, returned: None, polling, scope: None, provide: None };
        Slot { inner: Mutex::new(shared) }
    }

    fn lock(&self) -> MutexGuard<'_, Shared<V, E>> {
        // A panic while the lock is held cannot leave `Shared` half-updated: every update is a
        // single assignment. So a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The scope's side of the slot. Held after the closure's future, so that it is dropped after
/// it: however the scope lets go of the context, the hand-over ends.
struct ScopeSide<V, E>(Arc<Slot<V, E>>);

/// What the slot still held when the hand-over ended: the state and the error a `Cx` gave back.
type Left<V, E> = (State<V, E>, Option<Lent<E>>);

impl<V, E> ScopeSide<V, E> {
    /// Ends the hand-over and returns what was left; a `provide` still waiting (in another task)
    /// is woken, to find out.
    fn end(&self) -> Left<V, E> {
        let mut shared = self.0.lock();
        let left = (core::mem::replace(&mut shared.state, State::Ended), shared.returned.take());
        let (provide, scope) = (shared.provide.take(), shared.scope.take());
        drop(shared);
        drop(scope);
        if let Some(provide) = provide {
            provide.wake();
        }
        left
    }
}

impl<V, E> Drop for ScopeSide<V, E> {
    fn drop(&mut self) {
        let left = self.end();
        crate::catch_unwind::quietly(|| drop(left));
    }
}

pin_project_lite::pin_project! {
    /// The closure, then its future (they share their storage), then nothing.
    #[project = StageProj]
    enum Stage<F, Fut> {
        Start { generator: Option<F> },
        Running { #[pin] future: Fut },
        Done,
    }
}

pin_project_lite::pin_project! {
    /// The protocol state of a [`Generator`] (sealed).
    #[doc(hidden)]
    pub struct Running<F, V, E>
    where
        F: GeneratorFn<V, E>,
    {
        #[pin]
        stage: Stage<F, <F as GeneratorFn<V, E>>::Future>,
        // After the stage: dropped after the closure's future.
        slot: Option<ScopeSide<V, E>>,
        types: PhantomData<fn() -> (V, E)>,
    }
}

impl<F: GeneratorFn<V, E>, V, E> fmt::Debug for Running<F, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let started = !matches!(self.stage, Stage::Start { .. });
        f.debug_struct("Running").field("started", &started).finish_non_exhaustive()
    }
}

impl<F: GeneratorFn<V, E>, V, E> Sealed for Running<F, V, E> {}

impl<F, Fut, V, E> IntoLocalContext for Generator<F, V, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Value = V;
    type Error = E;
    type LocalContext = Running<F, V, E>;

    async fn enter_local_stack<'a, 'env, S: LocalStack<'env, E>>(
        self,
        stack: &'a S,
    ) -> Result<(S::Key, &'a mut V), Option<E>>
    where
        Self: 'env,
        Self::Value: 'env,
        Self::Error: 'env,
        Self::LocalContext: 'env,
        'env: 'a,
    {
        let mut entry = alloc::boxed::Box::pin(GeneratorEntry::new(self));
        let mut unwind = Unwind::new();
        if entry.as_mut().enter(&mut unwind).await {
            Ok(stack.push_entry(entry, GeneratorEntry::value))
        } else {
            Err(stack.failed(unwind))
        }
    }

    fn into_local_context(self) -> Self::LocalContext {
        Running { stage: Stage::Start { generator: Some(self.generator) }, slot: None, types: PhantomData }
    }
}

impl<F, Fut, V, E> IntoContext for Generator<F, V, E>
where
    F: FnOnce(Cx<V, E>) -> Fut + Send,
    Fut: Future<Output = Result<(), E>> + Send,
    V: Send,
    E: Send + Sync,
{
    type Context = Running<F, V, E>;

    fn into_context(self) -> Self::Context {
        self.into_local_context()
    }

    async fn enter_stack<S: SendStack<E>>(self, stack: &S) -> Result<(S::Key, &mut V), Option<E>>
    where
        Self: 'static,
        Self::Value: 'static,
        Self::Error: 'static,
        Self::Context: Send + 'static,
    {
        let mut entry = alloc::boxed::Box::pin(GeneratorEntry::new(self));
        let mut unwind = Unwind::new();
        if entry.as_mut().enter(&mut unwind).await {
            Ok(stack.push_entry(entry, GeneratorEntry::value))
        } else {
            Err(stack.failed(unwind))
        }
    }
}

/// How the closure's teardown ended, as far as the hand-over cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TeardownEnd {
    /// It returned (or unwound) by itself.
    Returned,
    /// The scope's exit deadline stopped it.
    PastDeadline,
}

/// Where the setup ended up after one poll of the closure's future, if it is over.
enum Step<V, E> {
    Provided(V),
    Failed(E),
    /// It returned without a value for the body: a misuse, reported as a panic; what it
    /// returned (an error, recorded first) and what it left in the slot come with it.
    Misused(&'static str, Option<E>, State<V, E>),
}

/// What a teardown in progress keeps besides the closure's future.
struct Teardown<E> {
    /// Whether the teardown was lent the scope's error (which must come back).
    lent: bool,
    /// The scope's deadline for this exit, if it has one.
    deadline: Option<Deadline<E>>,
}

impl<E> Teardown<E> {
    const NOT_STARTED: Self = Teardown { lent: false, deadline: None };

    /// Polls the deadline, if there is one: the error to report once it has passed. A deadline
    /// that panics is a panic of the scope (recorded); the teardown goes on without one.
    fn poll_deadline(&mut self, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Option<E> {
        let deadline = self.deadline.as_mut()?;
        match std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| deadline.as_mut().poll(task))) {
            Ok(Poll::Ready(late)) => Some(late),
            Ok(Poll::Pending) => None,
            Err(payload) => {
                self.deadline = None;
                unwind.panicked(payload);
                None
            }
        }
    }
}

/// Runs `f`, which drops user state, and records a panic in it as the scope's.
fn dropping<E>(unwind: &mut Unwind<E>, f: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)) {
        unwind.panicked(payload);
    }
}

impl<F: GeneratorFn<V, E>, V, E> Running<F, V, E> {
    /// Drops the closure's future (or the closure, if it never started), here and now.
    fn stop(self: Pin<&mut Self>) {
        self.project().stage.set(Stage::Done);
    }

    // The closure's future may hold references into itself (`provide` borrows the `Cx` it
    // owns), so `Running` is only ever reached through `Pin<&mut>` and projections: a shared
    // borrow of the whole would invalidate them (Miri reports it).

    /// Ends the hand-over (see [`ScopeSide::end`]), if the closure started.
    fn end(self: Pin<&mut Self>) -> Left<V, E> {
        match self.project().slot {
            Some(side) => side.end(),
            None => (State::Ended, None),
        }
    }

    fn side(self: Pin<&mut Self>) -> &Slot<V, E> {
        &self.project().slot.as_ref().expect("async-with: the generator context has started").0
    }

    fn started(self: Pin<&mut Self>) -> bool {
        !matches!(self.project().stage.project(), StageProj::Start { .. })
    }

    /// What a scope that cannot exit does with an entered generator: it drops the value, then
    /// the closure's future (with the setup's locals), here and now. A panic in a destructor is
    /// contained, and does not keep the rest from being dropped.
    fn drop_entered(mut self: Pin<&mut Self>, value: V) {
        crate::catch_unwind::quietly(|| drop(value));
        crate::catch_unwind::quietly(|| self.as_mut().stop());
        let left = self.as_mut().end();
        crate::catch_unwind::quietly(|| drop(left));
    }
}

impl<F, Fut, V, E> Running<F, V, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    /// Polls the closure's future, if it is still running.
    fn poll_future(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Result<(), E>> {
        match self.project().stage.project() {
            StageProj::Running { future } => future.poll(task),
            _ => panic!("async-with: a generator context polled after it ended"),
        }
    }

    /// Starts the closure and runs its setup until it provides a value or returns.
    fn poll_setup(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Step<V, E>> {
        let mut this = self.as_mut().project();
        if let StageProj::Start { generator } = this.stage.as_mut().project() {
            let generator = generator.take().expect("started once");
            let slot = Arc::new(Slot::new(true));
            *this.slot = Some(ScopeSide(slot.clone()));
            this.stage.set(Stage::Running { future: generator(Cx { slot, lent: None }) });
        } else {
            self.as_mut().side().lock().polling = true;
        }
        let polled = self.as_mut().poll_future(task);
        let mut shared = self.as_mut().side().lock();
        shared.polling = false;
        let result = match (polled, core::mem::replace(&mut shared.state, State::Body)) {
            (Poll::Pending, State::Provided(value)) => {
                let scope = shared.scope.take();
                drop(shared);
                drop(scope);
                return Poll::Ready(Step::Provided(value));
            }
            (Poll::Pending, state) => {
                shared.state = state;
                register(&mut shared.scope, task);
                return Poll::Pending;
            }
            (Poll::Ready(result), state) => {
                shared.state = state;
                result
            }
        };
        drop(shared);
        self.as_mut().stop();
        let (state, _) = self.as_mut().end();
        Poll::Ready(match (result, state) {
            (Err(error), State::Setup) => Step::Failed(error),
            (Ok(()), State::Setup) => Step::Misused(
                "async-with: a generator context returned without calling `provide`",
                None,
                State::Setup,
            ),
            (result, state) => Step::Misused(
                "async-with: a generator context returned while its body had the value (was the `provide` future dropped?)",
                result.err(),
                state,
            ),
        })
    }

    /// Runs the setup (shielded, unless the scope interrupts enters and is cancelled: then it
    /// is dropped, never torn down); `Ready(None)` when it failed, panicked or was interrupted
    /// (recorded in `unwind`).
    fn poll_enter(
        mut self: Pin<&mut Self>,
        task: &mut Context<'_>,
        unwind: &mut Unwind<E>,
    ) -> Poll<Option<V>> {
        let scope = frame::current();
        // Cancelled before the setup started, or while it runs if enters are interruptible.
        if scope.cancelled && (scope.interrupt_enters || !self.as_mut().started()) {
            // Dropping an interrupted setup runs user code: a panic there is the scope's.
            dropping(unwind, || self.as_mut().stop());
            let left = self.as_mut().end();
            dropping(unwind, || drop(left));
            unwind.cancelled_by_frame();
            return Poll::Ready(None);
        }
        let polled = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            frame::shielded(|| self.as_mut().poll_setup(task))
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Step::Provided(value))) => Poll::Ready(Some(value)),
            Ok(Poll::Ready(Step::Failed(error))) => {
                unwind.failed(error, Origin::here(origin::Step::Enter));
                Poll::Ready(None)
            }
            Ok(Poll::Ready(Step::Misused(message, error, left))) => {
                if let Some(error) = error {
                    unwind.failed(error, Origin::here(origin::Step::Enter));
                }
                unwind.misuse(message);
                // The value it handed over, if any, goes now.
                dropping(unwind, || drop(left));
                Poll::Ready(None)
            }
            Err(payload) => {
                unwind.panicked(payload);
                // The closure unwound (or misused `provide`): what it left is dropped now.
                dropping(unwind, || self.as_mut().stop());
                let left = self.as_mut().end();
                dropping(unwind, || drop(left));
                Poll::Ready(None)
            }
        }
    }

    /// Resumes the closure for its teardown: with `value`, the outcome and the lent error.
    fn begin_exit(self: Pin<&mut Self>, value: V, teardown: &mut Teardown<E>, unwind: &mut Unwind<E>) {
        let (kind, lent) = unwind.lend();
        *teardown = Teardown { lent: lent.is_some(), deadline: unwind.deadline() };
        self.side().lock().state = State::Resumed(value, kind, lent);
    }

    /// Runs the teardown begun by [`Running::begin_exit`] and records how it ended. Polled in
    /// place by scopes and by exit stacks.
    fn poll_exit(
        mut self: Pin<&mut Self>,
        teardown: &mut Teardown<E>,
        task: &mut Context<'_>,
        unwind: &mut Unwind<E>,
    ) -> Poll<()> {
        let polled = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            frame::shielded(|| self.as_mut().poll_future(task))
        }));
        let (result, ended) = match polled {
            Ok(Poll::Ready(result)) => (Ok(result), TeardownEnd::Returned),
            Err(payload) => (Err(payload), TeardownEnd::Returned),
            Ok(Poll::Pending) => match teardown.poll_deadline(task, unwind) {
                Some(late) => (Ok(Err(late)), TeardownEnd::PastDeadline),
                None => {
                    self.as_mut().wake_provide();
                    return Poll::Pending;
                }
            },
        };
        teardown.deadline = None;
        // Past its deadline, the teardown is dropped here (its `Cx` gives the error back): a
        // panic in doing so is the scope's.
        dropping(unwind, || self.as_mut().stop());
        // The closure has returned or unwound, dropping its `Cx`, which gave the error back;
        // unless it never took it (nor the value): then both are still in the slot.
        let (state, returned) = self.as_mut().end();
        let (unclaimed, kept) = match state {
            State::Resumed(value, _, lent) => {
                if let Some(error) = lent {
                    unwind.restore(error);
                }
                (Some(value), false)
            }
            _ => match returned {
                Some(error) => {
                    unwind.restore(error);
                    (None, false)
                }
                None => (None, teardown.lent),
            },
        };
        unwind.exited(result);
        if let Some(value) = unclaimed {
            if ended == TeardownEnd::Returned {
                unwind.misuse(
                    "async-with: a generator context returned before its `provide` future resumed (was the `provide` future dropped?)",
                );
            }
            unwind.drop_value(value);
        }
        if kept {
            unwind.misuse(
                "async-with: a generator context's `Cx` outlived its closure and kept the scope's error",
            );
        }
        Poll::Ready(())
    }

    /// Wakes a `provide` future that the teardown's poll did not resume: it waits elsewhere (in
    /// another task, or under a combinator that polls only what was woken).
    fn wake_provide(self: Pin<&mut Self>) {
        let mut shared = self.side().lock();
        let waiting = match shared.state {
            State::Resumed(..) => shared.provide.take(),
            _ => None,
        };
        drop(shared);
        if let Some(provide) = waiting {
            provide.wake();
        }
    }
}

/// The future of a generator's enter, polled in place by the scope.
pub(crate) struct Setup<'a, 'u, S: ?Sized, E> {
    running: Pin<&'a mut S>,
    unwind: &'u mut Unwind<E>,
}

impl<F, Fut, V, E> Future for Setup<'_, '_, Running<F, V, E>, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Output = Option<V>;

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Option<V>> {
        let this = &mut *self;
        this.running.as_mut().poll_enter(task, this.unwind)
    }
}

/// The future of a generator's exit, polled in place by the scope: the closure was resumed when
/// it was made.
pub(crate) struct Exit<'a, 'u, S: ?Sized, E> {
    running: Pin<&'a mut S>,
    teardown: Teardown<E>,
    unwind: &'u mut Unwind<E>,
}

// Nothing in the exit future is pinned: it refers to the pinned state.
impl<S: ?Sized, E> Unpin for Exit<'_, '_, S, E> {}

impl<F, Fut, V, E> Future for Exit<'_, '_, Running<F, V, E>, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.running.as_mut().poll_exit(&mut this.teardown, task, this.unwind)
    }
}

pin_project_lite::pin_project! {
    /// A generator context entered into an exit stack: its running closure and its value, in
    /// the entry's one allocation.
    pub(crate) struct GeneratorEntry<F, V, E>
    where
        F: GeneratorFn<V, E>,
    {
        #[pin]
        running: Running<F, V, E>,
        value: Option<V>,
        teardown: Teardown<E>,
    }

    impl<F, V, E> PinnedDrop for GeneratorEntry<F, V, E>
    where
        F: GeneratorFn<V, E>,
    {
        fn drop(this: Pin<&mut Self>) {
            // Dropped without having exited (the stack was dropped, not closed): what `with`
            // does when it is dropped.
            let this = this.project();
            if let Some(value) = this.value.take() {
                this.running.drop_entered(value);
            }
        }
    }
}

impl<F, Fut, V, E> GeneratorEntry<F, V, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    pub(crate) fn new(generator: Generator<F, V, E>) -> Self {
        GeneratorEntry {
            running: generator.into_local_context(),
            value: None,
            teardown: Teardown::NOT_STARTED,
        }
    }

    /// Runs the setup; `false` (recorded in `unwind`) when it failed or panicked.
    pub(crate) async fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<E>) -> bool {
        let this = self.project();
        *this.value = Setup { running: this.running, unwind }.await;
        this.value.is_some()
    }

    pub(crate) fn value(self: Pin<&mut Self>) -> &mut V {
        self.project().value.as_mut().expect("async-with: the value is lent after a successful enter")
    }
}

impl<F, Fut, V, E> Entry<E> for GeneratorEntry<F, V, E>
where
    F: FnOnce(Cx<V, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    fn poll_exit(self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Poll<()> {
        let mut this = self.project();
        if let Some(value) = this.value.take() {
            this.running.as_mut().begin_exit(value, this.teardown, unwind);
        }
        this.running.poll_exit(this.teardown, task, unwind)
    }
}

macro_rules! generator_protocol {
    ($Protocol:ident $(, $bound:ident)*) => {
        impl<F, Fut, V, E> $Protocol for Running<F, V, E>
        where
            F: FnOnce(Cx<V, E>) -> Fut $(+ $bound)*,
            Fut: Future<Output = Result<(), E>> $(+ $bound)*,
            V: $($bound +)*,
            E: $($bound + Sync +)*,
        {
            type Value = V;
            type Error = E;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<E>) -> impl Future<Output = Option<V>> $(+ $bound)* {
                Setup { running: self, unwind }
            }

            fn exit(mut self: Pin<&mut Self>, value: V, unwind: &mut Unwind<E>) -> impl Future<Output = ()> $(+ $bound)* {
                let mut teardown = Teardown::NOT_STARTED;
                self.as_mut().begin_exit(value, &mut teardown, unwind);
                Exit { running: self, teardown, unwind }
            }

            fn fallback(self: Pin<&mut Self>, value: V) {
                // Nothing async can run: the value is dropped, then the closure's future, here and
                // now (its locals' destructors run in their turn, not later with the state).
                self.drop_entered(value);
            }
        }
    };
}

generator_protocol!(Protocol);
generator_protocol!(SendProtocol, Send);
