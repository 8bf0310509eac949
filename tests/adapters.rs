//! `closing` (Python's `aclosing`) closes writers and sinks on exit, whatever happened, and its
//! close error is kept; `nullcontext` gives any `Drop` value its place in the reverse order.
#![cfg(all(feature = "futures-io", feature = "futures-sink"))]

mod common;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_with::{Closing, closing, nullcontext, with};
use common::Journal;
use futures::{AsyncWrite, AsyncWriteExt, SinkExt, StreamExt};

/// A writer that journals its writes and its close, and may fail to close.
struct Writer {
    journal: Journal,
    fail_close: bool,
}

impl AsyncWrite for Writer {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.journal.push(format!("write {}", String::from_utf8_lossy(buf)));
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.journal.push("close");
        Poll::Ready(if self.fail_close { Err(io::Error::other("close failed")) } else { Ok(()) })
    }
}

#[test]
fn a_writer_is_closed_on_exit_after_a_good_body() {
    let j = Journal::new();
    futures::executor::block_on(with(closing(Writer { journal: j.clone(), fail_close: false }), async |w| {
        Ok(w.write_all(b"hi").await?)
    }))
    .unwrap();
    assert_eq!(j.take(), ["write hi", "close"]);
}

#[test]
fn a_writer_is_closed_when_the_body_fails_and_its_close_error_is_kept() {
    let j = Journal::new();
    let error = futures::executor::block_on(with(
        closing(Writer { journal: j.clone(), fail_close: true }),
        async |_| Err::<(), _>(io::Error::other("body failed").into()),
    ))
    .unwrap_err();
    assert_eq!(error.primary().unwrap().to_string(), "body failed");
    assert_eq!(error.suppressed()[0].to_string(), "close failed");
    assert_eq!(j.take(), ["close"]);
}

#[test]
fn a_sink_is_flushed_and_closed_on_exit() {
    let (tx, rx) = futures::channel::mpsc::channel::<u32>(8);
    let sent = futures::executor::block_on(async {
        let sent = with(Closing::sink::<u32>(tx), async |tx| {
            tx.send(1).await?;
            tx.feed(2).await?; // fed, not flushed: closing flushes it
            Ok(2)
        })
        .await;
        (sent, rx.collect::<Vec<_>>().await)
    });
    assert_eq!(sent.0.unwrap(), 2);
    assert_eq!(sent.1, [1, 2], "the receiver ends: the sender was closed");
}

#[test]
fn nullcontext_drops_its_value_in_its_turn() {
    struct Guard(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let (first, last) = (nullcontext::<_, String>(Guard("first", o1)), nullcontext(Guard("last", o2)));
    futures::executor::block_on(with((first, last), async |_| {
        order.lock().unwrap().push("body");
        Ok(())
    }))
    .unwrap();
    assert_eq!(*order.lock().unwrap(), ["body", "last", "first"]);
}
