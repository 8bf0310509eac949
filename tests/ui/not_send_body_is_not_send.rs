// The scope's future is `Send` only when its body is: a body that holds an `Rc` across an await
// cannot be spawned on a multi-threaded executor.
use async_with::{resource, with, Outcome};
use std::rc::Rc;

fn assert_send<T: Send>(_: T) {}

fn main() {
    let ctx = resource(async || Ok::<_, ()>(1u32), async |_, _: Outcome<'_, ()>| Ok(()));
    assert_send(with(ctx, async |n| {
        let held = Rc::new(*n);
        std::future::ready(()).await;
        Ok(*held)
    }));
}
