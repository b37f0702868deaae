//! Loom models of the page heap (`units::UnitMap`): spans claimed and
//! released from several threads, the purge's reservation racing claims and
//! releases, and `Pools::maintain(true)` (drain every class, then purge)
//! racing a take and a return through the pools.
//!
//! The unit-map models keep a shadow of every unit in a loom `UnsafeCell`
//! (who holds it, whether it was used since its last purge), touched by the
//! thread that claims, releases or purges the unit right after the claim or
//! reservation and right before the release or the end of the purge. Two
//! threads holding one unit at once, with no happens-before edge between
//! them, is a causality violation; one that is ordered is an assertion. (The
//! model backing of the pool models also zeroes purged pages and checks that
//! a page claimed clean reads as zero; `collect_vs_alloc` runs that.)
#![cfg(loom)]

mod common;

use common::{assert_conserved, give_one, model, model_up_to, pools, send_home, take};
use loom::cell::UnsafeCell;
use loom::thread;
use shoalloc::internals::units::{run_mask, UnitMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What the model knows about one unit.
#[derive(Clone, Copy, Debug)]
struct Shadow {
    /// Who holds the unit: a thread id, or 0 (free).
    owner: u32,
    /// Used since it was last purged (or since the start).
    dirty: bool,
}

/// A unit map whose units `1..=free` are free (unit 0 and the units past
/// `free` are used forever, as a segment header is), with a shadow per unit.
struct Heap {
    map: UnitMap,
    free: u32,
    shadow: Box<[UnsafeCell<Shadow>]>,
}

// SAFETY: loom runs every model thread on one OS thread and checks each
// access to the shadow cells for a happens-before edge with the previous
// ones (the point of the model); the unit map is atomics only.
unsafe impl Send for Heap {}
// SAFETY: as for `Send`.
unsafe impl Sync for Heap {}

impl Heap {
    fn new(free: u32) -> Arc<Self> {
        Arc::new(Self {
            map: UnitMap::new(!run_mask(1, free)),
            free,
            shadow: (0..=free)
                .map(|_| {
                    UnsafeCell::new(Shadow {
                        owner: 0,
                        dirty: false,
                    })
                })
                .collect(),
        })
    }

    fn shadow<R>(&self, unit: u32, f: impl FnOnce(&mut Shadow) -> R) -> R {
        self.shadow[unit as usize].with_mut(|s| {
            // SAFETY: loom checks that no other access is concurrent.
            f(unsafe { &mut *s })
        })
    }

    /// Claims `units` units for thread `id`, checks that nobody else holds
    /// them and that a clean claim is really clean, and uses them (so they
    /// are dirty from now on). Returns the first unit and the clean flag.
    fn claim(&self, id: u32, units: u32) -> Option<(u32, bool)> {
        let (start, clean) = self.map.claim(units)?;
        assert!(
            start >= 1 && start + units - 1 <= self.free,
            "claim of {units} returned unit {start}, outside the free units"
        );
        for u in start..start + units {
            self.shadow(u, |s| {
                assert_eq!(
                    s.owner, 0,
                    "unit {u} handed to {id} while {} holds it",
                    s.owner
                );
                assert!(
                    !(clean && s.dirty),
                    "unit {u} reported clean but used since its last purge"
                );
                s.owner = id;
                s.dirty = true;
            });
        }
        Some((start, clean))
    }

    /// Gives back units `start .. start + units`, which thread `id` holds.
    fn release(&self, id: u32, start: u32, units: u32) {
        for u in start..start + units {
            self.shadow(u, |s| {
                assert_eq!(
                    s.owner, id,
                    "unit {u} released by {id}, which does not hold it"
                );
                s.owner = 0;
            });
        }
        self.map.release(start, units);
    }

    /// One purge: reserve the free dirty units, discard them, end the purge.
    /// Returns the units it purged. A claim that got one of them before the
    /// purge ended would touch its shadow with no happens-before edge to the
    /// purge's access (a causality violation) or find it clean too early.
    fn purge(&self) -> u64 {
        let mask = self.map.reserve_dirty();
        for u in (1..=self.free).filter(|u| mask & (1 << u) != 0) {
            self.shadow(u, |s| {
                assert_eq!(
                    s.owner, 0,
                    "purge reserved unit {u}, which {} holds",
                    s.owner
                );
                assert!(s.dirty, "purge reserved unit {u}, which is clean");
                s.dirty = false;
            });
        }
        if mask != 0 {
            self.map.finish_purge(mask);
        }
        mask
    }

    /// The end-of-model check (after every thread was joined): every unit
    /// free and unowned, the map's dirty bits exactly the shadow's, and the
    /// free units coalesced: one claim of all of them succeeds.
    fn check(&self) {
        let all = run_mask(1, self.free);
        assert_eq!(self.map.used() & all, 0, "every unit is free again");
        let mut dirty = 0;
        for u in 1..=self.free {
            let s = self.shadow(u, |s| *s);
            assert_eq!(s.owner, 0, "unit {u} still held");
            if s.dirty {
                dirty |= 1 << u;
            }
        }
        assert_eq!(
            self.map.dirty_free(),
            dirty,
            "dirty bits match the units' use"
        );
        assert_eq!(
            self.claim(99, self.free),
            Some((1, dirty == 0)),
            "the free units coalesce into one span"
        );
        self.release(99, 1, self.free);
        assert_eq!(self.purge(), all, "a purge takes every free dirty unit");
        assert_eq!(
            self.claim(99, self.free),
            Some((1, true)),
            "purged units are clean"
        );
    }
}

/// A thread that claims `units` units, writes them and gives them back.
fn claimer(heap: &Arc<Heap>, id: u32, units: u32) -> thread::JoinHandle<bool> {
    let h = heap.clone();
    thread::spawn(move || {
        let (start, clean) = h.claim(id, units).expect("the heap has room");
        h.release(id, start, units);
        clean
    })
}

/// Three threads claim spans of 2, 2 and 1 units from 5 free units and give
/// them back: no unit is ever held twice, every claim finds room (5 units
/// cover the three spans however they are placed, reused units first), and
/// afterwards the units coalesce into one span of 5.
#[test]
fn page_heap_claim_release() {
    model(
        "page_heap_claim_release",
        3,
        "T1: claim 2, release | T2: claim 2, release | T3: claim 1, release",
        || {
            let heap = Heap::new(5);
            let threads = [
                claimer(&heap, 1, 2),
                claimer(&heap, 2, 2),
                claimer(&heap, 3, 1),
            ];
            for t in threads {
                t.join().unwrap();
            }
            heap.check();
        },
    );
}

/// Two threads, two claims each, the second while still holding the first:
/// T1 claims 1 then 2 units, T2 claims 2 then 1, from 6 free units; then
/// each gives both spans back. Spans never overlap, and a release lets its
/// neighbours coalesce.
#[test]
fn page_heap_claim_release_2x2() {
    model(
        "page_heap_claim_release_2x2",
        2,
        "T1: claim 1, claim 2, release both | T2: claim 2, claim 1, release both",
        || {
            let heap = Heap::new(6);
            let spawn = |id: u32, sizes: [u32; 2]| {
                let h = heap.clone();
                thread::spawn(move || {
                    let spans: Vec<(u32, u32)> = sizes
                        .iter()
                        .map(|&n| (h.claim(id, n).expect("the heap has room").0, n))
                        .collect();
                    for (start, n) in spans {
                        h.release(id, start, n);
                    }
                })
            };
            let t1 = spawn(1, [1, 2]);
            let t2 = spawn(2, [2, 1]);
            t1.join().unwrap();
            t2.join().unwrap();
            heap.check();
        },
    );
}

/// A purge (reserve the free dirty units, discard them, end the purge) races
/// two claimers that use what they get and give it back. Both units are
/// dirty (used once). A claim must never get a unit while the purge holds
/// it — it finds no room instead, which production answers from another
/// segment — must report `clean` only for units not used since their last
/// purge, and the purge must reserve only free
/// dirty units. Every outcome of a claim must be explored: a dirty unit, a
/// purged (clean) unit, and no room while the purge holds both units.
#[test]
fn purge_vs_reuse() {
    let seen = [(); 3].map(|_| Arc::new(AtomicUsize::new(0)));
    let s = seen.clone();
    let report = model(
        "purge_vs_reuse",
        3,
        "T1: purge (reserve_dirty, finish_purge) | T2: claim 1, release | T3: claim 1, release",
        move || {
            let heap = Heap::new(2);
            assert_eq!(heap.claim(9, 2), Some((1, true)));
            heap.release(9, 1, 2);
            let h = heap.clone();
            let purger = thread::spawn(move || h.purge());
            let claimers = [2, 3].map(|id| {
                let h = heap.clone();
                thread::spawn(move || {
                    let (start, clean) = h.claim(id, 1)?;
                    h.release(id, start, 1);
                    Some(clean)
                })
            });
            purger.join().unwrap();
            for t in claimers {
                let outcome = match t.join().unwrap() {
                    Some(false) => 0,
                    Some(true) => 1,
                    None => 2,
                };
                s[outcome].fetch_add(1, Ordering::Relaxed);
            }
            heap.check();
        },
    );
    for (name, n) in ["dirty claims", "clean claims", "claims with no room"]
        .iter()
        .zip(&seen)
    {
        let n = n.load(Ordering::Relaxed);
        println!(
            "  purge_vs_reuse: {n} {name} in {} executions",
            report.executions
        );
        assert!(n > 0, "purge_vs_reuse: no {name} explored");
    }
}

/// A purge races a release and a claim of the same unit: unit 1 is held by
/// T2, which gives it back and claims one unit again; T1 purges twice. The
/// purge may reserve the unit between T2's release and its claim (T2 then
/// gets a clean unit 2 or, after the purge, a clean unit 1), or miss it.
#[test]
fn purge_vs_release_claim() {
    model(
        "purge_vs_release_claim",
        2,
        "T1: purge, purge | T2: release 1, claim 1, release",
        || {
            let heap = Heap::new(2);
            assert_eq!(heap.claim(2, 1), Some((1, true)));
            let h = heap.clone();
            let purger = thread::spawn(move || {
                h.purge();
                h.purge();
            });
            let h = heap.clone();
            let t2 = thread::spawn(move || {
                h.release(2, 1, 1);
                let (start, _) = h.claim(2, 1).expect("the heap has room");
                h.release(2, start, 1);
            });
            purger.join().unwrap();
            t2.join().unwrap();
            heap.check();
        },
    );
}

/// `Pools::maintain(true)` (what `collect` runs: every class's stacked
/// batches go home and its fully free partial pages are released, then every
/// free page is purged) racing an allocation and a return through the
/// pools. Pages of 2 blocks: page 1 went home and is in the page heap
/// (dirty); page 2 is the carving page, used up, with `c` stacked as a batch
/// and `d` out. T1 runs `maintain(true)`; T2 takes 2 blocks (the batch, or a
/// fresh page — the dirty page 1, a purged one or the never-used page 3);
/// T3 sends `d` home to page 2, which the end of its carving, T3's return or
/// the drain may release to the page heap, racing the purge. The backing
/// checks that the purge only ever reserves released pages and that a page
/// claimed as clean reads as zero; the pools end conserved. Bound 2 only
/// (`model_up_to`).
#[test]
fn collect_vs_alloc() {
    model_up_to(
        2,
        "collect_vs_alloc",
        3,
        "T1: maintain(true) (drain, purge) | T2: take 2 | T3: send_home [d]",
        || {
            let pools = pools(3, 2);
            let first = take(&pools, 2);
            let second = take(&pools, 2);
            // SAFETY: the setup holds page 1's blocks and gives them up: the
            // page goes home and to the page heap.
            unsafe { send_home(&pools, &first) };
            let page1 = pools.backing().page(1);
            assert_eq!(pools.backing().life(page1).released, 1);
            give_one(&pools, second[0]);
            let p = pools.clone();
            let t1 = thread::spawn(move || p.maintain(true));
            let p = pools.clone();
            let t2 = thread::spawn(move || take(&p, 2));
            let p = pools.clone();
            let d = second[1];
            // SAFETY: T3 holds `d` and gives it up.
            let t3 = thread::spawn(move || unsafe { send_home(&p, &[d]) });
            t1.join().unwrap();
            let held = t2.join().unwrap();
            t3.join().unwrap();
            assert_conserved(&pools, &held);
        },
    );
}
