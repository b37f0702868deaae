//! The secure pools' link checks have teeth: with `Fault::UncheckedPoolLinks`
//! armed, the writes into pooled blocks of `tests/misuse.rs` no longer end
//! in the "corrupted free list" abort (the unchecked walk crashes on the
//! forged address, or carries on); disarmed, in this same binary, they do.
//! Each run is a child process (this binary, re-executed).

#[path = "../../tests/pooled_misuse/mod.rs"]
mod pooled_misuse;

use shoalloc::internals::fault::{set, Fault};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const CASE: &str = "SHOALLOC_POOL_LINKS_CASE";
const ARMED: &str = "SHOALLOC_POOL_LINKS_ARMED";
const SIGABRT: i32 = 6;
const MESSAGE: &str = "shoalloc: corrupted free list";

#[test]
#[ignore = "run by the test below in a child process"]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    if std::env::var_os(ARMED).is_some() {
        // SAFETY: the fault only skips checks that abort; the child is a
        // throwaway process.
        unsafe { set(Fault::UncheckedPoolLinks, true) };
    }
    pooled_misuse::run(&case);
    println!("survived {case}");
}

fn run_child(case: &str, armed: bool) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--ignored", "--nocapture"])
        .env(CASE, case);
    if armed {
        cmd.env(ARMED, "1");
    }
    cmd.output().unwrap()
}

fn caught(out: &Output) -> bool {
    out.status.signal() == Some(SIGABRT) && String::from_utf8_lossy(&out.stderr).contains(MESSAGE)
}

#[test]
fn unchecked_pool_links_escape_the_misuse_check() {
    for (case, _, _) in pooled_misuse::CASES {
        let healthy = run_child(case, false);
        assert!(
            caught(&healthy),
            "{case}: the healthy run was not caught: {:?}\n{}",
            healthy.status,
            String::from_utf8_lossy(&healthy.stderr)
        );
        let faulty = run_child(case, true);
        assert!(
            !caught(&faulty),
            "{case}: still caught with the pools' link checks off: the check would not notice them missing"
        );
        println!("{case}: without the checks: {:?}", faulty.status);
    }
}
