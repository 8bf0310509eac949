//! A journaling context for the behaviour tests: every enter, body and exit writes one line, so a
//! test states the exact sequence it expects and fails on any wrong order, missing or extra exit.
#![allow(dead_code)]

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_with::{AsyncContext, Outcome};

/// What one enter or exit does after it has yielded once to the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Succeed,
    Fail,
    Panic,
}

#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, line: impl Into<String>) {
        self.0.lock().unwrap().push(line.into());
    }

    /// Everything written so far, leaving it in the journal.
    pub fn take_peek(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Everything written so far, leaving the journal empty.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    pub fn probe(&self, name: &'static str) -> Probe {
        Probe { name, journal: self.clone(), enter: Act::Succeed, exit: Act::Succeed }
    }
}

/// A context named `name` that journals `enter {name}` and `exit {name}: {outcome}`.
#[derive(Debug)]
pub struct Probe {
    pub name: &'static str,
    journal: Journal,
    enter: Act,
    exit: Act,
}

impl Probe {
    pub fn enter(mut self, act: Act) -> Self {
        self.enter = act;
        self
    }

    pub fn exit(mut self, act: Act) -> Self {
        self.exit = act;
        self
    }
}

/// The value a probe gives: the body may record that it used it.
#[derive(Debug)]
pub struct Handle {
    pub name: &'static str,
    pub uses: u32,
}

pub fn describe(outcome: Outcome<'_, String>) -> String {
    match outcome {
        Outcome::Completed => "Completed".into(),
        Outcome::Failed(e) => format!("Failed({e})"),
        Outcome::Panicked => "Panicked".into(),
        Outcome::Cancelled => "Cancelled".into(),
    }
}

impl AsyncContext for Probe {
    type Value = Handle;
    type Error = String;

    async fn enter(&mut self) -> Result<Handle, String> {
        yield_now().await;
        let name = self.name;
        self.journal.push(format!("enter {name}"));
        match self.enter {
            Act::Succeed => Ok(Handle { name, uses: 0 }),
            Act::Fail => Err(format!("enter {name} failed")),
            Act::Panic => panic!("enter {name} panicked"),
        }
    }

    async fn exit(self, handle: Handle, outcome: Outcome<'_, String>) -> Result<(), String> {
        assert_eq!(handle.name, self.name, "an exit got another context's value");
        yield_now().await;
        let name = self.name;
        self.journal.push(format!("exit {name}: {}", describe(outcome)));
        match self.exit {
            Act::Succeed => Ok(()),
            Act::Fail => Err(format!("exit {name} failed")),
            Act::Panic => panic!("exit {name} panicked"),
        }
    }

    fn exit_on_drop(self, handle: Handle) {
        assert_eq!(handle.name, self.name, "a fallback got another context's value");
        self.journal.push(format!("fallback {}", self.name));
    }
}

/// Returns `Pending` once (waking itself), so that every enter and exit really suspends.
pub fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    YieldNow(false)
}

/// The message of a panic payload from `panic!("...")`.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "<non-string payload>".to_string(),
        },
    }
}

/// Runs `future` to completion on `futures::executor`, returning the panic message if it panicked.
pub fn block_on_catching<F: Future>(future: F) -> Result<F::Output, String> {
    catch_unwind(AssertUnwindSafe(|| futures::executor::block_on(future))).map_err(panic_message)
}

/// A scope whose errors-during-panic hook writes `hook: {error}` to the journal.
pub fn journaling_scope(journal: &Journal) -> async_with::Scope<impl FnMut(String) + use<>> {
    let journal = journal.clone();
    async_with::Scope::new().on_error_during_panic(move |e: String| journal.push(format!("hook: {e}")))
}

/// Awaits `future`, returning the panic message if it panicked (for use inside any executor).
pub async fn catching<F: Future>(future: F) -> Result<F::Output, String> {
    use futures::FutureExt;
    AssertUnwindSafe(future).catch_unwind().await.map_err(panic_message)
}

/// A signal that completes on its `n + 1`-th poll (0: the first poll completes it). It wakes
/// its task each time, so that it is polled again whatever the scope waits for.
pub fn ready_on_poll(n: usize) -> impl Future<Output = ()> + Send {
    let mut polls = 0;
    std::future::poll_fn(move |cx| {
        polls += 1;
        if polls > n {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
}
