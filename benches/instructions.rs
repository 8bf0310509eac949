//! Instruction counts per scope and per exit-stack entry, under `valgrind --tool=callgrind`.
//!
//! ```console
//! cargo bench --bench instructions                  # every row, then the table
//! cargo bench --bench instructions -- stack         # only the rows whose name contains "stack"
//! cargo bench --bench instructions -- --repeat 2    # each row twice; fails if a count differs
//! ```
//!
//! Run without `--row`, this binary is the driver: for each row it runs itself again, from its
//! own folder, as `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect=instructions::measured ./NAME --row ROW`, reads the `totals:` line of the
//! profile (instructions executed, `Ir`), divides it by the number of scopes or entries and
//! prints a markdown table with the ratios to the baselines. Being the bench binary itself, it is
//! built by cargo in the bench profile, finds itself through `current_exe` and shares the list of
//! rows with the code it measures: no script has to find the binary or keep a second list.
//!
//! No crate either: `--toggle-collect` on one `#[inline(never)]` function needs nothing but
//! valgrind, and only at run time. gungraun (iai-callgrind's successor, rust 1.88) needs its
//! `gungraun-runner` binary installed at the library's exact version (`cargo install`: six and a
//! half minutes on the 2-core CI machine, on every new machine) besides 40 s for the library;
//! crabgrind's client requests build `valgrind.h` bindings with bindgen, so that every build of
//! the benchmarks (clippy, `cargo bench --no-run`) would need libclang and valgrind's headers.
//!
//! Run with `--row NAME`, it runs that row a few times unmeasured (thread-locals, lazy
//! statics and the allocator's first pages are set up then), and then once more inside
//! [`measured`], the only function callgrind collects in (with what it calls). Nothing else is
//! counted: not the process start, the argument parsing, the warm-up or the exit.
//!
//! Every row is a plain `for` loop in one function, so the compiler can inline the awaits of
//! the hand-written baselines (and the crate's, as far as it will). The futures are polled by a
//! no-op-waker loop, as in benches/scopes.rs, and use the same resource: an enter and an exit
//! that are ready at once (except in the `waits` rows), over a `u64`, with a small `Copy` error.
//! Each profile stays in `target/tmp/callgrind/ROW.out` for `callgrind_annotate`.
//!
//! Beside each plain hand-written baseline is its *floor*: the same awaits with each step (enter,
//! body, exit) polled under `catch_unwind` inside a thread-local frame swapped in and out around
//! it, the exit told how the body ended. That is what the guarantees' mechanisms alone cost (G6
//! for panics, structured cancellation for nesting), so a row's ratio to its floor is the
//! crate's own overhead, and a target below the floor cannot be met without giving one up.

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::process::{Command, ExitCode};
use std::task::{Context, Poll, Waker};

use async_safe_defer::SendAsyncScope;
use async_with::{ContextExt, Cx, ExitStack, IntoContext, Outcome, context, resource, scope, with};

/// Scopes run by each scope row, entries pushed by each stack row (all in one scope).
const N: usize = 100_000;

/// Unmeasured runs before the measured one.
const WARM_UP: usize = 100;

/// The function callgrind collects in; keep in sync with [`measured`]'s path.
const MEASURED: &str = "instructions::measured";

/// What a row costs per: one scope, or one entry of an exit stack.
#[derive(Clone, Copy, PartialEq)]
enum Per {
    Scope,
    Entry,
}

/// A row of the table: its name (for `--row` and the filters), what the table calls it, its loop
/// over `n` scopes or entries, and the rows it is compared with.
struct Row {
    name: &'static str,
    label: &'static str,
    per: Per,
    run: fn(usize),
    /// The hand-written baseline's row; `None` for a baseline itself.
    hand_written: Option<&'static str>,
    /// async-safe-defer's row, where it has the same operation.
    async_safe_defer: Option<&'static str>,
    /// The guarantees' floor: the hand-written baseline with a `catch_unwind` and a frame swap
    /// around each step, the least any scope keeping G6 and structured cancellation pays.
    floor: Option<&'static str>,
}

impl Row {
    const fn scope(name: &'static str, run: fn(usize), label: &'static str) -> Row {
        Row { name, label, per: Per::Scope, run, hand_written: None, async_safe_defer: None, floor: None }
    }

    const fn entry(name: &'static str, run: fn(usize), label: &'static str) -> Row {
        Row { per: Per::Entry, ..Row::scope(name, run, label) }
    }

    const fn vs(self, hand_written: &'static str) -> Row {
        Row { hand_written: Some(hand_written), ..self }
    }

    const fn vs_defer(self) -> Row {
        Row { async_safe_defer: Some(ASYNC_SAFE_DEFER), ..self }
    }

    const fn vs_floor(self, floor: &'static str) -> Row {
        Row { floor: Some(floor), ..self }
    }
}

const ASYNC_SAFE_DEFER: &str = "stack_async_safe_defer";

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row::scope("hand_written_one", hand_written_one, "one context, hand-written"),
    Row::scope("hand_written_guarded", hand_written_guarded, "one context, hand-written with catch_unwind and a frame per step")
        .vs("hand_written_one"),
    Row::scope("one_with", one_with, "one `with(resource(..))`").vs("hand_written_one").vs_floor("hand_written_guarded"),
    Row::scope("generator", generator_with, "generator context (`context`)").vs("hand_written_one")
        .vs_floor("hand_written_guarded"),
    Row::scope("hand_written_waits", hand_written_waits, "one context that waits once per step, hand-written"),
    Row::scope("hand_written_guarded_waits", hand_written_guarded_waits, "one context that waits once per step, hand-written with catch_unwind and a frame per step")
        .vs("hand_written_waits"),
    Row::scope("one_with_waits", one_with_waits, "one `with` that waits once per step").vs("hand_written_waits")
        .vs_floor("hand_written_guarded_waits"),
    Row::scope("hand_written_three", hand_written_three, "three contexts, hand-written"),
    Row::scope("hand_written_guarded_three", hand_written_guarded_three, "three contexts, hand-written with catch_unwind and a frame per step")
        .vs("hand_written_three"),
    Row::scope("tuple_of_three", tuple_of_three, "tuple of three").vs("hand_written_three").vs_floor("hand_written_guarded_three"),
    Row::scope("nested_three", nested_three, "three nested `with`").vs("hand_written_three").vs_floor("hand_written_guarded_three"),
    Row::scope("and_then_three", and_then_three, "`and_then` chain of three").vs("hand_written_three").vs_floor("hand_written_guarded_three"),
    Row::entry("stack_hand_written_defer", stack_hand_written_defer, "hand-written `Vec` of boxed callbacks"),
    Row::entry("stack_guarded_defer", stack_guarded_defer, "hand-written `Vec` of boxed callbacks, each with catch_unwind and a frame")
        .vs("stack_hand_written_defer").vs_defer(),
    Row::entry(ASYNC_SAFE_DEFER, stack_async_safe_defer, "async-safe-defer 0.2 `SendAsyncScope::defer`")
        .vs("stack_hand_written_defer"),
    Row::entry("stack_defer", stack_defer, "`ExitStack::defer`").vs("stack_hand_written_defer").vs_defer().vs_floor("stack_guarded_defer"),
    Row::entry("stack_hand_written_enter", stack_hand_written_enter, "hand-written acquire, `Vec` of boxed releases"),
    Row::entry("stack_guarded_enter", stack_guarded_enter, "hand-written acquire, `Vec` of boxed releases, each step with catch_unwind and a frame")
        .vs("stack_hand_written_enter").vs_defer(),
    Row::entry("stack_enter_resource", stack_enter_resource, "`ExitStack::enter(resource(..))`")
        .vs("stack_hand_written_enter").vs_floor("stack_guarded_enter"),
    Row::entry("stack_enter_context", stack_enter_context, "`ExitStack::enter(context(..))`")
        .vs("stack_hand_written_enter").vs_floor("stack_guarded_enter"),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--row") {
        let name = args.get(at + 1).map(String::as_str).unwrap_or_default();
        let Some(row) = ROWS.iter().find(|r| r.name == name) else {
            eprintln!("no row {name:?}; the rows: {}", names().join(", "));
            return ExitCode::FAILURE;
        };
        for _ in 0..WARM_UP {
            (row.run)(1);
        }
        measured(row.run, N);
        return ExitCode::SUCCESS;
    }
    drive(&args)
}

/// The measured run: callgrind counts the instructions of this call and of all it calls.
#[inline(never)]
fn measured(run: fn(usize), n: usize) {
    black_box(run)(black_box(n));
}

fn names() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.name).collect()
}

// ----- The driver -----

fn drive(args: &[String]) -> ExitCode {
    let mut repeat = 1;
    let mut filters = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => match args.next().and_then(|n| n.parse().ok()).filter(|&n: &usize| n > 0) {
                Some(n) => repeat = n,
                None => {
                    eprintln!("--repeat takes a number of runs, at least 1");
                    return ExitCode::FAILURE;
                }
            },
            "--list" => {
                println!("{}", names().join("\n"));
                return ExitCode::SUCCESS;
            }
            // `cargo bench` passes `--bench`; other flags are libtest's or divan's.
            flag if flag.starts_with("--") => {}
            filter => filters.push(filter),
        }
    }
    let Ok(version) = Command::new("valgrind").arg("--version").output() else {
        println!("valgrind is not installed: no instruction counts (apt-get install valgrind)");
        return ExitCode::SUCCESS;
    };
    let exe = std::env::current_exe().expect("the path of this binary");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("callgrind");
    std::fs::create_dir_all(&dir).expect("target/tmp/callgrind");

    // A row is measured when it or a row it is compared with matches a filter.
    let selected = |r: &Row| filters.is_empty() || filters.iter().any(|f| r.name.contains(f));
    let wanted: Vec<&Row> = ROWS
        .iter()
        .filter(|r| {
            selected(r)
                || ROWS.iter().any(|o| {
                    selected(o) && [o.hand_written, o.async_safe_defer, o.floor].contains(&Some(r.name))
                })
        })
        .collect();
    if wanted.is_empty() {
        eprintln!("no row matches {filters:?}; the rows: {}", names().join(", "));
        return ExitCode::FAILURE;
    }

    let mut counts = Vec::new();
    for r in &wanted {
        let mut runs = Vec::new();
        for _ in 0..repeat {
            match callgrind(&exe, &dir, r.name) {
                Ok(ir) => runs.push(ir),
                Err(error) => {
                    eprintln!("{}: {error}", r.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        if runs.windows(2).any(|w| w[0] != w[1]) {
            eprintln!("{}: the instruction count differs between runs: {runs:?}", r.name);
            return ExitCode::FAILURE;
        }
        eprintln!("{:>26}: {} instructions in {} runs of {N}", r.name, runs[0], runs.len());
        counts.push((r.name, runs[0]));
    }

    let per = |name: &str| counts.iter().find(|(n, _)| *n == name).map(|&(_, ir)| ir as f64 / N as f64);
    let version = String::from_utf8_lossy(&version.stdout);
    println!();
    println!(
        "Instructions (`Ir`) per scope or entry, callgrind ({}), {N} scopes or entries per row:",
        version.trim()
    );
    println!();
    println!(
        "| benchmark | per | instructions | hand-written | ratio | async-safe-defer | ratio | floor | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in wanted.iter().filter(|r| selected(r)) {
        let ir = per(r.name).expect("measured above");
        let cell = |baseline: Option<&str>| match baseline.and_then(per) {
            Some(b) => (format!("{b:.1}"), format!("{:.2}x", ir / b)),
            None => (String::new(), String::new()),
        };
        // A baseline is 1 in its own column.
        let (hand, hand_ratio) = match r.hand_written {
            None => (String::new(), "1".into()),
            baseline => cell(baseline),
        };
        let (asd, asd_ratio) = match r.async_safe_defer {
            None if r.name == ASYNC_SAFE_DEFER => (String::new(), "1".into()),
            baseline => cell(baseline),
        };
        let (floor, floor_ratio) = cell(r.floor);
        let per = if r.per == Per::Scope { "scope" } else { "entry" };
        println!(
            "| {} | {per} | {ir:.1} | {hand} | {hand_ratio} | {asd} | {asd_ratio} | {floor} | {floor_ratio} |",
            r.label
        );
    }
    println!();
    println!("Profiles: {}/ROW.out (callgrind_annotate --inclusive=yes FILE)", dir.display());
    ExitCode::SUCCESS
}

/// Runs `row` under callgrind and returns the instructions counted in [`measured`].
fn callgrind(exe: &std::path::Path, dir: &std::path::Path, row: &str) -> Result<u64, String> {
    let out = dir.join(format!("{row}.out"));
    // Started from its own folder as `./NAME`, so that where the checkout lies does not move the
    // stack or the heap (a longer `argv[0]` shifted a stack row's `memcpy` by a few instructions).
    let (folder, file) = (exe.parent().expect("a folder"), exe.file_name().expect("a file name"));
    let status = Command::new("valgrind")
        .current_dir(folder)
        .arg("--tool=callgrind")
        .arg("--quiet")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={MEASURED}"))
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(std::path::Path::new(".").join(file))
        .args(["--row", row])
        .status()
        .map_err(|e| format!("valgrind did not start: {e}"))?;
    if !status.success() {
        return Err(format!("valgrind exited with {status}"));
    }
    let profile = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    // `totals:` is written at the end of the profile, `summary:` in older versions.
    let ir = profile
        .lines()
        .filter_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .find_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| format!("{}: no totals: line", out.display()))?;
    // A toggle that never fired (a renamed or inlined `measured`) counts nothing.
    if ir == 0 {
        return Err(format!("nothing collected: is `{MEASURED}` still a function of this binary?"));
    }
    Ok(ir)
}

// ----- What is measured: the same resource and body as benches/scopes.rs -----

/// Keeps `out` from being optimized away and forgets it, as divan does with a benchmark's
/// output: the loop adds nothing but this store to what it measures.
#[inline(always)]
fn keep<E>(out: Result<impl Sized, E>) {
    std::mem::forget(black_box(out));
}

/// The error type of every row: small and `Copy`, like an error code.
#[derive(Clone, Copy, Debug)]
struct Fail;

/// Polls `future` to completion with a no-op waker, inlined into the row's loop.
#[inline(always)]
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Returns `Pending` once, then `Ready`: one suspension, as a socket that is not ready yet.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(
        |_| {
            if std::mem::replace(&mut yielded, true) { Poll::Ready(()) } else { Poll::Pending }
        },
    )
    .await
}

async fn acquire() -> Result<u64, Fail> {
    Ok(black_box(1))
}

async fn release(value: u64) -> Result<(), Fail> {
    black_box(value);
    Ok(())
}

async fn body(value: &mut u64) -> Result<u64, Fail> {
    *value = black_box(*value + 1);
    Ok(*value)
}

async fn acquire_waiting() -> Result<u64, Fail> {
    yield_once().await;
    Ok(black_box(1))
}

async fn release_waiting(value: u64) -> Result<(), Fail> {
    yield_once().await;
    black_box(value);
    Ok(())
}

fn connection() -> impl IntoContext<Value = u64, Error = Fail> {
    resource(acquire, async |value, _: Outcome<'_, Fail>| release(value).await)
}

fn generator() -> impl IntoContext<Value = u64, Error = Fail> {
    context(async |mut cx: Cx<u64, Fail>| {
        let value = acquire().await?;
        let (value, _) = cx.provide(value).await;
        release(value).await
    })
}

// ----- Scope rows: `n` scopes, one after the other -----

/// What a careful programmer writes without the crate: release on every path, and the body's
/// error first.
async fn one_by_hand() -> Result<u64, Fail> {
    let mut value = acquire().await?;
    let out = body(&mut value).await;
    let released = release(value).await;
    let out = out?;
    released?;
    Ok(out)
}

/// The least that any scope giving the crate's guarantees does on the happy path, written by
/// hand: each step (enter, body, exit) polled under `catch_unwind` (a panic must not skip the
/// exits, G6) inside a thread-local frame swapped in and out around it (how an inner scope learns
/// that an outer one is cancelled, and tells it that it is still busy), and the exit told how the
/// body ended. Not a working scope (a panic is resumed at once, nothing is cancelled): what the
/// mechanisms alone cost, so that the distance between it and a `with` is the crate's own.
async fn one_guarded_by_hand() -> Result<u64, Fail> {
    guarded_scope!(acquire, release)
}

/// [`one_guarded_by_hand`] over the resource that waits once per step.
async fn one_guarded_waiting_by_hand() -> Result<u64, Fail> {
    guarded_scope!(acquire_waiting, release_waiting)
}

/// The body of [`one_guarded_by_hand`], over `acquire` and `release`.
macro_rules! guarded_scope {
    ($acquire:ident, $release:ident) => {{
        let mut value = match guarded($acquire()).await {
            Ok(acquired) => acquired?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let out = guarded(body(&mut value)).await;
        let seen = match &out {
            Ok(Ok(_)) => Seen::Completed,
            Ok(Err(_)) => Seen::Failed,
            Err(_) => Seen::Panicked,
        };
        let released = guarded(async move {
            black_box(seen);
            $release(value).await
        })
        .await;
        let out = out.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let released = released.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let out = out?;
        released?;
        Ok(out)
    }};
}
use guarded_scope;

/// How the body ended, as [`one_guarded_by_hand`]'s exit sees it.
#[derive(Clone, Copy)]
enum Seen {
    Completed,
    Failed,
    Panicked,
}

std::thread_local! {
    /// [`one_guarded_by_hand`]'s frame: the few bytes a scope sets for what it polls.
    static FRAME: std::cell::Cell<[bool; 4]> = const { std::cell::Cell::new([false; 4]) };
}

pin_project_lite::pin_project! {
    /// A step of [`one_guarded_by_hand`]: polled in place, under `catch_unwind`, in its own frame.
    struct Guarded<F> {
        #[pin]
        future: F,
    }
}

fn guarded<F: Future>(future: F) -> Guarded<F> {
    Guarded { future }
}

impl<F: Future> Future for Guarded<F> {
    type Output = std::thread::Result<F::Output>;

    #[inline]
    fn poll(self: Pin<&mut Self>, task: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.project().future;
        let outer = FRAME.with(|frame| frame.replace([false; 4]));
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(task)));
        let left = FRAME.with(|frame| frame.replace(outer));
        black_box(left);
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn hand_written_guarded(n: usize) {
    for _ in 0..n {
        keep(run(one_guarded_by_hand()));
    }
}

fn hand_written_guarded_waits(n: usize) {
    for _ in 0..n {
        keep(run(one_guarded_waiting_by_hand()));
    }
}

fn hand_written_one(n: usize) {
    for _ in 0..n {
        keep(run(one_by_hand()));
    }
}

fn one_with(n: usize) {
    for _ in 0..n {
        keep(run(with(connection(), async |v| Ok(body(v).await?))));
    }
}

fn generator_with(n: usize) {
    for _ in 0..n {
        keep(run(with(generator(), async |v| Ok(body(v).await?))));
    }
}

fn hand_written_waits(n: usize) {
    for _ in 0..n {
        keep(run(async {
            let mut value = acquire_waiting().await?;
            let out = body(&mut value).await;
            let released = release_waiting(value).await;
            let out = out?;
            released?;
            Ok::<_, Fail>(out)
        }));
    }
}

fn one_with_waits(n: usize) {
    for _ in 0..n {
        let waiting =
            resource(acquire_waiting, async |value, _: Outcome<'_, Fail>| release_waiting(value).await);
        keep(run(with(waiting, async |v| Ok(body(v).await?))));
    }
}

/// Three contexts nested by hand, each released on every path, innermost first.
async fn three_by_hand() -> Result<u64, Fail> {
    let mut a = acquire().await?;
    let out = match acquire().await {
        Err(e) => Err(e),
        Ok(mut b) => {
            let out = match acquire().await {
                Err(e) => Err(e),
                Ok(mut c) => {
                    let out: Result<u64, Fail> =
                        async { Ok(body(&mut a).await? + body(&mut b).await? + body(&mut c).await?) }.await;
                    let released = release(c).await;
                    out.and_then(|out| released.map(|()| out))
                }
            };
            let released = release(b).await;
            out.and_then(|out| released.map(|()| out))
        }
    };
    let released = release(a).await;
    out.and_then(|out| released.map(|()| out))
}

/// [`three_by_hand`] with each of its seven steps awaited as [`one_guarded_by_hand`] awaits
/// one (under `catch_unwind`, in a frame of its own), and each exit told how the code inside
/// ended: the guarantees' floor for three contexts.
async fn three_guarded_by_hand() -> Result<u64, Fail> {
    /// A step's result, its panic resumed at once (the floor does not run the exits first).
    fn done<T>(step: std::thread::Result<T>) -> T {
        step.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
    let mut a = done(guarded(acquire()).await)?;
    let out = match done(guarded(acquire()).await) {
        Err(e) => Err(e),
        Ok(mut b) => {
            let out = match done(guarded(acquire()).await) {
                Err(e) => Err(e),
                Ok(mut c) => {
                    let out: Result<u64, Fail> = done(
                        guarded(async {
                            Ok(body(&mut a).await? + body(&mut b).await? + body(&mut c).await?)
                        })
                        .await,
                    );
                    let seen = out.is_ok();
                    let released = done(guarded(async move { release(black_box((c, seen)).0).await }).await);
                    out.and_then(|out| released.map(|()| out))
                }
            };
            let seen = out.is_ok();
            let released = done(guarded(async move { release(black_box((b, seen)).0).await }).await);
            out.and_then(|out| released.map(|()| out))
        }
    };
    let seen = out.is_ok();
    let released = done(guarded(async move { release(black_box((a, seen)).0).await }).await);
    out.and_then(|out| released.map(|()| out))
}

fn hand_written_guarded_three(n: usize) {
    for _ in 0..n {
        keep(run(three_guarded_by_hand()));
    }
}

fn hand_written_three(n: usize) {
    for _ in 0..n {
        keep(run(three_by_hand()));
    }
}

fn tuple_of_three(n: usize) {
    for _ in 0..n {
        keep(run(with((connection(), connection(), connection()), async |(a, b, c)| {
            Ok(body(a).await? + body(b).await? + body(c).await?)
        })));
    }
}

fn nested_three(n: usize) {
    for _ in 0..n {
        keep(run(with(connection(), async |a| {
            let inner = with(connection(), async |b| {
                let innermost = with(connection(), async |c| Ok(body(c).await?)).await?;
                Ok(body(b).await? + innermost)
            })
            .await?;
            Ok(body(a).await? + inner)
        })));
    }
}

/// As in benches/scopes.rs: the chain's value is the last context's, so the body sees one value.
fn and_then_three(n: usize) {
    for _ in 0..n {
        let chain = connection().and_then(|_| connection()).and_then(|_| connection());
        keep(run(with(chain, async |c| Ok(body(c).await?))));
    }
}

// ----- Stack rows: one scope of `n` entries, exited newest first -----

type Exit = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;

/// Awaits the boxed exits newest first, keeping the first error.
async fn unwind(mut exits: Vec<Exit>) -> Result<(), Fail> {
    let mut first = Ok(());
    while let Some(exit) = exits.pop() {
        let exited = exit.await;
        first = first.and(exited);
    }
    first
}

/// `n` boxed callbacks, as the hand-written `defer` rows push them.
#[inline(always)]
fn deferred_by_hand(n: usize) -> Vec<Exit> {
    let mut exits: Vec<Exit> = Vec::new();
    for i in 0..n {
        exits.push(Box::pin(async move {
            black_box(i);
            Ok(())
        }));
    }
    exits
}

fn stack_hand_written_defer(n: usize) {
    keep(run(async { unwind(deferred_by_hand(n)).await }));
}

/// [`unwind`] with each exit awaited as [`one_guarded_by_hand`] awaits a step: under
/// `catch_unwind`, in a frame of its own (exits run shielded from a cancellation), every exit
/// run and the first panic resumed after the last.
async fn unwind_guarded(mut exits: Vec<Exit>) -> Result<(), Fail> {
    let mut first = Ok(());
    let mut panic = None;
    while let Some(exit) = exits.pop() {
        match guarded(exit).await {
            Ok(exited) => first = first.and(exited),
            Err(payload) => {
                panic.get_or_insert(payload);
            }
        }
    }
    if let Some(payload) = panic {
        std::panic::resume_unwind(payload);
    }
    first
}

fn stack_guarded_defer(n: usize) {
    keep(run(async { unwind_guarded(deferred_by_hand(n)).await }));
}

fn stack_async_safe_defer(n: usize) {
    keep::<Fail>(run(async {
        let mut scope = SendAsyncScope::new();
        for i in 0..n {
            scope.defer(move || async move {
                black_box(i);
            });
        }
        scope.finish().await;
        Ok(())
    }));
}

fn stack_defer(n: usize) {
    keep(run(scope(async |stack: &mut ExitStack<Fail>| {
        for i in 0..n {
            stack.defer(move || async move {
                black_box(i);
                Ok(())
            });
        }
        Ok(())
    })));
}

fn stack_hand_written_enter(n: usize) {
    keep(run(async {
        let mut exits: Vec<Exit> = Vec::new();
        for _ in 0..n {
            let value = acquire().await?;
            exits.push(Box::pin(release(value)));
        }
        unwind(exits).await
    }));
}

fn stack_guarded_enter(n: usize) {
    keep(run(async {
        let mut exits: Vec<Exit> = Vec::new();
        for _ in 0..n {
            let value = guarded(acquire()).await.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            exits.push(Box::pin(release(value)));
        }
        unwind_guarded(exits).await
    }));
}

fn stack_enter_resource(n: usize) {
    keep(run(scope(async |stack: &mut ExitStack<Fail>| {
        for _ in 0..n {
            stack.enter(connection()).await?;
        }
        Ok(())
    })));
}

fn stack_enter_context(n: usize) {
    keep(run(scope(async |stack: &mut ExitStack<Fail>| {
        for _ in 0..n {
            stack.enter(generator()).await?;
        }
        Ok(())
    })));
}
