//! Run-time options: read once from the environment (without allocating),
//! settable from Rust.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SHOALLOC_PURGE_DELAY_MS` | 100 | how long freed small and medium memory stays resident before it is given back to the OS; 0 purges at the next opportunity |
//! | `SHOALLOC_SHOW_STATS` | 0 | `1`: print the statistics table ([`crate::stats`]) on stderr at process exit; `0`: do not |
//!
//! An invalid value is reported once on stderr and ignored.

use crate::sync::statics::{AtomicU64, AtomicU8, Ordering};

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

/// `SHOALLOC_SHOW_STATS`: 0 not read yet, 1 off, 2 on.
static SHOW_STATS: AtomicU8 = AtomicU8::new(0);

/// Whether `SHOALLOC_SHOW_STATS=1`: print the statistics at exit. Read once
/// (on the first segment or huge mapping, a slow path); an invalid value is
/// reported once and counts as off.
pub fn show_stats() -> bool {
    match SHOW_STATS.load(Ordering::Relaxed) {
        0 => read_show_stats(),
        state => state == 2,
    }
}

#[cold]
fn read_show_stats() -> bool {
    let on = match env("SHOALLOC_SHOW_STATS\0") {
        None | Some(b"0") => false,
        Some(b"1") => true,
        Some(_) => {
            // Only the thread that settles the value reports it.
            if SHOW_STATS
                .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                report("shoalloc: ignoring invalid SHOALLOC_SHOW_STATS (want 0 or 1)\n");
            }
            return false;
        }
    };
    let _ = SHOW_STATS.compare_exchange(0, 1 + u8::from(on), Ordering::Relaxed, Ordering::Relaxed);
    on
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
