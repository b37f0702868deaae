//! Arenas: 1 MiB mappings cut into 64 pools, and the fixed table of arena
//! objects that tracks them (CPython's `arenas`, `usable_arenas`,
//! `unused_arena_objects` and `nfp2lasta`).
//!
//! # Why a fixed table
//! GilAlloc may itself be the global allocator, so its bookkeeping cannot
//! allocate. CPython grows its `arenas` array with `realloc`; here the table is
//! a fixed array of `N` arena objects inside the allocator's static state
//! (`N = 16384` for the process-wide heap, i.e. at most 16 GiB of small
//! objects). When every object is associated with a mapping, taking a pool
//! fails and the small allocation returns null. Objects are handed out in
//! index order the first time (`initialized` is the high-water mark) and
//! recycled through the `unused` list once their arena is unmapped.
//!
//! # Why sorted
//! `usable` lists the arenas that have at least one free pool, sorted by
//! number of free pools, ascending. New pools always come from the head — the
//! most used arena — so lightly used arenas drain and can be unmapped. Keeping
//! the order costs O(1) per pool thanks to `nfp2lasta[k]`, the last arena in
//! the list with exactly `k` free pools: an arena whose count grows by one
//! moves to just after the last arena with its old count.

use super::pool::{PoolHeader, DUMMY_CLASS, POOL_SIZE};
use crate::os;
use core::num::NonZeroU32;
use core::ptr;

/// Bytes in an arena. Arenas are mapped aligned to their size, so every one
/// of them holds exactly [`POOLS_PER_ARENA`] pool-aligned pools (CPython,
/// using `malloc`ed or unaligned arenas, sometimes loses one).
pub const ARENA_SIZE: usize = 1 << 20;

/// Pools in an arena.
pub const POOLS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;

/// Names an arena object: its table index plus one, so that
/// `Option<ArenaRef>` is a single `u32` whose `None` is zero and the whole
/// table can be zero-initialised (it then lives in `.bss`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ArenaRef(NonZeroU32);

impl ArenaRef {
    /// The object at table index `index` (below the table length, which is
    /// below `u32::MAX`, so the sum never saturates).
    fn from_index(index: usize) -> Self {
        ArenaRef(NonZeroU32::MIN.saturating_add(index as u32))
    }

    /// The table index of this object, as stored in `PoolHeader::arenaindex`.
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// One arena object (CPython's `struct arena_object`).
///
/// Invariants:
/// - `address` is null exactly when the object is not associated with a
///   mapping (never used, or on the `unused` list, linked by `nextarena`);
/// - otherwise `address .. address + ARENA_SIZE` is a mapping we own,
///   `pool_address` is the next never-carved pool (`address + ARENA_SIZE` once
///   all are carved), `freepools` is a null-terminated list (through
///   `PoolHeader::nextpool`) of carved pools holding no blocks, and
///   `nfreepools` = |`freepools`| + never-carved pools;
/// - the object is in the `usable` list (linked by `nextarena`/`prevarena`)
///   exactly when `nfreepools > 0`.
#[derive(Clone, Copy)]
struct ArenaObject {
    address: *mut u8,
    pool_address: *mut u8,
    nfreepools: u32,
    freepools: *mut PoolHeader,
    nextarena: Option<ArenaRef>,
    prevarena: Option<ArenaRef>,
}

impl ArenaObject {
    const UNUSED: ArenaObject = ArenaObject {
        address: ptr::null_mut(),
        pool_address: ptr::null_mut(),
        nfreepools: 0,
        freepools: ptr::null_mut(),
        nextarena: None,
        prevarena: None,
    };
}

/// The arena table and the lists over it. See the module docs.
///
/// Invariants (besides those of [`ArenaObject`]):
/// - objects at indices `>= initialized` have never been used;
/// - `usable` is sorted by `nfreepools`, ascending, and `nfp2lasta[k]` is the
///   last arena in it with `nfreepools == k` (None when there is none;
///   `nfp2lasta[0]` is always None);
/// - at most one arena with every pool free is kept mapped: the tail of
///   `usable` (CPython's anti-thrashing rule, bpo-37257);
/// - `pools_in_use` = Σ over mapped arenas of `POOLS_PER_ARENA - nfreepools`.
pub struct Arenas<const N: usize> {
    objs: [ArenaObject; N],
    initialized: usize,
    unused: Option<ArenaRef>,
    usable: Option<ArenaRef>,
    nfp2lasta: [Option<ArenaRef>; POOLS_PER_ARENA + 1],
    mapped: usize,
    high_water: usize,
    mapped_total: usize,
    pools_in_use: usize,
}

// SAFETY: the raw pointers refer to mappings this table owns exclusively; the
// table may move between threads (it lives behind the global lock).
unsafe impl<const N: usize> Send for Arenas<N> {}

impl<const N: usize> Arenas<N> {
    /// An empty table: no arena is mapped until the first pool is needed.
    pub const fn new() -> Self {
        // Keeps `ArenaRef` arithmetic and `PoolHeader::arenaindex` in range.
        const { assert!(N > 0 && N < u32::MAX as usize) };
        Arenas {
            objs: [ArenaObject::UNUSED; N],
            initialized: 0,
            unused: None,
            usable: None,
            nfp2lasta: [None; POOLS_PER_ARENA + 1],
            mapped: 0,
            high_water: 0,
            mapped_total: 0,
            pools_in_use: 0,
        }
    }

    fn obj(&self, r: ArenaRef) -> &ArenaObject {
        &self.objs[r.index()]
    }

    fn obj_mut(&mut self, r: ArenaRef) -> &mut ArenaObject {
        &mut self.objs[r.index()]
    }

    /// Maps a fresh arena and associates an arena object with it (CPython's
    /// `new_arena`). The object is not linked into `usable` yet. None when the
    /// table is exhausted or the kernel refuses.
    fn new_arena(&mut self) -> Option<ArenaRef> {
        let r = match self.unused {
            Some(r) => r,
            None if self.initialized < N => ArenaRef::from_index(self.initialized),
            None => return None,
        };
        if !os::page_size_ok() {
            return None;
        }
        let address = os::map_aligned(ARENA_SIZE, ARENA_SIZE);
        if address.is_null() {
            return None;
        }
        if self.unused == Some(r) {
            self.unused = self.obj(r).nextarena;
        } else {
            self.initialized += 1;
        }
        *self.obj_mut(r) = ArenaObject {
            address,
            pool_address: address,
            nfreepools: POOLS_PER_ARENA as u32,
            freepools: ptr::null_mut(),
            nextarena: None,
            prevarena: None,
        };
        self.mapped += 1;
        self.mapped_total += 1;
        self.high_water = self.high_water.max(self.mapped);
        Some(r)
    }

    /// Takes a free pool from the fullest usable arena, mapping a new arena
    /// when none has one (the arena half of CPython's
    /// `allocate_from_new_pool`). Returns null when no arena can be had.
    ///
    /// The pool's `arenaindex` is set; its `szidx` is [`DUMMY_CLASS`] for a
    /// pool never used before, or its last class for a recycled one (whose
    /// free list and offsets are then still intact).
    pub fn take_pool(&mut self) -> *mut PoolHeader {
        let head = match self.usable {
            Some(head) => head,
            None => {
                let Some(fresh) = self.new_arena() else {
                    return ptr::null_mut();
                };
                self.usable = Some(fresh);
                self.nfp2lasta[POOLS_PER_ARENA] = Some(fresh);
                fresh
            }
        };
        // The head has the fewest free pools, so taking one keeps the order;
        // only the bucket bookkeeping changes.
        let nf = self.obj(head).nfreepools as usize;
        if self.nfp2lasta[nf] == Some(head) {
            self.nfp2lasta[nf] = None;
        }
        if nf > 1 {
            self.nfp2lasta[nf - 1] = Some(head);
        }
        let index = head.index();
        let ao = self.obj_mut(head);
        let pool = if !ao.freepools.is_null() {
            let pool = ao.freepools;
            // SAFETY: pools on an arena's free list are carved, initialised
            // headers inside the live mapping.
            ao.freepools = unsafe { (*pool).nextpool };
            pool
        } else {
            let pool = ao.pool_address.cast::<PoolHeader>();
            // SAFETY: nfreepools > 0 with an empty free list means a
            // never-carved pool remains at `pool_address`, inside the mapping;
            // advancing by one pool stays within (or one past) it.
            unsafe {
                (*pool).arenaindex = index as u32;
                (*pool).szidx = DUMMY_CLASS;
                ao.pool_address = ao.pool_address.add(POOL_SIZE);
            }
            pool
        };
        ao.nfreepools -= 1;
        if ao.nfreepools == 0 {
            // Wholly allocated: leaves the usable list.
            let next = ao.nextarena.take();
            self.usable = next;
            if let Some(next) = next {
                self.obj_mut(next).prevarena = None;
            }
        }
        self.pools_in_use += 1;
        pool
    }

    /// Gives back a pool that holds no more blocks (the arena half of
    /// CPython's `insert_to_freepool`): it joins its arena's free pools, the
    /// arena moves right to stay sorted, and an arena left wholly free is
    /// unmapped unless it is the last usable one.
    ///
    /// # Safety
    /// `pool` must have come from [`Arenas::take_pool`] of this table, hold no
    /// live blocks, and be in no `usedpools` list; the caller does not touch it
    /// again until `take_pool` returns it.
    pub unsafe fn return_pool(&mut self, pool: *mut PoolHeader) {
        // SAFETY: the header is live (the pool was handed out by take_pool).
        let r = ArenaRef::from_index(unsafe { (*pool).arenaindex } as usize);
        debug_assert!(r.index() < self.initialized && !self.obj(r).address.is_null());
        self.pools_in_use -= 1;
        let ao = self.obj_mut(r);
        // SAFETY: as above; `nextpool` is the free-pool link while empty.
        unsafe { (*pool).nextpool = ao.freepools };
        ao.freepools = pool;
        let old = ao.nfreepools as usize;
        let prev = ao.prevarena;
        let next = ao.nextarena;
        // If `r` was the rightmost arena with `old` free pools, that bucket
        // now ends at its predecessor, if the predecessor shares the count.
        let lastnf = self.nfp2lasta[old];
        if lastnf == Some(r) {
            self.nfp2lasta[old] = prev.filter(|&p| self.obj(p).nfreepools as usize == old);
        }
        let nf = old + 1;
        self.obj_mut(r).nfreepools = nf as u32;

        if nf == POOLS_PER_ARENA && next.is_some() {
            // Wholly free and not the last usable arena: back to the OS.
            self.unlink_usable(r);
            // SAFETY: every pool of the arena is free, so nothing in it is
            // reachable by users, and it is in no list any more.
            unsafe { self.release(r) };
            return;
        }
        if nf == 1 {
            // The arena was full, hence in no list: it has the fewest free
            // pools of all, so it goes to the head.
            self.obj_mut(r).prevarena = None;
            self.obj_mut(r).nextarena = self.usable;
            if let Some(head) = self.usable {
                self.obj_mut(head).prevarena = Some(r);
            }
            self.usable = Some(r);
            if self.nfp2lasta[1].is_none() {
                self.nfp2lasta[1] = Some(r);
            }
            return;
        }
        if self.nfp2lasta[nf].is_none() {
            self.nfp2lasta[nf] = Some(r);
        }
        if lastnf == Some(r) {
            // Already after every arena with fewer free pools.
            return;
        }
        // Slide right: just after the last arena with the old count, i.e.
        // before every arena with `nf` or more free pools.
        let Some(after) = lastnf else {
            debug_assert!(false, "an arena with {old} free pools must be listed");
            return;
        };
        self.unlink_usable(r);
        let follower = self.obj(after).nextarena;
        self.obj_mut(r).prevarena = Some(after);
        self.obj_mut(r).nextarena = follower;
        self.obj_mut(after).nextarena = Some(r);
        if let Some(f) = follower {
            self.obj_mut(f).prevarena = Some(r);
        }
    }

    /// Removes `r` from the usable list (its bucket entry is the caller's).
    fn unlink_usable(&mut self, r: ArenaRef) {
        let ArenaObject {
            prevarena,
            nextarena,
            ..
        } = *self.obj(r);
        match prevarena {
            Some(p) => self.obj_mut(p).nextarena = nextarena,
            None => self.usable = nextarena,
        }
        if let Some(n) = nextarena {
            self.obj_mut(n).prevarena = prevarena;
        }
        self.obj_mut(r).prevarena = None;
        self.obj_mut(r).nextarena = None;
    }

    /// Unmaps `r`'s arena and puts the object on the unused list.
    ///
    /// # Safety
    /// `r` must be mapped, in no list, and hold no live blocks.
    unsafe fn release(&mut self, r: ArenaRef) {
        let address = self.obj(r).address;
        // SAFETY: `address` is the start of an ARENA_SIZE mapping made by
        // `map_aligned(ARENA_SIZE, ARENA_SIZE)` that nobody uses any more.
        unsafe { os::unmap(address, ARENA_SIZE, ARENA_SIZE) };
        *self.obj_mut(r) = ArenaObject {
            nextarena: self.unused,
            ..ArenaObject::UNUSED
        };
        self.unused = Some(r);
        self.mapped -= 1;
    }

    /// Arenas currently mapped.
    pub fn mapped(&self) -> usize {
        self.mapped
    }

    /// Most arenas mapped at once.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Arenas mapped since start-up.
    pub fn mapped_total(&self) -> usize {
        self.mapped_total
    }

    /// Pools currently assigned to a size class.
    pub fn pools_in_use(&self) -> usize {
        self.pools_in_use
    }

    /// Whether `p` lies inside a mapped arena (a linear scan: tests only).
    #[cfg(test)]
    pub fn contains(&self, p: *const u8) -> bool {
        self.objs[..self.initialized].iter().any(|ao| {
            !ao.address.is_null() && (p as usize).wrapping_sub(ao.address as usize) < ARENA_SIZE
        })
    }

    /// Start of the arena holding `p`, if mapped (tests only).
    #[cfg(test)]
    pub fn arena_of(&self, p: *const u8) -> Option<usize> {
        self.objs[..self.initialized]
            .iter()
            .find(|ao| {
                !ao.address.is_null() && (p as usize).wrapping_sub(ao.address as usize) < ARENA_SIZE
            })
            .map(|ao| ao.address as usize)
    }

    /// Free-pool counts along the usable list, head first (tests only).
    #[cfg(test)]
    pub fn usable_counts(&self) -> std::vec::Vec<u32> {
        let mut out = std::vec::Vec::new();
        let mut cur = self.usable;
        while let Some(r) = cur {
            out.push(self.obj(r).nfreepools);
            cur = self.obj(r).nextarena;
        }
        out
    }

    /// Checks every invariant stated on [`Arenas`] (tests only).
    #[cfg(test)]
    pub fn check(&self) {
        let mut prev: Option<ArenaRef> = None;
        let mut cur = self.usable;
        let mut listed = 0;
        let mut wholly_free = 0;
        while let Some(r) = cur {
            let ao = self.obj(r);
            assert!(!ao.address.is_null(), "usable arena must be mapped");
            assert_eq!(ao.prevarena, prev, "broken back link");
            assert!(ao.nfreepools > 0, "usable arena without free pools");
            let nf = ao.nfreepools as usize;
            if let Some(p) = prev {
                assert!(
                    self.obj(p).nfreepools <= ao.nfreepools,
                    "usable_arenas unsorted"
                );
            }
            let is_last_of_bucket = ao
                .nextarena
                .is_none_or(|n| self.obj(n).nfreepools as usize != nf);
            assert_eq!(
                self.nfp2lasta[nf] == Some(r),
                is_last_of_bucket,
                "nfp2lasta[{nf}] wrong"
            );
            if nf == POOLS_PER_ARENA {
                wholly_free += 1;
                assert!(
                    ao.nextarena.is_none(),
                    "a kept empty arena must be the tail"
                );
            }
            listed += 1;
            prev = cur;
            cur = ao.nextarena;
        }
        assert!(wholly_free <= 1, "more than one empty arena kept");
        assert!(self.nfp2lasta[0].is_none());
        for (k, last) in self.nfp2lasta.iter().enumerate() {
            if let Some(r) = last {
                assert_eq!(self.obj(*r).nfreepools as usize, k);
            }
        }
        let mapped: std::vec::Vec<&ArenaObject> = self.objs[..self.initialized]
            .iter()
            .filter(|ao| !ao.address.is_null())
            .collect();
        assert_eq!(mapped.len(), self.mapped);
        assert_eq!(
            mapped.iter().filter(|ao| ao.nfreepools > 0).count(),
            listed,
            "every arena with a free pool is usable"
        );
        let in_use: usize = mapped
            .iter()
            .map(|ao| POOLS_PER_ARENA - ao.nfreepools as usize)
            .sum();
        assert_eq!(in_use, self.pools_in_use);
        for ao in &mapped {
            let mut n = 0;
            let mut p = ao.freepools;
            while !p.is_null() {
                n += 1;
                // SAFETY: free pools are carved headers inside the mapping.
                p = unsafe { (*p).nextpool };
            }
            let virgin = (ao.address as usize + ARENA_SIZE - ao.pool_address as usize) / POOL_SIZE;
            assert_eq!(n + virgin, ao.nfreepools as usize, "free pool count");
        }
    }
}

impl<const N: usize> Drop for Arenas<N> {
    /// Unmaps every arena. Only private tables (unit tests) are ever dropped;
    /// the process-wide one lives in a static and never is.
    fn drop(&mut self) {
        for ao in &self.objs[..self.initialized] {
            if !ao.address.is_null() {
                // SAFETY: a mapped arena's address and size, as mapped in
                // `new_arena`; the table is going away, so are its blocks.
                unsafe { os::unmap(ao.address, ARENA_SIZE, ARENA_SIZE) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(arenas: &mut Arenas<4>, n: usize) -> std::vec::Vec<*mut PoolHeader> {
        (0..n)
            .map(|_| {
                let p = arenas.take_pool();
                assert!(!p.is_null());
                arenas.check();
                p
            })
            .collect()
    }

    fn give(arenas: &mut Arenas<4>, pools: &[*mut PoolHeader]) {
        for &p in pools {
            // SAFETY: the pools came from take_pool and hold no blocks.
            unsafe { arenas.return_pool(p) };
            arenas.check();
        }
    }

    #[test]
    fn pools_come_from_the_fullest_arena() {
        let mut arenas = Arenas::<4>::new();
        let a = take(&mut arenas, POOLS_PER_ARENA);
        assert_eq!(arenas.mapped(), 1);
        let b = take(&mut arenas, 10);
        assert_eq!(arenas.mapped(), 2);
        assert_eq!(arenas.usable_counts(), [54]);
        // One pool of A comes back: A (1 free) now precedes B (54 free).
        give(&mut arenas, &a[5..6]);
        assert_eq!(arenas.usable_counts(), [1, 54]);
        let again = arenas.take_pool();
        assert_eq!(again, a[5], "the fullest arena's free pool is reused first");
        // Two pools of B come back, then three of A: order follows counts.
        give(&mut arenas, &b[..2]);
        give(&mut arenas, &a[..3]);
        assert_eq!(arenas.usable_counts(), [3, 56]);
        let next = arenas.take_pool();
        assert_eq!(next, a[2], "LIFO within the fullest arena");
        arenas.check();
    }

    #[test]
    fn empty_arenas_go_back_to_the_os_but_one() {
        let mut arenas = Arenas::<4>::new();
        let a = take(&mut arenas, POOLS_PER_ARENA);
        let b = take(&mut arenas, POOLS_PER_ARENA);
        let c = take(&mut arenas, 5);
        assert_eq!(
            (arenas.mapped(), arenas.pools_in_use()),
            (3, 2 * POOLS_PER_ARENA + 5)
        );
        // A drains completely, but slides to the tail and is kept.
        give(&mut arenas, &a);
        assert_eq!(arenas.mapped(), 3);
        assert_eq!(arenas.usable_counts(), [59, 64]);
        // B drains while A is the tail: B is unmapped.
        give(&mut arenas, &b);
        assert_eq!(arenas.mapped(), 2);
        give(&mut arenas, &c);
        assert_eq!(arenas.mapped(), 1, "exactly one empty arena is kept");
        assert_eq!(arenas.pools_in_use(), 0);
        assert_eq!(arenas.high_water(), 3);
        // Unmapped objects are recycled: more arenas than the table holds
        // have now been mapped in total.
        let again = take(&mut arenas, 3 * POOLS_PER_ARENA + 1);
        assert_eq!(arenas.mapped(), 4);
        assert!(arenas.mapped_total() > 4);
        give(&mut arenas, &again);
        assert_eq!(arenas.mapped(), 1);
    }

    #[test]
    fn exhausted_table_returns_null() {
        let mut arenas = Arenas::<1>::new();
        let pools: std::vec::Vec<_> = (0..POOLS_PER_ARENA).map(|_| arenas.take_pool()).collect();
        assert!(pools.iter().all(|p| !p.is_null()));
        assert!(arenas.take_pool().is_null(), "one arena, 64 pools, no more");
        // SAFETY: came from take_pool, holds no blocks.
        unsafe { arenas.return_pool(pools[7]) };
        assert_eq!(arenas.take_pool(), pools[7]);
        arenas.check();
    }
}
