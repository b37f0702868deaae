//! The checkers can fail: with `Fault::DoubleHandout` armed (a block that is
//! already live is handed out again), the shadow oracle and the multithreaded
//! stress test both fail, on every allocator of `support::ALLOCATORS` (the
//! secure variant aborts by itself before a checker can look). Each
//! faulty run is preceded by the same run on the healthy allocator, which
//! must pass, so the failure is the fault's.
//!
//! This is its own test binary because the fault switches are process-wide;
//! the tests that arm a switch in this process take `SERIAL` first. The
//! random oracle property and the stress runs go further: each runs in a
//! child process (this binary, re-executed), because a heap with a doubly
//! owned block, once the two owners start freeing, may also crash — a free
//! list threaded through a block that its second owner overwrote. The
//! in-process oracle run only allocates, so its faulty heap stays usable.

#[path = "../../tests/support/mod.rs"]
mod support;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use shoalloc::internals::fault::{is_armed, set, Fault};
use shoalloc::GilAlloc;
use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use support::{allocator, ops_strategy, run_oracle, run_stress, Op, StressConfig, ALLOCATORS};

/// Taken by every test that arms a fault in this process or allocates while
/// one may be armed.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Arms the double hand-out for the guard's lifetime.
struct Armed;

impl Armed {
    /// # Safety
    /// The caller holds `SERIAL` (or is a child process that runs nothing
    /// else), and discards what it allocates while armed: blocks handed out
    /// twice must never both be freed.
    unsafe fn new() -> Armed {
        // SAFETY: forwarded contract.
        unsafe { set(Fault::DoubleHandout, true) };
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // SAFETY: disarming restores the allocators' contract for every later
        // allocation.
        unsafe { set(Fault::DoubleHandout, false) };
    }
}

/// Environment variable that makes the re-executed binary run one faulty
/// check: `oracle:NAME` or `stress:NAME`.
const CHILD: &str = "SHOALLOC_TEETH_CHILD";
/// What a child prints once its healthy run has passed.
const HEALTHY: &str = "healthy run passed";
/// What a child's panic message starts with when the checker caught the fault.
const CAUGHT: &str = "checker caught the fault:";

/// 8000 allocations, no frees, in the four classes of 1 to 64 bytes and at
/// alignments 1 to 8: each class takes enough blocks (2000) to drain a warm
/// thread cache (fewer than two batches of 512) and refill it twice, which
/// is when the fault hands a live block out again.
fn allocations_only() -> Vec<Op> {
    (0..8000)
        .map(|i| Op::Alloc {
            size: 1 + i % 64,
            align_log: (i % 4) as u32,
            zeroed: i % 5 == 0,
        })
        .collect()
}

#[test]
fn oracle_catches_a_double_handout() {
    let _s = serial();
    let ops = allocations_only();
    let mut failures = Vec::new();
    for &(name, a) in &ALLOCATORS {
        if name == SECURE {
            // It stops the process itself: see the test below.
            continue;
        }
        if let Err(e) = run_oracle(a, &ops) {
            failures.push(format!("{name}: the healthy run failed: {e}"));
            continue;
        }
        let faulty = {
            // SAFETY: we hold SERIAL; the oracle leaks every block of a run
            // that fails, and only allocates, so no doubly owned block is
            // ever freed.
            let _armed = unsafe { Armed::new() };
            run_oracle(a, &ops)
        };
        match faulty {
            Err(e) if e.contains("overlaps") => println!("{name}: oracle caught it: {e}"),
            Err(e) => failures.push(format!("{name}: failed, but not with an overlap: {e}")),
            Ok(()) => failures.push(format!(
                "{name}: the oracle passed on an allocator that hands blocks out twice"
            )),
        }
    }
    assert!(!is_armed(Fault::DoubleHandout));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The secure small path needs no checker: the block handed out again is
/// `LIVE` in its state byte, and the allocator aborts with a message before
/// the second owner gets it.
#[test]
fn the_secure_path_stops_a_double_handout_itself() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("oracle:{SECURE}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(HEALTHY),
        "the healthy run did not pass: {stdout}\n{stderr}"
    );
    assert!(
        !out.status.success() && stderr.contains("shoalloc: corrupted free list"),
        "the secure path did not stop the double hand-out ({}):\n{stderr}",
        out.status
    );
}

/// The secure variant's name in `ALLOCATORS`.
const SECURE: &str = "shoal-secure";

/// GilAlloc's form of the fault, step by step: an allocation leaves its block
/// on the free list, so the next one of the class returns it again; the
/// switch stays armed, with one pending duplicate at a time.
#[test]
fn gil_hands_every_other_block_out_twice() {
    let _s = serial();
    let a = GilAlloc::new();
    let l40 = Layout::from_size_align(40, 8).unwrap();
    let l200 = Layout::from_size_align(200, 8).unwrap();
    let alloc = |l: Layout| {
        // SAFETY: non-zero layouts.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null());
        p
    };
    let (b0, c0, c1, b1, b2, b3) = {
        // SAFETY: we hold SERIAL; of each doubly handed-out block only one
        // copy is freed below.
        let _armed = unsafe { Armed::new() };
        let b0 = alloc(l40);
        // A duplicate of `b0` is pending: the 200-byte class is served
        // normally.
        let c0 = alloc(l200);
        let c1 = alloc(l200);
        let b1 = alloc(l40);
        let b2 = alloc(l40);
        let b3 = alloc(l40);
        (b0, c0, c1, b1, b2, b3)
    };
    assert_ne!(c0, c1, "one pending duplicate at a time");
    assert_eq!(b1, b0, "the block comes back once");
    assert_ne!(b2, b0, "and only once");
    assert_eq!(b3, b2, "the switch stays armed");
    // SAFETY: one copy of each doubly handed-out block, and the two distinct
    // 200-byte blocks, each freed once with its layout; the other copies stay
    // handed out for good.
    unsafe {
        a.dealloc(b0, l40);
        a.dealloc(b2, l40);
        a.dealloc(c0, l200);
        a.dealloc(c1, l200);
    }
}

/// Runs one faulty check in a child process and asserts that it failed after
/// its healthy run passed. Returns how it failed.
fn fails_in_child(mode: &str, name: &str) -> Result<String, String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{mode}:{name}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains(HEALTHY) {
        return Err(format!(
            "{mode} on {name}: the healthy run did not pass ({}):\n{stdout}\n{stderr}",
            out.status
        ));
    }
    if out.status.success() {
        return Err(format!(
            "{mode} on {name}: passed on an allocator that hands blocks out twice:\n{stdout}\n{stderr}"
        ));
    }
    Ok(match stderr.lines().find(|l| l.contains(CAUGHT)) {
        Some(line) => line.trim().to_string(),
        None => format!("the heap crashed first ({})", out.status),
    })
}

/// The oracle property of `tests/oracle.rs`, with its input generator, fails
/// on every faulty allocator: the checker reports the fault before anything
/// crashes.
#[test]
fn oracle_property_catches_a_double_handout() {
    let mut failures = Vec::new();
    for &(name, _) in &ALLOCATORS {
        if name == SECURE {
            // It aborts before the oracle can report: see
            // `the_secure_path_stops_a_double_handout_itself`.
            continue;
        }
        match fails_in_child("oracle", name) {
            Ok(how) if how.contains(CAUGHT) => println!("{name}: {how}"),
            Ok(how) => failures.push(format!("{name}: the oracle did not report it: {how}")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The stress test fails on every faulty allocator (by a checker's report,
/// or by the corrupted heap crashing: either way it does not pass).
#[test]
fn stress_catches_a_double_handout() {
    let mut failures = Vec::new();
    for &(name, _) in &ALLOCATORS {
        match fails_in_child("stress", name) {
            Ok(how) => println!("{name}: the faulty stress run failed; {how}"),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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

/// The oracle property as a runner: deterministic inputs (the same for the
/// healthy and the faulty run), no shrinking (a faulty heap is not rerun).
fn run_property(a: &dyn GlobalAlloc) -> Result<(), String> {
    let config = Config {
        cases: 64,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&ops_strategy(), |ops| {
            run_oracle(a, &ops).map_err(TestCaseError::fail)
        })
        .map_err(|e| match e {
            TestError::Fail(reason, _) => reason.to_string(),
            TestError::Abort(reason) => format!("aborted: {reason}"),
        })
}

/// The child half of the tests above, run only when they re-execute this
/// binary with `--ignored` (so a normal run does not count it as a pass).
/// Runs the check healthy, then with the fault armed; panics if the faulty
/// run fails.
#[test]
#[ignore = "the child process of the teeth tests; they run it with --ignored"]
fn child() {
    let what = std::env::var(CHILD).expect("run by the teeth tests, which set the mode");
    let (mode, name) = what.split_once(':').expect("mode:name");
    let a = allocator(name);
    let run = || match mode {
        "oracle" => run_property(a),
        "stress" => run_stress(a, stress_config()).map(|r| println!("{r:?}")),
        _ => panic!("unknown mode {mode}"),
    };
    if let Err(e) = run() {
        panic!("{mode} on healthy {name} failed: {e}");
    }
    println!("{mode} on {name}: {HEALTHY}");
    // SAFETY: a child process that runs nothing else and whose heap is
    // discarded when it exits.
    let _armed = unsafe { Armed::new() };
    match run() {
        Ok(()) => println!("{mode} on faulty {name} passed"),
        Err(e) => panic!("{CAUGHT} {e}"),
    }
}
