//! `larson`: a server-like pattern with thread churn. Each of `threads`
//! chains owns an array of 1000 slots holding objects of 8–1000 B. A thread
//! repeatedly frees a random slot and refills it with a new random-size
//! object; after its round it spawns a *successor* thread, hands it the
//! array, and exits. The successor frees objects its dead predecessor
//! allocated (cross-thread frees into an exited thread's memory) and
//! allocates in a brand-new thread cache.

use super::{share, Raw, Rng, Spec};
use std::thread::JoinHandle;

/// Allocations in a full-size run (after the initial fill), split among chains.
const ALLOCS: usize = 5_000_000;
/// Slots per chain.
const SLOTS: usize = 1000;
/// Successor threads per chain in a full-size run.
const GENERATIONS: usize = 40;

/// A chain's slots: the object and the tag it was written with.
struct Slots {
    objs: Vec<(Raw, u64)>,
    rng: Rng,
    next_tag: u64,
}

enum Next {
    Successor(JoinHandle<Result<Next, String>>),
    Done(u64),
}

fn generation(mut s: Slots, rounds: usize, gens_left: usize, allocs: u64) -> Result<Next, String> {
    for _ in 0..rounds {
        let i = s.rng.below(SLOTS);
        let size = s.rng.range(8, 1000);
        let (old, tag) = &s.objs[i];
        old.check_tag(*tag)?;
        let tag = s.next_tag;
        s.next_tag += 1;
        let mut b = Raw::new(size, 8);
        b.tag(tag);
        s.objs[i] = (b, tag); // frees the old object
    }
    let allocs = allocs + rounds as u64;
    if gens_left == 0 {
        for (b, tag) in &s.objs {
            b.check_tag(*tag)?;
        }
        drop(s);
        return Ok(Next::Done(allocs));
    }
    // The successor inherits the slots; this thread then exits.
    Ok(Next::Successor(std::thread::spawn(move || {
        generation(s, rounds, gens_left - 1, allocs)
    })))
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(ALLOCS, SLOTS);
    let gens = spec.n(GENERATIONS, 2);
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let per_chain = share(total, spec.threads, t);
            let rounds = (per_chain / gens).max(1);
            std::thread::spawn(move || {
                let mut rng = Rng::new(1000 + t as u64);
                let objs = (0..SLOTS)
                    .map(|i| {
                        let mut b = Raw::new(rng.range(8, 1000), 8);
                        b.tag(i as u64);
                        (b, i as u64)
                    })
                    .collect();
                let s = Slots {
                    objs,
                    rng,
                    next_tag: SLOTS as u64,
                };
                generation(s, rounds, gens - 1, SLOTS as u64)
            })
        })
        .collect();
    let mut ops = 0;
    for h in handles {
        let mut h = h;
        loop {
            match h
                .join()
                .map_err(|_| "larson: a thread panicked".to_string())??
            {
                Next::Successor(next) => h = next,
                Next::Done(n) => {
                    ops += n;
                    break;
                }
            }
        }
    }
    Ok(ops)
}
