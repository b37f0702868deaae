//! `shoalloc-pool`: [`shoalloc::Pool<T>`], the pool under test.
//!
//! Numbers go in with [`Pool::insert`] (a cached object is overwritten, no
//! constructor and no reset hook run: the typed box); buffers come from
//! [`Pool::get`] and are cleared by the reset hook when given back, as
//! `Pool::new()` does for collections. The thread cache keeps its default
//! (64); `max_idle` is the workload's working set (see the parent module).

use super::{Item, Kind, Source};
use shoalloc::{Pool, Pooled};

/// The `shoalloc-pool` variant.
pub struct ShoallocPool;

impl Kind for ShoallocPool {
    type Src<T: Item> = Pool<T>;

    fn new<T: Item>(live: usize) -> Pool<T> {
        let builder = Pool::builder(T::default).max_idle(live);
        if T::NEEDS_RESET {
            builder.reset(T::reset).build()
        } else {
            builder.build()
        }
    }
}

impl<T: Item> Source<T> for Pool<T> {
    type Handle<'a> = Pooled<'a, T>;

    #[inline]
    fn put(&self, value: T) -> Pooled<'_, T> {
        self.insert(value)
    }

    #[inline]
    fn fill(&self, f: impl FnOnce(&mut T)) -> Pooled<'_, T> {
        let mut g = self.get();
        f(&mut g);
        g
    }

    #[inline]
    fn read<R>(&self, h: &Pooled<'_, T>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }

    #[inline]
    fn free(&self, h: Pooled<'_, T>) {
        drop(h);
    }
}
