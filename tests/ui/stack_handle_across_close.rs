// Closing a stack takes it by value: not while a handle borrows it.
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let stack = ExitStack::<()>::new();
    let conn = stack
        .enter_with_handle(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let _ = stack.close().await;
    let _ = conn.release().await;
}

fn main() {
    let _ = run();
}
