//! Pages from the operating system.
//!
//! Every byte either allocator owns comes from here: anonymous private
//! mappings, obtained with `mmap`, trimmed to the requested alignment and
//! returned with `munmap`. Fresh mappings are zero-filled by the kernel, which
//! is what lets `alloc_zeroed` skip the `memset` for large objects.
//!
//! Under `cfg(miri)` and `cfg(loom)` there are no system calls: the same
//! functions are served by [`std::alloc::System`] with an explicit zeroing, so
//! the layers above run unchanged inside the interpreters.

/// The page size every layer assumes. Linux on x86-64 and the common aarch64
/// configurations use 4 KiB pages; `page_size_ok` checks it (once, on the
/// first mapping) outside the interpreters, and the allocators refuse memory
/// on a kernel with another page size.
pub const PAGE: usize = 4096;

/// Maps `size` bytes (a multiple of [`PAGE`]) of zeroed read-write memory
/// whose start is a multiple of `align` (a power of two, at least [`PAGE`]).
///
/// Returns null when the kernel refuses or when the arithmetic would overflow:
/// callers turn that into a null allocation, never an abort.
pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two() && align >= PAGE);
    debug_assert!(size % PAGE == 0 && size > 0);
    imp::map_aligned(size, align)
}

/// Returns a mapping made by [`map_aligned`] (or a page-aligned part of one).
///
/// # Safety
/// `ptr..ptr + size` must be a page-aligned range inside mappings obtained
/// from [`map_aligned`] with the same `align`, and nothing may use it again.
pub unsafe fn unmap(ptr: *mut u8, size: usize, align: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::unmap(ptr, size, align) }
}

/// Tells the kernel the pages may be discarded: they stay mapped and read as
/// zero when touched again. Used to return the tail of a shrunk large object.
///
/// # Safety
/// The range must be page-aligned, inside a live mapping, and hold no data the
/// caller still needs.
pub unsafe fn decommit(ptr: *mut u8, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::decommit(ptr, size) }
}

/// Moves the mapping `from..from + size` to `to` and grows it to
/// `new_size` bytes, replacing the mapping of ours at `to..to + new_size`
/// (`mremap` with `MREMAP_FIXED`): the page-table entries move, so resident
/// pages stay resident and nothing is copied or faulted in, and the result
/// is one mapping whose last `new_size - size` bytes are fresh zero pages.
/// Returns `false` when the kernel refuses (`from` must be a single kernel
/// mapping, not several adjacent ones) or where pages cannot be moved
/// (under Miri and loom). After a refusal by the kernel both ranges may be
/// partly or wholly unmapped already: the caller must treat both as lost
/// and never touch or unmap them again.
///
/// # Safety
/// `from..from + size` is a mapping of ours that nothing uses any more;
/// `to..to + new_size` (`new_size >= size`) is page-aligned, a mapping of
/// ours, and holds nothing the caller still needs.
pub unsafe fn move_pages(from: *mut u8, size: usize, to: *mut u8, new_size: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { imp::move_pages(from, size, to, new_size) }
}

/// Asks the kernel not to back the range with transparent huge pages (see
/// `segment` for why). Advisory: an error (e.g. a kernel without THP) is
/// ignored.
///
/// # Safety
/// The range must be page-aligned and inside a live mapping of ours.
pub unsafe fn no_huge_pages(ptr: *mut u8, size: usize) {
    // SAFETY: forwarded contract.
    unsafe { imp::no_huge_pages(ptr, size) }
}

/// Milliseconds on a coarse monotonic clock (a vDSO read, no system call):
/// the purge delay's clock.
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// Checks that the kernel's page size matches [`PAGE`]. Returns false when it
/// does not, in which case the allocators refuse to hand out memory.
pub fn page_size_ok() -> bool {
    imp::page_size_ok()
}

/// `true` for addresses a user-space mapping can have on the supported
/// targets (below 2^[`ADDRESS_BITS`]). The address map only covers these.
#[inline]
pub fn is_user_address(addr: usize) -> bool {
    addr < (1usize << ADDRESS_BITS)
}

/// Width of the user address space the address map covers: 48 bits. x86-64
/// kernels (even with 5-level page tables) never return addresses above 2^47
/// from `mmap` without a hint; arm64 kernels built for 48-bit virtual
/// addresses place mappings just below 2^48. A mapping above this limit is
/// refused (treated as out of memory), never mis-registered.
pub const ADDRESS_BITS: u32 = 48;

/// Makes `size` bytes at `ptr` (page-aligned, inside a mapping the caller
/// owns) inaccessible: a guard page. `false` when the kernel refuses (for
/// instance at its limit of mappings per process) or in the interpreters,
/// which have none; the caller then goes on without the guard.
///
/// # Safety
/// Nothing may use the range afterwards.
#[cfg(not(loom))]
pub unsafe fn protect_none(ptr: *mut u8, size: usize) -> bool {
    debug_assert!(ptr as usize % PAGE == 0 && size % PAGE == 0);
    // SAFETY: forwarded contract.
    unsafe { imp::protect_none(ptr, size) }
}

/// 64 random bits, for the secure path's link keys: from `getrandom`, or,
/// where the kernel has none to give without blocking, from the clock, an
/// address and a counter mixed together (unpredictable enough to keep a
/// program's own writes from forming valid links, not a cryptographic key).
#[cfg(not(loom))]
pub fn random_u64() -> u64 {
    imp::random_u64()
}

/// splitmix64's finaliser: spreads every input bit over the output.
#[cfg(not(loom))]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fallback of [`random_u64`]: distinct on every call.
#[cfg(not(loom))]
fn weak_random_u64() -> u64 {
    use crate::sync::statics::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    let here = &n as *const u64 as u64;
    mix(n ^ mix(imp::clock_ns() ^ here.rotate_left(32)))
}

#[cfg(not(any(miri, loom)))]
mod imp {
    use super::PAGE;

    pub fn page_size_ok() -> bool {
        use crate::sync::statics::{AtomicU8, Ordering};
        // 0 = not asked yet, 1 = ok, 2 = wrong page size; asked once.
        static ANSWER: AtomicU8 = AtomicU8::new(0);
        match ANSWER.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                // SAFETY: sysconf has no memory-safety preconditions.
                let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
                let ok = page == PAGE as libc::c_long;
                ANSWER.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
                ok
            }
        }
    }

    fn mmap(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping with no address hint touches no
        // existing memory; failure is reported as MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                // No MAP_NORESERVE: with the default overcommit heuristic the
                // kernel then refuses absurd sizes, so they return null as
                // `malloc` must, instead of an address that is OOM-killed later.
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            crate::options::report_failure(
                "shoalloc: out of memory: the OS refused a mapping of ",
                size,
            );
            core::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    fn munmap(ptr: *mut u8, size: usize) {
        if size == 0 {
            return;
        }
        // SAFETY: callers pass page-aligned ranges of mappings they own.
        let rc = unsafe { libc::munmap(ptr.cast(), size) };
        debug_assert_eq!(rc, 0, "munmap failed");
    }

    pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
        // First try the exact size: the kernel often returns an aligned block
        // for large requests, which saves two system calls.
        let p = mmap(size);
        if p.is_null() {
            return p;
        }
        if (p as usize) % align == 0 {
            return p;
        }
        munmap(p, size);
        // Over-map by `align - PAGE` and trim both ends.
        let Some(padded) = size.checked_add(align - PAGE) else {
            return core::ptr::null_mut();
        };
        let raw = mmap(padded);
        if raw.is_null() {
            return raw;
        }
        let start = raw as usize;
        let aligned = (start + align - 1) & !(align - 1);
        let head = aligned - start;
        let tail = padded - head - size;
        munmap(raw, head);
        munmap((aligned + size) as *mut u8, tail);
        aligned as *mut u8
    }

    pub unsafe fn unmap(ptr: *mut u8, size: usize, _align: usize) {
        munmap(ptr, size);
    }

    pub unsafe fn decommit(ptr: *mut u8, size: usize) {
        // SAFETY: forwarded contract: a page-aligned range of a live mapping.
        unsafe {
            libc::madvise(ptr.cast(), size, libc::MADV_DONTNEED);
        }
    }

    pub unsafe fn no_huge_pages(ptr: *mut u8, size: usize) {
        // SAFETY: forwarded contract: a page-aligned range of a live mapping.
        unsafe {
            libc::madvise(ptr.cast(), size, libc::MADV_NOHUGEPAGE);
        }
    }

    pub unsafe fn move_pages(from: *mut u8, size: usize, to: *mut u8, new_size: usize) -> bool {
        // SAFETY: forwarded contract. MREMAP_FIXED replaces what was mapped
        // at `to` (the caller's own mapping) and unmaps `from`.
        let moved = unsafe {
            libc::mremap(
                from.cast(),
                size,
                new_size,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to.cast::<libc::c_void>(),
            )
        };
        moved == to.cast()
    }

    pub unsafe fn protect_none(ptr: *mut u8, size: usize) -> bool {
        // SAFETY: the caller owns the range and gives it up.
        unsafe { libc::mprotect(ptr.cast(), size, libc::PROT_NONE) == 0 }
    }

    /// The system call itself, not glibc's wrapper: the wrapper is a
    /// cancellation point (a `malloc` that maps a segment must not be one)
    /// and needs glibc 2.25.
    pub fn random_u64() -> u64 {
        let mut out = 0u64;
        loop {
            // SAFETY: `out` is a valid, writable 8-byte buffer.
            let got = unsafe {
                libc::syscall(
                    libc::SYS_getrandom,
                    (&mut out as *mut u64).cast::<libc::c_void>(),
                    core::mem::size_of::<u64>(),
                    libc::GRND_NONBLOCK,
                )
            };
            if got == core::mem::size_of::<u64>() as libc::c_long {
                return out;
            }
            // SAFETY: errno is this thread's.
            if got != -1 || unsafe { *libc::__errno_location() } != libc::EINTR {
                return super::weak_random_u64();
            }
        }
    }

    pub fn clock_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec as u64).wrapping_mul(1_000_000_000) ^ ts.tv_nsec as u64
    }

    pub fn now_ms() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
}

#[cfg(any(miri, loom))]
mod imp {
    use std::alloc::{GlobalAlloc, Layout, System};

    pub fn page_size_ok() -> bool {
        true
    }

    pub fn map_aligned(size: usize, align: usize) -> *mut u8 {
        match Layout::from_size_align(size, align) {
            // SAFETY: the layout has a non-zero size.
            Ok(layout) => unsafe { System.alloc_zeroed(layout) },
            Err(_) => core::ptr::null_mut(),
        }
    }

    pub unsafe fn unmap(ptr: *mut u8, size: usize, align: usize) {
        // SAFETY: `ptr` came from `map_aligned(size, align)`, which used this layout.
        // Partial unmaps are not used by the callers under the interpreters.
        unsafe { System.dealloc(ptr, Layout::from_size_align_unchecked(size, align)) }
    }

    pub unsafe fn decommit(ptr: *mut u8, size: usize) {
        // SAFETY: the caller owns the range; zeroing models MADV_DONTNEED.
        unsafe { core::ptr::write_bytes(ptr, 0, size) }
    }

    pub unsafe fn no_huge_pages(_ptr: *mut u8, _size: usize) {}

    pub unsafe fn move_pages(_from: *mut u8, _size: usize, _to: *mut u8, _new: usize) -> bool {
        false
    }

    #[cfg(not(loom))]
    pub unsafe fn protect_none(_ptr: *mut u8, _size: usize) -> bool {
        false
    }

    #[cfg(not(loom))]
    pub fn random_u64() -> u64 {
        super::weak_random_u64()
    }

    #[cfg(not(loom))]
    pub fn clock_ns() -> u64 {
        0
    }

    pub fn now_ms() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_millis() as u64
    }
}
