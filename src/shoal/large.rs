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
//! `segment::park`) and reused by the next request they fit — the smallest
//! that does — saving the system calls and the page faults. A reused mapping
//! keeps its size, so it can serve a large request again later, and its
//! pages stay resident: giving them back would cost a page fault each when a
//! larger request reuses the mapping (measured: three times the faults of
//! keeping them, on the malloc-large pattern). So that a small buffer never
//! pins a much bigger one's memory, a mapping is reused only if it is at most
//! twice the size needed or at most [`KEEP_EXCESS`] bigger. When no parked
//! mapping fits, the
//! largest one is moved (`mremap`) to the start of the new mapping, so its
//! resident pages are reused and only the rest is faulted in.
//! Parked memory stays resident until the purge: one purge delay after the
//! last park (or at `collect()`), every parked mapping is unmapped. A reused
//! mapping is zeroed by `alloc_zeroed` only over the requested bytes.

use super::address_map::{self, Granule};
use super::segment::{self, SEGMENT_SIZE};
use crate::os::{self, PAGE};
use crate::sync::statics::{AtomicUsize, Ordering};

use super::segment::PARK_MAX_MAPPING;

/// Live huge objects and the bytes of their mappings (statistics: relaxed
/// adds beside each `mmap` or park, exact when no thread is mid-call).
static HUGE_COUNT: AtomicUsize = AtomicUsize::new(0);
static HUGE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Live huge objects and the bytes their mappings span.
pub fn huge_counts() -> (usize, usize) {
    (
        HUGE_COUNT.load(Ordering::Relaxed),
        HUGE_BYTES.load(Ordering::Relaxed),
    )
}

const LARGE_MAGIC: u64 = 0x5348_4f41_4c4c_5247; // "SHOALLRG"

/// How much bigger than needed a reused mapping may be, when it is more than
/// twice the size (see the module docs).
const KEEP_EXCESS: usize = 32 << 20;

/// Bookkeeping of one large object, at the start of the granule of `ptr - 1`.
///
/// Invariant: written once before the pointer is returned, read-only until
/// the object is freed — but for `size`, which only the object's owner
/// reads and writes (an in-place resize); `user` is the object's pointer.
#[repr(C)]
struct LargeHeader {
    magic: u64,
    user: usize,
    map_base: usize,
    map_size: usize,
    map_align: usize,
    /// The size last asked for: a reused mapping may be larger than that,
    /// and the in-place resize policy is about the object, not the mapping.
    size: AtomicUsize,
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
        // At most twice the size, or KEEP_EXCESS more: a small buffer never
        // pins a much bigger one's memory.
        let max = map_size
            .saturating_mul(2)
            .max(map_size.saturating_add(KEEP_EXCESS));
        if let Some((base, parked_size)) = segment::unpark(map_size, max) {
            let user = base + lead;
            if zeroed {
                // SAFETY: the mapping is ours again; `size` bytes from `user`
                // fit in it (parked_size >= map_size = lead + rounded size).
                unsafe { (user as *mut u8).write_bytes(0, size) };
            }
            // SAFETY: as below, for a mapping that is ours again.
            return unsafe { publish(base, parked_size, map_align, user, size) };
        }
    }
    let mut base = os::map_aligned(map_size, map_align);
    if base.is_null() {
        return base;
    }
    if map_align == SEGMENT_SIZE && lead == PAGE && map_size <= PARK_MAX_MAPPING {
        // No parked mapping was big enough: move the largest one here and
        // grow it to the new size, so its resident pages serve the start of
        // the new object and only the rest is faulted in fresh. The result
        // is a single kernel mapping again, so it can be moved the same way
        // later.
        if let Some((old, old_size)) = segment::unpark_largest_below(map_size) {
            // SAFETY: the parked mapping is ours again and unused, smaller
            // than `map_size` and larger than `lead`; the fresh mapping at
            // `base` holds nothing yet.
            let moved = unsafe { os::move_pages(old as *mut u8, old_size, base, map_size) };
            if moved {
                if zeroed {
                    // SAFETY: the moved pages are ours, inside the mapping;
                    // the grown part is fresh, zero already.
                    unsafe { base.add(lead).write_bytes(0, size.min(old_size - lead)) };
                }
            } else {
                // A failed `mremap` with MREMAP_FIXED may already have
                // unmapped the destination (and parts of the source): both
                // ranges are lost to us — leaked, never touched or unmapped
                // again, since another mapping may land there — and the
                // object gets a mapping of its own.
                base = os::map_aligned(map_size, map_align);
                if base.is_null() {
                    return base;
                }
            }
        }
    }
    let user = base as usize + lead;
    if !os::is_user_address(base as usize + map_size - 1) {
        // SAFETY: just mapped, unknown to anyone else.
        unsafe { os::unmap(base, map_size, map_align) };
        return core::ptr::null_mut();
    }
    // SAFETY: a fresh mapping of `map_size` bytes holding `user`.
    unsafe { publish(base as usize, map_size, map_align, user, size) }
}

/// Writes the header of a large object and registers it.
///
/// # Safety
/// `base..base + map_size` must be a mapping we own, aligned to `map_align`,
/// with `user` placed in it as the module docs describe.
unsafe fn publish(
    base: usize,
    map_size: usize,
    map_align: usize,
    user: usize,
    size: usize,
) -> *mut u8 {
    // SAFETY: the header address lies inside the mapping (see the module
    // docs), writable and aligned.
    unsafe {
        (header_addr(user as *mut u8) as *mut LargeHeader).write(LargeHeader {
            magic: LARGE_MAGIC,
            user,
            map_base: base,
            map_size,
            map_align,
            size: AtomicUsize::new(size),
        });
    }
    address_map::mark(user - 1, Granule::Large);
    HUGE_COUNT.fetch_add(1, Ordering::Relaxed);
    HUGE_BYTES.fetch_add(map_size, Ordering::Relaxed);
    crate::stats::arm_exit_report();
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
    HUGE_COUNT.fetch_sub(1, Ordering::Relaxed);
    HUGE_BYTES.fetch_sub(size, Ordering::Relaxed);
    #[cfg(shoalloc_fault)]
    let reuse = !crate::fault::is_armed(crate::fault::Fault::NoHugeReuse);
    #[cfg(not(shoalloc_fault))]
    let reuse = true;
    if reuse && align == SEGMENT_SIZE && segment::park(base, size) {
        return;
    }
    // SAFETY: the whole mapping belongs to this object, which the caller gives up.
    unsafe { os::unmap(base as *mut u8, size, align) };
}

/// Resizes in place when `new_size` fits the mapping and is more than half
/// the object's size (the smaller of `old_size` and the size last asked
/// for); returns whether it did. When the object shrinks,
/// the whole pages past its new end, to the mapping's end, go back to the OS
/// (`MADV_DONTNEED`): they stay mapped, so growing in place again later reads
/// them as zero.
///
/// # Safety
/// `ptr` must be a live large object of at least `old_size` bytes.
pub unsafe fn resize_in_place(ptr: *mut u8, old_size: usize, new_size: usize) -> bool {
    // SAFETY: forwarded contract.
    let usable = unsafe { usable_size(ptr) };
    // SAFETY: forwarded contract.
    let h = unsafe { header(ptr) };
    // Half of the object's own size, not of the mapping: a reused mapping
    // may be larger than the object was (see the module docs). C's realloc
    // passes the whole usable size as `old_size`; the header knows better.
    let size = h.size.load(Ordering::Relaxed).min(old_size);
    if new_size > usable || new_size <= size / 2 {
        return false;
    }
    h.size.store(new_size, Ordering::Relaxed);
    if new_size < old_size {
        // Up to the mapping's end, not the old size's: a reused mapping may
        // hold resident pages past the object.
        let keep = (ptr as usize + new_size).next_multiple_of(PAGE);
        let end = ptr as usize + usable;
        if end > keep {
            // SAFETY: whole pages inside the object's mapping (its end is a
            // page boundary), past its new size, whose contents the caller
            // no longer needs.
            unsafe { os::decommit(keep as *mut u8, end - keep) };
        }
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
