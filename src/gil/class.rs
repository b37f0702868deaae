//! pymalloc's size classes: 32 classes spaced 16 bytes apart, up to 512 B.
//!
//! Class `c` holds blocks of `16 * (c + 1)` bytes, so a request of `n` bytes
//! (`1 ..= 512`) lands in class `(n - 1) / 16` and wastes at most 15 bytes.
//! Because every block size is a multiple of 16 and pools start 16-aligned
//! past a 16-aligned header, every block is 16-byte aligned — and no more,
//! which is why requests asking for a larger alignment go to the system
//! allocator instead (see [`is_small`]).

/// Spacing between classes, and the only alignment a pymalloc block promises
/// (CPython's `ALIGNMENT` on 64-bit builds).
pub const ALIGNMENT: usize = 16;

/// Largest request served from pools (CPython's `SMALL_REQUEST_THRESHOLD`);
/// anything bigger goes to the system allocator.
pub const SMALL_REQUEST_THRESHOLD: usize = 512;

/// Number of size classes (CPython's `NB_SMALL_SIZE_CLASSES`).
pub const NB_CLASSES: usize = SMALL_REQUEST_THRESHOLD / ALIGNMENT;

/// Class of a request of `size` bytes (CPython's `SIZE2INDEX`).
///
/// `size` must be in `1 ..= SMALL_REQUEST_THRESHOLD`; the front end
/// normalises zero to one before asking.
#[inline]
pub const fn class_of(size: usize) -> usize {
    debug_assert!(size >= 1 && size <= SMALL_REQUEST_THRESHOLD);
    (size - 1) / ALIGNMENT
}

/// Block size of class `class` (CPython's `INDEX2SIZE`).
#[inline]
pub const fn class_size(class: usize) -> usize {
    (class + 1) * ALIGNMENT
}

/// Whether a request of `size` bytes (already normalised to at least one)
/// aligned to `align` is served by pymalloc. The decision depends only on the
/// layout, which is how `dealloc` tells the two paths apart without probing
/// the address (CPython's `address_in_range` is not needed: Rust hands the
/// layout back on every free).
#[inline]
pub const fn is_small(size: usize, align: usize) -> bool {
    size <= SMALL_REQUEST_THRESHOLD && align <= ALIGNMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_sixteen_bytes_apart() {
        assert_eq!(NB_CLASSES, 32);
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(32), 1);
        assert_eq!(class_of(33), 2);
        assert_eq!(class_of(511), 31);
        assert_eq!(class_of(512), 31);
        for size in 1..=SMALL_REQUEST_THRESHOLD {
            let c = class_of(size);
            assert!(c < NB_CLASSES);
            assert!(class_size(c) >= size, "class {c} too small for {size}");
            assert!(class_size(c) - size < ALIGNMENT, "more than 15 B wasted");
            assert_eq!(class_size(c) % ALIGNMENT, 0);
        }
        assert_eq!(class_size(NB_CLASSES - 1), SMALL_REQUEST_THRESHOLD);
    }

    #[test]
    fn routing_by_layout() {
        assert!(is_small(1, 1));
        assert!(is_small(512, 16));
        assert!(!is_small(513, 1));
        assert!(!is_small(8, 32));
    }
}
