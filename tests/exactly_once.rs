//! G1 and G3: every context whose enter succeeded is exited exactly once, on every path; a
//! context whose enter failed is never exited; when the k-th enter of a tuple fails, the k-1
//! entered ones are exited, seeing the failure, and nothing else runs.

mod common;

use async_with::{Error, with};
use common::{Act, Journal, block_on_catching};
use futures::executor::block_on;

fn exits_of(journal: &[String], name: &str) -> usize {
    journal.iter().filter(|l| l.starts_with(&format!("exit {name}:"))).count()
}

#[test]
fn each_exit_runs_once_whether_the_body_succeeds_fails_or_panics() {
    let j = Journal::new();
    for body in ["ok", "err", "panic"] {
        let _ = block_on_catching(with((j.probe("a"), j.probe("b"), j.probe("c")), async |_| match body {
            "ok" => Ok(()),
            "err" => Err("body failed".to_string().into()),
            _ => panic!("body panicked"),
        }));
        let journal = j.take();
        for name in ["a", "b", "c"] {
            assert_eq!(exits_of(&journal, name), 1, "body {body}: {journal:?}");
        }
    }
}

#[test]
fn a_context_whose_enter_failed_is_never_exited() {
    let j = Journal::new();
    let err = block_on(with(j.probe("a").enter(Act::Fail), async |_| -> Result<(), Error<String>> {
        unreachable!("the body must not run after a failed enter")
    }))
    .unwrap_err();
    assert_eq!(err.primary().unwrap(), "enter a failed");
    assert_eq!(j.take(), ["enter a"]);
}

#[test]
fn when_the_kth_enter_fails_only_the_earlier_ones_are_exited_in_reverse() {
    for k in 1..=8usize {
        let j = Journal::new();
        let p = |i: usize| {
            let probe = j.probe(["1", "2", "3", "4", "5", "6", "7", "8"][i - 1]);
            if i == k { probe.enter(Act::Fail) } else { probe }
        };
        let ctxs = (p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(8));
        let err = block_on(with(ctxs, async |_| -> Result<(), Error<String>> {
            unreachable!("the body must not run")
        }))
        .unwrap_err();
        assert_eq!(err.primary().unwrap(), &format!("enter {k} failed"));
        assert!(err.suppressed().is_empty());
        let expected: Vec<String> = (1..=k)
            .map(|i| format!("enter {i}"))
            .chain((1..k).rev().map(|i| format!("exit {i}: Failed(enter {k} failed)")))
            .collect();
        assert_eq!(j.take(), expected, "k = {k}");
    }
}

#[test]
fn a_failed_enter_inside_a_nested_tuple_unwinds_the_outer_part_too() {
    let j = Journal::new();
    let ctxs = (j.probe("a"), (j.probe("b"), j.probe("c").enter(Act::Fail)), j.probe("d"));
    let err = block_on(with(ctxs, async |_| Ok(()))).unwrap_err();
    assert_eq!(err.primary().unwrap(), "enter c failed");
    assert_eq!(
        j.take(),
        ["enter a", "enter b", "enter c", "exit b: Failed(enter c failed)", "exit a: Failed(enter c failed)"]
    );
}

#[test]
fn exits_that_fail_do_not_stop_the_other_exits() {
    let j = Journal::new();
    let ctxs = (j.probe("a").exit(Act::Fail), j.probe("b").exit(Act::Fail), j.probe("c").exit(Act::Fail));
    let err = block_on(with(ctxs, async |_| Ok(()))).unwrap_err();
    assert_eq!(err.iter().count(), 3);
    let journal = j.take();
    for name in ["a", "b", "c"] {
        assert_eq!(exits_of(&journal, name), 1, "{journal:?}");
    }
}
