//! What the type system must reject, with the compiler's message kept as a snapshot.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
