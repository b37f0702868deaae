//! Statistics counters for the slow paths (see [`crate::stats`]).
//!
//! A [`Counter`] is a relaxed `fetch_add` on a word that sits beside data
//! the same slow path already writes (a pool shard's line, a segment-heap
//! static), so counting adds no contended cache line and nothing at all to
//! the thread-cache fast path, which never touches one.
//!
//! Under `cfg(loom)` a counter is an empty no-op: the models check the
//! protocols, and an extra atomic per operation would only multiply the
//! interleavings they explore without protecting anything.

#[cfg(not(loom))]
use crate::sync::statics::{AtomicU64, Ordering};

/// A monotonic event count, read racily for statistics.
#[derive(Debug, Default)]
pub struct Counter {
    #[cfg(not(loom))]
    n: AtomicU64,
}

impl Counter {
    /// Zero.
    pub const fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            n: AtomicU64::new(0),
        }
    }

    /// Adds `k` (relaxed: only the total matters, never an order).
    #[inline]
    pub fn add(&self, k: u64) {
        #[cfg(not(loom))]
        self.n.fetch_add(k, Ordering::Relaxed);
        #[cfg(loom)]
        let _ = k;
    }

    /// The count now (0 under loom).
    #[inline]
    pub fn get(&self) -> u64 {
        #[cfg(not(loom))]
        return self.n.load(Ordering::Relaxed);
        #[cfg(loom)]
        0
    }
}
