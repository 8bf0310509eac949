//! Exit stacks and `scope`: contexts entered at run time, LIFO exits exactly once, release by
//! key, `pop_all`, mixed nesting, and what happens on errors and panics (G1-G6).

mod common;

use std::sync::{Arc, Mutex};

use async_with::{
    Cx, Error, ExitStack, LocalExitStack, Outcome, context, resource, scope, scope_local, with,
};
use common::{Act, Journal, block_on_catching, describe, journaling_scope, yield_now};
use futures::executor::block_on;

type Stack = ExitStack<String>;

/// A resource that journals like a probe, built from closures.
fn res(
    j: &Journal,
    name: &'static str,
) -> impl async_with::IntoContext<Value = String, Error = String> + use<> {
    let (je, jx) = (j.clone(), j.clone());
    resource(
        async move || {
            yield_now().await;
            je.push(format!("enter {name}"));
            Ok(name.to_string())
        },
        async move |value: String, outcome: Outcome<'_, String>| {
            yield_now().await;
            jx.push(format!("exit {value}: {}", describe(outcome)));
            Ok(())
        },
    )
}

/// A generator that journals its setup and teardown.
fn generator(
    j: &Journal,
    name: &'static str,
) -> impl async_with::IntoContext<Value = String, Error = String> + use<> {
    let j = j.clone();
    context(async move |mut cx: Cx<String, String>| {
        j.push(format!("setup {name}"));
        let (_, outcome) = cx.provide(name.to_string()).await;
        j.push(format!("teardown {name}: {}", describe(outcome)));
        Ok(())
    })
}

#[test]
fn every_kind_of_entry_exits_in_reverse_order_of_entry() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("probe")).await?;
        let jj = j.clone();
        stack.callback(move || {
            jj.push("callback");
            Ok(())
        });
        stack.enter(res(&j, "resource")).await?;
        let jj = j.clone();
        stack.defer(async move || {
            yield_now().await;
            jj.push("deferred");
            Ok(())
        });
        stack.enter(generator(&j, "generator")).await?;
        let jj = j.clone();
        stack.push_exit(async move |outcome: Outcome<'_, String>| {
            jj.push(format!("push_exit: {}", describe(outcome)));
            Ok(())
        });
        stack.enter((j.probe("t1"), j.probe("t2"))).await?;
        j.push("body");
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter probe",
            "enter resource",
            "setup generator",
            "enter t1",
            "enter t2",
            "body",
            "exit t2: Completed",
            "exit t1: Completed",
            "push_exit: Completed",
            "teardown generator: Completed",
            "deferred",
            "exit resource: Completed",
            "callback",
            "exit probe: Completed",
        ]
    );
}

#[test]
fn values_of_every_entry_are_usable_together_and_the_exits_get_them_back() {
    let j = Journal::new();
    let total = block_on(scope(async |stack: &mut Stack| {
        let mut handles = Vec::new();
        for name in ["a", "b", "c"] {
            handles.push(stack.enter(j.probe(name)).await?);
        }
        let gen_value = stack.enter(generator(&j, "g")).await?;
        for (i, handle) in handles.iter_mut().enumerate() {
            handle.uses += i as u32 + 1;
        }
        gen_value.push_str("-used");
        Ok(handles.iter().map(|h| h.uses).sum::<u32>())
    }));
    assert_eq!(total.unwrap(), 6);
    let journal = j.take();
    assert_eq!(journal.last().unwrap(), "exit a: Completed");
}

#[test]
fn a_body_error_is_seen_by_every_exit_and_returned_first() {
    let j = Journal::new();
    let err = block_on(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        stack.enter(j.probe("a").exit(Act::Fail)).await?;
        stack.enter(j.probe("b")).await?;
        Err("body failed".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(err.iter().map(String::as_str).collect::<Vec<_>>(), ["body failed", "exit a failed"]);
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "exit b: Failed(body failed)", "exit a: Failed(body failed)"]
    );
}

#[test]
fn a_failed_enter_pushes_nothing_and_is_never_exited() {
    let j = Journal::new();
    let err = block_on(scope(async |stack: &mut Stack| -> Result<(), Error<String>> {
        stack.enter(j.probe("a")).await?;
        stack.enter(j.probe("b").enter(Act::Fail)).await?;
        unreachable!("`?` returns the enter error")
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "enter b failed");
    assert_eq!(j.take(), ["enter a", "enter b", "exit a: Failed(enter b failed)"]);
}

#[test]
fn a_handled_enter_error_does_not_fail_the_scope() {
    let j = Journal::new();
    let out = block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("a")).await?;
        let missing = stack.enter(j.probe("b").enter(Act::Fail)).await;
        assert_eq!(missing.unwrap_err(), "enter b failed");
        Ok("recovered")
    }));
    assert_eq!(out.unwrap(), "recovered");
    assert_eq!(j.take(), ["enter a", "enter b", "exit a: Completed"]);
}

#[test]
fn a_tuple_that_fails_half_way_cleans_up_at_once_and_keeps_its_extra_errors() {
    let j = Journal::new();
    let out = block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("outer")).await?;
        let tuple = (j.probe("x").exit(Act::Fail), j.probe("y").enter(Act::Fail));
        let err = stack.enter(tuple).await.unwrap_err();
        assert_eq!(err, "enter y failed");
        j.push("handled");
        Ok(())
    }));
    // The tuple's own cleanup failed too: that error reaches the caller when the scope closes.
    let err = out.unwrap_err();
    assert_eq!(err.primary().unwrap(), "exit x failed");
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter x",
            "enter y",
            "exit x: Failed(enter y failed)",
            "handled",
            // The orphaned error was recorded first (G5: in the order errors happened), so the
            // exits at close see it, the newest error (G4).
            "exit outer: Failed(exit x failed)"
        ]
    );
}

#[test]
fn a_panicking_body_runs_every_exit_with_panicked_then_resumes() {
    let j = Journal::new();
    let panic = block_on_catching(journaling_scope(&j).scope(
        async |stack: &mut Stack| -> Result<(), Error<String>> {
            stack.enter(j.probe("a").exit(Act::Fail)).await?;
            stack.enter(generator(&j, "g")).await?;
            panic!("body panicked")
        },
    ))
    .unwrap_err();
    assert_eq!(panic, "body panicked");
    assert_eq!(
        j.take(),
        ["enter a", "setup g", "teardown g: Panicked", "exit a: Panicked", "hook: exit a failed"]
    );
}

#[test]
fn a_panicking_exit_lets_the_older_ones_run_and_resumes_last() {
    let j = Journal::new();
    let panic = block_on_catching(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("a")).await?;
        stack.callback(|| panic!("callback panicked"));
        stack.enter(j.probe("c")).await?;
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(panic, "callback panicked");
    assert_eq!(j.take(), ["enter a", "enter c", "exit c: Completed", "exit a: Panicked"]);
}

#[test]
fn exit_errors_keep_their_order_and_each_exit_sees_the_newest() {
    let j = Journal::new();
    let err = block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("a")).await?;
        stack.callback(|| Err("first pushed".to_string()));
        stack.enter(j.probe("b")).await?;
        stack.callback(|| Err("last pushed".to_string()));
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(err.iter().map(String::as_str).collect::<Vec<_>>(), ["last pushed", "first pushed"]);
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "exit b: Failed(last pushed)", "exit a: Failed(first pushed)"]
    );
}

#[test]
fn release_runs_one_exit_now_exactly_once() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("a")).await?;
        let (b, key) = stack.enter_with_key(j.probe("b")).await?;
        b.uses += 1;
        stack.enter(j.probe("c")).await?;
        stack.release(key).await?;
        j.push("after release");
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
            "after release",
            "exit c: Completed",
            "exit a: Completed"
        ]
    );
}

#[test]
fn release_returns_the_exit_error_to_its_caller() {
    let mut stack = Stack::new();
    let key = stack.callback(|| Err("release failed".to_string()));
    assert_eq!(block_on(stack.release(key)), Err("release failed".to_string()));
    assert!(block_on(stack.close()).is_ok(), "the released exit does not run again");
}

#[test]
fn releasing_a_key_twice_is_a_clear_error() {
    let mut stack = Stack::new();
    let key = stack.callback(|| Ok(()));
    block_on(stack.release(key)).unwrap();
    let panic = block_on_catching(stack.release(key)).unwrap_err();
    assert_eq!(panic, "async-with: this entry was already released (or closed with the stack)");
}

#[test]
fn releasing_a_key_of_another_stack_is_a_clear_error() {
    let mut one = Stack::new();
    let other = Stack::new();
    let key = other.callback(|| Ok(()));
    let panic = block_on_catching(one.release(key)).unwrap_err();
    assert!(panic.contains("this key belongs to another exit stack"), "{panic}");
    block_on(other.close()).unwrap();
}

#[test]
fn pop_all_hands_every_pending_exit_to_a_new_stack() {
    let j = Journal::new();
    let (moved, key) = block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("a")).await?;
        let (_, key) = stack.enter_with_key(j.probe("b")).await?;
        Ok((stack.pop_all(), key))
    }))
    .unwrap();
    assert_eq!(j.take(), ["enter a", "enter b"], "the scope closed an empty stack");
    let mut moved = moved;
    block_on(moved.release(key)).unwrap(); // keys follow their entries
    assert_eq!(j.take(), ["exit b: Completed"]);
    block_on(moved.close()).unwrap();
    assert_eq!(j.take(), ["exit a: Completed"]);
}

#[test]
fn close_with_an_error_shows_it_to_every_exit() {
    let j = Journal::new();
    let stack = Stack::new();
    block_on(async {
        stack.enter(j.probe("a")).await.unwrap();
        stack.enter(j.probe("b").exit(Act::Fail)).await.unwrap();
    });
    let err = block_on(stack.close_with("cause".to_string())).unwrap_err();
    assert_eq!(err.iter().map(String::as_str).collect::<Vec<_>>(), ["cause", "exit b failed"]);
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Failed(cause)", "exit a: Failed(exit b failed)"]);
}

#[test]
fn with_inside_scope_scope_inside_with_and_stack_inside_stack_keep_the_order() {
    let j = Journal::new();
    block_on(scope(async |stack: &mut Stack| {
        stack.enter(j.probe("s1")).await?;
        with(j.probe("w"), async |_| {
            scope(async |inner: &mut Stack| {
                inner.enter(j.probe("s2")).await?;
                Ok(())
            })
            .await
        })
        .await?;
        let nested = stack.enter(Stack::new()).await?; // a stack entered as a context
        nested.enter(j.probe("n1")).await?;
        nested.enter(j.probe("n2")).await?;
        stack.enter(j.probe("s3")).await?;
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter s1",
            "enter w",
            "enter s2",
            "exit s2: Completed",
            "exit w: Completed",
            "enter n1",
            "enter n2",
            "enter s3",
            "exit s3: Completed",
            "exit n2: Completed",
            "exit n1: Completed",
            "exit s1: Completed",
        ]
    );
}

#[test]
fn a_stack_can_be_the_context_of_with() {
    let j = Journal::new();
    block_on(with(Stack::new(), async |stack| {
        stack.enter(j.probe("a")).await?;
        stack.enter(j.probe("b")).await?;
        Err::<(), _>("body failed".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "exit b: Failed(body failed)", "exit a: Failed(body failed)"]
    );
}

#[test]
fn dropping_a_stack_without_closing_it_drops_its_values_newest_first() {
    struct Noisy(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }
    let dropped = Arc::new(Mutex::new(Vec::new()));
    let stack = Stack::new();
    for name in ["a", "b", "c"] {
        let noisy = Noisy(name, dropped.clone());
        block_on(stack.enter(resource(
            async move || Ok(noisy),
            async |_, _: Outcome<'_, String>| unreachable!("no async exit runs when a stack is dropped"),
        )))
        .unwrap();
    }
    drop(stack);
    assert_eq!(*dropped.lock().unwrap(), ["c", "b", "a"]);
}

#[test]
#[cfg_attr(miri, ignore = "tokio calls into the OS")]
fn scope_futures_are_send_and_run_on_a_multi_threaded_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let j = Journal::new();
    let jj = j.clone();
    let n = rt
        .block_on(rt.spawn(scope(async move |stack: &mut Stack| {
            for name in ["a", "b"] {
                stack.enter(jj.probe(name)).await?;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            stack.defer(async || {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                Ok(())
            });
            Ok(2)
        })))
        .unwrap();
    assert_eq!(n.unwrap(), 2);
    assert_eq!(j.take(), ["enter a", "enter b", "exit b: Completed", "exit a: Completed"]);
}

#[test]
fn a_local_stack_holds_borrowing_and_not_send_entries() {
    let log = std::cell::RefCell::new(Vec::new());
    let shared = std::rc::Rc::new(7);
    block_on(scope_local(async |stack: &mut LocalExitStack<'_, String>| {
        let log = &log;
        let value = stack
            .enter(resource(
                async || Ok(shared.clone()),
                async move |v, _: Outcome<'_, String>| {
                    log.borrow_mut().push(format!("exit {v}"));
                    Ok(())
                },
            ))
            .await?;
        stack.callback(move || {
            log.borrow_mut().push("callback".to_string());
            Ok(())
        });
        assert_eq!(**value, 7);
        Ok(())
    }))
    .unwrap();
    assert_eq!(*log.borrow(), ["callback", "exit 7"]);
}
