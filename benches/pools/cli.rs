//! Command-line options. Unknown flags (cargo passes `--bench` to
//! `harness = false` benchmarks) are ignored with a note.

use crate::dispatch;
use crate::variants::{self, Variant};
use crate::workloads::Workload;
use std::path::PathBuf;

pub const HELP: &str = "\
usage: cargo bench --bench pools -- [options]

With no options: every workload x variant x allocator (shoal, mimalloc, system) at threads 1,2,
4 interleaved repetitions, each run in a fresh process; about 3 minutes on 2 cores. Prints the
tables and writes papers/pools.md.

  --smoke               every cell once at 40% size (about 20 s on 2 cores); writes nothing
  --oversubscribed      also run 4 threads (more threads than the project's 2-core machines
                        have: measures preemption, labelled as oversubscribed in the report)
  --workloads a,b       only these workloads (numeric, strings, messages)
  --variants x,y        only these variants (see --list)
  --allocators x,y      only these allocators (shoal, mimalloc, system)
  --threads 1,2         only these thread counts
  --reps N              repetitions per cell (default 4; 1 with --smoke)
  --scale F             multiply every workload's size by F (default 1; 0.4 with --smoke)
  --timeout S           seconds before a cell is killed (default 60)
  --papers PATH         write the report to PATH (default: papers/pools.md for unfiltered
                        default runs, nothing otherwise)
  --no-papers           do not write the report
  --list                list workloads, variants and allocators
  --help
";

/// The allocators this benchmark compares, a subset of the shared list
/// (`benches/common/allocators.rs`): the project's allocator and the two
/// peers that matter for a pool (a fast one, the default one).
pub const ALLOCATORS: [&str; 3] = ["shoal", "mimalloc", "system"];

/// What a sweep runs and where it writes.
#[derive(Clone, Debug)]
pub struct Options {
    pub threads: Vec<usize>,
    pub reps: usize,
    pub scale: f64,
    pub timeout_s: u32,
    pub workloads: Vec<Workload>,
    pub variants: Vec<&'static Variant>,
    pub allocators: Vec<&'static str>,
    pub papers: Option<PathBuf>,
    pub progress: bool,
    /// The command line as given (minus cargo's `--bench`), for the report.
    pub args: Vec<String>,
}

/// One cell, as the parent asks a child process to run it.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    pub workload: Workload,
    pub variant: &'static Variant,
    pub allocator: &'static str,
    pub threads: usize,
    pub scale: f64,
    pub timeout_s: u32,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
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

/// One of [`ALLOCATORS`], as the dispatcher's table spells it.
fn allocator(name: &str) -> Option<&'static str> {
    ALLOCATORS
        .contains(&name)
        .then(|| dispatch::find(name))
        .flatten()
}

fn threads(s: &str) -> Option<usize> {
    s.parse().ok().filter(|&t| (1..=64).contains(&t))
}

fn number<T: std::str::FromStr>(
    v: String,
    flag: &str,
    ok: impl Fn(&T) -> bool,
) -> Result<T, String> {
    v.parse::<T>()
        .ok()
        .filter(ok)
        .ok_or_else(|| format!("bad {flag} {v:?}"))
}

/// `--cell WORKLOAD VARIANT ALLOCATOR THREADS SCALE TIMEOUT`, the child's
/// command line (see `runner::start`).
fn cell(it: &mut std::slice::Iter<'_, String>) -> Result<Cell, String> {
    let mut next = || it.next().cloned().ok_or("--cell needs 6 values");
    let (w, v, a) = (next()?, next()?, next()?);
    Ok(Cell {
        workload: Workload::find(&w).ok_or(format!("unknown workload {w:?}"))?,
        variant: variants::find(&v).ok_or(format!("unknown variant {v:?}"))?,
        allocator: allocator(&a).ok_or(format!("unknown allocator {a:?}"))?,
        threads: threads(&next()?).ok_or("bad thread count")?,
        scale: number(next()?, "scale", |s: &f64| *s > 0.0)?,
        timeout_s: number(next()?, "timeout", |_: &u32| true)?,
    })
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut smoke = false;
    let mut oversubscribed = false;
    let mut threads_opt = None;
    let mut reps = None;
    let mut scale = None;
    let mut timeout = 60;
    let mut wl = None;
    let mut vl = None;
    let mut al = None;
    let mut papers: Option<Option<PathBuf>> = None;
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<'_, String>, flag: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cell" => return Ok(Command::Cell(cell(&mut it)?)),
            "--smoke" => smoke = true,
            "--oversubscribed" => oversubscribed = true,
            "--threads" => {
                threads_opt = Some(list(&value(&mut it, arg)?, "thread count", threads)?)
            }
            "--workloads" => wl = Some(list(&value(&mut it, arg)?, "workload", Workload::find)?),
            "--variants" => vl = Some(list(&value(&mut it, arg)?, "variant", variants::find)?),
            "--allocators" => al = Some(list(&value(&mut it, arg)?, "allocator", allocator)?),
            "--reps" => reps = Some(number(value(&mut it, arg)?, arg, |&r: &usize| r > 0)?),
            "--scale" => {
                scale = Some(number(value(&mut it, arg)?, arg, |s: &f64| {
                    *s > 0.0 && s.is_finite()
                })?)
            }
            "--timeout" => timeout = number(value(&mut it, arg)?, arg, |&s: &u32| s > 0)?,
            "--papers" => papers = Some(Some(PathBuf::from(value(&mut it, arg)?))),
            "--no-papers" => papers = Some(None),
            "--list" => return Ok(Command::List),
            "--help" | "-h" => return Ok(Command::Help),
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => eprintln!("pools: ignoring argument {other}"),
        }
    }
    let filtered = wl.is_some()
        || vl.is_some()
        || al.is_some()
        || threads_opt.is_some()
        || scale.is_some()
        || reps.is_some();
    let papers = match papers {
        Some(p) => p,
        None if !smoke && !filtered => {
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("papers/pools.md"))
        }
        None => None,
    };
    let mut threads = threads_opt.unwrap_or_else(|| vec![1, 2]);
    if oversubscribed && !threads.contains(&4) {
        threads.push(4);
    }
    Ok(Command::Sweep(Options {
        threads,
        reps: reps.unwrap_or(if smoke { 1 } else { 4 }),
        scale: scale.unwrap_or(if smoke { 0.4 } else { 1.0 }),
        timeout_s: timeout,
        workloads: wl.unwrap_or_else(|| Workload::ALL.to_vec()),
        variants: vl.unwrap_or_else(|| variants::ALL.iter().collect()),
        allocators: al.unwrap_or_else(|| ALLOCATORS.iter().filter_map(|a| allocator(a)).collect()),
        papers,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        args: args.iter().filter(|a| *a != "--bench").cloned().collect(),
    }))
}
