//! The behaviours of CPython's `AsyncExitStack` tests (`Lib/test/test_contextlib.py`
//! `TestBaseExitStack` and `test_contextlib_async.py` `TestAsyncExitStack`) and of test262's
//! `AsyncDisposableStack` tests that apply to Rust, rewritten from the behaviour.
//!
//! Differences, by design: an exit cannot *suppress* an error (Python's `__aexit__` returning
//! true); errors are kept as one primary and its suppressed ones in the order they happened,
//! where Python chains each new exception to the previous (`__context__`) and JavaScript nests
//! `SuppressedError`s, newest outermost. Using a stack after closing it does not compile
//! (`tests/ui/stack_enter_after_close.rs`), where Python and JavaScript raise at run time.

mod common;

use std::sync::{Arc, Mutex};

use async_with::{AsyncContext, Error, ExitStack, Outcome, resource, scope};
use common::describe;
use futures::executor::block_on;

type Log = Arc<Mutex<Vec<String>>>;
type Stack = ExitStack<String>;

fn push(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn taken(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

/// CPython's `TestCM`-like context: journals `enter {n}` and `exit {n}`.
struct Cm {
    n: u32,
    log: Log,
    fail_enter: bool,
}

impl AsyncContext for Cm {
    type Value = u32;
    type Error = String;
    async fn enter(&mut self) -> Result<u32, String> {
        push(&self.log, format!("enter {}", self.n));
        if self.fail_enter { Err(format!("enter {} failed", self.n)) } else { Ok(self.n) }
    }
    async fn exit(self, _: u32, outcome: Outcome<'_, String>) -> Result<(), String> {
        push(&self.log, format!("exit {}: {}", self.n, describe(outcome)));
        Ok(())
    }
}

fn cm(log: &Log, n: u32) -> Cm {
    Cm { n, log: log.clone(), fail_enter: false }
}

#[test]
fn cpython_no_resources() {
    assert_eq!(block_on(scope(async |_: &mut Stack| Ok(1))).unwrap(), 1);
}

#[test]
fn cpython_callback_runs_callbacks_in_reverse_order() {
    let log = Log::default();
    block_on(scope(async |stack: &mut Stack| {
        for args in ["()", "(1,)", "(1, 2)", "kwds"] {
            let log = log.clone();
            stack.callback(move || {
                push(&log, args);
                Ok(())
            });
        }
        Ok(())
    }))
    .unwrap();
    assert_eq!(taken(&log), ["kwds", "(1, 2)", "(1,)", "()"]);
}

#[test]
fn cpython_async_callback_and_push_exit_run_lifo_and_see_the_error() {
    let log = Log::default();
    let err = block_on(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        let l = log.clone();
        stack.defer(async move || {
            push(&l, "async callback");
            Ok(())
        });
        let l = log.clone();
        stack.push_exit(async move |outcome: Outcome<'_, String>| {
            push(&l, format!("async exit: {}", describe(outcome)));
            Ok(())
        });
        Err("ZeroDivisionError".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "ZeroDivisionError");
    assert_eq!(taken(&log), ["async exit: Failed(ZeroDivisionError)", "async callback"]);
}

#[test]
fn cpython_enter_context_interleaves_with_callbacks_in_reverse() {
    let log = Log::default();
    block_on(scope(async |stack: &mut Stack| {
        let l = log.clone();
        stack.callback(move || {
            push(&l, "callback 1");
            Ok(())
        });
        assert_eq!(*stack.enter(cm(&log, 2)).await?, 2);
        let l = log.clone();
        stack.callback(move || {
            push(&l, "callback 3");
            Ok(())
        });
        Ok(())
    }))
    .unwrap();
    assert_eq!(taken(&log), ["enter 2", "callback 3", "exit 2: Completed", "callback 1"]);
}

#[test]
fn cpython_a_failed_enter_is_never_exited() {
    let log = Log::default();
    let err = block_on(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        stack.enter(cm(&log, 1)).await?;
        stack.enter(Cm { n: 2, log: log.clone(), fail_enter: true }).await?;
        unreachable!()
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "enter 2 failed");
    assert_eq!(taken(&log), ["enter 1", "enter 2", "exit 1: Failed(enter 2 failed)"]);
}

#[test]
fn cpython_close_runs_everything_once() {
    let log = Log::default();
    let stack = Stack::new();
    let l = log.clone();
    stack.callback(move || {
        push(&l, "closed");
        Ok(())
    });
    block_on(stack.close()).unwrap();
    assert_eq!(taken(&log), ["closed"]);
}

#[test]
fn cpython_pop_all_moves_the_callbacks_out_of_the_with_block() {
    let log = Log::default();
    let new_stack = block_on(scope(async |stack: &mut Stack| {
        let l = log.clone();
        stack.callback(move || {
            push(&l, "callback");
            Ok(())
        });
        Ok(stack.pop_all())
    }))
    .unwrap();
    assert!(taken(&log).is_empty(), "not run when the scope closed");
    block_on(new_stack.close()).unwrap();
    assert_eq!(taken(&log), ["callback"]);
}

#[test]
fn cpython_exit_raise_propagates_the_body_error() {
    let err = block_on(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        stack.push_exit(async |_: Outcome<'_, String>| Ok(()));
        Err("ZeroDivisionError".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(err.into_parts(), (Some("ZeroDivisionError".to_string()), vec![]));
}

#[test]
fn cpython_exit_exception_chaining_keeps_every_error_and_shows_each_exit_the_newest() {
    // Python: `raise_exc(IndexError)`, `raise_exc(KeyError)`, `raise_exc(AttributeError)`,
    // body raises ValueError; each exit sees the exception raised just before it.
    let log = Log::default();
    let err = block_on(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        for name in ["IndexError", "KeyError", "AttributeError"] {
            let l = log.clone();
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                push(&l, format!("{name} handler saw {}", describe(outcome)));
                Err(name.to_string())
            });
        }
        Err("ValueError".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(
        taken(&log),
        [
            "AttributeError handler saw Failed(ValueError)",
            "KeyError handler saw Failed(AttributeError)",
            "IndexError handler saw Failed(KeyError)"
        ]
    );
    assert_eq!(
        err.iter().map(String::as_str).collect::<Vec<_>>(),
        ["ValueError", "AttributeError", "KeyError", "IndexError"]
    );
}

#[test]
fn cpython_excessive_nesting_of_ten_thousand_callbacks() {
    const N: usize = if cfg!(miri) { 500 } else { 10_000 }; // Miri is slow, not the stack
    let count = Arc::new(Mutex::new(0));
    block_on(scope(async |stack: &mut Stack| {
        for _ in 0..N {
            let count = count.clone();
            stack.callback(move || {
                *count.lock().unwrap() += 1;
                Ok(())
            });
        }
        Ok(())
    }))
    .unwrap();
    assert_eq!(*count.lock().unwrap(), N);
}

#[test]
fn test262_dispose_async_disposes_resources_in_reverse_order() {
    // `stack.use(a); stack.adopt(b, onDispose); stack.defer(c)` -> c, b, a.
    let log = Log::default();
    let stack = Stack::new();
    block_on(async {
        stack.enter(cm(&log, 1)).await.unwrap();
        let l = log.clone();
        stack
            .enter(resource(
                async || Ok("b"),
                async move |b, _: Outcome<'_, String>| {
                    push(&l, format!("adopted {b}"));
                    Ok(())
                },
            ))
            .await
            .unwrap();
        let l = log.clone();
        stack.defer(async move || {
            push(&l, "deferred");
            Ok(())
        });
    });
    block_on(stack.close()).unwrap();
    assert_eq!(taken(&log), ["enter 1", "deferred", "adopted b", "exit 1: Completed"]);
}

#[test]
fn test262_errors_from_several_disposers_all_reach_the_caller_in_order() {
    // test262 `throws-suppressederror-if-multiple-errors-during-disposal`: disposers pushed as
    // e1, e2, e3 throw in disposal order e3, e2, e1.
    let stack = Stack::new();
    for e in ["e1", "e2", "e3"] {
        stack.defer(async move || Err(e.to_string()));
    }
    let err = block_on(stack.close()).unwrap_err();
    assert_eq!(err.primary().unwrap(), "e3");
    assert_eq!(err.suppressed(), ["e2", "e1"]);
}

#[test]
fn test262_dispose_async_does_not_fail_without_errors() {
    let stack = Stack::new();
    stack.defer(async || Ok(()));
    assert!(block_on(stack.close()).is_ok());
}

#[test]
fn test262_move_hands_the_resources_to_a_new_stack() {
    let log = Log::default();
    let mut stack = Stack::new();
    let l = log.clone();
    stack.defer(async move || {
        push(&l, "disposed");
        Ok(())
    });
    let moved = stack.pop_all();
    block_on(stack.close()).unwrap();
    assert!(taken(&log).is_empty(), "the original stack no longer holds it");
    block_on(moved.close()).unwrap();
    assert_eq!(taken(&log), ["disposed"]);
}
