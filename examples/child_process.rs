//! A child process as a context: spawned on enter, killed and reaped on exit, whether the body
//! completed, panicked or was cancelled. Python's `asyncio.create_subprocess_exec` inside an
//! `@asynccontextmanager` whose `finally` kills the process and awaits it.
//!
//! Four scopes over `sleep 30`: a body that completes; one that panics; one cancelled by a
//! cooperative timeout (`Scope::cancel_on`), after which the exit still kills and awaits the
//! child; and one whose future is dropped, as a `select!` or a runtime's `timeout` does. No async
//! exit can run then: the synchronous fallback (`.on_drop`) sends SIGKILL without waiting, and the
//! runtime's reaper collects the process. After each scope `/proc/<pid>` must be gone: the
//! process neither runs nor lingers as a zombie.
//!
//! The context is written once, over a small trait that tokio's and smol's child handles both
//! fit, and runs on tokio and on smol. Linux only: it looks in `/proc`.
//!
//! Run with `cargo run --example child_process`.

use std::error::Error;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::pin;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use async_with::{IntoContext, Outcome, Scope, resource, with};
use futures::FutureExt;
use futures::future::{Either, select};

fn say(who: &str, what: impl std::fmt::Display) {
    println!("  {who:<5} {what}");
}

/// What the context needs of a runtime's child process handle. tokio's and smol's have all of
/// it, under different names.
pub trait Child: Send + Sized + 'static {
    fn spawn(command: Command) -> io::Result<Self>;
    fn pid(&self) -> u32;
    /// Sends SIGKILL and returns at once, so it may run inside `Drop`.
    fn start_kill(&mut self) -> io::Result<()>;
    /// Waits until the process has exited, and reaps it.
    fn wait(&mut self) -> impl Future<Output = io::Result<ExitStatus>> + Send;
}

impl Child for tokio::process::Child {
    fn spawn(command: Command) -> io::Result<Self> {
        tokio::process::Command::from(command).spawn()
    }
    fn pid(&self) -> u32 {
        self.id().expect("only `wait` reaps the child, and nothing asks for the pid after it")
    }
    fn start_kill(&mut self) -> io::Result<()> {
        tokio::process::Child::start_kill(self)
    }
    fn wait(&mut self) -> impl Future<Output = io::Result<ExitStatus>> + Send {
        tokio::process::Child::wait(self)
    }
}

impl Child for smol::process::Child {
    fn spawn(command: Command) -> io::Result<Self> {
        smol::process::Command::from(command).spawn()
    }
    fn pid(&self) -> u32 {
        self.id()
    }
    fn start_kill(&mut self) -> io::Result<()> {
        self.kill()
    }
    fn wait(&mut self) -> impl Future<Output = io::Result<ExitStatus>> + Send {
        self.status()
    }
}

/// `sleep 30`, running for as long as the scope lasts.
fn sleeper<C: Child>() -> impl IntoContext<Value = C, Error = io::Error> {
    resource(
        async || {
            let mut command = Command::new("sleep");
            command.arg("30");
            let child = C::spawn(command)?;
            say("enter", format!("spawned `sleep 30`, pid {}", child.pid()));
            Ok(child)
        },
        async |mut child: C, outcome: Outcome<'_, io::Error>| {
            let pid = child.pid();
            child.start_kill()?;
            let status = child.wait().await?; // reaps it: no zombie is left behind
            say("exit", format!("killed and reaped pid {pid} ({outcome:?}): {status}"));
            Ok(())
        },
    )
    .on_drop(|mut child: C| {
        // Inside `Drop`, nothing can be awaited: send the signal and leave the reaping to the
        // runtime, which collects the children whose handles were dropped (tokio's orphan
        // queue, async-process's reaper thread).
        let killed = child.start_kill();
        say("drop", format!("sent SIGKILL to pid {} without waiting: {killed:?}", child.pid()));
    })
}

/// Whether the process exists, running or as a zombie waiting to be reaped.
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Every scope, on whatever runtime polls it; `sleep` is that runtime's timer.
pub async fn run<C: Child, S: Future<Output = ()> + Send>(
    sleep: fn(Duration) -> S,
) -> Result<(), Box<dyn Error>> {
    println!("completed: the exit kills the child and waits for it");
    let pid = with(sleeper::<C>(), async |child| {
        sleep(Duration::from_millis(10)).await; // the child's work...
        Ok(child.pid())
    })
    .await?;
    assert!(!exists(pid), "pid {pid} is gone");

    println!("panicked: the exit runs first, then the panic resumes (its message below is expected)");
    let mut pid = 0;
    let panicked =
        AssertUnwindSafe(with(sleeper::<C>(), async |child| -> Result<(), async_with::Error<io::Error>> {
            pid = child.pid();
            panic!("the body panicked");
        }))
        .catch_unwind()
        .await;
    assert!(panicked.is_err() && !exists(pid), "the panic came through, and pid {pid} is gone");

    println!("cancelled: a timeout interrupts the body, the exit still awaits the kill");
    let err = Scope::new()
        .cancel_on(sleep(Duration::from_millis(50)))
        .with(sleeper::<C>(), async |child| {
            pid = child.pid();
            child.wait().await?; // thirty seconds...
            Ok(())
        })
        .await
        .expect_err("the timeout fires first");
    assert!(err.is_cancelled() && !exists(pid), "cancelled, and pid {pid} is gone");

    println!("dropped: a select drops the scope; the fallback kills, the runtime reaps");
    let scope = Box::pin(with(sleeper::<C>(), async |child| {
        pid = child.pid();
        child.wait().await?;
        Ok(())
    }));
    match select(scope, pin!(sleep(Duration::from_millis(50)))).await {
        Either::Left(_) => unreachable!("the child sleeps for thirty seconds"),
        Either::Right(((), scope)) => drop(scope), // the scope's future, stopped mid-body
    }
    // The reaping happens in the background: give it a moment, up to five seconds.
    for _ in 0..500 {
        if !exists(pid) {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert!(!exists(pid), "pid {pid} was reaped by the runtime");
    say("main", format!("pid {pid} is gone"));
    Ok(())
}

pub fn on_tokio() -> Result<(), Box<dyn Error>> {
    println!("== child_process on tokio ==");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run::<tokio::process::Child, _>(tokio::time::sleep))
}

pub fn on_smol() -> Result<(), Box<dyn Error>> {
    println!("== child_process on smol ==");
    smol::block_on(run::<smol::process::Child, _>(|duration| async move {
        smol::Timer::after(duration).await;
    }))
}

fn main() -> Result<(), Box<dyn Error>> {
    on_tokio()?;
    on_smol()
}
