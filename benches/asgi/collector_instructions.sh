#!/usr/bin/env bash
# Instructions the collector spends per request of the ASGI bench app (shmtel variant), counted
# by callgrind: the noise-free companion of run.py's collector CPU per request.
#
#   benches/asgi/collector_instructions.sh [N1 N2]      # default 1000 and 3000 requests
#
# `shmtel collect` runs under `valgrind --tool=callgrind` with run.py's configuration (OTLP/HTTP
# to a loopback receiver that answers 200 to every POST, over keep-alive; logs as JSON lines to
# a file), beside a uvicorn worker (not under valgrind) that serves N requests over one
# keep-alive connection. Once the log file holds N lines and the collector has idled a few
# seconds, it is stopped; the difference of the totals of the N1 and N2 runs over N2 - N1 is
# the cost of a request (the polling of the idle seconds is in both and cancels out, up to the
# run's length). Rings of 64 MiB, so that the slower collector drops nothing.
#   KEEP=DIR   keep the callgrind outputs in DIR (callgrind_annotate DIR/collector-N2.out)
set -euo pipefail

n1=${1:-1000}
n2=${2:-3000}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
shmtel=${SHMTEL_BIN:-$root/target/release/shmtel}
[ -x "$shmtel" ] || { echo "$shmtel not found: run make build (or set SHMTEL_BIN)" >&2; exit 1; }
if ! command -v valgrind >/dev/null; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get install -y -q valgrind || { $sudo apt-get update -q && $sudo apt-get install -y -q valgrind; }
fi

work=$(mktemp -d /tmp/bench-asgi-collector-cg.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port() { echo $((20000 + RANDOM % 20000)); }

# The OTLP receiver: 200 to every POST, HTTP/1.1 keep-alive (as run.py's and a real one).
recv_port=$(port)
"$python" - "$recv_port" <<'EOF' &
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args: object) -> None:
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
EOF
pids+=($!)

# Total instructions of a collector that drained $1 requests.
count() {
    local n=$1 d="$work/$1"
    mkdir -p "$d/tally" "$d/regions"
    cat >"$d/collector.toml" <<EOF
[export.otlp]
endpoint = "http://127.0.0.1:$recv_port"
compression = "none"

[logs]
format = "json"

[logs.stdout]
enabled = false

[[logs.file]]
path = "$d/logs.jsonl"
max_bytes = 0
EOF
    valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$shmtel" collect \
        --config "$d/collector.toml" --dir "$d/regions" --listen "127.0.0.1:$(port)" \
        >"$d/collector.log" 2>&1 &
    local collector=$!
    pids+=("$collector")
    sleep 3
    local app_port
    app_port=$(port)
    (
        cd "$here"
        BENCH_VARIANT=shmtel BENCH_TALLY_DIR=$d/tally SHMTEL_DIR=$d/regions \
            SHMTEL_RING_BYTES=67108864 exec "$python" serve.py app:app --app-dir . \
            --host 127.0.0.1 --port "$app_port" --workers 1 --loop asyncio --http h11 \
            --no-access-log --log-level warning
    ) >"$d/server.log" 2>&1 &
    local server=$!
    pids+=("$server")
    "$python" "$here/drive.py" "$app_port" "$n"
    kill -TERM "$server"
    wait "$server" || true
    local lines=0
    for _ in $(seq 1 120); do
        lines=$(wc -l <"$d/logs.jsonl" 2>/dev/null || echo 0)
        [ "$lines" -ge "$n" ] && break
        sleep 1
    done
    sleep 5
    kill -TERM "$collector"
    wait "$collector" || true
    if [ "$lines" != "$n" ]; then
        echo "collector_instructions.sh: the collector wrote $lines log lines, expected $n" >&2
        exit 1
    fi
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP" && cp "$d/cg.out" "$KEEP/collector-$n.out"
    fi
    awk '/^(summary|totals):/ {print $2; exit}' "$d/cg.out"
}

a=$(count "$n1")
b=$(count "$n2")
echo "collector: $(( (b - a) / (n2 - n1) )) instructions per request (callgrind, $n1 and $n2 requests)"
