//! `GilAlloc` through its public API only, called directly through
//! `GlobalAlloc` (this binary's global allocator stays `System`, so the
//! counters move only when a test calls `GilAlloc`). The checks every
//! allocator must pass are in `oracle.rs` and `stress.rs`; these are the ones
//! specific to the pymalloc design: its statistics, arenas going back to the
//! OS, pools reused across classes, the routing to the system allocator.
//!
//! The heap is process-wide, so every test takes `SERIAL` first: the
//! statistics assertions need a quiet heap. Every test frees what it
//! allocates, so statistics are compared with a snapshot taken at the start
//! of the test.

mod support;

use shoalloc::{GilAlloc, GilStats};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Mutex, MutexGuard, PoisonError};
use support::{fill, verify, verify_prefix, Rng};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

const A: GilAlloc = GilAlloc::new();

fn stats() -> GilStats {
    A.stats()
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn alloc(l: Layout) -> *mut u8 {
    // SAFETY: callers pass layouts of non-zero size (except the test that
    // checks zero is tolerated).
    let p = unsafe { A.alloc(l) };
    assert!(!p.is_null(), "allocation of {l:?} failed");
    assert_eq!(p as usize % l.align(), 0, "{l:?} misaligned");
    p
}

fn free(p: *mut u8, l: Layout) {
    // SAFETY: `p` came from `A` with layout `l` and is freed once.
    unsafe { A.dealloc(p, l) }
}

/// Checks the pattern `fill(p, len, id)` wrote.
fn check(p: *const u8, len: usize, id: u64) {
    verify(p, len, id).unwrap();
}

/// Checks the first `keep` bytes of what `fill(p, written, id)` wrote.
fn check_prefix(p: *const u8, written: usize, keep: usize, id: u64) {
    verify_prefix(p, written, keep, id).unwrap();
}

#[test]
fn every_small_size_and_alignment_holds_its_bytes() {
    let _s = serial();
    let before = stats();
    let mut live = Vec::new();
    for size in 1..=600 {
        for align in [1, 2, 4, 8, 16] {
            let l = layout(size, align);
            let p = alloc(l);
            fill(p, size, size as u64);
            live.push((p, l));
        }
    }
    let mid = stats();
    assert_eq!(mid.small_blocks - before.small_blocks, 512 * 5);
    assert_eq!(mid.system_blocks - before.system_blocks, 88 * 5);
    for &(p, l) in &live {
        check(p, l.size(), l.size() as u64);
        free(p, l);
    }
    let after = stats();
    assert_eq!(after.small_blocks, before.small_blocks);
    assert_eq!(after.system_blocks, before.system_blocks);
}

#[test]
fn realloc_stays_in_place_within_a_class() {
    let _s = serial();
    let p = alloc(layout(17, 8));
    fill(p, 17, 3);
    // 17..=32 bytes share class 1.
    // SAFETY: `p` is live with this layout; the new size is valid.
    let q = unsafe { A.realloc(p, layout(17, 8), 32) };
    assert_eq!(q, p, "same class: in place");
    // SAFETY: as above.
    let q = unsafe { A.realloc(q, layout(32, 8), 20) };
    assert_eq!(q, p, "shrinking within the class: in place");
    check(q, 17, 3);
    // SAFETY: as above.
    let r = unsafe { A.realloc(q, layout(20, 8), 33) };
    assert!(!r.is_null());
    assert_ne!(r, p, "class 2 is another block");
    check(r, 17, 3);
    // SAFETY: as above.
    let s = unsafe { A.realloc(r, layout(33, 8), 8) };
    assert!(!s.is_null());
    check_prefix(s, 17, 8, 3);
    free(s, layout(8, 8));
}

#[test]
fn realloc_moves_between_pymalloc_and_the_system() {
    let _s = serial();
    let before = stats();
    let mut p = alloc(layout(100, 16));
    fill(p, 100, 9);
    let mut size = 100;
    // small -> large -> larger (System realloc) -> small -> over-aligned.
    for (new, keep) in [(4000, 100), (70_000, 100), (300, 100), (50, 50)] {
        // SAFETY: `p` is live with `size`/16; `new` is a valid size.
        let q = unsafe { A.realloc(p, layout(size, 16), new) };
        assert!(!q.is_null());
        assert_eq!(q as usize % 16, 0);
        check_prefix(q, 100, keep, 9);
        p = q;
        size = new;
    }
    assert_eq!(stats().system_blocks, before.system_blocks);
    free(p, layout(size, 16));
    // A small size with a large alignment lives in System; realloc keeps the
    // alignment, so the block stays there and stays aligned.
    let l = layout(24, 256);
    let p = alloc(l);
    fill(p, 24, 1);
    // SAFETY: live block of `l`.
    let q = unsafe { A.realloc(p, l, 5000) };
    assert_eq!(q as usize % 256, 0);
    check(q, 24, 1);
    free(q, layout(5000, 256));
    let after = stats();
    assert_eq!(after.small_blocks, before.small_blocks);
    assert_eq!(after.system_blocks, before.system_blocks);
}

#[test]
fn alignments_up_to_4096_and_beyond() {
    let _s = serial();
    for shift in 0..=22 {
        let align = 1usize << shift;
        for size in [1, 16, 100, 512, 4096, 10_000] {
            let l = layout(size, align);
            let p = alloc(l);
            fill(p, size, shift as u64);
            // SAFETY: live block of `l`; a larger size keeps the alignment.
            let q = unsafe { A.realloc(p, l, size * 2) };
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0, "realloc lost alignment {align}");
            check(q, size, shift as u64);
            free(q, layout(size * 2, align));
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "asks the system for impossible sizes")]
fn impossible_layouts_return_null() {
    let _s = serial();
    let huge = layout(isize::MAX as usize - 100, 16);
    // SAFETY: non-zero size; a null result is the expected answer.
    unsafe {
        assert!(A.alloc(huge).is_null());
        assert!(A.alloc_zeroed(huge).is_null());
    }
    // An alignment no allocator can honour (routed to System).
    let absurd = layout(8, 1 << 62);
    // SAFETY: as above.
    assert!(unsafe { A.alloc(absurd) }.is_null());

    for start in [24, 4000] {
        let l = layout(start, 8);
        let p = alloc(l);
        fill(p, start, 77);
        // SAFETY: `p` is live with `l`. The first size is a valid layout the
        // system cannot serve; the second overflows `isize` once rounded, which
        // GilAlloc answers with null instead of trusting the caller.
        unsafe {
            assert!(A.realloc(p, l, isize::MAX as usize - 100).is_null());
            assert!(A.realloc(p, l, usize::MAX - 5).is_null());
        }
        check(p, start, 77);
        free(p, l);
    }
}

#[test]
fn zero_size_is_served_as_one_byte() {
    let _s = serial();
    for align in [1, 16, 64] {
        let l = layout(0, align);
        let p = alloc(l);
        // SAFETY: zero-size layouts are tolerated and get at least one byte.
        unsafe { p.write(0x5A) };
        // SAFETY: live block of `l`; grow to a real size.
        let q = unsafe { A.realloc(p, l, 40) };
        assert!(!q.is_null());
        // SAFETY: `q` holds 40 bytes (none carried over: the old size was 0).
        unsafe { q.write_bytes(1, 40) };
        free(q, layout(40, align));
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps several arenas")]
fn empty_arenas_go_back_to_the_os() {
    let _s = serial();
    let before = stats();
    assert_eq!(before.arena_limit, GilAlloc::MAX_ARENAS);
    // 512-byte blocks: 31 per pool, 1984 per arena; take about 5 arenas.
    let l = layout(512, 16);
    let blocks: Vec<*mut u8> = (0..5 * 1984).map(|_| alloc(l)).collect();
    let full = stats();
    assert!(full.arenas_mapped >= 5, "{full:?}");
    assert!(full.arenas_mapped_total >= before.arenas_mapped_total + 4);
    assert!(full.pools_in_use >= before.pools_in_use + 5 * 64 - 1);
    assert_eq!(full.small_blocks, before.small_blocks + 5 * 1984);
    assert_eq!(full.pools_free + full.pools_in_use, 64 * full.arenas_mapped);
    for &p in blocks.iter().rev() {
        free(p, l);
    }
    let after = stats();
    assert_eq!(after.small_blocks, before.small_blocks);
    assert_eq!(after.pools_in_use, before.pools_in_use);
    // Every arena drained is unmapped except one kept against thrashing.
    assert!(
        after.arenas_mapped <= before.arenas_mapped + 1,
        "before {before:?}, after {after:?}"
    );
    assert!(after.arenas_high_water >= 5);
}

#[test]
fn freed_pools_serve_other_size_classes() {
    let _s = serial();
    let before = stats();
    // Fill several pools of one class, free them, and allocate another class:
    // the pool count must not grow, since the emptied pools are recycled.
    const POOL_SIZE: usize = 16 << 10;
    let pool_of = |p: *mut u8| p as usize & !(POOL_SIZE - 1);
    let l = layout(500, 8);
    let blocks: Vec<*mut u8> = (0..31 * 8).map(|_| alloc(l)).collect();
    let old_pools: std::collections::HashSet<usize> = blocks.iter().map(|&p| pool_of(p)).collect();
    assert!(old_pools.len() >= 8);
    for &p in &blocks {
        free(p, l);
    }
    let drained = stats();
    assert_eq!(drained.pools_in_use, before.pools_in_use);
    // 200-byte blocks (class 12) fill four pools.
    let l2 = layout(200, 8);
    let others: Vec<*mut u8> = (0..78 * 4).map(|_| alloc(l2)).collect();
    let now = stats();
    assert_eq!(now.pools_in_use, before.pools_in_use + 4);
    assert_eq!(
        now.arenas_mapped_total, drained.arenas_mapped_total,
        "no new arena needed"
    );
    assert!(
        others.iter().any(|&p| old_pools.contains(&pool_of(p))),
        "an emptied class-31 pool is reused for class 12"
    );
    for &p in &others {
        free(p, l2);
    }
    assert_eq!(stats().pools_in_use, before.pools_in_use);
}

#[test]
fn handles_are_interchangeable() {
    let _s = serial();
    let l = layout(64, 8);
    // SAFETY: non-zero size.
    let p = unsafe { GilAlloc::new().alloc(l) };
    assert!(!p.is_null());
    assert_eq!(GilAlloc::default().stats(), stats());
    // SAFETY: every handle shares one heap.
    unsafe { GilAlloc::new().dealloc(p, l) };
}

#[test]
#[cfg_attr(miri, ignore = "too many operations for the interpreter")]
fn eight_threads_random_sizes() {
    let _s = serial();
    let before = stats();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ ((t + 1) * 0x1234_5678));
                let mut live: Vec<(*mut u8, Layout, u64)> = Vec::new();
                for i in 0..20_000u32 {
                    let r = rng.below(100);
                    if live.len() > 300 || (r < 45 && !live.is_empty()) {
                        let k = rng.below(live.len() as u64) as usize;
                        let (p, l, id) = live.swap_remove(k);
                        check(p, l.size(), id);
                        free(p, l);
                    } else if r < 55 && !live.is_empty() {
                        let k = rng.below(live.len() as u64) as usize;
                        let (p, l, id) = live[k];
                        let new = 1 + rng.below(1500) as usize;
                        // SAFETY: live block of `l`; `new` is a valid size.
                        let q = unsafe { A.realloc(p, l, new) };
                        assert!(!q.is_null());
                        assert_eq!(q as usize % l.align(), 0);
                        let keep = new.min(l.size());
                        check_prefix(q, l.size(), keep, id);
                        let nl = layout(new, l.align());
                        fill(q, new, id);
                        live[k] = (q, nl, id);
                    } else {
                        let size = match rng.below(10) {
                            0 => 513 + rng.below(4000) as usize,
                            _ => 1 + rng.below(512) as usize,
                        };
                        let align = match rng.below(20) {
                            0 => 64,
                            1 => 4096,
                            n => 1 << (n % 5),
                        };
                        let l = layout(size, align);
                        let p = alloc(l);
                        let id = t << 32 | u64::from(i);
                        fill(p, size, id);
                        live.push((p, l, id));
                    }
                }
                for (p, l, id) in live {
                    check(p, l.size(), id);
                    free(p, l);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = stats();
    assert_eq!(after.small_blocks, before.small_blocks);
    assert_eq!(after.system_blocks, before.system_blocks);
    assert_eq!(after.pools_in_use, before.pools_in_use);
}
