//! Bad input gets a clear answer: impossible sizes give null, foreign or
//! misplaced pointers are recognised as not ours, without touching memory
//! that may not be mapped.

use shoalloc::{GilAlloc, Owner, Shoal};
use std::alloc::{GlobalAlloc, Layout};

const SEGMENT: usize = 4 << 20;

/// The tests of this binary run one at a time: `foreign_and_misplaced_
/// pointers_are_recognised` checks that a freed medium object's address is
/// no longer ours, which holds only while no other thread can take the freed
/// units for a page of small blocks.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn impossible_sizes_return_null() {
    let _serial = serial();
    let allocs: [&dyn GlobalAlloc; 2] = [&Shoal::new(), &GilAlloc::new()];
    for a in allocs {
        for (size, align) in [
            (isize::MAX as usize - 4096, 8),
            (isize::MAX as usize / 2, 1 << 20),
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid layout; the result is only compared with null.
            assert!(unsafe { a.alloc(l) }.is_null(), "{size} bytes");
            // SAFETY: as above.
            let zeroed = unsafe { a.alloc_zeroed(l) };
            assert!(zeroed.is_null(), "{size} bytes zeroed");
        }
    }
}

#[test]
fn absurd_but_representable_sizes_return_null_under_default_overcommit() {
    let _serial = serial();
    // 64 TiB: refused by the kernel's heuristic overcommit (mode 0) and by
    // mode 2; mode 1 ("always") would grant it, so only check modes 0 and 2.
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").unwrap_or_default();
    if mode.trim() == "1" {
        println!("vm.overcommit_memory=1: the kernel grants any mapping; nothing to check");
        return;
    }
    let l = Layout::from_size_align(64 << 40, 16).unwrap();
    // SAFETY: a valid layout; the result is only compared with null.
    let p = unsafe { Shoal::new().alloc(l) };
    assert!(p.is_null(), "a 64 TiB allocation must fail, not overcommit");
}

#[test]
fn realloc_failure_leaves_the_block_intact() {
    let _serial = serial();
    let a = Shoal::new();
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: valid layout; block used within bounds and freed once.
    unsafe {
        let p = a.alloc(l);
        p.write_bytes(0x5a, 100);
        let q = a.realloc(p, l, isize::MAX as usize - 4096);
        assert!(q.is_null());
        assert!((0..100).all(|i| *p.add(i) == 0x5a), "old block intact");
        a.dealloc(p, l);
    }
}

/// `Shoal::owner` for a pointer that no thread frees during the call.
fn owner(ptr: *const u8) -> Owner {
    // SAFETY: the pointers passed here are not ours, or point into an object
    // the calling test owns and frees only after the call returns, or (the
    // last check) into a freed large object's range, where no other object
    // can be freed meanwhile: no other test of this binary keeps a large
    // object live.
    unsafe { Shoal::owner(ptr) }
}

#[test]
fn foreign_and_misplaced_pointers_are_recognised() {
    let _serial = serial();
    let local = 7u64;
    static STATIC: u64 = 9;
    assert_eq!(owner(std::ptr::null()), Owner::Foreign);
    assert_eq!(owner(&local as *const u64 as *const u8), Owner::Foreign);
    assert_eq!(owner(&STATIC as *const u64 as *const u8), Owner::Foreign);
    assert_eq!(owner(usize::MAX as *const u8), Owner::Foreign);

    let l = Layout::from_size_align(48, 16).unwrap();
    // SAFETY: valid layout.
    let p = unsafe { Shoal::new().alloc(l) };
    assert!(matches!(owner(p), Owner::Small(_)));
    assert_eq!(owner(p.wrapping_add(8)), Owner::Foreign, "interior pointer");
    // The first byte past the segment: the granule after it may be unmapped,
    // and must not be read.
    let end = ((p as usize & !(SEGMENT - 1)) + SEGMENT) as *const u8;
    assert_eq!(owner(end), Owner::Foreign, "pointer at the next granule");
    // SAFETY: allocated above, freed once.
    unsafe { Shoal::new().dealloc(p, l) };

    let medium = Layout::from_size_align(1 << 20, 64).unwrap();
    // SAFETY: valid layout.
    let m = unsafe { Shoal::new().alloc(medium) };
    assert_eq!(owner(m), Owner::Medium);
    assert_eq!(
        owner(m.wrapping_add(4096)),
        Owner::Foreign,
        "interior of a medium object"
    );
    // SAFETY: allocated above, freed once.
    unsafe { Shoal::new().dealloc(m, medium) };
    assert_eq!(
        owner(m),
        Owner::Foreign,
        "a freed medium object is no longer ours"
    );

    let big = Layout::from_size_align(5 << 20, 64).unwrap();
    // SAFETY: valid layout.
    let q = unsafe { Shoal::new().alloc(big) };
    assert_eq!(owner(q), Owner::Large);
    assert_eq!(
        owner(q.wrapping_add(64)),
        Owner::Foreign,
        "interior of a large object"
    );
    // SAFETY: allocated above, freed once.
    unsafe { Shoal::new().dealloc(q, big) };
    assert_eq!(
        owner(q),
        Owner::Foreign,
        "a freed large object is no longer ours"
    );
}
