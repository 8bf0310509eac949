// A handle of a local stack is not `Send`: its entry (and its exit) may be `!Send`.
use async_with::{LocalExitStack, Outcome, resource};

fn assert_send<T: Send>(_: &T) {}

async fn run() {
    let stack = LocalExitStack::<()>::new();
    let conn = stack
        .enter_with_handle(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    assert_send(&conn);
}

fn main() {
    let _ = run();
}
