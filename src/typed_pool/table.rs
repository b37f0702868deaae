//! A growable table of stack nodes named by handles, never freed while it
//! lives: the memory a pool's lock-free stacks need.
//!
//! The shared stacks are the crate's tagged Treiber stack ([`BatchStack`]),
//! which names nodes by 33-bit handles and requires every node's link word
//! to stay valid for as long as the stacks live (a stale pop may still read
//! it). So nodes are never freed one by one: they are carved from chunks
//! that live until the table is dropped, and handle `h` is found by
//! arithmetic, not by a search. A pool keeps two tables: its object slots
//! and its batch nodes.
//!
//! # Layout
//! Chunk `c` holds `FIRST_CHUNK << c` nodes, so the table doubles as it
//! grows and [`CHUNKS`] chunks cover 2^33 − 32 handles, nearly the stack's
//! 33-bit limit. With `i = h - 1 + FIRST_CHUNK`, the chunk is
//! `log2(i) - log2(FIRST_CHUNK)` and the node's index in it `i - 2^log2(i)`.
//! Chunks are made when the first of their handles is handed out and
//! published with one CAS; a thread that loses the race frees its own.
//!
//! [`BatchStack`]: crate::shoal::stack::BatchStack

use crate::shoal::stack::NodeSpace;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};
use core::ptr;
use crossbeam_utils::CachePadded;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};

/// Nodes in chunk 0.
const FIRST_CHUNK: u64 = 32;
/// Chunks in the table: enough for every handle up to [`MAX_HANDLE`].
const CHUNKS: usize = 28;
/// The largest handle handed out (2^33 − 32 nodes in all): far above what
/// memory holds, and within the stack's 33-bit handle limit.
const MAX_HANDLE: u64 = (FIRST_CHUNK << CHUNKS) - FIRST_CHUNK;

/// What a table holds: a node of a [`BatchStack`](crate::shoal::stack).
pub(crate) trait TableNode {
    /// A new node named `handle`, in no stack.
    fn new(handle: u64) -> Self;
    /// Its stack link word.
    fn link(&self) -> &AtomicU64;
}

/// The chunk table and the count of handles handed out.
///
/// # Invariants
/// `chunks[c]` is null or points to an allocation of `chunk_len(c)`
/// initialised nodes, published with Release and never changed or freed
/// before `Drop`; node `i` of chunk `c` was made by `N::new` with the handle
/// that `locate` maps to `(c, i)`. Every handle that `fresh` returned lies
/// in a published chunk.
pub(crate) struct Table<N> {
    chunks: [AtomicPtr<N>; CHUNKS],
    /// Handles handed out by [`Table::fresh`] so far; on its own cache line,
    /// away from the read-mostly chunk table.
    issued: CachePadded<AtomicU64>,
}

/// Nodes in chunk `c`.
#[inline]
fn chunk_len(c: usize) -> usize {
    (FIRST_CHUNK << c) as usize
}

/// The chunk of handle `h` and the node's index in it.
#[inline]
fn locate(h: u64) -> (usize, usize) {
    let i = h - 1 + FIRST_CHUNK;
    let top = 63 - i.leading_zeros();
    (
        (top - FIRST_CHUNK.trailing_zeros()) as usize,
        (i - (1 << top)) as usize,
    )
}

impl<N: TableNode> Table<N> {
    /// No chunks yet.
    pub(crate) fn new() -> Self {
        Self {
            chunks: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            issued: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// The node named `h`.
    ///
    /// # Safety
    /// `h` was returned (as a node's handle) by [`Table::fresh`] of this
    /// table.
    #[inline]
    pub(crate) unsafe fn get(&self, h: u64) -> &N {
        let (c, i) = locate(h);
        // Acquire: pairs with the Release that published the chunk.
        let chunk = self.chunks[c].load(Ordering::Acquire);
        debug_assert!(!chunk.is_null());
        // SAFETY: `h` was handed out, so its chunk is published (the type's
        // invariant), holds `chunk_len(c) > i` initialised nodes and lives as
        // long as `self`.
        unsafe { &*chunk.add(i) }
    }

    /// A node never handed out before, growing the table if needed.
    ///
    /// Panics when all 2^33 − 32 handles are in use (memory runs out long
    /// before).
    pub(crate) fn fresh(&self) -> &N {
        let h = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        if h > MAX_HANDLE {
            self.issued.fetch_sub(1, Ordering::Relaxed);
            panic!("shoalloc::Pool: all 2^33 - 32 handles are in use");
        }
        let (c, i) = locate(h);
        let mut chunk = self.chunks[c].load(Ordering::Acquire);
        if chunk.is_null() {
            chunk = self.publish_chunk(c);
        }
        // SAFETY: `chunk` is published and holds `chunk_len(c) > i` nodes.
        unsafe { &*chunk.add(i) }
    }

    /// Makes chunk `c` and publishes it, or returns the one another thread
    /// published first.
    #[cold]
    fn publish_chunk(&self, c: usize) -> *mut N {
        let len = chunk_len(c);
        let layout = Layout::array::<N>(len).expect("pool chunk size overflows");
        // SAFETY: `layout` has a non-zero size (a node holds an atomic).
        let fresh = unsafe { alloc(layout) }.cast::<N>();
        if fresh.is_null() {
            handle_alloc_error(layout);
        }
        let first = (FIRST_CHUNK << c) - FIRST_CHUNK + 1;
        for i in 0..len {
            // SAFETY: `i < len`, inside the new allocation, which nothing
            // else can see yet.
            unsafe { fresh.add(i).write(N::new(first + i as u64)) };
        }
        match self.chunks[c].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(theirs) => {
                // SAFETY: ours was never published.
                unsafe { free_chunk(fresh, len) };
                theirs
            }
        }
    }
}

/// Drops a chunk's nodes and frees it.
///
/// # Safety
/// `chunk` is an unshared allocation of `len` initialised nodes made by
/// `publish_chunk`.
unsafe fn free_chunk<N>(chunk: *mut N, len: usize) {
    // SAFETY: the caller's promise.
    unsafe {
        ptr::drop_in_place(ptr::slice_from_raw_parts_mut(chunk, len));
        dealloc(
            chunk.cast(),
            Layout::array::<N>(len).expect("was allocated"),
        );
    }
}

impl<N> Drop for Table<N> {
    fn drop(&mut self) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            let p = chunk.load(Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `&mut self`: no stack or thread uses a node now;
                // what the nodes own (a slot's value) is the owner's to drop
                // first, and dropping a node never drops it.
                unsafe { free_chunk(p, chunk_len(c)) };
            }
        }
    }
}

// SAFETY: every handle pushed onto a pool's stacks comes from `fresh` of the
// table the stacks are used with, and its chunk — with the link word — stays
// allocated until the table is dropped, after the stacks (the pool drops its
// tables with its stacks, and no operation runs during drop).
unsafe impl<N: TableNode> NodeSpace for Table<N> {
    #[inline]
    unsafe fn link(&self, handle: u64) -> &AtomicU64 {
        // SAFETY: the trait's caller passes a handle of this space.
        unsafe { self.get(handle) }.link()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct Node(AtomicU64, u64);

    impl TableNode for Node {
        fn new(handle: u64) -> Self {
            Node(AtomicU64::new(0), handle)
        }
        fn link(&self) -> &AtomicU64 {
            &self.0
        }
    }

    #[test]
    fn locate_covers_every_chunk_in_order() {
        assert_eq!(locate(1), (0, 0));
        assert_eq!(locate(32), (0, 31));
        assert_eq!(locate(33), (1, 0));
        assert_eq!(locate(96), (1, 63));
        assert_eq!(locate(97), (2, 0));
        let (c, i) = locate(MAX_HANDLE);
        assert_eq!((c, i + 1), (CHUNKS - 1, chunk_len(CHUNKS - 1)));
    }

    #[test]
    fn fresh_nodes_are_distinct_and_named_by_their_handles() {
        let table = Table::<Node>::new();
        let mut seen = Vec::new();
        for _ in 0..200 {
            let n = table.fresh();
            seen.push(n as *const Node);
            // SAFETY: the handle came from `fresh`.
            assert!(ptr::eq(unsafe { table.get(n.1) }, n));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 200);
    }
}
