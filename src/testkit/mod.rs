//! The fault-injection harness the crate's own tests use, for checking your contexts too
//! (feature `testkit`).
//!
//! A [`Scenario`] is a tree of scopes (`with` over contexts, tuples, `and_then` chains and
//! joins, `scope` with an exit stack, its releases by key and its `pop_all`), whose contexts are
//! written each way the crate offers (typed, `resource`, generator, and through `map`,
//! `map_err`, `named`, `eval_map`, `eval_tap` and `on_finalize`), where every enter, body and
//! exit succeeds, fails, panics or stays pending for a few polls, plus a cooperative
//! cancellation (through a `CancellationToken`), a drop or a `detach_on_drop` at a chosen poll.
//! [`run`] builds it out of the real crate and runs it on the executor you give, journaling
//! what happened, and checks that a returned error agrees with itself (its accessors, its text,
//! where each of its errors came from, why it was cancelled); [`expect`] computes what must
//! happen from the scenario alone, with an independent model of the contract (see the `oracle`
//! module); [`check`] compares the two. [`strategy`] generates scenarios for
//! proptest, and [`Scenario`] implements `arbitrary::Arbitrary` for fuzzing.
//!
//! ```
//! use async_with::testkit;
//! use proptest::prelude::*;
//!
//! proptest!(ProptestConfig::with_cases(64), |(scenario in testkit::strategy())| {
//!     testkit::check(&scenario, futures::executor::block_on).map_err(TestCaseError::fail)?;
//! });
//! ```

mod arbitrary;
mod oracle;
mod plan;
mod report;
mod run;
mod scenario;
mod strategy;

use alloc::format;
use alloc::string::String;

pub use oracle::expect;
pub use report::{Ending, Event, Fault, Report, Seen};
pub use run::{Finished, Hosted, Journal, RunFuture, ScopeFuture, run, run_with};
pub use scenario::{Act, Body, Deadline, Interrupt, Item, Kind, Leaf, Node, Scenario, Signal, Step};
pub use strategy::{leaf_strategy, step_strategy, strategy};

/// Runs `scenario` with `execute` and compares the report with what the oracle expects;
/// `Err` describes the scenario and both reports.
///
/// ```
/// use async_with::testkit::{self, Act, Body, Interrupt, Kind, Leaf, Node, Scenario, Step};
///
/// let failing = Leaf { kind: Kind::Context, enter: Step::ok(), exit: Step { pending: 2, act: Act::Fail } };
/// let scenario = Scenario {
///     root: Node::With(vec![failing, failing], Body::step(Step { pending: 1, act: Act::Panic })),
///     interrupt: Interrupt::None,
/// };
/// testkit::check(&scenario, futures::executor::block_on).unwrap();
/// ```
pub fn check(scenario: &Scenario, execute: impl FnOnce(RunFuture) -> Finished) -> Result<(), String> {
    let expected = expect(scenario);
    let actual = run(scenario, execute);
    if expected == actual {
        Ok(())
    } else {
        Err(format!("scenario: {scenario:?}\nexpected (oracle):{expected:?}\nactual (crate):{actual:?}"))
    }
}

/// [`check`], with a context of yours inside every leaf (see [`run_with`]). The oracle expects
/// your context to succeed; if it fails, panics or breaks the contract, the reports differ.
/// Check your own invariants (everything opened was closed) after it returns.
///
/// ```
/// use async_with::testkit::{self, Fault};
/// use async_with::{AsyncContext, Outcome};
///
/// struct Flaky; // fails to close: the kit reports it
/// impl AsyncContext for Flaky {
///     type Value = ();
///     type Error = Fault;
///     async fn enter(&mut self) -> Result<(), Fault> { Ok(()) }
///     async fn exit(self, (): (), _: Outcome<'_, Fault>) -> Result<(), Fault> { Err(Fault::Exit(99)) }
/// }
/// let report = testkit::check_with(&testkit::example(), futures::executor::block_on, |_| Flaky);
/// assert!(report.unwrap_err().contains("exit #99"));
/// ```
pub fn check_with<C, M>(
    scenario: &Scenario,
    execute: impl FnOnce(RunFuture) -> Finished,
    make: M,
) -> Result<(), String>
where
    C: crate::context::AsyncContext<Error = Fault> + 'static,
    M: Fn(usize) -> C + Send + Sync + 'static,
{
    let expected = expect(scenario);
    let actual = run_with(scenario, execute, make);
    if expected == actual {
        Ok(())
    } else {
        Err(format!("scenario: {scenario:?}\nexpected (oracle):{expected:?}\nactual (crate):{actual:?}"))
    }
}

/// A scenario that goes through every path once: a tuple of each kind of context, an exit stack
/// with every kind of entry, an early release and a `pop_all`, a join, failures, a panic, and a
/// cancellation.
///
/// ```
/// let scenario = async_with::testkit::example();
/// async_with::testkit::check(&scenario, futures::executor::block_on).unwrap();
/// ```
pub fn example() -> Scenario {
    use alloc::boxed::Box;
    use alloc::vec;
    let ok = Step::ok();
    let slow = Step { pending: 2, act: Act::Succeed };
    let leaf = |kind, exit| Leaf { kind, enter: slow, exit };
    let stack = Node::Stack(
        vec![
            Item::Enter(vec![leaf(Kind::Generator, ok)]),
            Item::Defer(slow),
            Item::Enter(vec![
                leaf(Kind::Resource, Step { pending: 1, act: Act::Succeed }),
                leaf(Kind::Resource, ok),
            ]),
            Item::PushExit(ok),
            Item::EnterKeyed(vec![leaf(Kind::Context, ok)]),
            Item::Callback(Act::Succeed),
            Item::Release(1),
            Item::PopAll,
            Item::Defer(ok),
        ],
        Body {
            nested: Some(Box::new(Node::Join {
                all: false,
                branches: vec![
                    leaf(Kind::Resource, slow),
                    leaf(Kind::Resource, Step { pending: 0, act: Act::Fail }),
                ],
                body: Body::step(ok),
            })),
            signal: Some(Signal { at: 18, panics: false }),
            ..Body::step(slow)
        },
    );
    let root = Node::With(
        vec![leaf(Kind::Context, slow), leaf(Kind::Context, ok)],
        Body {
            nested: Some(Box::new(stack)),
            deadline: Some(Deadline { after: 1, panics: false }),
            ..Body::step(ok)
        },
    );
    Scenario { root, interrupt: Interrupt::CancelAt(30) }
}
