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
use super::stack::NodeSpace;
use crate::sync::AtomicU64;

/// [`Segments`], checking the links the pools follow (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckedSegments;

/// Aborts unless `block`, reached through a link of a free list of
/// `class`, is a block of that class (so its words may be read). The
/// secure thread caches check this before they pop a block, then check its
/// state as they mark it handed out (`block_state::hand_out`).
#[inline(always)]
pub fn check_class(block: *mut FreeBlock, class: usize) {
    if small_block(block.cast()) != Some(class) {
        corrupted_link();
    }
}

/// [`check_class`], and the block is not handed out: what the pools check
/// on each block they reach through a link.
#[inline]
pub fn check_listed(block: *mut FreeBlock, class: usize) {
    #[cfg(shoalloc_fault)]
    if crate::fault::is_armed(crate::fault::Fault::UncheckedPoolLinks) {
        return;
    }
    check_class(block, class);
    // SAFETY: a block of ours, hence in a published segment.
    if unsafe { block_state::is_live(block.cast()) } {
        corrupted_link();
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
// handle that names no mapped segment (only a rewritten link produces one)
// aborts before any word is read.
unsafe impl NodeSpace for CheckedSegments {
    #[inline]
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        #[cfg(shoalloc_fault)]
        let unchecked = crate::fault::is_armed(crate::fault::Fault::UncheckedPoolLinks);
        #[cfg(not(shoalloc_fault))]
        let unchecked = false;
        if !unchecked && !Segments::names_mapped_segment(handle) {
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
        // SAFETY: forwarded contract.
        unsafe { Segments.release_page(page) }
    }

    unsafe fn release_idle_page(&self, page: u64, idle_since: u64) {
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
