//! `pair`: the alloc/free pair. Each thread allocates one 32-byte block,
//! writes it, frees it, in a loop: the thread-cache fast path and nothing
//! else (the same measurement as `benches/micro.rs`'s `pair/32`, here through
//! the global allocator and in a fresh process).

use super::{join_all, share, Raw, Spec};

/// Pairs in a full-size run, split among the threads.
const PAIRS: usize = 20_000_000;

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(PAIRS, 1000);
    let handles = (0..spec.threads)
        .map(|t| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || {
                let mut sum = 0u64;
                for i in 0..n as u64 {
                    let mut b = Raw::new(32, 8);
                    b.put_u64(0, i);
                    sum = sum.wrapping_add(std::hint::black_box(&b).get_u64(0));
                }
                let want = (n as u64).wrapping_mul((n as u64).wrapping_sub(1)) / 2;
                if sum != want {
                    return Err(format!("pair: checksum {sum} != {want}"));
                }
                Ok(n as u64)
            })
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
