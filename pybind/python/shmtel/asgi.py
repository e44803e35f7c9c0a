"""ASGI middleware: a server span, RED metrics and correlation ids for every HTTP request.

:class:`ObservabilityMiddleware` is pure ASGI (no Starlette import): it handles ``http`` scopes
and passes ``lifespan`` and ``websocket`` through untouched. Per request it

- reads ``x-correlation-id`` (or makes one with ``_native.new_correlation_id()``) and the
  caller's trace context (W3C ``traceparent``, else B3 ``b3`` or ``X-B3-*``, else Jaeger
  ``uber-trace-id``; see :mod:`shmtel.propagation`), and makes the correlation id and a server
  span (whose parent is the remote caller's span, when there is one) current in ``contextvars``
  while the app runs, so the app's own spans and logs join the trace (the id rides on the
  server span, which spans started under it inherit: one context variable set per request,
  unless the context already had an id of its own); a B3 sampling decision
  sent without ids (``b3: 0``) decides the new root span; a caller's W3C ``tracestate`` is
  passed on by :func:`shmtel.propagation.inject` in the handler;
- records ``http_requests_total{method,route,status}``, ``http_request_duration_seconds{method,
  route}`` (histogram, observed while the server span is current so a sampled span becomes the
  exemplar), ``http_requests_in_progress{method}`` (gauge, livesum) and
  ``http_requests_errors_total{method,route}`` (a 5xx status or an exception; the exception is
  also logged at ERROR with ``error_type`` and ``error_message``, then re-raised);
- adds ``x-correlation-id`` to the response headers, and the server span's ids when the
  tracing config's ``response_header`` asks for them: ``traceresponse`` (W3C Trace Context
  Level 2) or ``traceparent`` (with the caller's valid ``tracestate``, when the trace came in
  W3C). Off by default, as in OpenTelemetry's instrumentations: trace ids stay internal unless
  the service chooses to show them to its callers (each response header also costs the server
  ~2 µs under uvicorn's h11, which validates every header twice);
- answers ``GET /_metrics`` (this process's view) and ``GET /_health`` itself.

The ``route`` label is the route template (``/users/{user_id}``), never the raw path, so that its
cardinality is bounded by the app's routes: Starlette and FastAPI leave the matched route in
``scope["route"]``; its template (with the prefixes of the Mounts above it) is looked up in an
index of the router's route tree built once. For other apps with a ``routes`` list the middleware
matches the path itself (cached per method and path, bounded). A request no route matched gets
``<unmatched>``. Methods outside the HTTP standard ones are labelled ``_OTHER`` (OTel semconv).

Cost: the per-request work is native (``shmtel._native._AsgiMiddleware``): ``__call__`` returns
an awaitable written in Rust that drives the app's coroutine, and the app's ``send`` is a native
callable that adds the headers and returns the server's own ``send`` awaitable, so the
middleware adds no Python frame to a request. The metric children and span name of each
(method, route, status) are made once; the propagation headers are parsed only when one is
present. This class keeps the configuration, the route-template resolution (``_route_of``, for
routes the native cache has not seen) and the own endpoints (``_serve_own``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
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

_native_call = _native._AsgiMiddleware.__call__

UNMATCHED = "<unmatched>"
"""The ``route`` label of a request that no route matched (404s, scanners)."""

_MAX_PATH_CACHE = 4096
_MAX_ROUTE_DEPTH = 16
_METRICS_PATH = "/_metrics"


class ObservabilityMiddleware(_native._AsgiMiddleware):
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
        self._configure(
            app=app,
            tracing=self._tracing,
            response_header=observability.tracing_config.response_header,
            sampling_ratio=self._sampling_ratio,
            families=(self._requests, self._duration, self._in_progress, self._errors)
            if self._metrics
            else None,
            tracestate_var=_tracestate_var,
            unmatched=UNMATCHED,
        )
        # id(route) -> (route, template): the route is kept so that its id cannot be reused.
        self._templates: dict[int, tuple[object, str]] = {}
        self._path_templates: dict[tuple[str, str], str] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Handle one ASGI call: an awaitable (native; see the module docs)."""
        return _native_call(self, scope, receive, send)

    # Servers tell ASGI 3 apps from ASGI 2 ones by `iscoroutinefunction(app.__call__)`, which a
    # function returning an awaitable fails: mark it (uvicorn, hypercorn and gunicorn's uvicorn
    # worker read the 3.11 `asyncio` marker or 3.12's `inspect` one).
    if sys.version_info >= (3, 12):
        __call__ = inspect.markcoroutinefunction(__call__)
    else:
        __call__._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]

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
    add_middleware(_StackedObservabilityMiddleware, observability=observability)
    return observability


class _StackedObservabilityMiddleware(ObservabilityMiddleware):
    """The middleware inside a Starlette middleware stack, where nobody inspects ``__call__``:
    the native slot is called directly, without the Python frame of the marked ``__call__``."""

    __call__ = _native._AsgiMiddleware.__call__
