//! Deliberate faults, switched on only by tests that prove the checkers have teeth.
//!
//! Each switch is read with one relaxed load on a slow path (cache refill),
//! never on the per-allocation fast path, so leaving them compiled in costs
//! nothing measurable. They are hidden from the documentation: no program
//! should ever set them.

use core::sync::atomic::{AtomicBool, Ordering};

static DOUBLE_HANDOUT: AtomicBool = AtomicBool::new(false);

/// While on, each refill of a thread cache hands its first block out without
/// removing it from the cache, so the block is handed out twice.
#[doc(hidden)]
pub fn set_double_handout(on: bool) {
    DOUBLE_HANDOUT.store(on, Ordering::Relaxed);
}

#[inline]
pub(crate) fn double_handout() -> bool {
    DOUBLE_HANDOUT.load(Ordering::Relaxed)
}
