//! The default reset hook: how a pooled object forgets its last use.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};

/// Brings a value back to its "empty" state while keeping what it can reuse
/// (a collection's capacity). [`Pool::new`](crate::Pool::new) runs it on
/// every object given back.
///
/// Implemented by `clear()` for the standard collections. Implement it for
/// your own types, or give the pool any reset function with
/// [`PoolBuilder::reset`](crate::PoolBuilder::reset).
pub trait Recycle {
    /// Forgets the contents, keeps the capacity.
    fn recycle(&mut self);
}

macro_rules! recycle_by_clear {
    ($($ty:ty => [$($g:tt)*]),* $(,)?) => {
        $(impl<$($g)*> Recycle for $ty {
            #[inline]
            fn recycle(&mut self) {
                self.clear();
            }
        })*
    };
}

recycle_by_clear! {
    String => [],
    Vec<T> => [T],
    VecDeque<T> => [T],
    LinkedList<T> => [T],
    BinaryHeap<T> => [T],
    BTreeMap<K, V> => [K, V],
    BTreeSet<T> => [T],
    HashMap<K, V, S> => [K, V, S],
    HashSet<T, S> => [T, S],
}
