//! A pool's per-thread caches: the fast path, with plain loads and stores.
//!
//! Each pool keeps one [`LocalCache`] per *thread index* (see
//! `thread_index`): a small LIFO array of occupied slots that its thread
//! takes from and gives to without any atomic operation. An array, not a
//! chain through the slots: the next object's address is known without
//! touching the current one, so the misses of a refilled batch's slots
//! overlap instead of coming one after another. The caches live in
//! a table of buckets that double in size (bucket `b` holds the caches of
//! indices `2^b − 1 .. 2^(b+1) − 1`), made on first use, so a pool used by
//! two threads holds two or three caches, not one per possible thread.
//!
//! A cache belongs to whichever thread holds its index; a thread that exits
//! gives its index back with its cache still full, and the next thread to
//! take the index inherits the objects (they belong to the pool, not to a
//! thread). The pool's drop empties every cache.

use super::slots::{Batch, Slot, BATCH_MAX};
use crate::sync::{AtomicPtr, Ordering};
use core::ptr;
use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};

/// The most objects a thread cache can hold: two batches.
pub(crate) const CACHE_MAX: usize = 2 * BATCH_MAX;
/// Buckets of caches: indices below `2^BUCKETS − 1` have a cache.
pub(crate) const BUCKETS: usize = 13;
/// Thread indices that have a cache (4095); higher ones use the shared
/// stack directly.
pub(crate) const INDICES: usize = (1 << BUCKETS) - 1;

/// One thread's cache of one pool.
///
/// # Invariants
/// `items[..len]` are occupied slots of the pool, held by the cache (no
/// guard, stack or other cache has them); `len <= CACHE_MAX`. `spare` is
/// null or an empty batch node the cache holds; `shells` holds unoccupied
/// slots. Aligned to two cache lines so that neighbouring threads' caches
/// never share one. An all-zero value is an empty cache.
#[repr(C, align(128))]
pub(crate) struct LocalCache<T> {
    pub(crate) len: usize,
    pub(crate) items: [*const Slot<T>; CACHE_MAX],
    /// A batch node kept for the next flush (saves a pop of the node stack).
    pub(crate) spare: *const Batch<T>,
    /// Empty slots for new objects, taken from the shell stack a chain at a
    /// time.
    pub(crate) shells: Chain<T>,
}

/// A counted chain of slots linked through their `next` words: `len` slots
/// starting at `head` (no terminator; `head` is meaningless when `len` is 0).
///
/// # Invariants
/// The `len` slots are distinct, held by whoever holds the chain, and in
/// nothing else.
#[repr(C)]
pub(crate) struct Chain<T> {
    pub(crate) head: *const Slot<T>,
    pub(crate) len: usize,
}

impl<T> Chain<T> {
    /// No slots.
    pub(crate) const EMPTY: Chain<T> = Chain {
        head: ptr::null(),
        len: 0,
    };

    /// Takes the first slot.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*const Slot<T>> {
        if self.len == 0 {
            return None;
        }
        let slot = self.head;
        // SAFETY: `len > 0`, so `head` is a slot the chain holds.
        self.head = unsafe { (*slot).next() };
        self.len -= 1;
        Some(slot)
    }

    /// Puts `slot` first.
    ///
    /// # Safety
    /// `slot` is a slot the caller holds and gives to the chain.
    #[inline]
    pub(crate) unsafe fn push(&mut self, slot: *const Slot<T>) {
        // SAFETY: the caller's slot.
        unsafe { (*slot).set_next(self.head) };
        self.head = slot;
        self.len += 1;
    }
}

impl<T> LocalCache<T> {
    /// Pops the most recently cached slot.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<*const Slot<T>> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: `len <= CACHE_MAX` (invariant), so `len - 1` is in bounds.
        Some(unsafe { *self.items.get_unchecked(self.len) })
    }

    /// Pushes `slot`.
    ///
    /// # Safety
    /// There is room: `len < CACHE_MAX`.
    #[inline]
    pub(crate) unsafe fn push(&mut self, slot: *const Slot<T>) {
        debug_assert!(self.len < CACHE_MAX);
        // SAFETY: the caller's promise keeps the index in bounds.
        unsafe { *self.items.get_unchecked_mut(self.len) = slot };
        self.len += 1;
    }

    /// Moves the `n` oldest slots into `batch` and shifts the rest down.
    ///
    /// # Safety
    /// The caller holds `batch`; `n <= len` and `n <= BATCH_MAX`.
    #[inline]
    pub(crate) unsafe fn flush_oldest(&mut self, n: usize, batch: &Batch<T>) {
        debug_assert!(n <= self.len && n <= BATCH_MAX);
        // SAFETY: the caller holds `batch`.
        unsafe { batch.fill(&self.items[..n]) };
        self.items.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Fills the (empty) cache with `batch`'s slots.
    ///
    /// # Safety
    /// The caller holds `batch`, whose slots are occupied and now the
    /// cache's; the cache is empty.
    #[inline]
    pub(crate) unsafe fn refill_from(&mut self, batch: &Batch<T>) {
        debug_assert_eq!(self.len, 0);
        // SAFETY: the caller holds `batch`; it carries at most `BATCH_MAX <
        // CACHE_MAX` slots.
        let slots = unsafe { batch.slots() };
        self.items[..slots.len()].copy_from_slice(slots);
        self.len = slots.len();
    }
}

/// Bucket `b`'s number of caches.
#[inline]
fn bucket_len(b: usize) -> usize {
    1 << b
}

/// The bucket of thread index `index` and the cache's place in it.
#[inline]
fn locate(index: usize) -> (usize, usize) {
    let i = index + 1;
    let b = (usize::BITS - 1 - i.leading_zeros()) as usize;
    (b, i - (1 << b))
}

/// Where one thread index's cache sits in every pool's table, computed once
/// per thread (`thread_index` keeps it), so the fast path does no
/// arithmetic beyond an add: the bucket, and the cache's byte offset in it
/// (a cache's size does not depend on `T`: it holds pointers).
///
/// # Invariants
/// `bucket < BUCKETS` and `byte_offset = i * CACHE_SIZE` for some
/// `i < bucket_len(bucket)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheIndex {
    bucket: usize,
    byte_offset: usize,
}

/// Bytes of one cache, whatever `T`.
const CACHE_SIZE: usize = core::mem::size_of::<LocalCache<()>>();

impl CacheIndex {
    /// The place of thread index `index`, if it has a cache
    /// (`index < INDICES`).
    pub fn of(index: usize) -> Option<CacheIndex> {
        (index < INDICES).then(|| {
            let (bucket, offset) = locate(index);
            CacheIndex {
                bucket,
                byte_offset: offset * CACHE_SIZE,
            }
        })
    }

    /// The thread index this place belongs to.
    #[cfg(test)]
    pub(crate) fn index(self) -> usize {
        (1 << self.bucket) + self.byte_offset / CACHE_SIZE - 1
    }

    /// Packs the place into a word whose lowest bit is clear.
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn pack(self) -> usize {
        (self.byte_offset << 8) | (self.bucket << 1)
    }

    /// Unpacks a word made by [`CacheIndex::pack`].
    #[cfg_attr(loom, allow(dead_code))]
    #[inline]
    pub(crate) fn unpack(word: usize) -> CacheIndex {
        CacheIndex {
            bucket: (word >> 1) & 0x7f,
            byte_offset: word >> 8,
        }
    }
}

/// The table of a pool's thread caches.
///
/// # Invariants
/// `buckets[b]` is null or a zeroed-then-used allocation of `bucket_len(b)`
/// caches, published with Release and freed only by `Drop`.
pub(crate) struct Caches<T> {
    buckets: [AtomicPtr<LocalCache<T>>; BUCKETS],
}

impl<T> Caches<T> {
    /// No caches yet.
    pub(crate) fn new() -> Self {
        Self {
            buckets: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// The cache at `at`, made if needed.
    ///
    /// The pointer stays valid until the table is dropped. Only the thread
    /// that holds `at`'s thread index may form a reference from it, and only
    /// while it runs no code that could use the pool again.
    #[inline]
    pub(crate) fn cache(&self, at: CacheIndex) -> *mut LocalCache<T> {
        // SAFETY: `at.bucket < BUCKETS` (the type's invariant).
        let slot = unsafe { self.buckets.get_unchecked(at.bucket) };
        let mut bucket = slot.load(Ordering::Acquire);
        if bucket.is_null() {
            bucket = self.publish_bucket(at.bucket);
        }
        // SAFETY: a published bucket holds `bucket_len(b)` caches, and
        // `byte_offset` is the offset of one of them (the type's invariant).
        unsafe { bucket.byte_add(at.byte_offset) }
    }

    #[cold]
    fn publish_bucket(&self, b: usize) -> *mut LocalCache<T> {
        let layout = Layout::array::<LocalCache<T>>(bucket_len(b)).expect("small");
        // SAFETY: a cache is 128 bytes or more, so `layout` is not empty.
        let fresh = unsafe { alloc_zeroed(layout) }.cast::<LocalCache<T>>();
        if fresh.is_null() {
            handle_alloc_error(layout);
        }
        match self.buckets[b].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: ours was never published.
                unsafe { dealloc(fresh.cast(), layout) };
                theirs
            }
        }
    }

    /// Every cache made so far, for the pool's drop.
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(&mut LocalCache<T>)) {
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            let p = bucket.load(Ordering::Acquire);
            for i in 0..if p.is_null() { 0 } else { bucket_len(b) } {
                // SAFETY: `&mut self`: no thread uses a cache now; the bucket
                // holds `bucket_len(b)` caches (all-zero ones are empty).
                f(unsafe { &mut *p.add(i) });
            }
        }
    }
}

impl<T> Drop for Caches<T> {
    fn drop(&mut self) {
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            let p = bucket.load(Ordering::Acquire);
            if !p.is_null() {
                let layout = Layout::array::<LocalCache<T>>(bucket_len(b)).expect("small");
                // SAFETY: made by `publish_bucket` with this layout; the
                // owner emptied the caches first (their slots are not ours).
                unsafe { dealloc(p.cast(), layout) };
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn indices_map_to_distinct_caches() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1), (1, 0));
        assert_eq!(locate(2), (1, 1));
        assert_eq!(locate(3), (2, 0));
        assert_eq!(
            locate(INDICES - 1),
            (BUCKETS - 1, bucket_len(BUCKETS - 1) - 1)
        );
        let at = |i| CacheIndex::of(i).unwrap();
        assert_eq!(CacheIndex::unpack(at(INDICES - 1).pack()), at(INDICES - 1));
        assert_eq!(at(5).pack() & 1, 0);
        for i in [0, 1, 2, 3, 100, INDICES - 1] {
            assert_eq!(at(i).index(), i);
        }
        let caches = Caches::<u8>::new();
        let a = caches.cache(at(0));
        let b = caches.cache(at(1));
        let c = caches.cache(at(2));
        assert!(a != b && b != c && !a.is_null());
        assert_eq!(caches.cache(at(0)), a);
        assert!(CacheIndex::of(INDICES).is_none());
    }
}
