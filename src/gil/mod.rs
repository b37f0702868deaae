//! `GilAlloc`: a faithful single-lock model of CPython's small-object
//! allocator ("pymalloc", `Objects/obmalloc.c`), the baseline the lock-free
//! allocator is measured against.
//!
//! # Design (CPython's names in parentheses)
//! - **Size classes** ([`class`]): 32 classes 16 bytes apart, up to 512 B.
//! - **Pools** ([`pool`]): 16 KiB, each dedicated to one class while in use,
//!   with a header at the pool start found by masking a block's address.
//!   Blocks are carved lazily (`nextoffset`, `maxnextoffset`) and recycled
//!   through a per-pool LIFO free list.
//! - **`usedpools`** ([`heap`]): per class, a circular doubly-linked list of
//!   the pools that have both live and free blocks. An allocation takes the
//!   head pool's first free block; full pools leave the list, and a pool that
//!   was full rejoins it at the tail on its first free.
//! - **Arenas** ([`arena`]): 1 MiB mappings from [`crate::os::map_aligned`]
//!   (aligned to 1 MiB, so all 64 pools are usable). A pool left empty goes
//!   back to its arena, where any class can reuse it. Arenas with free pools
//!   are kept sorted by number of free pools, ascending (`usable_arenas`,
//!   maintained in O(1) with `nfp2lasta`), and new pools come from the head —
//!   the fullest arena — so the emptiest arenas can drain. A wholly empty
//!   arena is unmapped with [`crate::os::unmap`], except the last one in the
//!   list, which CPython keeps to avoid mapping and unmapping an arena on every
//!   iteration of a loop that allocates one object (bpo-37257): after all
//!   small blocks are freed, one arena (1 MiB) stays mapped.
//! - **Large requests** (over 512 B) go to the system allocator
//!   ([`std::alloc::System`]), as in CPython, and so do small requests that
//!   need more than 16-byte alignment (pymalloc blocks guarantee only 16).
//!
//! # The lock
//! Every operation — `alloc`, `dealloc`, `realloc`, `alloc_zeroed`, system
//! path included — runs under one process-wide lock, the "GIL" that makes
//! pymalloc safe in CPython. It is a [`std::sync::Mutex`] in a `static`: its
//! `new` is `const`, on Linux it is a futex word that never allocates (so the
//! allocator can be the global allocator), and contended threads sleep in the
//! kernel rather than spin, which is what CPython's GIL does too and what keeps
//! an 8-thread benchmark on 2 cores from burning its time slices spinning. A
//! spinlock would be a few nanoseconds faster uncontended but collapses under
//! oversubscription; the baseline should measure the cost of serialisation,
//! not of a pathological lock. The lock is not reentrant; nothing under it
//! allocates through the global allocator. A poisoned lock is entered anyway:
//! no code under it panics except debug assertions of broken invariants.
//!
//! # Telling the two paths apart
//! CPython's `free` must discover whether an address is its own
//! (`address_in_range`). Rust's `dealloc` and `realloc` receive the layout
//! the block was allocated with, and the routing depends only on the layout
//! (`size ≤ 512 && align ≤ 16` ⇒ pymalloc, after treating size 0 as 1), so
//! the decision is deterministic and reads no memory.
//!
//! # Limits
//! - Arena descriptors live in a fixed table of [`MAX_ARENAS`] = 16384 entries
//!   inside the static state (the allocator cannot allocate its own
//!   bookkeeping): at most 16 GiB of pools at once. Beyond that, small
//!   allocations return null; large ones are unaffected.
//! - Impossible layouts (sizes near `isize::MAX`, overflowing `realloc`
//!   sizes) yield null, never an abort. A failed `realloc` leaves the old
//!   block intact.
//! - `fork` while another thread holds the lock leaves the child's lock held
//!   (CPython re-creates its GIL after fork; nothing here does).
//!
//! # Fault injection
//! In builds with `cfg(shoalloc_fault)` only, arming
//! `Fault::DoubleHandout` (see `crate::fault`) makes small allocations leave
//! their block on the pymalloc pool's free list, so the next allocation of the
//! class returns it again ([`heap::Heap::malloc_double`]). Other builds
//! contain no trace of it.

mod arena;
mod class;
mod heap;
mod pool;
mod stats;

pub use stats::GilStats;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use heap::Heap;
use std::alloc::System;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Capacity of the arena table: at most this many 1 MiB arenas are mapped at
/// once, i.e. 16 GiB of small objects.
pub const MAX_ARENAS: usize = 16384;

/// The baseline allocator: a zero-sized handle to one process-wide,
/// pymalloc-style heap behind one lock.
///
/// As in CPython's `obmalloc.c`: requests up to 512 bytes (and alignments up
/// to 16) are served from 32 size classes of blocks in 16 KiB pymalloc pools
/// carved from 1 MiB arenas; emptied pools serve any class and emptied arenas
/// go back to the OS; larger requests go to the system allocator. Every
/// operation runs under one process-wide lock (a futex-based `Mutex`), the
/// "GIL" whose price `Shoal` is measured against. At most
/// [`GilAlloc::MAX_ARENAS`] arenas (16 GiB of small blocks) are mapped at
/// once; beyond that, and for impossible layouts, allocations return null.
///
/// Every handle shares the same heap, so memory allocated through one may be
/// freed through another; it works as the `#[global_allocator]` and equally
/// when called directly in a process with another global allocator.
///
/// ```
/// use shoalloc::GilAlloc;
///
/// #[global_allocator]
/// static GLOBAL: GilAlloc = GilAlloc::new();
///
/// let v: Vec<u64> = (0..10_000).collect();
/// assert_eq!(v.iter().sum::<u64>(), 49_995_000);
/// assert!(GLOBAL.stats().small_blocks > 0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct GilAlloc {
    _private: (),
}

impl GilAlloc {
    /// A handle to the process-wide heap.
    pub const fn new() -> Self {
        GilAlloc { _private: () }
    }

    /// Capacity of the arena table: at most this many 1 MiB arenas are mapped
    /// at once, i.e. 16 GiB of small objects.
    pub const MAX_ARENAS: usize = MAX_ARENAS;

    /// A snapshot of the process-wide heap's counters, taken under the lock.
    pub fn stats(&self) -> GilStats {
        stats()
    }
}

/// Everything the lock protects.
///
/// Invariant: `system_blocks` counts the live allocations made through
/// [`System`] by this allocator.
struct GilState {
    heap: Heap<MAX_ARENAS>,
    system_blocks: usize,
}

/// The GIL and the heap it guards. All-zero when constructed, so the ~650 KiB
/// arena table lives in `.bss` and costs nothing until touched.
static GIL: Mutex<GilState> = Mutex::new(GilState {
    heap: Heap::new(),
    system_blocks: 0,
});

/// Takes the GIL. Poisoning is ignored: see the module docs.
fn lock() -> MutexGuard<'static, GilState> {
    GIL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A snapshot of the process-wide heap's counters, taken under the lock.
fn stats() -> GilStats {
    let g = lock();
    let arenas = g.heap.arenas();
    GilStats {
        arenas_mapped: arenas.mapped(),
        arenas_high_water: arenas.high_water(),
        arenas_mapped_total: arenas.mapped_total(),
        pools_in_use: arenas.pools_in_use(),
        pools_free: arenas.mapped() * arena::POOLS_PER_ARENA - arenas.pools_in_use(),
        small_blocks: g.heap.small_blocks(),
        system_blocks: g.system_blocks,
        arena_limit: MAX_ARENAS,
    }
}

/// Where a layout is served.
#[derive(Clone, Copy)]
enum Route {
    /// From pymalloc, in this size class.
    Small(usize),
    /// From the system allocator, with this (non-zero-size) layout.
    System(Layout),
}

/// Routes a layout, treating size 0 as 1 (GlobalAlloc forbids zero, but a
/// zero must not reach `System`). None when the normalised layout is
/// impossible, which only an alignment near `isize::MAX` can cause.
#[inline]
fn route(layout: Layout) -> Option<Route> {
    let size = layout.size().max(1);
    let align = layout.align();
    if class::is_small(size, align) {
        return Some(Route::Small(class::class_of(size)));
    }
    Layout::from_size_align(size, align).ok().map(Route::System)
}

impl GilState {
    /// Allocates for `route`; null on failure.
    fn alloc(&mut self, route: Route) -> *mut u8 {
        match route {
            Route::Small(class) => {
                #[cfg(shoalloc_fault)]
                if crate::fault::is_armed(crate::fault::Fault::DoubleHandout) {
                    return self.heap.malloc_double(class);
                }
                self.heap.malloc(class)
            }
            Route::System(layout) => {
                // SAFETY: `route` only builds non-zero-size layouts.
                let p = unsafe { System.alloc(layout) };
                self.system_blocks += usize::from(!p.is_null());
                p
            }
        }
    }

    /// Frees a block allocated for `route`.
    ///
    /// # Safety
    /// `p` must have been returned by [`GilState::alloc`] for the same route
    /// and not freed since.
    unsafe fn dealloc(&mut self, p: *mut u8, route: Route) {
        match route {
            // SAFETY: forwarded contract: a live pymalloc block of this heap.
            Route::Small(_) => unsafe { self.heap.free(p) },
            Route::System(layout) => {
                self.system_blocks -= 1;
                // SAFETY: forwarded contract: allocated by System with `layout`.
                unsafe { System.dealloc(p, layout) }
            }
        }
    }
}

// SAFETY: every method returns memory of at least the layout's size and
// alignment that no other live allocation overlaps: pymalloc blocks are
// `class_size(class_of(size)) >= size` bytes, 16-aligned, and handed out once
// (outside fault-injection builds, where a test may break this on purpose); everything
// else comes from `System` with the same layout. All shared state is accessed
// under the one lock.
unsafe impl GlobalAlloc for GilAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(route) = route(layout) else {
            return ptr::null_mut();
        };
        lock().alloc(route)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let Some(route) = route(layout) else {
            return ptr::null_mut();
        };
        let mut g = lock();
        match route {
            Route::Small(_) => {
                // Recycled blocks and pools hold old data: always clear.
                let p = g.alloc(route);
                if !p.is_null() {
                    // SAFETY: `p` is a fresh block of at least `layout.size()`
                    // bytes.
                    unsafe { p.write_bytes(0, layout.size()) };
                }
                p
            }
            Route::System(layout) => {
                // SAFETY: `route` only builds non-zero-size layouts.
                let p = unsafe { System.alloc_zeroed(layout) };
                g.system_blocks += usize::from(!p.is_null());
                p
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // Every layout that `alloc` accepted routes again; others never
        // produced a pointer.
        let Some(route) = route(layout) else {
            return;
        };
        // SAFETY: the caller passes a live block of ours with its layout,
        // which routes exactly as it did when allocated.
        unsafe { lock().dealloc(p, route) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (Some(old), Some(new)) = (
            route(layout),
            Layout::from_size_align(new_size, layout.align())
                .ok()
                .and_then(route),
        ) else {
            return ptr::null_mut();
        };
        let mut g = lock();
        match (old, new) {
            // Same class: the block already has room (CPython's in-place case).
            (Route::Small(a), Route::Small(b)) if a == b => p,
            (Route::System(old_layout), Route::System(new_layout)) => {
                // SAFETY: `p` is a live System block of `old_layout`;
                // `new_layout` proved the new size valid for this alignment.
                unsafe { System.realloc(p, old_layout, new_layout.size()) }
            }
            _ => {
                // Across classes or between pymalloc and System: move.
                let q = g.alloc(new);
                if q.is_null() {
                    return q;
                }
                // SAFETY: both blocks are live, distinct allocations, each at
                // least as large as the bytes copied; then `p` is freed with
                // the route it was allocated for.
                unsafe {
                    ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    g.dealloc(p, old);
                }
                q
            }
        }
    }
}
