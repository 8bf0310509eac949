//! Hooks that fight back (issue 13: 8, 9, 11, 15): a hook that replaces the hooks from inside
//! itself, a drop hook that panics while a panic unwinds, a hook that panics on every error of a
//! detached task, and `detach_on_drop` after a panic or before its first poll.
//!
//! The process-wide hooks are shared by every test of a binary, and a hook that panics inside a
//! `Drop` during unwinding aborts the whole process. So every scenario that sets a hook runs in
//! a child process of its own (this test binary, running only that test), and the parent checks
//! that the child ran it and exited normally: not aborted, not hung, no failed assertion.
// Miri cannot start a process.
#![cfg(not(miri))]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_with::{
    Detached, Error, ExitStack, Outcome, Scope, detach_on_drop, resource, scope, set_drop_hook,
    set_error_hook, with,
};
use common::{Act, Journal, panic_message};

/// Names the scenario a child process runs.
const SCENARIO: &str = "ASYNC_WITH_HOSTILE_HOOKS_SCENARIO";

/// How long a scenario that could deadlock may take.
const PATIENCE: Duration = Duration::from_secs(5);

/// How long a child process may take: longer, so that a deadlock is reported by the child.
const CHILD_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `scenario` in a child process: this binary, running the test `test` alone, with
/// [`SCENARIO`] set. Inside that child, runs `scenario` itself.
fn in_child(test: &str, scenario: fn()) {
    if std::env::var(SCENARIO).as_deref() == Ok(test) {
        scenario();
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(SCENARIO, test)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CHILD_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let output = format!("--- stdout:\n{stdout}\n--- stderr:\n{stderr}");
    let Some(status) = status else {
        panic!("the child running `{test}` hung for {CHILD_PATIENCE:?}\n{output}")
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            None,
            "the child running `{test}` was killed by a signal (6 is SIGABRT)\n{output}"
        );
    }
    assert!(status.success(), "the child running `{test}` failed: {status}\n{output}");
    assert!(stdout.contains(&format!("test {test} ... ok")), "the child did not run `{test}`\n{output}");
}

/// Runs `scenario` on a thread of its own and fails if it does not finish within [`PATIENCE`]
/// (a deadlock), or panics.
fn finishes<T: Send + 'static>(what: &str, scenario: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(catch_unwind(AssertUnwindSafe(scenario)).map_err(panic_message));
    });
    match finished.recv_timeout(PATIENCE) {
        Ok(Ok(value)) => value,
        Ok(Err(message)) => panic!("{what}: panicked: {message}"),
        Err(_) => panic!("{what}: still blocked after {PATIENCE:?} (deadlock)"),
    }
}

type Log = Arc<Mutex<Vec<String>>>;

fn log_of(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A `with` scope whose body panics and whose one exit fails with `error`, run to its end
/// without a scope hook: `error` goes to the process-wide error hook.
fn exit_error_during_panic(error: &'static str) {
    let ctx = resource(
        async || Ok::<_, String>(()),
        async move |(), _: Outcome<'_, String>| Err(error.to_string()),
    );
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        futures::executor::block_on(with(ctx, async |_| -> Result<(), Error<String>> {
            panic!("body panicked")
        }))
    }));
    assert_eq!(panic_message(panicked.unwrap_err()), "body panicked");
}

/// A `with` scope over `name`, polled until its body waits, then dropped: a report to the
/// process-wide drop hook.
fn drop_a_pending_scope(journal: &Journal, name: &'static str) {
    let mut pending = Box::pin(with(journal.probe(name), async |_| {
        std::future::pending::<()>().await;
        Ok(())
    }));
    let mut task = Context::from_waker(Waker::noop());
    for _ in 0..4 {
        assert!(pending.as_mut().poll(&mut task).is_pending());
    }
    drop(pending);
}

// (8) A hook that replaces the error hook from inside itself.
#[test]
fn an_error_hook_can_replace_the_error_hook_from_inside_itself() {
    in_child("an_error_hook_can_replace_the_error_hook_from_inside_itself", || {
        let seen = finishes("set_error_hook inside the error hook", || {
            let seen = Log::default();
            let sink = seen.clone();
            set_error_hook(move |e| {
                sink.lock().unwrap().push(format!("first hook: {e:?}"));
                let sink = sink.clone();
                set_error_hook(move |e| sink.lock().unwrap().push(format!("second hook: {e:?}")));
            });
            exit_error_during_panic("one");
            exit_error_during_panic("two");
            exit_error_during_panic("three");
            log_of(&seen)
        });
        assert_eq!(seen, [r#"first hook: "one""#, r#"second hook: "two""#, r#"second hook: "three""#]);
    });
}

// (8) A drop hook that replaces the drop hook (and the error hook) from inside itself, called
// from the `Drop` of a scope future.
#[test]
fn a_drop_hook_can_replace_the_hooks_from_inside_itself() {
    in_child("a_drop_hook_can_replace_the_hooks_from_inside_itself", || {
        let seen = finishes("set_drop_hook inside the drop hook", || {
            let j = Journal::new();
            let jj = j.clone();
            set_drop_hook(move |dropped| {
                jj.push(format!("first drop hook: {}", dropped.scope()));
                let jj = jj.clone();
                set_drop_hook(move |dropped| jj.push(format!("second drop hook: {}", dropped.scope())));
                set_error_hook(|_| {});
            });
            drop_a_pending_scope(&j, "a");
            drop_a_pending_scope(&j, "b");
            j.take()
        });
        assert_eq!(
            seen,
            [
                "enter a",
                "fallback a",
                "first drop hook: with",
                "enter b",
                "fallback b",
                "second drop hook: with"
            ]
        );
    });
}

// (8) The hook being replaced is dropped outside the lock: its destructor may set a hook too.
#[test]
fn a_replaced_hook_may_set_a_hook_when_it_is_dropped() {
    in_child("a_replaced_hook_may_set_a_hook_when_it_is_dropped", || {
        struct SetsOnDrop(Log);
        impl Drop for SetsOnDrop {
            fn drop(&mut self) {
                self.0.lock().unwrap().push("old hook dropped".into());
                let sink = self.0.clone();
                set_error_hook(move |e| sink.lock().unwrap().push(format!("set on drop: {e:?}")));
                set_drop_hook(|_| {});
            }
        }
        let seen = finishes("set_error_hook in a replaced hook's destructor", || {
            let seen = Log::default();
            let on_drop = SetsOnDrop(seen.clone());
            set_error_hook(move |_| {
                let _ = &on_drop;
            });
            let sink = seen.clone();
            set_error_hook(move |e| sink.lock().unwrap().push(format!("newest: {e:?}")));
            exit_error_during_panic("one");
            log_of(&seen)
        });
        // The destructor ran after the new hook was stored, so the hook it set is the one used.
        assert_eq!(seen, ["old hook dropped", r#"set on drop: "one""#]);
    });
}

/// A panic payload whose own destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("the drop hook's payload panicked in its destructor");
    }
}

// (9) A drop hook that panics, told while the scope future is dropped during unwinding.
#[test]
fn a_panicking_drop_hook_is_contained() {
    in_child("a_panicking_drop_hook_is_contained", || {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        set_drop_hook(move |_| {
            if counter.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                panic!("drop hook panicked");
            }
            std::panic::panic_any(PanicsOnDrop);
        });
        let j = Journal::new();

        // Dropped while a panic unwinds through its owner: a panic here would abort.
        for name in ["a", "b"] {
            let jj = j.clone();
            let unwound = catch_unwind(AssertUnwindSafe(move || {
                let mut pending = Box::pin(with(jj.probe(name), async |_| {
                    std::future::pending::<()>().await;
                    Ok(())
                }));
                let mut task = Context::from_waker(Waker::noop());
                for _ in 0..4 {
                    assert!(pending.as_mut().poll(&mut task).is_pending());
                }
                let _owner = pending;
                panic!("the owner panicked");
            }));
            assert_eq!(panic_message(unwound.unwrap_err()), "the owner panicked");
        }
        // Dropped outside of any panic: the hook's panic does not escape the `Drop` either.
        let dropped = catch_unwind(AssertUnwindSafe(|| {
            drop_a_pending_scope(&j, "c");
            drop_a_pending_scope(&j, "d");
        }));
        assert!(dropped.is_ok(), "a drop hook's panic escaped a scope's `Drop`");
        // An exit stack too.
        let jj = j.clone();
        let unwound = catch_unwind(AssertUnwindSafe(move || {
            let mut pending = Box::pin(scope(async move |stack: &mut ExitStack<String>| {
                stack.enter(jj.probe("e")).await?;
                std::future::pending::<()>().await;
                Ok(())
            }));
            let mut task = Context::from_waker(Waker::noop());
            for _ in 0..4 {
                assert!(pending.as_mut().poll(&mut task).is_pending());
            }
            let _owner = pending;
            panic!("the stack's owner panicked");
        }));
        assert_eq!(panic_message(unwound.unwrap_err()), "the stack's owner panicked");

        assert_eq!(calls.load(Ordering::SeqCst), 5, "the drop hook is told every time");
        assert_eq!(
            j.take(),
            [
                "enter a",
                "fallback a",
                "enter b",
                "fallback b",
                "enter c",
                "fallback c",
                "enter d",
                "fallback d",
                "enter e",
                "fallback e"
            ]
        );
    });
}

/// A spawn function that keeps the tasks it is given, to be run (or not) by the test.
fn keeping(tasks: &Arc<Mutex<Vec<Detached>>>) -> impl FnOnce(Detached) + use<> {
    let tasks = tasks.clone();
    move |task| tasks.lock().unwrap().push(task)
}

/// Runs every task handed to `spawn` so far, returning how many there were.
fn run_spawned(tasks: &Arc<Mutex<Vec<Detached>>>) -> usize {
    let spawned = std::mem::take(&mut *tasks.lock().unwrap());
    let count = spawned.len();
    for task in spawned {
        // A task that panics (before the fix: "`async fn` resumed after panicking") is caught
        // by the task itself.
        futures::executor::block_on(task);
    }
    count
}

// (11) A `detach_on_drop` whose scope panicked has nothing left to finish.
#[test]
fn detach_on_drop_does_not_spawn_a_scope_that_panicked() {
    in_child("detach_on_drop_does_not_spawn_a_scope_that_panicked", || {
        let j = Journal::new();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let run = detach_on_drop(keeping(&tasks), |signal| {
            Scope::new()
                .cancel_on(signal)
                .with(j.probe("a"), async |_| -> Result<(), Error<String>> { panic!("body panicked") })
        });
        // Awaited in place: the panic unwinds through the `DetachOnDrop`, which is dropped.
        let panicked = catch_unwind(AssertUnwindSafe(|| futures::executor::block_on(run)));
        assert_eq!(panic_message(panicked.unwrap_err()), "body panicked");
        assert_eq!(run_spawned(&tasks), 0, "a scope that panicked was handed to `spawn`");

        // Polled by hand, then dropped outside of the panic.
        let mut run = detach_on_drop(keeping(&tasks), |signal| {
            Scope::new()
                .cancel_on(signal)
                .with(j.probe("b"), async |_| -> Result<(), Error<String>> { panic!("body panicked again") })
        });
        let mut task = Context::from_waker(Waker::noop());
        let panicked = loop {
            match catch_unwind(AssertUnwindSafe(|| std::pin::Pin::new(&mut run).poll(&mut task))) {
                Ok(Poll::Pending) => continue,
                Ok(Poll::Ready(_)) => panic!("the scope returned instead of panicking"),
                Err(payload) => break panic_message(payload),
            }
        };
        assert_eq!(panicked, "body panicked again");
        drop(run);
        assert_eq!(run_spawned(&tasks), 0, "a scope that panicked was handed to `spawn`");
        assert_eq!(j.take(), ["enter a", "exit a: Panicked", "enter b", "exit b: Panicked"]);

        // Polling it again after its panic is misuse, and says so (G9).
        let mut run = detach_on_drop(keeping(&tasks), |_| async {
            if true {
                panic!("the scope panicked");
            }
            Ok::<(), Error<String>>(())
        });
        let panicked = catch_unwind(AssertUnwindSafe(|| std::pin::Pin::new(&mut run).poll(&mut task)));
        assert_eq!(panic_message(panicked.unwrap_err()), "the scope panicked");
        let again = catch_unwind(AssertUnwindSafe(|| {
            let _ = std::pin::Pin::new(&mut run).poll(&mut task);
        }));
        assert_eq!(panic_message(again.unwrap_err()), "async-with: `DetachOnDrop` polled after completion");
        drop(run);
        assert_eq!(run_spawned(&tasks), 0);
    });
}

// (11) A `detach_on_drop` dropped before its first poll entered nothing: nothing to finish.
#[test]
fn detach_on_drop_never_polled_spawns_nothing() {
    in_child("detach_on_drop_never_polled_spawns_nothing", || {
        let j = Journal::new();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let body_ran = Arc::new(AtomicUsize::new(0));
        // A scope that cancels on the signal, and one that does not.
        let ran = body_ran.clone();
        let cancelling = detach_on_drop(keeping(&tasks), |signal| {
            Scope::new().cancel_on(signal).with(j.probe("a"), async move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        });
        let ran = body_ran.clone();
        let ignoring = detach_on_drop(keeping(&tasks), |_| {
            with(j.probe("b"), async move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        });
        drop(cancelling);
        drop(ignoring);
        let spawned = run_spawned(&tasks);
        assert_eq!(j.take(), Vec::<String>::new(), "a scope never polled was entered");
        assert_eq!(body_ran.load(Ordering::SeqCst), 0, "the body of a scope never polled ran");
        assert_eq!(spawned, 0, "a scope never polled was handed to `spawn`");
    });
}

// (11) Still detached as before: a scope polled once, dropped while its body runs.
#[test]
fn detach_on_drop_still_finishes_a_scope_dropped_mid_way() {
    let j = Journal::new();
    let tasks = Arc::new(Mutex::new(Vec::new()));
    let mut run = detach_on_drop(keeping(&tasks), |signal| {
        Scope::new().cancel_on(signal).with(j.probe("a"), async |_| {
            std::future::pending::<()>().await;
            Ok(())
        })
    });
    let mut task = Context::from_waker(Waker::noop());
    assert!(std::pin::Pin::new(&mut run).poll(&mut task).is_pending());
    drop(run);
    let spawned = std::mem::take(&mut *tasks.lock().unwrap());
    assert_eq!(spawned.len(), 1);
    for task in spawned {
        futures::executor::block_on(task);
    }
    assert_eq!(j.take(), ["enter a", "exit a: Cancelled"]);
}

// (15) A process-wide hook that panics on every error of a detached task is offered them all.
#[test]
fn a_panicking_global_hook_is_offered_every_detached_error() {
    in_child("a_panicking_global_hook_is_offered_every_detached_error", || {
        let seen = Log::default();
        let sink = seen.clone();
        set_error_hook(move |e| {
            sink.lock().unwrap().push(format!("{e:?}"));
            panic!("error hook panicked on {e:?}");
        });
        let j = Journal::new();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let mut run = detach_on_drop(keeping(&tasks), |signal| {
            let contexts =
                (j.probe("a").exit(Act::Fail), j.probe("b").exit(Act::Fail), j.probe("c").exit(Act::Fail));
            Scope::new().cancel_on(signal).with(contexts, async |_| {
                std::future::pending::<()>().await;
                Ok(())
            })
        });
        let mut task = Context::from_waker(Waker::noop());
        while j.take_peek().len() < 3 {
            assert!(std::pin::Pin::new(&mut run).poll(&mut task).is_pending());
        }
        drop(run);
        let spawned = std::mem::take(&mut *tasks.lock().unwrap());
        assert_eq!(spawned.len(), 1);
        for task in spawned {
            let finished = catch_unwind(AssertUnwindSafe(|| futures::executor::block_on(task)));
            assert!(finished.is_ok(), "the detached task panicked: {}", panic_message(finished.unwrap_err()));
        }
        assert_eq!(
            j.take(),
            ["enter a", "enter b", "enter c", "exit c: Cancelled", "exit b: Cancelled", "exit a: Cancelled"]
        );
        assert_eq!(log_of(&seen), [r#""exit c failed""#, r#""exit b failed""#, r#""exit a failed""#]);
    });
}

// (15) The same through a scope's own hook is already guarded (G6): every error, in order.
#[test]
fn a_panicking_scope_hook_is_offered_every_error_during_a_panic() {
    let j = Journal::new();
    let seen = Log::default();
    let sink = seen.clone();
    let contexts = (j.probe("a").exit(Act::Fail), j.probe("b").exit(Act::Fail));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        futures::executor::block_on(
            Scope::new()
                .on_error_during_panic(move |e: String| {
                    sink.lock().unwrap().push(e.clone());
                    panic!("scope hook panicked on {e}");
                })
                .with(contexts, async |_| -> Result<(), Error<String>> { panic!("body panicked") }),
        )
    }));
    assert_eq!(panic_message(panicked.unwrap_err()), "body panicked");
    assert_eq!(log_of(&seen), ["exit b failed", "exit a failed"]);
}

/// A value whose destructor panics, captured by a hook or a context.
struct PanicsWhenDropped(&'static str);

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("{} panicked in its destructor", self.0);
    }
}

// (same pattern) A drop hook that replaces itself holds the last handle on itself when it
// returns: its destructor (user code) runs inside the scope future's `Drop`, here during
// unwinding, and must be contained like the call.
#[test]
fn a_drop_hook_replaced_while_it_runs_is_dropped_safely() {
    in_child("a_drop_hook_replaced_while_it_runs_is_dropped_safely", || {
        let j = Journal::new();
        let jj = j.clone();
        let captured = PanicsWhenDropped("the first drop hook");
        set_drop_hook(move |_| {
            let _ = &captured;
            jj.push("first drop hook");
            let jj = jj.clone();
            set_drop_hook(move |_| jj.push("second drop hook"));
        });
        for name in ["a", "b"] {
            let jj = j.clone();
            let unwound = catch_unwind(AssertUnwindSafe(move || {
                let mut pending = Box::pin(with(jj.probe(name), async |_| {
                    std::future::pending::<()>().await;
                    Ok(())
                }));
                let mut task = Context::from_waker(Waker::noop());
                for _ in 0..4 {
                    assert!(pending.as_mut().poll(&mut task).is_pending());
                }
                let _owner = pending;
                panic!("the owner panicked");
            }));
            assert_eq!(panic_message(unwound.unwrap_err()), "the owner panicked");
        }
        assert_eq!(
            j.take(),
            ["enter a", "fallback a", "first drop hook", "enter b", "fallback b", "second drop hook"]
        );
    });
}

// (same pattern) A `detach_on_drop` dropped during unwinding drops what it still holds (a scope
// never polled, with its contexts; the spawn function) without letting a destructor's panic
// escape into the unwinding.
#[test]
fn detach_on_drop_drops_what_it_holds_quietly_during_unwinding() {
    in_child("detach_on_drop_drops_what_it_holds_quietly_during_unwinding", || {
        // Never polled: the scope and its context are dropped.
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let context = PanicsWhenDropped("a context never entered");
            let _run = detach_on_drop(drop, move |signal| {
                let context = resource(
                    async move || {
                        let _ = &context;
                        Ok::<_, String>(())
                    },
                    async |(), _: Outcome<'_, String>| Ok(()),
                );
                Scope::new().cancel_on(signal).with(context, async |_| Ok(()))
            });
            panic!("the owner panicked");
        }));
        assert_eq!(panic_message(unwound.unwrap_err()), "the owner panicked");

        // Finished: the spawn function, never called, is dropped.
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            let spawn_state = PanicsWhenDropped("a spawn function");
            let mut run = detach_on_drop(
                move |task| {
                    let _ = &spawn_state;
                    drop(task)
                },
                |_| async { Ok::<_, Error<String>>(()) },
            );
            let mut task = Context::from_waker(Waker::noop());
            assert!(std::pin::Pin::new(&mut run).poll(&mut task).is_ready());
            let _owner = run;
            panic!("the owner panicked");
        }));
        assert_eq!(panic_message(unwound.unwrap_err()), "the owner panicked");
    });
}

/// A panic payload whose own destructor panics, for a detached task to drop.
struct PayloadPanicsOnDrop;

impl Drop for PayloadPanicsOnDrop {
    fn drop(&mut self) {
        panic!("the payload panicked in its destructor");
    }
}

// (same pattern) A detached task ends quietly after its scope panicked, even when the panic's
// payload panics as it is dropped, and after dropping a value whose destructor panics.
#[test]
fn a_detached_task_ends_quietly_whatever_its_scope_left() {
    in_child("a_detached_task_ends_quietly_whatever_its_scope_left", || {
        let j = Journal::new();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let jj = j.clone();
        let exit_panics = resource(
            async || Ok::<_, String>(()),
            async move |(), outcome: Outcome<'_, String>| {
                jj.push(format!("exit: {}", common::describe(outcome)));
                std::panic::panic_any(PayloadPanicsOnDrop)
            },
        );
        let mut run = detach_on_drop(keeping(&tasks), |signal| {
            Scope::new().cancel_on(signal).with(exit_panics, async |_| {
                std::future::pending::<()>().await;
                Ok(())
            })
        });
        let mut task = Context::from_waker(Waker::noop());
        assert!(std::pin::Pin::new(&mut run).poll(&mut task).is_pending());
        drop(run);

        let mut run = detach_on_drop(keeping(&tasks), |_| async {
            crate::common::yield_now().await;
            Ok::<_, Error<String>>(PanicsWhenDropped("the value of a detached scope"))
        });
        assert!(std::pin::Pin::new(&mut run).poll(&mut task).is_pending());
        drop(run);

        let spawned = std::mem::take(&mut *tasks.lock().unwrap());
        assert_eq!(spawned.len(), 2);
        for task in spawned {
            let finished = catch_unwind(AssertUnwindSafe(|| futures::executor::block_on(task)));
            assert!(finished.is_ok(), "the detached task panicked: {}", panic_message(finished.unwrap_err()));
        }
        assert_eq!(j.take(), ["exit: Cancelled"]);
    });
}
