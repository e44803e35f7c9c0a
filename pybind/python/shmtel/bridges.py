"""Bridges from the logging libraries a service already uses into shmtel's rings.

``LoggingHandler`` is a :class:`logging.Handler`: existing ``logging.getLogger(...)`` calls are
recorded as shmtel log events, with the logger's name, the record's ``extra`` fields, the
exception (type, message, stack trace) when there is one and, optionally, the caller
(``code.filepath``, ``code.lineno``, ``code.function``, OpenTelemetry's attribute names)::

    logging.getLogger().addHandler(shmtel.LoggingHandler())
    log.info("user %s logged in", user, extra={"user_id": 42})

The correlation id and the current span's ids come from the context, as for :func:`shmtel.log`.
Formatting into JSON lines, syslog or OTLP is the collector's job, so the handler sets no
formatter. Levels map to shmtel's: below DEBUG is TRACE, then DEBUG, INFO, WARNING (WARN), ERROR,
and CRITICAL (FATAL); a level between two standard ones takes the lower.

``structlog_processor`` ends a structlog processor chain: it records the event (``event`` is the
message, the other keys are fields, the method name is the level) and drops it from the chain::

    structlog.configure(processors=[structlog.contextvars.merge_contextvars,
                                    shmtel.structlog_processor])
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import MutableMapping
from typing import Any

from shmtel import _native

__all__ = ["LoggingHandler", "structlog_processor"]

TRACE, DEBUG, INFO, WARN, ERROR, FATAL = range(6)

# The attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


def shmtel_level(levelno: int) -> int:
    """The shmtel level of a :mod:`logging` level number."""
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


class LoggingHandler(logging.Handler):
    """A :class:`logging.Handler` recording into shmtel's rings (see the module docs).

    ``include_caller``: add ``code.filepath``, ``code.lineno`` and ``code.function`` fields.
    """

    def __init__(self, level: int = logging.NOTSET, *, include_caller: bool = False) -> None:
        super().__init__(level)
        self.include_caller = include_caller

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = shmtel_level(record.levelno)
            if not _native.log_enabled(level):
                return
            fields: dict[str, Any] = {"logger": record.name}
            for key, value in record.__dict__.items():
                if key not in _STANDARD:
                    fields[key] = value
            if self.include_caller:
                fields["code.filepath"] = record.pathname
                fields["code.lineno"] = record.lineno
                fields["code.function"] = record.funcName
            if record.exc_info and record.exc_info[0] is not None:
                exc_type, exc, tb = record.exc_info
                fields["exception.type"] = exc_type.__qualname__
                fields["exception.message"] = str(exc)
                fields["exception.stacktrace"] = "".join(
                    traceback.format_exception(exc_type, exc, tb)
                )
            if record.stack_info:
                fields["stack_info"] = record.stack_info
            _native.log(level, record.getMessage(), **fields)
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)


_STRUCTLOG_LEVELS = {
    "trace": TRACE,
    "debug": DEBUG,
    "info": INFO,
    "msg": INFO,
    "warn": WARN,
    "warning": WARN,
    "error": ERROR,
    "exception": ERROR,
    "err": ERROR,
    "critical": FATAL,
    "fatal": FATAL,
}


def structlog_processor(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Record a structlog event into shmtel's rings, then drop it from the chain (it must be the
    last processor). A ``level`` key (from ``structlog.processors.add_log_level``) wins over the
    method name; ``exc_info`` is rendered as ``exception.*`` fields."""
    import structlog

    fields = dict(event_dict)
    message = fields.pop("event", "")
    level_name = str(fields.pop("level", method_name)).lower()
    level = _STRUCTLOG_LEVELS.get(level_name, INFO)
    exc_info = fields.pop("exc_info", None)
    if exc_info:
        if exc_info is True or not isinstance(exc_info, (tuple, BaseException)):
            import sys

            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        exc_type, exc, tb = exc_info
        if exc_type is not None:
            fields["exception.type"] = exc_type.__qualname__
            fields["exception.message"] = str(exc)
            fields["exception.stacktrace"] = "".join(traceback.format_exception(exc_type, exc, tb))
    if _native.log_enabled(level):
        _native.log(level, message, **fields)
    raise structlog.DropEvent
