//! The compile-time checks of `#[dtask::task]`: every validation rule has a
//! file in `tests/ui/fail` whose `.stderr` snapshot is the expected error,
//! and the files in `tests/ui/pass` must compile cleanly.
//!
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p dtask --test ui`,
//! then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
