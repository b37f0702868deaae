//! Command-line options. Unknown flags (cargo passes `--bench` to
//! `harness = false` benchmarks) are ignored with a note.

use crate::dispatch;
use crate::workloads::{self, Workload};
use std::path::PathBuf;

pub const HELP: &str = "\
usage: cargo bench --bench scaling -- [options]

With no options, the default sweep: every workload x allocator at threads 1,2,4, 5 interleaved
repetitions, 12% of full sizes (35% for phases and medium, which scale by the square root), in
2 to 4 minutes on 2 cores (well under 10). A progress bar on stderr shows cells done / total and
the estimated time left. Writes the tables, papers/results.md and papers/figures/. It skips the
real programs under LD_PRELOAD, which alone take about 8 minutes more on 2 cores and would break
the 10-minute bound: add --preload, or use --full.

  --full                the long sweep: threads 1,2,4,8,16, 5 reps, full sizes (25 to 35 minutes
                        on 2 cores), then the real programs under LD_PRELOAD
  --quick               the default sweep (kept for old command lines)
  --smoke               every workload x allocator once at 2 threads, tiny sizes (CI; seconds)
  --workloads a,b       only these workloads (see --list)
  --allocators x,y      only these allocators
  --threads 1,2         only these thread counts
  --reps N              repetitions per cell
  --scale F             multiply every workload's size by F (overrides the mode's)
  --timeout S           seconds before a cell is killed (default: 120; 600 with --full, 60 with
                        --smoke)
  --csv PATH            write one row per run
  --papers DIR          write DIR/results.md and DIR/figures/*.svg (default: papers/ for
                        unfiltered default and --full runs, nothing otherwise)
  --no-papers           do not write papers/
  --preload             also run real C programs under LD_PRELOAD of libshoalloc.so, mimalloc,
                        jemalloc, tcmalloc and glibc, as many repetitions as --reps
                        (capi/bench/preload.sh -> papers/preload.md); on by default only for
                        unfiltered --full runs
  --no-preload          skip the LD_PRELOAD programs (also in --full runs)
  --no-progress         no progress bar
  --priority            run cells at nice -10 (needs root or CAP_SYS_NICE; ignored otherwise)
                        so that other work on a shared machine disturbs them less
  --fault double-handout
                        checks the checkers: turn on the deliberate double-handout fault
                        (src/fault.rs) in every cell: the shoal, shoal-nocache, shoal-locked and
                        gil cells should FAIL (pair and cache-* keep too few blocks live to
                        always catch it); shoal-secure cells abort by themselves (its block
                        states see the live block). Needs the fault hooks, compiled in only by
                        cargo bench --bench scaling --features fault-injection -- --fault ...
  --list                list workloads and allocators
  --help
";

/// Sweep size presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--full`: the long sweep, then the real programs under `LD_PRELOAD`.
    Full,
    /// The default (also `--quick`): the reduced sweep, well under 10
    /// minutes on 2 cores.
    Quick,
    /// `--smoke`: every cell once, tiny, for CI.
    Smoke,
}

impl Mode {
    /// The name in reports; `quick` is the default sweep.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Quick => "quick",
            Mode::Smoke => "smoke",
        }
    }

    fn threads(self) -> Vec<usize> {
        match self {
            Mode::Full => vec![1, 2, 4, 8, 16],
            Mode::Quick => vec![1, 2, 4],
            Mode::Smoke => vec![2],
        }
    }

    fn reps(self) -> usize {
        match self {
            Mode::Full => 5,
            Mode::Quick => 5,
            Mode::Smoke => 1,
        }
    }

    /// Fraction of each workload's full size.
    fn scale(self) -> f64 {
        match self {
            Mode::Full => 1.0,
            Mode::Quick => 0.12,
            Mode::Smoke => 0.005,
        }
    }

    fn timeout_s(self) -> u32 {
        match self {
            Mode::Full => 600,
            Mode::Quick => 120,
            Mode::Smoke => 60,
        }
    }
}

/// What a sweep runs and where it writes.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub threads: Vec<usize>,
    pub reps: usize,
    pub scale: f64,
    pub timeout_s: u32,
    pub workloads: Vec<&'static Workload>,
    /// Allocator names, in report order.
    pub allocators: Vec<&'static str>,
    pub csv: Option<PathBuf>,
    pub papers: Option<PathBuf>,
    pub progress: bool,
    /// Run cells at raised scheduling priority.
    pub priority: bool,
    /// A deliberate allocator fault to switch on in every cell.
    pub fault: Option<Fault>,
    /// Also run the real programs under `LD_PRELOAD` (capi/bench/preload.sh).
    pub preload: bool,
    /// The command line as given (minus cargo's `--bench`), for the report.
    pub args: Vec<String>,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// One cell, as the parent asks a child process to run it.
#[derive(Clone, Debug)]
pub struct Cell {
    pub workload: &'static Workload,
    pub allocator: &'static str,
    pub threads: usize,
    pub scale: f64,
    pub timeout_s: u32,
    /// Raise this process's scheduling priority before running.
    pub priority: bool,
    /// A deliberate allocator fault to switch on before running.
    pub fault: Option<Fault>,
    /// After reporting, wait for EOF on stdin before exiting (the parent's
    /// signal; see `runner::sweep`).
    pub hold: bool,
}

/// Deliberate faults (`src/fault.rs`, compiled only in fault-injection
/// builds, `cfg(shoalloc_fault)`), to show the workloads' own checks catch a
/// broken allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Thread-cache refills hand out an already-live block now and then.
    DoubleHandout,
}

impl Fault {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !cfg!(shoalloc_fault) {
            return Err(format!(
                "--fault {s} needs the fault hooks: cargo bench --bench scaling \
                 --features fault-injection -- --fault {s} ..."
            ));
        }
        match s {
            "double-handout" => Ok(Fault::DoubleHandout),
            _ => Err(format!("unknown fault {s:?}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::DoubleHandout => "double-handout",
        }
    }
}

pub enum Command {
    Sweep(Options),
    Cell(Cell),
    Help,
    List,
}

fn list<T>(v: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| f(s.trim()).ok_or_else(|| format!("unknown {what} {s:?}")))
        .collect()
}

fn allocator(name: &str) -> Option<&'static str> {
    dispatch::find(name)
}

fn threads(s: &str) -> Option<usize> {
    s.parse().ok().filter(|&t| (1..=1024).contains(&t))
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut mode = Mode::Quick;
    let mut preload: Option<bool> = None;
    let mut threads_opt = None;
    let mut reps = None;
    let mut scale = None;
    let mut timeout = None;
    let mut wl = None;
    let mut al = None;
    let mut csv = None;
    let mut papers: Option<Option<PathBuf>> = None;
    let mut progress = true;
    let mut priority = false;
    let mut fault = None;
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<'_, String>, flag: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cell" => {
                let w = value(&mut it, "--cell")?;
                let a = value(&mut it, "--cell")?;
                let t = value(&mut it, "--cell")?;
                let mut cell = Cell {
                    workload: workloads::find(&w).ok_or(format!("unknown workload {w:?}"))?,
                    allocator: allocator(&a).ok_or(format!("unknown allocator {a:?}"))?,
                    threads: threads(&t).ok_or(format!("bad thread count {t:?}"))?,
                    scale: 1.0,
                    timeout_s: 0,
                    priority: false,
                    fault: None,
                    hold: false,
                };
                while let Some(arg) = it.next() {
                    match arg.as_str() {
                        "--scale" => {
                            cell.scale = value(&mut it, "--scale")?
                                .parse()
                                .map_err(|_| "bad --scale")?
                        }
                        "--timeout" => {
                            cell.timeout_s = value(&mut it, "--timeout")?
                                .parse()
                                .map_err(|_| "bad --timeout")?
                        }
                        "--priority" => cell.priority = true,
                        "--hold" => cell.hold = true,
                        "--fault" => {
                            let f = value(&mut it, "--fault")?;
                            cell.fault = Some(Fault::parse(&f)?);
                        }
                        _ => {}
                    }
                }
                return Ok(Command::Cell(cell));
            }
            "--quick" => mode = Mode::Quick,
            "--preload" => preload = Some(true),
            "--no-preload" => preload = Some(false),
            "--smoke" => mode = Mode::Smoke,
            "--full" => mode = Mode::Full,
            "--threads" => {
                threads_opt = Some(list(&value(&mut it, arg)?, "thread count", threads)?)
            }
            "--workloads" => wl = Some(list(&value(&mut it, arg)?, "workload", workloads::find)?),
            "--allocators" => al = Some(list(&value(&mut it, arg)?, "allocator", allocator)?),
            "--reps" => {
                reps = Some(
                    value(&mut it, arg)?
                        .parse::<usize>()
                        .ok()
                        .filter(|&r| r > 0)
                        .ok_or("bad --reps")?,
                )
            }
            "--scale" => {
                scale = Some(
                    value(&mut it, arg)?
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0 && s.is_finite())
                        .ok_or("bad --scale")?,
                )
            }
            "--timeout" => {
                timeout = Some(
                    value(&mut it, arg)?
                        .parse::<u32>()
                        .ok()
                        .filter(|&s| s > 0)
                        .ok_or("bad --timeout")?,
                )
            }
            "--csv" => csv = Some(PathBuf::from(value(&mut it, arg)?)),
            "--papers" => papers = Some(Some(PathBuf::from(value(&mut it, arg)?))),
            "--no-papers" => papers = Some(None),
            "--no-progress" => progress = false,
            "--priority" => priority = true,
            "--fault" => {
                let f = value(&mut it, arg)?;
                fault = Some(Fault::parse(&f)?);
            }
            "--list" => return Ok(Command::List),
            "--help" | "-h" => return Ok(Command::Help),
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other if other.starts_with('-') => eprintln!("scaling: ignoring unknown flag {other}"),
            other => eprintln!("scaling: ignoring argument {other}"),
        }
    }
    let filtered =
        wl.is_some() || al.is_some() || threads_opt.is_some() || scale.is_some() || fault.is_some();
    let papers = match papers {
        Some(p) => p,
        None if mode != Mode::Smoke && !filtered => {
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("papers"))
        }
        None => None,
    };
    let unfiltered = wl.is_none() && al.is_none() && threads_opt.is_none();
    let preload = preload.unwrap_or(mode == Mode::Full && unfiltered);
    Ok(Command::Sweep(Options {
        preload,
        mode,
        threads: threads_opt.unwrap_or_else(|| mode.threads()),
        reps: reps.unwrap_or_else(|| mode.reps()),
        scale: scale.unwrap_or_else(|| mode.scale()),
        timeout_s: timeout.unwrap_or_else(|| mode.timeout_s()),
        workloads: wl.unwrap_or_else(|| workloads::ALL.iter().collect()),
        allocators: al.unwrap_or_else(|| dispatch::names().collect()),
        csv,
        papers,
        progress,
        priority,
        fault,
        args: args.iter().filter(|a| *a != "--bench").cloned().collect(),
    }))
}
