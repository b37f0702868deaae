//! `shoalloc::stats()` moves as the heap does, and `SHOALLOC_SHOW_STATS`
//! prints the table at exit (in a child process: this binary, re-executed).
//! The checks live in `stats_check/`, which `teeth/tests/stats.rs` runs
//! under a fault to show that they fail when the stats miss refills.

mod stats_check;

use std::process::Command;

/// Names the case the re-executed binary runs.
const CHILD: &str = "SHOALLOC_STATS_CHILD";

/// One test runs every in-process check, so no other test's `Shoal`
/// allocations move the numbers between two snapshots.
#[test]
fn stats_follow_allocations_frees_and_collect() {
    stats_check::small_blocks_move_the_numbers(20_000).unwrap();
    stats_check::medium_objects_are_counted().unwrap();
    stats_check::huge_objects_are_counted().unwrap();
}

/// What the child does: a few allocations through `Shoal`, then exit.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let heap = shoalloc::Shoal::new();
    let layout = std::alloc::Layout::from_size_align(100, 8).unwrap();
    // SAFETY: a valid layout; freed once.
    unsafe {
        use std::alloc::GlobalAlloc;
        let p = heap.alloc(layout);
        assert!(!p.is_null());
        heap.dealloc(p, layout);
    }
}

fn run_child(show: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("SHOALLOC_SHOW_STATS", show)
        .output()
        .expect("spawn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn show_stats_prints_the_table_at_exit() {
    let (ok, stderr) = run_child("1");
    assert!(ok, "child failed:\n{stderr}");
    assert_eq!(
        stderr.matches("shoalloc statistics").count(),
        1,
        "one table at exit:\n{stderr}"
    );
    for needle in ["class", "refills", "mapped", "huge:"] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
}

#[test]
fn show_stats_off_prints_nothing() {
    let (ok, stderr) = run_child("0");
    assert!(ok, "child failed:\n{stderr}");
    assert!(!stderr.contains("shoalloc"), "printed:\n{stderr}");
}

#[test]
fn an_invalid_show_stats_warns_once_and_is_ignored() {
    let (ok, stderr) = run_child("yes");
    assert!(ok, "an invalid value must not be fatal:\n{stderr}");
    assert_eq!(
        stderr
            .matches("shoalloc: ignoring invalid SHOALLOC_SHOW_STATS")
            .count(),
        1,
        "one warning:\n{stderr}"
    );
    assert!(
        !stderr.contains("shoalloc statistics"),
        "printed:\n{stderr}"
    );
}

#[test]
fn print_stats_writes_the_table() {
    // `print_stats` writes to this process's stderr; the table's text is
    // checked through `write_table` into a string.
    let mut text = String::new();
    shoalloc::stats().write_table(&mut text).unwrap();
    assert!(text.starts_with("shoalloc statistics\n"), "{text}");
    assert!(text.contains("CAS retries"), "{text}");
}
