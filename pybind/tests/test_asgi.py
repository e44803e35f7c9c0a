"""The ASGI middleware driven in-process: Starlette, FastAPI and plain ASGI apps."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pybind_helpers import Regions, parse_exposition, sample
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from shmtel import Observability, _native, current_span, setup_observability
from shmtel.asgi import UNMATCHED, ObservabilityMiddleware

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CONFIG: dict[str, Any] = {
    "tracing": {"sampling_ratio": 1.0, "service_name": "asgi-tests", "service_version": "9.9"}
}
# The same, with the server span's traceparent in every response.
TRACEPARENT: dict[str, Any] = {"tracing": {**CONFIG["tracing"], "response_header": "traceparent"}}


async def whoami(request: Request) -> JSONResponse:
    span = current_span()
    _native.info("handler ran", user=request.path_params.get("user_id"))
    return JSONResponse(
        {
            "correlation_id": _native.get_correlation_id(),
            "trace_id": span.trace_id if span else None,
            "span_id": span.span_id if span else None,
            "params": {k: str(v) for k, v in request.path_params.items()},
        }
    )


async def boom(request: Request) -> Response:
    raise RuntimeError("kaput")


async def unavailable(request: Request) -> Response:
    return PlainTextResponse("later", status_code=503)


async def slow(request: Request) -> Response:
    await asyncio.sleep(0.02)
    return await whoami(request)


async def echo_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


def starlette_app(prefix: str, lifespan: Any = None) -> Starlette:
    return Starlette(
        routes=[
            Route(f"/{prefix}/users/{{user_id}}", whoami),
            Route(f"/{prefix}/boom", boom),
            Route(f"/{prefix}/unavailable", unavailable),
            Route(f"/{prefix}/slow", slow),
            Route(f"/{prefix}/post-only", whoami, methods=["POST"]),
            Mount(f"/{prefix}/api/{{version}}", routes=[Route("/items/{item_id:int}", whoami)]),
            Mount(f"/{prefix}/sub", app=Starlette(routes=[Route("/deep/{x}", whoami)])),
            WebSocketRoute(f"/{prefix}/ws", echo_ws),
        ],
        lifespan=lifespan,
    )


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test"
    )


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


def requests_total(method: str, route: str, status: int) -> float:
    return sample("http_requests_total", method=method, route=route, status=str(status)) or 0.0


def errors_total(method: str, route: str) -> float:
    return sample("http_requests_errors_total", method=method, route=route) or 0.0


def duration_count(method: str, route: str) -> float:
    return sample("http_request_duration_seconds_count", method=method, route=route) or 0.0


def in_progress(method: str) -> float:
    return sample("http_requests_in_progress", method=method) or 0.0


# -- Starlette ------------------------------------------------------------------------------------


def test_route_templates_and_red_metrics(uid: str) -> None:
    app = starlette_app(uid)
    obs = setup_observability(app, CONFIG)
    assert isinstance(obs, Observability)

    async def go() -> None:
        async with client(app) as c:
            for user in ("1", "2", "3"):
                assert (await c.get(f"/{uid}/users/{user}")).status_code == 200
            assert (await c.post(f"/{uid}/users/1")).status_code == 405
            assert (await c.get(f"/{uid}/api/v2/items/5")).status_code == 200
            assert (await c.get(f"/{uid}/sub/deep/x1")).status_code == 200
            assert (await c.get(f"/{uid}/slow")).status_code == 200

    run(go())
    assert requests_total("GET", f"/{uid}/users/{{user_id}}", 200) == 3.0
    assert duration_count("GET", f"/{uid}/users/{{user_id}}") == 3.0
    assert requests_total("POST", f"/{uid}/users/{{user_id}}", 405) == 1.0
    assert requests_total("GET", f"/{uid}/api/{{version}}/items/{{item_id:int}}", 200) == 1.0
    assert requests_total("GET", f"/{uid}/sub/deep/{{x}}", 200) == 1.0
    assert errors_total("GET", f"/{uid}/users/{{user_id}}") == 0.0
    assert in_progress("GET") == 0.0
    slow_sum = sample("http_request_duration_seconds_sum", method="GET", route=f"/{uid}/slow")
    assert slow_sum is not None and slow_sum >= 0.015
    raw = [
        k
        for k in parse_exposition(_native.render_process_metrics())
        if "/users/1" in str(k) or "/items/5" in str(k)
    ]
    assert raw == []  # raw paths never become labels


def test_unmatched_and_errors(regions: Regions, uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)
    before_404 = requests_total("GET", UNMATCHED, 404)

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            return [
                await c.get(f"/{uid}/nowhere"),
                await c.get(f"/{uid}/boom", headers={"x-correlation-id": f"boom-{uid}"}),
                await c.get(f"/{uid}/unavailable"),
            ]

    missing, failed, unavailable_response = run(go())
    assert missing.status_code == 404
    assert failed.status_code == 500
    assert unavailable_response.status_code == 503
    assert requests_total("GET", UNMATCHED, 404) == before_404 + 1
    assert requests_total("GET", f"/{uid}/boom", 500) == 1.0
    assert errors_total("GET", f"/{uid}/boom") == 1.0
    assert requests_total("GET", f"/{uid}/unavailable", 503) == 1.0
    assert errors_total("GET", f"/{uid}/unavailable") == 1.0
    assert in_progress("GET") == 0.0

    logs = [r for r in regions.logs("Request failed") if r["correlation_id"] == f"boom-{uid}"]
    assert len(logs) == 1
    log = logs[0]
    assert log["level"] == "ERROR"
    assert log["fields"]["error_type"] == "RuntimeError"
    assert log["fields"]["error_message"] == "kaput"
    assert log["trace_id"] is not None

    spans = {r["span_id"]: r for r in regions.records("span") if r["span_kind"] == "server"}
    boom_span = spans[log["span_id"]]
    assert boom_span["status"] == "error"
    events = [r["name"] for r in regions.records("span_event") if r["span_id"] == log["span_id"]]
    assert events == ["exception"]
    attrs = regions.span_attrs(log["span_id"])
    assert attrs["http.response.status_code"] == 500
    assert attrs["http.route"] == f"/{uid}/boom"


def test_response_headers_and_correlation(regions: Regions, uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, TRACEPARENT)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client(app) as c:
            generated = await c.get(f"/{uid}/users/7", headers={"user-agent": f"pytest-{uid}"})
            given = await c.get(f"/{uid}/users/8", headers={"x-correlation-id": f"cid-{uid}"})
            return generated, given

    generated, given = run(go())
    body = generated.json()
    cid = generated.headers["x-correlation-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    assert body["correlation_id"] == cid
    assert generated.headers["traceparent"] == f"00-{body['trace_id']}-{body['span_id']}-01"
    assert given.headers["x-correlation-id"] == f"cid-{uid}"
    assert given.json()["correlation_id"] == f"cid-{uid}"
    assert given.json()["trace_id"] != body["trace_id"]

    span = next(r for r in regions.records("span") if r["span_id"] == body["span_id"])
    assert span["span_kind"] == "server"
    assert span["name"] == f"GET /{uid}/users/{{user_id}}", "OTel semconv: method and route"
    assert span["status"] == "ok"
    assert span["parent_span_id"] is None
    attrs = regions.span_attrs(body["span_id"])
    assert attrs["http.request.method"] == "GET"
    assert attrs["url.path"] == f"/{uid}/users/7"
    assert attrs["http.route"] == f"/{uid}/users/{{user_id}}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["user_agent.original"] == f"pytest-{uid}"
    handler_log = next(r for r in regions.logs("handler ran") if r["correlation_id"] == cid)
    assert handler_log["trace_id"] == body["trace_id"]
    assert handler_log["span_id"] == body["span_id"]
    assert handler_log["fields"]["user"] == "7"


def test_response_header_choices(uid: str) -> None:
    """By default only the correlation id goes back; the span's ids only when configured."""
    incoming = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "rojo=00f067aa"}

    def get(config: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        app = starlette_app(uid)
        setup_observability(app, config)

        async def go() -> httpx.Response:
            async with client(app) as c:
                return await c.get(f"/{uid}/users/3", headers=headers)

        response: httpx.Response = run(go())
        assert response.status_code == 200
        return response

    trace_headers = {"traceparent", "traceresponse", "tracestate"}
    for headers in ({}, incoming):
        default = get(CONFIG, headers)
        assert re.fullmatch(r"[0-9a-f]{32}", default.headers["x-correlation-id"])
        assert not trace_headers & set(default.headers)
        assert default.json()["trace_id"] == (TRACE_ID if headers else default.json()["trace_id"])

    level2 = {"tracing": {**CONFIG["tracing"], "response_header": "traceresponse"}}
    response = get(level2, incoming)
    body = response.json()
    assert response.headers["traceresponse"] == f"00-{TRACE_ID}-{body['span_id']}-01"
    assert "x-correlation-id" in response.headers
    assert "traceparent" not in response.headers and "tracestate" not in response.headers

    response = get(TRACEPARENT, incoming)
    body = response.json()
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{body['span_id']}-01"
    assert response.headers["tracestate"] == "rojo=00f067aa"
    assert "traceresponse" not in response.headers

    for wrong in ("TraceParent", "b3", 1):
        with pytest.raises(ValueError, match="response_header"):
            setup_observability(starlette_app(uid), {"tracing": {"response_header": wrong}})


def test_incoming_traceparent(regions: Regions, uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, TRACEPARENT)

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get(
                f"/{uid}/users/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            )

    response = run(go())
    body = response.json()
    assert body["trace_id"] == TRACE_ID
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{body['span_id']}-01"
    span = next(r for r in regions.records("span") if r["span_id"] == body["span_id"])
    assert span["parent_span_id"] == PARENT_ID
    assert span["remote_parent"] is True


def test_incoming_unsampled_traceparent(regions: Regions, uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, TRACEPARENT)

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get(
                f"/{uid}/users/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
            )

    response = run(go())
    assert response.headers["traceparent"].endswith("-00")
    assert response.json()["trace_id"] == TRACE_ID
    assert not [r for r in regions.records("span") if r["span_id"] == response.json()["span_id"]]


def test_incoming_uber_trace_id(regions: Regions, uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get(
                f"/{uid}/users/1", headers={"uber-trace-id": f"{TRACE_ID}:{PARENT_ID}:0:1"}
            )

    body = run(go()).json()
    assert body["trace_id"] == TRACE_ID
    span = next(r for r in regions.records("span") if r["span_id"] == body["span_id"])
    assert span["parent_span_id"] == PARENT_ID
    assert _native.get_trace_context() is None


def test_invalid_incoming_headers_are_replaced(uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            return [
                await c.get(
                    f"/{uid}/users/1",
                    headers={"x-correlation-id": "x" * 500, "traceparent": "nonsense"},
                ),
                await c.get(f"/{uid}/users/1", headers={"x-correlation-id": "a\tb"}),
                await c.get(f"/{uid}/users/1", headers={"x-correlation-id": ""}),
            ]

    for response in run(go()):
        assert response.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-correlation-id"])
    assert requests_total("GET", f"/{uid}/users/{{user_id}}", 200) == 3.0


def test_context_does_not_leak_out_of_the_request(uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)

    async def go() -> None:
        async with client(app) as c:
            await c.get(f"/{uid}/users/1", headers={"uber-trace-id": f"{TRACE_ID}:{PARENT_ID}:0:1"})
            await c.get(f"/{uid}/boom")
        assert _native.get_correlation_id() is None
        assert current_span() is None
        assert _native.get_trace_context() is None

    run(go())


def test_correlation_id_rules_inside_a_request(regions: Regions, uid: str) -> None:
    """The request's id is the correlation id of everything the request does (child spans,
    whatever their parent, tasks it starts, its logs) unless the code sets or clears its own;
    an id set before the request does not override the request's, and is back after it."""
    remote_parent = f"00-{TRACE_ID}-{PARENT_ID}-01"

    async def rules(request: Request) -> JSONResponse:
        seen: dict[str, Any] = {"request": _native.get_correlation_id()}
        with _native.start_span("child", parent=remote_parent):
            seen["child_of_remote"] = _native.get_correlation_id()
            _native.info(f"in child {uid}")
        seen["task"] = await asyncio.create_task(_get_cid())
        token = _native.set_correlation_id("mine")
        with _native.start_span("nested"):
            seen["own"] = _native.get_correlation_id()
        _native._correlation_id_var.reset(token)
        seen["after_own"] = _native.get_correlation_id()
        token = _native.set_correlation_id(None)
        seen["cleared"] = _native.get_correlation_id()
        _native._correlation_id_var.reset(token)
        seen["after_cleared"] = _native.get_correlation_id()
        return JSONResponse(seen)

    app = Starlette(routes=[Route(f"/{uid}/rules", rules)])
    setup_observability(app, CONFIG)

    async def go() -> tuple[dict[str, Any], dict[str, Any], str | None]:
        async with client(app) as c:
            plain = (await c.get(f"/{uid}/rules", headers={"x-correlation-id": f"r-{uid}"})).json()
            token = _native.set_correlation_id(f"outer-{uid}")
            try:
                inside = (await c.get(f"/{uid}/rules")).json()
                after = _native.get_correlation_id()
            finally:
                _native._correlation_id_var.reset(token)
        return plain, inside, after

    plain, inside, after = run(go())
    request_id = f"r-{uid}"
    assert plain == {
        "request": request_id,
        "child_of_remote": request_id,
        "task": request_id,
        "own": "mine",
        "after_own": request_id,
        "cleared": None,
        "after_cleared": request_id,
    }
    generated = inside["request"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), "the request's id, not the outer one"
    assert {k: v for k, v in inside.items() if k not in ("own", "cleared")} == {
        k: generated for k in ("request", "child_of_remote", "task", "after_own", "after_cleared")
    }
    assert inside["own"] == "mine" and inside["cleared"] is None
    assert after == f"outer-{uid}"
    assert {r["correlation_id"] for r in regions.logs(f"in child {uid}")} == {request_id, generated}
    assert _native.get_correlation_id() is None


async def _get_cid() -> str | None:
    return _native.get_correlation_id()


def test_concurrent_requests_keep_their_own_context(uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            return list(
                await asyncio.gather(
                    *(
                        c.get(f"/{uid}/slow", headers={"x-correlation-id": f"c{i}"})
                        for i in range(8)
                    )
                )
            )

    responses = run(go())
    assert [r.json()["correlation_id"] for r in responses] == [f"c{i}" for i in range(8)]
    assert len({r.json()["span_id"] for r in responses}) == 8
    assert requests_total("GET", f"/{uid}/slow", 200) == 8.0


def test_unknown_method_is_other(uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)

    async def go() -> None:
        async with client(app) as c:
            await c.request("BREW", f"/{uid}/users/1")

    run(go())
    assert requests_total("_OTHER", f"/{uid}/users/{{user_id}}", 405) == 1.0


def test_own_endpoints(uid: str) -> None:
    app = starlette_app(uid)
    setup_observability(app, CONFIG)

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            await c.get(f"/{uid}/users/1")
            return [
                await c.get("/_metrics"),
                await c.get("/_health"),
                await c.head("/_metrics"),
                await c.post("/_health"),
            ]

    metrics, health, head, post = run(go())
    assert metrics.status_code == 200
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_exposition(metrics.text)
    assert (
        samples[
            (
                "http_requests_total",
                (("method", "GET"), ("route", f"/{uid}/users/{{user_id}}"), ("status", "200")),
            )
        ]
        == 1.0
    )
    assert (
        "x-correlation-id" not in metrics.headers
    )  # the middleware's own endpoints are not measured
    body = health.json()
    assert health.headers["content-type"] == "application/json"
    assert body["status"] == "healthy"
    assert body["service"] == "asgi-tests"
    assert body["version"] == "9.9"
    assert body["pid"] == os.getpid()
    assert datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert body["timestamp"].endswith("Z")
    assert head.status_code == 200 and head.content == b""
    assert post.status_code == 404  # only GET and HEAD are answered by the middleware
    assert requests_total("GET", "/_metrics", 200) == 0.0


def test_lifespan_and_websocket_pass_through(uid: str) -> None:
    # Driven with raw ASGI messages: starlette.testclient warns (it wants httpx2) under -W error.
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = starlette_app(uid, lifespan=lifespan)
    setup_observability(app, CONFIG)

    async def drive(scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in incoming:
            queue.put_nowait(message)
        sent: list[Any] = []

        async def receive() -> Message:
            return await queue.get()

        async def send(message: Message) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lifespan_sent = await drive(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
            [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
        )
        ws_scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": f"/{uid}/ws",
            "raw_path": f"/{uid}/ws".encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "server": ("test", 80),
            "client": ("test", 1234),
            "subprotocols": [],
        }
        ws_sent = await drive(
            ws_scope,
            [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hello"}],
        )
        return lifespan_sent, ws_sent

    lifespan_sent, ws_sent = run(go())
    assert events == ["startup", "shutdown"]
    assert [m["type"] for m in lifespan_sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert [m["type"] for m in ws_sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert ws_sent[0].get("headers", []) == []  # nothing injected into websocket handshakes
    assert ws_sent[1]["text"] == "hello"
    assert not [
        k for k in parse_exposition(_native.render_process_metrics()) if f"/{uid}/ws" in str(k)
    ]


# -- FastAPI --------------------------------------------------------------------------------------


def test_fastapi(regions: Regions, uid: str) -> None:
    app = FastAPI()
    router = APIRouter(prefix=f"/{uid}/v1")

    @router.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, Any]:
        span = current_span()
        return {"order_id": order_id, "span_id": span.span_id if span else None}

    @app.get(f"/{uid}/fail")
    async def fail() -> None:
        raise ValueError("bad order")

    @app.get(f"/{uid}/sync/{{name}}")
    def sync_endpoint(name: str) -> dict[str, str | None]:
        return {"name": name, "cid": _native.get_correlation_id()}

    app.include_router(router)
    setup_observability(app, TRACEPARENT)

    async def go() -> list[httpx.Response]:
        async with client(app) as c:
            return [
                await c.get(f"/{uid}/v1/orders/12"),
                await c.get(f"/{uid}/v1/orders/not-a-number"),
                await c.get(f"/{uid}/fail"),
                await c.get(f"/{uid}/sync/ann", headers={"x-correlation-id": f"sync-{uid}"}),
                await c.get(f"/{uid}/missing"),
            ]

    ok, invalid, failed, sync_response, missing = run(go())
    assert ok.status_code == 200 and ok.json()["order_id"] == 12
    assert ok.headers["traceparent"].split("-")[2] == ok.json()["span_id"]
    assert invalid.status_code == 422
    assert failed.status_code == 500
    assert sync_response.json() == {"name": "ann", "cid": f"sync-{uid}"}
    assert missing.status_code == 404
    assert requests_total("GET", f"/{uid}/v1/orders/{{order_id}}", 200) == 1.0
    assert requests_total("GET", f"/{uid}/v1/orders/{{order_id}}", 422) == 1.0
    assert requests_total("GET", f"/{uid}/fail", 500) == 1.0
    assert errors_total("GET", f"/{uid}/fail") == 1.0
    assert requests_total("GET", f"/{uid}/sync/{{name}}", 200) == 1.0
    failures = [
        r for r in regions.logs("Request failed") if r["fields"].get("route") == f"/{uid}/fail"
    ]
    assert len(failures) == 1 and failures[0]["fields"]["error_type"] == "ValueError"


# -- plain ASGI -----------------------------------------------------------------------------------


async def plain_app(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"plain"})


def test_plain_asgi_app(uid: str) -> None:
    app = ObservabilityMiddleware(plain_app, config=TRACEPARENT)
    before = requests_total("GET", UNMATCHED, 200)

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get(f"/{uid}/anything")

    response = run(go())
    assert response.text == "plain"
    assert response.headers["content-type"] == "text/plain"
    assert "x-correlation-id" in response.headers and "traceparent" in response.headers
    assert requests_total("GET", UNMATCHED, 200) == before + 1


class RoutesApp:
    """An app with a Starlette-style ``routes`` list that does not set ``scope["route"]``."""

    def __init__(self, prefix: str) -> None:
        self.routes = [
            Route(f"/{prefix}/things/{{thing_id}}", whoami),
            Mount(f"/{prefix}/nested", routes=[Route("/{a}/{b}", whoami)]),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await plain_app(scope, receive, send)


def test_routes_matched_by_the_middleware(uid: str) -> None:
    app = ObservabilityMiddleware(RoutesApp(uid), config=CONFIG)

    async def go() -> None:
        async with client(app) as c:
            for path in ("/things/1", "/things/2", "/things/1", "/nested/x/y", "/other"):
                await c.get(f"/{uid}{path}")

    before = requests_total("GET", UNMATCHED, 200)
    run(go())
    assert requests_total("GET", f"/{uid}/things/{{thing_id}}", 200) == 3.0
    assert requests_total("GET", f"/{uid}/nested/{{a}}/{{b}}", 200) == 1.0
    assert requests_total("GET", UNMATCHED, 200) == before + 1


def test_plain_app_exception(regions: Regions, uid: str) -> None:
    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError(f"crash {uid}")

    app = ObservabilityMiddleware(crash, config=CONFIG)

    async def go() -> None:
        await app({"type": "http", "method": "GET", "path": "/x", "headers": []}, _receive, _send)

    with pytest.raises(LookupError):
        run(go())
    assert [
        r for r in regions.logs("Request failed") if r["fields"]["error_message"] == f"crash {uid}"
    ]
    assert in_progress("GET") == 0.0


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def test_non_http_scopes_untouched() -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    app = ObservabilityMiddleware(inner, config=CONFIG)
    lifespan_scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}}
    ws_scope: dict[str, Any] = {"type": "websocket", "path": "/_metrics", "headers": []}
    run(app(lifespan_scope, _receive, _send))
    run(app(ws_scope, _receive, _send))
    assert seen[0] is lifespan_scope and seen[1] is ws_scope
    assert lifespan_scope == {"type": "lifespan", "asgi": {"version": "3.0"}}


def test_disabled_tracing_and_metrics(uid: str) -> None:
    app = ObservabilityMiddleware(
        plain_app, config={"tracing": {"enabled": False}, "metrics": {"enabled": False}}
    )

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get(f"/{uid}/off")

    response = run(go())
    assert response.status_code == 200
    assert "x-correlation-id" in response.headers
    assert "traceparent" not in response.headers


def test_setup_errors() -> None:
    with pytest.raises(TypeError, match="ObservabilityMiddleware"):
        setup_observability(plain_app, CONFIG)
    with pytest.raises(ValueError, match="not both"):
        ObservabilityMiddleware(plain_app, observability=Observability(), config=CONFIG)
    with pytest.raises(TypeError):
        ObservabilityMiddleware(plain_app, observability="obs")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ObservabilityMiddleware("not an app")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        setup_observability(Starlette(), {"tracing": {"sampling_ratio": 2}})
    with pytest.raises(ValueError):
        setup_observability(Starlette(), {"bogus": {}})


def test_health_json_is_valid_for_head_and_get(uid: str) -> None:
    app = ObservabilityMiddleware(plain_app, config=CONFIG)

    async def go() -> httpx.Response:
        async with client(app) as c:
            return await c.get("/_health")

    response = run(go())
    assert json.loads(response.content)["status"] == "healthy"
    assert int(response.headers["content-length"]) == len(response.content)


# -- the native awaitable: what `await` and the event loop may do to it -----------------------------


def test_cancelled_request_is_recorded_and_its_context_reset(regions: Regions, uid: str) -> None:
    started = asyncio.Event()

    async def hang(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.sleep(3600)

    app = ObservabilityMiddleware(hang, config=CONFIG)
    route = f"/{uid}/hang"

    class Hang:
        path = route

    async def go() -> None:
        scope = {"type": "http", "method": "GET", "path": route, "headers": [], "route": Hang()}
        task = asyncio.ensure_future(app(scope, _receive, _send))
        await started.wait()
        assert in_progress("GET") == 1.0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _native.get_correlation_id() is None and current_span() is None

    run(go())
    assert in_progress("GET") == 0.0
    assert requests_total("GET", route, 500) == 1.0
    assert errors_total("GET", route) == 1.0
    assert duration_count("GET", route) == 1.0
    (span,) = [
        r
        for r in regions.records("span")
        if r["span_kind"] == "server" and r["name"] == f"GET {route}"
    ]
    assert span["status"] == "error"
    # Cancellation is not an application error: no "Request failed" log.
    assert not [r for r in regions.logs("Request failed") if r["fields"].get("route") == route]


def test_awaitable_protocol_send_throw_close(uid: str) -> None:
    route = f"/{uid}/proto"

    class Proto:
        path = route

    def scope() -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": route, "headers": [], "route": Proto()}

    class Pause:
        def __await__(self) -> Any:
            return (yield "paused")

    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        got = await Pause()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        return got

    # send(): the value reaches the app's await; the app's return value ends the iteration.
    request = ObservabilityMiddleware(app, config=CONFIG)(scope(), _receive, _send).__await__()
    assert request.send(None) == "paused"
    assert in_progress("GET") == 1.0
    with pytest.raises(StopIteration) as stop:
        request.send("resumed")
    assert stop.value.value == "resumed"
    assert requests_total("GET", route, 201) == 1.0
    with pytest.raises(RuntimeError, match="already awaited"):
        request.send(None)

    # throw(): an exception the app does not handle ends the request as an error.
    request = ObservabilityMiddleware(app, config=CONFIG)(scope(), _receive, _send).__await__()
    assert next(request) == "paused"
    with pytest.raises(KeyError):
        request.throw(KeyError("thrown"))
    assert requests_total("GET", route, 500) == 1.0

    # close(): the app's coroutine is closed and the request still counted once.
    request = ObservabilityMiddleware(app, config=CONFIG)(scope(), _receive, _send).__await__()
    assert next(request) == "paused"
    request.close()
    request.close()
    assert requests_total("GET", route, 500) == 2.0
    assert in_progress("GET") == 0.0

    # Thrown into before it started: the app never runs, nothing is recorded.
    request = ObservabilityMiddleware(app, config=CONFIG)(scope(), _receive, _send).__await__()
    with pytest.raises(ValueError):
        request.throw(ValueError)
    assert requests_total("GET", route, 500) == 2.0


def test_servers_see_an_asgi3_app() -> None:
    import uvicorn

    config = uvicorn.Config(ObservabilityMiddleware(plain_app, config=CONFIG))
    config.load()
    assert config.interface == "asgi3"
    assert ObservabilityMiddleware(plain_app, config=CONFIG).app is plain_app


def test_a_request_that_cannot_start_leaves_the_context_untouched(uid: str) -> None:
    reached: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)

    middleware = ObservabilityMiddleware(app, config=CONFIG)
    # A caller's traceparent makes the middleware read every header; the second "header" is not
    # a (name, value) pair, which the propagation parser rejects.
    headers = [(b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode()), 42]
    before = in_progress("GET")

    async def go() -> None:
        with pytest.raises(TypeError):
            await middleware(
                {"type": "http", "method": "GET", "path": f"/{uid}", "headers": headers},
                _receive,
                _send,
            )
        assert _native.get_correlation_id() is None
        assert current_span() is None

    run(go())
    assert not reached
    assert in_progress("GET") == before
