//! `cache-thrash`: active false sharing. Each thread loops: allocate 8 B,
//! write it 20 times, free. An allocator that hands blocks on the same cache
//! line to different threads makes those writes bounce the line between
//! cores; one with per-thread memory keeps them local.

use super::{join_all, share, Raw, Spec};

/// Allocations in a full-size run, split among the threads.
const ALLOCS: usize = 4_000_000;
/// Writes per object.
const WRITES: u64 = 20;

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(ALLOCS, 100);
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || {
                let mut sum = 0u64;
                for i in 0..n as u64 {
                    let b = Raw::new(8, 8);
                    for w in 0..WRITES {
                        // Volatile, so every write reaches the cache line.
                        // SAFETY: the 8-byte block is ours and aligned.
                        unsafe { b.as_ptr().cast::<u64>().write_volatile(i ^ w) };
                    }
                    sum = sum.wrapping_add(b.get_u64(0));
                }
                let want = (0..n as u64).fold(0u64, |s, i| s.wrapping_add(i ^ (WRITES - 1)));
                if sum != want {
                    return Err(format!("cache-thrash: checksum {sum} != {want}"));
                }
                Ok(n as u64)
            })
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
