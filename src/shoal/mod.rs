//! `Shoal`: the lock-free, thread-caching allocator, layer by layer.
//!
//! ```text
//!  alloc/free ──► front (Shoal<P>): class_for → small path P | medium | huge
//!                    │
//!                 ThreadCache (per thread, plain loads/stores)      cache, thread
//!                    │ one CAS per batch
//!                    ▼
//!                 Pools: per class, a tagged Treiber stack of       pool, stack
//!                 batches (capped), partial pages, a carve word
//!                    │ send home: one anchor CAS per same-page run
//!                    ▼
//!                 Pages: spans of 64 KiB units, anchor word each    page
//!                    │ all blocks home: units back
//!                    ▼
//!                 Page heap: 4 MiB segments, used/dirty bitmaps,    units, segment,
//!                 purge after a delay                ◄── mmap       address_map
//!  medium (≤ 2 MiB) ──► a span of the page heap                     medium
//!  huge (> 2 MiB or align > 64 KiB) ──► one mapping per object      large, mapping_park
//! ```
//!
//! Imports go downwards only: `size_class` → `stack` → `units` → `page` →
//! `pool` → `address_map` → `mapping_park` → `segment` → `large` → `cache`
//! → `block_state` → `thread` → `small_path` → `medium` → `locked` → `front`
//! → `secure` → `stats` (which only reads the others), with
//! `crate::sync`, `crate::os`, `crate::fatal` and `crate::options` below all
//! of them (`counter`, the statistics' slow-path counters, just above
//! `sync`; the one upward call is `crate::stats::arm_exit_report`, made by
//! `segment` and `large` on their mapping slow path) (and `crate::fault`, in test builds, just above `size_class`).
//!
//! All state is process-wide; `Shoal` is a zero-sized handle to it, so any
//! number of `Shoal` values (a `#[global_allocator]` and direct callers in
//! benchmarks) share one heap.

pub mod cache;
mod counter;
pub mod mapping_park;
pub mod pool;
pub mod size_class;
pub mod stack;

#[cfg(not(loom))]
mod address_map;
#[cfg(not(loom))]
mod block_state;
// The secure pools' backing: segments, with the links the pools follow
// checked.
#[cfg(not(loom))]
mod checked_segments;
#[cfg(not(loom))]
mod front;
#[cfg(not(loom))]
mod large;
// The secure path's encoded free-list links.
#[cfg(not(loom))]
mod link_keys;
#[cfg(not(loom))]
pub mod locked;
#[cfg(not(loom))]
mod medium;
pub mod page;
#[cfg(not(loom))]
mod secure;
#[cfg(not(loom))]
pub(crate) mod segment;
#[cfg(not(loom))]
pub mod small_path;
#[cfg(not(loom))]
pub(crate) mod stats;
#[cfg(not(loom))]
mod thread;
pub mod units;

#[cfg(not(loom))]
pub use front::{ForeignPointer, Owner, Shoal};
#[cfg(not(loom))]
pub use secure::ShoalSecure;

/// See [`crate::collect`].
#[cfg(not(loom))]
pub fn collect() {
    small_path::collect();
}
