//! Freed huge buffers are reused without faulting their pages in again
//! (see `huge_reuse/mod.rs`). This binary holds this one test, so no other
//! test takes the parked mappings first.
#![cfg(target_os = "linux")]

mod huge_reuse;

#[test]
fn freed_huge_buffers_are_reused_without_faulting_their_pages_again() {
    huge_reuse::check_huge_reuse().unwrap_or_else(|e| panic!("{e}"));
}
