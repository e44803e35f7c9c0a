#!/usr/bin/env bash
# Instructions per request of one variant of app.py under uvicorn, counted by callgrind: the
# noise-free companion of run.py's CPU times (a shared machine moves those by several µs).
#
#   benches/asgi/instructions.sh VARIANT [N1 N2]      # VARIANT: bare, bare_cid, today, today_mp, shmtel
#
# The worker (uvicorn, one worker, asyncio, h11) runs under `valgrind --tool=callgrind` twice,
# serving N1 and then N2 requests (default 300 and 1300) over one keep-alive connection; the
# difference of the two totals over N2 - N1 is the cost of a request without the start-up.
# shmtel's rings are made large enough (64 MiB) that nothing is dropped without a collector.
# Extra environment (BENCH_*) is passed to the app. The worker gets run.py's fixed glibc malloc
# thresholds (MALLOC_ENV there). Installs Debian's valgrind when missing.
#   CONNS=32      clients on as many keep-alive connections (default 1); wrk's -c32 interleaves
#                 requests the same way
#   CACHE_SIM=1   callgrind's cache simulation too (--cache-sim=yes): first-level instruction
#                 and data misses per request, as callgrind's model of this CPU's caches has them
#   KEEP=DIR      keep the two callgrind outputs in DIR (callgrind_annotate DIR/cg-N2.out)
set -euo pipefail

variant=${1:?usage: instructions.sh VARIANT [N1 N2]}
n1=${2:-300}
n2=${3:-1300}
conns=${CONNS:-1}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
if ! command -v valgrind >/dev/null; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get install -y -q valgrind || { $sudo apt-get update -q && $sudo apt-get install -y -q valgrind; }
fi

work=$(mktemp -d /tmp/bench-asgi-cg.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Total instructions of a worker that served $1 requests.
count() {
    local n=$1 d="$work/$1"
    mkdir -p "$d/tally" "$d/regions"
    local port=$((20000 + RANDOM % 20000))
    (
        cd "$here"
        BENCH_VARIANT=$variant BENCH_TALLY_DIR=$d/tally BENCH_LOG_FILE=$d/app.log \
            SHMTEL_DIR=$d/regions SHMTEL_RING_BYTES=67108864 \
            MALLOC_MMAP_THRESHOLD_=524288 MALLOC_TRIM_THRESHOLD_=1048576 \
            exec valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
            ${CACHE_SIM:+--cache-sim=yes} \
            "$python" serve.py app:app --app-dir . --host 127.0.0.1 --port "$port" \
            --workers 1 --loop asyncio --http h11 --no-access-log --log-level warning
    ) >"$d/server.log" 2>&1 &
    local pid=$!
    "$python" "$here/drive.py" "$port" "$n" "$conns"
    kill -TERM "$pid"
    wait "$pid" || true
    local served
    served=$(cat "$d"/tally/* 2>/dev/null || echo "?")
    if [ "$served" != "$n" ]; then
        echo "instructions.sh: the worker counted $served requests, expected $n" >&2
        exit 1
    fi
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP" && cp "$d/cg.out" "$KEEP/cg-$n.out"
    fi
    awk '/^(summary|totals):/ {print $2; exit}' "$d/cg.out"
}

a=$(count "$n1")
b=$(count "$n2")
echo "$variant: $(( (b - a) / (n2 - n1) )) instructions per request (callgrind, $n1 and $n2 requests, $conns connections)"
if [ -n "${CACHE_SIM:-}" ]; then
    # events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
    misses() { awk '/^(summary|totals):/ {print $5, $6 + $7; exit}' "$work/$1/cg.out"; }
    read -r ia da <<<"$(misses "$n1")"
    read -r ib db <<<"$(misses "$n2")"
    echo "$variant: $(( (ib - ia) / (n2 - n1) )) I1 misses, $(( (db - da) / (n2 - n1) )) D1 misses per request (callgrind's cache model)"
fi
