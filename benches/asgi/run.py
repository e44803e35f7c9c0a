"""End-to-end ASGI benchmark: a Starlette app under uvicorn, bare and instrumented, loaded by wrk.

Per worker count and per round, each variant of `app.py` (bare, today, today_mp, shmtel) gets a
fresh set of processes, all started side by side before the round's first measurement:

- an OTLP/HTTP receiver on loopback (a thread of this process) that keeps the body of every
  request and, after the measured run, decodes each ExportTraceServiceRequest with
  `opentelemetry-proto` and counts spans per service and name (a trace backend runs elsewhere:
  its decoding does not belong on the workers' cores);
- for `shmtel`, `shmtel collect` with a config of its own: Prometheus `/metrics` on 127.0.0.1
  (scraped every second by this script), `[export.otlp]` to the receiver, logs as JSON lines to
  a file (`[[logs.file]]`, stdout off); for `today` and `today_mp` the app's own `/metrics` is
  scraped every second instead;
- `uvicorn --workers N --loop asyncio --http h11 --no-access-log` (`--http httptools` to compare)
  on 127.0.0.1, started through `serve.py` (uvicorn's own CLI, with TCP_NODELAY on the workers'
  connections: see there why).

Then each variant gets a warm-up (`wrk`, 2 s), and the measured runs follow: `wrk -t1 -c32
-d<seconds> --latency` with a Lua script that counts the requests wrk sends, each variant in turn,
`--slices` times (in an order shuffled for each slice, seeded), with a pause of
`--settle` seconds after each run for the exports it caused to end. This machine is shared: its
speed drifts by 10-40 % over tens of seconds, which a round of 10 s runs per variant (as before)
could not tell from the variants' differences; runs of a few seconds, alternating, see the same
drift, and each is paired with bare's run of the same slice. Worker and collector CPU come from
/proc/<pid>/stat (utime + stime) just before and just after each measured run (and this script's
own, the receiver's and the scraper's, for the log). The variants that are not under load are
idle (their collector wakes at most 20 times a second; today's BatchSpanProcessor sends what is
left in its queue, under 512 spans, up to 5 s after its run, its default schedule delay, which
may fall in another variant's run). At the end of the round each uvicorn is
stopped (SIGTERM: lifespan shutdown flushes today's BatchSpanProcessor, and each worker writes
the number of requests it received, counted by `app.py`'s RequestTally outside any
instrumentation).

Exactness: the requests served (the tallies, warm-up included) must lie between wrk's completed
and sent counts (requests still in flight when wrk stops are served, unless its closing sockets
reset them), and the requests counted by the metrics (the collector's `http_requests_total` for
shmtel, the multiprocess files for today_mp), the spans at the receiver (a server and a child span
per request) and the log lines must all equal the requests served.

The table shows medians over all runs (rounds x slices), paired ratios and differences against
bare's run of the same slice, and the least CPU; when bare_cid ran, a line below it pairs shmtel
with bare_cid's runs the same way (the floor of any middleware that returns a correlation id). With
`--pin auto` (the default) and one worker, the server runs on CPU 0, wrk, this script and the
receiver on CPU 1, and the collector where the scheduler puts it (as a deployed collector beside
pinned workers would run; `--collector-cpu server` pins it to the worker's CPU, the worst case,
`load` to wrk's); with more workers than one CPU holds nothing is pinned. uvicorn's workers share
one listening socket, and the first to wake accepts every connection wrk opens at once: a run's
connections land on one to all of them, at random, which on two CPUs moves a request's cost by
half. The runs record each worker's share of the CPU, and a second table compares the variants at
the same number of busy workers.
Every variant's workers run with the same fixed glibc malloc thresholds (`MALLOC_ENV`; `--malloc
default` leaves glibc's dynamic ones, under which each worker lands at random in one of two modes
~20 µs per request apart).

    .venv/bin/python benches/asgi/run.py --seconds 5 --rounds 2 --slices 4 --workers 1,4
    .venv/bin/python benches/asgi/run.py --smoke          # exactness only, ~2 s per variant

Outputs a markdown table on stdout and JSON (`--json`, default `<target>/bench-asgi.json`).
Exits 1 when a check of exactness failed (speed is reported, never asserted).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VARIANTS = ("bare", "today", "today_mp", "shmtel")
# Run only when named (`--variants bare,bare_cid,shmtel`): the bare app plus the x-correlation-id
# response header, the floor under shmtel's middleware (app.py).
EXTRA_VARIANTS = ("bare_cid",)
ROUTE = "/users/{user_id}"
SERVER_SPAN = f"GET {ROUTE}"
CHILD_SPAN = "load_user"
LOG_MESSAGE = "user fetched"
CONNECTIONS = 32
WARMUP_SECONDS = 2
# glibc malloc's thresholds for the workers of every variant (`--malloc fixed`, the default).
# asyncio receives into a 256 KiB buffer per read (`sock.recv(256 * 1024)`), above glibc's
# initial mmap threshold (128 KiB). glibc raises that threshold the first time `free` returns an
# mmapped chunk; `realloc` shrinking one (as the read's bytes object is) does not. So a worker
# either never maps (the buffer comes from the heap's top) or maps and unmaps every read, with 2
# page faults and ~20 µs more CPU per request, depending on what it happened to allocate first:
# with 4 workers, bare's rounds were 120-124 or 143-145 µs per request at random. Fixed
# thresholds put every worker of every variant in the first mode (no faults).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"}
SETTLE_TIMEOUT = 30.0
STARTUP_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY_SPY = "py-spy==0.4.3"

# Counts the requests wrk sends (a request() function makes wrk call it for every request).
WRK_LUA = """
sent_requests = 0
local threads = {}
local req = nil
function setup(thread) table.insert(threads, thread) end
function init(args) req = wrk.format() end
function request()
  sent_requests = sent_requests + 1
  return req
end
function done(summary, latency, requests)
  local sent = 0
  for _, t in ipairs(threads) do sent = sent + t:get("sent_requests") end
  io.write(string.format("SENT %d\\n", sent))
end
"""


def log(msg: str) -> None:
    print(f"[bench-asgi {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- tools -----------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed with apt-get when missing."""
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found: installing Debian's package wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], env=env).returncode:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, check=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], env=env, check=True)
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("wrk is still missing after apt-get install wrk")
    return path


def ensure_py_spy() -> str:
    path = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if Path(path).is_file():
        return path
    log(f"installing {PY_SPY}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", PY_SPY], check=True)
    return str(Path(sys.executable).parent / "py-spy")


def shmtel_bin() -> Path:
    if os.environ.get("SHMTEL_BIN"):
        return Path(os.environ["SHMTEL_BIN"])
    return target_dir() / "release" / "shmtel"


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ProcCounters:
    """What the kernel counts for a set of processes: CPU (clock ticks), faults, switches."""

    utime: int = 0
    stime: int = 0
    minflt: int = 0
    vcsw: int = 0  # voluntary context switches (the process waited: epoll, a lock)
    ivcsw: int = 0  # involuntary ones (preempted: another task took its CPU)

    @property
    def ticks(self) -> int:
        return self.utime + self.stime

    def __sub__(self, other: ProcCounters) -> ProcCounters:
        return ProcCounters(
            *(
                getattr(self, f) - getattr(other, f)
                for f in ("utime", "stime", "minflt", "vcsw", "ivcsw")
            )
        )

    def __add__(self, other: ProcCounters) -> ProcCounters:
        return ProcCounters(
            *(
                getattr(self, f) + getattr(other, f)
                for f in ("utime", "stime", "minflt", "vcsw", "ivcsw")
            )
        )


def proc_counters(pids: list[int]) -> ProcCounters:
    """The sum of /proc/<pid>/stat and /status counters over `pids` (a gone pid counts 0)."""
    total = ProcCounters()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total.minflt += int(fields[7])
        total.utime += int(fields[11])
        total.stime += int(fields[12])
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total.vcsw += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                total.ivcsw += int(line.split()[1])
    return total


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), ""


def collector_samples(port: int, name: str) -> list[Any]:
    """The samples called `name` on the collector's /metrics (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


# -- the OTLP receiver ---------------------------------------------------------------------------


class Receiver:
    """OTLP/HTTP traces on 127.0.0.1: keeps each request's body, counts spans per (service, name).

    The receiver stands in for a trace backend, which runs on other machines: during a measured
    run it only reads each request and answers it, and the bodies are decoded (with the official
    protobuf definitions) when the counts are asked for, after the run. Decoding them as they
    arrive would put a few µs of this script's CPU per request on the cores the workers use (two
    spans per request walked in Python), in the variants that export (today's and shmtel) and
    not in the bare ones.
    """

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        self.request_type = ExportTraceServiceRequest
        self.lock = threading.Lock()
        self.spans: Counter[tuple[str, str]] = Counter()
        self.bodies: list[tuple[bytes, bool]] = []  # (body, gzipped), not yet decoded
        self.requests = 0
        self.errors = 0
        receiver = self
        response = ExportTraceServiceResponse().SerializeToString()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                gzipped = self.headers.get("content-encoding", "") == "gzip"
                with receiver.lock:
                    receiver.bodies.append((body, gzipped))
                    receiver.requests += 1
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(response)))
                self.end_headers()
                self.wfile.write(response)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def decode_pending(self) -> None:
        """Decode the bodies received so far into the span counts (a body that does not decode
        as an ExportTraceServiceRequest counts as an error, and its spans are missing)."""
        with self.lock:
            bodies, self.bodies = self.bodies, []
        counts: Counter[tuple[str, str]] = Counter()
        errors = 0
        for body, gzipped in bodies:
            try:
                req = self.request_type.FromString(gzip.decompress(body) if gzipped else body)
            except Exception:
                errors += 1
                continue
            for rs in req.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in rs.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for ss in rs.scope_spans:
                    counts.update((service, span.name) for span in ss.spans)
        with self.lock:
            self.spans.update(counts)
            self.errors += errors

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, service: str) -> Counter[str]:
        self.decode_pending()
        with self.lock:
            return Counter({name: n for (s, name), n in self.spans.items() if s == service})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- processes -------------------------------------------------------------------------------------


class Proc:
    """A child in a process group of its own, output to a log file; stop() signals the group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 40) -> str:
        return f"--- {self.name} log ---\n" + "\n".join(self.log().splitlines()[-n:])

    def stop(self, timeout: float = 30.0) -> int | None:
        status = self.popen.poll()
        if status is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                status = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                status = None
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.wait(timeout)
        self._log.close()
        return status


def wait_for(what: str, check: Callable[[], str | None], timeout: float) -> str | None:
    """Poll `check` until it returns None; returns its last complaint after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        problem = check()
        if problem is None or time.monotonic() >= deadline:
            return None if problem is None else f"{what}: {problem}"
        time.sleep(0.2)


# -- wrk -------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    completed: int
    sent: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(out: str) -> WrkResult:
    def num(pattern: str) -> re.Match[str]:
        m = re.search(pattern, out, re.M)
        if m is None:
            raise RuntimeError(f"wrk output without {pattern!r}:\n{out}")
        return m

    total = num(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),")
    pct = {
        m.group(1): float(m.group(2)) * _UNITS[m.group(3)]
        for m in re.finditer(r"^\s+(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        completed=int(total.group(1)),
        # wrk calls request() once more than it sends: on the first thread's Lua state, to
        # verify the script's request before the run (script_verify_request; -t1 here).
        sent=int(num(r"^SENT (\d+)").group(1)) - 1,
        seconds=float(total.group(2)) * _UNITS[total.group(3)] / 1e3,
        rps=float(num(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=pct.get("50", float("nan")),
        p99_ms=pct.get("99", float("nan")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def run_wrk(wrk: str, lua: Path, url: str, seconds: int, cpus: str | None) -> WrkResult:
    args = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(lua), url]
    if cpus is not None:
        args = ["taskset", "-c", cpus, *args]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return parse_wrk(out.stdout)


# -- one run of one variant ----------------------------------------------------------------------


@dataclass
class RunResult:
    variant: str
    workers: int
    round: int
    slice: int
    rps: float
    p50_ms: float
    p99_ms: float
    completed: int
    sent: int
    warmup_sent: int
    worker_cpu_us_per_req: float
    collector_cpu_us_per_req: float | None
    scrapes: int
    # The kernel's view of the workers, per request: system time, minor faults, voluntary and
    # involuntary context switches (a collector or wrk preempting a worker shows in the last).
    worker_sys_us_per_req: float = 0.0
    worker_minflt_per_req: float = 0.0
    worker_vcsw_per_req: float = 0.0
    worker_ivcsw_per_req: float = 0.0
    # This script's own CPU per request (the OTLP receiver reading exports, the scraper): on the
    # workers' cores when nothing is pinned.
    harness_cpu_us_per_req: float = 0.0
    # Each worker's share of the workers' CPU, largest first (how wrk's connections spread).
    worker_cpu_shares: list[float] = field(default_factory=list)
    served: int = 0
    checks: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class Stack:
    """A variant's running processes through a round: one or more measured runs (slices)."""

    variant: str
    workers: int
    round: int
    service: str
    run_dir: Path
    load_cpus: str | None
    procs: list[Proc] = field(default_factory=list)  # the collector (shmtel), then uvicorn
    pids: list[int] = field(default_factory=list)  # uvicorn's workers
    collector_pids: list[int] = field(default_factory=list)
    port: int = 0
    collector_port: int | None = None
    scrape_url: str | None = None
    # wrk's counts over the warm-up and every slice: the requests served must lie between.
    sent: int = 0
    completed: int = 0
    warmup_sent: int = 0
    results: list[RunResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.wrk = ensure_wrk()
        self.receiver = Receiver()
        self.work = Path(tempfile.mkdtemp(prefix="bench-asgi-"))
        # The regions where the library puts them by default: on tmpfs (/dev/shm). Anywhere
        # else (a disk-backed /tmp) the kernel writes the rings' dirty pages back to the disk.
        shm = Path("/dev/shm")
        self.shm_work = (
            Path(tempfile.mkdtemp(prefix="bench-asgi-", dir=shm))
            if shm.is_dir() and os.access(shm, os.W_OK)
            else self.work
        )
        self.lua = self.work / "count.lua"
        self.lua.write_text(WRK_LUA)
        self.run_seq = 0

    def close(self) -> None:
        self.receiver.close()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
            shutil.rmtree(self.shm_work, ignore_errors=True)

    def regions(self, run_dir: Path) -> Path:
        """The region directory of a run (under /dev/shm when there is one)."""
        return (
            self.shm_work / run_dir.name / "regions"
            if self.shm_work != self.work
            else run_dir / "regions"
        )

    def pinning(self, workers: int) -> tuple[str | None, str | None]:
        """(server CPUs, load CPUs) for taskset, or None for no pinning."""
        if self.args.pin == "none" or (os.cpu_count() or 1) < 2 or workers > 1:
            return None, None
        return "0", "1"

    def env(self, variant: str, service: str, run_dir: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SHMTEL_", "OTEL_")) and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        env.update(
            BENCH_VARIANT=variant,
            BENCH_SERVICE=service,
            BENCH_OTLP_ENDPOINT=self.receiver.endpoint,
            BENCH_LOG_FILE=str(run_dir / "app.log"),
            BENCH_TALLY_DIR=str(run_dir / "tally"),
            SHMTEL_DIR=str(self.regions(run_dir)),
            SHMTEL_SERVICE=service,
            PYTHONUNBUFFERED="1",
        )
        if self.args.malloc == "fixed":
            env.update(MALLOC_ENV)
        if self.args.ring_bytes:
            env["SHMTEL_RING_BYTES"] = str(self.args.ring_bytes)
        if variant == "today_mp":
            (run_dir / "prom").mkdir()
            env["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "prom")
        return env

    def start_collector(self, run_dir: Path, cpus: str | None) -> tuple[Proc, int]:
        port = free_port()
        config = run_dir / "collector.toml"
        config.write_text(
            "[export.otlp]\n"
            f'endpoint = "{self.receiver.endpoint}"\n'
            # As today's OTLPSpanExporter sends by default: no compression on loopback.
            'compression = "none"\n'
            "\n[logs]\n"
            'format = "json"\n'
            "\n[logs.stdout]\n"
            "enabled = false\n"
            "\n[[logs.file]]\n"
            f'path = "{run_dir / "collector-logs.jsonl"}"\n'
            "max_bytes = 0\n"
            # --collector-toml: more configuration (e.g. a [poll] section), appended as is.
            + (f"\n{self.args.collector_toml}\n" if self.args.collector_toml else "")
        )
        args = [
            str(shmtel_bin()),
            "collect",
            "--config",
            str(config),
            "--dir",
            str(self.regions(run_dir)),
            "--listen",
            f"127.0.0.1:{port}",
            "--state-file",
            str(run_dir / "collector-state.json"),
        ]
        if cpus is not None:
            args = ["taskset", "-c", cpus, *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SHMTEL_", "OTEL_"))}
        proc = Proc("collector", args, env, run_dir / "collector.log")

        def healthy() -> str | None:
            if not proc.alive():
                raise RuntimeError(f"the collector exited\n{proc.tail()}")
            try:
                status, _ = http_get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            except OSError as e:
                return str(e)
            return None if status == 200 else f"status {status}"

        problem = wait_for("collector health", healthy, STARTUP_TIMEOUT)
        if problem:
            raise RuntimeError(f"{problem}\n{proc.tail()}")
        return proc, port

    def start_uvicorn(
        self, workers: int, env: dict[str, str], run_dir: Path, cpus: str | None
    ) -> tuple[Proc, int, list[int]]:
        port = free_port()
        args = [
            sys.executable,
            str(HERE / "serve.py"),  # uvicorn with TCP_NODELAY under --workers (see serve.py)
            "app:app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--loop",
            "asyncio",
            "--http",
            self.args.http,
            "--no-access-log",
            "--log-level",
            "info",
        ]
        if cpus is not None:
            args = ["taskset", "-c", cpus, *args]
        proc = Proc("uvicorn", args, env, run_dir / "uvicorn.log")

        def ready() -> str | None:
            if not proc.alive():
                raise RuntimeError(f"uvicorn exited\n{proc.tail()}")
            started = proc.log().count("Application startup complete.")
            return None if started >= workers else f"{started} of {workers} workers started"

        problem = wait_for("uvicorn startup", ready, STARTUP_TIMEOUT)
        if problem:
            raise RuntimeError(f"{problem}\n{proc.tail()}")
        pids = [int(p) for p in re.findall(r"Started server process \[(\d+)\]", proc.log())]
        if len(pids) != workers:
            raise RuntimeError(f"expected {workers} worker pids, got {pids}\n{proc.tail()}")
        return proc, port, pids

    def start(self, variant: str, workers: int, rnd: int) -> Stack:
        """A variant's processes (the collector for shmtel, then uvicorn), serving."""
        self.run_seq += 1
        service = f"bench-{variant}-{os.getpid()}-{self.run_seq}"
        run_dir = self.work / f"{self.run_seq:03d}-{variant}-w{workers}"
        run_dir.mkdir()
        self.regions(run_dir).mkdir(mode=0o700, parents=True)
        (run_dir / "tally").mkdir()
        server_cpus, load_cpus = self.pinning(workers)
        env = self.env(variant, service, run_dir)
        stack = Stack(variant, workers, rnd, service, run_dir, load_cpus)
        try:
            if variant == "shmtel":
                collector_cpus = {"any": None, "server": server_cpus, "load": load_cpus}[
                    self.args.collector_cpu
                ]
                collector, stack.collector_port = self.start_collector(run_dir, collector_cpus)
                stack.procs.append(collector)
                stack.collector_pids = [collector.pid]
            uvicorn, stack.port, stack.pids = self.start_uvicorn(workers, env, run_dir, server_cpus)
            stack.procs.append(uvicorn)
        except BaseException:
            self.stop(stack)
            raise
        if variant == "shmtel":
            stack.scrape_url = f"http://127.0.0.1:{stack.collector_port}/metrics"
        elif variant.startswith("today"):
            stack.scrape_url = f"http://127.0.0.1:{stack.port}/metrics"
        return stack

    def load(self, stack: Stack, seconds: int, slice_: int) -> RunResult:
        """One measured run of wrk against `stack` (its /metrics scraped every second)."""
        url = f"http://127.0.0.1:{stack.port}/users/42"
        stop_scraping = threading.Event()
        scrapes = [0, 0]  # ok, failed
        scrape_url = stack.scrape_url

        def scrape() -> None:
            assert scrape_url is not None
            while not stop_scraping.wait(1.0):
                try:
                    status, _ = http_get(scrape_url)
                    scrapes[0 if status == 200 else 1] += 1
                except OSError:
                    scrapes[1] += 1

        scraper = threading.Thread(target=scrape, daemon=True) if scrape_url else None
        if scraper is not None:
            scraper.start()
        if self.args.profile == stack.variant and slice_ == 0:
            self.profile(stack.pids, stack.run_dir)
        each_before = [proc_counters([pid]) for pid in stack.pids]
        collector_before = proc_counters(stack.collector_pids)
        harness_before = proc_counters([os.getpid()])
        main = run_wrk(self.wrk, self.lua, url, seconds, stack.load_cpus)
        each_use = [
            proc_counters([pid]) - b for pid, b in zip(stack.pids, each_before, strict=True)
        ]
        worker_use = sum(each_use, ProcCounters())
        collector_use = proc_counters(stack.collector_pids) - collector_before
        harness_use = proc_counters([os.getpid()]) - harness_before
        per_req = 1 / max(main.completed, 1)
        stop_scraping.set()
        if scraper is not None:
            scraper.join()
        stack.sent += main.sent
        stack.completed += main.completed
        result = RunResult(
            variant=stack.variant,
            workers=stack.workers,
            round=stack.round,
            slice=slice_,
            rps=main.rps,
            p50_ms=main.p50_ms,
            p99_ms=main.p99_ms,
            completed=main.completed,
            sent=main.sent,
            warmup_sent=stack.warmup_sent,
            worker_cpu_us_per_req=worker_use.ticks / CLK_TCK * 1e6 * per_req,
            collector_cpu_us_per_req=collector_use.ticks / CLK_TCK * 1e6 * per_req
            if stack.variant == "shmtel"
            else None,
            worker_sys_us_per_req=worker_use.stime / CLK_TCK * 1e6 * per_req,
            worker_minflt_per_req=worker_use.minflt * per_req,
            worker_vcsw_per_req=worker_use.vcsw * per_req,
            worker_ivcsw_per_req=worker_use.ivcsw * per_req,
            harness_cpu_us_per_req=harness_use.ticks / CLK_TCK * 1e6 * per_req,
            worker_cpu_shares=sorted(
                (round(u.ticks / max(worker_use.ticks, 1), 2) for u in each_use), reverse=True
            ),
            scrapes=scrapes[0],
        )
        if scrapes[1]:
            result.problems.append(f"{scrapes[1]} scrapes of {scrape_url} failed")
        if main.non_2xx or main.socket_errors:
            result.problems.append(
                f"wrk saw {main.non_2xx} non-2xx responses, {main.socket_errors} socket errors"
            )
        stack.results.append(result)
        return result

    def warm(self, stack: Stack) -> None:
        """wrk for the warm-up seconds, not measured (its requests count for exactness)."""
        url = f"http://127.0.0.1:{stack.port}/users/42"
        warm = run_wrk(self.wrk, self.lua, url, self.args.warmup, stack.load_cpus)
        stack.sent += warm.sent
        stack.completed += warm.completed
        stack.warmup_sent += warm.sent
        if warm.non_2xx or warm.socket_errors:
            stack.problems.append(
                f"warm-up: wrk saw {warm.non_2xx} non-2xx responses, "
                f"{warm.socket_errors} socket errors"
            )

    def finish(self, stack: Stack) -> None:
        """Stop the stack gracefully and check exactness over all its runs; the outcome goes
        on its runs (the problems on the last)."""
        try:
            # Metrics of today_mp are read from the multiprocess directory after the workers are
            # gone; everything else is checked after a graceful stop (in-flight requests done,
            # BatchSpanProcessor flushed).
            uvicorn = stack.procs[-1]
            status = uvicorn.stop()
            if status not in (0, -signal.SIGTERM):  # uvicorn re-raises the signal it handled
                stack.problems.append(f"uvicorn exited with {status}\n{uvicorn.tail()}")
            # What the workers received (app.py's RequestTally, written at lifespan shutdown).
            tallies = list((stack.run_dir / "tally").iterdir())
            served = sum(int(f.read_text()) for f in tallies)
            if len(tallies) != stack.workers:
                stack.problems.append(
                    f"{len(tallies)} of {stack.workers} workers wrote their tally"
                )
            elif not stack.completed <= served <= stack.sent:
                stack.problems.append(
                    f"served {served} outside [completed {stack.completed}, sent {stack.sent}]"
                )
            checks: dict[str, str] = {}
            self.check(
                checks,
                stack.problems,
                stack.variant,
                stack.service,
                stack.run_dir,
                served,
                stack.collector_port,
            )
        finally:
            self.stop(stack)
        for r in stack.results:
            r.served = served
            r.checks = checks
        if stack.results:
            stack.results[-1].problems.extend(stack.problems)

    @staticmethod
    def stop(stack: Stack) -> None:
        for p in reversed(stack.procs):
            p.stop()

    def check(
        self,
        checks: dict[str, str],
        problems: list[str],
        variant: str,
        service: str,
        run_dir: Path,
        expected: int,
        collector_port: int | None,
    ) -> None:
        """Requests counted by the metrics, spans at the receiver and log lines == `expected`."""
        if variant in ("bare", "bare_cid"):
            return

        def outcome(name: str, problem: str | None) -> None:
            checks[name] = "ok" if problem is None else "FAIL"
            if problem is not None:
                problems.append(problem)

        # Metrics.
        if variant == "shmtel" and collector_port is not None:
            port = collector_port

            def counted() -> str | None:
                total = sum(
                    s.value
                    for s in collector_samples(port, "http_requests_total")
                    if s.labels.get("route") == ROUTE
                )
                return None if total == expected else f"{total:.0f} != {expected}"

            outcome("metrics", wait_for("collector http_requests_total", counted, SETTLE_TIMEOUT))
        elif variant == "today_mp":
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(run_dir / "prom"))
            total = sum(
                s.value
                for m in registry.collect()
                for s in m.samples
                if s.name == "http_requests_total" and s.labels.get("route") == ROUTE
            )
            outcome(
                "metrics",
                None
                if total == expected
                else f"multiprocess http_requests_total {total:.0f} != {expected}",
            )

        # Spans: one server span and one child span per request.
        want = Counter({SERVER_SPAN: expected, CHILD_SPAN: expected})

        def spans() -> str | None:
            got = self.receiver.count(service)
            if got == want:
                return None
            bad = self.receiver.errors
            return f"{dict(got)} != {dict(want)}" + (
                f" ({bad} bodies did not decode)" if bad else ""
            )

        outcome("spans", wait_for("OTLP receiver span counts", spans, SETTLE_TIMEOUT))

        # Log lines.
        log_file = run_dir / ("collector-logs.jsonl" if variant == "shmtel" else "app.log")

        def lines() -> str | None:
            try:
                with open(log_file, "rb") as f:
                    n = sum(1 for line in f if b'"user fetched"' in line)
            except FileNotFoundError:
                n = 0
            return None if n == expected else f"{n} != {expected}"

        outcome("logs", wait_for(f"log lines in {log_file.name}", lines, SETTLE_TIMEOUT))
        if variant == "shmtel" and problems and collector_port is not None:
            problems.append(self.ring_drops(collector_port))

    @staticmethod
    def ring_drops(collector_port: int) -> str:
        """The records the workers dropped on full rings (the collector's own counter): what a
        span or log count short of the requests served usually means (a collector starved of
        CPU falls behind the writers)."""
        try:
            samples = collector_samples(collector_port, "shmtel_dropped_records_total")
        except OSError as e:
            return f"ring drops unknown: {e}"
        drops = {s.labels.get("kind", "?"): int(s.value) for s in samples if s.value}
        return f"records the workers dropped on full rings: {drops or 'none'}"

    def profile(self, pids: list[int], run_dir: Path) -> None:
        """py-spy --native on the first worker for the run's duration, in the background."""
        py_spy = ensure_py_spy()
        out = target_dir() / f"bench-asgi-profile-{run_dir.name}.txt"
        args = [
            py_spy,
            "record",
            "--native",
            "--format",
            "raw",
            "--rate",
            "250",
            "--duration",
            str(self.args.seconds),
            "--pid",
            str(pids[0]),
            "--output",
            str(out),
        ]
        subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log(f"profiling worker {pids[0]} into {out}")


# -- report ----------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pair_with(results: list[RunResult], runs: list[RunResult], reference: str) -> dict[str, Any]:
    """`runs` paired with the `reference` variant's run of the same slice of the same round (the
    machine's state drifts by more than the differences measured): the median of the per-slice
    ratios of requests/s and differences of worker CPU per request. Empty without pairs."""
    ref = {
        (r.round, r.slice): r
        for r in results
        if r.variant == reference and runs and r.workers == runs[0].workers
    }
    pairs = [(r, ref[(r.round, r.slice)]) for r in runs if (r.round, r.slice) in ref]
    if not pairs:
        return {}
    return {
        "ratio": median([r.rps / b.rps for r, b in pairs]),
        "added_cpu_us": median(
            [r.worker_cpu_us_per_req - b.worker_cpu_us_per_req for r, b in pairs]
        ),
        "runs": len(pairs),
    }


def cell(row: dict[str, Any], key: str, spec: str, suffix: str = "") -> str:
    """A table cell: the value formatted, or "–" where there is none (bare's ratio to itself
    paired, a group of runs without bare's)."""
    value = row.get(key)
    if value is None or math.isnan(value):
        return "–"
    return f"{value:{spec}}{suffix}"


def summarize(results: list[RunResult], worker_counts: list[int]) -> tuple[str, dict[str, Any]]:
    lines = []
    summary: dict[str, Any] = {}
    for workers in worker_counts:
        rows = {}
        for variant in VARIANTS + EXTRA_VARIANTS:
            runs = [r for r in results if r.workers == workers and r.variant == variant]
            if not runs:
                continue
            collector = [r.collector_cpu_us_per_req for r in runs if r.collector_cpu_us_per_req]
            rows[variant] = {
                "rps": median([r.rps for r in runs]),
                "p50_ms": median([r.p50_ms for r in runs]),
                "p99_ms": median([r.p99_ms for r in runs]),
                "worker_cpu_us": median([r.worker_cpu_us_per_req for r in runs]),
                # The least over rounds: interference from other tenants only adds CPU time.
                "least_worker_cpu_us": min(r.worker_cpu_us_per_req for r in runs),
                "collector_cpu_us": median(collector) if collector else None,
                "runs": len(runs),
                "exact": all(not r.problems for r in runs),
            }
            if variant != "bare":
                paired = pair_with(results, runs, "bare")
                if paired:
                    rows[variant]["paired_vs_bare"] = paired["ratio"]
                    rows[variant]["paired_added_cpu_us"] = paired["added_cpu_us"]
            if variant == "shmtel":
                # Against the floor of any middleware that returns a correlation id (see app.py).
                paired = pair_with(results, runs, "bare_cid")
                if paired:
                    rows[variant]["paired_vs_bare_cid"] = paired["ratio"]
                    rows[variant]["paired_added_cpu_us_vs_bare_cid"] = paired["added_cpu_us"]
                    rows[variant]["pairs_with_bare_cid"] = paired["runs"]
        bare = rows.get("bare")
        today = rows.get("today")
        lines.append(f"\n### {workers} worker{'s' if workers > 1 else ''}\n")
        lines.append(
            "| variant | req/s | p50 ms | p99 ms | worker CPU µs/req | collector CPU µs/req "
            "| vs bare | added CPU µs/req | paired vs bare | paired added CPU µs/req "
            "| least added CPU µs/req | p99 vs bare | vs today | exact |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for variant, row in rows.items():
            if bare:
                row["vs_bare"] = row["rps"] / bare["rps"]
                row["added_cpu_us"] = row["worker_cpu_us"] - bare["worker_cpu_us"]
                row["least_added_cpu_us"] = row["least_worker_cpu_us"] - bare["least_worker_cpu_us"]
                row["p99_vs_bare"] = row["p99_ms"] / bare["p99_ms"]
            if today:
                row["vs_today"] = row["rps"] / today["rps"]
            lines.append(
                f"| {variant} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
                f"| {row['worker_cpu_us']:.0f} | {cell(row, 'collector_cpu_us', '.1f')} "
                f"| {cell(row, 'vs_bare', '.3f', 'x')} | {cell(row, 'added_cpu_us', '+.0f')} "
                f"| {cell(row, 'paired_vs_bare', '.3f', 'x')} "
                f"| {cell(row, 'paired_added_cpu_us', '+.1f')} "
                f"| {cell(row, 'least_added_cpu_us', '+.1f')} "
                f"| {cell(row, 'p99_vs_bare', '.2f', 'x')} | {cell(row, 'vs_today', '.2f', 'x')} "
                f"| {'yes' if row['exact'] else 'NO'} |"
            )
        shmtel = rows.get("shmtel", {})
        if "paired_vs_bare_cid" in shmtel:
            lines.append(
                f"\nshmtel against bare_cid (the bare app returning a correlation id), paired by "
                f"slice: {shmtel['paired_vs_bare_cid']:.3f}x of its requests/s, "
                f"{shmtel['paired_added_cpu_us_vs_bare_cid']:+.1f} µs of worker CPU per request "
                f"(median of {shmtel['pairs_with_bare_cid']} pairs)."
            )
        summary[str(workers)] = rows
        if workers > 1:
            spread = by_spread(results, workers)
            summary[f"{workers}_by_busy_workers"] = spread
            lines.extend(spread_table(spread))
    return "\n".join(lines) + "\n", summary


def busy_workers(r: RunResult) -> int:
    """How many workers did a tenth or more of a run's work: uvicorn's workers share one
    listening socket, and whichever wakes first accepts every connection wrk opens at once, so
    wrk's 32 connections land on 1 to 4 of them, at random, run by run."""
    return sum(1 for share in r.worker_cpu_shares if share >= 0.1)


def by_spread(results: list[RunResult], workers: int) -> dict[str, dict[str, Any]]:
    """Medians per number of busy workers and variant, and the ratio to bare's at the same
    number: runs of different spreads differ by more than the variants do (with 4 workers on
    2 CPUs, 105 µs per request on one busy worker against 160-190 on two or three)."""
    out: dict[str, dict[str, Any]] = {}
    for busy in range(1, workers + 1):
        rows: dict[str, Any] = {}
        for variant in VARIANTS + EXTRA_VARIANTS:
            runs = [
                r
                for r in results
                if r.workers == workers and r.variant == variant and busy_workers(r) == busy
            ]
            if runs:
                rows[variant] = {
                    "runs": len(runs),
                    "rps": median([r.rps for r in runs]),
                    "worker_cpu_us": median([r.worker_cpu_us_per_req for r in runs]),
                }
        bare = rows.get("bare")
        for row in rows.values():
            if bare:
                row["vs_bare"] = row["rps"] / bare["rps"]
                row["added_cpu_us"] = row["worker_cpu_us"] - bare["worker_cpu_us"]
        if rows:
            out[str(busy)] = rows
    return out


def spread_table(spread: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "\nBy the number of workers wrk's connections landed on (a tenth or more of the CPU):\n",
        "| busy workers | variant | runs | req/s | worker CPU µs/req | vs bare | added CPU µs/req |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for busy, rows in spread.items():
        for variant, row in rows.items():
            lines.append(
                f"| {busy} | {variant} | {row['runs']} | {row['rps']:,.0f} "
                f"| {row['worker_cpu_us']:.0f} | {cell(row, 'vs_bare', '.3f', 'x')} "
                f"| {cell(row, 'added_cpu_us', '+.1f')} |"
            )
    return lines


def log_run(r: RunResult) -> None:
    coll = "-" if r.collector_cpu_us_per_req is None else f"{r.collector_cpu_us_per_req:.1f}"
    log(
        f"workers={r.workers} round={r.round} slice={r.slice} {r.variant}: {r.rps:,.0f} req/s "
        f"p50 {r.p50_ms:.2f} ms p99 {r.p99_ms:.2f} ms worker "
        f"{r.worker_cpu_us_per_req:.0f} µs/req (sys {r.worker_sys_us_per_req:.0f}, "
        f"faults {r.worker_minflt_per_req:.3f}, switches {r.worker_vcsw_per_req:.2f} "
        f"+ {r.worker_ivcsw_per_req:.3f} involuntary) collector {coll} µs/req "
        f"harness {r.harness_cpu_us_per_req:.1f} µs/req sent {r.sent} (completed {r.completed})"
        + (f" worker shares {r.worker_cpu_shares}" if len(r.worker_cpu_shares) > 1 else "")
    )


def run_round(bench: Bench, variants: list[str], workers: int, rnd: int) -> list[RunResult]:
    """One round: every variant's processes started side by side (idle but for the one under
    load), each warmed up, then `--slices` times each variant loaded in turn, in an order
    shuffled for each slice (seeded by the round and slice, so a variant does not always follow
    the same one, whose exports may run into the next run), with a pause of `--settle` seconds
    after each run for the collector's and the SDK's exports to end; then every variant stopped
    and checked."""
    args = bench.args
    stacks: list[Stack] = []
    try:
        for variant in variants:
            stacks.append(bench.start(variant, workers, rnd))
        for stack in stacks:
            bench.warm(stack)
        time.sleep(args.settle)
        for k in range(args.slices):
            order = list(stacks)
            random.Random(f"{workers}/{rnd}/{k}").shuffle(order)
            for stack in order:
                log_run(bench.load(stack, args.seconds, k))
                time.sleep(args.settle)
        results: list[RunResult] = []
        while stacks:
            stack = stacks.pop(0)
            bench.finish(stack)
            log(
                f"workers={workers} round={rnd} {stack.variant}: served {stack.results[-1].served} "
                f"(sent {stack.sent}, completed {stack.completed}) checks {stack.results[-1].checks} "
                + "; ".join(stack.problems)
            )
            results.extend(stack.results)
        return results
    finally:
        for stack in stacks:
            bench.stop(stack)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=5, help="measured seconds per run (5)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, each with fresh processes (2)")
    p.add_argument(
        "--slices",
        type=int,
        default=4,
        help="measured runs of each variant per round, alternating (4)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds of pause after each run, for exports to end (1)",
    )
    p.add_argument("--workers", default="1,4", help="uvicorn worker counts (1,4)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="variants to run (all)")
    p.add_argument("--warmup", type=int, default=WARMUP_SECONDS, help="warm-up seconds (2)")
    p.add_argument("--pin", choices=("auto", "none"), default="auto", help="taskset pinning")
    p.add_argument(
        "--malloc",
        choices=("fixed", "default"),
        default="fixed",
        help="glibc malloc thresholds of the workers: fixed (MALLOC_ENV: no worker maps and "
        "unmaps asyncio's 256 KiB read buffer per request) or glibc's default dynamic ones",
    )
    p.add_argument(
        "--collector-cpu",
        choices=("any", "server", "load"),
        default="any",
        help="with pinning, the collector is left to the scheduler (default, as a deployed "
        "collector is), or shares the server's CPU (the worst case) or wrk's",
    )
    p.add_argument(
        "--collector-toml",
        default="",
        help="TOML appended to the collector's config, e.g. '[poll]\\nmin_sleep_ms = 5'",
    )
    p.add_argument(
        "--ring-bytes",
        type=int,
        default=0,
        help="SHMTEL_RING_BYTES for the shmtel workers (default: the library's, 1 MiB)",
    )
    p.add_argument(
        "--http",
        choices=("h11", "httptools"),
        default="h11",
        help="uvicorn's HTTP/1.1 protocol (h11, the issue's; httptools to compare)",
    )
    p.add_argument(
        "--response-header",
        choices=("none", "traceresponse", "traceparent"),
        default="none",
        help="shmtel's tracing.response_header: the span's ids in every response besides "
        "x-correlation-id (default none, the library's default)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="2 s per variant, 1 round, exactness only (rings of 64 MiB unless --ring-bytes)",
    )
    p.add_argument(
        "--profile", choices=VARIANTS + EXTRA_VARIANTS, help="py-spy --native the first worker"
    )
    p.add_argument("--keep", action="store_true", help="keep the run directories (logs, config)")
    p.add_argument("--json", type=Path, help="JSON output (default <target>/bench-asgi.json)")
    args = p.parse_args()
    os.environ.pop("BENCH_RESPONSE_HEADER", None)  # read by app.py
    if args.response_header != "none":
        os.environ["BENCH_RESPONSE_HEADER"] = args.response_header
    if args.smoke:
        args.seconds, args.rounds, args.slices, args.warmup = 2, 1, 1, 1
        # The smoke run checks exactness, not capacity: with the library's 1 MiB rings a
        # collector starved of CPU by whatever else the machine runs falls behind the writers,
        # whose rings then drop records (counted, and reported on failure). Rings that hold the
        # whole run (~15k requests, ~1 KiB of spans and logs each) make the check independent
        # of the machine's load; every record must still arrive, be decoded and be counted.
        if not args.ring_bytes:
            args.ring_bytes = 64 << 20
    if args.rounds < 1 or args.slices < 1:
        p.error("--rounds and --slices must be at least 1")
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS + EXTRA_VARIANTS)
    if unknown:
        p.error(
            f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS + EXTRA_VARIANTS)}"
        )
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    if "shmtel" in variants and not shmtel_bin().is_file():
        raise SystemExit(f"{shmtel_bin()} not found: run `make build` (or set SHMTEL_BIN)")
    target = target_dir()
    json_path = args.json or target / ("bench-asgi-smoke.json" if args.smoke else "bench-asgi.json")

    bench = Bench(args)
    if bench.pinning(1)[1] is not None:
        os.sched_setaffinity(0, {1})  # this script, its receiver and scraper threads: wrk's CPU
    results: list[RunResult] = []
    try:
        for workers in worker_counts:
            for rnd in range(args.rounds):
                results.extend(run_round(bench, variants, workers, rnd))
    finally:
        bench.close()

    table, summary = summarize(results, worker_counts)
    print(table)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(
        json.dumps(
            {
                "config": {
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "slices": args.slices,
                    "settle": args.settle,
                    "warmup": args.warmup,
                    "connections": CONNECTIONS,
                    "pin": args.pin,
                    "malloc": args.malloc,
                    "smoke": args.smoke,
                },
                "summary": summary,
                "runs": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    log(f"wrote {json_path}")
    failed = [r for r in results if r.problems]
    for r in failed:
        log(f"FAILED {r.variant} workers={r.workers} round={r.round}: {r.problems}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
