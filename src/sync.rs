//! The one switch between `std` and `loom` primitives.
//!
//! Every lock-free protocol in the crate imports its atomics from here, so the
//! same code that runs in production is what `loom` model-checks under
//! `--cfg loom`. Statics cannot hold loom atomics, which is why the process-wide
//! globals in [`crate::shoal`] are built only outside loom.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Tells the scheduler (or loom) that this thread is spinning on a CAS retry.
#[inline]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
