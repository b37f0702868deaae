//! `Shoal`: the lock-free, thread-caching allocator, layer by layer.
//!
//! ```text
//!  alloc/free ──► front (Shoal<P>): class_for → small path P | large objects
//!                    │
//!                 ThreadCache (per thread, plain loads/stores)      cache, thread
//!                    │ one CAS per batch
//!                    ▼
//!                 Pools: per class, a tagged Treiber stack of       pool, stack
//!                 batches + a carve word
//!                    │ carve (CAS on the carve word)
//!                    ▼
//!                 Segments (4 MiB, one class each)  ◄── mmap        segment, address_map
//!  large (> 256 KiB or align > 4 KiB) ──► one mapping per object    large, mapping_park
//! ```
//!
//! Imports go downwards only: `size_class` → `stack` → `pool` →
//! `address_map` → `segment` → `mapping_park` → `large` → `cache` →
//! `thread` → `small_path` → `locked` → `front`, with `crate::sync` and
//! `crate::os` below all of them (and `crate::fault`, in test builds, just
//! above `size_class`).
//!
//! All state is process-wide; `Shoal` is a zero-sized handle to it, so any
//! number of `Shoal` values (a `#[global_allocator]` and direct callers in
//! benchmarks) share one heap.

pub mod cache;
pub mod mapping_park;
pub mod pool;
pub mod size_class;
pub mod stack;

#[cfg(not(loom))]
mod address_map;
#[cfg(not(loom))]
mod front;
#[cfg(not(loom))]
mod large;
#[cfg(not(loom))]
pub mod locked;
#[cfg(not(loom))]
mod medium;
pub mod page;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
pub mod small_path;
#[cfg(not(loom))]
mod thread;
pub mod units;

#[cfg(not(loom))]
pub use front::{ForeignPointer, Owner, Shoal};

/// See [`crate::collect`].
#[cfg(not(loom))]
pub fn collect() {
    small_path::collect();
}
