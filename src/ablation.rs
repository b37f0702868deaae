//! Ablations of [`Shoal`](crate::Shoal): the same allocator with one design
//! decision taken out, so the benchmarks can say what each decision buys.
//!
//! These types exist for measurement (`benches/scaling`, `benches/micro`).
//! They are complete, correct `GlobalAlloc`s, but nobody should choose them
//! over `Shoal` for real work.
//!
//! | allocator | thread caches | shared pools | answers the question |
//! |---|---|---|---|
//! | `Shoal` | yes | lock-free (tagged Treiber stacks) | — |
//! | [`ShoalNoCache`] | **no** | the same lock-free pools | what do thread caches buy? |
//! | [`ShoalLocked`] | yes | **one `Mutex`** around all pools | what does lock-freedom of the shared level buy? |
//!
//! Both share the size classes, segments and large-object path with `Shoal`,
//! so a difference in a benchmark comes from the one layer that differs.
//!
//! - `ShoalNoCache` calls [`alloc_uncached`] / [`free_uncached`] on `Shoal`'s
//!   own process-wide pools for every small request: two CASes per
//!   allocation (take a batch, give back its remainder) and one per free,
//!   all on the class's shared stack head.
//! - `ShoalLocked` keeps thread caches exactly as `Shoal` does (its own
//!   thread-local slot and thread-exit hook, same batch sizes), but the
//!   shared level is [`LockedPools`]: per class an intrusive list of batches
//!   plus a carving [`ClassPool`], all behind one process-wide
//!   [`std::sync::Mutex`]. It is what a conventional "thread caches over a
//!   locked central heap" design (tcmalloc's central free list, jemalloc's
//!   arena bins, collapsed into one lock) looks like on Shoal's code.

use crate::large;
use crate::pool::{alloc_uncached, free_uncached, Batch, ClassPool, FreeBlock, SharedPool};
use crate::segment::Segments;
use crate::shoal::POOLS;
use crate::size_class::{class_for, NUM_CLASSES};
use crate::thread::{SlotKey, ThreadCaches, ThreadSlot};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::null_mut;
use core::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Bit position of the batch length in a locked-list link word. Block
/// addresses are user-space addresses below `2^ADDRESS_BITS` (47 bits, see
/// [`crate::os::ADDRESS_BITS`]), so the top 16 bits of the word are free; a
/// batch holds at most 64 blocks.
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
/// [`Segments`] that `Shoal` uses; the carving pool's own lock-free stack is
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
    fn take(&self, class: usize, want: u32) -> Option<Batch> {
        let mut inner = self.lock();
        let head = inner.batches[class];
        if head.is_null() {
            return inner.carvers[class].take(&Segments, class, want);
        }
        // SAFETY: `head` heads a batch on our list (LockedInner invariant);
        // we hold the lock, so no other thread reads or writes its link.
        let word = unsafe { (*head).link.load(Ordering::Relaxed) };
        let len = (word >> LEN_SHIFT) as u32;
        inner.batches[class] = (word & PTR_MASK) as usize as *mut FreeBlock;
        inner.blocks[class] -= len as usize;
        Some(Batch { head, len })
    }

    unsafe fn give(&self, class: usize, batch: Batch) {
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

/// The pools of [`ShoalLocked`].
static LOCKED_POOLS: LockedPools = LockedPools::new();

/// `ShoalLocked`'s own per-thread cache slot (separate from `Shoal`'s, so
/// the two never mix blocks of different pools).
struct LockedSlot;

impl SlotKey for LockedSlot {
    #[inline(always)]
    fn slot() -> *mut ThreadSlot {
        std::thread_local! {
            static SLOT: UnsafeCell<ThreadSlot> = const { UnsafeCell::new(ThreadSlot::new()) };
        }
        SLOT.try_with(|s| s.get()).unwrap_or(core::ptr::null_mut())
    }
}

static LOCKED_CACHES: ThreadCaches<LockedPools, LockedSlot> =
    ThreadCaches::new(&LOCKED_POOLS, locked_thread_exit);

unsafe extern "C" fn locked_thread_exit(slot: *mut c_void) {
    // SAFETY: pthread passes back the value `ThreadCaches::arm` stored.
    unsafe { LOCKED_CACHES.thread_exit(slot) }
}

/// Ablation: `Shoal` without thread caches. Every small allocation and free
/// goes straight to `Shoal`'s lock-free shared pools (one batch of one block
/// at a time), so each costs atomic read-modify-writes on a cache line that
/// all threads share. Large objects are `Shoal`'s.
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// let a = shoalloc::ablation::ShoalNoCache::new();
/// let l = Layout::from_size_align(40, 8).unwrap();
/// // SAFETY: non-zero layout; freed with the same layout.
/// unsafe {
///     let p = a.alloc(l);
///     assert!(!p.is_null());
///     a.dealloc(p, l);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ShoalNoCache {
    _private: (),
}

impl ShoalNoCache {
    /// A handle to the process-wide heap (shared with `Shoal`'s pools).
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

// SAFETY: small blocks come from the same pools `Shoal` uses, which hand each
// block to one owner at a time and size/align them per `class_for`; `dealloc`
// derives the same class from the same layout; large objects are `Shoal`'s.
unsafe impl GlobalAlloc for ShoalNoCache {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            Some(class) => alloc_uncached(&POOLS, class),
            None => large::alloc(layout.size(), layout.align()),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_for(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from `alloc` with this layout, so it is a
            // block of this class from `POOLS`, given up by the caller.
            Some(class) => unsafe { free_uncached(&POOLS, class, ptr) },
            // SAFETY: the same layout made it a large object.
            None => unsafe { large::free(ptr) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            Some(class) => {
                let ptr = alloc_uncached(&POOLS, class);
                if !ptr.is_null() {
                    // SAFETY: a fresh block of at least `layout.size()` bytes.
                    unsafe { ptr.write_bytes(0, layout.size()) };
                }
                ptr
            }
            None => large::alloc_zeroed(layout.size(), layout.align()),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; `self` owns `ptr`.
        unsafe { crate::shoal::realloc_with(self, ptr, layout, new_size) }
    }
}

/// Ablation: `Shoal`'s thread caches over shared pools behind one mutex
/// ([`LockedPools`]) instead of lock-free stacks. The fast path is identical
/// to `Shoal`'s; only refills, flushes and thread-exit flushes (one per batch
/// of up to 64 blocks) take the lock. Large objects are `Shoal`'s.
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// let a = shoalloc::ablation::ShoalLocked::new();
/// let l = Layout::from_size_align(100, 16).unwrap();
/// // SAFETY: non-zero layout; freed with the same layout.
/// unsafe {
///     let p = a.alloc(l);
///     assert!(!p.is_null());
///     a.dealloc(p, l);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ShoalLocked {
    _private: (),
}

impl ShoalLocked {
    /// A handle to the process-wide locked heap.
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// The shared pools behind the lock (for tests and statistics).
    pub fn pools() -> &'static LockedPools {
        &LOCKED_POOLS
    }
}

// SAFETY: as for `Shoal`: blocks come from `LockedPools`, which hands each
// block to one owner at a time (lists under the lock; carving through a
// `ClassPool`), sized and aligned per `class_for`; `dealloc` derives the same
// class from the same layout; large objects are `Shoal`'s.
unsafe impl GlobalAlloc for ShoalLocked {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            Some(class) => LOCKED_CACHES.alloc(class),
            None => large::alloc(layout.size(), layout.align()),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_for(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from `alloc` with this layout, hence this
            // class of `LOCKED_POOLS`; the caller gives it up.
            Some(class) => unsafe { LOCKED_CACHES.free(class, ptr) },
            // SAFETY: the same layout made it a large object.
            None => unsafe { large::free(ptr) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            Some(class) => {
                let ptr = LOCKED_CACHES.alloc(class);
                if !ptr.is_null() {
                    // SAFETY: a fresh block of at least `layout.size()` bytes.
                    unsafe { ptr.write_bytes(0, layout.size()) };
                }
                ptr
            }
            None => large::alloc_zeroed(layout.size(), layout.align()),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; `self` owns `ptr`.
        unsafe { crate::shoal::realloc_with(self, ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size_class::class_of;

    fn fill(p: *mut u8, n: usize, seed: u8) {
        for i in 0..n {
            // SAFETY: callers pass live blocks of at least `n` bytes.
            unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
        }
    }

    fn check(p: *const u8, n: usize, seed: u8) {
        for i in 0..n {
            // SAFETY: callers pass live blocks of at least `n` bytes.
            let b = unsafe { p.add(i).read() };
            assert_eq!(b, seed.wrapping_add(i as u8), "byte {i} of {n}");
        }
    }

    /// Many live blocks of many sizes and alignments: aligned, writable,
    /// pairwise disjoint, contents intact until freed.
    fn sizes_alignments_disjoint(a: &dyn GlobalAlloc) {
        let mut live: Vec<(usize, Layout, u8)> = Vec::new();
        let mut size = 1usize;
        let mut seed = 0u8;
        while size <= 600_000 {
            for align in [1, 8, 16, 64, 4096, 8192] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                seed = seed.wrapping_add(31);
                fill(p, size, seed);
                live.push((p as usize, layout, seed));
            }
            size = size * 3 / 2 + 1;
        }
        let mut spans: Vec<(usize, usize)> = live.iter().map(|(p, l, _)| (*p, l.size())).collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "overlap {w:?}");
        }
        for (p, layout, seed) in live {
            check(p as *const u8, layout.size(), seed);
            // SAFETY: allocated above with this layout, freed once.
            unsafe { a.dealloc(p as *mut u8, layout) };
        }
    }

    fn zeroed_after_dirty(a: &dyn GlobalAlloc) {
        for size in [8, 48, 200, 4000, 70_000, 300_000] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            // SAFETY: non-zero layout, freed with the same layout.
            unsafe {
                let p = a.alloc(layout);
                p.write_bytes(0xAB, size);
                a.dealloc(p, layout);
                let z = a.alloc_zeroed(layout);
                assert!(!z.is_null());
                assert!((0..size).all(|i| z.add(i).read() == 0), "size {size}");
                a.dealloc(z, layout);
            }
        }
    }

    fn realloc_keeps_contents(a: &dyn GlobalAlloc) {
        let mut layout = Layout::from_size_align(3, 8).unwrap();
        // SAFETY: non-zero layout.
        let mut p = unsafe { a.alloc(layout) };
        fill(p, 3, 7);
        let mut size = 3usize;
        // Grow through small classes into large objects, then shrink back.
        let mut sizes: Vec<usize> = Vec::new();
        while size < 1_200_000 {
            size = size * 2 + 5;
            sizes.push(size);
        }
        sizes.extend(sizes.clone().into_iter().rev().skip(1));
        sizes.push(1);
        for new_size in sizes {
            let keep = layout.size().min(new_size);
            // SAFETY: `p` is live with `layout`; the new size is non-zero.
            let q = unsafe { a.realloc(p, layout, new_size) };
            assert!(!q.is_null());
            check(q, keep, 7);
            fill(q, new_size, 7);
            p = q;
            layout = Layout::from_size_align(new_size, 8).unwrap();
        }
        // SAFETY: live with `layout`.
        unsafe { a.dealloc(p, layout) };
    }

    /// Blocks allocated on one set of threads and freed on another, with
    /// threads exiting in between (their caches flushed by the exit hook).
    fn cross_thread(a: &'static (dyn GlobalAlloc + Sync)) {
        const THREADS: usize = 4;
        const PER: usize = 3000;
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<(usize, usize)>)>();
        let producers: Vec<_> = (0..THREADS)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut v = Vec::with_capacity(PER);
                    for i in 0..PER {
                        let size = 8 + (i * 37 + t * 11) % 900;
                        let layout = Layout::from_size_align(size, 8).unwrap();
                        // SAFETY: non-zero layout.
                        let p = unsafe { a.alloc(layout) };
                        assert!(!p.is_null());
                        fill(p, size, (t + i) as u8);
                        v.push((p as usize, size));
                    }
                    tx.send((t, v)).unwrap();
                })
            })
            .collect();
        drop(tx);
        for p in producers {
            p.join().unwrap();
        }
        let consumers: Vec<_> = rx
            .into_iter()
            .map(|(t, v)| {
                std::thread::spawn(move || {
                    for (i, (p, size)) in v.into_iter().enumerate() {
                        assert_eq!(size, 8 + (i * 37 + t * 11) % 900);
                        check(p as *const u8, size, (t + i) as u8);
                        let layout = Layout::from_size_align(size, 8).unwrap();
                        // SAFETY: allocated with this layout, freed once.
                        unsafe { a.dealloc(p as *mut u8, layout) };
                    }
                })
            })
            .collect();
        for c in consumers {
            c.join().unwrap();
        }
    }

    static NOCACHE: ShoalNoCache = ShoalNoCache::new();
    static LOCKED: ShoalLocked = ShoalLocked::new();

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn nocache_sizes_alignments_disjoint() {
        sizes_alignments_disjoint(&NOCACHE);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn locked_sizes_alignments_disjoint() {
        sizes_alignments_disjoint(&LOCKED);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn nocache_zeroed() {
        zeroed_after_dirty(&NOCACHE);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn locked_zeroed() {
        zeroed_after_dirty(&LOCKED);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn nocache_realloc() {
        realloc_keeps_contents(&NOCACHE);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn locked_realloc() {
        realloc_keeps_contents(&LOCKED);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn nocache_cross_thread() {
        cross_thread(&NOCACHE);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn locked_cross_thread() {
        cross_thread(&LOCKED);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn locked_thread_exit_returns_cached_blocks() {
        // A class no other test here uses (56 000 B, in the 57 344 B
        // class), so no concurrent test moves blocks of it: blocks cached
        // by a thread must be in the locked lists once it has exited.
        let class = class_of(56_000);
        assert_eq!(class_for(56_000, 8), Some(class));
        let before = LOCKED_POOLS.pooled_blocks(class);
        std::thread::spawn(|| {
            let layout = Layout::from_size_align(56_000, 8).unwrap();
            // SAFETY: non-zero layout, each freed once with the same layout.
            unsafe {
                let ps: Vec<_> = (0..3).map(|_| LOCKED.alloc(layout)).collect();
                for p in ps {
                    LOCKED.dealloc(p, layout);
                }
            }
        })
        .join()
        .unwrap();
        let after = LOCKED_POOLS.pooled_blocks(class);
        assert!(after > before, "before {before}, after {after}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps segments with mmap, which Miri cannot run")]
    fn locked_list_is_lifo_and_counts_blocks() {
        let pools = LockedPools::new();
        let class = class_of(4096);
        let a = pools.take(class, 4).unwrap();
        let b = pools.take(class, 2).unwrap();
        assert_eq!((a.len, b.len), (4, 2));
        let (ah, bh) = (a.head, b.head);
        // SAFETY: both batches are ours, freshly carved.
        unsafe {
            pools.give(class, a);
            pools.give(class, b);
        }
        assert_eq!(pools.pooled_blocks(class), 6);
        let first = pools.take(class, 64).unwrap();
        assert_eq!((first.head, first.len), (bh, 2));
        let second = pools.take(class, 64).unwrap();
        assert_eq!((second.head, second.len), (ah, 4));
        assert_eq!(pools.pooled_blocks(class), 0);
    }
}
