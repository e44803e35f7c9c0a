"""The Starlette app of the tracing end-to-end test (`test_trace_e2e.py`), served by uvicorn.

`setup_observability` adds the middleware (server span continuing the caller's trace, sampled
at ratio 1.0). `GET /work/{n}` makes child spans the three ways an app does: `start_span` as a
context manager, a `@traced` function and a `@traced` coroutine (which also injects the headers
of an outgoing call), and reports the ids it saw so the test can match the exported spans.
"""

from __future__ import annotations

import asyncio
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import shmtel
from shmtel import current_span, inject, start_span, traced
from shmtel.asgi import setup_observability


@traced(kind="internal", attributes={"app.step": "compute"})
def compute(n: int) -> str:
    span = current_span()
    assert span is not None
    return span.span_id


@traced("fetch", kind="client")
async def fetch() -> tuple[str, dict[str, str]]:
    span = current_span()
    assert span is not None
    headers: dict[str, str] = {}
    inject(headers, formats=("w3c", "b3"))  # what an HTTP client call would send
    await asyncio.sleep(0.001)
    return span.span_id, headers


async def work(request: Request) -> Response:
    # Blocks this worker's loop for a moment, so concurrent requests spread over both workers.
    time.sleep(0.005)
    server = current_span()
    assert server is not None
    n = int(request.path_params["n"])
    with start_span("db.query", kind="client", attributes={"db.system": "sqlite", "n": n}) as db:
        pass
    compute_id = compute(n)
    fetch_id, outgoing = await fetch()
    return JSONResponse(
        {
            "pid": os.getpid(),
            "trace_id": server.trace_id,
            "span_id": server.span_id,
            "children": {"db.query": db.span_id, "compute": compute_id, "fetch": fetch_id},
            "outgoing": outgoing,
        }
    )


app = Starlette(routes=[Route("/work/{n}", work)])

obs = setup_observability(
    app,
    {
        "metrics": {"namespace": ""},
        # The tests read the server span's ids back from the response's traceparent.
        "tracing": {
            "service_name": "e2e-trace",
            "sampling_ratio": 1.0,
            "response_header": "traceparent",
        },
    },
)

__all__ = ["app", "obs", "shmtel"]
