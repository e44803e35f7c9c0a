"""Traces end to end: a Starlette app under `uvicorn --workers 2`, `shmtel collect` with the JSON
lines exporter (`[export.jsonl] path = ...` in its config file). Requests carrying a W3C
`traceparent` (and some B3 and Jaeger headers) yield exported server spans whose parent is the
caller's span, in the caller's trace, with the child spans the handler made (`start_span`, a
`@traced` function, a `@traced` coroutine) beneath them; the response's `traceparent` names the
server span, and the handler's outgoing headers continue the same trace."""

from __future__ import annotations

import json
import re
import secrets
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
SERVER = 2  # OTLP span kinds, as the JSON lines exporter writes them
CLIENT = 3
INTERNAL = 1


@pytest.fixture
def traced_collector(sandbox: Path, procs: Procs) -> Iterator[tuple[Collector, Path]]:
    """`shmtel collect` exporting spans as JSON lines to `sandbox/spans.jsonl`; SIGTERMed at the
    end, when it must exit 0."""
    spans = sandbox / "spans.jsonl"
    config = sandbox / "collector.toml"
    config.write_text(f"[export.jsonl]\npath = {json.dumps(str(spans))}\n")
    with running_collector(procs, sandbox, ["--config", config]) as c:
        yield c, spans


def start_uvicorn(procs: Procs, region_dir: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = procs.start(
        "uvicorn",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "trace_app:app",
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
        env=worker_env(region_dir),
    )

    def ready() -> str | None:
        if not proc.alive():
            raise AssertionError(f"uvicorn exited with {proc.popen.returncode}\n{proc.describe()}")
        started = proc.log().count("Application startup complete.")
        return None if started >= WORKERS else f"{started} of {WORKERS} workers started"

    wait_until("uvicorn's workers to start", ready, timeout=STARTUP_TIMEOUT)
    return proc, port


@dataclass
class Call:
    """One request: the caller's ids, the headers that carried them, and what came back."""

    n: int
    trace_id: str
    parent_id: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    traceparent: str | None = None


def plan(count: int) -> list[Call]:
    calls: list[Call] = []
    for n in range(count):
        trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
        if n % 8 == 5:
            headers = {"b3": f"{trace_id}-{parent_id}-1"}
        elif n % 8 == 6:
            headers = {"X-B3-TraceId": trace_id, "X-B3-SpanId": parent_id, "X-B3-Sampled": "1"}
        elif n % 8 == 7:
            headers = {"uber-trace-id": f"{trace_id}:{parent_id}:0:1"}
        else:
            headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        calls.append(Call(n, trace_id, parent_id, headers))
    return calls


def send(base: str, calls: list[Call]) -> None:
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)
    with httpx.Client(base_url=base, limits=limits, timeout=30.0) as client:

        def one(call: Call) -> None:
            r = client.get(f"/work/{call.n}", headers={**call.headers, "connection": "close"})
            assert r.status_code == 200, f"/work/{call.n}: {r.status_code} {r.text[:300]}"
            call.body = r.json()
            call.traceparent = r.headers.get("traceparent")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, calls))


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The complete lines of the JSON lines file (a line being written is left for later)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def test_traceparent_continues_through_uvicorn_workers_to_the_exporter(
    traced_collector: tuple[Collector, Path], procs: Procs, region_dir: Path
) -> None:
    collector, spans_path = traced_collector
    _, port = start_uvicorn(procs, region_dir)
    calls = plan(48)
    send(f"http://127.0.0.1:{port}", calls)

    # The responses: the server span continues the caller's trace, the response names it.
    pids = set()
    for call in calls:
        body = call.body
        assert body is not None
        pids.add(body["pid"])
        assert body["trace_id"] == call.trace_id, (call.headers, body)
        assert call.traceparent == f"00-{call.trace_id}-{body['span_id']}-01"
        assert body["outgoing"]["traceparent"] == (
            f"00-{call.trace_id}-{body['children']['fetch']}-01"
        )
        assert body["outgoing"]["b3"] == f"{call.trace_id}-{body['children']['fetch']}-1"
    assert len(pids) == WORKERS, f"requests served by worker(s) {pids}; expected {WORKERS}"

    wanted = {c.trace_id for c in calls}

    def exported() -> str | None:
        collector.assert_running()
        by_trace: dict[str, list[dict[str, Any]]] = {}
        for s in read_spans(spans_path):
            if s.get("traceId") in wanted:
                by_trace.setdefault(s["traceId"], []).append(s)
        complete = sum(1 for t in wanted if len(by_trace.get(t, [])) >= 4)
        if complete < len(wanted):
            return f"{complete} of {len(wanted)} traces exported with 4 spans\n{collector.proc.describe()}"
        return None

    wait_until("the spans of every request in the JSON lines file", exported)
    by_trace = {}
    for s in read_spans(spans_path):
        by_trace.setdefault(s["traceId"], []).append(s)

    for call in calls:
        body = call.body
        assert body is not None
        spans = {s["spanId"]: s for s in by_trace[call.trace_id]}
        assert len(spans) == 4, f"trace {call.trace_id} ({call.headers}): {list(spans.values())}"
        server = spans[body["span_id"]]
        assert server["parentSpanId"] == call.parent_id, server
        assert server["kind"] == SERVER
        assert server["name"] == "GET /work/{n}"
        assert server["attributes"]["http.route"] == "/work/{n}"
        assert server["attributes"]["http.response.status_code"] == 200
        assert server["resource"]["service.name"] == "e2e-trace"  # the app's TracingConfig
        assert server["resource"]["process.pid"] == body["pid"]
        assert server["startTimeUnixNano"] <= server["endTimeUnixNano"]

        children = body["children"]
        kinds = {"db.query": CLIENT, "compute": INTERNAL, "fetch": CLIENT}
        for name, span_id in children.items():
            child = spans[span_id]
            assert child["name"] == name
            assert child["kind"] == kinds[name]
            assert child["parentSpanId"] == body["span_id"], child
            assert server["startTimeUnixNano"] <= child["startTimeUnixNano"]
            assert child["endTimeUnixNano"] <= server["endTimeUnixNano"]
        assert spans[children["db.query"]]["attributes"] == {"db.system": "sqlite", "n": call.n}
        assert spans[children["compute"]]["attributes"] == {"app.step": "compute"}

    # Nothing else of these traces was exported, and no request made a trace of its own.
    ours = [s for s in read_spans(spans_path) if s.get("traceId") in wanted]
    assert len(ours) == 4 * len(calls)
    roots = [s for s in read_spans(spans_path) if s.get("parentSpanId") == ""]
    assert not [s for s in roots if re.fullmatch(r"GET /work/.*", s["name"])], roots[:3]
