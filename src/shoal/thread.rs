//! Binding a [`ThreadCache`] to each thread, and returning it when the thread exits.
//!
//! # Why a pthread key and not a `Drop` thread-local
//! A global allocator must not rely on a thread-local with a destructor: std
//! registers such destructors lazily, and registering may allocate or, in
//! some std versions, abort when done from inside the allocator. So the cache
//! lives in a `const`-initialised `thread_local!` of a type without `Drop`
//! (compiled to a plain `#[thread_local]` static, no registration, no lazy
//! check), and thread exit is caught by a destructor registered with
//! `pthread_key_create`, armed once per thread with `pthread_setspecific`.
//!
//! # States of a thread's slot
//! | state | meaning | allocation and free go to |
//! |---|---|---|
//! | `FRESH` | never used | arm the key, then the cache |
//! | `ARMING` | inside `pthread_setspecific` (which may call `malloc` itself) | the shared pools directly |
//! | `ACTIVE` | armed | the cache |
//! | `DEAD` | the key destructor flushed the cache | the shared pools directly |
//!
//! glibc runs C++/Rust thread-local destructors before pthread key
//! destructors, so most late frees still land in the cache and are flushed
//! with it; anything after that (other keys' destructors) uses the pools
//! directly, one block per atomic operation, and nothing is stranded.
//! The main thread's cache is not flushed at process exit: the process's
//! memory is about to disappear anyway.

use super::cache::ThreadCache;
use super::pool::{alloc_uncached, free_uncached, SharedPool};
use crate::sync::statics::{AtomicUsize, Ordering};
use core::ffi::c_void;
use core::marker::PhantomData;

const FRESH: u8 = 0;
const ARMING: u8 = 1;
const ACTIVE: u8 = 2;
const DEAD: u8 = 3;

/// One thread's cache and the state of its exit hook.
#[derive(Debug)]
pub struct ThreadSlot {
    cache: ThreadCache,
    state: u8,
}

impl ThreadSlot {
    /// A slot in the `FRESH` state.
    pub const fn new() -> Self {
        Self {
            cache: ThreadCache::new(),
            state: FRESH,
        }
    }
}

impl Default for ThreadSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// Names one `const`-initialised thread-local [`ThreadSlot`] and the
/// [`ThreadCaches`] it belongs to. Implemented by [`thread_caches!`] only.
///
/// A zero-sized type implements it with a `thread_local!` inside `slot`, so
/// the fast path reaches the slot with a direct TLS access — storing a
/// `&'static LocalKey` instead would cost an indirect call per operation.
///
/// # Safety
/// `slot` returns null or the calling thread's own slot, which lives until
/// the thread's pthread key destructors have run and which no other
/// `SlotKey` type returns; `caches` always returns the same value, the only
/// `ThreadCaches<Self>` there is.
pub unsafe trait SlotKey: Sized + 'static {
    /// The shared pool the caches refill from.
    type Pool: SharedPool + Sync + 'static;
    /// This thread's slot, or null when thread-locals are no longer usable.
    fn slot() -> *mut ThreadSlot;
    /// The caches this slot belongs to (for the thread-exit hook).
    fn caches() -> &'static ThreadCaches<Self>;
}

/// Defines a process-wide [`ThreadCaches`] static over a pool, with its own
/// thread-local slot type: one invocation per allocator that caches blocks
/// in threads (`Shoal` and the locked ablation), so they never mix blocks.
///
/// ```ignore
/// thread_caches!(static CACHES: ThreadCaches<Pools<Segments>> = &POOLS, slot ShoalSlot);
/// ```
macro_rules! thread_caches {
    (static $name:ident: ThreadCaches<$pool:ty> = $pools:expr, slot $slot:ident) => {
        #[doc = concat!("The thread-local slot of `", stringify!($name), "`.")]
        struct $slot;

        // SAFETY: the slot is a `const` thread-local of this type alone,
        // without a destructor, so it outlives the key destructors; `$name`
        // is the only `ThreadCaches<$slot>`.
        unsafe impl $crate::shoal::thread::SlotKey for $slot {
            type Pool = $pool;

            #[inline(always)]
            fn slot() -> *mut $crate::shoal::thread::ThreadSlot {
                std::thread_local! {
                    static SLOT: core::cell::UnsafeCell<$crate::shoal::thread::ThreadSlot> =
                        const { core::cell::UnsafeCell::new($crate::shoal::thread::ThreadSlot::new()) };
                }
                SLOT.try_with(|s| s.get()).unwrap_or(core::ptr::null_mut())
            }

            #[inline]
            fn caches() -> &'static $crate::shoal::thread::ThreadCaches<Self> {
                &$name
            }
        }

        static $name: $crate::shoal::thread::ThreadCaches<$slot> =
            // SAFETY: `$slot::caches()` returns this static and no other
            // value of this type exists, since `$slot` is defined right here.
            unsafe { $crate::shoal::thread::ThreadCaches::new($pools) };
    };
}
pub(crate) use thread_caches;

/// Thread caches over one shared pool: the thread-local slot (`K`), the pool,
/// and the pthread key whose destructor flushes a dying thread's cache.
pub struct ThreadCaches<K: SlotKey> {
    slot: PhantomData<K>,
    pool: &'static K::Pool,
    /// `pthread_key_t + 1`, or 0 before the key is created.
    key: AtomicUsize,
}

/// The pthread key destructor: flushes the dying thread's cache.
///
/// # Safety
/// Called by pthread only, with the value [`ThreadCaches::arm`] stored.
unsafe extern "C" fn on_thread_exit<K: SlotKey>(slot: *mut c_void) {
    // SAFETY: pthread passes back the value `arm` stored for this key, which
    // belongs to `K::caches()`.
    unsafe { K::caches().thread_exit(slot) }
}

impl<K: SlotKey> ThreadCaches<K> {
    /// Binds the slots named by `K` to `pool`.
    ///
    /// # Safety
    /// This value must be the one `K::caches()` returns (so every cache in a
    /// `K` slot only ever sees `pool`); [`thread_caches!`] guarantees it.
    pub const unsafe fn new(pool: &'static K::Pool) -> Self {
        Self {
            slot: PhantomData,
            pool,
            key: AtomicUsize::new(0),
        }
    }

    /// This thread's cache (arming the exit hook if the slot is fresh), or null while arming, after the thread's exit
    /// hook ran, or when thread-locals are gone. A raw pointer, because the
    /// cache is thread-local state reached through a shared `&self`; callers
    /// dereference it for the duration of one operation only.
    #[inline]
    fn cache(&self) -> *mut ThreadCache {
        let slot = K::slot();
        if slot.is_null() {
            return core::ptr::null_mut();
        }
        // SAFETY: the slot is this thread's own and outlives the call. Its
        // fields are reached through the raw pointer so that a re-entrant
        // call (from inside `pthread_setspecific`) creates no overlapping
        // reference: that call sees ARMING and never touches the cache.
        match unsafe { (*slot).state } {
            // SAFETY: as above.
            ACTIVE => unsafe { &raw mut (*slot).cache },
            FRESH => self.arm(slot),
            _ => core::ptr::null_mut(),
        }
    }

    /// Registers the exit hook for this thread, then hands out its cache.
    /// Every access below goes through `slot`, this thread's own slot (see
    /// `cache`), so re-entrant calls from `pthread_setspecific` are safe.
    #[cold]
    #[inline(never)]
    fn arm(&self, slot: *mut ThreadSlot) -> *mut ThreadCache {
        // SAFETY: `slot` is this thread's slot, see `cache`.
        unsafe { (*slot).state = ARMING };
        let armed = match self.key() {
            // SAFETY: `key` is a live key; the value is only read back by our
            // destructor. This may re-enter the allocator, which sees ARMING.
            Some(key) => unsafe { libc::pthread_setspecific(key, slot.cast()) == 0 },
            None => false,
        };
        if !armed {
            // Without an exit hook the cache would be stranded: run uncached.
            // SAFETY: as above.
            unsafe { (*slot).state = DEAD };
            return core::ptr::null_mut();
        }
        // SAFETY: as above.
        unsafe {
            (*slot).state = ACTIVE;
            &raw mut (*slot).cache
        }
    }

    fn key(&self) -> Option<libc::pthread_key_t> {
        let k = self.key.load(Ordering::Acquire);
        if k != 0 {
            return Some((k - 1) as libc::pthread_key_t);
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor is a plain
        // `extern "C"` function that lives as long as the program.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit::<K>)) } != 0 {
            return None;
        }
        match self
            .key
            .compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(key),
            Err(winner) => {
                // SAFETY: our key was never armed in any thread.
                unsafe { libc::pthread_key_delete(key) };
                Some((winner - 1) as libc::pthread_key_t)
            }
        }
    }

    /// A block of `class` (null when out of memory).
    #[inline]
    pub fn alloc(&self, class: usize) -> *mut u8 {
        let cache = self.cache();
        if cache.is_null() {
            return self.alloc_slow(class);
        }
        // SAFETY: this thread's live cache, used by no one else meanwhile,
        // and only ever with `self.pool` (the slot type is ours alone).
        unsafe { (*cache).alloc(self.pool, class) }
    }

    /// Frees a block of `class`.
    ///
    /// # Safety
    /// `block` is a live block of `class` from this pool, not used afterwards.
    #[inline]
    pub unsafe fn free(&self, class: usize, block: *mut u8) {
        let cache = self.cache();
        if cache.is_null() {
            // SAFETY: forwarded contract.
            return unsafe { self.free_slow(class, block) };
        }
        // SAFETY: this thread's live cache, used by no one else meanwhile and
        // only with `self.pool`; the block's contract is forwarded.
        unsafe { (*cache).free(self.pool, class, block) }
    }

    /// Allocation without a cache (while arming, after thread exit). Out of
    /// line so the fast path does not carry the CAS loops' register spills.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, class: usize) -> *mut u8 {
        alloc_uncached(self.pool, class)
    }

    /// Free without a cache; out of line like [`Self::alloc_slow`].
    ///
    /// # Safety
    /// As [`ThreadCaches::free`].
    #[cold]
    #[inline(never)]
    unsafe fn free_slow(&self, class: usize, block: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { free_uncached(self.pool, class, block) }
    }

    /// The key destructor's body: flush the dying thread's cache.
    ///
    /// # Safety
    /// `slot` must be the value this thread armed the key with.
    unsafe fn thread_exit(&self, slot: *mut c_void) {
        // SAFETY: the destructor receives the pointer we stored: this
        // thread's slot, still alive (thread-locals outlive key destructors).
        let slot = unsafe { &mut *slot.cast::<ThreadSlot>() };
        slot.state = DEAD;
        #[cfg(shoalloc_fault)]
        if crate::fault::is_armed(crate::fault::Fault::StrandOnExit) {
            return;
        }
        // SAFETY: the cache of a `K` slot only ever held blocks of `self.pool`.
        unsafe { slot.cache.flush_all(self.pool) };
    }
}
