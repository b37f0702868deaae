//! The one `GlobalAlloc` front: size-class routing over a small path, medium
//! objects from the page heap and huge objects with their own mappings, plus
//! the unsized operations a C `free`/`realloc` needs.

use super::address_map::{self, Granule};
use super::large;
use super::medium;
use super::segment::{small_block, span_at, Span, SEGMENT_SIZE};
use super::size_class::{class_for, CLASS_SIZE};
use super::small_path::{self, SmallPath, ThreadCached};
use core::alloc::{GlobalAlloc, Layout};
use core::marker::PhantomData;
use core::ptr::null_mut;

/// The lock-free allocator. See the crate documentation for the design.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shoalloc::Shoal = shoalloc::Shoal::new();
/// # fn main() { let v = vec![1, 2, 3]; assert_eq!(v.iter().sum::<i32>(), 6); }
/// ```
///
/// `Shoal` is a zero-sized handle to one process-wide heap. The type
/// parameter picks how blocks of a size class are served; programs use the
/// default, the thread-cached path. Other paths exist only to measure what
/// each layer buys (the ablations in the benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shoal<P: SmallPath = ThreadCached> {
    path: PhantomData<fn() -> P>,
}

/// The error of [`Shoal::free_unsized`] and [`Shoal::realloc_unsized`]: the
/// pointer was not handed out by `Shoal` (or does not point at the start of a
/// block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignPointer;

impl core::fmt::Display for ForeignPointer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("pointer not allocated by shoalloc")
    }
}

impl std::error::Error for ForeignPointer {}

/// What a bare pointer is to `Shoal` (for C `free` and `malloc_usable_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A block of this size class.
    Small(usize),
    /// A medium object (a span of the page heap).
    Medium,
    /// A large (huge) object with its own mapping.
    Large,
    /// Not a pointer `Shoal` handed out (or not at a block boundary).
    Foreign,
}

impl<P: SmallPath> Shoal<P> {
    /// A handle that serves small blocks through the small path `P`.
    pub const fn with_small_path() -> Self {
        Self { path: PhantomData }
    }

    /// `size` bytes aligned to `align` (a power of two): a block of a size
    /// class when one fits, else a medium or a huge object; null when out of
    /// memory.
    #[inline(always)]
    fn alloc_aligned(size: usize, align: usize) -> *mut u8 {
        match kind_of(size, align) {
            Kind::Small(class) => P::alloc(class),
            Kind::Medium => {
                P::before_medium();
                medium::alloc(size, false, small_path::pools())
            }
            Kind::Huge => large::alloc(size, align),
        }
    }

    /// Frees what [`Self::alloc_aligned`] returned, given its kind.
    ///
    /// # Safety
    /// `ptr` is live, was allocated as `kind`, and is not used afterwards.
    #[inline(always)]
    unsafe fn free_as(kind: Kind, ptr: *mut u8) {
        match kind {
            // SAFETY: forwarded contract: a block of `class` from `P`.
            Kind::Small(class) => unsafe { P::free(class, ptr) },
            // SAFETY: forwarded contract: a live medium object.
            Kind::Medium => unsafe { medium::free(ptr) },
            // SAFETY: forwarded contract: a live large object.
            Kind::Huge => unsafe { large::free(ptr) },
        }
    }
}

/// How a request is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A block of this size class.
    Small(usize),
    /// A span of the page heap.
    Medium,
    /// A mapping of its own.
    Huge,
}

/// The kind that serves `size` bytes aligned to `align`: the one rule
/// `alloc`, `dealloc` and `realloc` share.
#[inline(always)]
fn kind_of(size: usize, align: usize) -> Kind {
    match class_for(size, align) {
        Some(class) => Kind::Small(class),
        None if medium::fits(size, align) => Kind::Medium,
        None => Kind::Huge,
    }
}

/// [`Shoal::owner`], for every small path.
///
/// # Safety
/// [`Shoal::owner`]'s precondition.
#[inline]
unsafe fn classify(ptr: *const u8) -> Owner {
    if let Some(class) = small_block(ptr) {
        return Owner::Small(class);
    }
    // SAFETY: forwarded precondition.
    unsafe { owner_not_small(ptr) }
}

/// [`Shoal::owner`] for a pointer that [`small_block`] said is not a small
/// block: a medium object, a large object or foreign.
///
/// # Safety
/// [`Shoal::owner`]'s precondition.
unsafe fn owner_not_small(ptr: *const u8) -> Owner {
    let addr = ptr as usize;
    let before = addr.wrapping_sub(1);
    match address_map::lookup(before) {
        Granule::Small => {
            let base = before & !(SEGMENT_SIZE - 1);
            if addr - base >= SEGMENT_SIZE {
                return Owner::Foreign;
            }
            // SAFETY: `addr` lies in the segment the address map vouches for.
            match unsafe { span_at(addr) } {
                Span::Medium { start, .. } if addr == start => Owner::Medium,
                _ => Owner::Foreign,
            }
        }
        // SAFETY: the caller promises no concurrent free of the large
        // object whose header starts this granule.
        Granule::Large if unsafe { large::is_large(ptr.cast_mut()) } => Owner::Large,
        _ => Owner::Foreign,
    }
}

impl Shoal {
    /// A handle to the process-wide heap.
    pub const fn new() -> Self {
        Self::with_small_path()
    }

    /// Allocates `size` bytes aligned to `align`; null when `align` is not a
    /// power of two, when out of memory, or when the size cannot be
    /// represented.
    #[inline]
    pub fn allocate(size: usize, align: usize) -> *mut u8 {
        if !align.is_power_of_two() {
            return null_mut();
        }
        Self::alloc_aligned(size, align)
    }

    /// Classifies `ptr` without trusting it: reads memory only where the
    /// address map says we own it, and checks that a small pointer sits on a
    /// block boundary of its segment.
    ///
    /// What it cannot tell: whether a block-boundary pointer into one of our
    /// segments is currently allocated. A block that was never handed out, or
    /// was already freed, classifies as `Small` — so `Shoal` detects a double
    /// free of a small block only when it follows the first directly in the
    /// same thread (one of a large object always: its address-map entry is
    /// gone). [`ShoalSecure`](super::ShoalSecure) keeps a state per block and
    /// detects them all.
    ///
    /// # Safety
    /// During the call, no other thread frees a `Shoal` large object whose
    /// header lies at the start of the 4 MiB granule holding `ptr - 1`: the
    /// header is read after the address-map lookup, and a concurrent free
    /// may unmap it in between. That granule belongs to the object `ptr`
    /// points into when `ptr` is ours; a foreign pointer can fall into the
    /// unused tail of a large object's granule, and then the precondition is
    /// about that object. In C terms: no `free` of a large object racing with
    /// a `free`, `realloc` or `malloc_usable_size` of a pointer near it that
    /// is not a live block — a program that frees only what it allocated, once,
    /// always meets it. Small blocks are safe for any pointer: segments are
    /// never unmapped.
    pub unsafe fn owner(ptr: *const u8) -> Owner {
        // SAFETY: forwarded precondition.
        unsafe { classify(ptr) }
    }

    /// Frees a pointer without knowing its layout (C `free`).
    ///
    /// Returns `Err(ForeignPointer)` and touches nothing when [`Shoal::owner`]
    /// recognises `ptr` as not ours; the caller decides how to report it.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live and is not used afterwards; and
    /// [`Shoal::owner`]'s precondition holds for `ptr`.
    #[inline]
    pub unsafe fn free_unsized(ptr: *mut u8) -> Result<(), ForeignPointer> {
        // SAFETY: forwarded contract.
        unsafe { Self::unsized_free(ptr) }
    }

    /// [`Shoal::free_unsized`] for a caller that stops on a foreign pointer:
    /// `on_foreign(ptr)` runs where `free_unsized` would return an error.
    /// Nothing on the small-block path then waits for a call to return, so
    /// C `free` saves no registers (see `papers/instructions.md`).
    ///
    /// # Safety
    /// As [`Shoal::free_unsized`].
    #[inline]
    pub unsafe fn free_unsized_or(ptr: *mut u8, on_foreign: fn(*mut u8) -> !) {
        // SAFETY: forwarded contract.
        unsafe { Self::unsized_free_or(ptr, on_foreign) }
    }

    /// Usable bytes at `ptr`, or `None` if it is not ours.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live; and [`Shoal::owner`]'s precondition
    /// holds for `ptr`.
    pub unsafe fn usable_size(ptr: *const u8) -> Option<usize> {
        // SAFETY: forwarded contract.
        unsafe { Self::unsized_usable(ptr) }
    }

    /// Resizes the block at `ptr` without knowing its layout (C `realloc`):
    /// `Ok(ptr)` when it stays in place, `Ok(new)` after moving the first
    /// `min(usable, new_size)` bytes to a block aligned to `align` (and
    /// freeing `ptr`), `Ok(null)` when that allocation failed or `align` is
    /// not a power of two (then `ptr` is untouched and still live), and
    /// `Err(ForeignPointer)` when `ptr` is not ours (then nothing is
    /// touched). The same in-place policy as `GlobalAlloc::realloc`, with all
    /// usable bytes counted as live. A block placed more strictly aligned
    /// than `align` may lose that alignment when it moves.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live, and unless the result is `Ok(null)`
    /// it is not used afterwards; and [`Shoal::owner`]'s precondition holds
    /// for `ptr`.
    pub unsafe fn realloc_unsized(
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, ForeignPointer> {
        // SAFETY: forwarded contract.
        unsafe { Self::unsized_realloc(ptr, new_size, align) }
    }
}

/// The layout-free operations behind C `free`, `realloc` and
/// `malloc_usable_size`, for any small path; [`Shoal`] and
/// [`ShoalSecure`](super::ShoalSecure) export them (one public name per
/// type, so `Shoal::free_unsized` never needs a type annotation).
impl<P: SmallPath> Shoal<P> {
    /// Frees a pointer without knowing its layout: see [`Shoal::free_unsized`].
    ///
    /// Returns `Err(ForeignPointer)` and touches nothing when [`Shoal::owner`]
    /// recognises `ptr` as not ours; the caller decides how to report it.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live and is not used afterwards; and
    /// [`Shoal::owner`]'s precondition holds for `ptr`.
    #[inline]
    pub(super) unsafe fn unsized_free(ptr: *mut u8) -> Result<(), ForeignPointer> {
        // The trusted path first: a block of ours costs one address-map word
        // and one descriptor more than a sized `dealloc`.
        if let Some(class) = P::classify_for_free(ptr) {
            // SAFETY: `classify_for_free` said a block of `class` of
            // ours, given up by the caller.
            unsafe { P::free_classified(class, ptr) };
            return Ok(());
        }
        // SAFETY: forwarded contract.
        unsafe { Self::free_not_small(ptr) }
    }

    /// [`Shoal::free_unsized_or`]: see there.
    ///
    /// # Safety
    /// As [`Shoal::free_unsized`].
    #[inline]
    pub(super) unsafe fn unsized_free_or(ptr: *mut u8, on_foreign: fn(*mut u8) -> !) {
        if let Some(class) = P::classify_for_free(ptr) {
            // SAFETY: `classify_for_free` said a block of `class` of
            // ours, given up by the caller.
            return unsafe { P::free_classified(class, ptr) };
        }
        // SAFETY: forwarded contract.
        unsafe { Self::free_not_small_or(ptr, on_foreign) }
    }

    /// [`Self::free_not_small`], calling `on_foreign` instead of returning
    /// an error: out of line and reached by a tail call.
    ///
    /// # Safety
    /// As [`Shoal::free_unsized`].
    #[inline(never)]
    unsafe fn free_not_small_or(ptr: *mut u8, on_foreign: fn(*mut u8) -> !) {
        // SAFETY: forwarded contract.
        if unsafe { Self::free_not_small(ptr) }.is_err() {
            on_foreign(ptr);
        }
    }

    /// [`Shoal::free_unsized`] of anything but a small block: out of line,
    /// so the small path keeps its registers.
    ///
    /// # Safety
    /// As [`Shoal::free_unsized`] (for `P`'s blocks).
    #[inline(never)]
    unsafe fn free_not_small(ptr: *mut u8) -> Result<(), ForeignPointer> {
        // SAFETY: forwarded precondition.
        let kind = match unsafe { owner_not_small(ptr) } {
            Owner::Medium => Kind::Medium,
            Owner::Large => Kind::Huge,
            Owner::Small(_) | Owner::Foreign => return Err(ForeignPointer),
        };
        // SAFETY: a live object of that kind, given up by the caller.
        unsafe { Self::free_as(kind, ptr) };
        Ok(())
    }

    /// Usable bytes at `ptr`, or `None` if it is not ours.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live; and [`Shoal::owner`]'s precondition
    /// holds for `ptr`.
    pub(super) unsafe fn unsized_usable(ptr: *const u8) -> Option<usize> {
        // SAFETY: the caller's promise.
        match unsafe { classify(ptr) } {
            Owner::Small(class) => Some(CLASS_SIZE[class] as usize),
            // SAFETY: a live medium object.
            Owner::Medium => Some(unsafe { medium::usable_size(ptr.cast_mut()) }),
            // SAFETY: a live large object.
            Owner::Large => Some(unsafe { large::usable_size(ptr.cast_mut()) }),
            Owner::Foreign => None,
        }
    }

    /// Resizes the block at `ptr` without knowing its layout (C `realloc`):
    /// `Ok(ptr)` when it stays in place, `Ok(new)` after moving the first
    /// `min(usable, new_size)` bytes to a block aligned to `align` (and
    /// freeing `ptr`), `Ok(null)` when that allocation failed or `align` is
    /// not a power of two (then `ptr` is untouched and still live), and
    /// `Err(ForeignPointer)` when `ptr` is not ours (then nothing is
    /// touched). The same in-place policy as `GlobalAlloc::realloc`, with all
    /// usable bytes counted as live. A block placed more strictly aligned
    /// than `align` may lose that alignment when it moves.
    ///
    /// # Safety
    /// If `ptr` is ours, it must be live, and unless the result is `Ok(null)`
    /// it is not used afterwards; and [`Shoal::owner`]'s precondition holds
    /// for `ptr`.
    pub(super) unsafe fn unsized_realloc(
        ptr: *mut u8,
        new_size: usize,
        align: usize,
    ) -> Result<*mut u8, ForeignPointer> {
        // SAFETY: the caller's promise.
        let (kind, usable) = match unsafe { classify(ptr) } {
            Owner::Small(class) => (Kind::Small(class), CLASS_SIZE[class] as usize),
            // SAFETY: a live medium object.
            Owner::Medium => (Kind::Medium, unsafe { medium::usable_size(ptr) }),
            // SAFETY: a live large object.
            Owner::Large => (Kind::Huge, unsafe { large::usable_size(ptr) }),
            Owner::Foreign => return Err(ForeignPointer),
        };
        if !align.is_power_of_two() {
            return Ok(null_mut());
        }
        // SAFETY: `ptr` is live, of that kind, with `usable` bytes.
        Ok(unsafe { Self::resize(ptr, kind, usable, new_size, align) })
    }
}

impl<P: SmallPath> Shoal<P> {
    /// The one realloc policy of every front: stay in place within a size
    /// class, within a medium object's span, or within a large mapping that
    /// still fits (see `large::resize_in_place`) — unless that would leave
    /// more than half of the span or mapping unused — else allocate, copy
    /// `min(old_size, new_size)` bytes and free. A failed allocation returns
    /// null and leaves the old block untouched.
    ///
    /// # Safety
    /// `ptr` is live, allocated as `kind` (for a block, of `P`), with
    /// `old_size` bytes the caller still needs and that are readable;
    /// `align` is a power of two. Unless null is returned, `ptr` is not used
    /// afterwards.
    unsafe fn resize(
        ptr: *mut u8,
        kind: Kind,
        old_size: usize,
        new_size: usize,
        align: usize,
    ) -> *mut u8 {
        let in_place = match (kind, kind_of(new_size, align)) {
            // Blocks of one class are all aligned alike, and `class_for`
            // chose this class for `align`.
            (Kind::Small(old), Kind::Small(new)) => old == new,
            // Spans start on a unit, which satisfies any medium alignment.
            (Kind::Medium, Kind::Medium) => {
                // SAFETY: a live medium object.
                let usable = unsafe { medium::usable_size(ptr) };
                new_size <= usable && new_size > usable / 2
            }
            // A large object placed for a smaller alignment must move.
            (Kind::Huge, Kind::Huge) if ptr as usize % align == 0 => {
                // SAFETY: a live large object of at least `old_size` bytes.
                unsafe { large::resize_in_place(ptr, old_size, new_size) }
            }
            _ => false,
        };
        if in_place {
            return ptr;
        }
        let new = Self::alloc_aligned(new_size, align);
        if !new.is_null() {
            // SAFETY: both are live, distinct, and at least this long; the
            // caller gives up `ptr`, allocated as `class`.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                Self::free_as(kind, ptr);
            }
        }
        new
    }
}

// SAFETY: every method returns null or memory of at least `layout.size()`
// bytes aligned to `layout.align()` that no other live allocation overlaps
// (size classes and alignment: `size_class`; blocks: the `SmallPath`
// contract; medium objects: unit-aligned spans claimed from the page heap;
// large objects: one mapping each); `dealloc` and `realloc` derive
// the same class from the same layout that `alloc` used.
unsafe impl<P: SmallPath> GlobalAlloc for Shoal<P> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::alloc_aligned(layout.size(), layout.align())
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout, hence this kind;
        // the caller gives it up.
        unsafe { Self::free_as(kind_of(layout.size(), layout.align()), ptr) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match kind_of(layout.size(), layout.align()) {
            Kind::Small(class) => {
                let ptr = P::alloc(class);
                if !ptr.is_null() {
                    // SAFETY: a fresh block of at least `layout.size()` bytes.
                    unsafe { ptr.write_bytes(0, layout.size()) };
                }
                ptr
            }
            // Clean spans (never used, or purged) are zero already.
            Kind::Medium => {
                P::before_medium();
                medium::alloc(layout.size(), true, small_path::pools())
            }
            // Fresh mappings are zero; only a reused one is cleared.
            Kind::Huge => large::alloc_zeroed(layout.size(), layout.align()),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Layout::from_size_align(new_size, layout.align()).is_err() {
            return null_mut();
        }
        let kind = kind_of(layout.size(), layout.align());
        // SAFETY: `GlobalAlloc::realloc`'s contract: `ptr` is live with
        // `layout`, which made it `kind`; its `layout.size()` bytes are ours.
        unsafe { Self::resize(ptr, kind, layout.size(), new_size, layout.align()) }
    }
}
