//! G8: the same behaviours on every executor: futures' `block_on` and thread pool, smol,
//! async-std, and tokio's current-thread and multi-thread runtimes. The contexts here await each
//! runtime's own timer in enter and exit, so the exits really suspend on that runtime.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_with::{Error, IntoContext, Outcome, resource, with};
use common::panic_message;
use futures::FutureExt;

type Log = Arc<Mutex<Vec<String>>>;

/// A context that sleeps on the runtime's timer in enter and exit.
fn timed<S, F>(
    log: &Log,
    name: &'static str,
    sleep: S,
    fail_exit: bool,
) -> impl IntoContext<Value = String, Error = String> + Send + use<S, F>
where
    S: Fn(Duration) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let (enter_log, exit_log) = (log.clone(), log.clone());
    let exit_sleep = sleep.clone();
    resource(
        async move || {
            sleep(Duration::from_millis(2)).await;
            enter_log.lock().unwrap().push(format!("enter {name}"));
            // An owned value: a borrowed one in a scope that must be `Send` hits rustc's
            // rust-lang/rust#110338 ("implementation of `AsyncFnOnce` is not general enough").
            Ok(name.to_string())
        },
        async move |name, outcome: Outcome<'_, String>| {
            exit_sleep(Duration::from_millis(2)).await;
            let seen = match outcome {
                Outcome::Failed(e) => format!("Failed({e})"),
                other => format!("{other:?}"),
            };
            exit_log.lock().unwrap().push(format!("exit {name}: {seen}"));
            if fail_exit { Err(format!("exit {name} failed")) } else { Ok(()) }
        },
    )
}

/// The scenarios every executor must run identically: a good run, a failing body with a failing
/// exit, and a panicking body. Returns the journal of each.
async fn scenarios<S, F>(sleep: S) -> Vec<(String, Vec<String>)>
where
    S: Fn(Duration) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send,
{
    let mut results = Vec::new();

    let log = Log::default();
    let ctxs = (timed(&log, "a", sleep.clone(), false), timed(&log, "b", sleep.clone(), false));
    let out = with(ctxs, async |(a, b)| Ok(format!("{a}{b}"))).await;
    results.push((format!("{out:?}"), std::mem::take(&mut *log.lock().unwrap())));

    let ctxs = (timed(&log, "a", sleep.clone(), false), timed(&log, "b", sleep.clone(), true));
    let out: Result<(), Error<String>> = with(ctxs, async |_| Err("body failed".to_string().into())).await;
    results.push((format!("{out:?}"), std::mem::take(&mut *log.lock().unwrap())));

    let ctxs = (timed(&log, "a", sleep.clone(), false), timed(&log, "b", sleep.clone(), false));
    let out =
        AssertUnwindSafe(with(ctxs, async |_| -> Result<(), Error<String>> { panic!("body panicked") }))
            .catch_unwind()
            .await
            .map_err(panic_message);
    results.push((format!("{out:?}"), std::mem::take(&mut *log.lock().unwrap())));

    results
}

fn expected() -> Vec<(String, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (r#"Ok("ab")"#.into(), s(&["enter a", "enter b", "exit b: Completed", "exit a: Completed"])),
        (
            r#"Err(Error { primary: "body failed", suppressed: ["exit b failed"] })"#.into(),
            s(&["enter a", "enter b", "exit b: Failed(body failed)", "exit a: Failed(exit b failed)"]),
        ),
        (
            r#"Err("body panicked")"#.into(),
            s(&["enter a", "enter b", "exit b: Panicked", "exit a: Panicked"]),
        ),
    ]
}

/// A timer that needs no runtime: a thread that wakes the task.
fn thread_sleep(d: Duration) -> impl Future<Output = ()> + Send {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    rx.map(|_| ())
}

#[test]
fn futures_block_on() {
    assert_eq!(futures::executor::block_on(scenarios(thread_sleep)), expected());
}

#[test]
fn futures_thread_pool() {
    let pool = futures::executor::ThreadPool::new().unwrap();
    let (tx, rx) = futures::channel::oneshot::channel();
    pool.spawn_ok(async move {
        let _ = tx.send(scenarios(thread_sleep).await);
    });
    assert_eq!(futures::executor::block_on(rx).unwrap(), expected());
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn smol_block_on() {
    let sleep = |d| async move {
        smol::Timer::after(d).await;
    };
    assert_eq!(smol::block_on(scenarios(sleep)), expected());
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn smol_multi_threaded_executor() {
    let ex = Arc::new(smol::Executor::new());
    let (stop, shutdown) = smol::channel::unbounded::<()>();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (ex, shutdown) = (ex.clone(), shutdown.clone());
            std::thread::spawn(move || smol::block_on(ex.run(shutdown.recv())))
        })
        .collect();
    let sleep = |d| async move {
        smol::Timer::after(d).await;
    };
    let task = ex.spawn(scenarios(sleep));
    assert_eq!(smol::block_on(task), expected());
    drop(stop);
    for w in workers {
        let _ = w.join();
    }
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn async_std() {
    assert_eq!(
        async_std::task::block_on(async_std::task::spawn(scenarios(async_std::task::sleep))),
        expected()
    );
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(rt.block_on(scenarios(tokio::time::sleep)), expected());
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn tokio_multi_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    // `spawn` requires the scope future to be `Send + 'static`: it moves between worker threads.
    assert_eq!(rt.block_on(rt.spawn(scenarios(tokio::time::sleep))).unwrap(), expected());
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn tokio_spawned_scope_resumes_its_panic_in_the_join_handle() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let log = Log::default();
    let ctx = timed(&log, "a", tokio::time::sleep, false);
    let join =
        rt.block_on(rt.spawn(with(ctx, async |_| -> Result<(), Error<String>> { panic!("inside a task") })));
    let payload = join.unwrap_err().into_panic();
    assert_eq!(panic_message(payload), "inside a task");
    assert_eq!(*log.lock().unwrap(), ["enter a", "exit a: Panicked"]);
}
