//! `Shoal`: the lock-free, thread-caching allocator, and its `GlobalAlloc` front.
//!
//! ```text
//!  alloc/free ──► ThreadCache (per thread, plain loads/stores)
//!                    │ one CAS per batch
//!                    ▼
//!                 Pools: per class, a tagged Treiber stack of batches
//!                    │ carve (CAS on the carve word)
//!                    ▼
//!                 Segments (4 MiB, one class each)  ◄── mmap
//!  large (> 256 KiB or align > 4 KiB) ──► one mapping per object
//! ```
//!
//! All state is process-wide; `Shoal` is a zero-sized handle to it, so any
//! number of `Shoal` values (a `#[global_allocator]` and direct callers in
//! benchmarks) share one heap.

use crate::large;
use crate::pool::Pools;
use crate::registry::{self, Granule};
use crate::segment::{header_of, Segments, HEADER_BYTES, SEGMENT_SIZE};
use crate::size_class::{
    class_for, first_block_offset, is_block_boundary, CLASS_SIZE, NUM_CLASSES,
};
use crate::thread::{SlotKey, ThreadCaches, ThreadSlot};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::null_mut;

/// The shared pools of every size class.
pub(crate) static POOLS: Pools<Segments> = Pools::new(Segments);

/// `Shoal`'s per-thread cache slot.
struct ShoalSlot;

impl SlotKey for ShoalSlot {
    #[inline(always)]
    fn slot() -> *mut ThreadSlot {
        std::thread_local! {
            static SLOT: UnsafeCell<ThreadSlot> = const { UnsafeCell::new(ThreadSlot::new()) };
        }
        SLOT.try_with(|s| s.get()).unwrap_or(null_mut())
    }
}

static CACHES: ThreadCaches<Pools<Segments>, ShoalSlot> = ThreadCaches::new(&POOLS, on_thread_exit);

unsafe extern "C" fn on_thread_exit(slot: *mut c_void) {
    // SAFETY: pthread passes back the value `ThreadCaches::arm` stored.
    unsafe { CACHES.thread_exit(slot) }
}

/// The lock-free allocator. See the crate documentation for the design.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shoalloc::Shoal = shoalloc::Shoal::new();
/// # fn main() { let v = vec![1, 2, 3]; assert_eq!(v.iter().sum::<i32>(), 6); }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Shoal {
    _private: (),
}

/// The error of [`Shoal::free_unsized`]: the pointer was not handed out by
/// `Shoal` (or does not point at the start of a block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignPointer;

/// What a bare pointer is to `Shoal` (for C `free` and `malloc_usable_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A block of this size class.
    Small(usize),
    /// A large object.
    Large,
    /// Not a pointer `Shoal` handed out (or not at a block boundary).
    Foreign,
}

impl Shoal {
    /// A handle to the process-wide heap.
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// Allocates `size` bytes aligned to `align` (a power of two); null when
    /// out of memory or when the size cannot be represented.
    #[inline]
    pub fn allocate(size: usize, align: usize) -> *mut u8 {
        match class_for(size, align) {
            Some(class) => CACHES.alloc(class),
            None => large::alloc(size, align),
        }
    }

    /// Classifies `ptr` without trusting it: reads memory only where the
    /// registry says we own it, and checks that a small pointer sits on a
    /// block boundary of its segment. Safe to call with any pointer that no
    /// other thread is freeing at the same moment.
    ///
    /// What it cannot tell: whether a block-boundary pointer into one of our
    /// segments is currently allocated. A block that was never handed out, or
    /// was already freed, classifies as `Small` — so a double free of a small
    /// block is not detected (one of a large object is: its registry entry is
    /// gone). Detecting it would need a per-block state bit.
    #[allow(clippy::not_unsafe_ptr_arg_deref)] // validated through the registry first
    pub fn owner(ptr: *const u8) -> Owner {
        let addr = ptr as usize;
        if addr == 0 {
            return Owner::Foreign;
        }
        match registry::lookup(addr - 1) {
            Granule::Small => {
                // The header of the granule of `addr - 1`, the one the
                // registry vouched for (for a pointer at a granule start,
                // `ptr`'s own granule may be unmapped).
                // SAFETY: the registry says a live segment starts there.
                let header = unsafe { header_of((addr - 1) as *const u8) };
                if !header.is_valid() {
                    return Owner::Foreign;
                }
                let class = header.class as usize;
                let Some(&size) = CLASS_SIZE.get(class) else {
                    return Owner::Foreign;
                };
                let size = size as usize;
                // `addr - 1` keeps a pointer at the granule start in the
                // vouched-for segment, where its offset is the segment size.
                let offset = ((addr - 1) & (SEGMENT_SIZE - 1)) + 1;
                let first = first_block_offset(class, HEADER_BYTES);
                if offset < first
                    || !is_block_boundary(class, offset - first)
                    || offset + size > SEGMENT_SIZE
                {
                    return Owner::Foreign;
                }
                Owner::Small(class)
            }
            Granule::Large if large::is_large(ptr.cast_mut()) => Owner::Large,
            _ => Owner::Foreign,
        }
    }

    /// Frees a pointer without knowing its layout (C `free`).
    ///
    /// Returns `Err(ForeignPointer)` and touches nothing when [`Shoal::owner`]
    /// recognises `ptr` as not ours; the caller decides how to report it.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live and not used afterwards.
    pub unsafe fn free_unsized(ptr: *mut u8) -> Result<(), ForeignPointer> {
        match Self::owner(ptr) {
            // SAFETY: a live block of `class`, given up by the caller.
            Owner::Small(class) => unsafe { CACHES.free(class, ptr) },
            // SAFETY: a live large object, given up by the caller.
            Owner::Large => unsafe { large::free(ptr) },
            Owner::Foreign => return Err(ForeignPointer),
        }
        Ok(())
    }

    /// Usable bytes at `ptr`, or `None` if it is not ours.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live.
    pub unsafe fn usable_size(ptr: *const u8) -> Option<usize> {
        match Self::owner(ptr) {
            Owner::Small(class) => Some(CLASS_SIZE[class] as usize),
            // SAFETY: a live large object.
            Owner::Large => Some(unsafe { large::usable_size(ptr.cast_mut()) }),
            Owner::Foreign => None,
        }
    }

    /// Number of size classes (for statistics and tests).
    pub const NUM_CLASSES: usize = NUM_CLASSES;
}

// SAFETY: every method returns null or memory of at least `layout.size()`
// bytes aligned to `layout.align()` that no other live allocation overlaps
// (size classes and alignment: `size_class`; blocks are owned by exactly one
// list or one user at a time: `cache`, `pool`); `dealloc` derives the same
// class from the same layout that `alloc` used.
unsafe impl GlobalAlloc for Shoal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::allocate(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_for(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from `alloc` with this layout, hence this class.
            Some(class) => unsafe { CACHES.free(class, ptr) },
            // SAFETY: the same layout made it a large object.
            None => unsafe { large::free(ptr) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            Some(class) => {
                let ptr = CACHES.alloc(class);
                if !ptr.is_null() {
                    // SAFETY: a fresh block of at least `layout.size()` bytes.
                    unsafe { ptr.write_bytes(0, layout.size()) };
                }
                ptr
            }
            None => large::alloc_zeroed(layout.size(), layout.align()),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract; `self` owns `ptr`.
        unsafe { realloc_with(self, ptr, layout, new_size) }
    }
}

/// `realloc` for any front over `Shoal`'s size classes and large objects
/// (`Shoal` and the ablations): stay in place within a size class or within a
/// large mapping that still fits, else allocate, copy and free. A failed
/// allocation returns null and leaves the old block untouched.
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract, with `a` the allocator that owns `ptr`.
pub(crate) unsafe fn realloc_with(
    a: &impl GlobalAlloc,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    let align = layout.align();
    match (class_for(layout.size(), align), class_for(new_size, align)) {
        (Some(old), Some(new)) if old == new => return ptr,
        // SAFETY: the layout makes `ptr` a live large object of that size.
        (None, None) if unsafe { large::resize_in_place(ptr, layout.size(), new_size) } => {
            return ptr
        }
        _ => {}
    }
    let Ok(new_layout) = Layout::from_size_align(new_size, align) else {
        return null_mut();
    };
    // SAFETY: a valid non-zero-size layout (realloc's contract).
    let new = unsafe { a.alloc(new_layout) };
    if !new.is_null() {
        // SAFETY: both blocks are live, distinct and at least this long; the
        // caller gives up `ptr`.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            a.dealloc(ptr, layout);
        }
    }
    new
}
