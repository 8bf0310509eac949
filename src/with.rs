//! Entering contexts around a body: Python's `async with`, Cats Effect's `Resource.use`.

use core::fmt;
use core::pin::pin;

use crate::protocol::{Protocol, SendProtocol};
use crate::unwind::Unwind;
use crate::{Error, ErrorHook, GlobalHook, IntoContext, IntoLocalContext};

/// Enters `context`, runs `body` with its value, exits, and returns the body's value or every
/// error: Python's `async with context as value: body`.
///
/// - The body borrows the value (`&mut V`); the exit gets it back by value afterwards.
/// - `context` may be a tuple of up to 8 contexts: they are entered left to right, exited right to
///   left, and the body borrows the tuple of their values. If the k-th enter fails, the k-1 entered
///   ones are exited (seeing [`Outcome::Failed`](crate::Outcome::Failed)) and nothing else runs.
/// - Every exit runs exactly once, whether the body returns `Ok`, `Err` or panics; see
///   [`Error`] for how errors are kept and the crate docs for panics.
///
/// The future holds everything inline (no heap allocation) and is `Send` when the body is: the
/// contexts' own futures always are. For `!Send` contexts use [`with_local`]. Errors that cannot be
/// returned because a panic is propagating go to the process-wide hook (see
/// [`Scope::on_error_during_panic`] to choose another).
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
pub async fn with<C, T, B>(context: C, body: B) -> Result<T, Error<C::Error>>
where
    C: IntoContext,
    C::Error: fmt::Debug,
    B: AsyncFnOnce(&mut C::Value) -> Result<T, C::Error>,
{
    Scope::new().with(context, body).await
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
pub async fn with_local<C, T, B>(context: C, body: B) -> Result<T, Error<C::Error>>
where
    C: IntoLocalContext,
    C::Error: fmt::Debug,
    B: AsyncFnOnce(&mut C::Value) -> Result<T, C::Error>,
{
    Scope::new().with_local(context, body).await
}

/// How a scope reports what it cannot return; [`Scope::with`] runs a body under it.
///
/// [`with`] is `Scope::new().with(..)`. A `Scope` chooses where exit errors go when a panic is
/// propagating (they cannot be returned then; see [`ErrorHook`]).
///
/// ```
/// use async_with::{resource, Outcome, Scope};
///
/// # futures::executor::block_on(async {
/// let ctx = resource(async || Ok::<_, &str>(1), async |_, _: Outcome<'_, &str>| Ok(()));
/// let two = Scope::new()
///     .on_error_during_panic(|e: &str| eprintln!("lost during a panic: {e}"))
///     .with(ctx, async |one| Ok(*one + 1))
///     .await
///     .unwrap();
/// assert_eq!(two, 2);
/// # });
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a scope does nothing until `with` is called and awaited"]
pub struct Scope<H = GlobalHook> {
    pub(crate) hook: H,
}

impl Scope {
    /// A scope that reports to the process-wide hook.
    ///
    /// ```
    /// let scope = async_with::Scope::new();
    /// # let _ = scope;
    /// ```
    pub fn new() -> Self {
        Scope { hook: GlobalHook }
    }
}

// One body for both flavours: they differ only in the protocol trait that drives the contexts.
macro_rules! run_scope {
    ($hook:expr, $context:expr, $body:expr, $Protocol:ident) => {{
        let mut unwind = Unwind::new();
        let mut context = pin!($context);
        let value = match $Protocol::enter(context.as_mut(), &mut unwind).await {
            Some(mut value) => {
                let out = unwind.body(async { $body(&mut value).await }).await;
                $Protocol::exit(context, value, &mut unwind).await;
                out
            }
            None => None,
        };
        unwind.finish(value, &mut $hook)
    }};
}

impl<H> Scope<H> {
    /// Sends the exit errors that happen while a panic is propagating to `hook`, one at a time
    /// and in order, instead of the process-wide hook. The panic resumes after the last one.
    ///
    /// ```
    /// use async_with::Scope;
    /// let scope = Scope::new().on_error_during_panic(|e: std::io::Error| eprintln!("{e}"));
    /// # let _ = scope;
    /// ```
    pub fn on_error_during_panic<G>(self, hook: G) -> Scope<G> {
        Scope { hook }
    }

    /// Enters `context` around `body`, as [`with`] does, reporting through this scope's hook.
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
    pub async fn with<C, T, B>(mut self, context: C, body: B) -> Result<T, Error<C::Error>>
    where
        C: IntoContext,
        H: ErrorHook<C::Error>,
        B: AsyncFnOnce(&mut C::Value) -> Result<T, C::Error>,
    {
        run_scope!(self.hook, context.into_context(), body, SendProtocol)
    }

    /// Enters `context` around `body`, as [`with_local`] does, reporting through this scope's hook.
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
    pub async fn with_local<C, T, B>(mut self, context: C, body: B) -> Result<T, Error<C::Error>>
    where
        C: IntoLocalContext,
        H: ErrorHook<C::Error>,
        B: AsyncFnOnce(&mut C::Value) -> Result<T, C::Error>,
    {
        run_scope!(self.hook, context.into_local_context(), body, Protocol)
    }
}
