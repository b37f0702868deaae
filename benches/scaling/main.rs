//! `cargo bench --bench scaling`: side-by-side scaling benchmarks of `shoal`,
//! its ablations, the `gil` baseline and the system, mimalloc and jemalloc
//! allocators, on workloads that separate allocator designs.
//!
//! ```text
//! cargo bench --bench scaling                          # default sweep (1,2,4 threads, 5 reps, 12% sizes), 2-4 min on 2 cores
//! cargo bench --bench scaling -- --csv out.csv         # the same, plus one CSV row per run
//! cargo bench --bench scaling -- --full                # long sweep (1,2,4,8,16 threads, full sizes) + LD_PRELOAD programs
//! cargo bench --bench scaling -- --smoke               # every workload x allocator once, for CI
//! cargo bench --bench scaling -- --workloads larson,xmalloc --allocators shoal,mimalloc --threads 1,2
//! cargo bench --bench scaling -- --help
//! ```
//!
//! `--quick` is accepted as the old name of the default sweep. While cells
//! run, a progress bar on stderr shows cells done / total and the time left,
//! estimated from the cells finished so far (see `runner`).
//!
//! # Method
//! - Every (workload, allocator, threads) cell runs in a **fresh process**:
//!   this binary re-executes itself with a hidden `--cell` argument and the
//!   allocator's name in `SHOALLOC_BENCH_ALLOC`, which the dispatching global
//!   allocator ([`dispatch`]) reads before the first allocation. The parent
//!   reads the child's peak RSS from `wait4`'s rusage; the child reports its
//!   operation count, wall time and final RSS.
//! - **Final RSS** is what the process still holds once the workload freed
//!   everything and the allocator had time to give memory back
//!   ([`final_rss`]). Allocators purge freed memory only after a delay
//!   (shoal's default is 100 ms, mimalloc's 10 ms), most of them from inside
//!   their own calls, so the child sleeps 300 ms after the workload, then
//!   nudges the allocator on its main thread (8 rounds of 256 allocations
//!   of 64 B and of 4 KiB each, then their frees: more than any thread
//!   cache serves alone), then reads `/proc/self/statm`. No
//!   allocator-specific collect function is called. The parent starts the
//!   next cell as soon as a child reports its workload done, so the wait
//!   overlaps later cells instead of adding 0.3 s to each; a child that has
//!   measured holds until the parent lets it exit between two workloads, so
//!   tearing down its memory never overlaps a measured workload (see
//!   `runner::sweep`).
//! - Cells are **interleaved**: each repetition runs every cell once, the
//!   allocators of a (workload, threads) pair back to back (rotated per
//!   repetition), so drift on a shared machine hits all allocators alike.
//!   Reports give the median and the min–max over repetitions.
//! - Workloads verify their own results; a cell that fails is reported as
//!   failed and never counted.
//! - Results go to the terminal (tables), optionally a CSV (one row per run),
//!   and — for unfiltered default or `--full` runs — `papers/results.md` and
//!   `papers/figures/*.svg`, including the project's goals evaluated on the
//!   data of the same run.

#[path = "../common/allocators.rs"]
mod allocators;
mod cli;
mod csv;
mod dispatch;
mod final_rss;
mod machine;
mod report;
mod runner;
mod svg;
mod workloads;

#[global_allocator]
static GLOBAL: dispatch::Dispatch = dispatch::Dispatch;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(cli::Command::Cell(cell)) => runner::child_main(&cell),
        Ok(cli::Command::Help) => print!("{}", cli::HELP),
        Ok(cli::Command::List) => {
            println!("workloads:");
            for w in workloads::ALL {
                println!("  {:<14} {}", w.name, w.about);
            }
            println!(
                "allocators: {}",
                dispatch::names().collect::<Vec<_>>().join(", ")
            );
        }
        Ok(cli::Command::Sweep(opts)) => {
            if let Err(e) = sweep(&opts) {
                eprintln!("scaling: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("scaling: {e}\n\n{}", cli::HELP);
            std::process::exit(2);
        }
    }
}

fn sweep(opts: &cli::Options) -> Result<(), String> {
    if !dispatch::env_is_valid() {
        return Err(format!("{} names no known allocator", dispatch::ENV_VAR));
    }
    let machine = machine::Machine::probe();
    eprintln!(
        "scaling: {} mode, {} workloads x {} allocators x threads {:?} x {} reps; {} cores ({}); * marks threads > cores",
        opts.mode.name(),
        opts.workloads.len(),
        opts.allocators.len(),
        opts.threads,
        opts.reps,
        machine.cores,
        machine.cpu,
    );
    if let Some(load) = machine
        .load_start
        .split(' ')
        .next()
        .and_then(|l| l.parse::<f64>().ok())
    {
        if load > machine.cores as f64 / 2.0 {
            eprintln!(
                "scaling: note: load average {load} on {} cores — other work will add noise",
                machine.cores
            );
        }
    }
    if opts.preload {
        eprintln!(
            "scaling: after the cells, real programs under LD_PRELOAD (about 8 more minutes on 2 cores; not in the estimate of the time left)"
        );
    }
    let samples = runner::sweep(opts)?;
    let summary = report::Summary::new(&samples, opts);
    print!("{}", report::terminal(&summary, &machine));
    if let Some(path) = &opts.csv {
        csv::write(path, &samples, machine.cores)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("scaling: wrote {}", path.display());
    }
    if let Some(dir) = &opts.papers {
        report::write_papers(dir, &summary, &machine)
            .map_err(|e| format!("writing {}: {e}", dir.display()))?;
        eprintln!(
            "scaling: wrote {}/results.md and {}/figures/",
            dir.display(),
            dir.display()
        );
    }
    let failed = samples.iter().filter(|s| s.outcome.is_err()).count();
    if opts.preload {
        run_preload(opts.reps)?;
    }
    if failed > 0 {
        return Err(format!("{failed} run(s) failed (see above)"));
    }
    Ok(())
}

/// Real C programs on libshoalloc.so and the Debian peers, side by side
/// (`capi/bench/preload.sh`, which writes `papers/preload.md`): the end of
/// unfiltered `--full` runs, or of any run with `--preload`.
fn run_preload(reps: usize) -> Result<(), String> {
    let root = env!("CARGO_MANIFEST_DIR");
    eprintln!("scaling: running real programs under LD_PRELOAD (capi/bench/preload.sh {reps})");
    let status = std::process::Command::new("bash")
        .arg("capi/bench/preload.sh")
        .arg(reps.to_string())
        .current_dir(root)
        .status()
        .map_err(|e| format!("starting capi/bench/preload.sh: {e}"))?;
    if !status.success() {
        return Err(format!("capi/bench/preload.sh failed: {status}"));
    }
    Ok(())
}
