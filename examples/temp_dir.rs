//! A temporary directory as a generator context: created on enter, removed with everything in it
//! on exit, by the runtime's own async file API, also when the body fails. Python's
//! `tempfile.TemporaryDirectory`, written the `@asynccontextmanager` way: setup, `provide`,
//! teardown, in one closure that keeps the path in scope.
//!
//! Three scopes: a body that writes files and completes; one that fails half-way (the caller gets
//! its error, the directory is removed all the same); and an exit stack with one scratch
//! directory per shard, entered in a loop, whose body fails after the second. After each, every
//! directory must be gone.
//!
//! The context is written once, over the three runtimes' file APIs, and runs on smol, tokio and
//! async-std.
//!
//! Run with `cargo run --example temp_dir`.

use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_with::{ExitStack, IntoContext, Outcome, context, scope, with};

fn say(who: &str, what: impl std::fmt::Display) {
    println!("  {who:<5} {what}");
}

/// The file operations the example needs. `smol::fs`, `tokio::fs` and `async_std::fs` have them
/// all, with the same names, but no common trait.
pub trait Fs: Send + Sync + 'static {
    fn create_dir(path: &Path) -> impl Future<Output = io::Result<()>> + Send;
    fn write(path: &Path, contents: &str) -> impl Future<Output = io::Result<()>> + Send;
    fn read_to_string(path: &Path) -> impl Future<Output = io::Result<String>> + Send;
    fn remove_dir_all(path: &Path) -> impl Future<Output = io::Result<()>> + Send;
}

/// Defines a unit type whose `Fs` functions are those of the module `$fs`.
macro_rules! runtime_fs {
    ($name:ident, $($fs:ident)::+) => {
        pub struct $name;

        impl Fs for $name {
            fn create_dir(path: &Path) -> impl Future<Output = io::Result<()>> + Send {
                $($fs)::+::create_dir(path)
            }
            fn write(path: &Path, contents: &str) -> impl Future<Output = io::Result<()>> + Send {
                $($fs)::+::write(path, contents)
            }
            fn read_to_string(path: &Path) -> impl Future<Output = io::Result<String>> + Send {
                $($fs)::+::read_to_string(path)
            }
            fn remove_dir_all(path: &Path) -> impl Future<Output = io::Result<()>> + Send {
                $($fs)::+::remove_dir_all(path)
            }
        }
    };
}

runtime_fs!(Smol, smol::fs);
runtime_fs!(Tokio, tokio::fs);
runtime_fs!(AsyncStd, async_std::fs);

/// A new, empty directory under the system's temporary directory, removed on exit.
fn temp_dir<F: Fs>() -> impl IntoContext<Value = PathBuf, Error = io::Error> {
    context(async |mut cx| {
        let path = create_unique::<F>().await?;
        say("enter", format!("created {}", path.display()));
        let (path, outcome) = cx.provide(path).await; // the body runs here
        F::remove_dir_all(&path).await?;
        let how = match outcome {
            Outcome::Failed(e) => format!("the body failed: {e}"),
            _ => format!("{outcome:?}"),
        };
        say("exit", format!("removed {} ({how})", path.display()));
        Ok(())
    })
}

/// Creates a directory whose name nobody else has taken. `create_dir` fails on an existing name,
/// so a name left over by another process is skipped, never reused.
async fn create_unique<F: Fs>() -> io::Result<PathBuf> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("async-with-{}-{n}", std::process::id()));
        match F::create_dir(&path).await {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            created => return created.map(|()| path),
        }
    }
}

/// Every scope, with the file API of `F`.
pub async fn run<F: Fs>() -> Result<(), Box<dyn Error>> {
    println!("completed: the directory and its files are removed");
    let mut seen = PathBuf::new();
    let lines = with(temp_dir::<F>(), async |dir| {
        seen = dir.clone();
        F::write(&dir.join("orders.csv"), "id,item\n1,apples\n2,bananas\n").await?;
        F::create_dir(&dir.join("cache")).await?;
        F::write(&dir.join("cache").join("index"), "2").await?;
        let csv = F::read_to_string(&dir.join("orders.csv")).await?;
        Ok(csv.lines().count())
    })
    .await?;
    assert_eq!(lines, 3);
    assert!(!seen.exists(), "{} is gone", seen.display());

    println!("failed: the caller gets the body's error, the directory is removed all the same");
    let err = with(temp_dir::<F>(), async |dir| {
        seen = dir.clone();
        F::write(&dir.join("draft.txt"), "half-written").await?;
        Ok(F::read_to_string(&dir.join("config.toml")).await?) // there is no such file
    })
    .await
    .expect_err("config.toml does not exist");
    say("main", format!("error: {err}"));
    assert_eq!(err.primary().map(io::Error::kind), Some(io::ErrorKind::NotFound));
    assert!(!seen.exists(), "{} is gone", seen.display());

    println!("an exit stack: one directory per shard, entered in a loop; removed newest first");
    let mut dirs = Vec::new();
    let err = scope(async |stack: &mut ExitStack<io::Error>| {
        for shard in ["eu", "us", "ap"] {
            let dir = stack.enter(temp_dir::<F>()).await?;
            dirs.push(dir.clone());
            F::write(&dir.join("shard"), shard).await?;
            if shard == "us" {
                return Err(io::Error::other("shard us is unreachable").into());
            }
        }
        Ok(())
    })
    .await
    .expect_err("shard us fails");
    say("main", format!("error: {err}"));
    assert_eq!(dirs.len(), 2, "ap was never entered");
    assert!(dirs.iter().all(|dir| !dir.exists()), "{dirs:?} are gone");
    Ok(())
}

pub fn on_smol() -> Result<(), Box<dyn Error>> {
    println!("== temp_dir on smol ==");
    smol::block_on(run::<Smol>())
}

pub fn on_tokio() -> Result<(), Box<dyn Error>> {
    println!("== temp_dir on tokio ==");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run::<Tokio>())
}

pub fn on_async_std() -> Result<(), Box<dyn Error>> {
    println!("== temp_dir on async-std ==");
    async_std::task::block_on(run::<AsyncStd>())
}

fn main() -> Result<(), Box<dyn Error>> {
    on_smol()?;
    on_tokio()?;
    on_async_std()
}
