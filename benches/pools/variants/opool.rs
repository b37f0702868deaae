//! `opool`: that crate's concurrent `Pool<P, T>`, a bounded lock-free queue
//! (crossbeam's `ArrayQueue`) of idle objects. Its allocator hook builds
//! objects with `T::default()` and resets them when taken; its capacity is
//! the workload's working set (objects given back to a full queue are
//! dropped).

use super::{Item, Kind, Source};
use opool::{Pool, PoolAllocator, RefGuard};

/// The `opool` variant.
pub struct Opool;

/// `opool`'s construction and reset hooks for an [`Item`].
pub struct Hooks;

impl<T: Item> PoolAllocator<T> for Hooks {
    #[inline]
    fn allocate(&self) -> T {
        T::default()
    }

    #[inline]
    fn reset(&self, obj: &mut T) {
        obj.reset();
    }
}

impl Kind for Opool {
    type Src<T: Item> = Pool<Hooks, T>;

    fn new<T: Item>(live: usize) -> Pool<Hooks, T> {
        Pool::new(live.max(1), Hooks)
    }
}

impl<T: Item> Source<T> for Pool<Hooks, T> {
    type Handle<'a> = RefGuard<'a, Hooks, T>;

    #[inline]
    fn put(&self, value: T) -> RefGuard<'_, Hooks, T> {
        let mut g = self.get();
        *g = value;
        g
    }

    #[inline]
    fn fill(&self, f: impl FnOnce(&mut T)) -> RefGuard<'_, Hooks, T> {
        let mut g = self.get();
        f(&mut g);
        g
    }

    #[inline]
    fn read<R>(&self, h: &RefGuard<'_, Hooks, T>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }

    #[inline]
    fn free(&self, h: RefGuard<'_, Hooks, T>) {
        drop(h);
    }
}
