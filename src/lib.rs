//! Python's `async with`, `@asynccontextmanager` and `AsyncExitStack` for Rust: resources with
//! **async setup and async teardown**, whose exits always run, exactly once, in reverse order,
//! whether the body returns, fails, panics or is cancelled. No runtime: it runs on any executor.
//!
//! ```
//! use async_with::{resource, with, Outcome};
//!
//! # smol::block_on(async {
//! let db = resource(
//!     async || Ok::<_, String>(vec!["alice", "bob"]),                  // enter: connect
//!     async |rows, outcome: Outcome<'_, String>| {                     // exit: gets the value back
//!         println!("closing after {} rows: {outcome:?}", rows.len());  // and how the body ended
//!         Ok(())
//!     },
//! );
//! let n = with(db, async |rows| Ok(rows.len())).await?;
//! assert_eq!(n, 2);
//! # Ok::<(), async_with::Error<String>>(()) }).unwrap();
//! ```
//!
//! # Contexts
//!
//! A *context* is entered (async, giving a *value*) and exited (async, getting the value back and
//! the [`Outcome`]). There are three ways to write one:
//!
//! - [`context`]: one async closure, setup before `cx.provide(value).await`, teardown after it:
//!   Python's `@asynccontextmanager`. Best when teardown needs what setup had in scope, so that
//!   the cleanup sits next to what it undoes. One small allocation per entry.
//! - [`resource`]: an async `enter` closure and an async `exit` closure, Cats Effect's
//!   `Resource.make`. Best when setup and teardown already exist as two functions. No allocation.
//! - [`AsyncContext`] (or [`LocalAsyncContext`] for `!Send` state) implemented for a type:
//!   Python's `__aenter__` / `__aexit__`. Best for a library type that *is* a context.
//!
//! ```
//! use async_with::{context, resource, with, Cx, Outcome};
//!
//! # futures::executor::block_on(async {
//! // Generator style: the teardown sees the setup's locals.
//! let tmp = context(async |mut cx: Cx<Vec<String>, String>| {
//!     let path = "/tmp/scratch".to_string();                    // setup
//!     let (files, outcome) = cx.provide(vec![]).await;          // the body runs here
//!     println!("removing {path} with {} files ({outcome:?})", files.len()); // teardown
//!     Ok(())
//! });
//! // Closure pair: enter and exit are separate steps.
//! let db = resource(async || Ok(1_u32), async |_conn, _: Outcome<'_, String>| Ok(()));
//!
//! with((tmp, db), async |(files, conn)| {
//!     files.push(format!("row-{conn}"));
//!     Ok(())
//! })
//! .await
//! .unwrap();
//! # });
//! ```
//!
//! [`IntoContext`] is the bound that accepts all of them, and tuples of them.
//!
//! # Exit stacks
//!
//! [`scope`] gives the body an [`ExitStack`] for contexts known only at run time (Python's
//! `AsyncExitStack`): [`enter`](ExitStack::enter) lends each value for the rest of the scope,
//! [`defer`](ExitStack::defer), [`push_exit`](ExitStack::push_exit) and
//! [`callback`](ExitStack::callback) push cleanups, [`release`](ExitStack::release) exits one entry
//! early, [`pop_all`](ExitStack::pop_all) hands everything to the caller. Everything pushed is
//! exited in reverse order when the scope ends, however it ends.
//!
//! ```
//! use async_with::{resource, scope, ExitStack, Outcome};
//!
//! # futures::executor::block_on(async {
//! let sizes = scope(async |stack: &mut ExitStack<String>| {
//!     let mut files = Vec::new();
//!     for name in ["a.txt", "b.txt"] {
//!         let file = resource(
//!             async move || Ok(format!("contents of {name}")),
//!             async |file, _: Outcome<'_, String>| { println!("closing {file}"); Ok(()) },
//!         );
//!         files.push(stack.enter(file).await?);
//!     }
//!     Ok(files.iter().map(|f| f.len()).collect::<Vec<_>>())
//! })
//! .await
//! .unwrap();
//! assert_eq!(sizes, [17, 17]);
//! # });
//! ```
//!
//! # Nesting
//!
//! Scopes nest like Python's `async with` blocks. A body returns `Result<T, Error<E>>`: `?`
//! works on the contexts' error type `E` (through `From<E>`), and on the result of a scope nested
//! inside, whose whole [`Error`] passes through: the caller gets the inner primary error, then the
//! inner suppressed ones, then the errors of the exits outside.
//!
//! ```
//! use async_with::{resource, with, Outcome};
//!
//! # futures::executor::block_on(async {
//! let close = |name: &'static str, fails: bool| resource(
//!     async move || Ok::<_, String>(name),
//!     async move |name, _: Outcome<'_, String>| if fails { Err(format!("{name}: close failed")) } else { Ok(()) },
//! );
//! let error = with(close("db", true), async |_db| {
//!     with(close("tx", true), async |_tx| {
//!         Err("insert failed".to_string())?; // `?` on the contexts' error type
//!         Ok(())
//!     })
//!     .await?; // `?` on the inner scope's `Error<String>`
//!     Ok(())
//! })
//! .await
//! .unwrap_err();
//! assert_eq!(error.primary().unwrap(), "insert failed");
//! assert_eq!(error.suppressed(), ["tx: close failed", "db: close failed"]);
//! # });
//! ```
//!
//! # Cancellation
//!
//! Rust cancels a future by dropping it, and no destructor can await. So there are two kinds.
//!
//! **Cooperative**: [`Scope::cancel_on`] races a signal (any future: a timer of any runtime, a
//! channel, a [`CancellationToken`]) against the scope. During the body, the body is dropped at
//! its current await and every exit then runs to completion, seeing [`Outcome::Cancelled`];
//! during an enter, the enter finishes (or, with [`Scope::interrupt_enters`], is dropped and never
//! exited), nothing more is entered and what was entered is exited at once. Exits are shielded,
//! each bounded by [`Scope::exit_deadline`] if given. The result is an [`Error`] that
//! [`is_cancelled`](Error::is_cancelled), with every exit error kept.
//!
//! Cancellation is *structured*: it reaches the scopes running inside the body, as Python's
//! `CancelledError` travels through nested `async with` blocks. Each inner scope stops its body
//! and runs its exits (async, seeing `Cancelled`), innermost first, and the outer scope drops its
//! body only once none of them is still exiting. A scope is the child of the scope whose body
//! polls it: one polled by a task you spawned is not. (It works like `tracing::Instrument`: a
//! scope sets a thread-local frame while it polls its body. Without the `std` feature there is
//! none, and a cancellation reaches only the scope's own body.)
//!
//! ```
//! use async_with::{resource, Outcome, Scope};
//! use std::time::Duration;
//!
//! # smol::block_on(async {
//! let conn = resource(async || Ok::<_, String>("conn"), async |_, outcome: Outcome<'_, String>| {
//!     smol::Timer::after(Duration::from_millis(1)).await; // async cleanup still runs
//!     assert!(outcome.is_cancelled());
//!     Ok(())
//! });
//! let timeout = smol::Timer::after(Duration::from_millis(5));
//! let err = Scope::new()
//!     .cancel_on(timeout)
//!     .with(conn, async |_| { smol::Timer::after(Duration::from_secs(60)).await; Ok(()) })
//!     .await
//!     .unwrap_err();
//! assert!(err.is_cancelled());
//! # });
//! ```
//!
//! ```
//! use async_with::{resource, CancellationToken, Error, Outcome, Scope, with};
//! use std::sync::{Arc, Mutex};
//!
//! # futures::executor::block_on(async {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let conn = |name: &'static str| {
//!     let log = log.clone();
//!     resource(async || Ok::<_, String>(()), async move |(), outcome: Outcome<'_, String>| {
//!         log.lock().unwrap().push(format!("{name} closed: {outcome:?}"));
//!         Ok(())
//!     })
//! };
//! let token = CancellationToken::new();
//! let stop = token.clone();
//! // Only the outer scope has a signal; the cancellation reaches the inner one.
//! let err = Scope::new()
//!     .cancel_on(token.cancelled())
//!     .with(conn("outer"), async |_| {
//!         with(conn("inner"), async |_| -> Result<(), Error<String>> {
//!             stop.cancel();
//!             std::future::pending().await
//!         })
//!         .await?;
//!         Ok(())
//!     })
//!     .await
//!     .unwrap_err();
//! assert!(err.is_cancelled());
//! assert_eq!(*log.lock().unwrap(), ["inner closed: Cancelled", "outer closed: Cancelled"]);
//! # });
//! ```
//!
//! **By drop** (a `select!`, a runtime's `timeout`, a dropped task): the remaining exits cannot
//! be awaited in place, and nothing blocks, in `poll` or in `Drop`. By default each remaining
//! context runs its synchronous fallback, newest first ([`AsyncContext::exit_on_drop`],
//! [`Resource::on_drop`]; by default, dropping the value) and the [drop hook](set_drop_hook) is
//! told. [`detach_on_drop`] instead hands the unfinished scope to a task you spawn, which runs
//! every exit to completion with [`Outcome::Cancelled`], an exit interrupted mid-way included.
//!
//! A scope future that is `mem::forget`-ten runs nothing: no exit, no fallback, no report. Its
//! contexts and values are leaked. No library can promise anything there, since forgetting is
//! safe Rust; do not forget scopes.
//!
//! # The guarantees
//!
//! - **G1, exactly once.** Every context whose enter succeeded is exited exactly once; a context
//!   whose enter failed or panicked is never exited.
//! - **G2, reverse order.** Exits run in the reverse order of the enters, inner scopes first.
//! - **G3, exits always run**: after `Ok`, after an error from the body or an enter, after a
//!   panic in an enter, the body or an exit.
//! - **G4, the outcome is true.** An exit sees how things ended when it runs, by one precedence:
//!   [`Outcome::Panicked`] while a panic is pending, else [`Outcome::Cancelled`] once the scope
//!   was cancelled, else [`Outcome::Failed`] with the newest error (once an inner exit failed, the
//!   outer ones see that error), else [`Outcome::Completed`]. A cleanup error never hides a
//!   cancellation: an exit that fails after one is a suppressed error, and the exits outside
//!   still see `Cancelled` (in asyncio the cleanup error replaces the `CancelledError`).
//! - **G5, no error is lost.** The caller's [`Error`] holds the first error as the primary one
//!   and every later one as a suppressed error, in order, across nesting too.
//! - **G6, panics propagate after cleanup.** A panic is caught, the remaining exits run, then the
//!   first panic resumes with its original payload. Errors that cannot ride on it go to an
//!   [`ErrorHook`]. Catching needs the `std` feature (on by default); without it a panic unwinds
//!   straight through the scope, dropping what it holds without running the async exits.
//! - **G7, cancellation is explicit.** A cooperative cancel runs every exit to completion; a dropped
//!   scope runs its fallbacks or finishes in a detached task; see above.
//! - **G8, any executor.** No runtime dependency, no blocking in `poll` or `Drop`; the futures
//!   are `Send` when your types are.
//!
//! # Composing contexts
//!
//! Contexts compose into contexts with [`ContextExt`] ([`map`](ContextExt::map),
//! [`eval_map`](ContextExt::eval_map), [`and_then`](ContextExt::and_then),
//! [`on_finalize`](ContextExt::on_finalize)), [`join`] and [`join_all`] (entered and exited
//! concurrently), the way Cats Effect's `Resource` values do; [`nullcontext`] provides a value
//! and [`closing`] (feature `futures-io`) closes a writer. Each result is a context again, with
//! every guarantee below.
//!
//! ```
//! use async_with::{join, nullcontext, resource, with, ContextExt, Outcome};
//!
//! # futures::executor::block_on(async {
//! let pool = resource(async || Ok::<_, String>(String::from("pool")), async |_, _: Outcome<'_, String>| Ok(()));
//! let conn = pool.and_then(|pool: &mut String| nullcontext(format!("{pool}/conn")));
//! let both = join(conn, nullcontext(7));
//! let said = with(both, async |(conn, n)| Ok(format!("{conn} #{n}"))).await.unwrap();
//! assert_eq!(said, "pool/conn #7");
//! # });
//! ```
//!
//! # Coming from Python, JavaScript or Scala
//!
//! | Python | JavaScript | Cats Effect | async-with |
//! |---|---|---|---|
//! | `async with ctx as v:` | `await using v = ctx` | `ctx.use(v => ...)` | [`with`]`(ctx, async \|v\| ..).await` |
//! | `async with a as x, b as y:` | two `await using` lines | `(a, b).tupled.use` | `with((a, b), async \|(x, y)\| ..)` |
//! | `__aenter__` / `__aexit__` | `[Symbol.asyncDispose]()` | `Resource.make(acquire)(release)` | [`AsyncContext`], [`resource`] |
//! | `__aexit__(exc_type, exc, tb)` | (the error is not shown) | `makeCase`, `ExitCase` | the [`Outcome`] every exit gets |
//! | `@asynccontextmanager` | — | — | [`context`]`(async \|mut cx\| { ..; cx.provide(v).await; .. })` |
//! | `AsyncExitStack` | `AsyncDisposableStack` | `Resource` in a for-comprehension | [`scope`], [`ExitStack`] |
//! | `enter_async_context(cm)` | `stack.use(r)` | `allocated` | [`ExitStack::enter`] |
//! | `push_async_callback(f)` | `stack.defer(f)` | `Resource.onFinalize` | [`ExitStack::defer`] |
//! | `pop_all()` | `stack.move()` | — | [`ExitStack::pop_all`] |
//! | `contextlib.nullcontext(v)` | — | `Resource.pure(v)` | [`nullcontext`] |
//! | `contextlib.aclosing(x)` | — | `Resource.fromAutoCloseable` | [`closing`] |
//! | — | — | `flatMap`, `map`, `evalMap`, `both` | [`ContextExt`], [`join`] |
//! | exceptions raised while handling another | `SuppressedError` | suppressed (logged) | [`Error::suppressed`] |
//! | task cancellation (`CancelledError`) | `AbortSignal` | fiber cancelation | [`Scope::cancel_on`], [`Outcome::Cancelled`] |
//!
//! Two differences come from Rust itself. A value has one owner, so the body *borrows* it
//! (`&mut V`) and the exit gets it back by value; combinators borrow it too. And a destructor
//! cannot await, so a scope future that is dropped runs synchronous fallbacks (or finishes in a
//! task, with [`detach_on_drop`]) instead of its async exits. Two more are choices: a teardown
//! cannot swallow the error it is shown (the caller always gets it), and a cleanup error cannot
//! hide a cancellation (see G4).
//!
//! # Features
//!
//! - `std` (default): catching panics (G6), generator contexts, exit stacks, the cancellation
//!   token. Without it (`--no-default-features --features alloc`) the rest works on `no_std`.
//! - `testkit`: the fault-injection harness ([`testkit`]) with proptest strategies and
//!   `arbitrary` for fuzzing.
//! - `futures-io` / `futures-sink`: [`closing`] for `AsyncWrite`s and [`Closing::sink`] for sinks.
//! - `tracing`: a `debug` span per scope and an event for each enter, body and exit.
#![no_std]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub,
    clippy::alloc_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::std_instead_of_core
)]
// The one exception is `stack/arena.rs`, which lends `&mut` values from a growing stack.
#![deny(unsafe_code)]

#[cfg(not(feature = "alloc"))]
compile_error!("async-with needs the `alloc` feature (or `std`, which implies it)");

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod adapter;
#[cfg(feature = "std")]
mod cancel;
mod catch_unwind;
#[cfg(any(feature = "futures-io", feature = "futures-sink"))]
mod closing;
mod combinator;
mod context;
#[cfg(feature = "std")]
mod detach;
mod error;
mod frame;
#[cfg(feature = "std")]
mod generator;
mod hook;
mod origin;
mod outcome;
mod protocol;
mod resource;
#[cfg(feature = "std")]
mod stack;
mod trace;
mod tuple;
mod unwind;
mod with;

pub use adapter::{NullContext, nullcontext};
#[cfg(feature = "std")]
pub use cancel::{CancellationToken, WaitForCancellation};
#[cfg(any(feature = "futures-io", feature = "futures-sink"))]
pub use closing::Closing;
#[cfg(feature = "futures-io")]
pub use closing::closing;
pub use combinator::{
    AndThen, ContextExt, EvalMap, EvalTap, Join, JoinAll, Map, MapErr, Named, OnFinalize, join, join_all,
};
pub use context::{AsyncContext, IntoContext, IntoLocalContext, LocalAsyncContext};
#[cfg(feature = "std")]
pub use detach::{DetachOnDrop, DetachSignal, Detached, detach_on_drop};
pub use error::{Cancelled, CancelledBy, Error, ForeignError, Suppressed};
#[cfg(feature = "std")]
pub use generator::{Cx, Generator, Provide, context};
pub use hook::{Dropped, ErrorHook, GlobalHook};
#[cfg(feature = "std")]
pub use hook::{set_drop_hook, set_error_hook};
pub use origin::{Origin, Step};
pub use outcome::Outcome;
pub use resource::{DropValue, OnDrop, Resource, resource};
#[cfg(feature = "std")]
pub use stack::{ExitStack, Handle, Key, LocalExitStack, LocalHandle, scope, scope_local};
pub use with::{ExitDeadline, NoDeadline, Scope, with, with_local};

#[cfg(feature = "testkit")]
pub mod testkit;

/// The sealed protocol between scopes and contexts. Not part of the public API: it may change in
/// any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::combinator::StepFn;
    pub use crate::combinator::{
        AndThenState, EvalMapState, EvalTapState, JoinAllState, JoinState, MapErrState, MapState, NamedState,
        OnFinalizeState,
    };
    pub use crate::context::Leaf;
    #[cfg(feature = "std")]
    pub use crate::generator::GeneratorFn;
    pub use crate::origin::{At, Place};
    pub use crate::outcome::OutcomeFn;
    #[cfg(feature = "std")]
    pub use crate::protocol::{Entered, Entry, Fallback, LocalStack, MakeExit, SendStack, Spliced};
    pub use crate::protocol::{Protocol, SendProtocol};
    pub use crate::resource::ExitFn;
    #[cfg(feature = "std")]
    pub use crate::stack::Nested;
    pub use crate::tuple::{Chain, Flat, Nest};
    #[cfg(feature = "std")]
    pub use crate::unwind::Seed;
    pub use crate::unwind::{Settle, Unwind};
}

/// The README's examples, compiled as doctests.
#[cfg(all(doctest, feature = "testkit"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
