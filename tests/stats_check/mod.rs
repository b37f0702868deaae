//! The statistics checks, shared by `tests/stats.rs` (they pass) and
//! `teeth/tests/stats.rs` (they fail under a fault that breaks the stats).
//! Each returns `Err` with what it saw instead of panicking, so the teeth
//! test can assert that it fails.
//!
//! They use a `Shoal` value directly in a process whose global allocator is
//! the system's, so no other allocation moves the numbers; the caller runs
//! them from one test only.

use shoalloc::{Shoal, Stats};
use std::alloc::{GlobalAlloc, Layout};

/// Bytes per block of the class the checks use (a size class of its own).
pub const BLOCK: usize = 64;
/// Largest batch of any class (`size_class::batch_len`).
const MAX_BATCH: u64 = 512;

fn class_of(s: &Stats) -> usize {
    s.classes
        .iter()
        .position(|c| c.block_size == BLOCK)
        .expect("a 64-byte class")
}

fn ensure(ok: bool, what: String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what)
    }
}

/// Allocates `n` blocks of [`BLOCK`] bytes in a fresh thread (so no cached
/// block of an earlier test serves them), frees them, collects: in-use
/// blocks go up by at least `n` then back down, refills count at least one
/// per batch, flushes follow the frees, and `collect` purges.
pub fn small_blocks_move_the_numbers(n: usize) -> Result<(), String> {
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let before = shoalloc::stats();
    let k = class_of(&before);
    let (mid, held) = std::thread::spawn(move || {
        let heap = Shoal::new();
        let blocks: Vec<usize> = (0..n)
            // SAFETY: a valid layout; each block is freed once below.
            .map(|_| unsafe { heap.alloc(layout) } as usize)
            .collect();
        assert!(blocks.iter().all(|&p| p != 0), "out of memory");
        let mid = shoalloc::stats();
        for &p in &blocks {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { heap.dealloc(p as *mut u8, layout) };
        }
        (mid, blocks.len())
    })
    .join()
    .unwrap();
    // The thread's exit hook flushed its cache; `collect` sends the blocks
    // home and purges the pages that emptied.
    shoalloc::collect();
    let after = shoalloc::stats();
    let (b, m, a) = (&before.classes[k], &mid.classes[k], &after.classes[k]);
    let n = held as u64;
    ensure(
        m.in_use >= b.in_use + n,
        format!(
            "in use went {} -> {} with {n} more blocks held",
            b.in_use, m.in_use
        ),
    )?;
    ensure(
        mid.small_in_use_bytes >= before.small_in_use_bytes + n * BLOCK as u64,
        format!(
            "small in-use bytes went {} -> {}",
            before.small_in_use_bytes, mid.small_in_use_bytes
        ),
    )?;
    ensure(
        m.refills >= b.refills + n / MAX_BATCH,
        format!(
            "refills went {} -> {} for {n} blocks (at least one per {MAX_BATCH})",
            b.refills, m.refills
        ),
    )?;
    ensure(
        mid.refills >= before.refills + n / MAX_BATCH,
        format!("total refills went {} -> {}", before.refills, mid.refills),
    )?;
    ensure(
        a.flushes >= m.flushes + n / MAX_BATCH,
        format!(
            "flushes went {} -> {} after {n} frees",
            m.flushes, a.flushes
        ),
    )?;
    ensure(
        a.in_use + n <= m.in_use,
        format!("in use went {} -> {} after {n} frees", m.in_use, a.in_use),
    )?;
    ensure(
        after.purges > before.purges && after.purged_bytes > before.purged_bytes,
        format!(
            "purges went {} -> {} ({} -> {} bytes) over a collect",
            before.purges, after.purges, before.purged_bytes, after.purged_bytes
        ),
    )?;
    ensure(
        mid.mapped_bytes >= mid.resident_estimate_bytes.min(mid.mapped_bytes)
            && mid.mapped_bytes >= n * BLOCK as u64,
        format!("mapped {} bytes for {n} blocks", mid.mapped_bytes),
    )
}

/// A huge allocation shows in the huge count and bytes, and leaves them
/// when freed.
pub fn huge_objects_are_counted() -> Result<(), String> {
    const SIZE: usize = 8 << 20;
    let heap = Shoal::new();
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let before = shoalloc::stats();
    // SAFETY: a valid layout; freed once below.
    let p = unsafe { heap.alloc(layout) };
    assert!(!p.is_null(), "out of memory");
    let mid = shoalloc::stats();
    // SAFETY: allocated above with `layout`.
    unsafe { heap.dealloc(p, layout) };
    let after = shoalloc::stats();
    ensure(
        mid.huge_count == before.huge_count + 1
            && mid.huge_bytes >= before.huge_bytes + SIZE as u64
            && mid.in_use_bytes >= before.in_use_bytes + SIZE as u64,
        format!("huge: {before:?} -> {mid:?}"),
    )?;
    ensure(
        after.huge_count == before.huge_count && after.huge_bytes == before.huge_bytes,
        format!(
            "huge after free: {} objects, {} bytes (before {}, {})",
            after.huge_count, after.huge_bytes, before.huge_count, before.huge_bytes
        ),
    )
}

/// A medium allocation shows in the medium count and bytes.
pub fn medium_objects_are_counted() -> Result<(), String> {
    const SIZE: usize = 1 << 20;
    let heap = Shoal::new();
    let layout = Layout::from_size_align(SIZE, 8).unwrap();
    let before = shoalloc::stats();
    // SAFETY: a valid layout; freed once below.
    let p = unsafe { heap.alloc(layout) };
    assert!(!p.is_null(), "out of memory");
    let mid = shoalloc::stats();
    // SAFETY: allocated above with `layout`.
    unsafe { heap.dealloc(p, layout) };
    let after = shoalloc::stats();
    ensure(
        mid.medium_count == before.medium_count + 1
            && mid.medium_bytes >= before.medium_bytes + SIZE as u64
            && after.medium_count == before.medium_count,
        format!(
            "medium: {} -> {} -> {} objects, {} -> {} bytes",
            before.medium_count,
            mid.medium_count,
            after.medium_count,
            before.medium_bytes,
            mid.medium_bytes
        ),
    )
}
