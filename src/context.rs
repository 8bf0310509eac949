//! What a context is: the traits users implement ([`AsyncContext`], [`LocalAsyncContext`]), the one
//! every scope accepts ([`IntoContext`]), and the sealed protocol that scopes drive.

use core::future::Future;
use core::pin::Pin;

use crate::Outcome;
use crate::catch_unwind::catch_unwind;
use crate::unwind::Unwind;

/// A type that is a context itself: Python's `__aenter__` / `__aexit__`.
///
/// `enter` acquires (connects, spawns, begins) and gives the value the body borrows; `exit` gets
/// that value back, with the [`Outcome`] of everything that ran inside, and releases it. A scope
/// calls `exit` exactly once for every `enter` that returned `Ok`, and never after one that failed
/// or panicked: an `enter` that fails half-way must undo its own work before returning the error.
///
/// The futures must be `Send`, so that scopes over these contexts can run on multi-threaded
/// executors and in `Send` exit stacks. For a context that holds `Rc`s or other `!Send` state,
/// implement [`LocalAsyncContext`] instead: it is the same trait without that requirement (the
/// pattern of the `trait-variant` crate). Every `AsyncContext` is also a `LocalAsyncContext`.
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
pub trait AsyncContext {
    /// What `enter` gives and the body borrows.
    type Value;
    /// The error type of `enter`, `exit` and the body of every scope over this context.
    type Error;

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
}

/// [`AsyncContext`] without the `Send` requirement, for contexts that hold `!Send` state and run
/// on single-threaded executors.
///
/// ```
/// use async_with::{with, LocalAsyncContext, Outcome};
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
/// let inside = pool.run_until(with(Counter(open.clone()), async |n| Ok(*n.borrow()))).unwrap();
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
}

/// Anything a scope can enter: a type implementing [`AsyncContext`] or [`LocalAsyncContext`], a
/// [`resource`](crate::resource) made of two closures, or a tuple of 2 to 8 of these (entered left
/// to right, exited right to left, the body borrowing the tuple of their values).
///
/// This is the bound to write on functions that take "a context", the way `IntoFuture` is the one
/// for "something to await". Implement [`AsyncContext`] rather than this trait: its other items
/// are the sealed protocol scopes use, which may change between minor versions.
///
/// ```
/// use async_with::{resource, with, Error, IntoContext, Outcome};
///
/// async fn count_rows<C>(db: C) -> Result<usize, Error<String>>
/// where
///     C: IntoContext<Value = Vec<&'static str>, Error = String>,
/// {
///     with(db, async |rows| Ok(rows.len())).await
/// }
///
/// # futures::executor::block_on(async {
/// let db = resource(async || Ok(vec!["a", "b"]), async |_, _: Outcome<'_, String>| Ok(()));
/// assert_eq!(count_rows(db).await.unwrap(), 2);
/// # });
/// ```
pub trait IntoContext {
    /// What the body borrows once every context is entered.
    type Value;
    /// The error type shared by the enters, the exits and the body.
    type Error;
    /// The state a scope pins and drives (sealed).
    #[doc(hidden)]
    type Context: Protocol<Value = Self::Value, Error = Self::Error>;
    /// Converts into that state (sealed).
    #[doc(hidden)]
    fn into_context(self) -> Self::Context;
}

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// The protocol between a scope and what it entered. Sealed: the semantics of errors and panics
/// live in [`Unwind`], and every implementation only sequences calls into it.
///
/// `enter` either succeeds completely (`Some`) or, before returning `None`, exits whatever it had
/// entered itself: a scope never calls `exit` after a failed `enter`. `exit` is called at most
/// once, with the value `enter` gave.
#[doc(hidden)]
#[allow(async_fn_in_trait)]
pub trait Protocol: Sealed {
    type Value;
    type Error;
    async fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<Self::Error>) -> Option<Self::Value>;
    async fn exit(self: Pin<&mut Self>, value: Self::Value, unwind: &mut Unwind<Self::Error>);
}

/// The protocol state of an [`AsyncContext`] or [`LocalAsyncContext`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Leaf<C> {
    context: Option<C>,
}

// `Leaf` never pins `C` (it calls `enter(&mut self)` and `exit(self)`), so it can move freely.
impl<C> Unpin for Leaf<C> {}

impl<C: LocalAsyncContext> IntoContext for C {
    type Value = C::Value;
    type Error = C::Error;
    type Context = Leaf<C>;

    fn into_context(self) -> Leaf<C> {
        Leaf {
            context: Some(self),
        }
    }
}

impl<C> Sealed for Leaf<C> {}

impl<C: LocalAsyncContext> Protocol for Leaf<C> {
    type Value = C::Value;
    type Error = C::Error;

    async fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<C::Error>) -> Option<C::Value> {
        let context = self.get_mut().context.as_mut();
        let context = context.expect("async-with: a context is entered once");
        // The call itself runs inside the caught future: a hand-written `enter` may run code
        // before returning its future.
        unwind.enter(async move { context.enter().await }).await
    }

    async fn exit(self: Pin<&mut Self>, value: C::Value, unwind: &mut Unwind<C::Error>) {
        let context = self.get_mut().context.take();
        let context = context.expect("async-with: a context is exited once");
        let seen: &Unwind<C::Error> = unwind;
        let result = catch_unwind(async move { context.exit(value, seen.outcome()).await }).await;
        unwind.exited(result);
    }
}
