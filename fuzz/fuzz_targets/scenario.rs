//! Decodes bytes into a test-kit scenario, runs it against the crate, and asserts that the
//! report is the one the oracle predicts (G1-G7: which exits ran, in which order, with which
//! outcome, which errors and panics).
#![no_main]

use async_with::testkit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // Scenarios drop scopes on purpose: the default drop hook would print a line for each.
        async_with::set_drop_hook(|_| {});
        // Detached scenarios end in a task nobody awaits, whose errors go to the error hook.
        async_with::set_error_hook(|_| {});
        // The scenarios panic on purpose, and the crate catches those panics. libFuzzer's hook
        // aborts on any panic: keep it for every other one (a mismatch, a bug in the crate).
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload_as_str().is_some_and(planted) {
                abort(info);
            }
        }));
    },
    |scenario: testkit::Scenario| {
        if let Err(mismatch) = testkit::check(&scenario, futures::executor::block_on) {
            panic!("the crate and the oracle disagree:\n{mismatch}");
        }
    }
);

/// The messages of the panics scenarios plant: `enter #3 panicked`, `exit #0 panicked`,
/// `body of scope 1 panicked`, and a scope's `signal of scope 2 panicked`, `deadline of scope 0
/// panicked`, `hook of scope 1 panicked`.
fn planted(message: &str) -> bool {
    let Some(what) = message.strip_suffix(" panicked") else { return false };
    let number =
        ["enter #", "exit #", "body of scope ", "signal of scope ", "deadline of scope ", "hook of scope "]
            .into_iter()
            .find_map(|prefix| what.strip_prefix(prefix));
    number.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
