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
//! and `len <= cache_limit(class)` between calls; every block on the list is
//! a free block of that class from the one pool this cache is used with.

use super::pool::{Batch, FreeBlock, SharedPool};
use super::size_class::{batch_len, cache_limit, NUM_CLASSES};
use core::ptr::null_mut;

/// The free list of one class in one thread.
#[derive(Clone, Copy, Debug)]
struct ClassCache {
    head: *mut FreeBlock,
    len: u32,
}

/// One thread's free lists, one per size class. `const`-constructible and
/// without `Drop`, so it can live in a `thread_local!` that registers no
/// destructor (see `shoal::thread`).
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
    ///
    /// # Safety
    /// `pool` is the pool every earlier call on this cache was given: the
    /// cached blocks are handed out as blocks of `pool`.
    #[inline]
    pub unsafe fn alloc(&mut self, pool: &impl SharedPool, class: usize) -> *mut u8 {
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
        let list = &mut self.classes[class];
        #[cfg(all(shoalloc_fault, not(loom)))]
        if let Some(live) = crate::fault::double_handout(class, block.cast()) {
            // Deliberate fault for the teeth tests: keep the whole batch and
            // hand out a block that already has an owner.
            list.head = block;
            list.len = batch.len;
            return live;
        }
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
    /// no longer uses, and `pool` the pool of every earlier call on this cache.
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
    ///
    /// # Safety
    /// `pool` is the pool every earlier call on this cache was given.
    pub unsafe fn flush_all(&mut self, pool: &impl SharedPool) {
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shoal::size_class::CLASS_SIZE;
    use std::cell::{Cell, RefCell};

    /// A pool that records every batch it hands out or receives and carves
    /// from a private arena.
    struct CountingPool {
        arena: RefCell<Vec<u128>>,
        carved: Cell<usize>,
        takes: Cell<u32>,
        gives: RefCell<Vec<u32>>,
        returned: RefCell<Vec<Batch>>,
    }

    impl CountingPool {
        fn new() -> Self {
            Self {
                arena: RefCell::new(vec![0u128; 1 << 14]),
                carved: Cell::new(0),
                takes: Cell::new(0),
                gives: RefCell::new(Vec::new()),
                returned: RefCell::new(Vec::new()),
            }
        }
    }

    // SAFETY: batches are carved from the arena in class-sized steps or are
    // batches given back earlier.
    unsafe impl SharedPool for CountingPool {
        fn take(&self, class: usize, want: u32) -> Option<Batch> {
            self.takes.set(self.takes.get() + 1);
            if let Some(b) = self.returned.borrow_mut().pop() {
                return Some(b);
            }
            let words = CLASS_SIZE[class] as usize / 16;
            let mut arena = self.arena.borrow_mut();
            let base = arena.as_mut_ptr();
            let mut head = null_mut::<FreeBlock>();
            for _ in 0..want {
                let i = self.carved.get();
                self.carved.set(i + words);
                // SAFETY: the arena is large enough for the test's needs.
                let block = unsafe { base.add(i) }.cast::<FreeBlock>();
                // SAFETY: the block is inside the arena and unused.
                unsafe { (*block).next = head };
                head = block;
            }
            Some(Batch { head, len: want })
        }

        unsafe fn give(&self, _class: usize, batch: Batch) {
            let mut n = 0;
            let mut p = batch.head;
            while !p.is_null() {
                n += 1;
                // SAFETY: the batch is a valid chain.
                p = unsafe { (*p).next };
            }
            assert_eq!(n, batch.len, "batch length matches its chain");
            self.gives.borrow_mut().push(batch.len);
            self.returned.borrow_mut().push(batch);
        }
    }

    #[test]
    fn refill_takes_one_batch_and_serves_it_locally() {
        let pool = CountingPool::new();
        let mut cache = ThreadCache::new();
        let class = 2;
        let b = batch_len(class);
        let mut blocks = Vec::new();
        for _ in 0..b {
            // SAFETY: this cache is only ever used with `pool`.
            let p = unsafe { cache.alloc(&pool, class) };
            assert!(!p.is_null());
            blocks.push(p as usize);
        }
        assert_eq!(
            pool.takes.get(),
            1,
            "one batch serves batch_len allocations"
        );
        assert_eq!(cache.cached(class), 0);
        // SAFETY: as above.
        unsafe { cache.alloc(&pool, class) };
        assert_eq!(pool.takes.get(), 2);
        blocks.sort_unstable();
        blocks.dedup();
        assert_eq!(blocks.len(), b as usize, "distinct blocks");
    }

    #[test]
    fn flush_returns_one_batch_past_the_high_water_mark() {
        let pool = CountingPool::new();
        let mut cache = ThreadCache::new();
        let class = 0;
        let limit = cache_limit(class);
        let blocks: Vec<*mut u8> = (0..limit + 1)
            // SAFETY: this cache is only ever used with `pool`.
            .map(|_| unsafe { cache.alloc(&pool, class) })
            .collect();
        assert_eq!(pool.gives.borrow().len(), 0);
        let cached_before = cache.cached(class);
        for (i, &p) in blocks.iter().enumerate() {
            // SAFETY: each block came from this cache and is freed once.
            unsafe { cache.free(&pool, class, p) };
            assert!(cache.cached(class) <= limit, "after free {i}");
        }
        let gives = pool.gives.borrow().clone();
        assert!(!gives.is_empty(), "a consumer hands batches back");
        assert!(gives.iter().all(|&n| n == batch_len(class)));
        let total = cached_before + limit + 1;
        assert_eq!(
            cache.cached(class) + gives.iter().sum::<u32>(),
            total,
            "nothing lost"
        );
    }

    #[test]
    fn flush_all_empties_every_class() {
        let pool = CountingPool::new();
        let mut cache = ThreadCache::new();
        for class in [0, 3, 9] {
            // SAFETY: this cache is only ever used with `pool`; the block is
            // freed once.
            unsafe {
                let p = cache.alloc(&pool, class);
                cache.free(&pool, class, p);
            }
        }
        // SAFETY: as above.
        unsafe { cache.flush_all(&pool) };
        for class in 0..NUM_CLASSES {
            assert_eq!(cache.cached(class), 0);
        }
        assert!(pool.gives.borrow().iter().all(|&n| n <= batch_len(0)));
    }
}
