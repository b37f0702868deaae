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
//! ## Layers (each depends only on those above it)
//! | module | job |
//! |---|---|
//! | [`sync`] | std / loom switch for every atomic |
//! | [`os`] | pages from the OS (`mmap`, `munmap`, `madvise`) |
//! | [`size_class`] | the compile-time size-class table |
//! | [`stack`] | the ABA-tagged Treiber stack of batches |
//! | [`pool`] | shared per-class pools: batches + carving fresh blocks |
//! | [`cache`] | per-thread free lists, the fast path |
//! | `registry`, `segment`, `large` | address → owner map, 4 MiB segments, large objects |
//! | `thread` | binding caches to threads, flushing them at thread exit |
//! | `shoal` | the `GlobalAlloc` front |
//! | `gil` | the pymalloc-style baseline |
//!
//! Under `cfg(loom)` only the lock-free building blocks are compiled, so the
//! model checker drives exactly the types the allocator uses.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cache;
pub mod mapping_cache;
pub mod os;
pub mod pool;
pub mod size_class;
pub mod stack;
pub mod sync;

#[cfg(not(loom))]
pub mod ablation;
#[cfg(not(loom))]
pub mod fault;
#[cfg(not(loom))]
pub mod gil;
#[cfg(not(loom))]
pub mod large;
#[cfg(not(loom))]
pub mod registry;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
pub mod shoal;
#[cfg(not(loom))]
pub mod thread;

#[cfg(not(loom))]
pub use gil::GilAlloc;
#[cfg(not(loom))]
pub use shoal::{ForeignPointer, Owner, Shoal};
