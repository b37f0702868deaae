//! The one place the crate gets its atomics from.
//!
//! Every lock-free protocol imports its atomics from the crate root of this
//! module, so the code that runs in production is what `loom` model-checks
//! under `--cfg loom`.
//!
//! Process-wide `static`s cannot hold loom atomics (they have no `const fn
//! new`), so the state that only exists as statics — the address map, the
//! segment table, the pthread key of the thread caches, the page-size answer —
//! takes its atomics from [`statics`] instead, which are always `core`'s.
//! Those modules are compiled out under loom; what that leaves unmodelled is
//! listed in `loom_tests/README.md` and DESIGN.md.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Atomics for process-wide statics: always `core`'s, never loom's.
#[cfg(not(loom))]
pub mod statics {
    #[cfg(shoalloc_fault)]
    pub use core::sync::atomic::AtomicPtr;
    pub use core::sync::atomic::{AtomicBool, AtomicU8};
    pub use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

/// Lets loom schedule the other threads while this one spins on a CAS retry
/// (outside loom, the stack's backoff spins with `core::hint::spin_loop`).
#[cfg(loom)]
#[inline]
pub fn spin_hint() {
    loom::thread::yield_now();
}
