//! Memory flows back: freed small and medium memory serves other size
//! classes, and goes back to the OS after the purge delay or on `collect()`.
//!
//! The scenarios (`memory/mod.rs`) measure this process's resident memory, so
//! they run one after the other in a single test; the teeth member runs the
//! same scenarios against an allocator that never sends pages home and
//! asserts that they fail.

mod memory;

use memory::{phase_change, producer_consumer, report, return_after_delay};
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn freed_memory_is_reused_across_classes_and_returned() {
    shoalloc::set_purge_delay(Duration::from_millis(20));

    // Peak near N, not 2N: the 64-byte pages serve the 1 KiB and medium phase.
    let n = 128 * MIB;
    let m = phase_change(n);
    report("phase change", &m);
    assert!(
        m.peak < n + n / 4,
        "phase change peaked at {} MiB over {} MiB held: freed pages were not reused",
        m.peak / MIB,
        n / MIB
    );
    assert!(
        m.end < 16 * MIB,
        "phase change: {} MiB still resident after collect()",
        m.end / MIB
    );

    // Return by the tick alone (no collect), across threads.
    let m = return_after_delay(4, 48 * MIB, Duration::from_secs(3));
    report("return after delay", &m);
    assert!(
        m.peak > 100 * MIB,
        "the workload did not run: peak {} MiB",
        m.peak / MIB
    );
    assert!(
        m.end < 16 * MIB,
        "{} MiB still resident 3 s after everything was freed",
        m.end / MIB
    );

    // Producer/consumer: blocks freed by another thread still take their pages home.
    let m = producer_consumer(128 * MIB);
    report("producer/consumer", &m);
    assert!(
        m.peak > 100 * MIB,
        "the workload did not run: peak {} MiB",
        m.peak / MIB
    );
    assert!(
        m.end < 16 * MIB,
        "producer/consumer: {} MiB still resident after collect()",
        m.end / MIB
    );
}
