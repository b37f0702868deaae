//! Segments and the page heap: 4 MiB, 4 MiB-aligned mappings cut into 64 KiB
//! units, from which pages of small blocks and medium objects take spans.
//!
//! # Layout
//! ```text
//! units 0 ..= 4 (reserved, 320 KiB)                                       units 5 ..= 63
//! | guard | SegmentHeader, LinkKeys, UnitDesc × 64 | block states | … | guard |  | page | page (3 units) | medium object | free | ...
//!   4 KiB   4 KiB                                    256 KiB              4 KiB
//! ```
//! The block-state table (one byte per 16-byte granule) and the link keys
//! serve only the secure small path; elsewhere the table is address space
//! that is never touched. Because segments are aligned to their size,
//! `ptr & !(SEGMENT_SIZE - 1)` finds the header of any block or medium object
//! (at a fixed offset), and `(ptr >> 16) & 63` its unit's descriptor — which
//! names the span's first unit and what the span holds (a class, a medium
//! object, or nothing). No per-block header.
//!
//! The two guard pages are made inaccessible once the secure path is in use
//! ([`want_guard_pages`]): the first, so that a write running off the end of
//! whatever lies below the segment (often the last blocks of another
//! segment, since mappings are handed out downwards) faults instead of
//! rewriting the header and descriptors; the last, so that a write running
//! down off the first page of blocks faults instead of rewriting block
//! states. Until then they are untouched address space.
//!
//! # The page heap
//! Free units are found through each segment's [`UnitMap`] (two bitmap
//! words; see [`super::units`]) and a process-wide bitmap of segments that
//! have room, scanned lowest first so memory stays compact. Spans are claimed
//! and released with one CAS or one atomic RMW: no lock, and neighbouring free
//! units coalesce by themselves. A released unit stays resident (dirty) until
//! the purge discards it with `MADV_DONTNEED` after the purge delay
//! ([`crate::options`]); a segment itself is never unmapped, because the
//! shared stacks may read the link word of any block or descriptor that was
//! ever pushed (the type-stable memory their ABA argument relies on) — a
//! purged unit reads as zero, which a stale read may see and then discards.
//!
//! Transparent huge pages: segments are mapped with `MADV_NOHUGEPAGE`. A
//! segment is 4 MiB-aligned, so with THP set to `always` the kernel would
//! back a first touch of a 64 KiB page with a whole 2 MiB page, and a purge
//! of one unit would split it; small and medium memory is managed at 64 KiB,
//! which huge pages would defeat. Huge objects (own mappings) follow the
//! system's setting.
//!
//! Segments are numbered from 1 in the order they are mapped, and the table
//! [`SEGMENTS`] turns a number back into an address. Numbers let a block or a
//! descriptor be named by a 33-bit handle (`index << 18 | offset / 16`),
//! which is what gives the shared stacks their 31-bit ABA tag (see
//! [`super::stack`]).
//!
//! Limits: at most [`MAX_SEGMENTS`] − 1 segments (128 GiB of small and
//! medium memory); past that, allocations fail with null like any
//! out-of-memory. Widening the handle would narrow the tag.

use super::address_map::{self, Granule, GRANULE_SHIFT};
use super::counter::Counter;
use super::link_keys::LinkKeys;
use super::mapping_park::MappingPark;
use super::page::Anchor;
use super::pool::{Backing, FreeBlock};
use super::size_class::{is_block_boundary, CLASS_SIZE, NUM_CLASSES};
use super::stack::{NodeSpace, HANDLE_BITS};
use super::units::{run_mask, UnitMap, UNITS};
use crate::options;
use crate::os;
use crate::sync::statics::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// log2 of the segment size: one segment is one granule of the address map.
pub const SEGMENT_SHIFT: u32 = GRANULE_SHIFT;
/// Bytes in a segment (4 MiB).
pub const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// log2 of a unit.
pub const UNIT_SHIFT: u32 = 16;
/// Bytes in a unit (64 KiB), the granularity of pages, medium objects and purging.
pub const UNIT: usize = 1 << UNIT_SHIFT;
/// Bits of a handle that hold the offset inside the segment, in 16-byte units.
pub const OFFSET_BITS: u32 = SEGMENT_SHIFT - 4;
/// Segment numbers fit in the rest of a handle.
pub const MAX_SEGMENTS: usize = 1 << (HANDLE_BITS - OFFSET_BITS);
/// Where the header starts: after the leading guard page.
const HEADER_OFFSET: usize = os::PAGE;
/// Where the secure path's link keys sit: a line of their own, since the
/// header's line is written on every claim and release of units and the
/// keys are read on every secure allocation and free.
pub const KEYS_OFFSET: usize = HEADER_OFFSET + 64;
/// Where the unit descriptors start in a segment.
const DESC_OFFSET: usize = HEADER_OFFSET + 128;
/// Where the block-state table starts: the page after the header's. One
/// byte per 16-byte granule of the segment (see [`super::block_state`]),
/// written only by the secure small path; in other processes its pages are
/// never touched, so they cost address space but no memory.
pub const STATE_OFFSET: usize = HEADER_OFFSET + os::PAGE;
/// Bytes of the block-state table.
const STATE_BYTES: usize = SEGMENT_SIZE >> 4;
/// Units of every segment that never hold blocks: the guard pages', the
/// header's and the block-state table's (0 ..= 4).
const RESERVED_COUNT: usize = (STATE_OFFSET + STATE_BYTES + os::PAGE).div_ceil(UNIT);
/// [`RESERVED_COUNT`] as a unit mask.
const RESERVED_UNITS: u64 = (1 << RESERVED_COUNT) - 1;
/// The guard page that ends the reserved units, just below the first block.
const TAIL_GUARD_OFFSET: usize = RESERVED_COUNT * UNIT - os::PAGE;
/// Units a page of small blocks may span at most (1 MiB).
const MAX_PAGE_UNITS: u32 = 16;

const _: () = assert!(SEGMENT_SIZE / UNIT == UNITS as usize);
const _: () = assert!(core::mem::size_of::<SegmentHeader>() <= KEYS_OFFSET - HEADER_OFFSET);
const _: () = assert!(core::mem::size_of::<LinkKeys>() <= DESC_OFFSET - KEYS_OFFSET);
const _: () = assert!(core::mem::size_of::<UnitDesc>() == 32);
const _: () = assert!(DESC_OFFSET + UNITS as usize * 32 <= STATE_OFFSET);
const _: () = assert!(STATE_OFFSET + STATE_BYTES <= TAIL_GUARD_OFFSET);
const _: () = assert!(RESERVED_COUNT == 5);
const _: () = {
    let mut c = 0;
    while c < NUM_CLASSES {
        assert!(page_capacity(c) >= 1 && page_capacity(c) <= super::page::MAX_CAPACITY);
        c += 1;
    }
};

/// Marks a segment's first word, for whoever reads a memory dump. Nothing
/// checks it: the address map alone says where segments are.
const SEGMENT_MAGIC: u64 = 0x5348_4f41_4c53_4547; // "SHOALSEG"

/// What a unit's descriptor says its span holds.
pub const KIND_FREE: u32 = u32::MAX;
/// A medium object's span.
pub const KIND_MEDIUM: u32 = u32::MAX - 1;

/// Units a page of `class` spans: enough for about eight blocks, between one
/// unit and [`MAX_PAGE_UNITS`].
pub const fn page_units(class: usize) -> u32 {
    let want = (8 * CLASS_SIZE[class] as usize).div_ceil(UNIT) as u32;
    if want < 1 {
        1
    } else if want > MAX_PAGE_UNITS {
        MAX_PAGE_UNITS
    } else {
        want
    }
}

/// Blocks in a page of `class`.
pub const fn page_capacity(class: usize) -> u32 {
    (page_units(class) as usize * UNIT / CLASS_SIZE[class] as usize) as u32
}

/// The first bytes of every segment.
///
/// Invariant: `magic` and `index` are written once, by the thread that maps
/// the segment, before the segment is published in [`SEGMENTS`] and the
/// address map; the unit map and `released_at` are atomics.
#[repr(C)]
pub struct SegmentHeader {
    magic: u64,
    /// This segment's number in [`SEGMENTS`].
    pub index: u32,
    _pad: u32,
    units: UnitMap,
    /// Clock (ms) of the last release of a unit, for the purge delay.
    released_at: AtomicU64,
}

/// The descriptor of one unit.
///
/// Invariant: `kind` and `span` of every unit of a span are written by the
/// thread that claimed the span, before the span is published (by the carve
/// word's or the allocation's Release), and reset to [`KIND_FREE`] before the
/// span is released; only the first unit's `anchor` and `link` are used.
/// Atomics, because a C `free` of a stray pointer may read them at any time.
#[repr(C)]
pub struct UnitDesc {
    /// The page's anchor (first unit of a page only).
    anchor: Anchor,
    /// The page's link in its class's partial stack (first unit only).
    link: AtomicU64,
    /// A class, [`KIND_MEDIUM`] or [`KIND_FREE`].
    kind: AtomicU32,
    /// First unit of the span | units << 8.
    span: AtomicU32,
    _pad: u64,
}

/// Whether new segments get their guard pages (see the module docs): set
/// once the secure path is in use, never cleared.
static GUARD_PAGES: AtomicBool = AtomicBool::new(false);

/// Segments mapped from now on get guard pages. The secure path calls this
/// before it asks for a page or a medium object; a process that never uses it keeps
/// one mapping per segment run (a guard splits it into four) and makes no
/// `mprotect` call.
pub fn want_guard_pages() {
    if !GUARD_PAGES.load(Ordering::Relaxed) {
        GUARD_PAGES.store(true, Ordering::Relaxed);
    }
}

/// Makes the two guard pages of the fresh segment at `base` inaccessible.
/// Where the kernel refuses (its limit of mappings per process), the
/// segment goes without and `SHOALLOC_VERBOSE` says so.
///
/// # Safety
/// `base` is a fresh segment mapping of the caller's, not yet published.
unsafe fn guard(base: *mut u8) {
    #[cfg(shoalloc_fault)]
    if crate::fault::is_armed(crate::fault::Fault::NoGuardPages) {
        return;
    }
    for offset in [0, TAIL_GUARD_OFFSET] {
        // SAFETY: the caller's fresh mapping; nothing uses this page.
        if !unsafe { os::protect_none(base.add(offset), os::PAGE) } && !cfg!(any(miri, loom)) {
            options::report_failure(
                "shoalloc: mprotect failed: a segment goes without a guard page of ",
                os::PAGE,
            );
        }
    }
}

/// Segment number → segment address (0 = not mapped). Entries are written
/// once, before the segment is published, and never cleared.
static SEGMENTS: [AtomicUsize; MAX_SEGMENTS] = [const { AtomicUsize::new(0) }; MAX_SEGMENTS];
/// The next unused segment number.
static NEXT_SEGMENT: AtomicU32 = AtomicU32::new(1);
/// Bit `i`: segment `i` may have a free unit (set on every release, cleared
/// lazily when a scan finds the segment full).
static HAS_ROOM: [AtomicU64; MAX_SEGMENTS / 64] = [const { AtomicU64::new(0) }; MAX_SEGMENTS / 64];
/// Bit `i`: segment `i` may have free units that are still resident.
static HAS_DIRTY: [AtomicU64; MAX_SEGMENTS / 64] = [const { AtomicU64::new(0) }; MAX_SEGMENTS / 64];

/// Entries of the mapping park.
pub const PARK_ENTRIES: usize = 16;
/// Most bytes parked in the mapping park at once. Programs that cycle
/// buffers of several MiB (image, network or compression buffers) keep a
/// handful of them in flight; with 128 MiB parked, nearly every new buffer
/// reuses a resident mapping instead of paying `mmap`, `munmap` and a page
/// fault per 4 KiB. Parked memory is purged one purge delay after the last
/// park, so this is resident only while such traffic goes on.
pub const PARK_MAX_BYTES: usize = 128 << 20;
/// Largest mapping the park keeps.
pub const PARK_MAX_MAPPING: usize = 64 << 20;

/// Freed huge-object mappings kept for reuse (see `large`). They are part
/// of what the page heap holds for reuse, so the purge gives them back too.
static PARK: MappingPark<PARK_ENTRIES> = MappingPark::new(PARK_MAX_BYTES, PARK_MAX_MAPPING);
/// Clock (ms) of the last park, for the purge delay.
static PARKED_AT: AtomicU64 = AtomicU64::new(0);

/// Parks the free huge mapping `base..base + size` (4 MiB-aligned); `false`
/// when the park declines it, in which case the caller still owns it.
pub fn park(base: usize, size: usize) -> bool {
    let parked = PARK.park(base, size);
    if parked {
        PARKED_AT.fetch_max(os::now_ms(), Ordering::Relaxed);
    }
    parked
}

/// The smallest parked mapping of `need..=max` bytes: `(base, size)`, the
/// caller's from now on.
pub fn unpark(need: usize, max: usize) -> Option<(usize, usize)> {
    PARK.take(need, max)
}

/// The largest parked mapping smaller than `below` (and over one page):
/// `(base, size)`, the caller's from now on (to move its resident pages
/// into a bigger one).
pub fn unpark_largest_below(below: usize) -> Option<(usize, usize)> {
    PARK.take_largest(below)
}

/// Bytes parked now.
pub fn parked_bytes() -> usize {
    PARK.bytes()
}

/// Runs of free units discarded by the purge (statistics).
static PURGES: Counter = Counter::new();
/// Units discarded by the purge (statistics).
static PURGED_UNITS: Counter = Counter::new();

/// The page heap's statistics counters: purge runs (one `MADV_DONTNEED`
/// each) and bytes purged, since the process started.
pub fn purge_counts() -> (u64, u64) {
    (PURGES.get(), PURGED_UNITS.get() * UNIT as u64)
}

/// Units of a segment that may hold pages or medium objects.
pub const fn usable_units() -> u32 {
    UNITS - RESERVED_UNITS.count_ones()
}

/// Segments mapped so far (never unmapped, so also those mapped now).
pub fn segments_mapped() -> u64 {
    u64::from(NEXT_SEGMENT.load(Ordering::Acquire).saturating_sub(1))
}

/// What one span of a segment holds, for the statistics' census.
#[derive(Clone, Copy, Debug)]
pub enum SpanView {
    /// A page of `class`, `units` long, with `at_home` blocks at home.
    Page {
        /// The class.
        class: usize,
        /// Blocks at home (in the page's own free list).
        at_home: u32,
    },
    /// A medium object of `units` units.
    Medium {
        /// Its length in units.
        units: u32,
    },
}

/// One segment's units, for the statistics' census: the bitmaps' bits of
/// units that may hold blocks (the header's and the state table's left out).
#[derive(Clone, Copy, Debug)]
pub struct UnitsView {
    /// Units held by spans (pages, medium objects) or reserved by a purge.
    pub used: u64,
    /// Free units that may still be resident.
    pub dirty_free: u64,
}

/// Walks every published segment: `segment` gets its unit maps, `span` each
/// page and medium object in it. Racy by nature — each descriptor word is
/// read once, unsynchronised with claims and releases, so a span changing
/// hands meanwhile may be missed or miscounted — and exact when no other
/// thread allocates. Reads only memory that stays mapped (segments are never
/// unmapped) and writes nothing.
pub fn census(mut segment: impl FnMut(UnitsView), mut span: impl FnMut(SpanView)) {
    let mapped = NEXT_SEGMENT.load(Ordering::Acquire);
    for index in 1..mapped {
        let base = segment_base_published(index);
        if base == 0 {
            continue;
        }
        // SAFETY: a published segment starts with its header, which lives as
        // long as the process.
        let header = unsafe { header_at(base) };
        let used = header.units.used() & !RESERVED_UNITS;
        segment(UnitsView {
            used,
            dirty_free: header.units.dirty_free() & !RESERVED_UNITS,
        });
        let mut unit = RESERVED_UNITS.trailing_ones();
        while unit < UNITS {
            if used & (1 << unit) == 0 {
                unit += 1;
                continue;
            }
            let d = desc_at(base, unit);
            let kind = d.kind.load(Ordering::Relaxed);
            let shape = d.span.load(Ordering::Relaxed);
            let (first, units) = (shape & 0xff, (shape >> 8).max(1));
            if first != unit {
                // Mid-change (or the middle of a span we entered late).
                unit += 1;
                continue;
            }
            match kind {
                KIND_MEDIUM => span(SpanView::Medium { units }),
                class if (class as usize) < NUM_CLASSES => span(SpanView::Page {
                    class: class as usize,
                    at_home: d.anchor.at_home(),
                }),
                _ => {}
            }
            unit += units;
        }
    }
}

/// Unmaps every parked mapping when the last one was parked at least the
/// purge delay ago (all of them with `force`).
fn purge_park(force: bool, now: u64, delay: u64) {
    if PARK.bytes() == 0 || !force && now < PARKED_AT.load(Ordering::Relaxed).saturating_add(delay)
    {
        return;
    }
    while let Some((base, size)) = PARK.take_any() {
        // SAFETY: taking it from the park made the mapping ours; parked
        // mappings are SEGMENT_SIZE-aligned huge-object mappings.
        unsafe { os::unmap(base as *mut u8, size, SEGMENT_SIZE) };
    }
}

/// The process-wide segment store and page heap: the [`Backing`] that
/// `Shoal` carves pages from, and the source of medium objects' spans.
#[derive(Clone, Copy, Debug, Default)]
pub struct Segments;

/// Address of segment `index`.
#[inline]
fn segment_base(index: u64) -> usize {
    // Relaxed suffices: whoever holds a handle into this segment got it
    // through an Acquire operation that happens after the Release store of
    // the address.
    SEGMENTS[index as usize].load(Ordering::Relaxed)
}

/// Address of segment `index` for a thread that has no handle into it (the
/// page heap's scans): Acquire, pairing with the Release store that publishes
/// the segment, so its header's initialisation is visible.
#[inline]
fn segment_base_published(index: u32) -> usize {
    SEGMENTS[index as usize].load(Ordering::Acquire)
}

/// The header of the segment containing `ptr`.
///
/// # Safety
/// `ptr` must point into a live segment.
#[inline]
pub unsafe fn header_of(ptr: *const u8) -> &'static SegmentHeader {
    let base = (ptr as usize) & !(SEGMENT_SIZE - 1);
    // SAFETY: the caller promises `ptr` is in a segment.
    unsafe { header_at(base) }
}

/// The header of the segment at `base`.
///
/// # Safety
/// `base` is the address of a published segment.
#[inline(always)]
unsafe fn header_at(base: usize) -> &'static SegmentHeader {
    // SAFETY: a published segment holds an initialised header at
    // `HEADER_OFFSET`, which lives as long as the process.
    unsafe { &*((base + HEADER_OFFSET) as *const SegmentHeader) }
}

/// The descriptor of unit `unit` of the segment at `base`.
#[inline]
fn desc_at(base: usize, unit: u32) -> &'static UnitDesc {
    debug_assert!(unit < UNITS);
    // SAFETY: callers pass the base of a mapped segment, whose descriptors
    // were initialised (zeroed memory, then written) when it was mapped and
    // live as long as the process.
    unsafe { &*((base + DESC_OFFSET + unit as usize * 32) as *const UnitDesc) }
}

/// What a pointer into a segment points at, from its unit's descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// A page of `class` starting at `start`.
    Page {
        /// The class.
        class: usize,
        /// Address of the page's first block.
        start: usize,
    },
    /// A medium object of `units` units starting at `start`.
    Medium {
        /// Address of the object.
        start: usize,
        /// Its length in units.
        units: u32,
    },
    /// Free units or the segment header.
    Nothing,
}

/// What holds the byte at `addr`.
///
/// # Safety
/// `addr` must lie in a segment (the address map says so, or the caller
/// allocated it there).
#[inline]
pub unsafe fn span_at(addr: usize) -> Span {
    let base = addr & !(SEGMENT_SIZE - 1);
    let unit = ((addr - base) >> UNIT_SHIFT) as u32;
    let d = desc_at(base, unit);
    let kind = d.kind.load(Ordering::Relaxed);
    let span = d.span.load(Ordering::Relaxed);
    let first = span & 0xff;
    let start = base + first as usize * UNIT;
    match kind {
        KIND_FREE => Span::Nothing,
        KIND_MEDIUM => Span::Medium {
            start,
            units: span >> 8,
        },
        class if (class as usize) < NUM_CLASSES && first >= 1 => Span::Page {
            class: class as usize,
            start,
        },
        _ => Span::Nothing,
    }
}

/// Offset of the last block of a page of each class from the page's start:
/// a block boundary beyond it lies past the page's blocks.
const LAST_BLOCK: [u32; NUM_CLASSES] = {
    let mut table = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        table[c] = (page_capacity(c) - 1) * CLASS_SIZE[c];
        c += 1;
    }
    table
};

/// The class of the small block that starts at `addr`, if `addr` is a block
/// boundary of a page of small blocks in the segment at `base`; `None` for
/// anything else there (the header unit, free units, a medium object, an
/// interior pointer, the slack after a page's last block). `addr` may be
/// `base + SEGMENT_SIZE` (a pointer one past the segment's end), which is
/// read as unit 0, the header's, and so is never a block.
///
/// C `free`'s trusted path: one descriptor (two adjacent words), one table
/// entry per class, one multiplication — no division and no second header
/// read (the address map's mark already vouches for the segment).
///
/// Unsynchronised with a concurrent reuse of the span, the two words may
/// come from different owners of a unit; the answer is then some block
/// boundary of one of its pages or `None`, never an address outside the
/// segment. A pointer that is a live block of ours has a stable descriptor.
///
/// # Safety
/// `base` is the base of a published segment (the address map marks it),
/// and `addr - base` is in `1 ..= SEGMENT_SIZE`.
#[inline(always)]
pub unsafe fn block_class_at(base: usize, addr: usize) -> Option<usize> {
    let unit = ((addr - base) >> UNIT_SHIFT) as u32 & (UNITS - 1);
    let d = desc_at(base, unit);
    let class = d.kind.load(Ordering::Relaxed) as usize;
    if class >= NUM_CLASSES {
        return None;
    }
    let first = d.span.load(Ordering::Relaxed) & 0xff;
    let delta = addr.wrapping_sub(base + first as usize * UNIT);
    #[cfg(all(shoalloc_fault, not(loom)))]
    if crate::fault::is_armed(crate::fault::Fault::TrustInteriorPointers) {
        return (first >= 1).then_some(class);
    }
    // Below the page's start, `delta` wraps far above any page.
    if delta > LAST_BLOCK[class] as usize || !is_block_boundary(class, delta as u32) {
        return None;
    }
    Some(class)
}

/// The class of `ptr` if it is a block boundary of one of our pages of small
/// blocks, else `None` (medium, large, foreign, null, interior). Reads only
/// memory the address map vouches for, and segments are never unmapped, so
/// any pointer is safe to ask about.
///
/// A pointer `p` we handed out is looked up by the granule of `p - 1`, which
/// holds the header of its segment even when `p` ends a segment's last
/// block at the granule's end.
#[inline(always)]
pub fn small_block(ptr: *const u8) -> Option<usize> {
    let addr = ptr as usize;
    // Null wraps to an address the map never covers.
    let before = addr.wrapping_sub(1);
    if address_map::lookup(before) != Granule::Small {
        return None;
    }
    let base = before & !(SEGMENT_SIZE - 1);
    // SAFETY: the address map marks a published segment at `base` (marks are
    // set after the header and descriptors are written, with Release, and
    // never cleared for segments), and `addr - base` is in 1..=SEGMENT_SIZE.
    unsafe { block_class_at(base, addr) }
}

impl Segments {
    /// Whether `handle` can name a node of a mapped segment: its segment
    /// number names a mapped segment, and its offset a unit descriptor or a
    /// granule of the units that hold blocks — never a guard page, the
    /// header, the keys or the state table. A handle that does not can only
    /// come from a link a program overwrote.
    #[inline]
    pub fn names_node(handle: u64) -> bool {
        let index = handle >> OFFSET_BITS;
        let offset = ((handle & ((1 << OFFSET_BITS) - 1)) << 4) as usize;
        let descriptor = (DESC_OFFSET..DESC_OFFSET + UNITS as usize * 32).contains(&offset)
            && (offset - DESC_OFFSET) % 32 == 0;
        index < SEGMENTS.len() as u64
            && segment_base(index) != 0
            && (descriptor || offset >= RESERVED_COUNT * UNIT)
    }
}

// SAFETY: block handles name a block inside a mapped segment (`handle_of`),
// whose second word is its link; descriptor handles name a descriptor,
// whose second word is its link. Both are at `base + offset + 8`, and
// segments are never unmapped, so the reference stays valid.
unsafe impl NodeSpace for Segments {
    #[inline]
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        let base = segment_base(handle >> OFFSET_BITS);
        let offset = ((handle & ((1 << OFFSET_BITS) - 1)) << 4) as usize;
        // SAFETY: see the impl comment.
        unsafe { &*((base + offset + 8) as *const AtomicU64) }
    }
}

/// Bit `index` of a segment bitmap.
#[inline]
fn bit(map: &[AtomicU64], index: u32) -> (&AtomicU64, u64) {
    (&map[index as usize / 64], 1 << (index % 64))
}

/// The published segments whose bit is set in `map` (each word read once),
/// lowest number first, with their headers.
fn marked_segments(
    map: &'static [AtomicU64],
) -> impl Iterator<Item = (u32, &'static SegmentHeader)> {
    let mapped = NEXT_SEGMENT.load(Ordering::Acquire) as usize;
    map.iter()
        .enumerate()
        .take(mapped.div_ceil(64))
        .flat_map(|(w, word)| {
            let mut bits = word.load(Ordering::Relaxed);
            core::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let index = (w * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                Some(index)
            })
        })
        .filter_map(|index| {
            let base = segment_base_published(index);
            // SAFETY: a published segment starts with its header, which lives
            // as long as the process (segments are never unmapped).
            (base != 0).then(|| (index, unsafe { header_at(base) }))
        })
}

/// Sets bit `index` of a segment bitmap, with a plain load when it is set.
#[inline]
fn set_bit(map: &[AtomicU64], index: u32) {
    let (word, b) = bit(map, index);
    if word.load(Ordering::Relaxed) & b == 0 {
        word.fetch_or(b, Ordering::SeqCst);
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

    /// The address named by a block or descriptor handle.
    #[inline]
    fn addr_of(handle: u64) -> usize {
        segment_base(handle >> OFFSET_BITS) + (((handle & ((1 << OFFSET_BITS) - 1)) << 4) as usize)
    }

    /// The handle of the page whose first unit is `unit` of segment `index`.
    #[inline]
    fn page_handle(index: u32, unit: u32) -> u64 {
        (u64::from(index) << OFFSET_BITS) | ((DESC_OFFSET + unit as usize * 32) >> 4) as u64
    }

    /// Segment index and first unit of page `page`.
    #[inline]
    fn page_parts(page: u64) -> (u32, u32) {
        let index = (page >> OFFSET_BITS) as u32;
        let offset = ((page & ((1 << OFFSET_BITS) - 1)) << 4) as usize;
        (index, ((offset - DESC_OFFSET) / 32) as u32)
    }

    /// Claims `units` consecutive free units: from a segment that has room,
    /// lowest first, else (with `grow`) from a freshly mapped segment.
    /// Returns the segment, the first unit, and whether the span is clean
    /// (reads as zero).
    pub fn alloc_span(units: u32, grow: bool) -> Option<(u32, u32, bool)> {
        debug_assert!((1..UNITS).contains(&units));
        for (index, header) in marked_segments(&HAS_ROOM) {
            if let Some((start, clean)) = header.units.claim(units) {
                return Some((index, start, clean));
            }
            if header.units.used() == u64::MAX {
                // Full: clear its bit, unless a release raced with us
                // (the release sets the bit after freeing the unit; both
                // sides are SeqCst, so one of us sees the other).
                let (word, b) = bit(&HAS_ROOM, index);
                word.fetch_and(!b, Ordering::SeqCst);
                if header.units.used() != u64::MAX {
                    set_bit(&HAS_ROOM, index);
                }
            }
        }
        if !grow {
            return None;
        }
        let index = Self::map_segment()?;
        let base = segment_base(u64::from(index));
        // SAFETY: we just published it.
        let header = unsafe { header_at(base) };
        let (start, clean) = header.units.claim(units)?;
        set_bit(&HAS_ROOM, index);
        Some((index, start, clean))
    }

    /// Releases units `start .. start + units` of segment `index`, claimed
    /// with [`Segments::alloc_span`], to the page heap, as free since
    /// `stamp` (now, or when their contents went idle). Their descriptors
    /// must already say [`KIND_FREE`].
    pub fn free_span(index: u32, start: u32, units: u32, stamp: u64) {
        let base = segment_base(u64::from(index));
        // SAFETY: a published segment starts with its header.
        let header = unsafe { header_at(base) };
        // The latest stamp wins: an idle release never makes a segment's
        // recent releases look old.
        header.released_at.fetch_max(stamp, Ordering::Relaxed);
        header.units.release(start, units);
        set_bit(&HAS_ROOM, index);
        set_bit(&HAS_DIRTY, index);
    }

    /// Writes the descriptors of a span: `kind` and the span's shape.
    fn describe(index: u32, start: u32, units: u32, kind: u32) {
        let base = segment_base(u64::from(index));
        for u in start..start + units {
            let d = desc_at(base, u);
            d.span.store(start | (units << 8), Ordering::Relaxed);
            d.kind.store(kind, Ordering::Relaxed);
        }
    }

    /// A span of `units` units for a medium object: its address and whether
    /// it is clean. The descriptors say [`KIND_MEDIUM`].
    pub fn alloc_medium(units: u32, grow: bool) -> Option<(*mut u8, bool)> {
        let (index, start, clean) = Self::alloc_span(units, grow)?;
        Self::describe(index, start, units, KIND_MEDIUM);
        let base = segment_base(u64::from(index));
        Some(((base + start as usize * UNIT) as *mut u8, clean))
    }

    /// Frees the medium object at `ptr`, of `units` units.
    ///
    /// # Safety
    /// `ptr` came from [`Segments::alloc_medium`] with `units`, is live and is
    /// not used afterwards.
    pub unsafe fn free_medium(ptr: *mut u8, units: u32) {
        // SAFETY: the caller's promise: a span in a live segment.
        let index = unsafe { header_of(ptr) }.index;
        let start = ((ptr as usize & (SEGMENT_SIZE - 1)) >> UNIT_SHIFT) as u32;
        Self::describe(index, start, units, KIND_FREE);
        Self::free_span(index, start, units, os::now_ms());
    }

    /// Maps, initialises and publishes a new segment; `None` when the OS
    /// refuses memory or the segment numbers are used up.
    fn map_segment() -> Option<u32> {
        if !os::page_size_ok() {
            return None;
        }
        // Map first, then take a number: a failed mapping costs no number,
        // and the counter never moves past the limit (so it cannot wrap).
        let base = os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE);
        if base.is_null() {
            return None;
        }
        let numbered = NEXT_SEGMENT.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
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
                options::report_failure(
                    "shoalloc: out of memory: no segment number or address left for small and medium memory (at most 32767 segments, 128 GiB); a segment is ",
                    SEGMENT_SIZE,
                );
                return None;
            }
        };
        // SAFETY: our own fresh mapping.
        unsafe { os::no_huge_pages(base, SEGMENT_SIZE) };
        if GUARD_PAGES.load(Ordering::Relaxed) {
            // SAFETY: our own fresh mapping, whose two guard pages nothing
            // ever uses (they lie outside the header, keys, descriptors,
            // state table and every unit the page heap hands out).
            unsafe { guard(base) };
        }
        // SAFETY: freshly mapped, writable, aligned, and private to us; the
        // descriptors' zero bytes are overwritten before publication.
        unsafe {
            base.add(KEYS_OFFSET)
                .cast::<LinkKeys>()
                .write(LinkKeys::fresh());
            base.add(HEADER_OFFSET)
                .cast::<SegmentHeader>()
                .write(SegmentHeader {
                    magic: SEGMENT_MAGIC,
                    index,
                    _pad: 0,
                    units: UnitMap::new(RESERVED_UNITS),
                    released_at: AtomicU64::new(0),
                });
            for u in 0..UNITS as usize {
                base.add(DESC_OFFSET + u * 32)
                    .cast::<UnitDesc>()
                    .write(UnitDesc {
                        anchor: Anchor::new(),
                        link: AtomicU64::new(0),
                        kind: AtomicU32::new(KIND_FREE),
                        span: AtomicU32::new(0),
                        _pad: 0,
                    });
            }
        }
        SEGMENTS[index as usize].store(base as usize, Ordering::Release);
        address_map::mark(base as usize, Granule::Small);
        // A slow path every process that allocates takes: where
        // `SHOALLOC_SHOW_STATS` arms its exit report (once). The segment is
        // published, so an allocation from inside `atexit` finds a heap in
        // order.
        crate::stats::arm_exit_report();
        Some(index)
    }

    /// Purges free units released at least the purge delay before `now`
    /// (all of them with `force`): their pages are discarded and read as
    /// zero when reused.
    pub fn purge(force: bool, now: u64) {
        let delay = options::purge_delay_ms();
        purge_park(force, now, delay);
        for (index, header) in marked_segments(&HAS_DIRTY) {
            let base = header as *const SegmentHeader as usize - HEADER_OFFSET;
            let released = header.released_at.load(Ordering::Relaxed);
            if !force && now < released.saturating_add(delay) {
                continue;
            }
            let (word, b) = bit(&HAS_DIRTY, index);
            word.fetch_and(!b, Ordering::SeqCst);
            let mask = header.units.reserve_dirty();
            let mut rest = mask;
            if mask != 0 {
                PURGED_UNITS.add(u64::from(mask.count_ones()));
            }
            while rest != 0 {
                let start = rest.trailing_zeros();
                let len = (rest >> start).trailing_ones();
                PURGES.add(1);
                // SAFETY: the reservation makes these units ours: no span
                // holds them and nobody can claim them until we finish.
                unsafe {
                    os::decommit(
                        (base + start as usize * UNIT) as *mut u8,
                        len as usize * UNIT,
                    )
                };
                rest &= !run_mask(start, len);
            }
            if mask != 0 {
                header.units.finish_purge(mask);
                // While reserved, the units looked used: a claim that found
                // the segment full then may have cleared its room bit.
                set_bit(&HAS_ROOM, index);
            }
            if header.units.dirty_free() != 0 {
                set_bit(&HAS_DIRTY, index);
            }
        }
    }
}

// SAFETY: pages are spans of units claimed from the unit maps (one owner
// each) of `page_capacity(class)` blocks of the class size from the span's
// start (64 KiB-aligned, so every block is aligned as its class promises);
// segments are never unmapped; `handle_of`/`addr_of` are inverse on blocks;
// page handles name descriptors in unit 0 and block handles blocks in units
// 5..=63, so they never collide; a free block's link is its second word.
unsafe impl Backing for Segments {
    #[inline]
    fn page_capacity(&self, class: usize) -> u32 {
        page_capacity(class)
    }

    fn acquire_page(&self, class: usize, grow: bool) -> Option<u64> {
        if class >= NUM_CLASSES {
            return None;
        }
        let units = page_units(class);
        let (index, start, _) = Self::alloc_span(units, grow)?;
        Self::describe(index, start, units, class as u32);
        let base = segment_base(u64::from(index));
        desc_at(base, start).anchor.activate();
        Some(Self::page_handle(index, start))
    }

    unsafe fn release_page(&self, page: u64) {
        // SAFETY: forwarded contract.
        unsafe { self.release_idle_page(page, os::now_ms()) }
    }

    unsafe fn release_idle_page(&self, page: u64, idle_since: u64) {
        let (index, start) = Self::page_parts(page);
        let base = segment_base(u64::from(index));
        let units = desc_at(base, start).span.load(Ordering::Relaxed) >> 8;
        Self::describe(index, start, units, KIND_FREE);
        Self::free_span(index, start, units, idle_since);
    }

    #[inline]
    fn page_start(&self, page: u64) -> *mut u8 {
        let (index, start) = Self::page_parts(page);
        (segment_base(u64::from(index)) + start as usize * UNIT) as *mut u8
    }

    #[inline]
    fn anchor(&self, page: u64) -> &Anchor {
        // SAFETY: a page handle names the first descriptor of its page,
        // whose first field is the anchor (see `page_handle`).
        unsafe { &*(Self::addr_of(page) as *const Anchor) }
    }

    #[inline]
    unsafe fn page_of(&self, block: *mut FreeBlock) -> u64 {
        let addr = block as usize;
        let base = addr & !(SEGMENT_SIZE - 1);
        let unit = ((addr - base) >> UNIT_SHIFT) as u32;
        let first = desc_at(base, unit).span.load(Ordering::Relaxed) & 0xff;
        // SAFETY: the caller's promise: a block in a live segment.
        let index = unsafe { header_of(block.cast()) }.index;
        Self::page_handle(index, first)
    }

    #[inline]
    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64 {
        // SAFETY: forwarded contract: a block carved from our segments.
        unsafe { Segments::handle_of(block.cast()) }
    }

    #[inline]
    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock {
        Segments::addr_of(handle) as *mut FreeBlock
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        os::now_ms()
    }

    #[inline]
    fn purge_delay_ms(&self) -> u64 {
        options::purge_delay_ms()
    }

    fn purge(&self, force: bool, now: u64) {
        Segments::purge(force, now)
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    //! The pools over real segments: carving, page replacement, reuse, pages
    //! going home and back to the page heap.
    use super::*;
    use crate::shoal::page::{FULL, LISTED};
    use crate::shoal::pool::{alloc_uncached, free_uncached, Batch, ClassPool, Pools};
    use crate::shoal::size_class::batch_len;

    /// `pool.take` for the one backing and class a test uses with `pool`.
    fn take(pool: &ClassPool, class: usize, want: u32) -> Batch {
        // SAFETY: each test uses its pool with `Segments` and one class
        // only; shard 0 < SHARDS.
        unsafe { pool.take(&Segments, class, want, true, 0) }.expect("memory")
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
    fn carving_yields_distinct_aligned_blocks_of_the_class() {
        let pool = ClassPool::new();
        let class = 20; // 1280-byte blocks, 256-byte aligned
        let size = CLASS_SIZE[class] as usize;
        let mut all = Vec::new();
        for _ in 0..100 {
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
            match unsafe { span_at(p) } {
                Span::Page { class: c, start } => {
                    assert_eq!(c, class);
                    assert_eq!((p - start) % size, 0);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn pages_go_home_and_back_to_the_page_heap() {
        let pool = ClassPool::new();
        let class = NUM_CLASSES - 1; // 256 KiB: 4 per page
        let cap = page_capacity(class);
        let mut blocks = Vec::new();
        for _ in 0..cap + 1 {
            let b = take(&pool, class, 1);
            assert_eq!(b.len, 1);
            blocks.push(b.head);
        }
        // The first page is fully carved and replaced: FULL.
        let first = blocks[0];
        // SAFETY: a block we hold.
        let page = unsafe { Segments.page_of(first) };
        assert_eq!(Segments.anchor(page).state(), FULL);
        // One block home: the page becomes LISTED and is taken next.
        // SAFETY: we own the block; one-block batch.
        unsafe {
            (*first).next = core::ptr::null_mut();
            pool.send_home(
                &Segments,
                class,
                Batch {
                    head: first,
                    len: 1,
                },
                None,
            );
        }
        assert_eq!(Segments.anchor(page).state(), LISTED);
        let again = take(&pool, class, 4);
        assert_eq!(
            (again.head, again.len),
            (first, 1),
            "the partial page serves first"
        );
        // All blocks of the page home: the page's units go to the page heap.
        blocks[0] = again.head;
        let (index, start) = Segments::page_parts(page);
        let base = segment_base(u64::from(index));
        for &b in &blocks[..cap as usize] {
            // SAFETY: we own each block and give it once.
            unsafe {
                (*b).next = core::ptr::null_mut();
                pool.send_home(&Segments, class, Batch { head: b, len: 1 }, None);
            }
        }
        // The page was listed again by the first of those returns, so it
        // waits on the partial stack, all home, until a drain scavenges it.
        assert_eq!(Segments.anchor(page).state(), LISTED);
        assert_eq!(Segments.anchor(page).at_home(), cap);
        // SAFETY: the pool is used with `Segments` and `class` only.
        unsafe { pool.drain(&Segments, class, None) };
        assert_eq!(Segments.anchor(page).state(), crate::shoal::page::FREE);
        // SAFETY: `base` is a live segment.
        let span = unsafe { span_at(base + start as usize * UNIT) };
        assert_eq!(span, Span::Nothing);
    }

    #[test]
    fn medium_spans_round_trip_and_purged_units_read_zero() {
        let (p, _) = Segments::alloc_medium(5, true).expect("memory");
        // SAFETY: the span is ours.
        match unsafe { span_at(p as usize + 3 * UNIT) } {
            Span::Medium { start, units } => assert_eq!((start, units), (p as usize, 5)),
            other => panic!("{other:?}"),
        }
        // SAFETY: ours, 5 units long.
        unsafe {
            p.write_bytes(0xAB, 5 * UNIT);
            Segments::free_medium(p, 5);
        }
        Segments::purge(true, os::now_ms());
        // SAFETY: the segment stays mapped; purged memory reads as zero.
        // (Another test may have claimed the units meanwhile, in which case
        // they are dirty again; only check when they are still free.)
        let header = unsafe { header_of(p) };
        let unit = ((p as usize & (SEGMENT_SIZE - 1)) >> UNIT_SHIFT) as u32;
        if header.units.used() & run_mask(unit, 5) == 0 {
            // SAFETY: mapped, and nobody holds these units.
            let bytes = unsafe { core::slice::from_raw_parts(p, 5 * UNIT) };
            assert!(bytes.iter().all(|&b| b == 0));
        }
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
