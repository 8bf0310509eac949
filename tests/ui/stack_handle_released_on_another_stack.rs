// A handle is released on the stack it borrows (`handle.release()` takes no stack); the other
// stack's `release` takes a `Key`, not a handle.
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let stack = ExitStack::<()>::new();
    let mut other = ExitStack::<()>::new();
    let conn = stack
        .enter_with_handle(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let _ = other.release(conn).await;
}

fn main() {
    let _ = run();
}
