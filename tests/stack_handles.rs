//! Entry handles (issue 14, item 4): `enter_with_handle` lends a value that can be released on its
//! own while every other value the stack lent stays usable, which `release(key)` (taking the stack
//! by `&mut`) cannot do. Released exits run now, once, shielded and under the scope's exit
//! deadline; the rest exit at close, in reverse order. Miri runs these (and checks that releasing
//! one entry leaves the memory of the others alone).

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use async_with::__private::SendStack;
use async_with::{
    AsyncContext, Error, ExitStack, Handle, IntoContext, IntoLocalContext, LocalExitStack, Outcome, Scope,
    context, resource, scope, scope_local,
};
use common::{Act, Journal, block_on_catching, describe, ready_on_poll, yield_now};
use futures::FutureExt;
use futures::executor::block_on;

type Stack = ExitStack<String>;

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// A resource named `name` whose value is its name, journaling its exit.
fn named(j: &Journal, name: &'static str) -> impl IntoContext<Value = String, Error = String> + use<> {
    let j = j.clone();
    resource(
        async move || Ok(name.to_string()),
        async move |value: String, outcome: Outcome<'_, String>| {
            yield_now().await;
            j.push(format!("exit {value}: {}", describe(outcome)));
            Ok(())
        },
    )
}

// ----- The point: a release leaves the other lent values usable. -----

#[test]
fn a_release_leaves_the_values_lent_before_and_after_usable() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let a = stack.enter(j.probe("a")).await?;
        let mut b = stack.enter_with_handle(j.probe("b")).await?;
        let c = stack.enter(j.probe("c")).await?;
        b.uses += 1;
        a.uses += b.uses;
        b.release().await?; // with `release(key)`, `a` and `c` would be unusable from here
        a.uses += 1;
        c.uses += a.uses;
        j.push(format!("after release: a {} c {}", a.uses, c.uses));
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "enter c",
            "exit b: Completed",
            "after release: a 2 c 2",
            "exit c: Completed",
            "exit a: Completed"
        ]
    );
}

#[test]
fn handles_released_out_of_order_leave_the_rest_to_the_close_in_reverse_order() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let mut handles = Vec::new();
        for name in ["h0", "h1", "h2", "h3", "h4"] {
            handles.push(Some(stack.enter_with_handle(j.probe(name)).await?));
        }
        let kept = stack.enter(j.probe("kept")).await?;
        for i in [3, 1] {
            handles[i].take().unwrap().release().await?;
        }
        handles[4].take(); // dropped, not released: it stays in the stack
        for handle in handles.iter_mut().flatten() {
            handle.uses += 1;
        }
        kept.uses += 1;
        j.push("body ends");
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter h0",
            "enter h1",
            "enter h2",
            "enter h3",
            "enter h4",
            "enter kept",
            "exit h3: Completed",
            "exit h1: Completed",
            "body ends",
            "exit kept: Completed",
            "exit h4: Completed",
            "exit h2: Completed",
            "exit h0: Completed"
        ]
    );
}

#[test]
fn a_handle_derefs_to_its_value_and_debugs_as_it() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let mut name = stack.enter_with_handle(named(&j, "db")).await?;
        name.push_str("-primary");
        assert_eq!(name.len(), "db-primary".len());
        assert_eq!(format!("{name:?}"), "\"db-primary\"");
        let name: Handle<'_, String, String> = name;
        name.release().await?;
        Ok(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["exit db-primary: Completed"]);
}

// ----- What a release returns, and what the stack keeps. -----

#[test]
fn a_released_exit_gives_its_error_and_does_not_run_again() {
    let j = Journal::new();
    let mut stack = Stack::new();
    block_on(async {
        let handle = stack.enter_with_handle(j.probe("b").exit(Act::Fail)).await.unwrap();
        assert_eq!(handle.release().await, Err("exit b failed".to_string()));
    });
    assert!(block_on(stack.close()).is_ok(), "the error went to the caller of release");
    assert_eq!(j.take(), ["enter b", "exit b: Completed"]);
    stack = Stack::new();
    block_on(stack.close()).unwrap();
}

#[test]
fn a_tuple_entered_with_a_handle_exits_both_and_keeps_the_further_errors_for_the_close() {
    let j = Journal::new();
    let err = block_on(scope(async |stack: &mut Stack| {
        let kept = stack.enter(j.probe("kept")).await?;
        let mut pair =
            stack.enter_with_handle((j.probe("x").exit(Act::Fail), j.probe("y").exit(Act::Fail))).await?;
        pair.0.uses += 1;
        pair.1.uses += 1;
        // The newest exit's error is the release's; the older one is kept by the stack.
        assert_eq!(pair.release().await, Err("exit y failed".to_string()));
        kept.uses += 1;
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit x failed");
    assert!(err.suppressed().is_empty(), "{err:?}");
    assert_eq!(
        j.take(),
        [
            "enter kept",
            "enter x",
            "enter y",
            "exit y: Completed",
            "exit x: Failed(exit y failed)",
            "exit kept: Failed(exit x failed)"
        ]
    );
}

#[test]
fn a_failed_enter_gives_no_handle_and_pushes_nothing() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let a = stack.enter(j.probe("a")).await?;
        let failed = stack.enter_with_handle(j.probe("b").enter(Act::Fail)).await;
        assert_eq!(failed.unwrap_err(), "enter b failed");
        a.uses += 1;
        Ok(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["enter a", "enter b", "exit a: Completed"]);
}

#[test]
fn a_panicking_released_exit_panics_the_body_and_the_rest_still_exit() {
    let j = Journal::new();
    let out = block_on_catching(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        stack.enter(j.probe("a")).await?;
        let b = stack.enter_with_handle(j.probe("b").exit(Act::Panic)).await?;
        b.release().await?;
        unreachable!("the release panicked")
    }));
    assert_eq!(out.unwrap_err(), "exit b panicked");
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Panicked"]);
}

#[test]
fn a_release_that_panics_keeps_every_error_of_its_composite_exit() {
    let j = Journal::new();
    let out = block_on_catching(common::journaling_scope(&j).scope(
        async |stack: &mut Stack| -> Result<(), Error<String>> {
            let pair = stack
                .enter_with_handle((j.probe("x").exit(Act::Fail), j.probe("y").exit(Act::Panic)))
                .await?;
            pair.release().await?;
            unreachable!("the release panicked")
        },
    ));
    assert_eq!(out.unwrap_err(), "exit y panicked");
    // The caller of the release got no error (it panicked): `x`'s went to the stack, which
    // reported it when the scope closed, panicking (to the hook).
    assert_eq!(
        j.take(),
        ["enter x", "enter y", "exit y: Completed", "exit x: Panicked", "hook: exit x failed"]
    );
}

// ----- Kinds of entries. -----

#[test]
fn a_generator_context_entered_with_a_handle_tears_down_on_release() {
    let j = Journal::new();
    let jj = j.clone();
    block_on(scope(async |stack: &mut Stack| {
        let generator = context(async move |mut cx: async_with::Cx<Vec<u32>, String>| {
            jj.push("setup");
            let (values, outcome) = cx.provide(vec![1]).await;
            jj.push(format!("teardown {values:?}: {}", describe(outcome)));
            Ok(())
        });
        let mut values = stack.enter_with_handle(generator).await?;
        values.push(2);
        values.release().await?;
        j.push("released");
        Ok(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["setup", "teardown [1, 2]: Completed", "released"]);
}

#[test]
fn a_stack_entered_with_a_handle_closes_its_entries_on_release() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let outer = stack.enter(j.probe("outer")).await?;
        let nested = stack.enter_with_handle(Stack::new()).await?;
        nested.enter(j.probe("n1")).await?;
        let n2 = nested.enter_with_handle(j.probe("n2")).await?;
        let n3 = nested.enter(j.probe("n3")).await?;
        n2.release().await?;
        n3.uses += 1;
        nested.release().await?;
        outer.uses += 1;
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter n1",
            "enter n2",
            "enter n3",
            "exit n2: Completed",
            "exit n3: Completed",
            "exit n1: Completed",
            "exit outer: Completed"
        ]
    );
}

#[test]
fn handles_and_keys_mix_and_pop_all_takes_the_entries_of_dropped_handles() {
    let j = Journal::new();
    let moved = block_on(scope(async |stack: &mut Stack| {
        let (_, key) = stack.enter_with_key(j.probe("keyed")).await?;
        stack.enter_with_handle(j.probe("handled")).await?; // dropped: it stays in the stack
        let released = stack.enter_with_handle(j.probe("released")).await?;
        released.release().await?;
        stack.release(key).await?; // no handle is alive: the stack can be borrowed mutably
        stack.enter(j.probe("last")).await?;
        Ok(stack.pop_all())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter keyed",
            "enter handled",
            "enter released",
            "exit released: Completed",
            "exit keyed: Completed",
            "enter last"
        ]
    );
    block_on(moved.close()).unwrap();
    assert_eq!(j.take(), ["exit last: Completed", "exit handled: Completed"]);
}

#[test]
fn a_stale_key_does_not_reach_an_entry_entered_after_its_release() {
    let j = Journal::new();
    let mut stack = Stack::new();
    let key = block_on(async {
        stack.enter(j.probe("a")).await.unwrap();
        let (_, key) = stack.enter_with_key(j.probe("b")).await.unwrap();
        stack.release(key).await.unwrap(); // the newest: its slot is dropped
        let handle = stack.enter_with_handle(j.probe("c")).await.unwrap(); // numbered after b
        handle.release().await.unwrap();
        stack.enter(j.probe("d")).await.unwrap(); // and d after c
        key
    });
    let panic = block_on_catching(stack.release(key)).unwrap_err();
    assert_eq!(panic, "async-with: this entry was already released (or closed with the stack)");
    block_on(stack.close()).unwrap();
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "exit b: Completed",
            "enter c",
            "exit c: Completed",
            "enter d",
            "exit d: Completed",
            "exit a: Completed"
        ]
    );
}

// ----- Cancellation and exit deadlines, as for `release(key)`. -----

#[test]
fn a_release_in_a_scope_cancelled_meanwhile_runs_to_its_end() {
    let j = Journal::new();
    let (body, ending) = (j.clone(), j.clone());
    let out = block_on(Scope::new().cancel_on(ready_on_poll(2)).scope(
        async move |stack: &mut Stack| -> Result<(), Error<String>> {
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
            let handle = stack.enter_with_handle(releasing).await?;
            body.push("releasing");
            handle.release().await?;
            body.push("released");
            std::future::pending().await
        },
    ));
    assert!(out.unwrap_err().is_cancelled());
    // The signal fired while the release ran: it ran to its end; the body stopped after it.
    assert_eq!(j.take(), ["releasing", "release starts: Completed", "release ends", "released"]);
}

#[test]
fn a_released_exit_past_the_scope_deadline_is_dropped_and_its_deadline_error_returned() {
    let j = Journal::new();
    let (falling, body) = (j.clone(), j.clone());
    let scope = Scope::new().exit_deadline(|| async {
        for _ in 0..3 {
            yield_now().await;
        }
        "exit too slow".to_string()
    });
    block_on(scope.scope(async |stack: &mut Stack| {
        let kept = stack.enter(j.probe("kept")).await?;
        let stuck = resource(
            async || Ok::<_, String>(()),
            async |(), _: Outcome<'_, String>| std::future::pending().await,
        )
        .on_drop(move |()| falling.push("fallback stuck"));
        let stuck = stack.enter_with_handle(stuck).await?;
        assert_eq!(stuck.release().await, Err("exit too slow".to_string()));
        body.push("released");
        kept.uses += 1;
        Ok(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["enter kept", "released", "exit kept: Completed"]);
}

#[test]
fn a_local_released_exit_past_the_scope_deadline_is_dropped_and_its_deadline_error_returned() {
    // As above, in a local stack: the scope gives the stack it makes its exit deadline.
    let j = Journal::new();
    let (falling, body) = (j.clone(), j.clone());
    let scope = Scope::new().exit_deadline(|| async {
        for _ in 0..3 {
            yield_now().await;
        }
        "exit too slow".to_string()
    });
    block_on(scope.scope_local(async |stack: &mut LocalExitStack<'_, String>| {
        let kept = stack.enter(j.probe("kept")).await?;
        let stuck = resource(
            async || Ok::<_, String>(()),
            async |(), _: Outcome<'_, String>| {
                // Slower than the deadline, but it ends: a stack without the deadline would
                // finish it and return `Ok`, not hang.
                for _ in 0..50 {
                    yield_now().await;
                }
                Ok(())
            },
        )
        .on_drop(move |()| falling.push("fallback stuck"));
        let stuck = stack.enter_with_handle(stuck).await?;
        assert_eq!(stuck.release().await, Err("exit too slow".to_string()));
        body.push("released");
        kept.uses += 1;
        Ok(())
    }))
    .unwrap();
    assert_eq!(j.take(), ["enter kept", "released", "exit kept: Completed"]);
}

// ----- Concurrency on one stack. -----

#[test]
fn releases_and_enters_run_concurrently_on_one_stack() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let a = stack.enter(j.probe("a")).await?;
        let b = stack.enter_with_handle(named(&j, "b")).await?;
        let c = stack.enter_with_handle(named(&j, "c")).await?;
        let stack = &*stack;
        let (released_b, released_c, d) =
            futures::join!(b.release(), c.release(), async { stack.enter_with_handle(j.probe("d")).await });
        released_b?;
        released_c?;
        let mut d = d?;
        a.uses += 1;
        d.uses += 1;
        j.push("joined");
        Ok(())
    }))
    .unwrap();
    let mut lines = j.take();
    assert_eq!(lines[..1], ["enter a"]);
    assert_eq!(lines[lines.len() - 3..], ["joined", "exit d: Completed", "exit a: Completed"]);
    // The two releases and the enter interleave; each ran exactly once.
    let mut middle = lines.drain(1..lines.len() - 3).collect::<Vec<_>>();
    middle.sort();
    assert_eq!(middle, ["enter d", "exit b: Completed", "exit c: Completed"]);
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn handles_are_released_on_other_threads_of_a_multi_threaded_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).build().unwrap();
    let j = Journal::new();
    let jj = j.clone();
    let total = rt
        .block_on(rt.spawn(scope(async move |stack: &mut Stack| {
            let kept = stack.enter(jj.probe("kept")).await?;
            let stack = &*stack;
            let mut handles = Vec::new();
            for name in ["h0", "h1", "h2", "h3"] {
                handles.push(stack.enter_with_handle(named(&jj, name)).await?);
                tokio::task::yield_now().await;
            }
            // The releases run concurrently with each other and with more enters, wherever the
            // runtime polls the task.
            let releases = handles.into_iter().map(|handle| async move {
                tokio::task::yield_now().await;
                handle.release().await
            });
            let (released, more) = futures::join!(futures::future::join_all(releases), async {
                let mut more = stack.enter_with_handle(jj.probe("more")).await?;
                more.uses += 1;
                Ok::<_, String>(more)
            });
            released.into_iter().collect::<Result<Vec<()>, String>>()?;
            kept.uses += more?.uses;
            Ok(kept.uses)
        })))
        .unwrap();
    assert_eq!(total.unwrap(), 1);
    let lines = j.take();
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert_eq!(lines[lines.len() - 2..], ["exit more: Completed", "exit kept: Completed"]);
}

#[test]
fn handles_are_released_from_other_threads_while_the_stack_is_shared() {
    let j = Journal::new();
    let stack = Stack::new();
    let kept = block_on(stack.enter(j.probe("kept"))).unwrap();
    let mut handles = Vec::new();
    for name in ["t0", "t1", "t2"] {
        handles.push(block_on(stack.enter_with_handle(j.probe(name))).unwrap());
    }
    let shared = block_on(stack.enter_with_handle(named(&j, "shared"))).unwrap();
    std::thread::scope(|threads| {
        for handle in handles {
            threads.spawn(move || block_on(handle.release()).unwrap()); // a handle is `Send`
        }
        let (stack, shared, j) = (&stack, &shared, &j); // `Sync`, all three
        threads.spawn(move || {
            let mut late = block_on(stack.enter_with_handle(j.probe("late"))).unwrap();
            late.uses += shared.len() as u32;
        });
        threads.spawn(move || assert_eq!(shared.as_str(), "shared"));
        kept.uses += 1; // meanwhile, on this thread
    });
    block_on(shared.release()).unwrap();
    block_on(stack.close()).unwrap();
    let mut lines = j.take();
    assert_eq!(lines[..4], ["enter kept", "enter t0", "enter t1", "enter t2"]);
    assert_eq!(
        lines[lines.len() - 3..],
        ["exit shared: Completed", "exit late: Completed", "exit kept: Completed"]
    );
    let mut threads = lines.drain(4..lines.len() - 3).collect::<Vec<_>>();
    threads.sort();
    assert_eq!(threads, ["enter late", "exit t0: Completed", "exit t1: Completed", "exit t2: Completed"]);
}

#[test]
fn a_handle_and_its_release_are_send_when_the_value_is() {
    let j = Journal::new();
    let body = assert_send(scope(async |stack: &mut Stack| {
        let handle = assert_send(stack.enter_with_handle(j.probe("a")).await?);
        yield_now().await;
        assert_send(handle.release()).await?;
        Ok(())
    }));
    block_on(body).unwrap();
    assert_eq!(j.take(), ["enter a", "exit a: Completed"]);
}

#[test]
fn many_handles_released_in_a_scrambled_order_exit_once_each() {
    const N: usize = if cfg!(miri) { 24 } else { 500 };
    let exits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stack = Stack::new();
    block_on(async {
        let mut handles = Vec::new();
        let mut plain = Vec::new();
        for i in 0..N {
            let exits = exits.clone();
            let entry = resource(
                async move || Ok(i),
                async move |i: usize, _: Outcome<'_, String>| {
                    exits.lock().unwrap().push(i);
                    Ok(())
                },
            );
            if i % 3 == 0 {
                plain.push(stack.enter(entry).await.unwrap());
            } else {
                handles.push(Some(stack.enter_with_handle(entry).await.unwrap()));
            }
        }
        // Every handle, in an order unrelated to the entering one (a step coprime with the count).
        let count = handles.len();
        let step = (1..count).rev().find(|s| gcd(*s, count) == 1 && *s > count / 2).unwrap_or(1);
        for k in 0..count {
            let mut handle = handles[(k * step) % count].take().expect("each handle once");
            *handle += 0;
            for value in plain.iter_mut() {
                **value += 0; // the plain values stay usable between releases
            }
            handle.release().await.unwrap();
        }
    });
    let released = exits.lock().unwrap().len();
    assert_eq!(released, N - N.div_ceil(3));
    block_on(stack.close()).unwrap();
    let mut all = exits.lock().unwrap().clone();
    assert_eq!(all[released..], (0..N).rev().filter(|i| i % 3 == 0).collect::<Vec<_>>()[..]);
    all.sort();
    assert_eq!(all, (0..N).collect::<Vec<_>>());
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

// ----- Local stacks. -----

#[test]
fn a_local_stack_handle_may_borrow_its_surroundings_and_hold_what_is_not_send() {
    let log = RefCell::new(Vec::new());
    let mut buffer = String::from("buffer");
    block_on(scope_local(async |stack: &mut LocalExitStack<'_, String>| {
        let log = &log;
        let rc = stack
            .enter(resource(
                async || Ok(Rc::new(1)),
                async move |rc, _: Outcome<'_, String>| {
                    log.borrow_mut().push(format!("exit rc {rc}"));
                    Ok(())
                },
            ))
            .await?;
        // A value that borrows from outside the scope, and an exit that does too.
        let buffer = &mut buffer;
        let mut borrowed = stack
            .enter_with_handle(resource(
                async move || Ok(buffer),
                async move |buffer: &mut String, outcome: Outcome<'_, String>| {
                    log.borrow_mut().push(format!("exit {buffer}: {}", describe(outcome)));
                    Ok(())
                },
            ))
            .await?;
        borrowed.push_str("+written");
        let shared = stack
            .enter_with_handle(resource(
                async || Ok(Rc::new(RefCell::new(2))),
                async move |_, _: Outcome<'_, String>| {
                    log.borrow_mut().push("exit shared".to_string());
                    Ok(())
                },
            ))
            .await?;
        *shared.borrow_mut() += **rc;
        borrowed.release().await?;
        assert_eq!(*shared.borrow(), 3);
        shared.release().await?;
        assert_eq!(**rc, 1);
        Ok(())
    }))
    .unwrap();
    assert_eq!(buffer, "buffer+written");
    assert_eq!(*log.borrow(), ["exit buffer+written: Completed", "exit shared", "exit rc 1"]);
}

#[test]
fn local_handles_release_concurrently_with_enters() {
    let j = Journal::new();
    block_on(scope_local(async |stack: &mut LocalExitStack<'_, String>| {
        let a = stack.enter(j.probe("a")).await?;
        let b = stack.enter_with_handle(named(&j, "b")).await?;
        let stack = &*stack;
        let (released, c) = futures::join!(b.release(), stack.enter_with_handle(j.probe("c")));
        released?;
        let mut c = c?;
        c.uses += 1;
        a.uses += 1;
        Ok(())
    }))
    .unwrap();
    let lines = j.take();
    assert_eq!(lines.first().unwrap(), "enter a");
    assert_eq!(lines[lines.len() - 2..], ["exit c: Completed", "exit a: Completed"]);
    assert!(lines.contains(&"exit b: Completed".to_string()) && lines.len() == 5, "{lines:?}");
}

#[test]
fn a_local_handle_whose_enter_fails_returns_its_error_and_keeps_the_others_for_close() {
    // `a` enters, `b` fails: `a`'s exit runs at once and fails too. The enter returns `b`'s
    // error at once (it does not wait for a cancellation); `a`'s is kept for the close.
    let j = Journal::new();
    let failing = |name: &'static str, enter_fails: bool| {
        resource(
            async move || if enter_fails { Err(format!("enter {name}")) } else { Ok(()) },
            async move |(), _: Outcome<'_, String>| Err(format!("exit {name}")),
        )
    };
    let out = block_on(scope_local(async |stack: &mut LocalExitStack<'_, String>| {
        let kept = stack.enter(j.probe("kept")).await?;
        let entered = stack.enter_with_handle((failing("a", false), failing("b", true))).now_or_never();
        let entered = entered.expect("a failed enter returns at once");
        assert_eq!(entered.err().as_deref(), Some("enter b"));
        kept.uses += 1;
        Ok(())
    }));
    let err = out.unwrap_err();
    assert_eq!(err.primary().map(String::as_str), Some("exit a"));
    assert!(err.suppressed().is_empty(), "{err:?}");
    assert_eq!(j.take(), ["enter kept", "exit kept: Failed(exit a)"]);
}

// ----- A hand-written `enter_stack` cannot steer a handle. -----

/// A context that overrides the hidden `enter_stack` (which a crate can do: the trait is not
/// sealed by types) to pair the key of one entry it entered with the value of another. It can only
/// pair keys the stack gave it (`S::Key` is opaque). `enter` trusts that pair, and is sound anyway
/// (the value is a valid `&mut`, and a release needs the stack by `&mut`); a handle must not, or
/// releasing it would free the one entry while the other's value is still lent.
struct Steering {
    journal: Journal,
}

impl IntoLocalContext for Steering {
    type Value = String;
    type Error = String;
    type LocalContext = <Plain as IntoLocalContext>::LocalContext;

    fn into_local_context(self) -> Self::LocalContext {
        Plain(self.journal).into_local_context()
    }
}

impl IntoContext for Steering {
    type Context = <Plain as IntoContext>::Context;

    fn into_context(self) -> Self::Context {
        Plain(self.journal).into_context()
    }

    async fn enter_stack<S: SendStack<String>>(
        self,
        stack: &S,
    ) -> Result<(S::Key, &mut String), Option<String>>
    where
        Self: 'static,
    {
        let (key, _) = stack.enter_boxed(Box::pin(named(&self.journal, "first").into_context())).await?;
        let (_, value) = stack.enter_boxed(Box::pin(named(&self.journal, "steered").into_context())).await?;
        Ok((key, value))
    }
}

/// The context behind [`Steering`]'s protocol state.
struct Plain(Journal);

impl AsyncContext for Plain {
    type Value = String;
    type Error = String;

    async fn enter(&mut self) -> Result<String, String> {
        Ok("plain".to_string())
    }

    async fn exit(self, value: String, outcome: Outcome<'_, String>) -> Result<(), String> {
        self.0.push(format!("exit {value}: {}", describe(outcome)));
        Ok(())
    }
}

#[test]
fn a_hand_written_enter_stack_cannot_make_a_handle_release_another_entry() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        let earlier = stack.enter(named(&j, "earlier")).await?;
        // `enter` takes the hand-written path: the value of another entry than the key's.
        assert_eq!(stack.enter(Steering { journal: j.clone() }).await?, "steered");
        // `enter_with_handle` enters through the protocol: its own entry, its own value.
        let handle = stack.enter_with_handle(Steering { journal: j.clone() }).await?;
        assert_eq!(*handle, "plain");
        handle.release().await?;
        earlier.push_str(" still lent"); // Miri: still valid memory
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "exit plain: Completed",
            "exit steered: Completed",
            "exit first: Completed",
            "exit earlier still lent: Completed"
        ]
    );
}
