//! The pool's protocol, with the thread index passed in: thread caches over
//! shared lock-free stacks, the idle bound, and the pool's drop.
//!
//! # Where an object can be
//! Every slot handed out by the slot table is in exactly one place:
//! - **held**: by a guard (its value is the holder's);
//! - **cached**: in one thread's [`LocalCache`] array (occupied, reset), or
//!   in its shell chain (unoccupied);
//! - **idle**: in a [`Batch`] on `objects`, the shared stack of batches of
//!   occupied, reset slots;
//! - **a shell**: in a chain on `shells` (its value was dropped).
//!
//! Batch nodes, which carry slot pointers in an array, are themselves in
//! one place each: on `objects`, on `spares` (empty), a thread cache's
//! spare, or held by a thread between a pop and a push.
//!
//! A take pops its thread's cache, else refills the cache from one batch
//! popped off `objects` (one CAS for up to half a cache, and a copy of
//! pointers: no slot is touched), else constructs a new object in a shell.
//! A give resets the object and pushes it on the cache; a full cache first
//! copies its older half into a batch node (its spare, else one from
//! `spares`) and pushes it on `objects` (one CAS) — unless `objects` already
//! holds `max_idle` objects, in which case that half is *surplus*: its
//! objects are dropped, freeing what they own, and their slots become
//! shells. So however objects travel between threads, the pool keeps at most
//! `max_idle` idle objects plus one cache per thread index.
//!
//! # Never calling user code with a cache borrowed
//! The constructor, the reset hook and `T`'s destructor may use the same pool
//! again on the same thread (a pooled tree whose nodes hold guards of their
//! children, say). So a cache is borrowed only between two user calls: a
//! flush moves its batch out of the cache before dropping surplus objects, a
//! take constructs an object before it borrows the cache for a shell, and a
//! give runs the reset hook before it looks the cache up.
//!
//! All stacks are [`BatchStack`]s over the pool's tables, and their safety
//! argument (ABA tag, stale link reads) is the stack's: nodes are never
//! freed while the stacks live. The stacks and the idle count sit on cache
//! lines of their own, away from the fields every operation reads.

use super::local::{CacheIndex, Caches, Chain, LocalCache, CACHE_MAX};
use super::slots::{Batch, Slot, BATCH_MAX};
use super::table::Table;
use crate::shoal::stack::BatchStack;
use crate::sync::{AtomicUsize, Ordering};
use core::marker::PhantomData;
use crossbeam_utils::CachePadded;

/// Builds an object when the pool has none to hand out.
pub enum Create<T> {
    /// A function (no `'static` bound on `T`: `Pool::new` uses
    /// `T::default`).
    Fn(fn() -> T),
    /// A closure, which may capture (a capacity, a shared config).
    Closure(Box<dyn Fn() -> T + Send + Sync>),
}

impl<T> Create<T> {
    #[inline]
    fn call(&self) -> T {
        match self {
            Create::Fn(f) => f(),
            Create::Closure(f) => f(),
        }
    }
}

/// Which cache a call may use: a thread index's (exclusive to the calling
/// thread), or none (the shared stacks only).
pub type CacheAt = Option<CacheIndex>;

/// The shared stack of idle objects and its count.
struct Idle {
    /// Batches of occupied slots; each pushed with its slot count.
    objects: BatchStack,
    /// At least the number of idle objects: raised before a push, lowered
    /// after a pop.
    count: AtomicUsize,
}

/// The state of one pool.
///
/// # Invariants
/// Every slot of `slots` that was handed out is held, cached, idle or a
/// shell, in exactly one of them, and every batch node of `batches` in one
/// place (module docs). `half` is in `1..=BATCH_MAX`; a cache holds at most
/// `2 * half` objects.
pub struct PoolCore<T> {
    slots: Table<Slot<T>>,
    batches: Table<Batch<T>>,
    caches: Caches<T>,
    half: usize,
    max_idle: usize,
    create: Create<T>,
    reset: Option<fn(&mut T)>,
    idle: CachePadded<Idle>,
    /// Empty batch nodes.
    spares: CachePadded<BatchStack>,
    /// Chains of shells; each pushed with its length.
    shells: CachePadded<BatchStack>,
    /// Neither `Send` nor `Sync` by itself: see the impls below.
    _objects: PhantomData<*mut T>,
    /// The loom teeth's broken variant (see `keeping_flushed`).
    #[cfg(loom)]
    keep_flushed: bool,
}

// SAFETY: a pool moves objects between threads (`T: Send`) but never gives
// two threads access to one object at once (each slot has one holder); its
// hooks are `Send + Sync`, its shared state is atomics, and each thread
// cache is used only by the thread its index is given to (the `unsafe fn`s'
// contracts).
unsafe impl<T: Send> Send for PoolCore<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for PoolCore<T> {}

impl<T> PoolCore<T> {
    /// An empty pool whose thread caches hold up to `cache_cap` objects
    /// (clamped to `2..=64` and rounded down to even), moved to and from the
    /// shared stack half a cache at a time, and whose shared stack keeps up
    /// to `max_idle` idle objects.
    pub fn new(
        create: Create<T>,
        reset: Option<fn(&mut T)>,
        cache_cap: usize,
        max_idle: usize,
    ) -> Self {
        Self {
            slots: Table::new(),
            batches: Table::new(),
            caches: Caches::new(),
            half: cache_cap.clamp(2, CACHE_MAX) / 2,
            max_idle,
            create,
            reset,
            idle: CachePadded::new(Idle {
                objects: BatchStack::new(),
                count: AtomicUsize::new(0),
            }),
            spares: CachePadded::new(BatchStack::new()),
            shells: CachePadded::new(BatchStack::new()),
            _objects: PhantomData,
            #[cfg(loom)]
            keep_flushed: false,
        }
    }

    /// Loom only: the deliberately broken variant of the teeth model — a
    /// flush keeps the newest slot of the half it sends away (the
    /// `PoolKeepsFlushed` fault of the fault-injection builds).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn keeping_flushed(mut self) -> Self {
        self.keep_flushed = true;
        self
    }

    /// The most objects one thread cache holds.
    pub fn cache_cap(&self) -> usize {
        2 * self.half
    }

    /// The most idle objects kept on the shared stack.
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// Objects on the shared stack now (an upper bound while gives and takes
    /// run).
    pub fn idle_objects(&self) -> usize {
        self.idle.count.load(Ordering::Relaxed)
    }

    /// A held slot with a constructed object: a cached or idle one, else a
    /// new one from the constructor.
    ///
    /// # Safety
    /// No other thread uses `index`'s cache during this call, and this
    /// thread's outer calls on this pool (if any) hold no borrow of it (the
    /// pool's own code never does while user code runs).
    #[inline]
    pub unsafe fn take(&self, index: CacheAt) -> &Slot<T> {
        // SAFETY: forwarded.
        if let Some(slot) = unsafe { self.take_existing(index) } {
            return slot;
        }
        // Construct first: if the constructor panics, no slot is lost.
        let value = self.create.call();
        // SAFETY: forwarded; the constructor has returned.
        unsafe { self.shell_with(index, value) }
    }

    /// Like [`PoolCore::take`], but a slot that holds `value`: the old object
    /// of a reused slot is dropped (after the cache is let go).
    ///
    /// # Safety
    /// As for [`PoolCore::take`].
    #[inline]
    pub unsafe fn insert(&self, index: CacheAt, value: T) -> &Slot<T> {
        // SAFETY: forwarded.
        match unsafe { self.take_existing(index) } {
            Some(slot) => {
                // SAFETY: the slot is held and occupied; assigning drops
                // the old object.
                unsafe { *(*slot.value.get()).assume_init_mut() = value };
                slot
            }
            // SAFETY: forwarded.
            None => unsafe { self.shell_with(index, value) },
        }
    }

    /// A cached or idle object, without constructing one.
    ///
    /// # Safety
    /// As for [`PoolCore::take`].
    #[inline]
    unsafe fn take_existing(&self, index: CacheAt) -> Option<&Slot<T>> {
        let Some(at) = index else {
            return self.take_idle_uncached();
        };
        // SAFETY: the caller gives this thread `index`'s cache, and no other
        // borrow of it is live; this one ends before any user code runs.
        let cache = unsafe { &mut *self.caches.cache(at) };
        let slot = match cache.pop() {
            Some(s) => s,
            None => self.refill(cache)?,
        };
        // SAFETY: a cached slot is a live slot of `self.slots`.
        Some(unsafe { &*slot })
    }

    /// Refills the (empty) cache from one idle batch and pops it.
    #[cold]
    fn refill(&self, cache: &mut LocalCache<T>) -> Option<*const Slot<T>> {
        let batch = self.pop_idle()?;
        // SAFETY: we hold the popped node; its slots become the cache's,
        // and it carries nothing from here on.
        unsafe {
            cache.refill_from(batch);
            batch.fill(&[]);
        }
        // The node, now empty, is the cache's spare, or goes to `spares`.
        if cache.spare.is_null() {
            cache.spare = batch;
        } else {
            // SAFETY: an empty node we hold.
            unsafe { self.push_spare(batch) };
        }
        cache.pop()
    }

    /// Pops one batch of idle objects.
    #[inline]
    fn pop_idle(&self) -> Option<&Batch<T>> {
        // SAFETY: every push onto `objects` uses `self.batches`.
        let (h, n) = unsafe { self.idle.objects.pop(&self.batches) }?;
        self.idle.count.fetch_sub(n as usize, Ordering::Relaxed);
        // SAFETY: a handle from our node table; the popped node is ours.
        Some(unsafe { self.batches.get(h) })
    }

    /// Without a cache: one idle object; the rest of its batch goes back.
    #[cold]
    fn take_idle_uncached(&self) -> Option<&Slot<T>> {
        let batch = self.pop_idle()?;
        // SAFETY: we hold the popped node; its slots are occupied.
        unsafe {
            let slot = batch.pop_slot().expect("batches are never empty");
            if batch.slots().is_empty() {
                self.push_spare(batch);
            } else {
                self.give_batch(batch);
            }
            Some(&*slot)
        }
    }

    /// An empty batch node: from `spares`, else a fresh one.
    fn spare_node(&self) -> &Batch<T> {
        // SAFETY: every push onto `spares` uses `self.batches`.
        match unsafe { self.spares.pop(&self.batches) } {
            // SAFETY: a handle from our node table; the popped node is ours.
            Some((h, _)) => unsafe { self.batches.get(h) },
            None => self.batches.fresh(),
        }
    }

    /// Gives an empty node back to `spares`.
    ///
    /// # Safety
    /// The caller holds `node` and gives it up.
    #[inline]
    unsafe fn push_spare(&self, node: &Batch<T>) {
        // SAFETY: the caller's node; every push onto `spares` uses our table.
        unsafe { self.spares.push(&self.batches, node.handle(), 0) };
    }

    /// A shell (the cache's, a chain from `shells`, or a fresh slot) that
    /// now holds `value`.
    ///
    /// # Safety
    /// As for [`PoolCore::take`].
    #[cold]
    unsafe fn shell_with(&self, index: CacheAt, value: T) -> &Slot<T> {
        let slot = match index {
            Some(at) => {
                // SAFETY: as in `take_existing`; no user code runs while
                // the cache is borrowed.
                let cache = unsafe { &mut *self.caches.cache(at) };
                match cache.shells.pop() {
                    // SAFETY: a cached shell is a live slot of our table.
                    Some(s) => unsafe { &*s },
                    None => self.take_shells(&mut cache.shells),
                }
            }
            None => {
                let mut rest = Chain::EMPTY;
                let slot = self.take_shells(&mut rest);
                if rest.len > 0 {
                    // SAFETY: shells we hold.
                    unsafe { self.push_shells(rest) };
                }
                slot
            }
        };
        // SAFETY: a shell is held by us and unoccupied.
        unsafe { (*slot.value.get()).write(value) };
        slot
    }

    /// A shell from a chain popped off `shells`, the rest of the chain left
    /// in `rest` (empty before); a fresh slot if there is none.
    fn take_shells(&self, rest: &mut Chain<T>) -> &Slot<T> {
        // SAFETY: every push onto `shells` uses `self.slots`.
        let Some((first, n)) = (unsafe { self.shells.pop(&self.slots) }) else {
            return self.slots.fresh();
        };
        // SAFETY: popped: a slot of our table, now ours.
        let slot = unsafe { self.slots.get(first) };
        *rest = Chain {
            head: slot.next(),
            len: n as usize - 1,
        };
        slot
    }

    /// Resets the held object in `slot` and gives it back to the pool, to the
    /// cache that `index` names once the reset hook has run (it is asked for
    /// only then, so that the hook's call does not have to preserve it).
    ///
    /// # Safety
    /// `slot` is held by the caller (from `take`/`insert` of this pool) and
    /// occupied, and is not used again; the index `index` returns as for
    /// [`PoolCore::take`].
    #[inline]
    pub unsafe fn give(&self, index: impl FnOnce() -> CacheAt, slot: &Slot<T>) {
        if let Some(reset) = self.reset {
            // SAFETY: the caller holds the slot, which is occupied. If the
            // hook panics, the slot stays held by nobody: leaked, not reused.
            reset(unsafe { (*slot.value.get()).assume_init_mut() });
        }
        let Some(at) = index() else {
            let node = self.spare_node();
            // SAFETY: we hold the node; it carries the held, occupied slot.
            unsafe {
                node.fill(&[slot]);
                self.give_batch(node);
            }
            return;
        };
        // SAFETY: as in `take_existing`; no user code runs before the
        // borrow ends.
        let cache = unsafe { &mut *self.caches.cache(at) };
        if cache.len < 2 * self.half {
            // SAFETY: `len < 2 * half <= CACHE_MAX`.
            unsafe { cache.push(slot) };
            return;
        }
        // SAFETY: `slot` and `cache` stay valid; this moves the older half
        // out of the cache before any user code runs.
        let node = unsafe { self.flush(cache, slot) };
        // The cache borrow has ended: surplus objects may be dropped, and
        // their destructors may use this pool.
        // SAFETY: the node carries occupied slots that the cache gave up.
        unsafe { self.give_batch(node) };
    }

    /// Moves the full cache's older half into a batch node, which it
    /// returns for the caller to give away once the cache borrow has ended,
    /// and puts `slot` in the cache.
    ///
    /// # Safety
    /// As for [`PoolCore::give`], `cache` being the caller's.
    #[cold]
    unsafe fn flush(&self, cache: &mut LocalCache<T>, slot: &Slot<T>) -> &Batch<T> {
        let node = match core::mem::replace(&mut cache.spare, core::ptr::null()) {
            p if p.is_null() => self.spare_node(),
            // SAFETY: the cache's spare, a node of our table it held.
            p => unsafe { &*p },
        };
        // SAFETY: we hold `node`; `half <= BATCH_MAX` and the cache is full.
        unsafe { cache.flush_oldest(self.half, node) };
        #[cfg(all(shoalloc_fault, not(loom)))]
        let keep_flushed = crate::fault::is_armed(crate::fault::Fault::PoolKeepsFlushed);
        #[cfg(loom)]
        let keep_flushed = self.keep_flushed;
        #[cfg(any(shoalloc_fault, loom))]
        if keep_flushed {
            // SAFETY: broken on purpose (the teeth tests' fault); `half`
            // slots are left and `half + 2 <= CACHE_MAX`.
            unsafe { cache.push(node.slots()[self.half - 1]) };
        }
        // SAFETY: the flush made room.
        unsafe { cache.push(slot) };
        node
    }

    /// Takes the held object out of `slot`, whose slot becomes a shell.
    ///
    /// # Safety
    /// As for [`PoolCore::give`].
    pub unsafe fn detach(&self, slot: &Slot<T>) -> T {
        // SAFETY: held and occupied; the slot is a shell from here on.
        let value = unsafe { (*slot.value.get()).assume_init_read() };
        let mut one = Chain::EMPTY;
        // SAFETY: a held shell.
        unsafe { one.push(slot) };
        // SAFETY: a chain of one shell we hold.
        unsafe { self.push_shells(one) };
        value
    }

    /// Pushes `node` (a batch of occupied slots the caller holds) on
    /// `objects` — or, if that would pass `max_idle`, drops their objects,
    /// pushes the slots on `shells` and the node on `spares`.
    ///
    /// # Safety
    /// The caller holds `node`, which carries at least one occupied slot of
    /// this pool, and gives both up; no cache is borrowed.
    unsafe fn give_batch(&self, node: &Batch<T>) {
        // SAFETY: the caller holds the node.
        let slots = unsafe { node.slots() };
        let n = slots.len();
        debug_assert!((1..=BATCH_MAX).contains(&n));
        let before = self.idle.count.fetch_add(n, Ordering::Relaxed);
        if before + n <= self.max_idle {
            // SAFETY: the caller's node; every push on `objects` uses our
            // node table; `n <= BATCH_MAX` fits the length field.
            unsafe {
                self.idle
                    .objects
                    .push(&self.batches, node.handle(), n as u32)
            };
            return;
        }
        self.idle.count.fetch_sub(n, Ordering::Relaxed);
        // Surplus. Link the shells after every drop, so that a panicking
        // destructor leaks the rest instead of publishing an occupied shell.
        for &s in slots {
            // SAFETY: occupied and ours; dropped once, then a shell.
            unsafe { (*(*s).value.get()).assume_init_drop() };
        }
        let mut chain = Chain::EMPTY;
        for &s in slots {
            // SAFETY: a shell we hold.
            unsafe { chain.push(s) };
        }
        // SAFETY: shells we hold, and the node, now carrying nothing of
        // value, that we hold.
        unsafe {
            self.push_shells(chain);
            self.push_spare(node);
        }
    }

    /// Pushes a non-empty chain of shells on `shells`.
    ///
    /// # Safety
    /// The chain's slots are unoccupied slots of this pool that the caller
    /// holds and gives up.
    unsafe fn push_shells(&self, chain: Chain<T>) {
        // Chains are a batch, a popped chain's rest, or one slot: well below
        // the stack's 2^31 length limit.
        let len = u32::try_from(chain.len).expect("short chain");
        // SAFETY: the caller's chain; every push on `shells` uses our table.
        unsafe { self.shells.push(&self.slots, (*chain.head).handle(), len) };
    }
}

impl<T> Drop for PoolCore<T> {
    fn drop(&mut self) {
        // `&mut self`: no guard is alive (each borrows or owns the pool) and
        // no thread is inside a call. Drop every occupied slot's object:
        // the cached ones, then the idle ones. Shells hold nothing.
        let drop_slot = |s: *const Slot<T>| {
            // SAFETY: a cached or idle slot is occupied, and dropped once.
            unsafe { (*(*s).value.get()).assume_init_drop() }
        };
        self.caches.for_each(|cache| {
            while let Some(s) = cache.pop() {
                drop_slot(s);
            }
        });
        let mut h = self.idle.objects.take_all();
        while h != 0 {
            // SAFETY: `take_all` gave us the chain; its nodes are ours.
            let (next, _) = unsafe { BatchStack::next_of(&self.batches, h) };
            // SAFETY: a node of our table that we now hold.
            let node = unsafe { self.batches.get(h) };
            // SAFETY: as above.
            for &s in unsafe { node.slots() } {
                drop_slot(s);
            }
            h = next;
        }
        // The tables and the caches free their memory when the fields drop.
    }
}
