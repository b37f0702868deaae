//! Per-thread caches: the fast path.
//!
//! A [`ThreadCache`] keeps, for every size class, a singly linked list of free
//! blocks. Allocation pops the head, free pushes onto it: plain loads and
//! stores on memory only this thread touches, no atomic read-modify-write.
//!
//! Only when a list runs dry does the cache take a whole batch from the shared
//! pool ([`SharedPool::take`], one CAS); only when a free would push it past
//! [`cache_limit`] (two batches) does it hand a batch back ([`SharedPool::give`],
//! one CAS). So the shared pools see one atomic operation per batch, and a
//! thread that only frees (a consumer) returns its surplus instead of hoarding.
//!
//! Invariant, per class: `len` equals the number of blocks on the `head` list,
//! and `len <= cache_limit(class)` between calls.

use crate::pool::{Batch, FreeBlock, SharedPool};
use crate::size_class::{batch_len, cache_limit, NUM_CLASSES};
use core::ptr::null_mut;

/// The free list of one class in one thread.
#[derive(Clone, Copy, Debug)]
struct ClassCache {
    head: *mut FreeBlock,
    len: u32,
}

/// One thread's free lists, one per size class. `const`-constructible and
/// without `Drop`, so it can live in a `thread_local!` that registers no
/// destructor (see [`crate::thread`]).
#[derive(Debug)]
pub struct ThreadCache {
    classes: [ClassCache; NUM_CLASSES],
}

impl Default for ThreadCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadCache {
    /// An empty cache.
    pub const fn new() -> Self {
        Self {
            classes: [ClassCache {
                head: null_mut(),
                len: 0,
            }; NUM_CLASSES],
        }
    }

    /// A free block of `class`, or null when the pool is out of memory.
    #[inline]
    pub fn alloc(&mut self, pool: &impl SharedPool, class: usize) -> *mut u8 {
        let list = &mut self.classes[class];
        let block = list.head;
        if !block.is_null() {
            // SAFETY: blocks on our list are free blocks we own; `next` is
            // word 0, valid for every class.
            list.head = unsafe { (*block).next };
            list.len -= 1;
            return block.cast();
        }
        self.refill(pool, class)
    }

    /// Takes a batch from the shared pool and returns its first block.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, pool: &impl SharedPool, class: usize) -> *mut u8 {
        let Some(batch) = pool.take(class, batch_len(class)) else {
            return null_mut();
        };
        let block = batch.head;
        #[cfg(not(loom))]
        if crate::fault::double_handout() {
            // Deliberate fault for the teeth tests: hand the block out but
            // leave it on the list, so it will be handed out again.
            let list = &mut self.classes[class];
            list.head = block;
            list.len = batch.len;
            return block.cast();
        }
        let list = &mut self.classes[class];
        // SAFETY: the batch is ours; its head is a free block.
        list.head = unsafe { (*block).next };
        list.len = batch.len - 1;
        block.cast()
    }

    /// Returns `block` of `class` to this cache, handing a batch to the pool
    /// when the cache is full.
    ///
    /// # Safety
    /// `block` must be a block of `class` from `pool` that the caller owns and
    /// no longer uses.
    #[inline]
    pub unsafe fn free(&mut self, pool: &impl SharedPool, class: usize, block: *mut u8) {
        let list = &mut self.classes[class];
        let block = block.cast::<FreeBlock>();
        // SAFETY: the caller gives us the block; word 0 becomes our link.
        unsafe { (*block).next = list.head };
        list.head = block;
        list.len += 1;
        if list.len > cache_limit(class) {
            self.flush_one(pool, class);
        }
    }

    /// Hands the first [`batch_len`] blocks of `class` to the pool.
    #[cold]
    #[inline(never)]
    fn flush_one(&mut self, pool: &impl SharedPool, class: usize) {
        let list = &mut self.classes[class];
        let n = batch_len(class).min(list.len);
        let batch = Self::split(list, n);
        // SAFETY: the split-off blocks were ours and are on no other list.
        unsafe { pool.give(class, batch) };
    }

    /// Detaches the first `n` (≥ 1) blocks of `list` as a batch.
    fn split(list: &mut ClassCache, n: u32) -> Batch {
        debug_assert!(n >= 1 && n <= list.len);
        let head = list.head;
        let mut last = head;
        for _ in 1..n {
            // SAFETY: the list has at least `n` blocks.
            last = unsafe { (*last).next };
        }
        // SAFETY: `last` is the n-th block of our list.
        unsafe {
            list.head = (*last).next;
            (*last).next = null_mut();
        }
        list.len -= n;
        Batch { head, len: n }
    }

    /// Returns every cached block to the pool, in batches of at most
    /// [`batch_len`]. Used when a thread exits.
    pub fn flush_all(&mut self, pool: &impl SharedPool) {
        for class in 0..NUM_CLASSES {
            while self.classes[class].len > 0 {
                let list = &mut self.classes[class];
                let n = batch_len(class).min(list.len);
                let batch = Self::split(list, n);
                // SAFETY: as in `flush_one`.
                unsafe { pool.give(class, batch) };
            }
        }
    }

    /// Blocks of `class` currently cached (for tests and statistics).
    pub fn cached(&self, class: usize) -> u32 {
        self.classes[class].len
    }
}
