//! Loom models of carving never-used blocks from fresh pages
//! (`ClassPool::carve`): the carve-word CAS that cuts blocks off the current
//! page, the CAS that installs a fresh page from the page heap (and ends the
//! old page's carving), and the lost-install path that deactivates the
//! loser's page and hands it back with `Backing::release_page` (after which
//! the page heap, the production `UnitMap`, hands it out again).
#![cfg(loom)]

mod common;

use common::{
    alloc, assert_conserved, drain_cache, expect_caught, model, model_up_to, pools, take_blocks,
    ModelBacking, ModelPools,
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
        let b = alloc(&mut cache, &pools);
        assert!(b != 0, "out of memory");
        let mut held = vec![b];
        held.extend(drain_cache(&mut cache, &pools));
        held
    })
}

/// `threads` threads allocate once each from `pools`, then the conservation
/// check runs; counts executions in which some page install was lost (no
/// thread sends anything home here, so every `release_page` is a lost
/// install).
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

/// Two threads carve from an empty pool with pages of 3 blocks: both may
/// acquire a page, one install wins, the loser releases its page and
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

/// Three threads carve from an empty pool with pages of 2 blocks, so every
/// `take` exhausts a page and every thread installs one: installs race,
/// lost pages go back to the page heap and are claimed again by a later
/// install. Bound 2 only (`model_up_to`).
#[test]
fn carve_install_race_3() {
    let lost = Arc::new(AtomicUsize::new(0));
    let l = lost.clone();
    let Some(report) = model_up_to(
        2,
        "carve_install_race_3",
        3,
        "T1, T2, T3: alloc (carve 2, installing a page)",
        move || race(pools(4, 2), 3, &l),
    ) else {
        return;
    };
    let lost = lost.load(Ordering::Relaxed);
    println!(
        "  carve_install_race_3: {lost} of {} executions lost an install race",
        report.executions
    );
    assert!(lost > 0, "the lost-install path was never explored");
}

/// Two threads allocate three blocks each (two carving `take`s, with a cache
/// hit between) from pages of 2 blocks: four installs race pairwise, and
/// a page lost in one race is claimed again by a later install.
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
                        let mut held: Vec<usize> = (0..3).map(|_| alloc(&mut cache, &p)).collect();
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

/// Two threads carve from a page with 3 blocks left: the count CAS hands
/// 2 blocks to one and the last block to the other, never the same block.
#[test]
fn carve_offset_race() {
    model(
        "carve_offset_race",
        2,
        "T1: alloc (carve 2) | T2: alloc (carve 2); 3 blocks left in the page",
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

/// Teeth: with a page heap whose claim is a load and a store of its bitmap
/// instead of a CAS, two threads carving from an empty pool can both be
/// handed page 1. Loom must find that interleaving: the two `acquire_page`
/// calls then update the page's life record (a loom `UnsafeCell`) with no
/// happens-before edge between them, which loom reports as a causality
/// violation. (Were that record not there, the install loser would
/// deactivate and release the page the winner installed, and the final
/// drain would carve it again: a block in two places, or a second
/// `end_carving` of the page tripping its debug assertion.)
#[test]
fn carve_racy_heap_is_caught() {
    expect_caught(
        "carve_racy_heap",
        2,
        "T1: alloc (carve 2) | T2: alloc (carve 2), page heap claim not atomic",
        "Causality violation",
        || {
            let pools = Arc::new(Pools::new(ModelBacking::with_racy_heap(3, 3)));
            let handles: Vec<_> = (0..2).map(|_| allocating(pools.clone())).collect();
            let held: Vec<usize> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            assert_conserved(&pools, &held);
        },
    );
}
