"""Helpers for the multi-process end-to-end tests (the fixtures in conftest.py use them): a real
`shmtel collect` on a free loopback port, child processes that are always stopped, region files,
and a /metrics scraper built on prometheus_client's own parser.

Everything a test starts is owned by a fixture whose finalizer stops it (SIGTERM to the process
group it was started in, SIGKILL after a timeout), so a failing assertion leaves nothing running.
Waits poll with generous timeouts (the machine is small and shared) and, when they give up, say
what they last saw. Nothing here asserts timing.
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"

# How long a collector or server may take to come up.
STARTUP_TIMEOUT = 60.0
# How long draining and aggregation may take to show up in /metrics.
SETTLE_TIMEOUT = 60.0
# How long a process may take to exit after SIGTERM.
EXIT_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def shmtel_bin() -> Path:
    """`$SHMTEL_BIN`, else `<repo>/target/release/shmtel` (what `make build` produces)."""
    path = Path(os.environ.get("SHMTEL_BIN") or ROOT / "target" / "release" / "shmtel")
    if not path.is_file():
        pytest.fail(f"{path} not found: run `make build` (or set SHMTEL_BIN)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    what: str,
    check: Callable[[], str | None],
    timeout: float = SETTLE_TIMEOUT,
    interval: float = 0.1,
) -> None:
    """Call `check` until it returns None (success); it returns a description of what is still
    wrong otherwise. Fails the test with the last description after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "never checked"
    while True:
        last = check() or ""
        if not last:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{last}")
        time.sleep(interval)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def worker_env(region_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for an instrumented child: ours without any SHMTEL_* or
    PROMETHEUS_MULTIPROC_DIR variable, plus SHMTEL_DIR (the test's region directory)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SHMTEL_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["SHMTEL_DIR"] = str(region_dir)
    env["SHMTEL_SERVICE"] = "e2e"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Region files
# ---------------------------------------------------------------------------------------------

_TABLE = re.compile(r"^(\d+)-(\d+)\.table$")
_RING = re.compile(r"^(\d+)-(\d+)-(\d+)-(\d+)\.ring$")


@dataclass(frozen=True)
class RegionFile:
    path: Path
    pid: int
    kind: str  # "table" or "ring"
    tid: int | None


def region_files(region_dir: Path) -> list[RegionFile]:
    """The region files in `region_dir`: `<pid>-<start>.table`, `<pid>-<start>-<tid>-<seq>.ring`."""
    out: list[RegionFile] = []
    try:
        entries = sorted(region_dir.iterdir())
    except FileNotFoundError:
        return out
    for p in entries:
        if m := _TABLE.match(p.name):
            out.append(RegionFile(p, int(m.group(1)), "table", None))
        elif m := _RING.match(p.name):
            out.append(RegionFile(p, int(m.group(1)), "ring", int(m.group(3))))
    return out


def region_pids(region_dir: Path) -> set[int]:
    return {f.pid for f in region_files(region_dir)}


def ring_tids(region_dir: Path, pid: int) -> set[int]:
    return {f.tid for f in region_files(region_dir) if f.pid == pid and f.tid is not None}


# ---------------------------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # sorted
    value: float

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}} {self.value!r}"


class Metrics:
    """A parsed Prometheus text exposition (prometheus_client's parser)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[Sample] = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = tuple(sorted((str(k), str(v)) for k, v in s.labels.items()))
                self.samples.append(Sample(s.name, labels, float(s.value)))

    def series(self, name: str, **labels: str) -> list[Sample]:
        """Samples named `name` whose labels include `labels`."""
        return [
            s
            for s in self.samples
            if s.name == name and all(s.label_dict.get(k) == v for k, v in labels.items())
        ]

    def has(self, name: str) -> bool:
        return any(s.name == name for s in self.samples)

    def sum(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.series(name, **labels))

    def by_labels(self, name: str, keys: Sequence[str]) -> dict[tuple[str, ...], float]:
        """{(label values in `keys` order): value} for the samples named `name`."""
        out: dict[tuple[str, ...], float] = {}
        for s in self.series(name):
            d = s.label_dict
            k = tuple(d.get(key, "") for key in keys)
            out[k] = out.get(k, 0.0) + s.value
        return out

    def lines(self, prefix: str) -> str:
        """The exposition lines starting with `prefix` (for failure messages)."""
        return "\n".join(line for line in self.text.splitlines() if line.startswith(prefix))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return int(e.code), e.read().decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


class Proc:
    """A child started in a session (and process group) of its own, its output in a log file.
    `stop()` signals that group, so servers' worker processes go with it."""

    def __init__(
        self,
        name: str,
        args: Sequence[str | Path],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        pipes: bool = False,
    ) -> None:
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            self.args,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self._buf = b""

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

    def describe(self) -> str:
        return f"--- {self.name} (pid {self.pid}) log, last lines ---\n{tail(self.log())}"

    def read_json(self, timeout: float = STARTUP_TIMEOUT) -> dict[str, object]:
        """The next line of stdout that is a JSON object (`pipes=True` only)."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                if text.startswith("{"):
                    value = json.loads(text)
                    assert isinstance(value, dict), text
                    return value
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"{self.name} printed no JSON line within {timeout} s\n{self.describe()}"
                )
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.popen.wait(EXIT_TIMEOUT)
                    pytest.fail(
                        f"{self.name} exited with {self.popen.returncode} before printing a "
                        f"JSON line\n{self.describe()}"
                    )
                self._buf += chunk

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((line + "\n").encode())
        self.popen.stdin.flush()

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout} s\n{self.describe()}")

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = EXIT_TIMEOUT) -> int | None:
        """Signal the process group, wait for the leader; SIGKILL the group after `timeout`.
        Returns the leader's exit status (None if it had to be killed)."""
        status: int | None = self.popen.poll()
        if status is None:
            self._signal_group(sig)
            try:
                status = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                status = None
        # Whatever is left of the group (workers of a server whose master died): SIGKILL.
        self._signal_group(signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(EXIT_TIMEOUT)
        for f in (self.popen.stdin, self.popen.stdout):
            if f is not None:
                f.close()
        self._log.close()
        return status


class Procs:
    """Starts processes for one test; the fixture's finalizer stops them all, newest first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Proc] = []

    def start(
        self,
        name: str,
        args: Sequence[str | Path],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        pipes: bool = False,
    ) -> Proc:
        log_path = self.log_dir / f"{len(self.started):02d}-{name}.log"
        p = Proc(name, args, env=env, log_path=log_path, cwd=cwd, pipes=pipes)
        self.started.append(p)
        return p

    def python(self, name: str, script: Path, *args: str, env: Mapping[str, str]) -> Proc:
        """Run `script` with this interpreter (the venv's), stdin/stdout piped."""
        return self.start(name, [sys.executable, script, *args], env=env, pipes=True)

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


# ---------------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------------


class Collector:
    """A running `shmtel collect --dir D --listen 127.0.0.1:PORT --state-file F`."""

    def __init__(self, proc: Proc, port: int, region_dir: Path) -> None:
        self.proc = proc
        self.port = port
        self.region_dir = region_dir

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def assert_running(self) -> None:
        if not self.proc.alive():
            pytest.fail(
                f"the collector exited unexpectedly with {self.proc.popen.returncode}\n"
                f"{self.proc.describe()}"
            )

    def scrape(self) -> Metrics:
        self.assert_running()
        status, body = http_get(self.url("/metrics"))
        assert status == 200, f"GET /metrics: {status}: {body[:500]}"
        return Metrics(body)

    def wait_metrics(
        self,
        what: str,
        check: Callable[[Metrics], str | None],
        timeout: float = SETTLE_TIMEOUT,
    ) -> Metrics:
        """Scrape until `check(metrics)` returns None; fail with its last complaint (and the
        collector's log) after `timeout`. Returns the scrape that passed."""
        passed: list[Metrics] = []

        def attempt() -> str | None:
            m = self.scrape()
            problem = check(m)
            if problem is None:
                passed.append(m)
            return problem

        try:
            wait_until(what, attempt, timeout=timeout, interval=0.2)
        except pytest.fail.Exception as e:
            raise AssertionError(f"{e}\n{self.proc.describe()}") from None
        return passed[-1]


# ---------------------------------------------------------------------------------------------
# Requests to the app under test
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request and what the middleware must record for it."""

    method: str
    path: str
    route: str  # the `route` label: the template, `<unmatched>` when no route matched
    status: int


def request_plan(rounds: int, first_id: int = 0) -> list[Req]:
    """10 requests per round over every kind of route, in a fixed shuffled order."""
    plan: list[Req] = []
    for r in range(rounds):
        i = first_id + r
        plan += [
            Req("GET", "/", "/", 200),
            Req("GET", "/", "/", 200),
            Req("GET", f"/users/{i}", "/users/{user_id}", 200),
            Req("GET", f"/users/u{i}x", "/users/{user_id}", 200),
            Req("GET", f"/users/{i * 7}", "/users/{user_id}", 200),
            Req("POST", f"/users/{i}", "/users/{user_id}", 200),
            Req("GET", f"/api/orders/{i}", "/api/orders/{order_id}", 200),
            Req("GET", f"/missing/{i}", "<unmatched>", 404),
            Req("GET", "/error", "/error", 500),
            Req("GET", "/boom", "/boom", 500),
        ]
    random.Random(rounds * 1000 + first_id).shuffle(plan)
    return plan


def send_requests(base_url: str, plan: Sequence[Req], concurrency: int = 8) -> None:
    """Send every request of `plan` over loopback, `concurrency` at a time, each on a new
    connection (so they spread over the server's worker processes); check each status."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    with httpx.Client(base_url=base_url, limits=limits, timeout=30.0) as client:

        def one(req: Req) -> str | None:
            r = client.request(req.method, req.path, headers={"connection": "close"})
            if r.status_code != req.status:
                return f"{req.method} {req.path}: status {r.status_code}, expected {req.status}"
            return None

        with ThreadPoolExecutor(concurrency) as pool:
            problems = [p for p in pool.map(one, plan) if p is not None]
    assert not problems, f"{len(problems)} unexpected responses: {problems[:10]}"


def expected_red(plan: Sequence[Req]) -> tuple[Counter[tuple[str, ...]], Counter[tuple[str, ...]]]:
    """({(method, route, status): requests}, {(method, route): 5xx responses}) for `plan`."""
    requests: Counter[tuple[str, ...]] = Counter()
    errors: Counter[tuple[str, ...]] = Counter()
    for r in plan:
        requests[(r.method, r.route, str(r.status))] += 1
        if r.status >= 500:
            errors[(r.method, r.route)] += 1
    return requests, errors


def red_problems(m: Metrics, plan: Sequence[Req]) -> str | None:
    """None if the RED metrics at the collector match `plan` exactly, else what differs."""
    requests, errors = expected_red(plan)
    problems: list[str] = []

    def compare(what: str, got: dict[tuple[str, ...], float], want: Counter[tuple[str, ...]]):
        for key in sorted(set(got) | set(want)):
            if got.get(key, 0.0) != float(want.get(key, 0)):
                problems.append(f"{what}{key}: /metrics {got.get(key)}, expected {want.get(key)}")

    compare(
        "http_requests_total",
        m.by_labels("http_requests_total", ("method", "route", "status")),
        requests,
    )
    durations: Counter[tuple[str, ...]] = Counter()
    for (method, route, _), n in requests.items():
        durations[(method, route)] += n
    compare(
        "http_request_duration_seconds_count",
        m.by_labels("http_request_duration_seconds_count", ("method", "route")),
        durations,
    )
    compare(
        "http_requests_errors_total",
        {k: v for k, v in m.by_labels("http_requests_errors_total", ("method", "route")).items()},
        errors,
    )
    if problems:
        total = m.sum("http_requests_total")
        return (
            f"sum of http_requests_total = {total}, expected {len(plan)}\n"
            + "\n".join(problems[:20])
            + "\n--- http_requests_total at the collector ---\n"
            + m.lines("http_requests_total")
        )
    return None


@contextmanager
def running_collector(
    procs: Procs, sandbox: Path, extra_args: Sequence[str | Path] = ()
) -> Iterator[Collector]:
    """`shmtel collect` on a free 127.0.0.1 port draining `sandbox/regions` (plus `extra_args`,
    e.g. `--config FILE`), with no SHMTEL_*/OTEL_* variables of ours; healthy when yielded;
    SIGTERMed at the end, when it must exit 0. A port taken between the probe and the bind is
    retried (3 attempts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHMTEL_", "OTEL_"))}
    last_log = ""
    for attempt in range(3):
        port = free_port()
        proc = procs.start(
            f"collector-{attempt}",
            [
                shmtel_bin(),
                "collect",
                *extra_args,
                "--dir",
                sandbox / "regions",
                "--listen",
                f"127.0.0.1:{port}",
                "--state-file",
                sandbox / "collector-state.json",
            ],
            env=env,
        )
        c = Collector(proc, port, sandbox / "regions")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.alive() and time.monotonic() < deadline:
            try:
                status, _ = http_get(c.url("/healthz"), timeout=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                break
            time.sleep(0.05)
        else:
            last_log = proc.log()
            proc.stop()
            if "in use" in last_log:
                continue  # someone took the port between our probe and its bind
            pytest.fail(f"shmtel collect did not become healthy:\n{tail(last_log)}")
        yield c
        status_code = proc.stop(signal.SIGTERM)
        assert status_code == 0, (
            f"the collector exited with {status_code} after SIGTERM\n{proc.describe()}"
        )
        return
    pytest.fail(f"shmtel collect could not bind a port in 3 attempts:\n{tail(last_log)}")
