//! The huge-buffer reuse check can fail: with `Fault::NoHugeReuse` armed
//! (freed huge mappings are unmapped at once, never parked or moved), the
//! check of `tests/large_reuse.rs` must report faults it should not see. The
//! same check first passes with the fault disarmed. This binary holds this
//! one test: the fault switch and the park are process-wide.
#![cfg(target_os = "linux")]

#[path = "../../tests/huge_reuse/mod.rs"]
mod huge_reuse;

use shoalloc::internals::fault::{set, Fault};

#[test]
fn huge_reuse_check_catches_an_allocator_that_maps_afresh() {
    huge_reuse::check_huge_reuse().unwrap_or_else(|e| panic!("the healthy run failed: {e}"));
    // SAFETY: the fault only stops reuse (every freed mapping is unmapped);
    // nothing else runs in this process.
    unsafe { set(Fault::NoHugeReuse, true) };
    let faulty = huge_reuse::check_huge_reuse();
    // SAFETY: as above.
    unsafe { set(Fault::NoHugeReuse, false) };
    match faulty {
        Err(e) => println!("caught: {e}"),
        Ok(()) => panic!("the check passed on an allocator that never reuses huge mappings"),
    }
}
