//! The benchmark's `#[global_allocator]`: forwards every call to one of the
//! compared allocators, chosen once per process.
//!
//! # Why a dispatcher
//! Whole-program workloads (`Vec`, `String`, `Box`, rayon, crossbeam-epoch,
//! channels) allocate through the global allocator, so the allocator under
//! test has to *be* the global allocator. Building one binary per allocator
//! would work too, but would compile the workloads seven times; instead each
//! benchmark cell runs in a fresh process (see `runner`) whose environment
//! variable [`ENV_VAR`] names the allocator, and this dispatcher forwards to
//! it. Every allocator — `system` included — is reached the same way, so the
//! comparison is fair.
//!
//! # Cost
//! The choice is read lazily by the first call (with `libc::getenv`, which
//! does not allocate) and cached in an atomic byte: the allocator's index
//! in [`ALLOCATORS`]. After that each call costs one relaxed load of a
//! never-written cache line, a load of the table entry (read-only) and one
//! indirect call through the `dyn GlobalAlloc` vtable, whose target never
//! changes and so is perfectly predicted. No allocator is inlined into the
//! dispatcher — `system` included, every allocator is reached by exactly
//! this sequence — so the overhead, a nanosecond or two, is identical for
//! all of them.
//!
//! # Why it is sound
//! The choice is fixed before the first allocation returns and never changes
//! afterwards, so every `dealloc`/`realloc` reaches the allocator that
//! produced the pointer. Two threads racing on the first call both read the
//! same environment variable and store the same value.

use crate::allocators::{Alloc, ALLOCATORS};
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::CStr;
use core::sync::atomic::{AtomicU8, Ordering};

/// Environment variable that names the allocator of a benchmark process.
pub const ENV_VAR: &str = "SHOALLOC_BENCH_ALLOC";

/// The same name as a C string, for `getenv` inside the allocator.
const ENV_VAR_C: &CStr = c"SHOALLOC_BENCH_ALLOC";

/// The allocator used when [`ENV_VAR`] is unset or unknown (the parent
/// process).
const DEFAULT: &str = "system";

/// Not chosen yet.
const UNSET: u8 = u8::MAX;

/// Index in [`ALLOCATORS`] of the chosen allocator, or [`UNSET`].
static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

/// Every allocator's name, in report order.
pub fn names() -> impl Iterator<Item = &'static str> {
    ALLOCATORS.iter().map(|&(name, _)| name)
}

/// The index in [`ALLOCATORS`] of the allocator called `name`.
fn index_of(name: &[u8]) -> Option<usize> {
    ALLOCATORS.iter().position(|(n, _)| n.as_bytes() == name)
}

/// The table's own copy of `name`, if it names an allocator.
pub fn find(name: &str) -> Option<&'static str> {
    index_of(name.as_bytes()).map(|i| ALLOCATORS[i].0)
}

/// Name of the allocator this process uses (fixes the choice if no
/// allocation happened yet).
pub fn active() -> &'static str {
    ALLOCATORS[choice()].0
}

/// `true` if [`ENV_VAR`] names an allocator this binary knows (or is unset).
pub fn env_is_valid() -> bool {
    match std::env::var(ENV_VAR) {
        Ok(v) => find(&v).is_some(),
        Err(_) => true,
    }
}

/// The chosen allocator.
#[inline]
fn chosen() -> Alloc {
    ALLOCATORS[choice()].1
}

#[inline]
fn choice() -> usize {
    let c = CHOICE.load(Ordering::Relaxed);
    if c != UNSET {
        return usize::from(c);
    }
    init()
}

#[cold]
#[inline(never)]
fn init() -> usize {
    // SAFETY: `getenv` with a NUL-terminated name; nothing in this program
    // calls `setenv`, so the returned string stays valid while we read it.
    let value = unsafe { libc::getenv(ENV_VAR_C.as_ptr()) };
    let named = if value.is_null() {
        None
    } else {
        // SAFETY: a non-null `getenv` result is a NUL-terminated string.
        index_of(unsafe { CStr::from_ptr(value) }.to_bytes())
    };
    let index = named
        .or_else(|| index_of(DEFAULT.as_bytes()))
        .expect("the default allocator is in the table");
    CHOICE.store(index as u8, Ordering::Relaxed);
    index
}

/// The dispatching global allocator (see the module docs).
pub struct Dispatch;

// SAFETY: every call is forwarded unchanged to one allocator, the same one
// for the whole life of the process (module docs), so each pointer is freed
// or resized by the allocator that produced it, under that allocator's own
// `GlobalAlloc` contract.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { chosen().alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract; `ptr` came from the same allocator.
        unsafe { chosen().dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { chosen().alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; `ptr` came from the same allocator.
        unsafe { chosen().realloc(ptr, layout, new_size) }
    }
}
