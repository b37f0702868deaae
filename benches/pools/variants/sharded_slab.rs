//! `sharded-slab`: that crate's `Pool<T>`, a slab sharded per thread whose
//! objects are named by `usize` keys. An object is made in the creating
//! thread's shard with `create_with`, read with `get(key)` (a reference
//! count taken and dropped) and given back with `clear(key)` from any
//! thread; its `Clear` trait resets it for reuse. Unbounded.
//!
//! `Pool<T>` asks for `T: Clear + Default`, and `Clear` is foreign to both
//! this benchmark and the number types, so items are wrapped in [`Slot`].

use super::{Item, Kind, Source};
use sharded_slab::{Clear, Pool};

/// The `sharded-slab` variant.
pub struct ShardedSlab;

/// An [`Item`] in a `sharded_slab::Pool`.
#[derive(Default)]
pub struct Slot<T>(T);

impl<T: Item> Clear for Slot<T> {
    #[inline]
    fn clear(&mut self) {
        self.0.reset();
    }
}

impl Kind for ShardedSlab {
    type Src<T: Item> = Pool<Slot<T>>;

    fn new<T: Item>(_live: usize) -> Pool<Slot<T>> {
        Pool::new()
    }
}

impl<T: Item> Source<T> for Pool<Slot<T>> {
    type Handle<'a> = usize;

    #[inline]
    fn put(&self, value: T) -> usize {
        self.create_with(|s| s.0 = value)
            .expect("sharded-slab: shard full")
    }

    #[inline]
    fn fill(&self, f: impl FnOnce(&mut T)) -> usize {
        self.create_with(|s| f(&mut s.0))
            .expect("sharded-slab: shard full")
    }

    #[inline]
    fn read<R>(&self, key: &usize, f: impl FnOnce(&T) -> R) -> R {
        f(&self.get(*key).expect("sharded-slab: live key not found").0)
    }

    #[inline]
    fn free(&self, key: usize) {
        assert!(self.clear(key), "sharded-slab: live key not cleared");
    }
}
