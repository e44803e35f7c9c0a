"""Trace-context propagation for outgoing and incoming HTTP calls, and the :func:`traced` decorator.

Outgoing: :func:`inject` writes the current span's context into the request headers, so the
called service continues the trace::

    headers: dict[str, str] = {}
    shmtel.inject(headers)              # traceparent (+ tracestate) of the current span
    httpx.get(url, headers=headers)

Incoming: :func:`extract` reads a caller's context (W3C ``traceparent``, B3 single or multi,
Jaeger ``uber-trace-id``, tried in that order) from any headers object: a ``dict``, ``httpx`` or
Starlette ``Headers``, a WSGI environ, or ASGI's raw ``scope["headers"]`` list. Names are
case-insensitive; invalid headers are ignored (None), never raised. The result is the parent of
the span you start: ``start_span("handle", extract(headers), kind="server")``.
:func:`continue_trace` does both and makes the caller's context current for a block.

Formats injected by default: ``w3c``, or what ``OTEL_PROPAGATORS`` names (``tracecontext``,
``b3``, ``b3multi``, ``jaeger``; other names such as ``baggage`` are ignored), read at import.

``tracestate``: kept opaque. A request that came with a valid W3C ``tracestate`` (through the
ASGI middleware or :func:`continue_trace`) passes it on: :func:`inject` adds it while the
current span belongs to that trace.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from shmtel import _native
from shmtel._native import RemoteContext, Span

__all__ = [
    "DEFAULT_FORMATS",
    "Format",
    "continue_trace",
    "extract",
    "inject",
    "traced",
]

P = ParamSpec("P")
R = TypeVar("R")

Format = Literal["w3c", "tracecontext", "b3", "b3multi", "jaeger"]
SpanKindName = Literal["internal", "server", "client", "producer", "consumer"]
Headers = Mapping[str, Any] | Mapping[bytes, Any] | Iterable[tuple[str | bytes, str | bytes]]

_KNOWN: dict[str, Format] = {
    "w3c": "w3c",
    "tracecontext": "tracecontext",
    "b3": "b3",
    "b3multi": "b3multi",
    "jaeger": "jaeger",
}


def _formats_from_env() -> tuple[Format, ...]:
    raw = os.environ.get("OTEL_PROPAGATORS", "")
    names = [_KNOWN[n] for n in (p.strip().lower() for p in raw.split(",")) if n in _KNOWN]
    return tuple(dict.fromkeys(names)) or ("w3c",)


DEFAULT_FORMATS: tuple[Format, ...] = _formats_from_env()
"""What :func:`inject` writes when no ``formats`` are given: ``OTEL_PROPAGATORS`` or ``w3c``."""

_tracestate_var: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "shmtel_tracestate", default=None
)
"""(trace id, tracestate) of the incoming request being handled. Private: set by the ASGI
middleware and :func:`continue_trace`."""


def _current_trace_id() -> str | None:
    current = _native._current_span_var.get()
    return current.trace_id if current is not None else None


def inject(
    headers: MutableMapping[str, str] | MutableMapping[str, Any],
    span: Span | RemoteContext | None = None,
    *,
    formats: Iterable[Format] | str | None = None,
) -> bool:
    """Write the propagation headers of ``span`` (default: the current span, else the current
    remote context) into ``headers``; return False (writing nothing) when there is none.

    ``formats``: ``w3c`` (``traceparent``, and ``tracestate`` when the trace came in with one),
    ``b3``, ``b3multi``, ``jaeger``; default :data:`DEFAULT_FORMATS`.
    """
    trace_state: str | None = None
    carried = _tracestate_var.get()
    if carried is not None:
        trace_id = span.trace_id if span is not None else _current_trace_id()
        if trace_id == carried[0]:
            trace_state = carried[1]
    return _native.inject(
        headers, span, DEFAULT_FORMATS if formats is None else formats, trace_state
    )


def extract(headers: Headers, *, sample_ratio: float | None = None) -> RemoteContext | None:
    """The caller's context from request ``headers`` (W3C, else B3 single, B3 multi, Jaeger),
    or None. A B3 caller that deferred the sampling decision is decided with ``sample_ratio``
    (TraceIdRatioBased; default: the process ratio). See :func:`shmtel._native.extract`."""
    return _native.extract(headers, sample_ratio=sample_ratio)


@contextmanager
def continue_trace(
    headers: Headers, *, sample_ratio: float | None = None
) -> Iterator[RemoteContext | None]:
    """Make the caller's context (from ``headers``) current for the block: spans started inside
    are its children, logs carry its trace id, :func:`inject` passes its ``tracestate`` on.
    Yields the context (None, changing nothing, when the headers carry none)."""
    remote = _native.extract(headers, sample_ratio=sample_ratio)
    if remote is None:
        yield None
        return
    span_token = _native._current_span_var.set(remote)
    trace_state = _native.extract_tracestate(headers)
    state_token = (
        _tracestate_var.set((remote.trace_id, trace_state)) if trace_state is not None else None
    )
    try:
        yield remote
    finally:
        if state_token is not None:
            _tracestate_var.reset(state_token)
        _native._current_span_var.reset(span_token)


# -- the decorator ---------------------------------------------------------------------------------


@overload
def traced(name: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def traced(
    name: str | None = None,
    *,
    kind: SpanKindName = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def traced(
    name: str | Callable[P, R] | None = None,
    *,
    kind: SpanKindName = "internal",
    attributes: Mapping[str, Any] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace every call of a function: ``@traced``, ``@traced("name")`` or
    ``@traced(kind="client", attributes={...})``.

    Each call runs in a new span (child of the current span, else of the current remote
    context, else a new root sampled at the process ratio) that is current while the function
    runs; an exception is recorded on it (event ``exception``, status error) and re-raised.
    ``async def`` functions are traced over their whole run, across ``await``s. The span name
    defaults to the function's qualified name. Generator functions are refused (TypeError):
    a span cannot stay current across their ``yield``s; use ``with start_span(...)`` inside.
    """
    if callable(name):
        return traced()(name)
    span_name = name
    attrs = dict(attributes) if attributes else None
    if kind not in ("internal", "server", "client", "producer", "consumer"):
        raise ValueError(
            f"invalid span kind {kind!r}: expected internal, server, client, producer or consumer"
        )

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if not callable(func):
            raise TypeError(f"traced() decorates a function, got {type(func).__name__}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"traced() cannot trace the generator function {func.__qualname__}: a span cannot "
                "stay current across yields; use `with start_span(...)` inside it"
            )
        label = span_name if span_name is not None else getattr(func, "__qualname__", repr(func))
        start = _native.start_span

        if inspect.iscoroutinefunction(func):
            async_func = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with start(label, kind=kind, attributes=attrs):
                    result = await async_func(*args, **kwargs)
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with start(label, kind=kind, attributes=attrs):
                result = func(*args, **kwargs)
            return result

        return wrapper

    return decorate
