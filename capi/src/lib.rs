//! # libshoalloc.so — [`Shoal`] as the C allocator
//!
//! A `cdylib` that exports the C allocation functions, every one served by
//! shoalloc's lock-free, thread-caching [`Shoal`]. Build and use it as a
//! drop-in replacement for glibc's `malloc`:
//!
//! ```text
//! cargo build --release -p shoalloc-capi        # → target/release/libshoalloc.so
//! LD_PRELOAD=$PWD/target/release/libshoalloc.so sort big.txt
//! ```
//!
//! (`target/` is the workspace's target directory; `CARGO_TARGET_DIR` moves it.)
//!
//! ## The secure build: `libshoalloc_secure.so`
//! The same source built with the feature `secure` (the workspace member
//! `capi-secure/` does so: `cargo build --release -p shoalloc-capi-secure` →
//! `target/release/libshoalloc_secure.so`) serves every call from
//! `shoalloc::ShoalSecure`: a state byte per small block, so every double
//! free (not only an immediate one), every free of an interior or foreign
//! pointer, and a free-list link overwritten after a free (a use-after-free
//! write, or an overflow into a free block) end in a message and `abort()`.
//! What it costs is measured by the benchmarks (`shoal-secure`).
//! The Rust library `shoalloc` itself exports none of these symbols: only this
//! crate, which links it under the name `shoal`, does.
//!
//! ## C semantics
//! | call | answer |
//! |---|---|
//! | `malloc(0)` | a unique 16-byte block that `free` accepts |
//! | `malloc(n)` that cannot be served (`n > PTRDIFF_MAX`, OS refuses) | `NULL`, `errno = ENOMEM` |
//! | `free(NULL)`, `cfree(NULL)` | nothing |
//! | `calloc(n, m)` with `n * m` overflowing | `NULL`, `errno = ENOMEM` |
//! | `realloc(NULL, n)` | `malloc(n)` |
//! | `realloc(p, 0)` | frees `p`, returns `NULL`, `errno` untouched — glibc's behaviour (C23 makes it undefined; glibc documents freeing) |
//! | `realloc(p, n)` that fails | `NULL`, `errno = ENOMEM`, `p` intact and still owned by the caller |
//! | `realloc(p, n)`, `n` in the block's size class, or a large object whose mapping still fits it without leaving more than half unused | `p` itself |
//! | `reallocarray(p, n, m)` with overflow | `NULL`, `errno = ENOMEM`, `p` intact |
//! | `posix_memalign(&p, a, n)` | `EINVAL` unless `a` is a power of two and a multiple of `sizeof(void *)`; `ENOMEM` when out of memory; `p` written only on success; the answer is the return value (we do not set `errno`, though a refused `mmap` leaves `ENOMEM` there) |
//! | `aligned_alloc(a, n)`, `memalign(a, n)` | `NULL`, `errno = EINVAL` unless `a` is a power of two (so `a = 0` is rejected; glibc's `memalign` instead rounds `a` up — we refuse rather than guess, as glibc 2.38's `aligned_alloc` does); any `n`, not only multiples of `a` (C17 DR 460) |
//! | `valloc(n)` | page-aligned (4096) |
//! | `pvalloc(n)` | page-aligned, `n` rounded up to a whole page (`pvalloc(0)` gives one page); overflow → `NULL`, `ENOMEM` |
//! | `malloc_usable_size(p)` | the block's real size: all of it may be written; `0` for `NULL` |
//!
//! Every block is 16-byte aligned (`alignof(max_align_t)`); a block from
//! `posix_memalign(&p, 4096, n)` keeps its alignment only until it is
//! `realloc`ed, which, as in C, promises malloc alignment (16) only.
//!
//! ## Pointers that are not ours
//! `free`, `cfree`, `realloc` and `malloc_usable_size` classify the pointer
//! with [`Shoal::owner`], which reads memory only where shoalloc's address
//! map says it is shoalloc's. A pointer that shoalloc did not hand out (stack or
//! static memory, an interior pointer, a pointer from another allocator, a
//! large object already freed) is reported on stderr with one `write(2)` —
//! `shoalloc: free(0x…): invalid pointer …` — and the process is stopped
//! with `abort()` (`SIGABRT`), as glibc does for the pointers it can detect.
//! Nothing is allocated on that path. A second `free` of a *small* block is
//! detected when it follows the first directly in the same thread (the block
//! is then the head of the thread's list: `shoalloc: double free …`, abort);
//! a later one only by the secure build (otherwise the block is still a
//! block boundary of one of our segments, and nothing records that it is
//! free).
//!
//! The check costs little: the address map's word for the pointer's 4 MiB
//! granule, then the descriptor of its 64 KiB unit, which names the page's
//! class and first unit; a multiplication tests the block boundary (no
//! division) and a table entry the page's last block. That descriptor is all
//! a small `free` reads before the thread cache takes the block.
//!
//! ## Why this is safe to preload
//! * **No allocation through Rust.** Nothing here uses `format!`, `Vec`,
//!   `Box`, or anything else that would call back into `malloc`; the error
//!   path formats the pointer into a stack buffer. No exported function can
//!   panic: all arithmetic is checked or provably in range. (Panic strategy is
//!   a workspace profile setting, which this crate cannot change.)
//! * **Re-entrancy.** ld.so calls `malloc`/`calloc` before `main` and while
//!   creating threads, and `pthread_setspecific` may call `calloc` while
//!   Shoal arms a thread's exit hook. `Shoal`'s per-thread slot is a
//!   zero-initialised thread-local without a destructor, and its
//!   `ARMING` state sends re-entrant calls to the shared pools directly (see
//!   `src/shoal/thread.rs`). There is no constructor to run first: all state is
//!   `static` and `const`-initialised.
//! * **No `__tls_get_addr`.** This crate builds shoalloc with its feature
//!   `initial-exec-tls`: the slot is reached with the initial-exec TLS model
//!   (thread pointer plus a GOT offset), not with the general-dynamic model
//!   Rust's `thread_local!` gets in a `cdylib`. So `malloc` and `free` never
//!   call `__tls_get_addr`, which glibc before 2.40 may itself call `malloc`
//!   and `free` from, while it updates a thread's DTV after a
//!   `dlopen`/`dlclose` of a module with TLS. (Rust's own thread-locals, on
//!   panic paths only, still use `__tls_get_addr`.)
//! * **Thread exit.** Shoal's pthread key destructor returns a dying thread's
//!   cached blocks to the shared pools; frees after it (later key
//!   destructors, glibc freeing the thread's DTV) go to the pools directly.
//! * **fork.** Shoal takes no lock anywhere: its shared state is atomic
//!   words changed by single CASes (Treiber stacks of batches, the carve
//!   word, the address map, the segment table). `fork` copies each word
//!   either before or after any CAS, so the child sees every structure in a
//!   consistent state; the child's only thread is the forking thread, whose
//!   cache and pthread-key value are intact. What the child loses is memory,
//!   never consistency: blocks sitting in other threads' caches, a run a
//!   thread had carved but not yet linked, a mapping being set up — all
//!   leaked in the child, bounded by two batches per size class per thread.
//!   So no `pthread_atfork` handlers are registered: there is nothing to lock
//!   before `fork` or to repair after it.
//!
//! ## Limits
//! * Linux with glibc, x86-64 or aarch64 with 4 KiB pages (Shoal's own limits).
//! * Load it at start-up only (`LD_PRELOAD`, or linked as `DT_NEEDED`).
//!   The initial-exec slot makes the library `DF_STATIC_TLS`: its TLS must
//!   sit in the static TLS block, which glibc sizes at start-up for the
//!   libraries loaded then. `dlopen`ing `libshoalloc.so` later is
//!   unsupported: its TLS would have to fit glibc's small static-TLS surplus
//!   (or the load fails), and memory already obtained from glibc would be
//!   passed to our `free` and abort the process.
//! * Not async-signal-safe, like glibc's `malloc`: a signal handler that
//!   allocates while the same thread is inside `malloc` or `free` may corrupt
//!   that thread's cache (glibc would deadlock instead).
//! * A child of `fork` keeps the other threads' cached blocks as unreachable
//!   memory (see above); a program that forks thousands of children from a
//!   many-threaded parent without `exec` pays that per child.
//! * `malloc_trim` is shoalloc's: it gives free memory back to the OS at once
//!   (`shoalloc::collect`) and returns 1. Without it, freed memory goes back
//!   after the purge delay (`SHOALLOC_PURGE_DELAY_MS`, default 100 ms), on
//!   later allocator activity. `mallinfo2` answers with shoalloc's numbers
//!   (`shoalloc::stats`: `arena` bytes mapped, `uordblks` bytes in use —
//!   an estimate that counts thread-cached blocks as in use — `fordblks`
//!   bytes free in pools, pages and the page heap, `hblks`/`hblkhd` live
//!   huge mappings and their bytes, the rest 0) and `malloc_stats` prints
//!   shoalloc's table on stderr (as `SHOALLOC_SHOW_STATS=1` does at exit);
//!   the old `mallinfo` and `mallopt` still act on glibc's (unused) heap.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_void};
use core::ptr::null_mut;
use shoal::internals::PAGE;
#[cfg(not(feature = "secure"))]
use shoal::Shoal as Heap;
#[cfg(feature = "secure")]
use shoal::ShoalSecure as Heap;

/// The alignment `malloc` guarantees: `alignof(max_align_t)` on x86-64 and
/// aarch64, and the smallest Shoal ever gives.
const MALLOC_ALIGN: usize = 16;

/// The handle `calloc` uses for [`GlobalAlloc::alloc_zeroed`], which knows
/// when fresh memory is already zero.
const HEAP: Heap = Heap::new();

/// Stores `code` in this thread's `errno`.
#[inline]
fn set_errno(code: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's `errno`, which
    // is valid and writable for the thread's whole life.
    unsafe { *libc::__errno_location() = code };
}

/// `null` with `errno = code`.
#[cold]
fn fail(code: c_int) -> *mut c_void {
    set_errno(code);
    null_mut()
}

/// `size` bytes aligned to `align` (a power of two), or null with
/// `errno = ENOMEM`.
#[inline]
fn alloc_or_enomem(size: usize, align: usize) -> *mut c_void {
    let p = Heap::allocate(size, align);
    if p.is_null() {
        return fail(libc::ENOMEM);
    }
    p.cast()
}

/// The C11/POSIX `memalign` family: `align` must be a power of two.
/// Size 0 is served as 1 so that even a large-object request gets a byte of
/// its own mapping rather than a pointer one past its end.
fn alloc_aligned(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        return fail(libc::EINVAL);
    }
    alloc_or_enomem(size.max(1), align)
}

/// Allocates `size` bytes aligned to 16. `malloc(0)` returns a unique block.
/// On failure returns null with `errno = ENOMEM`.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc_or_enomem(size, MALLOC_ALIGN)
}

/// Frees a block from any function of this library; `free(NULL)` does
/// nothing. A pointer we did not hand out aborts the process with a message.
///
/// # Safety
/// `ptr` is null or a live block from this library, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the caller gives up a live block; a foreign pointer is detected
    // by `free_unsized_or`, which then touches nothing and calls
    // `invalid_free`.
    unsafe { Heap::free_unsized_or(ptr.cast(), invalid_free) }
}

/// `free` of a pointer that is not ours: reports it and aborts.
#[cold]
fn invalid_free(ptr: *mut u8) -> ! {
    invalid_pointer(b"free", ptr.cast())
}

/// The old SunOS name of `free`, still exported by glibc for old binaries.
///
/// # Safety
/// As [`free`].
#[no_mangle]
pub unsafe extern "C" fn cfree(ptr: *mut c_void) {
    // SAFETY: forwarded contract.
    unsafe { free(ptr) }
}

/// `n * size` zeroed bytes; null with `errno = ENOMEM` when the product
/// overflows or memory runs out.
#[no_mangle]
pub extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        return fail(libc::ENOMEM);
    };
    let Ok(layout) = Layout::from_size_align(total.max(1), MALLOC_ALIGN) else {
        return fail(libc::ENOMEM);
    };
    // SAFETY: the layout's size is non-zero. `alloc_zeroed` zeroes small
    // blocks and relies on fresh mappings being zero for large objects, so a
    // large `calloc` touches no page.
    let p = unsafe { HEAP.alloc_zeroed(layout) };
    if p.is_null() {
        return fail(libc::ENOMEM);
    }
    p.cast()
}

/// Resizes a block, keeping the first `min(old, new)` bytes.
///
/// * `realloc(NULL, n)` is `malloc(n)`;
/// * `realloc(p, 0)` frees `p` and returns null, as glibc does;
/// * in place when `n` still maps to `p`'s size class, or when a large object
///   can keep its mapping (the policy of `Shoal::realloc_unsized`, shared
///   with Rust's `GlobalAlloc::realloc`);
/// * otherwise allocate, copy, free. If that allocation fails, `p` is left
///   untouched and null is returned with `errno = ENOMEM`.
///
/// The result is 16-byte aligned; a more-aligned block may lose its alignment.
///
/// # Safety
/// `ptr` is null or a live block from this library. Unless null is returned
/// for a non-zero size, `ptr` must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return malloc(size);
    }
    if size == 0 {
        // SAFETY: forwarded contract; the caller gives the block up.
        unsafe { free(ptr) };
        return null_mut();
    }
    // SAFETY: the caller says a pointer of ours is live and gives it up
    // unless we return null; a foreign pointer is detected and left alone.
    match unsafe { Heap::realloc_unsized(ptr.cast(), size, MALLOC_ALIGN) } {
        Ok(p) if p.is_null() => fail(libc::ENOMEM),
        Ok(p) => p.cast(),
        Err(_) => invalid_pointer(b"realloc", ptr),
    }
}

/// `realloc(ptr, n * size)`, except that an overflowing product returns null
/// with `errno = ENOMEM` and leaves `ptr` untouched.
///
/// # Safety
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => fail(libc::ENOMEM),
    }
}

/// Stores in `*memptr` a block of `size` bytes aligned to `align`. Returns 0,
/// `EINVAL` when `align` is not a power of two multiple of `sizeof(void *)`,
/// or `ENOMEM`; on error `*memptr` is not written. We do not set `errno`:
/// POSIX reports through the return value.
///
/// # Safety
/// `memptr` must be valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(
    memptr: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let p = Heap::allocate(size.max(1), align);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's promise.
    unsafe { *memptr = p.cast() };
    0
}

/// C11 `aligned_alloc`: `size` bytes aligned to `align`, which must be a power
/// of two (else null, `errno = EINVAL`); any `size` is accepted.
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    alloc_aligned(align, size)
}

/// The obsolete `memalign`: as [`aligned_alloc`]. glibc rounds an alignment
/// that is not a power of two up to one; we refuse it with `EINVAL`, which
/// surfaces the caller's mistake instead of guessing.
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    alloc_aligned(align, size)
}

/// `size` bytes aligned to the page size.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_aligned(PAGE, size)
}

/// `size` rounded up to whole pages (at least one), page-aligned.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let Some(padded) = size.max(1).checked_add(PAGE - 1) else {
        return fail(libc::ENOMEM);
    };
    alloc_aligned(PAGE, padded & !(PAGE - 1))
}

/// Bytes usable at `ptr`: at least what was requested, and all of them may
/// be written. 0 for null; a pointer we did not hand out aborts.
///
/// # Safety
/// `ptr` is null or a live block from this library.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: the caller says a pointer of ours is live; others are detected.
    match unsafe { Heap::usable_size(ptr.cast()) } {
        Some(n) => n,
        None => invalid_pointer(b"malloc_usable_size", ptr),
    }
}

/// A fixed stack buffer for the one message this library prints: building it
/// must not allocate, and overlong input is cut rather than panicking.
struct Message {
    buf: [u8; 256],
    len: usize,
}

impl Message {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    fn push_hex(&mut self, value: usize) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.push(b"0x");
        let mut started = false;
        for nibble in (0..usize::BITS / 4).rev() {
            let d = (value >> (nibble * 4)) & 0xf;
            if d != 0 || started || nibble == 0 {
                started = true;
                self.push(&[DIGITS[d]]);
            }
        }
    }
}

/// Gives free memory back to the OS now (see `shoalloc::collect`); `pad` is
/// ignored. Returns 1: glibc's "some memory was released", which callers
/// treat as success.
#[no_mangle]
pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
    shoal::collect();
    1
}

/// glibc's `struct mallinfo2`: ten `size_t` fields, in this order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Mallinfo2 {
    /// Bytes mapped from the OS (segments, huge and parked mappings).
    pub arena: usize,
    /// Free chunks: 0 (shoalloc has no chunks).
    pub ordblks: usize,
    /// Free fastbin blocks: 0.
    pub smblks: usize,
    /// Live huge objects (one mapping each).
    pub hblks: usize,
    /// Bytes of their mappings.
    pub hblkhd: usize,
    /// Always 0 (unused by glibc too).
    pub usmblks: usize,
    /// Bytes in free fastbin blocks: 0.
    pub fsmblks: usize,
    /// Bytes in use (estimate: small, medium and huge objects, with blocks
    /// cached by threads counted as in use).
    pub uordblks: usize,
    /// Bytes free for reuse: free small blocks, free page-heap units and
    /// parked mappings.
    pub fordblks: usize,
    /// Releasable from the top of the heap: 0 (there is no top).
    pub keepcost: usize,
}

/// shoalloc's heap statistics in glibc's shape (see the module docs). A
/// snapshot that walks the heap: not for every allocation.
#[no_mangle]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    let s = shoal::stats();
    let z = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Mallinfo2 {
        arena: z(s.mapped_bytes),
        hblks: z(s.huge_count),
        hblkhd: z(s.huge_bytes),
        uordblks: z(s.in_use_bytes),
        fordblks: z(s.free_bytes),
        ..Mallinfo2::default()
    }
}

/// Prints shoalloc's statistics table on stderr (no allocation).
#[no_mangle]
pub extern "C" fn malloc_stats() {
    shoal::print_stats();
}

/// Reports a pointer that shoalloc did not allocate and aborts.
///
/// One `write(2)` to stderr of a message built on the stack, then `abort()`:
/// no allocation, no stdio, no locks, so it works whatever state the caller's
/// heap is in.
#[cold]
#[inline(never)]
fn invalid_pointer(function: &[u8], ptr: *mut c_void) -> ! {
    let mut msg = Message {
        buf: [0; 256],
        len: 0,
    };
    msg.push(b"shoalloc: ");
    msg.push(function);
    msg.push(b"(");
    msg.push_hex(ptr as usize);
    msg.push(b"): invalid pointer: not a block allocated by shoalloc ");
    msg.push(b"(foreign, interior or already freed); aborting\n");
    // SAFETY: writes `len` initialised bytes of our own buffer to fd 2; the
    // result is deliberately ignored, since we abort either way.
    unsafe {
        libc::write(2, msg.buf.as_ptr().cast(), msg.len);
        libc::abort()
    }
}
