//! `ShoalSecure`: `Shoal` with the secure small path, for programs that
//! would rather stop than run on with a corrupted heap.

use super::front::{ForeignPointer, Owner, Shoal};
use super::small_path::SecureCached;
use core::alloc::{GlobalAlloc, Layout};

/// [`Shoal`] with every small block's state checked (the secure small path):
/// any double free — delayed, or from another thread — a free of an
/// interior or foreign pointer, a Rust `dealloc` with a layout of another
/// size class, and a free-list link overwritten after a free (a
/// use-after-free write) end in one message on stderr and an abort, never in
/// a block handed out twice or an arbitrary address handed out.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shoalloc::ShoalSecure = shoalloc::ShoalSecure::new();
/// # fn main() { let v = vec![1, 2, 3]; assert_eq!(v.iter().sum::<i32>(), 6); }
/// ```
///
/// Free-list links are stored encoded with random keys per segment, so an
/// address written into a freed block decodes to one the program did not
/// choose and is caught before it is followed; and once it is in use, new
/// segments get guard pages below their header and below their first block.
///
/// What it costs and what it leaves out: an address-map lookup, a state
/// byte and a link encoding per small allocation and free (one byte per 16
/// bytes of blocks in use; the benchmarks' `shoal-secure` column measures
/// the time); its own pools and thread caches, never mixed with `Shoal`'s;
/// medium and huge objects get the checks `Shoal` makes (a double free of a
/// huge object is detected, an interior pointer is foreign) and no guard
/// pages. A free racing with another free of the same block in another
/// thread may go unnoticed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShoalSecure(Shoal<SecureCached>);

impl ShoalSecure {
    /// A handle to the process-wide secure heap.
    pub const fn new() -> Self {
        Self(Shoal::with_small_path())
    }

    /// As [`Shoal::allocate`].
    #[inline]
    pub fn allocate(size: usize, align: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return core::ptr::null_mut();
        }
        // SAFETY: a non-zero-size layout is not required by our `alloc`,
        // which serves any size; `align` is a power of two.
        unsafe { Self::new().alloc(Layout::from_size_align_unchecked(size, align)) }
    }

    /// As [`Shoal::owner`].
    ///
    /// # Safety
    /// As [`Shoal::owner`].
    pub unsafe fn owner(ptr: *const u8) -> Owner {
        // SAFETY: forwarded contract.
        unsafe { Shoal::owner(ptr) }
    }

    /// As [`Shoal::free_unsized`]; a small block that is not handed out
    /// aborts with a message.
    ///
    /// # Safety
    /// As [`Shoal::free_unsized`].
    #[inline]
    pub unsafe fn free_unsized(ptr: *mut u8) -> Result<(), ForeignPointer> {
        // SAFETY: forwarded contract.
        unsafe { Shoal::<SecureCached>::unsized_free(ptr) }
    }

    /// As [`Shoal::free_unsized_or`]; a small block that is not handed out
    /// aborts with a message.
    ///
    /// # Safety
    /// As [`Shoal::free_unsized`].
    #[inline]
    pub unsafe fn free_unsized_or(ptr: *mut u8, on_foreign: fn(*mut u8) -> !) {
        // SAFETY: forwarded contract.
        unsafe { Shoal::<SecureCached>::unsized_free_or(ptr, on_foreign) }
    }

    /// As [`Shoal::usable_size`].
    ///
    /// # Safety
    /// As [`Shoal::usable_size`].
    pub unsafe fn usable_size(ptr: *const u8) -> Option<usize> {
        // SAFETY: forwarded contract.
        unsafe { Shoal::<SecureCached>::unsized_usable(ptr) }
    }

    /// As [`Shoal::realloc_unsized`]; a small block that is not handed out
    /// aborts with a message when it is freed.
    ///
    /// # Safety
    /// As [`Shoal::realloc_unsized`].
    pub unsafe fn realloc_unsized(
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, ForeignPointer> {
        // SAFETY: forwarded contract.
        unsafe { Shoal::<SecureCached>::unsized_realloc(ptr, new_size, align) }
    }
}

// SAFETY: every method forwards to `Shoal<SecureCached>`'s implementation,
// whose contract holds for any small path (see `front`); the secure path
// only adds aborts.
unsafe impl GlobalAlloc for ShoalSecure {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
