"""Bridges from the logging libraries a service already uses into shmtel's rings.

**stdlib logging.** ``LoggingHandler`` is a :class:`logging.Handler`: existing
``logging.getLogger(...)`` calls are recorded as shmtel log events::

    logging.getLogger().addHandler(shmtel.LoggingHandler())
    log.info("user %s logged in", user, extra={"user_id": 42})

Each event carries the message (``msg % args``), the logger's name as the ``logger`` field, the
record's ``extra`` fields (typed as for :func:`shmtel.log`: str, int, float, bool and None as
such, dict/list/tuple as JSON, anything else its ``str()``), the exception when there is one
(``exception.type``, ``exception.message``, ``exception.stacktrace``, OpenTelemetry's names),
``stack_info`` as ``code.stacktrace``, and, with ``include_caller=True`` (or
:func:`shmtel._native.set_include_caller`), the caller ``path:line function`` taken from the
record, in the event's caller slot as :func:`shmtel.log` records it. The correlation id and the
current span's ids come from the context of the thread or task that logs. Formatting into JSON
lines, syslog or OTLP is the collector's job, so the handler sets no formatter.

Levels map to shmtel's: below DEBUG is TRACE, then DEBUG, INFO, WARNING (WARN), ERROR and
CRITICAL (FATAL); a custom level between two standard ones takes the lower. Both the handler's
(and logger's) level and shmtel's process level (:func:`shmtel._native.set_log_level`) filter.

The record is read natively in one pass over its ``__dict__`` and ``handle`` does not take the
handler's lock (each thread writes its own ring); a subclass that overrides ``handle``,
``emit`` or ``filter`` gets the standard :class:`logging.Handler` path around them.

Most of a ``logger.info(...)`` call is spent in :mod:`logging` itself before any handler runs
(``findCaller`` and the ``LogRecord``: about 5 µs on a slow machine, against a few hundred ns
for the handler). :class:`Logger` (``logging.setLoggerClass(shmtel.Logger)``) skips both when
a record would reach only a ``LoggingHandler``, and records the same event directly.

**structlog.** ``StructlogLoggerFactory`` and ``structlog_render``, the last processor, make
shmtel structlog's output::

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            shmtel.structlog_render,
        ],
        logger_factory=shmtel.StructlogLoggerFactory(),
    )
    structlog.get_logger().bind(user_id=42).info("user logged in", method="GET")

``event`` is the message; every other key (bound, contextvars, call arguments) is a field; the
level is the event's ``level`` (``add_log_level``), else the method name (``exception`` and
``err`` are ERROR, ``msg`` INFO); ``exc_info`` becomes the ``exception.*`` fields. An event below
shmtel's level is dropped there. ``structlog_processor`` (recording inside the chain and raising
``DropEvent``) works with any logger factory.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Mapping, MutableMapping
from types import MethodType, TracebackType
from typing import Any

from shmtel import _native

__all__ = [
    "Logger",
    "LoggingHandler",
    "StructlogLogger",
    "StructlogLoggerFactory",
    "shmtel_level",
    "structlog_processor",
    "structlog_render",
]

TRACE, DEBUG, INFO, WARN, ERROR, FATAL = range(6)


def shmtel_level(levelno: int) -> int:
    """The shmtel level (0 TRACE .. 5 FATAL) of a :mod:`logging` level number."""
    if levelno >= logging.CRITICAL:
        return FATAL
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARN
    if levelno >= logging.INFO:
        return INFO
    if levelno >= logging.DEBUG:
        return DEBUG
    return TRACE


def _standard_attributes() -> list[str]:
    """The attributes of a LogRecord in the order its constructor sets them, then the ones a
    formatter or a newer Python adds; anything else on a record came from ``extra``."""
    names = list(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)))
    return names + [n for n in ("message", "asctime", "taskName") if n not in names]


def _report_error(handler: logging.Handler, record: logging.LogRecord, exc: Exception) -> None:
    """``handler.handleError(record)`` with ``exc`` as the exception being handled (it reads
    ``sys.exc_info()``)."""
    try:
        raise exc
    except Exception:
        handler.handleError(record)


_native._init_logging_bridge(logging.LogRecord, _standard_attributes(), _report_error)


class LoggingHandler(logging.Handler):
    """A :class:`logging.Handler` recording into shmtel's rings (see the module docs).

    ``include_caller``: record the caller (``path:line function``) of each record.
    """

    def __init__(self, level: int = logging.NOTSET, *, include_caller: bool = False) -> None:
        super().__init__(level)
        self.include_caller = include_caller
        cls = type(self)
        if (
            cls.handle is logging.Handler.handle
            and cls.emit is LoggingHandler.emit
            and cls.filter is logging.Handler.filter
        ):
            # The hot path: Logger.callHandlers calls one native function (filters, then the
            # record) with no Python frame and no lock.
            self.handle = MethodType(_native._logging_handle, self)  # type: ignore[method-assign]
            # shmtel.Logger may skip the LogRecord for a record that only reaches this handler.
            self._shmtel_native = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _native._logging_emit(self, record)
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)


def _direct(
    logger: logging.Logger, level: int, msg: object, args: Any, extra: Mapping[str, object] | None
) -> bool:
    """Record without a LogRecord if nothing needs one; False if the standard path must run."""
    return logging.getLogRecordFactory() is logging.LogRecord and _native._logger_log(
        logger, level, msg, args, extra
    )


def _level_method(level: int, name: str) -> Callable[..., None]:
    """``Logger.debug`` .. ``Logger.critical`` of :class:`Logger`: one Python frame, then the
    direct path or ``logging.Logger._log``."""

    def method(
        self: logging.Logger,
        msg: object,
        *args: object,
        exc_info: Any = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        if self.isEnabledFor(level) and (
            exc_info or stack_info or not _direct(self, level, msg, args, extra)
        ):
            # One more level: findCaller must skip this frame too.
            logging.Logger._log(self, level, msg, args, exc_info, extra, stack_info, stacklevel + 1)

    method.__name__ = name
    method.__qualname__ = f"Logger.{name}"
    method.__doc__ = f"Log ``msg % args`` at {logging.getLevelName(level)} (see logging.Logger)."
    return method


class Logger(logging.Logger):
    """A :class:`logging.Logger` that skips the ``LogRecord`` (and ``findCaller``) when a record
    would reach exactly one handler and that handler is a :class:`LoggingHandler` without
    filters or ``include_caller``, and the logger has no filters: the message, the ``extra``
    fields and the context are then recorded directly, which is what the handler would have
    recorded. Anything else (an exception or ``stack_info``, a second handler on the way, a
    logger filter, no handler at all, a custom mapping argument, a record factory set with
    :func:`logging.setLogRecordFactory`) takes the standard path. A subclass's ``makeRecord``
    or ``handle`` is not called on the direct path. Install it before the loggers are
    created::

        logging.setLoggerClass(shmtel.Logger)
    """

    debug = _level_method(logging.DEBUG, "debug")
    info = _level_method(logging.INFO, "info")
    warning = _level_method(logging.WARNING, "warning")
    error = _level_method(logging.ERROR, "error")
    critical = _level_method(logging.CRITICAL, "critical")
    fatal = critical

    def _log(
        self,
        level: int,
        msg: object,
        args: Any,
        exc_info: Any = None,
        extra: Mapping[str, object] | None = None,
        stack_info: bool = False,
        stacklevel: int = 1,
    ) -> None:
        # logger.log(), exception() and LoggerAdapter come here.
        if exc_info or stack_info or not _direct(self, level, msg, args, extra):
            super()._log(level, msg, args, exc_info, extra, stack_info, stacklevel + 1)


# --- structlog ---------------------------------------------------------------------------------

_STRUCTLOG_LEVELS = {
    "trace": TRACE,
    "debug": DEBUG,
    "info": INFO,
    "msg": INFO,
    "log": INFO,
    "notset": TRACE,
    "warn": WARN,
    "warning": WARN,
    "error": ERROR,
    "err": ERROR,
    "exception": ERROR,
    "failure": ERROR,
    "critical": FATAL,
    "fatal": FATAL,
}

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _exc_info(value: object) -> _ExcInfo | None:
    """structlog's ``exc_info`` value (True, an exception or a ``sys.exc_info()`` tuple) as a
    tuple; None when there is no exception."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value if len(value) == 3 and value[0] is not None else None
    if value:
        info = sys.exc_info()
        return info if info[0] is not None else None
    return None


def _structlog_event(
    method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[int, object, dict[str, Any]] | None:
    """(level, message, fields) of a structlog event, or None if shmtel's level filters it.
    Consumes ``event_dict`` (structlog makes a new one for each call). Its keys are str, as
    structlog's are (they become keyword arguments)."""
    message = event_dict.pop("event", "")
    level_name = event_dict.pop("level", method_name)
    level = _STRUCTLOG_LEVELS.get(str(level_name).lower(), INFO)
    if not _native.log_enabled(level):
        return None
    exc_info = event_dict.pop("exc_info", None)
    fields = event_dict if type(event_dict) is dict else dict(event_dict)
    if exc_info is not None:
        exc = _exc_info(exc_info)
        if exc is not None:
            exc_type, value, tb = exc
            module = exc_type.__module__
            qualname = exc_type.__qualname__
            fields["exception.type"] = (
                qualname if module in ("builtins", "") else f"{module}.{qualname}"
            )
            fields["exception.message"] = str(value)
            fields["exception.stacktrace"] = "".join(
                traceback.format_exception(exc_type, value, tb)
            )
    return level, message, fields


def structlog_render(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[int, object], dict[str, Any]]:
    """The final processor of a structlog chain whose logger comes from
    :class:`StructlogLoggerFactory`: renders the event as the arguments of
    :func:`shmtel.log` (``(level, message), fields``), which the logger records. Raises
    ``structlog.DropEvent`` for an event below shmtel's level."""
    event = _structlog_event(method_name, event_dict)
    if event is None:
        import structlog

        raise structlog.DropEvent
    level, message, fields = event
    return (level, message), fields


def structlog_processor(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Record a structlog event into shmtel's rings, then drop it from the chain (it must be the
    last processor; works with any logger factory). Fields and level as
    :func:`structlog_render`."""
    import structlog

    event = _structlog_event(method_name, event_dict)
    if event is not None:
        level, message, fields = event
        _native.log(level, message, **fields)
    raise structlog.DropEvent


class StructlogLogger:
    """The logger structlog wraps when configured with :class:`StructlogLoggerFactory`: each
    method takes what :func:`structlog_render` renders, ``(level, message, **fields)``, and
    records it (every method is :func:`shmtel.log`; the level was decided by the processor)."""

    __slots__ = ()

    _record = staticmethod(_native.log)
    log = msg = trace = debug = info = _record
    warn = warning = err = error = exception = failure = critical = fatal = _record

    def __repr__(self) -> str:
        return "<shmtel.StructlogLogger>"


_LOGGER = StructlogLogger()


class StructlogLoggerFactory:
    """structlog ``logger_factory``: returns the (stateless, shared) :class:`StructlogLogger`,
    whatever ``structlog.get_logger(*args)`` passes."""

    def __call__(self, *args: Any) -> StructlogLogger:
        return _LOGGER
