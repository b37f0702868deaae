//! The compared ways of getting an object: straight from the global
//! allocator (`plain`), or from one of six object pools (`shoalloc::Pool`
//! and five kinds from four crates).
//!
//! # One interface, so every variant runs the same code
//! The workloads are written once, generic over a [`Kind`] of object
//! [`Source`], and monomorphised per variant: what differs between two cells
//! of a workload is only where objects come from and go back to, never the
//! work done on them or its verification. A source hands out *handles*:
//! - [`Source::put`] — an object holding a given value (the typed box of a
//!   boxed number);
//! - [`Source::fill`] — an empty object (reset, capacity kept where the
//!   source keeps objects) that a closure fills;
//! - [`Source::read`] — a look at the object;
//! - [`Source::free`] — the object goes back (dropped for `plain`).
//!
//! The interface is closure-shaped because `sharded-slab` names its objects
//! by key, not by guard: there, `read` is `Pool::get` and `free` is
//! `Pool::clear`. For the guard-based pools, `read` is a deref and `free` a
//! drop, and inlining leaves nothing of the closures.
//!
//! # Bounds
//! [`Kind::new`] gets the most objects a workload keeps alive at once over
//! all its threads. Pools with an idle bound are given that bound
//! (`shoalloc::Pool`'s `max_idle`, `opool`'s capacity), so that every pool
//! can keep the whole working set and none is handicapped by its default;
//! the others are unbounded.

mod lockfree;
mod object_pool;
mod opool;
mod plain;
mod sharded_slab;
mod shoalloc_pool;

use crate::workloads::{self, Spec, Workload};
use std::ops::{Deref, DerefMut};

/// A type the workloads pool: the numbers of `numeric`, the `String`s of
/// `strings`, the `Vec<u8>` packets of `messages`.
pub trait Item: Default + Send + Sync + 'static {
    /// How `plain` holds one: a `Box` for a number (the allocation *is* the
    /// workload), the value itself for a `String` or `Vec` (which own their
    /// heap buffer already; boxing them would add an allocation).
    type Plain: Send + Deref<Target = Self> + DerefMut;
    /// `self` as `plain` holds it.
    fn plain(self) -> Self::Plain;
    /// Whether a used object must be reset before reuse: buffers must be
    /// emptied; numbers are always overwritten by [`Source::put`].
    const NEEDS_RESET: bool;
    /// Forgets the contents and keeps the capacity.
    fn reset(&mut self);
}

/// Where a variant's objects of type `T` come from (module docs).
pub trait Source<T: Item>: Sync {
    /// One object, as the workload holds it; sent between threads by
    /// `messages`.
    type Handle<'a>: Send
    where
        Self: 'a;

    /// An object holding `value`.
    fn put(&self, value: T) -> Self::Handle<'_>;

    /// An empty object, filled by `f`.
    fn fill(&self, f: impl FnOnce(&mut T)) -> Self::Handle<'_>;

    /// `f` of the object.
    fn read<R>(&self, h: &Self::Handle<'_>, f: impl FnOnce(&T) -> R) -> R;

    /// Gives the object back. Workloads call it for every handle: dropping
    /// a handle is not enough for keyed sources.
    fn free(&self, h: Self::Handle<'_>);
}

/// A variant: makes a [`Source`] for any [`Item`] type.
pub trait Kind {
    /// This variant's source of `T`s.
    type Src<T: Item>: Source<T>;

    /// A source for a workload that keeps at most `live` objects of this
    /// type alive at once (module docs, "Bounds").
    fn new<T: Item>(live: usize) -> Self::Src<T>;
}

/// A variant's entry point: runs a workload with this variant's sources.
pub type Run = fn(Workload, &Spec) -> Result<u64, String>;

/// A named variant.
pub struct Variant {
    /// Name used on the command line and in reports.
    pub name: &'static str,
    /// One line: what the variant is and how it is set up.
    pub about: &'static str,
    /// The workloads on this variant's sources.
    pub run: Run,
}

/// The variant that the report's goals are about.
pub const SHOALLOC: &str = "shoalloc-pool";
/// The variant without a pool, the goals' memory baseline.
pub const PLAIN: &str = "plain";

/// Every variant, in report order.
pub const ALL: &[Variant] = &[
    Variant {
        name: PLAIN,
        about: "no pool: Box<number>, String, Vec<u8> straight from the global allocator",
        run: workloads::run::<plain::Plain>,
    },
    Variant {
        name: SHOALLOC,
        about: "shoalloc::Pool<T>: insert(v) for numbers; get() for buffers, reset hook = clear(); thread_cache 64 (default), max_idle = working set",
        run: workloads::run::<shoalloc_pool::ShoallocPool>,
    },
    Variant {
        name: "object-pool",
        about: "object-pool 0.6 Pool<T> (a parking_lot Mutex<Vec<T>>): pull(T::default), cleared on take; unbounded",
        run: workloads::run::<object_pool::ObjectPool>,
    },
    Variant {
        name: "lockfree-object-pool",
        about: "lockfree-object-pool 0.1 LinearObjectPool<T> (the crate's fastest kind by its own benchmarks: pages of 32 objects with an atomic free mask, scanned from the first page), reset closure = clear(); unbounded",
        run: workloads::run::<lockfree::Linear>,
    },
    Variant {
        name: "lockfree-object-pool-spin",
        about: "lockfree-object-pool 0.1 SpinLockObjectPool<T> (a Vec behind a spin lock; faster than LinearObjectPool when thousands of objects are out, as in strings), reset closure = clear(); unbounded",
        run: workloads::run::<lockfree::Spin>,
    },
    Variant {
        name: "opool",
        about: "opool 0.2 concurrent Pool<P, T> (a crossbeam ArrayQueue), reset = clear() on take; capacity = working set",
        run: workloads::run::<opool::Opool>,
    },
    Variant {
        name: "sharded-slab",
        about: "sharded-slab 0.1 Pool<T> (per-thread shards, objects named by key): create_with / get / clear(key), Clear = clear(); unbounded",
        run: workloads::run::<sharded_slab::ShardedSlab>,
    },
];

/// The variant called `name`.
pub fn find(name: &str) -> Option<&'static Variant> {
    ALL.iter().find(|v| v.name == name)
}

/// A `String` or `Vec<u8>` as `plain` holds it: itself, with the
/// `Deref` that [`Item::Plain`] asks for.
pub struct Inline<T>(T);

impl<T> Deref for Inline<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Inline<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

macro_rules! number_item {
    ($($t:ty),*) => {
        $(impl Item for $t {
            type Plain = Box<$t>;
            #[inline]
            fn plain(self) -> Box<$t> {
                Box::new(self)
            }
            const NEEDS_RESET: bool = false;
            #[inline]
            fn reset(&mut self) {}
        })*
    };
}

macro_rules! buffer_item {
    ($($t:ty),*) => {
        $(impl Item for $t {
            type Plain = Inline<$t>;
            #[inline]
            fn plain(self) -> Inline<$t> {
                Inline(self)
            }
            const NEEDS_RESET: bool = true;
            #[inline]
            fn reset(&mut self) {
                self.clear();
            }
        })*
    };
}

number_item!(u64, f64, (f64, f64));
buffer_item!(String, Vec<u8>);
