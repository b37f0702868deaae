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
//!
//! # Where the slot lives: two TLS models
//! By default the slot is that `thread_local!`. Rust compiles it with the
//! TLS model of the output: one add to the thread pointer in an executable,
//! but in a shared object (`libshoalloc.so`, a `cdylib`) the general-dynamic
//! model, a call to `__tls_get_addr` on every access — twice per
//! `malloc`/`free` pair, about 25 of its 177 instructions. That call is
//! also a hazard: on glibc before 2.40, after a `dlopen`/`dlclose` of a
//! module with TLS, the next `__tls_get_addr` in a thread may call `malloc`
//! and `free` to update the thread's DTV, and those re-enter this
//! allocator's own TLS access in the middle of the update.
//!
//! With the feature `initial-exec-tls` (what `libshoalloc.so` uses), on Linux
//! on x86-64 and aarch64, [`tls_slot!`] instead defines the slot in `.tbss`
//! with `global_asm!` and reaches it with the initial-exec sequence in
//! `asm!`: the thread pointer plus an offset the dynamic linker stored in
//! the GOT at load time. No call, no lazy allocation, nothing that can
//! re-enter. Stable Rust has no `#[thread_local]` or TLS-model attribute for
//! a static (both are unstable), hence the assembly. The object gets the
//! `DF_STATIC_TLS` flag, so the library's whole TLS block must sit in the
//! static TLS area: fine for code loaded at program start, but a library
//! `dlopen`ed later must fit glibc's small static-TLS surplus (and fails to
//! load otherwise), so the feature is for start-up code only.
//!
//! The trade-off: an initial-exec slot has no "already destroyed" state, as
//! `LocalKey::try_with` has; `slot()` always returns the address. None is
//! needed: the static TLS block is part of the thread's descriptor and is
//! released only with it, after the pthread key destructors (see above), so
//! a free at any point of thread exit still finds a live slot, in state
//! `DEAD` once the exit hook ran, and goes to the pools. The zero-filled
//! `.tbss` image is `ThreadSlot::new()`, a `FRESH` slot: see
//! [`ThreadSlot::new`] and its test.

use super::cache::ThreadCache;
use super::pool::SHARDS;
use super::pool::{alloc_uncached, free_uncached, FreeBlock, SharedPool};
use crate::sync::statics::{AtomicU64, AtomicUsize, Ordering};
use core::ffi::c_void;
use core::marker::PhantomData;

/// Deals the pool's shards (see `pool::SHARDS`) to the threads of one
/// [`ThreadCaches`].
#[derive(Debug)]
struct ShardDealer {
    /// Shards held by live threads, one bit each.
    held: AtomicU64,
    /// Turn for threads that find every shard held.
    next: AtomicUsize,
}

const _: () = assert!(SHARDS <= 64);

impl ShardDealer {
    const fn new() -> Self {
        Self {
            held: AtomicU64::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// A shard for a thread whose cache is being armed, and whether the
    /// thread holds it alone: the lowest shard no live thread holds, so that
    /// a thread started after another exited takes over the blocks the dead
    /// one left in its shard instead of carving fresh pages; when every
    /// shard is held, one in turn, shared. Relaxed: any answer is correct,
    /// only the spread matters.
    fn claim(&self) -> (usize, bool) {
        let all = u64::MAX >> (64 - SHARDS);
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let free = !held & all;
            if free == 0 {
                return (self.next.fetch_add(1, Ordering::Relaxed) % SHARDS, false);
            }
            let shard = free.trailing_zeros() as usize;
            match self.held.compare_exchange_weak(
                held,
                held | 1 << shard,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (shard, true),
                Err(now) => held = now,
            }
        }
    }

    /// Gives back a shard [`Self::claim`] handed out as held alone.
    fn release(&self, shard: usize) {
        self.held.fetch_and(!(1 << shard), Ordering::Relaxed);
    }
}

const FRESH: u8 = 0;
const ARMING: u8 = 1;
const ACTIVE: u8 = 2;
const DEAD: u8 = 3;

/// One thread's cache and the state of its exit hook.
#[derive(Debug)]
pub struct ThreadSlot {
    cache: ThreadCache,
    state: u8,
    /// `1 + shard` while this thread holds its pool shard alone (released
    /// when it exits), 0 otherwise.
    held_shard: u8,
}

impl ThreadSlot {
    /// A slot in the `FRESH` state. Every field of it is zero, so
    /// zero-filled memory is this slot (the `const` check below and the
    /// test `new_slot_is_all_zero`): the initial-exec slot of [`tls_slot!`],
    /// which starts as zero-filled `.tbss`, relies on it.
    pub const fn new() -> Self {
        Self {
            cache: ThreadCache::new(),
            state: FRESH,
            held_shard: 0,
        }
    }
}

impl Default for ThreadSlot {
    fn default() -> Self {
        Self::new()
    }
}

// Zero bytes are a valid `ThreadSlot` (const evaluation rejects zeroing a
// type for which they are not, e.g. one holding a reference or `NonNull`)
// and a `FRESH` one. That its cache is `ThreadCache::new()` is checked by
// the test `new_slot_is_all_zero`.
const _: () = {
    // SAFETY: evaluated at compile time, where `mem::zeroed` of a type that
    // has no valid all-zero value is an error rather than undefined behaviour.
    let zero: ThreadSlot = unsafe { core::mem::zeroed() };
    assert!(zero.state == FRESH);
};

/// Names one `const`-initialised thread-local [`ThreadSlot`] and the
/// [`ThreadCaches`] it belongs to. Implemented by [`thread_caches!`] only.
///
/// A zero-sized type implements it with a thread-local inside `slot` (see
/// [`tls_slot!`]), so the fast path reaches the slot with a direct TLS
/// access — storing a `&'static LocalKey` instead would cost an indirect
/// call per operation.
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

        $crate::shoal::thread::tls_slot!($slot);

        // SAFETY: `tls_slot!` gives `$slot` a thread-local `ThreadSlot` of
        // its own, without a destructor, that outlives the key destructors;
        // `$name` is the only `ThreadCaches<$slot>`.
        unsafe impl $crate::shoal::thread::SlotKey for $slot {
            type Pool = $pool;

            #[inline(always)]
            fn slot() -> *mut $crate::shoal::thread::ThreadSlot {
                $slot::address()
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

/// Gives the slot type `$slot` its thread-local [`ThreadSlot`] and an
/// associated `fn address() -> *mut ThreadSlot`, used by
/// [`thread_caches!`] only.
///
/// This definition: the initial-exec TLS model (feature `initial-exec-tls`,
/// Linux, x86-64 or aarch64; why and the trade-off are in the module
/// documentation). The slot is a symbol `shoalloc_<$slot>` in `.tbss`,
/// zero-filled (a `FRESH` slot), `size_of::<ThreadSlot>()` bytes, 16-aligned.
/// It is global in the object file, because `address` is inlined into other
/// codegen units and into crates that call the allocator, whose objects
/// refer to it by name; `.hidden` makes the linker turn it into a local
/// symbol of the linked library or executable, so it is never exported.
/// One symbol per slot type: `Shoal`'s slot and the locked ablation's stay
/// apart.
#[cfg(shoalloc_initial_exec_tls)]
macro_rules! tls_slot {
    ($slot:ident) => {
        const _: () = assert!(core::mem::align_of::<$crate::shoal::thread::ThreadSlot>() <= 16);

        core::arch::global_asm!(
            concat!(".pushsection .tbss.shoalloc_", stringify!($slot), ",\"awT\",%nobits"),
            concat!(".globl shoalloc_", stringify!($slot)),
            concat!(".hidden shoalloc_", stringify!($slot)),
            concat!(".type shoalloc_", stringify!($slot), ",%object"),
            concat!(".size shoalloc_", stringify!($slot), ", {size}"),
            ".p2align 4",
            concat!("shoalloc_", stringify!($slot), ":"),
            ".zero {size}",
            ".popsection",
            size = const core::mem::size_of::<$crate::shoal::thread::ThreadSlot>(),
        );

        impl $slot {
            /// This thread's slot: the thread pointer plus the slot's
            /// offset in the static TLS area, read from the GOT entry that
            /// the dynamic linker (or, in an executable, the static linker)
            /// filled before any code of the program ran.
            #[inline(always)]
            fn address() -> *mut $crate::shoal::thread::ThreadSlot {
                let slot: *mut $crate::shoal::thread::ThreadSlot;
                // SAFETY: reads the thread pointer (`fs:0` holds the TCB's
                // own address, as the x86-64 TLS ABI requires) and the GOT
                // entry of a TLS symbol this crate defines; writes only the
                // output register and the flags (not preserved). The GOT
                // entry never changes after load and the thread pointer not
                // within a thread, so the sequence is pure; it touches no
                // memory Rust can see.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    core::arch::asm!(
                        "mov {r}, qword ptr fs:0",
                        concat!("add {r}, qword ptr [rip + shoalloc_", stringify!($slot), "@GOTTPOFF]"),
                        r = out(reg) slot,
                        options(pure, nomem, nostack),
                    );
                }
                // SAFETY: reads `tpidr_el0` (the thread pointer) and, with
                // `adrp` + `ldr`, the GOT entry of a TLS symbol this crate
                // defines; writes only the two output registers; flags are
                // untouched. Pure, as on x86-64.
                #[cfg(target_arch = "aarch64")]
                unsafe {
                    core::arch::asm!(
                        "mrs {r}, tpidr_el0",
                        concat!("adrp {t}, :gottprel:shoalloc_", stringify!($slot)),
                        concat!("ldr {t}, [{t}, #:gottprel_lo12:shoalloc_", stringify!($slot), "]"),
                        "add {r}, {r}, {t}",
                        r = out(reg) slot,
                        t = out(reg) _,
                        options(pure, nomem, nostack, preserves_flags),
                    );
                }
                if slot.is_null() {
                    // SAFETY: the address of a live object in this thread's
                    // static TLS block is never null. Saying so lets the
                    // caller's null check fold away.
                    unsafe { core::hint::unreachable_unchecked() }
                }
                slot
            }
        }
    };
}

/// Gives the slot type `$slot` its thread-local [`ThreadSlot`] and an
/// associated `fn address() -> *mut ThreadSlot`, used by
/// [`thread_caches!`] only.
///
/// This definition: a `const`-initialised `thread_local!` (the default, and
/// on targets without the initial-exec variant). `address` returns null
/// once std reports thread-locals as destroyed.
#[cfg(not(shoalloc_initial_exec_tls))]
macro_rules! tls_slot {
    ($slot:ident) => {
        impl $slot {
            /// This thread's slot, or null when thread-locals are gone.
            #[inline(always)]
            fn address() -> *mut $crate::shoal::thread::ThreadSlot {
                std::thread_local! {
                    static SLOT: core::cell::UnsafeCell<$crate::shoal::thread::ThreadSlot> =
                        const { core::cell::UnsafeCell::new($crate::shoal::thread::ThreadSlot::new()) };
                }
                SLOT.try_with(|s| s.get()).unwrap_or(core::ptr::null_mut())
            }
        }
    };
}
pub(crate) use tls_slot;

/// Thread caches over one shared pool: the thread-local slot (`K`), the pool,
/// and the pthread key whose destructor flushes a dying thread's cache.
pub struct ThreadCaches<K: SlotKey> {
    slot: PhantomData<K>,
    pool: &'static K::Pool,
    /// `pthread_key_t + 1`, or 0 before the key is created.
    key: AtomicUsize,
    /// Who gets which shard of `pool`.
    shards: ShardDealer,
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
            shards: ShardDealer::new(),
        }
    }

    /// This thread's cache (arming the exit hook if the slot is fresh), or null while arming, after the thread's exit
    /// hook ran, or when thread-locals are gone. A raw pointer, because the
    /// cache is thread-local state reached through a shared `&self`; callers
    /// dereference it for the duration of one operation only.
    #[inline]
    fn cache(&self) -> *mut ThreadCache {
        let cache = Self::active_cache();
        if !cache.is_null() {
            return cache;
        }
        let slot = K::slot();
        // SAFETY: a non-null slot is this thread's own and outlives the
        // call. Its fields are reached through the raw pointer so that a
        // re-entrant call (from inside `pthread_setspecific`) creates no
        // overlapping reference: that call sees ARMING and never touches the
        // cache.
        if !slot.is_null() && unsafe { (*slot).state } == FRESH {
            self.arm(slot)
        } else {
            core::ptr::null_mut()
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
        let (shard, alone) = self.shards.claim();
        // SAFETY: as above.
        unsafe {
            (*slot).cache.set_shard(shard);
            (*slot).held_shard = if alone { 1 + shard as u8 } else { 0 };
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

    /// This thread's cache if it is `ACTIVE`, else null (fresh, arming,
    /// after the exit hook, or thread-locals gone): the fast paths' test,
    /// which calls nothing, so that everything else is one tail call to a
    /// cold function and the fast paths save no registers.
    #[inline(always)]
    fn active_cache() -> *mut ThreadCache {
        let slot = K::slot();
        // SAFETY: a non-null slot is this thread's own and outlives the
        // call; read through the raw pointer, as in `cache`, so a re-entrant
        // call creates no overlapping reference.
        if !slot.is_null() && unsafe { (*slot).state } == ACTIVE {
            // SAFETY: as above.
            unsafe { &raw mut (*slot).cache }
        } else {
            core::ptr::null_mut()
        }
    }

    /// A block of `class` (null when out of memory).
    #[inline]
    pub fn alloc(&self, class: usize) -> *mut u8 {
        let cache = Self::active_cache();
        if cache.is_null() {
            return self.alloc_unarmed(class);
        }
        // SAFETY: this thread's live cache, used by no one else meanwhile,
        // and only ever with `self.pool` (the slot type is ours alone).
        unsafe { (*cache).alloc(self.pool, class) }
    }

    /// [`Self::alloc`] on a thread whose cache is not `ACTIVE`: arms a fresh
    /// slot and allocates from its cache, or allocates uncached.
    #[cold]
    #[inline(never)]
    fn alloc_unarmed(&self, class: usize) -> *mut u8 {
        let cache = self.cache();
        if cache.is_null() {
            return alloc_uncached(self.pool, class);
        }
        // SAFETY: as in `alloc`.
        unsafe { (*cache).alloc(self.pool, class) }
    }

    /// [`Self::alloc`], showing the cache's blocks to `check` before their
    /// links are followed (see [`ThreadCache::alloc_checked`]). A block
    /// served without a cache (while arming, after the exit hook) is shown
    /// to `check` before it is returned.
    #[inline(always)]
    pub fn alloc_checked(&self, class: usize, check: impl Fn(*mut FreeBlock)) -> *mut u8 {
        let cache = Self::active_cache();
        if cache.is_null() {
            return self.alloc_checked_unarmed(class, check);
        }
        // SAFETY: as in `alloc`.
        unsafe { (*cache).alloc_checked(self.pool, class, check) }
    }

    /// [`Self::alloc_checked`] on a thread whose cache is not `ACTIVE`, as
    /// [`Self::alloc_unarmed`].
    #[cold]
    #[inline(never)]
    fn alloc_checked_unarmed(&self, class: usize, check: impl Fn(*mut FreeBlock)) -> *mut u8 {
        let cache = self.cache();
        if cache.is_null() {
            let block = alloc_uncached(self.pool, class);
            if !block.is_null() {
                check(block.cast());
            }
            return block;
        }
        // SAFETY: as in `alloc`.
        unsafe { (*cache).alloc_checked(self.pool, class, check) }
    }

    /// Frees a block of `class`.
    ///
    /// # Safety
    /// `block` is a live block of `class` from this pool, not used afterwards.
    #[inline]
    pub unsafe fn free(&self, class: usize, block: *mut u8) {
        let cache = Self::active_cache();
        if cache.is_null() {
            // SAFETY: forwarded contract.
            return unsafe { self.free_unarmed(class, block) };
        }
        // SAFETY: this thread's live cache, used by no one else meanwhile and
        // only with `self.pool`; the block's contract is forwarded.
        unsafe { (*cache).free(self.pool, class, block) }
    }

    /// [`Self::free`] on a thread whose cache is not `ACTIVE`: arms a fresh
    /// slot and frees into its cache, or frees uncached.
    ///
    /// # Safety
    /// As [`Self::free`].
    #[cold]
    #[inline(never)]
    unsafe fn free_unarmed(&self, class: usize, block: *mut u8) {
        let cache = self.cache();
        if cache.is_null() {
            // SAFETY: forwarded contract.
            return unsafe { free_uncached(self.pool, class, block) };
        }
        // SAFETY: as in `free`.
        unsafe { (*cache).free(self.pool, class, block) }
    }

    /// Returns every block the calling thread's cache holds to the pool (for
    /// `collect`); the cache stays usable.
    pub fn flush_current(&self) {
        let cache = self.cache();
        if !cache.is_null() {
            // SAFETY: this thread's live cache, used by no one else meanwhile
            // and only with `self.pool`.
            unsafe { (*cache).flush_all(self.pool) };
        }
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
        if slot.held_shard != 0 {
            self.shards.release(usize::from(slot.held_shard - 1));
            slot.held_shard = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::MaybeUninit;

    /// Live threads get distinct shards while there are enough, the lowest
    /// free one first; then shards are shared in turn; a shard given back is
    /// the next one dealt, alone.
    #[test]
    fn shards_are_dealt_alone_then_shared_and_given_back() {
        let dealer = ShardDealer::new();
        let first: Vec<_> = (0..SHARDS).map(|_| dealer.claim()).collect();
        assert_eq!(first, (0..SHARDS).map(|s| (s, true)).collect::<Vec<_>>());
        let shared: Vec<_> = (0..SHARDS).map(|_| dealer.claim()).collect();
        assert!(shared.iter().all(|&(s, alone)| s < SHARDS && !alone));
        let mut seen: Vec<_> = shared.iter().map(|&(s, _)| s).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..SHARDS).collect::<Vec<_>>(), "dealt in turn");
        dealer.release(3);
        assert_eq!(dealer.claim(), (3, true), "the shard given back");
        assert!(!dealer.claim().1, "all held again");
    }

    /// The initial-exec slot starts as zero-filled `.tbss`; that must read
    /// as `ThreadSlot::new()`. Compared through `Debug`, which shows every
    /// field (a byte comparison would read padding, which a `const` value
    /// leaves uninitialised).
    #[test]
    fn new_slot_is_all_zero() {
        let zero = MaybeUninit::<ThreadSlot>::zeroed();
        // SAFETY: all-zero bytes are a valid `ThreadSlot` (raw pointers,
        // integers): the `const` assertion next to `ThreadSlot` checks it.
        let zero = unsafe { zero.assume_init() };
        assert_eq!(zero.state, FRESH);
        assert_eq!(format!("{zero:?}"), format!("{:?}", ThreadSlot::new()));
    }

    struct TestSlot;
    tls_slot!(TestSlot);

    /// A slot of a type of its own (so in the initial-exec build a third
    /// TLS symbol): per thread, stable, aligned, starting `FRESH`.
    #[test]
    fn slot_is_per_thread_and_starts_fresh() {
        let here = TestSlot::address();
        assert!(!here.is_null());
        assert_eq!(here as usize % core::mem::align_of::<ThreadSlot>(), 0);
        assert_eq!(TestSlot::address(), here);
        // SAFETY: this thread's own slot, used by nothing else.
        unsafe {
            assert_eq!((*here).state, FRESH);
            (*here).state = DEAD;
            assert_eq!((*TestSlot::address()).state, DEAD);
        }
        let there = std::thread::spawn(|| {
            let slot = TestSlot::address();
            // SAFETY: that thread's own slot, used by nothing else.
            let state = unsafe { (*slot).state };
            (slot as usize, state)
        })
        .join()
        .unwrap();
        assert_ne!(there.0, here as usize);
        assert_eq!(there.1, FRESH);
    }
}
