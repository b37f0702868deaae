//! The fast path in isolation, for instruction counts: `n` alloc/free pairs
//! of one layout through `Shoal`'s `GlobalAlloc`, after a warm-up that fills
//! the thread cache. `benches/instructions.sh` runs it under callgrind at two
//! values of `n` and reports the difference per pair, so start-up and the
//! warm-up cancel out.
//!
//! ```sh
//! cargo run --release --example fast_path -- 100000 32
//! ```

use std::alloc::{GlobalAlloc, Layout};

static SHOAL: shoalloc::Shoal = shoalloc::Shoal::new();

/// `n` pairs; `black_box` keeps the layout opaque, as in a program whose
/// sizes are not compile-time constants.
#[inline(never)]
fn pairs(n: usize, layout: Layout) {
    for _ in 0..n {
        // SAFETY: a non-zero layout; each block is freed once, with it.
        unsafe {
            let p = SHOAL.alloc(core::hint::black_box(layout));
            assert!(!p.is_null());
            SHOAL.dealloc(core::hint::black_box(p), core::hint::black_box(layout));
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let layout = Layout::from_size_align(size, 8).expect("size");
    pairs(1000, layout);
    pairs(n, layout);
}
