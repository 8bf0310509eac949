//! [`join`] and [`join_all`]: contexts entered and exited concurrently, Cats Effect's `both` and
//! `parSequence`.
//!
//! The branches are polled together by the scope's own future (no task is spawned, so any
//! executor will do). Each branch records into its own unwind, which starts out seeing what the
//! scope's next exit would see (the same error, shared); afterwards their errors join the scope's
//! list, the first branch's before the second's, and the first panic resumes after every exit.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::Poll;

use crate::context::{IntoContext, IntoLocalContext};
use crate::origin::{At, Located};
use crate::protocol::{Held, Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// Two contexts entered concurrently, whose values the body borrows as a pair, and exited
/// concurrently: Cats Effect's `Resource.both`.
///
/// - If one enter fails or panics, the other is exited (with that outcome) if its enter
///   completed, and nothing else runs; both errors are kept if both fail.
/// - Both exits see the same outcome and run at the same time, so one may wait for the other
///   (a connection that drains while its peer flushes).
/// - On cancellation while entering, a branch whose enter completed is exited with `Cancelled`;
///   under [`Scope::interrupt_enters`](crate::Scope::interrupt_enters) the other's enter is
///   dropped and never exited.
///
/// No allocation, unless an exit runs while the scope has failed (its error is then shared).
///
/// ```
/// use async_with::{join, resource, with, Outcome};
///
/// fn replica(name: &'static str) -> impl async_with::IntoContext<Value = String, Error = String> {
///     resource(async move || Ok(format!("conn to {name}")), async |_, _: Outcome<'_, String>| Ok(()))
/// }
///
/// # futures::executor::block_on(async {
/// let both = join(replica("eu"), replica("us"));
/// let (eu, us) = with(both, async |(eu, us)| Ok((eu.clone(), us.clone()))).await.unwrap();
/// assert_eq!((eu.as_str(), us.as_str()), ("conn to eu", "conn to us"));
/// # });
/// ```
pub fn join<A, B>(first: A, second: B) -> Join<A, B> {
    Join { first, second }
}

/// Contexts entered concurrently, whose values the body borrows as a `Vec` in the same order,
/// and exited concurrently: Cats Effect's `parSequence`. The rules of [`join`] apply to each.
///
/// Allocates for each context: its state, and its enter and exit futures (plus the lists).
///
/// ```
/// use async_with::{join_all, resource, with, Outcome};
///
/// let shards = (0..4).map(|n| {
///     resource(async move || Ok::<_, String>(n * 10), async |_, _: Outcome<'_, String>| Ok(()))
/// });
/// # futures::executor::block_on(async {
/// let sum = with(join_all(shards), async |conns: &mut Vec<i32>| Ok(conns.iter().sum::<i32>())).await.unwrap();
/// assert_eq!(sum, 60);
/// # });
/// ```
pub fn join_all<I: IntoIterator>(contexts: I) -> JoinAll<I::Item> {
    JoinAll { contexts: contexts.into_iter().collect() }
}

/// Two contexts entered and exited concurrently; built by [`join`].
///
/// ```
/// use async_with::{join, nullcontext, Join};
/// let _: Join<_, _> = join(nullcontext::<_, ()>(1), nullcontext::<_, ()>(2));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct Join<A, B> {
    first: A,
    second: B,
}

/// Contexts entered and exited concurrently; built by [`join_all`].
///
/// ```
/// use async_with::{join_all, nullcontext, JoinAll};
/// let _: JoinAll<_> = join_all([nullcontext::<_, ()>(1), nullcontext::<_, ()>(2)]);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a context does nothing until a scope enters it"]
pub struct JoinAll<C> {
    contexts: Vec<C>,
}

pin_project_lite::pin_project! {
    /// The protocol state of a [`Join`] (sealed).
    #[doc(hidden)]
    #[derive(Debug)]
    pub struct JoinState<A, B> {
        #[pin]
        first: A,
        #[pin]
        second: B,
    }
}

/// The protocol state of a [`JoinAll`] (sealed).
#[doc(hidden)]
#[derive(Debug)]
pub struct JoinAllState<S> {
    states: Vec<Pin<Box<S>>>,
}

impl<A, B> Sealed for JoinState<A, B> {}
impl<S> Sealed for JoinAllState<S> {}

impl<A: IntoLocalContext, B: IntoLocalContext<Error = A::Error>> IntoLocalContext for Join<A, B> {
    type Value = (A::Value, B::Value);
    type Error = A::Error;
    type LocalContext = JoinState<A::LocalContext, B::LocalContext>;

    fn into_local_context(self) -> Self::LocalContext {
        JoinState { first: self.first.into_local_context(), second: self.second.into_local_context() }
    }
}

impl<A: IntoContext, B: IntoContext<Error = A::Error>> IntoContext for Join<A, B> {
    type Context = JoinState<A::Context, B::Context>;

    fn into_context(self) -> Self::Context {
        JoinState { first: self.first.into_context(), second: self.second.into_context() }
    }
}

impl<C: IntoLocalContext> IntoLocalContext for JoinAll<C> {
    type Value = Vec<C::Value>;
    type Error = C::Error;
    type LocalContext = JoinAllState<C::LocalContext>;

    fn into_local_context(self) -> Self::LocalContext {
        JoinAllState { states: self.contexts.into_iter().map(|c| Box::pin(c.into_local_context())).collect() }
    }
}

impl<C: IntoContext> IntoContext for JoinAll<C> {
    type Context = JoinAllState<C::Context>;

    fn into_context(self) -> Self::Context {
        JoinAllState { states: self.contexts.into_iter().map(|c| Box::pin(c.into_context())).collect() }
    }
}

pin_project_lite::pin_project! {
    /// Polls both futures in every poll until both are done, each in place.
    #[must_use = "futures do nothing unless you .await or poll them"]
    struct Both<A, B>
    where
        A: Future,
        B: Future,
    {
        #[pin]
        first: A,
        #[pin]
        second: B,
        // The second output before the first: dropped so (a scope dropped while entering), the
        // branches that entered fall back in reverse order, as they do once the join entered.
        b: Option<B::Output>,
        a: Option<A::Output>,
    }
}

fn both<A: Future, B: Future>(first: A, second: B) -> Both<A, B> {
    Both { first, second, b: None, a: None }
}

impl<A: Future, B: Future> Future for Both<A, B> {
    type Output = (A::Output, B::Output);

    fn poll(self: Pin<&mut Self>, task: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.a.is_none() {
            if let Poll::Ready(out) = this.first.poll(task) {
                *this.a = Some(out);
            }
        }
        if this.b.is_none() {
            if let Poll::Ready(out) = this.second.poll(task) {
                *this.b = Some(out);
            }
        }
        if this.a.is_some() && this.b.is_some() {
            Poll::Ready((this.a.take().expect("checked"), this.b.take().expect("checked")))
        } else {
            Poll::Pending
        }
    }
}

/// Outputs that are dropped newest first: dropped so (a scope dropped while entering), the
/// branches that entered fall back in reverse order, as they do once the join entered.
struct Outputs<T>(Vec<Option<T>>);

impl<T> Drop for Outputs<T> {
    fn drop(&mut self) {
        while let Some(output) = self.0.pop() {
            drop(output);
        }
    }
}

/// Polls every future in every poll until all are done; the outputs keep the futures' order.
async fn all<F: Future>(mut futures: Vec<Pin<Box<F>>>) -> Vec<F::Output> {
    let mut outputs = Outputs(futures.iter().map(|_| None).collect());
    poll_fn(|task| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.0.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(task) {
                    Poll::Ready(out) => *output = Some(out),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    core::mem::take(&mut outputs.0).into_iter().map(|out| out.expect("polled to completion")).collect()
}

macro_rules! join_protocol {
    ($Protocol:ident, $exit_both:ident, $exit_all:ident $(+ $send:ident)?) => {
        /// Exits two branches concurrently, each seeing what the scope's next exit would see.
        async fn $exit_both<A: $Protocol, B: $Protocol<Error = A::Error>>(
            first: Pin<&mut A>,
            a: A::Value,
            second: Pin<&mut B>,
            b: B::Value,
            unwind: &mut Unwind<A::Error>,
        ) {
            let fork = unwind.fork();
            let (mut ua, mut ub) = (fork.branch(), fork.branch());
            both(Located::new(first.exit(a, &mut ua), At::<0>), Located::new(second.exit(b, &mut ub), At::<1>)).await;
            unwind.join(fork, &mut [ua, ub]);
        }

        /// Exits branches concurrently, each seeing what the scope's next exit would see.
        /// Each branch is given with its place in the `join_all`.
        async fn $exit_all<S: $Protocol>(
            entered: Vec<(usize, Pin<&mut S>, S::Value)>,
            unwind: &mut Unwind<S::Error>,
        ) {
            let fork = unwind.fork();
            let mut branches: Vec<Unwind<S::Error>> = entered.iter().map(|_| fork.branch()).collect();
            let exiting = entered
                .into_iter()
                .zip(branches.iter_mut())
                .map(|((place, state, value), branch)| Box::pin(Located::new(state.exit(value, branch), place)));
            all(exiting.collect()).await;
            unwind.join(fork, &mut branches);
        }

        impl<A: $Protocol, B: $Protocol<Error = A::Error>> $Protocol for JoinState<A, B> {
            type Value = (A::Value, B::Value);
            type Error = A::Error;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<A::Error>) -> impl Future<Output = Option<Self::Value>> $(+ $send)? {
                let this = self.project();
                async move {
                    let (mut first, mut second) = (this.first, this.second);
                    let fork = unwind.fork();
                    let (mut a, mut b) = (fork.branch(), fork.branch());
                    // Held: a branch that entered falls back if the scope is dropped meanwhile.
                    let (a_entered, b_entered) = both(
                        async {
                            let value = Located::new(first.as_mut().enter(&mut a), At::<0>).await?;
                            Some(Held::new(first, value, <A as $Protocol>::fallback))
                        },
                        async {
                            let value = Located::new(second.as_mut().enter(&mut b), At::<1>).await?;
                            Some(Held::new(second, value, <B as $Protocol>::fallback))
                        },
                    )
                    .await;
                    unwind.join(fork, &mut [a, b]);
                    let cancelled = unwind.cancel_requested();
                    match (a_entered, b_entered) {
                        (Some(a), Some(b)) if !cancelled => Some((a.release().1, b.release().1)),
                        (Some(a), Some(b)) => {
                            let ((first, a), (second, b)) = (a.release(), b.release());
                            $exit_both(first, a, second, b, unwind).await;
                            None
                        }
                        (Some(entered), None) => {
                            let (state, value) = entered.release();
                            Located::new(state.exit(value, unwind), At::<0>).await;
                            None
                        }
                        (None, Some(entered)) => {
                            let (state, value) = entered.release();
                            Located::new(state.exit(value, unwind), At::<1>).await;
                            None
                        }
                        (None, None) => None,
                    }
                }
            }

            async fn exit(self: Pin<&mut Self>, (a, b): Self::Value, unwind: &mut Unwind<A::Error>) {
                let this = self.project();
                $exit_both(this.first, a, this.second, b, unwind).await;
            }

            fn fallback(self: Pin<&mut Self>, (a, b): Self::Value) {
                let this = self.project();
                let held = Held::new(this.first, a, <A as $Protocol>::fallback);
                crate::catch_unwind::quietly(|| this.second.fallback(b));
                drop(held);
            }
        }

        impl<S: $Protocol> $Protocol for JoinAllState<S> {
            type Value = Vec<S::Value>;
            type Error = S::Error;

            fn enter(self: Pin<&mut Self>, unwind: &mut Unwind<S::Error>) -> impl Future<Output = Option<Self::Value>> $(+ $send)? {
                let states = &mut self.get_mut().states;
                async move {
                    let fork = unwind.fork();
                    let mut branches: Vec<Unwind<S::Error>> = states.iter().map(|_| fork.branch()).collect();
                    let entering = states.iter_mut().zip(branches.iter_mut()).enumerate().map(|(place, (state, branch))| {
                        Box::pin(async move {
                            let mut state = state.as_mut();
                            let value = Located::new(state.as_mut().enter(branch), place).await?;
                            Some(Held::new(state, value, <S as $Protocol>::fallback))
                        })
                    });
                    let entered = all(entering.collect()).await;
                    unwind.join(fork, &mut branches);
                    let cancelled = unwind.cancel_requested();
                    if !cancelled && entered.iter().all(Option::is_some) {
                        return Some(entered.into_iter().flatten().map(|held| held.release().1).collect());
                    }
                    let entered: Vec<_> = entered
                        .into_iter()
                        .enumerate()
                        .filter_map(|(place, held)| held.map(|held| {
                            let (state, value) = held.release();
                            (place, state, value)
                        }))
                        .collect();
                    $exit_all(entered, unwind).await;
                    None
                }
            }

            fn exit(self: Pin<&mut Self>, values: Self::Value, unwind: &mut Unwind<S::Error>) -> impl Future<Output = ()> $(+ $send)? {
                let states = &mut self.get_mut().states;
                async move {
                    let entered =
                        states.iter_mut().zip(values).enumerate().map(|(place, (state, value))| (place, state.as_mut(), value)).collect();
                    $exit_all(entered, unwind).await;
                }
            }

            fn fallback(self: Pin<&mut Self>, values: Self::Value) {
                let states = &mut self.get_mut().states;
                let mut entered: Vec<_> = states.iter_mut().zip(values).collect();
                while let Some((state, value)) = entered.pop() {
                    crate::catch_unwind::quietly(|| state.as_mut().fallback(value));
                }
            }
        }
    };
}

join_protocol!(Protocol, exit_both_local, exit_all_local);
join_protocol!(SendProtocol, exit_both, exit_all + Send);
