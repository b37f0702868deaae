//! Loom models of a page's life in its class (`page::Anchor` driven by
//! `ClassPool`): blocks sent home to their page racing a take of the page's
//! home list through the partial stack, a page whose blocks all come home
//! (`FULL → FREE` by a return, `LISTED → FREE` by the drain's scavenge)
//! racing other returns and takes, and the end of carving racing returns to
//! the still-`ACTIVE` page. Pages freed here go to the model's page heap (the
//! production `UnitMap`), from which the conservation check's drain carves
//! them again, so a page released while one of its blocks is out shows up as
//! a block in two places.
//!
//! Pages hold 2 or 3 blocks, so one run of returns fills a page.
#![cfg(loom)]

mod common;

use common::{
    assert_conserved, drain, expect_caught, model, pools, send_home, take, ModelPools, CLASS,
};
use loom::thread;
use shoalloc::internals::page::{FREE, FULL, LISTED};
use shoalloc::internals::pool::Backing;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Handle of page 1, the page every model here is about.
fn page1(pools: &ModelPools) -> u64 {
    pools.backing().page(1)
}

/// Pools over `pages` pages of `blocks` blocks whose page 1 is fully carved
/// and replaced, so `FULL` with every block out. Returns the pools, page 1's
/// blocks, and the block carved from page 2 while installing it.
fn with_full_page(pages: u32, blocks: u32) -> (Arc<ModelPools>, Vec<usize>, usize) {
    let pools = pools(pages, blocks);
    let out = take(&pools, blocks);
    assert_eq!(out, pools.backing().blocks_of(page1(&pools)));
    let extra = take(&pools, 1);
    assert_eq!(pools.backing().anchor(page1(&pools)).state(), FULL);
    (pools, out, extra[0])
}

/// Counts executions by outcome, to check that every outcome a model is
/// meant to cover was explored.
#[derive(Default)]
struct Outcomes(Vec<(&'static str, AtomicUsize)>);

impl Outcomes {
    fn new(names: &[&'static str]) -> Arc<Self> {
        Arc::new(Self(
            names.iter().map(|&n| (n, AtomicUsize::new(0))).collect(),
        ))
    }

    fn hit(&self, name: &str) {
        let (_, n) = self
            .0
            .iter()
            .find(|(k, _)| *k == name)
            .expect("a known outcome");
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints the counts and fails if an outcome never happened.
    fn check(&self, model: &str, executions: usize) {
        for (name, n) in &self.0 {
            let n = n.load(Ordering::Relaxed);
            println!("  {model}: {name} in {n} of {executions} executions");
            assert!(n > 0, "{model}: outcome {name:?} was never explored");
        }
    }
}

/// A run of returns into a `LISTED` page races a take of its home list. Page
/// 1 (3 blocks) is on the partial stack with `a` at home; T1 sends `b, c`
/// home (the page stays `LISTED`, now all home); T2 takes 2 blocks, which
/// pops page 1 and takes its whole home list: `[a]` if it comes first
/// (T1's return then lists the page again), else all three, cut to 2 with
/// the rest stacked as a batch. The page must end listed exactly when it
/// has blocks at home.
#[test]
fn page_flush_vs_refill() {
    let seen = Outcomes::new(&["take before the return", "take after the return"]);
    let s = seen.clone();
    let report = model(
        "page_flush_vs_refill",
        2,
        "T1: send_home [b, c] (LISTED -> LISTED) | T2: take 2 (partial: take_all of page 1)",
        move || {
            let (pools, blocks, extra) = with_full_page(2, 3);
            // SAFETY: the setup holds `a` and gives it up.
            unsafe { send_home(&pools, &blocks[..1]) };
            let p = pools.clone();
            let rest = blocks[1..].to_vec();
            // SAFETY: T1 holds `b, c` and gives them up.
            let t1 = thread::spawn(move || unsafe { send_home(&p, &rest) });
            let p = pools.clone();
            let t2 = thread::spawn(move || take(&p, 2));
            t1.join().unwrap();
            let got = t2.join().unwrap();
            let anchor = pools.backing().anchor(page1(&pools));
            if got == blocks[..1] {
                s.hit("take before the return");
                assert_eq!((anchor.state(), anchor.at_home()), (LISTED, 2));
            } else {
                s.hit("take after the return");
                assert_eq!(got.len(), 2);
                assert_eq!((anchor.state(), anchor.at_home()), (FULL, 0));
            }
            let mut held = got;
            held.push(extra);
            assert_conserved(&pools, &held);
        },
    );
    seen.check("page_flush_vs_refill", report.executions);
}

/// The return that lists a page races a take: page 1 is `FULL`; T1 sends
/// `a` home, which makes it `LISTED` and pushes it on the partial stack;
/// T2 takes one block — `a` through the partial stack if the push came
/// first, else a block carved from page 2.
#[test]
fn page_listed_vs_refill() {
    let seen = Outcomes::new(&["took a from the partial page", "carved instead"]);
    let s = seen.clone();
    let report = model(
        "page_listed_vs_refill",
        2,
        "T1: send_home [a] (FULL -> LISTED, push) | T2: take 1 (partial or carve)",
        move || {
            let (pools, blocks, extra) = with_full_page(2, 3);
            let p = pools.clone();
            let a = blocks[0];
            // SAFETY: T1 holds `a` and gives it up.
            let t1 = thread::spawn(move || unsafe { send_home(&p, &[a]) });
            let p = pools.clone();
            let t2 = thread::spawn(move || take(&p, 1));
            t1.join().unwrap();
            let got = t2.join().unwrap();
            s.hit(if got == [a] {
                "took a from the partial page"
            } else {
                "carved instead"
            });
            let mut held = got;
            held.extend_from_slice(&blocks[1..]);
            held.push(extra);
            assert_conserved(&pools, &held);
        },
    );
    seen.check("page_listed_vs_refill", report.executions);
}

/// A page whose blocks all come home in two returns races the drain's
/// scavenge. Page 1 is `FULL`; T1 sends `a` home, T2 sends `b, c` home
/// (the first return lists the page, the second leaves it `LISTED` with
/// every block home); T3 drains the class, which pops every partial page
/// and releases it to the page heap if all its blocks are home
/// (`free_if_empty`), else pushes it back. Page 1 must end either released
/// once (`FREE`) or listed with every block home.
#[test]
fn page_empties_vs_return() {
    let seen = Outcomes::new(&["scavenged", "left listed"]);
    let s = seen.clone();
    let report = model(
        "page_empties_vs_return",
        3,
        "T1: send_home [a] | T2: send_home [b, c] | T3: drain (scavenge)",
        move || {
            let (pools, blocks, extra) = with_full_page(2, 3);
            let p = pools.clone();
            let a = blocks[0];
            // SAFETY: T1 holds `a` and gives it up.
            let t1 = thread::spawn(move || unsafe { send_home(&p, &[a]) });
            let p = pools.clone();
            let rest = blocks[1..].to_vec();
            // SAFETY: T2 holds `b, c` and gives them up.
            let t2 = thread::spawn(move || unsafe { send_home(&p, &rest) });
            let p = pools.clone();
            let t3 = thread::spawn(move || drain(&p));
            t1.join().unwrap();
            t2.join().unwrap();
            t3.join().unwrap();
            let page = page1(&pools);
            let anchor = pools.backing().anchor(page);
            let released = pools.backing().life(page).released;
            if anchor.state() == FREE {
                s.hit("scavenged");
                assert_eq!(released, 1);
            } else {
                s.hit("left listed");
                assert_eq!((anchor.state(), anchor.at_home(), released), (LISTED, 3, 0));
            }
            assert_conserved(&pools, &[extra]);
        },
    );
    seen.check("page_empties_vs_return", report.executions);
}

/// A page that empties races a take of it and the scavenge. Page 1 is on
/// the partial stack with `a` at home; T1 sends `b, c` home; T2 takes 3
/// blocks and sends what it got home as one run; T3 drains the class. If T2
/// took all three blocks of page 1 its return makes the page `FREE` and
/// releases it (`FULL → FREE`); otherwise the page ends listed with every
/// block home, or scavenged by the drain. T2's take may also find the
/// partial stack empty (the drain holds the page) and carve from page 2.
#[test]
fn page_empties_vs_take() {
    let seen = Outcomes::new(&[
        "released by the return of its last blocks",
        "released by the scavenge",
        "left listed",
    ]);
    let s = seen.clone();
    let report = model(
        "page_empties_vs_take",
        3,
        "T1: send_home [b, c] | T2: take 3, send_home what it got | T3: drain (scavenge)",
        move || {
            let (pools, blocks, extra) = with_full_page(2, 3);
            // SAFETY: the setup holds `a` and gives it up.
            unsafe { send_home(&pools, &blocks[..1]) };
            let p = pools.clone();
            let rest = blocks[1..].to_vec();
            // SAFETY: T1 holds `b, c` and gives them up.
            let t1 = thread::spawn(move || unsafe { send_home(&p, &rest) });
            let p = pools.clone();
            let t2 = thread::spawn(move || {
                let got = take(&p, 3);
                // SAFETY: T2 holds what it took and gives it up.
                unsafe { send_home(&p, &got) };
                got
            });
            let p = pools.clone();
            let t3 = thread::spawn(move || drain(&p));
            t1.join().unwrap();
            let got = t2.join().unwrap();
            t3.join().unwrap();
            let page = page1(&pools);
            let anchor = pools.backing().anchor(page);
            let released = pools.backing().life(page).released;
            let mut all = got.clone();
            all.sort_unstable();
            if all == blocks {
                s.hit("released by the return of its last blocks");
                assert_eq!((anchor.state(), released), (FREE, 1));
            } else if anchor.state() == FREE {
                s.hit("released by the scavenge");
                assert_eq!(released, 1);
            } else {
                s.hit("left listed");
                assert_eq!((anchor.state(), anchor.at_home(), released), (LISTED, 3, 0));
            }
            assert_conserved(&pools, &[extra]);
        },
    );
    seen.check("page_empties_vs_take", report.executions);
}

/// The end of carving races a return to the carving page. Page 1 (2
/// blocks) is fully carved but still installed (`ACTIVE`); T1 sends both
/// blocks home in one run; T2 takes a block, which installs page 2 and ends
/// page 1's carving. Either `end_carving` finds both blocks home (`ACTIVE →
/// FREE`) or none (`ACTIVE → FULL`, and T1's return makes it `FREE`): page 1
/// is released exactly once either way.
#[test]
fn end_carving_vs_return() {
    model(
        "end_carving_vs_return",
        2,
        "T1: send_home [a, b] into the ACTIVE page | T2: take 1 (install page 2, end_carving page 1)",
        || {
            let pools = pools(2, 2);
            let blocks = take(&pools, 2);
            let p = pools.clone();
            let run = blocks.clone();
            // SAFETY: T1 holds `a, b` and gives them up.
            let t1 = thread::spawn(move || unsafe { send_home(&p, &run) });
            let p = pools.clone();
            let t2 = thread::spawn(move || take(&p, 1));
            t1.join().unwrap();
            let held = t2.join().unwrap();
            let page = page1(&pools);
            assert_eq!(pools.backing().anchor(page).state(), FREE);
            assert_eq!(pools.backing().life(page).released, 1);
            assert_conserved(&pools, &held);
        },
    );
}

/// The end of carving races two returns to the carving page, one block
/// each: depending on how many are home when page 1's carving ends, it
/// becomes `FULL` (the first return then lists it), `LISTED` (pushed by the
/// thread that ended the carving) or `FREE`. Page 1 must end listed with
/// both blocks home or released once.
#[test]
fn end_carving_vs_returns() {
    let seen = Outcomes::new(&["released", "left listed"]);
    let s = seen.clone();
    let report = model(
        "end_carving_vs_returns",
        2,
        "T1: send_home [a], send_home [b] | T2: take 1 (install page 2, end_carving page 1)",
        move || {
            let pools = pools(2, 2);
            let blocks = take(&pools, 2);
            let p = pools.clone();
            let run = blocks.clone();
            let t1 = thread::spawn(move || {
                for &b in &run {
                    // SAFETY: T1 holds the block and gives it up.
                    unsafe { send_home(&p, &[b]) };
                }
            });
            let p = pools.clone();
            let t2 = thread::spawn(move || take(&p, 1));
            t1.join().unwrap();
            let held = t2.join().unwrap();
            let page = page1(&pools);
            let anchor = pools.backing().anchor(page);
            let released = pools.backing().life(page).released;
            if anchor.state() == FREE {
                s.hit("released");
                assert_eq!(released, 1);
            } else {
                s.hit("left listed");
                assert_eq!((anchor.state(), anchor.at_home(), released), (LISTED, 2, 0));
            }
            assert_conserved(&pools, &held);
        },
    );
    seen.check("end_carving_vs_returns", report.executions);
}

/// Teeth: a return that, seeing every block of its page at home after its
/// `give_back` (a plain `at_home()` read), hands the page to the page heap
/// itself — the page is still `LISTED` on the partial stack, and neither
/// popped nor made `FREE` by `free_if_empty`'s CAS. Page 1 has `a, b` at
/// home; T1 sends `c` home and then releases the page; T2 takes 3 blocks,
/// which pops the page and takes its home list. When T1's read comes before
/// T2's take, T2 holds the page's blocks while its units are back in the
/// page heap, and the conservation check's drain carves them a second time.
#[test]
fn release_when_all_home_is_caught() {
    expect_caught(
        "release_when_all_home",
        2,
        "T1: send_home [c], then release the page if at_home() says full | T2: take 3",
        "conservation: block",
        || {
            let (pools, blocks, extra) = with_full_page(2, 3);
            // SAFETY: the setup holds `a, b` and gives them up.
            unsafe { send_home(&pools, &blocks[..2]) };
            let p = pools.clone();
            let c = blocks[2];
            let t1 = thread::spawn(move || {
                // SAFETY: T1 holds `c` and gives it up.
                unsafe { send_home(&p, &[c]) };
                let page = page1(&p);
                if p.backing().anchor(page).at_home() == p.backing().page_capacity(CLASS) {
                    // SAFETY: none — this is the mistake under test: the
                    // page is still on the partial stack, where any take
                    // may pop it and take its blocks.
                    unsafe { p.backing().release_page(page) };
                }
            });
            let p = pools.clone();
            let t2 = thread::spawn(move || take(&p, 3));
            t1.join().unwrap();
            let mut held = t2.join().unwrap();
            held.push(extra);
            assert_conserved(&pools, &held);
        },
    );
}
