//! The final RSS of a cell: what the process still holds once the workload
//! freed everything and the allocator has had the chance to give memory
//! back, as a long-running program would see it.
//!
//! Allocators do not return freed memory at once: they keep it for a purge
//! delay, in case the program allocates again, and most of them purge only
//! from inside their own calls, having no background thread. Read right
//! after the last free, RSS would show the delay rather than what an
//! allocator keeps for good. So the child waits [`PURGE_WAIT`], [`nudge`]s
//! the allocator with a little activity, and only then reads
//! `/proc/self/statm`. No allocator-specific collect function is called:
//! each allocator is left to its own policy, whatever its delay (jemalloc's
//! dirty-page decay, for one, takes seconds by default).

use crate::workloads::Raw;
use std::hint::black_box;
use std::time::Duration;

/// How long the child sleeps between the workload's end and the nudge:
/// longer than the purge delays of the compared allocators that have one
/// (shoal's default is 100 ms, mimalloc's 10 ms), so freed memory is due to
/// be purged when the nudge comes.
pub const PURGE_WAIT: Duration = Duration::from_millis(300);

/// Rounds of the nudge.
const NUDGE_ROUNDS: usize = 8;

/// Blocks of each [`NUDGE_SIZES`] size allocated, then freed, per round:
/// more than a thread cache of any compared allocator serves without
/// touching its shared or page-level state (shoal's holds at most 128 blocks
/// of a class), as a program's continued activity would.
const NUDGE_BLOCKS: usize = 256;

/// A small-object size and a page-sized one, so that both an allocator's
/// small-object path and its page-level path see activity.
const NUDGE_SIZES: [usize; 2] = [64, 4096];

/// Allocator activity on the calling thread: allocators without a background
/// thread purge what is due when they are called. Under a millisecond; the
/// blocks are freed at once, so the nudge itself leaves nothing resident but
/// what the allocator keeps.
fn nudge() {
    let mut held = Vec::with_capacity(NUDGE_BLOCKS * NUDGE_SIZES.len());
    for _ in 0..NUDGE_ROUNDS {
        for _ in 0..NUDGE_BLOCKS {
            for size in NUDGE_SIZES {
                let b = Raw::new(size, 8);
                black_box(b.as_ptr());
                held.push(b);
            }
        }
        held.clear();
    }
}

/// What [`nudge`] does, for the reports.
pub fn nudge_text() -> String {
    let sizes: Vec<String> = NUDGE_SIZES
        .iter()
        .map(|&s| match s % 1024 {
            0 => format!("{} KiB", s / 1024),
            _ => format!("{s} B"),
        })
        .collect();
    format!(
        "{NUDGE_ROUNDS} rounds of {NUDGE_BLOCKS} allocations of {} each, then their frees",
        sizes.join(" and ")
    )
}

/// Waits out the purge delay, nudges the allocator and returns the resident
/// set (KiB). Call after the workload returned and freed everything.
pub fn measure() -> Option<u64> {
    std::thread::sleep(PURGE_WAIT);
    nudge();
    rss_kib()
}

/// This process's resident set, from `/proc/self/statm` (KiB).
fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64 / 1024)
}
