// A `Send` exit stack holds `'static` entries (its scope future may move between threads and
// outlive the caller's frame); an entry that borrows a local needs a `LocalExitStack`.
use async_with::{resource, scope, ExitStack, Outcome};

fn main() {
    let name = String::from("db");
    let _ = scope(async |stack: &mut ExitStack<()>| {
        let name = &name;
        stack.enter(resource(async move || Ok(name.len()), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
        Ok(())
    });
}
