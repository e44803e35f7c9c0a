"""The app of the end-to-end ASGI benchmark (`benches/asgi/run.py`), in four variants.

`GET /users/{user_id}` returns a small JSON document. Its handler does what a real handler does
for observability: one child span, one counter increment, one log line with two fields. The
variant is chosen by `BENCH_VARIANT`:

- `bare`: no instrumentation at all (the handler only builds the response);
- `bare_cid`: the bare app whose responses carry an `x-correlation-id` (a new random id per
  request, set by the handler): not one of the issue's variants, but the floor under any
  instrumentation that returns a correlation id, as shmtel's middleware does. Under h11 a
  response header is not free (see benches/README.md);
- `today`: what services carry now. prometheus_client RED metrics (requests counter, duration
  histogram, in-progress gauge) from a small ASGI middleware; an OpenTelemetry SDK server span
  (`{method} {route}`, kind SERVER, semconv attributes, W3C context extracted from the request)
  from a hand-written ASGI middleware, a child span in the handler, BatchSpanProcessor over the
  OTLP/HTTP protobuf exporter (`BENCH_OTLP_ENDPOINT`); stdlib logging with python-json-logger's
  JsonFormatter to `BENCH_LOG_FILE`; `/metrics` served by the app (outside the middlewares, as
  an excluded URL);
- `today_mp`: the same with prometheus_client in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`
  set by the driver; `/metrics` aggregates the directory as the docs show);
- `shmtel`: shmtel's `setup_observability` (server span, RED metrics, correlation id, the
  `x-correlation-id` response header, and the span's `traceparent` or `traceresponse` too when
  `BENCH_RESPONSE_HEADER` names one), every request traced (sampling ratio 1.0), and shmtel's
  API in the handler:
  `start_span`, a `Counter`, `shmtel.info` with two fields. The collector beside the workers
  does the rest (scrape, OTLP export, JSON lines).

The OpenTelemetry provider is flushed and shut down in the lifespan shutdown, so every span a
worker made reaches the receiver before the worker exits.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
VARIANTS = ("bare", "bare_cid", "today", "today_mp", "shmtel")
if VARIANT not in VARIANTS:
    raise SystemExit(f"BENCH_VARIANT must be one of {VARIANTS}, got {VARIANT!r}")
SERVICE = os.environ.get("BENCH_SERVICE", f"bench-{VARIANT}")


def user_document(user_id: str) -> dict[str, object]:
    return {"id": user_id, "name": f"user-{user_id}", "plan": "free", "active": True}


# -- bare ------------------------------------------------------------------------------------------


async def get_user_bare(request: Request) -> Response:
    return JSONResponse(user_document(request.path_params["user_id"]))


def build_bare() -> ASGIApp:
    return Starlette(routes=[Route("/users/{user_id}", get_user_bare)])


def build_bare_cid() -> ASGIApp:
    async def get_user(request: Request) -> Response:
        return JSONResponse(
            user_document(request.path_params["user_id"]),
            headers={"x-correlation-id": os.urandom(16).hex()},
        )

    return Starlette(routes=[Route("/users/{user_id}", get_user)])


# -- today: prometheus_client + OpenTelemetry SDK + stdlib logging/python-json-logger ---------------


def build_today(multiprocess: bool) -> ASGIApp:
    import logging

    import prometheus_client
    from opentelemetry import propagate
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from prometheus_client import Counter, Gauge, Histogram
    from pythonjsonlogger.json import JsonFormatter

    if multiprocess and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise SystemExit("today_mp needs PROMETHEUS_MULTIPROC_DIR")

    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    endpoint = os.environ.get("BENCH_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    tracer = provider.get_tracer("bench.app")

    handler = logging.FileHandler(os.environ.get("BENCH_LOG_FILE", "bench-today.log"))
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("bench.app")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    requests_total = Counter("http_requests_total", "HTTP requests.", ("method", "route", "status"))
    duration = Histogram(
        "http_request_duration_seconds", "HTTP request duration.", ("method", "route")
    )
    in_progress = Gauge(
        "http_requests_in_progress",
        "HTTP requests in progress.",
        ("method",),
        multiprocess_mode="livesum",
    )
    lookups = Counter("user_lookups_total", "User lookups.")

    async def get_user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        with tracer.start_as_current_span("load_user") as span:
            span.set_attribute("user.id", user_id)
            lookups.inc()
            log.info("user fetched", extra={"user_id": user_id, "plan": "free"})
        return JSONResponse(user_document(user_id))

    def route_of(scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else "<unmatched>"

    class PrometheusMiddleware:
        """RED metrics the way a small hand-written middleware records them."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            method = scope["method"]
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            gauge = in_progress.labels(method)
            gauge.inc()
            start = time.perf_counter()
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = route_of(scope)
                duration.labels(method, route).observe(time.perf_counter() - start)
                requests_total.labels(method, route, str(status)).inc()
                gauge.dec()

    class TracingMiddleware:
        """An OpenTelemetry server span per request, as opentelemetry-instrumentation-asgi does
        (context extracted from the headers, semconv attributes, `{method} {route}` name)."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            context = propagate.extract(carrier)
            method = scope["method"]
            with tracer.start_as_current_span(
                method,
                context=context,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"]},
            ) as span:
                status = 500

                async def send_status(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                    await send(message)

                try:
                    await self.app(scope, receive, send_status)
                finally:
                    route = route_of(scope)
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        provider.shutdown()  # flushes the BatchSpanProcessor: every span reaches the receiver

    inner = Starlette(routes=[Route("/users/{user_id}", get_user)], lifespan=lifespan)
    inner.add_middleware(TracingMiddleware)
    inner.add_middleware(PrometheusMiddleware)

    if multiprocess:
        from prometheus_client import multiprocess as mp

        def metrics_text() -> bytes:
            registry = prometheus_client.CollectorRegistry()
            mp.MultiProcessCollector(registry)
            return prometheus_client.generate_latest(registry)
    else:

        def metrics_text() -> bytes:
            return prometheus_client.generate_latest()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # /metrics outside the middlewares (an excluded URL): scrapes are not requests served.
        if scope["type"] == "http" and scope["path"] == "/metrics":
            body = metrics_text()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", prometheus_client.CONTENT_TYPE_LATEST.encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    return app


# -- shmtel ----------------------------------------------------------------------------------------


def build_shmtel() -> ASGIApp:
    import shmtel
    from shmtel.asgi import setup_observability

    start_span = shmtel.start_span
    info = shmtel.info
    lookups = shmtel.Counter("user_lookups_total", "User lookups.")

    async def get_user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        with start_span("load_user", attributes={"user.id": user_id}):
            lookups.inc()
            info("user fetched", user_id=user_id, plan="free")
        return JSONResponse(user_document(user_id))

    app = Starlette(routes=[Route("/users/{user_id}", get_user)])
    setup_observability(
        app,
        {
            "metrics": {"namespace": ""},
            "tracing": {
                "service_name": SERVICE,
                "sampling_ratio": 1.0,
                # None (the default): only x-correlation-id goes back to the caller.
                "response_header": os.environ.get("BENCH_RESPONSE_HEADER") or None,
            },
        },
    )
    return app


# -- the tally --------------------------------------------------------------------------------------


class RequestTally:
    """Counts the `/users/...` requests that reach the app, outside any instrumentation, and
    writes the count to `BENCH_TALLY_DIR/<pid>` at lifespan shutdown: the driver's ground truth.

    wrk's own total counts completed responses; the requests it sent but did not wait for when
    its time was up are served too, unless its closing sockets reset them (unread data makes the
    kernel send RST, and the server never reads the request). So the requests served lie between
    wrk's completed and sent counts, and only the server can say which: one integer add here, the
    same in every variant.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0
        self.directory = os.environ.get("BENCH_TALLY_DIR")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith("/users/"):
                self.requests += 1
            await self.app(scope, receive, send)
            return
        if kind != "lifespan" or not self.directory:
            await self.app(scope, receive, send)
            return

        async def send_tally(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self.directory:
                with open(os.path.join(self.directory, str(os.getpid())), "w") as f:
                    f.write(str(self.requests))
            await send(message)

        await self.app(scope, receive, send_tally)


if VARIANT == "bare":
    app = RequestTally(build_bare())
elif VARIANT == "bare_cid":
    app = RequestTally(build_bare_cid())
elif VARIANT == "shmtel":
    app = RequestTally(build_shmtel())
else:
    app = RequestTally(build_today(multiprocess=VARIANT == "today_mp"))
