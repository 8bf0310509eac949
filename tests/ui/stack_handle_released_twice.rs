// An entry is released once: the first `release` consumed the handle.
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let stack = ExitStack::<()>::new();
    let conn = stack
        .enter_with_handle(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let _ = conn.release().await;
    let _ = conn.release().await;
}

fn main() {
    let _ = run();
}
