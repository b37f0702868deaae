//! Ordinary Rust code running on `Shoal` as the `#[global_allocator]`:
//! collections, strings, threads and rayon, each checking its own results.

use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: shoalloc::Shoal = shoalloc::Shoal::new();

#[test]
fn collections_and_strings() {
    let mut map = HashMap::new();
    let mut tree = BTreeMap::new();
    for i in 0..20_000u64 {
        map.insert(format!("key-{i}"), i * 3);
        tree.insert(i, vec![i as u8; (i % 300) as usize]);
    }
    for i in 0..20_000u64 {
        assert_eq!(map[&format!("key-{i}")], i * 3);
        assert_eq!(tree[&i].len(), (i % 300) as usize);
        assert!(tree[&i].iter().all(|&b| b == i as u8));
    }
    let words: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    let joined = words.join(",");
    let back: Vec<&str> = joined.split(',').collect();
    assert_eq!(back.len(), 5000);
    assert_eq!(back[4321], "4321");
    let mut dq: VecDeque<Box<[u8]>> = VecDeque::new();
    for i in 0..1000usize {
        dq.push_back(vec![7u8; i * 37 % 70_000].into_boxed_slice());
        if dq.len() > 50 {
            let b = dq.pop_front().unwrap();
            assert!(b.iter().all(|&x| x == 7));
        }
    }
}

#[test]
fn large_and_growing_vectors() {
    let mut v: Vec<u64> = Vec::new();
    for i in 0..3_000_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 3_000_000 * 2_999_999 / 2);
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).collect::<Vec<_>>());
}

#[test]
fn threads_pass_boxes_across() {
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let producers: Vec<_> = (0..8)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for round in 0..200 {
                    let batch = (0..50).map(|i| format!("{t}:{round}:{i}")).collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut count = 0;
    for batch in rx {
        for s in &batch {
            let parts: Vec<usize> = s.split(':').map(|p| p.parse().unwrap()).collect();
            assert_eq!(parts.len(), 3);
            assert!(parts[0] < 8 && parts[1] < 200 && parts[2] < 50);
        }
        count += batch.len();
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(count, 8 * 200 * 50);
}

#[test]
fn rayon_parallel_work() {
    let v: Vec<u64> = (0..1_000_000).collect();
    let squares: Vec<u64> = v.par_iter().map(|x| x * x).collect();
    assert_eq!(squares[999_999], 999_999 * 999_999);
    let total: u64 = (0..10_000u64)
        .into_par_iter()
        .map(|i| {
            let s = vec![i; (i % 64) as usize + 1];
            s.iter().sum::<u64>()
        })
        .sum();
    let expected: u64 = (0..10_000u64).map(|i| i * ((i % 64) + 1)).sum();
    assert_eq!(total, expected);
    let mut strings: Vec<String> = (0..100_000)
        .map(|i| format!("{:08}", (i * 7919) % 100_000))
        .collect();
    strings.par_sort();
    assert!(strings.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn many_short_lived_threads() {
    for round in 0..50 {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let v: Vec<Box<u64>> = (0..500).map(|i| Box::new(i + t + round)).collect();
                    v.iter().map(|b| **b).sum::<u64>()
                })
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let expected: u64 = (0..500).map(|i| i + t as u64 + round).sum();
            assert_eq!(h.join().unwrap(), expected);
        }
    }
}
