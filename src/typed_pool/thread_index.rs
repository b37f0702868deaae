//! Small, dense thread indices, so that every pool can keep its per-thread
//! caches in an array instead of a map.
//!
//! A thread takes the lowest free index on its first pool operation and
//! gives it back when its thread-locals are destroyed; the next thread reuses
//! it (and inherits that index's caches, which belong to the pools). Indices
//! live in a bitmap of [`INDICES`] bits: a thread that finds none free, or
//! that runs after its thread-locals were destroyed (another thread-local's
//! destructor), gets `None` and uses the pools' shared stacks directly.
//!
//! The index's owner is the only thread that touches the caches of that
//! index. Taking an index is an AcqRel CAS and giving it back a Release
//! `fetch_and`, so everything the previous owner did to those caches happens
//! before the next owner's first use.

use super::local::{CacheIndex, INDICES};
use crate::sync::statics::{AtomicU64, Ordering};
use core::cell::Cell;

const WORDS: usize = INDICES.div_ceil(64);

/// Bit `i` set: index `i` is held by a live thread.
static HELD: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

/// [`PLACE`] before the thread's first pool operation.
const UNSET: usize = 1;
/// [`PLACE`] of a thread without a cache: none was free, or its
/// thread-locals are being destroyed. Like `UNSET`, odd, unlike every packed
/// [`CacheIndex`].
const NO_CACHE: usize = 3;

std::thread_local! {
    /// The thread's cache place, packed, or `UNSET` / `NO_CACHE`. No
    /// destructor, so reading it is one load relative to the thread pointer
    /// and it stays readable while other thread-locals are destroyed.
    static PLACE: Cell<usize> = const { Cell::new(UNSET) };
    /// Gives the index back when the thread's locals are destroyed.
    static REGISTRATION: Registration = const { Registration { index: Cell::new(None) } };
}

/// A thread's index, given back when the thread's locals are destroyed.
struct Registration {
    index: Cell<Option<usize>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Pool operations later in this thread's exit go uncached.
        PLACE.with(|p| p.set(NO_CACHE));
        if let Some(i) = self.index.take() {
            release(i);
        }
    }
}

/// The calling thread's cache place: taken on first use; `None` when no
/// index was free or this thread's locals are being destroyed.
#[inline]
pub(crate) fn current() -> Option<CacheIndex> {
    let word = PLACE.with(Cell::get);
    if word & 1 == 0 {
        return Some(CacheIndex::unpack(word));
    }
    if word == UNSET {
        register()
    } else {
        None
    }
}

/// The first pool operation of a thread: takes an index and arms its
/// release.
#[cold]
fn register() -> Option<CacheIndex> {
    let place = REGISTRATION
        .try_with(|r| {
            let i = acquire()?;
            r.index.set(Some(i));
            CacheIndex::of(i)
        })
        .ok()
        .flatten();
    PLACE.with(|p| p.set(place.map_or(NO_CACHE, CacheIndex::pack)));
    place
}

/// Takes the lowest free index.
#[cold]
fn acquire() -> Option<usize> {
    for (w, word) in HELD.iter().enumerate() {
        let mut bits = word.load(Ordering::Relaxed);
        loop {
            let bit = bits.trailing_ones() as usize;
            if bit == 64 || w * 64 + bit >= INDICES {
                break;
            }
            match word.compare_exchange_weak(
                bits,
                bits | (1 << bit),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(w * 64 + bit),
                Err(now) => bits = now,
            }
        }
    }
    None
}

/// Gives index `i` back.
fn release(i: usize) {
    HELD[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Release);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn live_threads_hold_distinct_places_and_exited_ones_give_them_back() {
        let mine = current().expect("an index is free");
        assert_eq!(current(), Some(mine), "an index is kept");
        let (tx, rx) = std::sync::mpsc::channel();
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (tx, barrier) = (tx.clone(), &barrier);
                s.spawn(move || {
                    let i = current().expect("an index is free");
                    // Everyone holds theirs at once.
                    barrier.wait();
                    tx.send(i.index()).unwrap();
                });
            }
        });
        drop(tx);
        let mut seen: Vec<usize> = rx.iter().collect();
        seen.push(mine.index());
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5, "indices of live threads are distinct");
    }

    #[test]
    fn exited_threads_give_their_indices_back() {
        // 300 threads one after another: if exits kept their indices, the
        // last would get an index of 300 or more. Other tests' threads may
        // hold a few dozen at once, far below the bound.
        let most = (0..300)
            .map(|_| std::thread::spawn(current).join().unwrap().unwrap().index())
            .max()
            .unwrap();
        assert!(most < 150, "index {most} after 300 sequential threads");
    }
}
