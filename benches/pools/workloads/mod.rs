//! The workloads, modelled on `numeric`, `strings` and `messages` of the
//! scaling benchmark (`benches/scaling/workloads/`), written once over the
//! [`Source`](crate::variants::Source) interface so that every variant does
//! the same work and the same checks.
//!
//! As in the scaling benchmark: a fixed total amount of work is divided
//! among the threads (strong scaling), throughput is operations / wall time,
//! and every workload verifies what it computed, returning `Err` on any
//! mismatch, so a broken pool fails its cell instead of winning it. Each
//! cell makes its own pools (shared by all its threads, which borrow them in
//! a `std::thread::scope`) and drops them at the end, inside the timing,
//! just as `plain` frees its last objects inside it.

mod messages;
mod numeric;
mod strings;

use crate::variants::Kind;
use std::thread::ScopedJoinHandle;

/// How much work a cell does and on how many threads.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Worker threads.
    pub threads: usize,
    /// Multiplier of each workload's default size.
    pub scale: f64,
}

impl Spec {
    /// `base` scaled by [`Spec::scale`], at least `min`.
    pub fn n(&self, base: usize, min: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(min)
    }
}

/// A workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Numeric,
    Strings,
    Messages,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 3] = [Workload::Numeric, Workload::Strings, Workload::Messages];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Numeric => "numeric",
            Workload::Strings => "strings",
            Workload::Messages => "messages",
        }
    }

    /// One line: the pattern and what an operation is.
    pub fn about(self) -> &'static str {
        match self {
            Workload::Numeric => numeric::ABOUT,
            Workload::Strings => strings::ABOUT,
            Workload::Messages => messages::ABOUT,
        }
    }

    /// The workload called `name`.
    pub fn find(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Runs `w` on variant `K`'s sources: the operations done, or what failed
/// verification.
pub fn run<K: Kind>(w: Workload, spec: &Spec) -> Result<u64, String> {
    match w {
        Workload::Numeric => numeric::run::<K>(spec),
        Workload::Strings => strings::run::<K>(spec),
        Workload::Messages => messages::run::<K>(spec),
    }
}

/// Runs `worker(t)` on `threads` scoped threads (which may borrow the
/// caller's pools) and sums their operation counts.
pub fn on_threads<F>(threads: usize, worker: F) -> Result<u64, String>
where
    F: Fn(usize) -> Result<u64, String> + Sync,
{
    std::thread::scope(|s| {
        let worker = &worker;
        join_sum((0..threads).map(|t| s.spawn(move || worker(t))).collect())
    })
}

/// Joins scoped workers and sums their operation counts; a panic (a pool's
/// own assertion) is an error like a failed check.
pub fn join_sum(handles: Vec<ScopedJoinHandle<'_, Result<u64, String>>>) -> Result<u64, String> {
    let mut ops = 0;
    for h in handles {
        ops += h
            .join()
            .map_err(|_| "a worker thread panicked".to_string())??;
    }
    Ok(ops)
}

/// Splits `total` units of work among `parts` as evenly as possible.
pub fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// A small, fast, deterministic PRNG (SplitMix64), seeded per thread so
/// that every variant sees the same requests (as in the scaling workloads).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
}
