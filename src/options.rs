//! Run-time options: read once from the environment (without allocating),
//! settable from Rust.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SHOALLOC_PURGE_DELAY_MS` | 100 | how long freed small and medium memory stays resident before it is given back to the OS; 0 purges at the next opportunity |
//! | `SHOALLOC_SHOW_STATS` | 0 | `1`: print the statistics table ([`crate::stats`]) on stderr at process exit; `0`: do not |
//! | `SHOALLOC_VERBOSE` | 0 | `1`: say on stderr why an allocation returns null (the OS refused a mapping, or the 128 GiB range of small and medium memory is used up) |
//!
//! An invalid value is reported once on stderr and ignored. Each has a
//! Rust setter (`shoalloc::set_purge_delay`, `set_show_stats`,
//! `set_verbose`) that overrides the environment. The secure checks are
//! not a run-time switch: they are a type (`ShoalSecure`) or a library
//! (`libshoalloc_secure.so`), because a heap cannot start checking block
//! states that it has not kept from the start.

use crate::stderr::Stderr;
use crate::sync::statics::{AtomicU64, AtomicU8, Ordering};
use core::fmt::Write;

/// The purge delay when nothing sets it: within mimalloc's range (10 ms to
/// 1 s) — long enough that a program that frees and quickly reallocates does
/// not fault its pages in again, short enough that memory comes back soon.
pub const DEFAULT_PURGE_DELAY_MS: u64 = 100;

/// Longest accepted delay (one day); larger values are invalid.
const MAX_PURGE_DELAY_MS: u64 = 86_400_000;

/// `u64::MAX`: not read from the environment yet.
static PURGE_DELAY_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The purge delay in milliseconds.
#[inline]
pub fn purge_delay_ms() -> u64 {
    match PURGE_DELAY_MS.load(Ordering::Relaxed) {
        u64::MAX => read_purge_delay(),
        ms => ms,
    }
}

/// Sets the purge delay (clamped to one day); overrides the environment.
pub fn set_purge_delay_ms(ms: u64) {
    PURGE_DELAY_MS.store(ms.min(MAX_PURGE_DELAY_MS), Ordering::Relaxed);
}

#[cold]
fn read_purge_delay() -> u64 {
    let ms = match env("SHOALLOC_PURGE_DELAY_MS\0") {
        None => DEFAULT_PURGE_DELAY_MS,
        Some(value) => parse_ms(value).unwrap_or_else(|| {
            report("shoalloc: ignoring invalid SHOALLOC_PURGE_DELAY_MS (want milliseconds, 0 to 86400000)\n");
            DEFAULT_PURGE_DELAY_MS
        }),
    };
    // A racing `set_purge_delay_ms` wins over the environment.
    match PURGE_DELAY_MS.compare_exchange(u64::MAX, ms, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => ms,
        Err(set) => set,
    }
}

/// A switch read from the environment once (`0` or `1`), which a Rust call
/// may set instead: 0 not read yet, 1 off, 2 on.
struct Switch {
    state: AtomicU8,
    /// The variable's name, NUL-terminated.
    name: &'static str,
    /// What is printed, once, for a value other than `0` or `1`.
    invalid: &'static str,
}

impl Switch {
    const fn new(name: &'static str, invalid: &'static str) -> Self {
        Self {
            state: AtomicU8::new(0),
            name,
            invalid,
        }
    }

    #[inline]
    fn get(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            0 => self.read(),
            state => state == 2,
        }
    }

    fn set(&self, on: bool) {
        self.state.store(1 + u8::from(on), Ordering::Relaxed);
    }

    #[cold]
    fn read(&self) -> bool {
        let on = match env(self.name) {
            None | Some(b"0") => false,
            Some(b"1") => true,
            Some(_) => {
                // Only the thread that settles the value reports it.
                if self
                    .state
                    .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    report(self.invalid);
                }
                return self.state.load(Ordering::Relaxed) == 2;
            }
        };
        // A racing `set` wins over the environment.
        match self
            .state
            .compare_exchange(0, 1 + u8::from(on), Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => on,
            Err(state) => state == 2,
        }
    }
}

static SHOW_STATS: Switch = Switch::new(
    "SHOALLOC_SHOW_STATS\0",
    "shoalloc: ignoring invalid SHOALLOC_SHOW_STATS (want 0 or 1)\n",
);

static VERBOSE: Switch = Switch::new(
    "SHOALLOC_VERBOSE\0",
    "shoalloc: ignoring invalid SHOALLOC_VERBOSE (want 0 or 1)\n",
);

/// Whether `SHOALLOC_SHOW_STATS=1` (or [`set_show_stats`]): print the
/// statistics at exit. Read once (on the first segment or huge mapping, a
/// slow path); an invalid value is reported once and counts as off.
pub fn show_stats() -> bool {
    SHOW_STATS.get()
}

/// Sets the exit report on or off; overrides the environment.
pub fn set_show_stats(on: bool) {
    SHOW_STATS.set(on);
}

/// Whether `SHOALLOC_VERBOSE=1` (or [`set_verbose`]): report on stderr why
/// an allocation returns null (the OS refused memory, or the address range
/// for small and medium memory is used up). Read on those failure paths
/// only.
pub fn verbose() -> bool {
    VERBOSE.get()
}

/// Sets the failure reports on or off; overrides the environment.
pub fn set_verbose(on: bool) {
    VERBOSE.set(on);
}

/// Reports a failed allocation step when [`verbose`]: `what` followed by
/// `bytes` in decimal and a newline, through a stack buffer (the heap may
/// be the thing that failed).
#[cold]
pub fn report_failure(what: &str, bytes: usize) {
    if !verbose() {
        return;
    }
    let mut out = Stderr::new();
    let _ = writeln!(out, "{what}{bytes} bytes");
    out.flush();
}

/// Decimal milliseconds, at most one day.
fn parse_ms(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 12 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    (ms <= MAX_PURGE_DELAY_MS).then_some(ms)
}

/// The value of environment variable `name` (NUL-terminated), without
/// allocating: the allocator may be asked for memory before `main`.
fn env(name: &str) -> Option<&'static [u8]> {
    debug_assert!(name.ends_with('\0'));
    // SAFETY: `name` is NUL-terminated. getenv's result points into the
    // environment block, which a program that does not call `setenv` while
    // allocating never frees; we copy nothing and keep only the bytes.
    unsafe {
        let p = libc::getenv(name.as_ptr().cast());
        if p.is_null() {
            return None;
        }
        Some(core::ffi::CStr::from_ptr(p).to_bytes())
    }
}

/// One `write(2)` to stderr (no allocation, no lock).
fn report(msg: &str) {
    // SAFETY: a valid buffer; the result is ignored (nothing else to do).
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_milliseconds_and_rejects_the_rest() {
        assert_eq!(parse_ms(b"0"), Some(0));
        assert_eq!(parse_ms(b"250"), Some(250));
        assert_eq!(parse_ms(b"86400000"), Some(86_400_000));
        for bad in [
            &b""[..],
            b"-1",
            b"10ms",
            b" 5",
            b"86400001",
            b"99999999999999",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad:?}");
        }
    }
}
