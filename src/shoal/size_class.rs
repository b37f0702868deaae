//! Size classes: which block size serves a request.
//!
//! # The table
//! | classes | block sizes | spacing | worst internal waste |
//! |---|---|---|---|
//! | 0–7 | 16, 32, …, 128 | 16 B | 47% at 17 B (unavoidable with 16-byte alignment) |
//! | 8–51 | 160, 192, 224, 256, 320, …, 256 KiB | 4 per doubling | < 20% (e.g. 129 B in 160 B) |
//!
//! The 16-byte steps at the bottom keep every block 16-byte aligned, which
//! Rust and C expect of `malloc`. Above 128 B each power-of-two range
//! `(2^k, 2^(k+1)]` is split into four equal steps, so a request never wastes
//! more than a fifth of its block. Requests above [`MAX_SMALL`] bytes are
//! large objects and go straight to the OS.
//!
//! The table is computed at compile time by a `const fn`; [`class_of`] maps a
//! size to its class with a handful of integer instructions and no loop.

/// Number of size classes.
pub const NUM_CLASSES: usize = 52;

/// The largest size served from a size class (256 KiB).
pub const MAX_SMALL: usize = 256 * 1024;

/// The largest alignment served from a size class. Larger alignments are
/// large objects, which honour any power of two.
pub const MAX_SMALL_ALIGN: usize = 4096;

/// Block size of each class, in bytes.
pub const CLASS_SIZE: [u32; NUM_CLASSES] = build_table();

const fn build_table() -> [u32; NUM_CLASSES] {
    let mut table = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        table[c] = if c < 8 {
            16 * (c as u32 + 1)
        } else {
            let k = ((c - 8) / 4) as u32;
            let j = ((c - 8) % 4) as u32;
            (1 << (7 + k)) + (j + 1) * (1 << (5 + k))
        };
        c += 1;
    }
    table
}

/// Sizes up to this many bytes are classified by one table load.
const LOOKUP_MAX: usize = 1024;

/// `SMALL_CLASS[(size + 15) / 16]` is the class of `size <= LOOKUP_MAX`.
const SMALL_CLASS: [u8; LOOKUP_MAX / 16 + 1] = build_lookup();

const fn build_lookup() -> [u8; LOOKUP_MAX / 16 + 1] {
    let mut table = [0u8; LOOKUP_MAX / 16 + 1];
    let mut i = 1;
    while i < table.len() {
        table[i] = class_by_arithmetic(i * 16) as u8;
        i += 1;
    }
    table
}

/// The class of a request of `size` bytes with alignment at most 16.
/// `size` must be at most [`MAX_SMALL`]; 0 maps to the 16-byte class.
/// One table load up to 1 KiB, a few bit operations above.
#[inline]
pub const fn class_of(size: usize) -> usize {
    if size <= LOOKUP_MAX {
        SMALL_CLASS[(size + 15) >> 4] as usize
    } else {
        class_by_arithmetic(size)
    }
}

/// [`class_of`] computed from the table's formula: 16-byte steps up to
/// 128 B, then four steps per power of two.
const fn class_by_arithmetic(size: usize) -> usize {
    if size <= 128 {
        // 0 and 1..=16 → 0, 17..=32 → 1, …
        let s = if size == 0 { 1 } else { size };
        s.div_ceil(16) - 1
    } else {
        let s = size - 1;
        let bits = usize::BITS - 1 - s.leading_zeros(); // floor(log2(s)), >= 7
        let step = (s >> (bits - 2)) & 3;
        8 + (bits as usize - 7) * 4 + step
    }
}

/// The class for `size` bytes aligned to `align` (a power of two no larger
/// than [`MAX_SMALL_ALIGN`]), or `None` when the request is a large object.
///
/// Blocks of a class sit at multiples of the class size from the start of
/// their page, which is 64 KiB-aligned, so a class whose size is a multiple
/// of `align` yields `align`-aligned blocks. Every fourth class above 128 B is
/// a power of two, so the search below takes at most four steps.
#[inline]
pub const fn class_for(size: usize, align: usize) -> Option<usize> {
    if align <= 16 {
        if size <= MAX_SMALL {
            return Some(class_of(size));
        }
        return None;
    }
    if align > MAX_SMALL_ALIGN {
        return None;
    }
    let want = if size > align { size } else { align };
    if want > MAX_SMALL {
        return None;
    }
    let mut c = class_of(want);
    while c < NUM_CLASSES {
        if CLASS_SIZE[c] as usize % align == 0 {
            return Some(c);
        }
        c += 1;
    }
    None
}

/// `ceil(2^64 / size)` per class (wrapping to 0 for a size of 1, which no
/// class has): turns the remainder in [`is_block_boundary`] into one
/// multiplication and one comparison.
const DIVISIBILITY: [u64; NUM_CLASSES] = build_divisibility();

const fn build_divisibility() -> [u64; NUM_CLASSES] {
    let mut table = [0u64; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        table[c] = (u64::MAX / CLASS_SIZE[c] as u64) + 1;
        c += 1;
    }
    table
}

/// `true` if `delta` (bytes past the first block of a page, below 2^32) is a
/// multiple of the class size — the check C `free` makes on every pointer.
///
/// No division: with `c = ceil(2^64 / s)`, the low 64 bits of `delta * c`
/// are `(delta mod s) * c` up to an error below `c` that only a zero
/// remainder leaves under `c` (Lemire, Kaser and Kurz, "Faster remainder by
/// direct computation", 2019: exact for 32-bit dividends and divisors).
#[inline(always)]
pub const fn is_block_boundary(class: usize, delta: u32) -> bool {
    let c = DIVISIBILITY[class];
    (delta as u64).wrapping_mul(c) < c
}

/// The largest power of two dividing `size`, capped at 4096.
const fn natural_alignment(size: usize) -> usize {
    let a = 1usize << size.trailing_zeros();
    if a > MAX_SMALL_ALIGN {
        MAX_SMALL_ALIGN
    } else {
        a
    }
}

/// Offset of the first block of `class` inside its segment: past the segment
/// header (`header_bytes`), rounded up to the class's natural alignment so
/// that the alignment promise of [`class_for`] holds for every block.
pub const fn first_block_offset(class: usize, header_bytes: usize) -> usize {
    let a = natural_alignment(CLASS_SIZE[class] as usize);
    header_bytes.div_ceil(a) * a
}

/// Batch length of each class, precomputed so the free fast path does a
/// table load rather than a division.
const BATCH_LEN: [u32; NUM_CLASSES] = build_batches();

const fn build_batches() -> [u32; NUM_CLASSES] {
    let mut table = [0u32; NUM_CLASSES];
    let mut c = 0;
    while c < NUM_CLASSES {
        let n = 32 * 1024 / CLASS_SIZE[c];
        table[c] = if cfg!(loom) || n < 2 {
            2
        } else if n > 512 {
            512
        } else {
            n
        };
        c += 1;
    }
    table
}

/// How many blocks move between a thread cache and the shared pool in one
/// atomic operation: about 32 KiB worth, between 2 and 512 blocks. Under loom
/// it is 2, so refill and flush run after one or two operations.
///
/// The budget is in bytes, not blocks, so that the smallest classes keep a
/// useful amount: with batches capped at 64 blocks (1 KiB of 16-byte blocks)
/// a thread that builds and tears down structures of many small nodes went
/// to the shared pool every 64 operations. The C++ objects program
/// (`capi/bench/objects.cpp`) made 313 000 refills and 372 000 flushes with
/// that cap and makes 61 000 and 55 000 with this one, at the same peak RSS;
/// the thread caches hold at most 64 KiB per class either way.
#[inline]
pub const fn batch_len(class: usize) -> u32 {
    BATCH_LEN[class]
}

/// A strict bound on the blocks of one class a thread cache keeps: two
/// batches (it holds at most a `recent` list one short of a batch plus one
/// `stock` batch). Past that, every further batch a thread frees goes back to
/// the shared pool, so a thread that only frees returns memory instead of
/// hoarding it.
#[inline]
pub const fn cache_limit(class: usize) -> u32 {
    2 * batch_len(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_increasing_and_16_aligned() {
        for c in 0..NUM_CLASSES {
            assert_eq!(CLASS_SIZE[c] % 16, 0, "class {c}");
            if c > 0 {
                assert!(CLASS_SIZE[c] > CLASS_SIZE[c - 1], "class {c}");
            }
        }
        assert_eq!(CLASS_SIZE[NUM_CLASSES - 1] as usize, MAX_SMALL);
        assert_eq!(CLASS_SIZE[7], 128);
        assert_eq!(CLASS_SIZE[8], 160);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure arithmetic over every size up to 256 KiB: minutes under Miri, no unsafe code or atomics to check"
    )]
    fn class_of_is_the_smallest_fitting_class() {
        for size in 0..=MAX_SMALL {
            let c = class_of(size);
            assert!(CLASS_SIZE[c] as usize >= size.max(1), "size {size}");
            if c > 0 {
                assert!((CLASS_SIZE[c - 1] as usize) < size, "size {size} not tight");
            }
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "pure arithmetic over every size up to 256 KiB: minutes under Miri, no unsafe code or atomics to check"
    )]
    fn waste_is_bounded_above_128_bytes() {
        for size in 129..=MAX_SMALL {
            let block = CLASS_SIZE[class_of(size)] as usize;
            let waste = (block - size) as f64 / block as f64;
            assert!(waste < 0.20, "size {size}: waste {waste}");
        }
    }

    #[test]
    fn aligned_classes_are_multiples_of_the_alignment() {
        let mut align = 32;
        while align <= MAX_SMALL_ALIGN {
            for size in [1, align / 2, align, align + 1, 3 * align, 10_000, MAX_SMALL] {
                match class_for(size, align) {
                    Some(c) => {
                        let s = CLASS_SIZE[c] as usize;
                        assert_eq!(s % align, 0);
                        assert!(s >= size);
                        assert_eq!(first_block_offset(c, 64) % align, 0);
                    }
                    None => assert!(size.max(align) > MAX_SMALL),
                }
            }
            align *= 2;
        }
        assert_eq!(class_for(1, 8192), None);
        assert_eq!(class_for(MAX_SMALL + 1, 8), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of cases: pure arithmetic, checked natively")]
    fn block_boundaries_match_the_remainder() {
        for (class, &size) in CLASS_SIZE.iter().enumerate() {
            let size = size as usize;
            // Every offset a page of up to 1 MiB can hold, and beyond.
            let step = if size < 4096 { 1 } else { 7 };
            for delta in (0..(1usize << 22)).step_by(step) {
                assert_eq!(
                    is_block_boundary(class, delta as u32),
                    delta % size == 0,
                    "class {class} delta {delta}"
                );
            }
            for k in 0..(1 << 22) / size {
                assert!(is_block_boundary(class, (k * size) as u32));
                assert!(!is_block_boundary(class, (k * size + 8) as u32));
            }
            // The top of the 32-bit range, where the proof is tightest.
            for delta in (u32::MAX - (1 << 20)..=u32::MAX).step_by(3) {
                assert_eq!(is_block_boundary(class, delta), delta as usize % size == 0);
            }
        }
    }

    #[test]
    fn batches_are_bounded() {
        for c in 0..NUM_CLASSES {
            let b = batch_len(c);
            assert!((2..=512).contains(&b));
            assert_eq!(cache_limit(c), 2 * b);
        }
    }
}
