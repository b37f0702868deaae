//! Single-threaded checks on every allocator of `support::ALLOCATORS`, called
//! directly through `GlobalAlloc`: random operation sequences checked against
//! a shadow model of the heap (no overlap, alignment, each block handed out
//! once, contents preserved), an exhaustive sweep of the size classes and
//! alignments, and realloc / `alloc_zeroed` across the small and large paths.

mod support;

use proptest::prelude::*;
use support::{
    check_realloc_round_trip, check_zeroed_after_dirty, ops_strategy, run_oracle, sweep_ops,
    ALLOCATORS,
};

/// Runs `check` on every allocator; panics naming each one that failed.
fn on_every_allocator(check: impl Fn(&dyn std::alloc::GlobalAlloc) -> Result<(), String>) {
    let failures: Vec<String> = ALLOCATORS
        .iter()
        .filter_map(|&(name, a)| check(a).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

proptest! {
    // 256 cases, each run on every allocator.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_allocator_matches_the_shadow_model(ops in ops_strategy()) {
        for &(name, a) in &ALLOCATORS {
            if let Err(e) = run_oracle(a, &ops) {
                return Err(TestCaseError::fail(format!("{name}: {e}")));
            }
        }
    }
}

/// Exhaustive sweep of the size classes and alignments.
#[test]
fn every_size_class_and_alignment() {
    let ops = sweep_ops();
    on_every_allocator(|a| run_oracle(a, &ops));
}

#[test]
fn realloc_through_small_classes_into_large_and_back_keeps_contents() {
    on_every_allocator(check_realloc_round_trip);
}

#[test]
fn alloc_zeroed_clears_dirtied_blocks() {
    on_every_allocator(check_zeroed_after_dirty);
}
