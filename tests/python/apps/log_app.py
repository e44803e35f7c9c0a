"""The Starlette app of the log pipeline end-to-end test (`test_log_pipeline.py`), served by
uvicorn: `GET /orders/{n}` writes one log line through each Python logging API, stdlib
`logging` through `shmtel.LoggingHandler` (with the caller; and from a `shmtel.Logger`, which
records without a LogRecord), structlog through
`shmtel.StructlogLoggerFactory` (with a bound and a contextvars field) and `shmtel.info`, each
with the fields `order` (n) and `api`, and reports its pid and line number."""

from __future__ import annotations

import inspect
import logging
import os

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import shmtel
from shmtel.asgi import setup_observability

log = logging.getLogger("shop.orders")
log.setLevel(logging.INFO)
log.propagate = False
log.addHandler(shmtel.LoggingHandler(include_caller=True))

logging.setLoggerClass(shmtel.Logger)  # records without a LogRecord (no caller wanted here)
direct = logging.getLogger("shop.direct")
logging.setLoggerClass(logging.Logger)
direct.setLevel(logging.INFO)
direct.propagate = False
direct.addHandler(shmtel.LoggingHandler())

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        shmtel.structlog_render,
    ],
    logger_factory=shmtel.StructlogLoggerFactory(),
    cache_logger_on_first_use=True,
)
slog = structlog.get_logger().bind(component="orders")


async def order(request: Request) -> JSONResponse:
    n = int(request.path_params["n"])
    structlog.contextvars.bind_contextvars(tenant=f"t{n % 3}")
    try:
        frame = inspect.currentframe()
        line = frame.f_lineno + 1 if frame else 0
        log.info("order %d placed", n, extra={"order": n, "api": "logging"})
        direct.info("order %d placed", n, extra={"order": n, "api": "direct"})
        slog.warning("order placed", order=n, api="structlog")
        shmtel.error("order placed", order=n, api="native")
    finally:
        structlog.contextvars.unbind_contextvars("tenant")
    return JSONResponse({"pid": os.getpid(), "line": line})


app = Starlette(routes=[Route("/orders/{n}", order)])
# The tests read the server span's ids back from the response's traceparent.
setup_observability(app, {"tracing": {"sampling_ratio": 1.0, "response_header": "traceparent"}})
