"""The training run of shmtel's profile-guided build (`pybind/pgo/build.sh`, `make pybuild`).

The extension's per-call code runs once per request, straight through, in a process whose own
code (the interpreter, the server) already overflows the first-level instruction cache: its cost
is mostly instruction-cache misses, one per cache line of shmtel code touched. A build guided by
a profile of the common paths lays those paths out together and moves the rest (errors, the
first call's set-up, full rings) out of the way; `benches/asgi/instructions.sh` with
`CACHE_SIM=1` measures the difference (benches/README.md, "End to end").

So this script runs what services run, in proportion to how often they run it: the ASGI
middleware around a Starlette handler that makes a child span, increments a counter and logs a
line (the benchmark's app), with and without a caller's trace context and correlation id; and
the rest of the public API, each path a few thousand times: metrics (children, labels, gauges,
histograms with and without exemplars, timers), spans (attributes, events, status, nesting,
remote parents, sampled and not), logs (`info` and the level functions, the filtered-out call,
the stdlib bridge on a `logging.Logger` and on a `shmtel.Logger`, structlog) and propagation (`inject`, `extract`). What is not run here is laid out as
cold code: it stays correct, only slower. Error paths are run a little on purpose (a failing
handler, an invalid header) so that they are not laid out in the middle of the hot ones, but
not often.

The rings are made large enough that nothing is dropped without a collector (a full ring takes
another path, which must not look hot).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from typing import Any

REQUESTS = 6_000
CALLS = 3_000


def configure_environment(work: str) -> None:
    os.environ["SHMTEL_DIR"] = os.path.join(work, "regions")
    os.environ["SHMTEL_RING_BYTES"] = str(256 << 20)
    os.environ.setdefault("SHMTEL_SERVICE", "shmtel-pgo-train")


def asgi_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import shmtel
    from shmtel.asgi import setup_observability

    lookups = shmtel.Counter("pgo_user_lookups_total", "User lookups.")

    async def get_user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        with shmtel.start_span("load_user", attributes={"user.id": user_id}):
            lookups.inc()
            shmtel.info("user fetched", user_id=user_id, plan="free")
        return JSONResponse({"id": user_id, "name": f"user-{user_id}"})

    async def fail(request: Request) -> Response:
        raise RuntimeError("training a failing handler")

    app = Starlette(routes=[Route("/users/{user_id}", get_user), Route("/fail", fail)])
    setup_observability(
        app,
        {
            "metrics": {"namespace": ""},
            "tracing": {"service_name": "shmtel-pgo-train", "sampling_ratio": 1.0},
        },
    )
    return app


def scope(path: str, extra_headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"accept", b"*/*"),
            *extra_headers,
        ],
        "state": {},
    }


async def run_requests(app: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    traceparent = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    for i in range(REQUESTS):
        extra: list[tuple[bytes, bytes]] = []
        if i % 4 == 1:
            extra.append(traceparent)
        if i % 8 == 2:
            extra.append((b"x-correlation-id", b"caller-supplied-id-%d" % i))
        if i % 500 == 3:
            extra.append((b"x-correlation-id", b"not valid \x01"))
        path = f"/users/{i % 100}"
        if i % 200 == 5:
            path = "/no/such/route"
        await app(scope(path, extra), receive, send)
        if i % 500 == 7:
            try:
                await app(scope("/fail", []), receive, send)
            except RuntimeError:
                pass


def run_metrics() -> None:
    import shmtel

    counter = shmtel.Counter("pgo_requests_total", "Requests.", ["method", "path"])
    child = counter.labels("GET", "/users")
    plain = shmtel.Counter("pgo_events_total", "Events.")
    gauge = shmtel.Gauge("pgo_in_flight", "In flight.")
    hist = shmtel.Histogram("pgo_latency_seconds", "Latency.", ["route"])
    hist_child = hist.labels("/users")
    summary = shmtel.Summary("pgo_size_bytes", "Sizes.")
    for i in range(CALLS):
        child.inc()
        plain.inc(2)
        counter.labels("GET", "/users").inc()
        counter.labels(method="POST", path="/orders").inc()
        gauge.inc()
        gauge.dec()
        gauge.set(i)
        hist_child.observe(0.001 * (i % 50))
        hist.labels("/orders").observe(0.02)
        summary.observe(512)
        if i % 10 == 0:
            with hist_child.time():
                pass
    with shmtel.start_span("with exemplar"):
        for _ in range(CALLS // 10):
            hist_child.observe(0.3)


def run_spans() -> None:
    import shmtel

    remote = shmtel.extract(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    )
    unsampled = shmtel.extract(
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}
    )
    for i in range(CALLS):
        with shmtel.start_span("outer", kind="server", attributes={"a": i, "b": "x"}) as outer:
            outer.set_attribute("k", "v")
            outer.set_attributes({"n": 1.5, "ok": True})
            with shmtel.start_span("inner") as inner:
                inner.add_event("event", {"e": 1})
                if i % 100 == 0:
                    inner.set_status("error", "training")
        with shmtel.start_span("child of remote", remote):
            pass
        with shmtel.start_span("child of unsampled remote", unsampled):
            pass
        with shmtel.start_span("head sampled", sample_ratio=0.1, attributes={"a": i}):
            pass
        with shmtel.start_span("not sampled", sample_ratio=0.0, attributes={"a": i}):
            pass
        headers: dict[str, str] = {}
        with shmtel.start_span("client", kind="client") as span:
            shmtel.inject(headers, span)


def run_logs() -> None:
    import shmtel

    logger = logging.getLogger("pgo.shmtel")
    logging.setLoggerClass(shmtel.Logger)
    try:
        fast = logging.getLogger("pgo.shmtel.fast")
    finally:
        logging.setLoggerClass(logging.Logger)
    for each in (logger, fast):
        each.handlers[:] = [shmtel.LoggingHandler()]
        each.propagate = False
        each.setLevel(logging.INFO)
    for i in range(CALLS):
        shmtel.info("user logged in", user_id=i, method="GET")
        shmtel.warning("slow", elapsed=0.5)
        shmtel.debug("filtered out", user_id=i)
        logger.info("through logging", extra={"user_id": i})
        fast.info("through shmtel.Logger", extra={"user_id": i, "method": "GET"})
        fast.debug("filtered out")
        if i % 100 == 0:
            shmtel.error("failed", reason="training")
    try:
        import structlog
    except ImportError:
        return
    slog = structlog.wrap_logger(
        shmtel.StructlogLoggerFactory()(),
        processors=[structlog.processors.add_log_level, shmtel.structlog_render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    for i in range(CALLS):
        slog.info("user logged in", user_id=i)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="shmtel-pgo-") as work:
        configure_environment(work)
        asyncio.run(run_requests(asgi_app()))
        run_metrics()
        run_spans()
        run_logs()
    print(f"pgo training: {REQUESTS} requests, {CALLS} calls per API path", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
