//! `Pool<T>` as a typed box, for instruction counts: `n` rounds of
//! `pool.insert(value)` and dropping the guard, next to `n` rounds of
//! `Box::new(value)` and its drop on Shoal as the global allocator, and the
//! same allocate-write-free round called directly on mimalloc and jemalloc
//! (what `Box` does with either as the global allocator).
//! `benches/instructions.sh --pool` runs it under callgrind at two values of
//! `n` and reports the difference per round.
//!
//! ```sh
//! cargo run --release --example pool_pair -- 100000 pool
//! cargo run --release --example pool_pair -- 100000 box
//! cargo run --release --example pool_pair -- 100000 mimalloc
//! ```

use core::hint::black_box;
use shoalloc::Pool;
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static GLOBAL: shoalloc::Shoal = shoalloc::Shoal::new();

/// The pooled value: a 32-byte plain number, as a dynamic language's boxed
/// complex number with a header.
type Value = [u64; 4];

#[inline(never)]
fn pool_rounds(pool: &Pool<Value>, n: usize) {
    for i in 0..n as u64 {
        let b = pool.insert(black_box([i; 4]));
        black_box(&*b);
        drop(b);
    }
}

#[inline(never)]
fn box_rounds(n: usize) {
    for i in 0..n as u64 {
        let b = Box::new(black_box([i; 4]));
        black_box(&*b);
        drop(b);
    }
}

/// `Box::new` + drop, spelled out against `alloc`.
#[inline(never)]
fn raw_rounds(alloc: &dyn GlobalAlloc, n: usize) {
    let layout = Layout::new::<Value>();
    for i in 0..n as u64 {
        // SAFETY: a non-zero layout; the block is written, read and freed
        // once, with it.
        unsafe {
            let p = alloc.alloc(layout).cast::<Value>();
            assert!(!p.is_null());
            p.write(black_box([i; 4]));
            black_box(&*p);
            alloc.dealloc(p.cast(), layout);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let what = args.next().unwrap_or_else(|| "pool".into());
    let pool = Pool::from_fn(|| [0u64; 4]);
    match what.as_str() {
        "pool" => {
            pool_rounds(&pool, 1000);
            pool_rounds(&pool, n);
        }
        "box" => {
            box_rounds(1000);
            box_rounds(n);
        }
        "mimalloc" => {
            raw_rounds(&mimalloc::MiMalloc, 1000);
            raw_rounds(&mimalloc::MiMalloc, n);
        }
        "jemalloc" => {
            raw_rounds(&tikv_jemallocator::Jemalloc, 1000);
            raw_rounds(&tikv_jemallocator::Jemalloc, n);
        }
        _ => panic!("pool, box, mimalloc or jemalloc"),
    }
}
