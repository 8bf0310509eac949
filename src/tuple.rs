//! Tuples of contexts: Python's `async with a() as x, b() as y:`.
//!
//! A tuple is a right-nested chain of pairs, `(a, b, c)` being `Chain(a, Chain(b, c))`: the
//! reverse-order and partial-failure rules are then written once, for a pair, and hold for every
//! arity by induction. Only the value is flattened back, so that the body borrows `(x, y, z)`.

use core::marker::PhantomData;
use core::pin::Pin;

use core::future::Future;

use crate::context::{IntoContext, IntoLocalContext};
use crate::origin::{At, Located, Place};
use crate::protocol::{Held, MapOutput, Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

pin_project_lite::pin_project! {
    /// Two contexts entered one after the other (sealed protocol state): the elements at places
    /// `P` (`first`) and `Q` onwards (`second`) of a tuple, which their errors' origins name.
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct Chain<A, B, P, Q> {
        #[pin]
        first: A,
        #[pin]
        second: B,
        places: PhantomData<fn() -> (P, Q)>,
    }
}

impl<A, B, P, Q> Sealed for Chain<A, B, P, Q> {}

// The methods are plain functions returning an `async` block that captures what it needs once
// (an `async fn` would keep its arguments and their copies), so that a tuple stays small. Each
// enter and exit is polled saying its place (`Located`: a zero-sized place, no bytes held).
macro_rules! chain_protocol {
    ($Protocol:ident $(+ $send:ident)?) => {
        impl<A, B, P, Q> $Protocol for Chain<A, B, P, Q>
        where
            A: $Protocol,
            B: $Protocol<Error = A::Error>,
            P: Place + Default $(+ $send)?,
            Q: Place + Default $(+ $send)?,
        {
            type Value = (A::Value, B::Value);
            type Error = A::Error;

            fn enter(
                self: Pin<&mut Self>,
                unwind: &mut Unwind<A::Error>,
            ) -> impl Future<Output = Option<Self::Value>> $(+ $send)? {
                let this = self.project();
                let (mut first_state, second_state) = (this.first, this.second);
                async move {
                    let first = Located::new(first_state.as_mut().enter(unwind), P::default()).await?;
                    // Held: if the scope is dropped while the second enters, the first falls back.
                    let held = Held::new(first_state, first, A::fallback);
                    if unwind.cancel_requested() {
                        // Cancelled while the first entered (enters are not interrupted): enter
                        // nothing more, and undo the first at once.
                        let (first_state, first) = held.release();
                        Located::new(first_state.exit(first, unwind), P::default()).await;
                        return None;
                    }
                    match Located::new(second_state.enter(unwind), Q::default()).await {
                        Some(second) => Some((held.release().1, second)),
                        None => {
                            // The second enter failed (and cleaned up after itself): undo the
                            // first one, which then sees the failure.
                            let (first_state, first) = held.release();
                            Located::new(first_state.exit(first, unwind), P::default()).await;
                            None
                        }
                    }
                }
            }

            fn exit(
                self: Pin<&mut Self>,
                (first, second): Self::Value,
                unwind: &mut Unwind<A::Error>,
            ) -> impl Future<Output = ()> $(+ $send)? {
                let this = self.project();
                let (first_state, second_state) = (this.first, this.second);
                async move {
                    let held = Held::new(first_state, first, A::fallback);
                    Located::new(second_state.exit(second, unwind), Q::default()).await;
                    let (first_state, first) = held.release();
                    Located::new(first_state.exit(first, unwind), P::default()).await;
                }
            }

            fn fallback(self: Pin<&mut Self>, (first, second): Self::Value) {
                let this = self.project();
                let held = Held::new(this.first, first, A::fallback);
                crate::catch_unwind::quietly(|| this.second.fallback(second));
                drop(held); // then the first, in reverse order
            }
        }
    };
}

chain_protocol!(Protocol);
chain_protocol!(SendProtocol + Send);

/// Converts between a flat tuple `(a, b, c)` and the nested pairs `(a, (b, c))` of a chain.
#[doc(hidden)]
pub trait Nest: Sized {
    type Nested;
    fn nest(self) -> Self::Nested;
    fn flatten(nested: Self::Nested) -> Self;
}

pin_project_lite::pin_project! {
    /// A chain whose value is handed out as a flat tuple (sealed protocol state).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct Flat<N, T> {
        #[pin]
        nested: N,
        flat: PhantomData<fn(T) -> T>,
    }
}

impl<N, T> Sealed for Flat<N, T> {}

macro_rules! flat_protocol {
    ($Protocol:ident $(+ $bound:ident)?) => {
        impl<N: $Protocol, T: Nest<Nested = N::Value> $(+ $bound)?> $Protocol for Flat<N, T> {
            type Value = T;
            type Error = N::Error;

            fn enter(
                self: Pin<&mut Self>,
                unwind: &mut Unwind<N::Error>,
            ) -> impl Future<Output = Option<T>> $(+ $bound)? {
                MapOutput::new(self.project().nested.enter(unwind), |entered: Option<N::Value>| entered.map(T::flatten))
            }

            fn exit(self: Pin<&mut Self>, value: T, unwind: &mut Unwind<N::Error>) -> impl Future<Output = ()> $(+ $bound)? {
                self.project().nested.exit(value.nest(), unwind)
            }

            fn fallback(self: Pin<&mut Self>, value: T) {
                self.project().nested.fallback(value.nest())
            }
        }
    };
}

flat_protocol!(Protocol);
flat_protocol!(SendProtocol + Send);

/// `nested!(a, b, c)` is `(a, (b, c))`, in type, pattern and expression position.
macro_rules! nested {
    ($last:tt) => { $last };
    ($head:tt, $($rest:tt),+) => { ($head, nested!($($rest),+)) };
}

macro_rules! chain_type {
    ($Into:ident, $Ctx:ident; $at:expr; $last:ident) => { <$last as $Into>::$Ctx };
    ($Into:ident, $Ctx:ident; $at:expr; $head:ident, $($rest:ident),+) => {
        Chain<<$head as $Into>::$Ctx, chain_type!($Into, $Ctx; $at + 1; $($rest),+), At<{ $at }>, At<{ $at + 1 }>>
    };
}

macro_rules! chain {
    ($into:ident; $last:ident) => { $last.$into() };
    ($into:ident; $head:ident, $($rest:ident),+) => {
        Chain { first: $head.$into(), second: chain!($into; $($rest),+), places: PhantomData }
    };
}

macro_rules! tuple_into {
    ($A:ident $a:ident, $($T:ident $t:ident),+) => {
        impl<$A: IntoLocalContext, $($T: IntoLocalContext<Error = $A::Error>),+> IntoLocalContext for ($A, $($T),+) {
            type Value = ($A::Value, $($T::Value),+);
            type Error = $A::Error;
            type LocalContext = Flat<chain_type!(IntoLocalContext, LocalContext; 0; $A, $($T),+), Self::Value>;

            fn into_local_context(self) -> Self::LocalContext {
                let ($a, $($t),+) = self;
                Flat { nested: chain!(into_local_context; $a, $($t),+), flat: PhantomData }
            }
        }

        impl<$A: IntoContext, $($T: IntoContext<Error = $A::Error>),+> IntoContext for ($A, $($T),+) {
            type Context = Flat<chain_type!(IntoContext, Context; 0; $A, $($T),+), Self::Value>;

            fn into_context(self) -> Self::Context {
                let ($a, $($t),+) = self;
                Flat { nested: chain!(into_context; $a, $($t),+), flat: PhantomData }
            }
        }
    };
}

macro_rules! tuple_context {
    ($A:ident $a:ident, $($T:ident $t:ident),+) => {
        tuple_into!($A $a, $($T $t),+);

        impl<$A, $($T),+> Nest for ($A, $($T),+) {
            type Nested = nested!($A, $($T),+);

            fn nest(self) -> Self::Nested {
                let ($a, $($t),+) = self;
                nested!($a, $($t),+)
            }

            fn flatten(nested: Self::Nested) -> Self {
                let nested!($a, $($t),+) = nested;
                ($a, $($t),+)
            }
        }
    };
}

tuple_context!(A a, B b);
tuple_context!(A a, B b, C c);
tuple_context!(A a, B b, C c, D d);
tuple_context!(A a, B b, C c, D d, E e);
tuple_context!(A a, B b, C c, D d, E e, F f);
tuple_context!(A a, B b, C c, D d, E e, F f, G g);
tuple_context!(A a, B b, C c, D d, E e, F f, G g, H h);
