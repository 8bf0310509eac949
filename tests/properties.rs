//! The oracle over random scenarios: for each executor and poll pattern, the crate must produce
//! exactly the report the independent model predicts (which exits ran, in which order, with
//! which outcome; which errors, in which order; which panic; what went to the hooks).
//!
//! `PROPTEST_CASES` sets the number of cases per test (2,000 by default; CI runs the default).
//! Failing seeds are kept in `tests/properties.proptest-regressions` and replayed first.
#![cfg(feature = "testkit")]

use async_with::testkit::{self, Finished, RunFuture};
use futures_test::future::FutureTestExt;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn cases() -> u32 {
    let default = if cfg!(miri) { 4 } else { 2000 };
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn config() -> ProptestConfig {
    // Every test here starts from its config. Detached scenarios (`detach_on_drop`) end in a task
    // nobody awaits, whose errors go to the process-wide error hook, which tests running at once
    // would share; the report does not cover them, and the default hook's line on standard error
    // for each is noise here.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| async_with::set_error_hook(|_| {}));
    ProptestConfig {
        cases: cases(),
        // Miri runs without file system access: no regressions file there.
        failure_persistence: if cfg!(miri) {
            None
        } else {
            Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions")))
        },
        ..ProptestConfig::default()
    }
}

fn on_futures(run: RunFuture) -> Finished {
    futures::executor::block_on(run)
}

/// Polls the scenario's future with a `Pending` between every two of its polls.
fn interleaved(run: RunFuture) -> Finished {
    futures::executor::block_on(run.interleave_pending())
}

/// Checks that the scenario's future is never moved once polled.
fn unmoved(run: RunFuture) -> Finished {
    futures::executor::block_on(run.assert_unmoved())
}

#[cfg(not(miri))]
fn on_smol(run: RunFuture) -> Finished {
    smol::block_on(run)
}

#[cfg(not(miri))]
fn on_async_std(run: RunFuture) -> Finished {
    async_std::task::block_on(run)
}

#[cfg(not(miri))]
fn on_tokio(run: RunFuture) -> Finished {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn futures_executor(scenario in testkit::strategy()) {
        testkit::check(&scenario, on_futures).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn interleave_pending(scenario in testkit::strategy()) {
        testkit::check(&scenario, interleaved).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn assert_unmoved(scenario in testkit::strategy()) {
        testkit::check(&scenario, unmoved).map_err(TestCaseError::fail)?;
    }
}

#[cfg(not(miri))]
proptest! {
    #![proptest_config(config())]

    #[test]
    fn smol(scenario in testkit::strategy()) {
        testkit::check(&scenario, on_smol).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn async_std(scenario in testkit::strategy()) {
        testkit::check(&scenario, on_async_std).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn tokio(scenario in testkit::strategy()) {
        testkit::check(&scenario, on_tokio).map_err(TestCaseError::fail)?;
    }
}

/// A context of "yours", hosted in every leaf: a pool whose checkouts must all come back.
struct Checkout(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl async_with::AsyncContext for Checkout {
    type Value = ();
    type Error = testkit::Fault;
    async fn enter(&mut self) -> Result<(), testkit::Fault> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn exit(self, (): (), _: async_with::Outcome<'_, testkit::Fault>) -> Result<(), testkit::Fault> {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn exit_on_drop(self, (): ()) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hosted_contexts_are_always_given_back(scenario in testkit::strategy()) {
        let open = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let pool = open.clone();
        testkit::check_with(&scenario, on_futures, move |_| Checkout(pool.clone())).map_err(TestCaseError::fail)?;
        prop_assert_eq!(open.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
