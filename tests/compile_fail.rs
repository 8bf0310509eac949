//! What the type system must reject, with the compiler's message kept as a snapshot.
#![cfg(not(miri))] // runs the compiler

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
