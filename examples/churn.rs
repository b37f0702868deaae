//! The shared-pool path in isolation, for instruction counts: rounds of
//! `live` allocations of one layout followed by their frees (in allocation
//! order), so every `batch_len` operations a thread cache refills from or
//! flushes to the shared pool — and, past a class's stack cap, blocks go home
//! to their pages. `benches/instructions.sh --churn` runs it under callgrind
//! at two round counts and reports the difference per alloc+free.
//!
//! ```sh
//! cargo run --release --example churn -- 20 4096 64
//! ```

use std::alloc::{GlobalAlloc, Layout};

static SHOAL: shoalloc::Shoal = shoalloc::Shoal::new();

#[inline(never)]
fn rounds(n: usize, live: &mut [*mut u8], layout: Layout) {
    for _ in 0..n {
        for slot in live.iter_mut() {
            // SAFETY: a non-zero layout.
            let p = unsafe { SHOAL.alloc(core::hint::black_box(layout)) };
            assert!(!p.is_null());
            *slot = p;
        }
        for &p in live.iter() {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { SHOAL.dealloc(core::hint::black_box(p), layout) };
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let live: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let layout = Layout::from_size_align(size, 8).expect("size");
    let mut slots = vec![core::ptr::null_mut(); live];
    rounds(2, &mut slots, layout);
    rounds(n, &mut slots, layout);
}
