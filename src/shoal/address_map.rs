//! The address map: which 4 MiB granules of the address space hold our memory, and of what kind.
//!
//! `free` in C receives a bare pointer. To answer "is this ours, and is it a
//! small block or a large object?" without touching memory that may not be
//! mapped, every 4 MiB-aligned granule of the 48-bit user address space has
//! two bits here (16 MiB of zero-initialised static memory, of which the kernel
//! backs only the pages actually touched):
//!
//! | bits | meaning |
//! |---|---|
//! | `00` | not ours |
//! | `01` | a small-block segment (its header at the granule start) |
//! | `10` | a large object's header at the granule start |
//!
//! A pointer `p` we handed out is looked up by the granule of `p - 1`, which
//! always starts with the header of the segment or large object `p` belongs
//! to (see [`super::large`] for why that holds for large objects too). A
//! granule is never claimed twice: segments occupy whole granules, and the
//! header granule of a large object lies inside its own mapping.

use crate::os::{is_user_address, ADDRESS_BITS};
use crate::sync::statics::{AtomicU64, Ordering};

/// log2 of a granule: 4 MiB, the size and alignment of a segment.
pub const GRANULE_SHIFT: u32 = 22;

/// The kind of memory a granule holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Granule {
    /// Not allocated by us.
    Foreign = 0,
    /// A segment of small blocks.
    Small = 1,
    /// The user pointer of a large object.
    Large = 2,
}

const GRANULES: usize = 1 << (ADDRESS_BITS - GRANULE_SHIFT);
const PER_WORD: usize = 32;
static MAP: [AtomicU64; GRANULES / PER_WORD] = [const { AtomicU64::new(0) }; GRANULES / PER_WORD];

#[inline]
fn slot(addr: usize) -> (usize, u32) {
    let g = addr >> GRANULE_SHIFT;
    (g / PER_WORD, 2 * (g % PER_WORD) as u32)
}

/// Records that the granule containing `addr` now holds `kind`.
pub(crate) fn mark(addr: usize, kind: Granule) {
    debug_assert!(is_user_address(addr));
    let (word, shift) = slot(addr);
    // Release: a reader that sees the mark also sees the header written before.
    MAP[word].fetch_or((kind as u64) << shift, Ordering::Release);
}

/// Records that the granule containing `addr` no longer holds our memory.
pub(crate) fn clear(addr: usize) {
    let (word, shift) = slot(addr);
    MAP[word].fetch_and(!(3u64 << shift), Ordering::Release);
}

/// What the granule containing `addr` holds.
#[inline]
pub(crate) fn lookup(addr: usize) -> Granule {
    if !is_user_address(addr) {
        return Granule::Foreign;
    }
    let (word, shift) = slot(addr);
    match (MAP[word].load(Ordering::Acquire) >> shift) & 3 {
        1 => Granule::Small,
        2 => Granule::Large,
        _ => Granule::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_lookup_clear() {
        // An address far from anything the tests map.
        let addr = 0x3f00_0000_0000usize;
        assert_eq!(lookup(addr), Granule::Foreign);
        mark(addr, Granule::Large);
        assert_eq!(lookup(addr + 12345), Granule::Large);
        assert_eq!(lookup(addr + (1 << GRANULE_SHIFT)), Granule::Foreign);
        clear(addr);
        assert_eq!(lookup(addr), Granule::Foreign);
        assert_eq!(lookup(usize::MAX - 5), Granule::Foreign);
    }
}
