//! Shared size-class pools: where thread caches get blocks and return them.
//!
//! Each class has a [`ClassPool`]: a lock-free [`BatchStack`] of free batches
//! plus a *carve word* from which never-used blocks are cut off the class's
//! current segment. A thread cache asks for a batch ([`ClassPool::take`]) and
//! returns one ([`ClassPool::give`]); either costs one successful CAS for the
//! whole batch. Nothing here takes a lock.
//!
//! # The carve word
//! `segment index << 32 | byte offset of the next uncarved block`. Carving `k`
//! blocks CASes the offset forward by `k * size`. When the segment is full, a
//! thread prepares a fresh one and CASes it in; a thread that loses that race
//! gives its segment back to the spare list ([`Backing::release`]) and carves
//! from the winner's. A `(segment, offset)` pair never repeats in a pool —
//! offsets only grow, and a segment that was installed is never installed
//! again — so the carve word has no ABA problem and needs no tag.

use super::size_class::{first_block_offset, CLASS_SIZE, NUM_CLASSES};
use super::stack::{BatchStack, NodeSpace};
use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// A free block as the allocator sees it.
///
/// Invariant: word 0 (`next`) is owned by whoever holds the block (a thread
/// cache or a batch) and read only by that owner; word 1 (`link`) is written
/// only when the block heads a batch about to be pushed, and may be read
/// racily by a concurrent pop (see [`super::stack`]). Every class is at least
/// 16 bytes, so both words fit.
#[repr(C)]
pub struct FreeBlock {
    /// The next block of the same cache list or batch; null at the end.
    pub next: *mut FreeBlock,
    /// The stack link when this block heads a batch in a shared pool.
    pub link: AtomicU64,
}

/// A null-terminated chain of `len` free blocks of one class.
#[derive(Debug)]
pub struct Batch {
    /// First block; its `next` chain has exactly `len` blocks.
    pub head: *mut FreeBlock,
    /// Number of blocks in the chain.
    pub len: u32,
}

/// Where a pool's memory comes from, and how blocks are named by handles.
///
/// The production implementation is `segment::Segments` (4 MiB mappings);
/// the loom models substitute small in-memory segments.
///
/// # Safety
/// - `acquire` returns an index ≥ 1 of a segment that no one else holds, and
///   never returns the same segment again unless `release` gave it back;
/// - `segment_addr(i)` is 16-byte aligned, and `segment_addr(i) ..
///   segment_addr(i) + segment_bytes()` stays mapped and writable for the
///   backing's lifetime;
/// - `segment_bytes()` is below 2^32 (the carve word keeps the offset in 32
///   bits) and exceeds `first_block_offset(c, header_bytes())` plus the
///   largest class size, for every class `c` it is asked for;
/// - `addr_of(handle_of(p)) == p` for every block `p` carved from a segment
///   returned by `acquire`, and `handle_of(p)` is non-zero and at most
///   [`HANDLE_MASK`](super::stack::HANDLE_MASK);
/// - the [`NodeSpace`] link of a block's handle is a word that the pool may
///   overwrite while the block is free.
pub unsafe trait Backing: NodeSpace {
    /// Bytes in each segment.
    fn segment_bytes(&self) -> usize;
    /// Bytes reserved for the segment header before the first block.
    fn header_bytes(&self) -> usize;
    /// Address of segment `index`.
    fn segment_addr(&self, index: u32) -> *mut u8;
    /// The handle of block `block`.
    ///
    /// # Safety
    /// `block` must be a block carved from a segment of this backing.
    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64;
    /// The block named by `handle`.
    ///
    /// # Safety
    /// `handle` must come from `handle_of` on this backing.
    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock;
    /// A fresh segment for `class` (index ≥ 1), or `None` when out of memory
    /// or `class` is not a size class.
    fn acquire(&self, class: usize) -> Option<u32>;
    /// Returns a segment from `acquire` none of whose blocks were handed out.
    ///
    /// # Safety
    /// The caller owns segment `index` (got it from `acquire`, never installed
    /// it anywhere) and gives it up.
    unsafe fn release(&self, index: u32);
}

/// A source and sink of batches for thread caches.
///
/// The lock-free [`Pools`] is the real one; the benchmark ablations provide
/// others (for instance pools behind one mutex) to measure what the lock-free
/// design buys.
///
/// # Safety
/// Every batch `take` returns must be a valid, null-terminated chain of
/// exactly `len` ≥ 1 free blocks of `class` (so its head is non-null), at
/// least `CLASS_SIZE[class]` bytes each and aligned as the class promises,
/// owned by the caller from then on: the thread caches dereference them.
pub unsafe trait SharedPool {
    /// A batch of free blocks of `class` — usually `want` of them (at least
    /// one, whatever `want` says) when carved, however many a thread gave
    /// back when reused — or `None` when out of memory. Panics if `class` is
    /// not a size class.
    fn take(&self, class: usize, want: u32) -> Option<Batch>;
    /// Returns a batch of free blocks of `class`.
    ///
    /// # Safety
    /// Every block in `batch` is a free block of `class` from this pool, owned
    /// by the caller, and appears in no other list.
    unsafe fn give(&self, class: usize, batch: Batch);
}

/// The shared pool of one size class.
#[derive(Debug)]
pub struct ClassPool {
    /// Free batches.
    batches: BatchStack,
    /// `segment index << 32 | offset of the next uncarved block` (0: none yet).
    carve: AtomicU64,
}

impl ClassPool {
    /// An empty pool.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            batches: BatchStack::new(),
            carve: AtomicU64::new(0),
        }
    }

    /// An empty pool.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            batches: BatchStack::new(),
            carve: AtomicU64::new(0),
        }
    }

    /// A batch of free blocks: a whole batch that some thread returned, or
    /// else up to `want` blocks carved from fresh memory.
    ///
    /// # Safety
    /// Every call on this pool passes the same `backing` and `class`: the
    /// stack's handles and the carve word are only meaningful in that backing,
    /// and carved blocks are sized for that class.
    pub unsafe fn take(&self, backing: &impl Backing, class: usize, want: u32) -> Option<Batch> {
        // SAFETY: the caller passes the backing every push used.
        if let Some((handle, len)) = unsafe { self.batches.pop(backing) } {
            return Some(Batch {
                // SAFETY: handles in the stack come from `handle_of`.
                head: unsafe { backing.addr_of(handle) },
                len,
            });
        }
        self.carve(backing, class, want)
    }

    /// Pushes a batch with one CAS.
    ///
    /// # Safety
    /// As [`SharedPool::give`]: the caller owns every block of `batch`, and
    /// `backing` is the one every call on this pool passes.
    pub unsafe fn give(&self, backing: &impl Backing, batch: Batch) {
        debug_assert!(batch.len > 0 && !batch.head.is_null());
        // SAFETY: the caller's batch holds blocks carved from this backing.
        let handle = unsafe { backing.handle_of(batch.head) };
        // SAFETY: the caller owns the batch, so its head is in no stack.
        unsafe { self.batches.push(backing, handle, batch.len) };
    }

    /// Cuts up to `want` never-used blocks off the current segment, installing
    /// a fresh segment when it is exhausted.
    fn carve(&self, backing: &impl Backing, class: usize, want: u32) -> Option<Batch> {
        // A batch is never empty (`SharedPool`'s contract).
        let want = want.max(1);
        let size = CLASS_SIZE[class] as usize;
        let seg_bytes = backing.segment_bytes();
        let mut word = self.carve.load(Ordering::Acquire);
        loop {
            let index = (word >> 32) as u32;
            let offset = word as u32 as usize;
            if index != 0 && offset + size <= seg_bytes {
                let n = want.min(((seg_bytes - offset) / size) as u32);
                let new = word + u64::from(n) * size as u64;
                match self
                    .carve
                    .compare_exchange(word, new, Ordering::AcqRel, Ordering::Acquire)
                {
                    // SAFETY: the CAS gave us blocks [offset, offset + n*size)
                    // of segment `index`, which nobody else can carve.
                    Ok(_) => return Some(unsafe { link_run(backing, index, offset, size, n) }),
                    Err(actual) => {
                        word = actual;
                        continue;
                    }
                }
            }
            let Some(fresh) = backing.acquire(class) else {
                // Out of memory — unless another thread installed a segment
                // meanwhile, in which case carve from that one.
                let now = self.carve.load(Ordering::Acquire);
                if now != word {
                    word = now;
                    continue;
                }
                return None;
            };
            let first = first_block_offset(class, backing.header_bytes());
            let n = want.min(((seg_bytes - first) / size) as u32);
            let new = (u64::from(fresh) << 32) | (first + n as usize * size) as u64;
            match self
                .carve
                .compare_exchange(word, new, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: segment `fresh` is ours and now installed; we carved
                // its first `n` blocks.
                Ok(_) => return Some(unsafe { link_run(backing, fresh, first, size, n) }),
                Err(actual) => {
                    // Another thread installed a segment first; ours was never
                    // used, so any class may have it.
                    // SAFETY: `fresh` came from `acquire` and was never installed.
                    unsafe { backing.release(fresh) };
                    word = actual;
                }
            }
        }
    }
}

impl Default for ClassPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Links `n` consecutive blocks of `size` bytes at `offset` in segment
/// `index` into a batch.
///
/// # Safety
/// The blocks must be freshly carved and owned by the caller.
unsafe fn link_run(
    backing: &impl Backing,
    index: u32,
    offset: usize,
    size: usize,
    n: u32,
) -> Batch {
    debug_assert!(n > 0);
    let first = backing.segment_addr(index).wrapping_add(offset);
    let mut block = first;
    for i in 1..=n as usize {
        let next = if i == n as usize {
            core::ptr::null_mut()
        } else {
            first.wrapping_add(i * size)
        };
        // SAFETY: the caller owns the carved run, which lies inside a mapped
        // segment (Backing contract) and is 16-byte aligned.
        unsafe { (*block.cast::<FreeBlock>()).next = next.cast() };
        block = next;
    }
    Batch {
        head: first.cast(),
        len: n,
    }
}

/// One lock-free pool per size class, each on its own cache lines so that
/// threads working on different classes never contend.
pub struct Pools<B: Backing> {
    backing: B,
    classes: [CachePadded<ClassPool>; NUM_CLASSES],
}

impl<B: Backing> Pools<B> {
    /// Pools over `backing`.
    #[cfg(not(loom))]
    pub const fn new(backing: B) -> Self {
        Self {
            backing,
            classes: [const { CachePadded::new(ClassPool::new()) }; NUM_CLASSES],
        }
    }

    /// Pools over `backing`.
    #[cfg(loom)]
    pub fn new(backing: B) -> Self {
        Self {
            backing,
            classes: core::array::from_fn(|_| CachePadded::new(ClassPool::new())),
        }
    }

    /// The backing store.
    pub fn backing(&self) -> &B {
        &self.backing
    }
}

// SAFETY: batches are popped whole from the class's stack (pushed by `give`,
// whose contract makes them valid chains of free blocks of that class) or
// freshly carved from the class's segments by `link_run`.
unsafe impl<B: Backing> SharedPool for Pools<B> {
    #[inline]
    fn take(&self, class: usize, want: u32) -> Option<Batch> {
        // SAFETY: pool `class` only ever sees `self.backing` and `class`.
        unsafe { self.classes[class].take(&self.backing, class, want) }
    }

    #[inline]
    unsafe fn give(&self, class: usize, batch: Batch) {
        // SAFETY: forwarded contract.
        unsafe { self.classes[class].give(&self.backing, batch) }
    }
}

/// One block straight from the shared pool: take a batch, keep its first
/// block, give the rest back. Two atomic operations; used when no cache is
/// available and by the no-cache ablation.
pub fn alloc_uncached(pool: &impl SharedPool, class: usize) -> *mut u8 {
    let Some(batch) = pool.take(class, 1) else {
        return core::ptr::null_mut();
    };
    let block = batch.head;
    #[cfg(all(shoalloc_fault, not(loom)))]
    if let Some(live) = crate::fault::double_handout(class, block.cast()) {
        // Deliberate fault for the teeth tests: give the whole batch back
        // and hand out a block that already has an owner.
        // SAFETY: the batch is ours.
        unsafe { pool.give(class, batch) };
        return live;
    }
    if batch.len > 1 {
        // SAFETY: the batch is ours; its head's `next` starts the rest.
        let rest = unsafe { (*block).next };
        // SAFETY: the remaining blocks are ours and on no other list.
        unsafe {
            pool.give(
                class,
                Batch {
                    head: rest,
                    len: batch.len - 1,
                },
            )
        };
    }
    block.cast()
}

/// One block straight back to the shared pool as a batch of one.
///
/// # Safety
/// `block` is a live block of `class` from `pool`, not used afterwards.
pub unsafe fn free_uncached(pool: &impl SharedPool, class: usize, block: *mut u8) {
    let block = block.cast::<FreeBlock>();
    // SAFETY: the caller gives us the block.
    unsafe {
        (*block).next = core::ptr::null_mut();
        pool.give(
            class,
            Batch {
                head: block,
                len: 1,
            },
        );
    }
}
