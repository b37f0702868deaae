//! `binary-trees` (the Benchmarks Game program's shape): build and check
//! many short-lived perfect binary trees of `Box`ed nodes, with the trees of
//! each depth built in parallel on a rayon pool of `threads` workers, next
//! to one long-lived tree. Real Rust code allocating through `Box`; nodes are
//! usually freed by the thread that built them, but rayon's work stealing
//! moves some across.

use super::Spec;
use rayon::prelude::*;

/// Depth of the long-lived tree in a full-size run.
const MAX_DEPTH: f64 = 16.0;
/// Depth of the smallest trees.
const MIN_DEPTH: u32 = 4;

struct Node {
    children: Option<(Box<Node>, Box<Node>)>,
}

fn build(depth: u32) -> Box<Node> {
    Box::new(Node {
        children: (depth > 0).then(|| (build(depth - 1), build(depth - 1))),
    })
}

fn count(node: &Node) -> u64 {
    1 + node
        .children
        .as_ref()
        .map_or(0, |(l, r)| count(l) + count(r))
}

fn nodes(depth: u32) -> u64 {
    (1u64 << (depth + 1)) - 1
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    // Work doubles per level, so the depth moves with log2 of the scale.
    let max_depth = (MAX_DEPTH + spec.scale.log2().round()).clamp(6.0, 22.0) as u32;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads)
        .build()
        .map_err(|e| e.to_string())?;
    pool.install(|| {
        let mut ops = 0u64;
        let stretch = count(&build(max_depth + 1));
        if stretch != nodes(max_depth + 1) {
            return Err(format!("binary-trees: stretch tree has {stretch} nodes"));
        }
        ops += stretch;
        let long_lived = build(max_depth);
        ops += nodes(max_depth);
        for depth in (MIN_DEPTH..=max_depth).step_by(2) {
            let iterations = 1u64 << (max_depth - depth + MIN_DEPTH);
            let checked: u64 = (0..iterations)
                .into_par_iter()
                .map(|_| count(&build(depth)))
                .sum();
            if checked != iterations * nodes(depth) {
                return Err(format!("binary-trees: depth {depth}: {checked} nodes"));
            }
            ops += checked;
        }
        if count(&long_lived) != nodes(max_depth) {
            return Err("binary-trees: long-lived tree changed".into());
        }
        Ok(ops)
    })
}
