//! Optional instrumentation with `tracing` (feature `tracing`): a `debug` span per scope, and a
//! `debug` event for each enter, body and exit with how it ended (and, for an exit, the outcome
//! it saw). Without the feature, all of it compiles to nothing.

use core::future::Future;

/// Runs a scope's future inside its span.
#[cfg(feature = "tracing")]
pub(crate) fn scope<F: Future>(kind: &'static str, future: F) -> tracing::instrument::Instrumented<F> {
    tracing::Instrument::instrument(future, tracing::debug_span!("async_with", scope = kind))
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn scope<F: Future>(_: &'static str, future: F) -> F {
    future
}

/// A `debug` event, with the feature.
macro_rules! event {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        tracing::debug!($($arg)*);
    };
}
pub(crate) use event;
