//! `mstress`: a stress test of thread churn, sizes and corruption.
//!
//! Every round spawns `threads` workers of unequal work (worker `i` does a
//! share ∝ `i + 1`) and joins them, so threads die and are re-created
//! `ROUNDS` times. A worker keeps 256 local objects of `2^k` words
//! (2 ≤ 2^k ≤ 32; 1% of them ×100, 0.1% ×1000, up to 256 KiB), each filled
//! with a pattern derived from a per-object key. Per step it either replaces a
//! random local object (85%), exchanges one with a random slot of an array
//! shared by all threads (10%: the object it gets back was made by another,
//! possibly dead, thread), or reallocs one to a new size (5%). Every object is
//! verified in full before it is freed or after it is moved or resized. When
//! a worker ends, half its objects go into the shared array and outlive it.

use super::{join_all, Raw, Rng, Spec};
use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Steps (allocations + reallocs + exchanges) in a full-size run.
const STEPS: usize = 3_000_000;
/// Thread generations in a full-size run.
const ROUNDS: usize = 10;
/// Live objects per worker.
const LOCAL: usize = 256;
/// Slots of the shared exchange array.
const SHARED: usize = 1024;

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

fn pattern(key: u64, i: usize) -> u64 {
    key ^ (i as u64).wrapping_mul(MIX)
}

fn random_words(rng: &mut Rng) -> usize {
    let base = 1usize << rng.range(1, 5);
    match rng.below(1000) {
        0 => base * 1000,
        1..=10 => base * 100,
        _ => base,
    }
}

/// A fresh object of `words` words: word 0 its byte size, word 1 its key,
/// then the key's pattern.
fn make(words: usize, key: u64) -> Raw {
    let b = Raw::new(words * 8, 8);
    let p = b.as_ptr().cast::<u64>();
    // SAFETY: the block holds `words` aligned words, all ours.
    unsafe {
        p.write(words as u64 * 8);
        p.add(1).write(key);
        for i in 2..words {
            p.add(i).write(pattern(key, i));
        }
    }
    b
}

/// Checks an object made by [`make`] (possibly resized by [`resize`]).
fn verify(b: &Raw) -> Result<(), String> {
    let words = b.len() / 8;
    let p = b.as_ptr().cast::<u64>();
    // SAFETY: the block holds `words` aligned words, all written by `make`
    // or `resize`.
    let (size, key) = unsafe { (p.read(), p.add(1).read()) };
    if size != b.len() as u64 {
        return Err(format!(
            "mstress: block at {:#x} says {size} bytes, is {}",
            b.addr(),
            b.len()
        ));
    }
    for i in 2..words {
        // SAFETY: as above.
        let w = unsafe { p.add(i).read() };
        if w != pattern(key, i) {
            return Err(format!(
                "mstress: word {i} of {words} corrupted at {:#x}",
                b.addr()
            ));
        }
    }
    Ok(())
}

/// Reallocs to `words` words, checking the kept prefix and filling the rest.
fn resize(b: &mut Raw, words: usize) -> Result<(), String> {
    verify(b)?;
    let old = b.len() / 8;
    b.realloc(words * 8);
    let p = b.as_ptr().cast::<u64>();
    // SAFETY: the block now holds `words` aligned words; the first
    // `min(old, words)` kept their contents (realloc's promise, checked by
    // the next `verify`), the rest are ours to write.
    unsafe {
        let key = p.add(1).read();
        p.write(words as u64 * 8);
        for i in old.max(2)..words {
            p.add(i).write(pattern(key, i));
        }
    }
    verify(b)
}

/// Puts `b` (or nothing) into shared slot `k`, returning the previous one.
fn exchange(shared: &[AtomicUsize], k: usize, b: Option<Raw>) -> Option<Raw> {
    let word = b.map_or(0, |b| b.into_raw().0 as usize);
    let old = shared[k].swap(word, Ordering::AcqRel);
    if old == 0 {
        return None;
    }
    // SAFETY: the slot held a block from `into_raw` (made by `make`, so its
    // first word is its size and its alignment 8); the swap made it ours.
    let size = unsafe { (old as *const u64).read() } as usize;
    let layout = Layout::from_size_align(size, 8).expect("size written by make");
    // SAFETY: as above; taken back exactly once.
    Some(unsafe { Raw::from_raw(old as *mut u8, layout) })
}

fn worker(shared: &[AtomicUsize], seed: u64, steps: usize) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mut ops = 0u64;
    let mut local: Vec<Option<Raw>> = (0..LOCAL).map(|_| None).collect();
    for _ in 0..steps {
        let j = rng.below(LOCAL);
        match rng.below(100) {
            0..=4 => {
                if let Some(b) = local[j].as_mut() {
                    let words = random_words(&mut rng);
                    resize(b, words)?;
                    ops += 1;
                }
            }
            5..=14 => {
                let k = rng.below(SHARED);
                local[j] = exchange(shared, k, local[j].take());
                if let Some(b) = &local[j] {
                    verify(b)?;
                }
            }
            _ => {
                if let Some(old) = local[j].take() {
                    verify(&old)?;
                }
                let words = random_words(&mut rng);
                local[j] = Some(make(words, rng.next_u64()));
                ops += 1;
            }
        }
    }
    // Half the objects outlive this thread in the shared array.
    for (j, slot) in local.into_iter().enumerate() {
        let Some(b) = slot else { continue };
        verify(&b)?;
        if j % 2 == 0 {
            if let Some(prev) = exchange(shared, rng.below(SHARED), Some(b)) {
                verify(&prev)?;
            }
        }
    }
    Ok(ops)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let steps = spec.n(STEPS, 1000);
    let rounds = spec.n(ROUNDS, 2);
    let per_round = steps / rounds;
    let weights: usize = (1..=spec.threads).sum();
    let shared: Arc<Vec<AtomicUsize>> =
        Arc::new((0..SHARED).map(|_| AtomicUsize::new(0)).collect());
    let mut ops = 0u64;
    for r in 0..rounds {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let mine = per_round * (t + 1) / weights;
                let seed = (r * 1000 + t) as u64 + 7;
                std::thread::spawn(move || worker(&shared, seed, mine))
            })
            .collect();
        ops += join_all(handles)?.iter().sum::<u64>();
    }
    for k in 0..SHARED {
        if let Some(b) = exchange(&shared, k, None) {
            verify(&b)?;
        }
    }
    Ok(ops)
}
