//! Summaries of a sweep: the tables (printed, and in `papers/pools.md`) and
//! the goals, evaluated on the data of the same run.

use crate::cli::Options;
use crate::machine::{self, Machine};
use crate::runner::Sample;
use crate::variants::{self, Variant};
use crate::workloads::Workload;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Median, minimum and maximum of a set of runs.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One (workload, variant, allocator, threads) cell over its repetitions.
#[derive(Clone, Copy, Debug)]
pub struct CellStats {
    /// Operations per second.
    pub ops: Stat,
    /// Peak RSS of the process, MiB.
    pub rss_mib: Stat,
}

/// `(workload, variant, allocator, threads)`.
type Key = (&'static str, &'static str, &'static str, usize);

/// Everything a report needs from a sweep.
pub struct Summary<'a> {
    opts: &'a Options,
    cells: HashMap<Key, CellStats>,
    /// Failed runs, with their errors.
    failures: Vec<String>,
}

impl<'a> Summary<'a> {
    pub fn new(samples: &[Sample], opts: &'a Options) -> Self {
        let mut groups: HashMap<Key, Vec<_>> = HashMap::new();
        let mut failures = Vec::new();
        for s in samples {
            let key = (s.workload.name(), s.variant.name, s.allocator, s.threads);
            match &s.outcome {
                Ok(m) => groups.entry(key).or_default().push(*m),
                Err(e) => failures.push(format!(
                    "{} / {} / {} / {} threads: {e}",
                    key.0, key.1, key.2, key.3
                )),
            }
        }
        let cells = groups
            .into_iter()
            .filter_map(|(k, runs)| {
                let ops = Stat::of(runs.iter().map(|m| m.ops_per_s()).collect())?;
                let rss_mib = Stat::of(
                    runs.iter()
                        .map(|m| m.peak_rss_kib as f64 / 1024.0)
                        .collect(),
                )?;
                Some((k, CellStats { ops, rss_mib }))
            })
            .collect();
        Self {
            opts,
            cells,
            failures,
        }
    }

    /// Number of failed runs.
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    fn get(&self, w: Workload, v: &'static str, a: &'static str, t: usize) -> Option<CellStats> {
        self.cells.get(&(w.name(), v, a, t)).copied()
    }

    /// Every measured cell of workload `w` at `t` threads, in report order.
    fn row_cells(&self, w: Workload, t: usize) -> Vec<(&'static Variant, &'static str, CellStats)> {
        let mut out = Vec::new();
        for &v in &self.opts.variants {
            for &a in &self.opts.allocators {
                if let Some(c) = self.get(w, v.name, a, t) {
                    out.push((v, a, c));
                }
            }
        }
        out
    }
}

/// Thread count as a heading, marked when there are more threads than cores.
fn threads_label(t: usize, cores: usize) -> String {
    let plural = if t == 1 { "thread" } else { "threads" };
    if t > cores {
        format!("{t} {plural} (oversubscribed: {cores} cores)")
    } else {
        format!("{t} {plural}")
    }
}

/// The table of workload `w` at `t` threads (markdown, also fine on a
/// terminal).
fn table(out: &mut String, s: &Summary<'_>, w: Workload, t: usize, cores: usize) {
    let rows = s.row_cells(w, t);
    if rows.is_empty() {
        return;
    }
    let best = rows.iter().map(|r| r.2.ops.median).fold(0.0, f64::max);
    let _ = writeln!(out, "### {} — {}\n", w.name(), threads_label(t, cores));
    let _ = writeln!(
        out,
        "| variant | allocator | M ops/s (median) | min–max | vs fastest | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|");
    for (v, a, c) in rows {
        let ratio = c.ops.median / best;
        let mark = if ratio >= 1.0 { " **(fastest)**" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {a} | {:.2} | {:.2}–{:.2} | {ratio:.2}{mark} | {:.1} |",
            v.name,
            c.ops.median / 1e6,
            c.ops.min / 1e6,
            c.ops.max / 1e6,
            c.rss_mib.median,
        );
    }
    let _ = writeln!(out);
}

/// Every table, workload by workload.
fn tables(out: &mut String, s: &Summary<'_>, cores: usize) {
    for &w in &s.opts.workloads {
        let _ = writeln!(out, "## {}\n\n{}\n", w.name(), w.about());
        for &t in &s.opts.threads {
            table(out, s, w, t, cores);
        }
    }
}

/// Threads at which the goals are judged.
const GOAL_THREADS: usize = 2;
/// Workloads on which `shoalloc-pool` should be the fastest.
const GOAL_WORKLOADS: [Workload; 2] = [Workload::Messages, Workload::Strings];
/// The allocator `shoalloc-pool` and `plain` are judged on.
const GOAL_ALLOCATOR: &str = "shoal";

/// The goals of the issue, judged on this run's medians.
fn goals(out: &mut String, s: &Summary<'_>) {
    let _ = writeln!(
        out,
        "## Goals\n\nFrom the issue (recorded, not asserted): `Pool<T>` (`{sp}` on `{GOAL_ALLOCATOR}`) the \
         fastest of all cells at {GOAL_THREADS} threads on `messages` and `strings`, with peak RSS no \
         higher than `{plain}` on `{GOAL_ALLOCATOR}`. Judged on the medians of this run.\n",
        sp = variants::SHOALLOC,
        plain = variants::PLAIN,
    );
    for w in GOAL_WORKLOADS {
        let name = w.name();
        let Some(sp) = s.get(w, variants::SHOALLOC, GOAL_ALLOCATOR, GOAL_THREADS) else {
            let _ = writeln!(out, "- `{name}`: not measured in this run.");
            continue;
        };
        let mut rows = s.row_cells(w, GOAL_THREADS);
        rows.sort_by(|a, b| b.2.ops.median.total_cmp(&a.2.ops.median));
        let others: Vec<_> = rows
            .iter()
            .filter(|r| !(r.0.name == variants::SHOALLOC && r.1 == GOAL_ALLOCATOR))
            .collect();
        let rank = 1 + others
            .iter()
            .filter(|r| r.2.ops.median > sp.ops.median)
            .count();
        match others.first() {
            None => {
                let _ = writeln!(out, "- `{name}` speed: no other cell to compare with.");
            }
            Some((v, a, c)) if sp.ops.median >= c.ops.median => {
                let overlap = if sp.ops.min < c.ops.max {
                    " — but the two cells' min–max ranges overlap, so the lead is within run-to-run noise"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "- `{name}` speed: **met**. `{}` on `{GOAL_ALLOCATOR}` is the fastest of {} cells: \
                     {:.2} M ops/s, {:+.1}% over the next, `{}` on `{a}` ({:.2} M ops/s){overlap}.",
                    variants::SHOALLOC,
                    rows.len(),
                    sp.ops.median / 1e6,
                    (sp.ops.median / c.ops.median - 1.0) * 100.0,
                    v.name,
                    c.ops.median / 1e6,
                );
            }
            Some((v, a, c)) => {
                let overlap = if sp.ops.max > c.ops.min {
                    " The two cells' min–max ranges overlap."
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "- `{name}` speed: **missed**. `{}` on `{GOAL_ALLOCATOR}` ranks {rank} of {} with \
                     {:.2} M ops/s, {:.2}× the fastest, `{}` on `{a}` ({:.2} M ops/s).{overlap}",
                    variants::SHOALLOC,
                    rows.len(),
                    sp.ops.median / 1e6,
                    sp.ops.median / c.ops.median,
                    v.name,
                    c.ops.median / 1e6,
                );
            }
        }
        match s.get(w, variants::PLAIN, GOAL_ALLOCATOR, GOAL_THREADS) {
            None => {
                let _ = writeln!(
                    out,
                    "- `{name}` memory: `{}` not measured.",
                    variants::PLAIN
                );
            }
            Some(plain) => {
                let verdict = if sp.rss_mib.median <= plain.rss_mib.median {
                    "**met**"
                } else {
                    "**missed**"
                };
                let _ = writeln!(
                    out,
                    "- `{name}` memory: {verdict}. Peak RSS {:.1} MiB with `{}` vs {:.1} MiB with `{}` \
                     (both on `{GOAL_ALLOCATOR}`, {GOAL_THREADS} threads; {:+.1} MiB).",
                    sp.rss_mib.median,
                    variants::SHOALLOC,
                    plain.rss_mib.median,
                    variants::PLAIN,
                    sp.rss_mib.median - plain.rss_mib.median,
                );
            }
        }
    }
    let _ = writeln!(out);
}

/// Failed runs, if any.
fn failures(out: &mut String, s: &Summary<'_>) {
    if s.failures.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Failed runs (not counted)\n");
    for f in &s.failures {
        let _ = writeln!(out, "- {f}");
    }
    let _ = writeln!(out);
}

/// What the terminal shows after a sweep.
pub fn terminal(s: &Summary<'_>, m: &Machine) -> String {
    let mut out = String::new();
    tables(&mut out, s, m.cores);
    goals(&mut out, s);
    failures(&mut out, s);
    out
}

/// `papers/pools.md`.
pub fn markdown(s: &Summary<'_>, m: &Machine, duration_s: f64) -> String {
    let o = s.opts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Typed object pools: `shoalloc::Pool<T>` against plain allocation and four pool crates\n\n\
         Generated by `cargo bench --bench pools{}{}` on {}; do not edit by hand, run it again.\n",
        if o.args.is_empty() { "" } else { " -- " },
        o.args.join(" "),
        m.date,
    );
    let _ = writeln!(
        out,
        "## Machine\n\n- {}\n- Load average (1, 5, 15 min): {} at the start, {} at the end. \
         The numbers are from one shared machine: compare ratios within a table, not absolute \
         rates across runs.\n- The run took {:.0} s.\n",
        m.describe(),
        m.load_start,
        machine::load_average(),
        duration_s,
    );
    let _ = writeln!(
        out,
        "## Method\n\n\
         - A **cell** is (workload, variant, allocator, threads): {} workloads × {} variants × {} \
         allocators ({}) × threads {:?}, at {}× the default sizes. Every cell runs in a **fresh \
         process** (this binary re-executed, the allocator chosen through `SHOALLOC_BENCH_ALLOC` by \
         the scaling benchmark's dispatching `#[global_allocator]`), so no pool, cache or heap \
         state carries over and the peak RSS belongs to that cell alone.\n\
         - {} **interleaved repetitions**: each repetition runs every cell once, the variant × \
         allocator pairs of a (workload, threads) group back to back in an order rotated per \
         repetition. Tables give the **median** operations per second and the min–max; \
         \"vs fastest\" is the median over the fastest median of the same table.\n\
         - **Peak RSS** is `ru_maxrss` of the child from `wait4`: the whole process, including a \
         few MiB of binary and runtime that every cell has.\n\
         - Every variant runs the **same code** (the workloads are generic over where objects come \
         from) and the **same checks**; a run that fails a check is reported and not counted. A \
         cell makes its pools, shares them among its threads and drops them at the end, inside \
         the timed part (as `plain` frees its last objects inside it).\n\
         - Pools with an idle bound get the workload's working set as bound (`shoalloc::Pool`'s \
         `max_idle`, `opool`'s capacity); the others are unbounded. No pool is prefilled.\n\
         - `messages` at 2 or more threads blocks on `std::sync::mpsc` channels whenever a thread \
         catches up with its neighbour, so its rate depends on how quickly a parked thread is \
         woken, which varies with what else the machine runs: its min–max spread is the widest.\n",
        o.workloads.len(),
        o.variants.len(),
        o.allocators.len(),
        o.allocators.join(", "),
        o.threads,
        o.scale,
        o.reps,
    );
    let _ = writeln!(out, "## Variants\n");
    for v in &o.variants {
        let _ = writeln!(out, "- `{}`: {}", v.name, v.about);
    }
    let _ = writeln!(out);
    goals(&mut out, s);
    failures(&mut out, s);
    tables(&mut out, s, m.cores);
    out
}
