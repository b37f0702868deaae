//! Unit tests of the shared pools (`ClassPool`, `Pools`) and the page protocol
//! under them, over a small in-memory [`Backing`] that runs natively and under
//! Miri with strict provenance.
//!
//! The production backing (`segment::Segments`) maps 4 MiB segments and turns
//! handles back into addresses with integer-to-pointer casts, which strict
//! provenance rejects. [`TestBacking`] is one heap allocation cut into a few
//! pages; every address it hands out is derived from the allocation's base
//! pointer (`wrapping_add`), and pointers only ever become integers for
//! arithmetic. What it runs of production: the pages' [`Anchor`]s and the page
//! heap, one [`UnitMap`] whose units are the pages (so claims, releases and
//! purges are production code), and a block's link word is its second word,
//! as in production (`FreeBlock::link`). Word 0 is stored encoded
//! ([`TestBacking::next_of`], XOR with a constant, as the secure path encodes
//! it with its keys), so a pool that read or wrote a chain without its
//! backing would break every chain these tests walk.

use super::*;
use crate::shoal::page::{ACTIVE, FREE, FULL, LISTED};
use crate::shoal::units::{run_mask, UnitMap};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// The class most tests use: 16-byte blocks.
const CLASS: usize = 0;
/// Bytes of a block of [`CLASS`], and the grain of the test backing's handles.
const SLOT: usize = CLASS_SIZE[CLASS] as usize;
/// Page handles are `PAGE_TAG | page number`; block handles are 1 + the index
/// of the block's 16-byte slot in the allocation: disjoint, non-zero ranges,
/// all at most `HANDLE_MASK`.
const PAGE_TAG: u64 = 1 << 32;
/// A purge delay the tests' clocks never reach.
const NEVER: u64 = 1 << 40;
/// What word 0 of a free block is XORed with (see the module docs).
const LINK_KEY: usize = 0x5a5a_0000_00a5_a5a0;

/// `p` with its address XORed with [`LINK_KEY`], keeping its provenance:
/// encodes a link, and decodes one.
fn flip_link(p: *mut FreeBlock) -> *mut FreeBlock {
    p.wrapping_byte_add(((p as usize) ^ LINK_KEY).wrapping_sub(p as usize))
}

const _: () = assert!(SLOT == 16 && PAGE_TAG < HANDLE_MASK);

/// A backing of `pages` pages of `slots` 16-byte slots each (plus, optionally,
/// one reserve page that the page heap holds back until
/// [`TestBacking::unlock_reserve`]). Page `p` (1-based) is unit `p` of the
/// page heap's [`UnitMap`]; unit 0 and the units past the last page are used
/// forever. Pages serve class 0 (`slots` blocks) and class 1 (`slots / 2`
/// blocks of 32 bytes).
struct TestBacking {
    /// Start of `pages * slots * 16` zeroed bytes, 64-byte aligned.
    mem: *mut u8,
    layout: Layout,
    /// Pages, the reserve included.
    pages: u32,
    /// 16-byte slots per page.
    slots: u32,
    /// The link word of each page (its node in a class's partial stack).
    page_links: Box<[AtomicU64]>,
    /// One production anchor per page.
    anchors: Box<[Anchor]>,
    /// Whether each page is handed out (checks that the unit map never hands
    /// out a page twice, and that only held pages are released).
    in_use: Box<[AtomicBool]>,
    /// The page heap.
    units: UnitMap,
    /// The reserve page, if any.
    reserve: Option<u32>,
    /// What `now_ms` returns.
    clock: AtomicU64,
    /// What `purge_delay_ms` returns.
    delay: AtomicU64,
    /// Latest release stamp (as `SegmentHeader::released_at`).
    released_at: AtomicU64,
    acquired: AtomicU32,
    released: AtomicU32,
    idle_released: AtomicU32,
    purged: AtomicU32,
}

impl TestBacking {
    /// `pages` pages of `slots` slots, all free, clock at 0, no purge due.
    fn new(pages: u32, slots: u32) -> Self {
        Self::build(pages, slots, false)
    }

    /// As [`TestBacking::new`], plus one reserve page (page `pages + 1`).
    fn with_reserve(pages: u32, slots: u32) -> Self {
        Self::build(pages, slots, true)
    }

    fn build(pages: u32, slots: u32, reserve: bool) -> Self {
        let all = pages + u32::from(reserve);
        assert!((1..=63).contains(&all) && (2..=crate::shoal::page::MAX_CAPACITY).contains(&slots));
        let layout = Layout::from_size_align(all as usize * slots as usize * SLOT, 64).unwrap();
        // SAFETY: the layout has a non-zero size.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!mem.is_null());
        Self {
            mem,
            layout,
            pages: all,
            slots,
            page_links: (0..all).map(|_| AtomicU64::new(0)).collect(),
            anchors: (0..all).map(|_| Anchor::new()).collect(),
            in_use: (0..all).map(|_| AtomicBool::new(false)).collect(),
            units: UnitMap::new(!run_mask(1, pages)),
            reserve: reserve.then_some(all),
            clock: AtomicU64::new(0),
            delay: AtomicU64::new(NEVER),
            released_at: AtomicU64::new(0),
            acquired: AtomicU32::new(0),
            released: AtomicU32::new(0),
            idle_released: AtomicU32::new(0),
            purged: AtomicU32::new(0),
        }
    }

    fn set_clock(&self, ms: u64) {
        self.clock.store(ms, Ordering::Relaxed);
    }

    fn set_delay(&self, ms: u64) {
        self.delay.store(ms, Ordering::Relaxed);
    }

    /// Hands the reserve page to the page heap.
    fn unlock_reserve(&self) {
        self.units
            .release(self.reserve.expect("no reserve page"), 1);
    }

    fn acquired(&self) -> u32 {
        self.acquired.load(Ordering::Relaxed)
    }

    fn released(&self) -> u32 {
        self.released.load(Ordering::Relaxed)
    }

    fn idle_released(&self) -> u32 {
        self.idle_released.load(Ordering::Relaxed)
    }

    fn purged(&self) -> u32 {
        self.purged.load(Ordering::Relaxed)
    }

    /// Whether the page heap holds page `p` as free (its unit is not used).
    fn is_free(&self, p: u32) -> bool {
        self.units.used() & (1 << p) == 0
    }

    /// The handle of page `p` (1-based).
    fn page(&self, p: u32) -> u64 {
        assert!((1..=self.pages).contains(&p));
        PAGE_TAG | u64::from(p)
    }

    /// The page number of a page handle.
    fn page_number(&self, page: u64) -> u32 {
        assert!(
            page & PAGE_TAG != 0 && (1..=u64::from(self.pages)).contains(&(page & !PAGE_TAG)),
            "{page:#x} is not a page handle of the test backing"
        );
        (page & !PAGE_TAG) as u32
    }

    fn page_bytes(&self) -> usize {
        self.slots as usize * SLOT
    }

    /// Offset of `block` in the allocation (checked: inside, on a slot).
    fn offset_of(&self, block: *mut FreeBlock) -> usize {
        let off = (block as usize)
            .checked_sub(self.mem as usize)
            .expect("block below the test backing");
        assert!(
            off < self.layout.size() && off % SLOT == 0,
            "{block:p} is not a block of the test backing"
        );
        off
    }

    /// The page number of `block`.
    fn page_of_block(&self, block: *mut FreeBlock) -> u32 {
        (self.offset_of(block) / self.page_bytes()) as u32 + 1
    }

    /// The addresses of every class-0 block of every page.
    fn all_blocks(&self) -> Vec<usize> {
        (0..self.pages as usize * self.slots as usize)
            .map(|i| self.mem as usize + i * SLOT)
            .collect()
    }

    /// Page `p`'s memory.
    fn bytes(&self, p: u32) -> &[u8] {
        let start = self.page_start(self.page(p));
        // SAFETY: page `p` lies inside the live allocation; the caller reads
        // it only where nobody writes it (single-threaded tests).
        unsafe { std::slice::from_raw_parts(start, self.page_bytes()) }
    }

    /// Returns page `page` to the page heap as free since `stamp`.
    fn put_back(&self, page: u64, stamp: u64) {
        let p = self.page_number(page);
        assert_eq!(
            self.anchor(page).state(),
            FREE,
            "page {p} released while its anchor is not FREE"
        );
        assert!(
            self.in_use[p as usize - 1].swap(false, Ordering::Relaxed),
            "page {p} released but not handed out"
        );
        self.released.fetch_add(1, Ordering::Relaxed);
        self.released_at.fetch_max(stamp, Ordering::Relaxed);
        self.units.release(p, 1);
    }
}

impl Drop for TestBacking {
    fn drop(&mut self) {
        // SAFETY: `mem` came from `alloc_zeroed` with `layout`; freed once.
        unsafe { std::alloc::dealloc(self.mem, self.layout) };
    }
}

// SAFETY: `mem` is owned by the backing until drop; everything else is
// atomics or immutable. Which thread may touch which block is what the pool
// protocol under test decides, exactly as with the production backing.
unsafe impl Send for TestBacking {}
// SAFETY: as for `Send`: every method takes `&self` and touches atomics,
// immutable fields, or block memory on behalf of the block's holder.
unsafe impl Sync for TestBacking {}

// SAFETY: a page handle's link word is an element of `page_links`, which lives
// as long as the backing; a block handle's is the block's second word, inside
// the allocation, 8-byte aligned, which lives as long as the backing.
unsafe impl NodeSpace for TestBacking {
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        if handle & PAGE_TAG != 0 {
            return &self.page_links[self.page_number(handle) as usize - 1];
        }
        let slots = self.pages as u64 * u64::from(self.slots);
        assert!(
            (1..=slots).contains(&handle),
            "{handle:#x} is not a handle of the test backing"
        );
        let word = self.mem.wrapping_add((handle as usize - 1) * SLOT + 8);
        // SAFETY: inside the live, zero-initialised allocation, 8-byte
        // aligned (the base is 64-aligned); `AtomicU64` has `u64`'s layout.
        // Non-atomic writes to it (a purge's zeroing) happen only while no
        // stack can reach the block.
        unsafe { &*word.cast::<AtomicU64>() }
    }
}

// SAFETY: page `p` is the `p - 1`-th run of `slots * 16` bytes of one live
// allocation, 64-byte aligned, so it holds `page_capacity` blocks of class 0
// or 1, aligned as the classes promise; its memory and anchor live as long as
// the backing (a purge zeroes memory but keeps it); pages are handed out by
// the unit map's claim (one owner each, checked by `in_use`) and come back by
// its release; `handle_of` and `addr_of` are inverse on blocks; page and block
// handles are distinct, non-zero and below `HANDLE_MASK`; a block's link is
// its second word, which the pool may overwrite while the block is free.
unsafe impl Backing for TestBacking {
    fn page_capacity(&self, class: usize) -> u32 {
        // Asked for every class (`Pools::maintain` drains them all); only
        // classes 0 and 1 ever get a page.
        (self.page_bytes() / CLASS_SIZE[class] as usize).max(1) as u32
    }

    fn acquire_page(&self, class: usize, _grow: bool) -> Option<u64> {
        assert!(class <= 1, "the test backing has pages of classes 0 and 1");
        // All the memory counts as mapped, so `grow` changes nothing.
        let (p, clean) = self.units.claim(1)?;
        assert!(
            (1..=self.pages).contains(&p),
            "page heap: unit {p} is no page"
        );
        assert!(
            !self.in_use[p as usize - 1].swap(true, Ordering::Relaxed),
            "page heap: page {p} handed out twice"
        );
        if clean {
            assert!(
                self.bytes(p).iter().all(|&b| b == 0),
                "page heap: page {p} reported clean but its memory is not zero"
            );
        }
        self.acquired.fetch_add(1, Ordering::Relaxed);
        let page = self.page(p);
        self.anchor(page).activate();
        Some(page)
    }

    unsafe fn release_page(&self, page: u64) {
        self.put_back(page, self.now_ms());
    }

    unsafe fn release_idle_page(&self, page: u64, idle_since: u64) {
        self.idle_released.fetch_add(1, Ordering::Relaxed);
        self.put_back(page, idle_since);
    }

    fn page_start(&self, page: u64) -> *mut u8 {
        let p = self.page_number(page);
        self.mem.wrapping_add((p as usize - 1) * self.page_bytes())
    }

    fn anchor(&self, page: u64) -> &Anchor {
        &self.anchors[self.page_number(page) as usize - 1]
    }

    unsafe fn page_of(&self, block: *mut FreeBlock) -> u64 {
        self.page(self.page_of_block(block))
    }

    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64 {
        (self.offset_of(block) / SLOT) as u64 + 1
    }

    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock {
        let slots = self.pages as u64 * u64::from(self.slots);
        assert!(
            (1..=slots).contains(&handle),
            "{handle:#x} is not a block handle of the test backing"
        );
        self.mem.wrapping_add((handle as usize - 1) * SLOT).cast()
    }

    fn now_ms(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn purge_delay_ms(&self) -> u64 {
        self.delay.load(Ordering::Relaxed)
    }

    unsafe fn next_of(&self, block: *mut FreeBlock) -> *mut FreeBlock {
        // SAFETY: the caller holds the free block; word 0 is its link.
        flip_link(unsafe { (*block).next })
    }

    unsafe fn set_next(&self, block: *mut FreeBlock, next: *mut FreeBlock) {
        // SAFETY: the caller holds the free block; word 0 is its link.
        unsafe { (*block).next = flip_link(next) };
    }

    fn purge(&self, force: bool, now: u64) {
        // As `Segments::purge` for one segment: nothing before the delay
        // since the latest release, unless forced.
        let since = self.released_at.load(Ordering::Relaxed);
        if !force && now < since.saturating_add(self.purge_delay_ms()) {
            return;
        }
        let mask = self.units.reserve_dirty();
        for p in (1..=self.pages).filter(|&p| mask & (1 << p) != 0) {
            assert!(
                !self.in_use[p as usize - 1].load(Ordering::Relaxed),
                "purge reserved page {p}, which is handed out"
            );
            // SAFETY: the reservation makes the page ours until
            // `finish_purge`: no holder, no claim. Zeroing it models
            // MADV_DONTNEED.
            unsafe {
                self.page_start(self.page(p))
                    .write_bytes(0, self.page_bytes())
            };
            self.purged.fetch_add(1, Ordering::Relaxed);
        }
        if mask != 0 {
            self.units.finish_purge(mask);
        }
    }
}

/// `pool.take` of class `class`, growing.
fn take_class(pool: &ClassPool, b: &TestBacking, class: usize, want: u32) -> Option<Batch> {
    // SAFETY: each test uses a pool with one backing and one class only.
    unsafe { pool.take(b, class, want, true, 0) }
}

/// The blocks of a class-0 batch from `take`, which must succeed.
fn take(pool: &ClassPool, b: &TestBacking, want: u32) -> Vec<*mut FreeBlock> {
    blocks(
        b,
        take_class(pool, b, CLASS, want).expect("the test backing has room"),
    )
}

/// The blocks of `batch`, checking that its chain has exactly `len` blocks.
fn blocks(b: &impl Backing, batch: Batch) -> Vec<*mut FreeBlock> {
    assert!(batch.len >= 1, "empty batch");
    let mut out = Vec::with_capacity(batch.len as usize);
    let mut block = batch.head;
    for _ in 0..batch.len {
        assert!(!block.is_null(), "batch chain shorter than its length");
        out.push(block);
        // SAFETY: the caller owns the batch, of blocks of `b`.
        block = unsafe { b.next_of(block) };
    }
    assert!(block.is_null(), "batch chain longer than its length");
    out
}

/// Chains `list` (in order, null-terminated) into a batch.
///
/// # Safety
/// The caller owns every block of `list`.
unsafe fn chain(b: &impl Backing, list: &[*mut FreeBlock]) -> Batch {
    assert!(!list.is_empty());
    for (i, &block) in list.iter().enumerate() {
        let next = list.get(i + 1).copied().unwrap_or(core::ptr::null_mut());
        // SAFETY: the caller owns the block, of `b`.
        unsafe { b.set_next(block, next) };
    }
    Batch {
        head: list[0],
        len: list.len() as u32,
    }
}

/// `pool.give` of `list` (owned by the caller, given up) as one batch.
fn give(pool: &ClassPool, b: &TestBacking, list: &[*mut FreeBlock]) {
    // SAFETY: the tests give only blocks they took from this pool and hold;
    // the pool is used with this backing and class 0 only.
    unsafe { pool.give(b, CLASS, chain(b, list), 0) };
}

/// `pool.send_home` of `list` as one batch.
fn send_home(pool: &ClassPool, b: &TestBacking, list: &[*mut FreeBlock]) {
    // SAFETY: as for `give`.
    unsafe { pool.send_home(b, CLASS, chain(b, list), None) };
}

/// `pool.drain`, not idle.
fn drain(pool: &ClassPool, b: &TestBacking) {
    // SAFETY: the pool is used with this backing and class 0 only.
    unsafe { pool.drain(b, CLASS, None) };
}

fn addrs(list: &[*mut FreeBlock]) -> Vec<usize> {
    list.iter().map(|&p| p as usize).collect()
}

#[test]
fn carving_fills_a_page_then_installs_the_next_and_free_pages_are_reused() {
    let b = TestBacking::new(3, 4);
    let pool = ClassPool::new();
    let (p1, p2) = (b.page(1), b.page(2));
    let mut first = take(&pool, &b, 3);
    assert_eq!(first.len(), 3);
    assert_eq!(b.anchor(p1).state(), ACTIVE);
    // One block is left in page 1: carving cuts the batch short rather than
    // spanning two pages.
    first.extend(take(&pool, &b, 3));
    assert_eq!(first.len(), 4);
    assert_eq!(b.acquired(), 1);
    let second = take(&pool, &b, 3);
    assert_eq!(b.acquired(), 2, "a used-up page is replaced");
    assert_eq!(b.anchor(p1).state(), FULL, "the replaced page ends carving");
    assert_eq!(b.anchor(p2).state(), ACTIVE);
    // Blocks are carved in order, inside their pages.
    for (i, &blk) in first.iter().enumerate() {
        assert_eq!(blk as usize, b.page_start(p1) as usize + i * SLOT);
        // SAFETY: a block carved from this backing.
        assert_eq!(unsafe { b.page_of(blk) }, p1);
    }
    for (i, &blk) in second.iter().enumerate() {
        assert_eq!(blk as usize, b.page_start(p2) as usize + i * SLOT);
    }
    let mut all = addrs(&first);
    all.extend(addrs(&second));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 7, "blocks are distinct");

    // Every block of the FULL page home in one batch: the page leaves the
    // class and its unit returns to the page heap.
    let mut back = first.clone();
    back.reverse();
    send_home(&pool, &b, &back);
    assert_eq!(b.released(), 1);
    assert_eq!(b.anchor(p1).state(), FREE);
    assert!(b.is_free(1));
    assert!(pool.partial.is_empty(), "a released page is not listed");

    // Page 2 runs out; the next page is page 1 again (resident units are
    // preferred over never-used page 3).
    let last = take(&pool, &b, 4);
    assert_eq!(last.len(), 1);
    assert_eq!(b.page_of_block(last[0]), 2);
    let again = take(&pool, &b, 4);
    assert_eq!(b.acquired(), 3);
    assert_eq!(addrs(&again), addrs(&first), "page 1 is carved anew");
    assert_eq!(b.anchor(p1).state(), ACTIVE);
    assert_eq!(b.anchor(p2).state(), FULL);
    assert!(b.is_free(3));
}

#[test]
fn end_of_carving_lists_or_releases_the_replaced_page() {
    let b = TestBacking::new(3, 4);
    let pool = ClassPool::new();
    let (p1, p2) = (b.page(1), b.page(2));
    let a = take(&pool, &b, 4);
    // Blocks come home to the page being carved: it stays ACTIVE, unlisted.
    send_home(&pool, &b, &a[..2]);
    assert_eq!(b.anchor(p1).state(), ACTIVE);
    assert_eq!(b.anchor(p1).at_home(), 2);
    assert!(pool.partial.is_empty());
    // Replacing it lists it with its home list, which the next take serves.
    let c = take(&pool, &b, 1);
    assert_eq!(b.page_of_block(c[0]), 2);
    assert_eq!(b.anchor(p1).state(), LISTED);
    assert!(!pool.partial.is_empty());
    let d = take(&pool, &b, 4);
    assert_eq!(addrs(&d), addrs(&a[..2]), "the partial page serves first");
    assert_eq!(b.anchor(p1).state(), FULL);
    assert_eq!(b.anchor(p1).at_home(), 0);
    // Every block of page 2 home while it is carved: released when replaced.
    let mut e = c;
    e.extend(take(&pool, &b, 4));
    assert_eq!(e.len(), 4);
    send_home(&pool, &b, &e);
    assert_eq!(b.anchor(p2).state(), ACTIVE);
    assert_eq!(b.released(), 0);
    let f = take(&pool, &b, 1);
    assert_eq!(b.page_of_block(f[0]), 3);
    assert_eq!(b.released(), 1);
    assert_eq!(b.anchor(p2).state(), FREE);
    assert!(b.is_free(2));
    assert!(pool.partial.is_empty());
}

#[test]
fn give_stacks_below_the_cap_and_sends_home_past_it() {
    let b = TestBacking::new(3, 4);
    let pool = ClassPool::new();
    let p1 = b.page(1);
    let x = take(&pool, &b, 4);
    give(&pool, &b, &x[..3]);
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), 3);
    assert_eq!(b.anchor(p1).at_home(), 0, "a stacked batch is not home");
    let y = take(&pool, &b, 8);
    assert_eq!(addrs(&y), addrs(&x[..3]), "the same batch comes back whole");
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), 0);

    // Pretend the stack is two blocks short of its cap (reaching it for real
    // takes 131 072 blocks of class 0; see `stack_cap_counts_blocks_for_real`).
    let cap = stack_cap(CLASS);
    pool.shards[0].stacked.store(cap - 2, Ordering::Relaxed);
    give(&pool, &b, &y[..2]);
    assert_eq!(
        pool.shards[0].stacked.load(Ordering::Relaxed),
        cap,
        "up to the cap: stacked"
    );
    assert_eq!(b.anchor(p1).at_home(), 0);
    give(&pool, &b, &y[2..]);
    assert_eq!(
        pool.shards[0].stacked.load(Ordering::Relaxed),
        cap,
        "past the cap: home"
    );
    assert_eq!(b.anchor(p1).at_home(), 1);
    give(&pool, &b, &x[3..]);
    assert_eq!(b.anchor(p1).at_home(), 2);
    let z = take(&pool, &b, 8);
    assert_eq!(addrs(&z), addrs(&y[..2]));
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), cap - 2);
    pool.shards[0].stacked.store(0, Ordering::Relaxed);
}

/// `pool.take` for a thread of `shard`, growing.
fn take_on(
    pool: &ClassPool,
    b: &TestBacking,
    want: u32,
    shard: usize,
) -> Option<Vec<*mut FreeBlock>> {
    // SAFETY: the pool is used with this backing and class 0 only.
    unsafe { pool.take(b, CLASS, want, true, shard) }.map(|batch| blocks(b, batch))
}

/// `pool.give` for a thread of `shard`.
fn give_on(pool: &ClassPool, b: &TestBacking, list: &[*mut FreeBlock], shard: usize) {
    // SAFETY: as for `give`.
    unsafe { pool.give(b, CLASS, chain(b, list), shard) };
}

#[test]
fn a_shard_takes_back_its_own_batches_and_takes_another_shards_last() {
    // One page of 8 blocks: x and y use it up.
    let b = TestBacking::new(1, 8);
    let pool = ClassPool::new();
    let x = take_on(&pool, &b, 4, 0).unwrap();
    let y = take_on(&pool, &b, 4, 1).unwrap();
    // Shard 1 gives first, shard 0 last: one shared stack would hand x to
    // the next taker whatever its shard.
    give_on(&pool, &b, &y, 1);
    give_on(&pool, &b, &x, 0);
    assert_eq!(
        take_on(&pool, &b, 4, 1).as_ref(),
        Some(&y),
        "shard 1 gets its own batch back"
    );
    // Shard 1 is empty and there is nothing to carve: only then does it
    // take shard 0's batch, rather than fail.
    assert_eq!(take_on(&pool, &b, 4, 1).as_ref(), Some(&x));
    assert_eq!(take_on(&pool, &b, 4, 0), None, "every block is out");
}

#[test]
fn a_shard_carves_before_it_takes_another_shards_batch() {
    // Two pages of 4 blocks; x uses up the first.
    let b = TestBacking::new(2, 4);
    let pool = ClassPool::new();
    let x = take_on(&pool, &b, 4, 0).unwrap();
    give_on(&pool, &b, &x, 0);
    let fresh = take_on(&pool, &b, 4, 1).unwrap();
    assert!(
        fresh.iter().all(|a| !x.contains(a)),
        "shard 1 took shard 0's blocks while a page was free"
    );
    assert_eq!(take_on(&pool, &b, 4, 0).as_ref(), Some(&x));
    give_on(&pool, &b, &fresh, 1);
    drain(&pool, &b);
}

#[test]
#[cfg_attr(miri, ignore = "carves 131k blocks")]
fn stack_cap_counts_blocks_for_real() {
    let slots = 4096;
    let len = batch_len(CLASS);
    let cap = stack_cap(CLASS);
    let pages = (cap / u64::from(slots)) as u32 + 2;
    let b = TestBacking::new(pages, slots);
    let pool = ClassPool::new();
    assert_eq!(cap % u64::from(len), 0);
    let batches: Vec<_> = (0..cap / u64::from(len) + 1)
        .map(|_| {
            let batch = take(&pool, &b, len);
            assert_eq!(batch.len() as u32, len);
            batch
        })
        .collect();
    let home = |b: &TestBacking| {
        (1..=pages)
            .map(|p| b.anchor(b.page(p)).at_home())
            .sum::<u32>()
    };
    let (last, full) = batches.split_last().unwrap();
    for batch in full {
        give(&pool, &b, batch);
    }
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), cap);
    assert_eq!(home(&b), 0, "up to the cap, every batch is stacked");
    give(&pool, &b, last);
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), cap);
    assert_eq!(home(&b), len, "the batch past the cap went home");
    drain(&pool, &b);
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), 0);
    assert!(pool.shards[0].batches.is_empty());
}

#[test]
fn a_partial_page_serves_its_home_list_cut_to_want() {
    let b = TestBacking::new(3, 8);
    let pool = ClassPool::new();
    let p1 = b.page(1);
    let a = take(&pool, &b, 8);
    let c = take(&pool, &b, 1);
    assert_eq!(b.anchor(p1).state(), FULL);
    send_home(&pool, &b, &[a[5], a[2], a[7]]);
    assert_eq!(b.anchor(p1).state(), LISTED);
    assert_eq!(b.anchor(p1).at_home(), 3);
    assert!(!pool.partial.is_empty());
    send_home(&pool, &b, &[a[0]]);
    assert_eq!(b.anchor(p1).state(), LISTED);
    assert_eq!(b.anchor(p1).at_home(), 4);
    // The home list is the last run, linked to the runs before it.
    let t = take(&pool, &b, 2);
    assert_eq!(addrs(&t), addrs(&[a[0], a[5]]), "cut to want");
    assert_eq!(b.anchor(p1).state(), FULL);
    assert_eq!(b.anchor(p1).at_home(), 0);
    assert!(pool.partial.is_empty());
    assert_eq!(
        pool.shards[0].stacked.load(Ordering::Relaxed),
        2,
        "the rest is stacked"
    );
    let u = take(&pool, &b, 8);
    assert_eq!(addrs(&u), addrs(&[a[2], a[7]]));
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), 0);
    // Then carving resumes on page 2.
    let v = take(&pool, &b, 8);
    assert_eq!(v.len(), 7);
    assert_eq!(v[0] as usize, c[0] as usize + SLOT);
    assert_eq!(b.acquired(), 2);
}

#[test]
fn drain_sends_batches_home_and_releases_pages_whose_blocks_are_all_home() {
    let b = TestBacking::new(5, 4);
    let pool = ClassPool::new();
    drain(&pool, &b);
    let (p1, p2, p3) = (b.page(1), b.page(2), b.page(3));
    let x1 = take(&pool, &b, 4);
    let x2 = take(&pool, &b, 4);
    let x3 = take(&pool, &b, 4);
    let x4 = take(&pool, &b, 1);
    assert_eq!(b.page_of_block(x4[0]), 4);
    give(&pool, &b, &x1);
    // One batch, runs of two pages interleaved: one anchor CAS per run.
    send_home(&pool, &b, &[x2[0], x2[1], x3[0], x2[2], x3[1], x2[3]]);
    assert_eq!((b.anchor(p2).state(), b.anchor(p2).at_home()), (LISTED, 4));
    assert_eq!((b.anchor(p3).state(), b.anchor(p3).at_home()), (LISTED, 2));
    assert_eq!(b.released(), 0, "a LISTED page waits for a drain");
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), 4);

    drain(&pool, &b);
    assert_eq!(b.released(), 2);
    assert_eq!(b.idle_released(), 0);
    assert_eq!(b.anchor(p1).state(), FREE, "its stacked batch went home");
    assert_eq!(b.anchor(p2).state(), FREE, "all home: released");
    assert_eq!((b.anchor(p3).state(), b.anchor(p3).at_home()), (LISTED, 2));
    assert!(b.is_free(1) && b.is_free(2) && !b.is_free(3) && !b.is_free(4));
    assert!(pool.shards[0].batches.is_empty());
    assert_eq!(pool.shards[0].stacked.load(Ordering::Relaxed), 0);
    // The page left listed still serves takes.
    let t = take(&pool, &b, 8);
    assert_eq!(addrs(&t), addrs(&[x3[1], x3[0]]), "last run first");
    assert_eq!(b.anchor(p3).state(), FULL);
    // Draining again changes nothing.
    drain(&pool, &b);
    assert_eq!(b.released(), 2);
    assert_eq!(b.anchor(p3).state(), FULL);
}

#[test]
fn the_tick_drains_idle_classes_and_purges_their_pages_at_once() {
    let backing = TestBacking::new(6, 4);
    backing.set_delay(100);
    backing.set_clock(1000);
    let pools = Pools::new(backing);
    let b = pools.backing();
    let take = |class: usize, want: u32| blocks(b, pools.take(class, want, 0).expect("room"));
    let give = |class: usize, list: &[*mut FreeBlock]| {
        for &blk in list {
            // SAFETY: we hold the block; scribble over all of it, as a program would.
            unsafe {
                blk.cast::<u8>()
                    .write_bytes(0xA5, CLASS_SIZE[class] as usize)
            };
        }
        // SAFETY: blocks of `class` taken from `pools`, held, given up.
        unsafe { pools.give(class, chain(b, list), 0) };
    };
    // Class 0: page 1 carved and replaced (FULL), its blocks stacked.
    let a = take(0, 4);
    let a2 = take(0, 1);
    give(0, &a);
    assert_eq!(b.anchor(b.page(1)).state(), FULL);
    // Class 1 (two blocks a page): page 3 likewise, 80 ms later.
    b.set_clock(1080);
    let c = take(1, 2);
    let _c2 = take(1, 1);
    assert_eq!(b.page_of_block(c[0]), 3);
    give(1, &c);
    assert!(b.bytes(1).iter().any(|&x| x != 0));

    b.set_clock(1099);
    pools.maintain(false);
    assert_eq!(b.released(), 0, "nothing idle for the delay yet");
    assert_eq!(pools.class(0).shards[0].stacked.load(Ordering::Relaxed), 4);

    b.set_clock(1100);
    pools.maintain(false);
    // Class 0 took nothing for the delay: drained, its page released as idle
    // since its last take, and so purged in the same tick.
    assert_eq!(pools.class(0).shards[0].stacked.load(Ordering::Relaxed), 0);
    assert_eq!((b.released(), b.idle_released()), (1, 1));
    assert_eq!(b.anchor(b.page(1)).state(), FREE);
    assert_eq!(b.purged(), 1);
    assert!(
        b.bytes(1).iter().all(|&x| x == 0),
        "purged memory reads zero"
    );
    assert!(b.is_free(1));
    assert_eq!(b.units.dirty_free(), 0);
    // Class 1 took 20 ms ago: untouched.
    assert_eq!(pools.class(1).shards[0].stacked.load(Ordering::Relaxed), 2);
    assert_eq!(b.anchor(b.page(3)).state(), FULL);

    // A forced tick drains every class and purges every free unit.
    b.set_clock(1101);
    pools.maintain(true);
    assert_eq!(pools.class(1).shards[0].stacked.load(Ordering::Relaxed), 0);
    assert_eq!((b.released(), b.idle_released()), (2, 1));
    assert_eq!(b.anchor(b.page(3)).state(), FREE);
    assert_eq!(b.purged(), 2);
    assert!(b.bytes(3).iter().all(|&x| x == 0));
    assert_eq!(b.units.dirty_free(), 0);

    // The tick itself: due one delay after the first take (1100), it runs on
    // the next give, drains class 0 (idle since 1000) and re-arms.
    assert_eq!(pools.next_tick.load(Ordering::Relaxed), 1100);
    give(0, &a2);
    assert_eq!(
        pools.next_tick.load(Ordering::Relaxed),
        1201,
        "the tick ran and is due one delay later"
    );
    assert_eq!(pools.class(0).shards[0].stacked.load(Ordering::Relaxed), 0);
    let p2 = b.anchor(b.page(2));
    assert!(p2.at_home() == 1 || p2.state() == FREE, "a2 went home");
    // The rest of page 2, then a purged page handed out again: clean, and
    // the backing checks that it reads as zero.
    assert_eq!(take(0, 4).len(), 3);
    let again = take(0, 4);
    assert_eq!(b.page_of_block(again[0]), 1);
    assert_eq!(b.acquired(), 5);
}

#[test]
fn take_drains_classes_that_were_given_before_failing() {
    let pools = Pools::new(TestBacking::new(2, 4));
    let b = pools.backing();
    let a = blocks(b, pools.take(0, 4, 0).expect("room"));
    let _c = blocks(b, pools.take(0, 4, 0).expect("room"));
    assert_eq!(b.acquired(), 2);
    // Page 1 (FULL) stacked in class 0; the page heap is empty.
    // SAFETY: blocks of class 0 taken from `pools`, held, given up.
    unsafe { pools.give(0, chain(b, &a), 0) };
    assert_eq!(
        pools.class(0).activity.load(Ordering::Relaxed),
        GIVEN_SINCE_RELIEF
    );
    // Class 1 finds no page, drains class 0 (which was given blocks) and gets
    // page 1 back from the page heap.
    let d = blocks(b, pools.take(1, 2, 0).expect("pressure relief"));
    assert_eq!(b.page_of_block(d[0]), 1);
    assert_eq!((b.released(), b.acquired()), (1, 3));
    assert_eq!(pools.class(0).shards[0].stacked.load(Ordering::Relaxed), 0);
    assert_eq!(pools.class(0).activity.load(Ordering::Relaxed), 0);
    // Nothing given since: nothing to drain, out of memory.
    assert!(pools.take(1, 1, 0).is_none());
    assert_eq!(b.acquired(), 3);
}

/// Takes from `pools` until it returns `None`, counting every block seen.
fn take_everything(pools: &Pools<TestBacking>, seen: &mut BTreeMap<usize, u32>) {
    let limit = pools.backing().all_blocks().len();
    while let Some(batch) = pools.take(CLASS, 8, 0) {
        for blk in blocks(pools.backing(), batch) {
            pools.backing().offset_of(blk);
            *seen.entry(blk as usize).or_default() += 1;
        }
        assert!(
            seen.values().sum::<u32>() as usize <= limit,
            "blocks forever"
        );
    }
}

#[test]
fn concurrent_takes_gives_and_returns_conserve_every_block() {
    const THREADS: u64 = 3;
    const ITERS: u32 = if cfg!(miri) { 150 } else { 200_000 };
    const HOLD: usize = 12;
    let pages = 6;
    let slots = 8;
    let pools = Pools::new(TestBacking::with_reserve(pages, slots));
    let pool = pools.class(CLASS);
    let start = std::sync::Barrier::new(THREADS as usize);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (pools, start) = (&pools, &start);
            s.spawn(move || {
                let b = pools.backing();
                // Threads 0 and 2 share a shard, thread 1 has its own: takes
                // race gives on one stack and take from another's.
                let shard = (t % 2) as usize;
                start.wait();
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (t + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                // Blocks held, each with the mark written in its first word.
                let mut held: Vec<(*mut FreeBlock, u64)> = Vec::new();
                for i in 0..ITERS {
                    let r = next();
                    let op = r % 16;
                    if op < 7 && held.len() < HOLD {
                        let want = 1 + (r >> 8) as u32 % slots;
                        if let Some(batch) = pools.take(CLASS, want, shard) {
                            for blk in blocks(pools.backing(), batch) {
                                let mark = (t + 1) << 40 | u64::from(i) << 8 | held.len() as u64;
                                // SAFETY: the block is ours now; word 0 is
                                // ours to write (the link, word 1, is not
                                // touched: a stale pop may still read it).
                                unsafe { blk.cast::<u64>().write(mark) };
                                held.push((blk, mark));
                            }
                        }
                    } else if op == 15 {
                        drain(pool, b);
                    } else if !held.is_empty() {
                        let k = 1 + (r >> 16) as usize % held.len().min(slots as usize);
                        let list: Vec<_> = (0..k)
                            .map(|_| {
                                let j = (next() % held.len() as u64) as usize;
                                let (blk, mark) = held.swap_remove(j);
                                // SAFETY: we hold the block.
                                let now = unsafe { blk.cast::<u64>().read() };
                                assert_eq!(now, mark, "a block we hold was handed out again");
                                blk
                            })
                            .collect();
                        if op < 13 {
                            // SAFETY: blocks of class 0 from `pools`, held, given up.
                            unsafe { pools.give(CLASS, chain(pools.backing(), &list), shard) };
                        } else {
                            send_home(pool, b, &list);
                        }
                    }
                }
                let list: Vec<_> = held.iter().map(|&(blk, _)| blk).collect();
                if !list.is_empty() {
                    // SAFETY: as above.
                    unsafe { pools.give(CLASS, chain(pools.backing(), &list), shard) };
                }
            });
        }
    });
    let b = pools.backing();
    drain(pool, b);
    // Every block must now be in exactly one place the pool can reach: a
    // stacked batch, a home list, the uncarved rest of the carving page or a
    // page in the page heap. Take them all; blocks at home in the carving
    // page are reachable only once it is replaced, which the reserve page
    // makes possible.
    let mut seen = BTreeMap::new();
    take_everything(&pools, &mut seen);
    b.unlock_reserve();
    take_everything(&pools, &mut seen);
    for (&blk, &n) in &seen {
        assert_eq!(n, 1, "block {blk:#x} is in {n} places");
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        b.all_blocks(),
        "a block was lost"
    );
    assert_eq!(b.units.used(), u64::MAX, "the page heap still holds pages");
    let mut active = 0;
    for p in 1..=b.pages {
        let anchor = b.anchor(b.page(p));
        assert_eq!(anchor.at_home(), 0, "page {p} has blocks at home");
        match anchor.state() {
            ACTIVE => active += 1,
            FULL => {}
            s => panic!("page {p} ends in state {s}"),
        }
    }
    assert_eq!(active, 1, "one page is being carved");
    assert_eq!(b.acquired() - b.released(), b.pages);
}

/// `fatal::abort` panics only under Miri (and loom); natively it aborts the
/// test process, so these run under Miri only.
#[cfg(miri)]
mod double_free {
    use super::*;

    #[test]
    #[should_panic(expected = "double free")]
    fn more_blocks_home_than_the_page_has_is_detected() {
        let b = TestBacking::new(2, 4);
        let pool = ClassPool::new();
        let a = take(&pool, &b, 4);
        take(&pool, &b, 1);
        send_home(&pool, &b, &a[..2]);
        send_home(&pool, &b, &a[2..]);
        assert_eq!(b.anchor(b.page(1)).at_home(), 4);
        send_home(&pool, &b, &a[..1]);
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn a_block_home_to_a_released_page_is_detected() {
        let b = TestBacking::new(2, 4);
        let pool = ClassPool::new();
        let a = take(&pool, &b, 4);
        take(&pool, &b, 1);
        send_home(&pool, &b, &a);
        assert_eq!(b.anchor(b.page(1)).state(), FREE);
        send_home(&pool, &b, &a[3..]);
    }
}
