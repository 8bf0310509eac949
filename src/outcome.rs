use core::fmt;
use core::future::Future;

/// How the body, or the part of the scope inside a context, ended.
///
/// Every exit is given one: Python's `__aexit__(exc_type, exc, tb)`, Cats Effect's `ExitCase`. It
/// is what the exit sees *at the moment it runs* (guarantee G4), by one precedence rule:
///
/// 1. [`Panicked`](Outcome::Panicked) while a panic is pending (it resumes once every exit ran);
/// 2. else [`Cancelled`](Outcome::Cancelled) once the scope was cancelled, by its own signal or
///    by the scope around it;
/// 3. else [`Failed`](Outcome::Failed) with the *newest* error: after an inner exit fails, the
///    exits outside it see that error, as nested `async with` blocks do in Python;
/// 4. else [`Completed`](Outcome::Completed).
///
/// So a cleanup error never hides a cancellation: an exit that fails after one is kept as a
/// suppressed error, and the exits outside it still see `Cancelled` (in asyncio, the cleanup
/// error would replace the `CancelledError`, a known pitfall).
///
/// ```
/// use async_with::{resource, with, Outcome};
///
/// # futures::executor::block_on(async {
/// let tx = resource(
///     async || Ok::<_, String>(Vec::<&str>::new()),
///     async |log, outcome: Outcome<'_, String>| {
///         match outcome {
///             Outcome::Completed => println!("commit {log:?}"),
///             Outcome::Failed(e) => println!("rollback {log:?}: {e}"),
///             Outcome::Panicked | Outcome::Cancelled => println!("rollback {log:?}"),
///         }
///         Ok(())
///     },
/// );
/// let r = with(tx, async |log| {
///     log.push("insert");
///     Err::<(), _>("constraint violated".to_string().into())
/// })
/// .await;
/// assert_eq!(r.unwrap_err().primary().unwrap(), "constraint violated");
/// # });
/// ```
pub enum Outcome<'a, E> {
    /// Everything inside ran to the end without error.
    Completed,
    /// The body, an enter or an inner exit failed, and the scope was not cancelled first; this
    /// is the newest such error.
    Failed(&'a E),
    /// A panic is propagating; it resumes once every exit has run.
    Panicked,
    /// The scope was cancelled, by its signal or by the scope around it (see the crate docs on
    /// cancellation); errors after that do not change it.
    Cancelled,
}

impl<'a, E> Outcome<'a, E> {
    /// `true` for [`Outcome::Completed`].
    ///
    /// ```
    /// # use async_with::Outcome;
    /// assert!(Outcome::<()>::Completed.is_completed());
    /// ```
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed)
    }

    /// `true` for [`Outcome::Failed`].
    ///
    /// ```
    /// # use async_with::Outcome;
    /// assert!(Outcome::Failed(&"boom").is_failed());
    /// ```
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// `true` for [`Outcome::Panicked`].
    ///
    /// ```
    /// # use async_with::Outcome;
    /// assert!(Outcome::<()>::Panicked.is_panicked());
    /// ```
    pub fn is_panicked(&self) -> bool {
        matches!(self, Outcome::Panicked)
    }

    /// `true` for [`Outcome::Cancelled`].
    ///
    /// ```
    /// # use async_with::Outcome;
    /// assert!(Outcome::<()>::Cancelled.is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Outcome::Cancelled)
    }

    /// The error of [`Outcome::Failed`], if that is the outcome.
    ///
    /// ```
    /// # use async_with::Outcome;
    /// assert_eq!(Outcome::Failed(&7).error(), Some(&7));
    /// assert_eq!(Outcome::<i32>::Completed.error(), None);
    /// ```
    pub fn error(&self) -> Option<&'a E> {
        match *self {
            Outcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> Outcome<'_, E> {
    /// The variant's name, for traces.
    #[cfg(feature = "tracing")]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Outcome::Completed => "Completed",
            Outcome::Failed(_) => "Failed",
            Outcome::Panicked => "Panicked",
            Outcome::Cancelled => "Cancelled",
        }
    }
}

// Written by hand: `&E` is `Copy` whatever `E` is, which derive would not see.
impl<E> Clone for Outcome<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Outcome<'_, E> {}

impl<E: PartialEq> PartialEq for Outcome<'_, E> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Outcome::Failed(a), Outcome::Failed(b)) => a == b,
            (Outcome::Completed, Outcome::Completed)
            | (Outcome::Panicked, Outcome::Panicked)
            | (Outcome::Cancelled, Outcome::Cancelled) => true,
            _ => false,
        }
    }
}

impl<E: Eq> Eq for Outcome<'_, E> {}

impl<E: fmt::Debug> fmt::Debug for Outcome<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => f.write_str("Completed"),
            Outcome::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            Outcome::Panicked => f.write_str("Panicked"),
            Outcome::Cancelled => f.write_str("Cancelled"),
        }
    }
}

/// An exit or finalizer closure seen as a plain function of the outcome, naming its future (as
/// `StepFn` does for steps), so that bounds can say it is `Send`.
#[doc(hidden)]
pub trait OutcomeFn<'a, E: 'a>: FnOnce(Outcome<'a, E>) -> <Self as OutcomeFn<'a, E>>::Future {
    type Future: Future<Output = Result<(), E>>;
}

impl<'a, E: 'a, F, Fut> OutcomeFn<'a, E> for F
where
    F: FnOnce(Outcome<'a, E>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    type Future = Fut;
}
