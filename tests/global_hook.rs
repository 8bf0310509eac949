//! The process-wide hook of G6. Its own test binary: the hook is global state.

use std::sync::{Arc, Mutex};

use async_with::{Error, Outcome, resource, set_error_hook, with};

#[test]
fn without_a_scope_hook_errors_during_a_panic_reach_the_process_wide_hook() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    set_error_hook(move |e| sink.lock().unwrap().push(format!("{e:?}")));

    let ctx = resource(
        async || Ok::<_, String>(()),
        async |(), _: Outcome<'_, String>| Err("close failed".to_string()),
    );
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        futures::executor::block_on(with(ctx, async |_| -> Result<(), Error<String>> {
            panic!("body panicked")
        }))
    }));
    assert!(panicked.is_err());
    assert_eq!(*seen.lock().unwrap(), [r#""close failed""#]);
}
