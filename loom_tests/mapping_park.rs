//! Loom models of the large-object mapping park (`MappingPark`): parking
//! and taking freed mappings through CAS on entry words, racing with each
//! other, with a full park, and with a second taker. Each model ends with a
//! conservation check — every mapping is held by exactly one party (a thread
//! that took it, the thread whose park failed and so still owns it, or the
//! park, drained at the end) — and the byte counter must return to zero.
//! Each mapping also carries a loom `UnsafeCell` that the parking thread
//! writes and the taking thread reads, so a missing Release/Acquire edge
//! shows up as a causality violation.
#![cfg(loom)]

mod common;

use common::model;
use loom::cell::UnsafeCell;
use loom::thread;
use shoalloc::internals::mapping_park::MappingPark;
use std::sync::Arc;

const PAGE: usize = 4096;
const M1: (usize, usize) = (0x10_0000, 2 * PAGE);
const M2: (usize, usize) = (0x20_0000, 2 * PAGE);

/// The park plus one "contents" cell per mapping.
struct World<const N: usize> {
    park: MappingPark<N>,
    contents: [UnsafeCell<usize>; 2],
}

// SAFETY: loom runs every model thread on one OS thread and checks each
// access to the contents cells for a happens-before edge with the previous
// ones (the point of the model); the park is atomics only.
unsafe impl<const N: usize> Send for World<N> {}
// SAFETY: as for `Send`.
unsafe impl<const N: usize> Sync for World<N> {}

impl<const N: usize> World<N> {
    fn new() -> Arc<Self> {
        Arc::new(World {
            park: MappingPark::new(1 << 20, 1 << 20),
            contents: [UnsafeCell::new(0), UnsafeCell::new(0)],
        })
    }

    fn index(m: (usize, usize)) -> usize {
        usize::from(m.0 == M2.0)
    }

    /// The freeing thread's last write, then park. Returns what the thread
    /// still owns (the mapping, when parking failed).
    fn free(&self, m: (usize, usize), stamp: usize) -> Vec<(usize, usize)> {
        // SAFETY: the mapping is ours until parked; loom checks the claim.
        self.contents[Self::index(m)].with_mut(|c| unsafe { *c = stamp });
        if self.park.park(m.0, m.1) {
            vec![]
        } else {
            vec![m]
        }
    }

    /// Take a mapping of `need` bytes and read what its last owner wrote.
    fn take(&self, need: usize) -> Vec<(usize, usize)> {
        self.claim(self.park.take(need, usize::MAX))
    }

    /// Take the largest parked mapping and read what its last owner wrote.
    fn take_largest(&self) -> Vec<(usize, usize)> {
        self.claim(self.park.take_largest(usize::MAX))
    }

    fn claim(&self, taken: Option<(usize, usize)>) -> Vec<(usize, usize)> {
        match taken {
            Some(m) => {
                // SAFETY: we just took the mapping; loom checks the claim.
                let stamp = self.contents[Self::index(m)].with(|c| unsafe { *c });
                assert!(
                    stamp != 0,
                    "taken mapping {m:?} before its free was visible"
                );
                vec![m]
            }
            None => vec![],
        }
    }

    /// Drain the park and check that every mapping is in exactly one place.
    fn conserve(&self, held: Vec<(usize, usize)>, expected: &[(usize, usize)]) {
        let mut all = held;
        while let Some(m) = self.park.take_any() {
            all.push(m);
        }
        assert_eq!(self.park.bytes(), 0, "byte counter drifted");
        all.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(all, want, "conservation: every mapping exactly once");
    }
}

#[test]
fn park_races_take_and_park() {
    model(
        "mapping_park_races_take",
        3,
        "T1: park M1 | T2: take | T3: park M2",
        || {
            let w = World::<2>::new();
            let (a, b, c) = (w.clone(), w.clone(), w.clone());
            let t1 = thread::spawn(move || a.free(M1, 1));
            let t2 = thread::spawn(move || b.take(2 * PAGE));
            let t3 = thread::spawn(move || c.free(M2, 2));
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            held.extend(t3.join().unwrap());
            w.conserve(held, &[M1, M2]);
        },
    );
}

#[test]
fn full_park_refuses_one_parker() {
    model(
        "mapping_full_park",
        2,
        "T1: park M1 | T2: park M2 (one entry)",
        || {
            let w = World::<1>::new();
            let (a, b) = (w.clone(), w.clone());
            let t1 = thread::spawn(move || a.free(M1, 1));
            let t2 = thread::spawn(move || b.free(M2, 2));
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            assert_eq!(held.len(), 1, "exactly one park must fail with one entry");
            w.conserve(held, &[M1, M2]);
        },
    );
}

#[test]
fn two_takers_one_mapping() {
    model(
        "mapping_two_takers",
        2,
        "main: park M1 | T1: take | T2: take_largest",
        || {
            let w = World::<2>::new();
            assert!(w.free(M1, 1).is_empty());
            let (a, b) = (w.clone(), w.clone());
            let t1 = thread::spawn(move || a.take(PAGE));
            let t2 = thread::spawn(move || b.take_largest());
            let mut held = t1.join().unwrap();
            held.extend(t2.join().unwrap());
            w.conserve(held, &[M1]);
        },
    );
}
