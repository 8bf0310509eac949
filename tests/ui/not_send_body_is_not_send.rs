// The scope's future is `Send` only when its body is: a body that holds an `Rc` across an await
// cannot be spawned on a multi-threaded executor.
use async_with::{with, AsyncContext, Outcome};
use std::rc::Rc;

struct Counter;

impl AsyncContext for Counter {
    type Value = u32;
    type Error = ();
    async fn enter(&mut self) -> Result<u32, ()> {
        Ok(1)
    }
    async fn exit(self, _: u32, _: Outcome<'_, ()>) -> Result<(), ()> {
        Ok(())
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    assert_send(with(Counter, async |n| {
        let held = Rc::new(*n);
        std::future::ready(()).await;
        Ok(*held)
    }));
}
