"""The `logging` and structlog bridges record into the rings with fields, levels and ids."""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pybind_helpers import Regions, configure_structlog

import shmtel
from shmtel import _native, start_span
from shmtel.bridges import shmtel_level


@pytest.fixture
def logger(uid: str) -> Iterator[logging.Logger]:
    """A logger of its own with only shmtel's handler (no propagation to the root's)."""
    log = logging.getLogger(f"bridge.{uid}")
    log.setLevel(1)
    log.propagate = False
    handler = shmtel.LoggingHandler()
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


def here() -> tuple[str, int]:
    """The file and line of the caller's call."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_code.co_filename, frame.f_back.f_lineno


# -- logging: fields, levels, context ---------------------------------------------------------


def test_logging_records_carry_extra_fields_levels_and_context(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    token = _native.set_correlation_id(f"corr-{uid}")
    try:
        with start_span(f"handler_{uid}") as span:
            logger.info("user %s logged in %s", "ann", uid, extra={"user_id": 42, "vip": True})
    finally:
        token.var.reset(token)
    logger.info(f"outside {uid}")

    record = regions.log(f"user ann logged in {uid}")
    assert record["level"] == "INFO"
    assert record["correlation_id"] == f"corr-{uid}"
    assert (record["trace_id"], record["span_id"]) == (span.trace_id, span.span_id)
    assert record["fields"] == {"logger": f"bridge.{uid}", "user_id": 42, "vip": True}
    assert record["caller"] is None
    outside = regions.log(f"outside {uid}")
    assert (outside["trace_id"], outside["span_id"], outside["correlation_id"]) == (None,) * 3


def test_every_level_maps_custom_ones_to_the_level_below(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    logging.addLevelName(25, "NOTICE")
    levels = {
        1: "TRACE",
        5: "TRACE",
        9: "TRACE",
        logging.DEBUG: "DEBUG",
        15: "DEBUG",
        logging.INFO: "INFO",
        25: "INFO",
        logging.WARNING: "WARN",
        35: "WARN",
        logging.ERROR: "ERROR",
        45: "ERROR",
        logging.CRITICAL: "FATAL",
        60: "FATAL",
    }
    for levelno in levels:
        logger.log(levelno, f"level {levelno} {uid}")
    logger.debug(f"debug() {uid}")
    logger.info(f"info() {uid}")
    logger.warning(f"warning() {uid}")
    logger.error(f"error() {uid}")
    logger.critical(f"critical() {uid}")
    logger.fatal(f"fatal() {uid}")
    for levelno, name in levels.items():
        assert regions.log(f"level {levelno} {uid}")["level"] == name, levelno
        assert shmtel_level(levelno) == shmtel.LogLevel[name]
    for method, name in [
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("warning", "WARN"),
        ("error", "ERROR"),
        ("critical", "FATAL"),
        ("fatal", "FATAL"),
    ]:
        assert regions.log(f"{method}() {uid}")["level"] == name


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no")


def test_extra_fields_of_every_type(logger: logging.Logger, regions: Regions, uid: str) -> None:
    extra: dict[str, Any] = {
        "s": "text",
        "empty": "",
        "uni": "ünïcödé ✓",
        "i": 7,
        "neg": -(2**63),
        "big": 2**64,
        "f": 1.5,
        "inf": math.inf,
        "t": True,
        "no": False,
        "none": None,
        "d": {"a": [1, 2.5, None], "b": {"c": "x"}},
        "l": [1, "two", False],
        "tup": (1, 2),
        "obj": Opaque(),
        "bad": Unprintable(),
        "code.namespace": "dotted",
    }
    logger.info(f"typed {uid}", extra=extra)
    fields = regions.log(f"typed {uid}")["fields"]
    assert fields == {
        "logger": f"bridge.{uid}",
        "s": "text",
        "empty": "",
        "uni": "ünïcödé ✓",
        "i": 7,
        "neg": -(2**63),
        "big": str(2**64),
        "f": 1.5,
        "inf": "+Inf",  # how `shmtel dump --json` writes a non-finite float
        "t": True,
        "no": False,
        "none": None,
        "d": {"a": [1, 2.5, None], "b": {"c": "x"}},
        "l": [1, "two", False],
        "tup": [1, 2],
        "obj": "opaque!",
        "bad": "<unprintable Unprintable>",
        "code.namespace": "dotted",
    }


def test_message_formatting(logger: logging.Logger, regions: Regions, uid: str) -> None:
    logger.info("%s has %d items (%.1f%%)", f"cart-{uid}", 3, 12.5)
    logger.info("%(user)s in %(room)s " + uid, {"user": "ann", "room": "b12"})
    logger.info(f"100% literal {uid}")
    logger.info(Opaque())
    logger.info(f"{uid} %s", Opaque())
    logger.info(f"no %s args {uid}")
    assert regions.logs(f"cart-{uid} has 3 items (12.5%)")
    assert regions.logs(f"ann in b12 {uid}")
    assert regions.logs(f"100% literal {uid}")
    assert regions.logs("opaque!")
    assert regions.logs(f"{uid} opaque!")
    assert regions.logs(f"no %s args {uid}")


class ShoutingRecord(logging.LogRecord):
    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        return super().getMessage().upper()


def test_a_record_class_of_its_own_formats_its_message(regions: Regions, uid: str) -> None:
    handler = shmtel.LoggingHandler()
    record = ShoutingRecord(f"bridge.{uid}", logging.INFO, __file__, 1, "hi %s", (uid,), None)
    record.order = 5
    handler.handle(record)
    assert regions.log(f"HI {uid.upper()}")["fields"] == {"logger": f"bridge.{uid}", "order": 5}


def test_a_made_record_and_direct_emit(regions: Regions, uid: str) -> None:
    """``logging.makeLogRecord`` (a record filled through its __dict__) and ``emit`` called
    directly, as a QueueListener or MemoryHandler's target sees them."""
    handler = shmtel.LoggingHandler()
    record = logging.makeLogRecord(
        {"name": "made", "msg": "made %s", "args": (uid,), "levelno": 30, "order_id": "o-1"}
    )
    handler.emit(record)
    made = regions.log(f"made {uid}")
    assert made["level"] == "WARN"
    assert made["fields"] == {"logger": "made", "order_id": "o-1"}


class DomainError(Exception):
    pass


def test_logging_exceptions_become_fields(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception(f"lookup failed {uid}")
    try:
        raise DomainError("no stock")
    except DomainError as e:
        logger.warning(f"domain {uid}", exc_info=e)
    logger.error(f"no exception {uid}", exc_info=True)  # outside an except block
    logger.info(f"with stack {uid}", stack_info=True)

    fields = regions.log(f"lookup failed {uid}")["fields"]
    assert regions.log(f"lookup failed {uid}")["level"] == "ERROR"
    assert fields["exception.type"] == "KeyError"
    assert fields["exception.message"] == "'missing'"
    assert "raise KeyError" in fields["exception.stacktrace"]
    assert fields["exception.stacktrace"].startswith("Traceback (most recent call last):")
    domain = regions.log(f"domain {uid}")["fields"]
    assert domain["exception.type"] == f"{__name__}.DomainError"
    assert domain["exception.message"] == "no stock"
    assert regions.log(f"no exception {uid}")["fields"] == {"logger": f"bridge.{uid}"}
    stack = regions.log(f"with stack {uid}")["fields"]["code.stacktrace"]
    assert stack.startswith("Stack (most recent call last):")
    assert "test_logging_exceptions_become_fields" in stack


def test_caller_comes_from_the_record(regions: Regions, uid: str) -> None:
    log = logging.getLogger(f"caller.{uid}")
    log.propagate = False
    log.setLevel(logging.INFO)
    with_caller = shmtel.LoggingHandler(include_caller=True)
    log.addHandler(with_caller)
    try:
        path, line = here()
        log.info(f"with caller {uid}")
        with_caller.include_caller = False
        log.info(f"without caller {uid}")
        # The process-wide switch: the caller is the record's, not a frame inside logging.
        _native.set_include_caller(True)
        path2, line2 = here()
        log.info(f"process caller {uid}")
    finally:
        log.removeHandler(with_caller)
    function = "test_caller_comes_from_the_record"
    assert regions.log(f"with caller {uid}")["caller"] == f"{path}:{line + 1} {function}"
    assert regions.log(f"without caller {uid}")["caller"] is None
    assert regions.log(f"process caller {uid}")["caller"] == f"{path2}:{line2 + 1} {function}"


# -- logging: what filters a record -------------------------------------------------------------


def test_logging_respects_the_writer_level(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    _native.set_log_level(shmtel.LogLevel.WARN)
    logger.info(f"filtered {uid}")
    logger.warning(f"kept {uid}")
    assert regions.logs(f"filtered {uid}") == []
    assert regions.log(f"kept {uid}")["level"] == "WARN"


def test_handler_and_logger_levels_and_filters(regions: Regions, uid: str) -> None:
    log = logging.getLogger(f"levels.{uid}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = shmtel.LoggingHandler(logging.WARNING)

    class NoSecrets(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.filtered_by = "NoSecrets"
            return "secret" not in record.getMessage()

    handler.addFilter(NoSecrets())
    log.addHandler(handler)
    try:
        log.debug(f"below the logger {uid}")
        log.info(f"below the handler {uid}")
        log.warning(f"secret kept out {uid}")
        log.warning(f"passes {uid}")
    finally:
        log.removeHandler(handler)
    assert regions.logs(f"below the logger {uid}") == []
    assert regions.logs(f"below the handler {uid}") == []
    assert regions.logs(f"secret kept out {uid}") == []
    assert regions.log(f"passes {uid}")["fields"] == {
        "logger": f"levels.{uid}",
        "filtered_by": "NoSecrets",
    }


def test_a_failing_record_goes_to_handle_error(capsys: pytest.CaptureFixture[str]) -> None:
    """As every logging handler: a record that cannot be rendered is reported, not raised."""
    handler = shmtel.LoggingHandler()
    record = logging.LogRecord("bridge", logging.INFO, __file__, 1, "%d items", ("x",), None)
    logging.raiseExceptions = True
    handler.handle(record)
    assert "TypeError" in capsys.readouterr().err
    handler.emit(record)
    assert "TypeError" in capsys.readouterr().err


def test_a_subclass_overriding_emit_keeps_the_standard_path(regions: Regions, uid: str) -> None:
    class Tagging(shmtel.LoggingHandler):
        def emit(self, record: logging.LogRecord) -> None:
            record.tagged = True
            super().emit(record)

    handler = Tagging()
    assert "handle" not in vars(handler)
    assert "handle" in vars(shmtel.LoggingHandler())
    log = logging.getLogger(f"sub.{uid}")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.warning(f"tagged {uid}")
    finally:
        log.removeHandler(handler)
    assert regions.log(f"tagged {uid}")["fields"] == {"logger": f"sub.{uid}", "tagged": True}


def test_records_go_to_the_ring_of_the_thread_that_logs(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    logger.info(f"main thread {uid}")
    t = threading.Thread(target=logger.info, args=(f"other thread {uid}",))
    t.start()
    t.join()
    assert regions.log(f"other thread {uid}")["ring_tid"] == t.native_id
    assert regions.log(f"main thread {uid}")["ring_tid"] == threading.get_native_id()


# -- structlog ----------------------------------------------------------------------------------


@pytest.fixture
def structlog_reset() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def test_structlog_processor_records_and_drops(
    regions: Regions, uid: str, structlog_reset: None
) -> None:
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, shmtel.structlog_processor],
        cache_logger_on_first_use=False,
    )
    log = structlog.get_logger()
    structlog.contextvars.bind_contextvars(request_id=f"r-{uid}")
    with start_span(f"structlog_{uid}") as span:
        assert log.warning(f"structured {uid}", user_id=7, tags=["a", "b"]) is None
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception(f"boom {uid}")
    record = regions.log(f"structured {uid}")
    assert record["level"] == "WARN"
    assert record["trace_id"] == span.trace_id
    assert record["fields"] == {"user_id": 7, "tags": ["a", "b"], "request_id": f"r-{uid}"}
    boom = regions.log(f"boom {uid}")
    assert boom["level"] == "ERROR"
    assert boom["fields"]["exception.type"] == "ZeroDivisionError"
    assert "1 / 0" in boom["fields"]["exception.stacktrace"]


def test_structlog_factory_records_bound_and_contextvars_fields(
    regions: Regions, uid: str, structlog_reset: None
) -> None:
    configure_structlog()
    log = structlog.get_logger("ignored-name").bind(user_id=42, roles=["admin"])
    structlog.contextvars.bind_contextvars(request_id=f"r-{uid}")
    token = _native.set_correlation_id(f"corr-{uid}")
    try:
        with start_span(f"factory_{uid}") as span:
            log.info(f"factory {uid}", method="GET", ratio=0.5, ok=True, nothing=None)
    finally:
        token.var.reset(token)
    record = regions.log(f"factory {uid}")
    assert record["level"] == "INFO"
    assert (record["trace_id"], record["span_id"]) == (span.trace_id, span.span_id)
    assert record["correlation_id"] == f"corr-{uid}"
    assert record["fields"] == {
        "request_id": f"r-{uid}",
        "user_id": 42,
        "roles": ["admin"],
        "method": "GET",
        "ratio": 0.5,
        "ok": True,
        "nothing": None,
    }


def test_structlog_factory_levels_and_methods(
    regions: Regions, uid: str, structlog_reset: None
) -> None:
    configure_structlog()
    log = structlog.get_logger()
    log.debug(f"s-debug {uid}")
    log.info(f"s-info {uid}")
    log.warning(f"s-warning {uid}")
    log.warn(f"s-warn {uid}")
    log.error(f"s-error {uid}")
    log.critical(f"s-critical {uid}")
    log.fatal(f"s-fatal {uid}")
    log.msg(f"s-msg {uid}")
    log.log(logging.WARNING, f"s-log {uid}")
    levels = {
        "s-debug": "DEBUG",
        "s-info": "INFO",
        "s-warning": "WARN",
        "s-warn": "WARN",
        "s-error": "ERROR",
        "s-critical": "FATAL",
        "s-fatal": "FATAL",
        "s-msg": "INFO",
        "s-log": "WARN",
    }
    for text, level in levels.items():
        record = regions.log(f"{text} {uid}")
        assert (record["level"], record["fields"]) == (level, {}), text

    # Without add_log_level the method name decides; the logger's own methods take (level,
    # message, **fields) as structlog_render renders them.
    structlog.configure(processors=[shmtel.structlog_render])
    structlog.get_logger().error(f"s-bare {uid}", n=1)
    assert regions.log(f"s-bare {uid}")["level"] == "ERROR"
    logger = shmtel.StructlogLoggerFactory()("any", "args")
    logger.info(shmtel.LogLevel.WARN, f"s-direct {uid}", k="v")
    assert regions.log(f"s-direct {uid}")["fields"] == {"k": "v"}
    assert repr(logger) == "<shmtel.StructlogLogger>"


def test_structlog_factory_exceptions_and_messages(
    regions: Regions, uid: str, structlog_reset: None
) -> None:
    configure_structlog()
    log = structlog.get_logger()
    try:
        raise DomainError("out of stock")
    except DomainError as e:
        log.exception(f"s-exc {uid}")
        log.warning(f"s-exc-info {uid}", exc_info=e)
    log.error(f"s-no-exc {uid}", exc_info=True)
    log.info(12345, uid=uid)

    exc = regions.log(f"s-exc {uid}")
    assert exc["level"] == "ERROR"
    assert exc["fields"]["exception.type"] == f"{__name__}.DomainError"
    assert exc["fields"]["exception.message"] == "out of stock"
    assert 'raise DomainError("out of stock")' in exc["fields"]["exception.stacktrace"]
    warn = regions.log(f"s-exc-info {uid}")
    assert (warn["level"], warn["fields"]["exception.message"]) == ("WARN", "out of stock")
    assert regions.log(f"s-no-exc {uid}")["fields"] == {}
    assert [r["fields"] for r in regions.logs("12345")] == [{"uid": uid}]


def test_structlog_respects_the_writer_level(
    regions: Regions, uid: str, structlog_reset: None
) -> None:
    configure_structlog()
    _native.set_log_level(shmtel.LogLevel.WARN)
    log = structlog.get_logger()
    log.info(f"s-filtered {uid}")
    log.error(f"s-kept {uid}")
    structlog.configure(processors=[shmtel.structlog_processor])
    structlog.get_logger().debug(f"s-filtered-processor {uid}")
    assert regions.logs(f"s-filtered {uid}") == []
    assert regions.logs(f"s-filtered-processor {uid}") == []
    assert regions.log(f"s-kept {uid}")["level"] == "ERROR"


# -- shmtel.Logger: the same records without a LogRecord ------------------------------------------


def make_logger(name: str, *handlers: logging.Handler, propagate: bool = False) -> logging.Logger:
    logging.setLoggerClass(shmtel.Logger)
    try:
        log = logging.getLogger(name)
    finally:
        logging.setLoggerClass(logging.Logger)
    assert isinstance(log, shmtel.Logger)
    log.setLevel(logging.DEBUG)
    log.propagate = propagate
    for h in handlers:
        log.addHandler(h)
    return log


def test_fast_logger_records_what_the_handler_records(regions: Regions, uid: str) -> None:
    fast = make_logger(f"fast.{uid}", shmtel.LoggingHandler())
    token = _native.set_correlation_id(f"corr-{uid}")
    try:
        with start_span(f"fast_{uid}") as span:
            fast.info("user %s logged in %s", "ann", uid, extra={"user_id": 42, "d": {"k": [1]}})
    finally:
        token.var.reset(token)
    fast.warning("%(user)s in %(room)s " + uid, {"user": "ann", "room": "b12"})
    fast.log(25, f"custom level {uid}")
    fast.debug(f"debug {uid}")
    fast.info(f"100% literal {uid}")

    record = regions.log(f"user ann logged in {uid}")
    assert record["level"] == "INFO"
    assert record["correlation_id"] == f"corr-{uid}"
    assert (record["trace_id"], record["span_id"]) == (span.trace_id, span.span_id)
    assert record["fields"] == {"logger": f"fast.{uid}", "user_id": 42, "d": {"k": [1]}}
    assert regions.log(f"ann in b12 {uid}")["level"] == "WARN"
    assert regions.log(f"custom level {uid}")["level"] == "INFO"
    assert regions.log(f"debug {uid}")["level"] == "DEBUG"
    assert regions.logs(f"100% literal {uid}")


def test_fast_logger_filters_like_the_standard_path(regions: Regions, uid: str) -> None:
    fast = make_logger(f"fastlevels.{uid}", shmtel.LoggingHandler(logging.WARNING))
    fast.setLevel(logging.INFO)
    fast.debug(f"below the logger {uid}")
    fast.info(f"below the handler {uid}")
    _native.set_log_level(shmtel.LogLevel.ERROR)
    fast.warning(f"below shmtel {uid}")
    fast.error(f"kept {uid}")
    for text in ("below the logger", "below the handler", "below shmtel"):
        assert regions.logs(f"{text} {uid}") == []
    assert regions.log(f"kept {uid}")["level"] == "ERROR"


def test_fast_logger_falls_back_to_the_standard_path(
    regions: Regions, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whenever something needs the LogRecord, the record is made and handled as usual."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    # A second handler on the way up (the parent's): both get the record.
    parent = make_logger(f"fb.{uid}", Keep())
    child = make_logger(f"fb.{uid}.child", shmtel.LoggingHandler(), propagate=True)
    assert child.parent is parent
    child.info(f"two handlers {uid}", extra={"n": 1})
    assert [r.getMessage() for r in seen] == [f"two handlers {uid}"]
    assert regions.log(f"two handlers {uid}")["fields"] == {"logger": child.name, "n": 1}

    # The caller, an exception, stack_info: the record is needed; the caller is the test's.
    with_caller = make_logger(f"fbcaller.{uid}", shmtel.LoggingHandler(include_caller=True))
    path, line = here()
    with_caller.info(f"caller {uid}")
    with_caller.log(logging.WARNING, f"caller log() {uid}")
    try:
        raise DomainError("x")
    except DomainError:
        with_caller.exception(f"caller exception() {uid}")
    function = "test_fast_logger_falls_back_to_the_standard_path"
    assert regions.log(f"caller {uid}")["caller"] == f"{path}:{line + 1} {function}"
    assert regions.log(f"caller log() {uid}")["caller"] == f"{path}:{line + 2} {function}"
    assert regions.log(f"caller exception() {uid}")["caller"] == f"{path}:{line + 6} {function}"
    try:
        raise DomainError("x")
    except DomainError:
        child.exception(f"exception {uid}")
    assert regions.log(f"exception {uid}")["fields"]["exception.type"].endswith("DomainError")

    # A logger filter sees the record.
    filtered = make_logger(f"fbfilter.{uid}", shmtel.LoggingHandler())
    filtered.addFilter(lambda r: "drop" not in r.getMessage())
    filtered.info(f"drop me {uid}")
    filtered.info(f"keep me {uid}")
    assert regions.logs(f"drop me {uid}") == []
    assert regions.logs(f"keep me {uid}")

    # No handler at all: logging.lastResort prints it.
    lonely = make_logger(f"fblonely.{uid}")
    lonely.warning(f"last resort {uid}")
    assert f"last resort {uid}" in capsys.readouterr().err

    # A record factory of the application's (here adding a field) is honoured.
    default_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = default_factory(*args, **kwargs)
        record.tenant = "acme"
        return record

    plain = make_logger(f"fbfactory.{uid}", shmtel.LoggingHandler())
    logging.setLogRecordFactory(factory)
    try:
        plain.info(f"factory {uid}")
    finally:
        logging.setLogRecordFactory(default_factory)
    assert regions.log(f"factory {uid}")["fields"]["tenant"] == "acme"

    # A message that does not format is reported by handleError, not raised.
    logging.raiseExceptions = True
    plain.info("%d items", "x")
    assert "TypeError" in capsys.readouterr().err

    # A reserved extra key raises as the standard path does.
    with pytest.raises(KeyError, match="overwrite"):
        child.info("x", extra={"msg": "clash"})
