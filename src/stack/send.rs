//! [`ExitStack`], the stack whose entries are `Send` and `'static`, and its [`Handle`].

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::ops::{Deref, DerefMut};
use core::pin::Pin;

use super::Key;
use super::arena::{Claim, Orphans};
use super::entry::{self, Deferred, Owned};
use super::shared::{Core, ScopeStack, entered_or_park};
use crate::context::IntoContext;
use crate::error::Error;
use crate::frame::{Busy, Entering};
use crate::origin::{Origin, Step};
use crate::outcome::{Outcome, OutcomeFn};
use crate::protocol::{Entry, Fallback, MakeExit, SendProtocol, SendStack};
use crate::unwind::{Deadlines, Settle, Unwind};

/// A stack of exits: contexts entered at run time and callbacks pushed along the way, all exited
/// in reverse order, exactly once, when the stack closes. Python's `AsyncExitStack`.
///
/// Get one from [`scope`](crate::scope), which closes it however the body ends (G1-G6), or make one with
/// [`ExitStack::new`] and [`close`](ExitStack::close) it yourself.
///
/// [`enter`](ExitStack::enter) takes `&self` and lends the value for as long as the stack is
/// borrowed, so the values of everything entered can be used together, while more is entered:
///
/// ```
/// use async_with::{resource, scope, ExitStack, Outcome};
///
/// # futures::executor::block_on(async {
/// let total = scope(async |stack: &mut ExitStack<String>| {
///     let mut conns = Vec::new();
///     for shard in 0..4 {
///         let conn = resource(
///             async move || Ok(format!("shard-{shard}")),
///             async |conn, _: Outcome<'_, String>| { println!("closing {conn}"); Ok(()) },
///         );
///         conns.push(stack.enter(conn).await?); // &mut String, valid until the scope ends
///     }
///     stack.defer(async || { println!("flushing metrics"); Ok(()) });
///     Ok(conns.iter().map(|c| c.len()).sum::<usize>())
/// })
/// .await
/// .unwrap();
/// assert_eq!(total, 28); // then: flushing metrics, closing shard-3, ..., closing shard-0
/// # });
/// ```
///
/// Everything a `Send` stack holds is `Send` and `'static`, so that [`scope`](crate::scope) futures can be
/// spawned on multi-threaded executors. For entries that borrow from their surroundings, or
/// that are not `Send`, use [`LocalExitStack`](crate::LocalExitStack).
///
/// Each entry costs one heap allocation (plus, for a [`context`](crate::context()), the one every
/// generator context needs; a tuple entered as one context costs one more). Closing runs in a
/// loop, so a stack of a million entries, or of stacks nested in stacks twenty thousand deep,
/// closes on a small thread stack. Dropping a stack without closing it runs no async exit: its
/// entries are dropped newest first (with the synchronous fallback of each context), the same
/// loop taking in nested stacks; a destructor that panics does not stop the others (its panic is
/// contained). A released entry's memory is reused: enter/release cycles do not grow a stack.
pub struct ExitStack<E> {
    pub(super) core: Core<dyn Entry<E> + Send, E>,
}

impl<E> fmt::Debug for ExitStack<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.debug("ExitStack", f)
    }
}

impl<E: Send + Sync + 'static> Default for ExitStack<E> {
    fn default() -> Self {
        Self::new()
    }
}

fn erase_send<T: Entry<E> + Send + 'static, E: 'static>(entry: *mut T) -> *mut (dyn Entry<E> + Send) {
    entry
}

impl<E: Send + Sync + 'static> ExitStack<E> {
    /// An empty stack. Close it with [`close`](ExitStack::close), or let [`scope`](crate::scope) do it.
    ///
    /// ```
    /// use async_with::ExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<std::io::Error>::new();
    /// stack.callback(|| Ok(()));
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn new() -> Self {
        ExitStack { core: Core::new(None) }
    }

    /// Enters `context` and lends its value until the stack is next borrowed mutably (to close,
    /// release or [`pop_all`](ExitStack::pop_all)). Python's `enter_async_context`.
    ///
    /// If the enter fails, nothing is pushed and the error is returned; a context that fails
    /// half-way (a tuple whose second enter fails) has already exited what it entered, and any
    /// further errors of that cleanup are kept by the stack and reported when it closes.
    ///
    /// ```
    /// use async_with::{resource, ExitStack, Outcome};
    ///
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// let a = stack.enter(resource(async || Ok(vec![1]), async |_, _: Outcome<'_, String>| Ok(()))).await?;
    /// let b = stack.enter(resource(async || Ok(vec![2]), async |_, _: Outcome<'_, String>| Ok(()))).await?;
    /// a.push(10);
    /// b.push(20);
    /// assert_eq!((a.len(), b.len()), (2, 2));
    /// stack.close().await.map_err(|e| e.to_string())
    /// # }).unwrap();
    /// ```
    pub async fn enter<C>(&self, context: C) -> Result<&mut C::Value, E>
    where
        C: IntoContext<Error = E> + Send + 'static,
    {
        let entered = Entering::new(context.enter_stack(self)).await;
        Ok(entered_or_park(entered).await?.1)
    }

    /// [`enter`](ExitStack::enter), also returning a [`Key`] to exit this context early with
    /// [`release`](ExitStack::release) (resourcet's `allocate`).
    ///
    /// ```
    /// use async_with::{resource, scope, ExitStack, Outcome};
    ///
    /// # futures::executor::block_on(async {
    /// scope(async |stack: &mut ExitStack<String>| {
    ///     let (lock, key) = stack.enter_with_key(resource(async || Ok("lock"), async |_, _: Outcome<'_, String>| Ok(()))).await?;
    ///     println!("holding {lock}");
    ///     Ok(stack.release(key).await?) // give it back before the rest of the scope
    /// })
    /// .await
    /// .unwrap();
    /// # });
    /// ```
    pub async fn enter_with_key<C>(&self, context: C) -> Result<(&mut C::Value, Key), E>
    where
        C: IntoContext<Error = E> + Send + 'static,
    {
        let entered = Entering::new(context.enter_stack(self)).await;
        let (key, value) = entered_or_park(entered).await?;
        Ok((value, key))
    }

    /// [`enter`](ExitStack::enter), giving a [`Handle`] that derefs to the value and can
    /// [`release`](Handle::release) this context early, while the values of everything else
    /// entered stay usable (resourcet's `allocate` and `release`; Python's `AsyncExitStack` has
    /// no per-entry exit).
    ///
    /// The context is entered through its protocol state, kept in one more allocation (as for a
    /// tuple entered with [`enter`](ExitStack::enter)). A stack entered with a handle is closed by
    /// its own exit, not taken over by the closing loop of the stack around it: stacks nested
    /// through handles close one level inside the other.
    ///
    /// ```
    /// use async_with::{resource, scope, ExitStack, Outcome};
    ///
    /// # futures::executor::block_on(async {
    /// scope(async |stack: &mut ExitStack<String>| {
    ///     let mut open = Vec::new();
    ///     for name in ["a", "b", "c"] {
    ///         let file = resource(async move || Ok(name), async move |_, _: Outcome<'_, String>| { println!("close {name}"); Ok(()) });
    ///         open.push(stack.enter_with_handle(file).await?);
    ///     }
    ///     let b = open.remove(1);
    ///     b.release().await?; // close b
    ///     assert_eq!(open.iter().map(|file| **file).collect::<Vec<_>>(), ["a", "c"]);
    ///     Ok(())
    /// })
    /// .await
    /// .unwrap(); // close c, close a
    /// # });
    /// ```
    pub async fn enter_with_handle<C>(&self, context: C) -> Result<Handle<'_, C::Value, E>, E>
    where
        C: IntoContext<Error = E> + Send + 'static,
    {
        let entered = Entering::new(enter_claimed(context, self)).await;
        let claim = entered_or_park(entered).await?;
        Ok(Handle { stack: self, claim })
    }

    /// Pushes an async callback, run when the stack closes: Python's `push_async_callback`,
    /// JavaScript's `defer`. It does not see the outcome (see [`push_exit`](ExitStack::push_exit)).
    ///
    /// ```
    /// # use async_with::ExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// stack.defer(async || { println!("flush"); Ok(()) });
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn defer<F, Fut>(&self, callback: F) -> Key
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.push_entry(Box::pin(Deferred::new(callback)), Deferred::value).0
    }

    /// Pushes an async exit that sees the outcome: Python's `push_async_exit`.
    ///
    /// ```
    /// # use async_with::{ExitStack, Outcome};
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// stack.push_exit(async |outcome: Outcome<'_, String>| {
    ///     println!("the stack closed after {outcome:?}");
    ///     Ok(())
    /// });
    /// stack.close_with("failed".to_string()).await.unwrap_err();
    /// # });
    /// ```
    pub fn push_exit<F>(&self, exit: F) -> Key
    where
        F: AsyncFnOnce(Outcome<'_, E>) -> Result<(), E> + for<'a> OutcomeFn<'a, E> + Send + 'static,
        for<'a> <F as OutcomeFn<'a, E>>::Future: Send,
    {
        self.push_context(exit, (), entry::outcome_exit::<F, E>, entry::drop_both).0
    }

    /// Pushes a synchronous callback: Python's `callback`.
    ///
    /// ```
    /// # use async_with::ExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// stack.callback(|| { println!("done"); Ok(()) });
    /// stack.close().await.unwrap();
    /// # });
    /// ```
    pub fn callback<F>(&self, callback: F) -> Key
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
    {
        self.push_entry(Box::pin(Deferred::new(move || core::future::ready(callback()))), Deferred::value).0
    }

    /// Exits one entry now, seeing [`Outcome::Completed`], instead of when the stack closes
    /// (resourcet's `release`). Returns the exit's error; further errors of a composite exit
    /// are kept and reported when the stack closes.
    ///
    /// # Panics
    ///
    /// If `key` was already released, or belongs to another stack: a programming error, as in
    /// Python's `RuntimeError` for misuse. A key given out before [`pop_all`](ExitStack::pop_all)
    /// belongs to the stack that `pop_all` returned.
    ///
    /// ```
    /// # use async_with::ExitStack;
    /// # futures::executor::block_on(async {
    /// let mut stack = ExitStack::<String>::new();
    /// let key = stack.callback(|| Err("boom".to_string()));
    /// assert_eq!(stack.release(key).await, Err("boom".to_string()));
    /// stack.close().await.unwrap(); // nothing left to run
    /// # });
    /// ```
    pub async fn release(&mut self, key: Key) -> Result<(), E> {
        Busy::new(self.core.release(key)).await
    }

    /// Moves every pending exit into a new stack, leaving this one empty: Python's `pop_all`,
    /// JavaScript's `move`. The constructor pattern: acquire several things in a scope, and hand
    /// their exits to the caller only if all succeeded.
    ///
    /// ```
    /// use async_with::{resource, scope, ExitStack, Outcome};
    ///
    /// # futures::executor::block_on(async {
    /// // Opens two files, or none: if the second fails, the scope closes the first.
    /// let cleanup = scope(async |stack: &mut ExitStack<String>| {
    ///     for name in ["a", "b"] {
    ///         let file = resource(async move || Ok(name), async |name, _: Outcome<'_, String>| { println!("close {name}"); Ok(()) });
    ///         stack.enter(file).await?;
    ///     }
    ///     Ok(stack.pop_all())
    /// })
    /// .await
    /// .unwrap();
    /// // ...later, when the caller is done with them:
    /// cleanup.close().await.unwrap(); // close b, close a
    /// # });
    /// ```
    #[doc(alias = "move")]
    pub fn pop_all(&mut self) -> ExitStack<E> {
        ExitStack { core: self.core.pop_all() }
    }

    /// Runs every exit, newest first, seeing [`Outcome::Completed`] at first; returns every error
    /// (Python's `aclose`). A panic in an exit is resumed after the others ran.
    ///
    /// ```
    /// # use async_with::ExitStack;
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// stack.callback(|| Err("first pushed".to_string()));
    /// stack.callback(|| Err("last pushed".to_string()));
    /// let err = stack.close().await.unwrap_err();
    /// assert_eq!(err.primary().unwrap(), "last pushed");
    /// assert_eq!(err.suppressed(), ["first pushed"]);
    /// # });
    /// ```
    pub async fn close(self) -> Result<(), Error<E>>
    where
        E: fmt::Debug,
    {
        Busy::new(self.core.close(Unwind::new())).await
    }

    /// Closes the stack because of `error`: the exits see [`Outcome::Failed`] with it, and it is
    /// the primary error of the result (Python's `__aexit__` with an exception).
    ///
    /// ```
    /// # use async_with::{ExitStack, Outcome};
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// stack.push_exit(async |outcome: Outcome<'_, String>| {
    ///     assert_eq!(outcome, Outcome::Failed(&"timeout".to_string()));
    ///     Ok(())
    /// });
    /// let err = stack.close_with("timeout".to_string()).await.unwrap_err();
    /// assert_eq!(err.primary().unwrap(), "timeout");
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

/// A value entered with [`ExitStack::enter_with_handle`]: it derefs to the value, and
/// [`release`](Handle::release) exits that one context now, while every other value the stack
/// lent stays usable (resourcet's `release`, which [`ExitStack::release`] cannot do: it takes
/// the stack by `&mut`, so it ends every lent value).
///
/// The handle borrows the stack it came from: it is released on that stack (there is no stack
/// to pass), it cannot outlive it, and the stack cannot be closed, [`pop_all`](ExitStack::pop_all)ed
/// or released by key while the handle lives. `release` consumes the handle, so a released value
/// cannot be used, nor released again. Dropping a handle without releasing it leaves the entry
/// in the stack: it exits when the stack closes, in its place among the others.
///
/// A handle is `Send` when its value is, so that a body holding one stays `Send`.
///
/// ```
/// use async_with::{resource, scope, ExitStack, Outcome};
///
/// fn conn(name: &'static str) -> impl async_with::IntoContext<Value = Vec<String>, Error = String> {
///     resource(async || Ok(Vec::new()), async move |_, _: Outcome<'_, String>| { println!("close {name}"); Ok(()) })
/// }
///
/// # futures::executor::block_on(async {
/// scope(async |stack: &mut ExitStack<String>| {
///     let db = stack.enter(conn("db")).await?;
///     let mut tmp = stack.enter_with_handle(conn("tmp")).await?;
///     tmp.push("scratch".to_string()); // a handle derefs to its value
///     db.push("row".to_string());
///     tmp.release().await?; // close tmp, now
///     db.push("more".to_string()); // the other values are still there
///     Ok(())
/// })
/// .await
/// .unwrap(); // close tmp, then close db
/// # });
/// ```
pub struct Handle<'s, V, E> {
    stack: &'s ExitStack<E>,
    claim: Claim<'s, dyn Entry<E> + Send, V, Orphans<E>>,
}

impl<V, E: Send + Sync + 'static> Handle<'_, V, E> {
    /// Exits this context now, seeing [`Outcome::Completed`], instead of when the stack closes,
    /// while the other values of the stack stay usable. Returns the exit's error; further errors
    /// of a composite exit (a tuple's) are kept and reported when the stack closes, as
    /// [`ExitStack::release`] does.
    ///
    /// Like every exit, it is shielded from the scope's cancellation (a scope cancelled meanwhile
    /// waits for it to end) and bounded by the scope's [`exit_deadline`](crate::Scope::exit_deadline).
    /// A panic of the exit is resumed here. If the future is dropped before it is polled, the
    /// entry stays in the stack; dropped during the exit, the entry is dropped.
    ///
    /// ```
    /// use async_with::{resource, ExitStack, Outcome};
    ///
    /// # futures::executor::block_on(async {
    /// let stack = ExitStack::<String>::new();
    /// let kept = stack.enter(resource(async || Ok(1), async |_, _: Outcome<'_, String>| Ok(()))).await?;
    /// let lock = stack.enter_with_handle(resource(async || Ok("lock"), async |_, outcome: Outcome<'_, String>| {
    ///     assert!(outcome.is_completed());
    ///     Err("unlock failed".to_string())
    /// })).await?;
    /// assert_eq!(lock.release().await, Err("unlock failed".to_string()));
    /// *kept += 1;
    /// stack.close().await.map_err(|e| e.to_string())
    /// # }).unwrap();
    /// ```
    pub async fn release(self) -> Result<(), E> {
        let Handle { stack, claim } = self;
        Busy::new(stack.core.release_claimed(claim)).await
    }
}

impl<V, E> Deref for Handle<'_, V, E> {
    type Target = V;

    fn deref(&self) -> &V {
        self.claim.get()
    }
}

impl<V, E> DerefMut for Handle<'_, V, E> {
    fn deref_mut(&mut self) -> &mut V {
        self.claim.get_mut()
    }
}

/// The value's `Debug`, as for other smart pointers.
impl<V: fmt::Debug, E> fmt::Debug for Handle<'_, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// [`SendStack::enter_boxed`], the value lent as a claim: what [`ExitStack::enter_with_handle`] pushes.
/// Every context takes this path, whatever its own `enter_stack` does, so that the claimed value
/// is the one the stack's entry holds (the arena made the claim; see `arena.rs`).
async fn enter_claimed<C>(
    context: C,
    stack: &ExitStack<C::Error>,
) -> Result<Claim<'_, dyn Entry<C::Error> + Send, C::Value, Orphans<C::Error>>, Option<C::Error>>
where
    C: IntoContext + 'static,
    C::Error: Send + Sync + 'static,
    C::Context: 'static,
{
    let mut state = Box::pin(context.into_context());
    let mut unwind = stack.core.unwind();
    let Some(value) = SendProtocol::enter(state.as_mut(), &mut unwind).await else {
        return Err(stack.failed(unwind));
    };
    let exit = entry::composite_exit::<C::Context>;
    let entry = Box::pin(Owned::new(state, value, exit, entry::composite_fallback::<C::Context>));
    Ok(stack.core.push_claimed(entry, erase_send, Owned::value))
}

/// What the contexts that enter themselves into a stack ask of it (`IntoContext::enter_stack`).
impl<E: Send + Sync + 'static> SendStack<E> for ExitStack<E> {
    type Key = Key;

    fn push_context<X, V, F>(
        &self,
        exit: X,
        value: V,
        make: MakeExit<X, V, E, F>,
        fallback: Fallback<X, V>,
    ) -> (Key, &mut V)
    where
        X: Send + 'static,
        V: Send + 'static,
        F: Future<Output: Settle<E>> + Send + 'static,
    {
        let entry = Box::pin(Owned::new(exit, value, make, fallback));
        self.core.push(entry, erase_send, Owned::value)
    }

    fn push_entry<T, V>(&self, entry: Pin<Box<T>>, value: fn(Pin<&mut T>) -> &mut V) -> (Key, &mut V)
    where
        T: Entry<E> + Send + 'static,
    {
        self.core.push(entry, erase_send, value)
    }

    /// Enters a context that has no cheaper path: its protocol state, boxed (so that it stays
    /// pinned), exits through its own protocol. Used by tuples and combinators.
    async fn enter_boxed<P>(&self, mut state: Pin<Box<P>>) -> Result<(Key, &mut P::Value), Option<E>>
    where
        P: SendProtocol<Error = E> + Send + 'static,
        P::Value: Send + 'static,
    {
        let mut unwind = self.core.unwind();
        match SendProtocol::enter(state.as_mut(), &mut unwind).await {
            Some(value) => Ok(self.push_context(
                state,
                value,
                entry::composite_exit::<P>,
                entry::composite_fallback::<P>,
            )),
            None => Err(self.core.failed(unwind)),
        }
    }

    fn failed(&self, unwind: Unwind<E>) -> Option<E> {
        self.core.failed(unwind)
    }
}

impl<E: Send + Sync + 'static> ScopeStack for ExitStack<E> {
    type Error = E;
    type Entries = dyn Entry<E> + Send;

    fn with_deadlines(deadlines: Option<Deadlines<E>>) -> Self {
        ExitStack { core: Core::new(deadlines) }
    }

    fn core(&mut self) -> &mut Core<Self::Entries, E> {
        &mut self.core
    }
}
