//! Loom models of carving never-used blocks from fresh memory
//! (`ClassPool::carve`): the carve-word CAS that cuts blocks off the current
//! segment, the CAS that installs a fresh segment, and the lost-install path
//! that hands the loser's segment back with `Backing::release` (after which
//! the model backing, like production, hands it out again as a spare).
#![cfg(loom)]

mod common;

use common::{
    assert_conserved, drain_cache, expect_caught, model, pools, take_blocks, ModelBacking,
    ModelPools, CLASS,
};
use loom::thread;
use shoalloc::internals::cache::ThreadCache;
use shoalloc::internals::pool::Pools;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A thread with an empty cache allocating once: one `take` of a batch of 2,
/// which carves because no thread ever gives anything back here.
fn allocating(pools: Arc<ModelPools>) -> thread::JoinHandle<Vec<usize>> {
    thread::spawn(move || {
        let mut cache = ThreadCache::new();
        // SAFETY: this cache is only ever used with this one pool.
        let b = unsafe { cache.alloc(&*pools, CLASS) } as usize;
        assert!(b != 0, "out of memory");
        let mut held = vec![b];
        held.extend(drain_cache(&mut cache, &pools));
        held
    })
}

/// `threads` threads allocate once each from `pools`, then the conservation
/// check runs; counts executions in which some segment install was lost.
fn race(pools: Arc<ModelPools>, threads: usize, lost: &AtomicUsize) {
    let handles: Vec<_> = (0..threads).map(|_| allocating(pools.clone())).collect();
    let held: Vec<usize> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    if pools.backing().releases() > 0 {
        lost.fetch_add(1, Ordering::Relaxed);
    }
    assert_conserved(&pools, &held);
}

/// Two threads carve from an empty pool with segments of 3 blocks: both may
/// acquire a segment, one install wins, the loser releases its segment and
/// carves the one block left in the winner's.
#[test]
fn carve_install_race_2() {
    let lost = Arc::new(AtomicUsize::new(0));
    let l = lost.clone();
    let report = model(
        "carve_install_race_2",
        2,
        "T1: alloc (carve 2) | T2: alloc (carve 2)",
        move || race(pools(3, 3), 2, &l),
    );
    let lost = lost.load(Ordering::Relaxed);
    println!(
        "  carve_install_race_2: {lost} of {} executions lost an install race",
        report.executions
    );
    assert!(lost > 0, "the lost-install path was never explored");
}

/// Three threads carve from an empty pool with segments of 2 blocks, so every
/// `take` exhausts a segment and every thread installs one: installs race,
/// lost segments go to the spare list and are reused by a later install.
#[test]
fn carve_install_race_3() {
    let lost = Arc::new(AtomicUsize::new(0));
    let l = lost.clone();
    let report = model(
        "carve_install_race_3",
        3,
        "T1, T2, T3: alloc (carve 2, installing a segment)",
        move || race(pools(4, 2), 3, &l),
    );
    let lost = lost.load(Ordering::Relaxed);
    println!(
        "  carve_install_race_3: {lost} of {} executions lost an install race",
        report.executions
    );
    assert!(lost > 0, "the lost-install path was never explored");
}

/// Two threads allocate three blocks each (two carving `take`s, with a cache
/// hit between) from segments of 2 blocks: four installs race pairwise, and
/// a segment lost in one race is reused as a spare by a later install.
#[test]
fn carve_install_race_2x2() {
    let lost = Arc::new(AtomicUsize::new(0));
    let l = lost.clone();
    let report = model(
        "carve_install_race_2x2",
        2,
        "T1: alloc x3 (carve 2, -, carve 2) | T2: alloc x3 (carve 2, -, carve 2)",
        move || {
            let pools = pools(5, 2);
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let p = pools.clone();
                    thread::spawn(move || {
                        let mut cache = ThreadCache::new();
                        let mut held: Vec<usize> =
                            // SAFETY: this cache is only ever used with this one pool.
                            (0..3).map(|_| unsafe { cache.alloc(&*p, CLASS) } as usize).collect();
                        assert!(held.iter().all(|&b| b != 0), "out of memory");
                        held.extend(drain_cache(&mut cache, &p));
                        held
                    })
                })
                .collect();
            let held: Vec<usize> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            if pools.backing().releases() > 0 {
                l.fetch_add(1, Ordering::Relaxed);
            }
            assert_conserved(&pools, &held);
        },
    );
    let lost = lost.load(Ordering::Relaxed);
    println!(
        "  carve_install_race_2x2: {lost} of {} executions lost an install race",
        report.executions
    );
    assert!(lost > 0, "the lost-install path was never explored");
}

/// Two threads carve from a segment with 3 blocks left: the offset CAS hands
/// 2 blocks to one and the last block to the other, never the same block.
#[test]
fn carve_offset_race() {
    model(
        "carve_offset_race",
        2,
        "T1: alloc (carve 2) | T2: alloc (carve 2); 3 blocks left in the segment",
        || {
            let pools = pools(2, 4);
            let first = take_blocks(&pools, 1);
            let handles: Vec<_> = (0..2).map(|_| allocating(pools.clone())).collect();
            let mut held = first;
            for h in handles {
                held.extend(h.join().unwrap());
            }
            assert_eq!(
                held.len(),
                4,
                "3 blocks left: one thread gets 2, one gets 1"
            );
            assert_eq!(pools.backing().releases(), 0, "no install was needed");
            assert_conserved(&pools, &held);
        },
    );
}

/// Teeth: with a backing whose `acquire` is a racy load-then-store, two
/// threads can be handed the same segment; the loser of the install CAS then
/// releases the installed segment, which is carved a second time. Loom must
/// find that interleaving and the conservation check must report it.
#[test]
fn carve_racy_acquire_is_caught() {
    expect_caught(
        "carve_racy_acquire",
        2,
        "T1: alloc (carve 2) | T2: alloc (carve 2), acquire not atomic",
        "conservation: block",
        || {
            let pools = Arc::new(Pools::new(ModelBacking::with_racy_acquire(3, 3)));
            let handles: Vec<_> = (0..2).map(|_| allocating(pools.clone())).collect();
            let held: Vec<usize> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            assert_conserved(&pools, &held);
        },
    );
}
