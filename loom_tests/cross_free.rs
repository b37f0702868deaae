//! Loom models of a cross-thread free racing with the owner's allocation.
//!
//! In Shoal a block has no owning thread: whoever frees it puts it on its own
//! cache (or, with no cache, straight into the shared pool), and the blocks
//! travel back to other threads only through the shared pool. So the race
//! that matters is: the owner A hands block `p` to B through memory (here a
//! Release store / Acquire load, as a channel would), B frees it — and the
//! free's `give` races with A's next allocation's `take`, which may pop the
//! very batch that carries `p` back to A.
#![cfg(loom)]

mod common;

use common::{
    alloc, assert_conserved, drain_cache, fill_cache, free, model, pools, take_blocks, CLASS,
};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use shoalloc::internals::cache::ThreadCache;
use shoalloc::internals::pool::{alloc_uncached, free_uncached};
use std::sync::Arc;

/// Waits for the owner to publish a block.
fn receive(slot: &AtomicUsize) -> usize {
    loop {
        let p = slot.load(Ordering::Acquire);
        if p != 0 {
            return p;
        }
        thread::yield_now();
    }
}

/// Cached paths. A has one cached block `p`: it allocates `p` (cache hit),
/// publishes it, and allocates again (refill: `take`). B, whose cache is full
/// (a stocked batch and one recent free), receives `p` and frees it: that
/// completes a recent batch, and `retire` gives the batch `[p, …]` to the
/// pool, racing with A's `take`. The pool also holds one older batch, so A's
/// `take` may pop either.
#[test]
fn cross_free_cached() {
    model(
        "cross_free_cached",
        2,
        "A: alloc (hit), publish p, alloc (take) | B: receive p, free p (give)",
        || cached_race(6, 0),
    );
}

/// The cached race across shards: B's cache is on shard 1, so its batch
/// `[p, …]` goes to shard 1's stack, which also holds the older batch; every
/// page is used up, so A's `take` on shard 0 finds its own stack, the partial
/// stack and the carve word empty and must take from shard 1 — racing with
/// B's push there.
#[test]
fn cross_free_cached_other_shard() {
    model(
        "cross_free_cached_other_shard",
        2,
        "A (shard 0): alloc (hit), publish p, alloc (take from shard 1) | \
         B (shard 1): receive p, free p (give to shard 1)",
        || cached_race(8, 1),
    );
}

/// The body of the two-thread cached races: `taken` of the pool's 8 blocks
/// are taken first (6 leaves 2 to carve, 8 none); the older batch and B's
/// batch go to shard `b_shard`; A is on shard 0.
fn cached_race(taken: usize, b_shard: usize) {
    let pools = pools(2, 4);
    let pre = take_blocks(&pools, taken);
    let mut setup = ThreadCache::new();
    setup.set_shard(b_shard);
    fill_cache(&mut setup, &pools, &pre[..2]);
    // SAFETY: this cache is only ever used with this one pool.
    unsafe { setup.flush_all(&*pools) };
    let a_blocks = pre[2..3].to_vec();
    let b_blocks = pre[3..6].to_vec();
    let kept = pre[6..].to_vec();
    let slot = Arc::new(AtomicUsize::new(0));

    let (p, s) = (pools.clone(), slot.clone());
    let a = thread::spawn(move || {
        let mut cache = ThreadCache::new();
        fill_cache(&mut cache, &p, &a_blocks);
        let mine = alloc(&mut cache, &p);
        assert_eq!(mine, a_blocks[0], "a cache hit");
        s.store(mine, Ordering::Release);
        let next = alloc(&mut cache, &p);
        assert!(next != 0, "out of memory");
        let mut held = vec![next];
        held.extend(drain_cache(&mut cache, &p));
        held
    });
    let (p, s) = (pools.clone(), slot.clone());
    let b = thread::spawn(move || {
        let mut cache = ThreadCache::new();
        cache.set_shard(b_shard);
        fill_cache(&mut cache, &p, &b_blocks);
        let theirs = receive(&s);
        // SAFETY: A gave us `theirs` and no longer uses it; it completes a
        // recent batch of our full cache, so that batch goes to the pool.
        unsafe { free(&mut cache, &p, theirs) };
        drain_cache(&mut cache, &p)
    });
    let mut held = a.join().unwrap();
    held.extend(b.join().unwrap());
    held.extend(kept);
    assert_conserved(&pools, &held);
}

/// The cached race with a third thread C that allocates from an empty cache
/// (one `take`) at the same time, competing with A for B's batch and the
/// older one.
#[test]
fn cross_free_cached_3() {
    model(
        "cross_free_cached_3",
        3,
        "A: alloc (hit), publish p, alloc (take) | B: receive p, free p (give) | C: alloc (take)",
        || {
            let pools = pools(3, 4);
            let pre = take_blocks(&pools, 6);
            let mut setup = ThreadCache::new();
            fill_cache(&mut setup, &pools, &pre[..2]);
            // SAFETY: this cache is only ever used with this one pool.
            unsafe { setup.flush_all(&*pools) };
            let a_blocks = pre[2..3].to_vec();
            let b_blocks = pre[3..6].to_vec();
            let slot = Arc::new(AtomicUsize::new(0));

            let (p, s) = (pools.clone(), slot.clone());
            let a = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                fill_cache(&mut cache, &p, &a_blocks);
                let mine = alloc(&mut cache, &p);
                assert_eq!(mine, a_blocks[0], "a cache hit");
                s.store(mine, Ordering::Release);
                let next = alloc(&mut cache, &p);
                assert!(next != 0, "out of memory");
                let mut held = vec![next];
                held.extend(drain_cache(&mut cache, &p));
                held
            });
            let (p, s) = (pools.clone(), slot.clone());
            let b = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                fill_cache(&mut cache, &p, &b_blocks);
                let theirs = receive(&s);
                // SAFETY: A gave us `theirs` and no longer uses it; it
                // completes a recent batch of our full cache, so that batch
                // goes to the pool.
                unsafe { free(&mut cache, &p, theirs) };
                drain_cache(&mut cache, &p)
            });
            let p = pools.clone();
            let c = thread::spawn(move || {
                let mut cache = ThreadCache::new();
                let b = alloc(&mut cache, &p);
                assert!(b != 0, "out of memory");
                let mut held = vec![b];
                held.extend(drain_cache(&mut cache, &p));
                held
            });
            let mut held = a.join().unwrap();
            held.extend(b.join().unwrap());
            held.extend(c.join().unwrap());
            assert_conserved(&pools, &held);
        },
    );
}

/// Uncached paths (a thread whose cache is gone, e.g. after its exit hook):
/// A allocates `p` with `alloc_uncached` (take a batch, keep one, give the
/// rest back), publishes it and allocates again the same way; B receives `p`
/// and returns it with `free_uncached` (a batch of one).
#[test]
fn cross_free_uncached() {
    model(
        "cross_free_uncached",
        2,
        "A: alloc_uncached (take, give), publish p, alloc_uncached (take, give?) | \
         B: receive p, free_uncached p (give)",
        || {
            let pools = pools(2, 4);
            let pre = take_blocks(&pools, 2);
            let mut setup = ThreadCache::new();
            fill_cache(&mut setup, &pools, &pre);
            // SAFETY: this cache is only ever used with this one pool.
            unsafe { setup.flush_all(&*pools) };
            let slot = Arc::new(AtomicUsize::new(0));

            let (p, s) = (pools.clone(), slot.clone());
            let a = thread::spawn(move || {
                let mine = alloc_uncached(&*p, CLASS) as usize;
                assert!(mine != 0, "out of memory");
                p.backing().touch(mine);
                s.store(mine, Ordering::Release);
                let next = alloc_uncached(&*p, CLASS) as usize;
                assert!(next != 0, "out of memory");
                p.backing().touch(next);
                vec![next]
            });
            let (p, s) = (pools.clone(), slot.clone());
            let b = thread::spawn(move || {
                let theirs = receive(&s);
                p.backing().touch(theirs);
                // SAFETY: A gave us `theirs` and no longer uses it.
                unsafe { free_uncached(&*p, CLASS, theirs as *mut u8) };
            });
            let held = a.join().unwrap();
            b.join().unwrap();
            assert_conserved(&pools, &held);
        },
    );
}
