//! Block states for the secure small path: whether each small block is
//! handed out, so that every double free and every free of a pointer that is
//! not a live block is detected, and a corrupted free-list link is caught
//! before it is followed.
//!
//! One byte per 16-byte granule of a segment (the smallest class), in the
//! segment's units 1 ..= 4 ([`STATE_OFFSET`]): the byte of a block's first
//! granule holds its state. Bytes, not bits, because a byte is a memory
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

use super::segment::{SEGMENT_SIZE, STATE_OFFSET};
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
    unsafe { &*((base + STATE_OFFSET + ((addr - base) >> 4)) as *const AtomicU8) }
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
