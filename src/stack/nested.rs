//! A stack is a context itself: a stack entered into a stack (whose entries the stack around it
//! takes over, [`NestedEntry`]), or `with(ExitStack::new(), ..)`.

use alloc::boxed::Box;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::arena::Arena;
use super::local::LocalExitStack;
use super::send::ExitStack;
use super::shared::{Exiting, ScopeStack, Splice};
use crate::catch_unwind::quietly;
use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Entry, LocalStack, Protocol, Sealed, SendProtocol, SendStack, Spliced};
use crate::unwind::Unwind;

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

/// A stack entered into a stack: the nested stack itself is the value. Closed, it runs its
/// exits (seeing the outcome of the stack around it); dropped, it drops its entries. Either way
/// in a loop that takes over the entries of the stacks nested in it, so that neither recurses.
pub(crate) struct NestedEntry<S: ScopeStack> {
    stack: S,
    /// Whether its exit started (its orphaned errors are reported when it does).
    started: bool,
    current: Exiting<S::Entries>,
}

// The entry is never pinned structurally: the stack inside it is lent as a plain `&mut`.
impl<S: ScopeStack> Unpin for NestedEntry<S> {}

impl<S: ScopeStack> NestedEntry<S> {
    pub(crate) fn new(stack: S) -> Self {
        NestedEntry { stack, started: false, current: Exiting::default() }
    }

    /// The nested stack, for the stack around it to lend.
    pub(crate) fn value(self: Pin<&mut Self>) -> &mut S {
        &mut self.get_mut().stack
    }

    /// Closes the nested stack here (when it is released by key: a stack around it that closes
    /// takes its entries over instead).
    fn poll_close(self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<S::Error>) -> Poll<()> {
        let this = self.get_mut();
        let core = this.stack.core();
        if !core::mem::replace(&mut this.started, true) {
            core.report_orphans(unwind);
        }
        core.poll_close(&mut this.current, task, unwind)
    }

    /// Takes the nested stack's entries and orphaned errors out, unless its exit started.
    fn splice(&mut self) -> Option<Spliced<S::Entries, S::Error>> {
        if self.started {
            return None;
        }
        let mut entries = self.stack.core().entries.split();
        let orphans = entries.beside_mut().take();
        Some(Spliced { entries, orphans })
    }

    /// [`NestedEntry::splice`], the entries turned by `erase` into the stack around it's.
    fn splice_as<D: ?Sized>(&mut self, erase: fn(*mut S::Entries) -> *mut D) -> Option<Spliced<D, S::Error>> {
        let Spliced { entries: theirs, orphans } = self.splice()?;
        let mut entries = Arena::new();
        entries.append(theirs, erase);
        Some(Spliced { entries, orphans })
    }
}

impl<S: ScopeStack> Drop for NestedEntry<S> {
    /// Drops the nested stack's entries newest first, taking over the entries of the stacks
    /// nested in them as it meets them (a loop, however deep they nest). A panic in one drop is
    /// contained and does not stop the others.
    fn drop(&mut self) {
        drop(core::mem::take(&mut self.current)); // an exit in progress is the newest
        let core = self.stack.core();
        while let Some(mut entry) = core.entries.pop() {
            if let Some(Spliced { entries, orphans }) = S::Entries::nested(entry.as_mut()) {
                core.entries.append(entries, |entry| entry);
                quietly(move || drop(orphans));
            }
            quietly(move || drop(entry));
        }
    }
}

fn send_as_local<'a, E>(entry: *mut (dyn Entry<E> + Send)) -> *mut (dyn Entry<E> + 'a) {
    entry
}

fn local_as_local<'a, 'env: 'a, E>(entry: *mut (dyn Entry<E> + 'env)) -> *mut (dyn Entry<E> + 'a) {
    entry
}

impl<E: Send + Sync + 'static> Entry<E> for NestedEntry<ExitStack<E>> {
    fn poll_exit(self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Poll<()> {
        self.poll_close(task, unwind)
    }

    fn splice_send(self: Pin<&mut Self>) -> Option<Spliced<dyn Entry<E> + Send, E>> {
        self.get_mut().splice()
    }

    fn splice_local<'a>(self: Pin<&mut Self>) -> Option<Spliced<dyn Entry<E> + 'a, E>>
    where
        Self: 'a,
    {
        self.get_mut().splice_as(send_as_local)
    }
}

impl<'env, E: 'env> Entry<E> for NestedEntry<LocalExitStack<'env, E>> {
    fn poll_exit(self: Pin<&mut Self>, task: &mut Context<'_>, unwind: &mut Unwind<E>) -> Poll<()> {
        self.poll_close(task, unwind)
    }

    fn splice_local<'a>(self: Pin<&mut Self>) -> Option<Spliced<dyn Entry<E> + 'a, E>>
    where
        Self: 'a,
    {
        self.get_mut().splice_as(local_as_local)
    }
}
