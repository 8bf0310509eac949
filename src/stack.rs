//! Exit stacks: Python's `AsyncExitStack`, JavaScript's `AsyncDisposableStack`, Haskell's
//! `ResourceT`. Contexts entered at run time, exited in reverse order when the stack closes.
//!
//! A stack keeps its entries in an arena (`arena.rs`, the crate's one `unsafe` module) and closes
//! them in a loop ([`Core::poll_close`]): newest first, each exit polled in place. The errors a
//! stack keeps for no caller (its *orphans*: the further errors of an enter that failed half-way,
//! or of a release) happened before anything that runs at close, so they are recorded first. A
//! stack entered into a stack hands its entries over to the loop of the stack around it when
//! that loop reaches it ([`Splice`]), for closing and for dropping alike: stacks nested however
//! deep close and drop on a small thread stack. Dropping a stack drops its entries newest first;
//! a destructor that panics is contained and does not stop the others.
//!
//! A [`Key`] names an entry by its stack and its number (from a count of every stack's pushes, never
//! reused), so that a released entry's key never reaches a newer entry, and released entries
//! give their memory back however many enter/release cycles a stack goes through. A [`Handle`]
//! holds its entry's value as a claim on the arena, the one path to that value: releasing it takes
//! that entry out through the shared stack, the other lent values untouched (see `arena.rs`).

pub(crate) mod arena;
mod entry;

use alloc::boxed::Box;
use core::fmt;
use core::future::{Future, poll_fn};
use core::ops::{Deref, DerefMut};
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::outcome::OutcomeFn;
pub(crate) use crate::protocol::Entry;

use core::future::pending;

use self::arena::{Arena, Claim, Orphans};
use self::entry::{NestedEntry, Owned};
use crate::context::{IntoContext, IntoLocalContext};
use crate::error::Error;
use crate::error::Suppressed;
use crate::frame::{self, Busy, Entering};
use crate::hook::{ErrorHook, GlobalHook};
use crate::origin::{Origin, Step};
use crate::outcome::Outcome;
use crate::protocol::{Fallback, LocalStack, MakeExit, Protocol, Sealed, SendProtocol, SendStack, Spliced};
use crate::unwind::{Deadlines, Unwind};
use crate::with::{DropReport, RunBody, Scoped};
use crate::with::{ExitDeadline, Scope};

/// Identifies one entry of one stack, for [`ExitStack::release`].
///
/// ```
/// use async_with::{scope, ExitStack};
///
/// # futures::executor::block_on(async {
/// scope(async |stack: &mut ExitStack<String>| {
///     let key = stack.callback(|| { println!("released early"); Ok(()) });
///     stack.release(key).await?; // runs now, not at the end of the scope
///     Ok(())
/// })
/// .await
/// .unwrap();
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    stack: u64,
    /// The entry's number in its stack's arena (never reused).
    entry: u64,
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

/// A value entered with [`LocalExitStack::enter_with_handle`]: a [`Handle`] of a local stack
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

impl<'env, V, E: 'env> LocalHandle<'_, 'env, V, E> {
    /// Exits this context now, while the other values stay usable; see [`Handle::release`].
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
impl<V: fmt::Debug, E> fmt::Debug for Handle<'_, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The value's `Debug`, as for other smart pointers.
impl<V: fmt::Debug, E> fmt::Debug for LocalHandle<'_, '_, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Stack identities, so that a key cannot release an entry of another stack.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What the `Send` and the local stacks share.
pub(crate) struct Core<D: ?Sized, E> {
    id: u64,
    /// The entries, and beside them the errors that belong to no caller: the suppressed errors of
    /// an enter that failed half-way (its primary error went to the caller) or of a release,
    /// recorded first when the stack closes.
    entries: Arena<D, Orphans<E>>,
    /// The exit deadlines of the scope that owns the stack, if it has them.
    deadlines: Option<Deadlines<E>>,
}

impl<D: ?Sized + Splice<E>, E> Core<D, E> {
    fn new(deadlines: Option<Deadlines<E>>) -> Self {
        Core { id: new_id(), entries: Arena::new(), deadlines }
    }

    fn unwind(&self) -> Unwind<E> {
        Unwind::with_deadlines(self.deadlines.clone())
    }

    fn push<T, V>(
        &self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> (Key, &mut V) {
        let (number, value) = self.entries.push(entry, erase, value);
        (Key { stack: self.id, entry: number }, value)
    }

    /// [`Core::push`], the value lent as a claim (for a [`Handle`]) rather than with a key.
    fn push_claimed<T, V>(
        &self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> Claim<'_, D, V, Orphans<E>> {
        self.entries.push_claimed(entry, erase, value)
    }

    /// The caller of an enter that failed gets its first error; the others are kept. An enter
    /// that gave up because the scope was cancelled has no error to give (`None`): the caller
    /// then never completes, and the scope stops the body right there.
    fn failed(&self, unwind: Unwind<E>) -> Option<E> {
        let cancelled = unwind.outcome().is_cancelled();
        let (errors, panic) = unwind.into_parts();
        let mut errors = errors.into_iter();
        // A panic resumes in the body: every error stays with the stack, which reports them
        // (to the hook, since the scope will be panicking) when it closes.
        let first =
            if cancelled || panic.is_some() { None } else { errors.next().map(Suppressed::into_error) };
        self.entries.beside(|orphans| orphans.extend(errors));
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        first
    }

    async fn release(&mut self, key: Key) -> Result<(), E> {
        assert_eq!(key.stack, self.id, "async-with: this key belongs to another exit stack");
        let entry = self
            .entries
            .take(key.entry)
            .expect("async-with: this entry was already released (or closed with the stack)");
        self.exit_now(entry).await
    }

    /// Runs a claimed entry's exit now: the stack stays shared, so that its other values stay
    /// usable (see `arena.rs`).
    async fn release_claimed<V>(&self, claim: Claim<'_, D, V, Orphans<E>>) -> Result<(), E> {
        self.exit_now(claim.take()).await
    }

    /// Runs the exit of `entry`, taken out of the stack, seeing `Outcome::Completed` (under the
    /// scope's exit deadlines); returns its first error and keeps the others (orphans).
    async fn exit_now(&self, entry: Pin<Box<D>>) -> Result<(), E> {
        // If this future is dropped during the exit, the entry is dropped quietly.
        let mut current = Exiting(Some(entry));
        let mut unwind = self.unwind();
        poll_fn(|task| current.running().poll_exit(task, &mut unwind)).await;
        if let Some(entry) = current.0.take() {
            unwind.drop_value(entry);
        }
        let (errors, panic) = unwind.into_parts();
        let mut errors = errors.into_iter();
        // A panic resumes in the body and the caller gets no error: every error stays with the
        // stack, as for an enter that panics half-way ([`Core::failed`]).
        let first = if panic.is_some() { None } else { errors.next().map(Suppressed::into_error) };
        self.entries.beside(|orphans| orphans.extend(errors));
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        first.map_or(Ok(()), Err)
    }

    fn pop_all(&mut self) -> Self {
        // The taken entries (and the orphans beside them) leave this scope: its cancellation no
        // longer applies to them.
        let taken = Core { id: self.id, entries: self.entries.split(), deadlines: None };
        // The keys given out so far follow the entries.
        self.id = new_id();
        taken
    }

    /// Records the orphaned errors into `unwind` (they happened before any exit that runs at
    /// close: G5 wants them in that order), then runs every exit, newest first.
    fn close_into<'a>(&'a mut self, unwind: &'a mut Unwind<E>) -> Close<'a, D, E> {
        self.report_orphans(unwind);
        Close { core: self, unwind, current: Exiting::default() }
    }

    fn report_orphans(&mut self, unwind: &mut Unwind<E>) {
        for error in self.entries.beside_mut().take() {
            let (error, origin) = error.into_parts();
            unwind.failed(error, origin);
        }
    }

    /// The closing loop: runs every exit, newest first, each in place inside its entry (the
    /// entry whose exit is running waits in `current`); a loop, however many entries there are.
    /// A nested stack's entries are taken over when it is reached (its orphans recorded first,
    /// as it would record them itself), so that nesting does not recurse either.
    fn poll_close(
        &mut self,
        current: &mut Exiting<D>,
        task: &mut core::task::Context<'_>,
        unwind: &mut Unwind<E>,
    ) -> core::task::Poll<()> {
        loop {
            if current.0.is_none() {
                let Some(mut entry) = self.entries.pop() else { break };
                if let Some(Spliced { entries, orphans }) = D::nested(entry.as_mut()) {
                    for error in orphans {
                        let (error, origin) = error.into_parts();
                        unwind.failed(error, origin);
                    }
                    self.entries.append(entries, |entry| entry);
                    unwind.drop_value(entry); // an empty stack
                    continue;
                }
                current.0 = Some(entry);
            }
            core::task::ready!(current.running().poll_exit(task, unwind));
            if let Some(done) = current.0.take() {
                unwind.drop_value(done);
            }
        }
        core::task::Poll::Ready(())
    }

    /// Closes the stack starting from `unwind` (empty, or holding `close_with`'s error) and
    /// reports what came of it, panics through the global hook.
    async fn close(mut self, mut unwind: Unwind<E>) -> Result<(), Error<E>>
    where
        E: fmt::Debug,
    {
        self.close_into(&mut unwind).await;
        unwind.finish(Some(()), &mut GlobalHook)
    }
}

/// The future of [`Core::close_into`]: the closing loop, [`Core::poll_close`].
struct Close<'a, D: ?Sized, E> {
    core: &'a mut Core<D, E>,
    unwind: &'a mut Unwind<E>,
    current: Exiting<D>,
}

impl<D: ?Sized + Splice<E>, E> Future for Close<'_, D, E> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, task: &mut core::task::Context<'_>) -> core::task::Poll<()> {
        let this = &mut *self;
        this.core.poll_close(&mut this.current, task, this.unwind)
    }
}

/// The entry whose exit is running, if any. Dropped before its exit ends (the close or release
/// future was dropped), it is dropped quietly: a panic in a destructor it runs is contained.
pub(crate) struct Exiting<D: ?Sized>(Option<Pin<Box<D>>>);

impl<D: ?Sized> Default for Exiting<D> {
    fn default() -> Self {
        Exiting(None)
    }
}

impl<D: ?Sized> Exiting<D> {
    fn running(&mut self) -> Pin<&mut D> {
        self.0.as_mut().expect("async-with: an entry is exiting").as_mut()
    }
}

impl<D: ?Sized> Drop for Exiting<D> {
    fn drop(&mut self) {
        if let Some(entry) = self.0.take() {
            crate::catch_unwind::quietly(move || drop(entry));
        }
    }
}

/// The entry type of a stack: `dyn Entry<E> + Send` for an [`ExitStack`], `dyn Entry<E> + 'env`
/// for a [`LocalExitStack`]. It says how the entries of a stack nested in one become its own
/// (a `Send` stack only ever holds `Send` ones; a local stack holds either).
pub(crate) trait Splice<E>: Entry<E> {
    /// If `entry` is a nested stack, takes its entries and orphaned errors out.
    fn nested(entry: Pin<&mut Self>) -> Option<Spliced<Self, E>>;
}

impl<E> Splice<E> for dyn Entry<E> + Send {
    fn nested(entry: Pin<&mut Self>) -> Option<Spliced<Self, E>> {
        entry.splice_send()
    }
}

impl<'env, E: 'env> Splice<E> for dyn Entry<E> + 'env {
    fn nested(entry: Pin<&mut Self>) -> Option<Spliced<Self, E>> {
        entry.splice_local()
    }
}

impl<D: ?Sized, E> Core<D, E> {
    /// The stack's identity (which its keys carry); its entries stay private to it.
    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name).field("id", &self.id).finish_non_exhaustive()
    }
}

/// A stack of exits: contexts entered at run time and callbacks pushed along the way, all exited
/// in reverse order, exactly once, when the stack closes. Python's `AsyncExitStack`.
///
/// Get one from [`scope`], which closes it however the body ends (G1-G6), or make one with
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
/// Everything a `Send` stack holds is `Send` and `'static`, so that [`scope`] futures can be
/// spawned on multi-threaded executors. For entries that borrow from their surroundings, or
/// that are not `Send`, use [`LocalExitStack`].
///
/// Each entry costs one heap allocation (plus, for a [`context`](crate::context()), the one every
/// generator context needs; a tuple entered as one context costs one more). Closing runs in a
/// loop, so a stack of a million entries, or of stacks nested in stacks twenty thousand deep,
/// closes on a small thread stack. Dropping a stack without closing it runs no async exit: its
/// entries are dropped newest first (with the synchronous fallback of each context), the same
/// loop taking in nested stacks; a destructor that panics does not stop the others (its panic is
/// contained). A released entry's memory is reused: enter/release cycles do not grow a stack.
pub struct ExitStack<E> {
    core: Core<dyn Entry<E> + Send, E>,
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
    /// An empty stack. Close it with [`close`](ExitStack::close), or let [`scope`] do it.
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
        self.push_owned(callback, (), entry::deferred::<F, Fut, E>, entry::drop_both).0
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
        self.push_owned(exit, (), entry::outcome_exit::<F, E>, entry::drop_both).0
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
        self.push_owned(callback, (), entry::called::<F, E>, entry::drop_both).0
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

    fn push_owned<X, V, F>(
        &self,
        exit: X,
        value: V,
        make: MakeExit<X, V, E, F>,
        fallback: Fallback<X, V>,
    ) -> (Key, &mut V)
    where
        X: Send + 'static,
        V: Send + 'static,
        F: Future<Output = Unwind<E>> + Send + 'static,
    {
        let entry = Box::pin(Owned::new(exit, value, make, fallback));
        self.core.push(entry, erase_send, Owned::value)
    }
}

/// [`ExitStack`] for entries that are not `Send` or that borrow from their surroundings (`'env`):
/// the stack of [`scope_local`].
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
    core: Core<dyn Entry<E> + 'env, E>,
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
    /// An empty stack; see [`ExitStack::new`].
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

    /// Enters `context` and lends its value; see [`ExitStack::enter`].
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

    /// Enters `context` and returns a key to release it early; see [`ExitStack::enter_with_key`].
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
    /// stay usable; see [`ExitStack::enter_with_handle`].
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

    /// Pushes an async callback; see [`ExitStack::defer`].
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
        self.push_owned(callback, (), entry::deferred::<F, Fut, E>, entry::drop_both).0
    }

    /// Pushes an async exit that sees the outcome; see [`ExitStack::push_exit`].
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
        self.push_owned(exit, (), entry::local_outcome_exit::<F, E>, entry::drop_both).0
    }

    /// Pushes a synchronous callback; see [`ExitStack::callback`].
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
        self.push_owned(callback, (), entry::called::<F, E>, entry::drop_both).0
    }

    /// Exits one entry now; see [`ExitStack::release`].
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

    /// Moves every pending exit into a new stack; see [`ExitStack::pop_all`].
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

    /// Runs every exit, newest first; see [`ExitStack::close`].
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

    /// Closes the stack because of `error`; see [`ExitStack::close_with`].
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

    fn push_owned<X, V, F>(
        &self,
        exit: X,
        value: V,
        make: MakeExit<X, V, E, F>,
        fallback: Fallback<X, V>,
    ) -> (Key, &mut V)
    where
        X: 'env,
        V: 'env,
        F: Future<Output = Unwind<E>> + 'env,
    {
        let entry = Box::pin(Owned::new(exit, value, make, fallback));
        self.core.push(entry, erase_local, Owned::value)
    }
}

// ----- Entering contexts into stacks: the paths `IntoContext::enter_stack` takes. -----

/// An enter that gave up because the scope was cancelled (`Err(None)`) never completes: the
/// scope stops the body at this await (it no longer counts as an enter in progress).
async fn entered_or_park<T, E>(entered: Result<T, Option<E>>) -> Result<T, E> {
    match entered {
        Ok(entered) => Ok(entered),
        Err(Some(error)) => Err(error),
        Err(None) => pending().await,
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
        F: Future<Output = Unwind<E>> + Send + 'static,
    {
        self.push_owned(exit, value, make, fallback)
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
            Some(value) => {
                Ok(self.push_owned(state, value, entry::composite_exit::<P>, entry::composite_fallback::<P>))
            }
            None => Err(self.core.failed(unwind)),
        }
    }

    fn failed(&self, unwind: Unwind<E>) -> Option<E> {
        self.core.failed(unwind)
    }
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
        F: Future<Output = Unwind<E>> + 'env,
    {
        self.push_owned(exit, value, make, fallback)
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
            Some(value) => Ok(self.push_owned(
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

// ----- A stack is a context itself (a stack inside a stack, or `with(ExitStack::new(), ..)`). -----

/// The protocol state of an exit stack entered as a context (sealed).
#[doc(hidden)]
#[derive(Debug)]
pub struct Nested<S> {
    stack: Option<S>,
}

impl<S> Unpin for Nested<S> {}
impl<S> Sealed for Nested<S> {}

/// Entering a stack gives the stack itself as the value; exiting it closes it, its exits seeing
/// the outcome of the scope around it.
impl<E: Send + Sync + 'static> IntoLocalContext for ExitStack<E> {
    type Value = ExitStack<E>;
    type Error = E;
    type LocalContext = Nested<ExitStack<E>>;

    fn into_local_context(self) -> Self::LocalContext {
        Nested { stack: Some(self) }
    }

    /// A stack entered into a local stack: see `enter_stack`.
    fn enter_local_stack<'a, 'env, S: LocalStack<'env, E>>(
        self,
        stack: &'a S,
    ) -> impl Future<Output = Result<(S::Key, &'a mut ExitStack<E>), Option<E>>>
    where
        Self: 'env,
        'env: 'a,
    {
        core::future::ready(Ok(stack.push_entry(Box::pin(NestedEntry::new(self)), NestedEntry::value)))
    }
}

impl<E: Send + Sync + 'static> IntoContext for ExitStack<E> {
    type Context = Nested<ExitStack<E>>;

    fn into_context(self) -> Self::Context {
        Nested { stack: Some(self) }
    }

    /// A stack entered into a stack is an entry of its own kind, whose entries the stack around
    /// it takes over when it closes or drops it.
    fn enter_stack<S: SendStack<E>>(
        self,
        stack: &S,
    ) -> impl Future<Output = Result<(S::Key, &mut ExitStack<E>), Option<E>>> + Send
    where
        Self: 'static,
    {
        core::future::ready(Ok(stack.push_entry(Box::pin(NestedEntry::new(self)), NestedEntry::value)))
    }
}

impl<'env, E: 'env> IntoLocalContext for LocalExitStack<'env, E> {
    type Value = LocalExitStack<'env, E>;
    type Error = E;
    type LocalContext = Nested<LocalExitStack<'env, E>>;

    fn into_local_context(self) -> Self::LocalContext {
        Nested { stack: Some(self) }
    }

    /// A local stack entered into a local stack: see [`ExitStack`]'s `enter_stack`.
    fn enter_local_stack<'a, 'outer, S: LocalStack<'outer, E>>(
        self,
        stack: &'a S,
    ) -> impl Future<Output = Result<(S::Key, &'a mut LocalExitStack<'env, E>), Option<E>>>
    where
        Self: 'outer,
        E: 'outer,
        'outer: 'a,
    {
        core::future::ready(Ok(stack.push_entry(Box::pin(NestedEntry::new(self)), NestedEntry::value)))
    }
}

impl<E: Send + Sync + 'static> SendProtocol for Nested<ExitStack<E>> {
    type Value = ExitStack<E>;
    type Error = E;

    fn enter(self: Pin<&mut Self>, _: &mut Unwind<E>) -> impl Future<Output = Option<ExitStack<E>>> + Send {
        core::future::ready(self.get_mut().stack.take())
    }

    // The stack is moved in once: an `async fn` would keep it twice (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)]
    fn exit(
        self: Pin<&mut Self>,
        mut stack: ExitStack<E>,
        unwind: &mut Unwind<E>,
    ) -> impl Future<Output = ()> + Send {
        async move { stack.core.close_into(unwind).await }
    }

    fn fallback(self: Pin<&mut Self>, stack: ExitStack<E>) {
        drop(stack); // its entries fall back, newest first
    }
}

impl<E: Send + Sync + 'static> Protocol for Nested<ExitStack<E>> {
    type Value = ExitStack<E>;
    type Error = E;

    fn enter(self: Pin<&mut Self>, _: &mut Unwind<E>) -> impl Future<Output = Option<ExitStack<E>>> {
        core::future::ready(self.get_mut().stack.take())
    }

    // The stack is moved in once: an `async fn` would keep it twice (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)]
    fn exit(
        self: Pin<&mut Self>,
        mut stack: ExitStack<E>,
        unwind: &mut Unwind<E>,
    ) -> impl Future<Output = ()> {
        async move { stack.core.close_into(unwind).await }
    }

    fn fallback(self: Pin<&mut Self>, stack: ExitStack<E>) {
        drop(stack); // its entries fall back, newest first
    }
}

impl<'env, E: 'env> Protocol for Nested<LocalExitStack<'env, E>> {
    type Value = LocalExitStack<'env, E>;
    type Error = E;

    fn enter(
        self: Pin<&mut Self>,
        _: &mut Unwind<E>,
    ) -> impl Future<Output = Option<LocalExitStack<'env, E>>> {
        core::future::ready(self.get_mut().stack.take())
    }

    // The stack is moved in once: an `async fn` would keep it twice (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)]
    fn exit(
        self: Pin<&mut Self>,
        mut stack: LocalExitStack<'env, E>,
        unwind: &mut Unwind<E>,
    ) -> impl Future<Output = ()> {
        async move { stack.core.close_into(unwind).await }
    }

    fn fallback(self: Pin<&mut Self>, stack: LocalExitStack<'env, E>) {
        drop(stack);
    }
}

/// What [`Scope::scope`] and [`Scope::scope_local`] need of their stack: to be made under the
/// scope's exit deadlines, and its core, to close; and what a stack entered into a stack
/// ([`entry::NestedEntry`]) needs of it.
pub(crate) trait ScopeStack {
    type Error;
    type Entries: ?Sized + Splice<Self::Error>;

    fn with_deadlines(deadlines: Option<Deadlines<Self::Error>>) -> Self;

    fn core(&mut self) -> &mut Core<Self::Entries, Self::Error>;
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
