// A context that is only a `LocalAsyncContext` (its state is `!Send`) cannot be entered by
// `with`, whose futures must be `Send`: `with_local` is the way in.
use async_with::{with, LocalAsyncContext, Outcome};
use std::rc::Rc;

struct Shared(Rc<u32>);

impl LocalAsyncContext for Shared {
    type Value = Rc<u32>;
    type Error = ();
    async fn enter(&mut self) -> Result<Rc<u32>, ()> {
        Ok(self.0.clone())
    }
    async fn exit(self, _: Rc<u32>, _: Outcome<'_, ()>) -> Result<(), ()> {
        Ok(())
    }
}

fn main() {
    let _ = with(Shared(Rc::new(1)), async |n| Ok(**n));
}
