//! Where exit errors go when they cannot reach the caller (guarantee G6).
//!
//! A scope that catches a panic runs its remaining exits and then resumes the panic with its
//! original payload. The caller then gets the panic, not a `Result`, so the errors the scope
//! collected (before the panic, or from exits that failed while it was pending) cannot ride on
//! it. They are handed, one by one and in the order they happened, to the scope's
//! [`ErrorHook`]: the one given with [`Scope::on_error_during_panic`](crate::Scope::on_error_during_panic),
//! or else the process-wide one, which prints them to standard error unless replaced with
//! [`set_error_hook`].

use core::fmt;

/// Receives the errors a scope could not return because a panic was propagating.
///
/// Implemented for every `FnMut(E)` closure, and by [`GlobalHook`], the default.
///
/// ```
/// use async_with::{resource, Outcome, Scope};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let ctx = resource(async || Ok::<_, String>(()), async |(), _: Outcome<'_, String>| Err("close failed".to_string()));
/// let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
///     futures::executor::block_on(
///         Scope::new()
///             .on_error_during_panic(move |e: String| sink.lock().unwrap().push(e))
///             .with(ctx, async |_| -> Result<(), async_with::Error<String>> { panic!("body panicked") }),
///     )
/// }));
/// assert!(panicked.is_err());
/// assert_eq!(*seen.lock().unwrap(), ["close failed"]);
/// ```
pub trait ErrorHook<E> {
    /// Takes one error that the scope could not return.
    fn report(&mut self, error: E);
}

impl<E, F: FnMut(E)> ErrorHook<E> for F {
    fn report(&mut self, error: E) {
        self(error)
    }
}

/// The default [`ErrorHook`]: forwards each error to the process-wide hook.
///
/// That hook writes `async-with: an exit error could not be returned: {error:?}` to standard
/// error, unless [`set_error_hook`] replaced it. Without the `std` feature panics are not caught,
/// so there is nothing to report.
///
/// ```
/// use async_with::{GlobalHook, Scope};
/// let scope: Scope<GlobalHook> = Scope::new();
/// # let _ = scope;
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct GlobalHook;

impl<E: fmt::Debug> ErrorHook<E> for GlobalHook {
    fn report(&mut self, error: E) {
        #[cfg(feature = "std")]
        global::report(&error);
        #[cfg(not(feature = "std"))]
        drop(error);
    }
}

#[cfg(feature = "std")]
pub use global::{set_drop_hook, set_error_hook};

/// What the process-wide drop hook is told: a scope future was dropped before it finished, and
/// its remaining contexts ran their synchronous fallbacks instead of their async exits (see
/// [`Scope`](crate::Scope) on cancellation by drop).
///
/// ```
/// async_with::set_drop_hook(|dropped| eprintln!("{dropped}"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    scope: &'static str,
    context: &'static str,
}

impl Dropped {
    /// Which kind of scope was dropped: `"with"` or `"scope"`.
    ///
    /// ```
    /// async_with::set_drop_hook(|dropped| assert!(["with", "scope"].contains(&dropped.scope())));
    /// ```
    pub fn scope(&self) -> &'static str {
        self.scope
    }

    /// The type of the context (or tuple of contexts) whose fallbacks ran, as
    /// [`core::any::type_name`] writes it; for an exit stack, the stack's type.
    ///
    /// ```
    /// async_with::set_drop_hook(|dropped| eprintln!("{} fell back", dropped.context()));
    /// ```
    pub fn context(&self) -> &'static str {
        self.context
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a `{}` scope over `{}` was dropped before it finished: its remaining contexts ran their synchronous fallbacks",
            self.scope, self.context
        )
    }
}

/// Tells the process-wide drop hook (std only; without std there is no hook to set).
pub(crate) fn report_dropped(scope: &'static str, context: &'static str) {
    #[cfg(feature = "std")]
    global::dropped(&Dropped { scope, context });
    #[cfg(not(feature = "std"))]
    let _ = Dropped { scope, context };
}

#[cfg(feature = "std")]
mod global {
    use alloc::sync::Arc;
    use core::fmt;
    use std::sync::RwLock;

    // Shared, not boxed: a hook is cloned out of its slot and called after the lock is released,
    // so that it may replace the hooks itself (or be replaced from another thread) while it runs.
    type Hook = Arc<dyn Fn(&dyn fmt::Debug) + Send + Sync>;
    type DropHook = Arc<dyn Fn(&super::Dropped) + Send + Sync>;

    static HOOK: RwLock<Option<Hook>> = RwLock::new(None);
    static DROP_HOOK: RwLock<Option<DropHook>> = RwLock::new(None);

    /// Stores `hook` in `slot` and drops the hook it replaces after releasing the lock: that
    /// hook's destructor is user code, which may set a hook in turn.
    fn replace<T: ?Sized>(slot: &RwLock<Option<Arc<T>>>, hook: Arc<T>) {
        let old = {
            let mut slot = slot.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            slot.replace(hook)
        };
        drop(old);
    }

    /// A clone of the hook in `slot`, taken under the read lock, which is released on return.
    fn current<T: ?Sized>(slot: &RwLock<Option<Arc<T>>>) -> Option<Arc<T>> {
        slot.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Replaces the process-wide hook for errors that cannot be returned: exit errors while a
    /// panic propagates (unless the scope has its own hook, see
    /// [`Scope::on_error_during_panic`](crate::Scope::on_error_during_panic)), and the errors of
    /// scopes finished in a detached task (see [`detach_on_drop`](crate::detach_on_drop)).
    ///
    /// Like [`std::panic::set_hook`], it applies on every thread. By default the errors are printed
    /// to standard error. The hook may call `set_error_hook` itself: the new hook takes effect
    /// from the next error on. A hook that panics does not stop the errors after it from being
    /// offered (the panic is printed by the panic hook, then swallowed).
    ///
    /// ```
    /// async_with::set_error_hook(|error| log_somewhere(format!("{error:?}")));
    /// # fn log_somewhere(_: String) {}
    /// ```
    pub fn set_error_hook(hook: impl Fn(&dyn fmt::Debug) + Send + Sync + 'static) {
        replace(&HOOK, Arc::new(hook) as Hook);
    }

    /// Replaces the process-wide hook told when a scope future is dropped before it finished (its
    /// contexts then ran their synchronous fallbacks instead of their async exits).
    ///
    /// By default, with the `tracing` feature, a `warn` event is emitted; without it, debug builds
    /// (`debug_assertions`) write one line to standard error and release builds say nothing. The
    /// line names the scope and its context type, and how to avoid it: a runtime's `timeout` or a
    /// `select!` drops the scope, where [`Scope::cancel_on`](crate::Scope::cancel_on) would have
    /// run the async exits. `set_drop_hook(|_| {})` silences it.
    ///
    /// The hook runs inside the scope future's `Drop`, possibly while a panic unwinds: a panic in
    /// it is printed by the panic hook and then swallowed, never a double panic or an abort. It
    /// may call `set_drop_hook` (or [`set_error_hook`]) itself: the new hook takes effect from
    /// the next report on.
    ///
    /// ```
    /// async_with::set_drop_hook(|dropped| eprintln!("warning: {dropped}"));
    /// ```
    pub fn set_drop_hook(hook: impl Fn(&super::Dropped) + Send + Sync + 'static) {
        replace(&DROP_HOOK, Arc::new(hook) as DropHook);
    }

    /// Called from the `Drop` of a scope future, maybe during unwinding: nothing may escape.
    pub(super) fn dropped(report: &super::Dropped) {
        match current(&DROP_HOOK) {
            // The clone is dropped in there too: it is the last one if the hook was replaced
            // meanwhile, and then its destructor (user code) runs.
            Some(hook) => crate::catch_unwind::quietly(move || hook(report)),
            None => warn_dropped(report),
        }
    }

    /// The default drop hook: a dropped scope should not go unnoticed while developing.
    fn warn_dropped(report: &super::Dropped) {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            scope = report.scope(),
            context = report.context(),
            "{report}; a timeout through `Scope::cancel_on` would have run the async exits (`async_with::set_drop_hook(|_| {{}})` silences this)"
        );
        // `eprintln!`, so that test harnesses capture it; inside `quietly`, since it panics when
        // standard error is gone, and this runs in a `Drop`.
        #[cfg(all(not(feature = "tracing"), debug_assertions))]
        crate::catch_unwind::quietly(|| {
            std::eprintln!(
                "async-with: {report}; a timeout through `Scope::cancel_on` would have run the async exits (`async_with::set_drop_hook(|_| {{}})` silences this)"
            )
        });
        #[cfg(all(not(feature = "tracing"), not(debug_assertions)))]
        let _ = report;
    }

    /// May panic if the hook does: the callers guard each call.
    pub(super) fn report(error: &dyn fmt::Debug) {
        match current(&HOOK) {
            Some(hook) => hook(error),
            None => std::eprintln!("async-with: an exit error could not be returned: {error:?}"),
        }
    }
}
