//! Deliberate faults, switched on only by tests that prove the checkers have teeth.
//!
//! Each switch is read with one relaxed load on a slow path (cache refill),
//! never on the per-allocation fast path, so leaving them compiled in costs
//! nothing measurable. They are hidden from the documentation: no program
//! should ever set them.

use crate::size_class::NUM_CLASSES;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

static DOUBLE_HANDOUT: AtomicBool = AtomicBool::new(false);

static STRAND_ON_EXIT: AtomicBool = AtomicBool::new(false);

/// While on, a dying thread's exit hook marks the thread dead but does not
/// return its cached blocks: they are stranded, as in an allocator that
/// forgets abandoned caches. Shows that the thread-churn RSS check can fail.
///
/// # Safety
/// Leaks on purpose; only the test that shows the RSS check fails may call it.
#[doc(hidden)]
pub unsafe fn set_strand_on_exit(on: bool) {
    STRAND_ON_EXIT.store(on, Ordering::Relaxed);
}

#[inline]
pub(crate) fn strand_on_exit() -> bool {
    STRAND_ON_EXIT.load(Ordering::Relaxed)
}

/// Per class, a block that a refill handed out and that the next refill of
/// the class hands out again.
static STASH: [AtomicPtr<u8>; NUM_CLASSES] = [const { AtomicPtr::new(null_mut()) }; NUM_CLASSES];

/// While on, every other refill of a thread cache hands out a block that is
/// already live (handed out by the previous refill of that class), so one
/// block has two owners. The free lists themselves stay intact, so the
/// corruption is only what the two owners do to each other — exactly what the
/// checkers must see.
///
/// # Safety
/// Breaks `GlobalAlloc`'s contract on purpose (a block gets two owners): only
/// tests that prove their checkers catch it may call it, in a process whose
/// heap they then discard.
#[doc(hidden)]
pub unsafe fn set_double_handout(on: bool) {
    DOUBLE_HANDOUT.store(on, Ordering::Relaxed);
    if !on {
        for s in &STASH {
            s.store(null_mut(), Ordering::Relaxed);
        }
    }
}

/// Called by a refill that just took `fresh` from a new batch: `Some(block)`
/// means "hand out this already-live block instead and keep `fresh` cached".
#[inline]
pub(crate) fn double_handout(class: usize, fresh: *mut u8) -> Option<*mut u8> {
    if !DOUBLE_HANDOUT.load(Ordering::Relaxed) {
        return None;
    }
    let stashed = STASH[class].swap(null_mut(), Ordering::Relaxed);
    if stashed.is_null() {
        STASH[class].store(fresh, Ordering::Relaxed);
        None
    } else {
        Some(stashed)
    }
}
