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
//! A block's byte names its state and its class: [`LIVE`] | class from
//! hand-out to free, [`FREE`] | class while it is free — from its carving
//! (`CheckedSegments` marks each block it carves) until its page leaves the
//! secure path, when the byte is cleared to 0 ([`forget`]).
//!
//! Invariant: the byte of granule `g` is `LIVE | c` exactly while `g` starts
//! a block of class `c` that the secure path has handed out, and `FREE | c`
//! exactly while `g` starts a free block of class `c` of a page that the
//! secure path holds; every other byte is 0. (A page leaves its class only
//! when all its blocks are home, and its bytes are cleared then, so units
//! that a later page or medium object reuses inherit no state.) Hence a
//! free is one compare — the byte must be `LIVE | class` — and so is the
//! check on each block a free list leads to — `FREE | class`, for an
//! aligned address inside a segment of small blocks — with no unit
//! descriptor read and no block-boundary arithmetic.
//!
//! What this cannot see: two threads freeing the same block at the same
//! time (a race in the program) may both find it `LIVE`; blocks of the
//! other small paths (`Shoal`'s default) have no states.

use super::address_map::{self, Granule};
use super::segment::{small_block, SEGMENT_SIZE, STATE_OFFSET, UNIT};
use super::size_class::NUM_CLASSES;
use super::units::UNITS;
use crate::fatal;
use crate::sync::statics::{AtomicU8, Ordering};

/// Flag of a block that is handed out; the low six bits name its class.
const LIVE: u8 = 0x80;
/// Flag of a block that is free (cached, pooled or home); the low six bits
/// name its class.
const FREE: u8 = 0x40;
const _: () = assert!(NUM_CLASSES <= 64);

/// The state of a handed-out block of `class`.
#[inline(always)]
const fn live(class: usize) -> u8 {
    LIVE | class as u8
}

/// The state of a free block of `class`.
#[inline(always)]
const fn free(class: usize) -> u8 {
    FREE | class as u8
}

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

/// Whether `addr` is 16-byte aligned and inside a segment of small blocks,
/// so that it has a state byte. Any address may be asked.
#[inline(always)]
fn has_state(addr: usize) -> bool {
    addr & 15 == 0 && address_map::lookup(addr) == Granule::Small
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

/// Whether `block` — any address, typically one read from a link in
/// freed memory — is a free block of `class`: aligned, in a segment of
/// small blocks, and its byte says so. Only the allocator writes that byte,
/// at block starts, and clears it when the page leaves the secure path
/// ([`forget`]), so no other address passes.
#[inline(always)]
pub fn is_free_block(block: *const u8, class: usize) -> bool {
    // SAFETY: `has_state` just found a segment at `block`.
    has_state(block as usize) && unsafe { state(block) }.load(Ordering::Relaxed) == free(class)
}

/// The class of `block` — any address — if it is a handed-out block; by
/// the invariant, then exactly what [`small_block`] would say.
#[inline(always)]
pub fn live_class(block: *const u8) -> Option<usize> {
    if !has_state(block as usize) {
        return None;
    }
    // SAFETY: `has_state` just found a segment at `block`.
    let s = unsafe { state(block) }.load(Ordering::Relaxed);
    (s & LIVE != 0).then_some((s & !LIVE) as usize)
}

/// Marks a free block of `class` that a list handed to an allocation as
/// handed out. [`is_free_block`] was checked before its link was followed;
/// the byte is checked again here (one compare of a byte just read), so a
/// block that reaches an allocation by any other way while it is not free
/// — a bug in the allocator itself — still stops the process before a
/// second owner gets it.
///
/// # Safety
/// `block` is a block of `class` in a published segment.
#[inline(always)]
pub unsafe fn hand_out(block: *const u8, class: usize) {
    // SAFETY: forwarded contract.
    let s = unsafe { state(block) };
    if s.load(Ordering::Relaxed) != free(class) {
        corrupted_list();
    }
    s.store(live(class), Ordering::Relaxed);
}

/// Marks a freshly carved block of `class` as free.
///
/// # Safety
/// As [`hand_out`].
#[inline(always)]
pub unsafe fn carved(block: *const u8, class: usize) {
    // SAFETY: forwarded contract.
    unsafe { state(block) }.store(free(class), Ordering::Relaxed);
}

/// Clears the byte of a block whose page leaves the secure path (every
/// block of it is home): a later page on these units carves its own.
///
/// # Safety
/// As [`hand_out`].
#[inline(always)]
pub unsafe fn forget(block: *const u8) {
    // SAFETY: forwarded contract.
    unsafe { state(block) }.store(0, Ordering::Relaxed);
}

/// Marks the block at `block`, which a program frees as a block of
/// `class`, as free; aborts unless it is a handed-out block of `class` — a
/// double free, an interior, foreign or stray pointer, or the layout of
/// another class. Any pointer may be passed.
#[inline(always)]
pub fn take_back(block: *const u8, class: usize) {
    if !has_state(block as usize) {
        misfree(block, class);
    }
    // SAFETY: `has_state` just found a segment at `block`.
    let s = unsafe { state(block) };
    if s.load(Ordering::Relaxed) != live(class) {
        misfree(block, class);
    }
    s.store(free(class), Ordering::Relaxed);
}

/// Marks a block that [`live_class`] just found handed out as a block of
/// `class` as free, without reading its byte again.
///
/// # Safety
/// `live_class(block) == Some(class)`.
#[inline(always)]
pub unsafe fn take_back_live(block: *const u8, class: usize) {
    // SAFETY: a handed-out block, hence in a published segment.
    unsafe { state(block) }.store(free(class), Ordering::Relaxed);
}

#[cold]
#[inline(never)]
fn corrupted_list() -> ! {
    fatal::abort(
        "shoalloc: corrupted free list (a block on a free list is not a free block of its class); aborting",
    )
}

/// Names what is wrong with a free of `block` as a block of `class` that
/// is not handed out, and aborts.
#[cold]
#[inline(never)]
pub fn misfree(block: *const u8, class: usize) -> ! {
    if small_block(block) == Some(class) {
        // SAFETY: `small_block` found a block of ours, in a segment.
        if unsafe { state(block) }.load(Ordering::Relaxed) == free(class) {
            double_free()
        }
    }
    not_a_block()
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
