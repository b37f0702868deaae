#!/usr/bin/env bash
# Instructions per allocator operation, counted by callgrind: deterministic,
# independent of machine load, and comparable across allocators.
#
# capi/bench/instr.c (compiled here with `cc -O2`) runs one operation in a
# loop: a malloc(32)/free pair, a mixed-size batch of 64 blocks, calloc(1,
# 256)/free, or realloc growth from 16 B to 64 KiB. Each (operation,
# allocator) cell runs the program twice under
#
#     LD_PRELOAD=<lib> valgrind --tool=callgrind --trace-children=no ... instr OP N
#
# at N1 and N2 = 3 N1 iterations, and reports (Ir(N2) - Ir(N1)) / ((N2 - N1)
# ops per iteration): start-up, the allocator's initialisation and exit
# cancel. Allocators: libshoalloc.so and libshoalloc_secure.so from this
# tree (the secure build is reported beside it, not counted as a peer),
# Debian's mimalloc, jemalloc and tcmalloc-minimal, and glibc's malloc (no
# preload).
#
# Callgrind, unlike memcheck, does not replace malloc, so the preloaded
# library is what the program calls; every run checks that (the program
# reports, through dladdr, the object its malloc, free, calloc and realloc
# come from). LD_PRELOAD is set on valgrind's launcher, which loads the
# library too (uncounted: the launcher only execs the tool), and reaches the
# program through the client environment valgrind builds; `valgrind ... env
# LD_PRELOAD=... instr` would measure `env` alone with --trace-children=no.
#
# Usage: bash capi/bench/instructions.sh     (env OUT=path, REBUILD=1)
# Writes papers/instructions.md (OUT overrides) and prints it. Builds
# libshoalloc.so and libshoalloc_secure.so if missing (REBUILD=1: always runs
# the cargo builds).
# Needs valgrind and cc; as root, missing peers are installed with apt-get; a
# peer still missing is skipped with a note.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$ROOT/papers/instructions.md}"
cd "$ROOT"
T_START=$EPOCHREALTIME

# ---- dependencies -----------------------------------------------------------
# shellcheck source=peers.sh
source "$ROOT/capi/bench/peers.sh"
tools=()
command -v valgrind >/dev/null || tools+=(valgrind)
command -v cc >/dev/null || tools+=(gcc libc6-dev)
if ((${#tools[@]})); then
    bench_install instructions.sh "${tools[@]}" || exit 1
fi
mapfile -t missing < <(peers_missing_pkgs)
if ((${#missing[@]})); then
    bench_install instructions.sh "${missing[@]}" ||
        echo "instructions.sh: going on without ${missing[*]}" >&2
    peers_locate
fi

# ---- the library ------------------------------------------------------------
SHOAL="$(shoalloc_lib_path)"
if [[ ! -f $SHOAL || ${REBUILD:-0} == 1 ]]; then
    echo "instructions.sh: cargo build --release -p shoalloc-capi" >&2
    SHOAL="$(shoalloc_build)"
fi
[[ -f $SHOAL ]] || { echo "instructions.sh: could not build libshoalloc.so" >&2; exit 1; }
STALE="$(find src capi/src Cargo.toml capi/Cargo.toml -newer "$SHOAL" -type f 2>/dev/null | sed -n 1p)" || true
[[ -z $STALE ]] || echo "instructions.sh: $STALE is newer than $SHOAL (REBUILD=1 rebuilds)" >&2
SECURE="$(dirname "$SHOAL")/libshoalloc_secure.so"
if [[ ! -f $SECURE || ${REBUILD:-0} == 1 ]]; then
    echo "instructions.sh: cargo build --release -p shoalloc-capi-secure" >&2
    cargo build --release -p shoalloc-capi-secure >/dev/null 2>&1 || true
fi
[[ -f $SECURE ]] || { echo "instructions.sh: could not build libshoalloc_secure.so" >&2; exit 1; }
SECURE_STALE="$(find src capi/src capi-secure Cargo.toml -newer "$SECURE" -type f 2>/dev/null | sed -n 1p)" || true
[[ -z $SECURE_STALE ]] || echo "instructions.sh: $SECURE_STALE is newer than $SECURE (REBUILD=1 rebuilds)" >&2

# The secure build is a column of its own, beside shoalloc and never one of
# the "other allocators" the ratios compare against.
ALLOCS=(shoalloc shoalloc-secure "${ALLOCS[@]:1}")
eval "$(declare -f preload_of | sed '1s/^preload_of/peers_preload_of/')"
preload_of() {
    if [[ $1 == shoalloc-secure ]]; then echo "$SECURE"; else peers_preload_of "$1"; fi
}

RUN=()
SKIPPED=()
for a in "${ALLOCS[@]}"; do
    if [[ $a == glibc || -n $(preload_of "$a") ]]; then RUN+=("$a"); else SKIPPED+=("$a"); fi
done
for a in "${SKIPPED[@]}"; do
    echo "instructions.sh: skipping $a (no ${PEER_SONAME[$a]}; Debian package ${PEER_PKG[$a]})" >&2
done

# ---- the program ------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/shoalloc-instr.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
CFLAGS=(-O2)
cc "${CFLAGS[@]}" -o "$WORK/instr" capi/bench/instr.c

# operation | N1 | description. N2 = 3 N1; N1 and N2 have the same number of
# digits, so even argument parsing costs the same in both runs.
OPS=(
    "pair|100000|malloc(32) + free, per pair"
    "mixed|1000|64 blocks of 16..1024 B, freed in another order; per malloc + free"
    "calloc|100000|calloc(1, 256) + free, per pair"
    "realloc|200|malloc(16), realloc to 1.5× the size up to 64 KiB, free; per realloc"
)
VG=(valgrind -q --tool=callgrind --trace-children=no --compress-strings=no --compress-pos=no)

# One callgrind run; prints "total-Ir ops-per-iteration" (or "fail fail"),
# keeps the profile. The program names the object its malloc, free, calloc
# and realloc are bound to: it must be the preloaded library (libc for glibc).
measure() { # alloc op n outfile
    local lib line total per obj want
    lib="$(preload_of "$1")"
    line="$(LD_PRELOAD="$lib" "${VG[@]}" --callgrind-out-file="$4" "$WORK/instr" "$2" "$3")" || line=""
    read -r _ _ per obj <<<"$line"
    total="$(awk '/^summary:/ { print $2 }' "$4" 2>/dev/null)"
    if [[ -z $total || -z $per ]]; then
        echo "instructions.sh: callgrind run failed: $1 $2 $3" >&2
        echo "fail fail"
        return
    fi
    if [[ -n $lib ]]; then want="$(readlink -f "$lib")"; else want="$(readlink -f "$(ldd "$WORK/instr" | awk '$1 == "libc.so.6" { print $3 }')")"; fi
    if [[ $(readlink -f "$obj" 2>/dev/null) != "$want" ]]; then
        echo "instructions.sh: $1: malloc is bound to $obj, not $want" >&2
        echo "fail fail"
        return
    fi
    echo "$total $per"
}

# Self Ir, inclusive Ir and calls received, per (object, function), from an
# uncompressed callgrind profile: "object<TAB>function<TAB>self<TAB>incl<TAB>calls".
profile() {
    awk '
        function base(p) { sub(/.*\//, "", p); return p }
        /^ob=/ { ob = base(substr($0, 4)); cob = ob; next }
        /^fn=/ { key = ob "\t" substr($0, 4); cob = ob; next }
        /^cob=/ { cob = base(substr($0, 5)); next }
        /^cfn=/ { callee = cob "\t" substr($0, 5); next }
        /^calls=/ { split(substr($0, 7), c, " "); calls[callee] += c[1]; pending = 1; next }
        /^[0-9+*-]/ {
            n = split($0, f, " "); v = (n >= 2) ? f[n] : 0
            if (pending) { incl[key] += v; pending = 0; cob = ob }
            else { self[key] += v; incl[key] += v }
            seen[key] = 1
        }
        END { for (k in seen) printf "%s\t%.0f\t%.0f\t%.0f\n", k, self[k], incl[k], calls[k] + 0 }
    ' "$1"
}

# Per-op difference of two profiles: "object<TAB>function<TAB>self<TAB>incl<TAB>calls" per op.
profile_delta() { # profile1 profile2 divisor
    awk -F'\t' -v d="$3" '
        NR == FNR { s[$1 FS $2] = $3; i[$1 FS $2] = $4; c[$1 FS $2] = $5; next }
        { k = $1 FS $2; printf "%s\t%s\t%.2f\t%.2f\t%.3f\n", $1, $2,
            ($3 - s[k]) / d, ($4 - i[k]) / d, ($5 - c[k]) / d }
    ' "$1" "$2"
}

declare -A PER TOTAL1 OPS_PER_ITER MEMFN REST
echo "instructions.sh: ${#OPS[@]} operations x ${#RUN[@]} allocators, 2 callgrind runs each" >&2
for spec in "${OPS[@]}"; do
    IFS='|' read -r op n1 _ <<<"$spec"
    n2=$((3 * n1))
    for a in "${RUN[@]}"; do
        read -r i1 per < <(measure "$a" "$op" "$n1" "$WORK/$op.$a.1")
        read -r i2 _ < <(measure "$a" "$op" "$n2" "$WORK/$op.$a.2")
        [[ $i1 != fail && $i2 != fail ]] || exit 1
        ops=$(((n2 - n1) * per))
        PER[$op,$a]=$(awk -v a="$i1" -v b="$i2" -v d="$ops" 'BEGIN { printf "%.1f", (b - a) / d }')
        TOTAL1[$op,$a]=$i1
        OPS_PER_ITER[$op]=$per
        profile "$WORK/$op.$a.1" >"$WORK/$op.$a.1.prof"
        profile "$WORK/$op.$a.2" >"$WORK/$op.$a.2.prof"
        profile_delta "$WORK/$op.$a.1.prof" "$WORK/$op.$a.2.prof" "$ops" >"$WORK/$op.$a.delta"
        # Copying and zeroing done by the C library's string functions.
        MEMFN[$op,$a]=$(awk -F'\t' '$1 ~ /^libc\.so/ && $2 ~ /^(__)?mem(cpy|move|set|pcpy)/ { s += $3 }
            END { printf "%.1f", s }' "$WORK/$op.$a.delta")
        REST[$op,$a]=$(awk -v t="${PER[$op,$a]}" -v m="${MEMFN[$op,$a]}" 'BEGIN { printf "%.1f", t - m }')
        echo "instructions.sh: $op $a: ${PER[$op,$a]} instructions per op" >&2
    done
done

# Repeatability: every N1 run again; the difference, divided by the number of
# operations a cell divides by, shows how far run-to-run variation moves it.
SAME=0 CELLS=0 WORST=-1 WORST_AT=""
for spec in "${OPS[@]}"; do
    IFS='|' read -r op n1 _ <<<"$spec"
    for a in "${RUN[@]}"; do
        read -r again _ < <(measure "$a" "$op" "$n1" "$WORK/repeat")
        [[ $again != fail ]] || exit 1
        CELLS=$((CELLS + 1))
        [[ $again != "${TOTAL1[$op,$a]}" ]] || SAME=$((SAME + 1))
        d=$(awk -v a="$again" -v b="${TOTAL1[$op,$a]}" -v n="$((2 * n1 * ${OPS_PER_ITER[$op]}))" \
            'BEGIN { d = (a - b) / n; if (d < 0) d = -d; printf "%.4f", d }')
        if awk -v d="$d" -v w="$WORST" 'BEGIN { exit !(d > w) }'; then WORST=$d WORST_AT="$a, $op"; fi
    done
done

T_END=$EPOCHREALTIME
SECS=$(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "%.0f", b - a }')

# ---- report -----------------------------------------------------------------
GLIBC_VER="$(ldd --version | awk 'NR == 1 { print $NF }')"
CPU="$(awk -F': *' '/^(model name|Hardware|cpu model|uarch)[[:space:]]*:/ { print $2; exit }' /proc/cpuinfo)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
DIRTY="$(git status --porcelain -- src capi/src Cargo.toml capi/Cargo.toml Cargo.lock 2>/dev/null | wc -l)" || DIRTY=0

peer_cols() { for a in "${RUN[@]}"; do [[ $a == shoalloc || $a == shoalloc-secure ]] || echo "$a"; done; }
mapfile -t PEERCOLS < <(peer_cols)

table() { # name of an associative array indexed [op,alloc]
    local -n cell=$1
    local spec op n1 desc a
    printf '| operation |'
    for a in "${ALLOCS[@]}"; do printf ' %s |' "$a"; done
    printf ' ops per iteration; N1 / N2 |\n|---|'
    for _ in "${ALLOCS[@]}"; do printf -- '---:|'; done
    printf -- '---|\n'
    for spec in "${OPS[@]}"; do
        IFS='|' read -r op n1 desc <<<"$spec"
        printf '| %s: %s |' "$op" "$desc"
        for a in "${ALLOCS[@]}"; do printf ' %s |' "${cell[$op,$a]:-n/a}"; done
        printf ' %s; %s / %s |\n' "${OPS_PER_ITER[$op]}" "$n1" $((3 * n1))
    done
}

lowest_other() { # array op → "allocator value" of the lowest non-shoalloc cell
    local -n cell=$1
    local a
    for a in "${PEERCOLS[@]}"; do echo "$a ${cell[$2,$a]}"; done | sort -k2,2g | sed -n 1p
}

ratio() { awk -v s="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", s / b; else print "inf" }'; }

{
    echo "# Instructions per allocator operation (callgrind)"
    echo
    echo "Generated by \`bash capi/bench/instructions.sh\` on $(date -u +%Y-%m-%d) in ${SECS} s."
    echo "Instructions (callgrind's Ir) per operation, single thread: each cell is"
    echo "(Ir(N2) − Ir(N1)) / (operations in the N2 − N1 extra iterations) of two runs of"
    echo "[\`instr.c\`](../capi/bench/instr.c) (\`cc ${CFLAGS[*]}\`), so process start-up, the"
    echo "allocator's initialisation and exit cancel. The counts include the loop around"
    echo "the calls (a few instructions) and whatever the allocator calls, such as the C"
    echo "library's memcpy for the copy in realloc; they say nothing about cache misses,"
    echo "the latency of atomic instructions, or contention."
    echo
    table PER
    echo
    if ((${#SKIPPED[@]})); then
        skipped=()
        for a in "${SKIPPED[@]}"; do skipped+=("$a (no ${PEER_SONAME[$a]}; Debian package ${PEER_PKG[$a]})"); done
        echo "Not measured: $(printf '%s, ' "${skipped[@]}" | sed 's/, $//')."
        echo
    fi
    echo "The same without the instructions spent in the C library's memcpy, memmove,"
    echo "mempcpy and memset (copying and zeroing; the allocator decides how much it"
    echo "copies, but not how fast):"
    echo
    table REST
    echo
    if ((${#PEERCOLS[@]})); then
        echo "shoalloc against the lowest of the other allocators (${PEERCOLS[*]}) on each"
        echo "row, computed from the two tables:"
        echo
        ratios=() wins=0
        for spec in "${OPS[@]}"; do
            IFS='|' read -r op _ _ <<<"$spec"
            read -r best bestv < <(lowest_other PER "$op")
            read -r rbest rbestv < <(lowest_other REST "$op")
            s=${PER[$op,shoalloc]}
            rs=${REST[$op,shoalloc]}
            r=$(ratio "$s" "$bestv")
            ratios+=("$r")
            if awk -v s="$s" -v b="$bestv" 'BEGIN { exit !(s <= b) }'; then wins=$((wins + 1)); fi
            echo "- $op: $s against $best's $bestv (${r}×); without mem* functions $rs against $rbest's $rbestv ($(ratio "$rs" "$rbestv")×)."
        done
        lo_ratio=$(printf '%s\n' "${ratios[@]}" | sort -g | sed -n 1p)
        hi_ratio=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -n 1)
        echo
        echo "In all, shoalloc executes ${lo_ratio}× to ${hi_ratio}× the instructions of the"
        echo "lowest other allocator per operation, and is itself the lowest on $wins of ${#OPS[@]} rows."
        echo
    fi

    echo "## Where a malloc(32)/free pair's instructions go"
    echo
    echo "Per pair, by object file, from the pair row's two profiles (\`???\`: code callgrind"
    echo "cannot place in an object file, such as the program's PLT stubs$(
        [[ -n ${PEER_LIB[tcmalloc]:-} ]] && readelf -S "${PEER_LIB[tcmalloc]}" 2>/dev/null | grep google_malloc >/dev/null &&
            echo ", and tcmalloc's malloc and free, which sit in a section of their own, \`google_malloc\`")):"
    echo
    printf '| object |'
    for a in "${RUN[@]}"; do printf ' %s |' "$a"; done
    printf '\n|---|'
    for _ in "${RUN[@]}"; do printf -- '---:|'; done
    printf '\n'
    mapfile -t OBJS < <(for a in "${RUN[@]}"; do
        awk -F'\t' '{ s[$1] += $3 } END { for (o in s) if (s[o] >= 0.5 || s[o] <= -0.5) print o }' "$WORK/pair.$a.delta"
    done | sort -u)
    for o in "${OBJS[@]}"; do
        printf '| %s |' "$o"
        for a in "${RUN[@]}"; do
            awk -F'\t' -v o="$o" '$1 == o { s += $3 } END { printf " %.1f |", s }' "$WORK/pair.$a.delta"
        done
        printf '\n'
    done
    printf '| calls to `__tls_get_addr` |'
    for a in "${RUN[@]}"; do
        awk -F'\t' '$1 ~ /^ld-linux/ && $2 == "__tls_get_addr" { c += $5 } END { printf " %.2f |", c }' "$WORK/pair.$a.delta"
    done
    printf '\n'
    echo
    echo "shoalloc's functions with the most instructions per pair (self: in the function"
    echo "and the code inlined into it; inclusive: with the functions it calls; calls: per"
    echo "pair):"
    echo
    echo "| function | object | self | inclusive | calls |"
    echo "|---|---|---:|---:|---:|"
    awk -F'\t' '$1 != "???" && $1 != "instr" && $3 >= 0.5' "$WORK/pair.shoalloc.delta" |
        sort -t$'\t' -k3,3gr | sed -n 1,8p |
        awk -F'\t' '{ f = $2; if (length(f) > 60) f = substr(f, 1, 57) "..."
            printf "| `%s` | %s | %.1f | %.1f | %.2f |\n", f, $1, $3, $4, $5 }'
    echo

    echo "## Set-up"
    echo
    echo "- Machine: $(uname -m), $CPU, $(nproc) cores, Linux $(uname -r)."
    echo "- glibc $GLIBC_VER; $(cc --version | sed -n 1p); $(valgrind --version)."
    echo "- shoalloc: \`${SHOAL#"$ROOT"/}\`, built $(date -u -r "$SHOAL" '+%Y-%m-%d %H:%M UTC') from commit $COMMIT$(
        if ((DIRTY)); then echo " with uncommitted changes to the library's sources"; else echo " (no uncommitted changes to the library's sources)"; fi
        [[ -z $STALE ]] || echo "; $STALE is newer than the library")."
    echo "- shoalloc-secure: \`${SECURE#"$ROOT"/}\` (\`ShoalSecure\`: block states, encoded links, guard pages; README, Hardening), built $(date -u -r "$SECURE" '+%Y-%m-%d %H:%M UTC')$(
        [[ -z $SECURE_STALE ]] || echo "; $SECURE_STALE is newer than the library"). Not one of the other allocators in the ratios above."
    for p in "${PEERS[@]}"; do
        if [[ -n ${PEER_LIB[$p]:-} ]]; then
            echo "- $p: Debian ${PEER_PKG[$p]} $(peer_version "$p"), \`${PEER_LIB[$p]}\`."
        else
            echo "- $p: not found (${PEER_SONAME[$p]}, Debian package ${PEER_PKG[$p]})."
        fi
    done
    echo "- glibc: no preload."
    echo "- Command: \`bash capi/bench/instructions.sh\`; each run in it:"
    echo "  \`LD_PRELOAD=<library> ${VG[*]} --callgrind-out-file=<file> instr <operation> <N>\`"
    echo "  (LD_PRELOAD empty for glibc). Callgrind does not replace malloc (memcheck"
    echo "  would), so no extra flag is needed; in every run the program checked with"
    echo "  \`dladdr\` that malloc, free, calloc and realloc come from the preloaded library"
    echo "  (from libc for glibc)."
    echo "- Repeatability: every N1 run was run twice; $SAME of $CELLS cells gave the same"
    if ((SAME == CELLS)); then
        echo "  count both times."
    else
        echo "  count both times; the largest difference, divided by the cell's number of"
        echo "  operations, is $(awk -v w="$WORST" 'BEGIN { printf "%.2f", w }') instructions per operation ($WORST_AT)."
    fi
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
