//! `plain`: no pool. Every object is a fresh allocation from the global
//! allocator (the allocator under test) and is freed when given back — what
//! the scaling workloads do, and what a pool has to beat.

use super::{Item, Kind, Source};
use std::marker::PhantomData;

/// The `plain` variant.
pub struct Plain;

/// Objects straight from the global allocator.
pub struct PlainSource<T>(PhantomData<fn() -> T>);

impl Kind for Plain {
    type Src<T: Item> = PlainSource<T>;

    fn new<T: Item>(_live: usize) -> PlainSource<T> {
        PlainSource(PhantomData)
    }
}

impl<T: Item> Source<T> for PlainSource<T> {
    type Handle<'a> = T::Plain;

    #[inline]
    fn put(&self, value: T) -> T::Plain {
        value.plain()
    }

    #[inline]
    fn fill(&self, f: impl FnOnce(&mut T)) -> T::Plain {
        // An empty `String`/`Vec` owns no memory: `f`'s first `reserve` is
        // the allocation.
        let mut v = T::default();
        f(&mut v);
        v.plain()
    }

    #[inline]
    fn read<R>(&self, h: &T::Plain, f: impl FnOnce(&T) -> R) -> R {
        f(h)
    }

    #[inline]
    fn free(&self, h: T::Plain) {
        drop(h);
    }
}
