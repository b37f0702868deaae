//! Misuse that only the secure path's encoded links and guard pages stop:
//! shared by `tests/misuse.rs` (`ShoalSecure` must stop each case) and
//! `teeth/tests/links_and_guards.rs` (with plain link keys or without guard
//! pages, the same misuse must go through).

use shoalloc::ShoalSecure;
use std::alloc::{GlobalAlloc, Layout};

static SECURE: ShoalSecure = ShoalSecure::new();

/// Bytes in a segment and in one of its units, and the units before the
/// first block (DESIGN.md §2 and §15): where the guard pages sit.
const SEGMENT: usize = 4 << 20;
const UNIT: usize = 64 << 10;
const RESERVED_UNITS: usize = 5;

/// How a case ends when the protection works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGABRT after "shoalloc: corrupted free list".
    CorruptedList,
    /// SIGSEGV on a guard page.
    GuardPage,
}

/// The cases and how each must end.
pub const CASES: [(&str, Stop); 4] = [
    ("secure-forged-link", Stop::CorruptedList),
    ("secure-write-below-segment-header", Stop::GuardPage),
    ("secure-write-below-first-block", Stop::GuardPage),
    ("secure-medium-first-write-below-header", Stop::GuardPage),
];

/// Runs case `name` of [`CASES`]; returns only if nothing stopped the
/// process.
pub fn run(name: &str) {
    if name == "secure-medium-first-write-below-header" {
        // The process's first allocation is a medium object: its segment
        // must be guarded as well.
        let medium = Layout::from_size_align(512 << 10, 8).unwrap();
        // SAFETY: a non-zero-size layout.
        let m = unsafe { SECURE.alloc(medium) };
        assert!(!m.is_null());
        let base = m as usize & !(SEGMENT - 1);
        // SAFETY: deliberately not, as in the case below.
        unsafe { (base as *mut u8).write_volatile(0x41) };
        return;
    }
    let layout = Layout::from_size_align(32, 8).unwrap();
    // SAFETY: a non-zero-size layout.
    let p = unsafe { SECURE.alloc(layout) };
    assert!(!p.is_null());
    let base = p as usize & !(SEGMENT - 1);
    match name {
        "secure-forged-link" => {
            // SAFETY: deliberately not: after `free(t); free(p)` the thread's
            // list is p -> t, and p's link is overwritten with t's address —
            // a real free block of the class, which the state checks alone
            // accept. Stored plain, the link would have been exactly that
            // value; encoded, the second allocation follows garbage.
            unsafe {
                let t = SECURE.alloc(layout);
                SECURE.dealloc(t, layout);
                SECURE.dealloc(p, layout);
                p.cast::<usize>().write_volatile(t as usize);
                let first = SECURE.alloc(layout);
                let second = SECURE.alloc(layout);
                assert_eq!((first, second), (p, t), "the list was not p -> t");
            }
        }
        "secure-write-below-segment-header" => {
            // SAFETY: deliberately not: the byte a write running off the end
            // of the mapping below would hit first.
            unsafe { (base as *mut u8).write_volatile(0x41) };
        }
        "secure-write-below-first-block" => {
            // SAFETY: deliberately not: the byte just below the first unit
            // that holds blocks, which an underflow from it would hit.
            unsafe { ((base + RESERVED_UNITS * UNIT - 1) as *mut u8).write_volatile(0x41) };
        }
        _ => panic!("unknown case {name}"),
    }
}
