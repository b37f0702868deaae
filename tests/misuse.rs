//! Misuse that `Shoal` detects for free ends in a message on stderr and an
//! abort, never in corruption. Each case runs in a child process (this test
//! binary, re-executed) that must die with SIGABRT after printing the
//! message; surviving is the failure.

use shoalloc::Shoal;
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

static SHOAL: Shoal = Shoal::new();

/// Names the case the re-executed binary runs.
const CHILD: &str = "SHOALLOC_MISUSE_CHILD";
const SIGABRT: i32 = 6;

/// The misuse itself, in the child.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child() {
    let Ok(case) = std::env::var(CHILD) else {
        return;
    };
    let layout = Layout::from_size_align(32, 8).unwrap();
    match case.as_str() {
        "double-free-small" => {
            // SAFETY: deliberately not: the second dealloc is the misuse the
            // allocator must catch before anything is corrupted.
            unsafe {
                let p = SHOAL.alloc(layout);
                assert!(!p.is_null());
                SHOAL.dealloc(p, layout);
                SHOAL.dealloc(p, layout);
            }
        }
        _ => panic!("unknown case {case}"),
    }
    println!("survived {case}");
}

fn aborts_with(case: &str, message: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "{case}: expected SIGABRT, got {:?}\nstdout: {}\nstderr: {stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(message),
        "{case}: stderr lacks {message:?}: {stderr}"
    );
}

#[test]
fn an_immediate_double_free_of_a_small_block_aborts_with_a_message() {
    aborts_with("double-free-small", "shoalloc: double free");
}
