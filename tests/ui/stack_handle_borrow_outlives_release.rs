// A reference taken from a handle borrows the handle: it cannot outlive the release.
use async_with::{ExitStack, Outcome, resource};

async fn run() {
    let stack = ExitStack::<()>::new();
    let mut conn = stack
        .enter_with_handle(resource(async || Ok(String::new()), async |_, _: Outcome<'_, ()>| Ok(())))
        .await
        .unwrap();
    let buffer: &mut String = &mut conn;
    let _ = conn.release().await;
    buffer.push('!');
}

fn main() {
    let _ = run();
}
