//! The small path: how the front gets and returns one block of a size class.
//!
//! [`Shoal`](crate::Shoal) is one generic `GlobalAlloc` front over a
//! [`SmallPath`]; large objects and size-class routing are the front's. The
//! production path is [`ThreadCached`]; the ablations swap in [`Uncached`]
//! (every operation on the shared pools) or `LockedCached` (thread caches over
//! one mutex, in `locked`), so a benchmark difference comes from the one
//! layer that differs.

use super::pool::{alloc_uncached, free_uncached, Pools};
use super::segment::Segments;
use super::thread::thread_caches;

/// Alloc and free of one block of a size class.
///
/// # Safety
/// For `class < NUM_CLASSES`, `alloc(class)` returns null or a block of at
/// least `CLASS_SIZE[class]` bytes, aligned as the class promises (see
/// `size_class`), that no other live allocation overlaps and that belongs to
/// the caller until it is given to `free(class, _)`, and it does not unwind.
/// For any other `class` it panics (the front never passes one).
pub unsafe trait SmallPath: 'static {
    /// A block of `class`, or null when out of memory.
    fn alloc(class: usize) -> *mut u8;
    /// Frees a block of `class`.
    ///
    /// # Safety
    /// `block` came from `Self::alloc(class)`, is live, and is not used
    /// afterwards.
    unsafe fn free(class: usize, block: *mut u8);
}

/// The shared lock-free pools of every size class, over the process-wide
/// segments. `Shoal` and `ShoalNoCache` share them.
static POOLS: Pools<Segments> = Pools::new(Segments);

thread_caches!(static CACHES: ThreadCaches<Pools<Segments>> = &POOLS, slot ShoalSlot);

/// The process-wide pools (medium objects ask them to send idle pages home
/// before mapping more memory).
pub(crate) fn pools() -> &'static Pools<Segments> {
    &POOLS
}

/// Gives back at once what can be given back: the calling thread's cached
/// blocks go to the pools, every pool sends its free blocks home, pages
/// whose blocks are all home go to the page heap, and every free unit is
/// purged to the OS.
pub(crate) fn collect() {
    CACHES.flush_current();
    POOLS.maintain(true);
}

/// `Shoal`'s small path: a per-thread cache served with plain loads and
/// stores, refilled from and flushed to `POOLS` one batch per CAS.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadCached;

// SAFETY: blocks come from `POOLS` through this thread's cache (or, without a
// cache, straight from `POOLS`); the pools hand each block to one owner at a
// time and carve it for its class (`pool`, `size_class`).
unsafe impl SmallPath for ThreadCached {
    #[inline(always)]
    fn alloc(class: usize) -> *mut u8 {
        CACHES.alloc(class)
    }

    #[inline(always)]
    unsafe fn free(class: usize, block: *mut u8) {
        // SAFETY: forwarded contract: a live block of `class` from `POOLS`.
        unsafe { CACHES.free(class, block) }
    }
}

/// Ablation: no thread caches. Every small allocation takes a batch from
/// `POOLS` and gives the rest back (two CASes); every free pushes a batch
/// of one (one CAS), all on the class's shared stack head.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uncached;

// SAFETY: as for `ThreadCached`: every block comes from and goes back to
// `POOLS`, which hands each block to one owner at a time.
unsafe impl SmallPath for Uncached {
    #[inline]
    fn alloc(class: usize) -> *mut u8 {
        alloc_uncached(&POOLS, class)
    }

    #[inline]
    unsafe fn free(class: usize, block: *mut u8) {
        // SAFETY: forwarded contract: a live block of `class` from `POOLS`.
        unsafe { free_uncached(&POOLS, class, block) }
    }
}
