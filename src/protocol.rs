//! The sealed protocol between a scope and what it entered.
//!
//! Every context becomes a *protocol state* that the scope pins and drives with `enter` and
//! `exit`. The semantics of errors and panics live in [`Unwind`]; implementations only sequence
//! calls into it.
//!
//! There are two flavours with the same methods: [`SendProtocol`] declares its futures `Send`, so
//! that `Send` survives behind `impl IntoContext` (a caller cannot see through an opaque type, only
//! through the bounds a trait declares); [`Protocol`] does not, for `!Send` contexts. Stable Rust
//! cannot yet write "the future of this method is `Send`" at the use site (return type notation),
//! hence the pair, as in the `trait-variant` crate.

use core::future::Future;
use core::pin::Pin;

use crate::unwind::Unwind;

mod sealed {
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// The local protocol. `enter` either succeeds completely (`Some`) or, before returning `None`,
/// exits whatever it had entered itself: a scope never calls `exit` after a failed `enter`. `exit`
/// is called at most once, with the value `enter` gave.
#[doc(hidden)]
pub trait Protocol: Sealed {
    type Value;
    type Error;
    fn enter(
        self: Pin<&mut Self>,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = Option<Self::Value>>;
    fn exit(
        self: Pin<&mut Self>,
        value: Self::Value,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = ()>;
}

/// The same protocol, with `Send` futures.
#[doc(hidden)]
pub trait SendProtocol: Sealed + Send {
    type Value: Send;
    type Error: Send + Sync;
    fn enter(
        self: Pin<&mut Self>,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = Option<Self::Value>> + Send;
    fn exit(
        self: Pin<&mut Self>,
        value: Self::Value,
        unwind: &mut Unwind<Self::Error>,
    ) -> impl Future<Output = ()> + Send;
}
