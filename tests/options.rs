//! The switches of `src/options.rs` that the other tests do not cover:
//! `SHOALLOC_VERBOSE` (and `shoalloc::set_verbose`) report why an
//! allocation returned null; off, nothing is printed; an invalid value is
//! reported once and ignored. Each case runs in a child process (this test
//! binary, re-executed), since a switch is read once per process.

use shoalloc::Shoal;
use std::alloc::{GlobalAlloc, Layout};
use std::process::{Command, Output};

static HEAP: Shoal = Shoal::new();

const CHILD: &str = "SHOALLOC_OPTIONS_CHILD";
const REFUSED: &str = "shoalloc: out of memory: the OS refused a mapping of ";

/// In the child: asks for 64 TiB, which the OS refuses (the mapping is made
/// without `MAP_NORESERVE`), and checks that the answer is null.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    if case == "api" {
        shoalloc::set_verbose(true);
    }
    let layout = Layout::from_size_align(1 << 46, 4096).unwrap();
    // SAFETY: a valid, non-zero-size layout.
    let p = unsafe { HEAP.alloc(layout) };
    assert!(p.is_null(), "64 TiB were granted");
    // A second failure: an invalid value is still reported only once.
    // SAFETY: as above.
    let q = unsafe { HEAP.alloc(layout) };
    assert!(q.is_null());
    println!("child {case} done");
}

fn run(case: &str, verbose: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--ignored", "--nocapture"])
        .env(CHILD, case)
        .env_remove("SHOALLOC_VERBOSE");
    if let Some(v) = verbose {
        cmd.env("SHOALLOC_VERBOSE", v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("done"),
        "{case}: the child failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn verbose_says_why_an_allocation_failed() {
    let err = stderr(&run("env", Some("1")));
    assert!(err.contains(REFUSED), "no report: {err}");
    // The mapping is the request plus the huge block's header, rounded to
    // pages: at least 64 TiB, at most a segment more.
    let named: u64 = err
        .split(REFUSED)
        .nth(1)
        .and_then(|rest| rest.split(" bytes").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the report does not name the size: {err}"));
    assert!(
        (1u64 << 46..(1u64 << 46) + (4 << 20)).contains(&named),
        "the report names {named} bytes for a 64 TiB request: {err}"
    );
}

#[test]
fn set_verbose_turns_the_reports_on() {
    let err = stderr(&run("api", None));
    assert!(err.contains(REFUSED), "no report: {err}");
}

#[test]
fn without_verbose_a_failure_is_silent() {
    for value in [None, Some("0")] {
        let err = stderr(&run("env", value));
        assert!(!err.contains("shoalloc:"), "{value:?}: printed {err}");
    }
}

#[test]
fn an_invalid_verbose_value_is_reported_once_and_ignored() {
    let err = stderr(&run("env", Some("yes")));
    assert_eq!(
        err.matches("ignoring invalid SHOALLOC_VERBOSE").count(),
        1,
        "{err}"
    );
    assert!(
        !err.contains(REFUSED),
        "an invalid value turned it on: {err}"
    );
}
