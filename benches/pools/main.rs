//! `cargo bench --bench pools`: `shoalloc::Pool<T>` against plain
//! allocation (`Box`, `String`, `Vec<u8>` from the global allocator) and
//! against four object-pool crates (`object-pool`, `lockfree-object-pool` in
//! two of its kinds, `opool`, `sharded-slab`), each on shoal, mimalloc and
//! the system allocator, in one run.
//!
//! ```text
//! cargo bench --bench pools                     # default: threads 1,2, 4 reps; ~3 min on 2 cores; writes papers/pools.md
//! cargo bench --bench pools -- --smoke          # every cell once, small (about 20 s)
//! cargo bench --bench pools -- --oversubscribed # also 4 threads
//! cargo bench --bench pools -- --workloads messages --variants plain,shoalloc-pool --threads 2
//! cargo bench --bench pools -- --help
//! ```
//!
//! # Why
//! A pool pays off when it does less than the allocator would: no size-class
//! lookup, no free-path metadata lookup, and for buffers no growth, since a
//! pooled `String` or `Vec` keeps its capacity. Whether it does on a fast
//! allocator has to be measured, on the workloads where the project expects
//! pools to matter: boxed numbers (`numeric`), short strings (`strings`) and
//! packets passed between threads (`messages`), modelled on the scaling
//! benchmark's workloads of the same names.
//!
//! # Method
//! As in the scaling benchmark (see its `main.rs`): each (workload, variant,
//! allocator, threads) cell runs in a fresh process with the allocator chosen
//! by `SHOALLOC_BENCH_ALLOC` through the shared dispatcher; cells are
//! interleaved over repetitions; reports give medians and the min–max; peak
//! RSS comes from `wait4`. The workloads are written once, generic over the
//! variants ([`variants`]), so every variant does the same work and the same
//! verification. No final-RSS measurement here: a pool holds its objects
//! until it is dropped by design, so only the peak says something.

#[path = "../common/allocators.rs"]
mod allocators;
mod cli;
#[path = "../scaling/dispatch.rs"]
mod dispatch;
#[path = "../scaling/machine.rs"]
mod machine;
mod report;
mod runner;
mod variants;
mod workloads;

#[global_allocator]
static GLOBAL: dispatch::Dispatch = dispatch::Dispatch;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(cli::Command::Cell(cell)) => runner::child_main(&cell),
        Ok(cli::Command::Help) => print!("{}", cli::HELP),
        Ok(cli::Command::List) => list(),
        Ok(cli::Command::Sweep(opts)) => {
            if let Err(e) = sweep(&opts) {
                eprintln!("pools: {e}");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("pools: {e}\n\n{}", cli::HELP);
            std::process::exit(2);
        }
    }
}

fn list() {
    println!("workloads:");
    for w in workloads::Workload::ALL {
        println!("  {:<10} {}", w.name(), w.about());
    }
    println!("variants:");
    for v in variants::ALL {
        println!("  {:<22} {}", v.name, v.about);
    }
    let known: Vec<_> = dispatch::names()
        .filter(|n| cli::ALLOCATORS.contains(n))
        .collect();
    println!("allocators: {}", known.join(", "));
}

fn sweep(opts: &cli::Options) -> Result<(), String> {
    if !dispatch::env_is_valid() {
        return Err(format!("{} names no known allocator", dispatch::ENV_VAR));
    }
    let machine = machine::Machine::probe();
    eprintln!(
        "pools: {} workloads x {} variants x {} allocators x threads {:?} x {} reps, scale {}; {} cores ({}), load {}",
        opts.workloads.len(),
        opts.variants.len(),
        opts.allocators.len(),
        opts.threads,
        opts.reps,
        opts.scale,
        machine.cores,
        machine.cpu,
        machine.load_start,
    );
    let began = std::time::Instant::now();
    let samples = runner::sweep(opts);
    let summary = report::Summary::new(&samples, opts);
    print!("{}", report::terminal(&summary, &machine));
    if let Some(path) = &opts.papers {
        let md = report::markdown(&summary, &machine, began.elapsed().as_secs_f64());
        std::fs::write(path, md).map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("pools: wrote {}", path.display());
    }
    match summary.failed() {
        0 => Ok(()),
        n => Err(format!("{n} run(s) failed (see above)")),
    }
}
