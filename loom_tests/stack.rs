//! Loom models of the tagged Treiber stack (`shoalloc::internals::stack`), the structure
//! under every shared pool: concurrent push/pop, the ABA scenario, and proof
//! that the same scenario catches the untagged variant.
#![cfg(loom)]

mod common;

use common::{assert_stack_conserved, expect_caught, model, Nodes};
use loom::thread;
use shoalloc::internals::stack::TaggedStack;
use std::sync::Arc;

/// Each node is pushed with a length derived from its handle, so a batch
/// length that does not travel with its node shows up in the check.
fn len_of(h: u64) -> u32 {
    h as u32 * 10
}

/// Pushes nodes `handles` (in order, so the last is on top).
fn stack_with<const T: bool>(space: &Nodes, handles: &[u64]) -> TaggedStack<T> {
    let stack = TaggedStack::<T>::new();
    for &h in handles {
        // SAFETY: distinct non-zero handles of `space`, each pushed once.
        unsafe { stack.push(space, h, len_of(h)) };
    }
    stack
}

/// Two threads, two operations each: one pushes a fresh node and pops, the
/// other pops and pushes what it got back.
#[test]
fn stack_push_pop_2x2() {
    model(
        "stack_push_pop_2x2",
        2,
        "T1: push(2), pop | T2: pop, push(back)",
        || {
            let space = Arc::new(Nodes::new(3));
            let stack = Arc::new(stack_with::<true>(&space, &[1]));
            let (s, sp) = (stack.clone(), space.clone());
            let t1 = thread::spawn(move || {
                // SAFETY: node 2 is owned by this thread and in no stack.
                unsafe { s.push(&*sp, 2, len_of(2)) };
                // SAFETY: this stack is only ever used with this one node space.
                unsafe { s.pop(&*sp) }
            });
            let (s, sp) = (stack.clone(), space.clone());
            let t2 = thread::spawn(move || {
                // SAFETY: this stack is only ever used with this one node space.
                if let Some((h, len)) = unsafe { s.pop(&*sp) } {
                    assert_eq!(len, len_of(h));
                    // SAFETY: we popped `h`, so we own it.
                    unsafe { s.push(&*sp, h, len) };
                }
            });
            let mut held = Vec::new();
            if let Some((h, len)) = t1.join().unwrap() {
                assert_eq!(len, len_of(h));
                held.push(h);
            }
            t2.join().unwrap();
            assert_stack_conserved(&stack, &space, 2, &held, len_of);
        },
    );
}

/// Three threads, one operation each, racing on a two-node stack.
#[test]
fn stack_push_pop_3x1() {
    model(
        "stack_push_pop_3x1",
        3,
        "T1: push(3) | T2: pop | T3: pop",
        || {
            let space = Arc::new(Nodes::new(4));
            let stack = Arc::new(stack_with::<true>(&space, &[1, 2]));
            let (s, sp) = (stack.clone(), space.clone());
            let t1 = thread::spawn(move || {
                // SAFETY: node 3 is owned by this thread and in no stack.
                unsafe { s.push(&*sp, 3, len_of(3)) };
            });
            let poppers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, sp) = (stack.clone(), space.clone());
                    // SAFETY: this stack is only ever used with this one node space.
                    thread::spawn(move || unsafe { s.pop(&*sp) })
                })
                .collect();
            t1.join().unwrap();
            let mut held = Vec::new();
            for t in poppers {
                // The stack never runs dry: 3 nodes, 2 pops.
                let (h, len) = t.join().unwrap().expect("pop on a non-empty stack");
                assert_eq!(len, len_of(h));
                held.push(h);
            }
            assert_stack_conserved(&stack, &space, 3, &held, len_of);
        },
    );
}

/// Three threads, two operations each, on a three-node stack: one pushes a
/// fresh node and pops, two pop and push back what they got.
#[test]
fn stack_push_pop_3x2() {
    model(
        "stack_push_pop_3x2",
        3,
        "T1: push(4), pop | T2: pop, push(back) | T3: pop, push(back)",
        || {
            let space = Arc::new(Nodes::new(5));
            let stack = Arc::new(stack_with::<true>(&space, &[1, 2, 3]));
            let (s, sp) = (stack.clone(), space.clone());
            let t1 = thread::spawn(move || {
                // SAFETY: node 4 is owned by this thread and in no stack.
                unsafe { s.push(&*sp, 4, len_of(4)) };
                // SAFETY: this stack is only ever used with this one node space.
                unsafe { s.pop(&*sp) }
            });
            let cyclers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, sp) = (stack.clone(), space.clone());
                    thread::spawn(move || {
                        // SAFETY: this stack is only ever used with this one node space.
                        let (h, len) =
                            unsafe { s.pop(&*sp) }.expect("never empty: 4 nodes, 3 held at most");
                        assert_eq!(len, len_of(h));
                        // SAFETY: we popped `h`, so we own it.
                        unsafe { s.push(&*sp, h, len) };
                    })
                })
                .collect();
            let mut held = Vec::new();
            let (h, len) = t1.join().unwrap().expect("never empty");
            assert_eq!(len, len_of(h));
            held.push(h);
            for t in cyclers {
                t.join().unwrap();
            }
            assert_stack_conserved(&stack, &space, 4, &held, len_of);
        },
    );
}

/// The ABA scenario on stack `[1, 2, 3]` (1 on top): A pops once; B pops
/// twice and pushes the first node back. Without a tag, A's CAS — prepared
/// with `head = 1, next = 2` — succeeds after B's operations and installs
/// node 2, which B holds: node 2 is then in two places.
fn aba<const T: bool>() {
    let space = Arc::new(Nodes::new(4));
    let stack = Arc::new(stack_with::<T>(&space, &[3, 2, 1]));
    let (s, sp) = (stack.clone(), space.clone());
    // SAFETY: this stack is only ever used with this one node space.
    let a = thread::spawn(move || unsafe { s.pop(&*sp) });
    let (s, sp) = (stack.clone(), space.clone());
    let b = thread::spawn(move || {
        // SAFETY: this stack is only ever used with this one node space.
        let first = unsafe { s.pop(&*sp) }.expect("stack has 3 nodes");
        // SAFETY: as above.
        let second = unsafe { s.pop(&*sp) }.expect("stack has 3 nodes");
        // SAFETY: we popped `first`, so we own it.
        unsafe { s.push(&*sp, first.0, first.1) };
        second
    });
    let mut held = vec![b.join().unwrap().0];
    held.extend(a.join().unwrap().map(|(h, _)| h));
    assert_stack_conserved(&stack, &space, 3, &held, len_of);
}

/// The tagged stack (`BatchStack = TaggedStack<true>`, the one the pools use)
/// survives the ABA scenario.
#[test]
fn stack_aba_tagged() {
    model(
        "stack_aba_tagged",
        2,
        "A: pop | B: pop, pop, push(first)",
        aba::<true>,
    );
}

/// Teeth: loom finds the ABA interleaving of the untagged stack
/// (`UntaggedStack = TaggedStack<false>`), and the
/// conservation check reports the duplicated node.
#[test]
fn stack_aba_untagged_is_caught() {
    expect_caught(
        "stack_aba_untagged",
        2,
        "A: pop | B: pop, pop, push(first)",
        "conservation: node 2 is in 2 places",
        aba::<false>,
    );
}
