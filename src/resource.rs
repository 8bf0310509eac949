//! A context made of two closures: Cats Effect's `Resource.make`, TC39's `DisposableStack.adopt`.

use core::fmt;
use core::future::Future;
use core::pin::Pin;

use crate::catch_unwind::catch_unwind;
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;
use crate::{IntoContext, IntoLocalContext, Outcome};

/// Makes a context from an async `enter` closure and an async `exit` closure.
///
/// `enter` runs once when a scope enters the context; `exit` runs once after the body, gets the
/// value back together with the [`Outcome`], and releases it. Write the exit as an async closure
/// (`async |value, outcome| ...`): it may then hold the outcome, which borrows the scope's error,
/// across its awaits.
///
/// Prefer `resource` when setup and teardown are separate steps you already have as functions
/// (`connect` / `close`); prefer the generator style when teardown needs local state from setup.
///
/// The result is an [`IntoContext`] (for [`with`](crate::with)) when both closures and their
/// futures are `Send`, and an [`IntoLocalContext`] (for [`with_local`](crate::with_local)) always.
///
/// ```
/// use async_with::{resource, with, Outcome};
/// use std::time::Duration;
///
/// struct Db { name: String, open: bool }
///
/// # smol::block_on(async {
/// let db = resource(
///     async || {
///         smol::Timer::after(Duration::from_millis(1)).await; // connecting...
///         Ok::<_, String>(Db { name: "analytics".into(), open: true })
///     },
///     async |mut db, outcome: Outcome<'_, String>| {
///         smol::Timer::after(Duration::from_millis(1)).await; // closing...
///         db.open = false;
///         println!("closed {} after {outcome:?}", db.name);
///         Ok(())
///     },
/// );
/// let n = with(db, async |db| Ok(db.name.len())).await.unwrap();
/// assert_eq!(n, 9);
/// # });
/// ```
pub fn resource<En, Ex, V, E>(enter: En, exit: Ex) -> Resource<En, Ex>
where
    En: AsyncFnOnce() -> Result<V, E>,
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
{
    Resource { enter: Some(enter), exit: Some(exit) }
}

/// A context made of two closures; built by [`resource`].
///
/// ```
/// use async_with::{resource, Outcome, Resource};
///
/// fn scratch() -> Resource<impl AsyncFnOnce() -> Result<Vec<u8>, ()>, impl AsyncFnOnce(Vec<u8>, Outcome<'_, ()>) -> Result<(), ()>> {
///     resource(async || Ok(Vec::with_capacity(64)), async |buf, _: Outcome<'_, ()>| { drop(buf); Ok(()) })
/// }
/// # let _ = scratch();
/// ```
#[must_use = "a context does nothing until a scope enters it"]
pub struct Resource<En, Ex> {
    enter: Option<En>,
    exit: Option<Ex>,
}

// Nothing in a `Resource` is ever pinned: the closures are moved out before they are called.
impl<En, Ex> Unpin for Resource<En, Ex> {}

impl<En, Ex> fmt::Debug for Resource<En, Ex> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("entered", &self.enter.is_none())
            .field("exited", &self.exit.is_none())
            .finish()
    }
}

impl<En, Ex, V, E> IntoLocalContext for Resource<En, Ex>
where
    En: AsyncFnOnce() -> Result<V, E>,
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
{
    type Value = V;
    type Error = E;
    type Context = Self;

    fn into_local_context(self) -> Self {
        self
    }

    #[cfg(feature = "std")]
    async fn enter_local_stack<'a, 'env>(
        mut self,
        stack: &'a crate::LocalExitStack<'env, E>,
    ) -> Result<(crate::Key, &'a mut V), E>
    where
        Self: 'env,
        Self::Value: 'env,
        Self::Error: 'env,
    {
        let enter = self.enter.take().expect("async-with: a context is entered once");
        let value = enter().await?;
        let exit = self.exit.take().expect("async-with: a context is exited once");
        Ok(stack.push_context(exit, value, crate::stack::local_closure_exit::<Ex, V, E>))
    }
}

impl<En, Ex, EnFut, V, E> IntoContext for Resource<En, Ex>
where
    En: FnOnce() -> EnFut + Send,
    EnFut: Future<Output = Result<V, E>> + Send,
    Ex: for<'a> ExitFn<'a, V, E> + Send,
    for<'a> <Ex as ExitFn<'a, V, E>>::Future: Send,
    V: Send,
    E: Send + Sync,
{
    type Value = V;
    type Error = E;
    type Context = Self;

    fn into_context(self) -> Self {
        self
    }

    #[cfg(feature = "std")]
    async fn enter_stack(mut self, stack: &crate::ExitStack<E>) -> Result<(crate::Key, &mut V), E>
    where
        Self: 'static,
        Self::Value: 'static,
        Self::Error: 'static,
    {
        let enter = self.enter.take().expect("async-with: a context is entered once");
        let value = enter().await?;
        let exit = self.exit.take().expect("async-with: a context is exited once");
        Ok(stack.push_context(exit, value, crate::stack::closure_exit::<Ex, V, E>))
    }
}

impl<En, Ex> Sealed for Resource<En, Ex> {}

impl<En, Ex, V, E> Protocol for Resource<En, Ex>
where
    En: AsyncFnOnce() -> Result<V, E>,
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
{
    type Value = V;
    type Error = E;

    async fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<E>) -> Option<V> {
        let enter = self.get_mut().enter.take().expect("async-with: a context is entered once");
        unwind.enter(async move { enter().await }).await
    }

    async fn exit(self: Pin<&mut Self>, value: V, unwind: &mut Unwind<E>) {
        let exit = self.get_mut().exit.take().expect("async-with: a context is exited once");
        let outcome = unwind.outcome();
        let result = catch_unwind(async move { exit(value, outcome).await }).await;
        unwind.exited(result);
    }
}

// The same steps with the closures seen as plain `FnOnce`s returning named futures: naming them
// is what lets the bounds above say that they are `Send`.
impl<En, Ex, EnFut, V, E> SendProtocol for Resource<En, Ex>
where
    En: FnOnce() -> EnFut + Send,
    EnFut: Future<Output = Result<V, E>> + Send,
    Ex: for<'a> ExitFn<'a, V, E> + Send,
    for<'a> <Ex as ExitFn<'a, V, E>>::Future: Send,
    V: Send,
    E: Send + Sync,
{
    type Value = V;
    type Error = E;

    async fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<E>) -> Option<V> {
        let enter = self.get_mut().enter.take().expect("async-with: a context is entered once");
        unwind.enter(async move { enter().await }).await
    }

    async fn exit(self: Pin<&mut Self>, value: V, unwind: &mut Unwind<E>) {
        let exit = self.get_mut().exit.take().expect("async-with: a context is exited once");
        let outcome = unwind.outcome();
        let result = catch_unwind(async move { exit(value, outcome).await }).await;
        unwind.exited(result);
    }
}

/// An exit closure seen as a plain function: `FnOnce(V, Outcome<'a, E>)` returning a future that
/// may borrow the outcome. It names that future, which `AsyncFnOnce` does not on stable Rust.
#[doc(hidden)]
pub trait ExitFn<'a, V, E: 'a>: FnOnce(V, Outcome<'a, E>) -> <Self as ExitFn<'a, V, E>>::Future {
    type Future: Future<Output = Result<(), E>>;
}

impl<'a, V, E: 'a, F, Fut> ExitFn<'a, V, E> for F
where
    F: FnOnce(V, Outcome<'a, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Future = Fut;
}
