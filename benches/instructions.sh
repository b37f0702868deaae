#!/usr/bin/env bash
# Instructions per operation on Shoal's paths (callgrind, which is
# deterministic, unlike timings on a shared machine).
#
#   bash benches/instructions.sh [size ...]     the fast path: alloc/free pairs
#                                               (examples/fast_path.rs); default
#                                               sizes 16 32 256 1024
#   bash benches/instructions.sh --churn        the shared-pool path: rounds of
#                                               `live` allocations then their
#                                               frees (examples/churn.rs), below
#                                               and above a class's stack cap
#
# Each count runs the program at two iteration counts and divides the
# difference, so start-up and warm-up cancel out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$@" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

if [[ ${1:-} == --churn ]]; then
    cargo build --release -q --example churn
    bin=${CARGO_TARGET_DIR:-target}/release/examples/churn
    # live x size: 256 KiB (under the 2 MiB cap of a shard's stack),
    # 6.4 MB and 20 MB (far over it: blocks go home to their pages and come
    # back through the partial stack).
    for case in "4096 64" "100000 64" "20000 1024"; do
        set -- $case
        a=$(count "$bin" 10 "$1" "$2"); b=$(count "$bin" 20 "$1" "$2")
        echo "churn live=$1 size=$2: $(( (b - a) / (10 * $1) )) instructions per alloc+free (loop included)"
    done
    exit 0
fi

if [[ ${1:-} == --pool ]]; then
    cargo build --release -q --example pool_pair
    bin=${CARGO_TARGET_DIR:-target}/release/examples/pool_pair
    lo=100000 hi=200000
    for what in pool box mimalloc jemalloc; do
        a=$(count "$bin" $lo $what); b=$(count "$bin" $hi $what)
        echo "$what: $(( (b - a) / (hi - lo) )) instructions per box+drop (loop included)"
    done
    exit 0
fi

cargo build --release -q --example fast_path
bin=${CARGO_TARGET_DIR:-target}/release/examples/fast_path
lo=100000 hi=200000
for size in "${@:-16 32 256 1024}"; do
    for s in $size; do
        a=$(count "$bin" $lo "$s"); b=$(count "$bin" $hi "$s")
        echo "size $s: $(( (b - a) / (hi - lo) )) instructions per alloc+free pair (loop included)"
    done
done
