"""The `logging` and structlog bridges record into the rings with fields, levels and ids."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from pybind_helpers import Regions

import shmtel
from shmtel import _native, start_span


@pytest.fixture
def logger(uid: str) -> Iterator[logging.Logger]:
    """A logger of its own with only shmtel's handler (no propagation to the root's)."""
    log = logging.getLogger(f"bridge.{uid}")
    log.setLevel(1)
    log.propagate = False
    handler = shmtel.LoggingHandler(include_caller=True)
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


def test_logging_records_carry_extra_fields_levels_and_context(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    token = _native.set_correlation_id(f"corr-{uid}")
    try:
        with start_span(f"handler_{uid}") as span:
            logger.info("user %s logged in %s", "ann", uid, extra={"user_id": 42, "vip": True})
    finally:
        token.var.reset(token)
    logger.debug(f"debug {uid}")
    logger.warning(f"warning {uid}")
    logger.error(f"error {uid}")
    logger.critical(f"critical {uid}")
    logger.log(5, f"below debug {uid}")

    record = regions.log(f"user ann logged in {uid}")
    assert record["level"] == "INFO"
    assert record["correlation_id"] == f"corr-{uid}"
    assert (record["trace_id"], record["span_id"]) == (span.trace_id, span.span_id)
    fields = record["fields"]
    assert fields["logger"] == f"bridge.{uid}"
    assert (fields["user_id"], fields["vip"]) == (42, True)
    assert fields["code.filepath"] == __file__
    assert fields["code.function"] == "test_logging_records_carry_extra_fields_levels_and_context"
    assert isinstance(fields["code.lineno"], int)
    levels = {
        "debug": "DEBUG",
        "warning": "WARN",
        "error": "ERROR",
        "critical": "FATAL",
        "below debug": "TRACE",
    }
    for text, level in levels.items():
        assert regions.log(f"{text} {uid}")["level"] == level


def test_logging_exceptions_become_fields(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        logger.exception(f"lookup failed {uid}")
    fields = regions.log(f"lookup failed {uid}")["fields"]
    assert fields["exception.type"] == "KeyError"
    assert fields["exception.message"] == "'missing'"
    assert "raise KeyError" in fields["exception.stacktrace"]


def test_logging_respects_the_writer_level(
    logger: logging.Logger, regions: Regions, uid: str
) -> None:
    _native.set_log_level(shmtel.LogLevel.WARN)
    logger.info(f"filtered {uid}")
    logger.warning(f"kept {uid}")
    assert regions.logs(f"filtered {uid}") == []
    assert regions.log(f"kept {uid}")["level"] == "WARN"


def test_a_failing_record_goes_to_handle_error(capsys: pytest.CaptureFixture[str]) -> None:
    """As every logging handler: a record that cannot be rendered is reported, not raised."""
    handler = shmtel.LoggingHandler()
    record = logging.LogRecord("bridge", logging.INFO, __file__, 1, "%d items", ("x",), None)
    logging.raiseExceptions = True
    handler.handle(record)
    assert "TypeError" in capsys.readouterr().err


def test_structlog_events_are_recorded_and_dropped(regions: Regions, uid: str) -> None:
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, shmtel.structlog_processor],
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger()
        structlog.contextvars.bind_contextvars(request_id=f"r-{uid}")
        with start_span(f"structlog_{uid}") as span:
            log.warning(f"structured {uid}", user_id=7, tags=["a", "b"])
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            log.exception(f"boom {uid}")
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    record = regions.log(f"structured {uid}")
    assert record["level"] == "WARN"
    assert record["trace_id"] == span.trace_id
    assert record["fields"] == {"user_id": 7, "tags": ["a", "b"], "request_id": f"r-{uid}"}
    boom = regions.log(f"boom {uid}")
    assert boom["level"] == "ERROR"
    assert boom["fields"]["exception.type"] == "ZeroDivisionError"
    assert "1 / 0" in boom["fields"]["exception.stacktrace"]
