//! Scaffolding shared by the loom models: a small in-memory [`Backing`], a
//! plain [`NodeSpace`] for the bare stack, the conservation checks every model
//! ends with, and the runner that prints what each model explored.
//!
//! Nothing here is allocator code: it stands in for `segment::Segments` (4 MiB
//! mappings, process-wide statics) which loom cannot host, and it is written to
//! be obviously correct so that a failure points at the protocol under test.
#![allow(dead_code)] // each test binary uses a different part of this module

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use shoalloc::internals::cache::ThreadCache;
use shoalloc::internals::pool::{Backing, Batch, FreeBlock, Pools, SharedPool};
use shoalloc::internals::size_class::{cache_limit, first_block_offset, CLASS_SIZE};
use shoalloc::internals::stack::{BatchStack, NodeSpace, TaggedStack};
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

/// The size class every model uses: class 0, 16-byte blocks.
pub const CLASS: usize = 0;
/// Block size of [`CLASS`].
pub const BLOCK: usize = CLASS_SIZE[CLASS] as usize;
/// Bytes before the first block of a model segment. Non-zero, as in
/// production, so that handle offset 0 names the header and can link the
/// segment into the spare stack (exactly what `segment::Segments` does).
pub const HEADER: usize = 16;
/// Bits of a handle that hold `offset / 16` within a segment.
const OFFSET_BITS: u32 = 4;
/// Preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set. Loom's own
/// default is no bound at all, under which the three-thread models explore
/// every interleaving and their cost grows past the CI budget.
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// A model of `segment::Segments`: `segments` segments of `blocks` 16-byte
/// blocks each, allocated up front (before any model thread runs).
///
/// Differences from production, on purpose:
/// - the stack link of a block lives in a side table of loom `AtomicU64`s
///   indexed by handle, not in the block's second word, so loom tracks every
///   link access (it cannot track atomics that live in untyped memory);
/// - segment memory comes from the host allocator, one allocation per model
///   execution, instead of `mmap`.
///
/// Like production, released segments go to a spare [`BatchStack`] linked
/// through their offset-0 handle, and `acquire` prefers a spare to a fresh
/// segment, so a segment lost in an install race is carved again later.
pub struct ModelBacking {
    /// Start of `segments * segment_bytes` bytes, 16-byte aligned.
    mem: *mut u8,
    layout: Layout,
    segments: u32,
    blocks: u32,
    /// `segments * (blocks + 1)` link words: slot 0 of each segment is the
    /// header's spare link, slots 1..=blocks are the blocks' links.
    links: Box<[AtomicU64]>,
    /// Index of the next never-acquired segment (starts at 1).
    next: AtomicU32,
    /// Segments given back by `release`.
    spare: BatchStack,
    /// Number of `release` calls (for coverage checks).
    released: AtomicU32,
    /// Teeth only: hand out fresh segments with a racy load-then-store.
    racy_acquire: bool,
}

impl ModelBacking {
    /// `segments` segments of `blocks` blocks of [`CLASS`].
    pub fn new(segments: u32, blocks: u32) -> Self {
        Self::build(segments, blocks, false)
    }

    /// A deliberately broken backing whose `acquire` is a non-atomic
    /// read-modify-write of the segment counter, so two racing threads can be
    /// handed the same segment. Used to show the conservation check bites.
    pub fn with_racy_acquire(segments: u32, blocks: u32) -> Self {
        Self::build(segments, blocks, true)
    }

    fn build(segments: u32, blocks: u32, racy_acquire: bool) -> Self {
        assert!(segments >= 1 && (1..(1 << OFFSET_BITS) - 1).contains(&blocks));
        assert_eq!(first_block_offset(CLASS, HEADER), HEADER);
        let layout =
            Layout::from_size_align(segments as usize * Self::bytes_per(blocks), 16).unwrap();
        // SAFETY: the layout has a non-zero size.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!mem.is_null());
        let links = (0..segments as usize * (blocks as usize + 1))
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            mem,
            layout,
            segments,
            blocks,
            links,
            next: AtomicU32::new(1),
            spare: BatchStack::new(),
            released: AtomicU32::new(0),
            racy_acquire,
        }
    }

    fn bytes_per(blocks: u32) -> usize {
        HEADER + blocks as usize * BLOCK
    }

    /// Number of blocks the backing holds in all its segments.
    pub fn total_blocks(&self) -> usize {
        self.segments as usize * self.blocks as usize
    }

    /// How many times `release` was called in this execution.
    pub fn releases(&self) -> u32 {
        self.released.load(Ordering::Relaxed)
    }

    /// The address of every block of every segment, in address order.
    pub fn all_blocks(&self) -> Vec<usize> {
        (1..=self.segments)
            .flat_map(|s| (1..=self.blocks as u64).map(move |o| (u64::from(s) << OFFSET_BITS) | o))
            // SAFETY: the model's `addr_of` only computes an address.
            .map(|h| unsafe { self.addr_of(h) } as usize)
            .collect()
    }

    fn split(&self, handle: u64) -> (u32, u64) {
        let index = (handle >> OFFSET_BITS) as u32;
        let slot = handle & ((1 << OFFSET_BITS) - 1);
        assert!(
            (1..=self.segments).contains(&index) && slot <= u64::from(self.blocks),
            "handle {handle:#x} outside the model backing"
        );
        (index, slot)
    }
}

// SAFETY: the backing's own fields are immutable after construction or
// atomics; `mem` points to memory the backing owns until drop. Who may touch
// which block of that memory is decided by the pool protocol under test (one
// holder per block), exactly as for the production `Segments`.
unsafe impl Send for ModelBacking {}
// SAFETY: as for `Send`: every method takes `&self` and touches only atomics
// and immutable fields.
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
        let (index, slot) = self.split(handle);
        &self.links[(index as usize - 1) * (self.blocks as usize + 1) + slot as usize]
    }
}

// SAFETY: segment `i` is the `i - 1`-th run of `segment_bytes()` bytes of one
// live allocation, 16-byte aligned; `handle_of` and `addr_of` are inverse on
// block addresses (both are `index << 4 | offset / 16`); the link of a handle
// is a side-table word that nothing but the stacks touch.
unsafe impl Backing for ModelBacking {
    fn segment_bytes(&self) -> usize {
        Self::bytes_per(self.blocks)
    }

    fn header_bytes(&self) -> usize {
        HEADER
    }

    fn segment_addr(&self, index: u32) -> *mut u8 {
        assert!((1..=self.segments).contains(&index));
        self.mem
            .wrapping_add((index as usize - 1) * self.segment_bytes())
    }

    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64 {
        let off = (block as usize)
            .checked_sub(self.mem as usize)
            .expect("block below the model backing");
        let index = off / self.segment_bytes() + 1;
        let inner = off % self.segment_bytes();
        assert!(
            index <= self.segments as usize && inner >= HEADER && inner % BLOCK == 0,
            "{block:p} is not a block of the model backing"
        );
        ((index as u64) << OFFSET_BITS) | (inner / 16) as u64
    }

    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock {
        let (index, slot) = self.split(handle);
        self.segment_addr(index)
            .wrapping_add(slot as usize * 16)
            .cast()
    }

    fn acquire(&self, _class: usize) -> Option<u32> {
        // SAFETY: this stack is only ever used with this one node space.
        if let Some((handle, _)) = unsafe { self.spare.pop(self) } {
            return Some((handle >> OFFSET_BITS) as u32);
        }
        if self.racy_acquire {
            let n = self.next.load(Ordering::Relaxed);
            if n > self.segments {
                return None;
            }
            self.next.store(n + 1, Ordering::Relaxed);
            return Some(n);
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n <= self.segments).then_some(n)
    }

    unsafe fn release(&self, index: u32) {
        self.released.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the pool gives back a segment it owns and never installed;
        // its offset-0 handle is non-zero and in no stack.
        unsafe { self.spare.push(self, u64::from(index) << OFFSET_BITS, 1) };
    }
}

/// The pools every pool/cache model shares between its threads.
pub type ModelPools = Pools<ModelBacking>;

/// Fresh pools over a fresh backing.
pub fn pools(segments: u32, blocks: u32) -> Arc<ModelPools> {
    Arc::new(Pools::new(ModelBacking::new(segments, blocks)))
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

/// Exactly `n` blocks taken from the pool (setup, before threads start).
pub fn take_blocks(pools: &ModelPools, n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while out.len() < n {
        let want = (n - out.len()) as u32;
        let batch = pools.take(CLASS, want).expect("model backing too small");
        let mut blocks = batch_blocks(batch);
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

/// Returns one block to the pool as a batch of one.
pub fn give_one(pools: &ModelPools, block: usize) {
    let head = block as *mut FreeBlock;
    // SAFETY: the caller owns `block`, a block of this pool, and gives it up.
    unsafe {
        (*head).next = core::ptr::null_mut();
        pools.give(CLASS, Batch { head, len: 1 });
    }
}

/// Puts `blocks` on `cache` without an atomic operation (setup inside a
/// model thread). An empty cache takes at most `cache_limit - 1` blocks that
/// way (3 under loom): the first whole batch of frees is retired to the
/// cache's stock, and only a second one would go to the pool.
pub fn fill_cache(cache: &mut ThreadCache, pools: &ModelPools, blocks: &[usize]) {
    assert!(cache.cached(CLASS) as usize + blocks.len() < cache_limit(CLASS) as usize);
    for &b in blocks {
        // SAFETY: the blocks are owned by this thread and come from `pools`.
        unsafe { cache.free(pools, CLASS, b as *mut u8) };
    }
}

/// Empties `cache` by allocating what it holds: pops from its own list only,
/// no atomic operation. Returns the blocks it held.
pub fn drain_cache(cache: &mut ThreadCache, pools: &ModelPools) -> Vec<usize> {
    let n = cache.cached(CLASS);
    let out: Vec<usize> = (0..n)
        .map(|_| {
            // SAFETY: this cache is only ever used with this one pool.
            let p = unsafe { cache.alloc(pools, CLASS) };
            assert!(!p.is_null());
            p as usize
        })
        .collect();
    assert_eq!(cache.cached(CLASS), 0);
    out
}

/// The conservation check that ends every pool model. `held` lists the blocks
/// the threads hold (allocated, or on their caches' lists).
///
/// Drains the shared pool with `take` until it returns `None`. That pops every
/// batch and then carves every remaining block of every segment — including
/// spare segments lost in install races, which `acquire` hands out again. So at
/// the end every block of the backing must have been seen exactly once: a
/// block seen twice was handed out twice (or sits in two lists); a block never
/// seen was lost.
pub fn assert_conserved(pools: &ModelPools, held: &[usize]) {
    let backing = pools.backing();
    let total = backing.total_blocks();
    let mut seen: BTreeMap<usize, u32> = BTreeMap::new();
    let note = |b: usize, seen: &mut BTreeMap<usize, u32>| {
        // Panics on anything that is not a block of the backing.
        // SAFETY: the model's `handle_of` checks its argument and reads nothing.
        unsafe { backing.handle_of(b as *mut FreeBlock) };
        *seen.entry(b).or_default() += 1;
    };
    for &b in held {
        note(b, &mut seen);
    }
    let mut drained = 0;
    while let Some(batch) = pools.take(CLASS, u32::MAX) {
        for b in batch_blocks(batch) {
            note(b, &mut seen);
            drained += 1;
        }
        assert!(
            drained <= 2 * total,
            "conservation: pool yields blocks forever"
        );
    }
    for (&b, &n) in &seen {
        assert!(
            n == 1,
            "conservation: block {b:#x} is in {n} places (held {held:x?})"
        );
    }
    let all = backing.all_blocks();
    for b in all {
        assert!(
            seen.contains_key(&b),
            "conservation: block {b:#x} was lost (held {held:x?})"
        );
    }
    assert_eq!(seen.len(), total);
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
