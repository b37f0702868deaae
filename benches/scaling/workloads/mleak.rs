//! `mleak`: memory retained by dead threads. Short-lived threads are
//! created in waves of `threads`; each churns 300 small objects (16–512 B,
//! filling its thread cache), then leaves one long-lived object (64 B–4 KiB)
//! in a shared array — freeing the object some earlier, now dead, thread
//! left there — and exits. An allocator that strands a dead thread's cache
//! shows it in peak and final RSS; thread creation dominates the time.

use super::{join_all, Raw, Rng, Spec};
use std::alloc::Layout;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Threads created in a full-size run (in waves of `threads`).
const THREADS: usize = 4000;
/// Short-lived objects per thread.
const CHURN: usize = 300;
/// Slots of the shared array of long-lived objects.
const SLOTS: usize = 256;

/// A long-lived object: word 0 its size, word 1 its key, last byte the key's.
fn make(size: usize, key: u64) -> Raw {
    let mut b = Raw::new(size, 8);
    b.put_u64(0, size as u64);
    b.put_u64(8, key);
    b.put(size - 1, key as u8);
    b
}

fn swap_in(shared: &[AtomicUsize], k: usize, b: Option<Raw>) -> Result<(), String> {
    let word = b.map_or(0, |b| b.into_raw().0 as usize);
    let old = shared[k].swap(word, Ordering::AcqRel);
    if old == 0 {
        return Ok(());
    }
    // SAFETY: the slot held a block from `into_raw` whose word 0 is its size
    // (see `make`); the swap made it ours.
    let size = unsafe { (old as *const u64).read() } as usize;
    let layout = Layout::from_size_align(size, 8).map_err(|e| e.to_string())?;
    // SAFETY: as above; taken back exactly once.
    let b = unsafe { Raw::from_raw(old as *mut u8, layout) };
    let key = b.get_u64(8);
    if b.get(size - 1) != key as u8 {
        return Err(format!(
            "mleak: long-lived object at {:#x} corrupted",
            b.addr()
        ));
    }
    Ok(())
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(THREADS, spec.threads * 2);
    let waves = total.div_ceil(spec.threads);
    let shared: Arc<Vec<AtomicUsize>> = Arc::new((0..SLOTS).map(|_| AtomicUsize::new(0)).collect());
    let mut ops = 0u64;
    for w in 0..waves {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let id = w * spec.threads + t;
                std::thread::spawn(move || {
                    let mut rng = Rng::new(id as u64 + 99);
                    let churn: Vec<(Raw, u64)> = (0..CHURN)
                        .map(|i| {
                            let mut b = Raw::new(rng.range(16, 512), 8);
                            b.tag(i as u64);
                            (b, i as u64)
                        })
                        .collect();
                    for (b, tag) in &churn {
                        b.check_tag(*tag)?;
                    }
                    drop(churn);
                    let keep = make(rng.range(64, 4096), rng.next_u64());
                    swap_in(&shared, id % SLOTS, Some(keep))?;
                    Ok(CHURN as u64 + 1)
                })
            })
            .collect();
        ops += join_all(handles)?.iter().sum::<u64>();
    }
    for k in 0..SLOTS {
        swap_in(&shared, k, None)?;
    }
    Ok(ops)
}
