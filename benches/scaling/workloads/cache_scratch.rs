//! `cache-scratch`: passive false sharing. The main thread allocates one
//! small (8 B) object per worker, back to back, so they likely share a cache
//! line, and hands one to each worker. Each worker frees it, then loops:
//! allocate 8 B, write it 20 times, free. An allocator that gives a thread
//! back the block another thread's object sits next to (because the freed
//! block went into the freeing thread's cache) makes the workers write to
//! one cache line and slows them all.

use super::{join_all, share, Raw, Spec};

/// Allocations in a full-size run, split among the workers.
const ALLOCS: usize = 4_000_000;
/// Writes per object.
const WRITES: u64 = 20;

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(ALLOCS, 100);
    let handed: Vec<Raw> = (0..spec.threads).map(|_| Raw::new(8, 8)).collect();
    let handles: Vec<_> = handed
        .into_iter()
        .enumerate()
        .map(|(t, first)| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || {
                drop(first);
                let mut sum = 0u64;
                for i in 0..n as u64 {
                    let b = Raw::new(8, 8);
                    for w in 0..WRITES {
                        // Volatile, so every write reaches the cache line.
                        // SAFETY: the 8-byte block is ours and aligned.
                        unsafe { b.as_ptr().cast::<u64>().write_volatile(i + w) };
                    }
                    sum = sum.wrapping_add(b.get_u64(0));
                }
                let want = (0..n as u64).fold(0u64, |s, i| s.wrapping_add(i + WRITES - 1));
                if sum != want {
                    return Err(format!("cache-scratch: checksum {sum} != {want}"));
                }
                Ok(n as u64)
            })
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
