//! `cargo bench --bench micro`: criterion micro-benchmarks of every compared
//! allocator — the table in `benches/common/allocators.rs`, shared with the
//! scaling benchmark — called directly through `&'static dyn GlobalAlloc`
//! (no global allocator dispatch: this binary's own allocations use the
//! system allocator, and each measured call goes straight to the allocator
//! under test).
//!
//! Groups (filter with `cargo bench --bench micro -- pair/` etc.):
//! - `pair/<size>`: one `alloc` + `dealloc` of the same size — the
//!   thread-cache fast path.
//! - `batch1000/<size>`: 1000 allocations, then 1000 frees in the same order.
//! - `realloc_growth`: a block grown by doubling from 16 B to 64 KiB (one
//!   byte written per step), then freed.
//! - `two_threads_pair`: two pre-spawned workers each doing `alloc`/`dealloc`
//!   pairs of 32 B at the same time. Criterion's multithreaded pattern: start
//!   and end `Barrier`s sized workers + 1, timed on the main thread inside
//!   `iter_custom`, so thread creation is not measured.
//!
//! Measurement times are short (0.3 s per benchmark, 10 samples) so the whole
//! run takes about a minute; pass `--measurement-time` to criterion for more.

#[path = "common/allocators.rs"]
mod allocators;

use allocators::{Alloc, ALLOCATORS};
use core::alloc::Layout;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const SIZES: [usize; 6] = [16, 64, 256, 1024, 8192, 32768];

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

fn pair(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("pair/{size}"));
        g.throughput(Throughput::Elements(1));
        let l = layout(size);
        for &(name, a) in &ALLOCATORS {
            g.bench_function(name, |b| {
                b.iter(|| {
                    // SAFETY: non-zero layout; freed once with the same layout.
                    unsafe {
                        let p = a.alloc(l);
                        assert!(!p.is_null());
                        p.write(1);
                        a.dealloc(black_box(p), l);
                    }
                })
            });
        }
        g.finish();
    }
}

fn batch1000(c: &mut Criterion) {
    const N: usize = 1000;
    for size in SIZES {
        let mut g = c.benchmark_group(format!("batch1000/{size}"));
        g.throughput(Throughput::Elements(N as u64));
        let l = layout(size);
        for &(name, a) in &ALLOCATORS {
            let mut ptrs: Vec<*mut u8> = Vec::with_capacity(N);
            g.bench_function(name, |b| {
                b.iter(|| {
                    for _ in 0..N {
                        // SAFETY: non-zero layout.
                        let p = unsafe { a.alloc(l) };
                        assert!(!p.is_null());
                        // SAFETY: a live block of at least one byte.
                        unsafe { p.write(1) };
                        ptrs.push(p);
                    }
                    for p in ptrs.drain(..) {
                        // SAFETY: allocated above with `l`, freed once.
                        unsafe { a.dealloc(black_box(p), l) };
                    }
                })
            });
        }
        g.finish();
    }
}

fn realloc_growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("realloc_growth");
    for &(name, a) in &ALLOCATORS {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut size = 16;
                // SAFETY: non-zero layout; every realloc keeps alignment 8
                // and passes the current layout; freed once at the end.
                unsafe {
                    let mut p = a.alloc(layout(size));
                    assert!(!p.is_null());
                    while size < 64 * 1024 {
                        p = a.realloc(p, layout(size), size * 2);
                        assert!(!p.is_null());
                        size *= 2;
                        p.add(size - 1).write(1);
                    }
                    a.dealloc(black_box(p), layout(size));
                }
            })
        });
    }
    g.finish();
}

/// Two pre-spawned workers doing `iters` 32-byte pairs each per sample.
struct Workers {
    start: Arc<Barrier>,
    end: Arc<Barrier>,
    iters: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    const THREADS: usize = 2;

    fn spawn(a: Alloc) -> Self {
        let start = Arc::new(Barrier::new(Self::THREADS + 1));
        let end = Arc::new(Barrier::new(Self::THREADS + 1));
        let iters = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..Self::THREADS)
            .map(|_| {
                let (start, end, iters, stop) = (
                    Arc::clone(&start),
                    Arc::clone(&end),
                    Arc::clone(&iters),
                    Arc::clone(&stop),
                );
                std::thread::spawn(move || loop {
                    start.wait();
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let l = layout(32);
                    for _ in 0..iters.load(Ordering::Acquire) {
                        // SAFETY: non-zero layout; freed once.
                        unsafe {
                            let p = a.alloc(l);
                            assert!(!p.is_null());
                            p.write(1);
                            a.dealloc(black_box(p), l);
                        }
                    }
                    end.wait();
                })
            })
            .collect();
        Self {
            start,
            end,
            iters,
            stop,
            handles,
        }
    }

    /// Wall time for both workers to do `iters` pairs each.
    fn run(&self, iters: u64) -> Duration {
        self.iters.store(iters, Ordering::Release);
        let t = Instant::now();
        self.start.wait();
        self.end.wait();
        t.elapsed()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn two_threads_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_pair");
    // Per iteration each of the two workers does one pair.
    g.throughput(Throughput::Elements(Workers::THREADS as u64));
    for &(name, a) in &ALLOCATORS {
        let workers = Workers::spawn(a);
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| workers.run(iters))
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(300))
}

criterion_group! {
    name = benches;
    config = config();
    targets = pair, batch1000, realloc_growth, two_threads_pair
}
criterion_main!(benches);
