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
//! does not allocate) and cached in an atomic byte. After that each call
//! costs one relaxed load of a never-written cache line and one
//! perfectly predicted branch on its value (`match` over seven arms). That
//! is a nanosecond or less, identical for every allocator.
//!
//! # Why it is sound
//! The choice is fixed before the first allocation returns and never changes
//! afterwards, so every `dealloc`/`realloc` reaches the allocator that
//! produced the pointer. Two threads racing on the first call both read the
//! same environment variable and store the same value.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::CStr;
use core::sync::atomic::{AtomicU8, Ordering};
use shoalloc::ablation::{ShoalLocked, ShoalNoCache};
use shoalloc::{GilAlloc, Shoal};
use std::alloc::System;

/// Environment variable that names the allocator of a benchmark process.
pub const ENV_VAR: &str = "SHOALLOC_BENCH_ALLOC";

/// The same name as a C string, for `getenv` inside the allocator.
const ENV_VAR_C: &CStr = c"SHOALLOC_BENCH_ALLOC";

/// Every compared allocator, in report order. The index is its code.
pub const NAMES: [&str; 7] = [
    "shoal",
    "gil",
    "shoal-nocache",
    "shoal-locked",
    "system",
    "mimalloc",
    "jemalloc",
];

/// Code of the allocator used when [`ENV_VAR`] is unset (the parent process).
const DEFAULT: u8 = 4; // system

/// Not chosen yet.
const UNSET: u8 = u8::MAX;

static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

static SHOAL: Shoal = Shoal::new();
static GIL: GilAlloc = GilAlloc::new();
static NOCACHE: ShoalNoCache = ShoalNoCache::new();
static LOCKED: ShoalLocked = ShoalLocked::new();
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
static JEMALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator code for `name`, if it is one of [`NAMES`].
pub fn code_of(name: &str) -> Option<usize> {
    NAMES.iter().position(|n| *n == name)
}

/// Name of the allocator this process uses (fixes the choice if no
/// allocation happened yet).
pub fn active() -> &'static str {
    NAMES[choice() as usize]
}

/// `true` if [`ENV_VAR`] names an allocator this binary knows (or is unset).
pub fn env_is_valid() -> bool {
    match std::env::var(ENV_VAR) {
        Ok(v) => code_of(&v).is_some(),
        Err(_) => true,
    }
}

#[inline]
fn choice() -> u8 {
    let c = CHOICE.load(Ordering::Relaxed);
    if c != UNSET {
        return c;
    }
    init()
}

#[cold]
#[inline(never)]
fn init() -> u8 {
    // SAFETY: `getenv` with a NUL-terminated name; nothing in this program
    // calls `setenv`, so the returned string stays valid while we read it.
    let value = unsafe { libc::getenv(ENV_VAR_C.as_ptr()) };
    let code = if value.is_null() {
        DEFAULT
    } else {
        // SAFETY: a non-null `getenv` result is a NUL-terminated string.
        let bytes = unsafe { CStr::from_ptr(value) }.to_bytes();
        NAMES
            .iter()
            .position(|n| n.as_bytes() == bytes)
            .map_or(DEFAULT, |i| i as u8)
    };
    CHOICE.store(code, Ordering::Relaxed);
    code
}

/// Runs `$body` with `$a` bound to the chosen allocator.
macro_rules! with_chosen {
    ($a:ident => $body:expr) => {
        match choice() {
            0 => {
                let $a = &SHOAL;
                $body
            }
            1 => {
                let $a = &GIL;
                $body
            }
            2 => {
                let $a = &NOCACHE;
                $body
            }
            3 => {
                let $a = &LOCKED;
                $body
            }
            5 => {
                let $a = &MIMALLOC;
                $body
            }
            6 => {
                let $a = &JEMALLOC;
                $body
            }
            _ => {
                let $a = &System;
                $body
            }
        }
    };
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
        with_chosen!(a => unsafe { a.alloc(layout) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract; `ptr` came from the same allocator.
        with_chosen!(a => unsafe { a.dealloc(ptr, layout) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        with_chosen!(a => unsafe { a.alloc_zeroed(layout) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; `ptr` came from the same allocator.
        with_chosen!(a => unsafe { a.realloc(ptr, layout, new_size) })
    }
}
