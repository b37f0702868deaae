//! Loom models of a thread exit returning its cache
//! (`ThreadCache::flush_all`, what `thread::ThreadCaches::thread_exit` runs)
//! while other threads allocate from the same pool.
#![cfg(loom)]

mod common;

use common::{
    alloc, assert_conserved, drain_cache, fill_cache, model, model_up_to, pools, take_blocks,
    ModelPools, CLASS,
};
use loom::thread;
use shoalloc::internals::cache::ThreadCache;
use std::sync::Arc;

/// The exiting thread: a cache of three blocks (a stocked batch of 2 and one
/// recent free), flushed as batches of 1 and 2 (two `give`s, no walk).
/// Afterwards the cache must be empty.
fn exiting(pools: Arc<ModelPools>, blocks: Vec<usize>) -> thread::JoinHandle<Vec<usize>> {
    thread::spawn(move || {
        let mut cache = ThreadCache::new();
        fill_cache(&mut cache, &pools, &blocks);
        // SAFETY: this cache is only ever used with this one pool.
        unsafe { cache.flush_all(&*pools) };
        assert_eq!(cache.cached(CLASS), 0, "flush_all leaves nothing behind");
        Vec::new()
    })
}

/// An allocating thread with an empty cache: `n` allocations.
fn allocating(pools: Arc<ModelPools>, n: usize) -> thread::JoinHandle<Vec<usize>> {
    thread::spawn(move || {
        let mut cache = ThreadCache::new();
        let mut held: Vec<usize> = (0..n).map(|_| alloc(&mut cache, &pools)).collect();
        assert!(held.iter().all(|&b| b != 0), "out of memory");
        held.extend(drain_cache(&mut cache, &pools));
        held
    })
}

/// The pool has no free batch and one block left to carve in page 1, so an
/// allocating thread gets the exiting thread's batches, the last carved
/// block, or a fresh page, depending on the interleaving.
fn setup() -> (Arc<ModelPools>, Vec<usize>) {
    let pools = pools(3, 4);
    let blocks = take_blocks(&pools, 3);
    (pools, blocks)
}

/// Two threads: T1 exits (flush_all: give 2, give 1) while T2 allocates twice
/// (refill, then a hit or a second refill).
#[test]
fn thread_exit_2() {
    model(
        "thread_exit_2",
        2,
        "T1: flush_all (give, give) | T2: alloc x2 (take, take?)",
        || {
            let (pools, blocks) = setup();
            let t1 = exiting(pools.clone(), blocks);
            let t2 = allocating(pools.clone(), 2);
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}

/// Three threads: T1 exits while T2 and T3 each allocate once.
#[test]
fn thread_exit_3() {
    model(
        "thread_exit_3",
        3,
        "T1: flush_all (give, give) | T2: alloc (take) | T3: alloc (take)",
        || {
            let (pools, blocks) = setup();
            let t1 = exiting(pools.clone(), blocks);
            let t2 = allocating(pools.clone(), 1);
            let t3 = allocating(pools.clone(), 1);
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            held.extend(t3.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}

/// Three threads: T1 exits while T2 and T3 each allocate twice. Bound 2
/// only (`model_up_to`).
#[test]
fn thread_exit_3x2() {
    model_up_to(
        2,
        "thread_exit_3x2",
        3,
        "T1: flush_all (give, give) | T2: alloc x2 (take, take?) | T3: alloc x2 (take, take?)",
        || {
            let (pools, blocks) = setup();
            let t1 = exiting(pools.clone(), blocks);
            let t2 = allocating(pools.clone(), 2);
            let t3 = allocating(pools.clone(), 2);
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            held.extend(t3.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}
