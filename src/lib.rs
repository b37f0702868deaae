//! # shoalloc
//!
//! A lock-free, thread-caching memory allocator ([`Shoal`]) and, as its
//! measured baseline, a faithful single-lock re-creation of CPython's
//! pymalloc ([`GilAlloc`]).
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: shoalloc::Shoal = shoalloc::Shoal::new();
//! # fn main() {}
//! ```
//!
//! Both are zero-sized handles to process-wide heaps: use them as the
//! `#[global_allocator]`, or call them through [`GlobalAlloc`] in a program
//! whose global allocator is something else. A C program runs on `Shoal`
//! through `libshoalloc.so` (the `capi/` workspace member).
//!
//! On top of any global allocator, [`Pool<T>`] keeps objects constructed
//! between uses — CPython's per-type free lists, with per-thread caches over
//! the same lock-free stack (see [`typed_pool`]).
//!
//! ## Layers
//! Each module depends only on those below it in this list (the design note,
//! `DESIGN.md`, explains every layer):
//!
//! | layer | job |
//! |---|---|
//! | [`typed_pool`] ([`Pool<T>`]) | typed object pools: per-thread caches over `shoal::stack`, slots from the global allocator |
//! | [`stats`] | statistics of the `Shoal` heap: a read-only walk plus slow-path counters |
//! | `shoal` (the [`Shoal`] front) | `GlobalAlloc` and the unsized operations C needs, over a small path and large objects |
//! | `shoal::locked` | the locked small path (ablation), over `small_path`'s trait |
//! | `shoal::small_path` | the small paths: thread-cached (`Shoal`) and uncached (ablation) |
//! | `shoal::{thread, cache}` | binding a cache to each thread; the per-thread free lists (the fast path) |
//! | `shoal::{large, mapping_park}` | large objects, one mapping each, and freed mappings kept for reuse |
//! | `shoal::{segment, address_map}` | 4 MiB segments of blocks; which address ranges are ours |
//! | `shoal::{pool, stack, size_class}` | shared per-class pools of batches over the tagged Treiber stack; the class table |
//! | `gil` | the pymalloc-style baseline (its own arenas, pools and lock) |
//! | `os`, `sync` | pages from the OS; the std / loom switch for every atomic |
//!
//! Under `cfg(loom)` only the lock-free building blocks are compiled, so the
//! model checker drives exactly the types the allocator uses.
//!
//! [`GlobalAlloc`]: core::alloc::GlobalAlloc
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod fatal;
#[cfg(not(loom))]
mod options;
mod stderr;
// Under loom only `PAGE` is used: the models bring their own memory.
#[cfg_attr(loom, allow(dead_code))]
mod os;
mod shoal;
mod sync;
pub mod typed_pool;

#[cfg(all(shoalloc_fault, not(loom)))]
mod fault;
#[cfg(not(loom))]
mod gil;
#[cfg(not(loom))]
pub mod stats;

#[cfg(not(loom))]
pub use gil::{GilAlloc, GilStats};
#[cfg(not(loom))]
pub use shoal::{ForeignPointer, Owner, Shoal, ShoalSecure};
#[cfg(not(loom))]
pub use stats::{print_stats, stats, ClassStats, Stats};
#[cfg(not(loom))]
pub use typed_pool::{OwnedPooled, Pool, PoolBuilder, Pooled, Recycle};

/// Gives memory back to the OS now instead of after the purge delay.
///
/// The calling thread's cached blocks go back to the shared pools, the pools
/// send their free blocks home to their pages, every page whose blocks are
/// all free goes to the page heap, every free unit is purged
/// (`MADV_DONTNEED`), and parked huge-object mappings are unmapped. Blocks
/// cached by *other* live threads stay where they are (at most two batches
/// per class and thread). The C library's `malloc_trim` calls this.
///
/// Without it, memory comes back by itself: free blocks of an idle class
/// go home at the next tick, and free units are purged once they have been
/// free for the purge delay ([`set_purge_delay`]). Ticks run on allocator
/// activity (there is no background thread), so a program that stops
/// allocating altogether keeps what it had until its next allocations or a
/// call to this function.
#[cfg(not(loom))]
pub fn collect() {
    shoal::collect();
}

/// Sets how long freed small and medium memory stays resident before it is
/// purged (default 100 ms; also set by `SHOALLOC_PURGE_DELAY_MS`, which this
/// call overrides). Clamped to one day.
#[cfg(not(loom))]
pub fn set_purge_delay(delay: core::time::Duration) {
    options::set_purge_delay_ms(delay.as_millis().min(u128::from(u64::MAX)) as u64);
}

/// Turns the statistics report at exit on or off (also set by
/// `SHOALLOC_SHOW_STATS`, which this call overrides): the table that
/// [`print_stats`] prints, written to stderr when the process exits.
#[cfg(not(loom))]
pub fn set_show_stats(on: bool) {
    options::set_show_stats(on);
    stats::arm_exit_report();
}

/// Turns failure reports on or off (also set by `SHOALLOC_VERBOSE`, which
/// this call overrides): when on, an allocation that returns null because
/// the OS refused memory, or because the range for small and medium memory
/// is used up, says so on stderr.
#[cfg(not(loom))]
pub fn set_verbose(on: bool) {
    options::set_verbose(on);
}

/// The purge delay now in force.
#[cfg(not(loom))]
pub fn purge_delay() -> core::time::Duration {
    core::time::Duration::from_millis(options::purge_delay_ms())
}

/// The building blocks, for the loom models, the benchmarks, the tests and
/// the C library — not for programs that allocate.
///
/// Nothing here is needed to use shoalloc, and nothing here is stable. Every
/// item that can break an allocator invariant when misused is an `unsafe fn`
/// (or an `unsafe trait` to implement) whose `# Safety` section says what the
/// caller must uphold; the safe ones cannot corrupt memory whatever their
/// arguments.
#[doc(hidden)]
pub mod internals {
    pub use crate::os::PAGE;
    pub use crate::shoal::{cache, mapping_park, page, pool, size_class, stack, units};

    /// `Pool<T>`'s protocol with the thread index passed in (for the loom
    /// model) and its slots.
    pub mod typed_pool {
        pub use crate::typed_pool::local::CacheIndex;
        pub use crate::typed_pool::pool_core::{CacheAt, Create, PoolCore};
        pub use crate::typed_pool::slots::Slot;
    }

    #[cfg(not(loom))]
    pub use crate::shoal::{
        locked::{LockedCached, LockedPools},
        small_path::{SmallPath, ThreadCached, Uncached},
    };

    /// Ablation: [`Shoal`](crate::Shoal) without thread caches — every small
    /// allocation and free is an atomic operation on the class's shared pool.
    #[cfg(not(loom))]
    pub type ShoalNoCache = crate::Shoal<Uncached>;

    /// Ablation: [`Shoal`](crate::Shoal)'s thread caches over shared pools
    /// behind one mutex instead of lock-free stacks.
    #[cfg(not(loom))]
    pub type ShoalLocked = crate::Shoal<LockedCached>;

    /// Where blocks sit: segment and page geometry, for the tests that aim
    /// pointers at a page's slack or a segment's header.
    #[cfg(not(loom))]
    pub mod geometry {
        pub use crate::shoal::segment::{page_capacity, page_units, SEGMENT_SIZE, UNIT};
    }

    /// The fault switches (fault-injection builds only).
    #[cfg(all(shoalloc_fault, not(loom)))]
    pub mod fault {
        pub use crate::fault::{is_armed, set, Fault};
    }
}
