//! Running cells: the parent spawns one child process per cell and collects
//! its numbers; the child runs one workload on one allocator and reports.

use crate::cli::{Cell, Fault, Options};
use crate::dispatch;
use crate::final_rss;
use crate::workloads::{Spec, Workload};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread::JoinHandle;
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
    /// Shoal's slow-path counters over the whole child process
    /// (`shoalloc::stats()`: refills, flushes, CAS retries), for the cells
    /// that run on one of shoal's variants.
    pub slow_path: Option<[u64; 3]>,
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
    if let Some(fault) = cell.fault {
        arm(fault);
    }
    let spec = Spec {
        threads: cell.threads,
        scale: cell.scale,
    };
    let start = Instant::now();
    let result = (cell.workload.run)(&spec);
    let wall_s = start.elapsed().as_secs_f64();
    let ops = match result {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("verification failed: {e}");
            std::process::exit(1);
        }
    };
    // The parent starts the next cell on this line, while this process
    // waits out the purge delay (see `final_rss`).
    println!("{RESULT_PREFIX} ops={ops} wall_s={wall_s:.6}");
    let _ = std::io::stdout().flush();
    let final_rss_kib = final_rss::measure().unwrap_or(0);
    println!("{RESULT_PREFIX} final_rss_kib={final_rss_kib}");
    if cell.allocator.starts_with("shoal") {
        // After the measurements: the walk reads every segment's
        // descriptors. The counters cover the whole process, of which the
        // workload is nearly all.
        let st = shoalloc::stats();
        println!(
            "{RESULT_PREFIX} refills={} flushes={} cas_retries={}",
            st.refills, st.flushes, st.cas_retries
        );
    }
    let _ = std::io::stdout().flush();
    if cell.hold {
        // Done measuring: the alarm is for the workload, not for however
        // long the parent keeps this process waiting.
        // SAFETY: `alarm` has no memory-safety preconditions.
        unsafe { libc::alarm(0) };
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    }
    std::process::exit(0);
}

/// Switches on `fault` in this (child) process.
#[cfg(shoalloc_fault)]
fn arm(fault: Fault) {
    use shoalloc::internals::fault::{set, Fault as LibFault};
    let f = match fault {
        Fault::DoubleHandout => LibFault::DoubleHandout,
    };
    // SAFETY: `--fault` runs each cell in a throwaway child process, whose
    // heap is discarded, to check that the workloads' verification catches
    // the fault.
    unsafe { set(f, true) };
}

/// Without the fault hooks compiled in, `--fault` is refused by the command
/// line parser, so no cell ever asks for one.
#[cfg(not(shoalloc_fault))]
fn arm(fault: Fault) {
    eprintln!("cell: fault {} needs a fault-injection build", fault.name());
    std::process::exit(2);
}

/// Parses the child's result lines (ops and wall time after the workload,
/// final RSS after the purge delay).
fn parse_result(stdout: &str) -> Option<(u64, f64, u64, Option<[u64; 3]>)> {
    let mut ops = None;
    let mut wall = None;
    let mut rss = None;
    let mut slow = [None; 3];
    for line in stdout.lines().filter(|l| l.starts_with(RESULT_PREFIX)) {
        for kv in line.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=')?;
            match k {
                "ops" => ops = v.parse().ok(),
                "wall_s" => wall = v.parse().ok(),
                "final_rss_kib" => rss = v.parse().ok(),
                "refills" => slow[0] = v.parse().ok(),
                "flushes" => slow[1] = v.parse().ok(),
                "cas_retries" => slow[2] = v.parse().ok(),
                _ => {}
            }
        }
    }
    let slow = match slow {
        [Some(r), Some(f), Some(c)] => Some([r, f, c]),
        _ => None,
    };
    Some((ops?, wall?, rss?, slow))
}

fn timeval_s(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 * 1e-6
}

/// A cell's child process, from its start until it is reaped.
pub struct Running {
    pid: libc::pid_t,
    /// Closing it (EOF) lets a holding child exit.
    stdin: Option<ChildStdin>,
    /// One message per result line the child printed; disconnected once its
    /// stdout is closed (the child exited).
    lines: Receiver<()>,
    /// Result lines seen so far.
    seen: usize,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
    timeout_s: u32,
}

/// Starts `cell` in a fresh child process. With `cell.hold` the child holds
/// after measuring until [`Running::finish`] lets it exit.
pub fn start(cell: &Cell) -> Result<Running, String> {
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
    if cell.hold {
        command.arg("--hold");
    }
    if cell.priority {
        command.arg("--priority");
    }
    if let Some(f) = cell.fault {
        command.arg("--fault").arg(f.name());
    }
    let mut child = command
        .env(dispatch::ENV_VAR, cell.allocator)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let Some(pipe) = stdout else { return s };
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if line.starts_with(RESULT_PREFIX) {
                let _ = tx.send(());
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let stderr = child.stderr.take();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut pipe) = stderr {
            let _ = pipe.read_to_string(&mut s);
        }
        s
    });
    Ok(Running {
        pid: child.id() as libc::pid_t,
        stdin: child.stdin.take(),
        lines,
        seen: 0,
        out,
        err,
        timeout_s: cell.timeout_s,
    })
}

impl Running {
    /// Blocks until the child has reported its workload done (or exited).
    pub fn wait_workload(&mut self) {
        while self.seen < 1 && self.lines.recv().is_ok() {
            self.seen += 1;
        }
    }

    /// Whether the child has reported its final RSS (or exited), without
    /// blocking.
    pub fn measured(&mut self) -> bool {
        loop {
            match self.lines.try_recv() {
                Ok(()) => self.seen += 1,
                Err(TryRecvError::Empty) => return self.seen >= 2,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Lets the child exit, waits for it and returns its numbers (blocking
    /// until it has measured, if it has not yet).
    pub fn finish(mut self) -> Result<Measure, String> {
        drop(self.stdin.take());
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: `pid` is our child, not yet reaped (std's `Child` never
            // waits unless asked, and it was dropped); both out-pointers are
            // valid.
            let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut usage) };
            if r == self.pid {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("wait4: {e}"));
            }
        }
        let stdout = self.out.join().unwrap_or_default();
        let stderr = self.err.join().unwrap_or_default();
        let tail = |s: &str| {
            let lines: Vec<&str> = s.lines().rev().take(3).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
        };
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            if sig == libc::SIGALRM {
                return Err(format!("timed out after {} s", self.timeout_s));
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
        let (ops, wall_s, final_rss_kib, slow_path) = parse_result(&stdout)
            .ok_or_else(|| format!("no result lines in {:?}", tail(&stdout)))?;
        Ok(Measure {
            ops,
            wall_s,
            peak_rss_kib: usage.ru_maxrss.max(0) as u64,
            final_rss_kib,
            cpu_s: timeval_s(usage.ru_utime) + timeval_s(usage.ru_stime),
            slow_path,
        })
    }
}

/// Seconds a cell costs besides its workload: starting and reaping a
/// process. Part of every cell's prior cost.
const CELL_OVERHEAD_S: f64 = 0.01;

/// One cell of a sweep, in the order the sweep runs them.
struct Planned {
    rep: usize,
    workload: &'static Workload,
    allocator: &'static str,
    threads: usize,
}

impl Planned {
    /// What identifies the same cell in another repetition.
    fn key(&self) -> (&'static str, &'static str, usize) {
        (self.workload.name, self.allocator, self.threads)
    }
}

/// Every cell of `opts`, interleaved: for each repetition, for each workload
/// and thread count, every allocator once (in an order rotated per
/// repetition, so no allocator always runs first or last).
fn plan(opts: &Options) -> Vec<Planned> {
    let n_alloc = opts.allocators.len();
    let mut cells = Vec::new();
    for rep in 0..opts.reps {
        for &workload in &opts.workloads {
            for &threads in &opts.threads {
                for k in 0..n_alloc {
                    cells.push(Planned {
                        rep,
                        workload,
                        allocator: opts.allocators[(k + rep) % n_alloc],
                        threads,
                    });
                }
            }
        }
    }
    cells
}

/// The estimate of the time left. Each cell still to run is expected to take
/// what the same cell took in earlier repetitions, or — before its first run
/// — its prior cost (the workload's [`Workload::cost_s`] times the scale,
/// plus [`CELL_OVERHEAD_S`]) times the ratio of measured to prior time over
/// every cell finished so far. So from the second repetition on the estimate
/// is the sum of measured times, and in the first it is weighted by what
/// each remaining cell is expected to cost relative to those done.
struct Estimate {
    keys: Vec<(&'static str, &'static str, usize)>,
    prior: Vec<f64>,
    /// Per cell: total seconds measured over its finished runs, and how many.
    measured: HashMap<(&'static str, &'static str, usize), (f64, u32)>,
    prior_done: f64,
    took_done: f64,
}

impl Estimate {
    fn new(cells: &[Planned], scale: f64) -> Self {
        Self {
            keys: cells.iter().map(Planned::key).collect(),
            prior: cells
                .iter()
                .map(|c| c.workload.cost_s * scale + CELL_OVERHEAD_S)
                .collect(),
            measured: HashMap::new(),
            prior_done: 0.0,
            took_done: 0.0,
        }
    }

    /// Cell `i` (in plan order) took `took` seconds.
    fn finished(&mut self, i: usize, took: f64) {
        self.prior_done += self.prior[i];
        self.took_done += took;
        let m = self.measured.entry(self.keys[i]).or_insert((0.0, 0));
        m.0 += took;
        m.1 += 1;
    }

    /// Seconds the cells from index `next` on are expected to take.
    fn left(&self, next: usize) -> f64 {
        let calibration = if self.prior_done > 0.0 {
            self.took_done / self.prior_done
        } else {
            1.0
        };
        (next..self.keys.len())
            .map(|i| match self.measured.get(&self.keys[i]) {
                Some(&(sum, n)) => sum / f64::from(n),
                None => self.prior[i] * calibration,
            })
            .sum()
    }
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Columns of the terminal on stderr (80 if unknown).
fn terminal_width() -> usize {
    // SAFETY: an all-zero winsize is a valid value of this plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the valid pointer.
    let r = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 1 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

/// A one-line progress bar on stderr, updated after every cell: cells done /
/// total, time elapsed and the estimated time left ([`Estimate`]). Redrawn in
/// place on a terminal; otherwise (CI logs) a line per tenth of the cells or
/// per 30 seconds, whichever comes first.
struct Progress {
    total: usize,
    done: usize,
    start: Instant,
    tty: bool,
    enabled: bool,
    last_tenth: usize,
    last_line: Instant,
    estimate: Estimate,
}

impl Progress {
    fn new(cells: &[Planned], scale: f64, enabled: bool) -> Self {
        let now = Instant::now();
        Self {
            total: cells.len(),
            done: 0,
            start: now,
            tty: std::io::stderr().is_terminal(),
            enabled,
            last_tenth: 0,
            last_line: now,
            estimate: Estimate::new(cells, scale),
        }
    }

    /// Records that the next cell finished after `took` seconds.
    fn finished(&mut self, took: f64) {
        self.estimate.finished(self.done, took);
        self.done += 1;
    }

    fn show(&mut self, label: &str) {
        if !self.enabled {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let left = self.estimate.left(self.done);
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
        let line = format!(
            "[{bar}] {}/{} cells, {} elapsed, ~{} left  {label}",
            self.done,
            self.total,
            clock(elapsed),
            clock(left)
        );
        if self.tty {
            // Cut to the terminal's width: a wrapped line would not be
            // redrawn in place.
            let line: String = line.chars().take(terminal_width() - 1).collect();
            eprint!("\r\x1b[2K{line}");
        } else {
            let tenth = 10 * self.done / self.total.max(1);
            if tenth > self.last_tenth
                || self.done == 0
                || self.done == self.total
                || self.last_line.elapsed().as_secs() >= 30
            {
                self.last_tenth = tenth;
                self.last_line = Instant::now();
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

/// Most children kept waiting out their purge delay at once; more wait for
/// the oldest to finish. Short cells take a few tens of milliseconds, so
/// about ten of them fit in one [`final_rss::PURGE_WAIT`].
const MAX_SETTLING: usize = 16;

/// The sample of planned cell `c`, reporting a failure as it comes.
fn sample(c: &Planned, outcome: Result<Measure, String>, progress: &Progress) -> Sample {
    if let Err(e) = &outcome {
        progress.note(&format!(
            "FAILED {} {} {} threads rep {}: {e}",
            c.workload.name,
            c.allocator,
            c.threads,
            c.rep + 1
        ));
    }
    Sample {
        workload: c.workload.name,
        allocator: c.allocator,
        threads: c.threads,
        rep: c.rep + 1,
        outcome,
    }
}

/// Runs every cell of `opts`, interleaved (see [`plan`]).
///
/// A cell's process reports its workload done, then sleeps out the purge
/// delay before it measures its final RSS (`final_rss`). Meanwhile the next
/// cells run: otherwise the delay alone would add a third of a second to
/// every cell, several times what most of them take. A waiting process
/// does almost nothing (one short nudge of its allocator), and once
/// measured it holds until the parent lets it exit between two workloads,
/// so the teardown of its memory never overlaps a measured workload.
pub fn sweep(opts: &Options) -> Result<Vec<Sample>, String> {
    let cells = plan(opts);
    let mut progress = Progress::new(&cells, opts.scale, opts.progress);
    let mut samples: Vec<Option<Sample>> = cells.iter().map(|_| None).collect();
    let mut settling: VecDeque<(usize, Running)> = VecDeque::new();
    for (i, c) in cells.iter().enumerate() {
        let mut k = 0;
        while k < settling.len() {
            if settling[k].1.measured() {
                let (j, r) = settling.remove(k).expect("index in range");
                samples[j] = Some(sample(&cells[j], r.finish(), &progress));
            } else {
                k += 1;
            }
        }
        while settling.len() >= MAX_SETTLING {
            let (j, r) = settling.pop_front().expect("queue is full");
            samples[j] = Some(sample(&cells[j], r.finish(), &progress));
        }
        let cell = Cell {
            workload: c.workload,
            allocator: c.allocator,
            threads: c.threads,
            scale: opts.scale,
            timeout_s: opts.timeout_s,
            priority: opts.priority,
            fault: opts.fault,
            hold: true,
        };
        progress.show(&format!(
            "{} {} {}t rep {}/{}",
            c.workload.name,
            c.allocator,
            c.threads,
            c.rep + 1,
            opts.reps
        ));
        let began = Instant::now();
        match start(&cell) {
            Ok(mut running) => {
                running.wait_workload();
                settling.push_back((i, running));
            }
            Err(e) => samples[i] = Some(sample(c, Err(e), &progress)),
        }
        progress.finished(began.elapsed().as_secs_f64());
    }
    while let Some((j, r)) = settling.pop_front() {
        samples[j] = Some(sample(&cells[j], r.finish(), &progress));
    }
    progress.show("done");
    progress.finish();
    Ok(samples.into_iter().flatten().collect())
}
