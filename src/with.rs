//! Entering contexts around a body: Python's `async with`, Cats Effect's `Resource.use`; and the
//! [`Scope`] options that every scope shares (cancellation, exit deadlines, the error hook).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::future::{Future, Pending, pending};
use core::marker::PhantomData;
use core::pin::{Pin, pin};
use core::task::{Context, Poll};

use crate::catch_unwind::{Caught, Payload, call};
use crate::context::{IntoContext, IntoLocalContext};
use crate::error::{Cause, Error};
use crate::frame::{self, Frame};
use crate::hook::{ErrorHook, GlobalHook};
use crate::protocol::{Held, Protocol, SendProtocol};
use crate::unwind::{BodyEnd, Deadlines, Unwind};

/// Enters `context`, runs `body` with its value, exits, and returns the body's value or every
/// error: Python's `async with context as value: body`.
///
/// - The body borrows the value (`&mut V`); the exit gets it back by value afterwards.
/// - The body returns `Result<T, Error<E>>`: `?` works on the contexts' error type `E` and on a
///   scope nested inside, whose whole error (primary, suppressed, cancellation) passes on.
/// - `context` may be a tuple of up to 8 contexts: they are entered left to right, exited right to
///   left, and the body borrows the tuple of their values. If the k-th enter fails, the k-1 entered
///   ones are exited (seeing [`Outcome::Failed`](crate::Outcome::Failed)) and nothing else runs.
/// - Every exit runs exactly once, whether the body returns `Ok`, `Err` or panics; see
///   [`Error`] for how errors are kept and the crate docs for panics and cancellation.
///
/// The future holds everything inline (no heap allocation) and is `Send` when the body is: the
/// contexts' own futures always are. For `!Send` contexts use [`with_local`]. For cancellation,
/// exit deadlines or another error hook, start from a [`Scope`].
///
/// ```
/// use async_with::{resource, with, Outcome};
///
/// # futures::executor::block_on(async {
/// let log = std::sync::Mutex::new(Vec::new());
/// let open = |name: &'static str| {
///     let log = &log;
///     resource(
///         async move || { log.lock().unwrap().push(format!("enter {name}")); Ok::<_, String>(name) },
///         async move |name, _: Outcome<'_, String>| { log.lock().unwrap().push(format!("exit {name}")); Ok(()) },
///     )
/// };
/// let both = with((open("a"), open("b")), async |(a, b)| Ok(format!("{a}{b}"))).await.unwrap();
/// assert_eq!(both, "ab");
/// assert_eq!(*log.lock().unwrap(), ["enter a", "enter b", "exit b", "exit a"]);
/// # });
/// ```
// Not an `async fn`: returning the scope's future itself saves a layer of state machine.
pub fn with<C, T, B>(context: C, body: B) -> impl Future<Output = Result<T, Error<C::Error>>>
where
    C: IntoContext,
    C::Error: fmt::Debug,
    B: AsyncFnOnce(&mut C::Value) -> Result<T, Error<C::Error>>,
{
    Scope::new().with(context, body)
}

/// [`with`] for contexts whose futures are not `Send`: [`LocalAsyncContext`](crate::LocalAsyncContext)
/// types, closures holding `Rc`s. Runs on any executor that does not move tasks between threads.
///
/// ```
/// use async_with::{resource, with_local, Outcome};
/// use std::{cell::Cell, rc::Rc};
///
/// let open = Rc::new(Cell::new(0));
/// let (enter, exit) = (open.clone(), open.clone());
/// let ctx = resource(
///     async move || { enter.set(enter.get() + 1); Ok::<_, ()>(()) },
///     async move |(), _: async_with::Outcome<'_, ()>| { exit.set(exit.get() - 1); Ok(()) },
/// );
/// let executor = smol::LocalExecutor::new();
/// let inside = futures::executor::block_on(executor.run(async {
///     with_local(ctx, async |_| Ok(open.get())).await
/// }));
/// assert_eq!((inside.unwrap(), open.get()), (1, 0));
/// ```
pub fn with_local<C, T, B>(context: C, body: B) -> impl Future<Output = Result<T, Error<C::Error>>>
where
    C: IntoLocalContext,
    C::Error: fmt::Debug,
    B: AsyncFnOnce(&mut C::Value) -> Result<T, Error<C::Error>>,
{
    Scope::new().with_local(context, body)
}

/// Options for a scope: what cancels it, how long each exit may take, and where errors go that
/// cannot be returned. [`Scope::with`] and [`Scope::scope`] run a body under them; [`with`] and
/// [`scope`](crate::scope) are `Scope::new().with(..)` and `Scope::new().scope(..)`.
///
/// # Cancellation
///
/// Rust cancels a future by dropping it, and no destructor can await. So a scope offers two kinds:
///
/// - **Cooperative** ([`cancel_on`](Scope::cancel_on)): a *signal*, any future (a timer of any
///   runtime, a channel, a [`CancellationToken`](crate::CancellationToken)), is polled once each
///   time the scope is polled, until the scope runs its exits. Once it has fired, the body is
///   dropped at its current await and every exit runs to completion seeing
///   [`Outcome::Cancelled`](crate::Outcome::Cancelled); a body that ends after that counts as
///   cancelled too (its value is dropped, its error suppressed). An enter in progress finishes
///   (acquisition is not interrupted, as in Cats Effect), one not started never starts, the body
///   never starts, and what was entered is exited at once with `Cancelled`;
///   [`interrupt_enters`](Scope::interrupt_enters) drops the enter in progress instead (it is then
///   never exited). Exits are shielded: they run to completion, each bounded by the
///   [`exit_deadline`](Scope::exit_deadline) if there is one. The result is an [`Error`] that
///   [`is_cancelled`](Error::is_cancelled), with every exit error in it.
/// - **Structured**: a scope is also cancelled when the scope whose body polls it is (see the
///   crate docs). Then it behaves as if its own signal had fired, and the scope around it drops
///   its body only once this one has finished its exits; an exit-stack enter or `release` in
///   progress in the body is waited for the same way (the body then goes on to its next await).
///   Each scope keeps its own [`interrupt_enters`](Scope::interrupt_enters) setting.
/// - **By drop** (a `select!`, a runtime's `timeout` or a dropped task drops the scope's future):
///   the remaining exits cannot be awaited in place. By default each remaining context runs its
///   synchronous fallback, newest first, inside `Drop` (dropping its value, unless it was given
///   one: [`AsyncContext::exit_on_drop`](crate::AsyncContext::exit_on_drop),
///   [`Resource::on_drop`](crate::Resource::on_drop)), and the process-wide drop hook is told
///   (see [`set_drop_hook`](crate::set_drop_hook)). [`detach_on_drop`](crate::detach_on_drop)
///   instead hands the rest of the scope to a task that runs every exit to completion. Nothing
///   blocks, in `poll` or in `Drop`. A scope future that is `mem::forget`-ten runs nothing at all:
///   no exit, no fallback, no report. No library can promise anything there.
///
/// ```
/// use async_with::{resource, Outcome, Scope};
/// use std::time::Duration;
///
/// # smol::block_on(async {
/// let conn = resource(async || Ok::<_, String>("conn"), async |conn, outcome: Outcome<'_, String>| {
///     smol::Timer::after(Duration::from_millis(5)).await; // async cleanup, even after a timeout
///     println!("closed {conn}: {outcome:?}");
///     Ok(())
/// });
/// let err = Scope::new()
///     .cancel_on(smol::Timer::after(Duration::from_millis(10))) // a cooperative timeout
///     .with(conn, async |_| {
///         smol::Timer::after(Duration::from_secs(3600)).await; // a slow query
///         Ok(())
///     })
///     .await
///     .unwrap_err();
/// assert!(err.is_cancelled());
/// # });
/// ```
#[must_use = "a scope does nothing until `with` or `scope` is called and awaited"]
pub struct Scope<H = GlobalHook, S = Pending<()>, D = NoDeadline> {
    pub(crate) hook: H,
    signal: S,
    /// Whether `cancel_on` gave the scope a signal of its own (for `Debug`).
    own_signal: bool,
    interrupt_enters: bool,
    deadline: D,
}

impl<H: fmt::Debug, S, D> fmt::Debug for Scope<H, S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("hook", &self.hook)
            .field("own_signal", &self.own_signal)
            .field("interrupt_enters", &self.interrupt_enters)
            .finish_non_exhaustive()
    }
}

impl Default for Scope {
    fn default() -> Self {
        Self::new()
    }
}

impl Scope {
    /// A scope with no signal of its own (it is still cancelled with the scope it runs in), no
    /// exit deadline, and that reports to the process-wide hook.
    ///
    /// ```
    /// let scope = async_with::Scope::new();
    /// # let _ = scope;
    /// ```
    pub fn new() -> Self {
        Scope {
            hook: GlobalHook,
            signal: pending(),
            own_signal: false,
            interrupt_enters: false,
            deadline: NoDeadline,
        }
    }
}

/// No exit deadline: the default of a [`Scope`].
///
/// ```
/// let _: async_with::Scope<async_with::GlobalHook, std::future::Pending<()>, async_with::NoDeadline> = async_with::Scope::new();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeadline;

/// What [`Scope::exit_deadline`] accepts: a function making one deadline future per exit, which
/// completes with the error to report for an exit still running then. Implemented by
/// [`NoDeadline`] and by every such `Fn`.
///
/// ```
/// use async_with::ExitDeadline;
/// fn check<D: ExitDeadline<String>>(_: D) {}
/// check(|| async { "exit too slow".to_string() });
/// ```
pub trait ExitDeadline<E> {
    /// Converts into the shared form a scope hands its contexts.
    #[doc(hidden)]
    fn into_deadlines(self) -> Option<Deadlines<E>>;
}

impl<E> ExitDeadline<E> for NoDeadline {
    #[inline]
    fn into_deadlines(self) -> Option<Deadlines<E>> {
        None
    }
}

impl<E, F, Fut> ExitDeadline<E> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = E> + Send + 'static,
{
    fn into_deadlines(self) -> Option<Deadlines<E>> {
        Some(Arc::new(Box::new(move || Box::pin(self()) as crate::unwind::Deadline<E>)))
    }
}

pin_project_lite::pin_project! {
    /// A signal that completes when either of two does (see [`Scope::cancel_on`]).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct AnyOf<A, B> {
        #[pin]
        first: A,
        #[pin]
        second: B,
    }
}

/// The signals of a scope: none ([`Pending`](core::future::Pending), before the first
/// `cancel_on`) or those of an [`AnyOf`]. Polled, it tells which one fired (the index of its
/// `cancel_on` call), for [`Error::cancelled_by`].
#[doc(hidden)]
pub trait Signals {
    /// How many signals: the index of the next `cancel_on`.
    #[doc(hidden)]
    const COUNT: u32;

    /// `Ready(index)` once the signal of the `index`th `cancel_on` fired.
    #[doc(hidden)]
    fn poll_fired(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<u32>;
}

impl Signals for core::future::Pending<()> {
    const COUNT: u32 = 0;

    #[inline]
    fn poll_fired(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
        Poll::Pending
    }
}

impl<A: Signals, B: Future> Signals for AnyOf<A, B> {
    const COUNT: u32 = A::COUNT + 1;

    #[inline]
    fn poll_fired(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<u32> {
        let this = self.project();
        if let Poll::Ready(index) = this.first.poll_fired(task) {
            return Poll::Ready(index);
        }
        match this.second.poll(task) {
            Poll::Ready(_) => Poll::Ready(A::COUNT),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<H, S, D> Scope<H, S, D> {
    /// Sends the exit errors that happen while a panic is propagating to `hook`, one at a time
    /// and in order, instead of the process-wide hook. The panic resumes after the last one.
    ///
    /// ```
    /// use async_with::Scope;
    /// let scope = Scope::new().on_error_during_panic(|e: std::io::Error| eprintln!("{e}"));
    /// # let _ = scope;
    /// ```
    pub fn on_error_during_panic<G>(self, hook: G) -> Scope<G, S, D> {
        let Scope { signal, own_signal, interrupt_enters, deadline, .. } = self;
        Scope { hook, signal, own_signal, interrupt_enters, deadline }
    }

    /// Also cancels the scope when `signal` completes (its output is ignored). See the type's
    /// docs on cancellation.
    ///
    /// ```
    /// use async_with::{CancellationToken, Scope};
    /// let token = CancellationToken::new();
    /// let scope = Scope::new().cancel_on(token.cancelled());
    /// # let _ = scope;
    /// ```
    pub fn cancel_on<T: Future>(self, signal: T) -> Scope<H, AnyOf<S, T>, D> {
        let Scope { hook, signal: before, interrupt_enters, deadline, .. } = self;
        Scope {
            hook,
            signal: AnyOf { first: before, second: signal },
            own_signal: true,
            interrupt_enters,
            deadline,
        }
    }

    /// Lets a cancellation interrupt an enter in progress: the enter is dropped, and that context
    /// is never exited (its enter must clean up after itself in its own `Drop`). By default an
    /// enter runs to its end and the context is then exited at once. It applies to this scope's
    /// own enters and to exit-stack enters in its body, not to scopes nested inside.
    ///
    /// ```
    /// let scope = async_with::Scope::new().interrupt_enters();
    /// # let _ = scope;
    /// ```
    pub fn interrupt_enters(mut self) -> Self {
        self.interrupt_enters = true;
        self
    }

    /// Bounds each exit: `deadline` is called when an exit starts, and if its future completes
    /// first, the exit is dropped and the error it gives is reported in the exit's place (G5).
    /// The function is shared with everything that exits in the scope (one allocation per
    /// scope), and each deadline future is boxed (one allocation per exit).
    ///
    /// ```
    /// use async_with::Scope;
    /// use std::time::Duration;
    /// let scope = Scope::new().exit_deadline(|| async {
    ///     smol::Timer::after(Duration::from_secs(5)).await;
    ///     std::io::Error::from(std::io::ErrorKind::TimedOut)
    /// });
    /// # let _ = scope;
    /// ```
    pub fn exit_deadline<F>(self, deadline: F) -> Scope<H, S, F> {
        let Scope { hook, signal, own_signal, interrupt_enters, .. } = self;
        Scope { hook, signal, own_signal, interrupt_enters, deadline }
    }
}

pin_project_lite::pin_project! {
    /// A scope's future: its own signal and its place in the scopes around it, around the
    /// async code that enters, runs the body and exits (see [`crate::frame`]).
    ///
    /// Each poll first works out whether the scope is cancelled (the scope it runs in is, or
    /// its own signal fired), then polls the scope's code with a frame that says so. A scope
    /// that returns `Pending` tells the scope around it that it is still busy. A signal that
    /// panics cancels the scope too, and its panic is the scope's (the exits see `Panicked`,
    /// then it resumes): the payload waits here until the scope's unwinder takes it.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct Scoped<S, F> {
        #[pin]
        signal: S,
        // Why the scope is cancelled: the code of a `Cause` (0 until it is). Its reason, rare,
        // is in `fired`, or the parent's frame has it.
        cause: u32,
        exiting: bool,
        interrupt_enters: bool,
        fired: Option<Box<Fired>>,
        #[pin]
        scope: F,
    }
}

/// What a scope's signal left when it fired, rarely: kept out of line, so that the scope's
/// future stays small (a signal that fires without a reason and without a panic leaves none).
#[derive(Default)]
struct Fired {
    /// The payload of a signal that panicked, until the scope's unwinder takes it.
    #[cfg(feature = "std")]
    panic: Option<Payload>,
    /// The reason the signal gave.
    reason: Option<&'static str>,
}

impl<S, F> Scoped<S, F> {
    #[inline]
    pub(crate) fn new(signal: S, interrupt_enters: bool, scope: F) -> Self {
        Scoped { signal, cause: 0, exiting: false, interrupt_enters, fired: None, scope }
    }
}

/// Polls a scope's signals: the cause once one has fired (which one); a panic in one counts as
/// firing. The reason it gave and its panic are kept in `fired`.
#[inline]
fn poll_signal<S: Signals>(
    signal: Pin<&mut S>,
    task: &mut Context<'_>,
    fired: &mut Option<Box<Fired>>,
) -> Option<u32> {
    if S::COUNT == 0 {
        return None; // no signal of its own: nothing to poll
    }
    #[cfg(feature = "std")]
    {
        let caught = frame::reason_of(|| {
            std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| signal.poll_fired(task)))
        });
        match caught {
            (Ok(Poll::Pending), _) => None,
            (Ok(Poll::Ready(index)), reason) => {
                if reason.is_some() {
                    *fired = Some(Box::new(Fired { reason, ..Fired::default() }));
                }
                Some(index)
            }
            (Err(payload), _) => {
                *fired = Some(Box::new(Fired { panic: Some(payload), ..Fired::default() }));
                Some(0)
            }
        }
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = fired;
        match signal.poll_fired(task) {
            Poll::Ready(index) => Some(index),
            Poll::Pending => None,
        }
    }
}

/// Polls a cancelled scope's code, in a frame that says so, with its cause (and the payload of
/// its signal's panic, if it panicked) where the scope's unwinder finds them.
#[cold]
#[inline(never)]
fn poll_cancelled<F: Future>(
    code: u32,
    interrupt_enters: bool,
    fired: &mut Option<Box<Fired>>,
    scope: Pin<&mut F>,
    task: &mut Context<'_>,
) -> (Poll<F::Output>, Frame) {
    let cause = match code {
        // Cancelled with the scope around: it is still polled by that scope's body.
        1 => Cause::parent(frame::cause()),
        code => Cause { code, reason: fired.as_ref().and_then(|fired| fired.reason) },
    };
    #[cfg(feature = "std")]
    let payload = fired.as_mut().and_then(|fired| fired.panic.take());
    let mine = Frame {
        cancelled: true,
        interrupt_enters,
        #[cfg(feature = "std")]
        panicking: payload.is_some(),
        ..Frame::SHIELDED
    };
    #[cfg(feature = "std")]
    {
        frame::with_cause(cause, || match payload {
            None => frame::within(mine, || scope.poll(task)),
            Some(payload) => frame::within(mine, || {
                let mut offered = Some(payload);
                let poll = frame::offering(&mut offered, || scope.poll(task));
                if let Some(fired) = fired.as_mut() {
                    fired.panic = offered;
                }
                poll
            }),
        })
    }
    #[cfg(not(feature = "std"))]
    {
        let _ = cause; // no thread-locals to keep it in: errors say `cancelled_by() == None`
        frame::within(mine, || scope.poll(task))
    }
}

impl<S: Signals, F: Future> Future for Scoped<S, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !*this.exiting && *this.cause == 0 {
            // The scope around (if any) first: a cancelled parent cancels its children.
            let parent = frame::current();
            if parent.cancelled {
                *this.cause = Cause::parent(frame::cause()).code;
            } else if let Some(index) = poll_signal(this.signal, task, this.fired) {
                *this.cause = Cause::signal(index, None).code;
            }
        }
        let (poll, left) = if *this.cause == 0 {
            // The happy path: not cancelled (so no signal panicked either), nothing but the frame.
            // `interrupt_enters` is only read beside `cancelled`, which only `poll_cancelled`
            // sets, with this scope's setting.
            frame::within(Frame::SHIELDED, || this.scope.poll(task))
        } else {
            poll_cancelled(*this.cause, *this.interrupt_enters, this.fired, this.scope, task)
        };
        *this.exiting |= left.exiting;
        if poll.is_pending() {
            frame::mark_busy();
        }
        #[cfg(feature = "std")]
        if poll.is_ready() {
            // Every path of a scope records its cancellation, which takes the payload; one left
            // here would be a panic lost, so it resumes.
            if let Some(payload) = this.fired.as_mut().and_then(|fired| fired.panic.take()) {
                std::panic::resume_unwind(payload);
            }
        }
        poll
    }
}

pin_project_lite::pin_project! {
    /// A scope's body, polled in place until it ends or the scope is cancelled: then it is
    /// dropped at its current await, but only once nothing inside it is still busy (a scope
    /// inside it running its exits, an exit-stack enter or release in progress). `None` when
    /// cancelled.
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct RunBody<M, F> {
        #[pin]
        body: Caught<M, F>,
        // Something inside the body was still busy at its last poll.
        busy: bool,
    }
}

impl<M: FnOnce() -> F, F: Future> RunBody<M, F> {
    /// The body `make` makes, polled in place; its first poll calls `make` (a panic in the call
    /// is the body's).
    #[inline]
    pub(crate) fn new(make: M) -> Self {
        RunBody { body: call(make), busy: false }
    }
}

impl<M: FnOnce() -> F, F: Future> Future for RunBody<M, F> {
    type Output = BodyEnd<F::Output>;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let scope = frame::current();
        if scope.cancelled && !*this.busy {
            return Poll::Ready(BodyEnd::Stopped(dropped(this.body)));
        }
        // Polled in the scope's own frame (the one `scope` was read from), which says nothing
        // busy before (`Scoped::poll` set it up so, and enters mark frames of their own): what
        // marked it busy was inside the body. The mark is cleared again after.
        debug_assert!(!scope.busy, "a body is polled in its scope's frame, not marked busy yet: {scope:?}");
        let poll = this.body.as_mut().poll(task);
        *this.busy = frame::take_busy();
        match poll {
            Poll::Ready(out) => Poll::Ready(BodyEnd::Ended(out)),
            // Cancelled, and nothing inside is busy: the body stops at this await.
            Poll::Pending if scope.cancelled && !*this.busy => {
                Poll::Ready(BodyEnd::Stopped(dropped(this.body)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Drops a stopped body here and now; a panic in a destructor in it is returned.
fn dropped<M, F>(mut body: Pin<&mut Caught<M, F>>) -> Option<Payload> {
    #[cfg(feature = "std")]
    {
        std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| body.set(Caught::Done))).err()
    }
    #[cfg(not(feature = "std"))]
    {
        body.set(Caught::Done);
        None
    }
}

/// Tells the process-wide drop hook when a scope future is dropped before it finished. Declared
/// first in the scope's frame, so that it is dropped last: after the fallbacks ran.
pub(crate) struct DropReport<C: ?Sized> {
    stack: bool,
    armed: bool,
    context: PhantomData<fn(&C)>,
}

impl<C: ?Sized> DropReport<C> {
    /// A report for a `with` scope, or for a `scope` (`stack`), armed by its first poll: a scope
    /// future dropped before that entered nothing, and has nothing to report.
    #[inline]
    pub(crate) fn new(stack: bool) -> Self {
        DropReport { stack, armed: false, context: PhantomData }
    }

    #[inline]
    pub(crate) fn arm(&mut self) {
        self.armed = true;
    }

    #[inline]
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<C: ?Sized> Drop for DropReport<C> {
    fn drop(&mut self) {
        if self.armed {
            let scope = if self.stack { "scope" } else { "with" };
            crate::hook::report_dropped(scope, core::any::type_name::<C>());
        }
    }
}

// One body for both flavours: they differ only in the protocol trait that drives the contexts.
// Every user future is created in place (not passed by value into an `async fn`, which would
// store it twice, rust-lang/rust#62958), so a nested scope grows by its own state only.
macro_rules! run_with {
    ($scope:expr, $context:ident . $into:ident (), $State:ty, $Into:ty, $body:expr, $Protocol:ident) => {{
        let Scope { mut hook, signal, interrupt_enters, deadline, .. } = $scope;
        // Made out here and moved in, so that the scope's state holds each of them once.
        let mut unwind = Unwind::with_deadlines(deadline.into_deadlines());
        let mut report = DropReport::<$Into>::new(false);
        let body = $body;
        Scoped::new(signal, interrupt_enters, async move {
            report.arm();
            // Converted in here: the protocol state (a generator's whole future, say) is held
            // once, pinned, rather than captured and then moved into a pinned local.
            let mut context = pin!($context.$into());
            // Matched without a binding that lives on: the enter's result is moved into `held`.
            let mut held = match $Protocol::enter(context.as_mut(), &mut unwind).await {
                Some(value) => Held::new(context, value, <$State as $Protocol>::fallback),
                None => {
                    // A signal that fired (or panicked) meanwhile is recorded like any other.
                    unwind.cancel_requested();
                    report.disarm();
                    return unwind.finish(None, &mut hook);
                }
            };
            let out = if unwind.cancel_requested() {
                BodyEnd::Stopped(None) // cancelled while entering: the body never starts
            } else {
                RunBody::new(|| body(held.value())).await
            };
            let out = unwind.body_ended(out);
            frame::mark_exiting();
            let (state, value) = held.release();
            $Protocol::exit(state, value, &mut unwind).await;
            report.disarm();
            unwind.finish(out, &mut hook)
        })
    }};
}

impl<H, S: Signals, D> Scope<H, S, D> {
    /// Enters `context` around `body`, as [`with`] does, under this scope's options.
    ///
    /// ```
    /// use async_with::{resource, Outcome, Scope};
    ///
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, ()>(String::from("x")), async |_, _: Outcome<'_, ()>| Ok(()));
    /// let len = Scope::new().with(ctx, async |s| Ok(s.len())).await.unwrap();
    /// assert_eq!(len, 1);
    /// # });
    /// ```
    pub fn with<C, T, B>(self, context: C, body: B) -> impl Future<Output = Result<T, Error<C::Error>>>
    where
        C: IntoContext,
        H: ErrorHook<C::Error>,
        D: ExitDeadline<C::Error>,
        B: AsyncFnOnce(&mut C::Value) -> Result<T, Error<C::Error>>,
    {
        crate::trace::scope(
            "with",
            run_with!(self, context.into_context(), C::Context, C, body, SendProtocol),
        )
    }

    /// Enters `context` around `body`, as [`with_local`] does, under this scope's options.
    ///
    /// ```
    /// use async_with::{resource, Outcome, Scope};
    /// use std::rc::Rc;
    ///
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, ()>(Rc::new(3)), async |_, _: Outcome<'_, ()>| Ok(()));
    /// let three = Scope::new().with_local(ctx, async |n| Ok(**n)).await.unwrap();
    /// assert_eq!(three, 3);
    /// # });
    /// ```
    pub fn with_local<C, T, B>(self, context: C, body: B) -> impl Future<Output = Result<T, Error<C::Error>>>
    where
        C: IntoLocalContext,
        H: ErrorHook<C::Error>,
        D: ExitDeadline<C::Error>,
        B: AsyncFnOnce(&mut C::Value) -> Result<T, Error<C::Error>>,
    {
        crate::trace::scope(
            "with",
            run_with!(self, context.into_local_context(), C::LocalContext, C, body, Protocol),
        )
    }

    /// Splits the options for a scope runner: the hook, the signal, whether enters are
    /// interrupted, and the exit deadlines.
    #[cfg(feature = "std")]
    pub(crate) fn into_parts<E>(self) -> (H, S, bool, Option<Deadlines<E>>)
    where
        D: ExitDeadline<E>,
    {
        let Scope { hook, signal, interrupt_enters, deadline, .. } = self;
        (hook, signal, interrupt_enters, deadline.into_deadlines())
    }
}
