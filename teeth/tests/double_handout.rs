//! The checkers can fail: with a block deliberately handed out twice, the
//! shadow oracle and the multithreaded stress test both fail.
//!
//! This is its own test binary because the fault switches are process-wide.
//! The stress runs go further: each runs in a child process (this binary,
//! re-executed), because a heap with a doubly owned block may also crash —
//! a free list threaded through a block that its second owner overwrote — and
//! either way the stress test must not pass.

mod support;

use shoalloc::{GilAlloc, Shoal};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{run_oracle, run_stress, Op, StressConfig};

static SHOAL: Shoal = Shoal::new();
static GIL: GilAlloc = GilAlloc::new();

const CHILD: &str = "SHOALLOC_TEETH_CHILD";

fn small_allocs(n: usize) -> Vec<Op> {
    (0..n)
        .map(|i| Op::Alloc {
            size: 24 + i % 8,
            align_log: 0,
            zeroed: false,
        })
        .collect()
}

fn stress_config() -> StressConfig {
    StressConfig {
        threads: 8,
        duration: Duration::from_secs(2),
        min_waves: 2,
        ops_per_thread: 2000,
        max_size: 4096,
    }
}

#[test]
fn oracle_catches_a_double_handout() {
    run_oracle(&SHOAL, &small_allocs(200)).expect("healthy shoal passes the oracle");
    run_oracle(&GIL, &small_allocs(200)).expect("healthy gil passes the oracle");

    // SAFETY: this process's heap is only used by the teeth tests.
    unsafe { shoalloc::fault::set_double_handout(true) };
    let err = run_oracle(&SHOAL, &small_allocs(200))
        .expect_err("oracle must catch shoal's double hand-out");
    // SAFETY: disarming.
    unsafe { shoalloc::fault::set_double_handout(false) };
    assert!(err.contains("overlaps"), "{err}");

    // SAFETY: as above.
    unsafe { shoalloc::gil::set_fault_double_handout(true) };
    let err =
        run_oracle(&GIL, &small_allocs(200)).expect_err("oracle must catch gil's double hand-out");
    assert!(err.contains("overlaps"), "{err}");
}

/// Runs the stress test on a faulty allocator in a child process and asserts
/// that it did not pass.
fn stress_fails_in_child(which: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stress_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, which)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("stress_child"),
        "the child ran the stress test:\n{stdout}"
    );
    assert!(
        !out.status.success(),
        "{which}: the stress test passed on an allocator that hands blocks out twice:\n{stdout}\n{stderr}"
    );
    let how = match stderr
        .lines()
        .find(|l| l.contains("another owner") || l.contains("not aligned"))
    {
        Some(line) => format!("checker reported: {line}"),
        None => format!("heap crashed first ({})", out.status),
    };
    println!("{which}: faulty stress run failed as it must; {how}");
}

#[test]
fn stress_catches_a_double_handout_in_shoal() {
    stress_fails_in_child("shoal");
}

#[test]
fn stress_catches_a_double_handout_in_gil() {
    stress_fails_in_child("gil");
}

/// The child half of the stress teeth tests; does nothing unless re-executed
/// by them.
#[test]
fn stress_child() {
    let Ok(which) = std::env::var(CHILD) else {
        return;
    };
    let result = match which.as_str() {
        "shoal" => {
            // SAFETY: a child process whose heap is discarded.
            unsafe { shoalloc::fault::set_double_handout(true) };
            run_stress(&SHOAL, stress_config())
        }
        _ => {
            // GilAlloc's switch fires once; keep re-arming it.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let rearm = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: a child process whose heap is discarded.
                        unsafe { shoalloc::gil::set_fault_double_handout(true) };
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            };
            let r = run_stress(&GIL, stress_config());
            stop.store(true, Ordering::Relaxed);
            rearm.join().unwrap();
            r
        }
    };
    match result {
        Ok(report) => println!("stress passed: {report:?}"),
        Err(e) => panic!("stress caught: {e}"),
    }
}
