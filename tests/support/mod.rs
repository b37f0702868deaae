//! What the oracle, stress, `GilAlloc` and teeth tests share: the list of
//! allocators under test, the two checkers (the shadow-model oracle and the
//! multithreaded stress run), the deterministic checks of realloc and
//! `alloc_zeroed`, and the fill / verify / RNG helpers.
//!
//! Every checker drives an allocator through `&dyn GlobalAlloc` and returns
//! `Err(description)` on the first violation instead of panicking, so the
//! teeth tests can assert that an injected fault is *caught*.
#![allow(dead_code)]

use proptest::prelude::*;
use shoalloc::internals::{ShoalLocked, ShoalNoCache};
use shoalloc::{GilAlloc, Shoal, ShoalSecure};
use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// The allocators under test
// ---------------------------------------------------------------------------

/// An allocator under test and the name the tests report it by.
pub type Named = (&'static str, &'static (dyn GlobalAlloc + Sync));

pub static SHOAL: Shoal = Shoal::new();
pub static SHOAL_SECURE: ShoalSecure = ShoalSecure::new();
pub static SHOAL_NOCACHE: ShoalNoCache = ShoalNoCache::with_small_path();
pub static SHOAL_LOCKED: ShoalLocked = ShoalLocked::with_small_path();
pub static GIL: GilAlloc = GilAlloc::new();

/// Every allocator the checkers run on: `Shoal`, its secure variant, its two
/// ablations (no thread caches; thread caches over locked pools) and the
/// pymalloc-style baseline. A test that covers "all allocators" iterates
/// over this list.
pub static ALLOCATORS: [Named; 5] = [
    ("shoal", &SHOAL),
    ("shoal-secure", &SHOAL_SECURE),
    ("shoal-nocache", &SHOAL_NOCACHE),
    ("shoal-locked", &SHOAL_LOCKED),
    ("gil", &GIL),
];

/// The allocator of [`ALLOCATORS`] called `name` (for child processes, which
/// get the name through the environment).
pub fn allocator(name: &str) -> &'static (dyn GlobalAlloc + Sync) {
    match ALLOCATORS.iter().find(|(n, _)| *n == name) {
        Some(&(_, a)) => a,
        None => panic!("no allocator called {name:?}"),
    }
}

// ---------------------------------------------------------------------------
// Fill, verify, RNG
// ---------------------------------------------------------------------------

/// xorshift64*: deterministic, allocation-free randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (a zero seed, which xorshift cannot
    /// leave, is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The byte pattern of allocation `id` at offset `i`. Patterns of two ids
/// differ in some of any 16 consecutive bytes unless the ids are equal modulo
/// 256.
#[inline]
pub fn pattern(id: u64, i: usize) -> u8 {
    (id as usize).wrapping_mul(31).wrapping_add(i / 8) as u8 | 1
}

/// The offsets [`fill`] writes and [`verify`] reads: every byte of the first
/// 512 and of the last 256, and one every 4 KiB in between — enough to see a
/// second owner's writes without touching every page of a large object twice.
pub fn sample(size: usize) -> impl Iterator<Item = usize> {
    let dense = size.min(512);
    let tail_start = size.saturating_sub(256).max(dense);
    (0..dense)
        .chain((dense..tail_start).step_by(4096))
        .chain(tail_start..size)
}

/// Writes allocation `id`'s pattern at the [`sample`] offsets of `size` bytes.
pub fn fill(ptr: *mut u8, size: usize, id: u64) {
    for i in sample(size) {
        // SAFETY: `i < size`, inside the caller's live block.
        unsafe { ptr.add(i).write(pattern(id, i)) };
    }
}

/// Checks the pattern written by [`fill`]`(ptr, size, id)`; `Err` names the
/// first bad byte.
pub fn verify(ptr: *const u8, size: usize, id: u64) -> Result<(), String> {
    verify_prefix(ptr, size, size, id)
}

/// Checks the bytes below `kept` of a block that [`fill`]`(_, written, id)`
/// wrote (the prefix a realloc must preserve).
pub fn verify_prefix(ptr: *const u8, written: usize, kept: usize, id: u64) -> Result<(), String> {
    for i in sample(written).take_while(|&i| i < kept) {
        // SAFETY: `i < kept`, inside the caller's live block.
        let got = unsafe { ptr.add(i).read() };
        if got != pattern(id, i) {
            return Err(format!(
                "allocation {id} at {ptr:p}: byte {i} is {got:#x}, expected {:#x} — another owner wrote it",
                pattern(id, i)
            ));
        }
    }
    Ok(())
}

/// Writes allocation `id`'s pattern to every byte of `size` bytes.
pub fn fill_all(ptr: *mut u8, size: usize, id: u64) {
    for i in 0..size {
        // SAFETY: `i < size`, inside the caller's live block.
        unsafe { ptr.add(i).write(pattern(id, i)) };
    }
}

/// Checks every byte below `size` against [`fill_all`]'s pattern.
pub fn verify_all(ptr: *const u8, size: usize, id: u64) -> Result<(), String> {
    for i in 0..size {
        // SAFETY: `i < size`, inside the caller's live block.
        let got = unsafe { ptr.add(i).read() };
        if got != pattern(id, i) {
            return Err(format!(
                "allocation {id} at {ptr:p}: byte {i} of {size} is {got:#x}, expected {:#x}",
                pattern(id, i)
            ));
        }
    }
    Ok(())
}

/// Mostly small sizes, some medium, a few large (up to `max`).
pub fn random_size(r: u64, max: usize) -> usize {
    let pick = r % 100;
    let r = (r >> 8) as usize;
    let size = match pick {
        0..=69 => 1 + r % 256,
        70..=89 => 1 + r % 4096,
        90..=97 => 1 + r % 65536,
        _ => 1 + r % max,
    };
    size.min(max)
}

/// Alignment 1..=4096 mostly, sometimes up to 64 KiB.
pub fn random_align(r: u64) -> usize {
    match r % 16 {
        0..=9 => 8,
        10..=14 => 1 << ((r >> 4) % 13),
        _ => 1 << (13 + (r >> 4) % 4),
    }
}

// ---------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------

/// A model of the heap in the spirit of rlsf's `ShadowAllocator`: the address
/// ranges currently handed out. Every allocation must be aligned, must not
/// overlap any live range (so no block is handed out twice), and every free
/// must name a live range.
#[derive(Default)]
pub struct Shadow {
    /// start → (end, id)
    live: BTreeMap<usize, (usize, u64)>,
}

impl Shadow {
    pub fn on_alloc(&mut self, ptr: *mut u8, layout: Layout, id: u64) -> Result<(), String> {
        let start = ptr as usize;
        if start % layout.align() != 0 {
            return Err(format!("{ptr:p} not aligned to {}", layout.align()));
        }
        let end = start + layout.size().max(1);
        if let Some((&s, &(e, other))) = self.live.range(..end).next_back() {
            if e > start {
                return Err(format!(
                    "allocation {id} [{start:#x}, {end:#x}) overlaps live allocation {other} [{s:#x}, {e:#x})"
                ));
            }
        }
        self.live.insert(start, (end, id));
        Ok(())
    }

    pub fn on_free(&mut self, ptr: *mut u8) -> Result<u64, String> {
        match self.live.remove(&(ptr as usize)) {
            Some((_, id)) => Ok(id),
            None => Err(format!("free of {ptr:p}, which is not live")),
        }
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }
}

/// One step of a random sequence for the oracle.
#[derive(Clone, Debug)]
pub enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        zeroed: bool,
    },
    /// Frees the live allocation at this index (modulo the number live).
    Free(usize),
    /// Resizes the live allocation at this index (modulo the number live)
    /// to this many bytes.
    Realloc(usize, usize),
}

/// One random [`Op`]: mostly small sizes, some up to 2 MiB, alignments up to
/// 64 KiB, a fifth of them reallocs.
pub fn op_strategy() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 1usize..=256,
        3 => 257usize..=8192,
        1 => 8193usize..=300_000,
        1 => 300_001usize..=2_000_000,
    ];
    prop_oneof![
        5 => (size, prop_oneof![4 => Just(0u32), 4 => 1u32..=12, 1 => 13u32..=16], any::<bool>())
            .prop_map(|(size, align_log, zeroed)| Op::Alloc { size, align_log, zeroed }),
        3 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), 1usize..=70_000).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

/// The inputs of the oracle property: 1 to 299 random [`Op`]s.
pub fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op_strategy(), 1..300)
}

/// Allocations of every size class and alignment from 1 B to 3 MB (small
/// blocks, medium spans up to 2 MiB, huge objects above), alignments up to
/// 128 KiB (past a unit, which only huge objects honour), then reallocs and
/// frees among them: the oracle's exhaustive sweep.
pub fn sweep_ops() -> Vec<Op> {
    let mut ops = Vec::new();
    let mut size = 1;
    while size <= 3_000_000 {
        for align_log in [0, 4, 6, 12, 14, 16, 17] {
            ops.push(Op::Alloc {
                size,
                align_log,
                zeroed: size % 3 == 0,
            });
        }
        size = size * 5 / 4 + 1;
    }
    for i in 0..ops.len() / 2 {
        ops.push(Op::Realloc(i * 7, (i * 977) % 50_000 + 1));
        ops.push(Op::Free(i * 13));
    }
    ops
}

struct Live {
    ptr: *mut u8,
    layout: Layout,
    id: u64,
}

/// Runs `ops` on `alloc`, checking each result against a [`Shadow`] and the
/// contents of every block against its pattern. Frees everything at the end.
pub fn run_oracle(alloc: &dyn GlobalAlloc, ops: &[Op]) -> Result<(), String> {
    let mut shadow = Shadow::default();
    let mut live: Vec<Live> = Vec::new();
    let mut next_id = 0u64;
    let mut result = Ok(());
    let trace = std::env::var_os("ORACLE_TRACE").is_some();
    for op in ops {
        if trace {
            eprintln!("{op:?} live={}", live.len());
        }
        result = step(alloc, op, &mut shadow, &mut live, &mut next_id);
        if result.is_err() {
            break;
        }
    }
    if result.is_err() {
        // The heap no longer matches the model (and a failed step may have
        // left `live` stale): leak rather than free into a corrupt heap.
        std::mem::forget(live);
        return result;
    }
    for l in live.drain(..) {
        verify(l.ptr, l.layout.size(), l.id)?;
        shadow.on_free(l.ptr)?;
        // SAFETY: allocated by `alloc` with this layout and not freed yet.
        unsafe { alloc.dealloc(l.ptr, l.layout) };
    }
    result
}

fn step(
    alloc: &dyn GlobalAlloc,
    op: &Op,
    shadow: &mut Shadow,
    live: &mut Vec<Live>,
    next_id: &mut u64,
) -> Result<(), String> {
    match *op {
        Op::Alloc {
            size,
            align_log,
            zeroed,
        } => {
            let layout = Layout::from_size_align(size, 1 << align_log).unwrap();
            // SAFETY: a valid layout with non-zero size.
            let ptr = unsafe {
                if zeroed {
                    alloc.alloc_zeroed(layout)
                } else {
                    alloc.alloc(layout)
                }
            };
            if ptr.is_null() {
                return Err(format!("alloc({layout:?}) returned null"));
            }
            let id = *next_id;
            *next_id += 1;
            shadow.on_alloc(ptr, layout, id)?;
            if zeroed {
                for i in sample(size) {
                    // SAFETY: inside the fresh block.
                    if unsafe { ptr.add(i).read() } != 0 {
                        return Err(format!("alloc_zeroed({layout:?}) byte {i} not zero"));
                    }
                }
            }
            fill(ptr, size, id);
            live.push(Live { ptr, layout, id });
        }
        Op::Free(i) if !live.is_empty() => {
            let l = live.swap_remove(i % live.len());
            verify(l.ptr, l.layout.size(), l.id)?;
            shadow.on_free(l.ptr)?;
            // SAFETY: allocated with this layout, freed once.
            unsafe { alloc.dealloc(l.ptr, l.layout) };
        }
        Op::Realloc(i, new_size) if !live.is_empty() => {
            let idx = i % live.len();
            let l = &live[idx];
            verify(l.ptr, l.layout.size(), l.id)?;
            shadow.on_free(l.ptr)?;
            // SAFETY: live block with this layout; new size non-zero and
            // small enough not to overflow when rounded to the alignment.
            let new = unsafe { alloc.realloc(l.ptr, l.layout, new_size) };
            if new.is_null() {
                return Err(format!("realloc to {new_size} returned null"));
            }
            let layout = Layout::from_size_align(new_size, l.layout.align()).unwrap();
            let kept = l.layout.size().min(new_size);
            // The preserved prefix must still carry the old pattern (where it
            // was written: the old block's sample).
            verify_prefix(new, l.layout.size(), kept, l.id)
                .map_err(|e| format!("realloc to {new_size} lost a byte: {e}"))?;
            let id = *next_id;
            *next_id += 1;
            shadow.on_alloc(new, layout, id)?;
            fill(new, new_size, id);
            live[idx] = Live {
                ptr: new,
                layout,
                id,
            };
        }
        _ => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Deterministic checks of realloc and alloc_zeroed
// ---------------------------------------------------------------------------

/// One block grown by realloc from 3 B through the small classes into large
/// objects past 1 MB, then shrunk back the same way down to 1 B, at
/// alignments 8, 64 and 4096: every byte the block held before each call
/// must be there after it, at the requested alignment.
pub fn check_realloc_round_trip(alloc: &dyn GlobalAlloc) -> Result<(), String> {
    let mut sizes: Vec<usize> = Vec::new();
    let mut size = 3usize;
    while size < 3_000_000 {
        size = size * 2 + 5;
        sizes.push(size);
    }
    sizes.extend(sizes.clone().into_iter().rev().skip(1));
    sizes.push(1);
    for align in [8, 64, 4096] {
        let mut layout = Layout::from_size_align(3, align).unwrap();
        let mut id = align as u64;
        // SAFETY: non-zero layout.
        let mut p = unsafe { alloc.alloc(layout) };
        if p.is_null() {
            return Err(format!("alloc({layout:?}) returned null"));
        }
        fill_all(p, layout.size(), id);
        for &new_size in &sizes {
            let keep = layout.size().min(new_size);
            // SAFETY: `p` is live with `layout`; the new size is non-zero and
            // far from overflowing when rounded to `align`.
            let q = unsafe { alloc.realloc(p, layout, new_size) };
            if q.is_null() {
                return Err(format!("realloc({layout:?} -> {new_size}) returned null"));
            }
            if q as usize % align != 0 {
                return Err(format!(
                    "realloc to {new_size} lost alignment {align}: {q:p}"
                ));
            }
            verify_all(q, keep, id).map_err(|e| {
                format!(
                    "realloc {} -> {new_size} (align {align}): {e}",
                    layout.size()
                )
            })?;
            id += 1;
            fill_all(q, new_size, id);
            p = q;
            layout = Layout::from_size_align(new_size, align).unwrap();
        }
        verify_all(p, layout.size(), id)?;
        // SAFETY: live with `layout`, freed once.
        unsafe { alloc.dealloc(p, layout) };
    }
    Ok(())
}

/// Blocks of small, medium and large sizes are dirtied and freed, then as
/// many are allocated again with `alloc_zeroed` (so recycled blocks, cached
/// or parked mappings come back): every byte must be zero.
pub fn check_zeroed_after_dirty(alloc: &dyn GlobalAlloc) -> Result<(), String> {
    for size in [8, 48, 200, 512, 4000, 70_000, 300_000] {
        for align in [8, 64] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let n = if size <= 4096 { 64 } else { 4 };
            let mut blocks = Vec::with_capacity(n);
            for _ in 0..n {
                // SAFETY: non-zero layout.
                let p = unsafe { alloc.alloc(layout) };
                if p.is_null() {
                    return Err(format!("alloc({layout:?}) returned null"));
                }
                // SAFETY: a live block of `size` bytes.
                unsafe { p.write_bytes(0xAB, size) };
                blocks.push(p);
            }
            for p in blocks.drain(..) {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { alloc.dealloc(p, layout) };
            }
            let mut result = Ok(());
            for _ in 0..n {
                // SAFETY: non-zero layout.
                let z = unsafe { alloc.alloc_zeroed(layout) };
                if z.is_null() {
                    result = Err(format!("alloc_zeroed({layout:?}) returned null"));
                    break;
                }
                blocks.push(z);
                // SAFETY: a live block of `size` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(z, size) };
                if let Some(i) = bytes.iter().position(|&b| b != 0) {
                    result = Err(format!(
                        "alloc_zeroed({layout:?}) at {z:p}: byte {i} is {:#x}",
                        bytes[i]
                    ));
                    break;
                }
            }
            for z in blocks {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { alloc.dealloc(z, layout) };
            }
            result?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The stress run
// ---------------------------------------------------------------------------

/// Parameters of a multithreaded stress run.
#[derive(Clone, Copy, Debug)]
pub struct StressConfig {
    /// Threads alive at once in each wave.
    pub threads: usize,
    /// How long to keep starting waves of threads (after `min_waves`).
    pub duration: Duration,
    /// Waves run whatever the clock says, so a slow machine (or a
    /// sanitizer) still exercises thread churn.
    pub min_waves: usize,
    /// Operations per thread per wave.
    pub ops_per_thread: usize,
    /// Largest request in bytes.
    pub max_size: usize,
}

/// What a stress run did.
#[derive(Debug, Default)]
pub struct StressReport {
    pub threads_started: usize,
    pub frees: u64,
    pub remote_frees: u64,
}

struct Block {
    ptr: *mut u8,
    layout: Layout,
    id: u64,
    owner: usize,
}

// SAFETY: a `Block` is an exclusively owned allocation; moving it to another
// thread moves that ownership.
unsafe impl Send for Block {}

/// Waves of `threads` threads allocate random sizes and alignments, fill each
/// block with its pattern, free their own blocks or swap them into a shared
/// exchange (so others free them), and exit while still holding cached
/// blocks; the next wave inherits the exchange. Every free checks the pattern.
pub fn run_stress(
    alloc: &'static (dyn GlobalAlloc + Sync),
    cfg: StressConfig,
) -> Result<StressReport, String> {
    const SLOTS: usize = 4096;
    let exchange: Vec<Mutex<Option<Block>>> = (0..SLOTS).map(|_| Mutex::new(None)).collect();
    let failed = AtomicBool::new(false);
    let error = Mutex::new(None::<String>);
    let frees = AtomicU64::new(0);
    let remote = AtomicU64::new(0);
    let next_id = AtomicU64::new(1);
    let thread_ids = AtomicUsize::new(0);
    let start = Instant::now();
    let mut report = StressReport::default();
    let mut seeds = Rng::new(0x9E37_79B9_7F4A_7C15);

    let free_block = |b: Block, me: usize| -> Result<(), String> {
        verify(b.ptr, b.layout.size(), b.id)?;
        frees.fetch_add(1, Ordering::Relaxed);
        if b.owner != me {
            remote.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: allocated by `alloc` with this layout; freed once.
        unsafe { alloc.dealloc(b.ptr, b.layout) };
        Ok(())
    };

    let mut waves = 0;
    while (waves < cfg.min_waves || start.elapsed() < cfg.duration)
        && !failed.load(Ordering::Relaxed)
    {
        waves += 1;
        std::thread::scope(|s| {
            for _ in 0..cfg.threads {
                let me = thread_ids.fetch_add(1, Ordering::Relaxed);
                let mut rng = Rng::new(seeds.next());
                let (exchange, failed, error, next_id, free_block) =
                    (&exchange, &failed, &error, &next_id, &free_block);
                s.spawn(move || {
                    let mut mine: Vec<Block> = Vec::new();
                    let mut run = || -> Result<(), String> {
                        for _ in 0..cfg.ops_per_thread {
                            if failed.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            let r = rng.next();
                            match r % 10 {
                                0..=4 => {
                                    let size = random_size(r >> 8, cfg.max_size);
                                    let align = random_align(r >> 40);
                                    let layout = Layout::from_size_align(size, align).unwrap();
                                    // SAFETY: valid non-zero layout.
                                    let ptr = unsafe { alloc.alloc(layout) };
                                    if ptr.is_null() {
                                        return Err(format!("alloc({layout:?}) returned null"));
                                    }
                                    if ptr as usize % align != 0 {
                                        return Err(format!("{ptr:p} not aligned to {align}"));
                                    }
                                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                                    fill(ptr, size, id);
                                    mine.push(Block {
                                        ptr,
                                        layout,
                                        id,
                                        owner: me,
                                    });
                                }
                                5..=6 if !mine.is_empty() => {
                                    let b = mine.swap_remove((r >> 20) as usize % mine.len());
                                    free_block(b, me)?;
                                }
                                _ if !mine.is_empty() => {
                                    // Swap one of ours into the exchange; free whatever was there.
                                    let b = mine.swap_remove((r >> 20) as usize % mine.len());
                                    let slot = (r >> 32) as usize % SLOTS;
                                    let old = exchange[slot].lock().unwrap().replace(b);
                                    if let Some(old) = old {
                                        free_block(old, me)?;
                                    }
                                }
                                _ => {}
                            }
                        }
                        // Exit holding cached blocks: free half of what we hold
                        // here (into our cache), leave the rest in the exchange.
                        let keep = mine.len() / 2;
                        for b in mine.drain(keep..) {
                            free_block(b, me)?;
                        }
                        let base = rng.next() as usize;
                        for (i, b) in mine.drain(..).enumerate() {
                            let slot = base.wrapping_add(i * 7919) % SLOTS;
                            if let Some(old) = exchange[slot].lock().unwrap().replace(b) {
                                free_block(old, me)?;
                            }
                        }
                        Ok(())
                    };
                    if let Err(e) = run() {
                        failed.store(true, Ordering::Relaxed);
                        error.lock().unwrap().get_or_insert(e);
                    }
                    // Blocks still held after a failure are leaked on purpose:
                    // the heap is already known to be corrupt.
                    std::mem::forget(mine);
                });
            }
        });
        report.threads_started += cfg.threads;
    }
    let result = match error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    };
    for slot in &exchange {
        if let Some(b) = slot.lock().unwrap().take() {
            if result.is_ok() {
                free_block(b, usize::MAX)?;
            }
        }
    }
    result?;
    report.frees = frees.load(Ordering::Relaxed);
    report.remote_frees = remote.load(Ordering::Relaxed);
    Ok(report)
}
