#!/usr/bin/env bash
# ThreadSanitizer over the multithreaded tests: the stress test (waves of
# threads with cross-thread frees and thread exits), Shoal as the
# #[global_allocator] of ordinary threaded Rust code, and the library's unit
# tests. std is rebuilt with the sanitizer (-Zbuild-std) so that its
# synchronisation is instrumented too.
set -euxo pipefail
cd "$(dirname "$0")/.."

rustup component add rust-src --toolchain nightly
export CARGO_TARGET_DIR=target/tsan
# The release profile aborts on panic (for the C libraries); tests unwind.
# With -Zbuild-std cargo would then build std both ways and mix the two
# copies of core, so this run unwinds throughout.
export CARGO_PROFILE_RELEASE_PANIC=unwind
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
target=x86_64-unknown-linux-gnu
# halt_on_error: any report fails the run. The suppressions file names the
# one deliberate race and says why (see the comments in it).
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/.ci/tsan.supp"

build=(+nightly test --release -Zbuild-std --target "$target")

start=$(date +%s)
cargo "${build[@]}" --lib --test global_allocator --test stress --no-run
built=$(date +%s)
cargo "${build[@]}" --lib --test global_allocator
# The stress test runs timed waves of 8 threads on each of the four
# allocators (Shoal, its two ablations, GilAlloc), one allocator after the
# other, with a minimum number of waves whatever the clock says; under TSan a
# wave takes seconds, so the tests run one at a time rather than sharing the
# two cores.
cargo "${build[@]}" --test stress -- --test-threads=1 --nocapture
echo "tsan: build $((built - start)) s, tests $(($(date +%s) - built)) s"
