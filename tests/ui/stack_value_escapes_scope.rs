// A value lent by the stack cannot outlive the scope that closes the stack.
use async_with::{resource, scope, ExitStack, Outcome};

fn main() {
    let _ = scope(async |stack: &mut ExitStack<()>| {
        let conn = stack.enter(resource(async || Ok(String::new()), async |_, _: Outcome<'_, ()>| Ok(()))).await?;
        Ok(conn)
    });
}
