//! The secure path's backing: [`Segments`] with every link that leads out
//! of freed memory checked before it is followed.
//!
//! The secure thread caches check each block they pop (`small_path`); the
//! shared pools follow links too — a batch's chain when it is cut or sent
//! home to its pages, and the stack link that a batch's first block carries
//! while it waits on a class's stack — and a program that writes into a
//! block after freeing it can rewrite any of them. `CheckedSegments` makes
//! the pools check those as well: a stack link must name a mapped segment
//! before its word is read, and every block a pool reaches through a link
//! must be a free block of the class ([`Backing::check_free`]); otherwise
//! the process stops with a message instead of taking an arbitrary address
//! for a block. The links themselves are stored encoded with the segment's
//! keys ([`link_keys`]), so an address the program writes decodes to one it
//! did not choose. `Shoal`'s pools use plain [`Segments`], where these hooks
//! are empty and links are plain addresses. The first page the secure pools
//! ask for turns on the segments' guard pages
//! ([`segment::want_guard_pages`]).

use super::block_state;
use super::link_keys;
use super::page::Anchor;
use super::pool::{Backing, FreeBlock};
use super::segment::{self, small_block, Segments};
use super::size_class::CLASS_SIZE;
use super::stack::NodeSpace;
use crate::sync::AtomicU64;

/// [`Segments`], checking the links the pools follow (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckedSegments;

/// Aborts unless `block`, reached through a link of a free list of
/// `class`, is a free block of that class (so its words may be read): what
/// the secure thread caches check before they pop a block.
#[inline(always)]
pub fn check_popped(block: *mut FreeBlock, class: usize) {
    if !block_state::is_free_block(block.cast(), class) {
        corrupted_link();
    }
}

/// [`check_popped`], for the blocks the pools reach through a link.
#[inline]
pub fn check_listed(block: *mut FreeBlock, class: usize) {
    #[cfg(shoalloc_fault)]
    if crate::fault::is_armed(crate::fault::Fault::UncheckedPoolLinks) {
        return;
    }
    check_popped(block, class);
}

/// Clears the block states of page `page`, which leaves the secure path
/// with every block home (see [`block_state`]'s invariant).
fn forget_states(page: u64) {
    let start = Segments.page_start(page);
    // The page's descriptors still name its class until `release_page`.
    let Some(class) = small_block(start) else {
        debug_assert!(false, "a page of the secure pools without a class");
        return;
    };
    let size = CLASS_SIZE[class] as usize;
    for i in 0..Segments.page_capacity(class) as usize {
        // SAFETY: a block of the page, in a published segment.
        unsafe { block_state::forget(start.wrapping_add(i * size)) };
    }
}

#[cold]
#[inline(never)]
fn corrupted_link() -> ! {
    crate::fatal::abort(
        "shoalloc: corrupted free list (a link in a freed block was overwritten); aborting",
    )
}

// SAFETY: `Segments`' link words, for the handles `Segments` hands out; a
// handle that names no node of a mapped segment (only a rewritten link
// produces one: another segment number, or an offset in a guard page, the
// header, the keys or the state table) aborts before any word is read.
unsafe impl NodeSpace for CheckedSegments {
    #[inline]
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        #[cfg(shoalloc_fault)]
        let unchecked = crate::fault::is_armed(crate::fault::Fault::UncheckedPoolLinks);
        #[cfg(not(shoalloc_fault))]
        let unchecked = false;
        if !unchecked && !Segments::names_node(handle) {
            corrupted_link();
        }
        // SAFETY: forwarded contract, for a handle of a mapped segment.
        unsafe { Segments.link(handle) }
    }
}

// SAFETY: every method is `Segments`' (whose contract holds), plus checks
// that only abort.
unsafe impl Backing for CheckedSegments {
    #[inline]
    fn page_capacity(&self, class: usize) -> u32 {
        Segments.page_capacity(class)
    }

    fn acquire_page(&self, class: usize, grow: bool) -> Option<u64> {
        segment::want_guard_pages();
        Segments.acquire_page(class, grow)
    }

    unsafe fn release_page(&self, page: u64) {
        forget_states(page);
        // SAFETY: forwarded contract.
        unsafe { Segments.release_page(page) }
    }

    unsafe fn release_idle_page(&self, page: u64, idle_since: u64) {
        forget_states(page);
        // SAFETY: forwarded contract.
        unsafe { Segments.release_idle_page(page, idle_since) }
    }

    #[inline]
    fn page_start(&self, page: u64) -> *mut u8 {
        Segments.page_start(page)
    }

    #[inline]
    fn anchor(&self, page: u64) -> &Anchor {
        const SEGMENTS: &Segments = &Segments;
        SEGMENTS.anchor(page)
    }

    #[inline]
    unsafe fn page_of(&self, block: *mut FreeBlock) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { Segments.page_of(block) }
    }

    #[inline]
    unsafe fn handle_of(&self, block: *mut FreeBlock) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { Backing::handle_of(&Segments, block) }
    }

    #[inline]
    unsafe fn addr_of(&self, handle: u64) -> *mut FreeBlock {
        // SAFETY: forwarded contract.
        unsafe { Backing::addr_of(&Segments, handle) }
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        Segments.now_ms()
    }

    #[inline]
    fn purge_delay_ms(&self) -> u64 {
        Segments.purge_delay_ms()
    }

    fn purge(&self, force: bool, now: u64) {
        Backing::purge(&Segments, force, now)
    }

    #[inline]
    fn check_free(&self, class: usize, block: *mut FreeBlock) {
        check_listed(block, class);
    }

    #[inline]
    unsafe fn carved(&self, class: usize, block: *mut FreeBlock) {
        // SAFETY: a block just carved from a page of a segment (the
        // caller's contract).
        unsafe { block_state::carved(block.cast(), class) };
    }

    #[inline(always)]
    unsafe fn next_of(&self, block: *mut FreeBlock) -> *mut FreeBlock {
        // SAFETY: forwarded contract: a free block of a segment.
        unsafe { link_keys::next_of(block) }
    }

    #[inline(always)]
    unsafe fn set_next(&self, block: *mut FreeBlock, next: *mut FreeBlock) {
        // SAFETY: forwarded contract: a free block of a segment.
        unsafe { link_keys::set_next(block, next) }
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use crate::shoal::pool::Backing;

    /// A page that leaves the secure path takes no state with it: after
    /// `release_page`, none of its block starts reads as a free or live
    /// block (the invariant of `block_state`; without `forget_states`, a
    /// later page on these units would inherit `FREE | class` bytes that
    /// the checks would take for free blocks).
    #[test]
    fn a_released_page_leaves_no_block_state_behind() {
        // A class no other unit test of this process uses with the secure
        // path (none does), so nobody reclaims and carves these units
        // between the release and the reads.
        let class = 40;
        let page = CheckedSegments.acquire_page(class, true).expect("memory");
        let start = Segments.page_start(page);
        let size = CLASS_SIZE[class] as usize;
        let blocks: Vec<*mut u8> = (0..Segments.page_capacity(class) as usize)
            .map(|i| start.wrapping_add(i * size))
            .collect();
        for &b in &blocks {
            // SAFETY: blocks of a page we hold, never handed out.
            unsafe { CheckedSegments.carved(class, b.cast()) };
            assert!(block_state::is_free_block(b, class));
        }
        // SAFETY: the page is ours, never carved through a pool, and none
        // of its blocks is out.
        unsafe { CheckedSegments.release_page(page) };
        for &b in &blocks {
            assert!(
                !block_state::is_free_block(b, class),
                "{b:?} still reads as free"
            );
            assert_eq!(block_state::live_class(b), None);
        }
    }
}
