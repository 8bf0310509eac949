//! Exit stacks: Python's `AsyncExitStack`, JavaScript's `AsyncDisposableStack`, Haskell's
//! `ResourceT`. Contexts entered at run time, exited in reverse order when the stack closes.
//!
//! A stack keeps its entries in an arena (`arena.rs`, the crate's one `unsafe` module) and closes
//! them in a loop ([`shared::Core::poll_close`]): newest first, each exit polled in place. The errors a
//! stack keeps for no caller (its *orphans*: the further errors of an enter that failed half-way,
//! or of a release) happened before anything that runs at close, so they are recorded first. A
//! stack entered into a stack hands its entries over to the loop of the stack around it when
//! that loop reaches it ([`shared::Splice`]), for closing and for dropping alike: stacks nested however
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
mod local;
mod nested;
mod run;
mod send;
mod shared;

pub use local::{LocalExitStack, LocalHandle};
pub use nested::Nested;
pub use run::{scope, scope_local};
pub use send::{ExitStack, Handle};

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
