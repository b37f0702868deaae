//! Running cells: the parent spawns one child process per cell and collects
//! its numbers; the child runs one workload on one allocator and reports.

use crate::cli::{Cell, Fault, Options};
use crate::dispatch;
use crate::workloads::Spec;
use std::io::{IsTerminal, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What the child prints on stdout, then `key=value` pairs.
const RESULT_PREFIX: &str = "SHOALLOC_CELL";

/// The numbers of one successful run.
#[derive(Clone, Copy, Debug)]
pub struct Measure {
    pub ops: u64,
    pub wall_s: f64,
    /// Peak resident set of the child process (wait4's `ru_maxrss`).
    pub peak_rss_kib: u64,
    /// Resident set after the workload returned and freed everything.
    pub final_rss_kib: u64,
    /// CPU time of the whole child process (user + system, from rusage):
    /// next to wall time it shows spinning, and is less sensitive than wall
    /// time to other load on the machine.
    pub cpu_s: f64,
}

impl Measure {
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.wall_s.max(1e-9)
    }
}

/// One run of one cell.
#[derive(Clone, Debug)]
pub struct Sample {
    pub workload: &'static str,
    pub allocator: &'static str,
    pub threads: usize,
    pub rep: usize,
    pub outcome: Result<Measure, String>,
}

/// The child side: run `cell` and print the result line. Exit status 0 on
/// success, 1 when the workload's verification failed, 2 on misuse.
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
        // A deadlocked or runaway cell dies of SIGALRM; the parent reports
        // it as timed out. No thread of ours handles signals.
        // SAFETY: `alarm` has no memory-safety preconditions.
        unsafe { libc::alarm(cell.timeout_s) };
    }
    if cell.priority {
        // Before any worker thread exists, so all of them inherit it (on
        // Linux the nice value is per thread). Failure (no privilege) only
        // means the cell runs at normal priority.
        // SAFETY: `setpriority` has no memory-safety preconditions.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
    }
    match cell.fault {
        // SAFETY: `--fault` runs each cell in a throwaway child process to
        // check that the workloads' verification catches the fault.
        Some(Fault::DoubleHandout) => unsafe { shoalloc::fault::set_double_handout(true) },
        None => {}
    }
    let spec = Spec {
        threads: cell.threads,
        scale: cell.scale,
    };
    let start = Instant::now();
    let result = (cell.workload.run)(&spec);
    let wall_s = start.elapsed().as_secs_f64();
    match result {
        Ok(ops) => {
            let final_rss_kib = rss_kib().unwrap_or(0);
            println!("{RESULT_PREFIX} ops={ops} wall_s={wall_s:.6} final_rss_kib={final_rss_kib}");
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("verification failed: {e}");
            std::process::exit(1);
        }
    }
}

/// This process's resident set, from `/proc/self/statm` (KiB).
fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(1) as u64 / 1024)
}

/// Parses the child's result line.
fn parse_result(stdout: &str) -> Option<(u64, f64, u64)> {
    let line = stdout.lines().find(|l| l.starts_with(RESULT_PREFIX))?;
    let mut ops = None;
    let mut wall = None;
    let mut rss = None;
    for kv in line.split_whitespace().skip(1) {
        let (k, v) = kv.split_once('=')?;
        match k {
            "ops" => ops = v.parse().ok(),
            "wall_s" => wall = v.parse().ok(),
            "final_rss_kib" => rss = v.parse().ok(),
            _ => {}
        }
    }
    Some((ops?, wall?, rss?))
}

fn timeval_s(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 * 1e-6
}

/// Runs one cell in a fresh child process and waits for it.
pub fn run_cell(cell: &Cell) -> Result<Measure, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("--cell")
        .arg(cell.workload.name)
        .arg(cell.allocator)
        .arg(cell.threads.to_string())
        .arg("--scale")
        .arg(cell.scale.to_string())
        .arg("--timeout")
        .arg(cell.timeout_s.to_string());
    if cell.priority {
        command.arg("--priority");
    }
    if let Some(f) = cell.fault {
        command.arg("--fault").arg(f.name());
    }
    let mut child = command
        .env(dispatch::ENV_VAR, cell.allocator)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet reaped (std's `Child` never
        // waits unless asked); both out-pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {e}"));
        }
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    };
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGALRM {
            return Err(format!("timed out after {} s", cell.timeout_s));
        }
        return Err(format!("killed by signal {sig}: {}", tail(&stderr)));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "exit status {}: {}",
            libc::WEXITSTATUS(status),
            tail(&stderr)
        ));
    }
    let (ops, wall_s, final_rss_kib) =
        parse_result(&stdout).ok_or_else(|| format!("no result line in {:?}", tail(&stdout)))?;
    Ok(Measure {
        ops,
        wall_s,
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
        final_rss_kib,
        cpu_s: timeval_s(usage.ru_utime) + timeval_s(usage.ru_stime),
    })
}

/// A one-line progress bar on stderr: redrawn in place on a terminal,
/// a line per tenth of the work otherwise (CI logs).
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
    enabled: bool,
    last_tenth: usize,
}

impl Progress {
    fn new(total: usize, enabled: bool) -> Self {
        Self {
            total,
            done: 0,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            enabled,
            last_tenth: 0,
        }
    }

    fn show(&mut self, label: &str) {
        if !self.enabled {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta = if self.done > 0 {
            elapsed / self.done as f64 * (self.total - self.done) as f64
        } else {
            0.0
        };
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
        let line = format!(
            "[{bar}] {}/{} {:.0}s elapsed, ~{:.0}s left  {label}",
            self.done, self.total, elapsed, eta
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            let tenth = 10 * self.done / self.total.max(1);
            if tenth > self.last_tenth || self.done == 0 {
                self.last_tenth = tenth;
                eprintln!("{line}");
            }
        }
    }

    /// Prints a message on its own line, keeping the bar below it.
    fn note(&self, msg: &str) {
        if self.tty && self.enabled {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{msg}");
    }

    fn finish(&self) {
        if self.tty && self.enabled {
            eprintln!();
        }
    }
}

/// Runs every cell of `opts`, interleaved: for each repetition, for each
/// workload and thread count, every allocator once (in an order rotated per
/// repetition, so no allocator always runs first or last).
pub fn sweep(opts: &Options) -> Result<Vec<Sample>, String> {
    let n_alloc = opts.allocators.len();
    let total = opts.reps * opts.workloads.len() * opts.threads.len() * n_alloc;
    let mut progress = Progress::new(total, opts.progress);
    let mut samples = Vec::with_capacity(total);
    for rep in 0..opts.reps {
        for w in &opts.workloads {
            for &threads in &opts.threads {
                for k in 0..n_alloc {
                    let allocator = opts.allocators[(k + rep) % n_alloc];
                    let cell = Cell {
                        workload: w,
                        allocator,
                        threads,
                        scale: opts.scale,
                        timeout_s: opts.timeout_s,
                        priority: opts.priority,
                        fault: opts.fault,
                    };
                    progress.show(&format!(
                        "{} {} {}t rep {}/{}",
                        w.name,
                        allocator,
                        threads,
                        rep + 1,
                        opts.reps
                    ));
                    let outcome = run_cell(&cell);
                    if let Err(e) = &outcome {
                        progress.note(&format!(
                            "FAILED {} {} {} threads rep {}: {e}",
                            w.name,
                            allocator,
                            threads,
                            rep + 1
                        ));
                    }
                    samples.push(Sample {
                        workload: w.name,
                        allocator,
                        threads,
                        rep: rep + 1,
                        outcome,
                    });
                    progress.done += 1;
                }
            }
        }
    }
    progress.show("done");
    progress.finish();
    Ok(samples)
}
