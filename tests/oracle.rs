//! Property tests: random operation sequences checked against a shadow model
//! of the heap (no overlap, alignment, each block handed out once, contents
//! preserved), on both allocators, called directly through `GlobalAlloc`.

mod support;

use proptest::prelude::*;
use shoalloc::{GilAlloc, Shoal};
use support::{run_oracle, Op};

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 1usize..=256,
        3 => 257usize..=8192,
        1 => 8193usize..=300_000,
        1 => 300_001usize..=2_000_000,
    ];
    prop_oneof![
        5 => (size, prop_oneof![4 => Just(0u32), 4 => 1u32..=12, 1 => 13u32..=16], any::<bool>())
            .prop_map(|(size, align_log, zeroed)| Op::Alloc { size, align_log, zeroed }),
        3 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), 1usize..=70_000).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shoal_matches_the_shadow_model(ops in prop::collection::vec(op(), 1..300)) {
        if let Err(e) = run_oracle(&Shoal::new(), &ops) {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn gil_matches_the_shadow_model(ops in prop::collection::vec(op(), 1..300)) {
        if let Err(e) = run_oracle(&GilAlloc::new(), &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// Exhaustive sweep of the size classes and alignments on both allocators.
#[test]
fn every_size_class_and_alignment() {
    let mut ops = Vec::new();
    let mut size = 1;
    while size <= 600_000 {
        for align_log in [0, 4, 6, 12, 14] {
            ops.push(Op::Alloc {
                size,
                align_log,
                zeroed: size % 3 == 0,
            });
        }
        size = size * 5 / 4 + 1;
    }
    for i in 0..ops.len() / 2 {
        ops.push(Op::Realloc(i * 7, (i * 977) % 50_000 + 1));
        ops.push(Op::Free(i * 13));
    }
    run_oracle(&Shoal::new(), &ops).unwrap();
    run_oracle(&GilAlloc::new(), &ops).unwrap();
}
