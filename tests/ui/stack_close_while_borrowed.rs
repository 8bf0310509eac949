// Closing a stack runs the exits, which take the values back: not while one is still borrowed.
use async_with::{resource, ExitStack, Outcome};

async fn run() {
    let stack = ExitStack::<()>::new();
    let conn = stack.enter(resource(async || Ok(String::new()), async |_, _: Outcome<'_, ()>| Ok(()))).await.unwrap();
    let _ = stack.close().await;
    conn.push('!');
}

fn main() {
    let _ = run();
}
