//! Cooperative cancellation: a token any number of scopes can listen to.
//!
//! A scope is cancelled cooperatively by a *signal*, any future (see
//! [`Scope::cancel_on`](crate::Scope::cancel_on)): a timer of any runtime, a channel, or a
//! [`CancellationToken`]. This module provides the token: cancel it from anywhere (any thread,
//! any task, synchronously), and every scope waiting on it, or on one of its child tokens, is
//! cancelled. It depends on no runtime: waiting uses `event-listener`.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};
use std::sync::Mutex;

use event_listener::{Event, EventListener};

/// A cancellation token: [`cancel`](CancellationToken::cancel) it from anywhere, and every
/// [`cancelled`](CancellationToken::cancelled) future of it, and of its child tokens, completes.
///
/// Cloning gives another handle to the same token. A [`child_token`](CancellationToken::child_token)
/// is cancelled with its parent, but cancelling the child leaves the parent alone.
///
/// ```
/// use async_with::{resource, CancellationToken, Outcome, Scope};
///
/// # futures::executor::block_on(async {
/// let token = CancellationToken::new();
/// let stop = token.clone();
/// let conn = resource(async || Ok::<_, String>(()), async |(), outcome: Outcome<'_, String>| {
///     assert!(outcome.is_cancelled()); // the exit still runs, and knows why
///     Ok(())
/// });
/// let err = Scope::new()
///     .cancel_on(token.cancelled())
///     .with(conn, async |_| {
///         stop.cancel(); // from anywhere: another task, a signal handler, a UI
///         std::future::pending::<Result<(), async_with::Error<String>>>().await
///     })
///     .await
///     .unwrap_err();
/// assert!(err.is_cancelled());
/// # });
/// ```
#[derive(Clone)]
pub struct CancellationToken {
    node: Arc<Node>,
}

struct Node {
    cancelled: AtomicBool,
    /// Set (under the `children` lock, before `cancelled`) by the cancel that won.
    reason: std::sync::OnceLock<&'static str>,
    event: Event,
    children: Mutex<Vec<Weak<Node>>>,
}

impl fmt::Debug for CancellationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancellationToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

impl Default for CancellationToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancellationToken {
    /// A token that is not cancelled yet.
    ///
    /// ```
    /// let token = async_with::CancellationToken::new();
    /// assert!(!token.is_cancelled());
    /// ```
    pub fn new() -> Self {
        CancellationToken { node: Arc::new(Node::new(false)) }
    }

    /// Cancels this token and every child token, waking every future waiting on them. Idempotent.
    ///
    /// ```
    /// let token = async_with::CancellationToken::new();
    /// token.cancel();
    /// token.cancel();
    /// assert!(token.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.node.cancel(None);
    }

    /// Cancels this token and every child token, as [`cancel`](CancellationToken::cancel) does,
    /// giving a reason: a scope cancelled by it says so in
    /// [`Error::cancelled_by`](crate::Error::cancelled_by). The first cancellation wins: the
    /// reason of a token already cancelled stays what it was.
    ///
    /// ```
    /// let parent = async_with::CancellationToken::new();
    /// let child = parent.child_token();
    /// parent.cancel_with("shutting down");
    /// parent.cancel_with("another reason"); // already cancelled: changes nothing
    /// assert_eq!(parent.reason(), Some("shutting down"));
    /// assert_eq!(child.reason(), Some("shutting down")); // children get their parent's reason
    /// ```
    pub fn cancel_with(&self, reason: &'static str) {
        self.node.cancel(Some(reason));
    }

    /// The reason given to [`cancel_with`](CancellationToken::cancel_with) (by this token or
    /// the ancestor whose cancellation reached it); `None` while the token is not cancelled, or
    /// when it was cancelled without one.
    ///
    /// ```
    /// let token = async_with::CancellationToken::new();
    /// assert_eq!(token.reason(), None);
    /// token.cancel();
    /// assert_eq!(token.reason(), None);
    /// ```
    pub fn reason(&self) -> Option<&'static str> {
        // Set before the flag: a token seen cancelled has its reason in place.
        if self.is_cancelled() { self.node.reason.get().copied() } else { None }
    }

    /// `true` once this token (or one of its ancestors) was cancelled.
    ///
    /// ```
    /// let parent = async_with::CancellationToken::new();
    /// let child = parent.child_token();
    /// parent.cancel();
    /// assert!(child.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.node.cancelled.load(Ordering::Acquire)
    }

    /// A token cancelled when this one is; cancelling it leaves this one alone.
    ///
    /// ```
    /// let parent = async_with::CancellationToken::new();
    /// let child = parent.child_token();
    /// child.cancel();
    /// assert!(!parent.is_cancelled());
    /// ```
    pub fn child_token(&self) -> CancellationToken {
        let child = Arc::new(Node::new(false));
        let mut children = self.node.children.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the lock that `cancel` takes to walk the children, so a child made
        // while the parent is being cancelled is either walked or sees the flag here.
        if self.is_cancelled() {
            child.cancel(self.reason());
        } else {
            children.retain(|weak| weak.strong_count() > 0); // forget dropped children
            children.push(Arc::downgrade(&child));
        }
        CancellationToken { node: child }
    }

    /// A future that completes once the token is cancelled: a signal for
    /// [`Scope::cancel_on`](crate::Scope::cancel_on).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let token = async_with::CancellationToken::new();
    /// let cancelled = token.cancelled();
    /// token.cancel();
    /// cancelled.await;
    /// # });
    /// ```
    pub fn cancelled(&self) -> WaitForCancellation {
        WaitForCancellation { token: self.clone(), listener: None }
    }
}

impl Node {
    fn new(cancelled: bool) -> Self {
        Node {
            cancelled: AtomicBool::new(cancelled),
            reason: std::sync::OnceLock::new(),
            event: Event::new(),
            children: Mutex::new(Vec::new()),
        }
    }

    fn cancel(&self, reason: Option<&'static str>) {
        // Walk the tree with an explicit stack: a deep chain of child tokens must not overflow.
        let mut pending = Vec::new();
        self.cancel_one(reason, &mut pending);
        while let Some(node) = pending.pop() {
            node.cancel_one(reason, &mut pending);
        }
    }

    fn cancel_one(&self, reason: Option<&'static str>, pending: &mut Vec<Arc<Node>>) {
        let children = {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            // Every cancel takes the lock: the one that finds the flag clear wins, and sets its
            // reason before the flag, so that whoever sees the flag sees the reason.
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            if let Some(reason) = reason {
                let _ = self.reason.set(reason);
            }
            self.cancelled.store(true, Ordering::Release);
            core::mem::take(&mut *children)
        };
        self.event.notify(usize::MAX);
        pending.extend(children.iter().filter_map(Weak::upgrade));
    }
}

/// The future of [`CancellationToken::cancelled`].
///
/// ```
/// let token = async_with::CancellationToken::new();
/// let _signal: async_with::WaitForCancellation = token.cancelled();
/// ```
#[must_use = "futures do nothing unless you .await or poll them"]
pub struct WaitForCancellation {
    token: CancellationToken,
    listener: Option<EventListener>,
}

impl fmt::Debug for WaitForCancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitForCancellation").field("token", &self.token).finish()
    }
}

impl Future for WaitForCancellation {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.token.is_cancelled() {
                // The scope polling this signal learns why.
                crate::frame::report_reason(self.token.reason());
                return Poll::Ready(());
            }
            match self.listener.as_mut() {
                // Registered: wait for a notification, then check the flag again.
                Some(listener) => match Pin::new(listener).poll(cx) {
                    Poll::Ready(()) => self.listener = None,
                    Poll::Pending => return Poll::Pending,
                },
                // Register first, then loop to check the flag: a cancel between the check above
                // and the registration is not missed.
                None => {
                    let listener = self.token.node.event.listen();
                    self.listener = Some(listener);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CancellationToken;

    /// A long-lived parent making a child per request must not keep a list entry per request.
    #[test]
    fn a_parent_forgets_its_dropped_children() {
        let parent = CancellationToken::new();
        for _ in 0..10 {
            drop(parent.child_token());
        }
        let kept = parent.child_token();
        assert_eq!(parent.node.children.lock().unwrap().len(), 1);
        parent.cancel();
        assert!(kept.is_cancelled());
    }
}
