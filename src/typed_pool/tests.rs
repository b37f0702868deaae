//! Unit tests of `Pool<T>`, small enough for Miri (which checks the slots'
//! raw accesses, the data races between thread caches and the shared stacks,
//! and that every object is dropped exactly once).

use super::{OwnedPooled, Pool, Pooled};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

/// Counts constructions and drops of its objects.
#[derive(Default)]
struct Census {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

impl Census {
    fn live(&self) -> usize {
        self.made.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }
}

/// An object that knows its census, its identity and whether it is dirty.
struct Tracked {
    census: Arc<Census>,
    id: usize,
    dirty: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.census.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn tracked_pool(census: &Arc<Census>, cache: usize, max_idle: usize) -> Pool<Tracked> {
    let census = Arc::clone(census);
    Pool::builder(move || Tracked {
        id: census.made.fetch_add(1, Ordering::SeqCst),
        census: Arc::clone(&census),
        dirty: false,
    })
    .reset(|t| t.dirty = false)
    .thread_cache(cache)
    .max_idle(max_idle)
    .build()
}

const N: usize = if cfg!(miri) { 40 } else { 2000 };

#[test]
fn objects_keep_their_capacity_and_are_reset() {
    let pool: Pool<Vec<u8>> = Pool::new();
    let mut v = pool.get();
    v.extend_from_slice(&[7; 100]);
    let addr = v.as_ptr();
    drop(v);
    let v = pool.get();
    assert!(v.is_empty(), "the default reset clears");
    assert!(v.capacity() >= 100, "the capacity survives");
    assert_eq!(v.as_ptr(), addr, "the same buffer comes back (LIFO cache)");
}

#[test]
fn insert_boxes_plain_values_and_detach_takes_them_out() {
    let pool = Pool::from_fn(|| 0u64);
    let held: Vec<Pooled<'_, u64>> = (0..N as u64).map(|i| pool.insert(i * 3)).collect();
    for (i, b) in held.iter().enumerate() {
        assert_eq!(**b, i as u64 * 3);
    }
    drop(held);
    let b = pool.insert(99);
    assert_eq!(Pooled::detach(b), 99);
    let again = pool.insert(5);
    assert_eq!(*again, 5);
}

#[test]
fn a_held_object_has_one_holder_and_everything_is_dropped_once() {
    let census = Arc::new(Census::default());
    let pool = tracked_pool(&census, 4, 8);
    let mut held = Vec::new();
    for round in 0..4 {
        for _ in 0..N / 4 {
            let mut t = pool.get();
            assert!(!t.dirty, "round {round}: the reset hook ran");
            t.dirty = true;
            held.push(t);
        }
        let mut ids: Vec<usize> = held.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), held.len(), "no object has two holders");
        // Give back every other one: some go to the cache, some to the
        // shared stack, the rest (beyond max_idle) are dropped.
        let mut i = 0;
        held.retain(|_| {
            i += 1;
            i % 2 == 0
        });
        assert!(pool.idle() <= 8, "the idle bound holds");
    }
    drop(held);
    assert!(census.live() <= 8 + 4, "only the bound's worth is kept");
    drop(pool);
    assert_eq!(census.live(), 0, "dropping the pool drops every object");
}

#[test]
fn objects_dropped_on_other_threads_come_back_and_caches_of_exited_threads_are_freed() {
    let census = Arc::new(Census::default());
    let pool = tracked_pool(&census, 4, 16);
    let (tx, rx) = mpsc::sync_channel::<Pooled<'_, Tracked>>(8);
    std::thread::scope(|s| {
        // The consumer keeps what it receives in its cache, flushes the rest
        // to the shared stack, and exits with a full cache.
        s.spawn(move || {
            for mut t in rx {
                assert!(t.dirty);
                t.dirty = false;
            }
        });
        for _ in 0..N {
            let mut t = pool.get();
            assert!(!t.dirty);
            t.dirty = true;
            tx.send(t).unwrap();
        }
        drop(tx);
    });
    let made = census.made.load(Ordering::SeqCst);
    assert!(made < N, "objects were reused: {made} made for {N} uses");
    assert!(census.live() <= 16 + 2 * 4);
    drop(pool);
    assert_eq!(census.live(), 0);
}

#[test]
fn owned_guards_keep_the_pool_alive() {
    let census = Arc::new(Census::default());
    let pool = Arc::new(tracked_pool(&census, 2, 2));
    let guards: Vec<OwnedPooled<Tracked>> = (0..6).map(|_| pool.get_owned()).collect();
    drop(pool);
    let t = std::thread::spawn(move || {
        let n = guards.len();
        drop(guards);
        n
    });
    assert_eq!(t.join().unwrap(), 6);
    assert_eq!(census.live(), 0, "the last guard dropped the pool");
}

/// A pooled node that holds a guard of the same pool: its destructor gives
/// the child back while the pool may be in the middle of dropping surplus.
struct Node {
    child: Option<OwnedPooled<Node>>,
}

#[test]
fn the_pool_can_be_used_from_its_objects_destructors() {
    let pool = Arc::new(
        Pool::builder(|| Node { child: None })
            .reset(|n| n.child = None)
            .thread_cache(2)
            .max_idle(2)
            .build(),
    );
    for _ in 0..N / 4 {
        let mut chain = pool.get_owned();
        let mut inner = pool.get_owned();
        inner.child = Some(pool.get_owned());
        chain.child = Some(inner);
        drop(chain);
    }
    let held: Vec<_> = (0..8).map(|_| pool.get_owned()).collect();
    drop(held);
}

#[test]
fn pools_and_guards_cross_threads_only_as_their_contents_allow() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool<Vec<u8>>>();
    send_sync::<Pool<std::cell::Cell<u8>>>(); // `Sync` needs only `T: Send`
    send_sync::<Pooled<'static, Vec<u8>>>();
    send::<Pooled<'static, std::cell::Cell<u8>>>();
    send::<OwnedPooled<String>>();
}
