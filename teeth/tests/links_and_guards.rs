//! The secure path's encoded links and guard pages have teeth: with
//! `Fault::PlainLinks` alone armed (links stored as bare addresses) a forged
//! link is followed, and with `Fault::NoGuardPages` alone armed the writes
//! around a segment's metadata land; disarmed, in this same binary, each
//! case of `tests/hardened_misuse` stops the process. Each run is a child process
//! (this binary, re-executed).

#[path = "../../tests/hardened_misuse/mod.rs"]
mod hardened_misuse;

use hardened_misuse::Stop;
use shoalloc::internals::fault::{set, Fault};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const CASE: &str = "SHOALLOC_HARDENED_CASE";
const ARMED: &str = "SHOALLOC_HARDENED_ARMED";
const SIGABRT: i32 = 6;
const SIGSEGV: i32 = 11;

#[test]
#[ignore = "run by the test below in a child process"]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        return;
    };
    if let Ok(fault) = std::env::var(ARMED) {
        let fault = match fault.as_str() {
            "PlainLinks" => Fault::PlainLinks,
            "NoGuardPages" => Fault::NoGuardPages,
            other => panic!("unknown fault {other}"),
        };
        // SAFETY: the faults only weaken the secure path's protections; the
        // child is a throwaway process, and the fault is armed before its
        // first segment is mapped.
        unsafe { set(fault, true) };
    }
    hardened_misuse::run(&case);
    println!("survived {case}");
}

/// Runs `case` in a child, with `fault` (a `Fault` variant's name) armed.
fn run_child(case: &str, fault: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--ignored", "--nocapture"])
        .env(CASE, case);
    if let Some(fault) = fault {
        cmd.env(ARMED, fault);
    }
    cmd.output().unwrap()
}

/// The one fault that switches off the protection `stop` names.
fn fault_for(stop: Stop) -> &'static str {
    match stop {
        Stop::CorruptedList => "PlainLinks",
        Stop::GuardPage => "NoGuardPages",
    }
}

fn stopped(out: &Output, stop: Stop) -> bool {
    match stop {
        Stop::CorruptedList => {
            out.status.signal() == Some(SIGABRT)
                && String::from_utf8_lossy(&out.stderr).contains("shoalloc: corrupted free list")
        }
        Stop::GuardPage => out.status.signal() == Some(SIGSEGV),
    }
}

#[test]
fn plain_links_and_missing_guards_let_the_misuse_through() {
    for (case, stop) in hardened_misuse::CASES {
        let healthy = run_child(case, None);
        assert!(
            stopped(&healthy, stop),
            "{case}: the healthy run was not stopped: {:?}\n{}",
            healthy.status,
            String::from_utf8_lossy(&healthy.stderr)
        );
        let faulty = run_child(case, Some(fault_for(stop)));
        assert!(
            String::from_utf8_lossy(&faulty.stdout).contains(&format!("survived {case}")),
            "{case}: still stopped with the protection off: the test would not notice it missing: {:?}\n{}",
            faulty.status,
            String::from_utf8_lossy(&faulty.stderr)
        );
    }
}
