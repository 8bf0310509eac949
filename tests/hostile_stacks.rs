//! Exit stacks under hostile use (issue 13): destructors that panic while a stack is dropped,
//! errors orphaned by a half-failed enter, endless enter/release cycles on one stack, and stacks
//! nested twenty thousand deep.
//!
//! What would abort the process (a panic escaping a destructor while unwinding, a stack overflow)
//! runs in a child process: the test spawns this test binary again, selecting the scenario with
//! an environment variable, and asserts that the child exited normally. Under Miri, which cannot
//! spawn processes, the scenario runs in place (Miri also reports any entry that leaked).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use async_with::{
    AsyncContext, Cx, ExitStack, IntoContext, Key, LocalExitStack, Outcome, context, resource, scope,
};

// ----- Helpers -----

/// Counts the bytes this thread holds on the heap, so that a test can see a stack grow.
struct Counting;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn add_live(bytes: isize) {
    // `try_with`: the allocator also runs while this thread's locals are being torn down.
    let _ = LIVE_BYTES.try_with(|n| n.set(n.get() + bytes));
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which upholds
// the `GlobalAlloc` contract; counting touches only a const-initialised thread-local `Cell`,
// which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add_live(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add_live(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

/// Polls `future` to completion with a no-op waker (no executor, so nothing else allocates).
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Polls `future` once.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

const SCENARIO: &str = "ASYNC_WITH_HOSTILE_SCENARIO";

/// Runs `scenario` in a child process (this test binary, running only the test `name`) and
/// asserts that it exited normally: what would abort (a panic in a destructor during cleanup, a
/// stack overflow) fails the test instead of killing the whole test binary.
fn in_child_process(name: &str, scenario: impl FnOnce()) {
    if cfg!(miri) || std::env::var(SCENARIO).as_deref() == Ok(name) {
        scenario();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(SCENARIO, name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(out.status.success(), "the scenario did not exit normally: {}\n{}", out.status, tail.join("\n"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 passed"), "the scenario did not run:\n{stdout}");
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or_else(|| "<not a string>".into(), |m| m.to_string())
        }
    }
}

const SMALL_STACK: usize = 256 * 1024;

fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(SMALL_STACK).spawn(f).unwrap().join().unwrap()
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line.into());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A value that logs its drop, and panics in it if asked to.
struct Loud {
    name: &'static str,
    log: Log,
    panics: bool,
}

impl Drop for Loud {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.name));
        if self.panics {
            panic!("drop {} panicked", self.name);
        }
    }
}

fn loud(log: &Log, name: &'static str, panics: bool) -> Loud {
    Loud { name, log: log.clone(), panics }
}

/// A resource whose value is `Loud`, with an `on_drop` fallback that logs, then drops it.
fn loud_resource(
    log: &Log,
    name: &'static str,
    panics: bool,
) -> impl IntoContext<Value = Loud, Error = String> + use<> {
    let value = loud(log, name, panics);
    let log = log.clone();
    resource(async move || Ok(value), async |_, _: Outcome<'_, String>| Ok(())).on_drop(move |value| {
        log.push(format!("fallback {}", value.name));
        drop(value);
    })
}

/// An `AsyncContext` whose value is `Loud` (its fallback: dropping the value).
struct LoudContext(Option<Loud>);

impl AsyncContext for LoudContext {
    type Value = Loud;
    type Error = String;

    async fn enter(&mut self) -> Result<Loud, String> {
        Ok(self.0.take().expect("entered once"))
    }

    async fn exit(self, _: Loud, _: Outcome<'_, String>) -> Result<(), String> {
        Ok(())
    }
}

/// A generator context whose value is `Loud`.
fn loud_generator(
    log: &Log,
    name: &'static str,
    panics: bool,
) -> impl IntoContext<Value = Loud, Error = String> + use<> {
    let value = loud(log, name, panics);
    context(async move |mut cx: Cx<Loud, String>| {
        cx.provide(value).await;
        Ok(())
    })
}

/// A resource whose exit never finishes, holding its `Loud` value while it waits.
fn stuck_resource(
    log: &Log,
    name: &'static str,
    panics: bool,
) -> impl IntoContext<Value = Loud, Error = String> + use<> {
    let value = loud(log, name, panics);
    resource(
        async move || Ok(value),
        async |value, _: Outcome<'_, String>| {
            std::future::pending::<()>().await;
            drop(value);
            Ok(())
        },
    )
}

// ----- Item 2: a destructor that panics while a stack is dropped -----

/// Fills `stack` with one entry of each kind, the middle ones panicking in their drop (a
/// callback's captures too).
async fn fill_with_panicking_drops(stack: &ExitStack<String>, log: &Log) {
    stack.enter(loud_resource(log, "oldest", false)).await.unwrap();
    stack.enter(LoudContext(Some(loud(log, "context", true)))).await.unwrap();
    stack.enter(loud_resource(log, "resource", true)).await.unwrap();
    stack.enter((loud_resource(log, "tuple.0", true), loud_resource(log, "tuple.1", true))).await.unwrap();
    // Callbacks never called: each is dropped with what it captured.
    let deferred = loud(log, "defer", true);
    stack.defer(async move || {
        drop(deferred);
        Ok(())
    });
    let called = loud(log, "callback", true);
    stack.callback(move || {
        drop(called);
        Ok(())
    });
    let pushed = loud(log, "push_exit", true);
    stack.push_exit(async move |_: Outcome<'_, String>| {
        drop(pushed);
        Ok(())
    });
    let inner = stack.enter(ExitStack::new()).await.unwrap();
    inner.enter(loud_resource(log, "nested", true)).await.unwrap();
    stack.enter(loud_resource(log, "newest", false)).await.unwrap();
}

const FILLED_DROPS: [&str; 14] = [
    "fallback newest",
    "drop newest",
    "fallback nested",
    "drop nested",
    "drop push_exit",
    "drop callback",
    "drop defer",
    "fallback tuple.1",
    "drop tuple.1",
    "fallback tuple.0",
    "drop tuple.0",
    "fallback resource",
    "drop resource",
    "drop context",
];

#[test]
fn a_dropped_stack_drops_every_entry_newest_first_when_destructors_panic() {
    let log = Log::default();
    let stack = ExitStack::new();
    run(fill_with_panicking_drops(&stack, &log));
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(stack)));
    assert!(dropped.is_ok(), "a panic escaped the stack's drop");
    let mut expected = FILLED_DROPS.to_vec();
    expected.extend(["fallback oldest", "drop oldest"]);
    assert_eq!(log.take(), expected);
}

#[test]
fn a_dropped_local_stack_drops_every_entry_newest_first_when_destructors_panic() {
    let log = Log::default();
    let stack = LocalExitStack::new();
    run(async {
        stack.enter(loud_resource(&log, "oldest", false)).await.unwrap();
        let inner = stack.enter(ExitStack::new()).await.unwrap();
        fill_with_panicking_drops(inner, &log).await;
        let local = stack.enter(LocalExitStack::new()).await.unwrap();
        local.enter(loud_resource(&log, "local", true)).await.unwrap();
    });
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(stack)));
    assert!(dropped.is_ok(), "a panic escaped the stack's drop");
    let mut expected = vec!["fallback local", "drop local"];
    expected.extend(FILLED_DROPS);
    // The inner stack's own "oldest", then the outer one's.
    expected.extend(["fallback oldest", "drop oldest", "fallback oldest", "drop oldest"]);
    assert_eq!(log.take(), expected);
}

/// A generator context's value is dropped by its entry's own destructor, which the stack does
/// not control: a panic there must not stop the stack from dropping the entries below it.
#[test]
fn a_panicking_drop_of_one_entry_does_not_leak_the_older_ones() {
    let log = Log::default();
    let stack = ExitStack::new();
    run(async {
        stack.enter(loud_resource(&log, "oldest", false)).await.unwrap();
        stack.enter(loud_generator(&log, "generator", true)).await.unwrap();
        stack.enter(loud_resource(&log, "newest", false)).await.unwrap();
    });
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(stack)));
    assert!(dropped.is_ok(), "a panic escaped the stack's drop");
    assert_eq!(
        log.take(),
        ["fallback newest", "drop newest", "drop generator", "fallback oldest", "drop oldest"]
    );
}

/// A close that is dropped while an exit runs (a `select!` around `close`) drops that exit,
/// which holds a value whose destructor panics; the entries not reached are dropped after it.
#[test]
fn a_close_dropped_during_an_exit_contains_a_panicking_drop() {
    let log = Log::default();
    let stack = ExitStack::new();
    run(async {
        stack.enter(loud_resource(&log, "oldest", false)).await.unwrap();
        stack.enter(stuck_resource(&log, "stuck", true)).await.unwrap();
    });
    let mut close = Box::pin(stack.close());
    assert!(poll_once(&mut close).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(close)));
    assert!(dropped.is_ok(), "a panic escaped the close's drop");
    assert_eq!(log.take(), ["drop stuck", "fallback oldest", "drop oldest"]);
}

/// The same through `scope`, whose future is dropped during the stack's exits.
#[test]
fn a_scope_dropped_during_an_exit_contains_a_panicking_drop() {
    let log = Log::default();
    let l = log.clone();
    let mut future = Box::pin(scope(async move |stack: &mut ExitStack<String>| {
        stack.enter(loud_resource(&l, "oldest", false)).await?;
        let inner = stack.enter(ExitStack::new()).await?;
        inner.enter(loud_resource(&l, "inner", false)).await?;
        inner.enter(stuck_resource(&l, "stuck", true)).await?;
        Ok(())
    }));
    assert!(poll_once(&mut future).is_pending());
    let dropped = catch_unwind(AssertUnwindSafe(|| drop(future)));
    assert!(dropped.is_ok(), "a panic escaped the scope's drop");
    assert_eq!(log.take(), ["drop stuck", "fallback inner", "drop inner", "fallback oldest", "drop oldest"]);
}

/// Drops `f`'s value while this thread unwinds from a panic.
fn drop_while_unwinding<T>(value: T) {
    struct DropOnUnwind<T>(Option<T>);
    impl<T> Drop for DropOnUnwind<T> {
        fn drop(&mut self) {
            assert!(std::thread::panicking());
            drop(self.0.take());
        }
    }
    let result = catch_unwind(AssertUnwindSafe(move || {
        let _guard = DropOnUnwind(Some(value));
        panic!("the body panicked");
    }));
    assert!(result.is_err());
}

#[test]
fn a_stack_dropped_while_unwinding_does_not_abort() {
    in_child_process("a_stack_dropped_while_unwinding_does_not_abort", || {
        let log = Log::default();
        let stack = ExitStack::new();
        run(async {
            stack.enter(loud_resource(&log, "oldest", false)).await.unwrap();
            stack.enter(loud_generator(&log, "generator", true)).await.unwrap();
            stack.enter(loud_resource(&log, "resource", true)).await.unwrap();
        });
        drop_while_unwinding(stack);
        let expected =
            ["fallback resource", "drop resource", "drop generator", "fallback oldest", "drop oldest"];
        assert_eq!(log.take(), expected);

        let stack = LocalExitStack::new();
        run(async {
            stack.enter(loud_resource(&log, "oldest", false)).await.unwrap();
            stack.enter(loud_generator(&log, "generator", true)).await.unwrap();
        });
        drop_while_unwinding(stack);
        assert_eq!(log.take(), ["drop generator", "fallback oldest", "drop oldest"]);
    });
}

#[test]
fn a_close_dropped_while_unwinding_does_not_abort() {
    in_child_process("a_close_dropped_while_unwinding_does_not_abort", || {
        let log = Log::default();
        let stack = ExitStack::new();
        run(async {
            stack.enter(loud_resource(&log, "oldest", false)).await.unwrap();
            stack.enter(stuck_resource(&log, "stuck", true)).await.unwrap();
        });
        let mut close = Box::pin(stack.close());
        assert!(poll_once(&mut close).is_pending());
        drop_while_unwinding(close);
        assert_eq!(log.take(), ["drop stuck", "fallback oldest", "drop oldest"]);
    });
}

// ----- Item 14: errors orphaned by a half-failed enter, in the order they happened -----

/// A resource whose enter fails with `enter {name}`, or whose exit fails with `exit {name}`.
fn failing(
    name: &'static str,
    enter_fails: bool,
    exit_fails: bool,
) -> impl IntoContext<Value = (), Error = String> + use<> {
    resource(
        async move || if enter_fails { Err(format!("enter {name}")) } else { Ok(()) },
        async move |(), _: Outcome<'_, String>| if exit_fails { Err(format!("exit {name}")) } else { Ok(()) },
    )
}

/// Pushes an exit that fails with `exit {name}` and logs what it saw.
fn failing_exit(stack: &ExitStack<String>, log: &Log, name: &'static str) {
    let log = log.clone();
    stack.push_exit(async move |outcome: Outcome<'_, String>| {
        log.push(format!("{name} saw {outcome:?}"));
        Err(format!("exit {name}"))
    });
}

#[test]
fn orphaned_errors_come_before_the_errors_of_the_exits_at_close() {
    // The body passes the enter's error on: it is the primary error; `a`'s exit error, which
    // happened while that enter cleaned up, comes next, then the exit of `c`, run at close.
    let log = Log::default();
    let out = run(scope(async |stack: &mut ExitStack<String>| {
        failing_exit(stack, &log, "c");
        stack.enter((failing("a", false, true), failing("b", true, false))).await?;
        Ok(())
    }));
    let err = out.unwrap_err();
    assert_eq!(err.primary().map(String::as_str), Some("enter b"));
    assert_eq!(err.suppressed(), ["exit a", "exit c"]);
    assert_eq!(log.take(), [r#"c saw Failed("exit a")"#]);

    // The body handles the enter's error: the orphaned error is the first one.
    let out = run(scope(async |stack: &mut ExitStack<String>| {
        failing_exit(stack, &log, "c");
        let entered = stack.enter((failing("a", false, true), failing("b", true, false))).await;
        assert_eq!(entered.err().as_deref(), Some("enter b"));
        Ok(())
    }));
    let err = out.unwrap_err();
    assert_eq!(err.primary().map(String::as_str), Some("exit a"));
    assert_eq!(err.suppressed(), ["exit c"]);
    assert_eq!(log.take(), [r#"c saw Failed("exit a")"#]);
}

#[test]
fn orphaned_errors_of_a_closed_stack_and_of_a_nested_one_come_first_too() {
    let log = Log::default();
    let stack = ExitStack::new();
    let out = run(async {
        failing_exit(&stack, &log, "oldest");
        let inner = stack.enter(ExitStack::new()).await.unwrap();
        failing_exit(inner, &log, "inner");
        let entered = inner.enter((failing("a", false, true), failing("b", true, false))).await;
        assert_eq!(entered.err().as_deref(), Some("enter b"));
        failing_exit(&stack, &log, "newest");
        stack.close().await
    });
    let err = out.unwrap_err();
    assert_eq!(err.primary().map(String::as_str), Some("exit newest"));
    assert_eq!(err.suppressed(), ["exit a", "exit inner", "exit oldest"]);
    assert_eq!(
        log.take(),
        ["newest saw Completed", r#"inner saw Failed("exit a")"#, r#"oldest saw Failed("exit inner")"#]
    );
}

#[test]
fn orphaned_errors_of_a_nested_stack_released_by_key_come_first_in_its_release() {
    let log = Log::default();
    let mut stack = ExitStack::new();
    let (released, closed) = run(async {
        let (inner, key) = stack.enter_with_key(ExitStack::new()).await.unwrap();
        failing_exit(inner, &log, "inner");
        let entered = inner.enter((failing("a", false, true), failing("b", true, false))).await;
        assert_eq!(entered.err().as_deref(), Some("enter b"));
        let released = stack.release(key).await;
        (released, stack.close().await)
    });
    // The nested stack's close reports its orphan first, as it would closing on its own.
    assert_eq!(released.err().as_deref(), Some("exit a"));
    assert_eq!(log.take(), [r#"inner saw Failed("exit a")"#]);
    // The release returns its first error; the nested stack's own exit error is not lost, the
    // stack around keeps it for its close.
    let closed = closed.unwrap_err();
    assert_eq!(closed.primary().map(String::as_str), Some("exit inner"));
    assert!(closed.suppressed().is_empty(), "{closed:?}");
}

// ----- Item 16: enter_with_key + release, over and over, on one stack -----

const CYCLES: usize = if cfg!(miri) { 600 } else { 200_000 };

fn keyed(name: usize) -> impl IntoContext<Value = usize, Error = String> + use<> {
    resource(async move || Ok(name), async |_, _: Outcome<'_, String>| Ok(()))
}

/// Heap bytes this thread gained over `cycles` rounds of `round` on one stack.
fn growth(cycles: usize, mut round: impl FnMut(&mut ExitStack<String>, usize)) -> isize {
    let mut stack = ExitStack::<String>::new();
    for i in 0..100 {
        round(&mut stack, i); // warm up: the slot list reaches its working size
    }
    let before = live_bytes();
    for i in 100..cycles {
        round(&mut stack, i);
    }
    let grown = live_bytes() - before;
    run(stack.close()).unwrap();
    grown
}

#[test]
fn enter_and_release_cycles_keep_a_stack_small() {
    // The newest entry released at once (resourcet's allocate / release in a loop).
    let newest = growth(CYCLES, |stack, i| {
        let (_, key) = run(stack.enter_with_key(keyed(i))).unwrap();
        run(stack.release(key)).unwrap();
    });
    // Eight entries alive at a time, the oldest released: the freed slots are not at the end.
    let mut window = std::collections::VecDeque::new();
    let oldest = growth(CYCLES, |stack, i| {
        let (_, key) = run(stack.enter_with_key(keyed(i))).unwrap();
        window.push_back(key);
        if window.len() > 8 {
            run(stack.release(window.pop_front().unwrap())).unwrap();
        }
    });
    println!(
        "after {CYCLES} cycles: {newest} bytes more (newest released), {oldest} bytes more (oldest released)"
    );
    assert!(newest < 4096, "{CYCLES} enter/release cycles grew the stack by {newest} bytes");
    assert!(oldest < 4096, "{CYCLES} enter/release cycles grew the stack by {oldest} bytes");
}

#[test]
fn a_key_never_releases_a_newer_entry() {
    let log = Log::default();
    let mut stack = ExitStack::<String>::new();
    let callback = |name: &'static str| {
        let log = log.clone();
        move || {
            log.push(name);
            Ok(())
        }
    };
    let first = stack.callback(callback("first"));
    run(stack.release(first)).unwrap();
    // The next entry may take the released one's place: the old key must not reach it.
    let second = stack.callback(callback("second"));
    assert_ne!(first, second);
    let again = catch_unwind(AssertUnwindSafe(|| run(stack.release(first))));
    assert_eq!(
        panic_message(again.unwrap_err()),
        "async-with: this entry was already released (or closed with the stack)"
    );
    // Many releases later (the stack compacted its list), the same.
    let mut keys: Vec<Key> = (0..100).map(|_| stack.callback(|| Ok(()))).collect();
    for key in keys.drain(..50) {
        run(stack.release(key)).unwrap();
    }
    for key in (0..100).map(|_| stack.callback(|| Ok(()))).collect::<Vec<_>>() {
        run(stack.release(key)).unwrap();
    }
    assert!(catch_unwind(AssertUnwindSafe(|| run(stack.release(first)))).is_err());
    let other = ExitStack::<String>::new();
    let foreign = other.callback(|| Ok(()));
    let message = panic_message(catch_unwind(AssertUnwindSafe(|| run(stack.release(foreign)))).unwrap_err());
    assert!(message.contains("async-with: this key belongs to another exit stack"), "{message}");
    run(stack.release(second)).unwrap();
    for key in keys {
        run(stack.release(key)).unwrap();
    }
    run(stack.close()).unwrap();
    run(other.close()).unwrap();
    assert_eq!(log.take(), ["first", "second"]);
}

// ----- Item 17: stacks nested in stacks, twenty thousand deep -----

const DEPTH: usize = if cfg!(miri) { 40 } else { 20_000 };

/// Checks that the exits run in one order: each gets the position it must run at.
#[derive(Clone, Default)]
struct Order {
    next: Arc<AtomicUsize>,
    wrong: Arc<Mutex<Option<String>>>,
}

impl Order {
    fn check(&self, name: &str, expected: usize) {
        let at = self.next.fetch_add(1, Ordering::Relaxed);
        if at != expected {
            self.wrong.lock().unwrap().get_or_insert_with(|| format!("{name} ran {at}th, not {expected}th"));
        }
    }

    fn assert_ran(&self, n: usize) {
        assert_eq!(*self.wrong.lock().unwrap(), None);
        assert_eq!(self.next.load(Ordering::Relaxed), n);
    }
}

/// At every level, one callback before the nested stack and one after: closing runs the
/// `after`s outside in, then the innermost stack, then the `before`s inside out.
fn nest(root: &ExitStack<String>, order: &Order) {
    let mut stack = root;
    for level in 0..DEPTH {
        let o = order.clone();
        stack.callback(move || {
            o.check("before", 2 * DEPTH - 1 - level);
            Ok(())
        });
        let inner = run(stack.enter(ExitStack::new())).unwrap();
        let o = order.clone();
        stack.callback(move || {
            o.check("after", level);
            Ok(())
        });
        stack = inner;
    }
}

/// The same in local stacks: local stacks nested in local stacks for the first half of the
/// levels, then `Send` stacks (a `Send` stack cannot hold a local one), so that both kinds, and
/// a `Send` stack in a local one, nest deep.
fn nest_local(root: &LocalExitStack<'static, String>, order: &Order) {
    enum Level<'s> {
        Local(&'s LocalExitStack<'static, String>),
        Send(&'s ExitStack<String>),
    }
    let mut stack = Level::Local(root);
    for level in 0..DEPTH {
        let (o, p) = (order.clone(), order.clone());
        let before = move || {
            o.check("before", 2 * DEPTH - 1 - level);
            Ok(())
        };
        let after = move || {
            p.check("after", level);
            Ok(())
        };
        stack = match stack {
            Level::Local(stack) => {
                stack.callback(before);
                let inner = if level >= DEPTH / 2 {
                    Level::Send(run(stack.enter(ExitStack::new())).unwrap())
                } else {
                    Level::Local(run(stack.enter(LocalExitStack::new())).unwrap())
                };
                stack.callback(after);
                inner
            }
            Level::Send(stack) => {
                stack.callback(before);
                let inner = run(stack.enter(ExitStack::new())).unwrap();
                stack.callback(after);
                Level::Send(inner)
            }
        };
    }
}

/// Counts drops, to see every level's entries dropped.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn stacks_nested_deep_close_on_a_small_thread_stack() {
    in_child_process("stacks_nested_deep_close_on_a_small_thread_stack", || {
        on_a_small_stack(|| {
            let order = Order::default();
            let root = ExitStack::new();
            nest(&root, &order);
            run(root.close()).unwrap();
            order.assert_ran(2 * DEPTH);
        });
    });
}

#[test]
fn stacks_nested_deep_close_in_a_scope_on_a_small_thread_stack() {
    in_child_process("stacks_nested_deep_close_in_a_scope_on_a_small_thread_stack", || {
        on_a_small_stack(|| {
            let order = Order::default();
            let o = order.clone();
            run(scope(async move |stack: &mut ExitStack<String>| {
                nest(stack, &o);
                Ok(())
            }))
            .unwrap();
            order.assert_ran(2 * DEPTH);
        });
    });
}

#[test]
fn local_stacks_nested_deep_close_on_a_small_thread_stack() {
    in_child_process("local_stacks_nested_deep_close_on_a_small_thread_stack", || {
        on_a_small_stack(|| {
            let order = Order::default();
            let root = LocalExitStack::new();
            nest_local(&root, &order);
            run(root.close()).unwrap();
            order.assert_ran(2 * DEPTH);
        });
    });
}

#[test]
fn stacks_nested_deep_drop_on_a_small_thread_stack() {
    in_child_process("stacks_nested_deep_drop_on_a_small_thread_stack", || {
        on_a_small_stack(|| {
            let dropped = Arc::new(AtomicUsize::new(0));
            let root = ExitStack::<String>::new();
            let mut stack = &root;
            for _ in 0..DEPTH {
                let counted = Counted(dropped.clone());
                stack.callback(move || {
                    drop(counted);
                    Ok(())
                });
                stack = run(stack.enter(ExitStack::new())).unwrap();
            }
            drop(root); // no close: every level's callback is dropped, not run
            assert_eq!(dropped.load(Ordering::Relaxed), DEPTH);
        });
    });
}

#[test]
fn local_stacks_nested_deep_drop_on_a_small_thread_stack() {
    in_child_process("local_stacks_nested_deep_drop_on_a_small_thread_stack", || {
        on_a_small_stack(|| {
            let order = Order::default();
            let root = LocalExitStack::new();
            nest_local(&root, &order);
            drop(root);
            order.assert_ran(0);
        });
    });
}

/// A nested stack released by key closes its own nested stacks in a loop too.
#[test]
fn a_released_deep_stack_closes_on_a_small_thread_stack() {
    in_child_process("a_released_deep_stack_closes_on_a_small_thread_stack", || {
        on_a_small_stack(|| {
            let order = Order::default();
            let mut root = ExitStack::<String>::new();
            let (inner, key) = run(root.enter_with_key(ExitStack::new())).unwrap();
            nest(inner, &order);
            run(root.release(key)).unwrap();
            order.assert_ran(2 * DEPTH);
            run(root.close()).unwrap();
        });
    });
}
