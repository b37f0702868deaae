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
//! the shared stacks their 31-bit ABA tag (see [`super::stack`]). Segments are
//! never unmapped, so a handle, once valid, stays a readable address: this is
//! the type-stable memory the stacks' optimistic reads rely on.
//!
//! Limits: at most [`MAX_SEGMENTS`] − 1 segments (128 GiB of small blocks);
//! past that, small allocations fail with null like any out-of-memory.

use super::address_map::{self, Granule, GRANULE_SHIFT};
use super::pool::{Backing, FreeBlock};
use super::size_class::NUM_CLASSES;
use super::stack::{BatchStack, NodeSpace, HANDLE_BITS};
use crate::os;
use crate::sync::statics::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// log2 of the segment size: one segment is one granule of the address map.
pub const SEGMENT_SHIFT: u32 = GRANULE_SHIFT;
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
/// Invariant: `magic` and `index` are written once, by the thread that maps
/// the segment, before the segment is published in [`SEGMENTS`] and the
/// address map. `class` is rewritten when a spare segment is recycled for
/// another class, before it becomes reachable from that class's pool; it is
/// atomic because a C `free` of a stray pointer into a spare segment may read
/// it concurrently (and then rejects the pointer or not, but never races).
/// `spare_link` is used only by the spare-segment stack.
#[repr(C)]
pub struct SegmentHeader {
    magic: u64,
    /// Size class whose blocks this segment holds.
    class: AtomicU32,
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

/// The process-wide segment store: the [`super::pool::Backing`] that `Shoal`
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

    /// The size class whose blocks this segment holds. Relaxed: whoever holds
    /// a block of the segment got it through a pool's Acquire operation,
    /// which happens after the class was stored.
    #[inline]
    pub fn class(&self) -> usize {
        self.class.load(Ordering::Relaxed) as usize
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
    /// The handle of block `ptr`.
    ///
    /// # Safety
    /// `ptr` must lie in a live segment.
    #[inline]
    unsafe fn handle_of(ptr: *mut u8) -> u64 {
        // SAFETY: the caller's promise.
        let index = unsafe { header_of(ptr) }.index as u64;
        let offset = (ptr as usize & (SEGMENT_SIZE - 1)) as u64 >> 4;
        (index << OFFSET_BITS) | offset
    }

    /// The address named by a block handle.
    #[inline]
    fn addr_of(handle: u64) -> *mut u8 {
        let base = segment_base(handle >> OFFSET_BITS);
        (base + (((handle & ((1 << OFFSET_BITS) - 1)) << 4) as usize)) as *mut u8
    }

    /// A segment ready to hold blocks of `class`, or `None` when the OS
    /// refuses memory or the segment numbers are used up.
    fn acquire(class: usize) -> Option<u32> {
        if class >= NUM_CLASSES {
            return None;
        }
        // SAFETY: the spare stack only ever holds offset-0 handles of our
        // segments, pushed with `Segments` (see `release`).
        if let Some((handle, _)) = unsafe { SPARE.pop(&Segments) } {
            let index = (handle >> OFFSET_BITS) as u32;
            let base = segment_base(u64::from(index));
            // SAFETY: a segment is mapped for the life of the process and
            // starts with its header. We popped it, so no pool hands out its
            // blocks; the store is ordered before the blocks become reachable
            // by the Release CAS that installs the segment in a pool.
            unsafe { &*(base as *const SegmentHeader) }
                .class
                .store(class as u32, Ordering::Relaxed);
            return Some(index);
        }
        if !os::page_size_ok() {
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
                // Out of numbers, or an address the address map cannot cover. A
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
                class: AtomicU32::new(class as u32),
                index,
                spare_link: AtomicU64::new(0),
            });
        }
        SEGMENTS[index as usize].store(base as usize, Ordering::Release);
        address_map::mark(base as usize, Granule::Small);
        Some(index)
    }

    /// Gives back a segment from [`Segments::acquire`] whose blocks were
    /// never handed out.
    ///
    /// # Safety
    /// As [`Backing::release`]: the caller owns segment `index`.
    unsafe fn release(index: u32) {
        // SAFETY: the caller owns the segment; offset-0 handles name headers.
        unsafe { SPARE.push(&Segments, u64::from(index) << OFFSET_BITS, 1) };
    }
}

// SAFETY: segments are SEGMENT_SIZE bytes, never unmapped; `handle_of` and
// `addr_of` are inverse on blocks (a block's offset is a multiple of 16 and
// below SEGMENT_SIZE, and its header holds its segment's index); the link of
// a block handle is the block's second word, free while the block is free.
unsafe impl Backing for Segments {
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
    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64 {
        // SAFETY: forwarded contract: a block carved from our segments.
        unsafe { Segments::handle_of(block.cast()) }
    }

    #[inline]
    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock {
        Segments::addr_of(handle).cast()
    }

    fn acquire(&self, class: usize) -> Option<u32> {
        Segments::acquire(class)
    }

    unsafe fn release(&self, index: u32) {
        // SAFETY: forwarded contract.
        unsafe { Segments::release(index) }
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    //! The pools over real segments: carving, segment replacement, reuse.
    use super::*;
    use crate::shoal::pool::{alloc_uncached, free_uncached, Batch, ClassPool, Pools};
    use crate::shoal::size_class::{batch_len, first_block_offset, CLASS_SIZE};

    /// `pool.take` for the one backing and class a test uses with `pool`.
    fn take(pool: &ClassPool, class: usize, want: u32) -> Batch {
        // SAFETY: each test uses its pool with `Segments` and one class only.
        unsafe { pool.take(&Segments, class, want) }.expect("memory")
    }

    fn chain(batch: &Batch) -> Vec<usize> {
        let mut v = Vec::new();
        let mut p = batch.head;
        while !p.is_null() {
            v.push(p as usize);
            // SAFETY: batches are valid chains.
            p = unsafe { (*p).next };
        }
        v
    }

    #[test]
    fn carving_yields_distinct_aligned_blocks_in_one_segment() {
        let pool = ClassPool::new();
        let class = 20; // 1280-byte blocks, 256-byte aligned
        let size = CLASS_SIZE[class] as usize;
        let mut all = Vec::new();
        for _ in 0..10 {
            let b = take(&pool, class, batch_len(class));
            let blocks = chain(&b);
            assert_eq!(blocks.len(), b.len as usize);
            all.extend(blocks);
        }
        all.sort_unstable();
        for w in all.windows(2) {
            assert!(w[1] - w[0] >= size, "blocks overlap");
        }
        for &p in &all {
            assert_eq!(p % 256, 0);
            // SAFETY: carved from a live segment.
            assert_eq!(unsafe { header_of(p as *const u8) }.class(), class);
        }
    }

    #[test]
    fn a_full_segment_is_replaced_and_returned_batches_come_back_first() {
        let pool = ClassPool::new();
        let class = NUM_CLASSES - 1; // 256 KiB: 15 per segment
        let per_segment =
            (SEGMENT_SIZE - first_block_offset(class, 64)) / CLASS_SIZE[class] as usize;
        let mut batches = Vec::new();
        let mut carved = 0;
        while carved <= per_segment {
            let b = take(&pool, class, 2);
            carved += b.len as usize;
            batches.push(b);
        }
        let segments: std::collections::BTreeSet<usize> = batches
            .iter()
            .flat_map(chain)
            .map(|p| p & !(SEGMENT_SIZE - 1))
            .collect();
        assert!(segments.len() >= 2, "a second segment was installed");
        let back = batches.pop().unwrap();
        let head = back.head;
        // SAFETY: we own the batch.
        unsafe { pool.give(&Segments, back) };
        assert_eq!(take(&pool, class, 2).head, head);
    }

    #[test]
    fn uncached_operations_round_trip() {
        let pools: &'static Pools<Segments> = Box::leak(Box::new(Pools::new(Segments)));
        let a = alloc_uncached(pools, 1);
        let b = alloc_uncached(pools, 1);
        assert!(!a.is_null() && !b.is_null() && a != b);
        // SAFETY: both were allocated above and are freed once.
        unsafe {
            free_uncached(pools, 1, a);
            free_uncached(pools, 1, b);
        }
        let c = alloc_uncached(pools, 1);
        assert!(c == a || c == b, "freed blocks are reused");
    }
}
