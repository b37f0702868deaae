//! `Pool<T>`: the oracle (one holder at a time, reset ran, contents kept,
//! nothing lost) as a property over random programs, and the cross-thread
//! ring stress. Their teeth: `teeth/tests/pool.rs`.

mod pool_checks;

use pool_checks::{pool_ops, run_pool_oracle, run_pool_stress, PoolStress};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn pool_oracle_holds_for_random_programs(ops in pool_ops()) {
        run_pool_oracle(&ops).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn pool_survives_objects_returned_on_other_threads() {
    for threads in [1, 2, 4] {
        let cfg = PoolStress {
            threads,
            per_thread: 200_000,
            window: 16,
            thread_cache: 8,
            max_idle: 64,
        };
        let report = run_pool_stress(cfg).unwrap_or_else(|e| panic!("{threads} threads: {e}"));
        // Reuse happened: at most the objects in flight, the idle bound and
        // the caches were ever alive at once, and surplus drops rebuild only
        // a fraction of what was taken.
        let taken = threads * cfg.per_thread;
        assert!(
            report.made < taken / 4,
            "{threads} threads: {} objects built for {taken} takes",
            report.made
        );
    }
}
