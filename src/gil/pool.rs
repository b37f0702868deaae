//! A pool: one 16 KiB, 16 KiB-aligned slice of an arena that holds blocks of a
//! single size class, with its header at its first byte.
//!
//! Keeping the header inside the pool is what makes `free` cheap: masking a
//! block's address with `!(POOL_SIZE - 1)` finds the header, which records the
//! block size, the pool's free list and its owning arena — no lookup table.
//!
//! Blocks are carved lazily, as in CPython: a fresh pool hands out its first
//! block and puts only the second on the free list; each time the free list
//! runs dry one more block is carved at `nextoffset`, until `nextoffset` would
//! pass `maxnextoffset`. A pool used for a few small objects therefore touches
//! only the pages it needs.
//!
//! Everything here runs under the global lock; the functions take raw header
//! pointers because the header lives in mapped memory that no Rust reference
//! may alias (blocks next to it are in users' hands).

use super::class::{class_size, ALIGNMENT};
use core::mem::size_of;
use core::ptr;

/// Bytes in a pool (CPython's `POOL_SIZE` on 64-bit builds since 3.10).
pub const POOL_SIZE: usize = 16 << 10;

/// Bytes reserved for the header at the start of each pool, rounded up to
/// [`ALIGNMENT`] so the first block is 16-aligned (CPython's `POOL_OVERHEAD`).
pub const POOL_OVERHEAD: usize = (size_of::<PoolHeader>() + ALIGNMENT - 1) & !(ALIGNMENT - 1);

/// `szidx` of a pool carved from its arena but never initialised for a class
/// (CPython's `DUMMY_SIZE_IDX`): it matches no class, so the first user
/// always lays out the pool afresh.
pub const DUMMY_CLASS: u32 = u32::MAX;

/// The header at the start of every pool (CPython's `pool_header`).
///
/// Invariants, while the pool is in use (`ref_count > 0`, or it sits in a
/// `usedpools` list):
/// - `ref_count` is the number of blocks handed out and not yet freed;
/// - `freeblock` heads a singly-linked list threaded through the first word of
///   each free block; every block on it was carved (lies below `nextoffset`);
/// - `freeblock` is null exactly when the pool is full: every block carved
///   and `nextoffset > maxnextoffset`. A pool with a null `freeblock` is in no
///   list, a pool with a non-null one is in `usedpools[szidx]`;
/// - blocks of class `szidx` lie at `POOL_OVERHEAD + k * class_size(szidx)`.
///
/// While the pool is empty (on its arena's free-pool list) only `nextpool`
/// (the link of that list), `arenaindex` and — for the same-class reuse
/// shortcut — `szidx`, `freeblock`, `nextoffset`, `maxnextoffset` matter.
#[repr(C)]
pub struct PoolHeader {
    /// Blocks currently handed out.
    pub ref_count: u32,
    /// Size class of the blocks, or [`DUMMY_CLASS`].
    pub szidx: u32,
    /// Head of the free-block list; null when the pool is full.
    pub freeblock: *mut u8,
    /// Next pool in `usedpools[szidx]` (circular), or in the arena's free
    /// pools (null-terminated).
    pub nextpool: *mut PoolHeader,
    /// Previous pool in `usedpools[szidx]` (circular); unused on free lists.
    pub prevpool: *mut PoolHeader,
    /// Index of the owning arena in the arena table.
    pub arenaindex: u32,
    /// Offset of the next never-carved block.
    pub nextoffset: u32,
    /// Largest offset at which a whole block still fits.
    pub maxnextoffset: u32,
}

/// The pool holding `block`: its address rounded down to [`POOL_SIZE`].
///
/// Uses `wrapping_sub` so the result keeps `block`'s provenance (the whole
/// arena mapping), which is what lets Miri follow the header accesses.
#[inline]
pub fn pool_of(block: *mut u8) -> *mut PoolHeader {
    block.wrapping_sub(block as usize & (POOL_SIZE - 1)).cast()
}

/// Reads the free-list link stored in the first word of a free block.
///
/// # Safety
/// `block` must be a carved block of a live pool (16-aligned, at least 16
/// bytes, inside the arena mapping) whose first word holds a link.
#[inline]
pub unsafe fn link_of(block: *mut u8) -> *mut u8 {
    // SAFETY: the caller guarantees a readable, aligned word holding a link.
    unsafe { block.cast::<*mut u8>().read() }
}

/// Stores a free-list link in the first word of `block`.
///
/// # Safety
/// `block` must be a carved block of a live pool that nobody else uses.
#[inline]
unsafe fn set_link(block: *mut u8, next: *mut u8) {
    // SAFETY: the caller guarantees a writable, aligned, unshared word.
    unsafe { block.cast::<*mut u8>().write(next) }
}

/// Lays out `pool` for `class` and returns its first block; the second block
/// becomes the whole free list (CPython's tail of `allocate_from_new_pool`).
///
/// # Safety
/// `pool` must be a pool of a mapped arena that holds no live blocks and is
/// not on any free-pool list; the caller links it into `usedpools[class]`.
pub unsafe fn init(pool: *mut PoolHeader, class: usize) -> *mut u8 {
    let size = class_size(class);
    let base = pool.cast::<u8>();
    // SAFETY: the header and the first two blocks lie inside the pool
    // (POOL_OVERHEAD + 2 * 512 < POOL_SIZE), which the caller owns.
    unsafe {
        let first = base.add(POOL_OVERHEAD);
        let second = first.add(size);
        set_link(second, ptr::null_mut());
        (*pool).ref_count = 1;
        (*pool).szidx = class as u32;
        (*pool).freeblock = second;
        (*pool).nextoffset = (POOL_OVERHEAD + 2 * size) as u32;
        (*pool).maxnextoffset = (POOL_SIZE - size) as u32;
        first
    }
}

/// Hands out the head of the free list, whose link the caller has read
/// (`next`; normally [`link_of`] the head). Returns the block and whether the
/// pool is now full, in which case the caller must unlink it from
/// `usedpools` (CPython's `pymalloc_alloc` + `pymalloc_pool_extend`).
///
/// # Safety
/// `pool` must be in use with a non-null `freeblock`, and `next` must be the
/// true successor of that head on the free list.
pub unsafe fn pop(pool: *mut PoolHeader, next: *mut u8) -> (*mut u8, bool) {
    // SAFETY: the caller guarantees a live, non-full pool header.
    unsafe {
        let block = (*pool).freeblock;
        debug_assert!(!block.is_null());
        (*pool).ref_count += 1;
        (*pool).freeblock = next;
        if !next.is_null() {
            return (block, false);
        }
        (block, !extend(pool))
    }
}

/// Carves one more block onto the (empty) free list; false when no block
/// fits any more, i.e. the pool is full.
///
/// # Safety
/// `pool` must be a live, initialised pool header with an empty free list.
unsafe fn extend(pool: *mut PoolHeader) -> bool {
    // SAFETY: the caller guarantees a live header; the new block lies at or
    // below `maxnextoffset`, so it ends inside the pool.
    unsafe {
        let offset = (*pool).nextoffset;
        if offset > (*pool).maxnextoffset {
            return false;
        }
        let block = pool.cast::<u8>().add(offset as usize);
        set_link(block, ptr::null_mut());
        (*pool).freeblock = block;
        (*pool).nextoffset = offset + class_size((*pool).szidx as usize) as u32;
        true
    }
}

/// Returns `block` to the front of its pool's free list. Returns whether the
/// pool was full before, in which case the caller must link it back into
/// `usedpools` (CPython's `pymalloc_free`, first half).
///
/// # Safety
/// `block` must be a block of `pool` currently handed out, and is not used
/// again by the caller.
pub unsafe fn push(pool: *mut PoolHeader, block: *mut u8) -> bool {
    // SAFETY: the caller hands the block back, so its first word is ours, and
    // the header is live while any of its blocks is.
    unsafe {
        let last = (*pool).freeblock;
        set_link(block, last);
        (*pool).freeblock = block;
        debug_assert!((*pool).ref_count > 0);
        (*pool).ref_count -= 1;
        last.is_null()
    }
}

/// Blocks a pool of `class` holds once fully carved.
#[cfg(test)]
pub const fn capacity(class: usize) -> usize {
    (POOL_SIZE - POOL_OVERHEAD) / class_size(class)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gil::class::NB_CLASSES;

    #[test]
    fn header_fits_the_overhead() {
        assert_eq!(POOL_OVERHEAD % ALIGNMENT, 0);
        assert_eq!(POOL_OVERHEAD, 48, "same overhead as CPython on 64-bit");
        for class in 0..NB_CLASSES {
            assert!(capacity(class) >= 2, "a fresh pool carves two blocks");
        }
        assert_eq!(capacity(NB_CLASSES - 1), 31);
    }

    #[test]
    fn masking_finds_the_pool() {
        let base = ptr::null_mut::<u8>().wrapping_add(7 * POOL_SIZE);
        assert_eq!(
            pool_of(base.wrapping_add(POOL_OVERHEAD)) as usize,
            7 * POOL_SIZE
        );
        assert_eq!(
            pool_of(base.wrapping_add(POOL_SIZE - 16)) as usize,
            7 * POOL_SIZE
        );
    }
}
