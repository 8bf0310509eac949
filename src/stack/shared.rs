//! What the `Send` and the local exit stacks share: the entries and the orphans (`Core`), the
//! closing loop that takes nested stacks over (`Splice`), and what a scope needs of its stack
//! (`ScopeStack`).

use alloc::boxed::Box;
use core::fmt;
use core::future::{Future, pending, poll_fn};
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};

use super::Key;
use super::arena::{Arena, Claim, Orphans};
use crate::error::{Error, Suppressed};
use crate::hook::GlobalHook;
use crate::protocol::{Entry, Spliced};
use crate::unwind::{Deadlines, Unwind};

/// Stack identities, so that a key cannot release an entry of another stack.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

pub(super) fn new_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What the `Send` and the local stacks share.
pub(crate) struct Core<D: ?Sized, E> {
    pub(super) id: u64,
    /// The entries, and beside them the errors that belong to no caller: the suppressed errors of
    /// an enter that failed half-way (its primary error went to the caller) or of a release,
    /// recorded first when the stack closes.
    pub(super) entries: Arena<D, Orphans<E>>,
    /// The exit deadlines of the scope that owns the stack, if it has them.
    pub(super) deadlines: Option<Deadlines<E>>,
}

impl<D: ?Sized + Splice<E>, E> Core<D, E> {
    pub(super) fn new(deadlines: Option<Deadlines<E>>) -> Self {
        Core { id: new_id(), entries: Arena::new(), deadlines }
    }

    pub(super) fn unwind(&self) -> Unwind<E> {
        Unwind::with_deadlines(self.deadlines.clone())
    }

    pub(super) fn push<T, V>(
        &self,
        entry: Pin<Box<T>>,
        erase: fn(*mut T) -> *mut D,
        value: fn(Pin<&mut T>) -> &mut V,
    ) -> (Key, &mut V) {
        let (number, value) = self.entries.push(entry, erase, value);
        (Key { stack: self.id, entry: number }, value)
    }

    /// [`Core::push`], the value lent as a claim (for a [`Handle`]) rather than with a key.
    pub(super) fn push_claimed<T, V>(
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
    pub(super) fn failed(&self, unwind: Unwind<E>) -> Option<E> {
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

    pub(super) async fn release(&mut self, key: Key) -> Result<(), E> {
        assert_eq!(key.stack, self.id, "async-with: this key belongs to another exit stack");
        let entry = self
            .entries
            .take(key.entry)
            .expect("async-with: this entry was already released (or closed with the stack)");
        self.exit_now(entry).await
    }

    /// Runs a claimed entry's exit now: the stack stays shared, so that its other values stay
    /// usable (see `arena.rs`).
    pub(super) async fn release_claimed<V>(&self, claim: Claim<'_, D, V, Orphans<E>>) -> Result<(), E> {
        self.exit_now(claim.take()).await
    }

    /// Runs the exit of `entry`, taken out of the stack, seeing `Outcome::Completed` (under the
    /// scope's exit deadlines); returns its first error and keeps the others (orphans).
    pub(super) async fn exit_now(&self, entry: Pin<Box<D>>) -> Result<(), E> {
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

    pub(super) fn pop_all(&mut self) -> Self {
        // The taken entries (and the orphans beside them) leave this scope: its cancellation no
        // longer applies to them.
        let taken = Core { id: self.id, entries: self.entries.split(), deadlines: None };
        // The keys given out so far follow the entries.
        self.id = new_id();
        taken
    }

    /// Records the orphaned errors into `unwind` (they happened before any exit that runs at
    /// close: G5 wants them in that order), then runs every exit, newest first.
    pub(super) fn close_into<'a>(&'a mut self, unwind: &'a mut Unwind<E>) -> Close<'a, D, E> {
        self.report_orphans(unwind);
        Close { core: self, unwind, current: Exiting::default() }
    }

    pub(super) fn report_orphans(&mut self, unwind: &mut Unwind<E>) {
        for error in self.entries.beside_mut().take() {
            let (error, origin) = error.into_parts();
            unwind.failed(error, origin);
        }
    }

    /// The closing loop: runs every exit, newest first, each in place inside its entry (the
    /// entry whose exit is running waits in `current`); a loop, however many entries there are.
    /// A nested stack's entries are taken over when it is reached (its orphans recorded first,
    /// as it would record them itself), so that nesting does not recurse either.
    pub(super) fn poll_close(
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
    pub(super) async fn close(mut self, mut unwind: Unwind<E>) -> Result<(), Error<E>>
    where
        E: fmt::Debug,
    {
        self.close_into(&mut unwind).await;
        unwind.finish(Some(()), &mut GlobalHook)
    }
}

/// The future of [`Core::close_into`]: the closing loop, [`Core::poll_close`].
pub(super) struct Close<'a, D: ?Sized, E> {
    pub(super) core: &'a mut Core<D, E>,
    pub(super) unwind: &'a mut Unwind<E>,
    pub(super) current: Exiting<D>,
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
    pub(super) fn running(&mut self) -> Pin<&mut D> {
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
    pub(super) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name).field("id", &self.id).finish_non_exhaustive()
    }
}

// ----- Entering contexts into stacks: the paths `IntoContext::enter_stack` takes. -----

/// An enter that gave up because the scope was cancelled (`Err(None)`) never completes: the
/// scope stops the body at this await (it no longer counts as an enter in progress).
pub(super) async fn entered_or_park<T, E>(entered: Result<T, Option<E>>) -> Result<T, E> {
    match entered {
        Ok(entered) => Ok(entered),
        Err(Some(error)) => Err(error),
        Err(None) => pending().await,
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
