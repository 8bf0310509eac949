//! Exhaustive cancellation: for small scenarios (tuples with a generator, an exit stack with
//! every kind of entry), cancel at every poll index, drop at every poll index, and drop under the
//! detach policy at every poll index, on futures' executor, smol, async-std and tokio. Every enter
//! and exit awaits several times (each `Pending` is a point where cancellation can land). After
//! each run: every entered context was exited exactly once (async exit, detached exit or
//! fallback: exactly one of them), in reverse order of entry, and with `Cancelled` when the
//! scope was cancelled.
#![cfg(not(miri))] // thousands of runs on real executors

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_with::{
    AsyncContext, Cx, Error, ExitStack, IntoContext, Outcome, Scope, context, detach_on_drop, resource,
};
use common::{Journal, describe, ready_on_poll};
use futures::future::BoxFuture;
use futures_test::future::FutureTestExt;

/// Awaits `Pending` `n` times, with futures-test's pending injection (each one wakes its task),
/// so that there are `n` cancellation points.
async fn pause(n: usize) {
    for _ in 0..n {
        std::future::ready(()).pending_once().await;
    }
}

/// A context that journals `enter {n}`, `exit {n}: {outcome}` or `fallback {n}`.
struct Node {
    name: &'static str,
    journal: Journal,
}

impl AsyncContext for Node {
    type Value = &'static str;
    type Error = String;
    async fn enter(&mut self) -> Result<&'static str, String> {
        pause(2).await;
        self.journal.push(format!("enter {}", self.name));
        Ok(self.name)
    }
    async fn exit(self, _: &'static str, outcome: Outcome<'_, String>) -> Result<(), String> {
        self.journal.push(format!("exit {}: {}", self.name, describe(outcome)));
        pause(2).await;
        Ok(())
    }
    fn exit_on_drop(self, _: &'static str) {
        self.journal.push(format!("fallback {}", self.name));
    }
}

fn node(j: &Journal, name: &'static str) -> Node {
    Node { name, journal: j.clone() }
}

/// Journals `fallback {name}` when dropped unless disarmed: how a generator or a callback shows
/// that it was dropped instead of run.
struct Unless(Option<(Journal, &'static str)>);

impl Unless {
    fn armed(j: &Journal, name: &'static str) -> Self {
        Unless(Some((j.clone(), name)))
    }
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unless {
    fn drop(&mut self) {
        if let Some((j, name)) = self.0.take() {
            j.push(format!("fallback {name}"));
        }
    }
}

fn generator(j: &Journal, name: &'static str) -> impl IntoContext<Value = u8, Error = String> + use<> {
    let j = j.clone();
    context(async move |mut cx: Cx<u8, String>| {
        pause(2).await;
        let mut dropped = Unless::armed(&j, name);
        j.push(format!("enter {name}"));
        let (_, outcome) = cx.provide(1).await;
        dropped.disarm();
        j.push(format!("exit {name}: {}", describe(outcome)));
        pause(2).await;
        Ok(())
    })
}

fn closure_pair(j: &Journal, name: &'static str) -> impl IntoContext<Value = u8, Error = String> + use<> {
    let (je, jx, jf) = (j.clone(), j.clone(), j.clone());
    resource(
        async move || {
            pause(2).await;
            je.push(format!("enter {name}"));
            Ok(2)
        },
        async move |_, outcome: Outcome<'_, String>| {
            jx.push(format!("exit {name}: {}", describe(outcome)));
            pause(2).await;
            Ok(())
        },
    )
    .on_drop(move |_| jf.push(format!("fallback {name}")))
}

type Run = BoxFuture<'static, Result<(), Error<String>>>;

/// Scenario 1: `with` over a tuple of a context, a generator and a closure pair.
fn tuple_scenario<S: Future + Send + 'static>(j: &Journal, signal: S) -> Run {
    let ctxs = (node(j, "a"), generator(j, "g"), closure_pair(j, "r"));
    Box::pin(Scope::new().cancel_on(signal).with(ctxs, async |_| {
        pause(3).await;
        Ok(())
    }))
}

/// Scenario 2: a scope whose stack gets a context, a deferred callback, a generator and a tuple.
fn stack_scenario<S: Future + Send + 'static>(j: &Journal, signal: S) -> Run {
    let j = j.clone();
    Box::pin(Scope::new().cancel_on(signal).scope(async move |stack: &mut ExitStack<String>| {
        stack.enter(node(&j, "a")).await?;
        let (jd, mut dropped) = (j.clone(), Unless::armed(&j, "d"));
        j.push("enter d");
        stack.defer(async move || {
            dropped.disarm();
            jd.push("exit d: (callback)");
            pause(1).await;
            Ok(())
        });
        pause(1).await;
        stack.enter(generator(&j, "g")).await?;
        stack.enter((node(&j, "x"), closure_pair(&j, "y"))).await?;
        pause(3).await;
        Ok(())
    }))
}

type Scenario = fn(&Journal, BoxFuture<'static, ()>) -> Run;

/// Each scenario, and how many polls it takes (one more than its steps' `Pending`s): the
/// signal is polled once per poll, so that is how many places a cancellation can land.
const SCENARIOS: [(&str, usize, Scenario); 2] = [
    ("tuple", 6 + 3 + 1, |j, s| tuple_scenario(j, s)),
    ("stack", 2 + 1 + 2 + 2 + 2 + 3 + 1, |j, s| stack_scenario(j, s)),
];

/// Checks one run's journal: exactly one exit or fallback per enter, in reverse order; with
/// `Cancelled` for every exit when the scope was cancelled.
fn check(journal: &[String], cancelled: bool, what: &str) {
    let entered: Vec<&str> = journal.iter().filter_map(|l| l.strip_prefix("enter ")).collect();
    let ended: Vec<(&str, &str)> = journal
        .iter()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("exit ") {
                let (name, outcome) = rest.split_once(": ").expect("exit lines carry an outcome");
                Some((name, outcome))
            } else {
                l.strip_prefix("fallback ").map(|name| (name, "fallback"))
            }
        })
        .collect();
    let ended_names: Vec<&str> = ended.iter().map(|(n, _)| *n).collect();
    let mut expected: Vec<&str> = entered.clone();
    expected.reverse();
    assert_eq!(ended_names, expected, "{what}: each entered context ends once, newest first: {journal:?}");
    if cancelled {
        for (name, outcome) in &ended {
            assert!(
                ["Cancelled", "fallback", "(callback)"].contains(outcome),
                "{what}: {name} ended with {outcome} in a cancelled scope: {journal:?}"
            );
        }
    }
}

/// Polls `future` `polls` times, then drops it (unless it finished first). `Some` when it
/// finished.
struct DropAfter<F> {
    future: Option<Pin<Box<F>>>,
    polls: usize,
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(future) = this.future.as_mut() else { return Poll::Ready(None) };
        if this.polls == 0 {
            this.future = None; // the drop
            return Poll::Ready(None);
        }
        this.polls -= 1;
        match future.as_mut().poll(cx) {
            Poll::Ready(out) => {
                this.future = None;
                Poll::Ready(Some(out))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The executors, each running a future to completion on the current thread.
fn block_on<F: Future + Send + 'static>(executor: &str, f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    match executor {
        "futures" => futures::executor::block_on(f),
        "smol" => smol::block_on(f),
        "async-std" => async_std::task::block_on(f),
        "tokio" => tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f),
        _ => unreachable!(),
    }
}

const EXECUTORS: [&str; 4] = ["futures", "smol", "async-std", "tokio"];

#[test]
fn cancel_at_every_poll_index() {
    for executor in EXECUTORS {
        for (scenario, polls, make) in SCENARIOS {
            let mut runs = 0;
            for n in 0.. {
                let j = Journal::new();
                let run = make(&j, Box::pin(ready_on_poll(n)));
                let out = block_on(executor, run);
                let what = format!("{executor} {scenario} cancelled at poll {n}");
                match out {
                    Ok(()) => {
                        check(&j.take(), false, &what);
                        break; // the signal came after the body: every later index is the same
                    }
                    Err(e) => {
                        assert!(e.is_cancelled(), "{what}: {e:?}");
                        check(&j.take(), true, &what);
                    }
                }
                runs += 1;
            }
            assert_eq!(runs, polls, "{executor} {scenario}: a cancellation at every poll");
            println!("{executor} {scenario}: cancelled at {runs} poll indexes");
        }
    }
}

#[test]
fn drop_at_every_poll_index() {
    for executor in EXECUTORS {
        for (scenario, _, make) in SCENARIOS {
            for n in 0.. {
                let j = Journal::new();
                let run = make(&j, Box::pin(std::future::pending()));
                let finished = block_on(executor, DropAfter { future: Some(Box::pin(run)), polls: n });
                let what = format!("{executor} {scenario} dropped after {n} polls");
                check(&j.take(), false, &what);
                if let Some(out) = finished {
                    out.unwrap();
                    break;
                }
            }
        }
    }
}

/// Spawns a detached task on each executor's own spawner.
fn spawner(
    executor: &'static str,
    pool: &futures::executor::ThreadPool,
    rt: &tokio::runtime::Runtime,
) -> Arc<dyn Fn(async_with::Detached) + Send + Sync> {
    match executor {
        "futures" => {
            let pool = pool.clone();
            Arc::new(move |task| pool.spawn_ok(task))
        }
        "smol" => Arc::new(|task| smol::spawn(task).detach()),
        "async-std" => Arc::new(|task| drop(async_std::task::spawn(task))),
        "tokio" => {
            let handle = rt.handle().clone();
            Arc::new(move |task| drop(handle.spawn(task)))
        }
        _ => unreachable!(),
    }
}

#[test]
fn detach_at_every_poll_index() {
    let pool = futures::executor::ThreadPool::new().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for executor in EXECUTORS {
        let spawn = spawner(executor, &pool, &rt);
        for (scenario, _, make) in SCENARIOS {
            for n in 0.. {
                let j = Journal::new();
                let (jj, spawn) = (j.clone(), spawn.clone());
                let run = detach_on_drop(move |task| spawn(task), move |signal| make(&jj, Box::pin(signal)));
                let finished = block_on(executor, DropAfter { future: Some(Box::pin(run)), polls: n });
                let what = format!("{executor} {scenario} detached after {n} polls");
                if let Some(out) = finished {
                    out.unwrap();
                    check(&j.take(), false, &what);
                    break;
                }
                // The detached task finishes the scope: wait until every entered context ended.
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let journal = j.take_peek();
                    let entered = journal.iter().filter(|l| l.starts_with("enter ")).count();
                    let ended = journal
                        .iter()
                        .filter(|l| l.starts_with("exit ") || l.starts_with("fallback "))
                        .count();
                    if entered == ended {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{what}: the detached task did not finish: {journal:?}"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(2)); // let a wrong extra exit show up
                let journal = j.take();
                check(&journal, false, &what);
                assert!(
                    !journal.iter().any(|l| l.starts_with("fallback ")),
                    "{what}: a detached scope runs every exit asynchronously: {journal:?}"
                );
            }
        }
    }
}
