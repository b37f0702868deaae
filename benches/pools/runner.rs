//! Running cells: the parent re-executes this binary once per cell, with the
//! allocator's name in the environment, and reads the child's peak RSS from
//! `wait4`; the child runs one workload on one variant and prints its
//! operation count and wall time.

use crate::cli::{Cell, Options};
use crate::dispatch;
use crate::variants::Variant;
use crate::workloads::{Spec, Workload};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What the child prints on stdout, then `key=value` pairs.
const RESULT_PREFIX: &str = "POOLS_CELL";

/// The numbers of one successful run.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    pub ops: u64,
    pub wall_s: f64,
    /// Peak resident set of the whole child process (wait4's `ru_maxrss`).
    pub peak_rss_kib: u64,
}

impl Measure {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.wall_s.max(1e-9)
    }
}

/// One run of one cell.
#[derive(Clone, Debug)]
pub struct Sample {
    pub workload: Workload,
    pub variant: &'static Variant,
    pub allocator: &'static str,
    pub threads: usize,
    pub outcome: Result<Measure, String>,
}

/// The child side: run `cell`, print the result line, exit 0; exit 1 when
/// the workload's verification failed, 2 on misuse.
pub fn child_main(cell: &Cell) -> ! {
    if dispatch::active() != cell.allocator {
        eprintln!(
            "cell: asked to run on {:?}, but {}={:?} selected {:?}",
            cell.allocator,
            dispatch::ENV_VAR,
            std::env::var(dispatch::ENV_VAR).ok(),
            dispatch::active()
        );
        std::process::exit(2);
    }
    if cell.timeout_s > 0 {
        // A deadlocked cell dies of SIGALRM; the parent reports a timeout.
        // SAFETY: `alarm` has no memory-safety preconditions.
        unsafe { libc::alarm(cell.timeout_s) };
    }
    let spec = Spec {
        threads: cell.threads,
        scale: cell.scale,
    };
    let start = Instant::now();
    let result = (cell.variant.run)(cell.workload, &spec);
    let wall_s = start.elapsed().as_secs_f64();
    match result {
        Ok(ops) => {
            println!("{RESULT_PREFIX} ops={ops} wall_s={wall_s:.6}");
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("verification failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Parses the child's result line.
fn parse_result(stdout: &str) -> Option<(u64, f64)> {
    let line = stdout.lines().find(|l| l.starts_with(RESULT_PREFIX))?;
    let (mut ops, mut wall) = (None, None);
    for kv in line.split_whitespace().skip(1) {
        match kv.split_once('=')? {
            ("ops", v) => ops = v.parse().ok(),
            ("wall_s", v) => wall = v.parse().ok(),
            _ => {}
        }
    }
    Some((ops?, wall?))
}

/// Runs `cell` in a fresh child process and waits for its numbers.
fn run_cell(cell: &Cell) -> Result<Measure, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--cell")
        .arg(cell.workload.name())
        .arg(cell.variant.name)
        .arg(cell.allocator)
        .arg(cell.threads.to_string())
        .arg(cell.scale.to_string())
        .arg(cell.timeout_s.to_string())
        .env(dispatch::ENV_VAR, cell.allocator)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let stderr = child.stderr.take();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut pipe) = stderr {
            let _ = pipe.read_to_string(&mut s);
        }
        s
    });
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet reaped (`Child` waits only when
        // asked, and it never is); both out-pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {e}"));
        }
    }
    let stderr = err.join().unwrap_or_default();
    let tail = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
    if libc::WIFSIGNALED(status) {
        return Err(match libc::WTERMSIG(status) {
            libc::SIGALRM => format!("timed out after {} s", cell.timeout_s),
            sig => format!("killed by signal {sig}: {tail}"),
        });
    }
    if libc::WEXITSTATUS(status) != 0 {
        return Err(format!("exit status {}: {tail}", libc::WEXITSTATUS(status)));
    }
    let (ops, wall_s) = parse_result(&stdout).ok_or("no result line")?;
    Ok(Measure {
        ops,
        wall_s,
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
    })
}

/// Every cell of `opts`, interleaved: for each repetition, for each workload
/// and thread count, every (variant, allocator) pair once, in an order
/// rotated per repetition, so drift on a shared machine hits them alike.
fn plan(opts: &Options) -> Vec<(usize, Cell)> {
    let pairs: Vec<_> = opts
        .variants
        .iter()
        .flat_map(|&v| opts.allocators.iter().map(move |&a| (v, a)))
        .collect();
    let mut cells = Vec::new();
    for rep in 0..opts.reps {
        for &workload in &opts.workloads {
            for &threads in &opts.threads {
                for k in 0..pairs.len() {
                    // Rotate by a third of the pairs per repetition, so that
                    // a pair's neighbours change too.
                    let (variant, allocator) = pairs[(k + rep * pairs.len() / 3) % pairs.len()];
                    cells.push((
                        rep,
                        Cell {
                            workload,
                            variant,
                            allocator,
                            threads,
                            scale: opts.scale,
                            timeout_s: opts.timeout_s,
                        },
                    ));
                }
            }
        }
    }
    cells
}

/// `m:ss`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Runs every cell of `opts` and returns one sample per run. Failures are
/// samples too (and printed as they happen).
pub fn sweep(opts: &Options) -> Vec<Sample> {
    let cells = plan(opts);
    let began = Instant::now();
    let mut samples = Vec::with_capacity(cells.len());
    for (i, (rep, cell)) in cells.iter().enumerate() {
        if opts.progress {
            let elapsed = began.elapsed().as_secs_f64();
            let left = if i > 0 {
                format!(
                    ", ~{} left",
                    clock(elapsed / i as f64 * (cells.len() - i) as f64)
                )
            } else {
                String::new()
            };
            eprint!(
                "\r\x1b[2Kpools: [{}/{}] {}{left}: {} {} {} {}t rep {}",
                i + 1,
                cells.len(),
                clock(elapsed),
                cell.workload.name(),
                cell.variant.name,
                cell.allocator,
                cell.threads,
                rep + 1
            );
        }
        let outcome = run_cell(cell);
        if let Err(e) = &outcome {
            eprintln!(
                "\npools: FAILED {} {} {} {}t: {e}",
                cell.workload.name(),
                cell.variant.name,
                cell.allocator,
                cell.threads
            );
        }
        samples.push(Sample {
            workload: cell.workload,
            variant: cell.variant,
            allocator: cell.allocator,
            threads: cell.threads,
            outcome,
        });
    }
    if opts.progress {
        eprintln!();
    }
    eprintln!(
        "pools: {} runs in {}",
        cells.len(),
        clock(began.elapsed().as_secs_f64())
    );
    samples
}
