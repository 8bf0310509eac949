//! [`scope`] and [`scope_local`]: a fresh stack, closed however the body ends.

use core::fmt;
use core::future::Future;

use super::local::LocalExitStack;
use super::send::ExitStack;
use super::shared::ScopeStack;
use crate::error::Error;
use crate::frame;
use crate::hook::ErrorHook;

use crate::unwind::Unwind;
use crate::with::{DropReport, ExitDeadline, RunBody, Scope, Scoped};

// ----- scope() -----

/// Runs `body` with a fresh [`ExitStack`] and closes the stack however the body ends: every exit
/// runs, newest first, seeing how the body ended (G1-G6). Python's
/// `async with AsyncExitStack() as stack:`.
///
/// The body borrows the stack; values lent by [`ExitStack::enter`] cannot outlive it (the body
/// cannot return them). Returns the body's value, or every error: the body's (or the first
/// exit's) first, then the others.
///
/// ```
/// use async_with::{context, scope, Cx, ExitStack};
///
/// # futures::executor::block_on(async {
/// let shards = ["eu", "us", "ap"];
/// let rows = scope(async |stack: &mut ExitStack<String>| {
///     let mut conns = Vec::new();
///     for shard in shards {
///         let conn = context(async move |mut cx: Cx<String, String>| {
///             let (_conn, outcome) = cx.provide(format!("conn-{shard}")).await;
///             println!("closing {shard} ({outcome:?})");
///             Ok(())
///         });
///         conns.push(stack.enter(conn).await?);
///     }
///     Ok(conns.len())
/// })
/// .await
/// .unwrap();
/// assert_eq!(rows, 3);
/// # });
/// ```
pub fn scope<E, T, B>(body: B) -> impl Future<Output = Result<T, Error<E>>>
where
    E: Send + Sync + fmt::Debug + 'static,
    B: AsyncFnOnce(&mut ExitStack<E>) -> Result<T, Error<E>>,
{
    Scope::new().scope(body)
}

/// [`scope`] with a [`LocalExitStack`], for entries that are not `Send` or that borrow from the
/// surroundings of the call.
///
/// ```
/// use async_with::{scope_local, LocalExitStack};
///
/// let mut closed = Vec::new();
/// futures::executor::block_on(scope_local(async |stack: &mut LocalExitStack<'_, ()>| {
///     let closed = &mut closed;
///     stack.callback(move || { closed.push("cleanup"); Ok(()) });
///     Ok(())
/// }))
/// .unwrap();
/// assert_eq!(closed, ["cleanup"]);
/// ```
pub fn scope_local<'env, E, T, B>(body: B) -> impl Future<Output = Result<T, Error<E>>>
where
    E: fmt::Debug + 'env,
    B: AsyncFnOnce(&mut LocalExitStack<'env, E>) -> Result<T, Error<E>>,
{
    Scope::new().scope_local(body)
}

impl<H, S: crate::with::Signals, D> Scope<H, S, D> {
    /// Runs `body` with a fresh stack, as [`scope`] does, reporting through this scope's hook.
    ///
    /// ```
    /// use async_with::{ExitStack, Scope};
    /// # futures::executor::block_on(async {
    /// let n = Scope::new()
    ///     .on_error_during_panic(|e: String| eprintln!("{e}"))
    ///     .scope(async |stack: &mut ExitStack<String>| { stack.callback(|| Ok(())); Ok(1) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(n, 1);
    /// # });
    /// ```
    pub fn scope<E, T, B>(self, body: B) -> impl Future<Output = Result<T, Error<E>>>
    where
        E: Send + Sync + 'static,
        H: ErrorHook<E>,
        D: ExitDeadline<E>,
        B: AsyncFnOnce(&mut ExitStack<E>) -> Result<T, Error<E>>,
    {
        crate::trace::scope("scope", self.run_stack_scope::<ExitStack<E>, _, _, _>(body))
    }

    /// Runs `body` with a fresh local stack, as [`scope_local`] does, under this scope's options.
    ///
    /// ```
    /// use async_with::{LocalExitStack, Scope};
    /// # futures::executor::block_on(async {
    /// let n = Scope::new().scope_local(async |_: &mut LocalExitStack<'_, ()>| Ok(2)).await.unwrap();
    /// assert_eq!(n, 2);
    /// # });
    /// ```
    pub fn scope_local<'env, E, T, B>(self, body: B) -> impl Future<Output = Result<T, Error<E>>>
    where
        E: 'env,
        H: ErrorHook<E>,
        D: ExitDeadline<E>,
        B: AsyncFnOnce(&mut LocalExitStack<'env, E>) -> Result<T, Error<E>>,
    {
        crate::trace::scope("scope", self.run_stack_scope::<LocalExitStack<'env, E>, _, _, _>(body))
    }

    /// The one body of [`Scope::scope`] and [`Scope::scope_local`]: a fresh stack `K` under
    /// this scope's options, closed however `body` ends.
    fn run_stack_scope<K, E, T, B>(self, body: B) -> impl Future<Output = Result<T, Error<E>>>
    where
        K: ScopeStack<Error = E>,
        H: ErrorHook<E>,
        D: ExitDeadline<E>,
        B: AsyncFnOnce(&mut K) -> Result<T, Error<E>>,
    {
        let (mut hook, signal, interrupt_enters, deadlines) = self.into_parts();
        let mut unwind = Unwind::with_deadlines(deadlines.clone());
        let mut stack = K::with_deadlines(deadlines);
        let mut report = DropReport::<K>::new(true);
        Scoped::new(signal, interrupt_enters, async move {
            // Captured values are dropped in the order they are first used: the stack (whose
            // entries fall back when the scope is dropped) before the report, which tells the
            // drop hook after the fallbacks ran.
            let stack = &mut stack;
            report.arm();
            let out = RunBody::new(|| body(stack)).await;
            let out = unwind.body_ended(out);
            frame::mark_exiting();
            stack.core().close_into(&mut unwind).await;
            report.disarm();
            unwind.finish(out, &mut hook)
        })
    }
}
