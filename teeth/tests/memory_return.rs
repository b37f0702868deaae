//! The memory-return checks of `tests/memory_return.rs` can fail: with the
//! `KeepPages` fault armed, the pools never send free blocks home (as in an
//! allocator without a page heap), and the same scenarios must then report a
//! phase-change peak near twice the memory held and memory that never comes
//! back. One test, because the scenarios measure this process's RSS.

#[path = "../../tests/memory/mod.rs"]
mod memory;

use memory::{phase_change, producer_consumer, report, return_after_delay};
use shoalloc::internals::fault::{set, Fault};
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn without_a_page_heap_the_memory_checks_fail() {
    // SAFETY: the fault only leaks memory into the class stacks; this test
    // process is discarded afterwards.
    unsafe { set(Fault::KeepPages, true) };
    let n = 64 * MIB;
    let m = phase_change(n);
    report("phase change, pages kept", &m);
    assert!(
        m.peak >= n + n / 4,
        "the phase-change check would pass with pages kept: peak {} MiB",
        m.peak / MIB
    );
    assert!(
        m.end >= 16 * MIB,
        "memory came back with pages kept: {} MiB",
        m.end / MIB
    );
    shoalloc::set_purge_delay(Duration::from_millis(20));
    let m = return_after_delay(2, 32 * MIB, Duration::from_secs(1));
    report("return after delay, pages kept", &m);
    assert!(
        m.end >= 16 * MIB,
        "memory came back with pages kept: {} MiB",
        m.end / MIB
    );
    let m = producer_consumer(64 * MIB);
    report("producer/consumer, pages kept", &m);
    assert!(
        m.end >= 16 * MIB,
        "memory came back with pages kept: {} MiB",
        m.end / MIB
    );
}
