// A closed stack is gone: entering after `close` does not compile.
use async_with::{resource, ExitStack, Outcome};

async fn run() {
    let stack = ExitStack::<()>::new();
    let _ = stack.close().await;
    let _ = stack.enter(resource(async || Ok(1), async |_, _: Outcome<'_, ()>| Ok(()))).await;
}

fn main() {
    let _ = run();
}
