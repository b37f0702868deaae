//! `epoch-stack`: a lock-free Treiber stack whose nodes are reclaimed with
//! `crossbeam-epoch`. Every thread pushes and pops in bursts of 8 on one
//! shared stack; a popped node is not freed at once but deferred, and freed
//! later by whichever thread advances the epoch and collects — so nodes are
//! typically freed by a different thread, in bulk, some time after their
//! last use: the pattern of concurrent data structures in real programs.

use super::{join_all, share, Spec};
use crossbeam_epoch::{self as epoch, Atomic, Owned};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Pushes in a full-size run, split among the threads.
const PUSHES: usize = 3_000_000;
/// Pushes (then pops) per burst.
const BURST: usize = 8;

struct Node {
    value: u64,
    next: Atomic<Node>,
}

struct Stack {
    head: Atomic<Node>,
}

impl Stack {
    fn push(&self, value: u64) {
        let guard = epoch::pin();
        let mut node = Owned::new(Node {
            value,
            next: Atomic::null(),
        });
        loop {
            let head = self.head.load(Ordering::Acquire, &guard);
            node.next.store(head, Ordering::Relaxed);
            match self.head.compare_exchange(
                head,
                node,
                Ordering::Release,
                Ordering::Relaxed,
                &guard,
            ) {
                Ok(_) => return,
                Err(e) => node = e.new,
            }
        }
    }

    fn pop(&self) -> Option<u64> {
        let guard = epoch::pin();
        loop {
            let head = self.head.load(Ordering::Acquire, &guard);
            // SAFETY: nodes reachable from `head` are only destroyed through
            // `defer_destroy`, i.e. after every guard pinned now is dropped.
            let node = unsafe { head.as_ref() }?;
            let next = node.next.load(Ordering::Acquire, &guard);
            if self
                .head
                .compare_exchange(head, next, Ordering::AcqRel, Ordering::Acquire, &guard)
                .is_ok()
            {
                let value = node.value;
                // SAFETY: the CAS unlinked `head`, so no new reference to it
                // can be made; existing ones are protected by their guards.
                unsafe { guard.defer_destroy(head) };
                return Some(value);
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no other thread can reach the stack any more.
        let guard = unsafe { epoch::unprotected() };
        let mut cur = self.head.load(Ordering::Relaxed, guard);
        while !cur.is_null() {
            // SAFETY: as above; each node is owned by the list exactly once.
            let node = unsafe { cur.into_owned() };
            cur = node.next.load(Ordering::Relaxed, guard);
        }
    }
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(PUSHES, BURST);
    let stack = Arc::new(Stack {
        head: Atomic::null(),
    });
    let handles: Vec<_> = (0..spec.threads)
        .map(|t| {
            let stack = Arc::clone(&stack);
            let n = share(total, spec.threads, t);
            std::thread::spawn(move || {
                let (mut pushed, mut popped) = (0u64, 0u64);
                let mut i = 0;
                while i < n {
                    let burst = BURST.min(n - i);
                    for k in 0..burst {
                        let v = ((t as u64) << 40) | (i + k) as u64;
                        stack.push(v);
                        pushed = pushed.wrapping_add(v);
                    }
                    for _ in 0..burst {
                        if let Some(v) = stack.pop() {
                            popped = popped.wrapping_add(v);
                        }
                    }
                    i += burst;
                }
                Ok((n as u64, pushed, popped))
            })
        })
        .collect();
    let results = join_all(handles)?;
    let mut rest = 0u64;
    while let Some(v) = stack.pop() {
        rest = rest.wrapping_add(v);
    }
    let pushed = results.iter().fold(0u64, |s, r| s.wrapping_add(r.1));
    let popped = results.iter().fold(rest, |s, r| s.wrapping_add(r.2));
    if pushed != popped {
        return Err(format!(
            "epoch-stack: pushed sum {pushed} != popped sum {popped}"
        ));
    }
    Ok(results.iter().map(|r| r.0).sum())
}
