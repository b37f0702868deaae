//! The small path: how the front gets and returns one block of a size class.
//!
//! [`Shoal`](crate::Shoal) is one generic `GlobalAlloc` front over a
//! [`SmallPath`]; large objects and size-class routing are the front's. The
//! production path is [`ThreadCached`]; the ablations swap in [`Uncached`]
//! (every operation on the shared pools) or `LockedCached` (thread caches over
//! one mutex, in `locked`), so a benchmark difference comes from the one
//! layer that differs.

use super::block_state;
use super::checked_segments::{check_popped, CheckedSegments};
use super::pool::{alloc_uncached, free_uncached, Pools};
use super::segment::{self, small_block, Segments};
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

    /// Frees `block` after [`Self::classify_for_free`] has just said it is
    /// a block of `class`: a free that checks its pointer (the secure path)
    /// skips that check here, so the C `free`, which classifies first, pays
    /// it once.
    ///
    /// # Safety
    /// `Self::classify_for_free(block) == Some(class)`, and
    /// `free(class, block)`'s contract holds.
    #[inline(always)]
    unsafe fn free_classified(class: usize, block: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { Self::free(class, block) }
    }

    /// Called before a medium object is allocated: the secure path turns on
    /// the segments' guard pages there too, so a process whose first
    /// allocation is medium does not map its first segment unguarded.
    #[inline(always)]
    fn before_medium() {}

    /// The class of `ptr`, a pointer a program frees without a size, if it
    /// is a block of one of our pages (`small_block`'s answer); a path
    /// that keeps a state per block reads the class from there, answers
    /// only for handed-out blocks and aborts on a small block that is not.
    #[inline(always)]
    fn classify_for_free(ptr: *const u8) -> Option<usize> {
        small_block(ptr)
    }
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
    SECURE_CACHES.flush_current();
    SECURE_POOLS.maintain(true);
}

/// The secure path's own pools and caches: its blocks carry states that the
/// other paths do not keep, so the two never exchange blocks.
/// Their backing checks every link the pools follow ([`CheckedSegments`]).
static SECURE_POOLS: Pools<CheckedSegments> = Pools::new(CheckedSegments);

thread_caches!(static SECURE_CACHES: ThreadCaches<Pools<CheckedSegments>> = &SECURE_POOLS, slot SecureSlot);

/// The secure path's pools (the statistics read them beside [`pools`]).
pub(crate) fn secure_pools() -> &'static Pools<CheckedSegments> {
    &SECURE_POOLS
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

/// `ShoalSecure`'s small path: [`ThreadCached`] plus a state byte per block
/// (see [`block_state`]). A free aborts with a message unless the pointer is
/// a block of its class that is handed out — a double free, delayed or not,
/// an interior or foreign pointer, a Rust `dealloc` with the wrong layout;
/// and every block a free list leads to must be a block of the class and not
/// handed out before its link is followed, so a link overwritten after a free
/// (a use-after-free write) stops the process instead of handing out an
/// arbitrary address. Links are stored encoded (`link_keys`, through
/// [`CheckedSegments`]). Costs an address-map lookup, a state byte and a
/// link encoding per operation.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecureCached;

// SAFETY: as for `ThreadCached`, over `SECURE_POOLS`: every block comes from
// and goes back to those pools, which hand each block to one owner at a
// time; the checks only add aborts.
unsafe impl SmallPath for SecureCached {
    #[inline(always)]
    fn alloc(class: usize) -> *mut u8 {
        let block = SECURE_CACHES.alloc_checked(class, |b| check_popped(b, class));
        if !block.is_null() {
            // SAFETY: a free block of `class` (checked by `check_popped`
            // whether it came through the cache or not), hence in a
            // segment.
            unsafe { block_state::hand_out(block, class) };
        }
        block
    }

    #[inline(always)]
    unsafe fn free(class: usize, block: *mut u8) {
        block_state::take_back(block, class);
        // SAFETY: a live block of `class` from `SECURE_POOLS` (its state
        // said so), given up by the caller.
        unsafe { SECURE_CACHES.free(class, block) }
    }

    #[inline(always)]
    fn classify_for_free(ptr: *const u8) -> Option<usize> {
        let live = block_state::live_class(ptr);
        if live.is_none() {
            if let Some(class) = small_block(ptr) {
                // A block of ours that is not handed out.
                block_state::misfree(ptr, class);
            }
        }
        live
    }

    #[inline]
    fn before_medium() {
        segment::want_guard_pages();
    }

    #[inline(always)]
    unsafe fn free_classified(class: usize, block: *mut u8) {
        // SAFETY: `classify_for_free`, that is `live_class`, said a
        // handed-out block of `class` (the caller's contract).
        unsafe { block_state::take_back_live(block, class) };
        // SAFETY: a live block of `class` from `SECURE_POOLS` (its state
        // said so), given up by the caller.
        unsafe { SECURE_CACHES.free(class, block) }
    }
}
