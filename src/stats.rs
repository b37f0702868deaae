//! Statistics: what the heap holds and what its slow paths did, as a plain
//! struct ([`Stats`], from [`stats`]) or a table on stderr ([`print_stats`],
//! and at exit with `SHOALLOC_SHOW_STATS=1`).
//!
//! ```
//! use std::alloc::{GlobalAlloc, Layout};
//!
//! let heap = shoalloc::Shoal::new();
//! let layout = Layout::from_size_align(64, 8).unwrap();
//! // SAFETY: a valid, non-zero-size layout; the block is freed once below.
//! let p = unsafe { heap.alloc(layout) };
//! assert!(!p.is_null());
//!
//! let s = shoalloc::stats();
//! assert!(s.segments >= 1 && s.mapped_bytes >= 4 << 20);
//! assert!(s.in_use_bytes >= 64);
//! assert!(s.refills >= 1, "the first block of a class comes from a refill");
//! let class = s.classes.iter().find(|c| c.block_size == 64).unwrap();
//! assert!(class.pages >= 1 && class.in_use >= 1);
//!
//! // SAFETY: allocated above with this layout.
//! unsafe { heap.dealloc(p, layout) };
//! shoalloc::print_stats(); // the same table as SHOALLOC_SHOW_STATS=1
//! ```
//!
//! # What is covered
//! All `Shoal` values share one process-wide heap, and so do its ablations
//! and `ShoalSecure`: every segment (pages of every class, medium objects,
//! the page heap) and every huge object is counted whichever handle
//! allocated it. The per-class pool figures ([`ClassStats::free_in_pool`],
//! [`ClassStats::uncarved`], refills, flushes, CAS retries) sum `Shoal`'s
//! and `ShoalSecure`'s pools; the free lists of the locked ablation
//! (`internals::ShoalLocked`) are not read (its free blocks count as in
//! use). The pymalloc baseline
//! (`GilAlloc`) has its own [`GilStats`](crate::GilStats).
//!
//! # Exact and estimated
//! Nothing stops the other threads, so a snapshot taken while they allocate
//! is racy: each word is read once, and a page or batch moving meanwhile may
//! be missed or counted twice. When no other thread allocates:
//! - **exact**: the counters (refills, flushes, CAS retries, purges, bytes
//!   purged — relaxed adds, never lost), pages per class, blocks at home in
//!   pages, blocks stacked in the pools, never-carved blocks, segments,
//!   medium objects, huge objects and parked bytes, and so
//!   [`Stats::mapped_bytes`];
//! - **estimates**: [`ClassStats::in_use`] and the `in_use` bytes count the
//!   blocks in *thread caches* as in use — up to two batches per class and
//!   live thread, which cannot be read without stopping those threads;
//!   [`Stats::resident_estimate_bytes`] counts every used or dirty unit and
//!   every huge mapping as resident (parts never touched are not), and
//!   leaves out `ShoalSecure`'s state table.
//!
//! # What counting costs
//! Nothing on the fast path: a thread-cache hit (alloc or free) touches no
//! counter. A refill or a flush adds one relaxed `fetch_add` on the cache
//! line of its pool shard, which that operation writes anyway; CAS retries
//! are counted in a register and added only when there were some; purges
//! and huge objects add relaxed atomics beside a system call. Gathering
//! ([`stats`]) walks every segment's descriptors: call it now and then, not
//! per allocation.

use crate::stderr::Stderr;
use crate::sync::statics::{AtomicU8, Ordering};
use core::fmt::{self, Write};

/// Number of size classes: the length of [`Stats::classes`].
pub const SIZE_CLASSES: usize = 52;

/// One size class: where its blocks are. Counts are in blocks unless named
/// otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes per block.
    pub block_size: usize,
    /// Pages (spans of 64 KiB units) the class holds.
    pub pages: u64,
    /// Free blocks at home in those pages.
    pub free_in_pages: u64,
    /// Free blocks in the class pool's stack of batches.
    pub free_in_pool: u64,
    /// Blocks of the page being carved that were never handed out.
    pub uncarved: u64,
    /// Estimate: blocks carved and not free in the pool or pages, so held by
    /// the program *or cached by a thread*.
    pub in_use: u64,
    /// Batches taken from the pool: thread-cache refills (and allocations
    /// of the uncached ablation).
    pub refills: u64,
    /// Batches given to the pool: thread-cache flushes (and frees of the
    /// uncached ablation).
    pub flushes: u64,
    /// Failed CAS attempts on the pool's batch stacks (every shard), its
    /// partial stack and its carve word.
    pub cas_retries: u64,
}

/// A snapshot of the process-wide heap; see the [module docs](self) for
/// what is exact and what is estimated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Per size class, smallest first.
    pub classes: [ClassStats; SIZE_CLASSES],
    /// 4 MiB segments mapped (never unmapped).
    pub segments: u64,
    /// Pages of small blocks, all classes.
    pub pages: u64,
    /// Bytes of the units those pages span.
    pub small_page_bytes: u64,
    /// Estimate: bytes of small blocks in use (see [`ClassStats::in_use`]).
    pub small_in_use_bytes: u64,
    /// Bytes of free small blocks in pools and pages (and never carved).
    pub small_free_bytes: u64,
    /// Live medium objects (over 256 KiB, up to 2 MiB).
    pub medium_count: u64,
    /// Bytes of their spans.
    pub medium_bytes: u64,
    /// Free units of the page heap that are still resident (awaiting the
    /// purge delay).
    pub free_resident_bytes: u64,
    /// Free units of the page heap that are purged (or never touched).
    pub free_purged_bytes: u64,
    /// Live huge objects (own mapping each).
    pub huge_count: u64,
    /// Bytes of their mappings.
    pub huge_bytes: u64,
    /// Bytes of freed huge mappings parked for reuse.
    pub parked_bytes: u64,
    /// Bytes mapped from the OS: segments, huge and parked mappings.
    pub mapped_bytes: u64,
    /// Estimate of the resident part of `mapped_bytes`.
    pub resident_estimate_bytes: u64,
    /// Estimate: bytes in use, small (with thread caches), medium and huge.
    pub in_use_bytes: u64,
    /// Bytes free for reuse: free small blocks, free page-heap units
    /// (resident or not) and parked mappings.
    pub free_bytes: u64,
    /// Sum of the classes' refills.
    pub refills: u64,
    /// Sum of the classes' flushes.
    pub flushes: u64,
    /// Sum of the classes' CAS retries.
    pub cas_retries: u64,
    /// Runs of free units purged (one `MADV_DONTNEED` each).
    pub purges: u64,
    /// Bytes purged in all.
    pub purged_bytes: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            classes: [ClassStats::default(); SIZE_CLASSES],
            segments: 0,
            pages: 0,
            small_page_bytes: 0,
            small_in_use_bytes: 0,
            small_free_bytes: 0,
            medium_count: 0,
            medium_bytes: 0,
            free_resident_bytes: 0,
            free_purged_bytes: 0,
            huge_count: 0,
            huge_bytes: 0,
            parked_bytes: 0,
            mapped_bytes: 0,
            resident_estimate_bytes: 0,
            in_use_bytes: 0,
            free_bytes: 0,
            refills: 0,
            flushes: 0,
            cas_retries: 0,
            purges: 0,
            purged_bytes: 0,
        }
    }
}

/// A snapshot of the process-wide `Shoal` heap (all `Shoal` and
/// `ShoalSecure` handles share it). Allocates nothing.
pub fn stats() -> Stats {
    crate::shoal::stats::gather()
}

/// Prints the statistics table on stderr, without allocating (a stack
/// buffer, `write(2)`): what `SHOALLOC_SHOW_STATS=1` prints at exit and the
/// C library's `malloc_stats()` prints.
pub fn print_stats() {
    let mut out = Stderr::new();
    let _ = stats().write_table(&mut out);
    out.flush();
}

impl Stats {
    /// Writes the table [`print_stats`] prints. Writes formatted pieces only,
    /// so into a fixed-size writer it allocates nothing.
    pub fn write_table(&self, out: &mut impl Write) -> fmt::Result {
        writeln!(out, "shoalloc statistics")?;
        writeln!(
            out,
            "{:>6} {:>7} {:>6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
            "class",
            "size",
            "pages",
            "in use~",
            "free pool",
            "free page",
            "uncarved",
            "refills",
            "flushes",
            "retries"
        )?;
        for (i, c) in self.classes.iter().enumerate() {
            if c.pages == 0 && c.refills == 0 && c.flushes == 0 {
                continue;
            }
            writeln!(
                out,
                "{:>6} {:>7} {:>6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}",
                i,
                c.block_size,
                c.pages,
                c.in_use,
                c.free_in_pool,
                c.free_in_pages,
                c.uncarved,
                c.refills,
                c.flushes,
                c.cas_retries
            )?;
        }
        let kib = |b: u64| b.div_ceil(1024);
        writeln!(
            out,
            "mapped {} KiB ({} segments), resident~ {} KiB, in use~ {} KiB, free {} KiB",
            kib(self.mapped_bytes),
            self.segments,
            kib(self.resident_estimate_bytes),
            kib(self.in_use_bytes),
            kib(self.free_bytes)
        )?;
        writeln!(
            out,
            "small: {} pages, {} KiB; in use~ {} KiB, free {} KiB",
            self.pages,
            kib(self.small_page_bytes),
            kib(self.small_in_use_bytes),
            kib(self.small_free_bytes)
        )?;
        writeln!(
            out,
            "medium: {} objects, {} KiB; huge: {} objects, {} KiB; parked {} KiB",
            self.medium_count,
            kib(self.medium_bytes),
            self.huge_count,
            kib(self.huge_bytes),
            kib(self.parked_bytes)
        )?;
        writeln!(
            out,
            "page heap free: resident {} KiB, purged {} KiB",
            kib(self.free_resident_bytes),
            kib(self.free_purged_bytes)
        )?;
        writeln!(
            out,
            "refills {}, flushes {}, CAS retries {}, purges {} ({} KiB)",
            self.refills,
            self.flushes,
            self.cas_retries,
            self.purges,
            kib(self.purged_bytes)
        )?;
        writeln!(
            out,
            "(~: estimate; blocks in thread caches count as in use)"
        )
    }
}

/// Registers the exit report with `atexit` the first time it is called with
/// `SHOALLOC_SHOW_STATS=1`; otherwise one relaxed load. Called on the
/// mapping slow paths (a new segment, a huge object), which every process
/// that allocates takes before its first allocation returns.
pub(crate) fn arm_exit_report() {
    static ARMED: AtomicU8 = AtomicU8::new(0);
    if ARMED.load(Ordering::Relaxed) != 0 || !crate::options::show_stats() {
        return;
    }
    if ARMED.swap(1, Ordering::Relaxed) == 0 {
        // SAFETY: `exit_report` is a plain `extern "C" fn()` that lives as
        // long as this code; glibc's `atexit` may allocate its list node,
        // which re-enters the allocator from no lock of ours, and `ARMED`
        // is already set, so that allocation does not register again.
        unsafe { libc::atexit(exit_report) };
    }
}

/// The `atexit` hook of `SHOALLOC_SHOW_STATS=1`.
extern "C" fn exit_report() {
    print_stats();
}
