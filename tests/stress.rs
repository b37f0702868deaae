//! Multithreaded stress: waves of 8 threads with random sizes and alignments,
//! a third or more of all frees on another thread, threads exiting while their
//! caches hold blocks, and every block's contents checked when it is freed.

mod support;

use shoalloc::{GilAlloc, Shoal};
use std::time::Duration;
use support::{run_stress, StressConfig};

static SHOAL: Shoal = Shoal::new();
static GIL: GilAlloc = GilAlloc::new();

fn config() -> StressConfig {
    StressConfig {
        threads: 8,
        duration: Duration::from_secs(3),
        min_waves: 4,
        ops_per_thread: 4000,
        max_size: 1 << 20,
    }
}

fn check(name: &str, report: support::StressReport) {
    println!("{name}: {report:?}");
    assert!(
        report.threads_started >= 16,
        "threads were created and exited"
    );
    let share = report.remote_frees as f64 / report.frees as f64;
    assert!(
        share >= 0.30,
        "{name}: only {:.0}% of frees were remote",
        share * 100.0
    );
}

#[test]
fn shoal_survives_cross_thread_churn() {
    let report = run_stress(&SHOAL, config()).unwrap_or_else(|e| panic!("shoal: {e}"));
    check("shoal", report);
}

#[test]
fn gil_survives_cross_thread_churn() {
    let report = run_stress(&GIL, config()).unwrap_or_else(|e| panic!("gil: {e}"));
    check("gil", report);
}
