//! A context made of two closures: Cats Effect's `Resource.make`, TC39's `DisposableStack.adopt`.

use core::fmt;
use core::future::Future;
use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::outcome::Outcome;
#[cfg(feature = "std")]
use crate::protocol::{LocalStack, SendStack};
use crate::protocol::{Protocol, Sealed, SendProtocol};
#[cfg(feature = "std")]
use crate::unwind::{Ran, Seed, exit_from_seed};
use crate::unwind::{Unwind, exit_within};

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
    Resource { enter: Some(enter), exit: Some(exit), on_drop: Some(DropValue) }
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
pub struct Resource<En, Ex, Fb = DropValue> {
    enter: Option<En>,
    exit: Option<Ex>,
    on_drop: Option<Fb>,
}

// Nothing in a `Resource` is ever pinned: the closures are moved out before they are called.
impl<En, Ex, Fb> Unpin for Resource<En, Ex, Fb> {}

impl<En, Ex, Fb> fmt::Debug for Resource<En, Ex, Fb> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("entered", &self.enter.is_none())
            .field("exited", &self.exit.is_none())
            .finish()
    }
}

impl<En, Ex, Fb, V, E> Resource<En, Ex, Fb>
where
    En: AsyncFnOnce() -> Result<V, E>,
{
    /// Sets the synchronous fallback: what runs instead of the async exit when the scope is
    /// dropped before it could exit (see the crate docs on cancellation). It runs inside `Drop`
    /// and must not block. Without one, the value is dropped.
    ///
    /// ```
    /// use async_with::{resource, Outcome};
    ///
    /// let child = resource(async || Ok::<_, String>(4242_u32), async |pid, _: Outcome<'_, String>| {
    ///     println!("terminate {pid}, then wait for it");
    ///     Ok(())
    /// })
    /// .on_drop(|pid| println!("kill -9 {pid}, no waiting"));
    /// # let _ = child;
    /// ```
    pub fn on_drop<G: FnOnce(V)>(self, fallback: G) -> Resource<En, Ex, G> {
        Resource { enter: self.enter, exit: self.exit, on_drop: Some(fallback) }
    }
}

/// The default fallback of a [`Resource`]: dropping the value.
///
/// ```
/// use async_with::{resource, DropValue, Outcome, Resource};
/// let r = resource(async || Ok::<_, ()>(1), async |_, _: Outcome<'_, ()>| Ok(()));
/// let _: &Resource<_, _, DropValue> = &r;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DropValue;

/// A synchronous fallback for a value: implemented by [`DropValue`] and every `FnOnce(V)`.
///
/// ```
/// use async_with::OnDrop;
/// fn run<V>(fallback: impl OnDrop<V>, value: V) { fallback.on_drop(value) }
/// run(|n: u8| assert_eq!(n, 1), 1);
/// ```
pub trait OnDrop<V> {
    /// Runs the fallback.
    fn on_drop(self, value: V);
}

impl<V> OnDrop<V> for DropValue {
    fn on_drop(self, value: V) {
        drop(value);
    }
}

impl<V, F: FnOnce(V)> OnDrop<V> for F {
    fn on_drop(self, value: V) {
        self(value)
    }
}

impl<En, Ex, Fb, V, E> IntoLocalContext for Resource<En, Ex, Fb>
where
    En: AsyncFnOnce() -> Result<V, E>,
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
    Fb: OnDrop<V>,
{
    type Value = V;
    type Error = E;
    type LocalContext = Self;

    fn into_local_context(self) -> Self {
        self
    }

    #[cfg(feature = "std")]
    async fn enter_local_stack<'a, 'env, S: LocalStack<'env, E>>(
        mut self,
        stack: &'a S,
    ) -> Result<(S::Key, &'a mut V), Option<E>>
    where
        Self: 'env,
        Self::Value: 'env,
        Self::Error: 'env,
        Self::LocalContext: 'env,
        'env: 'a,
    {
        let enter = self.enter.take().expect("async-with: a context is entered once");
        let value = crate::frame::StackEnter::new(enter()).await.ok_or(None)?.map_err(Some)?;
        let exit = self.exit.take().expect("async-with: a context is exited once");
        let on_drop = self.on_drop.take().expect("async-with: a context is exited once");
        Ok(stack.push_context(
            (exit, on_drop),
            value,
            local_closure_exit::<Ex, Fb, V, E>,
            fallback_closure::<Ex, Fb, V>,
        ))
    }
}

// The `AsyncFnOnce` bounds hold whenever the others do; stating them proves the supertrait.
impl<En, Ex, Fb, EnFut, V, E> IntoContext for Resource<En, Ex, Fb>
where
    En: AsyncFnOnce() -> Result<V, E>,
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
    En: FnOnce() -> EnFut + Send,
    EnFut: Future<Output = Result<V, E>> + Send,
    Ex: for<'a> ExitFn<'a, V, E> + Send,
    for<'a> <Ex as ExitFn<'a, V, E>>::Future: Send,
    Fb: OnDrop<V> + Send,
    V: Send,
    E: Send + Sync,
{
    type Context = Self;

    fn into_context(self) -> Self {
        self
    }

    #[cfg(feature = "std")]
    async fn enter_stack<S: SendStack<E>>(mut self, stack: &S) -> Result<(S::Key, &mut V), Option<E>>
    where
        Self: 'static,
        Self::Value: 'static,
        Self::Error: 'static,
        Self::Context: Send + 'static,
    {
        let enter = self.enter.take().expect("async-with: a context is entered once");
        let value = crate::frame::StackEnter::new(enter()).await.ok_or(None)?.map_err(Some)?;
        let exit = self.exit.take().expect("async-with: a context is exited once");
        let on_drop = self.on_drop.take().expect("async-with: a context is exited once");
        Ok(stack.push_context(
            (exit, on_drop),
            value,
            closure_exit::<Ex, Fb, V, E>,
            fallback_closure::<Ex, Fb, V>,
        ))
    }
}

/// The stack entry fallback of a resource: its `on_drop`, the exit closure unused.
#[cfg(feature = "std")]
fn fallback_closure<Ex, Fb: OnDrop<V>, V>((exit, on_drop): (Ex, Fb), value: V) {
    drop(exit);
    on_drop.on_drop(value);
}

impl<En, Ex, Fb> Sealed for Resource<En, Ex, Fb> {}

// The two flavours differ in how the closures are seen: the local one as `AsyncFnOnce`, the `Send`
// one as plain `FnOnce`s returning named futures, which is what lets its bounds say they are `Send`.
macro_rules! resource_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<E>) -> impl Future<Output = Option<V>> $(+ $send)? {
            let enter = self.get_mut().enter.take().expect("async-with: a context is entered once");
            unwind.enter(move || enter())
        }

        fn exit(self: Pin<&mut Self>, value: V, unwind: &mut Unwind<E>) -> impl Future<Output = ()> $(+ $send)? {
            let this = self.get_mut();
            let exit = this.exit.take().expect("async-with: a context is exited once");
            this.on_drop = None;
            async move {
                let deadline = unwind.deadline();
                let outcome = unwind.outcome();
                let result = exit_within(deadline, move || exit(value, outcome)).await;
                unwind.exited(result);
            }
        }

        fn fallback(self: Pin<&mut Self>, value: V) {
            let this = self.get_mut();
            this.exit = None;
            match this.on_drop.take() {
                Some(on_drop) => on_drop.on_drop(value),
                None => drop(value),
            }
        }
    };
}

impl<En, Ex, Fb, V, E> Protocol for Resource<En, Ex, Fb>
where
    En: AsyncFnOnce() -> Result<V, E>,
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
    Fb: OnDrop<V>,
{
    type Value = V;
    type Error = E;
    resource_protocol!(Protocol);
}

impl<En, Ex, Fb, EnFut, V, E> SendProtocol for Resource<En, Ex, Fb>
where
    En: FnOnce() -> EnFut + Send,
    EnFut: Future<Output = Result<V, E>> + Send,
    Ex: for<'a> ExitFn<'a, V, E> + Send,
    for<'a> <Ex as ExitFn<'a, V, E>>::Future: Send,
    Fb: OnDrop<V> + Send,
    V: Send,
    E: Send + Sync,
{
    type Value = V;
    type Error = E;
    resource_protocol!(SendProtocol + Send);
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

// The exit blocks of a resource entered into an exit stack (see `context.rs`'s).

#[cfg(feature = "std")]
fn closure_exit<Ex, Fb, V, E>(
    (exit, on_drop): (Ex, Fb),
    value: V,
    seed: Seed<E>,
) -> impl Future<Output = Ran<E>>
where
    Ex: for<'a> ExitFn<'a, V, E>,
{
    drop(on_drop);
    exit_from_seed!(seed, |outcome| exit(value, outcome))
}

#[cfg(feature = "std")]
fn local_closure_exit<Ex, Fb, V, E>(
    (exit, on_drop): (Ex, Fb),
    value: V,
    seed: Seed<E>,
) -> impl Future<Output = Ran<E>>
where
    Ex: AsyncFnOnce(V, Outcome<'_, E>) -> Result<(), E>,
{
    drop(on_drop);
    exit_from_seed!(seed, |outcome| exit(value, outcome))
}
