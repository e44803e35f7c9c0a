"""Type stub of ``shmtel._native``, the Rust extension module behind :mod:`shmtel`.

Every call records into a shared-memory ring owned by the calling thread; the collector
(``shmtel collect``) drains the rings of all processes. The current span and correlation id
live in :mod:`contextvars`, so asyncio tasks sharing a thread keep separate contexts.
"""

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, TypeVar, final

from typing_extensions import disjoint_base

_F = TypeVar("_F", bound=Callable[..., Any])
_Field = Any  # str, int, float, bool, None, dict/list/tuple (JSON) or anything with __str__
_LinkTarget: TypeAlias = "Span | RemoteContext | str"

__all__ = [
    "_AsgiMiddleware",
    "_AsgiRequest",
    "_AsgiSend",
    "Counter",
    "CounterChild",
    "DEFAULT_BUCKETS",
    "ExceptionCounter",
    "Gauge",
    "GaugeChild",
    "Histogram",
    "HistogramChild",
    "InprogressTracker",
    "RemoteContext",
    "Span",
    "Summary",
    "SummaryChild",
    "Timer",
    "__version__",
    "_correlation_id_var",
    "_init_logging_bridge",
    "_logger_log",
    "_logging_emit",
    "_logging_handle",
    "_current_span_var",
    "build_info",
    "business_metric",
    "critical",
    "current_span",
    "debug",
    "error",
    "extract",
    "extract_sampling",
    "extract_tracestate",
    "fatal",
    "format_traceparent",
    "get_correlation_id",
    "get_log_level",
    "get_trace_context",
    "info",
    "init",
    "inject",
    "log",
    "log_enabled",
    "new_correlation_id",
    "parse_traceparent",
    "parse_uber_trace_id",
    "region_dir",
    "render_process_metrics",
    "reset_process_view",
    "service_name",
    "set_correlation_fields",
    "set_correlation_id",
    "set_include_caller",
    "set_log_level",
    "set_sample_ratio",
    "set_trace_context",
    "start_span",
    "trace",
    "warn",
    "warning",
    "writer_stats",
]

__version__: Final[str]
"""The package version (the Rust crate's)."""

DEFAULT_BUCKETS: Final[tuple[float, ...]]
"""prometheus_client's default histogram buckets, 0.005 .. 10, ending with +Inf."""

_current_span_var: contextvars.ContextVar[Span | RemoteContext | None]
"""The context variable holding the current span (or remote parent). Private."""

_correlation_id_var: contextvars.ContextVar[str | Literal[False] | None]
"""The context variable holding the correlation id ``set_correlation_id`` set (False: cleared;
None: not set, and the current span's request id, if any, is the correlation id). Private."""

# --- process configuration -------------------------------------------------------------------

def build_info() -> dict[str, str]:
    """Version, cargo profile, pyo3 and rustc versions, git revision and panic strategy."""

def init(
    *,
    service: str | None = None,
    dir: str | PathLike[str] | None = None,
    ring_bytes: int | None = None,
    max_series: int | None = None,
    max_span_attributes: int | None = None,
    max_span_events: int | None = None,
    max_span_links: int | None = None,
    max_message_bytes: int | None = None,
) -> bool:
    """Set the writer configuration before the first recording.

    Unset fields take the environment's values (``SHMTEL_DIR``, ``SHMTEL_SERVICE``, ...).
    Returns False, changing nothing, if a configuration is already in force (an earlier
    ``init`` or a recording made before it). Wrong types raise TypeError, out-of-range values
    ValueError.
    """

def region_dir() -> str:
    """The region directory of the configuration in force (or the environment's default)."""

def service_name() -> str:
    """The service name of the configuration in force (or the environment's default)."""

def writer_stats() -> dict[str, int]:
    """The calling thread's ring counters: ``head`` (bytes committed), ``dropped_spans``,
    ``dropped_logs``, ``dropped_other``, ``coalesced``, ``dropped_metric``, ``ring_failures``.
    Commits anything pending first."""

def render_process_metrics() -> str:
    """Prometheus text format 0.0.4 of the metrics created through this module in this
    process (this process's own view, formatted like prometheus_client's
    ``generate_latest`` without ``_created`` samples). The collector serves the merged view."""

def reset_process_view() -> None:
    """Zero every value of the process view and reseed the id generator. The package runs it
    in a fork child (``os.register_at_fork(after_in_child=...)``)."""

# --- logs ------------------------------------------------------------------------------------

def set_log_level(level: int) -> None:
    """Record only events at ``level`` or above (0 TRACE, 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR,
    5 FATAL); ValueError otherwise."""

def get_log_level() -> int:
    """The lowest level recorded."""

def log_enabled(level: int) -> bool:
    """Whether an event at ``level`` would be recorded."""

def set_include_caller(flag: bool) -> None:
    """Record the calling frame's ``file:line function`` with each log event."""

def set_correlation_fields(correlation_id: bool, trace: bool) -> None:
    """Which context log events carry: the correlation id, and the trace and span ids."""

def log(level: int, message: object, /, **fields: _Field) -> None:
    """Record a log event at ``level``. The message is ``str()``'d if it is not a str.

    Fields: str, int (within i64; larger ones as text), float, bool and None are typed; dict,
    list and tuple become JSON text; anything else its ``str()``. The event carries the
    current span's ids and the correlation id from the context.
    """

def trace(message: object, /, **fields: _Field) -> None:
    """Log at TRACE (see :func:`log`). A call below the level costs one check."""

def debug(message: object, /, **fields: _Field) -> None:
    """Log at DEBUG (see :func:`log`)."""

def info(message: object, /, **fields: _Field) -> None:
    """Log at INFO (see :func:`log`)."""

def warn(message: object, /, **fields: _Field) -> None:
    """Log at WARN (see :func:`log`)."""

def warning(message: object, /, **fields: _Field) -> None:
    """Log at WARN (alias of :func:`warn`)."""

def error(message: object, /, **fields: _Field) -> None:
    """Log at ERROR (see :func:`log`)."""

def fatal(message: object, /, **fields: _Field) -> None:
    """Log at FATAL (see :func:`log`)."""

def critical(message: object, /, **fields: _Field) -> None:
    """Log at FATAL (alias of :func:`fatal`)."""

def _init_logging_bridge(
    record_type: type[logging.LogRecord],
    standard: Sequence[str],
    report_error: Callable[[logging.Handler, logging.LogRecord, Exception], None],
) -> bool:
    """Set up the ``logging`` bridge (``shmtel.bridges`` does, on import): the record class,
    the standard attribute names in the order its constructor sets them, and the function that
    hands a failed record to ``handler.handleError``. False if already set up."""

def _logging_handle(handler: logging.Handler, record: logging.LogRecord, /) -> Any:
    """``LoggingHandler.handle``: the handler's filters, then the record, without the lock;
    returns what ``Handler.handle`` returns. Errors go to ``handler.handleError``."""

def _logging_emit(handler: logging.Handler, record: logging.LogRecord, /) -> None:
    """``LoggingHandler.emit``: record a ``LogRecord`` (errors are raised)."""

def _logger_log(
    logger: logging.Logger,
    level: int,
    msg: object,
    args: Any,
    extra: Mapping[str, object] | None,
    /,
) -> bool:
    """``shmtel.Logger._log`` without a ``LogRecord`` when the record would reach exactly one
    ``LoggingHandler`` (and nothing else that needs the record); False, doing nothing, when
    the standard path must run."""

def business_metric(
    name: str, value: float, unit: str = "count", tags: Mapping[str, _Field] | None = None
) -> None:
    """Record a business event (name, value, unit, tags) for the collector to export."""

# --- context ---------------------------------------------------------------------------------

def set_correlation_id(cid: str | None) -> contextvars.Token[str | Literal[False] | None]:
    """Set (None: clear) the current context's correlation id; returns the token for
    ``_correlation_id_var.reset``."""

def get_correlation_id() -> str | None:
    """The current context's correlation id."""

def new_correlation_id() -> str:
    """A new random id: 32 lowercase hex digits (fast per-thread generator, not for secrets)."""

def set_trace_context(
    trace_id: str, span_id: str, sampled: bool = True
) -> contextvars.Token[Span | RemoteContext | None]:
    """Make a propagated (remote) parent current: the next span joins its trace and logs carry
    its ids. Ids are 32 and 16 hex digits, not all zero (ValueError otherwise)."""

def get_trace_context() -> tuple[str, str, bool] | None:
    """``(trace_id, span_id, sampled)`` of the current span or remote parent."""

def current_span() -> Span | None:
    """The span entered last in this context; None if none, or if the current context is a
    remote parent from :func:`set_trace_context`."""

# --- spans -----------------------------------------------------------------------------------

def start_span(
    name: str,
    parent: Span | RemoteContext | str | None = None,
    *,
    kind: Literal["internal", "server", "client", "producer", "consumer"] = "internal",
    attributes: Mapping[str, _Field] | None = None,
    links: Iterable[_LinkTarget | tuple[_LinkTarget, Mapping[str, _Field]]] | None = None,
    sample_ratio: float | None = None,
) -> Span:
    """Start a span (enter it with ``with`` to make it current).

    ``links``: other spans this one relates to (a batch's messages, a retried request), each a
    Span, a RemoteContext or a traceparent string, optionally paired with attributes.

    ``parent``: a Span, a RemoteContext (from :func:`extract`), a W3C traceparent string (an
    invalid one starts a new trace, as propagators do), or None: the current span, else the remote parent set by
    :func:`set_trace_context`, else a new root sampled with ``sample_ratio`` (default: the
    process ratio from :func:`set_sample_ratio`). A child follows its parent's sampled flag.
    Invalid ``kind`` -> ValueError.
    """

def set_sample_ratio(r: float) -> None:
    """The sampling ratio of new root spans (OpenTelemetry TraceIdRatioBased), 0..1."""

@final
class Span:
    """A span in progress: ended by :meth:`end`, by leaving its ``with`` block, or when
    garbage-collected."""

    @property
    def name(self) -> str:
        """The span name."""
    @property
    def trace_id(self) -> str:
        """32 lowercase hex digits."""
    @property
    def span_id(self) -> str:
        """16 lowercase hex digits."""
    @property
    def parent_span_id(self) -> str | None:
        """The parent's span id (local or remote), None for a root."""
    @property
    def sampled(self) -> bool:
        """Whether the span is sampled (an unsampled span has ids but records nothing)."""
    @property
    def is_recording(self) -> bool:
        """Sampled and not ended."""
    def update_name(self, name: str) -> Span:
        """Rename the span (e.g. a server span once the route template is known)."""
    def set_attribute(self, key: str, value: _Field) -> Span:
        """Set an attribute (values typed as log fields); returns the span. Attributes past
        ``max_span_attributes`` (events past ``max_span_events``, links past
        ``max_span_links``) are counted as dropped."""
    def set_attributes(self, attributes: Mapping[str, _Field]) -> Span:
        """Set several attributes."""
    def add_event(self, name: str, attributes: Mapping[str, _Field] | None = None) -> Span:
        """Add a timestamped event with attributes."""
    def add_link(
        self, context: _LinkTarget, attributes: Mapping[str, _Field] | None = None
    ) -> Span:
        """Link another span (a Span, a RemoteContext or a traceparent string; an invalid
        traceparent is ignored). Past the per-span limit (128) links are counted as dropped."""
    def set_status(self, status: str, description: str = "") -> Span:
        """``"ok"``, ``"error"`` or ``"unset"`` (any case; ValueError otherwise). A
        description is kept as the attribute ``otel.status_description``."""
    def record_exception(self, exc: BaseException) -> Span:
        """Add an ``exception`` event with ``exception.type``, ``exception.message`` and
        ``exception.stacktrace``."""
    def end(self) -> None:
        """End the span (idempotent)."""
    def finish(self) -> None:
        """Alias of :meth:`end`."""
    def traceparent(self) -> str:
        """The W3C traceparent header for this span."""
    def __enter__(self) -> Span:
        """Make the span current in this context."""
    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> bool:
        """Restore the previous current span; on an exception record it and set status error
        (unless a status was set), else status ok (unless set); end the span. Never
        swallows the exception."""

@final
class RemoteContext:
    """A propagated parent made current by :func:`set_trace_context` (not a local span)."""

    @property
    def trace_id(self) -> str:
        """32 lowercase hex digits."""
    @property
    def span_id(self) -> str:
        """16 lowercase hex digits."""
    @property
    def sampled(self) -> bool:
        """Whether the remote trace is sampled."""

# --- ASGI middleware (the native half of shmtel.asgi.ObservabilityMiddleware) ----------------

@disjoint_base
class _AsgiMiddleware:
    """The per-request work of ``shmtel.asgi.ObservabilityMiddleware``; subclassed there, which
    supplies ``_route_of`` and ``_serve_own`` and calls ``_configure`` from ``__init__``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Self: ...
    def _configure(
        self,
        *,
        app: Callable[..., Any],
        tracing: bool,
        response_header: Literal["traceresponse", "traceparent"] | None,
        sampling_ratio: float | None,
        families: tuple[Any, Any, Any, Any] | None,
        tracestate_var: contextvars.ContextVar[Any],
        unmatched: str,
    ) -> None:
        """Set what the middleware records (once)."""
    @property
    def app(self) -> Callable[..., Any]:
        """The wrapped ASGI app."""
    def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Any],
        send: Callable[[MutableMapping[str, Any]], Any],
    ) -> Awaitable[Any]:
        """An awaitable handling one ASGI call (an :class:`_AsgiRequest` for HTTP)."""

@final
class _AsgiRequest:
    """One HTTP request through the middleware: an awaitable driving the app's coroutine."""

    def __await__(self) -> Self: ...
    def __next__(self) -> Any: ...
    def send(self, value: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None) -> Any: ...
    def close(self) -> None: ...

@final
class _AsgiSend:
    """The ``send`` the app gets: adds the response headers, returns the server's awaitable."""

    def __call__(self, message: MutableMapping[str, Any], /) -> Any: ...

# --- propagation -----------------------------------------------------------------------------

def parse_traceparent(value: str) -> tuple[str, str, bool] | None:
    """Parse a W3C ``traceparent`` header into ``(trace_id, span_id, sampled)``; None if
    invalid (version 00 exactly 55 characters, version ff invalid, lowercase hex, ids not all
    zero; later versions parsed leniently)."""

def parse_uber_trace_id(value: str) -> tuple[str, str, bool] | None:
    """Parse Jaeger's ``uber-trace-id`` (``trace:span:parent:flags``, ``%3A`` accepted, ids
    left-padded to 32/16 hex, ``flags & 1`` sampled); None if invalid."""

def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    """``00-{trace_id}-{span_id}-{01|00}`` (ValueError for invalid ids)."""

_Headers = Mapping[str, Any] | Mapping[bytes, Any] | Iterable[tuple[str | bytes, str | bytes]]
"""Request headers: a mapping (``dict``, ``httpx.Headers``, Starlette ``Headers``, a WSGI
environ with ``HTTP_*`` keys) or ``(name, value)`` pairs (ASGI's raw ``scope["headers"]``);
names and values ``str`` or ``bytes`` (latin-1); names case-insensitive, ``_`` read as ``-``;
a header given twice is joined with ``,``; entries that are not strings are skipped."""

_Format = Literal["w3c", "tracecontext", "b3", "b3multi", "jaeger"]

def extract(headers: _Headers, *, sample_ratio: float | None = None) -> RemoteContext | None:
    """The caller's span from request headers, to pass as ``start_span(parent=...)``: W3C
    ``traceparent``, else B3 single (``b3``), else B3 multi (``X-B3-TraceId``, ``X-B3-SpanId``,
    ``X-B3-Sampled``, ``X-B3-Flags``, ``X-B3-ParentSpanId``), else Jaeger ``uber-trace-id``.
    None when none is present and valid (invalid headers are ignored, never raised: wrong
    length, upper case in W3C and B3, all-zero ids, version ff). A B3 header without a
    sampling decision (deferred) is decided here like a new root: TraceIdRatioBased with
    ``sample_ratio`` on the trace id (default: the process ratio, :func:`set_sample_ratio`). TypeError if ``headers`` is
    neither a mapping nor pairs; ValueError for a ratio outside [0, 1]."""

def extract_tracestate(headers: _Headers) -> str | None:
    """The W3C ``tracestate`` that came with a valid ``traceparent``, if valid itself (at most 32
    members and 512 characters, keys and values as the spec says, no key twice); None
    otherwise. Kept opaque: returned as received."""

def extract_sampling(headers: _Headers) -> bool | None:
    """A sampling decision sent without ids (``b3: 0``, ``b3: 1``, ``b3: d``, ``X-B3-Sampled``
    or ``X-B3-Flags: 1`` without ``X-B3-TraceId``): what a new root span should do. None when
    there is no such decision, or when :func:`extract` finds a context."""

def inject(
    headers: MutableMapping[str, str] | MutableMapping[str, Any],
    span: Span | RemoteContext | None = None,
    formats: Iterable[_Format] | str | None = None,
    tracestate: str | None = None,
) -> bool:
    """Set the propagation headers of ``span`` (default: the current span, else the current
    remote context) in ``headers``: ``formats`` names ``w3c`` (``traceparent``, plus
    ``tracestate`` when given and valid; the default), ``b3`` (single header), ``b3multi``
    (``x-b3-traceid``, ``x-b3-spanid``, ``x-b3-sampled``) and ``jaeger`` (``uber-trace-id``);
    a str may list several, comma-separated (``OTEL_PROPAGATORS`` style). Names are written
    lowercase; in a plain ``dict`` other spellings of them are removed first. False (and
    nothing written) when there is no span. ValueError for an unknown format name."""

# --- metrics ---------------------------------------------------------------------------------

@final
class Timer:
    """``time()``: a context manager and decorator recording elapsed seconds (histogram and
    summary: observe; gauge: set)."""

    def __enter__(self) -> Timer:
        """Start timing."""
    def __exit__(self, exc_type: object = None, exc: object = None, tb: object = None) -> bool:
        """Record the elapsed seconds; never swallows an exception."""
    def __call__(self, func: _F) -> _F:
        """Decorate a function (sync or ``async def``): each call is timed."""

@final
class InprogressTracker:
    """``track_inprogress()``: adds 1 to a gauge while a block or function runs."""

    def __enter__(self) -> InprogressTracker:
        """Increment the gauge."""
    def __exit__(self, exc_type: object = None, exc: object = None, tb: object = None) -> bool:
        """Decrement the gauge."""
    def __call__(self, func: _F) -> _F:
        """Decorate a function (sync or ``async def``)."""

@final
class ExceptionCounter:
    """``count_exceptions()``: counts exceptions of a type leaving a block or function."""

    def __enter__(self) -> ExceptionCounter:
        """Enter the block."""
    def __exit__(
        self, exc_type: type[BaseException] | None = None, exc: object = None, tb: object = None
    ) -> bool:
        """Increment the counter if the exception matches; never swallows it."""
    def __call__(self, func: _F) -> _F:
        """Decorate a function (sync or ``async def``)."""

@final
class CounterChild:
    """One counter series (from :meth:`Counter.labels`)."""

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (negative -> ValueError, non-numeric -> TypeError)."""
    def count_exceptions(
        self, exception: type[BaseException] | tuple[type[BaseException], ...] | None = None
    ) -> ExceptionCounter:
        """Count exceptions (default ``Exception``) leaving a block or function."""
    @property
    def labelvalues(self) -> tuple[str, ...]:
        """The label values."""
    @property
    def value(self) -> float:
        """This process's total (since start or fork)."""

@final
class GaugeChild:
    """One gauge series (from :meth:`Gauge.labels`)."""

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
    def set(self, value: float) -> None:
        """Set the value."""
    def set_to_current_time(self) -> None:
        """Set to the Unix time in seconds."""
    def track_inprogress(self) -> InprogressTracker:
        """+1 while a block or function runs."""
    def time(self) -> Timer:
        """Set to the duration in seconds of a block or function."""
    @property
    def labelvalues(self) -> tuple[str, ...]:
        """The label values."""
    @property
    def value(self) -> float:
        """This process's value."""

@final
class HistogramChild:
    """One histogram series (from :meth:`Histogram.labels`)."""

    def observe(self, amount: float, exemplar: Mapping[str, str] | None = None) -> None:
        """Record an observation. Inside a sampled span (contextvar) the span's ids are the
        exemplar; ``exemplar`` is accepted for prometheus_client compatibility and ignored."""
    def time(self) -> Timer:
        """Observe the duration in seconds of a block or function."""
    @property
    def labelvalues(self) -> tuple[str, ...]:
        """The label values."""
    @property
    def count(self) -> int:
        """Observations in this process."""
    @property
    def sum(self) -> float:
        """Sum of observations in this process."""

@final
class SummaryChild:
    """One summary series (from :meth:`Summary.labels`); quantiles are the collector's."""

    def observe(self, amount: float) -> None:
        """Record an observation."""
    def time(self) -> Timer:
        """Observe the duration in seconds of a block or function."""
    @property
    def labelvalues(self) -> tuple[str, ...]:
        """The label values."""
    @property
    def count(self) -> int:
        """Observations in this process."""
    @property
    def sum(self) -> float:
        """Sum of observations in this process."""

@disjoint_base
class Counter:
    """A counter family, prometheus_client style (exposed as ``<name>_total``).

    Creating a metric whose name exists returns a handle on the same family if type and label
    names match, else ValueError. Invalid metric or label names -> ValueError. ``registry`` is
    accepted and ignored (the collector is the registry). Subclasses receive the constructor
    arguments in ``__new__``.
    """

    @property
    def name(self) -> str:
        """Full name: namespace, subsystem, name and unit joined by ``_`` (counters without
        ``_total``)."""
    @property
    def documentation(self) -> str:
        """Help text."""
    @property
    def labelnames(self) -> tuple[str, ...]:
        """Label names."""
    @property
    def unit(self) -> str:
        """Unit ("" if none)."""

    def __new__(
        cls,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] | None = None,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: object = None,
        _labelvalues: Iterable[object] | None = None,
    ) -> Self: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> CounterChild:
        """The child for these label values (``str()``'d; positional or all by keyword).
        Cached: the same values return the same object. Wrong count -> ValueError
        "Incorrect label count"; wrong or mixed keywords -> "Incorrect label names"."""
    def inc(self, amount: float = 1.0) -> None:
        """Add to an unlabelled counter (labelled -> ValueError "counter metric is missing
        label values"; negative -> ValueError; non-numeric -> TypeError; NaN accepted)."""
    def count_exceptions(
        self, exception: type[BaseException] | tuple[type[BaseException], ...] | None = None
    ) -> ExceptionCounter:
        """Count exceptions leaving a block or function (unlabelled counters)."""
    @property
    def value(self) -> float:
        """This process's total of an unlabelled counter."""
    @property
    def type(self) -> Literal["counter"]:
        """``"counter"``."""

@disjoint_base
class Gauge:
    """A gauge family with a prometheus_client multiprocess mode (how the collector merges
    processes: all, liveall, min, livemin, max, livemax, sum, livesum, mostrecent,
    livemostrecent; ValueError otherwise)."""

    @property
    def name(self) -> str:
        """Full name: namespace, subsystem, name and unit joined by ``_`` (counters without
        ``_total``)."""
    @property
    def documentation(self) -> str:
        """Help text."""
    @property
    def labelnames(self) -> tuple[str, ...]:
        """Label names."""
    @property
    def unit(self) -> str:
        """Unit ("" if none)."""

    def __new__(
        cls,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] | None = None,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: object = None,
        _labelvalues: Iterable[object] | None = None,
        multiprocess_mode: str = "all",
    ) -> Self: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> GaugeChild:
        """The child for these label values (see :meth:`Counter.labels`)."""
    def inc(self, amount: float = 1.0) -> None:
        """Add (unlabelled gauges)."""
    def dec(self, amount: float = 1.0) -> None:
        """Subtract (unlabelled gauges)."""
    def set(self, value: float) -> None:
        """Set (unlabelled gauges)."""
    def set_to_current_time(self) -> None:
        """Set to the Unix time (unlabelled gauges)."""
    def track_inprogress(self) -> InprogressTracker:
        """+1 while a block or function runs (unlabelled gauges)."""
    def time(self) -> Timer:
        """Set to a block's or function's duration (unlabelled gauges)."""
    @property
    def value(self) -> float:
        """This process's value of an unlabelled gauge."""
    @property
    def multiprocess_mode(self) -> str:
        """The merge mode."""
    @property
    def type(self) -> Literal["gauge"]:
        """``"gauge"``."""

@disjoint_base
class Histogram:
    """A histogram family. ``buckets``: increasing finite bounds (a trailing +Inf is implied
    or accepted); unsorted, duplicate or empty -> ValueError; label ``le`` is reserved."""

    @property
    def name(self) -> str:
        """Full name: namespace, subsystem, name and unit joined by ``_`` (counters without
        ``_total``)."""
    @property
    def documentation(self) -> str:
        """Help text."""
    @property
    def labelnames(self) -> tuple[str, ...]:
        """Label names."""
    @property
    def unit(self) -> str:
        """Unit ("" if none)."""

    def __new__(
        cls,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] | None = None,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: object = None,
        _labelvalues: Iterable[object] | None = None,
        buckets: Iterable[float | str] | None = None,
    ) -> Self: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> HistogramChild:
        """The child for these label values (see :meth:`Counter.labels`)."""
    def observe(self, amount: float, exemplar: Mapping[str, str] | None = None) -> None:
        """Record an observation (unlabelled histograms)."""
    def time(self) -> Timer:
        """Observe a block's or function's duration (unlabelled histograms)."""
    @property
    def buckets(self) -> tuple[float, ...]:
        """Bucket upper bounds, ending with +Inf."""
    @property
    def type(self) -> Literal["histogram"]:
        """``"histogram"``."""

@disjoint_base
class Summary:
    """A summary family (count and sum here; quantiles estimated by the collector). Label
    ``quantile`` is reserved."""

    @property
    def name(self) -> str:
        """Full name: namespace, subsystem, name and unit joined by ``_`` (counters without
        ``_total``)."""
    @property
    def documentation(self) -> str:
        """Help text."""
    @property
    def labelnames(self) -> tuple[str, ...]:
        """Label names."""
    @property
    def unit(self) -> str:
        """Unit ("" if none)."""

    def __new__(
        cls,
        name: str,
        documentation: str = "",
        labelnames: Iterable[str] | None = None,
        namespace: str = "",
        subsystem: str = "",
        unit: str = "",
        registry: object = None,
        _labelvalues: Iterable[object] | None = None,
    ) -> Self: ...
    def labels(self, *labelvalues: object, **labelkwargs: object) -> SummaryChild:
        """The child for these label values (see :meth:`Counter.labels`)."""
    def observe(self, amount: float) -> None:
        """Record an observation (unlabelled summaries)."""
    def time(self) -> Timer:
        """Observe a block's or function's duration (unlabelled summaries)."""
    @property
    def type(self) -> Literal["summary"]:
        """``"summary"``."""
