//! Shared size-class pools: where thread caches get blocks and return them.
//!
//! Each class has a [`ClassPool`] with three sources of blocks, tried in
//! order by [`ClassPool::take`]:
//! 1. `shards`: [`SHARDS`] lock-free [`BatchStack`]s of whole batches that
//!    threads gave back — one CAS moves a batch either way, the steady-state
//!    path. A thread gives to its own shard and takes from it first; it
//!    takes another shard's batches only when the next two sources have
//!    nothing without mapping memory (see [`SHARDS`]);
//! 2. `partial`: a lock-free stack of the class's *pages* (see
//!    [`super::page`]) that have blocks at home — one CAS on the page's
//!    anchor takes its whole home list;
//! 3. the *carve word*: never-used blocks cut off the class's current page,
//!    and when that page is used up, a fresh page from the page heap.
//!
//! [`ClassPool::give`] pushes a returned batch on the giver's shard while
//! that stack holds fewer than [`stack_cap`] blocks; past that, the batch is *sent
//! home*: its blocks go back to their pages, one anchor CAS per run of blocks
//! of the same page. A page whose blocks are all home leaves the class and
//! its units return to the page heap, where any class or a medium object may
//! take them, and where they are purged to the OS after a delay. Idle
//! classes are sent home by the periodic tick ([`Pools::maintain`]), and all
//! classes when the page heap would otherwise have to map more memory
//! ([`Pools::take`]). Nothing here takes a lock.
//!
//! # The carve word
//! `page handle << 16 | blocks carved so far` (0: no page yet). Carving `k`
//! blocks CASes the count forward by `k`. When the page is used up, a thread
//! takes a fresh page and CASes it in; a thread that loses that race gives
//! its page back unused; the winner ends the old page's carving (its anchor
//! goes `ACTIVE → FULL | LISTED | FREE`). A `(page, count)` pair does not
//! repeat while a page is installed — counts only grow — and a page is
//! installed again only after all its blocks came home and it went through
//! the page heap, long after any carver that read the old word has failed its
//! CAS (the same premise as the stacks' tags; see DESIGN.md).

use super::counter::Counter;
use super::page::{Anchor, Next};
use super::size_class::{batch_len, CLASS_SIZE, NUM_CLASSES};
use super::stack::{BatchStack, NodeSpace, HANDLE_MASK};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// A free block as the allocator sees it.
///
/// Invariant: word 0 (`next`) is owned by whoever holds the block (a thread
/// cache, a batch, or its page's home list) and read only by that owner,
/// through its backing's [`Backing::next_of`] and [`Backing::set_next`] (the
/// secure path stores it encoded, see `link_keys`);
/// word 1 (`link`) is written only when the block heads a batch about to be
/// pushed, and may be read racily by a concurrent pop (see [`super::stack`]).
/// Every class is at least 16 bytes, so both words fit.
#[repr(C)]
pub struct FreeBlock {
    /// The next block of the same cache list, batch or home list; null at
    /// the end. As the backing stores it: read and written only through
    /// [`Backing::next_of`] and [`Backing::set_next`] (or the same methods of
    /// [`SharedPool`]).
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

/// Where a pool's pages come from, and how blocks and pages are named by
/// handles.
///
/// The production implementation is `segment::Segments` (4 MiB segments of
/// 64 KiB units); the loom models substitute a few small in-memory pages.
///
/// # Safety
/// - `acquire_page` returns the handle of a page that no one else holds,
///   `ACTIVE` and empty ([`Anchor::activate`]), of `page_capacity(class)`
///   blocks of `CLASS_SIZE[class]` bytes starting at `page_start(page)`
///   (aligned as the class promises), and never returns it again until
///   `release_page` gave it back; `page_capacity` is at least 1 and at most
///   [`super::page::MAX_CAPACITY`];
/// - a page's memory and anchor stay valid (mapped; purged memory reads as
///   zero) for the backing's lifetime, even after the page is released;
/// - page and block handles are non-zero, at most [`HANDLE_MASK`], distinct,
///   and name nodes of the [`NodeSpace`] whose link words stay valid; a
///   block's link word is one the pool may overwrite while the block is free;
/// - `addr_of(handle_of(p)) == p` and `page_of(p)` is `p`'s page for every
///   block `p` carved from a page;
/// - after `set_next(p, n)`, `next_of(p)` returns `n` until the next
///   `set_next(p, _)` (for `p` a block carved from a page; nothing else
///   writes word 0 of a free block).
pub unsafe trait Backing: NodeSpace {
    /// Blocks in one page of `class`.
    fn page_capacity(&self, class: usize) -> u32;
    /// A fresh page for `class`, or `None` when out of memory (or, with
    /// `grow` false, when the memory already mapped has no room).
    fn acquire_page(&self, class: usize, grow: bool) -> Option<u64>;
    /// Gives a page's units back to the page heap.
    ///
    /// # Safety
    /// The caller holds page `page` (from `acquire_page`), whose anchor is
    /// `FREE` or which was never carved from, and no block of it is out.
    unsafe fn release_page(&self, page: u64);
    /// As [`Backing::release_page`], for a page whose blocks have all been
    /// idle since `idle_since` (on the backing's clock): the purge may treat
    /// its units as released then rather than now.
    ///
    /// # Safety
    /// As [`Backing::release_page`].
    unsafe fn release_idle_page(&self, page: u64, idle_since: u64) {
        let _ = idle_since;
        // SAFETY: forwarded contract.
        unsafe { self.release_page(page) }
    }
    /// Address of page `page`'s first block.
    fn page_start(&self, page: u64) -> *mut u8;
    /// Page `page`'s anchor.
    fn anchor(&self, page: u64) -> &Anchor;
    /// The page of block `block`.
    ///
    /// # Safety
    /// `block` was carved from a page of this backing.
    unsafe fn page_of(&self, block: *mut FreeBlock) -> u64;
    /// The handle of block `block`.
    ///
    /// # Safety
    /// `block` must be a block carved from a page of this backing.
    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64;
    /// The block named by `handle`.
    ///
    /// # Safety
    /// `handle` must come from `handle_of` on this backing.
    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock;
    /// Milliseconds on a monotonic clock (a model may return a constant).
    fn now_ms(&self) -> u64;
    /// How long freed memory stays resident before [`Backing::purge`] may
    /// discard it.
    fn purge_delay_ms(&self) -> u64;
    /// Discards free units released at least the purge delay before `now`
    /// (every free unit with `force`).
    fn purge(&self, force: bool, now: u64);
    /// Called on each block of `class` that a pool reaches through a link
    /// in freed memory (a stack link, or a chain it cuts or sends home),
    /// before that block's own link is read. The secure path's backing
    /// aborts there unless the block is a free block of `class` (a program
    /// wrote into a freed block); the others check nothing.
    #[inline(always)]
    fn check_free(&self, class: usize, block: *mut FreeBlock) {
        let _ = (class, block);
    }
    /// Called on each block of `class` as it is carved, before it joins a
    /// batch: the secure path's backing marks its state free.
    ///
    /// # Safety
    /// `block` was just carved from a page of `class` of this backing, and
    /// the caller holds it.
    #[inline(always)]
    unsafe fn carved(&self, class: usize, block: *mut FreeBlock) {
        let _ = (class, block);
    }
    /// The successor that free block `block`'s word 0 names (null at the
    /// end of a list). Plain by default; the secure path's backing decodes
    /// it with its segment's keys (`link_keys`), so an address written into
    /// a freed block by the program decodes to garbage that the checks
    /// reject.
    ///
    /// # Safety
    /// `block` is a free block carved from this backing, held by the caller.
    #[inline(always)]
    unsafe fn next_of(&self, block: *mut FreeBlock) -> *mut FreeBlock {
        // SAFETY: the caller holds the free block; word 0 is its link.
        unsafe { (*block).next }
    }
    /// Makes `next` the successor of free block `block` (see
    /// [`Backing::next_of`]).
    ///
    /// # Safety
    /// As [`Backing::next_of`].
    #[inline(always)]
    unsafe fn set_next(&self, block: *mut FreeBlock, next: *mut FreeBlock) {
        // SAFETY: the caller holds the free block; word 0 is its link.
        unsafe { (*block).next = next }
    }
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
    /// not a size class. `shard` names the caller's share of the pool (any
    /// value; a pool may ignore it): batches given with a shard are taken
    /// back with that shard first.
    fn take(&self, class: usize, want: u32, shard: usize) -> Option<Batch>;
    /// Returns a batch of free blocks of `class`, to the caller's `shard`.
    ///
    /// # Safety
    /// Every block in `batch` is a free block of `class` from this pool, owned
    /// by the caller, and appears in no other list.
    unsafe fn give(&self, class: usize, batch: Batch, shard: usize);
    /// The successor stored in free block `block` of this pool, as the
    /// pool's backing stores it ([`Backing::next_of`]): every list and batch
    /// of the pool's blocks is chained through these two methods.
    ///
    /// # Safety
    /// `block` is a free block of this pool held by the caller.
    #[inline(always)]
    unsafe fn next_of(&self, block: *mut FreeBlock) -> *mut FreeBlock {
        // SAFETY: the caller holds the free block; word 0 is its link.
        unsafe { (*block).next }
    }
    /// Makes `next` the successor of free block `block` of this pool.
    ///
    /// # Safety
    /// As [`SharedPool::next_of`].
    #[inline(always)]
    unsafe fn set_next(&self, block: *mut FreeBlock, next: *mut FreeBlock) {
        // SAFETY: the caller holds the free block; word 0 is its link.
        unsafe { (*block).next = next }
    }
}

/// Most blocks one shard's stack of a class keeps before returned batches
/// go home to their pages: about 2 MiB, and at least two batches. Bounds
/// the free memory a shard can hold away from the page heap between ticks
/// (idle classes are drained by the tick, and every class that was given
/// blocks since the last such drain before the heap maps more memory).
/// A thread that builds and frees more than this sends
/// the rest home, where the other threads take it: at 512 KiB the C++
/// objects program's threads traded most of their blocks that way.
pub const fn stack_cap(class: usize) -> u64 {
    let by_bytes = (2 * 1024 * 1024 / CLASS_SIZE[class]) as u64;
    let two_batches = 2 * batch_len(class) as u64;
    if by_bytes > two_batches {
        by_bytes
    } else {
        two_batches
    }
}

/// [`ClassPool`] activity bit: a batch was given since the last pressure relief.
const GIVEN_SINCE_RELIEF: u32 = 1;

/// Batch stacks per class. A thread gives its surplus to its own shard
/// and refills from it, so the blocks it freed come back to it, still warm
/// in its core's cache, instead of to another thread's core. With one stack
/// per class, a thread that builds and tears down more small objects than
/// its cache holds handed its just-freed blocks to the other threads: on
/// two cores the C++ objects program (`capi/bench/objects.cpp`) ran twice
/// as long when its threads sat on cores that share no cache. Threads are
/// dealt shards in turn, so up to `SHARDS` threads each have their own.
#[cfg(not(loom))]
pub const SHARDS: usize = 8;
/// Two under loom: enough for a take to find its own stack empty and take
/// another's, without multiplying the interleavings of every model.
#[cfg(loom)]
pub const SHARDS: usize = 2;

/// One of a class's batch stacks, with its count and counters, on cache
/// lines of its own, so that threads on different shards write no common
/// line on the steady-state path.
#[derive(Debug)]
struct Shard {
    /// Free batches.
    batches: BatchStack,
    /// Blocks in `batches` (added before a push, subtracted after a pop, so
    /// it never reads low while a batch is in the stack).
    stacked: AtomicU64,
    /// Batches taken by threads of this shard ([`Pools::take`]: a
    /// thread-cache refill or an uncached allocation).
    refills: Counter,
    /// Batches given back by threads of this shard ([`Pools::give`]: a
    /// thread-cache flush or an uncached free).
    flushes: Counter,
}

impl Shard {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            batches: BatchStack::new(),
            stacked: AtomicU64::new(0),
            refills: Counter::new(),
            flushes: Counter::new(),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            batches: BatchStack::new(),
            stacked: AtomicU64::new(0),
            refills: Counter::new(),
            flushes: Counter::new(),
        }
    }
}

/// A shard in its pool: on cache lines of its own. Under loom, unpadded:
/// padding means nothing to the model, and the `Pools` a model builds must
/// fit the 32 KiB stack of loom's main thread.
#[cfg(not(loom))]
type ShardSlot = CachePadded<Shard>;
#[cfg(loom)]
type ShardSlot = Shard;

/// The shared pool of one size class.
#[derive(Debug)]
pub struct ClassPool {
    /// Free batches, by shard.
    shards: [ShardSlot; SHARDS],
    /// Pages of this class in state `LISTED` (linked through their handles).
    partial: BatchStack,
    /// `page handle << 16 | blocks carved` (0: no page yet).
    carve: AtomicU64,
    /// `GIVEN_SINCE_RELIEF`, for [`Pools::take`]'s pressure relief.
    activity: AtomicU32,
    /// When a batch was last taken (ms on the backing's clock), for the tick:
    /// a class that took nothing for a purge delay is idle.
    last_take: AtomicU64,
    /// Failed CAS attempts on the batch stacks, the partial stack and the
    /// carve word (see [`crate::stats`]; a relaxed add, only when there
    /// were any).
    cas_retries: Counter,
}

/// A snapshot of one class pool, for the statistics (racy: each word is
/// read once, with no lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Blocks in the batch stacks.
    pub stacked: u64,
    /// The page being carved and the blocks carved from it so far.
    pub carving: Option<(u64, u32)>,
    /// Batches taken since the process started.
    pub refills: u64,
    /// Batches given back since the process started.
    pub flushes: u64,
    /// Failed CAS attempts on the batch stacks (every shard), the partial
    /// stack and the carve word.
    pub cas_retries: u64,
}

impl ClassPool {
    /// An empty pool.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            shards: [const { CachePadded::new(Shard::new()) }; SHARDS],
            partial: BatchStack::new(),
            carve: AtomicU64::new(0),
            activity: AtomicU32::new(0),
            last_take: AtomicU64::new(0),
            cas_retries: Counter::new(),
        }
    }

    /// An empty pool.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            shards: core::array::from_fn(|_| Shard::new()),
            partial: BatchStack::new(),
            carve: AtomicU64::new(0),
            activity: AtomicU32::new(0),
            last_take: AtomicU64::new(0),
            cas_retries: Counter::new(),
        }
    }

    /// This pool's statistics now (racy, see [`PoolSnapshot`]).
    pub fn snapshot(&self) -> PoolSnapshot {
        let word = self.carve.load(Ordering::Relaxed);
        let mut snapshot = PoolSnapshot {
            carving: (word >> 16 != 0).then_some((word >> 16, (word & 0xffff) as u32)),
            cas_retries: self.cas_retries.get(),
            ..PoolSnapshot::default()
        };
        for shard in &self.shards {
            let shard: &Shard = shard;
            snapshot.stacked += shard.stacked.load(Ordering::Relaxed);
            snapshot.refills += shard.refills.get();
            snapshot.flushes += shard.flushes.get();
        }
        snapshot
    }

    /// Counts `n` failed CAS attempts (a branch on a local when there were
    /// none, the common case).
    #[inline]
    fn note_retries(&self, n: u32) {
        if n != 0 {
            self.cas_retries.add(u64::from(n));
        }
    }

    /// Counts a batch taken by a thread of `shard`, unless the teeth tests'
    /// fault forgets it.
    #[inline]
    fn note_refill(&self, shard: usize) {
        #[cfg(all(shoalloc_fault, not(loom)))]
        if crate::fault::is_armed(crate::fault::Fault::StatsForgetRefills) {
            return;
        }
        self.shards[shard].refills.add(1);
    }

    /// Records a take at `now`; a plain load when it is recorded already.
    #[inline]
    fn note_take(&self, now: u64) {
        if self.last_take.load(Ordering::Relaxed) != now {
            self.last_take.store(now, Ordering::Relaxed);
        }
    }

    /// Sets activity bits; a plain load when they are set already (the
    /// common case), so the flag costs no extra atomic read-modify-write.
    #[inline]
    fn note(&self, bits: u32) {
        if self.activity.load(Ordering::Relaxed) & bits != bits {
            self.activity.fetch_or(bits, Ordering::Relaxed);
        }
    }

    /// A batch of free blocks: a whole batch that a thread of `shard`
    /// returned, else the home list of a partial page (cut to `want`, the
    /// rest stacked on `shard`), else up to `want` blocks carved from the
    /// current page or a free span the backing already has, else a batch
    /// another shard holds, else — with `grow` — blocks carved from memory
    /// the backing maps. Another shard's batches come late because their
    /// blocks are warm in another core's cache, often beside blocks that
    /// core still writes (see [`SHARDS`]); they come before new memory, so
    /// a producer whose blocks a consumer frees reuses them.
    ///
    /// # Safety
    /// Every call on this pool passes the same `backing` and `class`: the
    /// stacks' handles and the carve word are only meaningful in that
    /// backing, and pages are sized for that class. `shard < SHARDS`.
    pub unsafe fn take(
        &self,
        backing: &impl Backing,
        class: usize,
        want: u32,
        grow: bool,
        shard: usize,
    ) -> Option<Batch> {
        // SAFETY: forwarded contract.
        if let Some(batch) = unsafe { self.pop(backing, class, shard) } {
            return Some(batch);
        }
        // SAFETY: forwarded contract.
        if let Some(batch) = unsafe { self.take_partial(backing, class, want, shard) } {
            return Some(batch);
        }
        if let Some(batch) = self.carve(backing, class, want, false) {
            return Some(batch);
        }
        for i in 1..SHARDS {
            let from = (shard + i) % SHARDS;
            // SAFETY: forwarded contract.
            if let Some(batch) = unsafe { self.pop(backing, class, from) } {
                return Some(batch);
            }
        }
        if grow {
            self.carve(backing, class, want, true)
        } else {
            None
        }
    }

    /// The top batch of `shard`'s stack, if any.
    ///
    /// # Safety
    /// As [`ClassPool::take`].
    #[inline]
    unsafe fn pop(&self, backing: &impl Backing, class: usize, shard: usize) -> Option<Batch> {
        let shard = &self.shards[shard];
        let mut retries = 0;
        // SAFETY: the caller passes the backing every push used.
        let popped = unsafe { shard.batches.pop_counted(backing, &mut retries) };
        self.note_retries(retries);
        let (handle, len) = popped?;
        shard.stacked.fetch_sub(u64::from(len), Ordering::Relaxed);
        // SAFETY: handles in the stack come from `handle_of`.
        let head = unsafe { backing.addr_of(handle) };
        backing.check_free(class, head);
        Some(Batch { head, len })
    }

    /// The home list of a page from the partial stack, cut after `want`
    /// blocks; the rest goes on `shard`'s stack as one batch.
    ///
    /// # Safety
    /// As [`ClassPool::take`].
    unsafe fn take_partial(
        &self,
        backing: &impl Backing,
        class: usize,
        want: u32,
        shard: usize,
    ) -> Option<Batch> {
        // SAFETY: the partial stack holds page handles pushed with `backing`.
        let (page, _) = unsafe { self.partial.pop(backing) }?;
        let (first, len) = backing.anchor(page).take_all();
        // SAFETY: the home list's handles came from `handle_of`.
        let head = unsafe { backing.addr_of(first) };
        let want = want.max(1);
        if len > want {
            let mut tail = head;
            for _ in 1..want {
                // SAFETY: the list has `len > want` blocks, all ours now.
                tail = unsafe { backing.next_of(tail) };
                backing.check_free(class, tail);
            }
            // SAFETY: as above; `tail` is the `want`-th block.
            let rest = unsafe { backing.next_of(tail) };
            // SAFETY: as above.
            unsafe { backing.set_next(tail, core::ptr::null_mut()) };
            // SAFETY: the remaining blocks are ours and on no other list.
            unsafe { self.push_batch(backing, rest, len - want, shard) };
            return Some(Batch { head, len: want });
        }
        Some(Batch { head, len })
    }

    /// Pushes a batch on `shard`'s stack, counted.
    ///
    /// # Safety
    /// The caller owns the `len` blocks chained from `head`, of this pool's
    /// class and backing.
    unsafe fn push_batch(
        &self,
        backing: &impl Backing,
        head: *mut FreeBlock,
        len: u32,
        shard: usize,
    ) {
        debug_assert!(len > 0 && !head.is_null());
        let shard = &self.shards[shard];
        shard.stacked.fetch_add(u64::from(len), Ordering::Relaxed);
        // SAFETY: the caller's batch holds blocks carved from this backing.
        let handle = unsafe { backing.handle_of(head) };
        // SAFETY: the caller owns the batch, so its head is in no stack.
        let retries = unsafe { shard.batches.push_counted(backing, handle, len) };
        self.note_retries(retries);
    }

    /// Takes a returned batch: on `shard`'s stack while it holds fewer than
    /// [`stack_cap`] blocks, else home to its pages.
    ///
    /// # Safety
    /// As [`SharedPool::give`]: the caller owns every block of `batch`, of
    /// `class`, and `backing` is the one every call on this pool passes;
    /// `shard < SHARDS`.
    pub unsafe fn give(&self, backing: &impl Backing, class: usize, batch: Batch, shard: usize) {
        debug_assert!(batch.len > 0 && !batch.head.is_null());
        self.note(GIVEN_SINCE_RELIEF);
        let shard = &self.shards[shard];
        let len = u64::from(batch.len);
        let before = shard.stacked.fetch_add(len, Ordering::Relaxed);
        #[cfg(all(shoalloc_fault, not(loom)))]
        let before = if crate::fault::is_armed(crate::fault::Fault::KeepPages) {
            0
        } else {
            before
        };
        if before + len <= stack_cap(class) {
            // SAFETY: the caller's batch holds blocks carved from this backing.
            let handle = unsafe { backing.handle_of(batch.head) };
            // SAFETY: the caller owns the batch, so its head is in no stack.
            let retries = unsafe { shard.batches.push_counted(backing, handle, batch.len) };
            self.note_retries(retries);
            return;
        }
        shard.stacked.fetch_sub(len, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { self.send_home(backing, class, batch, None) };
    }

    /// Returns every block of `batch` to its page: one anchor CAS per run of
    /// consecutive blocks of the same page. Pages that become `LISTED` go on
    /// the partial stack; pages whose blocks are all home go to the page heap
    /// — as idle since `idle_since` when that is given.
    ///
    /// # Safety
    /// As [`ClassPool::give`].
    pub unsafe fn send_home(
        &self,
        backing: &impl Backing,
        class: usize,
        batch: Batch,
        idle_since: Option<u64>,
    ) {
        let capacity = backing.page_capacity(class);
        let page_bytes = capacity as usize * CLASS_SIZE[class] as usize;
        let mut block = batch.head;
        let mut left = batch.len;
        if !block.is_null() {
            backing.check_free(class, block);
        }
        while !block.is_null() {
            // SAFETY: every block of the batch is ours and from this backing.
            let page = unsafe { backing.page_of(block) };
            // The page's blocks lie in `start .. start + page_bytes`: one
            // range check per block instead of a descriptor lookup.
            let start = backing.page_start(page) as usize;
            let first = block;
            let mut tail = block;
            let mut run = 1;
            // SAFETY: we own the chain; reading `next` before giving the run
            // away keeps the walk on blocks we still hold.
            let mut next = unsafe { backing.next_of(tail) };
            if !next.is_null() {
                backing.check_free(class, next);
            }
            while !next.is_null() && (next as usize).wrapping_sub(start) < page_bytes {
                tail = next;
                run += 1;
                // SAFETY: as above.
                next = unsafe { backing.next_of(tail) };
                if !next.is_null() {
                    backing.check_free(class, next);
                }
            }
            debug_assert!(run <= left);
            left -= run;
            // SAFETY: `first` is a block of this backing.
            let first_handle = unsafe { backing.handle_of(first) };
            let link_tail = |head: u64| {
                let to = if head == 0 {
                    core::ptr::null_mut()
                } else {
                    // SAFETY: home-list heads are handles from `handle_of`.
                    unsafe { backing.addr_of(head) }
                };
                // SAFETY: `tail` is ours until the anchor CAS succeeds.
                unsafe { backing.set_next(tail, to) };
            };
            // SAFETY: the run `first ..= tail` is ours, of this page.
            match unsafe {
                backing
                    .anchor(page)
                    .give_back(first_handle, run, capacity, link_tail)
            } {
                Next::Stay => {}
                // SAFETY: we made the page LISTED, so we alone push it.
                Next::List => unsafe { self.partial.push(backing, page, 1) },
                // SAFETY: every block is home and the page is FREE: ours.
                Next::Release => unsafe { release(backing, page, idle_since) },
            }
            block = next;
        }
        debug_assert_eq!(left, 0);
    }

    /// Sends every stacked batch home and releases the partial pages whose
    /// blocks are all home — as idle since `idle_since` when that is given
    /// (the tick drains classes that took nothing for a purge delay).
    ///
    /// # Safety
    /// As [`ClassPool::take`].
    pub unsafe fn drain(&self, backing: &impl Backing, class: usize, idle_since: Option<u64>) {
        #[cfg(all(shoalloc_fault, not(loom)))]
        if crate::fault::is_armed(crate::fault::Fault::KeepPages) {
            return;
        }
        for shard in &self.shards {
            let mut node = shard.batches.take_all();
            while node != 0 {
                // SAFETY: we took the chain; its nodes were pushed with `backing`.
                let (next, len) = unsafe { BatchStack::next_of(backing, node) };
                shard.stacked.fetch_sub(u64::from(len), Ordering::Relaxed);
                // SAFETY: a batch handle names its first block.
                let head = unsafe { backing.addr_of(node) };
                // SAFETY: the batch is ours now.
                unsafe { self.send_home(backing, class, Batch { head, len }, idle_since) };
                node = next;
            }
        }
        let capacity = backing.page_capacity(class);
        let mut page = self.partial.take_all();
        while page != 0 {
            // SAFETY: we took the chain of page handles pushed with `backing`.
            let (next, _) = unsafe { BatchStack::next_of(backing, page) };
            if backing.anchor(page).free_if_empty(capacity) {
                // SAFETY: every block is home and we made the page FREE.
                unsafe { release(backing, page, idle_since) };
            } else {
                // SAFETY: we popped the LISTED page, so we alone push it back.
                unsafe { self.partial.push(backing, page, 1) };
            }
            page = next;
        }
    }

    /// Cuts up to `want` never-used blocks off the current page, installing
    /// a fresh page when it is used up.
    fn carve(&self, backing: &impl Backing, class: usize, want: u32, grow: bool) -> Option<Batch> {
        // A batch is never empty (`SharedPool`'s contract).
        let want = want.max(1);
        let size = CLASS_SIZE[class] as usize;
        let capacity = backing.page_capacity(class);
        let mut word = self.carve.load(Ordering::Acquire);
        loop {
            let page = word >> 16;
            let carved = (word & 0xffff) as u32;
            if page != 0 && carved < capacity {
                let n = want.min(capacity - carved);
                match self.carve.compare_exchange(
                    word,
                    word + u64::from(n),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let first = backing
                            .page_start(page)
                            .wrapping_add(carved as usize * size);
                        // SAFETY: the CAS gave us blocks carved .. carved + n
                        // of the page, which nobody else can carve.
                        return Some(unsafe { link_run(backing, class, first, n) });
                    }
                    Err(actual) => {
                        self.note_retries(1);
                        word = actual;
                        continue;
                    }
                }
            }
            let Some(fresh) = backing.acquire_page(class, grow) else {
                // Out of memory — unless another thread installed a page
                // meanwhile, in which case carve from that one.
                let now = self.carve.load(Ordering::Acquire);
                if now != word {
                    word = now;
                    continue;
                }
                return None;
            };
            debug_assert!(fresh != 0 && fresh <= HANDLE_MASK);
            let n = want.min(capacity);
            match self.carve.compare_exchange(
                word,
                (fresh << 16) | u64::from(n),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if page != 0 {
                        self.end_carving(backing, page, capacity);
                    }
                    // SAFETY: page `fresh` is ours and now installed; we
                    // carved its first `n` blocks.
                    return Some(unsafe { link_run(backing, class, backing.page_start(fresh), n) });
                }
                Err(actual) => {
                    // Another thread installed a page first; ours was never
                    // carved from.
                    self.note_retries(1);
                    backing.anchor(fresh).deactivate_unused();
                    // SAFETY: `fresh` came from `acquire_page`, never installed.
                    unsafe { backing.release_page(fresh) };
                    word = actual;
                }
            }
        }
    }

    /// Ends carving of `page`, which this thread just replaced.
    fn end_carving(&self, backing: &impl Backing, page: u64, capacity: u32) {
        match backing.anchor(page).end_carving(capacity) {
            Next::Stay => {}
            // SAFETY: we made the page LISTED, so we alone push it.
            Next::List => unsafe { self.partial.push(backing, page, 1) },
            // SAFETY: every block came home and we made the page FREE.
            Next::Release => unsafe { backing.release_page(page) },
        }
    }
}

impl Default for ClassPool {
    fn default() -> Self {
        Self::new()
    }
}

/// Releases a `FREE` page, stamped idle since `idle_since` when given.
///
/// # Safety
/// As [`Backing::release_page`].
unsafe fn release(backing: &impl Backing, page: u64, idle_since: Option<u64>) {
    match idle_since {
        // SAFETY: forwarded contract.
        Some(since) => unsafe { backing.release_idle_page(page, since) },
        // SAFETY: forwarded contract.
        None => unsafe { backing.release_page(page) },
    }
}

/// Links `n` consecutive blocks of `size` bytes starting at `first` into a
/// batch.
///
/// # Safety
/// The blocks must be freshly carved, inside a mapped page, and owned by the
/// caller.
unsafe fn link_run(backing: &impl Backing, class: usize, first: *mut u8, n: u32) -> Batch {
    debug_assert!(n > 0);
    let size = CLASS_SIZE[class] as usize;
    let mut block = first;
    for i in 1..=n as usize {
        let next = if i == n as usize {
            core::ptr::null_mut()
        } else {
            first.wrapping_add(i * size)
        };
        // SAFETY: the caller owns the carved run, which lies inside a mapped
        // page of `class` (Backing contract) and is 16-byte aligned.
        unsafe {
            backing.carved(class, block.cast());
            backing.set_next(block.cast(), next.cast());
        }
        block = next;
    }
    Batch {
        head: first.cast(),
        len: n,
    }
}

/// One lock-free pool per size class, each on its own cache lines so that
/// threads working on different classes never contend, plus the tick that
/// sends idle memory home.
pub struct Pools<B: Backing> {
    backing: B,
    classes: [CachePadded<ClassPool>; NUM_CLASSES],
    /// When the next tick is due (ms on the backing's clock).
    next_tick: CachePadded<AtomicU64>,
}

impl<B: Backing> Pools<B> {
    /// Pools over `backing`.
    #[cfg(not(loom))]
    pub const fn new(backing: B) -> Self {
        Self {
            backing,
            classes: [const { CachePadded::new(ClassPool::new()) }; NUM_CLASSES],
            next_tick: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Pools over `backing`.
    #[cfg(loom)]
    pub fn new(backing: B) -> Self {
        Self {
            backing,
            classes: core::array::from_fn(|_| CachePadded::new(ClassPool::new())),
            next_tick: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// The backing store.
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// The pool of `class` (for tests and models).
    pub fn class(&self, class: usize) -> &ClassPool {
        &self.classes[class]
    }

    /// Runs the tick when it is due at `now` (a compare on most calls, the
    /// tick itself at most once per purge delay). The first call after a
    /// quiet spell runs it at once, so a program that resumes allocating
    /// gets back what went idle meanwhile.
    #[inline]
    fn tick(&self, now: u64) {
        let due = self.next_tick.load(Ordering::Relaxed);
        if now >= due {
            let next = now.saturating_add(self.backing.purge_delay_ms().max(1));
            if self
                .next_tick
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.maintain(false);
            }
        }
    }

    /// Sends idle memory home and purges what has been free for the delay:
    /// every class that took nothing for a purge delay sends its stacked
    /// blocks home and releases its fully free partial pages — stamped as
    /// idle since its last take, so the purge that follows may discard them
    /// at once — then the backing purges units free for at least the delay.
    /// With `force`, every class is drained and every free unit purged
    /// (`collect`).
    pub fn maintain(&self, force: bool) {
        let now = self.backing.now_ms();
        let delay = self.backing.purge_delay_ms();
        for (class, pool) in self.classes.iter().enumerate() {
            let last = pool.last_take.load(Ordering::Relaxed);
            if force {
                // SAFETY: pool `class` only ever sees `self.backing` and `class`.
                unsafe { pool.drain(&self.backing, class, None) };
            } else if now.saturating_sub(last) >= delay {
                // SAFETY: as above.
                unsafe { pool.drain(&self.backing, class, Some(last)) };
            }
        }
        self.backing.purge(force, now);
    }

    /// Before mapping more memory: drains every class that was given blocks
    /// since the last relief, so their free pages can serve this request.
    /// Returns `false` when there was nothing to drain.
    fn relieve_pressure(&self) -> bool {
        let mut drained = false;
        for (class, pool) in self.classes.iter().enumerate() {
            if pool.activity.load(Ordering::Relaxed) & GIVEN_SINCE_RELIEF != 0 {
                pool.activity
                    .fetch_and(!GIVEN_SINCE_RELIEF, Ordering::Relaxed);
                // SAFETY: pool `class` only ever sees `self.backing` and `class`.
                unsafe { pool.drain(&self.backing, class, None) };
                drained = true;
            }
        }
        drained
    }

    /// A fresh span of memory is about to be mapped for a medium object:
    /// first give the page heap whatever idle free pages the classes hold.
    /// Returns `false` when there was nothing to drain.
    pub fn relieve_pressure_for_medium(&self) -> bool {
        self.relieve_pressure()
    }
}

// SAFETY: batches are popped whole from one of the class's shard stacks (pushed by `give`,
// whose contract makes them valid chains of free blocks of that class), cut
// from the home list of one of the class's pages, or freshly carved from the
// class's pages by `link_run`.
unsafe impl<B: Backing> SharedPool for Pools<B> {
    #[inline]
    fn take(&self, class: usize, want: u32, shard: usize) -> Option<Batch> {
        let pool = &self.classes[class];
        let shard = shard % SHARDS;
        // SAFETY: pool `class` only ever sees `self.backing` and `class`;
        // `shard` is in range.
        if let Some(batch) = unsafe { pool.take(&self.backing, class, want, false, shard) } {
            // The take is recorded before the tick runs, so a class that
            // resumes after a quiet spell is not drained as idle by its own
            // first take.
            let now = self.backing.now_ms();
            pool.note_take(now);
            pool.note_refill(shard);
            self.tick(now);
            return Some(batch);
        }
        if self.relieve_pressure() {
            // SAFETY: as above.
            if let Some(batch) = unsafe { pool.take(&self.backing, class, want, false, shard) } {
                pool.note_take(self.backing.now_ms());
                pool.note_refill(shard);
                return Some(batch);
            }
        }
        pool.note_take(self.backing.now_ms());
        // SAFETY: as above.
        let batch = unsafe { pool.take(&self.backing, class, want, true, shard) };
        if batch.is_some() {
            pool.note_refill(shard);
        }
        batch
    }

    #[inline]
    unsafe fn give(&self, class: usize, batch: Batch, shard: usize) {
        let pool = &self.classes[class];
        let shard = shard % SHARDS;
        pool.shards[shard].flushes.add(1);
        // SAFETY: forwarded contract; `shard` is in range.
        unsafe { pool.give(&self.backing, class, batch, shard) };
        self.tick(self.backing.now_ms());
    }

    #[inline(always)]
    unsafe fn next_of(&self, block: *mut FreeBlock) -> *mut FreeBlock {
        // SAFETY: forwarded contract: a free block of our backing.
        unsafe { self.backing.next_of(block) }
    }

    #[inline(always)]
    unsafe fn set_next(&self, block: *mut FreeBlock, next: *mut FreeBlock) {
        // SAFETY: forwarded contract: a free block of our backing.
        unsafe { self.backing.set_next(block, next) }
    }
}

/// The shard of allocations made without a thread cache (rare: while a
/// thread arms its cache, after its exit hook, the no-cache ablation).
const UNCACHED_SHARD: usize = 0;

/// One block straight from the shared pool: take a batch, keep its first
/// block, give the rest back. Two atomic operations; used when no cache is
/// available and by the no-cache ablation.
pub fn alloc_uncached(pool: &impl SharedPool, class: usize) -> *mut u8 {
    let Some(batch) = pool.take(class, 1, UNCACHED_SHARD) else {
        return core::ptr::null_mut();
    };
    let block = batch.head;
    #[cfg(all(shoalloc_fault, not(loom)))]
    if let Some(live) = crate::fault::double_handout(class, block.cast()) {
        // Deliberate fault for the teeth tests: give the whole batch back
        // and hand out a block that already has an owner.
        // SAFETY: the batch is ours.
        unsafe { pool.give(class, batch, UNCACHED_SHARD) };
        return live;
    }
    if batch.len > 1 {
        // SAFETY: the batch is ours; its head's `next` starts the rest.
        let rest = unsafe { pool.next_of(block) };
        // SAFETY: the remaining blocks are ours and on no other list.
        unsafe {
            pool.give(
                class,
                Batch {
                    head: rest,
                    len: batch.len - 1,
                },
                UNCACHED_SHARD,
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
        pool.set_next(block, core::ptr::null_mut());
        pool.give(
            class,
            Batch {
                head: block,
                len: 1,
            },
            UNCACHED_SHARD,
        );
    }
}

#[cfg(all(test, not(loom)))]
#[path = "pool_tests.rs"]
mod tests;
