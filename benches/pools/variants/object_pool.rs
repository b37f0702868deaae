//! `object-pool`: the `object-pool` crate's `Pool<T>`, a `Vec<T>` behind a
//! `parking_lot` mutex. It has no reset hook, so a buffer is cleared when
//! taken; it keeps every object given back (no bound).

use super::{Item, Kind, Source};
use object_pool::{Pool, Reusable};

/// The `object-pool` variant.
pub struct ObjectPool;

impl Kind for ObjectPool {
    type Src<T: Item> = Pool<T>;

    fn new<T: Item>(_live: usize) -> Pool<T> {
        Pool::new(0, T::default)
    }
}

impl<T: Item> Source<T> for Pool<T> {
    type Handle<'a> = Reusable<'a, T>;

    #[inline]
    fn put(&self, value: T) -> Reusable<'_, T> {
        let mut g = self.pull(T::default);
        *g = value;
        g
    }

    #[inline]
    fn fill(&self, f: impl FnOnce(&mut T)) -> Reusable<'_, T> {
        let mut g = self.pull(T::default);
        g.reset();
        f(&mut g);
        g
    }

    #[inline]
    fn read<R>(&self, h: &Reusable<'_, T>, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }

    #[inline]
    fn free(&self, h: Reusable<'_, T>) {
        drop(h);
    }
}
