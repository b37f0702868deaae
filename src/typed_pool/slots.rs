//! The two kinds of node a pool keeps in its tables: object slots and batch
//! nodes.
//!
//! Pooled objects stay constructed between uses, in place: a [`Slot`] holds
//! one object (or none, a *shell*) for the pool's whole life, and only
//! pointers to slots move. Pointers travel between threads in [`Batch`]es:
//! a batch node carries up to [`BATCH_MAX`] slot pointers in an array, so a
//! thread cache hands a batch to the shared stack, or takes one from it, by
//! copying pointers — never by walking a chain of slots, whose cache misses
//! would come one after another. (Shells, rarer, travel as chains of slots
//! linked through `next`.)

use super::table::TableNode;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr;

/// The most slot pointers a batch carries (and half the largest thread
/// cache).
pub(crate) const BATCH_MAX: usize = 32;

/// One object's home.
///
/// # Invariants
/// `handle` never changes. `value` is initialised exactly when the slot is
/// *occupied* (in a thread cache, in a batch on the object stack, or held
/// through a guard) and uninitialised when it is a *shell* (in a thread's
/// shell chain or on the shell stack) or fresh (never handed out). Whoever
/// holds the slot has exclusive access to `value` and `next`; `link` is only
/// written by the shell stack and by the slot's holder.
pub struct Slot<T> {
    /// The shell stack's link word (next chain and this chain's length).
    link: AtomicU64,
    /// The next slot of this one's shell chain (chains are counted, not
    /// terminated). Only the chain's holder reads or writes it, so a stale
    /// pop never looks here.
    next: AtomicPtr<Slot<T>>,
    /// This slot's own handle.
    handle: u64,
    /// The object.
    pub(crate) value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Slot<T> {
    /// The object's place (initialised while the slot is occupied).
    #[inline]
    pub fn value(&self) -> *mut T {
        self.value.get().cast()
    }

    /// This slot's handle, for pushing it onto the shell stack.
    #[inline]
    pub(crate) fn handle(&self) -> u64 {
        self.handle
    }

    /// Chains `next` after this slot.
    #[inline]
    pub(crate) fn set_next(&self, next: *const Slot<T>) {
        self.next.store(next.cast_mut(), Ordering::Relaxed);
    }

    /// The slot after this one in its chain.
    #[inline]
    pub(crate) fn next(&self) -> *const Slot<T> {
        self.next.load(Ordering::Relaxed)
    }
}

impl<T> TableNode for Slot<T> {
    fn new(handle: u64) -> Self {
        Slot {
            link: AtomicU64::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
            handle,
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    #[inline]
    fn link(&self) -> &AtomicU64 {
        &self.link
    }
}

/// A batch of occupied slots in transit between a thread cache and the
/// shared object stack, or a spare (empty) batch node.
///
/// # Invariants
/// `handle` never changes. Whoever holds the node (a thread cache as its
/// spare, a thread between popping and pushing it, or a stack) has exclusive
/// access to `len` and `items`; `items[..len]` are distinct slots that the
/// batch holds.
pub(crate) struct Batch<T> {
    /// The stack link word (next node, and — unused — a length).
    link: AtomicU64,
    handle: u64,
    len: UnsafeCell<usize>,
    items: UnsafeCell<[*const Slot<T>; BATCH_MAX]>,
}

impl<T> Batch<T> {
    /// This node's handle, for pushing it onto a stack.
    #[inline]
    pub(crate) fn handle(&self) -> u64 {
        self.handle
    }

    /// The slots it carries.
    ///
    /// # Safety
    /// The caller holds the node.
    #[inline]
    pub(crate) unsafe fn slots(&self) -> &[*const Slot<T>] {
        // SAFETY: the caller holds the node; `len <= BATCH_MAX`.
        unsafe { &(&*self.items.get())[..*self.len.get()] }
    }

    /// Takes its last slot out.
    ///
    /// # Safety
    /// The caller holds the node.
    #[inline]
    pub(crate) unsafe fn pop_slot(&self) -> Option<*const Slot<T>> {
        // SAFETY: the caller holds the node; `len <= BATCH_MAX`.
        unsafe {
            let len = &mut *self.len.get();
            *len = len.checked_sub(1)?;
            Some((*self.items.get())[*len])
        }
    }

    /// Makes it carry `slots` (at most [`BATCH_MAX`]).
    ///
    /// # Safety
    /// The caller holds the node.
    #[inline]
    pub(crate) unsafe fn fill(&self, slots: &[*const Slot<T>]) {
        // SAFETY: the caller holds the node; the copy panics if `slots` is
        // longer than the array.
        unsafe {
            (&mut *self.items.get())[..slots.len()].copy_from_slice(slots);
            *self.len.get() = slots.len();
        }
    }
}

impl<T> TableNode for Batch<T> {
    fn new(handle: u64) -> Self {
        Batch {
            link: AtomicU64::new(0),
            handle,
            len: UnsafeCell::new(0),
            items: UnsafeCell::new([ptr::null(); BATCH_MAX]),
        }
    }

    #[inline]
    fn link(&self) -> &AtomicU64 {
        &self.link
    }
}
