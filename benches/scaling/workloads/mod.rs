//! The workloads: each one a small program that allocates in a pattern known
//! to separate allocator designs (see `shared/reference/benchmarks.md`),
//! written from the pattern's description, not from any other suite's code.
//!
//! # Conventions
//! - **Strong scaling.** A workload does a fixed total amount of work,
//!   divided among `threads`; throughput is total operations / wall time.
//!   So a cell's duration stays bounded as the thread count grows, and an
//!   allocator that scales shows rising throughput.
//! - **Operations** are what the workload's description says it counts
//!   (usually allocations); all allocators do exactly the same operations.
//! - **Self-verification.** Every workload writes patterns into what it
//!   allocates and checks them (contents, checksums, counts) before freeing,
//!   returning `Err` on any mismatch, so a broken allocator fails its cell
//!   instead of winning it.
//! - Everything allocates through the global allocator (the dispatcher):
//!   either via `std` collections or via [`Raw`], a thin owner of one raw
//!   `std::alloc::alloc` block (no zeroing, no capacity growth).

use std::alloc::Layout;
use std::ptr::NonNull;

mod binary_trees;
mod cache_scratch;
mod cache_thrash;
mod epoch_stack;
mod larson;
mod medium;
mod messages;
mod mixed;
mod mleak;
mod mstress;
mod numeric;
mod pair;
mod phases;
mod strings;
mod threadtest;
mod xmalloc;

/// How much work a cell does and on how many threads.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Worker threads.
    pub threads: usize,
    /// Multiplier of each workload's full-size work (1.0 = full run).
    pub scale: f64,
}

impl Spec {
    /// `base` scaled by [`Spec::scale`], at least `min`.
    pub fn n(&self, base: usize, min: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(min)
    }

    /// `base` scaled by the square root of [`Spec::scale`], at least `min`.
    /// For workloads whose size is a memory footprint or whose operations
    /// are long (megabyte buffers): scaled linearly, the smoke run would be
    /// too small to stand out from a process's own few MiB of resident
    /// memory, or the full run would take many times the rest of the sweep.
    /// Square-root scaling keeps the three sweeps within a factor of about 3
    /// of the default one (12%: 0.35, full: 1, smoke: 0.07 of `base`).
    pub fn n_sqrt(&self, base: usize, min: usize) -> usize {
        ((base as f64 * self.scale.sqrt()) as usize).max(min)
    }
}

/// A workload's body: returns the number of operations done, or what failed
/// verification.
pub type Run = fn(&Spec) -> Result<u64, String>;

/// A named workload.
pub struct Workload {
    /// Name used on the command line and in reports.
    pub name: &'static str,
    /// One line: the pattern and what an operation is.
    pub about: &'static str,
    /// The body.
    pub run: Run,
    /// Rough wall time in seconds of one cell at full size (scale 1.0),
    /// extrapolated from a 12%-size sweep on 2 cores, mean over the
    /// allocators and 1-4 threads. Only weights the progress bar's estimate
    /// of the time left (see `runner`); never part of a result.
    pub cost_s: f64,
}

/// Every workload, in report order.
pub const ALL: &[Workload] = &[
    Workload {
        name: "pair",
        about: "alloc + free of one 32 B block in a loop per thread (the alloc/free pair; ops = pairs)",
        run: pair::run,
        cost_s: 0.50,
    },
    Workload {
        name: "threadtest",
        about: "each thread allocates 1000 objects of random size 8-256 B and frees them in random order, repeatedly (ops = allocations)",
        run: threadtest::run,
        cost_s: 0.41,
    },
    Workload {
        name: "larson",
        about: "per-thread 1000 slots, free a random slot and refill it (8-1000 B); every round a new successor thread inherits the slots (ops = allocations)",
        run: larson::run,
        cost_s: 0.27,
    },
    Workload {
        name: "xmalloc",
        about: "producers allocate batches of 4096 x 64 B, consumers on other threads free them (ops = objects; 1 thread: one thread does both)",
        run: xmalloc::run,
        cost_s: 0.37,
    },
    Workload {
        name: "cache-scratch",
        about: "main hands each thread one adjacent 8 B object to free, then each loops alloc/write x20/free (passive false sharing; ops = allocations)",
        run: cache_scratch::run,
        cost_s: 0.13,
    },
    Workload {
        name: "cache-thrash",
        about: "each thread loops alloc 8 B / write x20 / free (active false sharing; ops = allocations)",
        run: cache_thrash::run,
        cost_s: 0.11,
    },
    Workload {
        name: "mstress",
        about: "unequal threads, re-created every round: 2^k-word objects (1% x100, 0.1% x1000), realloc, exchange through a shared array, content checks (ops = allocations + reallocs)",
        run: mstress::run,
        cost_s: 0.35,
    },
    Workload {
        name: "mleak",
        about: "short-lived threads churn small objects, leave one long-lived object in a shared array and exit (ops = allocations)",
        run: mleak::run,
        cost_s: 0.61,
    },
    Workload {
        name: "binary-trees",
        about: "rayon builds and drops many short-lived Box trees (ops = nodes)",
        run: binary_trees::run,
        cost_s: 0.37,
    },
    Workload {
        name: "epoch-stack",
        about: "crossbeam-epoch Treiber stack, push/pop; popped nodes freed later by whichever thread collects (ops = pushes)",
        run: epoch_stack::run,
        cost_s: 0.33,
    },
    Workload {
        name: "numeric",
        about: "interpreter-style arithmetic on boxed numbers: every result a new Box<u64>/Box<f64>/Box<(f64, f64)> (ops = boxes)",
        run: numeric::run,
        cost_s: 0.43,
    },
    Workload {
        name: "strings",
        about: "tokenise text into owned Strings, format and join them, split and parse back (ops = strings made)",
        run: strings::run,
        cost_s: 0.67,
    },
    Workload {
        name: "messages",
        about: "threads in a ring pass 32-1500 B packets (Vec<u8>) to the next thread, which checks and drops them (ops = messages)",
        run: messages::run,
        cost_s: 1.02,
    },
    Workload {
        name: "mixed",
        about: "1000 live slots per thread, sizes 16 B-32 KiB (1/s^2), calloc, realloc, 64 B/4 KiB-aligned, swaps with other threads (ops = allocations + reallocs)",
        run: mixed::run,
        cost_s: 0.36,
    },
    Workload {
        name: "phases",
        about: "phase changes: all threads fill a footprint with 64 B objects and free them, then 1 KiB objects plus 64-512 KiB buffers, then 256 B objects (ops = objects)",
        run: phases::run,
        cost_s: 2.9,
    },
    Workload {
        name: "medium",
        about: "compress-in-chunks: per thread, 256 KiB-4 MiB input and output buffers, filled, transformed and checksummed, 4 pairs alive in a ring (ops = buffers)",
        run: medium::run,
        cost_s: 5.3,
    },
];

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    ALL.iter().find(|w| w.name == name)
}

/// A small, fast, deterministic PRNG (SplitMix64). Workloads seed one per
/// thread so every allocator sees the same sequence of requests.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// A size in `min..=max` with density ∝ 1/s² (many small, few large), the
    /// distribution real programs' request sizes roughly follow.
    #[inline]
    pub fn inverse_square(&mut self, min: usize, max: usize) -> usize {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let s = min as f64 / (1.0 - u); // P(S > s) = min / s
        if s >= max as f64 {
            max
        } else {
            s as usize
        }
    }
}

/// One block from the global allocator, freed on drop. Like `Box<[u8]>`
/// without zeroing on creation, with an arbitrary alignment and `realloc`.
pub struct Raw {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: `Raw` owns its block exclusively, like `Box<[u8]>`; the global
// allocator may free it from any thread.
unsafe impl Send for Raw {}

impl Raw {
    /// `size` (> 0) bytes aligned to `align`, uninitialised memory. Aborts
    /// through `handle_alloc_error` when the allocator returns null.
    pub fn new(size: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        assert!(size > 0);
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self { ptr, layout }
    }

    /// Like [`Raw::new`] but zeroed, through `alloc_zeroed` (calloc).
    pub fn zeroed(size: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        assert!(size > 0);
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self { ptr, layout }
    }

    /// Size in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Address (for alignment checks and adjacency tests).
    #[inline]
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Raw pointer to the first byte.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Resizes with `std::alloc::realloc`, keeping the first
    /// `min(old, new)` bytes.
    pub fn realloc(&mut self, new_size: usize) {
        assert!(new_size > 0);
        // Also checks that `new_size` rounded up to the alignment fits isize.
        let new_layout =
            Layout::from_size_align(new_size, self.layout.align()).expect("valid layout");
        // SAFETY: `ptr` is live with `layout`; `new_size` is non-zero and
        // valid for this alignment (checked just above).
        let p = unsafe { std::alloc::realloc(self.ptr.as_ptr(), self.layout, new_size) };
        let Some(p) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(new_layout)
        };
        self.ptr = p;
        self.layout = new_layout;
    }

    /// Gives up ownership: the pointer and layout to pass to
    /// [`Raw::from_raw`] later (to store a block in an atomic word).
    pub fn into_raw(self) -> (*mut u8, Layout) {
        let parts = (self.ptr.as_ptr(), self.layout);
        std::mem::forget(self);
        parts
    }

    /// Takes back ownership of a block from [`Raw::into_raw`].
    ///
    /// # Safety
    /// `ptr` and `layout` must come from one `into_raw` call, and each such
    /// pair may be taken back only once.
    pub unsafe fn from_raw(ptr: *mut u8, layout: Layout) -> Self {
        Self {
            // SAFETY: `into_raw` returned a non-null pointer (caller's promise).
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            layout,
        }
    }

    /// Writes the word `w` at byte offset `off` (unaligned allowed).
    #[inline]
    pub fn put_u64(&mut self, off: usize, w: u64) {
        assert!(off + 8 <= self.len());
        // SAFETY: in bounds (checked above), we own the block.
        unsafe { self.ptr.as_ptr().add(off).cast::<u64>().write_unaligned(w) }
    }

    /// Reads the word at byte offset `off`.
    #[inline]
    pub fn get_u64(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.len());
        // SAFETY: in bounds (checked above); the workloads read only bytes
        // they wrote (or zeroed memory from `alloc_zeroed`).
        unsafe { self.ptr.as_ptr().add(off).cast::<u64>().read_unaligned() }
    }

    /// Writes byte `b` at `off`.
    #[inline]
    pub fn put(&mut self, off: usize, b: u8) {
        assert!(off < self.len());
        // SAFETY: in bounds, we own the block.
        unsafe { self.ptr.as_ptr().add(off).write(b) }
    }

    /// Reads the byte at `off` (which the workload wrote before).
    #[inline]
    pub fn get(&self, off: usize) -> u8 {
        assert!(off < self.len());
        // SAFETY: in bounds; written before by the workload (or zeroed).
        unsafe { self.ptr.as_ptr().add(off).read() }
    }

    /// The block as bytes; every byte must have been written (or zeroed).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the block is ours and live; callers only view blocks that
        // were filled or zeroed, so every byte is initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
    }

    /// Tags the block: its first word is `tag` and, past that word, its
    /// last byte is `tag as u8`. Blocks must be at least 8 bytes.
    #[inline]
    pub fn tag(&mut self, tag: u64) {
        self.put_u64(0, tag);
        let last = self.len() - 1;
        if last >= 8 {
            self.put(last, tag as u8);
        }
    }

    /// Checks a tag written by [`Raw::tag`].
    #[inline]
    pub fn check_tag(&self, tag: u64) -> Result<(), String> {
        let got = self.get_u64(0);
        let last = if self.len() > 8 {
            self.get(self.len() - 1)
        } else {
            tag as u8
        };
        if got != tag || last != tag as u8 {
            return Err(format!(
                "corrupted {}-byte block at {:#x}: tag {got:#x}/{last:#x}, expected {tag:#x}",
                self.len(),
                self.addr()
            ));
        }
        Ok(())
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: allocated by the global allocator with `layout`, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Splits `total` units of work among `parts` as evenly as possible.
pub fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// Joins scoped/owned worker results, turning a panic into an error.
pub fn join_all<T>(
    handles: Vec<std::thread::JoinHandle<Result<T, String>>>,
) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.join() {
            Ok(r) => out.push(r?),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    Ok(out)
}
