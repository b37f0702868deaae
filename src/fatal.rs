//! The one way the allocator reports heap corruption it detects: a message on
//! stderr and `abort()`.
//!
//! An allocator cannot unwind out of `free` (the caller may be C, or a Rust
//! `dealloc` that must not panic) and must not allocate while reporting, so
//! the message is one `write(2)` of a static string. Under loom and Miri it
//! panics instead, so a model or a test can observe the detection.

/// Writes `msg` and a newline to stderr and aborts the process.
#[cold]
#[inline(never)]
pub fn abort(msg: &str) -> ! {
    #[cfg(any(loom, miri))]
    {
        panic!("{msg}");
    }
    #[cfg(not(any(loom, miri)))]
    {
        // SAFETY: writing a valid buffer to fd 2 has no memory-safety
        // preconditions; the result is ignored because we abort either way.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::write(2, b"\n".as_ptr().cast(), 1);
            libc::abort()
        }
    }
}
