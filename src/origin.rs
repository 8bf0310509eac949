//! Where an error came from ([`Origin`]): the step (an enter, the body, an exit), the context's
//! index in the tuple or `join` that holds it, and the name given with
//! [`named`](crate::ContextExt::named).
//!
//! An origin is four bytes, so that it rides with its error in the lists a scope already keeps:
//! recording it allocates nothing. Names are kept in a process-wide table of `&'static str`
//! (filled on the error path only: when a named context's error is recorded), and an origin holds
//! its name's place in it.

use core::fmt;

/// Which step of a scope an error came from.
///
/// ```
/// use async_with::{resource, with, Outcome, Step};
/// # futures::executor::block_on(async {
/// let ctx = resource(async || Err::<(), _>("refused"), async |(), _: Outcome<'_, &str>| Ok(()));
/// let err = with(ctx, async |()| Ok(())).await.unwrap_err();
/// assert_eq!(err.origin().unwrap().step(), Step::Enter);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// A context's enter (for a generator context: its setup, before `provide`).
    Enter,
    /// The body (or a scope nested in it, whose error it passed on without an origin of its own).
    Body,
    /// A context's exit (for a generator context: its teardown), its exit deadline included.
    Exit,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Enter => "enter",
            Step::Body => "body",
            Step::Exit => "exit",
        }
    }
}

/// Where one error of an [`Error`](crate::Error) came from: [`Error::origin`](crate::Error::origin)
/// for the primary error, [`Suppressed::origin`](crate::Suppressed::origin) for each suppressed one.
///
/// The context is the one that failed, by its place in the tuple, [`join`](crate::join) or
/// [`join_all`](crate::join_all) that holds it directly (counting from 0), and by the name given
/// with [`named`](crate::ContextExt::named), if any. A context entered alone, into an exit
/// stack or through `and_then` has no index: name it where that matters.
/// An error passed on from a scope nested in the body keeps the origin it had there. An exit
/// stack's `enter` and `release` return the plain error to the body, so one passed on from there
/// with `?` is the body's (the exits a stack runs when it closes keep theirs).
///
/// ```
/// use async_with::{resource, with, ContextExt, Outcome, Step};
///
/// let close = |fails: bool| {
///     resource(async || Ok::<_, String>(()), async move |(), _: Outcome<'_, String>| {
///         if fails { Err("close failed".to_string()) } else { Ok(()) }
///     })
/// };
/// # futures::executor::block_on(async {
/// let err = with((close(false), close(true).named("db")), async |_| Ok(())).await.unwrap_err();
/// let origin = err.origin().unwrap();
/// assert_eq!((origin.step(), origin.context(), origin.name()), (Step::Exit, Some(1), Some("db")));
/// assert_eq!(origin.to_string(), "the exit of `db` (context 1)");
/// assert_eq!(format!("{err:#}"), "close failed (in the exit of `db` (context 1))");
/// # });
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin(u32);

// Bits 0-1: the step (0: not known); bits 2-15: the context's index + 1 (0: none); bits 16-31:
// the name's place in the table + 1 (0: none).
const STEP_BITS: u32 = 0b11;
const INDEX_SHIFT: u32 = 2;
const INDEX_MASK: u32 = 0x3fff << INDEX_SHIFT;
#[cfg(feature = "std")] // without `std` no name is recorded
const NAME_SHIFT: u32 = 16;

impl Origin {
    /// No origin: an error that no scope recorded yet (one made with `From`).
    pub(crate) const UNKNOWN: Origin = Origin(0);

    pub(crate) const fn of(step: Step) -> Origin {
        Origin(match step {
            Step::Enter => 1,
            Step::Body => 2,
            Step::Exit => 3,
        })
    }

    pub(crate) fn is_known(self) -> bool {
        self.0 & STEP_BITS != 0
    }

    /// The step the error came from.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome, Step};
    /// # futures::executor::block_on(async {
    /// let ctx = resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Ok(()));
    /// let err = with(ctx, async |()| Err::<(), _>("bad input".into())).await.unwrap_err();
    /// assert_eq!(err.origin().unwrap().step(), Step::Body);
    /// # });
    /// ```
    pub fn step(self) -> Step {
        match self.0 & STEP_BITS {
            1 => Step::Enter,
            3 => Step::Exit,
            // An origin handed out is always known; `Body` is what an unknown one would be.
            _ => Step::Body,
        }
    }

    /// The failing context's place in the tuple or `join` that holds it, counting from 0; `None`
    /// for the body and for a context entered alone.
    ///
    /// ```
    /// # use async_with::{resource, with, Outcome};
    /// # futures::executor::block_on(async {
    /// let ok = || resource(async || Ok::<_, &str>(()), async |(), _: Outcome<'_, &str>| Ok(()));
    /// let refused = resource(async || Err::<(), _>("refused"), async |(), _: Outcome<'_, &str>| Ok(()));
    /// let err = with((ok(), ok(), refused), async |_| Ok(())).await.unwrap_err();
    /// assert_eq!(err.origin().unwrap().context(), Some(2));
    /// # });
    /// ```
    pub fn context(self) -> Option<usize> {
        match (self.0 & INDEX_MASK) >> INDEX_SHIFT {
            0 => None,
            n => Some(n as usize - 1),
        }
    }

    /// The name given to the failing context with [`named`](crate::ContextExt::named), if any.
    ///
    /// ```
    /// # use async_with::{resource, with, ContextExt, Outcome};
    /// # futures::executor::block_on(async {
    /// let db = resource(async || Err::<(), _>("refused"), async |(), _: Outcome<'_, &str>| Ok(()));
    /// let err = with(db.named("db"), async |()| Ok(())).await.unwrap_err();
    /// assert_eq!(err.origin().unwrap().name(), Some("db"));
    /// # });
    /// ```
    pub fn name(self) -> Option<&'static str> {
        #[cfg(feature = "std")]
        return names::get(self.0 >> NAME_SHIFT);
        // Without `std` there is no lock for the table: names are not recorded.
        #[cfg(not(feature = "std"))]
        None
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_known() {
            return f.write_str("Origin(unknown)");
        }
        f.debug_struct("Origin")
            .field("step", &self.step())
            .field("context", &self.context())
            .field("name", &self.name())
            .finish()
    }
}

/// "the body", "the enter of context 2", "the exit of `db`", "the exit of `db` (context 1)".
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = self.step();
        if step == Step::Body {
            return f.write_str("the body");
        }
        write!(f, "the {}", step.name())?;
        match (self.name(), self.context()) {
            (Some(name), Some(index)) => write!(f, " of `{name}` (context {index})"),
            (Some(name), None) => write!(f, " of `{name}`"),
            (None, Some(index)) => write!(f, " of context {index}"),
            (None, None) => Ok(()),
        }
    }
}

/// The names of [`named`](crate::ContextExt::named) contexts whose errors were recorded: at most
/// 65,535 different ones per process (a name past that is not recorded).
#[cfg(feature = "std")]
mod names {
    use alloc::vec::Vec;
    use std::sync::Mutex;

    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    /// `name`'s place in the table + 1, added if it is new; 0 when the table is full.
    pub(super) fn place(name: &'static str) -> u32 {
        let mut names = NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(place) = names.iter().position(|known| *known == name) {
            return place as u32 + 1;
        }
        if names.len() >= 0xffff {
            return 0;
        }
        names.push(name);
        names.len() as u32
    }

    pub(super) fn get(place: u32) -> Option<&'static str> {
        let place = (place as usize).checked_sub(1)?;
        NAMES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(place).copied()
    }
}

// Where the error being recorded now would come from, besides its step: the place and the name
// that the tuples, `join`s and named contexts being polled say (the innermost of each wins).
// Kept in thread-locals, set around each poll, so that saying it costs a scope's future no bytes
// (a mark held across an `.await` would cost a few per tuple element); two of them, so that a
// tuple's poll only swaps two bytes.
#[cfg(feature = "std")]
std::thread_local! {
    /// The place + 1; 0 for none.
    static PLACE: core::cell::Cell<u16> = const { core::cell::Cell::new(0) };
    static NAME: core::cell::Cell<Option<&'static str>> = const { core::cell::Cell::new(None) };
}

/// Runs `poll` (one poll of a context's enter or exit) with `key` saying `value`; what it said
/// before is said again afterwards, even if `poll` unwinds.
#[cfg(feature = "std")]
#[inline]
fn saying<V: Copy + 'static, T>(
    key: &'static std::thread::LocalKey<core::cell::Cell<V>>,
    value: V,
    poll: impl FnOnce() -> T,
) -> T {
    struct Restore<V: Copy + 'static>(&'static std::thread::LocalKey<core::cell::Cell<V>>, V);
    impl<V: Copy + 'static> Drop for Restore<V> {
        #[inline]
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _restore = Restore(key, key.replace(value));
    poll()
}

impl Origin {
    /// An error of `step` recorded now: with the place and name the polls around it say.
    #[inline]
    pub(crate) fn here(step: Step) -> Origin {
        let origin = Origin::of(step);
        // `Located` says only places that fit the field (place + 1 below 0x3fff).
        #[cfg(feature = "std")]
        let origin = Origin(
            origin.0
                | (u32::from(PLACE.get()) << INDEX_SHIFT)
                | (NAME.get().map_or(0, names::place) << NAME_SHIFT),
        );
        origin
    }
}

/// A place in a tuple or a `join`: a type for the places known when the code is written (so
/// that the future that says it holds nothing more), `usize` for `join_all`'s.
#[doc(hidden)]
pub trait Place {
    /// The place, counting from 0.
    fn place(&self) -> usize;
}

/// The place `N`, as a type.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct At<const N: usize>;

impl<const N: usize> Place for At<N> {
    #[inline]
    fn place(&self) -> usize {
        N
    }
}

impl Place for usize {
    #[inline]
    fn place(&self) -> usize {
        *self
    }
}

pin_project_lite::pin_project! {
    /// A context's enter or exit, polled saying its place (the innermost place wins).
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct Located<F, P> {
        #[pin]
        inner: F,
        place: P,
    }
}

impl<F, P> Located<F, P> {
    #[inline]
    pub(crate) fn new(inner: F, place: P) -> Self {
        Located { inner, place }
    }
}

impl<F: core::future::Future, P: Place> core::future::Future for Located<F, P> {
    type Output = F::Output;

    #[inline]
    fn poll(
        self: core::pin::Pin<&mut Self>,
        task: &mut core::task::Context<'_>,
    ) -> core::task::Poll<F::Output> {
        let this = self.project();
        #[cfg(feature = "std")]
        {
            // Places past what an origin records are not said: the one around stays.
            let place = this.place.place();
            if place < 0x3ffe {
                saying(&PLACE, place as u16 + 1, || this.inner.poll(task))
            } else {
                this.inner.poll(task)
            }
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = this.place;
            this.inner.poll(task)
        }
    }
}

pin_project_lite::pin_project! {
    /// A named context's enter or exit, polled saying its name (the innermost name wins).
    #[must_use = "futures do nothing unless you .await or poll them"]
    pub(crate) struct Naming<F> {
        #[pin]
        inner: F,
        name: &'static str,
    }
}

impl<F> Naming<F> {
    pub(crate) fn new(inner: F, name: &'static str) -> Self {
        Naming { inner, name }
    }
}

impl<F: core::future::Future> core::future::Future for Naming<F> {
    type Output = F::Output;

    fn poll(
        self: core::pin::Pin<&mut Self>,
        task: &mut core::task::Context<'_>,
    ) -> core::task::Poll<F::Output> {
        let this = self.project();
        #[cfg(feature = "std")]
        {
            saying(&NAME, Some(*this.name), || this.inner.poll(task))
        }
        #[cfg(not(feature = "std"))]
        {
            let _ = this.name;
            this.inner.poll(task)
        }
    }
}
