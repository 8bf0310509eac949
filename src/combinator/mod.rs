//! Contexts built from contexts: Cats Effect's `Resource` combinators.
//!
//! Each combinator is a context again, entered and exited as a unit with every guarantee (G1-G9):
//! `pool.and_then(|pool| pool.connection()).and_then(|conn| conn.transaction())` is one context
//! that opens three things and closes them in reverse, whatever happens. Statically composed
//! contexts allocate nothing; [`join_all`] allocates for each context it holds.

mod and_then;
mod eval_map;
mod eval_tap;
mod join;
mod map;
mod map_err;
mod named;
mod on_finalize;

pub use and_then::{AndThen, AndThenState};
pub use eval_map::{EvalMap, EvalMapState};
pub use eval_tap::{EvalTap, EvalTapState};
pub use join::{Join, JoinAll, JoinAllState, JoinState, join, join_all};
pub use map::{Map, MapState};
pub use map_err::{MapErr, MapErrState};
pub use named::{Named, NamedState};
pub use on_finalize::{OnFinalize, OnFinalizeState};

use core::future::Future;

use crate::context::IntoLocalContext;
use crate::outcome::Outcome;

/// Combinators for every context: `map`, `and_then`, `eval_map`, `on_finalize`. Implemented for
/// everything [`with`](crate::with) or [`with_local`](crate::with_local) can enter; the result
/// can be entered by the same.
///
/// | Cats Effect `Resource` | async-with |
/// |---|---|
/// | `Resource.make(acquire)(release)` | [`resource(enter, exit)`](crate::resource) |
/// | `makeCase` (release sees the `ExitCase`) | `resource`: every exit sees the [`Outcome`] |
/// | `map(f)` | [`map(f)`](ContextExt::map): `f` borrows the value, which stays for its exit |
/// | `flatMap(f)` | [`and_then(f)`](ContextExt::and_then): `f` borrows the value and makes the next context |
/// | `evalMap(f)` | [`eval_map(f)`](ContextExt::eval_map): an async step that may fail |
/// | `evalTap(f)` | [`eval_tap(f)`](ContextExt::eval_tap): an async step on the value, which the body then sees |
/// | (one `Throwable` type) | [`map_err(f)`](ContextExt::map_err), [`err_into()`](ContextExt::err_into): contexts of different error types in one scope |
/// | `onFinalize(f)` / `onFinalizeCase(f)` | [`on_finalize(f)`](ContextExt::on_finalize): sees the outcome |
/// | `both(a, b)` / `parTupled` | [`join(a, b)`](join) |
/// | `parSequence` | [`join_all(contexts)`](join_all) |
/// | `Resource.pure(a)` | [`nullcontext(a)`](crate::nullcontext) |
/// | `use(f)` | [`with(context, f)`](crate::with) |
/// | `allocated` | [`ExitStack::enter`](crate::ExitStack::enter), or [`ExitStack::enter_with_key`](crate::ExitStack::enter_with_key) and `release` |
///
/// What differs, and why: a Rust value has one owner, so the value a context made goes back to
/// its exit by value. `map` and `and_then` therefore *borrow* it (`&mut V`) and keep it for the
/// exit, rather than consuming it; and the context `and_then` makes cannot borrow from it (it
/// would borrow from the scope that holds both), so it takes what it needs by value: a cloned
/// handle, an `Arc`, an id.
///
/// ```
/// use async_with::{resource, with, ContextExt, Outcome};
/// use std::sync::{Arc, Mutex};
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let note = |what: &'static str| { let log = log.clone(); move || log.lock().unwrap().push(what) };
/// let (open_pool, close_pool) = (note("open pool"), note("close pool"));
/// let (open_conn, close_conn) = (note("open conn"), note("close conn"));
///
/// let pool = resource(
///     async move || { open_pool(); Ok::<_, String>(Arc::new("db://analytics")) },
///     async move |_, _: Outcome<'_, String>| { close_pool(); Ok(()) },
/// );
/// // The connection context owns what it needs from the pool: a clone of its handle.
/// let conn = pool.and_then(move |pool: &mut Arc<&'static str>| {
///     let pool = pool.clone();
///     resource(
///         async move || { open_conn(); Ok(format!("conn to {pool}")) },
///         async move |_, _: Outcome<'_, String>| { close_conn(); Ok(()) },
///     )
/// });
/// # futures::executor::block_on(async {
/// let said = with(conn, async |conn| Ok(conn.clone())).await.unwrap();
/// assert_eq!(said, "conn to db://analytics");
/// assert_eq!(*log.lock().unwrap(), ["open pool", "open conn", "close conn", "close pool"]);
/// # });
/// ```
pub trait ContextExt: Sized {
    /// The body sees `f(&mut value)` instead of the value, which stays with the context for its
    /// exit: Cats Effect's `map`. A panic in `f` exits the context with `Panicked`.
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    ///
    /// let file = resource(async || Ok::<_, ()>(String::from("a\nb\nc")), async |_, _: Outcome<'_, ()>| Ok(()));
    /// let lines = file.map(|text: &mut String| text.lines().count());
    /// # futures::executor::block_on(async {
    /// assert_eq!(with(lines, async |n| Ok(*n)).await.unwrap(), 3);
    /// # });
    /// ```
    fn map<F, W>(self, f: F) -> Map<Self, F>
    where
        Self: IntoLocalContext,
        F: FnOnce(&mut Self::Value) -> W,
    {
        Map::new(self, f)
    }

    /// After entering, runs the async step `f` on the value; the body sees what it returns.
    /// If it fails or panics, the context is exited with that outcome and the scope gets the
    /// error: Cats Effect's `evalMap`.
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    ///
    /// let conn = resource(async || Ok::<_, String>(7_u32), async |_, _: Outcome<'_, String>| Ok(()));
    /// let authed = conn.eval_map(async |conn: &mut u32| {
    ///     if *conn == 7 { Ok(format!("session on conn {conn}")) } else { Err("denied".to_string()) }
    /// });
    /// # futures::executor::block_on(async {
    /// assert_eq!(with(authed, async |s| Ok(s.clone())).await.unwrap(), "session on conn 7");
    /// # });
    /// ```
    fn eval_map<F, W>(self, f: F) -> EvalMap<Self, F>
    where
        Self: IntoLocalContext,
        F: AsyncFnOnce(&mut Self::Value) -> Result<W, Self::Error>,
    {
        EvalMap::new(self, f)
    }

    /// After entering, runs the async step `f` on the value (authenticate a connection, set up a
    /// schema), and the body sees the value itself. If `f` fails or panics, the context is exited
    /// with that outcome and the scope gets the error: Cats Effect's `evalTap`.
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    ///
    /// struct Conn { user: Option<&'static str> }
    /// let conn = resource(async || Ok::<_, String>(Conn { user: None }), async |_, _: Outcome<'_, String>| Ok(()));
    /// let authed = conn.eval_tap(async |conn: &mut Conn| {
    ///     conn.user = Some("alice"); // a login round trip, say
    ///     Ok(())
    /// });
    /// # futures::executor::block_on(async {
    /// assert_eq!(with(authed, async |conn| Ok(conn.user)).await.unwrap(), Some("alice"));
    /// # });
    /// ```
    fn eval_tap<F>(self, f: F) -> EvalTap<Self, F>
    where
        Self: IntoLocalContext,
        F: AsyncFnOnce(&mut Self::Value) -> Result<(), Self::Error>,
    {
        EvalTap::new(self, f)
    }

    /// Enters this context, then the context `f` makes from its value, which the body sees; the
    /// second is exited first: Cats Effect's `flatMap`. `f` borrows the first value; the context
    /// it returns must own what it needs (clone a handle out of it).
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    ///
    /// let pool = resource(async || Ok::<_, ()>(String::from("pool")), async |_, _: Outcome<'_, ()>| Ok(()));
    /// let conn = pool.and_then(|pool: &mut String| {
    ///     let name = format!("{pool}/conn");
    ///     resource(async move || Ok(name), async |_, _: Outcome<'_, ()>| Ok(()))
    /// });
    /// # futures::executor::block_on(async {
    /// assert_eq!(with(conn, async |c| Ok(c.clone())).await.unwrap(), "pool/conn");
    /// # });
    /// ```
    fn and_then<F, C>(self, f: F) -> AndThen<Self, F>
    where
        Self: IntoLocalContext,
        F: FnOnce(&mut Self::Value) -> C,
        C: IntoLocalContext<Error = Self::Error>,
    {
        AndThen::new(self, f)
    }

    /// Names this context, so that its errors say where they came from: their
    /// [`Origin::name`](crate::Origin::name), shown by an [`Error`](crate::Error)'s alternate form
    /// (`{:#}`). The context is entered and exited as it is; a name costs nothing until one of
    /// its errors is recorded. An inner name wins over an outer one. (Without the `std` feature
    /// names are not recorded.)
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    ///
    /// let open = |fails: bool| {
    ///     resource(async move || if fails { Err("refused") } else { Ok(()) }, async |(), _: Outcome<'_, &str>| Ok(()))
    /// };
    /// # futures::executor::block_on(async {
    /// let err = with((open(false).named("cache"), open(true).named("db")), async |_| Ok(())).await.unwrap_err();
    /// assert_eq!(err.origin().unwrap().name(), Some("db"));
    /// assert_eq!(format!("{err:#}"), "refused (in the enter of `db` (context 1))");
    /// # });
    /// ```
    fn named(self, name: &'static str) -> Named<Self>
    where
        Self: IntoLocalContext,
    {
        Named::new(self, name)
    }

    /// Converts this context's errors with `f`, so that it can share a scope (a tuple, a `join`,
    /// an exit stack) with contexts of another error type. Every error it produces (its enter's,
    /// its exit's) is converted; when the scope around it fails with an error of the outer type,
    /// its exit sees [`Outcome::Failed`] with an error of its own type made from a
    /// [`ForeignError`](crate::ForeignError) that carries the outer error's text (so it never
    /// mistakes a failure for `Completed`). Its exit is bounded by the scope's exit deadline.
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Error, Outcome};
    ///
    /// #[derive(Debug)]
    /// enum AppError { Db(String), Io(std::io::Error) }
    /// impl std::fmt::Display for AppError {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
    /// }
    ///
    /// let db = resource(async || Ok::<_, String>("db"), async |_, outcome: Outcome<'_, String>| {
    ///     println!("db closes after {outcome:?}");
    ///     Ok(())
    /// });
    /// let file = resource(async || Ok::<_, std::io::Error>("file"), async |_, _: Outcome<'_, std::io::Error>| Ok(()));
    /// let both = (db.map_err(AppError::Db), file.map_err(AppError::Io));
    /// # futures::executor::block_on(async {
    /// let error = with(both, async |_| Err::<(), _>(AppError::Db("query failed".into()).into())).await.unwrap_err();
    /// assert!(matches!(error.primary(), Some(AppError::Db(_))));
    /// # });
    /// ```
    fn map_err<F, E>(self, f: F) -> MapErr<Self, F, E>
    where
        Self: IntoLocalContext<Error: From<crate::error::ForeignError>>,
        F: FnMut(Self::Error) -> E,
        E: core::fmt::Display,
    {
        MapErr::new(self, f)
    }

    /// [`map_err`](ContextExt::map_err) with `Into`: this context's errors become `E`'s.
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    ///
    /// let ctx = resource(async || Ok::<_, std::io::Error>(1), async |_, _: Outcome<'_, std::io::Error>| Ok(()));
    /// type BoxError = Box<dyn std::error::Error + Send + Sync>;
    /// # futures::executor::block_on(async {
    /// let n = with(ctx.err_into::<BoxError>(), async |n| Ok(*n)).await.map_err(|e| e.to_string()).unwrap();
    /// assert_eq!(n, 1);
    /// # });
    /// ```
    fn err_into<E>(self) -> MapErr<Self, fn(Self::Error) -> E, E>
    where
        Self: IntoLocalContext<Error: From<crate::error::ForeignError> + Into<E>>,
        E: core::fmt::Display,
    {
        MapErr::new(self, Into::into)
    }

    /// Runs `f` after this context's exit, with the outcome the exits outside it see: Cats
    /// Effect's `onFinalizeCase`. Its error counts like any exit error; if the scope is dropped
    /// instead of exiting, it does not run (it is async), and the context's fallback does.
    ///
    /// ```
    /// use async_with::{resource, with, ContextExt, Outcome};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    ///
    /// static REPORTED: AtomicBool = AtomicBool::new(false);
    /// let job = resource(async || Ok::<_, String>(()), async |_, _: Outcome<'_, String>| Ok(()))
    ///     .on_finalize(async |outcome: Outcome<'_, String>| {
    ///         REPORTED.store(outcome.is_failed(), Ordering::SeqCst);
    ///         Ok(())
    ///     });
    /// # futures::executor::block_on(async {
    /// let _ = with(job, async |_| Err::<(), _>("boom".to_string().into())).await;
    /// assert!(REPORTED.load(Ordering::SeqCst));
    /// # });
    /// ```
    fn on_finalize<F>(self, f: F) -> OnFinalize<Self, F>
    where
        Self: IntoLocalContext,
        F: AsyncFnOnce(Outcome<'_, Self::Error>) -> Result<(), Self::Error>,
    {
        OnFinalize::new(self, f)
    }
}

impl<C: IntoLocalContext> ContextExt for C {}

/// An async step seen as a plain function: `FnOnce(&'a mut V)` returning a future that may
/// borrow the value. It names that future, which `AsyncFnOnce` does not on stable Rust, so that
/// bounds can say it is `Send`.
#[doc(hidden)]
pub trait StepFn<'a, V: 'a, W, E>: FnOnce(&'a mut V) -> <Self as StepFn<'a, V, W, E>>::Future {
    type Future: Future<Output = Result<W, E>>;
}

impl<'a, V: 'a, W, E, F, Fut> StepFn<'a, V, W, E> for F
where
    F: FnOnce(&'a mut V) -> Fut,
    Fut: Future<Output = Result<W, E>>,
{
    type Future = Fut;
}
