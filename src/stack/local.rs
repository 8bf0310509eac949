//! [`LocalExitStack`], the stack whose entries may borrow and need not be `Send`, and its
//! [`LocalHandle`].

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;

use super::Key;
use super::arena::{Claim, Orphans};
use super::entry::{self, Deferred, Owned};
use super::shared::{Core, ScopeStack, entered_or_park};
use crate::context::IntoLocalContext;
use crate::error::Error;
use crate::frame::{Busy, Entering};
use crate::origin::{Origin, Step};
use crate::outcome::Outcome;
use crate::protocol::{Entry, Fallback, LocalStack, MakeExit, Protocol};
use crate::unwind::{Deadlines, Settle, Unwind};

/// [`ExitStack`](crate::ExitStack) for entries that are not `Send` or that borrow from their surroundings (`'env`):
/// the stack of [`scope_local`](crate::scope_local).
///
/// ```
/// use async_with::{resource, scope_local, LocalExitStack, Outcome};
/// use std::cell::RefCell;
///
/// let log = RefCell::new(Vec::new()); // borrowed by the entries: fine in a local stack
/// futures::executor::block_on(scope_local(async |stack: &mut LocalExitStack<'_, String>| {
///     for name in ["a", "b"] {
///         let log = &log;
///         stack.enter(resource(async move || Ok(name), async move |name, _: Outcome<'_, String>| {
///             log.borrow_mut().push(name);
///             Ok(())
///         })).await?;
///     }
///     Ok(())
/// }))
/// .unwrap();
/// assert_eq!(*log.borrow(), ["b", "a"]);
/// ```
pub struct LocalExitStack<'env, E> {
    pub(super) core: Core<dyn Entry<E> + 'env, E>,
}

impl<E> fmt::Debug for LocalExitStack<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.debug("LocalExitStack", f)
    }
}

impl<'env, E: 'env> Default for LocalExitStack<'env, E> {
    fn default() -> Self {
        Self::new()
    }
}

fn erase_local<'env, T: Entry<E> + 'env, E: 'env>(entry: *mut T) -> *mut (dyn Entry<E> + 'env) {
    entry
}

impl<'env, E: 'env> LocalExitStack<'env, E> {
    /// An empty stack; see [`ExitStack::new`](crate::ExitStack::new).
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn new() -> Self {
        LocalExitStack { core: Core::new(None) }
    }

    /// Enters `context` and lends its value; see [`ExitStack::enter`](crate::ExitStack::enter).
    ///
    /// ```
    /// # use async_with::{resource, LocalExitStack, Outcome};
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// let n = stack.enter(resource(async || Ok(std::rc::Rc::new(1)), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
    /// assert_eq!(**n, 1);
    /// stack.close().await.map_err(|_| ())
    /// # }).unwrap();
    /// ```
    pub async fn enter<C>(&self, context: C) -> Result<&mut C::Value, E>
    where
        C: IntoLocalContext<Error = E> + 'env,
    {
        let entered = Entering::new(context.enter_local_stack(self)).await;
        Ok(entered_or_park(entered).await?.1)
    }

    /// Enters `context` and returns a key to release it early; see [`ExitStack::enter_with_key`](crate::ExitStack::enter_with_key).
    ///
    /// ```
    /// # use async_with::{resource, LocalExitStack, Outcome};
    /// # futures::executor::block_on(async {
    /// let mut stack = LocalExitStack::<()>::new();
    /// let (_, key) = stack.enter_with_key(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
    /// stack.release(key).await
    /// # }).unwrap();
    /// ```
    pub async fn enter_with_key<C>(&self, context: C) -> Result<(&mut C::Value, Key), E>
    where
        C: IntoLocalContext<Error = E> + 'env,
    {
        let entered = Entering::new(context.enter_local_stack(self)).await;
        let (key, value) = entered_or_park(entered).await?;
        Ok((value, key))
    }

    /// Enters `context` and gives a [`LocalHandle`] to release it early, while the other values
    /// stay usable; see [`ExitStack::enter_with_handle`](crate::ExitStack::enter_with_handle).
    ///
    /// ```
    /// # use async_with::{resource, LocalExitStack, Outcome};
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// let a = stack.enter(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
    /// let mut b = stack.enter_with_handle(resource(async || Ok(2), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
    /// *b += *a;
    /// b.release().await?;
    /// *a += 1;
    /// stack.close().await.map_err(|_| ())
    /// # }).unwrap();
    /// ```
    pub async fn enter_with_handle<C>(&self, context: C) -> Result<LocalHandle<'_, 'env, C::Value, E>, E>
    where
        C: IntoLocalContext<Error = E> + 'env,
    {
        let entered = Entering::new(enter_local_claimed(context, self)).await;
        let claim = entered_or_park(entered).await?;
        Ok(LocalHandle { stack: self, claim })
    }

    /// Pushes an async callback; see [`ExitStack::defer`](crate::ExitStack::defer).
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// stack.defer(async || Ok(()));
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn defer<F, Fut>(&self, callback: F) -> Key
    where
        F: FnOnce() -> Fut + 'env,
        Fut: Future<Output = Result<(), E>> + 'env,
    {
        self.push_entry(Box::pin(Deferred::new(callback)), Deferred::value).0
    }

    /// Pushes an async exit that sees the outcome; see [`ExitStack::push_exit`](crate::ExitStack::push_exit).
    ///
    /// ```
    /// # use async_with::{LocalExitStack, Outcome};
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// stack.push_exit(async |outcome: Outcome<'_, ()>| { assert!(outcome.is_completed()); Ok(()) });
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn push_exit<F>(&self, exit: F) -> Key
    where
        F: AsyncFnOnce(Outcome<'_, E>) -> Result<(), E> + 'env,
    {
        self.push_context(exit, (), entry::local_outcome_exit::<F, E>, entry::drop_both).0
    }

    /// Pushes a synchronous callback; see [`ExitStack::callback`](crate::ExitStack::callback).
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// stack.callback(|| Ok(()));
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn callback<F>(&self, callback: F) -> Key
    where
        F: FnOnce() -> Result<(), E> + 'env,
    {
        self.push_entry(Box::pin(Deferred::new(move || core::future::ready(callback()))), Deferred::value).0
    }

    /// Exits one entry now; see [`ExitStack::release`](crate::ExitStack::release).
    ///
    /// # Panics
    ///
    /// If `key` was already released, or belongs to another stack.
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// let mut stack = LocalExitStack::<()>::new();
    /// let key = stack.callback(|| Ok(()));
    /// stack.release(key).await.unwrap();
    /// # });
    /// ```
    pub async fn release(&mut self, key: Key) -> Result<(), E> {
        Busy::new(self.core.release(key)).await
    }

    /// Moves every pending exit into a new stack; see [`ExitStack::pop_all`](crate::ExitStack::pop_all).
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// let mut stack = LocalExitStack::<()>::new();
    /// stack.callback(|| Ok(()));
    /// let moved = stack.pop_all();
    /// moved.close().await.unwrap();
    /// # });
    /// ```
    #[doc(alias = "move")]
    pub fn pop_all(&mut self) -> LocalExitStack<'env, E> {
        LocalExitStack { core: self.core.pop_all() }
    }

    /// Runs every exit, newest first; see [`ExitStack::close`](crate::ExitStack::close).
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// LocalExitStack::<()>::new().close().await.unwrap();
    /// # });
    /// ```
    pub async fn close(self) -> Result<(), Error<E>>
    where
        E: fmt::Debug,
    {
        Busy::new(self.core.close(Unwind::new())).await
    }

    /// Closes the stack because of `error`; see [`ExitStack::close_with`](crate::ExitStack::close_with).
    ///
    /// ```
    /// # use async_with::LocalExitStack;
    /// # futures::executor::block_on(async {
    /// let err = LocalExitStack::new().close_with("why").await.unwrap_err();
    /// assert_eq!(err.primary(), Some(&"why"));
    /// # });
    /// ```
    pub async fn close_with(self, error: E) -> Result<(), Error<E>>
    where
        E: fmt::Debug,
    {
        let mut unwind = Unwind::new();
        // The reason the stack closes is what a body's error is to a scope.
        unwind.failed(error, Origin::of(Step::Body));
        Busy::new(self.core.close(unwind)).await
    }
}

/// A value entered with [`LocalExitStack::enter_with_handle`]: a [`Handle`](crate::Handle) of a local stack
/// (not `Send`, and its value may borrow what the stack's entries may, for `'env`).
///
/// ```
/// use async_with::{resource, scope_local, LocalExitStack, Outcome};
/// use std::cell::RefCell;
///
/// let log = RefCell::new(Vec::new());
/// futures::executor::block_on(scope_local(async |stack: &mut LocalExitStack<'_, ()>| {
///     let log = &log;
///     let exit = async move |name: &'static str, _: Outcome<'_, ()>| { log.borrow_mut().push(name); Ok(()) };
///     let kept = stack.enter(resource(async || Ok("kept"), exit)).await?;
///     let early = stack.enter_with_handle(resource(async || Ok("early"), exit)).await?;
///     assert_eq!(*early, "early");
///     early.release().await?;
///     assert_eq!(*kept, "kept"); // still lent
///     Ok(())
/// }))
/// .unwrap();
/// assert_eq!(*log.borrow(), ["early", "kept"]);
/// ```
pub struct LocalHandle<'s, 'env, V, E> {
    stack: &'s LocalExitStack<'env, E>,
    claim: Claim<'s, dyn Entry<E> + 'env, V, Orphans<E>>,
}

impl<'env, V, E: 'env> LocalHandle<'_, 'env, V, E> {
    /// Exits this context now, while the other values stay usable; see [`Handle::release`](crate::Handle::release).
    ///
    /// ```
    /// use async_with::{resource, LocalExitStack, Outcome};
    /// use std::rc::Rc;
    ///
    /// # futures::executor::block_on(async {
    /// let stack = LocalExitStack::<()>::new();
    /// let shared = stack.enter_with_handle(resource(async || Ok(Rc::new(7)), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
    /// assert_eq!(**shared, 7);
    /// shared.release().await?;
    /// stack.close().await.map_err(|_| ())
    /// # }).unwrap();
    /// ```
    pub async fn release(self) -> Result<(), E> {
        let LocalHandle { stack, claim } = self;
        Busy::new(stack.core.release_claimed(claim)).await
    }
}

impl<V, E> Deref for LocalHandle<'_, '_, V, E> {
    type Target = V;

    fn deref(&self) -> &V {
        self.claim.get()
    }
}

impl<V, E> DerefMut for LocalHandle<'_, '_, V, E> {
    fn deref_mut(&mut self) -> &mut V {
        self.claim.get_mut()
    }
}

/// The value's `Debug`, as for other smart pointers.
impl<V: fmt::Debug, E> fmt::Debug for LocalHandle<'_, '_, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// [`enter_claimed`] for local stacks.
async fn enter_local_claimed<'a, 'env, C>(
    context: C,
    stack: &'a LocalExitStack<'env, C::Error>,
) -> Result<Claim<'a, dyn Entry<C::Error> + 'env, C::Value, Orphans<C::Error>>, Option<C::Error>>
where
    C: IntoLocalContext + 'env,
    C::Error: 'env,
{
    let mut state = Box::pin(context.into_local_context());
    let mut unwind = stack.core.unwind();
    let Some(value) = Protocol::enter(state.as_mut(), &mut unwind).await else {
        return Err(stack.failed(unwind));
    };
    let exit = entry::local_composite_exit::<C::LocalContext>;
    let entry = Box::pin(Owned::new(state, value, exit, entry::local_composite_fallback::<C::LocalContext>));
    Ok(stack.core.push_claimed(entry, erase_local, Owned::value))
}

impl<'env, E: 'env> LocalStack<'env, E> for LocalExitStack<'env, E> {
    type Key = Key;

    fn push_context<X, V, F>(
        &self,
        exit: X,
        value: V,
        make: MakeExit<X, V, E, F>,
        fallback: Fallback<X, V>,
    ) -> (Key, &mut V)
    where
        X: 'env,
        V: 'env,
        F: Future<Output: Settle<E>> + 'env,
    {
        let entry = Box::pin(Owned::new(exit, value, make, fallback));
        self.core.push(entry, erase_local, Owned::value)
    }

    fn push_entry<T, V>(&self, entry: Pin<Box<T>>, value: fn(Pin<&mut T>) -> &mut V) -> (Key, &mut V)
    where
        T: Entry<E> + 'env,
    {
        self.core.push(entry, erase_local, value)
    }

    /// [`SendStack::enter_boxed`] for local stacks.
    async fn enter_boxed<'s, P>(
        &'s self,
        mut state: Pin<Box<P>>,
    ) -> Result<(Key, &'s mut P::Value), Option<E>>
    where
        P: Protocol<Error = E> + 'env,
        P::Value: 'env,
        'env: 's,
    {
        let mut unwind = self.core.unwind();
        match Protocol::enter(state.as_mut(), &mut unwind).await {
            Some(value) => Ok(self.push_context(
                state,
                value,
                entry::local_composite_exit::<P>,
                entry::local_composite_fallback::<P>,
            )),
            None => Err(self.core.failed(unwind)),
        }
    }

    fn failed(&self, unwind: Unwind<E>) -> Option<E> {
        self.core.failed(unwind)
    }
}

impl<'env, E: 'env> ScopeStack for LocalExitStack<'env, E> {
    type Error = E;
    type Entries = dyn Entry<E> + 'env;

    fn with_deadlines(deadlines: Option<Deadlines<E>>) -> Self {
        LocalExitStack { core: Core::new(deadlines) }
    }

    fn core(&mut self) -> &mut Core<Self::Entries, E> {
        &mut self.core
    }
}
