//! The deterministic checks of `tests/oracle.rs` can fail: wrapped around each
//! allocator of `support::ALLOCATORS`, an `alloc_zeroed` that does not zero
//! and a `realloc` that loses the last byte it should keep are both reported.
//! No fault switch is needed: the wrappers are the faults.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout};
use support::{check_realloc_round_trip, check_zeroed_after_dirty, ALLOCATORS};

/// `alloc_zeroed` is plain `alloc`: recycled blocks keep their old bytes.
struct NotZeroing(&'static (dyn GlobalAlloc + Sync));

// SAFETY: every call forwards to the wrapped allocator with the caller's
// arguments, except `alloc_zeroed`, which deliberately breaks its promise
// that the block reads as zero; the memory it returns is still a valid block
// of the layout. Only the check below, which expects the broken promise,
// calls it.
unsafe impl GlobalAlloc for NotZeroing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// `realloc` always moves the block and copies one byte too few.
struct ShortCopy(&'static (dyn GlobalAlloc + Sync));

// SAFETY: forwards to the wrapped allocator; `realloc` returns a fresh block
// of the new layout and frees the old one, as the contract requires, but
// deliberately leaves the last byte it should have kept uncopied.
unsafe impl GlobalAlloc for ShortCopy {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: the caller passes a non-zero `new_size` (realloc contract).
        let new = unsafe { self.0.alloc(new_layout) };
        if !new.is_null() {
            let keep = layout.size().min(new_size);
            // SAFETY: `ptr` is live with `layout` (caller's contract) and
            // `new` is a distinct fresh block; both hold at least `keep`
            // bytes. Then `ptr` is freed with its layout, once.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, keep.saturating_sub(1));
                self.0.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[test]
fn zeroed_check_catches_alloc_zeroed_that_does_not_zero() {
    for &(name, a) in &ALLOCATORS {
        check_zeroed_after_dirty(a).unwrap_or_else(|e| panic!("healthy {name}: {e}"));
        let err = check_zeroed_after_dirty(&NotZeroing(a))
            .expect_err(&format!("{name}: dirty blocks passed as zeroed"));
        println!("{name}: {err}");
    }
}

#[test]
fn realloc_check_catches_a_lost_byte() {
    for &(name, a) in &ALLOCATORS {
        check_realloc_round_trip(a).unwrap_or_else(|e| panic!("healthy {name}: {e}"));
        let err = check_realloc_round_trip(&ShortCopy(a))
            .expect_err(&format!("{name}: realloc lost a byte unnoticed"));
        println!("{name}: {err}");
    }
}
