// `release(key)` takes the stack by `&mut`: not while a handle borrows it.
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let mut stack = ExitStack::<()>::new();
    let conn = stack
        .enter_with_handle(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let key = stack.callback(|| Ok(()));
    let _ = stack.release(key).await;
    let _ = conn.release().await;
}

fn main() {
    let _ = run();
}
