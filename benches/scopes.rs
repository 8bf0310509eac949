//! What a scope costs over the same code written by hand, measured side by side in one run.
//!
//! `cargo bench --bench scopes` prints, for each group, a `hand_written` line (the limit) and the
//! crate's line, with times and the allocations divan counts per iteration. BENCHMARKS.md has the
//! table and the ratios. Every future here is polled by a no-op waker loop, so no executor adds
//! time or allocations, and every enter and exit is ready at once, so the figures are the crate's
//! own overhead with nothing to hide it. The nanosecond benchmarks use a fixed sample size of
//! 10,000 iterations: left to divan, a slow first iteration can pin a sample at 100 iterations
//! and inflate the time per iteration two- or threefold.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use async_safe_defer::AsyncScope;
use async_with::{Cx, ExitStack, IntoContext, Outcome, context, resource, scope, with};
use divan::{AllocProfiler, black_box};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    sizes();
    divan::main();
}

/// Returns `Pending` once, then `Ready`: one suspension, as a socket that is not ready yet.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(
        |_| {
            if std::mem::replace(&mut yielded, true) { Poll::Ready(()) } else { Poll::Pending }
        },
    )
    .await
}

/// The error type of every benchmark: small and `Copy`, like an error code.
#[derive(Clone, Copy, Debug)]
struct Fail;

/// Polls `future` to completion with a no-op waker.
///
/// Inlined into every benchmark, so that a hand-written baseline compiles to the same code as in
/// a plain loop (22 instructions for `one_context::hand_written`, as in benches/instructions.rs).
/// Left to the compiler, the `run` of `hand_written_one`, which two benchmarks share, stayed out
/// of line: a call and 37 instructions, which made every ratio to it look smaller.
#[inline(always)]
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

// ----- The resource: an async acquire and an async release, as a connection would have. -----

async fn acquire() -> Result<u64, Fail> {
    Ok(black_box(1))
}

async fn release(value: u64) -> Result<(), Fail> {
    black_box(value);
    Ok(())
}

async fn body(value: &mut u64) -> Result<u64, Fail> {
    *value = black_box(*value + 1);
    Ok(*value)
}

fn connection() -> impl IntoContext<Value = u64, Error = Fail> {
    resource(acquire, async |value, _: Outcome<'_, Fail>| release(value).await)
}

fn generator() -> impl IntoContext<Value = u64, Error = Fail> {
    context(async |mut cx: Cx<u64, Fail>| {
        let value = acquire().await?;
        let (value, _) = cx.provide(value).await;
        release(value).await
    })
}

/// What a careful programmer writes without the crate: release on every path, and the
/// body's error first.
async fn hand_written_one() -> Result<u64, Fail> {
    let mut value = acquire().await?;
    let out = body(&mut value).await;
    let released = release(value).await;
    let out = out?;
    released?;
    Ok(out)
}

/// Three `with`s nested by hand: a row of `three_contexts` and the baseline of `composed`.
fn nested_three() -> u64 {
    run(with(connection(), async |a| {
        let inner = with(connection(), async |b| {
            let innermost = with(connection(), async |c| Ok(body(c).await?)).await.map_err(|_| Fail)?;
            Ok(body(b).await? + innermost)
        })
        .await
        .map_err(|_| Fail)?;
        Ok(body(a).await? + inner)
    }))
    .unwrap()
}

/// The size of `future`, which is never polled.
fn size_of_future<F: Future>(future: F) -> usize {
    size_of_val(&future)
}

/// Prints how much larger the crate's futures are than the hand-written ones.
fn sizes() {
    let hand = size_of_future(hand_written_one());
    let one = size_of_future(with(connection(), async |v| Ok(body(v).await?)));
    let tuple =
        size_of_future(with(
            (connection(), connection(), connection()),
            async |(a, _, _)| Ok(body(a).await?),
        ));
    let generator = size_of_future(with(generator(), async |v| Ok(body(v).await?)));
    println!(
        "future sizes: hand-written {hand} B, with {one} B (+{}), tuple of three {tuple} B, generator {generator} B",
        one - hand
    );
}

mod one_context {
    use super::*;

    #[divan::bench(sample_size = 10_000)]
    fn hand_written() -> Result<u64, Fail> {
        run(hand_written_one())
    }

    #[divan::bench(sample_size = 10_000)]
    fn with() -> u64 {
        run(async_with::with(connection(), async |v| Ok(body(v).await?))).unwrap()
    }
}

/// The same, with an enter and an exit that each wait once (`Pending`, then ready), as real
/// I/O does: what a scope adds to a resource that suspends.
mod one_context_that_waits {
    use super::*;

    async fn acquire() -> Result<u64, Fail> {
        yield_once().await;
        Ok(black_box(1))
    }

    async fn release(value: u64) -> Result<(), Fail> {
        yield_once().await;
        black_box(value);
        Ok(())
    }

    #[divan::bench(sample_size = 10_000)]
    fn hand_written() -> Result<u64, Fail> {
        run(async {
            let mut value = acquire().await?;
            let out = body(&mut value).await;
            let released = release(value).await;
            let out = out?;
            released?;
            Ok(out)
        })
    }

    #[divan::bench(sample_size = 10_000)]
    fn with() -> u64 {
        let waiting = resource(acquire, async |value, _: Outcome<'_, Fail>| release(value).await);
        run(async_with::with(waiting, async |v| Ok(body(v).await?))).unwrap()
    }
}

mod three_contexts {
    use super::*;

    #[divan::bench(sample_size = 10_000)]
    fn hand_written() -> Result<u64, Fail> {
        run(async {
            let mut a = acquire().await?;
            let out = match acquire().await {
                Err(e) => Err(e),
                Ok(mut b) => {
                    let out = match acquire().await {
                        Err(e) => Err(e),
                        Ok(mut c) => {
                            let out: Result<u64, Fail> =
                                async { Ok(body(&mut a).await? + body(&mut b).await? + body(&mut c).await?) }
                                    .await;
                            let released = release(c).await;
                            out.and_then(|out| released.map(|()| out))
                        }
                    };
                    let released = release(b).await;
                    out.and_then(|out| released.map(|()| out))
                }
            };
            let released = release(a).await;
            out.and_then(|out| released.map(|()| out))
        })
    }

    #[divan::bench(sample_size = 10_000)]
    fn nested_with() -> u64 {
        nested_three()
    }

    #[divan::bench(sample_size = 10_000)]
    fn tuple() -> u64 {
        run(with((connection(), connection(), connection()), async |(a, b, c)| {
            Ok(body(a).await? + body(b).await? + body(c).await?)
        }))
        .unwrap()
    }
}

mod generator_context {
    use super::*;

    #[divan::bench(sample_size = 10_000)]
    fn hand_written() -> Result<u64, Fail> {
        run(hand_written_one())
    }

    #[divan::bench(sample_size = 10_000)]
    fn context() -> u64 {
        run(with(generator(), async |v| Ok(body(v).await?))).unwrap()
    }
}

const ENTRIES: [usize; 3] = [10, 1_000, 100_000];

/// `n` contexts entered at run time, all exited in reverse order.
mod stack_of_contexts {
    use super::*;

    type Exit = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;

    /// A `Vec` of boxed release futures, awaited newest first: what one writes by hand.
    #[divan::bench(args = ENTRIES)]
    fn hand_written_vec(n: usize) -> Result<(), Fail> {
        run(async {
            let mut exits: Vec<Exit> = Vec::new();
            for _ in 0..n {
                let value = acquire().await?;
                exits.push(Box::pin(release(value)));
            }
            let mut first = Ok(());
            while let Some(exit) = exits.pop() {
                let released = exit.await;
                first = first.and(released);
            }
            first
        })
    }

    #[divan::bench(args = ENTRIES)]
    fn exit_stack(n: usize) {
        run(scope(async |stack: &mut ExitStack<Fail>| {
            for _ in 0..n {
                stack.enter(connection()).await?;
            }
            Ok(())
        }))
        .unwrap()
    }

    #[divan::bench(args = ENTRIES)]
    fn exit_stack_of_generators(n: usize) {
        run(scope(async |stack: &mut ExitStack<Fail>| {
            for _ in 0..n {
                stack.enter(generator()).await?;
            }
            Ok(())
        }))
        .unwrap()
    }
}

/// `n` deferred async callbacks, run in reverse order: Go's `defer`, made async.
mod deferred_callbacks {
    use super::*;

    #[divan::bench(args = ENTRIES)]
    fn async_safe_defer(n: usize) {
        run(async {
            let mut scope = AsyncScope::new();
            for i in 0..n {
                scope.defer(move || async move {
                    black_box(i);
                });
            }
            scope.finish().await;
        })
    }

    #[divan::bench(args = ENTRIES)]
    fn exit_stack(n: usize) {
        run(scope(async |stack: &mut ExitStack<Fail>| {
            for i in 0..n {
                stack.defer(move || async move {
                    black_box(i);
                    Ok(())
                });
            }
            Ok(())
        }))
        .unwrap()
    }
}

/// Three contexts composed with the combinators, against the same nesting written with `with`.
mod composed {
    use super::*;
    use async_with::{ContextExt, join};

    #[divan::bench(sample_size = 10_000)]
    fn nested_with() -> u64 {
        nested_three()
    }

    #[divan::bench(sample_size = 10_000)]
    fn and_then() -> u64 {
        let chain = connection().and_then(|_| connection()).and_then(|_| connection());
        run(with(chain, async |c| Ok(body(c).await?))).unwrap()
    }

    #[divan::bench(sample_size = 10_000)]
    fn map_and_eval_map() -> u64 {
        let ctx = connection().map(|v: &mut u64| *v + 1).eval_map(async |v: &mut u64| Ok::<_, Fail>(*v + 1));
        run(with(ctx, async |v| Ok(body(v).await?))).unwrap()
    }

    #[divan::bench(sample_size = 10_000)]
    fn join_of_three() -> u64 {
        let both = join(join(connection(), connection()), connection());
        run(with(both, async |((a, b), c)| Ok(body(a).await? + body(b).await? + body(c).await?))).unwrap()
    }
}
