//! Writes into freed blocks that sit in `ShoalSecure`'s shared pool, then a
//! `collect()` that makes the pool follow their links: shared by
//! `tests/misuse.rs` (the secure pools must abort with a message) and
//! `teeth/tests/pool_links.rs` (with the pools' link checks switched off,
//! the same misuse must not end in that message).

use shoalloc::ShoalSecure;
use std::alloc::{GlobalAlloc, Layout};

static SECURE: ShoalSecure = ShoalSecure::new();

/// The two cases: which word of each pooled block is overwritten, with
/// what. Word 0 is the chain link a pool walks when it sends a batch home;
/// word 1 is the stack link of a batch's first block (a handle that names
/// no segment, or one that names a guard page of a mapped segment).
pub const CASES: [(&str, usize, u64); 3] = [
    ("secure-write-into-pooled-chain", 0, 0x10),
    ("secure-write-into-pooled-stack-link", 1, u64::MAX >> 8),
    // Segment 1 (mapped), offset 0: its leading guard page.
    ("secure-write-into-pooled-stack-link-guard", 1, 1 << 18),
];

/// Runs case `name` of [`CASES`]: frees 2000 blocks of 64 bytes in a thread
/// that then exits, so that they go to the secure shared pool (as batches
/// on its stack, under the stack's cap), overwrites one word of each, and
/// collects. Returns only if nothing stopped the process.
pub fn run(name: &str) {
    let &(_, word, value) = CASES
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("unknown case {name}"));
    let layout = Layout::from_size_align(64, 8).unwrap();
    let blocks = std::thread::spawn(move || {
        let blocks: Vec<usize> = (0..2000)
            .map(|_| {
                // SAFETY: a non-zero-size layout.
                let p = unsafe { SECURE.alloc(layout) };
                assert!(!p.is_null());
                p as usize
            })
            .collect();
        for &p in &blocks {
            // SAFETY: allocated above, freed once.
            unsafe { SECURE.dealloc(p as *mut u8, layout) };
        }
        blocks
    })
    .join()
    .unwrap();
    for p in blocks {
        // SAFETY: deliberately not: writing into a freed block is the
        // misuse under test (the process is a throwaway child).
        unsafe { (p as *mut u64).add(word).write_volatile(value) };
    }
    shoalloc::collect();
}
