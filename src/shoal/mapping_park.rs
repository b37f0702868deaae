//! A small lock-free park of freed large-object mappings, kept for reuse.
//!
//! An `mmap` costs a system call, an over-map and two trims, and every page is
//! faulted in and zeroed again; programs that allocate and free buffers of a
//! few hundred KiB in a loop would pay that every time. So freed mappings are
//! parked in a fixed number of entries, up to a byte cap, and reused by the next
//! request they fit (the smallest that fits).
//!
//! # Protocol
//! An entry is one atomic word: `page number of the base << 20 | page count`,
//! 0 when empty. Parking is a CAS from 0; taking is a CAS from the observed
//! word to 0. If an entry is emptied and refilled with the *same* mapping
//! between another thread's load and CAS, that CAS takes a mapping that is
//! free again — harmless, so the entries need no ABA tag. `bytes` is reserved
//! (fetch_add) before parking and given back when parking fails, so it never
//! exceeds the cap by more than the racing reservations that are about to be
//! undone. Release on park and Acquire on take order the freeing thread's
//! last writes before the next owner's first ones.
//!
//! The park knows nothing of `mmap`: it stores and returns address ranges,
//! which is what lets loom model it (`loom_tests/mapping_park.rs`).

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Bits of an entry word that hold the page count.
const PAGES_BITS: u32 = 20;
/// Page size the entry words count in.
const PAGE: usize = crate::os::PAGE;

/// Up to `ENTRIES` parked mappings, at most `max_bytes` in all, each at most
/// `max_mapping` bytes (and below 4 GiB, the page-count field's range).
#[derive(Debug)]
pub struct MappingPark<const ENTRIES: usize> {
    /// Invariant: every non-zero entry names a distinct mapping that no
    /// allocation uses; `bytes` ≥ the sum of their sizes.
    entries: [AtomicU64; ENTRIES],
    bytes: AtomicUsize,
    max_bytes: usize,
    max_mapping: usize,
}

fn pack(base: usize, size: usize) -> u64 {
    (((base / PAGE) as u64) << PAGES_BITS) | (size / PAGE) as u64
}

fn unpack(word: u64) -> (usize, usize) {
    (
        (word >> PAGES_BITS) as usize * PAGE,
        (word & ((1 << PAGES_BITS) - 1)) as usize * PAGE,
    )
}

impl<const ENTRIES: usize> MappingPark<ENTRIES> {
    /// An empty park.
    #[cfg(not(loom))]
    pub const fn new(max_bytes: usize, max_mapping: usize) -> Self {
        Self {
            entries: [const { AtomicU64::new(0) }; ENTRIES],
            bytes: AtomicUsize::new(0),
            max_bytes,
            max_mapping: min(max_mapping, ((1 << PAGES_BITS) - 1) * PAGE),
        }
    }

    /// An empty park (loom atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new(max_bytes: usize, max_mapping: usize) -> Self {
        Self {
            entries: core::array::from_fn(|_| AtomicU64::new(0)),
            bytes: AtomicUsize::new(0),
            max_bytes,
            max_mapping: min(max_mapping, ((1 << PAGES_BITS) - 1) * PAGE),
        }
    }

    /// Bytes parked (or being parked) right now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The smallest parked mapping of `need..=max` bytes, removed from the
    /// park: `(base, size)`. Best fit, so that big mappings stay for big
    /// requests.
    pub fn take(&self, need: usize, max: usize) -> Option<(usize, usize)> {
        // A CAS lost to a racing take or park means the entries changed:
        // look again, a few times, then give up (the caller maps afresh).
        for _ in 0..4 {
            if self.bytes.load(Ordering::Relaxed) < need {
                return None;
            }
            let mut best: Option<(&AtomicU64, u64, usize)> = None;
            for entry in &self.entries {
                let word = entry.load(Ordering::Relaxed);
                if word == 0 {
                    continue;
                }
                let size = unpack(word).1;
                if (need..=max).contains(&size) && best.is_none_or(|(_, _, s)| size < s) {
                    best = Some((entry, word, size));
                }
            }
            let (entry, word, size) = best?;
            if entry
                .compare_exchange(word, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.bytes.fetch_sub(size, Ordering::Relaxed);
                return Some(unpack(word));
            }
        }
        None
    }

    /// The largest parked mapping of more than one page and less than
    /// `below` bytes, removed from the park.
    pub fn take_largest(&self, below: usize) -> Option<(usize, usize)> {
        for _ in 0..4 {
            let mut best: Option<(&AtomicU64, u64, usize)> = None;
            for entry in &self.entries {
                let word = entry.load(Ordering::Relaxed);
                let size = unpack(word).1;
                if word != 0 && size > PAGE && size < below && best.is_none_or(|(_, _, s)| size > s)
                {
                    best = Some((entry, word, size));
                }
            }
            let (entry, word, size) = best?;
            if entry
                .compare_exchange(word, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.bytes.fetch_sub(size, Ordering::Relaxed);
                return Some(unpack(word));
            }
        }
        None
    }

    /// Any parked mapping, removed from the park (to give it back to the OS).
    pub fn take_any(&self) -> Option<(usize, usize)> {
        for entry in &self.entries {
            let word = entry.swap(0, Ordering::Acquire);
            if word != 0 {
                let (base, size) = unpack(word);
                self.bytes.fetch_sub(size, Ordering::Relaxed);
                return Some((base, size));
            }
        }
        None
    }

    /// Parks the free mapping `base..base + size` (page-aligned); `false`
    /// when it does not fit, in which case the caller still owns it.
    pub fn park(&self, base: usize, size: usize) -> bool {
        debug_assert!(base % PAGE == 0 && size % PAGE == 0 && size > 0);
        if size > self.max_mapping {
            return false;
        }
        if self.bytes.fetch_add(size, Ordering::Relaxed) + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        let word = pack(base, size);
        for entry in &self.entries {
            if entry
                .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        false
    }
}

const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn entry_words_round_trip() {
        let (base, size) = (0x7f12_3440_0000usize, 5 * PAGE);
        assert_eq!(unpack(pack(base, size)), (base, size));
    }

    #[test]
    fn take_respects_fit_and_caps() {
        let park = MappingPark::<2>::new(10 * PAGE, 4 * PAGE);
        assert!(!park.park(0x1000_0000, 5 * PAGE), "larger than max_mapping");
        assert!(park.park(0x1000_0000, 4 * PAGE));
        assert!(park.park(0x2000_0000, 2 * PAGE));
        assert!(!park.park(0x3000_0000, PAGE), "no free entry");
        assert_eq!(park.bytes(), 6 * PAGE);
        // Best fit: 1 page takes the 2-page mapping, not the 4-page one.
        assert_eq!(park.take(PAGE, usize::MAX), Some((0x2000_0000, 2 * PAGE)));
        assert_eq!(
            park.take(5 * PAGE, usize::MAX),
            None,
            "nothing large enough"
        );
        assert_eq!(park.take(PAGE, 3 * PAGE), None, "nothing small enough");
        assert_eq!(park.take(PAGE, 4 * PAGE), Some((0x1000_0000, 4 * PAGE)));
        assert_eq!(park.bytes(), 0);
        assert_eq!(park.take(PAGE, usize::MAX), None);
        assert!(park.park(0x1000_0000, 2 * PAGE));
        assert!(park.park(0x2000_0000, 3 * PAGE));
        assert_eq!(park.take_largest(3 * PAGE), Some((0x1000_0000, 2 * PAGE)));
        assert_eq!(park.take_largest(usize::MAX), Some((0x2000_0000, 3 * PAGE)));
        assert_eq!(park.take_largest(usize::MAX), None);
    }
}
