# Shared by the benchmark scripts in capi/bench/ (source it, do not run it):
# where the peer allocators live, which Debian package brings each, how
# missing packages are installed, and how libshoalloc.so is built.
#
#   PEERS                       mimalloc jemalloc tcmalloc
#   PEER_PKG[peer]              its Debian package
#   PEER_LIB[peer]              path of its shared library, "" while absent
#   peers_locate                fills PEER_LIB from what is installed
#   peers_missing_pkgs          prints the packages of the absent peers
#   bench_install TAG PKG...    as root: apt-get install PKG...; otherwise
#                               names them on stderr and returns 1
#   peer_version PEER           the installed package version (dpkg-query)
#   shoalloc_build              cargo build --release -p shoalloc-capi, prints
#                               the path of libshoalloc.so
#   shoalloc_lib_path           where that build puts libshoalloc.so
#   ALLOCS                      every allocator compared, in report order
#   preload_of ALLOC            what LD_PRELOAD must name for it: $SHOAL
#                               (set by the caller), a peer's library, or ""
#                               for glibc (nothing preloaded)

PEERS=(mimalloc jemalloc tcmalloc)
declare -A PEER_PKG=(
    [mimalloc]=libmimalloc2.0 [jemalloc]=libjemalloc2 [tcmalloc]=libtcmalloc-minimal4
)
declare -A PEER_SONAME=(
    [mimalloc]=libmimalloc.so.2 [jemalloc]=libjemalloc.so.2 [tcmalloc]=libtcmalloc_minimal.so.4
)
declare -A PEER_LIB=()

ALLOCS=(shoalloc mimalloc jemalloc tcmalloc glibc)
preload_of() {
    case $1 in
    shoalloc) echo "$SHOAL" ;;
    glibc) echo "" ;;
    *) echo "${PEER_LIB[$1]:-}" ;;
    esac
}

peers_locate() {
    local p f
    for p in "${PEERS[@]}"; do
        PEER_LIB[$p]=""
        # Debian's multiarch directory (x86_64-linux-gnu, aarch64-linux-gnu, ...).
        for f in /usr/lib/*-linux-gnu*/"${PEER_SONAME[$p]}" /usr/lib/"${PEER_SONAME[$p]}"; do
            if [[ -e $f ]]; then
                PEER_LIB[$p]=$f
                break
            fi
        done
    done
}

peers_missing_pkgs() {
    local p
    for p in "${PEERS[@]}"; do
        [[ -n ${PEER_LIB[$p]:-} ]] || echo "${PEER_PKG[$p]}"
    done
}

bench_install() { # TAG PKG...
    local tag=$1
    shift
    (($#)) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "$tag: missing $*; install them (apt-get install $*)" >&2
        return 1
    fi
    echo "$tag: installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null &&
        apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

peer_version() {
    dpkg-query -W -f='${Version}' "${PEER_PKG[$1]}" 2>/dev/null || echo "?"
}

shoalloc_build() {
    cargo build --release -p shoalloc-capi --message-format=json 2>/dev/null |
        grep -o '"[^"]*/libshoalloc\.so"' | tail -n 1 | tr -d '"'
}

shoalloc_lib_path() {
    local dir
    dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)" || dir=""
    echo "${dir:-${CARGO_TARGET_DIR:-target}}/release/libshoalloc.so"
}

peers_locate
