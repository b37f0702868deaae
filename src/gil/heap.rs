//! The small-object heap: `usedpools` per size class over the arena table
//! (CPython's `pymalloc_alloc` / `pymalloc_free`).
//!
//! A [`Heap`] is plain data with no lock of its own; the process-wide one sits
//! behind the global lock in [`super`], and unit tests build private ones with
//! a tiny arena table.

use super::arena::Arenas;
use super::class::NB_CLASSES;
use super::pool::{self, pool_of, PoolHeader};
use core::ptr;

/// Pymalloc: arenas of pools of blocks.
///
/// Invariants:
/// - `usedpools[c]` is null or the head of a circular, doubly-linked list
///   (through `nextpool`/`prevpool`) of the pools of class `c` that have at
///   least one block handed out *and* a non-null free list — exactly the pools
///   an allocation of class `c` may take a block from;
/// - full pools are in no list; empty pools are on their arena's free-pool
///   list (see [`Arenas`]);
/// - `small_blocks` is the number of blocks handed out and not yet freed
///   (a block handed out twice by the fault hook counts twice);
/// - in fault-injection builds, `dup` is either clear or names a block that
///   is at once handed out and the head-or-later entry of its pool's free
///   list, with its real link saved in `dup.next` (see
///   [`Heap::malloc_double`]).
pub struct Heap<const N: usize> {
    usedpools: [*mut PoolHeader; NB_CLASSES],
    arenas: Arenas<N>,
    small_blocks: usize,
    #[cfg(shoalloc_fault)]
    dup: DoubleHandout,
}

/// State of the test-only double-handout fault: the block handed out while
/// left on its free list, and the link that block's first word held before
/// the user was free to overwrite it.
#[cfg(shoalloc_fault)]
struct DoubleHandout {
    block: *mut u8,
    next: *mut u8,
}

// SAFETY: the raw pointers refer to arena memory this heap owns exclusively;
// the heap may move between threads (it lives behind the global lock).
unsafe impl<const N: usize> Send for Heap<N> {}

impl<const N: usize> Heap<N> {
    /// An empty heap: nothing is mapped until the first allocation.
    pub const fn new() -> Self {
        Heap {
            usedpools: [ptr::null_mut(); NB_CLASSES],
            arenas: Arenas::new(),
            small_blocks: 0,
            #[cfg(shoalloc_fault)]
            dup: DoubleHandout {
                block: ptr::null_mut(),
                next: ptr::null_mut(),
            },
        }
    }

    /// A block of class `class` (`< NB_CLASSES`), 16-byte aligned and not
    /// zeroed, or null when no arena can be mapped.
    pub fn malloc(&mut self, class: usize) -> *mut u8 {
        let pool = self.usedpools[class];
        if pool.is_null() {
            return self.malloc_from_new_pool(class);
        }
        // SAFETY: pools in usedpools are live with a non-null free list; the
        // link read by `head_link` is the head's true successor.
        let (block, full) = unsafe { pool::pop(pool, self.head_link(pool)) };
        if full {
            // SAFETY: `pool` is in usedpools[class].
            unsafe { self.unlink_used(class, pool) };
        }
        self.small_blocks += 1;
        block
    }

    /// No pool of this class has a free block: take one from the fullest
    /// arena (CPython's `allocate_from_new_pool`).
    #[cold]
    fn malloc_from_new_pool(&mut self, class: usize) -> *mut u8 {
        let pool = self.arenas.take_pool();
        if pool.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: take_pool hands us a pool in no list with no live blocks;
        // usedpools[class] is empty (that is why we are here).
        let block = unsafe {
            self.link_front(class, pool);
            if (*pool).szidx as usize == class {
                // The pool last held this class: its free list and carving
                // offsets are intact, so skip the re-initialisation.
                let (block, full) = pool::pop(pool, self.head_link(pool));
                if full {
                    self.unlink_used(class, pool);
                }
                block
            } else {
                pool::init(pool, class)
            }
        };
        self.small_blocks += 1;
        block
    }

    /// Frees a block (CPython's `pymalloc_free`): back on its pool's free
    /// list; a pool that was full rejoins `usedpools`, a pool left empty goes
    /// back to its arena.
    ///
    /// # Safety
    /// `block` must have been returned by [`Heap::malloc`] (or
    /// [`Heap::malloc_double`]) of this heap and not freed since.
    pub unsafe fn free(&mut self, block: *mut u8) {
        let pool = pool_of(block);
        self.small_blocks -= 1;
        // SAFETY: the block is live, so its pool header is live and ours.
        unsafe {
            let class = (*pool).szidx as usize;
            if self.put_back(pool, block) {
                // It was full, so it was in no list.
                self.link_back(class, pool);
                return;
            }
            if (*pool).ref_count == 0 {
                self.unlink_used(class, pool);
                self.arenas.return_pool(pool);
            }
        }
    }

    /// Puts a freed block back on its pool's free list (`pool::push`);
    /// returns whether the pool was full.
    ///
    /// # Safety
    /// As [`Heap::free`]; `pool` is the block's pool.
    #[inline]
    unsafe fn put_back(&mut self, pool: *mut PoolHeader, block: *mut u8) -> bool {
        #[cfg(shoalloc_fault)]
        if block == self.dup.block {
            // First free of a double-handed-out block that still sits on the
            // free list: restore its real link instead of pushing it twice,
            // which undoes the fault. The pool cannot have been full (the
            // block is on its free list).
            // SAFETY: the block is ours again; its pool header is live.
            unsafe {
                block.cast::<*mut u8>().write(self.dup.next);
                (*pool).ref_count -= 1;
            }
            self.dup.block = ptr::null_mut();
            return false;
        }
        // SAFETY: forwarded contract: a live block of `pool`, given back.
        unsafe { pool::push(pool, block) }
    }

    /// Test-only fault: like [`Heap::malloc`], but the block also stays at the
    /// head of its pool's free list, so the next allocation of the same class
    /// returns it again. The free list itself stays intact (the block's link
    /// is kept aside, since its owner may overwrite it), so the heap remains
    /// usable as long as at most one of the two copies is freed.
    #[cfg(shoalloc_fault)]
    pub fn malloc_double(&mut self, class: usize) -> *mut u8 {
        if !self.dup.block.is_null() {
            // One fault at a time: a second would lose the first saved link.
            return self.malloc(class);
        }
        let block = self.malloc(class);
        if block.is_null() {
            return block;
        }
        let pool = pool_of(block);
        // SAFETY: `block` was just handed out from `pool`, a live pool of
        // `class`; relinking it makes it the head of usedpools[class] so the
        // very next allocation of the class sees the block again.
        unsafe {
            let next = (*pool).freeblock;
            self.dup = DoubleHandout { block, next };
            (*pool).freeblock = block;
            if next.is_null() {
                // The pop filled the pool and unlinked it; it has a free
                // block again.
                self.link_front(class, pool);
            } else if self.usedpools[class] != pool {
                self.unlink_used(class, pool);
                self.link_front(class, pool);
            }
        }
        block
    }

    /// The successor of `pool`'s free-list head: the head's first word, unless
    /// the head is a double-handed-out block whose word its owner may have
    /// overwritten. Clears the fault state when the block is popped.
    ///
    /// # Safety
    /// `pool` must be live with a non-null free list; the caller pops the head.
    unsafe fn head_link(&mut self, pool: *mut PoolHeader) -> *mut u8 {
        // SAFETY: the caller guarantees a live header with a carved head.
        let head = unsafe { (*pool).freeblock };
        #[cfg(shoalloc_fault)]
        if head == self.dup.block {
            self.dup.block = ptr::null_mut();
            return self.dup.next;
        }
        // SAFETY: a free block's first word is its link.
        unsafe { pool::link_of(head) }
    }

    /// Puts `pool` at the head of `usedpools[class]`.
    ///
    /// # Safety
    /// `pool` must be a live pool of `class` (or about to become one) that is
    /// in no list.
    unsafe fn link_front(&mut self, class: usize, pool: *mut PoolHeader) {
        // SAFETY: forwarded contract.
        unsafe { self.link_back(class, pool) };
        self.usedpools[class] = pool;
    }

    /// Puts `pool` at the tail of `usedpools[class]` (CPython's
    /// `insert_to_usedpool`: a pool that was full is used last, giving the
    /// pools ahead of it a chance to fill up).
    ///
    /// # Safety
    /// As for [`Heap::link_front`].
    unsafe fn link_back(&mut self, class: usize, pool: *mut PoolHeader) {
        let head = self.usedpools[class];
        // SAFETY: `pool` and every pool in the list are live headers.
        unsafe {
            if head.is_null() {
                (*pool).nextpool = pool;
                (*pool).prevpool = pool;
                self.usedpools[class] = pool;
            } else {
                let tail = (*head).prevpool;
                (*pool).nextpool = head;
                (*pool).prevpool = tail;
                (*tail).nextpool = pool;
                (*head).prevpool = pool;
            }
        }
    }

    /// Removes `pool` from `usedpools[class]`.
    ///
    /// # Safety
    /// `pool` must be in `usedpools[class]`.
    unsafe fn unlink_used(&mut self, class: usize, pool: *mut PoolHeader) {
        // SAFETY: `pool` and its neighbours are live headers in the list.
        unsafe {
            let next = (*pool).nextpool;
            if next == pool {
                self.usedpools[class] = ptr::null_mut();
                return;
            }
            let prev = (*pool).prevpool;
            (*prev).nextpool = next;
            (*next).prevpool = prev;
            if self.usedpools[class] == pool {
                self.usedpools[class] = next;
            }
        }
    }

    /// The arena table, for statistics.
    pub fn arenas(&self) -> &Arenas<N> {
        &self.arenas
    }

    /// Blocks handed out and not yet freed.
    pub fn small_blocks(&self) -> usize {
        self.small_blocks
    }

    /// Checks the `usedpools` and arena invariants (tests only).
    #[cfg(test)]
    pub fn check(&self) {
        self.arenas.check();
        for (class, &head) in self.usedpools.iter().enumerate() {
            if head.is_null() {
                continue;
            }
            let mut p = head;
            loop {
                // SAFETY: pools in usedpools are live headers.
                unsafe {
                    assert_eq!((*p).szidx as usize, class, "pool in the wrong list");
                    assert!(!(*p).freeblock.is_null(), "full pool in usedpools");
                    assert!((*p).ref_count > 0, "empty pool in usedpools");
                    assert_eq!((*(*p).nextpool).prevpool, p, "broken back link");
                    p = (*p).nextpool;
                }
                if p == head {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gil::arena::{ARENA_SIZE, POOLS_PER_ARENA};
    use crate::gil::class::class_size;
    use crate::gil::pool::{capacity, POOL_OVERHEAD, POOL_SIZE};
    use std::vec::Vec;

    fn alloc_n(heap: &mut Heap<4>, class: usize, n: usize) -> Vec<*mut u8> {
        (0..n)
            .map(|_| {
                let p = heap.malloc(class);
                assert!(!p.is_null());
                assert_eq!(p as usize % 16, 0);
                p
            })
            .collect()
    }

    fn free_all(heap: &mut Heap<4>, blocks: &[*mut u8]) {
        for &p in blocks {
            // SAFETY: each block came from this heap and is freed once.
            unsafe { heap.free(p) };
        }
        heap.check();
    }

    #[test]
    fn blocks_are_carved_lazily() {
        let mut heap = Heap::<4>::new();
        let size = class_size(2);
        let first = heap.malloc(2);
        let pool = pool_of(first);
        assert_eq!(first as usize - pool as usize, POOL_OVERHEAD);
        // SAFETY: `pool` is live while `first` is.
        let (next, free) = unsafe { ((*pool).nextoffset as usize, (*pool).freeblock) };
        assert_eq!(next, POOL_OVERHEAD + 2 * size, "only two blocks carved");
        assert_eq!(free as usize, first as usize + size);
        let more = alloc_n(&mut heap, 2, 3);
        for (k, &p) in more.iter().enumerate() {
            assert_eq!(p as usize, first as usize + (k + 1) * size, "address order");
        }
        // SAFETY: as above.
        let next = unsafe { (*pool).nextoffset as usize };
        assert_eq!(
            next,
            POOL_OVERHEAD + 5 * size,
            "one block carved per exhaustion"
        );
        // Frees are LIFO.
        // SAFETY: `more[1]` is live.
        unsafe { heap.free(more[1]) };
        assert_eq!(heap.malloc(2), more[1]);
        heap.check();
        free_all(&mut heap, &more);
        free_all(&mut heap, &[first]);
        assert_eq!(heap.small_blocks(), 0);
        assert_eq!(heap.arenas().pools_in_use(), 0);
    }

    #[test]
    fn full_pools_leave_and_rejoin_usedpools() {
        let mut heap = Heap::<4>::new();
        let class = 31;
        let cap = capacity(class);
        let blocks = alloc_n(&mut heap, class, cap);
        assert!(blocks.iter().all(|&p| pool_of(p) == pool_of(blocks[0])));
        assert!(heap.usedpools[class].is_null(), "a full pool is in no list");
        heap.check();
        let next = heap.malloc(class);
        assert_ne!(pool_of(next), pool_of(blocks[0]), "a second pool is taken");
        // SAFETY: live block.
        unsafe { heap.free(blocks[3]) };
        heap.check();
        // The formerly full pool went to the tail; the head keeps serving.
        assert_eq!(pool_of(heap.malloc(class)), pool_of(next));
        assert_eq!(heap.usedpools[class], pool_of(next));
        free_all(&mut heap, &blocks[..3]);
        free_all(&mut heap, &blocks[4..]);
    }

    #[test]
    fn empty_pools_are_reused_by_other_classes() {
        let mut heap = Heap::<4>::new();
        let big = heap.malloc(31);
        let small = heap.malloc(0);
        let old_pool = pool_of(big);
        assert_ne!(old_pool, pool_of(small));
        // SAFETY: live block.
        unsafe { heap.free(big) };
        heap.check();
        assert!(
            heap.usedpools[31].is_null(),
            "the empty pool left usedpools"
        );
        assert_eq!(heap.arenas().pools_in_use(), 1);
        let other = heap.malloc(5);
        assert_eq!(pool_of(other), old_pool, "the empty pool is recycled");
        assert_eq!(
            other as usize - old_pool as usize,
            POOL_OVERHEAD,
            "laid out afresh"
        );
        // SAFETY: live block.
        unsafe { heap.free(other) };
        // Same class again: the old layout is kept and the block reused.
        assert_eq!(heap.malloc(5), other);
        heap.check();
        free_all(&mut heap, &[other, small]);
    }

    #[test]
    #[cfg_attr(miri, ignore = "thousands of blocks")]
    fn new_pools_come_from_the_fullest_arena() {
        let mut heap = Heap::<4>::new();
        let class = 31;
        let cap = capacity(class);
        // Fill arena A completely and start arena B.
        let a = alloc_n(&mut heap, class, cap * POOLS_PER_ARENA);
        let b = alloc_n(&mut heap, class, 2 * cap);
        let arena_a = heap.arenas().arena_of(a[0]).unwrap();
        let arena_b = heap.arenas().arena_of(b[0]).unwrap();
        assert_ne!(arena_a, arena_b);
        assert_eq!(heap.arenas().mapped(), 2);
        // Empty one pool of A: A now has 1 free pool, B 62.
        let victim = &a[10 * cap..11 * cap];
        free_all(&mut heap, victim);
        assert_eq!(heap.arenas().usable_counts(), [1, 62]);
        // A new pool for another class comes from A, the fuller arena.
        let x = heap.malloc(0);
        assert_eq!(heap.arenas().arena_of(x), Some(arena_a));
        assert_eq!(pool_of(x), pool_of(victim[0]));
        // Drain everything: the arena left at the tail is kept, the other
        // goes back to the OS.
        free_all(&mut heap, &[x]);
        free_all(&mut heap, &a[..10 * cap]);
        free_all(&mut heap, &a[11 * cap..]);
        assert_eq!(heap.arenas().mapped(), 2, "A is the emptiest: kept");
        free_all(&mut heap, &b);
        assert_eq!(heap.arenas().mapped(), 1);
        assert!(!heap.arenas().contains(b[0]), "B was unmapped");
        assert_eq!(heap.small_blocks(), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore = "thousands of blocks")]
    fn exhausted_arena_table_returns_null() {
        let mut heap = Heap::<1>::new();
        let cap = capacity(31);
        let mut blocks = Vec::new();
        loop {
            let p = heap.malloc(31);
            if p.is_null() {
                break;
            }
            blocks.push(p);
        }
        assert_eq!(blocks.len(), cap * POOLS_PER_ARENA);
        assert_eq!(ARENA_SIZE / POOL_SIZE, POOLS_PER_ARENA);
        // Other classes fail too; a free makes room again.
        assert!(heap.malloc(0).is_null());
        // SAFETY: live block.
        unsafe { heap.free(blocks[0]) };
        assert_eq!(heap.malloc(31), blocks[0]);
        for &p in &blocks {
            // SAFETY: each live block freed once.
            unsafe { heap.free(p) };
        }
        heap.check();
    }

    #[test]
    #[cfg(shoalloc_fault)]
    fn double_handout_returns_a_block_twice_and_keeps_the_list() {
        let mut heap = Heap::<4>::new();
        let before = alloc_n(&mut heap, 3, 2);
        let dup = heap.malloc_double(3);
        // SAFETY: the owner of `dup` may write all of it, link word included.
        unsafe { dup.write_bytes(0xAB, class_size(3)) };
        let again = heap.malloc(3);
        assert_eq!(again, dup, "handed out twice");
        let after = alloc_n(&mut heap, 3, 4);
        assert!(after.iter().all(|&p| p != dup && !before.contains(&p)));
        heap.check();
        // Freeing one copy (and never the other) keeps the heap consistent.
        free_all(&mut heap, &before);
        free_all(&mut heap, &after);
        free_all(&mut heap, &[dup]);
        assert_eq!(heap.small_blocks(), 1, "the second copy is still counted");
    }

    #[test]
    #[cfg(shoalloc_fault)]
    fn double_handout_undone_by_an_early_free() {
        let mut heap = Heap::<4>::new();
        // The fault on the block that fills a pool relinks the pool.
        let mut blocks = alloc_n(&mut heap, 31, capacity(31) - 1);
        let dup = heap.malloc_double(31);
        heap.check();
        // SAFETY: the owner may write its block.
        unsafe { dup.write_bytes(0xCD, class_size(31)) };
        // SAFETY: `dup` is live (once); freeing it before the second handout
        // restores the free list.
        unsafe { heap.free(dup) };
        heap.check();
        blocks.push(heap.malloc(31));
        assert_eq!(*blocks.last().unwrap(), dup);
        assert!(heap.usedpools[31].is_null(), "full again");
        free_all(&mut heap, &blocks);
        assert_eq!(heap.small_blocks(), 0);
        assert_eq!(heap.arenas().pools_in_use(), 0);
    }
}
