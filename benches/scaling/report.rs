//! Summaries of a sweep: terminal tables, `papers/results.md` with the
//! project's goals evaluated on the data, and the SVG figures.

use crate::cli::{Mode, Options};
use crate::final_rss;
use crate::machine::Machine;
use crate::runner::Sample;
use crate::svg;
use crate::workloads::Workload;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

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

/// Statistics of one (workload, allocator, threads) cell over its reps.
#[derive(Clone, Debug)]
pub struct CellStats {
    pub ops_per_s: Stat,
    pub wall_s: Stat,
    pub peak_rss_kib: Stat,
    pub final_rss_kib: Stat,
    /// Medians of shoal's refills, flushes and CAS retries per 1000
    /// operations, when the cell reported them.
    pub slow_per_kop: Option<[f64; 3]>,
    /// Successful runs.
    pub runs: usize,
    /// Failed runs (excluded from the statistics).
    pub failed: usize,
}

type Key = (&'static str, &'static str, usize);

/// Medians over the runs of refills, flushes and CAS retries per 1000
/// operations, if every run reported them.
fn slow_per_kop(runs: &[&crate::runner::Measure]) -> Option<[f64; 3]> {
    let mut out = [0.0; 3];
    for (i, o) in out.iter_mut().enumerate() {
        let per: Option<Vec<f64>> = runs
            .iter()
            .map(|m| Some(m.slow_path?[i] as f64 * 1000.0 / m.ops.max(1) as f64))
            .collect();
        *o = Stat::of(per?)?.median;
    }
    Some(out)
}

/// Everything a report needs from a sweep.
pub struct Summary {
    pub mode: Mode,
    pub reps: usize,
    pub scale: f64,
    pub workloads: Vec<&'static Workload>,
    pub allocators: Vec<&'static str>,
    pub threads: Vec<usize>,
    /// The sweep's command-line arguments.
    pub args: Vec<String>,
    /// Cores of the machine.
    pub cores: usize,
    cells: HashMap<Key, CellStats>,
    failures: HashMap<Key, usize>,
}

impl Summary {
    pub fn new(samples: &[Sample], opts: &Options) -> Self {
        let mut groups: HashMap<Key, Vec<&Sample>> = HashMap::new();
        for s in samples {
            groups
                .entry((s.workload, s.allocator, s.threads))
                .or_default()
                .push(s);
        }
        let mut cells = HashMap::new();
        let mut failures = HashMap::new();
        for (key, runs) in groups {
            let ok: Vec<_> = runs
                .iter()
                .filter_map(|s| s.outcome.as_ref().ok())
                .collect();
            let failed = runs.len() - ok.len();
            if failed > 0 {
                failures.insert(key, failed);
            }
            let stat = |f: &dyn Fn(&crate::runner::Measure) -> f64| {
                Stat::of(ok.iter().map(|m| f(m)).collect())
            };
            if let (Some(ops_per_s), Some(wall_s), Some(peak), Some(fin)) = (
                stat(&|m| m.ops_per_s()),
                stat(&|m| m.wall_s),
                stat(&|m| m.peak_rss_kib as f64),
                stat(&|m| m.final_rss_kib as f64),
            ) {
                cells.insert(
                    key,
                    CellStats {
                        ops_per_s,
                        wall_s,
                        peak_rss_kib: peak,
                        final_rss_kib: fin,
                        slow_per_kop: slow_per_kop(&ok),
                        runs: ok.len(),
                        failed,
                    },
                );
            }
        }
        Self {
            mode: opts.mode,
            reps: opts.reps,
            scale: opts.scale,
            workloads: opts.workloads.clone(),
            allocators: opts.allocators.clone(),
            threads: opts.threads.clone(),
            args: opts.args.clone(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cells,
            failures,
        }
    }

    /// Statistics of one cell, if it had a successful run.
    pub fn get(&self, w: &str, a: &str, t: usize) -> Option<&CellStats> {
        self.cells
            .iter()
            .find(|((kw, ka, kt), _)| *kw == w && *ka == a && *kt == t)
            .map(|(_, v)| v)
    }

    fn failed(&self, w: &str, a: &str, t: usize) -> usize {
        self.failures
            .iter()
            .find(|((kw, ka, kt), _)| *kw == w && *ka == a && *kt == t)
            .map_or(0, |(_, n)| *n)
    }

    /// Median throughput of `a` over median throughput of `b`.
    fn ratio(&self, w: &str, a: &str, b: &str, t: usize) -> Option<f64> {
        Some(self.get(w, a, t)?.ops_per_s.median / self.get(w, b, t)?.ops_per_s.median)
    }

    fn total_failures(&self) -> usize {
        self.failures.values().sum()
    }
}

fn mops(x: f64) -> String {
    let m = x / 1e6;
    if m >= 100.0 {
        format!("{m:.0}")
    } else if m >= 10.0 {
        format!("{m:.1}")
    } else if m >= 0.1 {
        format!("{m:.2}")
    } else {
        // Three significant digits however small: `medium` counts megabyte
        // buffers, a few thousand per second.
        let decimals = (2.0 - m.log10().floor()).clamp(3.0, 9.0) as usize;
        format!("{m:.decimals$}")
    }
}

fn mib(kib: f64) -> String {
    let m = kib / 1024.0;
    if m >= 100.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

fn ratio_str(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.0}x"),
        Some(r) => format!("{r:.2}x"),
        None => "-".into(),
    }
}

fn thread_header(t: usize, cores: usize) -> String {
    if t > cores {
        format!("{t}t*")
    } else {
        format!("{t}t")
    }
}

/// A table as rows of cells; rendered aligned for the terminal or as markdown.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn text(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in row.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in row.iter().enumerate() {
                let pad = width[i] - c.chars().count();
                if i == 0 {
                    let _ = write!(s, "  {c}{}", " ".repeat(pad));
                } else {
                    let _ = write!(s, "  {}{c}", " ".repeat(pad));
                }
            }
            s.push('\n');
        }
        s
    }

    fn markdown(&self) -> String {
        let mut s = format!("| {} |\n", self.header.join(" | "));
        let _ = writeln!(
            s,
            "|{}",
            self.header
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
                .collect::<String>()
        );
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

/// The three tables of one workload: throughput, ratios, memory.
fn workload_tables(s: &Summary, w: &str, cores: usize) -> [(String, Table); 3] {
    let header = |first: &str| {
        std::iter::once(first.to_string())
            .chain(s.threads.iter().map(|&t| thread_header(t, cores)))
            .collect::<Vec<_>>()
    };
    let cell = |a: &str, t: usize, f: &dyn Fn(&CellStats) -> String| match s.get(w, a, t) {
        Some(c) if c.failed > 0 => format!("{} ({} ok, {} FAILED)", f(c), c.runs, c.failed),
        Some(c) => f(c),
        None if s.failed(w, a, t) > 0 => "FAILED".into(),
        None => "-".into(),
    };
    let rows = |f: &dyn Fn(&str, usize) -> String| {
        s.allocators
            .iter()
            .map(|a| {
                std::iter::once(a.to_string())
                    .chain(s.threads.iter().map(|&t| f(a, t)))
                    .collect()
            })
            .collect()
    };
    let throughput = Table {
        header: header("allocator"),
        rows: rows(&|a, t| {
            cell(a, t, &|c| {
                format!(
                    "{} [{}–{}]",
                    mops(c.ops_per_s.median),
                    mops(c.ops_per_s.min),
                    mops(c.ops_per_s.max)
                )
            })
        }),
    };
    let ratios = Table {
        header: header("allocator"),
        rows: rows(&|a, t| {
            format!(
                "{} / {}",
                ratio_str(s.ratio(w, a, "gil", t)),
                ratio_str(s.ratio(w, a, "mimalloc", t))
            )
        }),
    };
    let memory = Table {
        header: header("allocator"),
        rows: rows(&|a, t| {
            cell(a, t, &|c| {
                format!(
                    "{} / {}",
                    mib(c.peak_rss_kib.median),
                    mib(c.final_rss_kib.median)
                )
            })
        }),
    };
    [
        (
            format!("throughput, M ops/s: median [min–max] of {} rep(s)", s.reps),
            throughput,
        ),
        (
            "throughput ratio (medians): vs gil / vs mimalloc (>1 = faster)".into(),
            ratios,
        ),
        (
            format!(
                "memory, MiB (medians): peak RSS / final RSS (everything freed, {} ms purge wait, nudge)",
                final_rss::PURGE_WAIT.as_millis()
            ),
            memory,
        ),
    ]
}

/// The terminal report.
pub fn terminal(s: &Summary, m: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nscaling results — {} — {} mode, scale {}; * = more threads than the {} cores\n",
        m.describe(),
        s.mode.name(),
        s.scale,
        m.cores
    );
    for w in &s.workloads {
        let _ = writeln!(out, "== {}: {}", w.name, w.about);
        for (title, table) in workload_tables(s, w.name, m.cores) {
            let _ = writeln!(out, "{title}");
            out.push_str(&table.text());
        }
        out.push('\n');
    }
    let goals = goals(s);
    if !goals.is_empty() {
        let _ = writeln!(out, "== goals (from this run's data)");
        for g in &goals {
            let _ = writeln!(out, "  [{}] {}: {}", g.status.word(), g.goal, g.data);
        }
        for g in goals.iter().filter(|g| g.status == Status::Missed) {
            if let Some(a) = &g.ablation {
                let _ = writeln!(out, "  ablation for \"{}\":\n{}", g.goal, indent(a));
            }
        }
    }
    if s.total_failures() > 0 {
        let _ = writeln!(
            out,
            "\n{} run(s) FAILED; see the messages above.",
            s.total_failures()
        );
    }
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// Whether a goal was met by this run's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Met,
    Missed,
    NotMeasured,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Missed => "MISSED",
            Status::NotMeasured => "not measured",
        }
    }
}

/// One goal, evaluated.
pub struct Goal {
    pub goal: String,
    pub status: Status,
    /// The numbers behind the verdict.
    pub data: String,
    /// For a missed goal: shoal vs its ablations on the same cells, and what
    /// they say.
    pub ablation: Option<String>,
}

/// shoal, shoal-nocache, shoal-locked (and the reference) on some cells,
/// with one computed sentence on what the differences mean.
fn ablation_throughput(s: &Summary, w: &str, threads: &[usize], reference: &str) -> String {
    let mut out = String::new();
    for &t in threads {
        let v = |a: &str| s.get(w, a, t).map(|c| c.ops_per_s.median);
        let (Some(shoal), Some(nc), Some(lk)) = (v("shoal"), v("shoal-nocache"), v("shoal-locked"))
        else {
            let _ = writeln!(out, "{w} {t}t: ablation cells missing");
            continue;
        };
        let refv = v(reference).map_or("-".into(), |r| format!("{} {}", reference, mops(r)));
        let _ = writeln!(
            out,
            "{w} {t}t, M ops/s: shoal {}, shoal-nocache {}, shoal-locked {}, {refv}",
            mops(shoal),
            mops(nc),
            mops(lk)
        );
        let cache = shoal / nc;
        let lockfree = shoal / lk;
        let caches = if cache >= 1.1 {
            format!("thread caches help ({cache:.2}x, shoal vs shoal-nocache)")
        } else if cache <= 0.9 {
            format!("thread caches hurt ({cache:.2}x, shoal vs shoal-nocache): their refill/flush traffic costs more than it saves here")
        } else {
            format!("thread caches make little difference ({cache:.2}x, shoal vs shoal-nocache)")
        };
        let shared = if lockfree >= 1.1 {
            format!(
                "the lock-free shared pools beat one mutex ({lockfree:.2}x, shoal vs shoal-locked)"
            )
        } else if lockfree <= 0.9 {
            format!("shoal-locked measured faster ({lockfree:.2}x, shoal vs shoal-locked); the two differ only in the shared level, reached once per batch, so check the spread before reading this as a cost of lock-free pools")
        } else {
            format!("lock-free vs locked pools makes little difference ({lockfree:.2}x, shoal vs shoal-locked)")
        };
        let _ = writeln!(out, "  {caches}; {shared}.");
        if reference == "gil" && t > 1 {
            let one = |a: &str| s.get(w, a, 1).map(|c| c.ops_per_s.median);
            if let (Some(g1), Some(gt), Some(s1)) = (one("gil"), v("gil"), one("shoal")) {
                let _ = writeln!(
                    out,
                    "  the baseline itself: gil runs at {:.2}x its 1-thread throughput at {t} threads, shoal at {:.2}x its own; a 10x gap needs the single lock to collapse under contention, which on {} cores it does only to this extent.",
                    gt / g1,
                    shoal / s1,
                    s.cores
                );
            }
        }
        if let Some(r) = v(reference) {
            let best = shoal.max(nc).max(lk);
            if best < r {
                let _ = writeln!(
                    out,
                    "  even the best shoal variant reaches {:.2}x of {reference}: the gap lies in what all three share (size classes, segment carving, the cache's fast path, large objects), not only in the layer the ablations change.",
                    best / r
                );
            }
        }
    }
    out
}

fn ablation_rss(s: &Summary, w: &str, threads: &[usize]) -> String {
    let mut out = String::new();
    for &t in threads {
        let v = |a: &str| s.get(w, a, t).map(|c| c.peak_rss_kib.median);
        let line: Vec<String> = ["shoal", "shoal-nocache", "shoal-locked", "mimalloc", "gil"]
            .iter()
            .filter_map(|a| {
                let c = s.get(w, a, t)?;
                Some(format!(
                    "{a} {} / {}",
                    mib(c.peak_rss_kib.median),
                    mib(c.final_rss_kib.median)
                ))
            })
            .collect();
        let _ = writeln!(out, "{w} {t}t, peak / final RSS MiB: {}", line.join(", "));
        if let (Some(sh), Some(nc)) = (v("shoal"), v("shoal-nocache")) {
            let _ = writeln!(
                out,
                "  without thread caches shoal peaks at {:.2}x its cached RSS: {}",
                nc / sh,
                if nc / sh < 0.9 {
                    "memory held in thread caches explains part of the excess"
                } else {
                    "thread caches are not what holds the memory; the shared pools and segments are"
                }
            );
        }
    }
    out
}

/// The project's goals (README / issue), evaluated on this run.
pub fn goals(s: &Summary) -> Vec<Goal> {
    let mut goals = Vec::new();
    let has = |w: &str| s.workloads.iter().any(|x| x.name == w);
    let have_allocs = |names: &[&str]| names.iter().all(|a| s.allocators.contains(a));

    // 1. Single-threaded speed: at least mimalloc's.
    for w in ["threadtest", "pair"] {
        let goal = format!("shoal at least matches mimalloc single-threaded on {w}");
        let r = (has(w) && have_allocs(&["shoal", "mimalloc"]))
            .then(|| s.ratio(w, "shoal", "mimalloc", 1))
            .flatten();
        goals.push(match r {
            None => Goal {
                goal,
                status: Status::NotMeasured,
                data: "no 1-thread cells for shoal and mimalloc".into(),
                ablation: None,
            },
            Some(r) => Goal {
                goal,
                status: if r >= 1.0 {
                    Status::Met
                } else {
                    Status::Missed
                },
                data: format!(
                    "1 thread: shoal {} vs mimalloc {} M ops/s = {r:.2}x",
                    mops(s.get(w, "shoal", 1).unwrap().ops_per_s.median),
                    mops(s.get(w, "mimalloc", 1).unwrap().ops_per_s.median)
                ),
                ablation: (r < 1.0).then(|| ablation_throughput(s, w, &[1], "mimalloc")),
            },
        });
    }

    // 2. Against the single lock: >= 10x at 2 threads, and more beyond.
    for w in ["threadtest", "larson", "xmalloc"] {
        let ok = has(w) && have_allocs(&["shoal", "gil"]);
        let at2 = ok.then(|| s.ratio(w, "shoal", "gil", 2)).flatten();
        let goal = format!("shoal beats gil by >= 10x at 2 threads on {w}");
        goals.push(match at2 {
            None => Goal {
                goal,
                status: Status::NotMeasured,
                data: "no 2-thread cells for shoal and gil".into(),
                ablation: None,
            },
            Some(r) => Goal {
                goal,
                status: if r >= 10.0 {
                    Status::Met
                } else {
                    Status::Missed
                },
                data: format!("2 threads: {r:.1}x"),
                ablation: (r < 10.0).then(|| ablation_throughput(s, w, &[2], "gil")),
            },
        });
        let beyond: Vec<(usize, f64)> = s
            .threads
            .iter()
            .filter(|&&t| t > 2)
            .filter_map(|&t| {
                ok.then(|| s.ratio(w, "shoal", "gil", t))
                    .flatten()
                    .map(|r| (t, r))
            })
            .collect();
        let goal = format!("... and by more than at 2 threads beyond 2 threads on {w}");
        goals.push(match (at2, beyond.is_empty()) {
            (Some(r2), false) => {
                let met = beyond.iter().all(|&(_, r)| r >= 10.0 && r > r2);
                let missed_at: Vec<usize> = beyond
                    .iter()
                    .filter(|&&(_, r)| !(r >= 10.0 && r > r2))
                    .map(|&(t, _)| t)
                    .collect();
                Goal {
                    goal,
                    status: if met { Status::Met } else { Status::Missed },
                    data: format!(
                        "2 threads {r2:.1}x; {}",
                        beyond
                            .iter()
                            .map(|(t, r)| format!("{t} threads {r:.1}x"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    ablation: (!met).then(|| ablation_throughput(s, w, &missed_at, "gil")),
                }
            }
            _ => Goal {
                goal,
                status: Status::NotMeasured,
                data: "needs cells at 2 and more than 2 threads".into(),
                ablation: None,
            },
        });
    }

    // 3. xmalloc time within 1.25x of mimalloc's, at every thread count.
    {
        let goal = "shoal's xmalloc time within 1.25x of mimalloc's".to_string();
        let per_t: Vec<(usize, f64)> = if has("xmalloc") && have_allocs(&["shoal", "mimalloc"]) {
            s.threads
                .iter()
                .filter_map(|&t| {
                    let sh = s.get("xmalloc", "shoal", t)?.wall_s.median;
                    let mi = s.get("xmalloc", "mimalloc", t)?.wall_s.median;
                    Some((t, sh / mi))
                })
                .collect()
        } else {
            Vec::new()
        };
        goals.push(if per_t.is_empty() {
            Goal {
                goal,
                status: Status::NotMeasured,
                data: "no xmalloc cells for shoal and mimalloc".into(),
                ablation: None,
            }
        } else {
            let missed: Vec<usize> = per_t.iter().filter(|p| p.1 > 1.25).map(|p| p.0).collect();
            Goal {
                goal,
                status: if missed.is_empty() {
                    Status::Met
                } else {
                    Status::Missed
                },
                data: format!(
                    "time shoal/mimalloc: {}",
                    per_t
                        .iter()
                        .map(|(t, r)| format!("{t}t {r:.2}x"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ablation: (!missed.is_empty())
                    .then(|| ablation_throughput(s, "xmalloc", &missed, "mimalloc")),
            }
        });
    }

    // 4. Peak RSS within 1.25x of mimalloc's on larson and mstress (final
    // RSS shown alongside, not judged).
    for w in ["larson", "mstress"] {
        let goal = format!("shoal's peak RSS within 1.25x of mimalloc's on {w}");
        let mut finals = Vec::new();
        let per_t: Vec<(usize, f64)> = if has(w) && have_allocs(&["shoal", "mimalloc"]) {
            s.threads
                .iter()
                .filter_map(|&t| {
                    let sh = s.get(w, "shoal", t)?;
                    let mi = s.get(w, "mimalloc", t)?;
                    finals.push((t, sh.final_rss_kib.median / mi.final_rss_kib.median));
                    Some((t, sh.peak_rss_kib.median / mi.peak_rss_kib.median))
                })
                .collect()
        } else {
            Vec::new()
        };
        goals.push(if per_t.is_empty() {
            Goal {
                goal,
                status: Status::NotMeasured,
                data: format!("no {w} cells for shoal and mimalloc"),
                ablation: None,
            }
        } else {
            let missed: Vec<usize> = per_t.iter().filter(|p| p.1 > 1.25).map(|p| p.0).collect();
            Goal {
                goal,
                status: if missed.is_empty() {
                    Status::Met
                } else {
                    Status::Missed
                },
                data: format!(
                    "peak RSS shoal/mimalloc: {}; final RSS shoal/mimalloc: {}",
                    per_t
                        .iter()
                        .map(|(t, r)| format!("{t}t {r:.2}x"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    finals
                        .iter()
                        .map(|(t, r)| format!("{t}t {r:.2}x"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                ablation: (!missed.is_empty()).then(|| ablation_rss(s, w, &missed)),
            }
        });
    }

    // The price of hardening: shoal-secure at most 10% slower than shoal.
    if have_allocs(&["shoal", "shoal-secure"]) {
        goals.push(secure_cost_goal(s));
    }

    // 5. Memory comes back: final RSS within 1.25x of mimalloc's on every
    // workload, and peak RSS on `phases` within 1.25x of mimalloc's.
    rss_goal(
        &mut goals,
        s,
        "shoal's final RSS within 1.25x of mimalloc's on every workload",
        &s.workloads.iter().map(|w| w.name).collect::<Vec<_>>(),
        |c| c.final_rss_kib.median,
    );
    if has("phases") {
        rss_goal(
            &mut goals,
            s,
            "shoal's peak RSS on phases within 1.25x of mimalloc's",
            &["phases"],
            |c| c.peak_rss_kib.median,
        );
    }
    goals
}

/// "shoal-secure at most 10% slower than shoal": the geomean over every
/// measured cell of shoal-secure's throughput over shoal's, which must be at
/// least 1/1.10, with the cell that costs most named.
fn secure_cost_goal(s: &Summary) -> Goal {
    let goal = "shoal-secure at most 10% slower than shoal (geomean over all cells)".to_string();
    let mut logs = Vec::new();
    let mut cells = Vec::new();
    let mut worst: Option<(f64, String)> = None;
    for w in &s.workloads {
        for &t in &s.threads {
            if let Some(r) = s.ratio(w.name, "shoal-secure", "shoal", t) {
                logs.push(r.ln());
                let cell = format!("{} {}", w.name, thread_header(t, s.cores));
                cells.push((r, cell.clone()));
                if worst.as_ref().is_none_or(|(x, _)| r < *x) {
                    worst = Some((r, cell));
                }
            }
        }
    }
    cells.sort_by(|a, b| a.0.total_cmp(&b.0));
    let list = |v: &[(f64, String)]| {
        v.iter()
            .map(|(r, c)| format!("{c} {r:.2}x"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ablation = (cells.len() >= 6).then(|| {
        format!(
            "lowest shoal-secure / shoal cells: {}; highest: {}.\n\
             the secure path adds work to every small allocation and free, not to the shared \
             level: an address-map word and the block's state byte (checked, then stored) on \
             each, and a free-list link encoded or decoded with its segment's keys; so it costs most where shoal's own operation is shortest (a thread-cache \
             hit) and least where other work dominates (large objects, thread creation, the \
             program's own computation).",
            list(&cells[..3]),
            list(&cells[cells.len() - 3..])
        )
    });
    let Some((lowest, cell)) = worst else {
        return Goal {
            goal,
            status: Status::NotMeasured,
            data: "no cell measured both shoal and shoal-secure".into(),
            ablation: None,
        };
    };
    let geomean = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
    Goal {
        goal,
        status: if geomean >= 1.0 / 1.10 {
            Status::Met
        } else {
            Status::Missed
        },
        data: format!(
            "shoal-secure / shoal throughput over {} cells: geomean {geomean:.2}x \
             (time {:.2}x); lowest {lowest:.2}x on {cell}",
            logs.len(),
            1.0 / geomean
        ),
        ablation,
    }
}

/// Evaluates "shoal's RSS (as `pick` reads it) within 1.25x of mimalloc's"
/// over every thread count of `workloads`, listing the cells that miss.
fn rss_goal(
    goals: &mut Vec<Goal>,
    s: &Summary,
    goal: &str,
    workloads: &[&str],
    pick: fn(&CellStats) -> f64,
) {
    let mut ratios = Vec::new();
    for &w in workloads {
        for &t in &s.threads {
            if let (Some(sh), Some(mi)) = (s.get(w, "shoal", t), s.get(w, "mimalloc", t)) {
                ratios.push((w, t, pick(sh) / pick(mi).max(1.0)));
            }
        }
    }
    if ratios.is_empty() {
        goals.push(Goal {
            goal: goal.to_string(),
            status: Status::NotMeasured,
            data: "no cells for shoal and mimalloc".into(),
            ablation: None,
        });
        return;
    }
    let missed: Vec<String> = ratios
        .iter()
        .filter(|r| r.2 > 1.25)
        .map(|(w, t, r)| format!("{w} {t}t {r:.2}x"))
        .collect();
    let worst = ratios
        .iter()
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .expect("non-empty");
    goals.push(Goal {
        goal: goal.to_string(),
        status: if missed.is_empty() {
            Status::Met
        } else {
            Status::Missed
        },
        data: if missed.is_empty() {
            format!(
                "{} cells; highest shoal/mimalloc {} {}t {:.2}x",
                ratios.len(),
                worst.0,
                worst.1,
                worst.2
            )
        } else {
            format!(
                "{} of {} cells above: {}",
                missed.len(),
                ratios.len(),
                missed.join(", ")
            )
        },
        ablation: None,
    });
}

/// Writes `dir/results.md` and `dir/figures/*.svg`.
pub fn write_papers(dir: &Path, s: &Summary, m: &Machine) -> std::io::Result<()> {
    let figures = dir.join("figures");
    std::fs::create_dir_all(&figures)?;
    for w in &s.workloads {
        let series: Vec<svg::Series> = s
            .allocators
            .iter()
            .map(|a| svg::Series {
                name: a,
                points: s
                    .threads
                    .iter()
                    .map(|&t| {
                        s.get(w.name, a, t).map(|c| {
                            (
                                c.ops_per_s.median / 1e6,
                                c.ops_per_s.min / 1e6,
                                c.ops_per_s.max / 1e6,
                            )
                        })
                    })
                    .collect(),
            })
            .collect();
        let chart = svg::throughput(w.name, &s.threads, &series, m.cores, s.reps);
        std::fs::write(figures.join(format!("scaling-{}.svg", w.name)), chart)?;
    }
    let t_max = *s.threads.iter().max().unwrap_or(&1);
    let rss = |f: fn(&CellStats) -> f64| -> Vec<(&str, Vec<Option<f64>>)> {
        s.workloads
            .iter()
            .map(|w| {
                (
                    w.name,
                    s.allocators
                        .iter()
                        .map(|a| s.get(w.name, a, t_max).map(|c| f(c) / 1024.0))
                        .collect(),
                )
            })
            .collect()
    };
    let peak = rss(|c| c.peak_rss_kib.median);
    let fin = rss(|c| c.final_rss_kib.median);
    // One axis for both figures, so their bars compare at a glance.
    let range: Vec<f64> = [&peak, &fin]
        .iter()
        .flat_map(|rows| rows.iter().flat_map(|r| r.1.iter().flatten().copied()))
        .collect();
    let figures_of = [
        ("peak-rss.svg", "Peak RSS", &peak),
        ("final-rss.svg", "Final RSS after the purge wait", &fin),
    ];
    for (file, title, rows) in figures_of {
        std::fs::write(
            figures.join(file),
            svg::rss(title, rows, &s.allocators, t_max, &range),
        )?;
    }
    std::fs::write(dir.join("results.md"), results_md(s, m))
}

/// How often shoal's variants leave the thread-cache fast path, from the
/// allocator's own counters (`shoalloc::stats()` in each cell's process):
/// refills and flushes move one batch each with one CAS on a class's shared
/// stack; CAS retries are the failed attempts on that stack and on the carve
/// word — the contention that the lock-free pools pay instead of a lock.
fn slow_path_section(out: &mut String, s: &Summary) {
    let variants: Vec<&str> = ["shoal", "shoal-secure", "shoal-nocache"]
        .into_iter()
        .filter(|a| s.allocators.contains(a))
        .collect();
    if variants.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Shoal's slow path\n");
    let _ = writeln!(
        out,
        "Refills / flushes / CAS retries per 1000 operations (medians over the runs), counted by shoalloc itself (`shoalloc::stats()`, read in each cell's process after the workload; process-wide, so they include the harness's few allocations). A refill or flush moves one batch with one CAS; without thread caches (`shoal-nocache`) every operation is a pool operation. (`shoal-locked` keeps its blocks in lists behind a mutex, which these counters do not see.)\n"
    );
    let mut header = vec!["workload".to_string(), "threads".to_string()];
    header.extend(variants.iter().map(|a| format!("`{a}`")));
    let mut rows = Vec::new();
    for w in &s.workloads {
        for &t in &s.threads {
            let cells: Vec<String> = variants
                .iter()
                .map(|a| match s.get(w.name, a, t).and_then(|c| c.slow_per_kop) {
                    Some([r, f, c]) => format!("{r:.2} / {f:.2} / {c:.3}"),
                    None => "–".to_string(),
                })
                .collect();
            if cells.iter().all(|c| c == "–") {
                continue;
            }
            let mut row = vec![w.name.to_string(), thread_header(t, s.cores)];
            row.extend(cells);
            rows.push(row);
        }
    }
    let _ = writeln!(out, "{}", Table { header, rows }.markdown());
}

fn results_md(s: &Summary, m: &Machine) -> String {
    let mut out = String::new();
    let cmd = if s.args.is_empty() {
        "cargo bench --bench scaling".to_string()
    } else {
        format!("cargo bench --bench scaling -- {}", s.args.join(" "))
    };
    let _ = writeln!(out, "# Scaling results\n");
    let _ = writeln!(
        out,
        "Generated by `{cmd}` on {}. **Do not edit by hand**: rerun the command to regenerate this file and `figures/`.\n",
        m.date
    );
    let _ = writeln!(out, "- Machine: {}.", m.describe());
    let _ = writeln!(
        out,
        "- Load average (1/5/15 min) at the start of the sweep: {}; at the end: {}. Other processes on the machine add noise to every cell; the interleaving spreads it over all allocators.",
        m.load_start,
        crate::machine::load_average()
    );
    let _ = writeln!(
        out,
        "- Sweep: {} mode, threads {}, {} repetition(s) per cell, workload scale {} of full size.",
        s.mode.name(),
        s.threads
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        s.reps,
        s.scale
    );
    let over: Vec<String> = s
        .threads
        .iter()
        .filter(|&&t| t > m.cores)
        .map(|t| t.to_string())
        .collect();
    if !over.is_empty() {
        let _ = writeln!(
            out,
            "- Oversubscribed (more threads than cores, marked `*`): {} threads. These still measure lock convoys and preemption inside critical sections.",
            over.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "- Allocators: {}. `shoal-secure` is `shoalloc::ShoalSecure` (a state per small block, checked on every allocation and free, and encoded free-list links: the price of hardening). `shoal-nocache` and `shoal-locked` are ablations of `shoal` (`shoalloc::internals::{{ShoalNoCache, ShoalLocked}}`, the small paths in `src/shoal/small_path.rs` and `src/shoal/locked.rs`): no thread caches; thread caches over pools behind one mutex.",
        s.allocators
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "- Real C programs (CPython, sort, gzip, gcc, git, redis, sqlite, and the project's own C/C++ pattern programs) under `LD_PRELOAD` of `libshoalloc.so`, mimalloc, jemalloc, tcmalloc and glibc: [`preload.md`](preload.md), written by `capi/bench/preload.sh`, which `--full` runs of this benchmark call at the end (`--preload` for other runs)."
    );
    if s.total_failures() > 0 {
        let _ = writeln!(
            out,
            "- **{} run(s) failed** (verification, crash or timeout); they are marked FAILED below and excluded from the statistics.",
            s.total_failures()
        );
    }

    let _ = writeln!(out, "\n## Goals\n");
    let _ = writeln!(
        out,
        "Computed from the medians of this run (never asserted in tests). A goal is met only if it holds at every measured thread count it names.\n"
    );
    let _ = writeln!(out, "| goal | status | data |\n|---|---|---|");
    let goals = goals(s);
    for g in &goals {
        let status = match g.status {
            Status::Met => "met",
            Status::Missed => "**missed**",
            Status::NotMeasured => "not measured",
        };
        let _ = writeln!(out, "| {} | {status} | {} |", g.goal, g.data);
    }
    let missed: Vec<&Goal> = goals
        .iter()
        .filter(|g| g.status == Status::Missed)
        .collect();
    if !missed.is_empty() {
        let _ = writeln!(out, "\n### Missed goals: what the ablations say\n");
        for g in missed {
            let _ = writeln!(out, "**{}**\n", g.goal);
            if let Some(a) = &g.ablation {
                for line in a.lines() {
                    let _ = writeln!(out, "- {}", line.trim());
                }
            }
            out.push('\n');
        }
    }

    let _ = writeln!(out, "\n## Results per workload\n");
    let _ = writeln!(
        out,
        "Throughput is total operations / wall time of the workload (strong scaling: the same total work at every thread count, so a scaling allocator shows rising throughput). Ratios compare medians; peak RSS is the child process's `ru_maxrss`; final RSS is `/proc/self/statm` once the workload freed everything, the process slept {} ms (longer than the purge delays: shoal 100 ms, mimalloc 10 ms) and nudged its allocator with {} (see Method).\n",
        final_rss::PURGE_WAIT.as_millis(),
        final_rss::nudge_text()
    );
    for w in &s.workloads {
        let _ = writeln!(out, "### {}\n\n{}.\n", w.name, w.about);
        let _ = writeln!(
            out,
            "![{} throughput](figures/scaling-{}.svg)\n",
            w.name, w.name
        );
        for (title, table) in workload_tables(s, w.name, m.cores) {
            let _ = writeln!(out, "{title}:\n\n{}", table.markdown());
        }
    }
    slow_path_section(&mut out, s);
    let t_max = s.threads.iter().max().copied().unwrap_or(1);
    let _ = writeln!(out, "## Peak and final RSS\n");
    let _ = writeln!(
        out,
        "Peak RSS and final RSS per allocator at {t_max} thread(s), every workload (log scale, same axis):\n\n![peak RSS](figures/peak-rss.svg)\n\n![final RSS](figures/final-rss.svg)\n"
    );
    let baseline: Vec<String> = s
        .allocators
        .iter()
        .filter_map(|a| {
            let t = s.threads.iter().min()?;
            let c = s.get("pair", a, *t)?;
            Some(format!(
                "{a} {} / {}",
                mib(c.peak_rss_kib.median),
                mib(c.final_rss_kib.median)
            ))
        })
        .collect();
    if !baseline.is_empty() {
        let _ = writeln!(
            out,
            "For scale: a process that holds almost nothing (the `pair` cell at {} thread(s), one 32 B block live) has, in MiB, peak / final RSS: {}. That start-up footprint is part of every number above.\n",
            s.threads.iter().min().unwrap_or(&1),
            baseline.join(", ")
        );
    }
    let _ = writeln!(out, "## Method\n");
    let _ = writeln!(
        out,
        "Each (workload, allocator, threads) cell runs in a fresh process; the benchmark binary re-executes itself and a dispatching `#[global_allocator]` forwards every call to the allocator named in `SHOALLOC_BENCH_ALLOC` (one relaxed load and one predictable branch per call, the same for every allocator). Repetitions are interleaved (every allocator once per repetition, order rotated), and tables give the median with the min–max range. Every workload verifies its results (tags, checksums, contents), so a broken allocator fails its cell instead of winning it. Sources: `benches/scaling/`."
    );
    let _ = writeln!(
        out,
        "\nFinal RSS: allocators keep freed memory for a purge delay and most purge only from inside their own calls, so RSS read right after the last free would show the delay rather than what an allocator keeps. After the workload the child sleeps {} ms, then nudges its allocator ({}) on the main thread, then reads `/proc/self/statm`; no allocator-specific collect call is made. The parent starts the next cell as soon as the workload is done, so the wait overlaps later cells; a process that has measured holds until the parent lets it exit between two workloads.",
        final_rss::PURGE_WAIT.as_millis(),
        final_rss::nudge_text()
    );
    out
}
