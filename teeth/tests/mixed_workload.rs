//! A program that only adds `#[global_allocator]` and then does what servers
//! do: random sizes from 1 B to 2 MiB, alignments up to 4096, objects freed by
//! other threads, and thousands of short-lived threads. It checks every
//! object's contents and that resident memory does not grow with the number
//! of threads created.
//!
//! Run by `cargo test` (`harness = false`). It then re-runs itself with a
//! fault that strands each dying thread's cache, and requires that run to
//! fail the RSS check, so the check is known to have teeth.

use shoalloc::internals::fault::{set, Fault};
use std::alloc::{alloc, dealloc, Layout};
use std::process::Command;
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: shoalloc::Shoal = shoalloc::Shoal::new();

const WAVES: usize = 250;
const THREADS_PER_WAVE: usize = 8;
const OPS_PER_THREAD: usize = 300;
const WARMUP_WAVES: usize = 25;
/// Allowed growth of RSS from the end of warm-up to the end of the run.
const RSS_SLACK_KIB: u64 = 96 * 1024;

struct Obj {
    ptr: *mut u8,
    layout: Layout,
    seed: u8,
}

// SAFETY: an `Obj` exclusively owns its allocation.
unsafe impl Send for Obj {}

impl Obj {
    fn new(size: usize, align: usize, seed: u8) -> Obj {
        let layout = Layout::from_size_align(size, align).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "out of memory for {layout:?}");
        assert_eq!(ptr as usize % align, 0, "misaligned {layout:?}");
        for i in (0..size).step_by(61).chain([size - 1]) {
            // SAFETY: inside the allocation.
            unsafe { ptr.add(i).write(seed ^ i as u8) };
        }
        Obj { ptr, layout, seed }
    }

    fn check_and_free(self) {
        let size = self.layout.size();
        for i in (0..size).step_by(61).chain([size - 1]) {
            // SAFETY: inside the allocation.
            let got = unsafe { self.ptr.add(i).read() };
            assert_eq!(
                got,
                self.seed ^ i as u8,
                "corrupted object {:p} byte {i}",
                self.ptr
            );
        }
        // SAFETY: allocated with this layout, freed once.
        unsafe { dealloc(self.ptr, self.layout) };
    }
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

fn run() -> Result<(), String> {
    let handoff: Mutex<Vec<Obj>> = Mutex::new(Vec::new());
    let mut baseline = 0;
    let mut peak_after_warmup = 0;
    for wave in 0..WAVES {
        std::thread::scope(|s| {
            for t in 0..THREADS_PER_WAVE {
                let handoff = &handoff;
                s.spawn(move || {
                    let mut rng = (wave * 7919 + t * 104729 + 1) as u64;
                    let mut next = || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    // Free what the previous wave handed over: cross-thread frees.
                    let inherited: Vec<Obj> = {
                        let mut h = handoff.lock().unwrap();
                        let n = h.len() / THREADS_PER_WAVE + 1;
                        let at = h.len().saturating_sub(n);
                        h.split_off(at)
                    };
                    for o in inherited {
                        o.check_and_free();
                    }
                    let mut mine = Vec::new();
                    for _ in 0..OPS_PER_THREAD {
                        let r = next();
                        let size = match r % 1000 {
                            0..=4 => 1 + (r >> 10) as usize % (2 << 20),
                            5..=59 => 1 + (r >> 10) as usize % 65536,
                            _ => 1 + (r >> 10) as usize % 512,
                        };
                        let align = if r % 7 == 0 { 1 << ((r >> 40) % 13) } else { 8 };
                        mine.push(Obj::new(size, align, r as u8));
                        if mine.len() > 40 {
                            let i = (next() as usize) % mine.len();
                            mine.swap_remove(i).check_and_free();
                        }
                    }
                    // Hand half to the next wave; free the rest here, so the
                    // thread exits with a warm cache.
                    let keep = mine.split_off(mine.len() / 2);
                    handoff.lock().unwrap().extend(keep);
                    for o in mine {
                        o.check_and_free();
                    }
                });
            }
        });
        let rss = rss_kib();
        if wave + 1 == WARMUP_WAVES {
            baseline = rss;
        }
        if wave + 1 >= WARMUP_WAVES {
            peak_after_warmup = peak_after_warmup.max(rss);
        }
        if (wave + 1) % 50 == 0 {
            println!(
                "after {:5} threads: RSS {:7} KiB",
                (wave + 1) * THREADS_PER_WAVE,
                rss
            );
        }
    }
    for o in handoff.into_inner().unwrap() {
        o.check_and_free();
    }
    let threads = WAVES * THREADS_PER_WAVE;
    println!(
        "{threads} threads: RSS after warm-up {baseline} KiB, highest later {peak_after_warmup} KiB, allowed {} KiB",
        baseline + RSS_SLACK_KIB
    );
    if peak_after_warmup > baseline + RSS_SLACK_KIB {
        return Err(format!(
            "RSS grew with the number of threads: {baseline} KiB after {} threads, {peak_after_warmup} KiB later",
            WARMUP_WAVES * THREADS_PER_WAVE
        ));
    }
    Ok(())
}

fn main() {
    if std::env::var_os("MIXED_WORKLOAD_STRAND").is_some() {
        // SAFETY: the child run exists to show the leak is caught; its heap
        // is discarded when it exits.
        unsafe { set(Fault::StrandOnExit, true) };
        if let Err(e) = run() {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        panic!("{e}");
    }
    println!("mixed workload: ok");

    // Teeth: the same program with stranded thread caches must fail.
    let out = Command::new(std::env::current_exe().unwrap())
        .env("MIXED_WORKLOAD_STRAND", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("RSS grew"),
        "stranding every dying thread's cache must fail the RSS check:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!(
        "teeth: stranded caches fail the RSS check ({})",
        stderr.trim()
    );
    println!("1 passed, 0 failed");
}
