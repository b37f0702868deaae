//! The lock-free stack of batches that every shared size-class pool is built on.
//!
//! A Treiber stack whose nodes are the first blocks of batches. Nodes are
//! named by 33-bit *handles* (see [`NodeSpace`]) instead of raw pointers so
//! that a 31-bit ABA tag fits next to them in one 64-bit word:
//!
//! | bits  | head word                  | link word (in the node)          |
//! |-------|----------------------------|----------------------------------|
//! | 0–32  | handle of the top node     | handle of the next node          |
//! | 33–63 | tag, +1 on every push/pop  | number of blocks in this batch   |
//!
//! Handle 0 is the empty stack / end of list.
//!
//! # Why ABA cannot bite
//! A pop reads the head `(h, t)`, then the link of node `h`, then CASes the
//! head from `(h, t)` to `(link, t + 1)`. If, between the read and the CAS,
//! `h` was popped, reused and pushed back, the head again names `h` but its
//! tag has moved on, so the stale CAS fails. The CAS could only succeed
//! wrongly if exactly a multiple of 2^31 successful pushes and pops happened
//! on this one stack in that window *and* the same node is on top again. Each
//! operation is a successful CAS on one shared cache line, at least ~5–10 ns
//! even uncontended, so a wrap takes at least 2^31 × 5–10 ns ≈ 10–20 s of
//! saturated traffic on this one stack while one thread sits between two
//! adjacent instructions (its head load and its CAS) — far beyond what a
//! preempted thread sees in practice. DESIGN.md lists every premise of this
//! argument in one place.
//!
//! The stale link read is harmless because node memory is never unmapped
//! (segments of small blocks live as long as the process) and the link is read
//! with an atomic load. Strictly, the C++ memory model calls a racy atomic read
//! against the new owner's plain writes a data race; like every Treiber stack
//! over recyclable memory (snmalloc's `racy_read`), we rely on the value being
//! discarded by the failing CAS.

use crate::sync::{AtomicU64, Ordering};

/// Bits of a handle.
pub const HANDLE_BITS: u32 = 33;
/// Mask of the handle part of a head or link word.
pub const HANDLE_MASK: u64 = (1 << HANDLE_BITS) - 1;
/// Bits of the ABA tag in the head word (and of the batch length in a link).
pub const TAG_BITS: u32 = 64 - HANDLE_BITS;

/// Maps node handles to the link word stored in each node.
///
/// # Safety
/// Implementations must return, for every handle ever pushed, a reference to
/// an `AtomicU64` that stays valid (mapped, and used as that node's link word)
/// for the lifetime of the stacks that use the space, even after the node was
/// popped: a concurrent pop may still read a stale link.
pub unsafe trait NodeSpace {
    /// The link word of the node named `handle`.
    ///
    /// # Safety
    /// `handle` must be non-zero and name a node of this space (one that was
    /// or could be pushed); anything else may read arbitrary memory.
    unsafe fn link(&self, handle: u64) -> &AtomicU64;
}

/// A Treiber stack of batches with a 31-bit ABA tag.
///
/// `TAGGED = false` builds the deliberately broken variant used only to show
/// that the model checker catches ABA (see `loom_tests/`); the allocator uses
/// [`BatchStack`].
#[derive(Debug)]
pub struct TaggedStack<const TAGGED: bool> {
    /// Invariant: the handle part is 0 or names a node whose link word chains
    /// to further pushed nodes and ends in 0; every node is in at most one
    /// stack at a time.
    head: AtomicU64,
}

/// The stack every shared pool uses.
pub type BatchStack = TaggedStack<true>;

/// The same stack with the tag update dropped: ABA-unsafe on purpose.
#[doc(hidden)]
pub type UntaggedStack = TaggedStack<false>;

#[inline]
fn tag_step<const TAGGED: bool>() -> u64 {
    if TAGGED {
        1 << HANDLE_BITS
    } else {
        0
    }
}

impl<const TAGGED: bool> TaggedStack<TAGGED> {
    /// An empty stack.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
        }
    }

    /// An empty stack (loom atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicU64::new(0),
        }
    }

    /// Pushes the batch whose first node is `handle` and which holds `len`
    /// blocks. One successful CAS publishes the whole batch.
    ///
    /// # Safety
    /// `handle` must be non-zero, at most [`HANDLE_MASK`], valid in `space`,
    /// and not currently in any stack; `len` must be below 2^[`TAG_BITS`]
    /// (it shares the link word with the next handle); `space` is the space
    /// of every other push and pop on this stack; the caller gives up the
    /// batch.
    pub unsafe fn push(&self, space: &impl NodeSpace, handle: u64, len: u32) {
        // SAFETY: forwarded contract.
        unsafe { self.push_counted(space, handle, len) };
    }

    /// As [`TaggedStack::push`], returning how many CAS attempts failed
    /// (for the statistics; counted in a register, so it costs nothing).
    ///
    /// # Safety
    /// As [`TaggedStack::push`].
    pub unsafe fn push_counted(&self, space: &impl NodeSpace, handle: u64, len: u32) -> u32 {
        debug_assert!(handle != 0 && handle <= HANDLE_MASK);
        debug_assert!(u64::from(len) < (1 << TAG_BITS));
        // SAFETY: the caller promises `handle` is a valid node of `space`.
        let link = unsafe { space.link(handle) };
        let mut backoff = Backoff::new();
        let mut retries = 0;
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // The link is written before the Release CAS that publishes it.
            link.store(
                (head & HANDLE_MASK) | (u64::from(len) << HANDLE_BITS),
                Ordering::Relaxed,
            );
            let new = handle | ((head & !HANDLE_MASK).wrapping_add(tag_step::<TAGGED>()));
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return retries,
                Err(actual) => {
                    head = actual;
                    retries += 1;
                    backoff.spin();
                }
            }
        }
    }

    /// Pops the top batch: its first node's handle and its length.
    ///
    /// # Safety
    /// `space` is the space every push onto this stack used: the handles in
    /// the stack are looked up in it.
    pub unsafe fn pop(&self, space: &impl NodeSpace) -> Option<(u64, u32)> {
        // SAFETY: forwarded contract.
        unsafe { self.pop_counted(space, &mut 0) }
    }

    /// As [`TaggedStack::pop`], adding the number of failed CAS attempts to
    /// `retries` (for the statistics; a local, so it costs nothing).
    ///
    /// # Safety
    /// As [`TaggedStack::pop`].
    pub unsafe fn pop_counted(
        &self,
        space: &impl NodeSpace,
        retries: &mut u32,
    ) -> Option<(u64, u32)> {
        let mut backoff = Backoff::new();
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let handle = head & HANDLE_MASK;
            if handle == 0 {
                return None;
            }
            // Possibly stale if another thread pops `handle` first; the tag
            // makes the CAS below fail in that case.
            // SAFETY: a non-zero handle in the head was pushed, with `space`
            // (our caller's promise), so it names a node of `space`, whose
            // link word stays valid (NodeSpace contract).
            let link = unsafe { space.link(handle) }.load(Ordering::Relaxed);
            let new =
                (link & HANDLE_MASK) | ((head & !HANDLE_MASK).wrapping_add(tag_step::<TAGGED>()));
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some((handle, (link >> HANDLE_BITS) as u32)),
                Err(actual) => {
                    head = actual;
                    *retries += 1;
                    backoff.spin();
                }
            }
        }
    }

    /// Empties the stack with one CAS and returns its top node's handle (0
    /// when it was empty). The caller then owns every node of the chain and
    /// walks it with [`TaggedStack::next_of`].
    ///
    /// The tag moves on as for a pop, so a pop that read the old head fails.
    pub fn take_all(&self) -> u64 {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            if head & HANDLE_MASK == 0 {
                return 0;
            }
            let new = (head & !HANDLE_MASK).wrapping_add(tag_step::<TAGGED>());
            // Acquire: the links of every node in the chain were written
            // before the Release CAS that pushed the node.
            match self
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return head & HANDLE_MASK,
                Err(actual) => head = actual,
            }
        }
    }

    /// The handle after `handle` in a chain from [`TaggedStack::take_all`]
    /// (0 at the end) and the length pushed with `handle`.
    ///
    /// # Safety
    /// `handle` is a node of a chain the caller took with `take_all` from a
    /// stack whose pushes all used `space`, and the caller has not yet given
    /// that node away.
    pub unsafe fn next_of(space: &impl NodeSpace, handle: u64) -> (u64, u32) {
        // SAFETY: the caller owns the node, a node of `space`.
        let link = unsafe { space.link(handle) }.load(Ordering::Relaxed);
        (link & HANDLE_MASK, (link >> HANDLE_BITS) as u32)
    }

    /// `true` if the stack held no batch at the moment of the load.
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) & HANDLE_MASK == 0
    }
}

impl<const TAGGED: bool> Default for TaggedStack<TAGGED> {
    fn default() -> Self {
        Self::new()
    }
}

/// Exponential backoff on CAS failure (crossbeam's) outside loom; under loom a
/// yield, so the model checker schedules the other threads.
struct Backoff {
    #[cfg(not(loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    #[inline]
    fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    #[inline]
    fn spin(&mut self) {
        #[cfg(not(loom))]
        self.inner.spin();
        #[cfg(loom)]
        crate::sync::spin_hint();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Nodes in a plain array: handle `i` is `nodes[i]`.
    struct Nodes(Vec<AtomicU64>);

    // SAFETY: the vector outlives the stacks in each test and is never resized.
    unsafe impl NodeSpace for Nodes {
        unsafe fn link(&self, handle: u64) -> &AtomicU64 {
            &self.0[handle as usize]
        }
    }

    /// Pops with the one space each test uses for every push and pop.
    fn pop<const T: bool>(stack: &TaggedStack<T>, space: &Nodes) -> Option<(u64, u32)> {
        // SAFETY: every test pushes onto a stack with one `Nodes` only.
        unsafe { stack.pop(space) }
    }

    fn nodes(n: usize) -> Nodes {
        Nodes((0..n).map(|_| AtomicU64::new(0)).collect())
    }

    #[test]
    fn lifo_with_lengths() {
        let space = nodes(8);
        let stack = BatchStack::new();
        assert!(stack.is_empty());
        // SAFETY: distinct non-zero handles, each pushed once.
        unsafe {
            stack.push(&space, 1, 10);
            stack.push(&space, 2, 20);
            stack.push(&space, 7, 1);
        }
        assert_eq!(pop(&stack, &space), Some((7, 1)));
        assert_eq!(pop(&stack, &space), Some((2, 20)));
        assert_eq!(pop(&stack, &space), Some((1, 10)));
        assert_eq!(pop(&stack, &space), None);
    }

    #[test]
    fn tag_advances_on_every_operation() {
        let space = nodes(4);
        let stack = BatchStack::new();
        // SAFETY: handle 1 is pushed only while not in the stack.
        unsafe { stack.push(&space, 1, 1) };
        let before = stack.head.load(Ordering::Relaxed);
        pop(&stack, &space);
        // SAFETY: as above.
        unsafe { stack.push(&space, 1, 1) };
        let after = stack.head.load(Ordering::Relaxed);
        assert_eq!(before & HANDLE_MASK, after & HANDLE_MASK);
        assert_eq!((after >> HANDLE_BITS) - (before >> HANDLE_BITS), 2);

        let broken = UntaggedStack::new();
        // SAFETY: as above.
        unsafe { broken.push(&space, 2, 1) };
        let before = broken.head.load(Ordering::Relaxed);
        pop(&broken, &space);
        // SAFETY: as above.
        unsafe { broken.push(&space, 2, 1) };
        assert_eq!(
            before,
            broken.head.load(Ordering::Relaxed),
            "untagged head repeats"
        );
    }

    #[test]
    fn take_all_returns_the_chain_and_moves_the_tag() {
        let space = nodes(8);
        let stack = BatchStack::new();
        assert_eq!(stack.take_all(), 0);
        // SAFETY: distinct non-zero handles, each pushed once.
        unsafe {
            stack.push(&space, 3, 30);
            stack.push(&space, 5, 50);
        }
        let before = stack.head.load(Ordering::Relaxed);
        let top = stack.take_all();
        assert!(stack.is_empty());
        assert_ne!(
            stack.head.load(Ordering::Relaxed) >> HANDLE_BITS,
            before >> HANDLE_BITS
        );
        // SAFETY: we took the chain from a stack that only used `space`.
        let (next, len) = unsafe { BatchStack::next_of(&space, top) };
        assert_eq!((top, len), (5, 50));
        // SAFETY: as above.
        assert_eq!(unsafe { BatchStack::next_of(&space, next) }, (0, 30));
        assert_eq!(next, 3);
    }

    #[test]
    fn tag_wraps_without_disturbing_the_handle() {
        let space = nodes(4);
        let stack = BatchStack::new();
        stack.head.store(!HANDLE_MASK, Ordering::Relaxed);
        // SAFETY: handle 3 is pushed once.
        unsafe { stack.push(&space, 3, 5) };
        assert_eq!(stack.head.load(Ordering::Relaxed), 3);
        assert_eq!(pop(&stack, &space), Some((3, 5)));
    }

    #[test]
    fn concurrent_push_pop_conserves_nodes() {
        const THREADS: usize = 4;
        const PER: usize = if cfg!(miri) { 20 } else { 2000 };
        let space = nodes(THREADS * 4 + 1);
        let stack = BatchStack::new();
        for h in 1..space.0.len() as u64 {
            // SAFETY: each handle pushed once.
            unsafe { stack.push(&space, h, h as u32) };
        }
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..PER {
                        if let Some((h, len)) = pop(&stack, &space) {
                            assert_eq!(len as u64, h, "length travels with its node");
                            // SAFETY: we own `h` after popping it.
                            unsafe { stack.push(&space, h, len) };
                        }
                    }
                });
            }
        });
        let mut seen = vec![false; space.0.len()];
        while let Some((h, _)) = pop(&stack, &space) {
            assert!(!seen[h as usize], "node {h} twice");
            seen[h as usize] = true;
        }
        assert!(seen[1..].iter().all(|&s| s), "a node was lost");
    }
}
