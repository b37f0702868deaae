//! Block states for the secure small path: whether each small block is
//! handed out, so that every double free and every free of a pointer that is
//! not a live block is detected, and a corrupted free-list link is caught
//! before it is followed.
//!
//! One byte per 16-byte granule of a segment (the smallest class), in the
//! segment's reserved units, after its header ([`STATE_OFFSET`]): the byte of a block's first
//! granule holds its state, at a transposed position ([`spread`]) so that
//! nearby blocks do not share a cache line of states. Bytes, not bits, because a byte is a memory
//! location of its own: the thread that owns a block reads and writes its
//! byte with plain (relaxed) loads and stores, and two threads working on
//! neighbouring blocks never touch the same location — no atomic
//! read-modify-write on the fast path. The cost is one more cache line per
//! operation and 1/16 of the memory of the blocks in use.
//!
//! Invariant: a block's byte is [`LIVE`] exactly while the secure path has
//! handed it out; the byte of every other granule is anything but `LIVE`
//! (zero for memory never used, [`FREE`] once freed). A page leaves its class
//! only when all its blocks are home, that is freed, so a page taken by
//! another class (or a medium object) inherits no `LIVE` byte.
//!
//! What this cannot see: two threads freeing the same block at the same
//! time (a race in the program) may both find it `LIVE`; blocks of the
//! other small paths (`Shoal`'s default) have no states.

use super::segment::{SEGMENT_SIZE, STATE_OFFSET, UNIT};
use super::units::UNITS;
use crate::fatal;
use crate::sync::statics::{AtomicU8, Ordering};

/// A block that is handed out.
const LIVE: u8 = 0xA1;
/// A block that was freed (and may since have been handed out again by
/// another path, or be cached, pooled or home).
const FREE: u8 = 0xF5;

/// The state byte of the block at `block`.
///
/// # Safety
/// `block` lies in a published segment.
#[inline(always)]
unsafe fn state(block: *const u8) -> &'static AtomicU8 {
    let addr = block as usize;
    let base = addr & !(SEGMENT_SIZE - 1);
    // SAFETY: the caller says a segment starts at `base`; its state table
    // covers one byte per 16 bytes of the segment, is mapped for the
    // segment's (the process's) lifetime, and is only ever accessed through
    // these atomics.
    // The byte is reached from `block` itself, so it keeps the segment
    // mapping's provenance.
    unsafe {
        &*block
            .wrapping_sub(addr - base)
            .wrapping_add(STATE_OFFSET + spread((addr - base) >> 4))
            .cast::<AtomicU8>()
    }
}

/// Where granule `g`'s byte sits in the table: transposed, so that one
/// cache line of states holds the granules at the same offset of each of
/// the segment's 64 units — never neighbouring blocks, nor blocks of one
/// page of less than a unit. A plain layout puts the states of 1 KiB of
/// blocks in one line, and two threads working on nearby blocks (carved in
/// the same run, handed over in batches, freed by another thread) would
/// write that line alternately.
#[inline(always)]
const fn spread(g: usize) -> usize {
    const PER_UNIT: usize = UNIT >> 4;
    (g % PER_UNIT) * UNITS as usize + g / PER_UNIT
}

/// Whether the block at `block` is handed out.
///
/// # Safety
/// `block` lies in a published segment.
#[inline(always)]
pub unsafe fn is_live(block: *const u8) -> bool {
    // SAFETY: forwarded contract.
    unsafe { state(block) }.load(Ordering::Relaxed) == LIVE
}

/// Marks a block that is about to be handed out; aborts if it already is
/// (a free list led to a live block: a link was corrupted, or a block was
/// freed twice through different lists).
///
/// # Safety
/// `block` lies in a published segment.
#[inline(always)]
pub unsafe fn hand_out(block: *const u8) {
    // SAFETY: forwarded contract.
    let s = unsafe { state(block) };
    if s.load(Ordering::Relaxed) == LIVE {
        corrupted_list();
    }
    s.store(LIVE, Ordering::Relaxed);
}

/// Marks a block that is being freed; aborts unless it is handed out.
///
/// # Safety
/// `block` lies in a published segment.
#[inline(always)]
pub unsafe fn take_back(block: *const u8) {
    // SAFETY: forwarded contract.
    let s = unsafe { state(block) };
    match s.load(Ordering::Relaxed) {
        LIVE => s.store(FREE, Ordering::Relaxed),
        FREE => double_free(),
        _ => not_a_block(),
    }
}

#[cold]
#[inline(never)]
fn corrupted_list() -> ! {
    fatal::abort(
        "shoalloc: corrupted free list (a freed block was written to, or freed twice); aborting",
    )
}

#[cold]
#[inline(never)]
fn double_free() -> ! {
    fatal::abort("shoalloc: double free (the block is already free); aborting")
}

/// Reports a free of a pointer that is not a block of ours; for the secure
/// path's callers too (a Rust `dealloc` of an interior or foreign pointer).
#[cold]
#[inline(never)]
pub fn not_a_block() -> ! {
    fatal::abort("shoalloc: free of a pointer that is not an allocated block (interior or foreign); aborting")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a sweep over every granule of a segment: pure arithmetic"
    )]
    fn spread_is_a_permutation_that_separates_neighbours() {
        let n = SEGMENT_SIZE >> 4;
        let mut seen = vec![false; n];
        for g in 0..n {
            let i = spread(g);
            assert!(i < n && !seen[i], "granule {g} -> {i}");
            seen[i] = true;
            if g + 1 < n {
                assert_ne!(i / 64, spread(g + 1) / 64, "neighbours share a line");
            }
        }
    }
}
