//! The check that `Shoal::owner` — what C `free`, `realloc` and
//! `malloc_usable_size` trust — tells the start of an object of ours from
//! every other pointer, shared by `tests/classify.rs` and its teeth
//! (`teeth/tests/classify.rs`, with `Fault::TrustInteriorPointers` armed).
//!
//! For every size class it aims at the first bytes of live blocks (each must
//! be `Small` of that class), at interior bytes of those blocks, at the
//! boundary that follows a page's last block where the page has slack, and
//! at the segment's header (all must be `Foreign`); then at medium and large
//! objects, their interiors, and memory that is not ours at all.

use shoalloc::internals::geometry::{page_capacity, page_units, SEGMENT_SIZE, UNIT};
use shoalloc::internals::size_class::CLASS_SIZE;
use shoalloc::{Owner, Shoal};

/// What `owner` says of `ptr`.
fn owner(ptr: usize) -> Owner {
    // SAFETY: every pointer asked about is null, foreign, or inside or next
    // to an object this check holds live (none of our large objects is freed
    // while it runs; other threads' large objects never share a granule with
    // them).
    unsafe { Shoal::owner(ptr as *const u8) }
}

fn expect(ptr: usize, want: Owner, what: &str) -> Result<(), String> {
    let got = owner(ptr);
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} {ptr:#x}: owner says {got:?}, expected {want:?}"
        ))
    }
}

/// Runs the check; `Err` names the first pointer misclassified.
pub fn check_classification() -> Result<(), String> {
    let mut held = Vec::new();
    let result = check_all(&mut held);
    for (ptr, _) in held {
        // SAFETY: allocated below, live, freed once.
        unsafe { Shoal::free_unsized(ptr as *mut u8) }.expect("our own object");
    }
    result
}

fn alloc(held: &mut Vec<(usize, usize)>, size: usize) -> usize {
    let p = Shoal::allocate(size, 16) as usize;
    assert!(p != 0, "out of memory");
    held.push((p, size));
    p
}

fn check_all(held: &mut Vec<(usize, usize)>) -> Result<(), String> {
    for (class, &size) in CLASS_SIZE.iter().enumerate() {
        let size = size as usize;
        for _ in 0..4 {
            let p = alloc(held, size);
            expect(p, Owner::Small(class), "block start")?;
            for off in [8, size / 2, size - 8] {
                if off % size != 0 {
                    expect(p + off, Owner::Foreign, "interior of a block")?;
                }
            }
            let base = p & !(SEGMENT_SIZE - 1);
            expect(base + 64, Owner::Foreign, "segment header")?;
            expect(base + UNIT / 2, Owner::Foreign, "header unit")?;
            // A one-unit page with slack: the boundary after its last block
            // lies inside the page but holds no block.
            let end = page_capacity(class) as usize * size;
            if page_units(class) == 1 && end < UNIT {
                let page = p & !(UNIT - 1);
                expect(page + end, Owner::Foreign, "slack after the last block")?;
            }
        }
    }
    let medium = alloc(held, 300_000);
    expect(medium, Owner::Medium, "medium object")?;
    expect(medium + 16, Owner::Foreign, "interior of a medium object")?;
    expect(
        medium + UNIT,
        Owner::Foreign,
        "second unit of a medium object",
    )?;
    let large = alloc(held, 5 << 20);
    expect(large, Owner::Large, "large object")?;
    expect(large + 16, Owner::Foreign, "interior of a large object")?;
    let on_stack = 0u64;
    expect(&on_stack as *const u64 as usize, Owner::Foreign, "stack")?;
    static STATIC: u64 = 0;
    expect(&STATIC as *const u64 as usize, Owner::Foreign, "static")?;
    expect(0, Owner::Foreign, "null")?;
    expect(usize::MAX - 15, Owner::Foreign, "top of the address space")?;
    Ok(())
}
