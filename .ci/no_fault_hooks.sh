#!/usr/bin/env bash
# A normal build carries no fault hook: the release C libraries (plain and
# secure) and the main benchmark binary contain no symbol of `shoalloc::fault`
# (src/fault.rs is compiled only under cfg(shoalloc_fault), i.e. with the
# test-only `fault-injection` feature). The check has teeth: the same library built with
# the feature must show those symbols, or the grep is looking for the wrong
# thing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The default target dir, so the dependencies built for the tests are reused;
# only shoalloc and the C library are rebuilt (twice).
target=${CARGO_TARGET_DIR:-target}
lib=$target/release/libshoalloc.so

fault_symbols() { nm -C "$1" | grep -c 'shoalloc::fault::' || true; }

cargo build --release -p shoalloc-capi --features shoal/fault-injection
with=$(fault_symbols "$lib")
echo "with fault-injection: $with fault symbols in libshoalloc.so"
if [ "$with" -eq 0 ]; then
    echo "error: a fault-injection build shows no fault symbols; the check below would prove nothing" >&2
    exit 1
fi

cargo build --release -p shoalloc-capi -p shoalloc-capi-secure
without=$(fault_symbols "$lib")
echo "release build: $without fault symbols in libshoalloc.so"
secure_without=$(fault_symbols "$target/release/libshoalloc_secure.so")
echo "release build: $secure_without fault symbols in libshoalloc_secure.so"

cargo bench --bench scaling --no-run
bench=$(ls -t "$target"/release/deps/scaling-* | grep -v '\.d$' | head -n 1)
in_bench=$(fault_symbols "$bench")
echo "release build: $in_bench fault symbols in $(basename "$bench")"

if [ "$without" -ne 0 ] || [ "$secure_without" -ne 0 ] || [ "$in_bench" -ne 0 ]; then
    echo "error: a normal build contains fault hooks" >&2
    exit 1
fi
echo "no fault hooks in normal builds"
