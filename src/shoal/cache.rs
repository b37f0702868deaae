//! Per-thread caches: the fast path.
//!
//! A [`ThreadCache`] keeps two free lists for every size class: `recent`,
//! the blocks this thread freed, and `stock`, a batch that came from the
//! shared pool (or a `recent` list retired whole). Free pushes onto
//! `recent`; allocation pops `recent` first, then `stock`. Both are plain
//! loads and stores on memory only this thread touches, no atomic
//! read-modify-write, and `recent` is LIFO, so a block freed is the next one
//! handed out while it is still in the CPU cache.
//!
//! When a free makes `recent` a whole batch ([`batch_len`] blocks), the list
//! is retired as it stands: it becomes `stock` if that is empty, or else goes
//! to the shared pool ([`SharedPool::give`], one CAS). When both lists are
//! empty, an allocation takes a batch from the pool into `stock`
//! ([`SharedPool::take`], one CAS). Nothing is walked: a batch is handed over
//! by its head and length, so a flush costs O(1) however long the batch and
//! touches none of its blocks' cache lines. The shared pools see one atomic
//! operation per batch, and a thread that only frees (a consumer) returns its
//! surplus instead of hoarding it.
//!
//! There is no back-and-forth at a boundary: after a retirement `stock` is
//! never empty, so the next allocations are served locally, and after a
//! refill `recent` must gain a whole batch before it is retired again.
//!
//! Invariant, per class: `recent_len` and `stock_len` count the blocks on the
//! null-terminated `recent` and `stock` lists; between calls
//! `recent_len < batch_len(class)` and `stock_len <= batch_len(class)`, so
//! a thread holds fewer than [`cache_limit`] blocks of a class; every block
//! on either list is a free block of that class from the one pool this cache
//! is used with.

use super::pool::{Batch, FreeBlock, SharedPool};
#[cfg(doc)]
use super::size_class::cache_limit;
use super::size_class::{batch_len, NUM_CLASSES};
use core::ptr::null_mut;

/// Reports a double free detected on the fast path and aborts.
#[cold]
#[inline(never)]
fn double_free() -> ! {
    crate::fatal::abort("shoalloc: double free (the block is already on this thread's free list)")
}

/// The free lists of one class in one thread.
#[derive(Clone, Copy, Debug)]
struct ClassCache {
    /// Blocks this thread freed, newest first: popped first, pushed by free.
    recent: *mut FreeBlock,
    /// Blocks on `recent`.
    recent_len: u32,
    /// Blocks on `stock`.
    stock_len: u32,
    /// A batch from the pool or a retired `recent` list: popped when
    /// `recent` is empty.
    stock: *mut FreeBlock,
}

impl ClassCache {
    const EMPTY: Self = Self {
        recent: null_mut(),
        recent_len: 0,
        stock_len: 0,
        stock: null_mut(),
    };

    /// Takes `recent` away as a batch (it is null-terminated).
    fn take_recent(&mut self) -> Batch {
        let batch = Batch {
            head: self.recent,
            len: self.recent_len,
        };
        self.recent = null_mut();
        self.recent_len = 0;
        batch
    }

    /// Takes `stock` away as a batch.
    fn take_stock(&mut self) -> Batch {
        let batch = Batch {
            head: self.stock,
            len: self.stock_len,
        };
        self.stock = null_mut();
        self.stock_len = 0;
        batch
    }
}

/// One thread's free lists, two per size class. `const`-constructible and
/// without `Drop`, so it can live in a thread-local that registers no
/// destructor (see `shoal::thread`).
#[derive(Debug)]
pub struct ThreadCache {
    classes: [ClassCache; NUM_CLASSES],
    /// This thread's share of the shared pools (see [`SharedPool::take`]):
    /// batches it retires go there and refills look there first. Dealt by
    /// `shoal::thread` when the cache is armed; 0 until then.
    shard: usize,
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
            classes: [ClassCache::EMPTY; NUM_CLASSES],
            shard: 0,
        }
    }

    /// Sets the pool shard this cache gives to and takes from first.
    pub fn set_shard(&mut self, shard: usize) {
        self.shard = shard;
    }

    /// A free block of `class`, or null when the pool is out of memory.
    ///
    /// # Safety
    /// `pool` is the pool every earlier call on this cache was given: the
    /// cached blocks are handed out as blocks of `pool`.
    #[inline]
    pub unsafe fn alloc(&mut self, pool: &impl SharedPool, class: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.alloc_checked(pool, class, |_| {}) }
    }

    /// [`Self::alloc`], showing `check` every block before its link is
    /// followed: the secure small path validates there that a list still
    /// leads to a free block of the class (a corrupted link aborts instead
    /// of being dereferenced). `check` must not return unless the block is
    /// one of ours.
    ///
    /// # Safety
    /// As [`Self::alloc`].
    #[inline(always)]
    pub unsafe fn alloc_checked(
        &mut self,
        pool: &impl SharedPool,
        class: usize,
        check: impl Fn(*mut FreeBlock),
    ) -> *mut u8 {
        let list = &mut self.classes[class];
        let block = list.recent;
        if !block.is_null() {
            check(block);
            // SAFETY: blocks on our lists are free blocks of `pool` we own.
            list.recent = unsafe { pool.next_of(block) };
            list.recent_len -= 1;
            return block.cast();
        }
        let block = list.stock;
        if !block.is_null() {
            check(block);
            // SAFETY: as above.
            list.stock = unsafe { pool.next_of(block) };
            list.stock_len -= 1;
            return block.cast();
        }
        self.refill(pool, class, check)
    }

    /// Both lists are empty: takes a batch from the shared pool into `stock`
    /// and returns its first block.
    #[cold]
    #[inline(never)]
    fn refill(
        &mut self,
        pool: &impl SharedPool,
        class: usize,
        check: impl Fn(*mut FreeBlock),
    ) -> *mut u8 {
        let Some(batch) = pool.take(class, batch_len(class), self.shard) else {
            return null_mut();
        };
        let block = batch.head;
        let list = &mut self.classes[class];
        #[cfg(all(shoalloc_fault, not(loom)))]
        if let Some(live) = crate::fault::double_handout(class, block.cast()) {
            // Deliberate fault for the teeth tests: keep the whole batch and
            // hand out a block that already has an owner.
            list.stock = block;
            list.stock_len = batch.len;
            return live;
        }
        check(block);
        // SAFETY: the batch is ours; its head is a free block.
        list.stock = unsafe { pool.next_of(block) };
        list.stock_len = batch.len - 1;
        block.cast()
    }

    /// Returns `block` of `class` to this cache; when that makes `recent` a
    /// whole batch, retires it (O(1)).
    ///
    /// # Safety
    /// `block` must be a block of `class` from `pool` that the caller owns and
    /// no longer uses, and `pool` the pool of every earlier call on this cache.
    #[inline]
    pub unsafe fn free(&mut self, pool: &impl SharedPool, class: usize, block: *mut u8) {
        let list = &mut self.classes[class];
        let block = block.cast::<FreeBlock>();
        // The one double free that costs nothing to see (a compare with a
        // word loaded anyway): the block is already first on this thread's
        // list of freed blocks (`free(p); free(p)`). Linking it again would
        // make it its own successor and hand it out twice.
        if block == list.recent {
            double_free();
        }
        // SAFETY: the caller gives us the block of `pool`; its link is ours.
        unsafe { pool.set_next(block, list.recent) };
        list.recent = block;
        list.recent_len += 1;
        if list.recent_len >= batch_len(class) {
            self.retire(pool, class);
        }
    }

    /// `recent` is a whole batch: it becomes `stock` if that is empty, else
    /// it goes to the pool with one CAS. Handed over by its head and length,
    /// without a walk.
    ///
    /// When `stock` is not empty, the freshly freed list is the one given
    /// away and the older stock stays: the pool then only ever receives whole
    /// batches (a partly used stock would go back short and cost later
    /// refills more CASes per block), at the price of the warmer blocks.
    #[cold]
    #[inline(never)]
    fn retire(&mut self, pool: &impl SharedPool, class: usize) {
        let shard = self.shard;
        let list = &mut self.classes[class];
        let batch = list.take_recent();
        if list.stock.is_null() {
            list.stock = batch.head;
            list.stock_len = batch.len;
        } else {
            // SAFETY: `recent`'s blocks were ours (a null-terminated chain of
            // `len` blocks of `class`) and are on no other list.
            unsafe { pool.give(class, batch, shard) };
        }
    }

    /// Returns every cached block to the pool, each list as one batch,
    /// without walking either. Used when a thread exits.
    ///
    /// # Safety
    /// `pool` is the pool every earlier call on this cache was given.
    pub unsafe fn flush_all(&mut self, pool: &impl SharedPool) {
        let shard = self.shard;
        for class in 0..NUM_CLASSES {
            let list = &mut self.classes[class];
            if !list.recent.is_null() {
                let batch = list.take_recent();
                // SAFETY: as in `retire`.
                unsafe { pool.give(class, batch, shard) };
            }
            if !list.stock.is_null() {
                let batch = list.take_stock();
                // SAFETY: `stock`'s blocks were ours and are on no other list.
                unsafe { pool.give(class, batch, shard) };
            }
        }
    }

    /// Blocks of `class` currently cached (for tests and statistics).
    pub fn cached(&self, class: usize) -> u32 {
        let list = &self.classes[class];
        list.recent_len + list.stock_len
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::shoal::size_class::{cache_limit, CLASS_SIZE};
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
        fn take(&self, class: usize, want: u32, _shard: usize) -> Option<Batch> {
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

        unsafe fn give(&self, _class: usize, batch: Batch, _shard: usize) {
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
    fn a_consumer_gives_whole_batches_back_and_stays_below_the_limit() {
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
            assert!(cache.cached(class) < limit, "after free {i}");
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

    #[test]
    fn stock_absorbs_one_retired_batch_before_the_pool_sees_any() {
        let pool = CountingPool::new();
        let mut cache = ThreadCache::new();
        let class = 1;
        let b = batch_len(class);
        // SAFETY: this cache is only ever used with `pool`.
        let blocks: Vec<*mut u8> = (0..3 * b)
            .map(|_| unsafe { cache.alloc(&pool, class) })
            .collect();
        assert_eq!(pool.takes.get(), 3);
        for (i, &p) in blocks.iter().enumerate() {
            // SAFETY: each block came from this cache and is freed once.
            unsafe { cache.free(&pool, class, p) };
            let freed = i as u32 + 1;
            let gives = pool.gives.borrow().len() as u32;
            // `stock` was emptied by the allocations, so the first full
            // `recent` list becomes the stock; each later one goes back.
            assert_eq!(gives, (freed / b).saturating_sub(1), "after {freed} frees");
            assert_eq!(cache.cached(class) + gives * b, freed, "nothing lost");
        }
        assert_eq!(cache.cached(class), b, "exactly one stocked batch left");
        // The stock serves the next batch of allocations without the pool.
        for _ in 0..b {
            // SAFETY: as above.
            assert!(!unsafe { cache.alloc(&pool, class) }.is_null());
        }
        assert_eq!(pool.takes.get(), 3, "served from the stock");
    }

    #[test]
    fn alternating_at_a_batch_boundary_moves_no_batch() {
        let pool = CountingPool::new();
        let mut cache = ThreadCache::new();
        let class = 0;
        let b = batch_len(class);
        // SAFETY: this cache is only ever used with `pool`; every block is
        // freed once.
        unsafe {
            let held: Vec<*mut u8> = (0..b).map(|_| cache.alloc(&pool, class)).collect();
            // Free all but one: the active list is one short of a batch.
            for &p in &held[1..] {
                cache.free(&pool, class, p);
            }
            let mut p = held[0];
            let (takes, gives) = (pool.takes.get(), pool.gives.borrow().len());
            for _ in 0..1000 {
                cache.free(&pool, class, p);
                p = cache.alloc(&pool, class);
            }
            assert_eq!(pool.takes.get(), takes, "no batch taken");
            assert_eq!(pool.gives.borrow().len(), gives, "no batch given");
            cache.free(&pool, class, p);
        }
    }
}
