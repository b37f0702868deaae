//! Encoded free-list links for the secure small path.
//!
//! A free block's first word names the next free block. In `Shoal` it is a
//! plain address; a program that writes a heap address into a freed block
//! (a use-after-free write, an overflow from the block below) then chooses
//! what a later allocation follows. The secure path stores the word encoded
//! with two random keys of the block's segment ([`LinkKeys`], written once
//! when the segment is mapped, in a line of its own):
//!
//! ```text
//! stored = rotate_left(next ^ xor, add % 64) + add      (wrapping)
//! ```
//!
//! so a value the program writes decodes to an address it did not choose,
//! which the secure checks (`checked_segments`, `block_state`) then reject
//! with "corrupted free list" before it is followed — even when the value
//! written was the address of a real free block of the class, which the
//! checks alone would accept. Reading a freed block's word does not give
//! away a heap address either. The end of a list (null) is encoded too, so
//! no word reads as zero.
//!
//! What it does not stop: a program that copies an encoded word from one
//! freed block of a segment into another replays a link the checks accept;
//! the keys stay the segment's for the life of the process. The keys come
//! from `getrandom` (`os::random_u64`).
//!
//! Provenance: the stored pointer keeps the provenance of `next` and only
//! its address is replaced ([`with_addr`]), so decoding a word the allocator
//! wrote gives back a pointer as usable as `next`; a word the program wrote
//! decodes to an address that is checked against the address map before
//! anything is read through it.

use super::pool::FreeBlock;
use super::segment::{KEYS_OFFSET, SEGMENT_SIZE};

/// A segment's two link keys (see the module docs).
///
/// Invariant: written once, by the thread that maps the segment, before the
/// segment is published; never written again.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkKeys {
    xor: u64,
    add: u64,
}

impl LinkKeys {
    /// Keys that encode nothing: the stored word is the address.
    #[cfg(any(test, shoalloc_fault))]
    pub const PLAIN: Self = Self { xor: 0, add: 0 };

    /// Fresh random keys for a new segment.
    pub fn fresh() -> Self {
        #[cfg(shoalloc_fault)]
        if crate::fault::is_armed(crate::fault::Fault::PlainLinks) {
            return Self::PLAIN;
        }
        Self {
            xor: crate::os::random_u64(),
            add: crate::os::random_u64(),
        }
    }

    /// The word that stands for address `next`.
    #[inline(always)]
    pub const fn encode(self, next: usize) -> usize {
        ((next as u64 ^ self.xor)
            .rotate_left((self.add % 64) as u32)
            .wrapping_add(self.add)) as usize
    }

    /// The address that word `word` stands for.
    #[inline(always)]
    pub const fn decode(self, word: usize) -> usize {
        ((word as u64)
            .wrapping_sub(self.add)
            .rotate_right((self.add % 64) as u32)
            ^ self.xor) as usize
    }
}

/// `ptr` moved to address `addr`, keeping its provenance (`with_addr`,
/// which is newer than this crate's minimum Rust).
#[inline(always)]
fn with_addr(ptr: *mut FreeBlock, addr: usize) -> *mut FreeBlock {
    ptr.wrapping_byte_add(addr.wrapping_sub(ptr as usize))
}

/// The keys of the segment that holds `block`.
///
/// # Safety
/// `block` lies in a published segment.
#[inline(always)]
unsafe fn keys_of(block: *mut FreeBlock) -> LinkKeys {
    let offset = block as usize & (SEGMENT_SIZE - 1);
    // SAFETY: the caller says a segment holds `block`; its keys sit at
    // `KEYS_OFFSET`, were written before the segment was published and are
    // never written again, and stay mapped for the process's lifetime. The
    // address is reached from `block`, so it keeps the mapping's provenance.
    unsafe {
        block
            .cast::<u8>()
            .wrapping_sub(offset)
            .wrapping_add(KEYS_OFFSET)
            .cast::<LinkKeys>()
            .read()
    }
}

/// The successor stored (encoded) in free block `block`.
///
/// # Safety
/// `block` is a free block in a published segment, held by the caller.
#[inline(always)]
pub unsafe fn next_of(block: *mut FreeBlock) -> *mut FreeBlock {
    // SAFETY: the caller holds the free block; word 0 is its link.
    let word = unsafe { (*block).next };
    // SAFETY: forwarded contract.
    let keys = unsafe { keys_of(block) };
    with_addr(word, keys.decode(word as usize))
}

/// Stores `next`, encoded, as the successor of free block `block`.
///
/// # Safety
/// As [`next_of`].
#[inline(always)]
pub unsafe fn set_next(block: *mut FreeBlock, next: *mut FreeBlock) {
    // SAFETY: forwarded contract.
    let keys = unsafe { keys_of(block) };
    // SAFETY: the caller holds the free block; word 0 is its link.
    unsafe { (*block).next = with_addr(next, keys.encode(next as usize)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_inverts_encoding_and_a_plain_address_decodes_elsewhere() {
        let keys = LinkKeys {
            xor: 0x9e37_79b9_7f4a_7c15,
            add: 0x2545_f491_4f6c_dd1d,
        };
        for next in [0usize, 16, 0x7f00_1234_5670, usize::MAX & !15] {
            assert_eq!(keys.decode(keys.encode(next)), next);
            if next != 0 {
                assert_ne!(keys.decode(next), next, "{next:#x} decodes to itself");
            }
        }
        assert_ne!(keys.encode(0), 0, "the end of a list reads as zero");
        assert_eq!(LinkKeys::PLAIN.encode(0x1230), 0x1230);
    }

    #[test]
    fn fresh_keys_differ() {
        assert_ne!(LinkKeys::fresh(), LinkKeys::fresh());
    }
}
