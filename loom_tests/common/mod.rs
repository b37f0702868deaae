//! Scaffolding shared by the loom models: a small in-memory [`Backing`] (pages
//! and a page heap on the production [`Anchor`] and [`UnitMap`]), a plain
//! [`NodeSpace`] for the bare stack, the conservation checks every model ends
//! with, and the runner that prints what each model explored.
//!
//! Nothing here is allocator code: it stands in for `segment::Segments` (4 MiB
//! mappings, process-wide statics) which loom cannot host, and it is written to
//! be obviously correct so that a failure points at the protocol under test.
#![allow(dead_code)] // each test binary uses a different part of this module

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, Ordering};
use shoalloc::internals::cache::ThreadCache;
use shoalloc::internals::page::{Anchor, ACTIVE, FULL};
use shoalloc::internals::pool::{Backing, Batch, FreeBlock, Pools, SharedPool};
use shoalloc::internals::size_class::{cache_limit, CLASS_SIZE};
use shoalloc::internals::stack::{NodeSpace, TaggedStack};
use shoalloc::internals::units::{run_mask, UnitMap};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// The size class every model uses: class 0, 16-byte blocks.
pub const CLASS: usize = 0;
/// Block size of [`CLASS`].
pub const BLOCK: usize = CLASS_SIZE[CLASS] as usize;
/// Bits of a handle below the page number: `page << 4 | slot`, where slot 0
/// names the page itself and slots `1..=blocks` its blocks.
const SLOT_BITS: u32 = 4;
/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set. Loom's own
/// default is no bound at all, under which the three-thread models explore
/// every interleaving and their cost grows past the CI budget.
pub const DEFAULT_PREEMPTIONS: usize = 2;
/// The model's default purge delay: far beyond its clock (which reads 0), so
/// only a forced purge (`Pools::maintain(true)`, `purge(true, _)`) purges.
pub const NO_PURGE: u64 = 1 << 40;

/// Where a page stands in the page heap, as the backing saw it last. Kept
/// in a loom `UnsafeCell` per page that only `acquire_page`, `release_page`
/// and `purge` touch: two of them reaching one page without a happens-before
/// edge between them (the unit map failed to order them) is a causality
/// violation, and a page in the wrong state for the call is an assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Never handed out; memory zero.
    Fresh,
    /// Handed out by `acquire_page`, not yet released.
    InUse,
    /// Released, still resident (dirty).
    Free,
    /// Released and then purged; memory zero.
    Purged,
}

/// A page's history in one execution.
#[derive(Clone, Copy, Debug)]
pub struct Life {
    /// The state now.
    pub state: Stage,
    /// `acquire_page` calls that returned it.
    pub acquired: u32,
    /// `release_page` calls on it.
    pub released: u32,
    /// Purges that discarded it.
    pub purged: u32,
}

/// The teeth's page heap: the unit map's claim done as a load and a store
/// instead of a CAS, so two racing claimers can be handed the same page.
struct RacyHeap {
    used: AtomicU64,
}

/// A model of `segment::Segments`: `pages` pages of `blocks` 16-byte blocks
/// of [`CLASS`], allocated up front (before any model thread runs), plus one
/// *reserve* page that the page heap holds back until the conservation check
/// hands it out (see [`assert_conserved`]).
///
/// What runs production code: every page's [`Anchor`] is the production type,
/// and the page heap is one production [`UnitMap`] whose units are the pages
/// (unit `p` is page `p`; unit 0 and the units past the reserve are marked
/// used forever, and so is the reserve at first), so `acquire_page`,
/// `release_page` and `purge` are `claim`, `release` and
/// `reserve_dirty`/`finish_purge`, as in `Segments`.
///
/// Differences from production, on purpose:
/// - handles are `page << 4 | slot`: slot 0 is the page (its handle links it
///   into the partial stack, like a descriptor handle in production), slots
///   `1..=blocks` its blocks, so page and block handles never collide;
/// - link words live in a side table of loom `AtomicU64`s indexed by handle,
///   not in the block's second word (or the descriptor), so loom tracks every
///   link access (it cannot track atomics that live in untyped memory);
/// - page memory comes from the host allocator, one allocation per model
///   execution, instead of `mmap`; a purge zeroes a page's memory and its
///   blocks' link words, as `MADV_DONTNEED` does;
/// - the clock reads 0, so nothing is ever due for a purge unless forced
///   (or the delay is set to 0), the tick never fires, and
///   `release_idle_page` is the trait's default, a plain `release_page`.
///
/// Each page's [`Life`] sits in a loom `UnsafeCell` updated by
/// `acquire_page`, `release_page` and `purge`: loom reports two of them on
/// one page without a happens-before edge between them, and the backing
/// asserts that a page is never handed out twice, released while not handed
/// out, purged while handed out, or reported clean (by the unit map's claim)
/// unless it was never used since its last purge and reads as zero.
pub struct ModelBacking {
    /// Start of `(pages + 1) * blocks * 16` bytes, 16-byte aligned.
    mem: *mut u8,
    layout: Layout,
    /// Model pages, not counting the reserve (page `pages + 1`).
    pages: u32,
    blocks: u32,
    /// `(pages + 1) * (blocks + 1)` link words, by handle.
    links: Box<[AtomicU64]>,
    /// One anchor per page, reserve included.
    anchors: Box<[Anchor]>,
    /// The page heap.
    units: UnitMap,
    /// Each page's history.
    life: Box<[UnsafeCell<Life>]>,
    /// One cell per block, standing for its memory (see [`ModelBacking::touch`]).
    cells: Box<[UnsafeCell<u64>]>,
    /// Teeth only: replaces `units` for claims and releases.
    racy: Option<RacyHeap>,
    /// What `purge_delay_ms` says.
    delay: u64,
}

impl ModelBacking {
    /// `pages` pages of `blocks` blocks of [`CLASS`], plus the reserve page.
    pub fn new(pages: u32, blocks: u32) -> Self {
        Self::build(pages, blocks, false)
    }

    /// A deliberately broken backing whose page heap claims a page with a
    /// plain load and store of its bitmap instead of a CAS, so two racing
    /// threads can be handed the same page. Used to show that the
    /// conservation check bites.
    pub fn with_racy_heap(pages: u32, blocks: u32) -> Self {
        Self::build(pages, blocks, true)
    }

    fn build(pages: u32, blocks: u32, racy: bool) -> Self {
        assert!((1..=60).contains(&pages) && (1..1 << SLOT_BITS).contains(&blocks));
        let all = pages as usize + 1;
        let layout = Layout::from_size_align(all * blocks as usize * BLOCK, 16).unwrap();
        // SAFETY: the layout has a non-zero size.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!mem.is_null());
        let links = (0..all * (blocks as usize + 1))
            .map(|_| AtomicU64::new(0))
            .collect();
        let anchors = (0..all).map(|_| Anchor::new()).collect();
        let life = (0..all)
            .map(|_| {
                UnsafeCell::new(Life {
                    state: Stage::Fresh,
                    acquired: 0,
                    released: 0,
                    purged: 0,
                })
            })
            .collect();
        let cells = (0..all * blocks as usize)
            .map(|_| UnsafeCell::new(0))
            .collect();
        // Units 1..=pages are free; everything else (unit 0, the reserve,
        // units past it) is used.
        let held = !run_mask(1, pages);
        Self {
            mem,
            layout,
            pages,
            blocks,
            links,
            anchors,
            units: UnitMap::new(held),
            life,
            cells,
            racy: racy.then(|| RacyHeap {
                used: AtomicU64::new(held),
            }),
            delay: NO_PURGE,
        }
    }

    /// Sets what `purge_delay_ms` returns (0: every unpurged free page is
    /// due at once, since the clock reads 0).
    pub fn with_purge_delay(mut self, ms: u64) -> Self {
        self.delay = ms;
        self
    }

    /// The handle of page `p` (1-based).
    pub fn page(&self, p: u32) -> u64 {
        assert!((1..=self.pages + 1).contains(&p));
        u64::from(p) << SLOT_BITS
    }

    /// Number of pages, the reserve included.
    fn all_pages(&self) -> u32 {
        self.pages + 1
    }

    /// Number of blocks the backing holds in all its pages, reserve included.
    pub fn total_blocks(&self) -> usize {
        self.all_pages() as usize * self.blocks as usize
    }

    /// The address of every block of every page, in address order.
    pub fn all_blocks(&self) -> Vec<usize> {
        (1..=self.all_pages())
            .flat_map(|p| self.blocks_of(self.page(p)))
            .collect()
    }

    /// The addresses of page `page`'s blocks, in carving order.
    pub fn blocks_of(&self, page: u64) -> Vec<usize> {
        let start = self.page_start(page) as usize;
        (0..self.blocks as usize)
            .map(|i| start + i * BLOCK)
            .collect()
    }

    /// Page `page`'s history so far. Call it only where the model has a
    /// happens-before edge from every thread that may have acquired,
    /// released or purged the page (e.g. after joining them).
    pub fn life(&self, page: u64) -> Life {
        let (p, _) = self.split(page);
        self.life[p as usize - 1].with(|l| {
            // SAFETY: loom checks that no write is concurrent with this read.
            unsafe { *l }
        })
    }

    /// Stands for the program writing to `block`, whose memory is plain
    /// memory that loom does not see: a write to the block's loom cell. The
    /// model threads call it on every block they get and before every block
    /// they give up (the helpers below do), and the purge on every block it
    /// discards, so two holders of one block with no happens-before edge
    /// between them — a hand-off (a batch, a home list, the page heap, the
    /// carve word) that does not publish the block to its next holder — is a
    /// causality violation.
    pub fn touch(&self, block: usize) {
        // SAFETY: the model's `handle_of` checks its argument and reads nothing.
        let handle = unsafe { self.handle_of(block as *mut FreeBlock) };
        let (p, slot) = self.split(handle);
        let i = (p as usize - 1) * self.blocks as usize + slot as usize - 1;
        self.cells[i].with_mut(|c| {
            // SAFETY: loom checks that no other access is concurrent.
            unsafe { *c += 1 }
        });
    }

    /// `release_page` calls in this execution, on all pages.
    pub fn releases(&self) -> u32 {
        (1..=self.all_pages())
            .map(|p| self.life(self.page(p)).released)
            .sum()
    }

    /// Pages discarded by purges in this execution.
    pub fn purges(&self) -> u32 {
        (1..=self.all_pages())
            .map(|p| self.life(self.page(p)).purged)
            .sum()
    }

    /// The page heap's `used` bits of the model pages (racy; for checks at
    /// the end of a model).
    pub fn used_pages(&self) -> u64 {
        let used = match &self.racy {
            Some(r) => r.used.load(Ordering::Relaxed),
            None => self.units.used(),
        };
        used & run_mask(1, self.all_pages())
    }

    /// Hands the reserve page to the page heap (once, from the conservation
    /// check, on the model's main thread after every model thread ended).
    fn unlock_reserve(&self) {
        let r = self.all_pages();
        match &self.racy {
            Some(h) => {
                h.used.fetch_and(!(1 << r), Ordering::Release);
            }
            None => self.units.release(r, 1),
        }
    }

    /// Page number and slot of a handle.
    fn split(&self, handle: u64) -> (u32, u64) {
        let p = (handle >> SLOT_BITS) as u32;
        let slot = handle & ((1 << SLOT_BITS) - 1);
        assert!(
            (1..=self.all_pages()).contains(&p) && slot <= u64::from(self.blocks),
            "handle {handle:#x} outside the model backing"
        );
        (p, slot)
    }

    /// Page number of a page handle (slot 0).
    fn page_number(&self, page: u64) -> u32 {
        let (p, slot) = self.split(page);
        assert_eq!(slot, 0, "{page:#x} is a block handle, not a page handle");
        p
    }

    /// Updates page `p`'s life.
    fn update_life(&self, p: u32, f: impl FnOnce(&mut Life)) {
        self.life[p as usize - 1].with_mut(|l| {
            // SAFETY: loom checks that no other access is concurrent.
            f(unsafe { &mut *l })
        });
    }
}

// SAFETY: the backing's own fields are immutable after construction, atomics
// or loom cells; `mem` points to memory the backing owns until drop. Who may
// touch which block of that memory is decided by the pool protocol under test
// (one holder per block), exactly as for the production `Segments`.
unsafe impl Send for ModelBacking {}
// SAFETY: as for `Send`: every method takes `&self` and touches only atomics,
// loom cells and immutable fields.
unsafe impl Sync for ModelBacking {}

impl Drop for ModelBacking {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `alloc_zeroed` with `layout` and is freed once.
        unsafe { std::alloc::dealloc(self.mem, self.layout) };
    }
}

// SAFETY: `links` is never resized and lives as long as the backing, so every
// handle's link word stays valid while any stack over this space exists.
unsafe impl NodeSpace for ModelBacking {
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        let (p, slot) = self.split(handle);
        &self.links[(p as usize - 1) * (self.blocks as usize + 1) + slot as usize]
    }
}

// SAFETY: page `p` is the `p - 1`-th run of `blocks * 16` bytes of one live
// allocation, 16-byte aligned, so it holds `page_capacity` blocks of class 0;
// its memory and anchor live as long as the backing; pages are handed out by
// the unit map's claim (one owner each) and handed back by its release;
// `handle_of` and `addr_of` are inverse on block addresses; page handles
// (slot 0) and block handles (slots 1..) are distinct, non-zero and tiny; the
// link of a handle is a side-table word that nothing but the stacks and the
// purge touch.
unsafe impl Backing for ModelBacking {
    fn page_capacity(&self, class: usize) -> u32 {
        // Only class 0 ever has pages here; `drain` still asks every class
        // (`Pools::maintain`), so the others get a harmless capacity.
        if class == CLASS {
            self.blocks
        } else {
            1
        }
    }

    fn acquire_page(&self, class: usize, _grow: bool) -> Option<u64> {
        assert_eq!(class, CLASS, "the model backing has pages of class 0 only");
        // All the model's memory counts as mapped, so `grow` changes nothing.
        let (p, clean) = match &self.racy {
            None => self.units.claim(1)?,
            Some(h) => {
                let used = h.used.load(Ordering::Acquire);
                let free = !used & run_mask(1, self.all_pages());
                if free == 0 {
                    return None;
                }
                let p = free.trailing_zeros();
                h.used.store(used | (1 << p), Ordering::Relaxed);
                (p, false)
            }
        };
        let page = self.page(p);
        self.update_life(p, |l| {
            assert!(
                l.state != Stage::InUse,
                "page heap: page {p} handed out while in use"
            );
            if clean {
                assert!(
                    matches!(l.state, Stage::Fresh | Stage::Purged),
                    "page heap: page {p} reported clean but used since its last purge"
                );
                let start = self.page_start(page);
                // SAFETY: the claim made the page ours; its memory is live.
                let bytes =
                    unsafe { std::slice::from_raw_parts(start, self.blocks as usize * BLOCK) };
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "page heap: page {p} reported clean but its memory is not zero"
                );
            }
            l.state = Stage::InUse;
            l.acquired += 1;
        });
        self.anchor(page).activate();
        Some(page)
    }

    unsafe fn release_page(&self, page: u64) {
        let p = self.page_number(page);
        self.update_life(p, |l| {
            assert_eq!(
                l.state,
                Stage::InUse,
                "page heap: page {p} released but not in use"
            );
            l.state = Stage::Free;
            l.released += 1;
        });
        match &self.racy {
            None => self.units.release(p, 1),
            Some(h) => {
                h.used.fetch_and(!(1 << p), Ordering::Release);
            }
        }
    }

    fn page_start(&self, page: u64) -> *mut u8 {
        let p = self.page_number(page);
        self.mem
            .wrapping_add((p as usize - 1) * self.blocks as usize * BLOCK)
    }

    fn anchor(&self, page: u64) -> &Anchor {
        &self.anchors[self.page_number(page) as usize - 1]
    }

    unsafe fn page_of(&self, block: *mut FreeBlock) -> u64 {
        // SAFETY: forwarded contract; the model's `handle_of` checks it.
        let h = unsafe { self.handle_of(block) };
        h & !((1 << SLOT_BITS) - 1)
    }

    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64 {
        let off = (block as usize)
            .checked_sub(self.mem as usize)
            .expect("block below the model backing");
        let page_bytes = self.blocks as usize * BLOCK;
        let p = off / page_bytes + 1;
        let inner = off % page_bytes;
        assert!(
            p <= self.all_pages() as usize && inner % BLOCK == 0,
            "{block:p} is not a block of the model backing"
        );
        ((p as u64) << SLOT_BITS) | (inner / BLOCK + 1) as u64
    }

    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock {
        let (p, slot) = self.split(handle);
        assert!(
            slot >= 1,
            "{handle:#x} is a page handle, not a block handle"
        );
        self.page_start(self.page(p))
            .wrapping_add((slot as usize - 1) * BLOCK)
            .cast()
    }

    fn now_ms(&self) -> u64 {
        0
    }

    fn purge_delay_ms(&self) -> u64 {
        self.delay
    }

    fn purge(&self, force: bool, now: u64) {
        // Every page was released at time 0 on the model's clock.
        if self.racy.is_some() || (!force && now < self.delay) {
            return;
        }
        let mask = self.units.reserve_dirty();
        for p in (1..=self.all_pages()).filter(|p| mask & (1 << p) != 0) {
            let page = self.page(p);
            self.update_life(p, |l| {
                assert_eq!(
                    l.state,
                    Stage::Free,
                    "purge: reserved page {p}, which is not free"
                );
                l.state = Stage::Purged;
                l.purged += 1;
            });
            // SAFETY: the reservation makes the page ours: no span holds it
            // and nobody can claim it until `finish_purge`.
            unsafe {
                self.page_start(page)
                    .write_bytes(0, self.blocks as usize * BLOCK)
            };
            for slot in 1..=u64::from(self.blocks) {
                // SAFETY: a block handle of this backing.
                unsafe { self.link(page | slot) }.store(0, Ordering::Relaxed);
            }
            for b in self.blocks_of(page) {
                self.touch(b);
            }
        }
        if mask != 0 {
            self.units.finish_purge(mask);
        }
    }
}

/// The pools every pool/cache model shares between its threads.
pub type ModelPools = Pools<ModelBacking>;

/// Fresh pools over a fresh backing of `pages` pages of `blocks` blocks.
pub fn pools(pages: u32, blocks: u32) -> Arc<ModelPools> {
    Arc::new(Pools::new(ModelBacking::new(pages, blocks)))
}

/// The blocks of `batch`, checking that its chain has exactly `len` blocks.
pub fn batch_blocks(batch: Batch) -> Vec<usize> {
    let mut out = Vec::with_capacity(batch.len as usize);
    let mut block = batch.head;
    for _ in 0..batch.len {
        assert!(!block.is_null(), "batch chain shorter than its length");
        out.push(block as usize);
        // SAFETY: the caller owns the batch; word 0 of each block is its
        // `next`, written by whoever built the chain.
        block = unsafe { (*block).next };
    }
    assert!(block.is_null(), "batch chain longer than its length");
    out
}

/// Chains `blocks` (in order, null-terminated) into a batch.
///
/// # Safety
/// The caller owns every block, each a block of the model backing.
pub unsafe fn chain(blocks: &[usize]) -> Batch {
    assert!(!blocks.is_empty());
    for (i, &b) in blocks.iter().enumerate() {
        let next = blocks
            .get(i + 1)
            .map_or(core::ptr::null_mut(), |&n| n as *mut FreeBlock);
        // SAFETY: the caller owns the block; word 0 is its `next`.
        unsafe { (*(b as *mut FreeBlock)).next = next };
    }
    Batch {
        head: blocks[0] as *mut FreeBlock,
        len: blocks.len() as u32,
    }
}

/// The blocks of one `Pools::take` of `want`, each touched by the caller.
pub fn take(pools: &ModelPools, want: u32) -> Vec<usize> {
    let blocks = batch_blocks(pools.take(CLASS, want, 0).expect("out of memory"));
    for &b in &blocks {
        pools.backing().touch(b);
    }
    blocks
}

/// Exactly `n` blocks taken from the pool (setup, before threads start).
pub fn take_blocks(pools: &ModelPools, n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while out.len() < n {
        let want = (n - out.len()) as u32;
        let mut blocks = take(pools, want);
        // Give back what a popped batch had beyond the need.
        while out.len() < n {
            match blocks.pop() {
                Some(b) => out.push(b),
                None => break,
            }
        }
        for b in blocks {
            give_one(pools, b);
        }
    }
    out
}

/// Returns one block to the pool as a batch of one, after a last write.
pub fn give_one(pools: &ModelPools, block: usize) {
    pools.backing().touch(block);
    // SAFETY: the caller owns `block`, a block of this pool, and gives it up.
    unsafe { pools.give(CLASS, chain(&[block]), 0) };
}

/// Sends `blocks` home to their pages as one batch (`ClassPool::send_home`:
/// one anchor CAS per run of blocks of the same page), after a last write to
/// each.
///
/// # Safety
/// The caller owns every block, each a block of `pools`, and gives them up.
pub unsafe fn send_home(pools: &ModelPools, blocks: &[usize]) {
    for &b in blocks {
        pools.backing().touch(b);
    }
    // SAFETY: forwarded contract; the class pool only ever sees this backing.
    unsafe {
        pools
            .class(CLASS)
            .send_home(pools.backing(), CLASS, chain(blocks), None)
    };
}

/// `ClassPool::drain` of the model class: stacked batches go home, fully
/// free partial pages go to the page heap.
pub fn drain(pools: &ModelPools) {
    // SAFETY: the class pool only ever sees this backing and class.
    unsafe { pools.class(CLASS).drain(pools.backing(), CLASS, None) };
}

/// Puts `blocks` on `cache` without an atomic operation (setup inside a
/// model thread). An empty cache takes at most `cache_limit - 1` blocks that
/// way (3 under loom): the first whole batch of frees is retired to the
/// cache's stock, and only a second one would go to the pool.
pub fn fill_cache(cache: &mut ThreadCache, pools: &ModelPools, blocks: &[usize]) {
    assert!(cache.cached(CLASS) as usize + blocks.len() < cache_limit(CLASS) as usize);
    for &b in blocks {
        // SAFETY: the blocks are owned by this thread and come from `pools`.
        unsafe { free(cache, pools, b) };
    }
}

/// One allocation from `cache` (a hit, or a refill from the pool), which the
/// calling thread then writes ([`ModelBacking::touch`]). Panics when the pool
/// is out of memory.
pub fn alloc(cache: &mut ThreadCache, pools: &ModelPools) -> usize {
    // SAFETY: the models use each cache with one pool only.
    let p = unsafe { cache.alloc(pools, CLASS) } as usize;
    assert!(p != 0, "out of memory");
    pools.backing().touch(p);
    p
}

/// Frees `block` to `cache` after a last write to it.
///
/// # Safety
/// The caller owns `block`, a block of `pools`, and gives it up; `cache` is
/// only ever used with `pools`.
pub unsafe fn free(cache: &mut ThreadCache, pools: &ModelPools, block: usize) {
    pools.backing().touch(block);
    // SAFETY: forwarded contract.
    unsafe { cache.free(pools, CLASS, block as *mut u8) };
}

/// Empties `cache` by allocating what it holds: pops from its own list only,
/// no atomic operation. Returns the blocks it held.
pub fn drain_cache(cache: &mut ThreadCache, pools: &ModelPools) -> Vec<usize> {
    let n = cache.cached(CLASS);
    let out: Vec<usize> = (0..n).map(|_| alloc(cache, pools)).collect();
    assert_eq!(cache.cached(CLASS), 0);
    out
}

/// Takes from the pool until it returns `None`, counting every block seen.
fn drain_with_take(pools: &ModelPools, seen: &mut BTreeMap<usize, u32>) {
    let backing = pools.backing();
    let limit = 2 * backing.total_blocks();
    let mut drained = 0;
    while let Some(batch) = pools.take(CLASS, u32::MAX, 0) {
        for b in batch_blocks(batch) {
            // Panics on anything that is not a block of the backing.
            // SAFETY: the model's `handle_of` checks its argument and reads nothing.
            unsafe { backing.handle_of(b as *mut FreeBlock) };
            *seen.entry(b).or_default() += 1;
            drained += 1;
        }
        assert!(drained <= limit, "conservation: pool yields blocks forever");
    }
}

/// The conservation check that ends every pool model. `held` lists the blocks
/// the threads hold (allocated, or on their caches' lists). Runs on the
/// model's main thread after every model thread has been joined.
///
/// Drains the shared pool with `take` until it returns `None`: that pops
/// every stacked batch, takes the home list of every page on the partial
/// stack, carves what is left of the carving page, and then acquires and
/// carves every page in the page heap (pages that went home, pages lost in
/// install races). Blocks that came home to the *carving* page (still
/// `ACTIVE`) are out of `take`'s reach until the page is replaced, and with
/// the page heap empty it never is; so the check then hands the pool the
/// backing's reserve page and drains again: the first carve installs the
/// reserve, ends the old page's carving (which lists it, or releases it to
/// the page heap when all its blocks are home) and the following takes
/// collect those blocks. So in the end **every block of every page,
/// reserve included, must have been seen exactly once**: a block seen twice
/// was handed out twice (or sits in two lists); a block never seen was lost.
/// Every page must end out of the page heap, with no block at home, `FULL`
/// except for the one being carved.
pub fn assert_conserved(pools: &ModelPools, held: &[usize]) {
    let backing = pools.backing();
    let mut seen: BTreeMap<usize, u32> = BTreeMap::new();
    for &b in held {
        // SAFETY: the model's `handle_of` checks its argument and reads nothing.
        unsafe { backing.handle_of(b as *mut FreeBlock) };
        *seen.entry(b).or_default() += 1;
    }
    drain_with_take(pools, &mut seen);
    backing.unlock_reserve();
    drain_with_take(pools, &mut seen);
    for (&b, &n) in &seen {
        assert!(
            n == 1,
            "conservation: block {b:#x} is in {n} places (held {held:x?})"
        );
    }
    for b in backing.all_blocks() {
        assert!(
            seen.contains_key(&b),
            "conservation: block {b:#x} was lost (held {held:x?})"
        );
    }
    assert_eq!(seen.len(), backing.total_blocks());
    let all = run_mask(1, backing.all_pages());
    assert_eq!(
        backing.used_pages(),
        all,
        "conservation: the page heap still holds pages"
    );
    let mut active = 0;
    for p in 1..=backing.all_pages() {
        let anchor = backing.anchor(backing.page(p));
        assert_eq!(
            anchor.at_home(),
            0,
            "conservation: page {p} has blocks at home"
        );
        match anchor.state() {
            ACTIVE => active += 1,
            FULL => {}
            s => panic!("conservation: page {p} ends in state {s}"),
        }
    }
    assert_eq!(active, 1, "conservation: one page is being carved");
}

/// A node space of `n` plain link words for the bare-stack models: handle `h`
/// (1..n) is node `h`.
pub struct Nodes(Box<[AtomicU64]>);

impl Nodes {
    /// Nodes 1..n (slot 0 unused: handle 0 means "empty").
    pub fn new(n: usize) -> Self {
        Self((0..n).map(|_| AtomicU64::new(0)).collect())
    }
}

// SAFETY: the table is never resized and outlives the stacks of each model.
unsafe impl NodeSpace for Nodes {
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        &self.0[handle as usize]
    }
}

/// The conservation check of the stack models: after draining `stack`,
/// every node `1..=nodes` is either held (listed in `held`) or was in the
/// stack, exactly once, and carries the length it was pushed with
/// (`len_of(h)`).
pub fn assert_stack_conserved<const T: bool>(
    stack: &TaggedStack<T>,
    space: &Nodes,
    nodes: u64,
    held: &[u64],
    len_of: impl Fn(u64) -> u32,
) {
    let mut seen = vec![0u32; nodes as usize + 1];
    for &h in held {
        seen[h as usize] += 1;
    }
    let mut popped = 0;
    // SAFETY: this stack is only ever used with this one node space.
    while let Some((h, len)) = unsafe { stack.pop(space) } {
        assert!(
            (1..=nodes).contains(&h),
            "conservation: popped unknown node {h}"
        );
        assert_eq!(len, len_of(h), "length travels with node {h}");
        seen[h as usize] += 1;
        popped += 1;
        assert!(popped <= 2 * nodes, "conservation: stack is cyclic");
    }
    for h in 1..=nodes {
        assert!(
            seen[h as usize] == 1,
            "conservation: node {h} is in {} places (held {held:?})",
            seen[h as usize]
        );
    }
}

/// What one model run explored.
pub struct Report {
    /// Executions (interleavings) loom ran.
    pub executions: usize,
}

fn builder() -> (loom::model::Builder, usize) {
    // The default panic hook captures a backtrace when RUST_BACKTRACE is set,
    // which overflows the small stacks of loom's threads (and then hangs the
    // teeth models, whose whole point is to panic). Print the message only.
    static QUIET_PANICS: std::sync::Once = std::sync::Once::new();
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    // Loom stops an execution after 1000 branches by default, a guard
    // against spin loops. `maintain` visits every class and each class's
    // batch stacks (52 × 3 stacks), so one collect, the final conservation
    // drain and a few takes pass that without spinning.
    builder.max_branches = builder.max_branches.max(10_000);
    let bound = builder.preemption_bound.unwrap();
    (builder, bound)
}

/// Runs `f` under loom and prints the model's name, spawned threads, their
/// operations, the preemption bound, the number of executions explored and
/// the wall time.
pub fn model<F>(name: &str, threads: usize, ops: &str, f: F) -> Report
where
    F: Fn() + Sync + Send + 'static,
{
    let (builder, bound) = builder();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let executions = runs.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "loom model {name}: threads={threads} ops=[{ops}] preemption_bound={bound} \
         interleavings={executions} wall={:.3}s",
        start.elapsed().as_secs_f64()
    );
    Report { executions }
}

/// Runs `f` as [`model`] does, unless the preemption bound in effect is above
/// `max_bound`: then prints that the model is skipped and returns `None`.
/// The heaviest three-thread models explore about 10^5 interleavings at bound
/// 3 (tens of seconds to minutes each), so they run at bound 2 only and the
/// bound-3 pass of `.ci/loom.sh` stays within its budget.
pub fn model_up_to<F>(
    max_bound: usize,
    name: &str,
    threads: usize,
    ops: &str,
    f: F,
) -> Option<Report>
where
    F: Fn() + Sync + Send + 'static,
{
    let (_, bound) = builder();
    if bound > max_bound {
        println!(
            "loom model {name}: threads={threads} ops=[{ops}] skipped at preemption_bound={bound} \
             (runs at bounds up to {max_bound}; see loom_tests/README.md)"
        );
        return None;
    }
    Some(model(name, threads, ops, f))
}

/// Runs a model of a deliberately broken variant and asserts that loom finds
/// an execution in which it panics with a message containing `needle`.
pub fn expect_caught<F>(name: &str, threads: usize, ops: &str, needle: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let (builder, bound) = builder();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(move || {
        builder.check(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f();
        })
    }));
    let executions = runs.load(std::sync::atomic::Ordering::Relaxed);
    let payload = match result {
        Ok(()) => panic!(
            "loom did NOT catch the broken variant {name} in {executions} executions \
             (preemption bound {bound})"
        ),
        Err(p) => p,
    };
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("<non-string panic>");
    assert!(
        msg.contains(needle),
        "{name} failed, but not with {needle:?}: {msg}"
    );
    println!(
        "loom model {name} (broken on purpose): threads={threads} ops=[{ops}] \
         preemption_bound={bound} caught after {executions} interleavings, wall={:.3}s: {msg}",
        start.elapsed().as_secs_f64()
    );
}
