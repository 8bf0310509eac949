//! G8 at compile time: scope futures are `Send` when the user's types are (also behind
//! `impl IntoContext`), and a `!Send` body or context still runs on a single-threaded executor.
//! What must *not* compile is in `tests/ui/` (run by `tests/compile_fail.rs`).

mod common;

use std::future::Future;
use std::rc::Rc;

use async_with::{Error, IntoContext, Outcome, resource, with, with_local};
use common::{Journal, yield_now};

fn assert_send<F: Future + Send>(f: F) -> F {
    f
}

fn connection(name: &'static str) -> impl IntoContext<Value = String, Error = String> {
    resource(
        async move || {
            yield_now().await;
            Ok(name.to_string())
        },
        async |conn, outcome: Outcome<'_, String>| {
            yield_now().await;
            drop((conn, outcome));
            Ok(())
        },
    )
}

#[test]
fn scopes_over_send_contexts_are_send() {
    let j = Journal::new();
    let single = assert_send(with(j.probe("a"), async |a| Ok(a.uses)));
    let tuple =
        assert_send(with((j.probe("a"), connection("b"), j.probe("c")), async |(_, b, _)| Ok(b.len())));
    let nested = assert_send(with(connection("outer"), async |outer| {
        let inner = with(connection("inner"), async |inner| Ok(inner.len())).await;
        Ok(outer.len() + inner.map_err(|e| e.into_primary().unwrap())?)
    }));
    futures::executor::block_on(async {
        assert_eq!(single.await.unwrap(), 0);
        assert_eq!(tuple.await.unwrap(), 1);
        assert_eq!(nested.await.unwrap(), 10);
    });
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn opaque_contexts_keep_send_on_a_multi_threaded_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let n = rt
        .block_on(rt.spawn(with((connection("a"), connection("bb")), async |(a, b)| Ok(a.len() + b.len()))))
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn a_not_send_body_runs_on_local_executors() {
    let body = async |conn: &mut String| {
        let shared = Rc::new(conn.clone()); // held across an await: the body is !Send
        yield_now().await;
        Ok::<_, Error<String>>(shared.len())
    };
    let mut pool = futures::executor::LocalPool::new();
    assert_eq!(pool.run_until(with(connection("futures"), body)).unwrap(), 7);

    let ex = smol::LocalExecutor::new();
    assert_eq!(smol::block_on(ex.run(with(connection("smol"), body))).unwrap(), 4);

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let local = tokio::task::LocalSet::new();
    assert_eq!(local.block_on(&rt, with(connection("tokio"), body)).unwrap(), 5);
}

#[test]
#[cfg_attr(miri, ignore = "the runtime calls into the OS")]
fn not_send_contexts_run_with_with_local() {
    let count = Rc::new(std::cell::Cell::new(0));
    let (enter, exit) = (count.clone(), count.clone());
    let ctx = resource(
        async move || {
            yield_now().await;
            enter.set(enter.get() + 1);
            Ok::<_, String>(enter)
        },
        async move |value: Rc<std::cell::Cell<u32>>, _: Outcome<'_, String>| {
            yield_now().await;
            exit.set(value.get() + 10);
            Ok(())
        },
    );
    let ex = smol::LocalExecutor::new();
    let inside = smol::block_on(ex.run(with_local(ctx, async |v| Ok(v.get())))).unwrap();
    assert_eq!((inside, count.get()), (1, 11));
}
