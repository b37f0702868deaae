//! `GilAlloc` through its public API only, called directly through
//! `GlobalAlloc` (this binary's global allocator stays `System`, so the
//! counters move only when a test calls `GilAlloc`).
//!
//! The heap is process-wide, so every test takes `SERIAL` first: the
//! statistics assertions need a quiet heap, and the fault switch must fire on
//! the allocation its test expects. Every test frees what it allocates, except
//! the second copy of the fault test's double-handed-out block, so statistics
//! are compared with a snapshot taken at the start of the test.

use shoalloc::gil::{fault_double_handout_armed, set_fault_double_handout, stats, MAX_ARENAS};
use shoalloc::GilAlloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Mutex, MutexGuard, PoisonError};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

const A: GilAlloc = GilAlloc::new();

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

fn fill(p: *mut u8, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: `p` is a live allocation of at least `len` bytes.
        unsafe { p.add(i).write(seed.wrapping_add(i as u8)) };
    }
}

fn check(p: *const u8, len: usize, seed: u8) {
    // SAFETY: `p` is a live allocation of at least `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    for (i, &b) in bytes.iter().enumerate() {
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i} of {len} corrupted");
    }
}

/// xorshift64*: deterministic, allocation-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
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
            fill(p, size, size as u8);
            live.push((p, l));
        }
    }
    let mid = stats();
    assert_eq!(mid.small_blocks - before.small_blocks, 512 * 5);
    assert_eq!(mid.system_blocks - before.system_blocks, 88 * 5);
    for &(p, l) in &live {
        check(p, l.size(), l.size() as u8);
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
    check(s, 8, 3);
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
        check(q, keep, 9);
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
            fill(p, size, shift as u8);
            // SAFETY: live block of `l`; a larger size keeps the alignment.
            let q = unsafe { A.realloc(p, l, size * 2) };
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0, "realloc lost alignment {align}");
            check(q, size, shift as u8);
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
fn alloc_zeroed_clears_recycled_blocks() {
    let _s = serial();
    for (size, align) in [(48, 8), (512, 16), (2000, 8), (40, 64)] {
        let l = layout(size, align);
        let dirty: Vec<*mut u8> = (0..100).map(|_| alloc(l)).collect();
        for &p in &dirty {
            // SAFETY: live block of `size` bytes.
            unsafe { p.write_bytes(0xFF, size) };
        }
        for &p in &dirty {
            free(p, l);
        }
        let clean: Vec<*mut u8> = (0..100)
            .map(|_| {
                // SAFETY: non-zero size.
                let p = unsafe { A.alloc_zeroed(l) };
                assert!(!p.is_null());
                p
            })
            .collect();
        for &p in &clean {
            // SAFETY: live block of `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, size) };
            assert!(bytes.iter().all(|&b| b == 0), "alloc_zeroed left data");
            free(p, l);
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps several arenas")]
fn empty_arenas_go_back_to_the_os() {
    let _s = serial();
    let before = stats();
    assert_eq!(before.arena_limit, MAX_ARENAS);
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
fn fault_switch_hands_one_block_out_twice() {
    let _s = serial();
    let l = layout(40, 8);
    // SAFETY: this test frees only one of the two copies (see below).
    unsafe { set_fault_double_handout(true) };
    let a = alloc(l);
    assert!(!fault_double_handout_armed(), "the switch is one-shot");
    fill(a, 40, 0);
    let b = alloc(l);
    assert_eq!(a, b, "the faulted block comes back");
    let c = alloc(l);
    assert_ne!(c, a, "and only once");
    // Free one copy only; the other stays handed out for good.
    free(a, l);
    free(c, l);
}

#[test]
#[cfg_attr(miri, ignore = "too many operations for the interpreter")]
fn eight_threads_random_sizes() {
    let _s = serial();
    let before = stats();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((t + 1) * 0x1234_5678));
                let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
                for i in 0..20_000u32 {
                    let r = rng.below(100);
                    if live.len() > 300 || (r < 45 && !live.is_empty()) {
                        let k = rng.below(live.len() as u64) as usize;
                        let (p, l, seed) = live.swap_remove(k);
                        check(p, l.size(), seed);
                        free(p, l);
                    } else if r < 55 && !live.is_empty() {
                        let k = rng.below(live.len() as u64) as usize;
                        let (p, l, seed) = live[k];
                        let new = 1 + rng.below(1500) as usize;
                        // SAFETY: live block of `l`; `new` is a valid size.
                        let q = unsafe { A.realloc(p, l, new) };
                        assert!(!q.is_null());
                        assert_eq!(q as usize % l.align(), 0);
                        let keep = new.min(l.size());
                        check(q, keep, seed);
                        let nl = layout(new, l.align());
                        fill(q, new, seed);
                        live[k] = (q, nl, seed);
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
                        let seed = (t as u8).wrapping_mul(31).wrapping_add(i as u8);
                        fill(p, size, seed);
                        live.push((p, l, seed));
                    }
                }
                for (p, l, seed) in live {
                    check(p, l.size(), seed);
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
