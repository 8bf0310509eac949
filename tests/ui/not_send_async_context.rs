// `AsyncContext` promises `Send` futures: an exit that holds an `Rc` across an await breaks it.
use async_with::{AsyncContext, Outcome};
use std::rc::Rc;

struct Db;

impl AsyncContext for Db {
    type Value = u32;
    type Error = ();
    async fn enter(&mut self) -> Result<u32, ()> {
        Ok(1)
    }
    async fn exit(self, _: u32, _: Outcome<'_, ()>) -> Result<(), ()> {
        let held = Rc::new(());
        std::future::ready(()).await;
        drop(held);
        Ok(())
    }
}

fn main() {}
