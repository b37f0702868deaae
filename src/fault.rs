//! Deliberate faults, for the tests that prove the checkers have teeth.
//!
//! This module exists only in builds with `cfg(shoalloc_fault)`, which the
//! test-only cargo feature `fault-injection` turns on (see `build.rs`); the
//! `teeth/` workspace member enables it for its tests. A normal build —
//! `cargo build`, the benchmarks, `libshoalloc.so` — contains no switch and
//! no check of one (`.ci/no_fault_hooks.sh` verifies that on the release
//! library's symbols).
//!
//! One switch per [`Fault`], set with [`set`] and read with [`is_armed`], for
//! both allocators. Each switch is read on a slow path only (a thread-cache
//! refill, an uncached allocation, a thread's exit hook, a pool's cache
//! flush, a refill's statistics count, a secure pool's link check, the mapping
//! of a segment) or, in `GilAlloc`, under its lock — except
//! [`Fault::TrustInteriorPointers`], read on C `free`'s classification, which
//! is the path it breaks.

use crate::shoal::size_class::NUM_CLASSES;
use crate::sync::statics::{AtomicBool, AtomicPtr, Ordering};
use core::ptr::null_mut;

/// The faults a test can arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A block that is already live is handed out a second time.
    ///
    /// In `Shoal` and its ablations every other refill of a thread cache (and
    /// every other uncached allocation) of a class hands out the block that
    /// the previous one of that class handed out; the refill's own batch
    /// stays intact, so until one owner frees the block the damage is only
    /// what the two owners do to each other. Once one owner frees it, the
    /// other's writes land in a free list's link words and may crash the
    /// process before a checker speaks: the stress teeth run in a child
    /// process and count a crash as caught. In `GilAlloc` a small allocation
    /// leaves its block on the pymalloc pool's free list, with its real link
    /// kept aside, so the next allocation of the class returns it again (one
    /// such block at a time); that heap stays consistent as long as at most
    /// one of the two copies is freed.
    DoubleHandout,
    /// A dying thread's exit hook marks the thread dead but does not return
    /// its cached blocks: they are stranded, as in an allocator that forgets
    /// abandoned caches.
    StrandOnExit,
    /// The pools never send free blocks home: a returned batch always goes
    /// on its class's stack, and neither the tick, nor memory pressure, nor
    /// `collect` drains the stacks. Pages then never leave their class and
    /// nothing is purged, as in an allocator without a page heap.
    KeepPages,
    /// `Pool<T>`: a full thread cache sends its older half to the shared
    /// stack but keeps the newest slot of that half as well, so that object
    /// is both cached and idle and will be handed to two holders.
    PoolKeepsFlushed,
    /// Freed huge mappings are never reused: they are not parked (so they
    /// are unmapped at once) and no parked mapping's pages are moved into a
    /// new one, as in an allocator that maps every huge object afresh.
    NoHugeReuse,
    /// C `free`'s classification trusts any address inside a page of small
    /// blocks: it skips the block-boundary and last-block checks, so an
    /// interior pointer or one into a page's slack counts as a block, as in
    /// an allocator that derives the class from the page alone.
    TrustInteriorPointers,
    /// The statistics forget thread-cache refills: a class pool hands out
    /// batches without counting them, as in a stats layer that misses the
    /// refill path.
    StatsForgetRefills,
    /// The secure pools follow links without checking them (a stack link
    /// naming no segment, a chain leading to something that is not a free
    /// block of the class), as the pools of `Shoal` do.
    UncheckedPoolLinks,
    /// Segments mapped while armed get plain link keys: the secure path
    /// stores free-list links as bare addresses, as `Shoal` does.
    PlainLinks,
    /// Segments mapped while armed get no guard pages, even for the secure
    /// path.
    NoGuardPages,
}

const FAULTS: usize = 10;

static ARMED: [AtomicBool; FAULTS] = [const { AtomicBool::new(false) }; FAULTS];

/// Per class, the block that the last double-hand-out site handed out and
/// that the next one hands out again.
static STASH: [AtomicPtr<u8>; NUM_CLASSES] = [const { AtomicPtr::new(null_mut()) }; NUM_CLASSES];

/// Arms or disarms `fault`, process-wide. Disarming [`Fault::DoubleHandout`]
/// forgets the stashed blocks.
///
/// # Safety
/// An armed fault breaks the allocator's contract on purpose (a block gets two
/// owners, or memory leaks): only a test that proves its checker catches it
/// may arm one, in a process whose heap it then discards.
pub unsafe fn set(fault: Fault, on: bool) {
    ARMED[fault as usize].store(on, Ordering::Relaxed);
    if fault == Fault::DoubleHandout && !on {
        for s in &STASH {
            s.store(null_mut(), Ordering::Relaxed);
        }
    }
}

/// Whether `fault` is armed.
#[inline]
pub fn is_armed(fault: Fault) -> bool {
    ARMED[fault as usize].load(Ordering::Relaxed)
}

/// Called by `Shoal`'s refill and uncached paths with `fresh`, a block they
/// are about to hand out: `Some(block)` means "hand out this already-live
/// block instead, and keep `fresh`".
#[inline]
pub(crate) fn double_handout(class: usize, fresh: *mut u8) -> Option<*mut u8> {
    if !is_armed(Fault::DoubleHandout) {
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
