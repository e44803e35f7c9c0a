"""ASGI middleware: a server span, RED metrics and correlation ids for every HTTP request.

:class:`ObservabilityMiddleware` is pure ASGI (no Starlette import): it handles ``http`` scopes
and passes ``lifespan`` and ``websocket`` through untouched. Per request it

- reads ``x-correlation-id`` (or makes one with ``_native.new_correlation_id()``) and the
  caller's trace context (W3C ``traceparent``, else B3 ``b3`` or ``X-B3-*``, else Jaeger
  ``uber-trace-id``; see :mod:`shmtel.propagation`), and makes the correlation id and a server
  span (whose parent is the remote caller's span, when there is one) current in ``contextvars``
  while the app runs, so the app's own spans and logs join the trace; a B3 sampling decision
  sent without ids (``b3: 0``) decides the new root span; a caller's W3C ``tracestate`` is
  passed on by :func:`shmtel.propagation.inject` in the handler;
- records ``http_requests_total{method,route,status}``, ``http_request_duration_seconds{method,
  route}`` (histogram, observed while the server span is current so a sampled span becomes the
  exemplar), ``http_requests_in_progress{method}`` (gauge, livesum) and
  ``http_requests_errors_total{method,route}`` (a 5xx status or an exception; the exception is
  also logged at ERROR with ``error_type`` and ``error_message``, then re-raised);
- adds ``x-correlation-id`` and ``traceparent`` (and the caller's valid ``tracestate``, when the
  trace came in W3C) to the response headers;
- answers ``GET /_metrics`` (this process's view) and ``GET /_health`` itself.

The ``route`` label is the route template (``/users/{user_id}``), never the raw path, so that its
cardinality is bounded by the app's routes: Starlette and FastAPI leave the matched route in
``scope["route"]``; its template (with the prefixes of the Mounts above it) is looked up in an
index of the router's route tree built once. For other apps with a ``routes`` list the middleware
matches the path itself (cached per method and path, bounded). A request no route matched gets
``<unmatched>``. Methods outside the HTTP standard ones are labelled ``_OTHER`` (OTel semconv).

Cost: the metric children for each (method, route, status) are created once and kept in a dict;
per request the middleware does one dict() of the headers, a few native calls and no regex; the
propagation headers are parsed (in Rust) only when one is present.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from shmtel import _native
from shmtel.observability import Observability
from shmtel.prometheus import CONTENT_TYPE_PLAIN_0_0_4, Counter, Gauge, Histogram
from shmtel.propagation import _tracestate_var

__all__ = ["UNMATCHED", "ObservabilityMiddleware", "setup_observability"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "<unmatched>"
"""The ``route`` label of a request that no route matched (404s, scanners)."""

_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_MAX_CORRELATION_ID = 128
_MAX_PATH_CACHE = 4096
_MAX_ROUTE_DEPTH = 16
_METRICS_PATH = "/_metrics"
_HEALTH_PATH = "/_health"

_perf_counter = time.perf_counter
_new_correlation_id = _native.new_correlation_id
_set_correlation_id = _native.set_correlation_id
_start_span = _native.start_span
_log_error = _native.error
_extract = _native.extract
_extract_sampling = _native.extract_sampling
_extract_tracestate = _native.extract_tracestate
# The headers that may carry a caller's trace context (ASGI header names are lowercase).
_PROPAGATION_HEADERS = frozenset(
    {b"traceparent", b"b3", b"x-b3-traceid", b"x-b3-sampled", b"x-b3-flags", b"uber-trace-id"}
)


class _RouteMetrics:
    """What one (method, route, status) needs per request, made once: the server span's name and
    the metric children (None when metrics are off)."""

    __slots__ = ("duration", "errors", "requests", "span_name")

    def __init__(self, span_name: str, requests: Any, duration: Any, errors: Any) -> None:
        self.span_name = span_name
        self.requests = requests
        self.duration = duration
        self.errors = errors


class ObservabilityMiddleware:
    """Pure ASGI middleware recording a server span, RED metrics and correlation per request.

    ``observability`` is an :class:`Observability` to use; without one, ``config`` (the
    ``{"metrics": ..., "tracing": ..., "logging": ...}`` dict of :func:`setup_observability`)
    makes one. Passing both is an error.
    """

    def __init__(
        self,
        app: ASGIApp,
        observability: Observability | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"ObservabilityMiddleware wraps an ASGI app, got {type(app).__name__}")
        if observability is not None and config is not None:
            raise ValueError("pass either observability= or config=, not both")
        if observability is None:
            observability = Observability.from_dict(config)
        elif not isinstance(observability, Observability):
            raise TypeError(
                f"observability must be an Observability, got {type(observability).__name__}"
            )
        self.app = app
        self.observability = observability
        self._tracing = observability.tracing_config.enabled
        self._metrics = observability.metrics_config.enabled
        self._service = observability.tracing_config.service_name
        self._version = observability.tracing_config.service_version
        self._sampling_ratio = observability.tracing_config.sampling_ratio
        if self._metrics:
            self._requests = Counter(
                "http_requests_total",
                "HTTP requests handled, by method, route template and status code.",
                ("method", "route", "status"),
            )
            self._duration = Histogram(
                "http_request_duration_seconds",
                "Time from receiving an HTTP request to the app returning, in seconds.",
                ("method", "route"),
                buckets=observability.metrics_config.default_buckets,
            )
            self._in_progress = Gauge(
                "http_requests_in_progress",
                "HTTP requests being handled now.",
                ("method",),
                multiprocess_mode="livesum",
            )
            self._errors = Counter(
                "http_requests_errors_total",
                "HTTP requests that ended in a 5xx status or an exception.",
                ("method", "route"),
            )
        self._route_metrics: dict[tuple[str, str, int], _RouteMetrics] = {}
        self._in_progress_children: dict[str, Any] = {}
        # id(route) -> (route, template): the route is kept so that its id cannot be reused.
        self._templates: dict[int, tuple[object, str]] = {}
        self._path_templates: dict[tuple[str, str], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        raw_method: str = scope["method"]
        if (path == _METRICS_PATH or path == _HEALTH_PATH) and (
            raw_method == "GET" or raw_method == "HEAD"
        ):
            await self._serve_own(path, raw_method, send)
            return
        method = raw_method if raw_method in _METHODS else "_OTHER"

        headers = dict(scope["headers"])
        cid_raw: bytes | None = headers.get(b"x-correlation-id")
        if cid_raw is not None and 0 < len(cid_raw) <= _MAX_CORRELATION_ID and cid_raw.isascii():
            cid = cid_raw.decode("ascii")
            if not cid.isprintable():
                cid = _new_correlation_id()
                cid_raw = cid.encode("ascii")
        else:
            cid = _new_correlation_id()
            cid_raw = cid.encode("ascii")
        cid_token = _set_correlation_id(cid)

        tracestate_token = None
        span: _native.Span | None = None
        # The headers added to the response, built once here (the send wrapper only appends).
        extra: list[tuple[bytes, bytes]]
        if self._tracing:
            parent: _native.RemoteContext | None = None
            root_ratio: float | None = None
            tracestate_out = None
            if not _PROPAGATION_HEADERS.isdisjoint(headers):
                # The raw list: a header sent twice is joined, as HTTP says (an invalid one is
                # ignored and a new trace starts, as propagators do).
                raw_headers = scope["headers"]
                parent = _extract(raw_headers, sample_ratio=self._sampling_ratio)
                if parent is None:
                    decision = _extract_sampling(raw_headers)
                    if decision is not None:
                        root_ratio = 1.0 if decision else 0.0
                elif b"tracestate" in headers:
                    tracestate = _extract_tracestate(raw_headers)
                    if tracestate is not None:
                        tracestate_out = tracestate.encode("latin-1")
                        tracestate_token = _tracestate_var.set((parent.trace_id, tracestate))
            span = _start_span(raw_method, parent, kind="server", sample_ratio=root_ratio)
            span.__enter__()
            extra = [
                (b"x-correlation-id", cid_raw),
                (b"traceparent", span.traceparent().encode("ascii")),
            ]
            if tracestate_out is not None:
                extra.append((b"tracestate", tracestate_out))
        else:
            extra = [(b"x-correlation-id", cid_raw)]

        in_progress = None
        if self._metrics:
            in_progress = self._in_progress_children.get(method)
            if in_progress is None:
                in_progress = self._in_progress.labels(method)
                self._in_progress_children[method] = in_progress
            in_progress.inc()

        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                own = message.get("headers")
                # A new message (the app's may be reused), never the app's header list mutated.
                message = {**message, "headers": [*own, *extra] if own else extra}
            await send(message)

        start = _perf_counter()
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_headers)
        except BaseException as e:
            error = e
            raise
        finally:
            duration = _perf_counter() - start
            if error is not None or status == 0:
                status = 500
            matched = scope.get("route")
            entry = self._templates.get(id(matched)) if matched is not None else None
            if entry is not None and entry[0] is matched:
                route = entry[1]
            else:
                route = self._route_of(scope, method, path)
            if error is not None and isinstance(error, Exception):
                _log_error(
                    "Request failed",
                    error_type=type(error).__name__,
                    error_message=str(error),
                    method=raw_method,
                    route=route,
                    path=path,
                )
            info = self._route_metrics.get((method, route, status))
            if info is None:
                info = self._route_info(method, route, status)
            if in_progress is not None:
                in_progress.dec()
                info.requests.inc()
                info.duration.observe(duration)
                if status >= 500 or error is not None:
                    info.errors.inc()
            if span is not None:
                # Attributes only for sampled spans (the default ratio is 0.1), all in one call at
                # the end: a span is written when it ends, so nothing sees them earlier.
                if span.is_recording:
                    user_agent = headers.get(b"user-agent")
                    span.set_attributes(
                        {
                            "http.request.method": raw_method,
                            "url.path": path,
                            "http.route": route,
                            "http.response.status_code": status,
                        }
                        if user_agent is None
                        else {
                            "http.request.method": raw_method,
                            "url.path": path,
                            "user_agent.original": user_agent.decode("latin-1"),
                            "http.route": route,
                            "http.response.status_code": status,
                        }
                    )
                    # OTel semconv: "{method} {route}" once the route template is known.
                    if route != UNMATCHED:
                        span.update_name(info.span_name)
                    if status >= 500 and error is None:
                        span.set_status("error", f"HTTP {status}")
                if error is not None:
                    span.__exit__(type(error), error, error.__traceback__)
                else:
                    span.__exit__(None, None, None)
            if tracestate_token is not None:
                _tracestate_var.reset(tracestate_token)
            cid_token.var.reset(cid_token)

    def _route_info(self, method: str, route: str, status: int) -> _RouteMetrics:
        span_name = f"{method if method != '_OTHER' else 'HTTP'} {route}"
        if self._metrics:
            info = _RouteMetrics(
                span_name,
                self._requests.labels(method, route, str(status)),
                self._duration.labels(method, route),
                self._errors.labels(method, route),
            )
        else:
            info = _RouteMetrics(span_name, None, None, None)
        self._route_metrics[(method, route, status)] = info
        return info

    # -- route templates ---------------------------------------------------------------------------

    def _route_of(self, scope: Scope, method: str, path: str) -> str:
        route = scope.get("route")
        if route is not None:
            entry = self._templates.get(id(route))
            if entry is not None and entry[0] is route:
                return entry[1]
            return self._template_of(route, scope)
        if "router" in scope:
            # A Starlette router ran and matched nothing (404, or a trailing-slash redirect).
            return UNMATCHED
        return self._match_path(scope, method, path)

    def _template_of(self, route: object, scope: Scope) -> str:
        root = scope.get("router") or scope.get("app") or self.app
        routes = _routes_of(root)
        if routes is not None:
            index: dict[int, tuple[object, str]] = {}
            _index_routes(routes, "", index, 0)
            self._templates = index
            entry = index.get(id(route))
            if entry is not None and entry[0] is route:
                return entry[1]
        # A route outside the tree we can see (a router inside a plain ASGI sub-app): its own path.
        own = getattr(route, "path", None)
        template = own if isinstance(own, str) and own else UNMATCHED
        self._templates[id(route)] = (route, template)
        return template

    def _match_path(self, scope: Scope, method: str, path: str) -> str:
        key = (method, path)
        template = self._path_templates.get(key)
        if template is not None:
            return template
        routes = _routes_of(self.app)
        template = _match_routes(routes, dict(scope), "", 0) if routes else None
        if template is None:
            template = UNMATCHED
        if len(self._path_templates) >= _MAX_PATH_CACHE:
            self._path_templates.clear()
        self._path_templates[key] = template
        return template

    # -- own endpoints -----------------------------------------------------------------------------

    async def _serve_own(self, path: str, method: str, send: Send) -> None:
        if path == _METRICS_PATH:
            body = _native.render_process_metrics().encode("utf-8")
            content_type = CONTENT_TYPE_PLAIN_0_0_4.encode("ascii")
        else:
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            body = json.dumps(
                {
                    "service": self._service,
                    "version": self._version,
                    "status": "healthy",
                    "timestamp": now,
                    "pid": os.getpid(),
                }
            ).encode("utf-8")
            content_type = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def _routes_of(obj: object) -> list[Any] | None:
    try:
        routes = getattr(obj, "routes", None)
    except Exception:  # a property of some framework object that fails: no routes to index
        return None
    return routes if isinstance(routes, list) else None


def _index_routes(
    routes: list[Any], prefix: str, out: dict[int, tuple[object, str]], depth: int
) -> None:
    for route in routes:
        own = getattr(route, "path", None)
        template = prefix + own if isinstance(own, str) else prefix
        out[id(route)] = (route, template or "/")
        if depth < _MAX_ROUTE_DEPTH:
            children = _routes_of(route)
            if children:
                _index_routes(children, template, out, depth + 1)


def _match_routes(routes: list[Any], scope: dict[str, Any], prefix: str, depth: int) -> str | None:
    partial: str | None = None
    for route in routes:
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        try:
            match, child_scope = matches(scope)
        except Exception:  # a route that cannot judge this scope does not match it
            continue
        kind = getattr(match, "name", "")
        if kind == "NONE":
            continue
        own = getattr(route, "path", None)
        template = prefix + own if isinstance(own, str) else prefix
        if kind == "FULL":
            children = _routes_of(route)
            if children and depth < _MAX_ROUTE_DEPTH:
                inner = _match_routes(children, {**scope, **child_scope}, template, depth + 1)
                return inner if inner is not None else (template or "/")
            return template or "/"
        if partial is None:
            partial = template or "/"
    return partial


def setup_observability(app: Any, config: Mapping[str, Any] | None = None) -> Observability:
    """Add :class:`ObservabilityMiddleware` to a Starlette or FastAPI app; return its Observability.

    ``config`` is ``{"metrics": {...}, "tracing": {...}, "logging": {...}}`` with the fields of
    :class:`MetricConfig`, :class:`TracingConfig` and :class:`LoggingConfig`. For any other ASGI
    app, wrap it yourself: ``app = ObservabilityMiddleware(app, config=...)``.
    """
    add_middleware = getattr(app, "add_middleware", None)
    if not callable(add_middleware):
        raise TypeError(
            f"setup_observability() needs a Starlette or FastAPI app (one with add_middleware), got "
            f"{type(app).__name__}; wrap other ASGI apps as ObservabilityMiddleware(app, config=...)"
        )
    observability = Observability.from_dict(config)
    add_middleware(ObservabilityMiddleware, observability=observability)
    return observability
