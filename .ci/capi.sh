#!/usr/bin/env bash
# The C allocator (capi/, libshoalloc.so): install what its tests need, build
# the release cdylib, run its tests.
#
#   bash .ci/capi.sh              install, build, test
#   bash .ci/capi.sh --deps-only  install only (for a CI that runs
#                                 `cargo test --workspace` itself)
#
# The tests need a C compiler, a CPython with its own test suite (Debian
# splits it into libpython3.X-testsuite), git, gzip and coreutils' sort. As
# root, whatever is missing is installed with apt-get; otherwise the missing
# packages are named and the script fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

has_python_tests() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import test.libregrtest, test.test_dict' >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v git >/dev/null 2>&1 || need+=(git)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
command -v sort >/dev/null 2>&1 || need+=(coreutils)
command -v ldd >/dev/null 2>&1 || need+=(libc-bin)
if ! has_python_tests; then
    if [[ -x /usr/bin/python3 ]]; then
        minor=$(/usr/bin/python3 -c 'import sys; print(sys.version_info[1])')
        need+=("libpython3.$minor-testsuite")
    else
        need+=(python3 python3-minimal)
    fi
fi

install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "capi.sh: missing packages: $*; run as root or apt-get install them" >&2
        exit 1
    fi
    echo "capi.sh: apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "$@"
}

if ((${#need[@]})); then
    install "${need[@]}"
fi
# A python3 installed just now still lacks its test suite: add it.
if ! has_python_tests; then
    minor=$(/usr/bin/python3 -c 'import sys; print(sys.version_info[1])')
    install "libpython3.$minor-testsuite"
fi
has_python_tests || {
    echo "capi.sh: no python3 with its test suite after installing" >&2
    exit 1
}

if [[ ${1:-} == --deps-only ]]; then
    exit 0
fi

cargo build --release -p shoalloc-capi
ls -l target/release/libshoalloc.so 2>/dev/null || true
cargo test --release -p shoalloc-capi
