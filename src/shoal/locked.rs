//! The locked ablation: `Shoal`'s thread caches over shared pools behind one
//! mutex, to measure what the lock-free shared level buys.
//!
//! `ShoalLocked` (`Shoal<LockedCached>`) keeps thread caches exactly as `Shoal`
//! does (its own thread-local slot and thread-exit hook, same batch sizes),
//! but the shared level is [`LockedPools`]: per class an intrusive list of
//! batches plus a carving [`ClassPool`], all behind one process-wide
//! [`std::sync::Mutex`]. It is what a conventional "thread caches over a
//! locked central heap" design (tcmalloc's central free list, jemalloc's
//! arena bins, collapsed into one lock) looks like on Shoal's code. It is a
//! complete, correct allocator, but exists for measurement only.

use super::pool::{Batch, ClassPool, FreeBlock, SharedPool};
use super::segment::Segments;
use super::size_class::NUM_CLASSES;
use super::small_path::SmallPath;
use super::thread::thread_caches;
use crate::sync::Ordering;
use core::ptr::null_mut;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Bit position of the batch length in a locked-list link word. Block
/// addresses are user-space addresses below `2^ADDRESS_BITS` (48 bits, see
/// [`crate::os::ADDRESS_BITS`]), so the top 16 bits of the word are free; a
/// batch holds at most 512 blocks.
const LEN_SHIFT: u32 = 48;
const PTR_MASK: u64 = (1 << LEN_SHIFT) - 1;

const _: () = assert!(crate::os::ADDRESS_BITS <= LEN_SHIFT);

/// Shared pools behind one mutex: the "locked central heap" ablation.
///
/// Per class, free batches form an intrusive singly linked list: the head
/// block of each batch stores `next batch address | batch length << 48` in
/// its [`FreeBlock::link`] word (the batch's own blocks stay chained through
/// `next`, as everywhere else). Nothing on this path allocates through the
/// global allocator, so `ShoalLocked` can be the `#[global_allocator]`.
///
/// Fresh blocks are carved by a plain [`ClassPool`] per class over the same
/// `Segments` that `Shoal` uses; the carving pool's own lock-free stack is
/// never pushed to, so under the lock `ClassPool::take` only carves. Its
/// atomics are uncontended there: the mutex is what serialises everything.
pub struct LockedPools {
    inner: Mutex<LockedInner>,
}

/// The state behind the lock.
///
/// Invariant: `batches[c]` is null or the head block of a batch of class `c`
/// whose link word chains (through the addresses it stores) to further such
/// batches, ending at 0; every block on these lists is free and on no other
/// list; `blocks[c]` counts the blocks on list `c`.
struct LockedInner {
    batches: [*mut FreeBlock; NUM_CLASSES],
    blocks: [usize; NUM_CLASSES],
    carvers: [ClassPool; NUM_CLASSES],
}

// SAFETY: the raw pointers name free blocks in process-wide segments that any
// thread may use; they are only dereferenced by the thread holding the mutex.
unsafe impl Send for LockedInner {}

impl LockedPools {
    /// Empty pools.
    pub const fn new() -> Self {
        Self {
            inner: Mutex::new(LockedInner {
                batches: [null_mut(); NUM_CLASSES],
                blocks: [0; NUM_CLASSES],
                carvers: [const { ClassPool::new() }; NUM_CLASSES],
            }),
        }
    }

    /// The lock. A poisoned lock is entered anyway: nothing under it panics
    /// except debug assertions of broken invariants, and an allocator that
    /// refused every later call would only turn one panic into an abort.
    #[inline]
    fn lock(&self) -> MutexGuard<'_, LockedInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks of `class` waiting in the shared lists (for tests and statistics).
    pub fn pooled_blocks(&self, class: usize) -> usize {
        self.lock().blocks[class]
    }
}

impl Default for LockedPools {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: batches are those given back (valid by `give`'s contract) or
// carved by the class's `ClassPool`, under the one lock.
unsafe impl SharedPool for LockedPools {
    /// One list per class: the locked ablation has no shards.
    fn take(&self, class: usize, want: u32, _shard: usize) -> Option<Batch> {
        let mut inner = self.lock();
        let head = inner.batches[class];
        if head.is_null() {
            // SAFETY: carver `class` is only ever used with `Segments` and
            // `class`; shard 0 < SHARDS.
            return unsafe { inner.carvers[class].take(&Segments, class, want, true, 0) };
        }
        // SAFETY: `head` heads a batch on our list (LockedInner invariant);
        // we hold the lock, so no other thread reads or writes its link.
        let word = unsafe { (*head).link.load(Ordering::Relaxed) };
        let len = (word >> LEN_SHIFT) as u32;
        inner.batches[class] = (word & PTR_MASK) as usize as *mut FreeBlock;
        inner.blocks[class] -= len as usize;
        Some(Batch { head, len })
    }

    unsafe fn give(&self, class: usize, batch: Batch, _shard: usize) {
        debug_assert!(batch.len > 0 && !batch.head.is_null());
        debug_assert!(batch.len < 1 << (64 - LEN_SHIFT));
        let mut inner = self.lock();
        let next = inner.batches[class] as usize as u64;
        debug_assert!(next & !PTR_MASK == 0);
        // SAFETY: the caller gives us the batch, so its head's link word is
        // ours to write; we hold the lock.
        unsafe {
            (*batch.head).link.store(
                next | (u64::from(batch.len) << LEN_SHIFT),
                Ordering::Relaxed,
            )
        };
        inner.batches[class] = batch.head;
        inner.blocks[class] += batch.len as usize;
    }
}

/// The pools of `ShoalLocked`.
static LOCKED_POOLS: LockedPools = LockedPools::new();

thread_caches!(static LOCKED_CACHES: ThreadCaches<LockedPools> = &LOCKED_POOLS, slot LockedSlot);

/// `ShoalLocked`'s small path: `Shoal`'s thread caches, refilled from and
/// flushed to [`LockedPools`]. The fast path is identical to `Shoal`'s; only
/// refills, flushes and thread-exit flushes (one per batch of up to 512
/// blocks) take the lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct LockedCached;

impl LockedCached {
    /// The shared pools behind the lock (for tests and statistics).
    pub fn pools() -> &'static LockedPools {
        &LOCKED_POOLS
    }
}

// SAFETY: blocks come from `LOCKED_POOLS`, which hands each block to one
// owner at a time (lists under the lock; carving through a `ClassPool` per
// class), sized and aligned for their class.
unsafe impl SmallPath for LockedCached {
    #[inline(always)]
    fn alloc(class: usize) -> *mut u8 {
        LOCKED_CACHES.alloc(class)
    }

    #[inline(always)]
    unsafe fn free(class: usize, block: *mut u8) {
        // SAFETY: forwarded contract: a live block of `class` from
        // `LOCKED_POOLS`.
        unsafe { LOCKED_CACHES.free(class, block) }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::shoal::size_class::{class_for, class_of};

    #[test]
    fn thread_exit_returns_cached_blocks() {
        // A class no other unit test uses (56 000 B, in the 57 344 B class),
        // so no concurrent test moves blocks of it: blocks cached by a thread
        // must be in the locked lists once it has exited.
        let class = class_of(56_000);
        assert_eq!(class_for(56_000, 8), Some(class));
        let before = LOCKED_POOLS.pooled_blocks(class);
        std::thread::spawn(move || {
            let blocks: Vec<_> = (0..3).map(|_| LockedCached::alloc(class)).collect();
            for b in blocks {
                assert!(!b.is_null());
                // SAFETY: allocated above from this path, freed once.
                unsafe { LockedCached::free(class, b) };
            }
        })
        .join()
        .unwrap();
        let after = LOCKED_POOLS.pooled_blocks(class);
        assert!(after > before, "before {before}, after {after}");
    }

    #[test]
    fn locked_list_is_lifo_and_counts_blocks() {
        let pools = LockedPools::new();
        let class = class_of(4096);
        let a = pools.take(class, 4, 0).unwrap();
        let b = pools.take(class, 2, 0).unwrap();
        assert_eq!((a.len, b.len), (4, 2));
        let (ah, bh) = (a.head, b.head);
        // SAFETY: both batches are ours, freshly carved.
        unsafe {
            pools.give(class, a, 0);
            pools.give(class, b, 0);
        }
        assert_eq!(pools.pooled_blocks(class), 6);
        let first = pools.take(class, 64, 0).unwrap();
        assert_eq!((first.head, first.len), (bh, 2));
        let second = pools.take(class, 64, 0).unwrap();
        assert_eq!((second.head, second.len), (ah, 4));
        assert_eq!(pools.pooled_blocks(class), 0);
    }
}
