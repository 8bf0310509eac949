//! Closing (or dropping) an exit stack of a million entries uses a loop, not recursion: it runs
//! on a thread with a 256 KiB stack, and the exits still run newest first.
#![cfg(not(miri))] // a million entries is far too slow under Miri; `tests/stack.rs` covers the logic

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_with::{ExitStack, Outcome, resource, scope};

const ENTRIES: usize = 1_000_000;
const SMALL_STACK: usize = 256 * 1024;

fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(SMALL_STACK).spawn(f).unwrap().join().unwrap()
}

#[test]
fn a_million_entries_close_in_reverse_order_on_a_small_thread_stack() {
    let ran = on_a_small_stack(|| {
        let next = Arc::new(AtomicUsize::new(0));
        let out = futures::executor::block_on(scope(async |stack: &mut ExitStack<String>| {
            for i in 0..ENTRIES {
                let next = next.clone();
                // Entry i must be the (ENTRIES - 1 - i)-th to run.
                let check = move || {
                    let order = next.fetch_add(1, Ordering::Relaxed);
                    if order == ENTRIES - 1 - i { Ok(()) } else { Err(format!("entry {i} ran {order}th")) }
                };
                if i % 2 == 0 {
                    stack.callback(check);
                } else {
                    stack
                        .enter(resource(async || Ok(()), async move |(), _: Outcome<'_, String>| check()))
                        .await?;
                }
            }
            Ok(())
        }));
        out.map(|()| next.load(Ordering::Relaxed)).map_err(|e| e.to_string())
    });
    assert_eq!(ran, Ok(ENTRIES));
}

#[test]
fn a_million_entries_drop_on_a_small_thread_stack() {
    let dropped = on_a_small_stack(|| {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        let stack = ExitStack::<String>::new();
        for _ in 0..ENTRIES {
            let counted = Counted(count.clone());
            stack.callback(move || {
                drop(counted);
                Ok(())
            });
        }
        drop(stack); // no close: the callbacks are dropped, not run
        count.load(Ordering::Relaxed)
    });
    assert_eq!(dropped, ENTRIES);
}
