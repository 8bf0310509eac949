//! Statically nested scopes allocate nothing: `with` over one context, a tuple, nested `with`s
//! and an error path with one error. A generator context allocates once per entry (its slot).
//! An exit stack allocates once per entry, plus the amortized growth of its list. Counted, on this thread only, by a counting allocator, and
//! polled with a no-op waker so that no executor allocates either.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

mod common;

use async_with::{Cx, ExitStack, Outcome, context, resource, scope, with};
use common::yield_now;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which upholds
// the `GlobalAlloc` contract; counting touches only a const-initialised thread-local `Cell`, which
// never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        BYTES.with(|n| n.set(n.get() + layout.size()));
        LARGEST.with(|n| n.set(n.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        BYTES.with(|n| n.set(n.get() + new_size.saturating_sub(layout.size())));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Polls `future` to completion and returns its output with the number of allocations made on
/// this thread while doing so (creating the future included).
fn allocations<F: Future>(make: impl FnOnce() -> F) -> (F::Output, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let mut future = pin!(make());
    let mut cx = Context::from_waker(Waker::noop());
    let out = loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            break out;
        }
    };
    (out, ALLOCATIONS.with(Cell::get) - before)
}

fn counter(fail_exit: bool) -> impl async_with::IntoContext<Value = u64, Error = &'static str> {
    resource(
        async || {
            yield_now().await;
            Ok(1)
        },
        async move |_, outcome: Outcome<'_, &'static str>| {
            yield_now().await;
            let _ = outcome;
            if fail_exit { Err("exit failed") } else { Ok(()) }
        },
    )
}

#[test]
fn one_context_allocates_nothing() {
    let (out, n) = allocations(|| with(counter(false), async |v| Ok(*v + 1)));
    assert_eq!(out.unwrap(), 2);
    assert_eq!(n, 0);
}

#[test]
fn a_tuple_of_three_allocates_nothing() {
    let (out, n) = allocations(|| {
        with((counter(false), counter(false), counter(false)), async |(a, b, c)| Ok(*a + *b + *c))
    });
    assert_eq!(out.unwrap(), 3);
    assert_eq!(n, 0);
}

#[test]
fn three_nested_withs_allocate_nothing() {
    let (out, n) = allocations(|| {
        with(counter(false), async |a| {
            let inner = with(counter(false), async |b| {
                let innermost = with(counter(false), async |c| Ok(*c)).await;
                Ok(*b + innermost.map_err(|_| "inner")?)
            })
            .await;
            Ok(*a + inner.map_err(|_| "outer")?)
        })
    });
    assert_eq!(out.unwrap(), 3);
    assert_eq!(n, 0);
}

#[test]
fn one_error_allocates_nothing_and_each_further_error_at_most_one() {
    let (out, n) = allocations(|| with(counter(false), async |_| Err::<(), _>("body failed".into())));
    assert_eq!(out.unwrap_err().primary(), Some(&"body failed"));
    assert_eq!(n, 0);

    // A second error starts the list of suppressed errors: one allocation (`Vec` growth).
    let (out, n) = allocations(|| with(counter(true), async |_| Err::<(), _>("body failed".into())));
    assert_eq!(out.unwrap_err().suppressed(), ["exit failed"]);
    assert_eq!(n, 1);
}

fn generator() -> impl async_with::IntoContext<Value = u64, Error = &'static str> {
    context(async |mut cx: Cx<u64, &'static str>| {
        yield_now().await;
        let (value, outcome) = cx.provide(1).await;
        yield_now().await;
        let _ = (value, outcome);
        Ok(())
    })
}

#[test]
fn a_generator_context_allocates_once_per_entry() {
    let (out, n) = allocations(|| with(generator(), async |v| Ok(*v)));
    assert_eq!(out.unwrap(), 1);
    assert_eq!(n, 1);

    let (out, n) =
        allocations(|| with((generator(), generator(), generator()), async |(a, b, c)| Ok(*a + *b + *c)));
    assert_eq!(out.unwrap(), 3);
    assert_eq!(n, 3);

    // Lending the error to the teardown and taking it back allocates nothing more.
    let (out, n) = allocations(|| with(generator(), async |_| Err::<(), _>("body failed".into())));
    assert_eq!(out.unwrap_err().primary(), Some(&"body failed"));
    assert_eq!(n, 1);
}

/// Runs a scope whose body runs `$push` (an expression using `stack`) `$n` times, returning
/// (allocations, bytes).
macro_rules! stack_of {
    ($n:expr, |$stack:ident| $push:expr) => {{
        let bytes_before = BYTES.with(Cell::get);
        LARGEST.with(|n| n.set(0));
        let (out, count) = allocations(|| {
            scope(async |$stack: &mut ExitStack<&'static str>| {
                for _ in 0..$n {
                    $push;
                }
                Ok(())
            })
        });
        out.unwrap();
        (count, BYTES.with(Cell::get) - bytes_before, LARGEST.with(Cell::get))
    }};
}

/// The list of entries doubles as it grows: about log2(n) reallocations in all.
fn growth(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()) as usize + 1
}

#[test]
fn an_exit_stack_allocates_once_per_entry() {
    const N: usize = if cfg!(miri) { 100 } else { 1000 };
    let cases = [
        ("callback", stack_of!(N, |stack| stack.callback(|| Ok(()))), 1, true),
        ("defer", stack_of!(N, |stack| stack.defer(async || Ok(()))), 1, true),
        (
            "push_exit",
            stack_of!(N, |stack| stack.push_exit(async |_: Outcome<'_, &'static str>| Ok(()))),
            1,
            true,
        ),
        (
            "resource",
            stack_of!(N, |stack| stack
                .enter(resource(async || Ok(1_u64), async |_, _: Outcome<'_, &'static str>| Ok(())))
                .await?),
            1,
            true,
        ),
        ("generator", stack_of!(N, |stack| stack.enter(generator()).await?), 2, false),
    ];
    for (name, (count, bytes, largest), per_entry, small) in cases {
        println!(
            "{name}: {count} allocations for {N} entries, {} bytes per entry, the largest allocation {largest} bytes",
            bytes / N
        );
        // Each entry's block (its one box) at most 128 B; the list of slots grows by `realloc`,
        // which `largest` does not see. A generator's entry is not there yet (issue 16).
        if small {
            assert!(largest <= 128, "{name}: an allocation of {largest} bytes");
        }
        assert!(
            count <= per_entry * N + growth(N),
            "{name}: {count} allocations for {N} entries (expected at most {} and the list's growth)",
            per_entry * N
        );
        assert!(count >= per_entry * N, "{name}: fewer allocations than entries? {count}");
    }
}

#[test]
fn statically_composed_contexts_allocate_nothing() {
    use async_with::{ContextExt, join, nullcontext};
    let (out, n) = allocations(|| {
        let chain = counter(false)
            .and_then(|a: &mut u64| {
                let a = *a;
                counter(false).map(move |b: &mut u64| a + *b)
            })
            .eval_map(async |ab: &mut u64| {
                yield_now().await;
                Ok(*ab + 1)
            })
            .on_finalize(async |_: Outcome<'_, &'static str>| Ok(()));
        let both = join(chain, nullcontext(10_u64));
        with(both, async |(abc, ten)| Ok(*abc + *ten))
    });
    assert_eq!(out.unwrap(), 13);
    assert_eq!(n, 0);
}

/// Three nested scopes, the outer one's signal firing while the innermost body waits.
fn nested_cancelled<'a>(
    signal: impl Future<Output = ()> + 'a,
    reached: &'a Cell<bool>,
) -> impl Future<Output = Result<u64, async_with::Error<&'static str>>> + 'a {
    async_with::Scope::new().cancel_on(signal).with(counter(false), async |_| {
        with(counter(false), async |_| {
            with(counter(false), async |_| {
                reached.set(true);
                std::future::pending::<Result<u64, _>>().await
            })
            .await
        })
        .await
    })
}

#[test]
fn a_cancellation_allocates_nothing_and_its_reason_once_for_every_scope_inside() {
    // A signal without a reason: every scope is cancelled, none allocates.
    let reached = Cell::new(false);
    let (out, n) = allocations(|| nested_cancelled(common::ready_on_poll(10), &reached));
    assert!(reached.get(), "the signal fired before the innermost body started");
    assert_eq!(
        out.unwrap_err().cancelled_by(),
        Some(async_with::CancelledBy::Signal { index: 0, reason: None })
    );
    assert_eq!(n, 0);
    // A token cancelled with a reason, seen once every scope is in its body: the outer scope
    // keeps the reason (one allocation); the scopes inside read it from their parent.
    let token = async_with::CancellationToken::new();
    token.cancel_with("shutdown");
    let signal = async {
        common::ready_on_poll(10).await;
        token.cancelled().await;
    };
    let reached = Cell::new(false);
    let (out, n) = allocations(|| nested_cancelled(signal, &reached));
    assert!(reached.get(), "the signal fired before the innermost body started");
    assert_eq!(out.unwrap_err().cancelled_by().and_then(|by| by.reason()), Some("shutdown"));
    assert_eq!(n, 1);
}
