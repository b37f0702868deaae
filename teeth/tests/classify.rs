//! The pointer-classification check can fail: with
//! `Fault::TrustInteriorPointers` armed (any address inside a page of small
//! blocks counts as a block), `tests/classify.rs`'s check must report an
//! interior pointer taken for a block. The same check first passes with the
//! fault disarmed. This binary holds this one test: the switch is
//! process-wide.

#[path = "../../tests/pointer_checks/mod.rs"]
mod pointer_checks;

use shoalloc::internals::fault::{set, Fault};

#[test]
fn classification_check_catches_an_allocator_that_trusts_interior_pointers() {
    pointer_checks::check_classification()
        .unwrap_or_else(|e| panic!("the healthy run failed: {e}"));
    // SAFETY: the fault only widens what `owner` accepts; the check frees
    // nothing but its own objects, whose starts stay correctly classified.
    unsafe { set(Fault::TrustInteriorPointers, true) };
    let faulty = pointer_checks::check_classification();
    // SAFETY: as above.
    unsafe { set(Fault::TrustInteriorPointers, false) };
    match faulty {
        Err(e) => println!("caught: {e}"),
        Ok(()) => panic!("the check passed on an allocator that trusts interior pointers"),
    }
}
