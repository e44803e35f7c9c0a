"""shmtel's Python hot paths side by side with what users run today, in one process run.

    make bench-python        # or: .venv/bin/python benches/python/bench.py [--json FILE]

Each case is a `timeit` loop with the object bound to a local (setup `c = _c`); the figure is
the median over 41 timed batches (at most 5,000 calls each) of ns per call, the ~8 ns of loop
included. Competitors: prometheus_client
in-process and in multiprocess mode (a subprocess: PROMETHEUS_MULTIPROC_DIR must be set before it
is imported), the OpenTelemetry SDK (TracerProvider, always-on sampler, BatchSpanProcessor with an
exporter that does nothing; plus TraceIdRatioBased(0.1), ALWAYS_OFF, and ParentBased(ALWAYS_ON)
under an unsampled remote parent for the head-sampling cases), stdlib logging +
python-json-logger, stdlib logging with a handler that does nothing (the floor of any `logging`
handler: Logger.info, findCaller and LogRecord creation) and structlog's JSONRenderer (to a
null stream). shmtel records into a temporary region directory (default 1 MiB rings) while a
`shmtel collect` (from $SHMTEL_BIN or target/release/shmtel) drains it, as in production, with a
pause after each shmtel batch for the drain: a tight loop on a 2-core machine writes faster than
a collector drains, and a record that finds its ring full is dropped (counted) on a cheaper path,
which would flatter the figures. The records dropped during each shmtel case are reported.

Logs (issue 5): the same event (a message and two fields at INFO) through shmtel's `info()`, a
stdlib logger whose only handler is `shmtel.LoggingHandler` (`logger.info(msg, extra=...)`;
a `logging.Logger`, and a `shmtel.Logger`, which records without making a LogRecord),
structlog with `shmtel.StructlogLoggerFactory` (add_log_level + `shmtel.structlog_render`), and
the competitors above; and the filtered-out call (shmtel's `debug()` below INFO, logging's, and
structlog's filtering bound logger).

Head sampling (issue 4): the span case is measured sampled (shmtel's process ratio 1 / the SDK's
ALWAYS_ON), at ratio 0.1 on both sides (the default ratio of a shmtel service; 10% of the traces
recorded), and unsampled: a new root at ratio 0 (shmtel) / ALWAYS_OFF (SDK), and a child of an
unsampled remote parent on both sides (what a service does when its caller did not sample).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Issues 3 and 4's targets for shmtel, ns per call (None: measured, no target).
TARGETS: dict[str, int | None] = {
    "cached child inc()": 40,
    "labels('GET', '/users').inc()": 150,
    "histogram observe()": 50,
    "span cm + 1 attribute": 1000,
    "span cm + 1 attribute, ratio 0.1": None,
    "span cm + 1 attribute, unsampled": None,
    "info() + 2 fields": 400,
    "debug() filtered out": 40,
}
# Targets of shmtel's other implementations of an operation (issue 5), ns per call.
BRIDGE_TARGETS: dict[tuple[str, str], int | None] = {
    ("info() + 2 fields", "shmtel LoggingHandler (stdlib logger.info)"): 1500,
    ("info() + 2 fields", "shmtel.Logger + LoggingHandler (stdlib logger.info)"): 1500,
    ("info() + 2 fields", "shmtel structlog factory"): None,
}


def measure(stmt: str, obj: Any, repeat: int, batch: int, pause: float) -> float:
    """Median ns per execution of `stmt`, with `obj` bound to the local `c`: `repeat` timings
    of at most `batch` executions each, `pause` seconds apart (time for the collector to drain
    what a batch wrote, so that shmtel's figures are those of a ring with room, not of the
    cheaper path that drops a record when the ring is full)."""
    timer = timeit.Timer(stmt, setup="c = _c", globals={"_c": obj})
    number = max(1, batch)
    timer.timeit(number)  # warm up
    if pause:
        time.sleep(pause)
    times = []
    for _ in range(repeat):
        times.append(timer.timeit(number) / number)
        if pause:
            time.sleep(pause)
    return statistics.median(times) * 1e9


Case = tuple[str, str, str, Any]  # (operation, implementation, stmt, object)
# Cases measured together under one context manager (e.g. a sampling ratio set, then restored),
# and whether they record into shmtel's rings (then they pause for the collector between batches).
Scoped = tuple[list[Case], Callable[[], contextlib.AbstractContextManager[None]], bool]

SPAN_STMT = "with c('checkout') as s:\n    s.set_attribute('user.id', 42)"
# The unsampled remote parent of the "child of an unsampled parent" cases.
REMOTE_TRACE_ID = "4b" * 16
REMOTE_SPAN_ID = "2c" * 8


# ---------------------------------------------------------------------------------------------
# The implementations
# ---------------------------------------------------------------------------------------------


def prometheus_cases(impl: str) -> list[Case]:
    import prometheus_client as pc

    registry = pc.CollectorRegistry()
    counter = pc.Counter("bench_requests", "Requests.", ["method", "path"], registry=registry)
    child = counter.labels("GET", "/users")
    hist = pc.Histogram("bench_latency_seconds", "Latency.", registry=registry)
    return [
        ("cached child inc()", impl, "c.inc()", child),
        ("labels('GET', '/users').inc()", impl, "c.labels('GET', '/users').inc()", counter),
        ("histogram observe()", impl, "c.observe(0.3)", hist),
    ]


def shmtel_cases() -> list[Case]:
    import shmtel
    from shmtel import prometheus as sp

    obs = shmtel.Observability(
        tracing_config=shmtel.TracingConfig(sampling_ratio=1.0),
        logging_config=shmtel.LoggingConfig(level=shmtel.LogLevel.INFO),
    )
    counter = sp.Counter("bench_requests", "Requests.", ["method", "path"])
    child = counter.labels("GET", "/users")
    hist = sp.Histogram("bench_latency_seconds", "Latency.")
    span_stmt = SPAN_STMT
    return [
        ("cached child inc()", "shmtel", "c.inc()", child),
        ("labels('GET', '/users').inc()", "shmtel", "c.labels('GET', '/users').inc()", counter),
        ("histogram observe()", "shmtel", "c.observe(0.3)", hist),
        ("span cm + 1 attribute", "shmtel", span_stmt, obs.start_span),
        ("info() + 2 fields", "shmtel", "c('user logged in', user_id=42, method='GET')", obs.info),
        ("debug() filtered out", "shmtel", "c('details', user_id=42)", obs.debug),
    ]


def shmtel_sampling_cases() -> list[Scoped]:
    """shmtel's span at process ratio 0.1 and unsampled (ratio 0; child of an unsampled remote
    parent). Each scope restores ratio 1 and the context it changed."""
    from shmtel import _native

    @contextlib.contextmanager
    def ratio(r: float) -> Iterator[None]:
        _native.set_sample_ratio(r)
        try:
            yield
        finally:
            _native.set_sample_ratio(1.0)

    @contextlib.contextmanager
    def unsampled_parent() -> Iterator[None]:
        token = _native.set_trace_context(REMOTE_TRACE_ID, REMOTE_SPAN_ID, False)
        try:
            yield
        finally:
            token.var.reset(token)

    start = _native.start_span
    ratio_01 = "span cm + 1 attribute, ratio 0.1"
    unsampled = "span cm + 1 attribute, unsampled"
    return [
        ([(ratio_01, "shmtel", SPAN_STMT, start)], lambda: ratio(0.1), True),
        ([(unsampled, "shmtel", SPAN_STMT, start)], lambda: ratio(0.0), True),
        (
            [(unsampled, "shmtel, child of unsampled remote parent", SPAN_STMT, start)],
            unsampled_parent,
            True,
        ),
    ]


def otel_sampling_cases() -> list[Scoped]:
    """The OpenTelemetry SDK's span with TraceIdRatioBased(0.1), ALWAYS_OFF, and the default
    ParentBased(ALWAYS_ON) under an unsampled remote parent (attached as the current context)."""
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        ParentBased,
        Sampler,
        TraceIdRatioBased,
    )

    def tracer(sampler: Sampler) -> Callable[..., Any]:
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(null_exporter()))
        return provider.get_tracer("bench").start_as_current_span

    @contextlib.contextmanager
    def unsampled_parent() -> Iterator[None]:
        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=int(REMOTE_TRACE_ID, 16),
                span_id=int(REMOTE_SPAN_ID, 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(0),
            )
        )
        token = context.attach(trace.set_span_in_context(parent))
        try:
            yield
        finally:
            context.detach(token)

    ratio_01 = "span cm + 1 attribute, ratio 0.1"
    unsampled = "span cm + 1 attribute, unsampled"
    impl = "OpenTelemetry SDK"
    return [
        (
            [
                (
                    ratio_01,
                    f"{impl} (TraceIdRatioBased(0.1))",
                    SPAN_STMT,
                    tracer(TraceIdRatioBased(0.1)),
                ),
                (unsampled, f"{impl} (ALWAYS_OFF)", SPAN_STMT, tracer(ALWAYS_OFF)),
            ],
            contextlib.nullcontext,
            False,
        ),
        (
            [
                (
                    unsampled,
                    f"{impl} (ParentBased, child of unsampled remote parent)",
                    SPAN_STMT,
                    tracer(ParentBased(ALWAYS_ON)),
                )
            ],
            unsampled_parent,
            False,
        ),
    ]


def null_exporter() -> Any:
    """An OpenTelemetry SDK span exporter that accepts every batch and sends it nowhere."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return NullExporter()


def otel_cases() -> list[Case]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    # The processor warns once its queue is full; the benchmark does not care.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(null_exporter()))
    tracer = provider.get_tracer("bench")
    return [("span cm + 1 attribute", "OpenTelemetry SDK", SPAN_STMT, tracer.start_as_current_span)]


class NullStream:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


LOG_OPERATIONS = ("info() + 2 fields", "debug() filtered out")
LOG_STMT = "c.info('user logged in', extra={'user_id': 42, 'method': 'GET'})"
STRUCTLOG_STMT = "c.info('user logged in', user_id=42, method='GET')"


def shmtel_logging_cases() -> list[Case]:
    """The same event through shmtel's bridges: a stdlib logger whose only handler is
    ``shmtel.LoggingHandler`` (a plain ``logging.Logger``, and a ``shmtel.Logger``, which skips
    the LogRecord), and structlog with ``shmtel.StructlogLoggerFactory``."""
    import structlog

    import shmtel

    logger = logging.getLogger("bench.shmtel")
    logger.handlers[:] = [shmtel.LoggingHandler()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logging.setLoggerClass(shmtel.Logger)
    try:
        fast = logging.getLogger("bench.shmtel.fast")
    finally:
        logging.setLoggerClass(logging.Logger)
    fast.handlers[:] = [shmtel.LoggingHandler()]
    fast.propagate = False
    fast.setLevel(logging.INFO)
    slog = structlog.wrap_logger(
        shmtel.StructlogLoggerFactory()(),
        processors=[structlog.processors.add_log_level, shmtel.structlog_render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    return [
        ("info() + 2 fields", "shmtel LoggingHandler (stdlib logger.info)", LOG_STMT, logger),
        (
            "info() + 2 fields",
            "shmtel.Logger + LoggingHandler (stdlib logger.info)",
            LOG_STMT,
            fast,
        ),
        ("debug() filtered out", "shmtel.Logger (stdlib logger.debug)", "c.debug('details')", fast),
        ("info() + 2 fields", "shmtel structlog factory", STRUCTLOG_STMT, slog),
    ]


def logging_cases() -> list[Case]:
    import structlog
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(NullStream())
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("bench.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)

    class DoNothing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            pass

    floor = logging.getLogger("bench.floor")
    floor.handlers[:] = [DoNothing()]
    floor.propagate = False
    floor.setLevel(logging.INFO)

    slog = structlog.wrap_logger(
        structlog.WriteLogger(NullStream()),  # type: ignore[arg-type]
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    return [
        ("info() + 2 fields", "logging + python-json-logger", LOG_STMT, logger),
        ("info() + 2 fields", "logging + do-nothing handler (the floor)", LOG_STMT, floor),
        ("info() + 2 fields", "structlog JSONRenderer", STRUCTLOG_STMT, slog),
        ("debug() filtered out", "logging", "c.debug('details')", logger),
        ("debug() filtered out", "structlog (filtering bound logger)", "c.debug('details')", slog),
    ]


# ---------------------------------------------------------------------------------------------
# A collector draining shmtel's rings while the benchmark runs
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(region_dir: Path, work: Path) -> subprocess.Popen[bytes] | None:
    exe = Path(os.environ.get("SHMTEL_BIN") or ROOT / "target" / "release" / "shmtel")
    if not exe.is_file():
        print(f"note: {exe} not found: no collector drains the rings", file=sys.stderr)
        return None
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHMTEL_")}
    log = open(work / "collector.log", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen(
        [
            str(exe),
            "collect",
            "--dir",
            str(region_dir),
            "--listen",
            f"127.0.0.1:{port}",
            "--state-file",
            str(work / "state.json"),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    print("note: the collector did not start: no collector drains the rings", file=sys.stderr)
    return None


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def dropped(stats: dict[str, int]) -> int:
    return sum(v for k, v in stats.items() if k.startswith("dropped_"))


def run_cases(
    cases: list[Case], repeat: int, batch: int, pause: float = 0.0
) -> list[dict[str, Any]]:
    stats: Callable[[], dict[str, int]] | None = None
    if "shmtel" in sys.modules:
        from shmtel import _native

        stats = _native.writer_stats
    out = []
    for op, impl, stmt, obj in cases:
        before = dropped(stats()) if stats else 0
        ns = measure(stmt, obj, repeat, batch, pause)
        drops = dropped(stats()) - before if stats and impl.startswith("shmtel") else 0
        print(f"  {op:<32} {impl:<32} {ns:>10.1f} ns", file=sys.stderr, flush=True)
        out.append({"operation": op, "implementation": impl, "ns": ns, "dropped": drops})
    return out


def multiprocess_results(repeat: int, batch: int) -> list[dict[str, Any]]:
    """prometheus_client in multiprocess mode, measured in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="bench-prom-mp-") as d:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": d}
        args = [sys.executable, __file__, "--prometheus-multiprocess"]
        args += ["--repeat", str(repeat), "--batch", str(batch)]
        out = subprocess.run(args, env=env, check=True, stdout=subprocess.PIPE).stdout
    results: list[dict[str, Any]] = json.loads(out)
    return results


def table(results: list[dict[str, Any]]) -> str:
    shmtel_ns = {r["operation"]: r["ns"] for r in results if r["implementation"] == "shmtel"}
    lines = [
        "| operation | implementation | ns/call | × shmtel | target (records dropped) |",
        "|---|---|---:|---:|---|",
    ]
    for op in TARGETS:
        rows = [r for r in results if r["operation"] == op]
        rows.sort(key=lambda r: (not r["implementation"].startswith("shmtel"), r["ns"]))
        for r in rows:
            base = shmtel_ns.get(op)
            impl = r["implementation"]
            if impl.startswith("shmtel"):
                target = TARGETS[op] if impl == "shmtel" else BRIDGE_TARGETS.get((op, impl))
                if target is None:
                    goal = "–"
                else:
                    goal = f"≤ {target:,} ns: {'met' if r['ns'] <= target else 'MISSED'}"
                ratio = f"{r['ns'] / base:,.1f}" if base else "-"
                lines.append(
                    f"| {op} | **{impl}** | **{r['ns']:,.0f}** | {ratio} "
                    f"| {goal} ({r['dropped']:,} dropped) |"
                )
            else:
                ratio = f"{r['ns'] / base:,.1f}" if base else "-"
                lines.append(f"| {op} | {r['implementation']} | {r['ns']:,.0f} | {ratio} | |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--repeat", type=int, default=41, help="timed batches per case (median)")
    p.add_argument("--batch", type=int, default=5_000, help="calls per timed batch, at most")
    p.add_argument(
        "--pause", type=float, default=0.02, help="seconds between shmtel batches (drain time)"
    )
    p.add_argument(
        "--writer-only",
        action="store_true",
        help="no collector: shmtel's rings (256 MiB each, so nothing drops) are not drained while\n"
        "the loops run, which measures the writer alone, as plain timeit loops do (the\n"
        "default run adds a concurrently draining collector's cache-line traffic)",
    )
    p.add_argument(
        "--logs-only",
        action="store_true",
        help="only the log cases (info() + 2 fields, debug() filtered out)",
    )
    p.add_argument("--prometheus-multiprocess", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.prometheus_multiprocess:
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "PROMETHEUS_MULTIPROC_DIR unset"
        cases = prometheus_cases("prometheus_client multiprocess")
        print(json.dumps(run_cases(cases, a.repeat, a.batch)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="shmtel-bench-"))
    region_dir = work / "regions"
    region_dir.mkdir(mode=0o700)
    collector = None if a.writer_only else start_collector(region_dir, work)
    if a.writer_only:
        os.environ["SHMTEL_RING_BYTES"] = str(256 << 20)
        a.pause = 0.0
    try:
        # Before shmtel is imported: where its regions go.
        os.environ["SHMTEL_DIR"] = str(region_dir)
        os.environ["SHMTEL_SERVICE"] = "bench"
        import shmtel
        from shmtel import _native

        print(
            f"python {sys.version.split()[0]}; shmtel {shmtel.__version__} {_native.build_info()}",
            file=sys.stderr,
        )
        shmtel_main = shmtel_cases()
        if a.logs_only:
            shmtel_main = [c for c in shmtel_main if c[0] in LOG_OPERATIONS]
        results = run_cases(shmtel_main, a.repeat, a.batch, a.pause)
        if not a.logs_only:
            results += run_cases(prometheus_cases("prometheus_client"), a.repeat, a.batch)
            results += multiprocess_results(a.repeat, a.batch)
            for cases, scope, records in shmtel_sampling_cases():
                with scope():
                    results += run_cases(cases, a.repeat, a.batch, a.pause if records else 0.0)
            results += run_cases(otel_cases(), a.repeat, a.batch)
            for cases, scope, records in otel_sampling_cases():
                with scope():
                    results += run_cases(cases, a.repeat, a.batch, a.pause if records else 0.0)
        # The log cases one after the other (the bridges beside their competitors), so that a
        # shared machine's load drifts as little as possible between the figures compared.
        results += run_cases(shmtel_logging_cases(), a.repeat, a.batch, a.pause)
        results += run_cases(logging_cases(), a.repeat, a.batch)
        stats = _native.writer_stats()
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print(table(results))
    print()
    print(f"collector draining: {'yes' if collector else 'no'}; shmtel writer_stats: {stats}")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "python": sys.version,
                    "collector": collector is not None,
                    "writer_stats": stats,
                    "results": results,
                },
                indent=2,
            )
        )
        print(f"(JSON in {a.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
