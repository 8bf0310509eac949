//! Hostile inputs around cancellation (issue 13): signals, deadlines and destructors that
//! panic, exits started in the body, interruptible enters of composite and generator contexts.
//! Each test states the exact journal, so a skipped exit, a fallback in its place or a lost
//! panic fails it.

mod common;

use std::future::Future;
use std::task::Poll;

use async_with::{ContextExt, Cx, Error, ExitStack, Outcome, Scope, context, join, resource, with};
use common::{Journal, block_on_catching, describe, ready_on_poll, yield_now};

/// A signal that panics with `message` on its `n + 1`-th poll (waking its task before that).
fn panics_on_poll(n: usize, message: &'static str) -> impl Future<Output = ()> + Send {
    let mut polls = 0;
    std::future::poll_fn(move |cx| {
        polls += 1;
        if polls > n {
            panic!("{message}");
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// A context named `name` whose exit awaits twice before it journals, and whose fallback
/// journals too: a skipped or dropped exit shows.
fn slow(j: &Journal, name: &'static str) -> impl async_with::IntoContext<Value = (), Error = String> + use<> {
    let (entering, exiting, falling) = (j.clone(), j.clone(), j.clone());
    resource(
        async move || {
            yield_now().await;
            entering.push(format!("enter {name}"));
            Ok::<_, String>(())
        },
        async move |(), outcome: Outcome<'_, String>| {
            yield_now().await;
            yield_now().await;
            exiting.push(format!("exit {name}: {}", describe(outcome)));
            Ok(())
        },
    )
    .on_drop(move |()| falling.push(format!("fallback {name}")))
}

/// Journals `dropped {name}` when dropped; panics with `boom {name}` if `panics`.
struct Guard {
    journal: Journal,
    name: &'static str,
    panics: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.journal.push(format!("dropped {}", self.name));
        if self.panics {
            panic!("boom {}", self.name);
        }
    }
}

// ----- (1) A panic in the signal, the deadline function or the deadline future. -----

#[test]
fn a_signal_that_panics_during_the_body_is_a_panic_of_the_scope() {
    let j = Journal::new();
    let body = j.clone();
    let out = block_on_catching(Scope::new().cancel_on(panics_on_poll(3, "the signal broke")).with(
        (slow(&j, "a"), slow(&j, "b")),
        async move |_| -> Result<(), Error<String>> {
            body.push("body");
            std::future::pending().await
        },
    ));
    assert_eq!(out.unwrap_err(), "the signal broke");
    // Every exit ran, async, seeing the panic; no fallback.
    assert_eq!(j.take(), ["enter a", "enter b", "body", "exit b: Panicked", "exit a: Panicked"]);
}

#[test]
fn a_signal_that_panics_during_an_enter_lets_it_finish_then_exits_it_seeing_the_panic() {
    let j = Journal::new();
    let out = block_on_catching(
        Scope::new()
            .cancel_on(panics_on_poll(1, "the signal broke"))
            .with((slow(&j, "a"), slow(&j, "b")), async |_| -> Result<(), Error<String>> {
                unreachable!("no body")
            }),
    );
    assert_eq!(out.unwrap_err(), "the signal broke");
    assert_eq!(j.take(), ["enter a", "exit a: Panicked"]);
}

#[test]
fn a_signal_that_panics_reaches_the_scopes_inside_as_a_cancellation() {
    let j = Journal::new();
    let inner = j.clone();
    let out = block_on_catching(Scope::new().cancel_on(panics_on_poll(3, "the signal broke")).with(
        slow(&j, "outer"),
        async move |_| {
            with(slow(&inner, "inner"), async |_| -> Result<(), Error<String>> {
                std::future::pending().await
            })
            .await?;
            Ok(())
        },
    ));
    assert_eq!(out.unwrap_err(), "the signal broke");
    assert_eq!(j.take(), ["enter outer", "enter inner", "exit inner: Cancelled", "exit outer: Panicked"]);
}

#[test]
fn a_signal_that_panics_in_a_scope_runs_every_callback_of_its_stack() {
    let j = Journal::new();
    let body = j.clone();
    let out = block_on_catching(Scope::new().cancel_on(panics_on_poll(1, "the signal broke")).scope(
        async move |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
            let (d, c, x) = (body.clone(), body.clone(), body.clone());
            stack.defer(async move || {
                d.push("defer");
                Ok(())
            });
            stack.callback(move || {
                c.push("callback");
                Ok(())
            });
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                x.push(format!("push_exit: {}", describe(outcome)));
                Ok(())
            });
            body.push("body");
            std::future::pending().await
        },
    ));
    assert_eq!(out.unwrap_err(), "the signal broke");
    assert_eq!(j.take(), ["body", "push_exit: Panicked", "callback", "defer"]);
}

#[test]
fn a_deadline_function_that_panics_leaves_every_exit_to_run() {
    let j = Journal::new();
    let out = block_on_catching(
        Scope::new()
            .exit_deadline(|| -> std::future::Pending<String> { panic!("no deadline today") })
            .with((slow(&j, "a"), slow(&j, "b")), async |_| Ok(())),
    );
    assert_eq!(out.unwrap_err(), "no deadline today");
    // The first exit's deadline panicked before it started: it ran without one, seeing it.
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Panicked", "exit a: Panicked"]);
}

/// The same in an exit stack, whose exits run from the scope's seed: the first exit started
/// sees the deadline function's panic, and so does every exit after it.
#[test]
fn a_deadline_function_that_panics_leaves_every_stack_exit_to_run_seeing_it() {
    let j = Journal::new();
    let (a, b) = (slow(&j, "a"), j.clone());
    let out = block_on_catching(
        Scope::new().exit_deadline(|| -> std::future::Pending<String> { panic!("no deadline today") }).scope(
            async move |stack: &mut ExitStack<String>| {
                stack.enter(a).await?;
                stack.push_exit(async move |outcome: Outcome<'_, String>| {
                    b.push(format!("exit b: {}", describe(outcome)));
                    Ok(())
                });
                Err::<(), _>("the body failed".to_string().into())
            },
        ),
    );
    assert_eq!(out.unwrap_err(), "no deadline today");
    assert_eq!(j.take(), ["enter a", "exit b: Panicked", "exit a: Panicked"]);
}

#[test]
fn a_deadline_future_that_panics_lets_its_exit_finish_and_the_others_run() {
    let j = Journal::new();
    let out = block_on_catching(
        Scope::new()
            .exit_deadline(|| async {
                panics_on_poll(0, "the deadline broke").await;
                String::from("never")
            })
            .with((slow(&j, "a"), slow(&j, "b")), async |_| Ok(())),
    );
    assert_eq!(out.unwrap_err(), "the deadline broke");
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Panicked"]);
}

/// Through `map_err` too (the inner context runs under an unwind of its own error type): the
/// deadline's panic came first, so it is the one that resumes, not the exit's that followed.
#[test]
fn a_deadline_that_panics_before_a_mapped_exit_panics_is_the_panic_that_resumes() {
    let j = Journal::new();
    let exiting = j.clone();
    let breaks = resource(
        async || Ok::<_, String>(()),
        async move |(), outcome: Outcome<'_, String>| {
            yield_now().await;
            exiting.push(format!("exit a: {}", describe(outcome)));
            panic!("the exit broke")
        },
    );
    let out = block_on_catching(
        Scope::new()
            .exit_deadline(|| async {
                panics_on_poll(0, "the deadline broke").await;
                String::from("never")
            })
            .with((slow(&j, "b"), breaks.map_err(|e: String| e)), async |_| Ok(())),
    );
    assert_eq!(out.unwrap_err(), "the deadline broke");
    assert_eq!(j.take(), ["enter b", "exit a: Completed", "exit b: Panicked"]);
}

/// A deadline whose destructor panics: dropped when the exit it bounded finished first.
fn panics_when_dropped() -> impl Future<Output = String> + Send {
    struct PanicsWhenDropped;
    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("the deadline broke when dropped");
        }
    }
    let guard = PanicsWhenDropped;
    async move {
        let _guard = guard;
        std::future::pending::<String>().await
    }
}

/// The deadline's destructor runs after its exit finished: its panic is the scope's, and every
/// older exit still runs, seeing it (it once escaped the exit, and the older exits never ran).
#[test]
fn a_deadline_that_panics_when_dropped_is_a_panic_of_the_scope_and_the_other_exits_run() {
    let j = Journal::new();
    let out = block_on_catching(
        Scope::new()
            .exit_deadline(panics_when_dropped)
            .with((slow(&j, "a"), slow(&j, "b")), async |_| Ok(())),
    );
    assert_eq!(out.unwrap_err(), "the deadline broke when dropped");
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Panicked"]);

    // Each kind of exit-stack entry: a context, an exit closure, a callback.
    let (a, older, newer) = (slow(&j, "a"), j.clone(), j.clone());
    let out = block_on_catching(Scope::new().exit_deadline(panics_when_dropped).scope(
        async move |stack: &mut ExitStack<String>| {
            stack.enter(a).await?;
            stack.push_exit(async move |outcome: Outcome<'_, String>| {
                older.push(format!("exit b: {}", describe(outcome)));
                Ok(())
            });
            stack.callback(move || {
                newer.push("callback c".to_string());
                Ok(())
            });
            Ok(())
        },
    ));
    assert_eq!(out.unwrap_err(), "the deadline broke when dropped");
    assert_eq!(j.take(), ["enter a", "callback c", "exit b: Panicked", "exit a: Panicked"]);
}

// ----- (12) A destructor that panics while the crate drops user state is a panic of the scope. --

#[test]
fn a_destructor_that_panics_in_a_stopped_body_is_a_panic_of_the_scope() {
    let j = Journal::new();
    let body = j.clone();
    let out = block_on_catching(Scope::new().cancel_on(ready_on_poll(2)).with(
        slow(&j, "a"),
        async move |_| -> Result<(), Error<String>> {
            let _guard = Guard { journal: body.clone(), name: "the body's guard", panics: true };
            body.push("body");
            std::future::pending().await
        },
    ));
    assert_eq!(out.unwrap_err(), "boom the body's guard");
    assert_eq!(j.take(), ["enter a", "body", "dropped the body's guard", "exit a: Panicked"]);
}

#[test]
fn a_destructor_that_panics_in_an_exit_past_its_deadline_is_a_panic_of_the_scope() {
    let j = Journal::new();
    let (exiting, other) = (j.clone(), j.clone());
    let stuck = resource(
        async || Ok::<_, String>(()),
        async move |(), _: Outcome<'_, String>| {
            let _guard = Guard { journal: exiting.clone(), name: "the exit's guard", panics: true };
            std::future::pending().await
        },
    );
    let after = resource(
        async || Ok::<_, String>(()),
        async move |(), outcome: Outcome<'_, String>| {
            other.push(format!("exit before: {}", describe(outcome)));
            Ok(())
        },
    );
    let out = block_on_catching(
        Scope::new()
            .exit_deadline(|| async { String::from("too slow") })
            .with((after, stuck), async |_| Ok(())),
    );
    assert_eq!(out.unwrap_err(), "boom the exit's guard");
    assert_eq!(j.take(), ["dropped the exit's guard", "exit before: Panicked"]);
}

#[test]
fn a_destructor_that_panics_in_an_interrupted_enter_is_a_panic_of_the_scope() {
    let j = Journal::new();
    let entering = j.clone();
    let stuck = resource(
        async move || {
            let _guard = Guard { journal: entering.clone(), name: "the enter's guard", panics: true };
            std::future::pending::<Result<(), String>>().await
        },
        async |(), _: Outcome<'_, String>| Ok(()),
    );
    // `a` enters at the second poll, `stuck` starts then; the third poll interrupts it.
    let out = block_on_catching(
        Scope::new()
            .cancel_on(ready_on_poll(2))
            .interrupt_enters()
            .with((slow(&j, "a"), stuck), async |_| -> Result<(), Error<String>> { unreachable!("no body") }),
    );
    assert_eq!(out.unwrap_err(), "boom the enter's guard");
    assert_eq!(j.take(), ["enter a", "dropped the enter's guard", "exit a: Panicked"]);
}

// ----- (5) An exit started in the body is shielded. -----

#[test]
fn an_exit_released_in_the_body_finishes_when_the_scope_is_cancelled() {
    let j = Journal::new();
    let (body, ending) = (j.clone(), j.clone());
    let out = futures::executor::block_on(Scope::new().cancel_on(ready_on_poll(2)).scope(
        async move |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
            let releasing = resource(
                async || Ok::<_, String>(()),
                async move |(), outcome: Outcome<'_, String>| {
                    ending.push(format!("release starts: {}", describe(outcome)));
                    for _ in 0..4 {
                        yield_now().await;
                    }
                    ending.push("release ends");
                    Ok(())
                },
            );
            let (_, key) = stack.enter_with_key(releasing).await?;
            body.push("releasing");
            stack.release(key).await?;
            body.push("released");
            std::future::pending().await
        },
    ));
    assert!(out.unwrap_err().is_cancelled());
    // The signal fired while the release ran: it ran to its end; the body stopped after it.
    assert_eq!(j.take(), ["releasing", "release starts: Completed", "release ends", "released"]);
}

// ----- (6) interrupt_enters with a composite entered into an exit stack. -----

/// A context whose enter never ends (journaling when it is dropped) and that is never exited.
fn stuck_enter(
    j: &Journal,
    name: &'static str,
) -> impl async_with::IntoContext<Value = (), Error = String> + use<> {
    let (entering, exiting) = (j.clone(), j.clone());
    resource(
        async move || {
            let _guard = Guard { journal: entering.clone(), name, panics: false };
            std::future::pending::<Result<(), String>>().await
        },
        async move |(), _: Outcome<'_, String>| {
            exiting.push(format!("exit {name}: must not run"));
            Ok(())
        },
    )
}

#[test]
fn an_interrupted_tuple_in_a_stack_exits_what_it_entered_async() {
    let j = Journal::new();
    let k = j.clone();
    let out = futures::executor::block_on(Scope::new().cancel_on(ready_on_poll(2)).interrupt_enters().scope(
        async move |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
            stack.enter((slow(&k, "a"), stuck_enter(&k, "b"))).await?;
            unreachable!("the enter was interrupted")
        },
    ));
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(j.take(), ["enter a", "dropped b", "exit a: Cancelled"]);
}

#[test]
fn an_interrupted_join_in_a_stack_exits_the_branch_that_entered_async() {
    let j = Journal::new();
    let k = j.clone();
    let out = futures::executor::block_on(Scope::new().cancel_on(ready_on_poll(2)).interrupt_enters().scope(
        async move |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
            stack.enter(join(slow(&k, "a"), stuck_enter(&k, "b"))).await?;
            unreachable!("the enter was interrupted")
        },
    ));
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(j.take(), ["enter a", "dropped b", "exit a: Cancelled"]);
}

#[test]
fn an_interrupted_and_then_in_a_stack_exits_the_first_context_async() {
    use async_with::ContextExt;
    let j = Journal::new();
    let k = j.clone();
    let out = futures::executor::block_on(Scope::new().cancel_on(ready_on_poll(2)).interrupt_enters().scope(
        async move |stack: &mut ExitStack<String>| -> Result<(), Error<String>> {
            let second = k.clone();
            stack.enter(slow(&k, "a").and_then(move |_| stuck_enter(&second, "b"))).await?;
            unreachable!("the enter was interrupted")
        },
    ));
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(j.take(), ["enter a", "dropped b", "exit a: Cancelled"]);
}

// ----- (7) interrupt_enters and a generator's setup. -----

#[test]
fn interrupt_enters_interrupts_a_generator_setup_in_with() {
    let j = Journal::new();
    let k = j.clone();
    let generator = context(async move |mut cx: Cx<(), String>| {
        let _guard = Guard { journal: k.clone(), name: "the setup", panics: false };
        k.push("setup starts");
        std::future::pending::<()>().await;
        let _ = cx.provide(()).await;
        k.push("teardown: must not run");
        Ok(())
    });
    // Without the interruption the setup would wait forever (the scope would hang).
    let out = futures::executor::block_on(
        Scope::new()
            .cancel_on(ready_on_poll(1))
            .interrupt_enters()
            .with(generator, async |_| -> Result<(), Error<String>> { unreachable!("no body") }),
    );
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(j.take(), ["setup starts", "dropped the setup"]);
}

// ----- (10) A cancellation during an exit-stack enter, and a body that ends right after it. --

#[test]
fn a_body_that_ends_right_after_a_cancelled_stack_enter_is_cancelled() {
    let j = Journal::new();
    let k = j.clone();
    let out = futures::executor::block_on(Scope::new().cancel_on(ready_on_poll(1)).scope(
        async move |stack: &mut ExitStack<String>| {
            // The signal fires while this enter runs: the enter finishes (enters are not
            // interrupted by default), then the body ends without awaiting again.
            stack.enter(slow(&k, "a")).await?;
            k.push("body ends");
            Ok(7)
        },
    ));
    let error = out.unwrap_err();
    assert!(error.is_cancelled(), "{error:?}");
    assert_eq!(j.take(), ["enter a", "body ends", "exit a: Cancelled"]);
}

#[test]
fn a_tuple_cancelled_before_it_starts_enters_nothing() {
    let j = Journal::new();
    let out = futures::executor::block_on(
        Scope::new()
            .cancel_on(ready_on_poll(0))
            .with((slow(&j, "a"), slow(&j, "b")), async |_| -> Result<(), Error<String>> {
                unreachable!("no body")
            }),
    );
    assert!(out.unwrap_err().is_cancelled());
    assert_eq!(
        j.take(),
        Vec::<String>::new(),
        "a signal that fired before the first enter starts enters nothing"
    );
}
