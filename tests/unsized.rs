//! `Shoal`'s layout-free operations, the ones C `free`, `realloc` and
//! `malloc_usable_size` use, called from Rust: every size from the smallest
//! class to large objects, alignments up to 64 KiB, contents kept across
//! `realloc_unsized`, the requested alignment honoured by the result, and
//! foreign pointers and bad alignments answered without touching anything.

mod support;

use shoalloc::{ForeignPointer, Shoal};
use support::{fill_all, verify_all};

const SIZES: [usize; 9] = [1, 24, 100, 1000, 4096, 70_000, 300_000, 1 << 20, 5 << 20];
const ALIGNS: [usize; 5] = [1, 16, 256, 4096, 65536];

fn allocate(size: usize, align: usize) -> *mut u8 {
    let p = Shoal::allocate(size, align);
    assert!(!p.is_null(), "allocate({size}, {align})");
    assert_eq!(
        p as usize % align,
        0,
        "allocate({size}, {align}) misaligned"
    );
    p
}

#[test]
fn usable_size_covers_the_request_and_free_unsized_takes_it_back() {
    for size in SIZES {
        for align in ALIGNS {
            let p = allocate(size, align);
            // SAFETY: `p` is live and ours; no other thread frees anything.
            let usable = unsafe { Shoal::usable_size(p) }.expect("ours");
            assert!(usable >= size, "usable {usable} < {size} (align {align})");
            // All usable bytes may be written.
            fill_all(p, usable, size as u64);
            verify_all(p, usable, size as u64).unwrap();
            // SAFETY: as above; `p` is not used afterwards.
            assert_eq!(unsafe { Shoal::free_unsized(p) }, Ok(()));
        }
    }
}

#[test]
fn realloc_unsized_keeps_contents_and_honours_the_new_alignment() {
    for (i, &from) in SIZES.iter().enumerate() {
        for &to in &SIZES {
            for align in ALIGNS {
                let p = allocate(from, 16);
                let id = (i * 1000 + to) as u64;
                fill_all(p, from, id);
                // SAFETY: `p` is live and ours; it is not used again unless
                // the result is null.
                let q = unsafe { Shoal::realloc_unsized(p, to, align) }.expect("ours");
                assert!(!q.is_null(), "realloc {from} → {to} (align {align})");
                assert_eq!(
                    q as usize % align,
                    0,
                    "realloc {from} → {to} ignored alignment {align}"
                );
                verify_all(q, from.min(to), id)
                    .unwrap_or_else(|e| panic!("realloc {from} → {to} (align {align}): {e}"));
                // SAFETY: `q` is live and ours.
                assert_eq!(unsafe { Shoal::free_unsized(q) }, Ok(()));
            }
        }
    }
}

#[test]
fn a_large_object_moves_when_it_is_not_aligned_enough() {
    // A 1 MiB object aligned to 16 starts one page into its mapping, so it is
    // 4096- but not 8192-aligned: shrinking it in place would keep that.
    let p = allocate(1 << 20, 16);
    fill_all(p, 1 << 20, 7);
    // SAFETY: live and ours.
    let q = unsafe { Shoal::realloc_unsized(p, (1 << 20) - 100, 8192) }.unwrap();
    assert_eq!(q as usize % 8192, 0, "{q:p} is not 8192-aligned");
    verify_all(q, (1 << 20) - 100, 7).unwrap();
    // SAFETY: live and ours.
    unsafe { Shoal::free_unsized(q) }.unwrap();
}

#[test]
fn bad_alignments_and_foreign_pointers_touch_nothing() {
    assert!(Shoal::allocate(64, 3).is_null(), "not a power of two");
    assert!(Shoal::allocate(64, 0).is_null(), "zero");
    let p = allocate(100, 16);
    fill_all(p, 100, 9);
    // SAFETY: live and ours; a refused realloc leaves it live.
    let q = unsafe { Shoal::realloc_unsized(p, 200, 48) }.unwrap();
    assert!(q.is_null(), "alignment 48 is refused");
    verify_all(p, 100, 9).unwrap();
    // SAFETY: live and ours.
    unsafe { Shoal::free_unsized(p) }.unwrap();

    let on_stack = [0u64; 4];
    let foreign = on_stack.as_ptr().cast::<u8>().cast_mut();
    let boxed = Box::new([1u8; 64]);
    let other_heap = boxed.as_ptr().cast_mut();
    for ptr in [foreign, other_heap, core::ptr::null_mut()] {
        // SAFETY: not ours: classified and refused without a write.
        unsafe {
            assert_eq!(Shoal::usable_size(ptr), None);
            assert_eq!(Shoal::free_unsized(ptr), Err(ForeignPointer));
            assert_eq!(Shoal::realloc_unsized(ptr, 10, 16), Err(ForeignPointer));
        }
    }
    assert_eq!(boxed[63], 1);
}
