//! Memory-return scenarios, shared by `tests/memory_return.rs` (which asserts
//! they pass) and the teeth member (which asserts a broken allocator fails
//! them). Each measures the process's resident memory (`/proc/self/statm`)
//! around a workload that calls `Shoal` directly, so the test harness's own
//! allocations (through the system allocator) stay out of the way; the
//! scenarios must run one at a time in their process.
#![allow(dead_code)] // each binary uses a part

use shoalloc::Shoal;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Resident bytes of this process now.
pub fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's second field");
    pages * 4096
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / MIB as f64
}

/// A singly linked list threaded through the objects themselves, so that
/// keeping millions of objects alive costs no side table (whose memory
/// would blur the measurement). Word 0 links; word 1 holds a check value.
struct Chain {
    head: *mut u8,
    layout: Layout,
    len: usize,
}

impl Chain {
    fn new(size: usize) -> Self {
        Self {
            head: std::ptr::null_mut(),
            layout: Layout::from_size_align(size, 16).unwrap(),
            len: 0,
        }
    }

    /// Allocates objects until `bytes` are held, touching every page.
    fn fill(&mut self, bytes: usize) {
        let size = self.layout.size();
        for _ in 0..bytes / size {
            // SAFETY: a valid layout of at least 16 bytes.
            let p = unsafe { Shoal::new().alloc(self.layout) };
            assert!(!p.is_null(), "out of memory");
            // SAFETY: `p` is ours, at least 16 bytes; writing every 4 KiB
            // faults in all its pages, as a program's use would.
            unsafe {
                let mut off = 16;
                while off < size {
                    p.add(off).write(1);
                    off += 4096;
                }
                p.cast::<*mut u8>().write(self.head);
                p.add(8).cast::<usize>().write(p as usize ^ size);
            }
            self.head = p;
            self.len += 1;
        }
    }

    /// Takes the first `n` objects off the chain (to hand them elsewhere).
    fn split_off(&mut self, n: usize) -> Chain {
        let mut out = Chain {
            head: self.head,
            layout: self.layout,
            len: 0,
        };
        let mut last = std::ptr::null_mut();
        while out.len < n && !self.head.is_null() {
            last = self.head;
            // SAFETY: a live object of ours whose word 0 links the chain.
            self.head = unsafe { self.head.cast::<*mut u8>().read() };
            out.len += 1;
            self.len -= 1;
        }
        if !last.is_null() {
            // SAFETY: as above.
            unsafe { last.cast::<*mut u8>().write(std::ptr::null_mut()) };
        } else {
            out.head = std::ptr::null_mut();
        }
        out
    }

    /// Frees every object, checking each one's check word.
    fn free_all(&mut self) {
        let size = self.layout.size();
        while !self.head.is_null() {
            let p = self.head;
            // SAFETY: a live object of ours.
            unsafe {
                self.head = p.cast::<*mut u8>().read();
                assert_eq!(
                    p.add(8).cast::<usize>().read(),
                    p as usize ^ size,
                    "object corrupted"
                );
                Shoal::new().dealloc(p, self.layout);
            }
            self.len -= 1;
        }
        assert_eq!(self.len, 0);
    }
}

// SAFETY: a chain is a set of objects owned by whoever holds the chain.
unsafe impl Send for Chain {}

/// What a scenario measured, in bytes above the baseline.
#[derive(Debug)]
pub struct Measured {
    /// Bytes the workload held at its largest.
    pub held: usize,
    /// Highest resident memory seen above the baseline.
    pub peak: usize,
    /// Resident memory above the baseline at the end.
    pub end: usize,
}

/// Phase change: fill `n` bytes with 64-byte objects, free them; fill `n`
/// with 1 KiB objects and 512 KiB medium objects, free them. Returns the
/// resident peak over the baseline (a design that keeps freed memory in its
/// old class maps about `2n`) and the end state after `shoalloc::collect()`.
pub fn phase_change(n: usize) -> Measured {
    let base = rss();
    let mut small = Chain::new(64);
    small.fill(n);
    let mut peak = rss().saturating_sub(base);
    small.free_all();
    let mut other = Chain::new(1024);
    let mut medium = Chain::new(512 * 1024);
    other.fill(n / 2);
    medium.fill(n / 2);
    peak = peak.max(rss().saturating_sub(base));
    other.free_all();
    medium.free_all();
    shoalloc::collect();
    Measured {
        held: n,
        peak,
        end: rss().saturating_sub(base),
    }
}

/// Sizes from 16 B to 2 MiB, cycling (every kind but huge).
const MIXED: [usize; 8] = [16, 48, 256, 1000, 4096, 40_000, 300_000, 2 << 20];

/// Return across threads: `threads` threads each allocate `per_thread`
/// bytes of mixed sizes, free them all and exit. Then, without calling
/// `collect`, the main thread keeps allocating a little (ticks run on
/// allocator activity) for up to `wait` while resident memory falls.
pub fn return_after_delay(threads: usize, per_thread: usize, wait: Duration) -> Measured {
    let base = rss();
    let peak = std::sync::atomic::AtomicUsize::new(0);
    // Every thread holds its share at the same time: the peak is read
    // between two barriers.
    let all_full = std::sync::Barrier::new(threads);
    let measured = std::sync::Barrier::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (peak, all_full, measured) = (&peak, &all_full, &measured);
            s.spawn(move || {
                let mut chains: Vec<Chain> = MIXED.iter().map(|&z| Chain::new(z)).collect();
                for (i, c) in chains.iter_mut().enumerate() {
                    c.fill(per_thread / MIXED.len() + (i + t) * 4096);
                }
                if all_full.wait().is_leader() {
                    let now = rss().saturating_sub(base);
                    peak.store(now, std::sync::atomic::Ordering::Relaxed);
                }
                measured.wait();
                for c in &mut chains {
                    c.free_all();
                }
            });
        }
    });
    let start = Instant::now();
    let mut end = rss().saturating_sub(base);
    // Until nearly everything is back (the callers' bound is looser) or
    // `wait` has passed.
    while start.elapsed() < wait && end > 4 * MIB {
        // Enough traffic to move batches between the cache and the pools.
        let mut c = Chain::new(64);
        c.fill(64 * 1024);
        c.free_all();
        std::thread::sleep(Duration::from_millis(5));
        end = rss().saturating_sub(base);
    }
    Measured {
        held: threads * per_thread,
        peak: peak.into_inner(),
        end,
    }
}

/// Producer/consumer: one thread allocates `n` bytes of 256-byte objects in
/// chunks and sends them all to a second thread, which frees them after the
/// producer is done (so every block is freed by a thread that did not
/// allocate it, and `n` bytes are live at once). Then `collect()`: the pages
/// come back although no thread freed its own blocks.
pub fn producer_consumer(n: usize) -> Measured {
    let base = rss();
    let (tx, rx) = mpsc::channel::<Chain>();
    let per_chunk = 4096;
    std::thread::spawn(move || {
        let mut made = 0;
        while made < n {
            let mut c = Chain::new(256);
            c.fill(per_chunk * 256);
            made += per_chunk * 256;
            tx.send(c.split_off(per_chunk)).unwrap();
        }
    })
    .join()
    .unwrap();
    let peak = rss().saturating_sub(base);
    std::thread::spawn(move || {
        for mut c in rx {
            c.free_all();
        }
    })
    .join()
    .unwrap();
    shoalloc::collect();
    Measured {
        held: n,
        peak,
        end: rss().saturating_sub(base),
    }
}

/// Prints a scenario's numbers in MiB.
pub fn report(name: &str, m: &Measured) {
    println!(
        "{name}: held {:.0} MiB, peak +{:.1} MiB, end +{:.1} MiB",
        mib(m.held),
        mib(m.peak),
        mib(m.end)
    );
}
