#!/usr/bin/env bash
# Instructions per alloc/free pair on Shoal's fast path (callgrind, which is
# deterministic, unlike timings on a shared machine): runs
# examples/fast_path.rs at two pair counts and divides the difference.
#
#   bash benches/instructions.sh [size ...]     default: 16 32 256 1024
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
cargo build --release -q --example fast_path
bin=${CARGO_TARGET_DIR:-target}/release/examples/fast_path
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" "$1" "$2" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
lo=100000 hi=200000
for size in "${@:-16 32 256 1024}"; do
    for s in $size; do
        a=$(count $lo "$s"); b=$(count $hi "$s")
        echo "size $s: $(( (b - a) / (hi - lo) )) instructions per alloc+free pair (loop included)"
    done
done
