//! Checkers shared by the oracle, stress and teeth tests.
//!
//! Both checkers drive an allocator through `&dyn GlobalAlloc` and return
//! `Err(description)` on the first violation instead of panicking, so the
//! teeth tests can assert that an injected fault is *caught*.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The byte pattern of allocation `id` at offset `i`.
#[inline]
pub fn pattern(id: u64, i: usize) -> u8 {
    (id as usize).wrapping_mul(31).wrapping_add(i / 8) as u8 | 1
}

/// Fills the block: every byte for small blocks, a strided sample for large
/// ones (first and last 256 bytes plus every 4 KiB), which is enough to see a
/// second owner's writes.
pub fn fill(ptr: *mut u8, size: usize, id: u64) {
    for i in sample(size) {
        // SAFETY: `i < size`, inside the caller's live block.
        unsafe { ptr.add(i).write(pattern(id, i)) };
    }
}

/// Checks the pattern written by [`fill`]; `Err` names the first bad byte.
pub fn verify(ptr: *const u8, size: usize, id: u64) -> Result<(), String> {
    for i in sample(size) {
        // SAFETY: `i < size`, inside the caller's live block.
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

fn sample(size: usize) -> impl Iterator<Item = usize> {
    let dense = size.min(512);
    let tail_start = size.saturating_sub(256).max(dense);
    (0..dense)
        .chain((dense..tail_start).step_by(4096))
        .chain(tail_start..size)
}

/// One step of a random sequence for the oracle.
#[derive(Clone, Debug)]
pub enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        zeroed: bool,
    },
    Free(usize),
    Realloc(usize, usize),
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
            for i in sample(l.layout.size()).take_while(|&i| i < kept) {
                // SAFETY: inside the new block.
                if unsafe { new.add(i).read() } != pattern(l.id, i) {
                    return Err(format!("realloc lost byte {i} of allocation {}", l.id));
                }
            }
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
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;

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
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let mut rng = seed ^ me as u64;
                let (exchange, failed, error, next_id, free_block) =
                    (&exchange, &failed, &error, &next_id, &free_block);
                s.spawn(move || {
                    let mut mine: Vec<Block> = Vec::new();
                    let mut run = || -> Result<(), String> {
                        for _ in 0..cfg.ops_per_thread {
                            if failed.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let r = rng;
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
                        for (i, b) in mine.drain(..).enumerate() {
                            let slot = (rng as usize).wrapping_add(i * 7919) % SLOTS;
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
