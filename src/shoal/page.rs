//! Pages: spans of a segment that hold the blocks of one size class, each
//! with an *anchor* word that counts the blocks at home.
//!
//! A block is *at home* when it sits in its page's own free list; it is *out*
//! when a program, a thread cache or a shared batch holds it. Thread caches
//! and the shared batch stacks (see [`super::pool`]) move blocks around
//! without touching pages; blocks come home only when a pool sends a batch
//! home (its stack is over its cap, or it is idle, or memory is short). A
//! page whose blocks are all at home leaves its class and goes back to the
//! page heap, where any class or a medium object may take its units.
//!
//! # The anchor word
//! One `AtomicU64`, changed only by CAS (the design of Michael's lock-free
//! allocator and LRMalloc, with one state fewer):
//!
//! | bits | field |
//! |---|---|
//! | 0–32 | handle of the first block of the home list (0: empty) |
//! | 33–48 | blocks at home |
//! | 49–50 | state |
//!
//! | state | meaning | in the class's partial stack? |
//! |---|---|---|
//! | `ACTIVE` | the class is still carving fresh blocks off it | no |
//! | `FULL` | fully carved, no block at home | no |
//! | `LISTED` | fully carved, at least one block at home | yes (or popped by the one thread about to take its list) |
//! | `FREE` | not a page: its units belong to the page heap | no |
//!
//! Transitions (each one CAS, by whoever holds the right to make it):
//! - a *return* of `k` blocks the caller holds: `ACTIVE → ACTIVE`,
//!   `LISTED → LISTED`, `FULL → LISTED` (the caller then pushes the page on
//!   the partial stack: only the thread that made it `LISTED` may), or
//!   `FULL → FREE` when those `k` were the last blocks out (the caller then
//!   releases the units: nobody else can reach the page);
//! - a *take* of the whole home list by the thread that popped the page from
//!   the partial stack: `LISTED → FULL`;
//! - the end of carving, by the thread that installed the next page in the
//!   class's carve word: `ACTIVE → FULL | LISTED | FREE` by the same rule;
//! - a *scavenge* by a thread that popped the page: `LISTED → FREE` when
//!   every block is at home.
//!
//! The home list is a stack that is only pushed (by returns) and taken whole
//! (by a take), so it has no ABA problem: a return links its run to whatever
//! head it read and the CAS checks that head is still current; what lies
//! behind that head does not matter. A page reused for another class only
//! after all its blocks came home, so no thread can still hold one of its
//! blocks and return it to the wrong class.

use crate::sync::{AtomicU64, Ordering};

const HEAD_BITS: u32 = 33;
const HEAD_MASK: u64 = (1 << HEAD_BITS) - 1;
const COUNT_SHIFT: u32 = HEAD_BITS;
const COUNT_MASK: u64 = 0xffff;
const STATE_SHIFT: u32 = 49;

/// Carving still in progress.
pub const ACTIVE: u64 = 0;
/// Fully carved; no block at home; not listed.
pub const FULL: u64 = 1;
/// Fully carved; some blocks at home; on the class's partial stack.
pub const LISTED: u64 = 2;
/// Not a page (units in the page heap).
pub const FREE: u64 = 3;

/// Largest number of blocks one page may hold (the count field's range).
pub const MAX_CAPACITY: u32 = COUNT_MASK as u32;

/// What the caller of a return or of [`Anchor::end_carving`] must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing: the page stays where it is.
    Stay,
    /// Push the page on its class's partial stack.
    List,
    /// Every block is home: release the page's units to the page heap.
    Release,
}

#[inline]
const fn pack(head: u64, count: u64, state: u64) -> u64 {
    head | (count << COUNT_SHIFT) | (state << STATE_SHIFT)
}

#[inline]
const fn head(word: u64) -> u64 {
    word & HEAD_MASK
}

#[inline]
const fn count(word: u64) -> u32 {
    ((word >> COUNT_SHIFT) & COUNT_MASK) as u32
}

#[inline]
const fn state(word: u64) -> u64 {
    word >> STATE_SHIFT
}

/// A page's anchor word (see the module documentation).
#[derive(Debug)]
pub struct Anchor(AtomicU64);

impl Anchor {
    /// The anchor of a unit that is not a page.
    pub fn new() -> Self {
        Self(AtomicU64::new(pack(0, 0, FREE)))
    }

    /// Makes a page the caller just claimed `ACTIVE`, empty. The caller
    /// publishes the page afterwards with a Release operation.
    pub fn activate(&self) {
        self.0.store(pack(0, 0, ACTIVE), Ordering::Relaxed);
    }

    /// Marks a page that was activated but never carved from as not a page.
    pub fn deactivate_unused(&self) {
        self.0.store(pack(0, 0, FREE), Ordering::Relaxed);
    }

    /// The state now (for checks and tests).
    pub fn state(&self) -> u64 {
        state(self.0.load(Ordering::Acquire))
    }

    /// Blocks at home now (for statistics and tests).
    pub fn at_home(&self) -> u32 {
        count(self.0.load(Ordering::Acquire))
    }

    /// Returns a run of `k` blocks whose first block has handle `first`.
    /// Before each CAS attempt, `link_tail(h)` must make the run's last
    /// block point at the block with handle `h` (0: none).
    ///
    /// Aborts the process when the count would pass `capacity`: more blocks
    /// came home than the page has, which only a double free can cause.
    ///
    /// # Safety
    /// The caller holds the `k` blocks of the run, which belong to this page
    /// (of `capacity` blocks), chained from `first` to the tail `link_tail`
    /// writes, and gives them up.
    pub unsafe fn give_back(
        &self,
        first: u64,
        k: u32,
        capacity: u32,
        mut link_tail: impl FnMut(u64),
    ) -> Next {
        debug_assert!(first != 0 && first <= HEAD_MASK && k >= 1);
        let mut old = self.0.load(Ordering::Relaxed);
        loop {
            let total = count(old) + k;
            if total > capacity || state(old) == FREE {
                crate::fatal::abort(
                    "shoalloc: a page got back more blocks than it has (double free?)",
                );
            }
            let (new_state, next) = match state(old) {
                FULL if total == capacity => (FREE, Next::Release),
                FULL => (LISTED, Next::List),
                s => (s, Next::Stay),
            };
            let new = if new_state == FREE {
                pack(0, 0, FREE)
            } else {
                link_tail(head(old));
                pack(first, u64::from(total), new_state)
            };
            // Release publishes the run's links and contents to whoever takes
            // the list; Acquire (on success) makes every earlier return
            // visible to the thread that may now release the page.
            match self
                .0
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => old = actual,
            }
        }
    }

    /// Takes the whole home list of a `LISTED` page the caller popped from
    /// the partial stack: its first block's handle and length (at least 1).
    /// The page becomes `FULL`.
    pub fn take_all(&self) -> (u64, u32) {
        let mut old = self.0.load(Ordering::Relaxed);
        loop {
            debug_assert_eq!(state(old), LISTED);
            debug_assert!(count(old) >= 1);
            match self.0.compare_exchange_weak(
                old,
                pack(0, 0, FULL),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (head(old), count(old)),
                Err(actual) => old = actual,
            }
        }
    }

    /// Ends carving of an `ACTIVE` page of `capacity` blocks, all carved:
    /// called once, by the thread that replaced it as the carving page.
    pub fn end_carving(&self, capacity: u32) -> Next {
        let mut old = self.0.load(Ordering::Relaxed);
        loop {
            debug_assert_eq!(state(old), ACTIVE);
            let (new, next) = match count(old) {
                n if n == capacity => (pack(0, 0, FREE), Next::Release),
                0 => (pack(0, 0, FULL), Next::Stay),
                _ => (pack(head(old), u64::from(count(old)), LISTED), Next::List),
            };
            match self
                .0
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => old = actual,
            }
        }
    }

    /// For a `LISTED` page the caller popped: if all `capacity` blocks are
    /// home, makes it `FREE` and returns `true` (the caller releases its
    /// units); otherwise leaves it `LISTED` (the caller pushes it back).
    pub fn free_if_empty(&self, capacity: u32) -> bool {
        let old = self.0.load(Ordering::Acquire);
        debug_assert_eq!(state(old), LISTED);
        // Only returns change a popped LISTED page, and they only add blocks:
        // once the count is full it stays full, so one CAS settles it.
        count(old) == capacity
            && self
                .0
                .compare_exchange(old, pack(0, 0, FREE), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for Anchor {
    fn default() -> Self {
        Self::new()
    }
}
