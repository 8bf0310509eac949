use alloc::vec::Vec;
use core::fmt;

use crate::origin::Origin;

/// Every error a scope produced, in causal order (guarantee G5).
///
/// The *primary* error is the first one: an enter's, the body's, or, when both succeeded, the first
/// exit's. Every later error (from exits that ran after it) is kept as a *suppressed* error, in the
/// order it happened, as Java's `addSuppressed`, TC39's `SuppressedError` and resourcet's
/// `ResourceCleanupException` do. A scope that was cancelled has no primary error: it
/// [`is_cancelled`](Error::is_cancelled), and the errors of the exits that ran after the
/// cancellation are all suppressed ones.
///
/// ```
/// use async_with::{resource, with, Outcome};
///
/// # futures::executor::block_on(async {
/// let close = |name: &'static str| {
///     resource(
///         async move || Ok::<_, String>(name),
///         async |name, _: Outcome<'_, String>| Err(format!("{name}: close failed")),
///     )
/// };
/// let err = with((close("a"), close("b")), async |_| Err::<(), _>("body failed".to_string().into()))
///     .await
///     .unwrap_err();
/// assert_eq!(err.primary().unwrap(), "body failed");
/// // `b` was exited first: its error comes first.
/// assert_eq!(err.suppressed(), ["b: close failed", "a: close failed"]);
/// assert_eq!(err.to_string(), "body failed (and 2 suppressed errors: b: close failed; a: close failed)");
/// assert_eq!(err.into_primary().unwrap(), "body failed");
/// # });
/// ```
pub struct Error<E> {
    /// The primary error, or why the scope was cancelled (one or the other, so that they share
    /// their bytes).
    primary: Result<E, Cause>,
    /// Where the primary error came from.
    origin: Origin,
    suppressed: Vec<Suppressed<E>>,
}

impl<E> Error<E> {
    pub(crate) fn failed(primary: E, origin: Origin, suppressed: Vec<Suppressed<E>>) -> Self {
        Error { primary: Ok(primary), origin, suppressed }
    }

    pub(crate) fn cancelled(suppressed: Vec<Suppressed<E>>, cause: Cause) -> Self {
        Error { primary: Err(cause), origin: Origin::UNKNOWN, suppressed }
    }

    /// The primary error with its origin (or, when cancelled, why), and the suppressed ones: what
    /// a scope around this one takes in, origins and all.
    pub(crate) fn into_origins(self) -> Origins<E> {
        let Error { primary, origin, suppressed } = self;
        (primary.map(|primary| (primary, origin)), suppressed)
    }

    /// The first error, or `None` when the scope was cancelled.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Err::<(), _>("refused"), async |(), _: Outcome<'_, &str>| Ok(()));
    /// let err = with(ctx, async |_| Ok(())).await.unwrap_err();
    /// assert_eq!(err.primary(), Some(&"refused"));
    /// # });
    /// ```
    pub fn primary(&self) -> Option<&E> {
        self.primary.as_ref().ok()
    }

    /// Where the primary error came from: the enter, the body or the exit, and of which context.
    /// `None` when the scope was cancelled, and for an error made with `From` that no scope has
    /// recorded yet.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome, Step};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Ok(())).await.unwrap_err();
    /// assert_eq!(err.origin().map(|origin| origin.step()), Some(Step::Exit));
    /// # });
    /// ```
    pub fn origin(&self) -> Option<Origin> {
        match self.primary {
            Ok(_) if self.origin.is_known() => Some(self.origin),
            _ => None,
        }
    }

    /// The errors that happened after the primary one (or after the cancellation), oldest first,
    /// each with its [`origin`](Suppressed::origin). A [`Suppressed`] derefs to the error and
    /// compares equal to what the error equals, so the list reads as a list of errors:
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome, Step};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// assert_eq!(err.suppressed(), ["close"]);
    /// assert_eq!(err.suppressed()[0].len(), 5); // a `&str` method, through `Deref`
    /// assert_eq!(err.suppressed()[0].origin().unwrap().step(), Step::Exit);
    /// # });
    /// ```
    pub fn suppressed(&self) -> &[Suppressed<E>] {
        &self.suppressed
    }

    /// `true` when the scope ended because it was cancelled rather than because something failed.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Ok(()));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// assert!(!err.is_cancelled());
    /// # });
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.primary.is_err()
    }

    /// Why the scope was cancelled: which of its signals fired, or that the scope around it was
    /// cancelled, with the reason the signal gave, if any. `None` when it was not cancelled
    /// (and for an error made with `From`, which no scope produced). A body that passes an inner
    /// scope's cancellation on with `?` passes its cause on too: the error says why the inner
    /// scope was cancelled, as it says where each of its errors came from.
    ///
    /// ```
    /// use async_with::{resource, CancellationToken, CancelledBy, Outcome, Scope};
    ///
    /// # futures::executor::block_on(async {
    /// let shutdown = CancellationToken::new();
    /// let conn = resource(async || Ok::<_, String>(()), async |(), _: Outcome<'_, String>| Ok(()));
    /// let err = Scope::new()
    ///     .cancel_on(std::future::pending::<()>()) // signal 0: a timer, say
    ///     .cancel_on(shutdown.cancelled()) // signal 1
    ///     .with(conn, async |()| {
    ///         shutdown.cancel_with("shutting down");
    ///         std::future::pending::<Result<(), _>>().await
    ///     })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.cancelled_by(), Some(CancelledBy::Signal { index: 1, reason: Some("shutting down") }));
    /// assert_eq!(format!("{err:#}"), "the scope was cancelled (by signal 1 of `cancel_on`: shutting down)");
    /// # });
    /// ```
    pub fn cancelled_by(&self) -> Option<CancelledBy> {
        self.primary.as_ref().err().and_then(|cause| cause.cancelled_by())
    }

    /// All the errors in the order they happened: the primary one first, then the suppressed ones.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// assert_eq!(err.iter().collect::<Vec<_>>(), [&"body", &"close"]);
    /// # });
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.primary().into_iter().chain(self.suppressed.iter().map(Suppressed::error))
    }

    /// Back to a plain `E`, for a `?` in a function that returns `Result<_, E>`: the primary
    /// error, or, when the scope was cancelled, `E::from(Cancelled)`. An `E` holds one error, so
    /// the suppressed ones go to the process-wide error hook ([`set_error_hook`](crate::set_error_hook);
    /// by default they are printed to standard error), one by one and in order: none is lost
    /// silently. Use [`into_parts`](Error::into_parts) to keep them yourself.
    ///
    /// `From<Cancelled>` is implemented for `String`, `std::io::Error` (of kind `Interrupted`),
    /// and every `std::error::Error` box (through `Cancelled`'s own `Error` impl); implement it for
    /// your error type to use this with it.
    ///
    /// ```
    /// use async_with::{resource, with, Error, Outcome};
    /// use std::io;
    ///
    /// async fn read_config() -> io::Result<usize> {
    ///     let file = resource(async || Ok(vec![1_u8, 2, 3]), async |_, _: Outcome<'_, io::Error>| Ok(()));
    ///     let len = with(file, async |bytes| Ok(bytes.len())).await.map_err(Error::into_error)?;
    ///     Ok(len)
    /// }
    /// # assert_eq!(futures::executor::block_on(read_config()).unwrap(), 3);
    /// ```
    ///
    /// When `E` is a `std::error::Error` (as `io::Error` or a `thiserror` enum are), `Error<E>` is
    /// one too, so `?` converts it into `Box<dyn Error + Send + Sync>` or `anyhow::Error`
    /// directly, every error kept in the box:
    ///
    /// ```
    /// use async_with::{resource, with, Outcome};
    /// use std::io;
    ///
    /// async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    ///     let file = resource(async || Ok(()), async |(), _: Outcome<'_, io::Error>| Ok(()));
    ///     with(file, async |()| Ok(())).await?; // `Error<io::Error>` into the box
    ///     Ok(())
    /// }
    /// # futures::executor::block_on(run()).unwrap();
    /// ```
    #[cfg(feature = "std")]
    pub fn into_error(self) -> E
    where
        E: From<Cancelled> + fmt::Debug,
    {
        use crate::hook::ErrorHook;
        let Error { primary, suppressed, .. } = self;
        let mut hook = crate::hook::GlobalHook;
        for error in suppressed {
            hook.report(error.error);
        }
        primary.unwrap_or_else(|_| E::from(Cancelled))
    }

    /// Gives back the primary error, dropping the suppressed ones; `None` when cancelled.
    ///
    /// The way back to a plain error type, for callers that only want the cause:
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// async fn count() -> Result<usize, std::io::Error> {
    ///     let ctx = resource(async || Ok(vec![1, 2, 3]), async |_, _: Outcome<'_, std::io::Error>| Ok(()));
    ///     with(ctx, async |v| Ok(v.len()))
    ///         .await
    ///         .map_err(|e| e.into_primary().unwrap_or_else(|| std::io::ErrorKind::Interrupted.into()))
    /// }
    /// # assert_eq!(futures::executor::block_on(count()).unwrap(), 3);
    /// ```
    pub fn into_primary(self) -> Option<E> {
        self.primary.ok()
    }

    /// Splits into the primary error (`None` when cancelled) and the suppressed ones.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let (primary, suppressed) = with(ctx, async |_| Ok(())).await.unwrap_err().into_parts();
    /// assert_eq!((primary, suppressed), (Some("close"), vec![]));
    /// # });
    /// ```
    pub fn into_parts(self) -> (Option<E>, Vec<E>) {
        (self.primary.ok(), self.suppressed.into_iter().map(Suppressed::into_error).collect())
    }

    /// Converts every error with `f`, keeping their order and roles.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// let err = err.map(str::len);
    /// assert_eq!((err.primary(), err.suppressed()[0].error()), (Some(&4), &5));
    /// # });
    /// ```
    pub fn map<F>(self, mut f: impl FnMut(E) -> F) -> Error<F> {
        let primary = self.primary.map(&mut f);
        let suppressed = self
            .suppressed
            .into_iter()
            .map(|Suppressed { error, origin }| Suppressed { error: f(error), origin });
        Error { primary, origin: self.origin, suppressed: suppressed.collect() }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display + Send + Sync + 'static> Error<E> {
    /// Boxes into a `dyn Error`, for error types that are not `std::error::Error` themselves.
    ///
    /// `Error<E>` is a [`core::error::Error`] (with the primary error as its `source`) when `E`
    /// is one. `Box<dyn Error + Send + Sync>` and `anyhow::Error` are not (Rust's coherence
    /// rules keep `Box<dyn Error>` from implementing `Error`), so `?` cannot convert an
    /// `Error<Box<dyn Error + Send + Sync>>`; this can. The box displays every error, and its
    /// `source` is the primary error when that is a boxed `dyn Error`.
    ///
    /// ```
    /// use async_with::{resource, with, Outcome};
    /// type BoxError = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// async fn run() -> Result<(), BoxError> {
    ///     let ctx = resource(async || Ok::<_, BoxError>(()), async |(), _: Outcome<'_, BoxError>| Err("close failed".into()));
    ///     with(ctx, async |_| Err(BoxError::from("body failed").into())).await.map_err(async_with::Error::into_boxed)?;
    ///     Ok(())
    /// }
    ///
    /// let err = futures::executor::block_on(run()).unwrap_err();
    /// assert_eq!(err.to_string(), "body failed (and 1 suppressed error: close failed)");
    /// assert_eq!(err.source().unwrap().to_string(), "body failed");
    /// ```
    pub fn into_boxed(self) -> alloc::boxed::Box<dyn core::error::Error + Send + Sync> {
        alloc::boxed::Box::new(Boxed(self))
    }
}

/// The error behind [`Error::into_boxed`].
#[cfg(feature = "std")]
struct Boxed<E>(Error<E>);

#[cfg(feature = "std")]
impl<E: fmt::Debug> fmt::Debug for Boxed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Display> fmt::Display for Boxed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display + 'static> core::error::Error for Boxed<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        use alloc::boxed::Box;
        use core::any::Any;
        let primary: &dyn Any = self.0.primary()?;
        if let Some(e) = primary.downcast_ref::<Box<dyn core::error::Error + Send + Sync>>() {
            return Some(&**e);
        }
        if let Some(e) = primary.downcast_ref::<Box<dyn core::error::Error + Send>>() {
            return Some(&**e);
        }
        primary.downcast_ref::<Box<dyn core::error::Error>>().map(|e| &**e)
    }
}

/// An error of the body's own type, for `?` inside a body: a body returns
/// `Result<T, Error<E>>`, so that `?` works both on the contexts' error type `E` (through this
/// conversion) and on the result of a scope nested inside it (whose `Error` is taken in whole:
/// its primary error, its suppressed ones and its cancellation).
///
/// ```
/// use async_with::{resource, with, Error, Outcome};
///
/// fn parse(s: &str) -> Result<u32, String> { s.parse().map_err(|_| format!("not a number: {s}")) }
///
/// # futures::executor::block_on(async {
/// let ctx = resource(async || Ok::<_, String>("12"), async |_, _: Outcome<'_, String>| Ok(()));
/// let n = with(ctx, async |s| Ok(parse(s)?)).await.unwrap(); // `?` on a `Result<_, String>`
/// assert_eq!(n, 12);
/// let err: Error<String> = "boom".to_string().into();
/// assert_eq!(err.primary().unwrap(), "boom");
/// # });
/// ```
impl<E> From<E> for Error<E> {
    fn from(error: E) -> Self {
        Error::failed(error, Origin::UNKNOWN, Vec::new())
    }
}

/// What [`Error::into_origins`] gives: the primary error with its origin, or why the scope was
/// cancelled; then the suppressed errors.
pub(crate) type Origins<E> = (Result<(E, Origin), Cause>, Vec<Suppressed<E>>);

/// Why a scope is cancelled, compact (a scope future holds one): [`CancelledBy`] for users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cause {
    /// 0: not cancelled; 1: by the scope around; `2 + i`: by the signal of the `i`th `cancel_on`.
    pub(crate) code: u32,
    /// The reason the signal gave (a [`CancellationToken`](crate::CancellationToken) cancelled
    /// with [`cancel_with`](crate::CancellationToken::cancel_with)), or the parent's.
    pub(crate) reason: Option<&'static str>,
}

impl Cause {
    pub(crate) const NONE: Cause = Cause { code: 0, reason: None };

    /// Cancelled with the scope around, whose cause was `parent`.
    #[inline]
    pub(crate) fn parent(parent: Cause) -> Cause {
        Cause { code: 1, reason: parent.reason }
    }

    /// Cancelled by the signal of the `index`th `cancel_on`.
    #[inline]
    pub(crate) fn signal(index: u32, reason: Option<&'static str>) -> Cause {
        Cause { code: index.saturating_add(2), reason }
    }

    /// What [`crate::Error::cancelled_by`] says.
    pub(crate) fn cancelled_by(self) -> Option<CancelledBy> {
        match self.code {
            0 => None,
            1 => Some(CancelledBy::Parent { reason: self.reason }),
            n => Some(CancelledBy::Signal { index: (n - 2) as usize, reason: self.reason }),
        }
    }
}

/// Why a scope was cancelled: [`Error::cancelled_by`].
///
/// A reason is a `&'static str` given by the signal: a [`CancellationToken`](crate::CancellationToken)
/// cancelled with [`cancel_with`](crate::CancellationToken::cancel_with) gives its reason (its
/// child tokens give their parent's), other signals give none.
///
/// ```
/// use async_with::CancelledBy;
/// let by = CancelledBy::Signal { index: 0, reason: Some("timed out") };
/// assert_eq!(by.reason(), Some("timed out"));
/// assert_eq!(by.to_string(), "by signal 0 of `cancel_on`: timed out");
/// assert_eq!(CancelledBy::Parent { reason: None }.to_string(), "with the scope around it");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CancelledBy {
    /// The scope's own signal fired: the one given to the `index`th call of
    /// [`cancel_on`](crate::Scope::cancel_on) (0 for the first). Several that fire at once count
    /// as the first of them.
    Signal {
        /// Which `cancel_on` call gave the signal, counting from 0.
        index: usize,
        /// The reason the signal gave, if any.
        reason: Option<&'static str>,
    },
    /// The scope it runs in (whose body it is part of) was cancelled, and this scope with it.
    Parent {
        /// The reason the outer scope's signal gave, if any.
        reason: Option<&'static str>,
    },
}

impl CancelledBy {
    /// The reason the signal gave, if any.
    ///
    /// ```
    /// assert_eq!(async_with::CancelledBy::Parent { reason: Some("shutdown") }.reason(), Some("shutdown"));
    /// ```
    pub fn reason(&self) -> Option<&'static str> {
        match *self {
            CancelledBy::Signal { reason, .. } | CancelledBy::Parent { reason } => reason,
        }
    }
}

impl fmt::Display for CancelledBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelledBy::Signal { index, .. } => write!(f, "by signal {index} of `cancel_on`")?,
            CancelledBy::Parent { .. } => f.write_str("with the scope around it")?,
        }
        match self.reason() {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

/// What a cancelled scope gives instead of an error of its own: the cancellation, as a value of
/// the caller's error type, for [`Error::into_error`].
///
/// ```
/// use async_with::Cancelled;
/// let text: String = Cancelled.into();
/// assert_eq!(text, "the scope was cancelled");
/// let io: std::io::Error = Cancelled.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::Interrupted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the scope was cancelled")
    }
}

impl core::error::Error for Cancelled {}

impl From<Cancelled> for alloc::string::String {
    fn from(cancelled: Cancelled) -> Self {
        alloc::string::ToString::to_string(&cancelled)
    }
}

#[cfg(feature = "std")]
impl From<Cancelled> for std::io::Error {
    fn from(cancelled: Cancelled) -> Self {
        std::io::Error::new(std::io::ErrorKind::Interrupted, cancelled)
    }
}

/// How a context whose errors are converted ([`map_err`](crate::ContextExt::map_err),
/// [`err_into`](crate::ContextExt::err_into)) is shown a failure of the scope around it, whose
/// error is of another type: an error of its own type made from this, which carries the outer
/// error's text. So its exit sees [`Outcome::Failed`](crate::Outcome::Failed) (and rolls back,
/// say), never `Completed`.
///
/// `From<ForeignError>` is implemented for `String` and `std::io::Error` (of kind `Other`);
/// implement it for your error type to convert its contexts.
///
/// ```
/// use async_with::ForeignError;
/// #[derive(Debug)]
/// enum DbError { Query(String), ScopeFailed(String) }
/// impl From<ForeignError> for DbError {
///     fn from(failed: ForeignError) -> Self { DbError::ScopeFailed(failed.to_string()) }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ForeignError {
    message: alloc::string::String,
}

impl ForeignError {
    pub(crate) fn of(error: &impl fmt::Display) -> Self {
        ForeignError { message: alloc::string::ToString::to_string(error) }
    }

    /// The outer error's text.
    ///
    /// ```
    /// # use async_with::{resource, with, ContextExt, Error, ForeignError, Outcome};
    /// # futures::executor::block_on(async {
    /// let inner = resource(async || Ok::<_, String>(()), async |(), outcome: Outcome<'_, String>| {
    ///     assert_eq!(outcome.error().unwrap(), "the scope failed: body failed");
    ///     Ok(())
    /// });
    /// let _ = with(inner.map_err(std::io::Error::other), async |()| {
    ///     Err::<(), _>(std::io::Error::other("body failed").into())
    /// })
    /// .await;
    /// # });
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ForeignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the scope failed: {}", self.message)
    }
}

impl core::error::Error for ForeignError {}

impl From<ForeignError> for alloc::string::String {
    fn from(failed: ForeignError) -> Self {
        alloc::string::ToString::to_string(&failed)
    }
}

#[cfg(feature = "std")]
impl From<ForeignError> for std::io::Error {
    fn from(failed: ForeignError) -> Self {
        std::io::Error::other(failed)
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        match self.primary() {
            Some(p) => d.field("primary", p),
            None => d.field("cancelled", &true).field("cancelled_by", &self.cancelled_by()),
        };
        d.field("suppressed", &self.suppressed).finish()
    }
}

/// The primary error (or the cancellation), then the suppressed ones. The alternate form (`{:#}`)
/// also says where each error came from and why the scope was cancelled:
///
/// ```
/// use async_with::{resource, with, ContextExt, Outcome};
///
/// let close = |name: &'static str| {
///     resource(async || Ok::<_, String>(()), async move |(), _: Outcome<'_, String>| Err(format!("{name} failed")))
/// };
/// # futures::executor::block_on(async {
/// let err = with((close("a"), close("b").named("db")), async |_| Err::<(), _>("bad input".to_string().into()))
///     .await
///     .unwrap_err();
/// assert_eq!(err.to_string(), "bad input (and 2 suppressed errors: b failed; a failed)");
/// assert_eq!(
///     format!("{err:#}"),
///     "bad input (in the body) (and 2 suppressed errors: b failed (in the exit of `db` (context 1)); \
///      a failed (in the exit of context 0))"
/// );
/// # });
/// ```
impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.primary() {
            Some(p) => {
                fmt::Display::fmt(p, f)?;
                if let (true, Some(origin)) = (f.alternate(), self.origin()) {
                    write!(f, " (in {origin})")?;
                }
            }
            None => {
                fmt::Display::fmt(&Cancelled, f)?;
                // The alternate form (`{:#}`) says why.
                if let (true, Some(by)) = (f.alternate(), self.cancelled_by()) {
                    write!(f, " ({by})")?;
                }
            }
        }
        if let Some((first, rest)) = self.suppressed.split_first() {
            let n = self.suppressed.len();
            let s = if n == 1 { "" } else { "s" };
            write!(f, " (and {n} suppressed error{s}: ")?;
            first.show(f)?;
            for e in rest {
                f.write_str("; ")?;
                e.show(f)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl<E: core::error::Error + 'static> core::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.primary().map(|e| e as _)
    }
}

/// A suppressed error of an [`Error`], with where it came from: [`Error::suppressed`].
///
/// It derefs to the error, displays and debugs as the error, and compares equal to whatever
/// the error equals, so that `err.suppressed()` reads as the list of errors it is.
///
/// ```
/// use async_with::{resource, with, Outcome, Step};
/// # futures::executor::block_on(async {
/// let ctx = resource(async || Ok::<_, String>(()), async |(), _: Outcome<'_, String>| Err("close".to_string()));
/// let err = with(ctx, async |_| Err::<(), _>("body".to_string().into())).await.unwrap_err();
/// let close = &err.suppressed()[0];
/// assert_eq!(close, "close");
/// assert_eq!(close.error(), "close");
/// assert_eq!(close.origin().unwrap().step(), Step::Exit);
/// assert_eq!(err.suppressed()[0].clone().into_error(), "close");
/// # });
/// ```
#[derive(Clone, Hash)]
pub struct Suppressed<E> {
    error: E,
    origin: Origin,
}

impl<E> Suppressed<E> {
    pub(crate) fn new(error: E, origin: Origin) -> Self {
        Suppressed { error, origin }
    }

    pub(crate) fn into_parts(self) -> (E, Origin) {
        (self.error, self.origin)
    }

    /// The error.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// # let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// let errors: Vec<&&str> = err.suppressed().iter().map(|s| s.error()).collect();
    /// assert_eq!(errors, [&"close"]);
    /// # });
    /// ```
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The error, by value.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// # let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// let (_, suppressed) = (err.primary().copied(), err.suppressed().to_vec());
    /// assert_eq!(suppressed.into_iter().map(|s| s.into_error()).collect::<Vec<_>>(), ["close"]);
    /// # });
    /// ```
    pub fn into_error(self) -> E {
        self.error
    }

    /// Where the error came from; `None` for an error no scope recorded (one an exit stack kept
    /// from before it had a scope, say).
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome, Step};
    /// # futures::executor::block_on(async {
    /// # let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Err("close"));
    /// let err = with(ctx, async |_| Err::<(), _>("body".into())).await.unwrap_err();
    /// assert_eq!(err.suppressed()[0].origin().unwrap().to_string(), "the exit");
    /// # });
    /// ```
    pub fn origin(&self) -> Option<Origin> {
        self.origin.is_known().then_some(self.origin)
    }

    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result
    where
        E: fmt::Display,
    {
        fmt::Display::fmt(&self.error, f)?;
        match (f.alternate(), self.origin()) {
            (true, Some(origin)) => write!(f, " (in {origin})"),
            _ => Ok(()),
        }
    }
}

impl<E> core::ops::Deref for Suppressed<E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.error
    }
}

impl<E: fmt::Debug> fmt::Debug for Suppressed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.error, f)
    }
}

impl<E: fmt::Display> fmt::Display for Suppressed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Compares the error: `err.suppressed() == ["close failed"]`.
impl<E: PartialEq<U>, U: ?Sized> PartialEq<U> for Suppressed<E> {
    fn eq(&self, other: &U) -> bool {
        self.error == *other
    }
}
