//! The smart pointers a pool hands out: the object for one holder at a time,
//! given back (reset, then cached) when dropped.

use super::slots::Slot;
use super::{thread_index, Pool};
use core::fmt;
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use std::sync::Arc;

/// An object borrowed from a [`Pool`]: derefs to `T`, goes back to the pool
/// when dropped (on whichever thread drops it).
///
/// # Invariants
/// `slot` is a slot of `pool`, held by this guard and occupied, until drop or
/// [`Pooled::detach`].
pub struct Pooled<'a, T> {
    pool: &'a Pool<T>,
    slot: NonNull<Slot<T>>,
}

// SAFETY: sending the guard moves the object (`T: Send`) and a `&Pool`, which
// is `Sync` for `T: Send`; the object goes back to whichever thread drops it.
unsafe impl<T: Send> Send for Pooled<'_, T> {}
// SAFETY: a shared guard gives out `&T` only (`T: Sync`); its pool reference
// is not reachable through `&Pooled`.
unsafe impl<T: Sync> Sync for Pooled<'_, T> {}

impl<'a, T> Pooled<'a, T> {
    /// # Safety
    /// `slot` is a slot of `pool` that the caller holds, occupied, and hands
    /// over to the guard.
    pub(super) unsafe fn new(pool: &'a Pool<T>, slot: &Slot<T>) -> Self {
        Self {
            pool,
            slot: NonNull::from(slot),
        }
    }

    /// Takes the object out of the pool for good; its slot is reused for a
    /// new object later.
    pub fn detach(this: Self) -> T {
        let this = ManuallyDrop::new(this);
        // SAFETY: the guard holds its occupied slot (invariant) and, being
        // forgotten, never uses it again.
        unsafe { this.pool.core.detach(this.slot.as_ref()) }
    }
}

impl<T> Deref for Pooled<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the occupied slot (invariant).
        unsafe { (*self.slot.as_ref().value.get()).assume_init_ref() }
    }
}

impl<T> DerefMut for Pooled<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { (*self.slot.as_ref().value.get()).assume_init_mut() }
    }
}

impl<T> Drop for Pooled<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard gives up its held, occupied slot; the index is
        // this thread's own.
        unsafe {
            self.pool
                .core
                .give(thread_index::current, self.slot.as_ref())
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Like [`Pooled`], but keeps its pool alive through an [`Arc`] instead of
/// borrowing it: for objects that travel to `'static` threads or tasks.
///
/// # Invariants
/// As for [`Pooled`], with `pool` as the pool.
pub struct OwnedPooled<T> {
    pool: Arc<Pool<T>>,
    slot: NonNull<Slot<T>>,
}

// SAFETY: as for `Pooled`; `Arc<Pool<T>>` is `Send` for `T: Send`.
unsafe impl<T: Send> Send for OwnedPooled<T> {}
// SAFETY: as for `Pooled`.
unsafe impl<T: Sync> Sync for OwnedPooled<T> {}

impl<T> OwnedPooled<T> {
    /// # Safety
    /// As for [`Pooled::new`].
    pub(super) unsafe fn new(pool: Arc<Pool<T>>, slot: &Slot<T>) -> Self {
        Self {
            slot: NonNull::from(slot),
            pool,
        }
    }

    /// Takes the object out of the pool for good.
    pub fn detach(this: Self) -> T {
        let mut this = ManuallyDrop::new(this);
        // SAFETY: as in `Pooled::detach`.
        let value = unsafe { this.pool.core.detach(this.slot.as_ref()) };
        // SAFETY: `this` is never used again; drop its `Arc`.
        unsafe { core::ptr::drop_in_place(&mut this.pool) };
        value
    }
}

impl<T> Deref for OwnedPooled<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the occupied slot (invariant).
        unsafe { (*self.slot.as_ref().value.get()).assume_init_ref() }
    }
}

impl<T> DerefMut for OwnedPooled<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, exclusive through `&mut self`.
        unsafe { (*self.slot.as_ref().value.get()).assume_init_mut() }
    }
}

impl<T> Drop for OwnedPooled<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in `Pooled::drop`; the `Arc` drops after this, so the
        // pool outlives the give.
        unsafe {
            self.pool
                .core
                .give(thread_index::current, self.slot.as_ref())
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for OwnedPooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
