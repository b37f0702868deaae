//! `threadtest`: pure thread-local allocation. Each thread repeatedly
//! allocates a round of 1000 objects of random sizes (8–256 B), tags each,
//! then checks and frees them in a random order. No object crosses threads,
//! so this measures the thread-local fast path and how it scales.

use super::{join_all, share, Raw, Rng, Spec};

/// Allocations in a full-size run, split among the threads.
const ALLOCS: usize = 10_000_000;
/// Objects live at once per thread.
const ROUND: usize = 1000;

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(ALLOCS, ROUND);
    let handles = (0..spec.threads)
        .map(|t| {
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || -> Result<u64, String> {
                let mut rng = Rng::new(t as u64 + 1);
                // Request sizes and free order, drawn once so the timed loop
                // is allocator work, not random-number generation.
                let sizes: Vec<usize> = (0..ROUND).map(|_| rng.range(8, 256)).collect();
                let mut order: Vec<usize> = (0..ROUND).collect();
                for i in (1..ROUND).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let mut live: Vec<Option<Raw>> = (0..ROUND).map(|_| None).collect();
                let mut done = 0usize;
                let mut round = 0usize;
                while done < n {
                    let k = ROUND.min(n - done);
                    for (i, slot) in live.iter_mut().enumerate().take(k) {
                        let size = sizes[(i + round) % ROUND];
                        let mut b = Raw::new(size, 8);
                        b.tag((round * ROUND + i) as u64);
                        *slot = Some(b);
                    }
                    for j in 0..ROUND {
                        let i = order[(j + round) % ROUND];
                        if let Some(b) = live[i].take() {
                            b.check_tag((round * ROUND + i) as u64)?;
                        }
                    }
                    done += k;
                    round += 1;
                }
                Ok(n as u64)
            })
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
