"""The ADR-006 high-level API: :class:`Observability` and its configuration dataclasses.

:class:`Observability` configures the process-wide native writer once (service name, series
limit, span attribute limit, log level, sampling ratio, log correlation fields) and then hands out
the native functions themselves: ``obs.info`` *is* ``shmtel._native.info``, bound as an instance
attribute, so a hot call costs one native call and no Python frame. Metrics are create-or-get
(the native families are shared by name within the process; a second ``obs.counter("x")``
returns a handle on the same family) with the configured namespace as prefix.

A config with ``enabled=False`` swaps in no-op objects with the same methods, so instrumented
code needs no ``if``.

The settings are process-wide (there is one writer per process): a second ``Observability``
changes the level, sampling ratio and correlation fields of the first, and the writer's sizes are
fixed by whichever configuration reached the writer first (``Observability.writer_configured``
says whether this instance's did).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from types import TracebackType
from typing import Any, Literal, TypeVar

from shmtel import _native
from shmtel._native import DEFAULT_BUCKETS, Span
from shmtel.prometheus import Counter, Gauge, Histogram, Summary

__all__ = [
    "LogLevel",
    "LoggingConfig",
    "MetricConfig",
    "NoopMetric",
    "NoopSpan",
    "Observability",
    "TracingConfig",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAMESPACE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_CORRELATION_FIELDS = frozenset({"correlation_id", "trace_id", "span_id"})
_LOG_FORMATS = frozenset({"json", "text", "logfmt"})


class LogLevel(IntEnum):
    """Log severity; an IntEnum so that it passes straight to the native functions."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    FATAL = 5

    @classmethod
    def parse(cls, level: LogLevel | int | str) -> LogLevel:
        """A level from a LogLevel, its number or its name (case-insensitive; WARNING, CRITICAL ok)."""
        if isinstance(level, bool):
            raise ValueError(f"invalid log level {level!r}")
        if isinstance(level, int):
            try:
                return cls(level)
            except ValueError:
                raise ValueError(
                    f"invalid log level {level!r}: expected 0 (TRACE) to 5 (FATAL)"
                ) from None
        if isinstance(level, str):
            name = level.strip().upper()
            name = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(name, name)
            try:
                return cls[name]
            except KeyError:
                raise ValueError(
                    f"invalid log level {level!r}: expected one of {', '.join(m.name for m in cls)}"
                ) from None
        raise ValueError(f"invalid log level {level!r}: expected a LogLevel, int or str")


def _require_bool(owner: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}.{name} must be a bool, got {value!r}")


def _require_int(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def _require_positive_float(owner: str, name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


@dataclass
class MetricConfig:
    """Metric settings: ``namespace`` prefixes every name created through :class:`Observability`."""

    namespace: str = "covet"
    enabled: bool = True
    collection_interval: float = 10.0
    batch_size: int = 100
    max_cardinality: int = 10000
    default_buckets: Sequence[float] = DEFAULT_BUCKETS

    def __post_init__(self) -> None:
        owner = "MetricConfig"
        if not isinstance(self.namespace, str) or (
            self.namespace and not _NAMESPACE.match(self.namespace)
        ):
            raise ValueError(
                f"{owner}.namespace must be empty or a valid metric name prefix, got {self.namespace!r}"
            )
        _require_bool(owner, "enabled", self.enabled)
        _require_positive_float(owner, "collection_interval", self.collection_interval)
        _require_int(owner, "batch_size", self.batch_size, 1)
        _require_int(owner, "max_cardinality", self.max_cardinality, 1)
        if isinstance(self.default_buckets, (str, bytes)) or not isinstance(
            self.default_buckets, Iterable
        ):
            raise ValueError(
                f"{owner}.default_buckets must be a sequence of numbers, got {self.default_buckets!r}"
            )
        buckets = tuple(self.default_buckets)
        if not buckets:
            raise ValueError(f"{owner}.default_buckets must not be empty")
        for b in buckets:
            if isinstance(b, bool) or not isinstance(b, (int, float)) or math.isnan(b):
                raise ValueError(f"{owner}.default_buckets must hold numbers, got {b!r}")
        if any(a >= b for a, b in zip(buckets, buckets[1:], strict=False)):
            raise ValueError(
                f"{owner}.default_buckets must be strictly increasing, got {list(buckets)}"
            )
        self.default_buckets = tuple(float(b) for b in buckets)


_RESPONSE_HEADERS = (None, "traceresponse", "traceparent")


@dataclass
class TracingConfig:
    """Tracing settings: ``sampling_ratio`` is the TraceIdRatioBased ratio of new root spans.

    ``response_header`` is the header that tells an HTTP caller the server span's ids (the ASGI
    middleware adds it to every response): None (the default: the trace stays internal, as with
    OpenTelemetry's instrumentations), ``"traceresponse"`` (W3C Trace Context Level 2) or
    ``"traceparent"`` (with the caller's valid ``tracestate`` echoed, the middleware's earlier
    default).
    """

    enabled: bool = True
    service_name: str = "covet-service"
    service_version: str = "1.0.0"
    jaeger_endpoint: str | None = None
    sampling_ratio: float = 0.1
    max_span_attributes: int = 32
    max_span_events: int = 32
    response_header: Literal["traceresponse", "traceparent"] | None = None

    def __post_init__(self) -> None:
        owner = "TracingConfig"
        if self.response_header not in _RESPONSE_HEADERS:
            raise ValueError(
                f"{owner}.response_header must be one of {_RESPONSE_HEADERS}, "
                f"got {self.response_header!r}"
            )
        _require_bool(owner, "enabled", self.enabled)
        if not isinstance(self.service_name, str) or not self.service_name.strip():
            raise ValueError(
                f"{owner}.service_name must be a non-empty str, got {self.service_name!r}"
            )
        if not isinstance(self.service_version, str):
            raise ValueError(f"{owner}.service_version must be a str, got {self.service_version!r}")
        if self.jaeger_endpoint is not None and not isinstance(self.jaeger_endpoint, str):
            raise ValueError(
                f"{owner}.jaeger_endpoint must be a str or None, got {self.jaeger_endpoint!r}"
            )
        ratio = self.sampling_ratio
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, (int, float))
            or not 0.0 <= ratio <= 1.0
        ):
            raise ValueError(f"{owner}.sampling_ratio must be a number in [0, 1], got {ratio!r}")
        self.sampling_ratio = float(ratio)
        _require_int(owner, "max_span_attributes", self.max_span_attributes, 0)
        _require_int(owner, "max_span_events", self.max_span_events, 0)


@dataclass
class LoggingConfig:
    """Log settings. ``correlation_fields`` picks what every record carries from the context:
    ``correlation_id`` and/or ``trace_id`` (``span_id`` goes with ``trace_id``)."""

    level: LogLevel = LogLevel.INFO
    format: str = "json"
    include_caller: bool = False
    correlation_fields: list[str] = field(default_factory=lambda: ["correlation_id", "trace_id"])

    def __post_init__(self) -> None:
        owner = "LoggingConfig"
        self.level = LogLevel.parse(self.level)
        if not isinstance(self.format, str) or self.format.lower() not in _LOG_FORMATS:
            raise ValueError(
                f"{owner}.format must be one of {sorted(_LOG_FORMATS)}, got {self.format!r}"
            )
        self.format = self.format.lower()
        _require_bool(owner, "include_caller", self.include_caller)
        if isinstance(self.correlation_fields, str) or not isinstance(
            self.correlation_fields, Iterable
        ):
            raise ValueError(
                f"{owner}.correlation_fields must be a list of str, got {self.correlation_fields!r}"
            )
        fields = list(self.correlation_fields)
        unknown = [f for f in fields if f not in _CORRELATION_FIELDS]
        if unknown:
            raise ValueError(
                f"{owner}.correlation_fields: unknown {unknown}; expected some of {sorted(_CORRELATION_FIELDS)}"
            )
        self.correlation_fields = fields


class NoopContext:
    """A context manager and decorator that does nothing (``time()`` of a disabled metric)."""

    def __enter__(self) -> NoopContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, func: F) -> F:
        return func


_NOOP_CONTEXT = NoopContext()


class NoopMetric:
    """What a disabled :class:`MetricConfig` hands out: every metric method, recording nothing."""

    def __init__(
        self, name: str, documentation: str = "", labelnames: Sequence[str] = (), kind: str = ""
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.type = kind

    def labels(self, *values: object, **kw: object) -> NoopMetric:
        return self

    def inc(self, amount: float = 1.0) -> None:
        return None

    def dec(self, amount: float = 1.0) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None

    def set_to_current_time(self) -> None:
        return None

    def time(self) -> NoopContext:
        return _NOOP_CONTEXT

    def track_inprogress(self) -> NoopContext:
        return _NOOP_CONTEXT

    def count_exceptions(
        self, exception: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> NoopContext:
        return _NOOP_CONTEXT


class NoopSpan:
    """What a disabled :class:`TracingConfig` hands out: every span method, recording nothing."""

    trace_id = "0" * 32
    span_id = "0" * 16
    parent_span_id: str | None = None
    is_recording = False
    sampled = False

    def __init__(self, name: str = "") -> None:
        self.name = name

    def set_attribute(self, key: str, value: object) -> NoopSpan:
        return self

    def set_attributes(self, attributes: Mapping[str, object]) -> NoopSpan:
        return self

    def add_event(self, name: str, attributes: Mapping[str, object] | None = None) -> NoopSpan:
        return self

    def add_link(self, context: object, attributes: Mapping[str, object] | None = None) -> NoopSpan:
        return self

    def set_status(self, status: str, description: str = "") -> NoopSpan:
        if not isinstance(status, str) or status.lower() not in ("ok", "error", "unset"):
            raise ValueError(f"span status must be 'ok', 'error' or 'unset', got {status!r}")
        return self

    def record_exception(self, exc: BaseException) -> NoopSpan:
        return self

    def end(self) -> None:
        return None

    def finish(self) -> None:
        return None

    def traceparent(self) -> str:
        return ""

    def __enter__(self) -> NoopSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


def _noop_start_span(name: str, parent: object = None, **kwargs: object) -> NoopSpan:
    if not isinstance(name, str):
        raise TypeError(f"span name must be a str, got {type(name).__name__}")
    return NoopSpan(name)


def _noop_current_span() -> None:
    return None


def _noop_business_metric(
    name: str, value: float, unit: str = "count", tags: Mapping[str, str] | None = None
) -> None:
    return None


MetricKind = Literal["counter", "gauge", "histogram", "summary"]


_DEFAULT_SERVICE = TracingConfig.service_name


class Observability:
    """Metrics, spans and logs for one service, configured once per process.

    The hot methods (``log``, ``trace``, ``debug``, ``info``, ``warn``, ``warning``, ``error``,
    ``fatal``, ``critical``, ``business_metric``, ``start_span``, ``current_span``,
    ``set_correlation_id``, ``get_correlation_id``, ``set_trace_context``) are the native functions
    bound as instance attributes.
    """

    log: Callable[..., None]
    trace: Callable[..., None]
    debug: Callable[..., None]
    info: Callable[..., None]
    warn: Callable[..., None]
    warning: Callable[..., None]
    error: Callable[..., None]
    fatal: Callable[..., None]
    critical: Callable[..., None]
    business_metric: Callable[..., None]
    start_span: Callable[..., Span | NoopSpan]
    current_span: Callable[[], Span | NoopSpan | None]
    set_correlation_id: Callable[..., Any]
    get_correlation_id: Callable[[], str | None]
    new_correlation_id: Callable[[], str]
    set_trace_context: Callable[..., Any]
    get_trace_context: Callable[[], tuple[str, str, bool] | None]

    def __init__(
        self,
        metrics_config: MetricConfig | None = None,
        tracing_config: TracingConfig | None = None,
        logging_config: LoggingConfig | None = None,
    ) -> None:
        self.metrics_config = _checked(metrics_config, MetricConfig, "metrics_config")
        self.tracing_config = _checked(tracing_config, TracingConfig, "tracing_config")
        self.logging_config = _checked(logging_config, LoggingConfig, "logging_config")
        metrics, tracing, logging = self.metrics_config, self.tracing_config, self.logging_config

        # SHMTEL_SERVICE names the service unless the config names one other than the default.
        service: str | None = tracing.service_name
        if service == _DEFAULT_SERVICE and os.environ.get("SHMTEL_SERVICE"):
            service = None
        self.writer_configured: bool = _native.init(
            service=service,
            max_series=metrics.max_cardinality,
            max_span_attributes=tracing.max_span_attributes,
            max_span_events=tracing.max_span_events,
        )
        _native.set_log_level(int(logging.level))
        _native.set_include_caller(logging.include_caller)
        fields = set(logging.correlation_fields)
        _native.set_correlation_fields(
            "correlation_id" in fields, bool(fields & {"trace_id", "span_id"})
        )
        if tracing.enabled:
            _native.set_sample_ratio(tracing.sampling_ratio)

        self.log = _native.log
        self.trace = _native.trace
        self.debug = _native.debug
        self.info = _native.info
        self.warn = _native.warn
        self.warning = _native.warning
        self.error = _native.error
        self.fatal = _native.fatal
        self.critical = _native.critical
        self.set_correlation_id = _native.set_correlation_id
        self.get_correlation_id = _native.get_correlation_id
        self.new_correlation_id = _native.new_correlation_id
        self.set_trace_context = _native.set_trace_context
        self.get_trace_context = _native.get_trace_context
        self.business_metric = _native.business_metric if metrics.enabled else _noop_business_metric
        if tracing.enabled:
            self.start_span = _native.start_span
            self.current_span = _native.current_span
        else:
            self.start_span = _noop_start_span
            self.current_span = _noop_current_span

        self._metrics: dict[
            tuple[object, ...], Counter | Gauge | Histogram | Summary | NoopMetric
        ] = {}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | None = None) -> Observability:
        """Build from ``{"metrics": {...}, "tracing": {...}, "logging": {...}}`` (the seed's form)."""
        config = dict(config or {})
        unknown = set(config) - {"metrics", "tracing", "logging"}
        if unknown:
            raise ValueError(
                f"unknown observability config sections {sorted(unknown)}: expected metrics, tracing, logging"
            )
        sections: dict[str, dict[str, Any]] = {}
        for key in ("metrics", "tracing", "logging"):
            section = config.get(key)
            if section is None:
                section = {}
            if not isinstance(section, Mapping):
                raise ValueError(
                    f"observability config section {key!r} must be a dict, got {section!r}"
                )
            sections[key] = dict(section)
        try:
            metrics = MetricConfig(**sections["metrics"])
            tracing = TracingConfig(**sections["tracing"])
            logging = LoggingConfig(**sections["logging"])
        except TypeError as e:  # an unknown key: say which, as a config error
            raise ValueError(f"invalid observability config: {e}") from None
        return cls(metrics, tracing, logging)

    # -- metrics ---------------------------------------------------------------------------------

    def _full_name(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"metric name must be a str, got {type(name).__name__}")
        ns = self.metrics_config.namespace
        if ns and name != ns and not name.startswith(ns + "_"):
            return f"{ns}_{name}"
        return name

    def _metric(
        self,
        kind: MetricKind,
        name: str,
        help: str,
        labels: Sequence[str] | None,
        extra: object,
        make: Callable[[str, tuple[str, ...]], Counter | Gauge | Histogram | Summary],
    ) -> Counter | Gauge | Histogram | Summary | NoopMetric:
        full = self._full_name(name)
        if isinstance(labels, str):
            raise TypeError(f"labels must be a list of label names, not a str: {labels!r}")
        labelnames = tuple(labels or ())
        key = (kind, full, labelnames, extra)
        metric = self._metrics.get(key)
        if metric is None:
            if self.metrics_config.enabled:
                metric = make(full, labelnames)
            else:
                metric = NoopMetric(full, help, labelnames, kind)
            self._metrics[key] = metric
        return metric

    def counter(
        self, name: str, help: str = "", labels: Sequence[str] | None = None
    ) -> Counter | NoopMetric:
        """Create or get a counter ``<namespace>_<name>`` (exposed with ``_total``)."""
        metric = self._metric(
            "counter", name, help, labels, None, lambda n, ls: Counter(n, help, ls)
        )
        assert isinstance(metric, (Counter, NoopMetric))
        return metric

    def gauge(
        self,
        name: str,
        help: str = "",
        labels: Sequence[str] | None = None,
        multiprocess_mode: str = "all",
    ) -> Gauge | NoopMetric:
        """Create or get a gauge; ``multiprocess_mode`` as prometheus_client (how workers merge)."""
        metric = self._metric(
            "gauge",
            name,
            help,
            labels,
            multiprocess_mode,
            lambda n, ls: Gauge(n, help, ls, multiprocess_mode=multiprocess_mode),
        )
        assert isinstance(metric, (Gauge, NoopMetric))
        return metric

    def histogram(
        self,
        name: str,
        help: str = "",
        buckets: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Histogram | NoopMetric:
        """Create or get a histogram; ``buckets`` default to ``MetricConfig.default_buckets``."""
        if buckets is not None and (
            isinstance(buckets, (str, bytes)) or not isinstance(buckets, Iterable)
        ):
            raise TypeError(f"buckets must be a sequence of numbers, got {buckets!r}")
        bounds = (
            tuple(buckets) if buckets is not None else tuple(self.metrics_config.default_buckets)
        )
        metric = self._metric(
            "histogram",
            name,
            help,
            labels,
            bounds,
            lambda n, ls: Histogram(n, help, ls, buckets=bounds),
        )
        assert isinstance(metric, (Histogram, NoopMetric))
        return metric

    def summary(
        self, name: str, help: str = "", labels: Sequence[str] | None = None
    ) -> Summary | NoopMetric:
        """Create or get a summary (``_count`` and ``_sum``, as prometheus_client)."""
        metric = self._metric(
            "summary", name, help, labels, None, lambda n, ls: Summary(n, help, ls)
        )
        assert isinstance(metric, (Summary, NoopMetric))
        return metric

    def __repr__(self) -> str:
        return (
            f"Observability(service={self.tracing_config.service_name!r}, "
            f"namespace={self.metrics_config.namespace!r}, level={self.logging_config.level.name})"
        )


_C = TypeVar("_C", MetricConfig, TracingConfig, LoggingConfig)


def _checked(value: _C | None, cls: type[_C], what: str) -> _C:
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(f"{what} must be a {cls.__name__} or None, got {type(value).__name__}")
    return value
