//! Medium objects: above the largest size class, up to [`MEDIUM_MAX`], served
//! as spans of 64 KiB units from the page heap (see [`super::segment`]).
//!
//! No system call per object in a steady state and no mapping per object, so
//! `vm.max_map_count` limits nothing below the huge-object threshold. A freed
//! span goes back to the page heap at once, where neighbouring free units
//! coalesce and any page or medium object may reuse it; it is purged to the
//! OS after the purge delay like any free unit.

use super::pool::Pools;
use super::segment::{span_at, Segments, Span, UNIT};

/// The largest medium object (2 MiB, 32 units); larger requests are huge
/// objects with their own mapping.
pub const MEDIUM_MAX: usize = 2 << 20;

/// `true` when a request of `size` bytes aligned to `align` is a medium
/// object (the caller already knows no size class fits it).
#[inline]
pub const fn fits(size: usize, align: usize) -> bool {
    size <= MEDIUM_MAX && align <= UNIT
}

/// A medium object of `size` bytes (`MAX_SMALL < size <= MEDIUM_MAX`, or any
/// size up to `MEDIUM_MAX` when a size class cannot honour the alignment),
/// zeroed when `zeroed`; null when out of memory. Memory already mapped is
/// used first, after the pools sent their idle pages home; only then is a
/// new segment mapped.
pub fn alloc(size: usize, zeroed: bool, pools: &Pools<Segments>) -> *mut u8 {
    debug_assert!(size <= MEDIUM_MAX);
    let units = units_for(size);
    let span = Segments::alloc_medium(units, false)
        .or_else(|| {
            pools
                .relieve_pressure_for_medium()
                .then(|| Segments::alloc_medium(units, false))
                .flatten()
        })
        .or_else(|| Segments::alloc_medium(units, true));
    let Some((ptr, clean)) = span else {
        return core::ptr::null_mut();
    };
    if zeroed && !clean {
        // SAFETY: the span is ours and at least `size` bytes long.
        unsafe { ptr.write_bytes(0, size) };
    }
    ptr
}

/// Frees a medium object. Its length comes from its descriptor, not from
/// the caller: an object resized in place keeps its first span.
///
/// # Safety
/// `ptr` is a live medium object, not used afterwards.
pub unsafe fn free(ptr: *mut u8) {
    // SAFETY: forwarded contract: a live medium object.
    let units = unsafe { usable_size(ptr) } / UNIT;
    // SAFETY: forwarded contract.
    unsafe { Segments::free_medium(ptr, units as u32) }
}

/// Bytes usable at the medium object `ptr`: its whole span.
///
/// # Safety
/// `ptr` is a live medium object.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: forwarded contract: `ptr` lies in a live segment.
    match unsafe { span_at(ptr as usize) } {
        Span::Medium { units, .. } => units as usize * UNIT,
        _ => unreachable!("medium::usable_size of a pointer that is not a medium object"),
    }
}

/// Units of a medium object of `size` bytes.
#[inline]
pub const fn units_for(size: usize) -> u32 {
    let u = size.div_ceil(UNIT);
    (if u == 0 { 1 } else { u }) as u32
}
