// `pop_all` takes the stack by `&mut`: not while a handle borrows it (its entry would move to
// the new stack under it).
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let mut stack = ExitStack::<()>::new();
    let mut conn = stack
        .enter_with_handle(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let moved = stack.pop_all();
    *conn += 1;
    let _ = moved.close().await;
}

fn main() {
    let _ = run();
}
