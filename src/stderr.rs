//! Messages to stderr that allocate nothing: the allocator reports from
//! inside itself (a failed mapping, the statistics table at exit), where
//! the heap may be what failed or may not be used.
// Under loom the mapping paths that report are compiled out.
#![cfg_attr(loom, allow(dead_code))]

use core::fmt::{self, Write};

/// A `fmt::Write` to stderr through a fixed stack buffer, flushed with
/// `write(2)` when full and at the end: no allocation, no lock.
pub(crate) struct Stderr {
    buf: [u8; 1024],
    len: usize,
}

impl Stderr {
    pub(crate) fn new() -> Self {
        Self {
            buf: [0; 1024],
            len: 0,
        }
    }

    pub(crate) fn flush(&mut self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: writes initialised bytes of our own buffer to fd 2.
            let n = unsafe { libc::write(2, self.buf[done..].as_ptr().cast(), self.len - done) };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
        self.len = 0;
    }
}

impl Write for Stderr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}
