//! Closing on exit what has an async close: Python's `contextlib.aclosing`.

use core::fmt;
use core::marker::PhantomData;
use core::pin::Pin;

use crate::context::{IntoContext, IntoLocalContext};
use crate::protocol::{Protocol, Sealed, SendProtocol};
use crate::unwind::Unwind;

/// A context for anything with an async close, closed on exit whatever happened: Python's
/// `contextlib.aclosing`. Implemented for every [`futures_io::AsyncWrite`] (feature
/// `futures-io`: its `close` flushes and shuts the writer down) and every
/// [`futures_sink::Sink`] (feature `futures-sink`, through [`Closing::sink`]).
///
/// ```
/// use async_with::{closing, with};
/// use futures::io::{AsyncWriteExt, Cursor};
///
/// # futures::executor::block_on(async {
/// let file = Cursor::new(Vec::new()); // a socket, a file, a compressor: any `AsyncWrite`
/// let written = with(closing(file), async |file| {
///     file.write_all(b"hello").await?;
///     Ok(file.get_ref().len())
/// })
/// .await
/// .unwrap();
/// assert_eq!(written, 5);
/// # });
/// ```
#[cfg(feature = "futures-io")]
pub fn closing<W: futures_io::AsyncWrite + Unpin>(writer: W) -> Closing<W, std::io::Error> {
    Closing { value: Some(writer), close: poll_close_writer::<W>, error: PhantomData }
}

#[cfg(feature = "futures-io")]
fn poll_close_writer<W: futures_io::AsyncWrite + Unpin>(
    writer: &mut W,
    task: &mut core::task::Context<'_>,
) -> core::task::Poll<std::io::Result<()>> {
    Pin::new(writer).poll_close(task)
}

/// A value closed by an async close on exit; built by [`closing`] or [`Closing::sink`].
///
/// ```
/// # #[cfg(feature = "futures-io")] {
/// use async_with::{closing, Closing};
/// let _: Closing<futures::io::Cursor<Vec<u8>>, std::io::Error> = closing(futures::io::Cursor::new(vec![]));
/// # }
/// ```
#[must_use = "a context does nothing until a scope enters it"]
pub struct Closing<T, E> {
    value: Option<T>,
    close: fn(&mut T, &mut core::task::Context<'_>) -> core::task::Poll<Result<(), E>>,
    error: PhantomData<fn() -> E>,
}

#[cfg(feature = "futures-sink")]
impl<S, E> Closing<S, E> {
    /// A context for a [`futures_sink::Sink`] (a channel sender, a framed connection), closed on
    /// exit: the pending items are flushed, then the sink is closed.
    ///
    /// ```
    /// use async_with::{with, Closing};
    /// use futures::SinkExt;
    ///
    /// # futures::executor::block_on(async {
    /// let (tx, mut rx) = futures::channel::mpsc::channel::<u32>(4);
    /// with(Closing::sink::<u32>(tx), async |tx| Ok(tx.send(7).await?)).await.unwrap();
    /// // The sender was closed on exit: the receiver sees the item, then the end.
    /// assert_eq!(futures::StreamExt::collect::<Vec<_>>(&mut rx).await, [7]);
    /// # });
    /// ```
    pub fn sink<Item>(sink: S) -> Self
    where
        S: futures_sink::Sink<Item, Error = E> + Unpin,
    {
        Closing { value: Some(sink), close: poll_close_sink::<S, Item>, error: PhantomData }
    }
}

#[cfg(feature = "futures-sink")]
fn poll_close_sink<S: futures_sink::Sink<Item> + Unpin, Item>(
    sink: &mut S,
    task: &mut core::task::Context<'_>,
) -> core::task::Poll<Result<(), S::Error>> {
    Pin::new(sink).poll_close(task)
}

impl<T, E> fmt::Debug for Closing<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closing").field("entered", &self.value.is_none()).finish()
    }
}

impl<T, E> Unpin for Closing<T, E> {}
impl<T, E> Sealed for Closing<T, E> {}

impl<T, E> IntoLocalContext for Closing<T, E> {
    type Value = T;
    type Error = E;
    type LocalContext = Self;

    fn into_local_context(self) -> Self {
        self
    }
}

impl<T: Send, E: Send + Sync> IntoContext for Closing<T, E> {
    type Context = Self;

    fn into_context(self) -> Self {
        self
    }
}

macro_rules! closing_protocol {
    ($($send:ident)?) => {
        fn enter(self: Pin<&mut Self>, _: &mut Unwind<E>) -> impl Future<Output = Option<T>> $(+ $send)? {
            core::future::ready(Some(self.get_mut().value.take().expect("async-with: a context is entered once")))
        }

        fn exit(self: Pin<&mut Self>, mut value: T, unwind: &mut Unwind<E>) -> impl Future<Output = ()> $(+ $send)? {
            let close = self.close;
            async move {
                let deadline = unwind.deadline();
                let closed = core::future::poll_fn(|task| close(&mut value, task));
                let result = crate::unwind::exit_within(deadline, move || closed).await;
                unwind.exited(result);
                unwind.drop_value(value);
            }
        }

        fn fallback(self: Pin<&mut Self>, value: T) {
            drop(value);
        }
    };
}

impl<T, E> Protocol for Closing<T, E> {
    type Value = T;
    type Error = E;
    closing_protocol!();
}

impl<T: Send, E: Send + Sync> SendProtocol for Closing<T, E> {
    type Value = T;
    type Error = E;
    closing_protocol!(Send);
}
