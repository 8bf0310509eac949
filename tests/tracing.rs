//! With the `tracing` feature, a scope is a `debug` span and each enter, body and exit is an
//! event saying how it ended (and, for an exit, the outcome it saw), in the order they happened.
#![cfg(feature = "tracing")]

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use async_with::with;
use common::{Act, Journal};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Collects every event as one line: `span > message field=value ...`.
#[derive(Clone, Default)]
struct Collect {
    lines: Arc<Mutex<Vec<String>>>,
    spans: Arc<Mutex<Vec<String>>>,
    current: Arc<Mutex<Vec<u64>>>,
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            write!(self.0, " {value:?}").unwrap();
        } else {
            write!(self.0, " {}={value:?}", field.name()).unwrap();
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            write!(self.0, " {value}").unwrap();
        } else {
            write!(self.0, " {}={value}", field.name()).unwrap();
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = Line(span.metadata().name().to_string());
        span.record(&mut line);
        let mut spans = self.spans.lock().unwrap();
        spans.push(line.0);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let span = match self.current.lock().unwrap().last() {
            Some(id) => self.spans.lock().unwrap()[*id as usize - 1].clone(),
            None => "-".to_string(),
        };
        let mut line = Line(format!("{span} >"));
        event.record(&mut line);
        self.lines.lock().unwrap().push(line.0);
    }
    fn enter(&self, span: &Id) {
        self.current.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.current.lock().unwrap().pop();
    }
}

#[test]
fn a_scope_is_a_span_and_each_step_an_event_with_how_it_ended() {
    let collect = Collect::default();
    let j = Journal::new();
    tracing::subscriber::with_default(collect.clone(), || {
        let scope = with((j.probe("a"), j.probe("b").exit(Act::Fail)), async |_| {
            Err::<(), _>("no".to_string().into())
        });
        futures::executor::block_on(scope).unwrap_err();
    });
    let lines = collect.lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "async_with scope=with > enter ended=ok",
            "async_with scope=with > enter ended=ok",
            "async_with scope=with > body ended=failed",
            "async_with scope=with > exit saw=Failed",
            "async_with scope=with > exit ended=failed",
            "async_with scope=with > exit saw=Failed",
            "async_with scope=with > exit ended=ok",
        ]
    );
}

/// With no drop hook set, a dropped scope is a `warn` event (the default drop hook).
#[test]
fn a_dropped_scope_is_a_warning() {
    use std::task::{Context, Waker};
    let collect = Collect::default();
    let j = Journal::new();
    tracing::subscriber::with_default(collect.clone(), || {
        let mut scope = Box::pin(with(j.probe("a"), async |_| {
            std::future::pending::<()>().await;
            Ok(())
        }));
        let mut task = Context::from_waker(Waker::noop());
        for _ in 0..4 {
            assert!(scope.as_mut().poll(&mut task).is_pending());
        }
        drop(scope);
    });
    let lines = collect.lines.lock().unwrap().clone();
    let warning = lines.iter().find(|line| line.contains("was dropped")).expect("a warning");
    assert!(
        warning.contains("scope=with") && warning.contains("context=tracing::common::Probe"),
        "{warning}"
    );
    assert!(warning.contains("set_drop_hook"), "{warning}");
}
