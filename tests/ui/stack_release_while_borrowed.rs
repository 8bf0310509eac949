// Releasing an entry runs its exit now: not while its value is still borrowed.
use async_with::{resource, ExitStack, Outcome};

async fn run() {
    let mut stack = ExitStack::<()>::new();
    let (conn, key) = stack.enter_with_key(resource(async || Ok(String::new()), async |_, _: Outcome<'_, ()>| Ok(()))).await.unwrap();
    let _ = stack.release(key).await;
    conn.push('!');
}

fn main() {
    let _ = run();
}
