//! The compared allocators, in report order: the one list that every
//! benchmark target includes (with `#[path]`, since separate bench targets
//! cannot share a module otherwise).
//!
//! Each entry is a name, as used on command lines and in reports, and the
//! allocator as `&'static (dyn GlobalAlloc + Sync)`. `shoal-secure` is
//! `shoalloc::ShoalSecure` (every small block's state checked: the price of
//! hardening). `shoal-nocache` and `shoal-locked` are ablations of `shoal`
//! (`shoalloc::internals`): no thread caches; thread caches over pools
//! behind one mutex.

use core::alloc::GlobalAlloc;
use shoalloc::internals::{ShoalLocked, ShoalNoCache};
use shoalloc::{GilAlloc, Shoal, ShoalSecure};
use std::alloc::System;

/// A compared allocator, called through `GlobalAlloc`.
pub type Alloc = &'static (dyn GlobalAlloc + Sync);

static SHOAL: Shoal = Shoal::new();
static SHOAL_SECURE: ShoalSecure = ShoalSecure::new();
static GIL: GilAlloc = GilAlloc::new();
static SHOAL_NOCACHE: ShoalNoCache = ShoalNoCache::with_small_path();
static SHOAL_LOCKED: ShoalLocked = ShoalLocked::with_small_path();
static SYSTEM: System = System;
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Every compared allocator, in report order.
pub static ALLOCATORS: [(&str, Alloc); 8] = [
    ("shoal", &SHOAL),
    ("shoal-secure", &SHOAL_SECURE),
    ("gil", &GIL),
    ("shoal-nocache", &SHOAL_NOCACHE),
    ("shoal-locked", &SHOAL_LOCKED),
    ("system", &SYSTEM),
    ("mimalloc", &MIMALLOC),
    ("jemalloc", &JEMALLOC),
];
