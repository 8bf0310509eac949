//! The laws of the combinators, as properties over the test kit's journals: two compositions that
//! must be the same context give the same report (the same enters, exits, outcomes seen, ending
//! and errors) for contexts whose enters and exits succeed, fail, panic or stay pending at random.
//! A failing law prints both journals side by side.
//!
//! `PROPTEST_CASES` sets the number of cases per law (2,000 by default, 6 under Miri).
#![cfg(feature = "testkit")]

use std::collections::HashSet;

use async_with::testkit::{Ending, Event, Journal, Report, ScopeFuture, Seen, Step, step_strategy};
use async_with::{ContextExt, IntoContext, join, nullcontext, with};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Under Miri each case takes about a second: a handful per law checks for undefined behaviour.
    let default = if cfg!(miri) { 3 } else { 2000 };
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A context's enter and exit steps.
type Spec = (Step, Step);

fn spec() -> impl Strategy<Value = Spec> {
    (step_strategy(), step_strategy())
}

/// Runs the scope `build` makes from a fresh journal, on `futures::executor`.
fn report(build: impl FnOnce(&Journal) -> ScopeFuture) -> Report {
    let journal = Journal::new();
    let scope = build(&journal);
    journal.run(futures::executor::block_on, scope)
}

/// The context numbered `n` that `spec` describes.
fn ctx(
    journal: &Journal,
    n: usize,
    (enter, exit): Spec,
) -> impl IntoContext<Value = (), Error = async_with::testkit::Fault> + use<> {
    journal.context(n, enter, exit)
}

/// The scope around `context`, whose body does what `body` says.
fn scope_of(
    journal: &Journal,
    context: impl IntoContext<Value = (), Error = async_with::testkit::Fault> + Send + 'static,
    body: Step,
) -> ScopeFuture {
    let body = journal.body(0, body);
    Box::pin(with(context, async move |_| body.await))
}

/// Both reports, one event per line, side by side, and how each ended.
fn side_by_side(left: &Report, right: &Report) -> String {
    let rows = left.events.len().max(right.events.len());
    let mut out = format!("{:<36} | {}\n", "left", "right");
    for i in 0..rows {
        let cell = |r: &Report| r.events.get(i).map(|e| format!("{e:?}")).unwrap_or_default();
        let mark = if left.events.get(i) == right.events.get(i) { ' ' } else { '*' };
        out += &format!("{:<36} |{mark}{}\n", cell(left), cell(right));
    }
    out + &format!("ended: {:?}\n     | {:?}\n", left.ending, right.ending)
}

fn same(left: Report, right: Report) -> Result<(), TestCaseError> {
    if left == right {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!("the journals differ:\n{}", side_by_side(&left, &right))))
    }
}

/// A mapping function that panics when told to.
fn mapping(panics: bool, add: u32) -> impl FnOnce(&mut u32) -> u32 + Send + 'static {
    move |n: &mut u32| if panics { panic!("map panicked") } else { *n + add }
}

proptest! {
    #![proptest_config(config())]

    /// `(a.and_then(b)).and_then(c)` is `a.and_then(|| b.and_then(c))`.
    #[test]
    fn and_then_is_associative(a in spec(), b in spec(), c in spec(), body in step_strategy()) {
        let left = report(|j| {
            let (a, b, c) = (ctx(j, 0, a), ctx(j, 1, b), ctx(j, 2, c));
            scope_of(j, a.and_then(move |_| b).and_then(move |_| c), body)
        });
        let right = report(|j| {
            let (a, b, c) = (ctx(j, 0, a), ctx(j, 1, b), ctx(j, 2, c));
            scope_of(j, a.and_then(move |_| b.and_then(move |_| c)), body)
        });
        same(left, right)?;
    }

    /// `nullcontext(v).and_then(f)` is `f(v)`, and `a.and_then(nullcontext)` is `a`.
    #[test]
    fn nullcontext_is_the_identity_of_and_then(a in spec(), body in step_strategy()) {
        let alone = report(|j| scope_of(j, ctx(j, 0, a), body));
        let left = report(|j| {
            let a = ctx(j, 0, a);
            scope_of(j, nullcontext(()).and_then(move |_| a), body)
        });
        let right = report(|j| scope_of(j, ctx(j, 0, a).and_then(|_| nullcontext(())), body));
        same(left, alone.clone())?;
        same(right, alone)?;
    }

    /// `a.and_then(|_| b)` is the tuple `(a, b)`: entered in order, exited in reverse.
    #[test]
    fn and_then_orders_like_a_tuple(a in spec(), b in spec(), body in step_strategy()) {
        let chained = report(|j| {
            let (a, b) = (ctx(j, 0, a), ctx(j, 1, b));
            scope_of(j, a.and_then(move |_| b), body)
        });
        let tuple = report(|j| {
            let (a, b) = (ctx(j, 0, a), ctx(j, 1, b));
            scope_of(j, (a, b).map(|_| ()), body)
        });
        same(chained, tuple)?;
    }

    /// `a.map(f).map(g)` is `a.map(|v| g(f(v)))`, panics included; and the body sees `g(f(v))`.
    #[test]
    fn map_composes(a in spec(), f_panics in prop::bool::weighted(0.1), g_panics in prop::bool::weighted(0.1), body in step_strategy()) {
        let seen = |n: &mut u32| if *n == 111 { Ok(()) } else { Err(async_with::testkit::Fault::Body(*n as usize)) };
        let left = report(|j| {
            let body = j.body(0, body);
            let ctx = ctx(j, 0, a).map(|_| 100_u32).map(mapping(f_panics, 10)).map(mapping(g_panics, 1));
            Box::pin(with(ctx, async move |n| { seen(n)?; body.await }))
        });
        let right = report(|j| {
            let body = j.body(0, body);
            let (f, g) = (mapping(f_panics, 10), mapping(g_panics, 1));
            let ctx = ctx(j, 0, a).map(|_| 100_u32).map(move |n: &mut u32| g(&mut f(n)));
            Box::pin(with(ctx, async move |n| { seen(n)?; body.await }))
        });
        same(left, right)?;
    }

    /// `a.map(|v| *v)` is `a`.
    #[test]
    fn map_of_the_identity_changes_nothing(a in spec(), body in step_strategy()) {
        let alone = report(|j| scope_of(j, ctx(j, 0, a), body));
        let mapped = report(|j| scope_of(j, ctx(j, 0, a).map(|v: &mut ()| *v), body));
        same(mapped, alone)?;
    }

    /// `join(x, y)` exits exactly what each branch entered, each branch in its own reverse order,
    /// and when the body ran, both branches' exits start from the same outcome.
    #[test]
    fn join_exits_the_union_of_its_branches_each_in_reverse(
        x in (spec(), spec()),
        y in (spec(), spec()),
        body in step_strategy(),
    ) {
        let report = report(|j| {
            let branch_x = { let (a, b) = (ctx(j, 0, x.0), ctx(j, 1, x.1)); a.and_then(move |_| b) };
            let branch_y = { let (c, d) = (ctx(j, 2, y.0), ctx(j, 3, y.1)); c.and_then(move |_| d) };
            scope_of(j, join(branch_x, branch_y).map(|_| ()), body)
        });
        let shown = || side_by_side(&report, &report);
        // Which contexts enter, from the steps alone: a branch enters its contexts in order and
        // stops at the first that fails or panics; the branches do not stop each other.
        let enters = |(first, second): (Spec, Spec), n: usize| -> Vec<usize> {
            let ok = |s: Spec| s.0.act == async_with::testkit::Act::Succeed;
            match (ok(first), ok(second)) {
                (true, true) => vec![n, n + 1],
                (true, false) => vec![n],
                _ => vec![],
            }
        };
        let (entered_x, entered_y) = (enters(x, 0), enters(y, 2));
        let journaled = |f: fn(&Event) -> Option<usize>| report.events.iter().filter_map(f).collect::<Vec<_>>();
        let entered = journaled(|e| if let Event::Enter(n) = e { Some(*n) } else { None });
        let exited = journaled(|e| if let Event::Exit(n, _) = e { Some(*n) } else { None });
        let set = |v: &[usize]| v.iter().copied().collect::<HashSet<_>>();
        prop_assert_eq!(set(&entered), set(&[entered_x.clone(), entered_y.clone()].concat()), "{}", shown());
        // G1: every entered context exits exactly once, and no other.
        prop_assert_eq!(exited.len(), entered.len(), "{}", shown());
        prop_assert_eq!(set(&exited), set(&entered), "{}", shown());
        // G2 per branch: the exits of a branch are the reverse of its enters.
        for branch in [&entered_x, &entered_y] {
            let order: Vec<usize> = exited.iter().copied().filter(|n| branch.contains(n)).collect();
            let reversed: Vec<usize> = branch.iter().rev().copied().collect();
            prop_assert_eq!(order, reversed, "{}", shown());
        }
        let body_ran = report.events.contains(&Event::Body(0));
        prop_assert_eq!(body_ran, entered.len() == 4, "{}", shown());
        if body_ran {
            // Each branch's newest context exits first, both seeing what the body left.
            let first_exit = |n: usize| report.events.iter().find_map(|e| match e {
                Event::Exit(m, seen) if *m == n => Some(seen.clone()),
                _ => None,
            });
            prop_assert_eq!(first_exit(1), first_exit(3), "{}", shown());
            if body.act == async_with::testkit::Act::Succeed
                && [x.0, x.1, y.0, y.1].iter().all(|s| s.1.act == async_with::testkit::Act::Succeed)
            {
                prop_assert_eq!(&report.ending, &Ending::Returned, "{}", shown());
                prop_assert_eq!(first_exit(1), Some(Seen::Completed), "{}", shown());
            }
        }
    }
}

/// `map` is not a cancellation point: a mapped branch of a join that finishes entering after
/// the scope was cancelled exits with the join, seeing its sibling's earlier failure, exactly
/// as the unmapped branch does (it once exited inside its own enter, seeing `Cancelled`).
#[test]
fn map_adds_no_cancellation_point_inside_a_join() {
    use async_with::testkit::{self, Act, Body, Interrupt, Kind, Leaf, Node, Scenario};
    let leaf = |kind, pending, act| Leaf { kind, enter: Step { pending, act }, exit: Step::ok() };
    let scenario = |kind| {
        let inner = Node::Join {
            all: false,
            branches: vec![leaf(kind, 2, Act::Succeed), leaf(kind, 0, Act::Fail)],
            body: Body::step(Step::ok()),
        };
        let body = Body { nested: Some(Box::new(inner)), ..Body::step(Step::ok()) };
        let outer = vec![leaf(Kind::Context, 0, Act::Succeed), leaf(Kind::Context, 2, Act::Succeed)];
        Scenario { root: Node::Join { all: false, branches: outer, body }, interrupt: Interrupt::CancelAt(3) }
    };
    let run = |kind| testkit::run(&scenario(kind), futures::executor::block_on);
    let (alone, mapped) = (run(Kind::Context), run(Kind::Mapped));
    assert_eq!(mapped, alone, "{}", side_by_side(&mapped, &alone));
    assert!(alone.events.contains(&Event::Exit(2, Seen::Failed(testkit::Fault::Enter(3)))), "{alone:?}");
}
