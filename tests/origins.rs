//! Each error says where it came from (issue 14.6): the step (enter, body, exit), the context's
//! place in the tuple or `join` that holds it, and the name given with `named`; kept across a
//! nested scope's `?`, shown by `{:#}`.

use async_with::{
    ContextExt, Error, ExitStack, IntoContext, Origin, Outcome, Step, join, join_all, resource, scope, with,
};

type E = String;

/// A context whose enter fails when `enter_fails`, and whose exit fails when `exit_fails`; the
/// errors say `name`.
fn ctx(name: &'static str, enter_fails: bool, exit_fails: bool) -> impl IntoContext<Value = (), Error = E> {
    resource(
        async move || if enter_fails { Err(format!("{name}: enter")) } else { Ok(()) },
        async move |(), _: Outcome<'_, E>| if exit_fails { Err(format!("{name}: exit")) } else { Ok(()) },
    )
}

/// An origin's step, place and name.
type Parts = (Step, Option<usize>, Option<&'static str>);

fn parts(origin: Option<Origin>) -> Parts {
    let origin = origin.expect("an origin");
    (origin.step(), origin.context(), origin.name())
}

/// Every error of `err`, primary first, with its origin.
fn all(err: &Error<E>) -> Vec<(String, Parts)> {
    let mut out = Vec::new();
    if let Some(primary) = err.primary() {
        out.push((primary.clone(), parts(err.origin())));
    }
    for s in err.suppressed() {
        out.push((s.error().clone(), parts(s.origin())));
    }
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn a_lone_context_names_its_step_and_no_place() {
    let err = block_on(with(ctx("a", true, false), async |()| Ok(()))).unwrap_err();
    assert_eq!(all(&err), [("a: enter".to_string(), (Step::Enter, None, None))]);
    let err = block_on(with(ctx("a", false, true), async |()| Err::<(), _>("body".to_string().into())))
        .unwrap_err();
    assert_eq!(
        all(&err),
        [("body".to_string(), (Step::Body, None, None)), ("a: exit".to_string(), (Step::Exit, None, None))]
    );
}

#[test]
fn a_tuple_names_each_place() {
    let err =
        block_on(with((ctx("a", false, true), ctx("b", false, true), ctx("c", true, false)), async |_| {
            Ok(())
        }))
        .unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("c: enter".to_string(), (Step::Enter, Some(2), None)),
            ("b: exit".to_string(), (Step::Exit, Some(1), None)),
            ("a: exit".to_string(), (Step::Exit, Some(0), None)),
        ]
    );
}

#[test]
fn an_inner_tuple_names_the_place_inside_it() {
    let inner = (ctx("a", false, false), ctx("b", false, true));
    let err = block_on(with((inner, ctx("c", false, true)), async |_| Ok(()))).unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("c: exit".to_string(), (Step::Exit, Some(1), None)),
            ("b: exit".to_string(), (Step::Exit, Some(1), None))
        ]
    );
    // A name tells them apart.
    let inner = (ctx("a", false, false), ctx("b", false, true).named("b"));
    let err = block_on(with((inner, ctx("c", false, true).named("c")), async |_| Ok(()))).unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("c: exit".to_string(), (Step::Exit, Some(1), Some("c"))),
            ("b: exit".to_string(), (Step::Exit, Some(1), Some("b"))),
        ]
    );
}

#[test]
#[cfg_attr(miri, ignore = "16,383 branches take Miri about 5 minutes; no unsafe code on this path")]
fn places_past_what_an_origin_records_are_not_said() {
    // An origin keeps places below 16,382; the branch there and the ones after it say none (the
    // scope's own, here none), the one before still says its own.
    let last = 16_382;
    let contexts = (0..=last).map(|place| ctx("x", false, place + 1 >= last));
    let err = block_on(with(join_all(contexts.collect::<Vec<_>>()), async |_| Ok(()))).unwrap_err();
    let places: Vec<Option<usize>> = all(&err).into_iter().map(|(_, (_, place, _))| place).collect();
    assert_eq!(places, [Some(last - 1), None]);
}

#[test]
fn a_name_inside_a_name_wins_and_a_place_inside_a_name_is_kept() {
    let err =
        block_on(with(ctx("a", true, false).named("inner").named("outer"), async |()| Ok(()))).unwrap_err();
    assert_eq!(parts(err.origin()), (Step::Enter, None, Some("inner")));
    let both = (ctx("a", false, false), ctx("b", true, false)).named("pair");
    let err = block_on(with(both, async |_| Ok(()))).unwrap_err();
    assert_eq!(parts(err.origin()), (Step::Enter, Some(1), Some("pair")));
}

#[test]
fn join_and_join_all_name_each_branch() {
    let err =
        block_on(with(join(ctx("a", false, true), ctx("b", false, true)), async |_| Ok(()))).unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("a: exit".to_string(), (Step::Exit, Some(0), None)),
            ("b: exit".to_string(), (Step::Exit, Some(1), None))
        ]
    );
    let contexts = vec![ctx("a", false, false), ctx("b", false, true), ctx("c", true, false)];
    let err = block_on(with(join_all(contexts), async |_| Ok(()))).unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("c: enter".to_string(), (Step::Enter, Some(2), None)),
            ("b: exit".to_string(), (Step::Exit, Some(1), None))
        ]
    );
    // A join inside a tuple: the join's place is the innermost.
    let err = block_on(with(
        (ctx("a", false, true), join(ctx("b", false, false), ctx("c", false, true))),
        async |_| Ok(()),
    ))
    .unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("c: exit".to_string(), (Step::Exit, Some(1), None)),
            ("a: exit".to_string(), (Step::Exit, Some(0), None))
        ]
    );
}

#[test]
fn origins_pass_through_a_nested_scope() {
    let err = block_on(with(ctx("outer", false, true), async |()| {
        with((ctx("a", false, false), ctx("b", false, true).named("b")), async |_| {
            Err::<(), _>("inner body".to_string().into())
        })
        .await?;
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("inner body".to_string(), (Step::Body, None, None)),
            ("b: exit".to_string(), (Step::Exit, Some(1), Some("b"))),
            ("outer: exit".to_string(), (Step::Exit, None, None)),
        ]
    );
    // A plain error passed on with `?` came from the body.
    let err = block_on(with(ctx("a", false, false), async |()| {
        Err::<(), _>("plain".to_string())?;
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(parts(err.origin()), (Step::Body, None, None));
    // One made with `From` and never recorded by a scope has none.
    assert!(Error::from("made".to_string()).origin().is_none());
}

#[test]
fn an_exit_stack_names_its_entries_steps_and_names() {
    let err = block_on(scope(async |stack: &mut ExitStack<E>| {
        stack.enter(ctx("a", false, true).named("a")).await?;
        stack.enter(ctx("b", false, true)).await?;
        Ok(())
    }))
    .unwrap_err();
    assert_eq!(
        all(&err),
        [
            ("b: exit".to_string(), (Step::Exit, None, None)),
            ("a: exit".to_string(), (Step::Exit, None, Some("a")))
        ]
    );
}

#[test]
fn a_deadline_error_is_the_exits() {
    let slow = resource(async || Ok::<_, E>(()), async |(), _: Outcome<'_, E>| std::future::pending().await);
    let err = block_on(
        async_with::Scope::new()
            .exit_deadline(|| async { "too slow".to_string() })
            .with((ctx("a", false, false), slow.named("slow")), async |_| Ok(())),
    )
    .unwrap_err();
    assert_eq!(all(&err), [("too slow".to_string(), (Step::Exit, Some(1), Some("slow")))]);
}

#[test]
fn the_alternate_form_says_where_each_error_came_from() {
    let err = block_on(with((ctx("a", false, true), ctx("b", false, true).named("db")), async |_| {
        Err::<(), _>("bad input".to_string().into())
    }))
    .unwrap_err();
    assert_eq!(err.to_string(), "bad input (and 2 suppressed errors: b: exit; a: exit)");
    assert_eq!(
        format!("{err:#}"),
        "bad input (in the body) (and 2 suppressed errors: b: exit (in the exit of `db` (context 1)); a: exit (in the \
         exit of context 0))"
    );
    assert_eq!(format!("{:?}", err.origin().unwrap()), "Origin { step: Body, context: None, name: None }");
}

#[test]
fn map_keeps_the_origins() {
    let err = block_on(with((ctx("a", false, true), ctx("b", true, false)), async |_| Ok(()))).unwrap_err();
    let err = err.map(|e| e.len());
    assert_eq!(parts(err.origin()), (Step::Enter, Some(1), None));
    assert_eq!(parts(err.suppressed()[0].origin()), (Step::Exit, Some(0), None));
}

#[test]
fn a_generator_context_says_its_place_and_name() {
    let refused = async_with::context(async |_cx: async_with::Cx<(), E>| Err("refused".to_string()));
    let err = block_on(with((ctx("a", false, false), refused.named("gen")), async |_| Ok(()))).unwrap_err();
    assert_eq!(parts(err.origin()), (Step::Enter, Some(1), Some("gen")));
}
