//! Python's `async with`, `@asynccontextmanager` and `AsyncExitStack` for Rust: resources with
//! **async setup and async teardown**, whose exits always run, exactly once, in reverse order,
//! whether the body returns, fails or panics. No runtime: it runs on any executor.
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
//! # The guarantees
//!
//! - **G1, exactly once.** Every context whose enter succeeded is exited exactly once; a context
//!   whose enter failed or panicked is never exited.
//! - **G2, reverse order.** Exits run in the reverse order of the enters, inner scopes first.
//! - **G3, exits always run**: after `Ok`, after an error from the body or an enter, after a
//!   panic in an enter, the body or an exit.
//! - **G4, the outcome is true.** An exit sees how things ended when it runs: once an inner exit
//!   failed, the outer ones see [`Outcome::Failed`] with that newest error; while a panic is
//!   pending they see [`Outcome::Panicked`].
//! - **G5, no error is lost.** The caller's [`Error`] holds the first error as the primary one
//!   and every later one as a suppressed error, in order.
//! - **G6, panics propagate after cleanup.** A panic is caught, the remaining exits run, then the
//!   first panic resumes with its original payload. Errors that cannot ride on it go to an
//!   [`ErrorHook`]. Catching needs the `std` feature (on by default); without it a panic unwinds
//!   straight through the scope, dropping what it holds without running the async exits.
//! - **G8, any executor.** No runtime dependency, no blocking in `poll` or `Drop`; the futures
//!   are `Send` when your types are.
//!
//! # Coming from Python
//!
//! | Python | async-with |
//! |---|---|
//! | `async with ctx as v: ...` | [`with`]`(ctx, async \|v\| ...).await` |
//! | `async with a as x, b as y: ...` | `with((a, b), async \|(x, y)\| ...).await` |
//! | `__aenter__` / `__aexit__(exc_type, exc, tb)` | [`AsyncContext::enter`] / [`AsyncContext::exit`] with an [`Outcome`] |
//! | `@asynccontextmanager` with setup, `yield v`, teardown | [`context`]`(async \|mut cx\| { ..; let (v, outcome) = cx.provide(v).await; .. })` |
//! | `AsyncExitStack`, `enter_async_context`, `push_async_callback`, `pop_all` | [`scope`]`(async \|stack\| ..)`, [`ExitStack::enter`], [`ExitStack::defer`], [`ExitStack::pop_all`] |
//! | an exception raised in `__aexit__` during another one | a suppressed error in [`Error`] |
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

mod catch_unwind;
mod context;
mod error;
#[cfg(feature = "std")]
mod generator;
mod hook;
mod outcome;
mod protocol;
mod resource;
#[cfg(feature = "std")]
mod stack;
mod tuple;
mod unwind;
mod with;

pub use context::{AsyncContext, IntoContext, IntoLocalContext, LocalAsyncContext};
pub use error::Error;
#[cfg(feature = "std")]
pub use generator::{Cx, Generator, Provide, context};
#[cfg(feature = "std")]
pub use hook::set_panic_error_hook;
pub use hook::{ErrorHook, GlobalHook};
pub use outcome::Outcome;
pub use resource::{Resource, resource};
#[cfg(feature = "std")]
pub use stack::{ExitStack, Key, LocalExitStack, scope, scope_local};
pub use with::{Scope, with, with_local};

/// The sealed protocol between scopes and contexts. Not part of the public API: it may change in
/// any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::Leaf;
    #[cfg(feature = "std")]
    pub use crate::generator::GeneratorFn;
    pub use crate::protocol::{Protocol, SendProtocol};
    pub use crate::resource::ExitFn;
    #[cfg(feature = "std")]
    pub use crate::stack::{Nested, OutcomeFn};
    pub use crate::tuple::{Chain, Flat, Nest};
    pub use crate::unwind::Unwind;
}
