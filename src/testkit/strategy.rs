//! proptest strategies for scenarios: small trees, so that shrinking ends at a readable one.

use alloc::boxed::Box;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::scenario::{Act, Body, Deadline, Interrupt, Item, Kind, Leaf, Node, Scenario, Signal, Step};

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![16 => Just(Act::Succeed), 2 => Just(Act::Fail), 1 => Just(Act::Panic)]
}

fn step() -> impl Strategy<Value = Step> {
    (0..3u8, act()).prop_map(|(pending, act)| Step { pending, act })
}

/// Steps for an enter, an exit or a body: mostly successes, some failures, a few panics, after
/// zero to two pending polls.
///
/// ```
/// use async_with::testkit;
/// use proptest::prelude::*;
///
/// proptest!(ProptestConfig::with_cases(8), |(step in testkit::step_strategy())| {
///     prop_assert!(step.pending < 3);
/// });
/// ```
pub fn step_strategy() -> impl Strategy<Value = Step> {
    step()
}

/// A context's enter and exit steps, as a [`Leaf`] of any kind.
///
/// ```
/// use async_with::testkit;
/// use proptest::prelude::*;
///
/// proptest!(ProptestConfig::with_cases(8), |(leaf in testkit::leaf_strategy())| {
///     prop_assert!(leaf.enter.pending < 3 && leaf.exit.pending < 3);
/// });
/// ```
pub fn leaf_strategy() -> impl Strategy<Value = Leaf> {
    (kind(), step(), step()).prop_map(|(kind, enter, exit)| Leaf { kind, enter, exit })
}

/// Every kind, each as likely as the others.
fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![5 => branch_kind(), 1 => Just(Kind::EvalMapped)]
}

/// The kinds a join's branches can be (the model does not run an `eval_map`'s exit inside a
/// join's enter).
fn branch_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Context),
        Just(Kind::Resource),
        Just(Kind::Generator),
        Just(Kind::Mapped),
        Just(Kind::Finalized),
    ]
}

/// One to `max` contexts of one kind (a tuple's types are the same kind).
fn leaves(max: usize) -> impl Strategy<Value = Vec<Leaf>> {
    leaves_in(1, max)
}

/// `min` to `max` contexts of one kind.
fn leaves_in(min: usize, max: usize) -> impl Strategy<Value = Vec<Leaf>> {
    of_kind(kind(), min, max)
}

fn of_kind(kind: impl Strategy<Value = Kind>, min: usize, max: usize) -> impl Strategy<Value = Vec<Leaf>> {
    (kind, proptest::collection::vec((step(), step()), min..=max))
        .prop_map(|(kind, steps)| steps.into_iter().map(|(enter, exit)| Leaf { kind, enter, exit }).collect())
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        4 => leaves(3).prop_map(Item::Enter),
        1 => step().prop_map(Item::Defer),
        1 => step().prop_map(Item::PushExit),
        1 => act().prop_map(Item::Callback),
        2 => leaves(3).prop_map(Item::EnterKeyed),
        2 => (0..4u8).prop_map(Item::Release),
        1 => Just(Item::PopAll),
        1 => leaves(3).prop_map(Item::TryEnter),
    ]
}

/// The branches of a join: two for `join`, one to four for `join_all`.
fn join() -> impl Strategy<Value = (bool, Vec<Leaf>)> {
    proptest::bool::ANY.prop_flat_map(|all| {
        (Just(all), if all { of_kind(branch_kind(), 1, 4) } else { of_kind(branch_kind(), 2, 2) })
    })
}

/// A scope's options: most scopes have none; some have a signal that fires early (while inner
/// scopes enter, run or exit) or panics, a deadline that fires on a slow exit or panics, or an
/// error hook that panics.
fn options() -> impl Strategy<Value = (Option<Signal>, Option<Deadline>, bool)> {
    let signal = prop_oneof![
        12 => Just(None),
        3 => (0..16u16).prop_map(|at| Some(Signal { at, panics: false })),
        1 => (0..16u16).prop_map(|at| Some(Signal { at, panics: true })),
    ];
    let deadline = prop_oneof![
        12 => Just(None),
        3 => (0..3u8).prop_map(|after| Some(Deadline { after, panics: false })),
        1 => (0..3u8).prop_map(|after| Some(Deadline { after, panics: true })),
    ];
    (signal, deadline, proptest::bool::weighted(0.1))
}

fn body(
    nested: Option<Node>,
    step: Step,
    (signal, deadline, hook_panics): (Option<Signal>, Option<Deadline>, bool),
) -> Body {
    Body { nested: nested.map(Box::new), step, signal, deadline, hook_panics }
}

fn node() -> impl Strategy<Value = Node> {
    let flat = prop_oneof![
        (leaves(4), step(), options()).prop_map(|(l, step, o)| Node::With(l, body(None, step, o))),
        (leaves(4), step(), options()).prop_map(|(l, step, o)| Node::Chain(l, body(None, step, o))),
        (proptest::collection::vec(item(), 0..=4), step(), options())
            .prop_map(|(items, step, o)| Node::Stack(items, body(None, step, o))),
        (join(), step(), options()).prop_map(|((all, branches), step, o)| Node::Join {
            all,
            branches,
            body: body(None, step, o)
        }),
    ];
    flat.prop_recursive(2, 8, 1, |inner| {
        prop_oneof![
            (leaves(4), inner.clone(), step(), options())
                .prop_map(|(l, nested, step, o)| Node::With(l, body(Some(nested), step, o))),
            (leaves(4), inner.clone(), step(), options())
                .prop_map(|(l, nested, step, o)| Node::Chain(l, body(Some(nested), step, o))),
            (proptest::collection::vec(item(), 0..=4), inner.clone(), step(), options())
                .prop_map(|(items, nested, step, o)| Node::Stack(items, body(Some(nested), step, o))),
            (join(), inner, step(), options()).prop_map(|((all, branches), nested, step, o)| Node::Join {
                all,
                branches,
                body: body(Some(nested), step, o)
            }),
        ]
    })
}

fn interrupt() -> impl Strategy<Value = Interrupt> {
    prop_oneof![
        1 => Just(Interrupt::None),
        2 => (0..24u16).prop_map(Interrupt::CancelAt),
        2 => (0..32u16).prop_map(Interrupt::DropAt),
        1 => (0..32u16).prop_map(Interrupt::DetachAt),
    ]
}

/// Scenarios of up to three nested scopes, with up to four contexts per `with` and four items
/// per stack, and an interruption at one of the first few dozen polls.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::deterministic();
/// let scenario = async_with::testkit::strategy().new_tree(&mut runner).unwrap().current();
/// println!("{scenario:?}");
/// ```
pub fn strategy() -> impl Strategy<Value = Scenario> {
    (node(), interrupt()).prop_map(|(root, interrupt)| Scenario { root, interrupt })
}
