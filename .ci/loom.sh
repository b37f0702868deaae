#!/usr/bin/env bash
# Loom model checks of Shoal's lock-free protocols: the tagged Treiber stack,
# thread-cache refill/flush, cross-thread frees, thread exit, carving, pages
# (anchors, partial stacks, the drain's scavenge), the page heap (unit-map
# claims, releases and purges), the large-object mapping park and the typed
# object pool (`Pool<T>`).
# What each model covers, and what loom cannot see: loom_tests/README.md.
#
# By default every model runs at preemption bound 2 (the gate, as crossbeam
# and tokio use in CI) and then again at bound 3, which explores up to ten
# times more interleavings; four heavy three-thread models skip the bound-3
# pass (they say so), which keeps it to about a minute and a half here.
# Setting LOOM_MAX_PREEMPTIONS runs that one bound only.
set -euxo pipefail
cd "$(dirname "$0")/.."

# A separate target dir: `--cfg loom` changes the library, so sharing the
# default one would rebuild everything on every switch.
export CARGO_TARGET_DIR=target/loom
export RUSTFLAGS="--cfg loom -C debug-assertions"
# The teeth tests print the panic they expect; keep it to one line.
export RUST_BACKTRACE=0
bounds="${LOOM_MAX_PREEMPTIONS:-2 3}"

start=$(date +%s)
cargo test --release --test 'loom_*' --no-run
echo "loom: build $(($(date +%s) - start)) s"
for bound in $bounds; do
    t=$(date +%s)
    # One test at a time so that each model's printed wall time is its own.
    LOOM_MAX_PREEMPTIONS=$bound \
        cargo test --release --test 'loom_*' -- --nocapture --test-threads=1
    echo "loom: models at LOOM_MAX_PREEMPTIONS=$bound: $(($(date +%s) - t)) s"
done
