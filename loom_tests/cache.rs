//! Loom models of thread caches refilling from and flushing to one shared
//! pool (`ThreadCache::alloc` → `refill` → `Pools::take`, and
//! `ThreadCache::free` → `retire` → `Pools::give`).
//!
//! Under loom `batch_len` is 2 and `cache_limit` 4. A full cache holds 3
//! blocks (a stocked batch of 2 and one recent free), so its next free
//! retires the recent pair to the pool, and an empty cache refills on its
//! next allocation: each such call is one shared-pool operation.
#![cfg(loom)]

mod common;

use common::{
    alloc, assert_conserved, drain_cache, fill_cache, free, model, model_up_to, pools, take_blocks,
    ModelPools, CLASS,
};
use loom::thread;
use shoalloc::internals::cache::ThreadCache;
use std::sync::Arc;

/// Pools over `pages` pages of four blocks, holding one free batch of 2
/// (page 1), with page 2 three-quarters carved; returns the pools and five
/// more blocks (the rest of page 1 and three of page 2) for a thread whose
/// cache starts full.
fn setup(pages: u32) -> (Arc<ModelPools>, Vec<usize>) {
    let pools = pools(pages, 4);
    let pre = take_blocks(&pools, 7);
    let mut cache = ThreadCache::new();
    fill_cache(&mut cache, &pools, &pre[..2]);
    // SAFETY: this cache is only ever used with this one pool.
    unsafe { cache.flush_all(&*pools) };
    (pools, pre[2..].to_vec())
}

/// Two threads, two shared operations each. T1 starts empty and allocates
/// three blocks (refill, cached hit, refill); T2 starts with a full cache,
/// frees one more block (a recent batch of 2 goes back), takes one more
/// block without an atomic operation, and then allocates four (three hits
/// and a refill).
#[test]
fn cache_refill_flush_2x2() {
    model(
        "cache_refill_flush_2x2",
        2,
        "T1: alloc x3 (take, -, take) | T2: free (give), alloc x4 (-, -, -, take)",
        || {
            let (pools, t2_blocks) = setup(3);
            let p = pools.clone();
            let t1 = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                let mut held: Vec<usize> = (0..3).map(|_| alloc(&mut cache, &p)).collect();
                assert!(held.iter().all(|&b| b != 0), "out of memory");
                held.extend(drain_cache(&mut cache, &p));
                held
            });
            let p = pools.clone();
            let t2 = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                fill_cache(&mut cache, &p, &t2_blocks[..3]);
                // SAFETY: the fourth block is ours; the free completes a
                // recent batch while the stock is full, so it goes back.
                unsafe { free(&mut cache, &p, t2_blocks[3]) };
                assert_eq!(cache.cached(CLASS), 2, "retire hands back a batch");
                fill_cache(&mut cache, &p, &t2_blocks[4..]);
                let mut held: Vec<usize> = (0..4).map(|_| alloc(&mut cache, &p)).collect();
                assert!(held.iter().all(|&b| b != 0), "out of memory");
                held.extend(drain_cache(&mut cache, &p));
                held
            });
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}

/// Three threads, one shared operation each: two empty caches refill while a
/// full one flushes, on a pool holding one batch.
#[test]
fn cache_refill_flush_3x1() {
    model(
        "cache_refill_flush_3x1",
        3,
        "T1: alloc (take) | T2: free (give) | T3: alloc (take)",
        || {
            let (pools, t2_blocks) = setup(3);
            let refill = |p: Arc<ModelPools>| {
                thread::spawn(move || {
                    let mut cache = ThreadCache::new();
                    let b = alloc(&mut cache, &p);
                    assert!(b != 0, "out of memory");
                    let mut held = vec![b];
                    held.extend(drain_cache(&mut cache, &p));
                    held
                })
            };
            let t1 = refill(pools.clone());
            let p = pools.clone();
            let t2 = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                fill_cache(&mut cache, &p, &t2_blocks[..3]);
                // SAFETY: the fourth block is ours; the free completes a
                // recent batch while the stock is full, so it goes back.
                unsafe { free(&mut cache, &p, t2_blocks[3]) };
                assert_eq!(cache.cached(CLASS), 2, "retire hands back a batch");
                fill_cache(&mut cache, &p, &t2_blocks[4..]);
                drain_cache(&mut cache, &p)
            });
            let t3 = refill(pools.clone());
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            held.extend(t3.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}

/// Three threads, two shared operations each: T1 and T3 start empty and
/// allocate three blocks (refill, hit, refill); T2 starts full, frees one
/// more block (a batch goes back) and allocates four (three hits, then a
/// refill). Bound 2 only (`model_up_to`).
#[test]
fn cache_refill_flush_3x2() {
    model_up_to(
        2,
        "cache_refill_flush_3x2",
        3,
        "T1: alloc x3 (take, -, take) | T2: free (give), alloc x4 (-, -, -, take) | \
         T3: alloc x3 (take, -, take)",
        || {
            let (pools, t2_blocks) = setup(4);
            let refill3 = |p: Arc<ModelPools>| {
                thread::spawn(move || {
                    let mut cache = ThreadCache::new();
                    let mut held: Vec<usize> = (0..3).map(|_| alloc(&mut cache, &p)).collect();
                    assert!(held.iter().all(|&b| b != 0), "out of memory");
                    held.extend(drain_cache(&mut cache, &p));
                    held
                })
            };
            let t1 = refill3(pools.clone());
            let p = pools.clone();
            let t2 = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                fill_cache(&mut cache, &p, &t2_blocks[..3]);
                // SAFETY: the fourth block is ours; the free completes a
                // recent batch while the stock is full, so it goes back.
                unsafe { free(&mut cache, &p, t2_blocks[3]) };
                assert_eq!(cache.cached(CLASS), 2, "retire hands back a batch");
                fill_cache(&mut cache, &p, &t2_blocks[4..]);
                let mut held: Vec<usize> = (0..4).map(|_| alloc(&mut cache, &p)).collect();
                assert!(held.iter().all(|&b| b != 0), "out of memory");
                held.extend(drain_cache(&mut cache, &p));
                held
            });
            let t3 = refill3(pools.clone());
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            held.extend(t3.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}
