//! The check that freed huge buffers are reused without paying for their
//! pages again, shared by `tests/large_reuse.rs` and its teeth
//! (`teeth/tests/large_reuse.rs`, with `Fault::NoHugeReuse` armed).
//!
//! The next request of a similar size must get a parked mapping whose pages
//! are still resident, and a larger request must move the largest parked
//! mapping's pages into its own (`mremap`), so only the rest is faulted in.
//! Page faults are counted for this thread alone (`RUSAGE_THREAD`); the
//! binaries that call this hold no other test, so nothing else takes the
//! parked mappings first. A control allocation that the park cannot keep
//! (over its 64 MiB limit) must fault every page: that shows the count
//! measures what the reuse checks rely on.

use shoalloc::Shoal;
use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

static SHOAL: Shoal = Shoal::new();
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn faults() -> i64 {
    // SAFETY: getrusage writes the struct it is given.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut r), 0);
        r.ru_minflt
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).unwrap()
}

/// Allocates `size` bytes (zeroed if asked), writes one byte per page, and
/// returns the pointer and the page faults that cost.
fn alloc_touch(size: usize, zeroed: bool) -> (*mut u8, i64) {
    // SAFETY: a non-zero layout.
    let p = unsafe {
        if zeroed {
            SHOAL.alloc_zeroed(layout(size))
        } else {
            SHOAL.alloc(layout(size))
        }
    };
    assert!(!p.is_null());
    let before = faults();
    for i in (0..size).step_by(PAGE) {
        // SAFETY: inside the allocation.
        unsafe { p.add(i).write(0xA5) };
    }
    (p, faults() - before)
}

fn free(p: *mut u8, size: usize) {
    // SAFETY: allocated with this layout, freed once.
    unsafe { SHOAL.dealloc(p, layout(size)) };
}

/// Runs the checks; `Err` says which one failed.
pub fn check_huge_reuse() -> Result<(), String> {
    // No purge of the park while the test runs.
    shoalloc::set_purge_delay(Duration::from_secs(60));

    // Control: too big to park, so the second one is fresh memory again.
    let big = 80 * MIB;
    let (p, _) = alloc_touch(big, false);
    free(p, big);
    let (p, control) = alloc_touch(big, false);
    free(p, big);
    let pages = (big / PAGE) as i64;
    if control < pages * 9 / 10 {
        return Err(format!(
            "control: {control} faults for {pages} fresh pages — the count does not see faults"
        ));
    }

    // A smaller request reuses a parked, resident mapping.
    let (a, _) = alloc_touch(20 * MIB, false);
    free(a, 20 * MIB);
    let (b, reuse) = alloc_touch(12 * MIB, false);
    if reuse >= (12 * MIB / PAGE) as i64 / 10 {
        return Err(format!(
            "reuse: {reuse} faults for 12 MiB in a parked 20 MiB mapping"
        ));
    }

    // A larger request than anything parked: the largest parked mapping's
    // pages move into it, and only the rest faults.
    free(b, 12 * MIB);
    let (c, grow) = alloc_touch(40 * MIB, false);
    let fresh_pages = ((40 - 20) * MIB / PAGE) as i64;
    if grow >= fresh_pages + fresh_pages / 10 {
        return Err(format!(
            "growth: {grow} faults for 40 MiB with 20 MiB parked (about {fresh_pages} expected)"
        ));
    }

    // Memory that moved keeps nothing of its past when asked for zeroes.
    free(c, 40 * MIB);
    let (d, _) = alloc_touch(8 * MIB, false);
    free(d, 8 * MIB);
    // SAFETY: a non-zero layout.
    let z = unsafe { SHOAL.alloc_zeroed(layout(48 * MIB)) };
    assert!(!z.is_null());
    for i in (0..48 * MIB).step_by(PAGE / 2) {
        // SAFETY: inside the allocation.
        if unsafe { z.add(i).read() } != 0 {
            return Err(format!("byte {i} of a zeroed reuse is not zero"));
        }
    }
    free(z, 48 * MIB);
    shoalloc::collect();
    Ok(())
}
