"""Logs end to end: a Starlette app under `uvicorn --workers 2` logging through stdlib `logging`
(``shmtel.LoggingHandler``, from a ``logging.Logger`` and from a ``shmtel.Logger``), structlog
(``shmtel.StructlogLoggerFactory``) and ``shmtel.error``, and a real `shmtel collect` whose
default log sink writes JSON lines to its stdout. Every line
written in a request arrives once, parseable, with the `shmtel` schema's keys: the level, the
message, the service, the worker's pid, the fields at the top level, the caller for the
`logging` bridge, and the request's correlation id and server span ids (those of the response's
`x-correlation-id` and `traceparent` headers)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import (
    APPS,
    STARTUP_TIMEOUT,
    Collector,
    Proc,
    Procs,
    free_port,
    running_collector,
    wait_until,
    worker_env,
)

WORKERS = 2
REQUESTS = 40
APIS = ("logging", "direct", "structlog", "native")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture
def log_collector(sandbox: Path, procs: Procs) -> Iterator[Collector]:
    """`shmtel collect` with its stdout log sink on (JSON lines, the `shmtel` schema)."""
    config = sandbox / "collector.toml"
    config.write_text('[logs]\nformat = "json"\n\n[logs.stdout]\nenabled = true\n')
    with running_collector(procs, sandbox, ["--config", config]) as c:
        yield c


def start_uvicorn(procs: Procs, region_dir: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        "uvicorn",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "log_app:app",
            "--app-dir",
            APPS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--no-access-log",
            "--log-level",
            "info",
        ],
        env=worker_env(region_dir, SHMTEL_SERVICE="shop"),
    )

    def ready() -> str | None:
        if not proc.alive():
            raise AssertionError(f"uvicorn exited with {proc.popen.returncode}\n{proc.describe()}")
        started = proc.log().count("Application startup complete.")
        return None if started >= WORKERS else f"{started} of {WORKERS} workers started"

    wait_until("uvicorn's workers to start", ready, timeout=STARTUP_TIMEOUT)
    return proc, port


@dataclass
class Request:
    n: int
    sent_cid: str | None
    cid: str = ""
    trace_id: str = ""
    span_id: str = ""
    pid: int = 0
    line: int = 0


def send(base: str, requests: list[Request]) -> None:
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)
    with httpx.Client(base_url=base, limits=limits, timeout=30.0) as client:

        def one(req: Request) -> None:
            headers = {"connection": "close"}
            if req.sent_cid:
                headers["x-correlation-id"] = req.sent_cid
            r = client.get(f"/orders/{req.n}", headers=headers)
            assert r.status_code == 200, f"/orders/{req.n}: {r.status_code} {r.text[:300]}"
            body = r.json()
            req.pid, req.line = body["pid"], body["line"]
            req.cid = r.headers["x-correlation-id"]
            _, req.trace_id, req.span_id, _ = r.headers["traceparent"].split("-")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, requests))


def log_lines(collector: Collector) -> list[dict[str, Any]]:
    """The collector's stdout JSON lines (its own diagnostics go to stderr, into the same file:
    only complete lines that are JSON objects with an `@timestamp` are log lines)."""
    out = []
    for line in collector.proc.log().split("\n")[:-1]:
        if line.startswith("{") and '"@timestamp"' in line:
            out.append(json.loads(line))
    return out


def test_python_log_apis_reach_the_collectors_json_lines(
    log_collector: Collector, procs: Procs, region_dir: Path
) -> None:
    _, port = start_uvicorn(procs, region_dir)
    requests = [Request(n, f"cid-{n}" if n % 2 else None) for n in range(REQUESTS)]
    send(f"http://127.0.0.1:{port}", requests)

    def ours() -> list[dict[str, Any]]:
        return [r for r in log_lines(log_collector) if r.get("api") in APIS]

    def arrived() -> str | None:
        got = len(ours())
        want = len(APIS) * REQUESTS
        return None if got >= want else f"{got} of {want} log lines"

    wait_until("every log line at the collector's stdout", arrived)
    lines = ours()
    by_key = {(r["api"], r["order"]): r for r in lines}
    assert len(by_key) == len(lines) == len(APIS) * REQUESTS, "a line arrived twice"

    levels = {"logging": "INFO", "direct": "INFO", "structlog": "WARN", "native": "ERROR"}
    for req in requests:
        if req.sent_cid:
            assert req.cid == req.sent_cid
        for api in APIS:
            line = by_key[(api, req.n)]
            assert TIMESTAMP.match(line["@timestamp"]), line
            assert line["level"] == levels[api], line
            assert line["service"] == "shop", line
            assert line["pid"] == req.pid, line
            assert isinstance(line["thread"], int), line
            assert line["correlation_id"] == req.cid, line
            assert (line["trace_id"], line["span_id"]) == (req.trace_id, req.span_id), line
        logged = by_key[("logging", req.n)]
        assert logged["message"] == f"order {req.n} placed"
        assert logged["logger"] == "shop.orders"
        assert logged["caller"] == {
            "file": str(APPS / "log_app.py"),
            "line": req.line,
            "function": "order",
        }
        direct = by_key[("direct", req.n)]
        assert (direct["message"], direct["logger"]) == (f"order {req.n} placed", "shop.direct")
        assert "caller" not in direct
        structured = by_key[("structlog", req.n)]
        assert structured["message"] == "order placed"
        assert (structured["component"], structured["tenant"]) == ("orders", f"t{req.n % 3}")
        assert "caller" not in structured
        assert by_key[("native", req.n)]["message"] == "order placed"
