// A handle borrows the scope's stack: the body cannot return it.
use async_with::{ExitStack, Outcome, resource, scope};

fn main() {
    let _ = scope(async |stack: &mut ExitStack<()>| {
        let conn = stack
            .enter_with_handle(resource(async || Ok(String::new()), async |_, _: Outcome<'_, ()>| Ok(())))
            .await?;
        Ok(conn)
    });
}
