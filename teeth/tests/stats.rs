//! The statistics check of `tests/stats.rs` can fail: with the
//! `StatsForgetRefills` fault armed, the class pools hand out batches
//! without counting them, and the check must then report refills that did
//! not move.

// Only the small-block check has a fault aimed at it here.
#[allow(dead_code)]
#[path = "../../tests/stats_check/mod.rs"]
mod stats_check;

use shoalloc::internals::fault::{set, Fault};

#[test]
fn stats_that_forget_refills_fail_the_check() {
    stats_check::small_blocks_move_the_numbers(20_000).expect("the check passes unfaulted");
    // SAFETY: the fault only skips a statistics counter.
    unsafe { set(Fault::StatsForgetRefills, true) };
    let caught = stats_check::small_blocks_move_the_numbers(20_000);
    // SAFETY: as above.
    unsafe { set(Fault::StatsForgetRefills, false) };
    let err = caught.expect_err("the check passed with refills forgotten");
    assert!(err.contains("refills"), "failed for another reason: {err}");
}
