//! Loom model of `Pool<T>`'s protocol (`PoolCore`, the production code) with
//! an object returned on another thread than the one that took it.
//!
//! Thread caches hold two objects, so a third give flushes one to the shared
//! stack, and the shared stack holds at most two idle objects, so some gives
//! are surplus: their objects are dropped and their slots become shells that
//! a later take reuses. Every object records who holds it; the model checks
//! that no object ever has two holders, that the reset hook ran on every
//! returned object, that the idle bound holds, and — the conservation check —
//! that after the pool is dropped every object ever constructed was dropped
//! exactly once.
#![cfg(loom)]

mod common;

use common::model;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use shoalloc::internals::typed_pool::{CacheAt, CacheIndex, Create, PoolCore, Slot};
use std::sync::atomic::{AtomicUsize as Counter, Ordering::SeqCst};
use std::sync::Arc;

/// Objects built and dropped in the current execution.
static MADE: Counter = Counter::new(0);
static DROPPED: Counter = Counter::new(0);

struct Obj {
    /// 0, or the model thread that holds the object.
    holder: usize,
    /// Set by the holder, cleared by the reset hook.
    dirty: bool,
}

impl Drop for Obj {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, SeqCst);
    }
}

fn new_pool(broken: bool) -> PoolCore<Obj> {
    fn create() -> Obj {
        MADE.fetch_add(1, SeqCst);
        Obj {
            holder: 0,
            dirty: false,
        }
    }
    let pool = PoolCore::new(
        Create::Fn(create),
        Some(|o: &mut Obj| o.dirty = false),
        2,
        2,
    );
    if broken {
        pool.keeping_flushed()
    } else {
        pool
    }
}

/// Takes an object as thread `me` (cache `index`) and checks it.
fn take(pool: &PoolCore<Obj>, index: CacheAt, me: usize) -> &Slot<Obj> {
    // SAFETY: each model thread uses its own cache index (or none).
    let slot = unsafe { pool.take(index) };
    // SAFETY: `take` handed us the slot, occupied.
    let obj = unsafe { &mut *slot.value() };
    assert_eq!(obj.holder, 0, "an object handed out to two holders");
    assert!(!obj.dirty, "a returned object was not reset");
    obj.holder = me;
    obj.dirty = true;
    slot
}

/// Gives `slot` back as thread `me` (cache `index`).
fn give(pool: &PoolCore<Obj>, index: CacheAt, me: usize, slot: &Slot<Obj>) {
    // SAFETY: we hold the slot, occupied.
    let obj = unsafe { &mut *slot.value() };
    assert_eq!(obj.holder, me, "a held object changed hands");
    obj.holder = 0;
    // SAFETY: held by us, given up here; our own cache index.
    unsafe { pool.give(|| index, slot) };
}

/// A: takes `x` and hands it to B, then takes two more and gives them back
/// (its cache fills). B: takes two objects, receives `x`, and gives all
/// three back — the third give flushes to the shared stack, racing with A's
/// takes (refills) and gives. The pool starts with two idle objects and one
/// shell (a surplus object given back uncached was dropped).
#[test]
fn cross_thread_return_conserves_objects() {
    model(
        "typed_pool_cross_thread_return",
        2,
        "A: take x, send x, take, take, give, give | B: take, take, recv x, give x3",
        || cross_thread_return(false),
    );
}

/// Teeth: the same model on a pool whose flush keeps one of the objects it
/// sends away. The model must fail; it does through the conservation check
/// (that object ends up both cached and idle, so the pool's drop drops it
/// twice), before any execution shows two holders at once.
#[test]
fn keeping_flushed_objects_is_caught() {
    common::expect_caught(
        "typed_pool_keeping_flushed_is_caught",
        2,
        "as typed_pool_cross_thread_return, flush keeps one object",
        "dropped exactly once",
        || cross_thread_return(true),
    );
}

fn cross_thread_return(broken: bool) {
    MADE.store(0, SeqCst);
    DROPPED.store(0, SeqCst);
    let pool = Arc::new(new_pool(broken));
    {
        let pre: Vec<_> = (0..3).map(|_| take(&pool, None, 9)).collect();
        for s in pre {
            give(&pool, None, 9, s);
        }
    }
    assert_eq!(pool.idle_objects(), 2, "the third object was surplus");
    assert_eq!(DROPPED.load(SeqCst), 1);
    let mailbox = Arc::new(AtomicUsize::new(0));

    let (p, m) = (pool.clone(), mailbox.clone());
    let a = thread::spawn(move || {
        let x = take(&p, CacheIndex::of(0), 1);
        // The object changes hands: B is its holder from here on, and A
        // does not touch `x` after publishing it.
        // SAFETY: A holds `x`, occupied.
        unsafe { (*x.value()).holder = 2 };
        m.store(x as *const Slot<Obj> as usize, Ordering::Release);
        let y = take(&p, CacheIndex::of(0), 1);
        let z = take(&p, CacheIndex::of(0), 1);
        give(&p, CacheIndex::of(0), 1, y);
        give(&p, CacheIndex::of(0), 1, z);
    });
    let (p, m) = (pool.clone(), mailbox.clone());
    let b = thread::spawn(move || {
        let u = take(&p, CacheIndex::of(1), 2);
        let v = take(&p, CacheIndex::of(1), 2);
        let x = loop {
            let x = m.load(Ordering::Acquire);
            if x != 0 {
                break x;
            }
            thread::yield_now();
        };
        // SAFETY: A published a slot of the pool and gave it up.
        let x = unsafe { &*(x as *const Slot<Obj>) };
        give(&p, CacheIndex::of(1), 2, u);
        give(&p, CacheIndex::of(1), 2, v);
        give(&p, CacheIndex::of(1), 2, x);
    });
    a.join().unwrap();
    b.join().unwrap();
    assert!(pool.idle_objects() <= 2, "the idle bound holds");
    let pool = Arc::try_unwrap(pool).ok().expect("threads are done");
    drop(pool);
    assert_eq!(
        MADE.load(SeqCst),
        DROPPED.load(SeqCst),
        "every object built was dropped exactly once"
    );
}

/// Growth and shells: two threads take objects from an empty pool (both may
/// find the first chunk missing and race to publish it), then give them back
/// without caches to a shared stack that holds one idle object, so the rest
/// are surplus — dropped, their slots pushed as shells — while the other
/// thread takes a shell back for a new object.
#[test]
fn growth_and_surplus_conserve_objects() {
    model(
        "typed_pool_growth_and_surplus",
        2,
        "A: take, take, give, give (uncached) | B: take, give, take, give (uncached)",
        || {
            MADE.store(0, SeqCst);
            DROPPED.store(0, SeqCst);
            let pool = Arc::new(PoolCore::new(
                Create::Fn(|| {
                    MADE.fetch_add(1, SeqCst);
                    Obj {
                        holder: 0,
                        dirty: false,
                    }
                }),
                Some(|o: &mut Obj| o.dirty = false),
                2,
                1,
            ));
            let p = pool.clone();
            let a = thread::spawn(move || {
                let x = take(&p, None, 1);
                let y = take(&p, None, 1);
                give(&p, None, 1, x);
                give(&p, None, 1, y);
            });
            let p = pool.clone();
            let b = thread::spawn(move || {
                let u = take(&p, None, 2);
                give(&p, None, 2, u);
                let v = take(&p, None, 2);
                give(&p, None, 2, v);
            });
            a.join().unwrap();
            b.join().unwrap();
            assert!(pool.idle_objects() <= 1, "the idle bound holds");
            let pool = Arc::try_unwrap(pool).ok().expect("threads are done");
            drop(pool);
            assert_eq!(MADE.load(SeqCst), DROPPED.load(SeqCst));
        },
    );
}
