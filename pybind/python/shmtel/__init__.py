"""shmtel: metrics, spans and logs recorded into shared memory, drained by ``shmtel collect``.

Every call records into a ring owned by the calling thread (a few tens of nanoseconds, no lock,
no I/O); a collector process beside the workers merges what all processes recorded and serves
Prometheus ``/metrics``. The hot paths live in the native module ``shmtel._native``; this package
adds the configuration objects of the ADR-006 API (:class:`Observability` and the config
dataclasses), the prometheus_client drop-in (:mod:`shmtel.prometheus`) and the ASGI middleware
(:mod:`shmtel.asgi`, imported on first use so that ``import shmtel`` does not import Starlette).
Logs: :func:`info` (and :func:`trace` .. :func:`fatal`, :func:`log`) record a message with typed
fields; :mod:`shmtel.bridges` brings stdlib ``logging`` (:class:`LoggingHandler`,
:class:`Logger`) and structlog (:class:`StructlogLoggerFactory`, :func:`structlog_render`) in.

A process that forks (gunicorn ``--preload``) needs no hook: the writer notices the new pid and
opens regions of its own, and the package registers :func:`_native.reset_process_view` so the
child's :func:`render_process_metrics` view starts from zero.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from shmtel import _native
from shmtel._native import (
    Span,
    build_info,
    critical,
    current_span,
    debug,
    error,
    fatal,
    get_correlation_id,
    info,
    log,
    render_process_metrics,
    set_correlation_id,
    set_log_level,
    set_trace_context,
    start_span,
    trace,
    warn,
    warning,
)
from shmtel.bridges import (
    Logger,
    LoggingHandler,
    StructlogLogger,
    StructlogLoggerFactory,
    structlog_processor,
    structlog_render,
)
from shmtel.observability import (
    LoggingConfig,
    LogLevel,
    MetricConfig,
    Observability,
    TracingConfig,
)
from shmtel.prometheus import Counter, Gauge, Histogram, Summary
from shmtel.propagation import continue_trace, extract, inject, traced

if TYPE_CHECKING:
    from shmtel.asgi import setup_observability

__version__: str = _native.__version__

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "LogLevel",
    "Logger",
    "LoggingConfig",
    "LoggingHandler",
    "MetricConfig",
    "Observability",
    "Span",
    "StructlogLogger",
    "StructlogLoggerFactory",
    "Summary",
    "TracingConfig",
    "__version__",
    "build_info",
    "continue_trace",
    "critical",
    "current_span",
    "debug",
    "error",
    "extract",
    "fatal",
    "get_correlation_id",
    "info",
    "inject",
    "log",
    "render_process_metrics",
    "set_correlation_id",
    "set_log_level",
    "set_trace_context",
    "setup_observability",
    "start_span",
    "structlog_processor",
    "structlog_render",
    "trace",
    "traced",
    "warn",
    "warning",
]

# The fork child's region files are the writer's business (it checks the pid); only the
# per-process shadow values behind render_process_metrics() must be forgotten.
os.register_at_fork(after_in_child=_native.reset_process_view)


def __getattr__(name: str) -> object:
    # setup_observability lives with the middleware; importing it pulls in nothing heavy, but a
    # user who only records metrics should not pay for the ASGI module at import time.
    if name == "setup_observability":
        from shmtel.asgi import setup_observability

        return setup_observability
    raise AttributeError(f"module 'shmtel' has no attribute {name!r}")
