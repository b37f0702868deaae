//! `lockfree-object-pool` and `lockfree-object-pool-spin`: two of that
//! crate's four pool kinds, because neither is the fastest on every
//! workload here (the other two are a `std` mutex and no pool at all).
//!
//! - `LinearObjectPool`, the fastest by the crate's own benchmarks: objects
//!   live in a chain of pages of 32, each with an atomic free mask; a take
//!   scans the pages from the first one for a free bit. Quick while few
//!   objects are out, slow when thousands are (`strings` keeps 2000 per
//!   thread alive: the scan grows with them).
//! - `SpinLockObjectPool`: a `Vec` of idle objects behind a spin lock.
//!
//! Both run the reset closure (`clear()` for buffers) when a guard drops
//! and keep every object (no bound).

use super::{Item, Kind, Source};
use lockfree_object_pool::{
    LinearObjectPool, LinearReusable, SpinLockObjectPool, SpinLockReusable,
};

/// The `lockfree-object-pool` variant (`LinearObjectPool`).
pub struct Linear;

/// The `lockfree-object-pool-spin` variant (`SpinLockObjectPool`).
pub struct Spin;

impl Kind for Linear {
    type Src<T: Item> = LinearObjectPool<T>;

    fn new<T: Item>(_live: usize) -> LinearObjectPool<T> {
        LinearObjectPool::new(T::default, T::reset)
    }
}

impl Kind for Spin {
    type Src<T: Item> = SpinLockObjectPool<T>;

    fn new<T: Item>(_live: usize) -> SpinLockObjectPool<T> {
        SpinLockObjectPool::new(T::default, T::reset)
    }
}

/// The same guard-based [`Source`] for both kinds.
macro_rules! source {
    ($pool:ident, $guard:ident) => {
        impl<T: Item> Source<T> for $pool<T> {
            type Handle<'a> = $guard<'a, T>;

            #[inline]
            fn put(&self, value: T) -> $guard<'_, T> {
                let mut g = self.pull();
                *g = value;
                g
            }

            #[inline]
            fn fill(&self, f: impl FnOnce(&mut T)) -> $guard<'_, T> {
                let mut g = self.pull();
                f(&mut g);
                g
            }

            #[inline]
            fn read<R>(&self, h: &$guard<'_, T>, f: impl FnOnce(&T) -> R) -> R {
                f(h)
            }

            #[inline]
            fn free(&self, h: $guard<'_, T>) {
                drop(h);
            }
        }
    };
}

source!(LinearObjectPool, LinearReusable);
source!(SpinLockObjectPool, SpinLockReusable);
