#!/usr/bin/env bash
# Real programs on five C allocators, side by side in one run.
#
# Each program runs under LD_PRELOAD of libshoalloc.so, Debian's mimalloc 2.0,
# jemalloc 5 and tcmalloc-minimal (gperftools), and on glibc's own malloc.
# Every (program, allocator) cell is a fresh process, so its peak RSS is that
# allocator's alone. Repetitions are interleaved — rep 1 of every cell, then
# rep 2, ... — with the allocator order rotated each rep, so drift on a shared
# machine spreads over all allocators instead of biasing one. Each run's
# output is checksummed and compared with glibc's: a different answer is a
# bug, not a speed-up.
#
# Usage: bash capi/bench/preload.sh [REPS]       (default 5; env OUT=path)
# Writes the markdown table to papers/preload.md (OUT overrides) and prints it.
# Needs: /usr/bin/time, python3, gcc, git, the three peer libraries; as root
# it installs whatever is missing with apt-get.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPS="${1:-5}"
OUT="${OUT:-$ROOT/papers/preload.md}"
cd "$ROOT"

# ---- dependencies -----------------------------------------------------------
# shellcheck source=peers.sh
source "$ROOT/capi/bench/peers.sh"
mapfile -t missing < <(peers_missing_pkgs)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v gcc >/dev/null || missing+=(gcc)
command -v g++ >/dev/null || missing+=(g++)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v git >/dev/null || missing+=(git)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    bench_install preload.sh "${missing[@]}" || exit 1
    peers_locate
    if [[ -n $(peers_missing_pkgs) ]]; then
        echo "preload.sh: still missing after apt-get: $(peers_missing_pkgs | xargs)" >&2
        exit 1
    fi
fi

# ---- the library ------------------------------------------------------------
SHOAL="$(shoalloc_build)"
[[ -f $SHOAL ]] || { echo "preload.sh: could not build libshoalloc.so" >&2; exit 1; }


# ---- inputs -----------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/shoalloc-preload.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PY="$(python3 -c 'import sys; print(sys.executable)')"

# 1.5 M lines of "word number number" (~40 MB), deterministic.
awk 'BEGIN { srand(42); for (i = 0; i < 1500000; i++) {
        w = ""; n = 3 + int(rand() * 12);
        for (k = 0; k < n; k++) w = w sprintf("%c", 97 + int(rand() * 26));
        printf "%s %d %d\n", w, int(rand() * 100000), i } }' >"$WORK/lines.txt"

cat >"$WORK/objects.py" <<'EOF'
# Small-object churn: dicts, tuples, strings, lists built and dropped.
import json
rows = []
for i in range(300_000):
    rows.append({"id": i, "name": "user%d" % i, "tags": ["t%d" % (i % 7), "x" * (i % 40)]})
index = {r["name"]: r for r in rows}
blob = json.dumps(rows[:60_000])
back = json.loads(blob)
words = sorted(set(" ".join(r["tags"][1] + r["name"] for r in rows).split()))
total = sum(len(v["tags"][1]) for v in index.values()) + len(back) + len(words)
del rows, index, back
print(total)
EOF

cat >"$WORK/threads.py" <<'EOF'
# Four threads building and dropping containers; objects cross threads via a queue.
import queue, threading
q = queue.Queue(maxsize=64)
def producer(k):
    for i in range(1500):
        q.put([str(j) * 3 for j in range(i % 200)] + [{"k": k, "i": i}])
    q.put(None)
def consumer(out):
    done = n = 0
    while done < 2:
        item = q.get()
        if item is None:
            done += 1
            continue
        n += len(item) + sum(len(s) for s in item[:-1])
    out.append(n)
out = []
ts = [threading.Thread(target=producer, args=(k,)) for k in range(2)]
ts += [threading.Thread(target=consumer, args=(out,))]
def churn():
    for _ in range(40):
        d = {i: (i, str(i)) for i in range(20_000)}
        del d
ts += [threading.Thread(target=churn)]
for t in ts: t.start()
for t in ts: t.join()
print(out)
EOF

# A C translation unit with many small functions: gcc allocates throughout.
{
    for i in $(seq 1 400); do
        cat <<EOF
struct s$i { int a[$((i % 17 + 1))]; double d; };
static int helper$i(struct s$i *p, int n) {
    int acc = 0;
    for (int k = 0; k < n && k < $((i % 17 + 1)); k++) acc += p->a[k] * $i;
    return acc + (int)p->d;
}
int f$i(int x) { struct s$i v = { .d = x * 0.5 }; v.a[0] = x; return helper$i(&v, x) ^ $i; }
EOF
    done
} >"$WORK/unit.c"

# A git repository with 150 commits of a growing file.
(
    export HOME="$WORK" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@example.invalid
    export GIT_COMMITTER_NAME=c GIT_COMMITTER_EMAIL=c@example.invalid
    export GIT_AUTHOR_DATE=2024-01-01T00:00:00Z GIT_COMMITTER_DATE=2024-01-01T00:00:00Z
    git -c init.defaultBranch=main init -q "$WORK/repo"
    cd "$WORK/repo"
    for i in $(seq 1 150); do
        head -n $((i * 200)) "$WORK/lines.txt" | sort -k2,2n >data.txt
        sed -n "${i}~97p" "$WORK/lines.txt" >"part$((i % 10)).txt"
        git add -A
        git commit -q -m "commit $i"
    done
    git gc -q # packed once here, so every measured run repacks the same pack
)

# The project's own C and C++ programs: the classic allocator patterns
# (capi/bench/patterns.c), a C++ program of many small objects
# (objects.cpp) and the malloc-large pattern (large.c). Each checks its own
# data and prints a checksum that does not depend on the allocator.
gcc -O2 -pthread -o "$WORK/patterns" "$ROOT/capi/bench/patterns.c"
g++ -O2 -std=c++17 -pthread -o "$WORK/objects" "$ROOT/capi/bench/objects.cpp"
gcc -O2 -o "$WORK/large" "$ROOT/capi/bench/large.c"

# An SQLite workload: 200k rows inserted in batches, two indexes, joins,
# GROUP BY, string building and updates, in memory (the page cache and every
# row object are malloc'd).
{
    echo "PRAGMA cache_size = -65536;"
    echo "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, city INTEGER, score REAL);"
    echo "CREATE TABLE orders(id INTEGER PRIMARY KEY, user INTEGER, item TEXT, qty INTEGER);"
    echo "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)"
    echo "  INSERT INTO users SELECT i, printf('user%06d-%s', i, substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 26, 1 + i % 17)),"
    echo "  i % 997, (i * 7919) % 10007 / 10.0 FROM n;"
    echo "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000)"
    echo "  INSERT INTO orders SELECT i, 1 + (i * 48271) % 200000, printf('item-%d', i % 5003), 1 + i % 9 FROM n;"
    echo "CREATE INDEX users_city ON users(city);"
    echo "CREATE INDEX orders_user ON orders(user);"
    echo "SELECT city, count(*), round(avg(score), 3), max(name) FROM users GROUP BY city ORDER BY city LIMIT 20;"
    echo "SELECT u.city, sum(o.qty), count(DISTINCT o.item) FROM users u JOIN orders o ON o.user = u.id"
    echo "  WHERE u.city < 300 GROUP BY u.city ORDER BY 2 DESC LIMIT 20;"
    echo "UPDATE users SET name = name || '-' || city WHERE id % 3 = 0;"
    echo "SELECT length(group_concat(name, ',')) FROM (SELECT name FROM users ORDER BY name DESC);"
    echo "DELETE FROM orders WHERE qty > 6;"
    echo "SELECT count(*), sum(qty), min(item), max(item) FROM orders;"
} >"$WORK/work.sql"

# redis-server on a Unix socket, driven by redis-benchmark (16 clients,
# pipelines of 8, 256-byte values, twelve command types, 100k requests each);
# the keys are fixed, so the final database is the same on every run.
# Debian's redis-server links jemalloc, so its "glibc" cell is jemalloc.
cat >"$WORK/redis.sh" <<'EOF'
sock="$PWD/redis.sock"
redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no --logfile /dev/null --dir "$PWD" &
pid=$!
for _ in $(seq 200); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-benchmark -s "$sock" -q -n 100000 -c 16 -P 8 -d 256 \
    -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,lrange_100,mset >/dev/null
redis-cli -s "$sock" dbsize
redis-cli -s "$sock" llen mylist
redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1
wait "$pid"
EOF

# name | description | command (run by bash -c in $WORK; stdout is checksummed)
PROGRAMS=(
    "python-objects|CPython 3 (PYTHONMALLOC=malloc): 300k dicts/strings, json, sort|PYTHONMALLOC=malloc '$PY' objects.py"
    "python-threads|CPython 3 (PYTHONMALLOC=malloc): 4 threads, objects passed through a queue|PYTHONMALLOC=malloc '$PY' threads.py"
    "sort|GNU sort -S 64M --parallel=2 of 1.5 M lines (40 MB)|LC_ALL=C sort -S 64M --parallel=2 -k2,2n -k1,1 lines.txt"
    "gzip|gzip -6 of the same 40 MB (few allocations: a control)|gzip -n -6 -c lines.txt"
    "gcc|gcc -O2 -c of a 400-function C file|gcc -O2 -c unit.c -o unit.o && echo compiled"
    "git|git log -p --stat of 150 commits, then git gc|cd repo && git log -p --stat && git gc -q"
    "redis|redis-server (Debian's links jemalloc: its glibc cell is jemalloc) under redis-benchmark, 12 commands x 100k requests|bash redis.sh"
    "sqlite|sqlite3 in memory: 600k rows inserted, indexed, joined, grouped, updated|sqlite3 :memory: <work.sql"
    "cxx-objects|C++ (objects.cpp): maps, hash maps, lists, shared_ptr graphs, 2 threads passing messages|./objects"
    "churn|C (patterns.c churn): bignum-style single-thread churn of 16-512 B numbers (cfrac's shape)|./patterns churn"
    "larson|C (patterns.c larson): 2 threads, random slots of 16-1024 B, arrays change hands each round|./patterns larson"
    "xmalloc|C (patterns.c xmalloc): producer/consumer through a ring, every free remote|./patterns xmalloc"
    "large|C (large.c): 20 buffers of 5-25 MiB replaced 2000 times, every page written|./large"
)

# ---- measurement ------------------------------------------------------------
declare -A TIMES RSS SUM BAD RATIO
run_cell() { # program-index allocator
    local spec=${PROGRAMS[$1]} alloc=$2
    local name=${spec%%|*} cmd=${spec##*|}
    local lib tf out t0 t1
    lib="$(preload_of "$alloc")"
    tf="$WORK/time.txt"
    out="$WORK/out.txt"
    t0=$EPOCHREALTIME
    (cd "$WORK" && HOME="$WORK" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
        /usr/bin/time -f '%M' -o "$tf" env LD_PRELOAD="$lib" bash -c "$cmd" >"$out")
    t1=$EPOCHREALTIME
    local secs rss sum
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    rss=$(tail -n 1 "$tf")
    sum=$(cksum <"$out" | cut -d' ' -f1)
    TIMES[$name,$alloc]+="$secs "
    RSS[$name,$alloc]+="$rss "
    if [[ $alloc == glibc && -z ${SUM[$name]:-} ]]; then SUM[$name]=$sum; fi
    SUM[$name,$alloc]=$sum
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "preload.sh: $REPS reps x ${#PROGRAMS[@]} programs x ${#ALLOCS[@]} allocators" >&2
for ((rep = 0; rep < REPS; rep++)); do
    for ((p = 0; p < ${#PROGRAMS[@]}; p++)); do
        for ((a = 0; a < ${#ALLOCS[@]}; a++)); do
            alloc=${ALLOCS[$(((a + rep) % ${#ALLOCS[@]}))]}
            run_cell "$p" "$alloc"
        done
    done
    echo "preload.sh: rep $((rep + 1))/$REPS done" >&2
done

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }

# ---- report -----------------------------------------------------------------
{
    echo "# Real programs on shoalloc and its peers (LD_PRELOAD)"
    echo
    echo "Generated by \`bash capi/bench/preload.sh $REPS\` on $(date -u +%Y-%m-%d): $(nproc) cores"
    echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)."
    echo "Every cell is a fresh process; $REPS interleaved repetitions (allocator order rotated"
    echo "each repetition); wall time is the median with min–max in brackets, peak RSS"
    echo "(\`/usr/bin/time %M\`) the median. Allocators: \`libshoalloc.so\` from this tree"
    echo "(\`target/release/libshoalloc.so\`), Debian's libmimalloc2.0 ($(peer_version mimalloc)),"
    echo "libjemalloc2 ($(peer_version jemalloc)), libtcmalloc-minimal4 ($(peer_version tcmalloc)), and glibc $(ldd --version | head -n1 | awk '{print $NF}')"
    echo "malloc without preload. Each run's output was compared with glibc's."
    echo "Load average (1/5/15 min) at the start: $LOAD_START; at the end: $LOAD_END — on a"
    echo "shared machine, other work inflates the spread; gzip, which hardly allocates, shows"
    echo "how much."
    echo
    echo "## Wall time (s)"
    echo
    printf '| program |'
    for a in "${ALLOCS[@]}"; do printf ' %s |' "$a"; done
    printf ' fastest peer | shoalloc / fastest peer |\n|---|'
    for _ in "${ALLOCS[@]}"; do printf -- '---|'; done
    printf -- '---|---|\n'
    for spec in "${PROGRAMS[@]}"; do
        name=${spec%%|*}
        printf '| %s |' "$name"
        for a in "${ALLOCS[@]}"; do
            m=$(echo "${TIMES[$name,$a]}" | median)
            mm=$(echo "${TIMES[$name,$a]}" | minmax)
            flag=""
            [[ ${SUM[$name,$a]} == "${SUM[$name]}" ]] || flag=" **output differs**"
            printf ' %s (%s)%s |' "$m" "$mm" "$flag"
        done
        s=$(echo "${TIMES[$name,shoalloc]}" | median)
        best="" bt=""
        for a in "${ALLOCS[@]}"; do
            [[ $a == shoalloc ]] && continue
            t=$(echo "${TIMES[$name,$a]}" | median)
            if [[ -z $bt ]] || awk -v t="$t" -v b="$bt" 'BEGIN { exit !(t < b) }'; then
                best=$a bt=$t
            fi
        done
        RATIO[$name]=$(awk -v s="$s" -v b="$bt" 'BEGIN { printf "%.2f", s / b }')
        printf ' %s | %s |\n' "$best" "${RATIO[$name]}"
    done
    echo
    printf '%s\n' "${RATIO[@]}" | awk '{ l += log($1); n++ } END {
        printf "Geomean of shoalloc / fastest peer over %d programs: **%.2f**.\n", n, exp(l / n) }'
    slow=""
    for spec in "${PROGRAMS[@]}"; do
        name=${spec%%|*}
        if awk -v r="${RATIO[$name]}" 'BEGIN { exit !(r > 1.15) }'; then
            slow+="${slow:+, }$name (${RATIO[$name]}×)"
        fi
    done
    echo "Slower than 1.15× the fastest peer: ${slow:-none}."
    echo
    echo "## Peak RSS (MiB)"
    echo
    printf '| program |'
    for a in "${ALLOCS[@]}"; do printf ' %s |' "$a"; done
    printf ' shoalloc / glibc |\n|---|'
    for _ in "${ALLOCS[@]}"; do printf -- '---|'; done
    printf -- '---|\n'
    for spec in "${PROGRAMS[@]}"; do
        name=${spec%%|*}
        printf '| %s |' "$name"
        for a in "${ALLOCS[@]}"; do
            m=$(echo "${RSS[$name,$a]}" | median)
            awk -v k="$m" 'BEGIN { printf " %.1f |", k / 1024 }'
        done
        s=$(echo "${RSS[$name,shoalloc]}" | median)
        g=$(echo "${RSS[$name,glibc]}" | median)
        awk -v s="$s" -v g="$g" 'BEGIN { printf " %.2f |\n", s / g }'
    done
    echo
    echo "## Programs"
    echo
    for spec in "${PROGRAMS[@]}"; do
        name=${spec%%|*}
        rest=${spec#*|}
        echo "- **$name**: ${rest%%|*}"
    done
    echo
    echo "Peak RSS of gcc and git includes their child processes' largest one only"
    echo "(\`time\` reports the maximum of the waited-for tree's largest process)."
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
