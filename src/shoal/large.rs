//! Large (huge) objects: anything above the largest medium object or more
//! aligned than a unit (64 KiB), mapped from the OS one object at a time and
//! unmapped on free.
//!
//! Layout of one large object's mapping (`lead = max(PAGE, align)`):
//!
//! ```text
//! base: aligned to max(4 MiB, align)     ptr = base + lead        base + map_size
//! | LargeHeader | ... never touched ... | user bytes ............ |
//! ```
//!
//! The user pointer honours any power-of-two alignment. The header sits at
//! the start of the 4 MiB granule that holds `ptr - 1`: that is `base` when
//! `lead < 4 MiB`, and `ptr - 4 MiB` (still inside the mapping, since then
//! `lead = align >= 4 MiB`) otherwise. Small-block segments keep their header
//! at the same place — the granule of `ptr - 1` — so one rule finds the
//! header of anything we allocated, and the [address map](super::address_map)
//! entry of that granule says which kind of header it is. That granule lies
//! wholly inside this mapping or starts at `base`, so no other mapping of ours
//! shares it, and the header read is always of mapped memory.
//!
//! Pages between the header and the user bytes are never touched, so they
//! cost address space, not memory; fresh pages are zero, so `alloc_zeroed`
//! needs no `memset` for them.
//!
//! Freed mappings of up to [`PARK_MAX_MAPPING`] bytes are parked in the page
//! heap's mapping park (at most `segment::PARK_MAX_BYTES` in all; see
//! `segment::park`) and reused by the next request they fit, saving the
//! system calls and the page faults. Parked memory stays resident until the
//! purge: one purge delay after the last park (or at `collect()`), every
//! parked mapping is unmapped. A reused mapping is zeroed by `alloc_zeroed`
//! only over the requested bytes.

use super::address_map::{self, Granule};
use super::segment::{self, SEGMENT_SIZE};
use crate::os::{self, PAGE};

use super::segment::PARK_MAX_MAPPING;

const LARGE_MAGIC: u64 = 0x5348_4f41_4c4c_5247; // "SHOALLRG"

/// Bookkeeping of one large object, at the start of the granule of `ptr - 1`.
///
/// Invariant: written once before the pointer is returned, read-only until
/// the object is freed; `user` is the object's pointer.
#[repr(C)]
struct LargeHeader {
    magic: u64,
    user: usize,
    map_base: usize,
    map_size: usize,
    map_align: usize,
}

/// A large object of `size` bytes aligned to `align` (a power of two).
/// Returns null when the size overflows or the OS refuses.
#[inline]
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    alloc_inner(size, align, false)
}

/// As [`alloc`], with the `size` requested bytes zeroed (fresh mappings
/// already are; only a reused one is cleared).
#[inline]
pub fn alloc_zeroed(size: usize, align: usize) -> *mut u8 {
    alloc_inner(size, align, true)
}

fn alloc_inner(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let lead = align.max(PAGE);
    let map_align = align.max(SEGMENT_SIZE);
    let Some(map_size) = size
        .checked_add(PAGE - 1)
        .map(|s| s & !(PAGE - 1))
        .and_then(|s| s.checked_add(lead))
    else {
        return core::ptr::null_mut();
    };
    if map_size > isize::MAX as usize || !os::page_size_ok() {
        return core::ptr::null_mut();
    }
    if map_align == SEGMENT_SIZE && map_size <= PARK_MAX_MAPPING {
        if let Some((base, parked_size)) = segment::unpark(map_size) {
            let user = base + lead;
            if zeroed {
                // SAFETY: the mapping is ours again; `size` bytes from `user`
                // fit in it (parked_size >= map_size = lead + rounded size).
                unsafe { (user as *mut u8).write_bytes(0, size) };
            }
            // SAFETY: as below, for a mapping that is ours again.
            return unsafe { publish(base, parked_size, map_align, user) };
        }
    }
    let base = os::map_aligned(map_size, map_align);
    if base.is_null() {
        return base;
    }
    let user = base as usize + lead;
    if !os::is_user_address(base as usize + map_size - 1) {
        // SAFETY: just mapped, unknown to anyone else.
        unsafe { os::unmap(base, map_size, map_align) };
        return core::ptr::null_mut();
    }
    // SAFETY: a fresh mapping of `map_size` bytes holding `user`.
    unsafe { publish(base as usize, map_size, map_align, user) }
}

/// Writes the header of a large object and registers it.
///
/// # Safety
/// `base..base + map_size` must be a mapping we own, aligned to `map_align`,
/// with `user` placed in it as the module docs describe.
unsafe fn publish(base: usize, map_size: usize, map_align: usize, user: usize) -> *mut u8 {
    // SAFETY: the header address lies inside the mapping (see the module
    // docs), writable and aligned.
    unsafe {
        (header_addr(user as *mut u8) as *mut LargeHeader).write(LargeHeader {
            magic: LARGE_MAGIC,
            user,
            map_base: base,
            map_size,
            map_align,
        });
    }
    address_map::mark(user - 1, Granule::Large);
    user as *mut u8
}

/// Where the header of the object at `ptr` lives: the start of the granule
/// holding `ptr - 1` (see the module docs).
#[inline]
fn header_addr(ptr: *mut u8) -> usize {
    (ptr as usize).wrapping_sub(1) & !(SEGMENT_SIZE - 1)
}

/// The header of the large object at `ptr`.
///
/// # Safety
/// `ptr` must be a live large object's user pointer.
unsafe fn header(ptr: *mut u8) -> &'static LargeHeader {
    // SAFETY: the caller's promise; the header is mapped with the object.
    unsafe { &*(header_addr(ptr) as *const LargeHeader) }
}

/// `true` if `ptr` is the user pointer of a live large object. Reads memory
/// only when the address map says the granule of `ptr - 1` starts with one of
/// our large-object headers, which is then mapped.
///
/// # Safety
/// No other thread frees the large object whose header the address map
/// vouches for during the call: its mapping could go between the lookup and
/// the read. (For a live object that is the caller's own, this holds; a
/// stray pointer may fall into the unused tail of another large object's
/// granule, and then it is about that object: see `Shoal::owner`.)
pub(crate) unsafe fn is_large(ptr: *mut u8) -> bool {
    if address_map::lookup((ptr as usize).wrapping_sub(1)) != Granule::Large {
        return false;
    }
    // SAFETY: the address map entry means a live large object's header starts
    // this granule (module docs), so the read is of mapped memory.
    let h = unsafe { header(ptr) };
    h.magic == LARGE_MAGIC && h.user == ptr as usize
}

/// Bytes usable at `ptr` (at least the requested size).
///
/// # Safety
/// `ptr` must be a live large object.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: forwarded contract.
    let h = unsafe { header(ptr) };
    h.map_base + h.map_size - h.user
}

/// Unmaps the large object at `ptr`.
///
/// # Safety
/// `ptr` must be a live large object, not used afterwards.
pub unsafe fn free(ptr: *mut u8) {
    debug_assert!(
        // SAFETY: the caller frees `ptr`; nobody else may.
        unsafe { is_large(ptr) },
        "large::free of a pointer that is not a live large object"
    );
    // SAFETY: forwarded contract.
    let h = unsafe { header(ptr) };
    let (base, size, align) = (h.map_base, h.map_size, h.map_align);
    address_map::clear(ptr as usize - 1);
    if align == SEGMENT_SIZE && segment::park(base, size) {
        return;
    }
    // SAFETY: the whole mapping belongs to this object, which the caller gives up.
    unsafe { os::unmap(base as *mut u8, size, align) };
}

/// Resizes in place when `new_size` fits the mapping and would not leave more
/// than half of it unused; returns whether it did. When the object shrinks,
/// the whole pages past its new end go back to the OS (`MADV_DONTNEED`): they
/// stay mapped, so growing in place again later reads them as zero.
///
/// # Safety
/// `ptr` must be a live large object of at least `old_size` bytes.
pub unsafe fn resize_in_place(ptr: *mut u8, old_size: usize, new_size: usize) -> bool {
    // SAFETY: forwarded contract.
    let usable = unsafe { usable_size(ptr) };
    if new_size > usable || new_size <= usable / 2 {
        return false;
    }
    let keep = (ptr as usize + new_size).next_multiple_of(PAGE);
    let used = (ptr as usize + old_size).next_multiple_of(PAGE);
    if used > keep {
        // SAFETY: whole pages inside the object's mapping, past its new size,
        // whose contents the caller no longer needs.
        unsafe { os::decommit(keep as *mut u8, used - keep) };
    }
    true
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn freed_mappings_are_reused_and_zeroed_on_request() {
        // An odd size no other test uses, so the parked mapping is ours.
        let size = 3 * 1024 * 1024 + 12_345;
        let a = alloc(size, 64);
        // SAFETY: nothing frees `a` concurrently.
        assert!(!a.is_null() && unsafe { is_large(a) });
        // SAFETY: `a` is a live object of `size` bytes.
        unsafe {
            a.write_bytes(0xAB, size);
            free(a);
        }
        // SAFETY: nothing frees `a` concurrently (it is parked, so the
        // lookup must say no).
        let still_large = unsafe { is_large(a) };
        assert!(!still_large, "a parked mapping is not a live object");
        let b = alloc_zeroed(size, 64);
        assert_eq!(a, b, "the parked mapping is reused");
        // SAFETY: `b` is live with `size` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(b, size) };
        assert!(
            bytes.iter().all(|&x| x == 0),
            "reused memory is zeroed for alloc_zeroed"
        );
        // SAFETY: live, freed once.
        unsafe { free(b) };
    }

    #[test]
    fn oversized_mappings_are_not_parked() {
        let size = PARK_MAX_MAPPING + PAGE;
        let a = alloc(size, 16);
        assert!(!a.is_null());
        let before = segment::parked_bytes();
        // SAFETY: live, freed once.
        unsafe { free(a) };
        assert!(segment::parked_bytes() <= before);
    }
}
