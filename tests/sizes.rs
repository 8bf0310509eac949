//! What a scope adds to the size of the future it is in, beyond the user's own futures: sizes
//! are exact (`size_of_val`), so these are assertions, not benchmarks.
//!
//! Each scope is measured beside its hand-written equivalent: the same enter, body and exit
//! closures awaited in a plain async function (which keeps the value, awaits the body, then the
//! exit). Nested scopes must grow linearly: each level adds at most 128 bytes more than the
//! hand-written level does, and one scope is at most 192 bytes above its equivalent. Run with
//! `--nocapture` to see the table BENCHMARKS.md shows. The `tracing` feature's span (one per
//! scope) is not counted.

// Eight nested scopes are deeper than rustc's default query depth when it lays them out.
#![recursion_limit = "256"]
// The hand-written scopes call async closures where they are written, as a body would be.
#![allow(clippy::redundant_closure_call)]

use std::mem::{size_of, size_of_val};

use async_with::{ContextExt, Cx, Error, ExitStack, IntoContext, Outcome, context, resource, scope, with};

type E = String;

/// With the `tracing` feature every scope also holds its span: counted apart, per scope.
const SPAN: usize = if cfg!(feature = "tracing") { size_of::<tracing::Span>() } else { 0 };

/// A resource whose enter gives a `u64` and whose exit takes it back: the user's own futures
/// are these two closures' and the body's.
fn ctx() -> impl IntoContext<Value = u64, Error = E> {
    resource(async || Ok::<_, E>(1_u64), async |_value: u64, _outcome: Outcome<'_, E>| Ok(()))
}

/// The hand-written equivalent of `with(ctx(), body)`: the same closures, awaited in order.
async fn by_hand<T>(body: impl AsyncFnOnce(&mut u64) -> Result<T, E>) -> Result<T, E> {
    let enter = async || Ok::<_, E>(1_u64);
    let exit = async |_value: u64, _outcome: Outcome<'_, E>| Ok::<_, E>(());
    let mut value = enter().await?;
    let out = body(&mut value).await;
    exit(value, Outcome::Completed).await?;
    out
}

/// `with` nested `$n` deep, the innermost body reading the value.
macro_rules! nested_with {
    () => { async |v: &mut u64| Ok::<_, Error<E>>(*v) };
    ($head:tt $($rest:tt)*) => {
        async |_: &mut u64| Ok::<_, Error<E>>(with(ctx(), nested_with!($($rest)*)).await?)
    };
}

/// The same nesting, by hand.
macro_rules! nested_by_hand {
    () => { async |v: &mut u64| Ok::<_, E>(*v) };
    ($head:tt $($rest:tt)*) => { async |_: &mut u64| by_hand(nested_by_hand!($($rest)*)).await };
}

macro_rules! depths {
    ($($n:literal: $($level:ident)*;)*) => {
        [$((
            $n,
            size_of_val(&with(ctx(), nested_with!($($level)*))) - $n * SPAN,
            size_of_val(&by_hand(nested_by_hand!($($level)*))),
        )),*]
    };
}

/// `with` over a tuple of `$n` resources, and the same enters and exits by hand.
macro_rules! tuples {
    ($($n:literal: $($c:ident)*;)*) => {
        [$({
            let ours = size_of_val(&with(($(ctx_named!($c)),*), async |_| Ok(()))) - SPAN;
            let hand = size_of_val(&async {
                let enter = async || Ok::<_, E>(1_u64);
                let exit = async |_value: u64, _outcome: Outcome<'_, E>| Ok::<_, E>(());
                $(let $c = enter().await?;)*
                let out = (async || Ok::<_, E>(()))().await;
                hand_exits!(exit; $($c)*);
                out
            });
            ($n, ours, hand)
        }),*]
    };
}

macro_rules! ctx_named {
    ($c:ident) => {
        ctx()
    };
}

/// Exits in reverse order.
macro_rules! hand_exits {
    ($exit:ident;) => {};
    ($exit:ident; $head:ident $($rest:ident)*) => {
        hand_exits!($exit; $($rest)*);
        $exit($head, Outcome::Completed).await?;
    };
}

/// `ctx().and_then(..)` chained `$n` times in all.
macro_rules! and_then_chain {
    ($c:ident) => { ctx() };
    ($c:ident $($rest:ident)+) => { and_then_chain!($($rest)+).and_then(|_: &mut u64| ctx()) };
}

macro_rules! chains {
    ($($n:literal: $($c:ident)*;)*) => {
        [$({
            let ours = size_of_val(&with(and_then_chain!($($c)*), async |_| Ok(()))) - SPAN;
            ($n, ours)
        }),*]
    };
}

#[test]
fn nested_with_grows_linearly() {
    // `$n:` then one word per scope inside the outermost one.
    let rows = depths! {
        1: ;
        2: a;
        3: a b;
        4: a b c;
        5: a b c d;
        6: a b c d e;
        7: a b c d e f;
        8: a b c d e f g;
    };
    println!(
        "| nested `with` | async-with | hand-written | above hand-written | added by the level, beyond the hand-written level |"
    );
    println!("|---|---|---|---|---|");
    let mut previous: Option<(usize, usize)> = None;
    for (depth, ours, hand) in rows {
        let added = previous.map(|(o, h)| (ours - o) as isize - (hand - h) as isize);
        let shown = added.map_or("".to_string(), |a| format!("{a} B"));
        println!("| {depth} | {ours} B | {hand} B | {} B | {shown} |", ours - hand);
        if let Some(added) = added {
            assert!(added <= 128, "level {depth} adds {added} B beyond the hand-written level (at most 128)");
        } else {
            assert!(ours - hand <= 192, "one `with` is {} B above hand-written (at most 192)", ours - hand);
        }
        previous = Some((ours, hand));
    }
}

#[test]
fn a_tuple_grows_linearly() {
    let rows = tuples! {
        1: a;
        2: a b;
        3: a b c;
        4: a b c d;
        5: a b c d e;
        6: a b c d e f;
        7: a b c d e f g;
        8: a b c d e f g h;
    };
    println!("| tuple of | async-with | hand-written | above hand-written | added by the element |");
    println!("|---|---|---|---|---|");
    let mut previous: Option<(usize, usize)> = None;
    for (n, ours, hand) in rows {
        let added = previous.map(|(o, h)| (ours - o) as isize - (hand - h) as isize);
        let shown = added.map_or("".to_string(), |a| format!("{a} B"));
        println!("| {n} | {ours} B | {hand} B | {} B | {shown} |", ours - hand);
        if let Some(added) = added {
            assert!(added <= 128, "a tuple's element {n} adds {added} B (at most 128)");
        }
        assert!(ours - hand <= 192 + 128 * (n - 1), "a tuple of {n} is {} B above hand-written", ours - hand);
        previous = Some((ours, hand));
    }
}

#[test]
fn an_and_then_chain_grows_linearly() {
    let rows = chains! {
        1: a;
        2: a b;
        3: a b c;
        4: a b c d;
        5: a b c d e;
        6: a b c d e f;
        7: a b c d e f g;
        8: a b c d e f g h;
    };
    let hand = tuples! { 1: a; 2: a b; 3: a b c; 4: a b c d; 5: a b c d e; 6: a b c d e f; 7: a b c d e f g; 8: a b c d e f g h; };
    println!("| `and_then` chain of | async-with | hand-written | above hand-written | added by the link |");
    println!("|---|---|---|---|---|");
    let mut previous: Option<(usize, usize)> = None;
    for ((n, ours), (_, _, hand)) in rows.into_iter().zip(hand) {
        let added = previous.map(|(o, h)| (ours - o) as isize - (hand - h) as isize);
        let shown = added.map_or("".to_string(), |a| format!("{a} B"));
        println!("| {n} | {ours} B | {hand} B | {} B | {shown} |", ours - hand);
        if let Some(added) = added {
            assert!(added <= 128, "link {n} of an and_then chain adds {added} B (at most 128)");
        }
        assert!(ours - hand <= 192 + 128 * (n - 1), "a chain of {n} is {} B above hand-written", ours - hand);
        previous = Some((ours, hand));
    }
}

/// The size of the future a generator closure makes: the user's own (its setup, `provide` and
/// teardown), named through the crate's sealed helper trait.
fn generator_future_size<F: async_with::__private::GeneratorFn<u64, E>>(_: &F) -> usize {
    std::mem::size_of::<F::Future>()
}

#[test]
fn a_generator_context_and_a_scope_stay_small() {
    let generator = async |mut cx: Cx<u64, E>| {
        let (_value, _outcome) = cx.provide(1).await;
        Ok(())
    };
    let own = generator_future_size(&generator);
    let ours = size_of_val(&with(context(generator), async |v| Ok(*v))) - SPAN;
    let hand = size_of_val(&async {
        let mut value = 1_u64;
        let out = (async |v: &mut u64| Ok::<_, E>(*v))(&mut value).await;
        let (_value, _outcome) = (value, Outcome::<E>::Completed);
        out
    });
    let above = ours - hand - own;
    println!("| generator context | {ours} B | {hand} B + the closure's future, {own} B | {above} B |");
    assert!(above <= 192, "a generator context is {above} B above hand-written (at most 192)");

    let ours = size_of_val(&scope(async |_: &mut ExitStack<E>| Ok(1))) - SPAN;
    let hand = size_of_val(&async { (async || Ok::<_, E>(1))().await });
    println!("| `scope` | {ours} B | {hand} B | {} B |", ours - hand);
    assert!(ours - hand <= 192, "a scope is {} B above hand-written (at most 192)", ours - hand);
}
