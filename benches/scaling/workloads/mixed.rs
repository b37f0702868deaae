//! `mixed`: a realistic mix. Each thread keeps 1000 live slots and per step
//! replaces one: 70% a plain allocation, 10% `alloc_zeroed` (checked to be
//! zero), 10% a `realloc` of the slot's object, 5% a 64 B- or 4 KiB-aligned
//! allocation, 5% a swap with a slot of an array shared by all threads.
//! Sizes follow a 1/s² density from 16 B to 32 KiB (mostly small, a long
//! tail), like real programs' requests. Every object is tagged and checked.

use super::{join_all, share, Raw, Rng, Spec};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

/// Steps in a full-size run, split among the threads.
const STEPS: usize = 4_000_000;
/// Live objects per thread.
const LIVE: usize = 1000;
/// Slots of the shared exchange array.
const SHARED: usize = 256;

type Obj = (Raw, u64);

fn tagged(mut b: Raw, key: u64) -> Obj {
    b.tag(key);
    (b, key)
}

fn swap(shared: &[AtomicPtr<Obj>], k: usize, o: Option<Obj>) -> Option<Obj> {
    let new = o.map_or(std::ptr::null_mut(), |o| Box::into_raw(Box::new(o)));
    let old = shared[k].swap(new, Ordering::AcqRel);
    // SAFETY: non-null slot values come from `Box::into_raw` above, and the
    // swap made this one ours.
    (!old.is_null()).then(|| *unsafe { Box::from_raw(old) })
}

fn worker(shared: &[AtomicPtr<Obj>], seed: u64, steps: usize) -> Result<u64, String> {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Option<Obj>> = (0..LIVE).map(|_| None).collect();
    let mut ops = 0u64;
    for _ in 0..steps {
        let j = rng.below(LIVE);
        let key = rng.next_u64();
        let size = rng.inverse_square(16, 32 * 1024);
        let op = rng.below(100);
        if let Some((b, k)) = &live[j] {
            b.check_tag(*k)?;
        }
        match op {
            0..=69 => {
                live[j] = Some(tagged(Raw::new(size, 8), key));
                ops += 1;
            }
            70..=79 => {
                let b = Raw::zeroed(size, 8);
                if b.bytes().iter().any(|&x| x != 0) {
                    return Err(format!("mixed: alloc_zeroed({size}) not zeroed"));
                }
                live[j] = Some(tagged(b, key));
                ops += 1;
            }
            80..=89 => {
                if let Some((b, k)) = live[j].as_mut() {
                    b.realloc(size);
                    if b.get_u64(0) != *k {
                        return Err(format!("mixed: realloc to {size} lost contents"));
                    }
                    b.tag(*k);
                    ops += 1;
                }
            }
            90..=94 => {
                let align = if rng.below(2) == 0 { 64 } else { 4096 };
                let b = Raw::new(size, align);
                if b.addr() % align != 0 {
                    return Err(format!(
                        "mixed: {size} B at {:#x} not {align}-aligned",
                        b.addr()
                    ));
                }
                live[j] = Some(tagged(b, key));
                ops += 1;
            }
            _ => {
                live[j] = swap(shared, rng.below(SHARED), live[j].take());
                if let Some((b, k)) = &live[j] {
                    b.check_tag(*k)?;
                }
            }
        }
    }
    for (b, k) in live.iter().flatten() {
        b.check_tag(*k)?;
    }
    Ok(ops)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(STEPS, 1000);
    let shared: Arc<Vec<AtomicPtr<Obj>>> = Arc::new(
        (0..SHARED)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
    );
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let shared = Arc::clone(&shared);
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || worker(&shared, t as u64 + 77, n))
        })
        .collect();
    let ops = join_all(handles)?.iter().sum();
    for k in 0..SHARED {
        if let Some((b, key)) = swap(&shared, k, None) {
            b.check_tag(key)?;
        }
    }
    Ok(ops)
}
