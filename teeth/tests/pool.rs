//! The pool checkers can fail: with `Fault::PoolKeepsFlushed` armed (a full
//! thread cache sends half of itself to the shared stack but keeps one of
//! those objects too), both the pool oracle and the cross-thread stress of
//! `tests/pool.rs` fail: an object handed to a second holder, or, when the
//! second holding never overlaps, an object dropped twice (the census
//! check after the pool's drop). Each faulty run follows
//! the same run with the fault disarmed, which must pass.
//!
//! Each check runs in a child process (this binary, re-executed): once an
//! object has two holders, both give it back and a later drop may drop it
//! twice, which can crash the process — the checker prints its finding before
//! that can happen, and the parent looks for it.

#[path = "../../tests/pool_checks/mod.rs"]
mod pool_checks;

use pool_checks::{run_pool_oracle, run_pool_stress, PoolOp, PoolStress, CAUGHT};
use shoalloc::internals::fault::{set, Fault};
use std::process::Command;

/// Makes the re-executed binary run one check: `oracle` or `stress`.
const CHILD: &str = "SHOALLOC_POOL_TEETH_CHILD";
/// What a child prints once its healthy run has passed.
const HEALTHY: &str = "healthy run passed";

/// Ten rounds of taking ten objects and giving them all back: with a cache
/// of four, every round flushes, and the next round takes from the shared
/// stack what the flush sent there.
fn rounds() -> Vec<PoolOp> {
    let mut ops = Vec::new();
    for _ in 0..10 {
        ops.extend((0..10).map(|_| PoolOp::Get(3)));
        ops.push(PoolOp::PutAll);
    }
    ops
}

fn stress() -> PoolStress {
    PoolStress {
        threads: 2,
        per_thread: 20_000,
        window: 16,
        thread_cache: 8,
        max_idle: 64,
    }
}

fn check(mode: &str) -> Result<(), String> {
    match mode {
        "oracle" => run_pool_oracle(&rounds()),
        "stress" => run_pool_stress(stress()).map(|_| ()),
        _ => panic!("unknown mode {mode}"),
    }
}

/// The child: the healthy run, then the faulty one; exits at once (no
/// drops) with status 1 if the faulty run failed as it should.
#[test]
#[ignore = "run by the teeth tests in a child process"]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    check(&mode).unwrap_or_else(|e| panic!("the healthy {mode} run failed: {e}"));
    println!("{HEALTHY}");
    // SAFETY: this process runs nothing else and exits right after the
    // faulty run, never reusing its heap.
    unsafe { set(Fault::PoolKeepsFlushed, true) };
    let faulty = check(&mode);
    std::process::exit(if faulty.is_err() { 1 } else { 0 });
}

fn caught_in_child(mode: &str) -> Result<String, String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains(HEALTHY) {
        return Err(format!(
            "{mode}: the healthy run did not pass:\n{stdout}\n{stderr}"
        ));
    }
    if out.status.success() {
        return Err(format!(
            "{mode}: passed on a pool that keeps flushed objects:\n{stderr}"
        ));
    }
    stderr
        .lines()
        .find(|l| l.contains(CAUGHT))
        .map(|l| l.trim().to_string())
        .ok_or_else(|| {
            format!(
                "{mode}: failed ({}) without reporting two holders:\n{stderr}",
                out.status
            )
        })
}

#[test]
fn pool_oracle_catches_an_object_kept_in_two_places() {
    let how = caught_in_child("oracle").unwrap_or_else(|e| panic!("{e}"));
    println!("{how}");
}

#[test]
fn pool_stress_catches_an_object_kept_in_two_places() {
    let how = caught_in_child("stress").unwrap_or_else(|e| panic!("{e}"));
    println!("{how}");
}
