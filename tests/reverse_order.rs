//! G2: exits run in the exact reverse order of the enters, across tuples and nesting.

mod common;

use async_with::with;
use common::Journal;
use futures::executor::block_on;

#[test]
fn single_context_enters_runs_body_then_exits() {
    let j = Journal::new();
    let out = block_on(with(j.probe("a"), async |a| {
        a.uses += 1;
        j.push("body");
        Ok(a.uses)
    }));
    assert_eq!(out.unwrap(), 1);
    assert_eq!(j.take(), ["enter a", "body", "exit a: Completed"]);
}

#[test]
fn pair_is_entered_left_to_right_and_exited_right_to_left() {
    let j = Journal::new();
    let out = block_on(with((j.probe("a"), j.probe("b")), async |(a, b)| {
        j.push("body");
        Ok(format!("{}{}", a.name, b.name))
    }));
    assert_eq!(out.unwrap(), "ab");
    assert_eq!(j.take(), ["enter a", "enter b", "body", "exit b: Completed", "exit a: Completed"]);
}

#[test]
fn eight_contexts_exit_in_exact_reverse() {
    let j = Journal::new();
    let p = |n| j.probe(n);
    let ctxs = (p("1"), p("2"), p("3"), p("4"), p("5"), p("6"), p("7"), p("8"));
    let names = block_on(with(ctxs, async |(a, b, c, d, e, f, g, h)| {
        Ok([a.name, b.name, c.name, d.name, e.name, f.name, g.name, h.name].concat())
    }));
    assert_eq!(names.unwrap(), "12345678");
    let expected: Vec<String> = (1..=8)
        .map(|i| format!("enter {i}"))
        .chain((1..=8).rev().map(|i| format!("exit {i}: Completed")))
        .collect();
    assert_eq!(j.take(), expected);
}

#[test]
fn every_arity_from_two_to_seven_keeps_the_order() {
    fn expected(n: usize) -> Vec<String> {
        (1..=n)
            .map(|i| format!("enter {i}"))
            .chain((1..=n).rev().map(|i| format!("exit {i}: Completed")))
            .collect()
    }
    let j = Journal::new();
    let p = |n| j.probe(n);
    block_on(with((p("1"), p("2"), p("3")), async |_| Ok(()))).unwrap();
    assert_eq!(j.take(), expected(3));
    block_on(with((p("1"), p("2"), p("3"), p("4")), async |_| Ok(()))).unwrap();
    assert_eq!(j.take(), expected(4));
    block_on(with((p("1"), p("2"), p("3"), p("4"), p("5")), async |_| Ok(()))).unwrap();
    assert_eq!(j.take(), expected(5));
    block_on(with((p("1"), p("2"), p("3"), p("4"), p("5"), p("6")), async |_| Ok(()))).unwrap();
    assert_eq!(j.take(), expected(6));
    block_on(with((p("1"), p("2"), p("3"), p("4"), p("5"), p("6"), p("7")), async |_| Ok(()))).unwrap();
    assert_eq!(j.take(), expected(7));
}

#[test]
fn nested_tuples_flatten_to_the_written_order() {
    let j = Journal::new();
    let ctxs = ((j.probe("a"), j.probe("b")), j.probe("c"));
    block_on(with(ctxs, async |((a, b), c)| {
        j.push(format!("body {}{}{}", a.name, b.name, c.name));
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter a",
            "enter b",
            "enter c",
            "body abc",
            "exit c: Completed",
            "exit b: Completed",
            "exit a: Completed"
        ]
    );
}

#[test]
fn an_inner_scope_exits_completely_before_the_outer_one() {
    let j = Journal::new();
    block_on(with(j.probe("outer"), async |_| {
        with((j.probe("x"), j.probe("y")), async |_| {
            j.push("inner body");
            Ok(())
        })
        .await
        .map_err(|e| e.into_primary().unwrap())?;
        j.push("outer body");
        Ok(())
    }))
    .unwrap();
    assert_eq!(
        j.take(),
        [
            "enter outer",
            "enter x",
            "enter y",
            "inner body",
            "exit y: Completed",
            "exit x: Completed",
            "outer body",
            "exit outer: Completed"
        ]
    );
}
