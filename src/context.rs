//! What a context is: the traits users implement ([`AsyncContext`], [`LocalAsyncContext`]) and the
//! ones scopes accept ([`IntoContext`], [`IntoLocalContext`]).

#[cfg(feature = "std")]
use alloc::boxed::Box;
use core::future::Future;
use core::pin::Pin;

use crate::outcome::Outcome;
#[cfg(feature = "std")]
use crate::protocol::{Entered, LocalStack, SendStack};
use crate::protocol::{Protocol, Sealed, SendProtocol};
#[cfg(feature = "std")]
use crate::unwind::{Ran, Seed, exit_from_seed};
use crate::unwind::{Unwind, exit_within};

/// A type that is a context itself: Python's `__aenter__` / `__aexit__`.
///
/// `enter` acquires (connects, spawns, begins) and gives the value the body borrows; `exit` gets
/// that value back, with the [`Outcome`] of everything that ran inside, and releases it. A scope
/// calls `exit` exactly once for every `enter` that returned `Ok`, and never after one that failed
/// or panicked: an `enter` that fails half-way must undo its own work before returning the error.
///
/// The futures must be `Send`, so that scopes over these contexts run on multi-threaded executors,
/// also behind `impl IntoContext` return types. For a context that holds `Rc`s or other `!Send`
/// state, implement [`LocalAsyncContext`] instead and enter it with
/// [`with_local`](crate::with_local): it is the same trait without that requirement (the pattern
/// of the `trait-variant` crate). Every `AsyncContext` is also a `LocalAsyncContext`.
///
/// ```
/// use async_with::{with, AsyncContext, Outcome};
///
/// struct Session { host: &'static str, log: Vec<String> }
/// struct Conn { host: &'static str, sent: usize }
///
/// impl AsyncContext for &mut Session {
///     type Value = Conn;
///     type Error = String;
///
///     async fn enter(&mut self) -> Result<Conn, String> {
///         self.log.push(format!("connect {}", self.host));
///         Ok(Conn { host: self.host, sent: 0 })
///     }
///
///     async fn exit(self, conn: Conn, outcome: Outcome<'_, String>) -> Result<(), String> {
///         self.log.push(format!("close {} after {} ({outcome:?})", conn.host, conn.sent));
///         Ok(())
///     }
/// }
///
/// # futures::executor::block_on(async {
/// let mut session = Session { host: "db.local", log: vec![] };
/// let sent = with(&mut session, async |conn| {
///     conn.sent += 3;
///     Ok(conn.sent)
/// })
/// .await
/// .unwrap();
/// assert_eq!(sent, 3);
/// assert_eq!(session.log, ["connect db.local", "close db.local after 3 (Completed)"]);
/// # });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an `AsyncContext`",
    note = "a type implementing `LocalAsyncContext` (whose futures are not `Send`) is entered with `with_local`, not `with`"
)]
pub trait AsyncContext: Send {
    /// What `enter` gives and the body borrows.
    type Value: Send;
    /// The error type of `enter`, `exit` and the body of every scope over this context. Exits
    /// may hold a reference to it across awaits, hence `Sync`.
    type Error: Send + Sync;

    /// Acquires the resource. On error, whatever was acquired must be released before returning:
    /// `exit` will not be called.
    fn enter(&mut self) -> impl Future<Output = Result<Self::Value, Self::Error>> + Send;

    /// Releases the resource, knowing how the scope ended. Called exactly once after a successful
    /// `enter`, also when the body failed, panicked or was cancelled.
    fn exit(
        self,
        value: Self::Value,
        outcome: Outcome<'_, Self::Error>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The synchronous fallback, run instead of `exit` when the scope is dropped before it could
    /// exit (a `select!` or a runtime's timeout dropped it; see the crate docs on cancellation).
    /// It runs inside `Drop`: it must not block or wait. By default the value is dropped.
    ///
    /// ```
    /// use async_with::{AsyncContext, Outcome};
    ///
    /// struct Child;
    /// struct Process { pid: u32 }
    ///
    /// impl AsyncContext for Child {
    ///     type Value = Process;
    ///     type Error = std::io::Error;
    ///     async fn enter(&mut self) -> std::io::Result<Process> { Ok(Process { pid: 42 }) }
    ///     async fn exit(self, p: Process, _: Outcome<'_, std::io::Error>) -> std::io::Result<()> {
    ///         println!("terminating {} and waiting for it", p.pid);
    ///         Ok(())
    ///     }
    ///     fn exit_on_drop(self, p: Process) {
    ///         println!("sending a kill signal to {}, without waiting", p.pid);
    ///     }
    /// }
    /// ```
    fn exit_on_drop(self, value: Self::Value)
    where
        Self: Sized,
    {
        drop(value);
    }
}

/// [`AsyncContext`] without the `Send` requirement, for contexts that hold `!Send` state and run
/// on single-threaded executors. Enter them with [`with_local`](crate::with_local).
///
/// ```
/// use async_with::{with_local, LocalAsyncContext, Outcome};
/// use std::{cell::RefCell, rc::Rc};
///
/// struct Counter(Rc<RefCell<u32>>);
///
/// impl LocalAsyncContext for Counter {
///     type Value = Rc<RefCell<u32>>;
///     type Error = ();
///     async fn enter(&mut self) -> Result<Self::Value, ()> {
///         *self.0.borrow_mut() += 1;
///         Ok(self.0.clone())
///     }
///     async fn exit(self, value: Self::Value, _: Outcome<'_, ()>) -> Result<(), ()> {
///         *value.borrow_mut() -= 1;
///         Ok(())
///     }
/// }
///
/// let open = Rc::new(RefCell::new(0));
/// let mut pool = futures::executor::LocalPool::new();
/// let inside = pool.run_until(with_local(Counter(open.clone()), async |n| Ok(*n.borrow()))).unwrap();
/// assert_eq!((inside, *open.borrow()), (1, 0));
/// ```
pub trait LocalAsyncContext {
    /// What `enter` gives and the body borrows.
    type Value;
    /// The error type of `enter`, `exit` and the body of every scope over this context.
    type Error;

    /// Acquires the resource; see [`AsyncContext::enter`].
    fn enter(&mut self) -> impl Future<Output = Result<Self::Value, Self::Error>>;

    /// Releases the resource; see [`AsyncContext::exit`].
    fn exit(
        self,
        value: Self::Value,
        outcome: Outcome<'_, Self::Error>,
    ) -> impl Future<Output = Result<(), Self::Error>>;

    /// The synchronous fallback; see [`AsyncContext::exit_on_drop`].
    ///
    /// ```
    /// # use async_with::{LocalAsyncContext, Outcome};
    /// struct Tmp;
    /// impl LocalAsyncContext for Tmp {
    ///     type Value = std::path::PathBuf;
    ///     type Error = ();
    ///     async fn enter(&mut self) -> Result<Self::Value, ()> { Ok("/tmp/x".into()) }
    ///     async fn exit(self, _: Self::Value, _: Outcome<'_, ()>) -> Result<(), ()> { Ok(()) }
    ///     fn exit_on_drop(self, path: Self::Value) {
    ///         let _ = std::fs::remove_file(path); // best effort, synchronous
    ///     }
    /// }
    /// ```
    fn exit_on_drop(self, value: Self::Value)
    where
        Self: Sized,
    {
        drop(value);
    }
}

impl<C: AsyncContext> LocalAsyncContext for C {
    type Value = C::Value;
    type Error = C::Error;

    fn enter(&mut self) -> impl Future<Output = Result<Self::Value, Self::Error>> {
        AsyncContext::enter(self)
    }

    fn exit(
        self,
        value: Self::Value,
        outcome: Outcome<'_, Self::Error>,
    ) -> impl Future<Output = Result<(), Self::Error>> {
        AsyncContext::exit(self, value, outcome)
    }

    fn exit_on_drop(self, value: Self::Value) {
        AsyncContext::exit_on_drop(self, value)
    }
}

/// Anything [`with`](crate::with) can enter: a type implementing [`AsyncContext`], a
/// [`resource`](crate::resource) made of two closures, or a tuple of 2 to 8 of these (entered left
/// to right, exited right to left, the body borrowing the tuple of their values). Everything it
/// runs is `Send`. Everything `with` can enter, [`with_local`](crate::with_local) can too: this
/// trait extends [`IntoLocalContext`], which names the `Value` and the `Error`.
///
/// This is the bound, and the return type, for functions that take or make "a context", the way
/// `IntoFuture` is for "something to await". `-> impl IntoContext<Value = V, Error = E>` keeps the
/// scope's future `Send`. Implement [`AsyncContext`] rather than this trait: its hidden items are
/// the sealed protocol scopes use, which may change in any release.
///
/// ```
/// use async_with::{resource, with, Error, IntoContext, Outcome};
///
/// fn db(rows: Vec<String>) -> impl IntoContext<Value = Vec<String>, Error = String> {
///     resource(async move || Ok(rows), async |_, _: Outcome<'_, String>| Ok(()))
/// }
///
/// async fn count_rows(db: impl IntoContext<Value = Vec<String>, Error = String>) -> Result<usize, Error<String>> {
///     with(db, async |rows| Ok(rows.len())).await
/// }
///
/// fn assert_send<T: Send>(t: T) -> T { t }
/// # futures::executor::block_on(async {
/// let rows = vec!["a".to_string(), "b".to_string()];
/// assert_eq!(assert_send(count_rows(db(rows))).await.unwrap(), 2);
/// # });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a context `with` can enter",
    note = "`with` takes an `AsyncContext`, a `resource(..)` or `context(..)`, a combinator over them, or a tuple of them, whose closures, values and futures are `Send`",
    note = "if the closures or their futures borrow from their surroundings, they must outlive the scope, and a closure's future may borrow only what the closure's signature lets it (write the closure's argument types out, as in `async |conn: &mut Conn|`)",
    note = "contexts whose futures are not `Send` (they hold an `Rc`, say) are entered with `with_local`"
)]
pub trait IntoContext: IntoLocalContext<Value: Send, Error: Send + Sync> {
    /// The state a scope pins and drives (sealed).
    #[doc(hidden)]
    type Context: SendProtocol<Value = Self::Value, Error = Self::Error>;
    /// Converts into that state (sealed).
    #[doc(hidden)]
    fn into_context(self) -> Self::Context;

    /// Enters into an exit stack (sealed). By default the protocol state is boxed and exits
    /// through its own protocol; leaf contexts override this with a cheaper path.
    #[doc(hidden)]
    #[cfg(feature = "std")]
    fn enter_stack<S: SendStack<Self::Error>>(
        self,
        stack: &S,
    ) -> impl Future<Output = Entered<'_, S::Key, Self::Value, Self::Error>> + Send
    where
        Self: Sized + Send + 'static,
        Self::Value: 'static,
        Self::Error: 'static,
        Self::Context: Send + 'static,
    {
        stack.enter_boxed(Box::pin(self.into_context()))
    }
}

/// Anything [`with_local`](crate::with_local) can enter: what [`IntoContext`] accepts, plus
/// [`LocalAsyncContext`] types and closures whose futures are not `Send`.
///
/// ```
/// use async_with::{resource, with_local, IntoLocalContext, Outcome};
/// use std::rc::Rc;
///
/// fn shared(n: Rc<u32>) -> impl IntoLocalContext<Value = Rc<u32>, Error = ()> {
///     resource(async move || Ok(n), async |_, _: Outcome<'_, ()>| Ok(()))
/// }
///
/// let n = futures::executor::block_on(with_local(shared(Rc::new(7)), async |n| Ok(**n))).unwrap();
/// assert_eq!(n, 7);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a context `with_local` can enter",
    note = "`with_local` takes an `AsyncContext` or `LocalAsyncContext`, a `resource(..)`, or a tuple of them"
)]
pub trait IntoLocalContext {
    /// What the body borrows once every context is entered.
    type Value;
    /// The error type shared by the enters, the exits and the body.
    type Error;
    /// The state a scope pins and drives (sealed).
    #[doc(hidden)]
    type LocalContext: Protocol<Value = Self::Value, Error = Self::Error>;
    /// Converts into that state (sealed).
    #[doc(hidden)]
    fn into_local_context(self) -> Self::LocalContext;

    /// Enters into a local exit stack (sealed); see [`IntoContext::enter_stack`].
    #[doc(hidden)]
    #[cfg(feature = "std")]
    fn enter_local_stack<'a, 'env, S: LocalStack<'env, Self::Error>>(
        self,
        stack: &'a S,
    ) -> impl Future<Output = Entered<'a, S::Key, Self::Value, Self::Error>>
    where
        Self: Sized + 'env,
        Self::Value: 'env,
        Self::Error: 'env,
        Self::LocalContext: 'env,
        'env: 'a,
    {
        stack.enter_boxed(Box::pin(self.into_local_context()))
    }
}

/// The protocol state of an [`AsyncContext`] or [`LocalAsyncContext`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Leaf<C> {
    context: Option<C>,
}

// `Leaf` never pins `C` (it calls `enter(&mut self)` and `exit(self)`), so it can move freely.
impl<C> Unpin for Leaf<C> {}

impl<C> Sealed for Leaf<C> {}

impl<C: AsyncContext> IntoContext for C {
    type Context = Leaf<C>;

    fn into_context(self) -> Leaf<C> {
        Leaf { context: Some(self) }
    }

    #[cfg(feature = "std")]
    async fn enter_stack<S: SendStack<C::Error>>(
        mut self,
        stack: &S,
    ) -> Result<(S::Key, &mut C::Value), Option<C::Error>>
    where
        Self: 'static,
        Self::Value: 'static,
        Self::Error: 'static,
        Self::Context: Send + 'static,
    {
        let entered = crate::frame::StackEnter::new(AsyncContext::enter(&mut self)).await;
        let value = entered.ok_or(None)?.map_err(Some)?;
        Ok(stack.push_context(self, value, context_exit::<C>, <C as AsyncContext>::exit_on_drop))
    }
}

impl<C: LocalAsyncContext> IntoLocalContext for C {
    type Value = C::Value;
    type Error = C::Error;
    type LocalContext = Leaf<C>;

    fn into_local_context(self) -> Leaf<C> {
        Leaf { context: Some(self) }
    }

    #[cfg(feature = "std")]
    async fn enter_local_stack<'a, 'env, S: LocalStack<'env, C::Error>>(
        mut self,
        stack: &'a S,
    ) -> Result<(S::Key, &'a mut C::Value), Option<C::Error>>
    where
        Self: 'env,
        Self::Value: 'env,
        Self::Error: 'env,
        Self::LocalContext: 'env,
        'env: 'a,
    {
        let entered = crate::frame::StackEnter::new(LocalAsyncContext::enter(&mut self)).await;
        let value = entered.ok_or(None)?.map_err(Some)?;
        Ok(stack.push_context(self, value, local_context_exit::<C>, <C as LocalAsyncContext>::exit_on_drop))
    }
}

// The two impls differ only in which trait's methods they call; the call itself runs inside the
// caught future, because a hand-written `enter` or `exit` may run code before returning its future.
macro_rules! leaf_protocol {
    ($Protocol:ident, $Context:ident $(+ $send:ident)?) => {
        impl<C: $Context> $Protocol for Leaf<C> {
            type Value = C::Value;
            type Error = C::Error;

            fn enter(
                self: Pin<&mut Self>,
                unwind: &mut Unwind<C::Error>,
            ) -> impl Future<Output = Option<C::Value>> $(+ $send)? {
                let context = self.get_mut().context.as_mut();
                let context = context.expect("async-with: a context is entered once");
                unwind.enter(move || $Context::enter(context))
            }

            fn exit(
                self: Pin<&mut Self>,
                value: C::Value,
                unwind: &mut Unwind<C::Error>,
            ) -> impl Future<Output = ()> $(+ $send)? {
                let context = self.get_mut().context.take();
                let context = context.expect("async-with: a context is exited once");
                async move {
                    let deadline = unwind.deadline();
                    let outcome = unwind.outcome();
                    let result = exit_within(deadline, move || $Context::exit(context, value, outcome)).await;
                    unwind.exited(result);
                }
            }

            fn fallback(self: Pin<&mut Self>, value: C::Value) {
                match self.get_mut().context.take() {
                    Some(context) => $Context::exit_on_drop(context, value),
                    None => drop(value),
                }
            }
        }
    };
}

leaf_protocol!(Protocol, LocalAsyncContext);
leaf_protocol!(SendProtocol, AsyncContext + Send);

// The exit blocks of a context entered into an exit stack: each runs the exit from the scope's
// seed (its outcome and the lent error) and hands back how it ended, with the error.
// The `Send` flavour calls the trait whose futures are declared `Send`, so that it is `Send` too.

#[cfg(feature = "std")]
fn context_exit<C: AsyncContext>(
    context: C,
    value: C::Value,
    seed: Seed<C::Error>,
) -> impl Future<Output = Ran<C::Error>> {
    exit_from_seed!(seed, |outcome| AsyncContext::exit(context, value, outcome))
}

#[cfg(feature = "std")]
fn local_context_exit<C: LocalAsyncContext>(
    context: C,
    value: C::Value,
    seed: Seed<C::Error>,
) -> impl Future<Output = Ran<C::Error>> {
    exit_from_seed!(seed, |outcome| LocalAsyncContext::exit(context, value, outcome))
}
