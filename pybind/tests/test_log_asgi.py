"""Log lines written inside an ASGI handler carry the request's correlation id and trace ids,
whichever API writes them: stdlib `logging` through ``shmtel.LoggingHandler`` (from a
``logging.Logger`` and from a ``shmtel.Logger``, which records without a LogRecord), structlog
through ``shmtel.StructlogLoggerFactory``, and shmtel's own ``shmtel.info``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import structlog
from pybind_helpers import Regions, configure_structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import shmtel

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture
def app(uid: str) -> Iterator[Starlette]:
    """A Starlette app whose handler logs one line through each API (``{api} {uid} {n}``)."""
    log = logging.getLogger(f"asgi.{uid}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = shmtel.LoggingHandler()
    log.addHandler(handler)
    logging.setLoggerClass(shmtel.Logger)  # the direct path, without a LogRecord
    try:
        direct = logging.getLogger(f"asgi.direct.{uid}")
    finally:
        logging.setLoggerClass(logging.Logger)
    direct.propagate = False
    direct.addHandler(handler)
    configure_structlog()
    slog = structlog.get_logger()

    async def order(request: Request) -> PlainTextResponse:
        n = request.path_params["n"]
        structlog.contextvars.bind_contextvars(order=n)
        try:
            log.info("logging %s %s", uid, n, extra={"order": n})
            direct.warning("direct %s %s", uid, n, extra={"order": n})
            await asyncio.sleep(0.001)  # another request's task runs here
            slog.info(f"structlog {uid} {n}")
            shmtel.info(f"native {uid} {n}", order=n)
        finally:
            structlog.contextvars.unbind_contextvars("order")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route(f"/{uid}/orders/{{n}}", order)])
    shmtel.setup_observability(
        app, {"tracing": {"sampling_ratio": 1.0, "response_header": "traceparent"}}
    )
    yield app
    log.removeHandler(handler)
    direct.removeHandler(handler)
    structlog.reset_defaults()


def run_requests(app: Starlette, uid: str, headers: list[dict[str, str]]) -> list[httpx.Response]:
    """Request /orders/0.. concurrently, request i with headers[i]."""

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return list(
                await asyncio.gather(
                    *(c.get(f"/{uid}/orders/{i}", headers=h) for i, h in enumerate(headers))
                )
            )

    return asyncio.run(go())


def lines_of(regions: Regions, uid: str, n: int) -> dict[str, dict[str, Any]]:
    apis = ("logging", "direct", "structlog", "native")
    return {api: regions.log(f"{api} {uid} {n}") for api in apis}


def test_each_api_carries_the_requests_correlation_id_and_trace(
    app: Starlette, regions: Regions, uid: str
) -> None:
    sent = [
        {},  # the middleware makes a correlation id and a new trace
        {"x-correlation-id": f"cid-{uid}"},
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-correlation-id": f"up-{uid}"},
        {},
    ]
    responses = run_requests(app, uid, sent)
    assert [r.status_code for r in responses] == [200] * len(sent)
    correlation_ids = set()
    for n, response in enumerate(responses):
        cid = response.headers["x-correlation-id"]
        _, trace_id, span_id, _ = response.headers["traceparent"].split("-")
        if "x-correlation-id" in sent[n]:
            assert cid == sent[n]["x-correlation-id"]
        if "traceparent" in sent[n]:
            assert trace_id == TRACE_ID
        correlation_ids.add(cid)
        for api, line in lines_of(regions, uid, n).items():
            assert line["correlation_id"] == cid, (api, n)
            assert line["trace_id"] == trace_id, (api, n)
            assert line["span_id"] == span_id, (api, n)
            assert line["fields"]["order"] == str(n), (api, n)
            assert line["level"] == ("WARN" if api == "direct" else "INFO")
    assert len(correlation_ids) == len(sent)
