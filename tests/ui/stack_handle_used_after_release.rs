// `release` consumes the handle: the released value cannot be used afterwards.
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let stack = ExitStack::<()>::new();
    let mut conn = stack
        .enter_with_handle(resource(async || Ok(String::new()), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let _ = conn.release().await;
    conn.push('!');
}

fn main() {
    let _ = run();
}
