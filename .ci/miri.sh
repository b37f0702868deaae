#!/usr/bin/env bash
# Miri over the library's unit tests: undefined behaviour, strict provenance,
# Miri's data-race detector and weak-memory emulation, and — what loom cannot
# do — spurious failures of compare_exchange_weak (half of them fail here).
#
# Tests that Miri cannot run (mmap-backed segments, tens of thousands of
# blocks, pure arithmetic sweeps) carry `#[cfg_attr(miri, ignore = "why")]`
# or `cfg(not(miri))` next to them.
set -euxo pipefail
cd "$(dirname "$0")/.."

rustup component add miri rust-src --toolchain nightly
export CARGO_TARGET_DIR=target/miri
cargo +nightly miri setup

export MIRIFLAGS="-Zmiri-strict-provenance -Zmiri-compare-exchange-weak-failure-rate=0.5"
start=$(date +%s)
cargo +nightly miri test --lib
echo "miri: $(($(date +%s) - start)) s"
