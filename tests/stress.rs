//! Multithreaded stress on every allocator of `support::ALLOCATORS`: waves of
//! 8 threads with random sizes and alignments, a third or more of all frees on
//! another thread, threads exiting while their caches (where the allocator has
//! any) hold blocks, and every block's contents checked when it is freed.

mod support;

use std::time::Duration;
use support::{run_stress, StressConfig, StressReport, ALLOCATORS};

fn config() -> StressConfig {
    StressConfig {
        threads: 8,
        duration: Duration::from_secs(3),
        min_waves: 4,
        ops_per_thread: 4000,
        // Past the largest medium object (2 MiB): every kind of object.
        max_size: 3 << 20,
    }
}

/// What a passing run must also show: thread churn, and enough remote frees.
fn check(report: &StressReport) -> Result<(), String> {
    if report.threads_started < 16 {
        return Err(format!(
            "only {} threads were created and exited",
            report.threads_started
        ));
    }
    let share = report.remote_frees as f64 / report.frees as f64;
    if share < 0.30 {
        return Err(format!("only {:.0}% of frees were remote", share * 100.0));
    }
    Ok(())
}

/// One allocator after the other: each run keeps both cores busy with its own
/// 8 threads.
#[test]
fn every_allocator_survives_cross_thread_churn() {
    let mut failures = Vec::new();
    for &(name, a) in &ALLOCATORS {
        match run_stress(a, config()).and_then(|r| check(&r).map(|()| r)) {
            Ok(report) => println!("{name}: {report:?}"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
