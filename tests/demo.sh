#!/usr/bin/env bash
# `make demo`: a collector and a few load generators, end to end, in a throwaway directory.
#
#   1. start `shmtel collect` on a free 127.0.0.1 port, with its regions in a temp dir
#   2. run two `loadgen` processes (2 threads x 200,000 ops each) in parallel
#   3. check that /metrics adds their counters up exactly, and show part of /metrics
#   4. `shmtel dump` the regions while a rate-limited loadgen is still writing
#   5. a Python worker (the `shmtel` module, 4 threads) records metrics, a span and a log line;
#      /metrics shows its counters exactly
#   6. SIGTERM the collector and check that it exits 0
#
# Uses the binaries from `make build` (override with SHMTEL_BIN / SHMTEL_LOADGEN) and the Python
# of the venv that `make pyenv pybuild` set up (override with SHMTEL_PYTHON).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shmtel=${SHMTEL_BIN:-$root/target/release/shmtel}
loadgen=${SHMTEL_LOADGEN:-$root/target/release/examples/loadgen}
python=${SHMTEL_PYTHON:-$root/.venv/bin/python}

section() { printf '\n=== %s ===\n' "$*"; }
die() {
    printf 'demo: error: %s\n' "$*" >&2
    exit 1
}
# The first N lines of stdin. Reads all of it, so the writer never meets a closed pipe.
first_lines() { awk -v n="$1" 'NR <= n'; }

for exe in "$shmtel" "$loadgen"; do
    [[ -x $exe ]] || die "$exe not found: run \`make build\` first (or \`make demo\`)"
done
[[ -x $python ]] || die "$python not found: run \`make pyenv pybuild\` first (or \`make demo\`)"
"$python" -c 'import shmtel._native' 2>/dev/null ||
    die "the shmtel module is not installed in $python: run \`make pybuild\` (or \`make demo\`)"
for tool in curl jq python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run \`make deps\`"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/shmtel-demo.XXXXXX")
regions=$work/regions
mkdir -m 0700 "$regions"
collector_pid=
background_pids=()

cleanup() {
    local status=$?
    local pid
    for pid in "${background_pids[@]}" $collector_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ $status -ne 0 && -s $work/collector.log ]]; then
        printf '\n--- collector log (last 30 lines) ---\n' >&2
        tail -n 30 "$work/collector.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Sum of every sample of the counter family $1 (all label sets) in the exposition on stdin.
sum_family() {
    awk -v name="$1" '
        index($0, name) == 1 {
            rest = substr($0, length(name) + 1)
            if (rest !~ /^[{ ]/) next
            sub(/^(\{.*\})? +/, "", rest)
            split(rest, fields, " ")
            total += fields[1]
        }
        END { printf "%.0f\n", total }'
}

# Waits up to 5 s until /metrics shows loadgen_ops_total == $1.
wait_for_ops() {
    local want=$1 got=0
    for _ in $(seq 50); do
        got=$(curl -fsS --max-time 2 "$base/metrics" | sum_family loadgen_ops_total) || got=0
        if [[ $got == "$want" ]]; then
            echo "/metrics: sum of loadgen_ops_total = $got (expected $want): ok"
            return 0
        fi
        sleep 0.1
    done
    echo "/metrics: loadgen_ops_total lines:" >&2
    curl -fsS --max-time 2 "$base/metrics" | grep '^loadgen_ops_total' >&2 || true
    die "after 5 s /metrics shows loadgen_ops_total = $got, the loadgens reported $want"
}

section "1. start the collector"
for attempt in 1 2 3; do
    port=$(free_port)
    base=http://127.0.0.1:$port
    echo "\$ shmtel collect --dir $regions --listen 127.0.0.1:$port"
    "$shmtel" collect --dir "$regions" --listen "127.0.0.1:$port" \
        --state-file "$work/collector-state" >"$work/collector.log" 2>&1 &
    collector_pid=$!
    healthy=0
    for _ in $(seq 100); do
        if health=$(curl -fsS --max-time 1 "$base/healthz" 2>/dev/null); then
            healthy=1
            break
        fi
        kill -0 "$collector_pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ $healthy -eq 1 ]] && break
    # Not up: most likely someone took the port between our probe and its bind. Try another.
    echo "collector did not come up on port $port (attempt $attempt):" >&2
    tail -n 10 "$work/collector.log" >&2 || true
    kill -TERM "$collector_pid" 2>/dev/null || true
    wait "$collector_pid" 2>/dev/null || true
    collector_pid=
done
[[ -n $collector_pid ]] || die "the collector did not answer /healthz after 3 attempts"
echo "GET /healthz -> $health"

section "2. two loadgen processes in parallel (2 threads x 200000 ops each)"
echo "\$ loadgen --dir $regions --threads 2 --ops 200000   (twice)"
"$loadgen" --dir "$regions" --threads 2 --ops 200000 >"$work/loadgen-1.json" &
loadgen_1=$!
"$loadgen" --dir "$regions" --threads 2 --ops 200000 >"$work/loadgen-2.json" &
loadgen_2=$!
background_pids=("$loadgen_1" "$loadgen_2")
wait "$loadgen_1" || die "loadgen 1 failed"
wait "$loadgen_2" || die "loadgen 2 failed"
background_pids=()
for report in "$work/loadgen-1.json" "$work/loadgen-2.json"; do
    jq -c . "$report" || die "loadgen printed no valid JSON: $(cat "$report")"
done
expected_ops=$(jq -s 'map(.counters.loadgen_ops_total) | add' \
    "$work/loadgen-1.json" "$work/loadgen-2.json")

section "3. /metrics adds them up"
wait_for_ops "$expected_ops"
echo
echo "GET /metrics (loadgen_ and shmtel_ lines, first 40):"
curl -fsS --max-time 2 "$base/metrics" >"$work/metrics.txt"
{ grep -E '^(# (HELP|TYPE) )?(loadgen_|shmtel_)' "$work/metrics.txt" || true; } | first_lines 40
echo "($(wc -l <"$work/metrics.txt") lines in all)"

section "4. shmtel dump while a loadgen writes (1000 ops/s for 2 s)"
echo "\$ loadgen --dir $regions --threads 1 --ops 2000 --rate 1000 &"
"$loadgen" --dir "$regions" --threads 1 --ops 2000 --rate 1000 >"$work/loadgen-3.json" &
loadgen_3=$!
background_pids=("$loadgen_3")
sleep 1
echo "\$ shmtel dump --dir $regions | head -n 40"
"$shmtel" dump --dir "$regions" >"$work/dump.txt" || die "shmtel dump failed"
first_lines 40 <"$work/dump.txt"
echo "($(wc -l <"$work/dump.txt") lines in all)"
wait "$loadgen_3" || die "loadgen 3 failed"
background_pids=()
jq -c . "$work/loadgen-3.json" || die "loadgen printed no valid JSON: $(cat "$work/loadgen-3.json")"
expected_ops=$((expected_ops + $(jq '.counters.loadgen_ops_total' "$work/loadgen-3.json")))
wait_for_ops "$expected_ops"

section "5. a Python worker: shmtel.prometheus + Observability, 4 threads"
cat >"$work/worker.py" <<'PY'
import json
import os
import threading

from shmtel import LoggingConfig, LogLevel, Observability, TracingConfig
from shmtel.prometheus import Counter, Histogram

obs = Observability(
    tracing_config=TracingConfig(service_name="demo-python", sampling_ratio=1.0),
    logging_config=LoggingConfig(level=LogLevel.INFO),
)
orders = Counter("demo_orders", "Orders placed.", ["region"])
latency = Histogram("demo_checkout_seconds", "Checkout time.", buckets=(0.01, 0.1, 1))

def work(region: str, n: int) -> None:
    child = orders.labels(region)
    for i in range(n):
        with obs.start_span("checkout") as span:
            span.set_attribute("order.id", i)
            child.inc()
            latency.observe((i % 200) / 1000)
    obs.info("orders placed", region=region, count=n)

threads = [threading.Thread(target=work, args=(r, 5000)) for r in ("eu", "us", "ap", "sa")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"pid": os.getpid(), "orders": 4 * 5000}))
PY
echo "\$ SHMTEL_DIR=$regions python worker.py   (4 threads x 5000 orders, a span and an observation each)"
SHMTEL_DIR=$regions "$python" "$work/worker.py" >"$work/worker.json" || die "the Python worker failed"
jq -c . "$work/worker.json" || die "the Python worker printed no valid JSON: $(cat "$work/worker.json")"
expected_orders=$(jq '.orders' "$work/worker.json")
got=0
for _ in $(seq 50); do
    got=$(curl -fsS --max-time 2 "$base/metrics" | sum_family demo_orders_total) || got=0
    [[ $got == "$expected_orders" ]] && break
    sleep 0.1
done
[[ $got == "$expected_orders" ]] ||
    die "after 5 s /metrics shows demo_orders_total = $got, the Python worker recorded $expected_orders"
echo "/metrics: sum of demo_orders_total = $got (expected $expected_orders): ok"
echo
echo "GET /metrics (demo_ lines):"
curl -fsS --max-time 2 "$base/metrics" | grep -E '^demo_' | first_lines 30

section "6. stop the collector (SIGTERM)"
kill -TERM "$collector_pid"
for _ in $(seq 100); do
    kill -0 "$collector_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$collector_pid" 2>/dev/null; then
    die "the collector is still running 10 s after SIGTERM"
fi
collector_status=0
wait "$collector_pid" || collector_status=$?
collector_pid=
[[ $collector_status -eq 0 ]] || die "the collector exited with status $collector_status after SIGTERM"
echo "collector exited 0"
echo
echo "collector log (last 10 lines):"
tail -n 10 "$work/collector.log"

section "demo: ok"
