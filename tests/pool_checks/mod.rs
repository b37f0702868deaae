//! The checkers of `Pool<T>`, shared by `tests/pool.rs` and the teeth member
//! (which runs them against a deliberately broken pool and expects them to
//! fail).
//!
//! - [`run_pool_oracle`]: the oracle idea applied to pools. A shadow model
//!   knows what every holder wrote into its object; each step checks that a
//!   handed-out object is held by nobody else, was reset, and that every held
//!   object still holds exactly what its holder wrote. At the end the pool is
//!   dropped and every object ever built must have been dropped once.
//! - [`run_pool_stress`]: threads in a ring take objects, stamp them, pass
//!   them to the next thread, which checks and drops them — every object is
//!   returned on another thread than the one that took it — while holder
//!   flags catch any object with two holders.
#![allow(dead_code)]

use proptest::prelude::*;
use shoalloc::{Pool, Pooled};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

/// What every failure report starts with on stderr. A check prints it the
/// moment it sees the failure, because a broken pool may crash the process
/// (an object dropped twice) before the error reaches the caller.
pub const CAUGHT: &str = "pool checker caught:";

fn fail(msg: String) -> String {
    eprintln!("{CAUGHT} {msg}");
    msg
}

/// Counts constructions and drops of one pool's objects. Leaked per run, so
/// an object can refer to it without a reference count that a broken pool's
/// double drop could corrupt.
#[derive(Default)]
pub struct Census {
    pub made: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Census {
    fn new() -> &'static Census {
        Box::leak(Box::default())
    }

    fn check_balanced(&self) -> Result<(), String> {
        let (made, dropped) = (
            self.made.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        );
        if made == dropped {
            Ok(())
        } else {
            Err(fail(format!(
                "after the pool was dropped: {made} objects built, {dropped} dropped"
            )))
        }
    }
}

/// A pooled object that checks who holds it.
pub struct Probe {
    census: &'static Census,
    id: u64,
    /// 0, or the holder's tag.
    holder: AtomicU64,
    /// Written by the holder, cleared by the reset hook. Inline rather than
    /// a `Vec`: an object dropped twice by a broken pool then corrupts only
    /// the census, which the checks read, never the heap.
    data: Words,
}

/// Up to eight words, inline.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Words {
    len: usize,
    words: [u64; 8],
}

impl Words {
    fn from(words: &[u64]) -> Words {
        let mut w = Words::default();
        w.words[..words.len()].copy_from_slice(words);
        w.len = words.len();
        w
    }
    fn as_slice(&self) -> &[u64] {
        &self.words[..self.len]
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.census.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn probe_pool(census: &'static Census, thread_cache: usize, max_idle: usize) -> Pool<Probe> {
    Pool::builder(move || Probe {
        census,
        id: census.made.fetch_add(1, Ordering::SeqCst) as u64,
        holder: AtomicU64::new(0),
        data: Words::default(),
    })
    .reset(|p| p.data = Words::default())
    .thread_cache(thread_cache)
    .max_idle(max_idle)
    .build()
}

/// Takes `p` for holder `tag`: nobody else may hold it, and it was reset.
fn claim(p: &Probe, tag: u64) -> Result<(), String> {
    let was = p.holder.swap(tag, Ordering::SeqCst);
    if was != 0 {
        return Err(fail(format!(
            "object {} handed to holder {tag:#x} while holder {was:#x} has it",
            p.id
        )));
    }
    if !p.data.is_empty() {
        return Err(fail(format!(
            "object {} handed out without its reset",
            p.id
        )));
    }
    Ok(())
}

/// Gives up `p` as holder `tag`.
fn unclaim(p: &Probe, tag: u64) -> Result<(), String> {
    let was = p.holder.swap(0, Ordering::SeqCst);
    if was != tag {
        return Err(fail(format!(
            "object {} given back by {tag:#x} but held by {was:#x}",
            p.id
        )));
    }
    Ok(())
}

/// One step of the oracle's program.
#[derive(Clone, Debug)]
pub enum PoolOp {
    /// Take an object and write `n` words into it.
    Get(u8),
    /// Give back the held object at this index (modulo the count).
    Put(usize),
    /// Take the held object at this index out of the pool for good.
    Detach(usize),
    /// Give back every held object.
    PutAll,
}

/// A random oracle program.
pub fn pool_ops() -> impl Strategy<Value = Vec<PoolOp>> {
    let op = prop_oneof![
        5 => (1u8..8).prop_map(PoolOp::Get),
        4 => any::<usize>().prop_map(PoolOp::Put),
        1 => any::<usize>().prop_map(PoolOp::Detach),
        1 => Just(PoolOp::PutAll),
    ];
    prop::collection::vec(op, 1..400)
}

/// Runs `ops` on a pool with tiny bounds (so caches flush, the shared stack
/// overflows and shells are reused) and checks it against the shadow.
pub fn run_pool_oracle(ops: &[PoolOp]) -> Result<(), String> {
    let census = Census::new();
    let pool = probe_pool(census, 4, 6);
    let result = oracle_steps(&pool, ops);
    drop(pool);
    result?;
    census.check_balanced()
}

fn oracle_steps(pool: &Pool<Probe>, ops: &[PoolOp]) -> Result<(), String> {
    // The shadow: each held guard with the words its holder wrote.
    let mut held: Vec<(Pooled<'_, Probe>, u64, Words)> = Vec::new();
    let mut next_tag = 1u64;
    let check_all = |held: &[(Pooled<'_, Probe>, u64, Words)]| -> Result<(), String> {
        for (g, tag, words) in held {
            if g.holder.load(Ordering::SeqCst) != *tag || g.data != *words {
                return Err(fail(format!(
                    "object {} changed under its holder {tag}",
                    g.id
                )));
            }
        }
        Ok(())
    };
    for op in ops {
        match *op {
            PoolOp::Get(n) => {
                let mut g = pool.get();
                let tag = next_tag;
                next_tag += 1;
                claim(&g, tag)?;
                let words: Vec<u64> = (0..u64::from(n)).map(|i| tag * 1000 + i).collect();
                let words = Words::from(&words);
                g.data = words;
                held.push((g, tag, words));
            }
            PoolOp::Put(i) if !held.is_empty() => {
                let (g, tag, _) = held.swap_remove(i % held.len());
                unclaim(&g, tag)?;
                drop(g);
            }
            PoolOp::Detach(i) if !held.is_empty() => {
                let (g, tag, words) = held.swap_remove(i % held.len());
                unclaim(&g, tag)?;
                let p = Pooled::detach(g);
                if p.data != words {
                    return Err(fail(format!("detached object {} lost its contents", p.id)));
                }
            }
            PoolOp::PutAll => {
                for (g, tag, _) in held.drain(..) {
                    unclaim(&g, tag)?;
                }
            }
            PoolOp::Put(_) | PoolOp::Detach(_) => {}
        }
        check_all(&held)?;
    }
    for (g, tag, _) in held.drain(..) {
        unclaim(&g, tag)?;
    }
    Ok(())
}

/// Shape of a stress run.
#[derive(Clone, Copy, Debug)]
pub struct PoolStress {
    pub threads: usize,
    /// Objects each thread takes and passes on.
    pub per_thread: usize,
    /// Objects in flight per thread.
    pub window: usize,
    pub thread_cache: usize,
    pub max_idle: usize,
}

/// What a stress run saw.
#[derive(Debug)]
pub struct PoolStressReport {
    /// Objects built: far fewer than the objects taken when reuse works.
    pub made: usize,
}

/// Runs the ring: thread `t` takes objects, stamps them and sends them to
/// thread `t + 1`, which checks the stamp and drops them.
pub fn run_pool_stress(cfg: PoolStress) -> Result<PoolStressReport, String> {
    let census = Census::new();
    let pool = probe_pool(census, cfg.thread_cache, cfg.max_idle);
    let result = stress_ring(&pool, cfg);
    drop(pool);
    result?;
    census.check_balanced()?;
    Ok(PoolStressReport {
        made: census.made.load(Ordering::SeqCst),
    })
}

fn stress_ring(pool: &Pool<Probe>, cfg: PoolStress) -> Result<(), String> {
    type Msg<'a> = (Pooled<'a, Probe>, u64);
    let t = cfg.threads;
    let n = cfg.per_thread;
    // Never more than t * window in flight: sends never block for good.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..t)
        .map(|_| mpsc::sync_channel::<Msg<'_>>(t * cfg.window))
        .unzip();
    let mut txs: Vec<Option<mpsc::SyncSender<Msg<'_>>>> = txs.into_iter().map(Some).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(me, rx)| {
                let tx = txs[(me + 1) % t].take().expect("one sender per thread");
                s.spawn(move || -> Result<(), String> {
                    let send = |seq: usize| -> Result<(), String> {
                        let mut g = pool.get();
                        let tag = ((me as u64 + 1) << 40) | (seq as u64 + 1);
                        claim(&g, tag)?;
                        g.data = Words::from(&[tag, seq as u64, !tag]);
                        tx.send((g, tag)).map_err(|_| "ring broken".to_string())
                    };
                    let mut sent = 0;
                    while sent < n.min(cfg.window) {
                        send(sent)?;
                        sent += 1;
                    }
                    for _ in 0..n {
                        let (g, tag) = rx.recv().map_err(|_| "ring broken".to_string())?;
                        let d = g.data.as_slice();
                        if d.len() != 3 || d[0] != tag || d[2] != !tag {
                            return Err(fail(format!("object {} corrupted in flight", g.id)));
                        }
                        unclaim(&g, tag)?;
                        drop(g);
                        if sent < n {
                            send(sent)?;
                            sent += 1;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "a stress thread panicked".to_string())?
            })
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
    })
}
