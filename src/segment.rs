//! Segments: the 4 MiB, 4 MiB-aligned mappings that small blocks are carved from.
//!
//! A segment belongs to one size class for the life of the process. Its first
//! bytes hold a [`SegmentHeader`]; blocks follow at multiples of the class
//! size. Because segments are aligned to their size, `ptr & !(SEGMENT_SIZE-1)`
//! finds the header — and so the class — of any small block from the pointer
//! alone, with no per-block header.
//!
//! Segments are numbered from 1 in the order they are mapped, and the table
//! [`SEGMENTS`] turns a number back into an address. Numbers let a block be
//! named by a 33-bit handle (`index << 18 | offset / 16`), which is what gives
//! the shared stacks their 31-bit ABA tag (see [`crate::stack`]). Segments are
//! never unmapped, so a handle, once valid, stays a readable address: this is
//! the type-stable memory the stacks' optimistic reads rely on.
//!
//! Limits: at most [`MAX_SEGMENTS`] − 1 segments (128 GiB of small blocks);
//! past that, small allocations fail with null like any out-of-memory.

use crate::os;
use crate::registry::{self, Granule};
use crate::size_class::NUM_CLASSES;
use crate::stack::{BatchStack, NodeSpace, HANDLE_BITS};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// log2 of the segment size.
pub const SEGMENT_SHIFT: u32 = 22;
/// Bytes in a segment (4 MiB).
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// Bits of a handle that hold the offset inside the segment, in 16-byte units.
pub const OFFSET_BITS: u32 = SEGMENT_SHIFT - 4;
/// Segment numbers fit in the rest of a handle.
pub const MAX_SEGMENTS: usize = 1 << (HANDLE_BITS - OFFSET_BITS);
/// Bytes reserved at the start of a segment for its header.
pub const HEADER_BYTES: usize = 64;

/// Tells a segment header from arbitrary memory when a C `free` is checked.
const SEGMENT_MAGIC: u64 = 0x5348_4f41_4c53_4547; // "SHOALSEG"

/// The first [`HEADER_BYTES`] of every segment.
///
/// Invariant: written once by the thread that maps or recycles the segment,
/// before the segment becomes reachable from any pool; read-only afterwards
/// except `spare_link`, which only the spare-segment stack uses.
#[repr(C)]
pub struct SegmentHeader {
    magic: u64,
    /// Size class whose blocks this segment holds.
    pub class: u32,
    /// This segment's number in [`SEGMENTS`].
    pub index: u32,
    /// Link word while the segment waits in the spare stack.
    spare_link: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<SegmentHeader>() <= HEADER_BYTES);

/// Segment number → segment address (0 = not mapped). Entries are written
/// once, before the segment is published, and never cleared.
static SEGMENTS: [AtomicUsize; MAX_SEGMENTS] = [const { AtomicUsize::new(0) }; MAX_SEGMENTS];
/// The next unused segment number.
static NEXT_SEGMENT: AtomicU32 = AtomicU32::new(1);
/// Segments that were prepared for a pool but lost the race to be installed
/// (see `ClassPool::carve`). Their blocks were never handed out, so any class
/// may take them next. Nodes are segment headers, named by offset-0 handles.
static SPARE: BatchStack = BatchStack::new();

/// The process-wide segment store: the [`crate::pool::Backing`] that `Shoal`
/// carves from.
#[derive(Clone, Copy, Debug, Default)]
pub struct Segments;

/// Address of segment `index`.
#[inline]
fn segment_base(index: u64) -> usize {
    // Relaxed suffices: whoever holds a handle into this segment got it
    // through a pool's Acquire operation, which happens after the Release
    // store below.
    SEGMENTS[index as usize].load(Ordering::Relaxed)
}

/// The header of the segment containing `ptr`.
///
/// # Safety
/// `ptr` must point into a live segment.
#[inline]
pub unsafe fn header_of(ptr: *const u8) -> &'static SegmentHeader {
    let base = (ptr as usize) & !(SEGMENT_SIZE - 1);
    // SAFETY: the caller promises `ptr` is in a segment, whose first bytes
    // hold an initialised header that lives as long as the process.
    unsafe { &*(base as *const SegmentHeader) }
}

impl SegmentHeader {
    /// `true` if this looks like a segment header of ours (for C `free`).
    pub fn is_valid(&self) -> bool {
        self.magic == SEGMENT_MAGIC
    }
}

// SAFETY: every handle the pools push names a block inside a mapped segment
// (`handle_of`), and the block's second word is its link; segments are never
// unmapped, so the reference stays valid. Spare-stack handles (offset 0)
// name the header's `spare_link`.
unsafe impl NodeSpace for Segments {
    #[inline]
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        let base = segment_base(handle >> OFFSET_BITS);
        let offset = ((handle & ((1 << OFFSET_BITS) - 1)) << 4) as usize;
        if offset == 0 {
            // SAFETY: see the impl comment; the header is at the base.
            return unsafe { &(*(base as *const SegmentHeader)).spare_link };
        }
        // SAFETY: see the impl comment: word 1 of a free block is its link.
        unsafe { &*((base + offset + 8) as *const AtomicU64) }
    }
}

impl Segments {
    /// The handle of block `ptr`, which must lie in a segment (only the
    /// pools call it, on blocks carved from segments).
    #[inline]
    pub(crate) fn handle_of(ptr: *mut u8) -> u64 {
        // SAFETY: callers pass blocks of our segments.
        let index = unsafe { header_of(ptr) }.index as u64;
        let offset = (ptr as usize & (SEGMENT_SIZE - 1)) as u64 >> 4;
        (index << OFFSET_BITS) | offset
    }

    /// The address named by a block handle.
    #[inline]
    pub(crate) fn addr_of(handle: u64) -> *mut u8 {
        let base = segment_base(handle >> OFFSET_BITS);
        (base + (((handle & ((1 << OFFSET_BITS) - 1)) << 4) as usize)) as *mut u8
    }

    /// A segment ready to hold blocks of `class`, or `None` when the OS
    /// refuses memory or the segment numbers are used up.
    pub(crate) fn acquire(class: usize) -> Option<u32> {
        if let Some((handle, _)) = SPARE.pop(&Segments) {
            let index = (handle >> OFFSET_BITS) as u32;
            let base = segment_base(u64::from(index));
            // SAFETY: we popped the segment, so no other thread references
            // its header; it is mapped and writable.
            unsafe { (*(base as *mut SegmentHeader)).class = class as u32 };
            return Some(index);
        }
        if class >= NUM_CLASSES || !os::page_size_ok() {
            return None;
        }
        // Map first, then take a number: a failed mapping costs no number,
        // and the counter never moves past the limit (so it cannot wrap).
        let base = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() {
            return None;
        }
        let numbered = NEXT_SEGMENT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            ((n as usize) < MAX_SEGMENTS).then_some(n + 1)
        });
        let index = match numbered {
            Ok(index) if os::is_user_address(base as usize + SEGMENT_SIZE - 1) => index,
            _ => {
                // Out of numbers, or an address the registry cannot cover. A
                // number taken in the second case stays unused: its table
                // entry stays 0, and only such a kernel ever gets here.
                // SAFETY: we just mapped it and nobody else knows it.
                unsafe { os::unmap(base, SEGMENT_SIZE, SEGMENT_SIZE) };
                return None;
            }
        };
        // SAFETY: freshly mapped, writable, aligned, and private to us.
        unsafe {
            base.cast::<SegmentHeader>().write(SegmentHeader {
                magic: SEGMENT_MAGIC,
                class: class as u32,
                index,
                spare_link: AtomicU64::new(0),
            });
        }
        SEGMENTS[index as usize].store(base as usize, Ordering::Release);
        registry::mark(base as usize, Granule::Small);
        Some(index)
    }

    /// Gives back a segment from [`Segments::acquire`] whose blocks were
    /// never handed out (callers: the `Backing::release` contract).
    pub(crate) fn release(index: u32) {
        // SAFETY: the caller owns the segment; offset-0 handles name headers.
        unsafe { SPARE.push(&Segments, u64::from(index) << OFFSET_BITS, 1) };
    }

    /// Number of segments mapped so far (for statistics and tests).
    pub fn mapped() -> usize {
        NEXT_SEGMENT.load(Ordering::Relaxed) as usize - 1
    }
}

// SAFETY: segments are SEGMENT_SIZE bytes, never unmapped; `handle_of` and
// `addr_of` are inverse on blocks (a block's offset is a multiple of 16 and
// below SEGMENT_SIZE, and its header holds its segment's index); the link of
// a block handle is the block's second word, free while the block is free.
unsafe impl crate::pool::Backing for Segments {
    #[inline]
    fn segment_bytes(&self) -> usize {
        SEGMENT_SIZE
    }

    #[inline]
    fn header_bytes(&self) -> usize {
        HEADER_BYTES
    }

    #[inline]
    fn segment_addr(&self, index: u32) -> *mut u8 {
        segment_base(u64::from(index)) as *mut u8
    }

    #[inline]
    unsafe fn handle_of(&self, block: *mut crate::pool::FreeBlock) -> u64 {
        Segments::handle_of(block.cast())
    }

    #[inline]
    unsafe fn addr_of(&self, handle: u64) -> *mut crate::pool::FreeBlock {
        Segments::addr_of(handle).cast()
    }

    fn acquire(&self, class: usize) -> Option<u32> {
        Segments::acquire(class)
    }

    unsafe fn release(&self, index: u32) {
        Segments::release(index)
    }
}
