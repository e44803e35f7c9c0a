"""The Starlette app the uvicorn and gunicorn end-to-end tests serve.

`shmtel.asgi.setup_observability` adds the RED metrics middleware. The metric namespace is empty
so that the families are exactly `http_requests_total` etc. Routes cover a plain route, a path
parameter, a Mount prefix, a 404 (no route), a 500 response and a 500 from an exception.
"""

from __future__ import annotations

import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from shmtel.asgi import setup_observability


async def home(request: Request) -> Response:
    return PlainTextResponse("ok")


async def user(request: Request) -> Response:
    # Blocks this worker's event loop for a moment, so that concurrent requests spread over the
    # workers instead of all landing on whichever accepted first.
    time.sleep(0.002)
    return JSONResponse(
        {"user": request.path_params["user_id"], "method": request.method, "pid": os.getpid()}
    )


async def order(request: Request) -> Response:
    time.sleep(0.002)
    return JSONResponse({"order": request.path_params["order_id"], "pid": os.getpid()})


async def error(request: Request) -> Response:
    return PlainTextResponse("server error", status_code=500)


async def boom(request: Request) -> Response:
    raise RuntimeError("boom: an unhandled exception in a route")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/users/{user_id}", user, methods=["GET", "POST"]),
        Mount("/api", routes=[Route("/orders/{order_id}", order)]),
        Route("/error", error),
        Route("/boom", boom),
    ]
)

obs = setup_observability(
    app,
    {
        "metrics": {"namespace": ""},
        "tracing": {"service_name": "e2e-starlette", "sampling_ratio": 1.0},
    },
)
