//! Typed object pools: CPython's per-type free lists, done the multi-core way.
//!
//! CPython keeps free lists of floats, tuples, lists and frames on top of its
//! small-object allocator, because for the hottest types even the allocator's
//! fast path plus re-initialising the object costs too much. [`Pool<T>`] is
//! that layer for Rust: its objects stay *constructed* between uses — a pooled
//! `Vec<u8>` or `String` keeps its capacity — and are handed out as a guard
//! ([`Pooled`]) that derefs to `T` and gives the object back when dropped,
//! after a reset hook ([`Recycle`] by default: `clear()` for collections).
//!
//! # Example
//! Buffers passed between threads, and a typed box:
//! ```
//! use shoalloc::Pool;
//!
//! let buffers: Pool<Vec<u8>> = Pool::new();           // T::default(), reset = clear()
//! std::thread::scope(|s| {
//!     let (tx, rx) = std::sync::mpsc::channel::<shoalloc::Pooled<'_, Vec<u8>>>();
//!     s.spawn(move || {
//!         for packet in rx {
//!             assert_eq!(packet.len(), 3);               // dropped here: back to the pool,
//!         }                                              // into this thread's cache
//!     });
//!     for _ in 0..1000 {
//!         let mut b = buffers.get();                     // capacity of an earlier packet
//!         b.extend_from_slice(b"abc");
//!         tx.send(b).unwrap();
//!     }
//! });
//! let boxed = Pool::from_fn(|| 0.0f64);                  // a typed box for plain values
//! let x = boxed.insert(1.5);
//! assert_eq!(*x, 1.5);
//! ```
//!
//! # How it works
//! The same shape as [`Shoal`](crate::Shoal)'s small path, with objects for
//! blocks: each thread has a cache per pool (a small array, plain loads and
//! stores); a full cache sends half of itself to the pool's shared lock-free
//! stack as one batch (one CAS; the batch carries the objects' addresses in
//! an array, so no object is touched on the way), and an empty one takes a
//! whole batch back. Objects dropped on another thread go
//! into *that* thread's cache, so producer/consumer traffic flows back
//! through the shared stack in batches. The pool is bounded: at most
//! `max_idle` objects wait on the shared stack (default 1024) and
//! `thread_cache` in each thread's cache (default 64); beyond that, returned
//! objects are dropped and what they own is freed. Dropping the pool drops
//! every object it holds, including those cached by threads that have
//! exited.
//!
//! # When a pool beats the allocator, and when it does not
//! - It wins when **construction or growth costs more than the allocation**:
//!   a `String` or `Vec` that grows by doubling pays several reallocations
//!   and copies on every fresh use; a pooled one arrives with its capacity.
//!   Messages of varying size between threads, parsers' token buffers and
//!   per-request scratch space are the cases.
//! - For **plain values** (a boxed number), a pool saves the allocator's
//!   size-class lookup and its free-path metadata lookup; on a fast
//!   allocator that is a few nanoseconds either way, so measure before
//!   choosing (the `pools` benchmark does, see `papers/pools.md`).
//! - It loses when objects are **big and rarely reused** (the pool keeps up
//!   to `max_idle` of them alive), when the reset is as costly as building
//!   anew, or when values are kept for long (a pooled object pins its slot,
//!   just like any allocation).
//!
//! # Memory
//! Objects live in slots that the pool allocates in doubling chunks and
//! frees only when the pool is dropped (its lock-free stacks may still read
//! a slot's link word after the slot was taken). A surplus object is
//! dropped, freeing what it owns, but its slot — `size_of::<T>()` plus 24
//! bytes — stays for reuse, so the slots number at most the most objects
//! alive at once. Batch nodes (272 bytes, one per 32 objects in transit)
//! are kept the same way.
//!
//! # Thread safety
//! `Pool<T>` is `Send` and `Sync` when `T: Send` (objects move between
//! threads but are never shared); a guard is `Send` when `T: Send` and `Sync`
//! when `T: Sync`. A pool may be used again from inside its own constructor,
//! reset hook or `T`'s destructor. If the reset hook panics, that object is
//! leaked (never handed out again); if the constructor panics, nothing is.
//!
//! A pool of objects that are not `Send` stays on its thread:
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! shared(&shoalloc::Pool::from_fn(|| std::rc::Rc::new(0)));
//! ```
//! and a guard of an object that is not `Sync` cannot be shared:
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! let pool = shoalloc::Pool::from_fn(|| std::cell::Cell::new(0));
//! shared(&pool.get());
//! ```

#[cfg(not(loom))]
mod guard;
pub(crate) mod local;
pub(crate) mod pool_core;
#[cfg(not(loom))]
mod recycle;
pub(crate) mod slots;
mod table;
#[cfg(all(test, not(loom)))]
mod tests;
#[cfg(not(loom))]
mod thread_index;

#[cfg(not(loom))]
pub use api::{Pool, PoolBuilder};
#[cfg(not(loom))]
pub use guard::{OwnedPooled, Pooled};
#[cfg(not(loom))]
pub use recycle::Recycle;

#[cfg(not(loom))]
mod api {
    use super::guard::{OwnedPooled, Pooled};
    use super::pool_core::{Create, PoolCore};
    use super::recycle::Recycle;
    use super::thread_index;
    use core::fmt;
    use std::sync::Arc;

    /// Default objects per thread cache.
    const THREAD_CACHE: usize = 64;
    /// Default idle objects on the shared stack.
    const MAX_IDLE: usize = 1024;

    /// A typed, thread-caching, lock-free object pool (see the [module
    /// docs](crate::typed_pool) for how it works and when to use one).
    ///
    /// ```
    /// use shoalloc::Pool;
    ///
    /// let buffers: Pool<Vec<u8>> = Pool::new();
    /// let mut b = buffers.get();
    /// b.extend_from_slice(b"hello");
    /// drop(b); // cleared and cached, capacity kept
    /// let b = buffers.get();
    /// assert!(b.is_empty() && b.capacity() >= 5);
    /// ```
    pub struct Pool<T> {
        pub(super) core: PoolCore<T>,
    }

    impl<T: Default + Recycle> Pool<T> {
        /// A pool that builds objects with `T::default()` and resets them
        /// with [`Recycle::recycle`] (for collections, `clear()`).
        pub fn new() -> Self {
            Self::with_create(Create::Fn(T::default))
                .reset(T::recycle)
                .build()
        }
    }

    impl<T: Default + Recycle> Default for Pool<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<T> Pool<T> {
        /// A pool that builds objects with `create` and does not reset them:
        /// for plain values, usually filled through [`Pool::insert`].
        pub fn from_fn(create: impl Fn() -> T + Send + Sync + 'static) -> Self {
            Self::builder(create).build()
        }

        /// A pool with a constructor and, through the builder, a reset hook
        /// and bounds.
        pub fn builder(create: impl Fn() -> T + Send + Sync + 'static) -> PoolBuilder<T> {
            Self::with_create(Create::Closure(Box::new(create)))
        }

        fn with_create(create: Create<T>) -> PoolBuilder<T> {
            PoolBuilder {
                create,
                reset: None,
                thread_cache: THREAD_CACHE,
                max_idle: MAX_IDLE,
            }
        }

        /// An object: a cached one (reset when it was given back) or a new
        /// one from the constructor.
        #[inline]
        pub fn get(&self) -> Pooled<'_, T> {
            // SAFETY: the index is this thread's own; the pool never holds a
            // cache borrow across user code.
            let slot = unsafe { self.core.take(thread_index::current()) };
            // SAFETY: `take` handed the slot, held and occupied, to us.
            unsafe { Pooled::new(self, slot) }
        }

        /// `value` in a pooled slot: a cached object is overwritten (and
        /// dropped), so no constructor runs. The typed box for plain values.
        #[inline]
        pub fn insert(&self, value: T) -> Pooled<'_, T> {
            // SAFETY: as in `get`.
            let slot = unsafe { self.core.insert(thread_index::current(), value) };
            // SAFETY: as in `get`.
            unsafe { Pooled::new(self, slot) }
        }

        /// Like [`Pool::get`], for a pool behind an `Arc`: the guard keeps
        /// the pool alive and can go to `'static` threads.
        #[inline]
        pub fn get_owned(self: &Arc<Self>) -> OwnedPooled<T> {
            // SAFETY: as in `get`.
            let slot = unsafe { self.core.take(thread_index::current()) };
            // SAFETY: as in `get`; the slot lives as long as the pool.
            unsafe { OwnedPooled::new(Arc::clone(self), slot) }
        }

        /// Like [`Pool::insert`], for a pool behind an `Arc`.
        #[inline]
        pub fn insert_owned(self: &Arc<Self>, value: T) -> OwnedPooled<T> {
            // SAFETY: as in `get`.
            let slot = unsafe { self.core.insert(thread_index::current(), value) };
            // SAFETY: as in `get_owned`.
            unsafe { OwnedPooled::new(Arc::clone(self), slot) }
        }

        /// Objects waiting on the shared stack now (not counting thread
        /// caches); at most [`PoolBuilder::max_idle`].
        pub fn idle(&self) -> usize {
            self.core.idle_objects()
        }
    }

    impl<T> fmt::Debug for Pool<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Pool")
                .field("thread_cache", &self.core.cache_cap())
                .field("max_idle", &self.core.max_idle())
                .field("idle", &self.core.idle_objects())
                .finish()
        }
    }

    /// Configures a [`Pool`]: reset hook and bounds.
    pub struct PoolBuilder<T> {
        create: Create<T>,
        reset: Option<fn(&mut T)>,
        thread_cache: usize,
        max_idle: usize,
    }

    impl<T> PoolBuilder<T> {
        /// Runs `reset` on every object given back, on the thread that gives
        /// it back, before anyone else can get it.
        pub fn reset(mut self, reset: fn(&mut T)) -> Self {
            self.reset = Some(reset);
            self
        }

        /// Objects each thread keeps for itself (default 64; clamped to
        /// 2..=64, rounded down to even). Half a cache moves to or from the
        /// shared stack at a time, with one CAS.
        pub fn thread_cache(mut self, objects: usize) -> Self {
            self.thread_cache = objects;
            self
        }

        /// Idle objects kept on the shared stack (default 1024); objects
        /// given back beyond it are dropped.
        pub fn max_idle(mut self, objects: usize) -> Self {
            self.max_idle = objects;
            self
        }

        /// The pool.
        pub fn build(self) -> Pool<T> {
            Pool {
                core: PoolCore::new(self.create, self.reset, self.thread_cache, self.max_idle),
            }
        }
    }
}
