//! The unit map of one segment: which of its 64 units are taken, and which
//! free ones may still hold resident memory.
//!
//! A segment is cut into 64 *units* of 64 KiB. Pages of small blocks and
//! medium objects are *spans* of consecutive units. Two bitmap words per
//! segment say everything the page heap needs:
//!
//! | word | bit `u` set means |
//! |---|---|
//! | `used` | unit `u` belongs to a span, to the segment header, or to a purge in progress |
//! | `dirty` | unit `u` was used since it was last purged: its pages may be resident |
//!
//! Every change is one CAS (claim) or one `fetch_and`/`fetch_or` (release),
//! so spans are taken and given back without a lock, and neighbouring free
//! units coalesce by themselves: a run of zero bits is a free span of any
//! length up to the run.
//!
//! # Purging
//! A purge first *reserves* the free dirty units by setting their `used` bits
//! (one CAS), so no claim can take them while their pages are discarded; then
//! it discards them, clears their `dirty` bits and finally their `used` bits.
//! A claim therefore sees either the resident unit (dirty) or the purged one
//! (clean, reads as zero) — never one half-way through a purge. Claims report
//! whether the whole span was clean, which is what lets a zeroed allocation of
//! a medium object skip its `memset`.

use crate::sync::{AtomicU64, Ordering};

/// Units per segment: one bit each in a `u64`.
pub const UNITS: u32 = 64;

/// The bits of units `start .. start + units`.
#[inline]
pub const fn run_mask(start: u32, units: u32) -> u64 {
    debug_assert!(units >= 1 && start + units <= UNITS);
    (u64::MAX >> (UNITS - units)) << start
}

/// The lowest start of `units` consecutive set bits in `bits`.
#[inline]
pub fn find_run(bits: u64, units: u32) -> Option<u32> {
    debug_assert!((1..=UNITS).contains(&units));
    // After the loop, bit i is set iff bits i .. i + units are all set.
    let mut run = bits;
    let mut have = 1;
    while have < units && run != 0 {
        let step = have.min(units - have);
        run &= run >> step;
        have += step;
    }
    (run != 0).then(|| run.trailing_zeros())
}

/// The used and dirty bits of one segment's units.
///
/// Invariants: a set `used` bit has exactly one owner (the span that holds
/// the unit, the segment header, or the purge that reserved it); only that
/// owner clears it. `dirty` bits are set before a release clears `used` and
/// cleared only by the purge that reserved the unit, before it clears `used`.
#[derive(Debug)]
pub struct UnitMap {
    used: AtomicU64,
    dirty: AtomicU64,
}

impl UnitMap {
    /// A map whose `reserved` units (the header's) are used forever.
    pub fn new(reserved: u64) -> Self {
        Self {
            used: AtomicU64::new(reserved),
            dirty: AtomicU64::new(0),
        }
    }

    /// Takes `units` consecutive free units, preferring resident ones (no
    /// page faults to reuse them). Returns the first unit and whether the
    /// whole span is clean (never used since mapped or purged, so zero).
    pub fn claim(&self, units: u32) -> Option<(u32, bool)> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let free = !used;
            let warm = free & self.dirty.load(Ordering::Relaxed);
            let start = find_run(warm, units).or_else(|| find_run(free, units))?;
            let mask = run_mask(start, units);
            // Acquire: pairs with the Release of `release`/`finish_purge`, so
            // the `dirty` bits read below are those they left.
            match self.used.compare_exchange_weak(
                used,
                used | mask,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let clean = self.dirty.load(Ordering::Relaxed) & mask == 0;
                    return Some((start, clean));
                }
                Err(actual) => used = actual,
            }
        }
    }

    /// Gives back units `start .. start + units`, which the caller claimed.
    /// They count as dirty until a purge discards them.
    pub fn release(&self, start: u32, units: u32) {
        let mask = run_mask(start, units);
        self.dirty.fetch_or(mask, Ordering::Relaxed);
        // Release: the next claimer of these units sees the dirty bits and
        // every write the caller made to the memory.
        let old = self.used.fetch_and(!mask, Ordering::Release);
        debug_assert_eq!(old & mask, mask, "released units that were not used");
    }

    /// Reserves every free dirty unit for a purge and returns their bits
    /// (0: nothing to purge). The caller must discard them and then call
    /// [`UnitMap::finish_purge`] with the same bits.
    pub fn reserve_dirty(&self) -> u64 {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let purge = self.dirty.load(Ordering::Relaxed) & !used;
            if purge == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used | purge,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return purge,
                Err(actual) => used = actual,
            }
        }
    }

    /// Ends a purge of the units `mask` reserved by [`UnitMap::reserve_dirty`]:
    /// they are clean and free again.
    pub fn finish_purge(&self, mask: u64) {
        self.dirty.fetch_and(!mask, Ordering::Relaxed);
        // Release: a claimer that sees the units free sees them clean.
        self.used.fetch_and(!mask, Ordering::Release);
    }

    /// The `used` bits now (for statistics and tests; racy by nature).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Free units that may still be resident (racy, as [`UnitMap::used`]).
    pub fn dirty_free(&self) -> u64 {
        self.dirty.load(Ordering::Relaxed) & !self.used.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn runs_are_found_exactly() {
        for units in 1..=UNITS {
            for start in 0..=(UNITS - units) {
                let m = run_mask(start, units);
                assert_eq!(find_run(m, units), Some(start));
                if units < UNITS {
                    assert_eq!(find_run(m, units + 1), None);
                }
                if units > 1 {
                    // One hole in the middle breaks the run.
                    let hole = m & !(1 << (start + units / 2));
                    assert_eq!(find_run(hole, units), None);
                }
            }
        }
        assert_eq!(find_run(0b1101_1110, 3), Some(1));
        assert_eq!(find_run(0b1101_1110, 4), Some(1));
        assert_eq!(find_run(0b1101_1110, 5), None);
        assert_eq!(find_run(u64::MAX, 64), Some(0));
    }

    #[test]
    fn claim_release_purge() {
        let map = UnitMap::new(1);
        let (a, clean) = map.claim(3).unwrap();
        assert_eq!((a, clean), (1, true));
        let (b, _) = map.claim(60).unwrap();
        assert_eq!(b, 4);
        assert_eq!(map.claim(1), None, "full");
        map.release(a, 3);
        // The released units are preferred and reported dirty.
        let (c, clean) = map.claim(2).unwrap();
        assert_eq!((c, clean), (1, false));
        map.release(c, 2);
        let purge = map.reserve_dirty();
        assert_eq!(purge, run_mask(1, 3));
        assert_eq!(map.claim(1), None, "reserved units cannot be claimed");
        map.finish_purge(purge);
        assert_eq!(map.claim(3), Some((1, true)), "purged units are clean");
        map.release(b, 60);
        assert_eq!(map.dirty_free(), run_mask(4, 60));
    }
}
