"""Propagation from Python: extract/inject (W3C, B3 single and multi, Jaeger), the ``traced``
decorator (sync and async) and the ASGI middleware continuing traces from every header format."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
from pybind_helpers import Regions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import shmtel
from shmtel import _native, continue_trace, current_span, extract, inject, start_span, traced
from shmtel.propagation import DEFAULT_FORMATS

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{SPAN}-01"
B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"
B3_PARENT = "05e3ac9a4f6e3b90"
# The middleware's traceparent/tracestate response headers are what these tests read back.
CONFIG: dict[str, Any] = {
    "tracing": {
        "sampling_ratio": 1.0,
        "service_name": "prop-tests",
        "response_header": "traceparent",
    }
}


def ctx(headers: Any, **kw: Any) -> tuple[str, str, bool] | None:
    remote = extract(headers, **kw)
    return None if remote is None else (remote.trace_id, remote.span_id, remote.sampled)


# -- extract: vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # W3C Trace Context
        ({"traceparent": TP}, (TRACE, SPAN, True)),
        ({"traceparent": f"00-{TRACE}-{SPAN}-00"}, (TRACE, SPAN, False)),
        ({"traceparent": f"00-{TRACE}-{SPAN}-03"}, (TRACE, SPAN, True)),
        ({"traceparent": f" {TP}\t"}, (TRACE, SPAN, True)),
        ({"traceparent": f"cc-{TRACE}-{SPAN}-01-future"}, (TRACE, SPAN, True)),
        ({"TraceParent": TP}, (TRACE, SPAN, True)),
        # B3 single
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}"}, (B3_TRACE, B3_SPAN, True)),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-0"}, (B3_TRACE, B3_SPAN, False)),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-d"}, (B3_TRACE, B3_SPAN, True)),
        ({"B3": f"{B3_TRACE[16:]}-{B3_SPAN}-1"}, ("0" * 16 + B3_TRACE[16:], B3_SPAN, True)),
        # B3 multi
        (
            {
                "X-B3-TraceId": B3_TRACE,
                "X-B3-SpanId": B3_SPAN,
                "X-B3-ParentSpanId": B3_PARENT,
                "X-B3-Sampled": "1",
            },
            (B3_TRACE, B3_SPAN, True),
        ),
        (
            {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "0"},
            (B3_TRACE, B3_SPAN, False),
        ),
        (
            {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-flags": "1"},
            (B3_TRACE, B3_SPAN, True),
        ),
        (
            {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "true"},
            (B3_TRACE, B3_SPAN, True),
        ),
        # Jaeger
        ({"uber-trace-id": f"{TRACE}:{SPAN}:0:1"}, (TRACE, SPAN, True)),
        ({"Uber-Trace-Id": f"{TRACE}%3A{SPAN}%3A0%3A0"}, (TRACE, SPAN, False)),
        ({"uber-trace-id": "abc:DEF:0:3"}, ("0" * 29 + "abc", "0" * 13 + "def", True)),
    ],
)
def test_extract_valid(headers: dict[str, str], expected: tuple[str, str, bool]) -> None:
    assert ctx(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": ""},
        {"traceparent": f"ff-{TRACE}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE.upper()}-{SPAN}-01"},
        {"traceparent": f"00-{'0' * 32}-{SPAN}-01"},
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},
        {"traceparent": f"00-{TRACE[:-1]}-{SPAN}-01"},
        {"traceparent": f"{TP}-extra"},
        {"traceparent": f"cc-{TRACE}-{SPAN}-01.future"},
        {"b3": "0"},
        {"b3": f"{B3_TRACE.upper()}-{B3_SPAN}-1"},
        {"b3": f"{B3_TRACE}-{B3_SPAN}-x"},
        {"b3": f"{'0' * 32}-{B3_SPAN}-1"},
        {"x-b3-traceid": B3_TRACE},
        {"x-b3-traceid": B3_TRACE[1:], "x-b3-spanid": B3_SPAN},
        {"x-b3-traceid": B3_TRACE, "x-b3-spanid": B3_SPAN, "x-b3-sampled": "yes"},
        {"uber-trace-id": "0:1:0:1"},
        {"uber-trace-id": "1:2:0"},
        {"uber-trace-id": f"{TRACE}0:{SPAN}:0:1"},
        {"tracestate": "rojo=1"},
        {"unrelated": TP},
    ],
)
def test_extract_invalid_is_none(headers: dict[str, str]) -> None:
    assert extract(headers) is None


def test_extract_order_and_fallthrough() -> None:
    b3 = f"{B3_TRACE}-{B3_SPAN}-1"
    uber = f"{TRACE[::-1]}:{SPAN}:0:1"
    assert ctx({"uber-trace-id": uber, "b3": b3, "traceparent": TP}) == (TRACE, SPAN, True)
    assert ctx({"uber-trace-id": uber, "b3": b3}) == (B3_TRACE, B3_SPAN, True)
    assert ctx({"uber-trace-id": uber, "traceparent": "bad", "b3": "bad"}) == (
        TRACE[::-1],
        SPAN,
        True,
    )


def test_extract_header_shapes() -> None:
    # ASGI raw headers (bytes pairs), str pairs, httpx and Starlette headers, a WSGI environ.
    assert ctx([(b"traceparent", TP.encode())]) == (TRACE, SPAN, True)
    assert ctx([("Traceparent", TP)]) == (TRACE, SPAN, True)
    assert ctx(httpx.Headers({"TRACEPARENT": TP})) == (TRACE, SPAN, True)
    from starlette.datastructures import Headers

    assert ctx(Headers(raw=[(b"b3", f"{B3_TRACE}-{B3_SPAN}".encode())])) == (
        B3_TRACE,
        B3_SPAN,
        True,
    )
    environ = {"HTTP_X_B3_TRACEID": B3_TRACE, "HTTP_X_B3_SPANID": B3_SPAN, "wsgi.input": object()}
    assert ctx(environ) == (B3_TRACE, B3_SPAN, True)
    # non-string entries are skipped; a duplicated traceparent (joined with ',') is invalid
    assert ctx({"traceparent": 5, "b3": f"{B3_TRACE}-{B3_SPAN}-0"}) == (B3_TRACE, B3_SPAN, False)
    assert extract([(b"traceparent", TP.encode()), (b"traceparent", TP.encode())]) is None


def test_extract_type_errors() -> None:
    with pytest.raises(TypeError):
        extract(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        extract([b"traceparent"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        extract({}, sample_ratio=2.0)


def test_deferred_b3_sampling_uses_the_ratio() -> None:
    deferred = {"b3": f"{B3_TRACE}-{B3_SPAN}"}
    assert ctx(deferred) == (B3_TRACE, B3_SPAN, True), "the process ratio (1.0 in these tests)"
    _native.set_sample_ratio(0.0)
    assert ctx(deferred) == (B3_TRACE, B3_SPAN, False), "the process ratio by default"
    _native.set_sample_ratio(1.0)
    assert ctx(deferred, sample_ratio=0.0) == (B3_TRACE, B3_SPAN, False)
    assert ctx(deferred, sample_ratio=1.0) == (B3_TRACE, B3_SPAN, True)


def test_sampling_only_and_tracestate() -> None:
    assert _native.extract_sampling({"b3": "0"}) is False
    assert _native.extract_sampling({"b3": "d"}) is True
    assert _native.extract_sampling({"x-b3-sampled": "1"}) is True
    assert _native.extract_sampling({"b3": f"{B3_TRACE}-{B3_SPAN}-0"}) is None
    assert _native.extract_sampling({}) is None
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    assert _native.extract_tracestate({"traceparent": TP, "tracestate": state}) == state
    assert _native.extract_tracestate({"tracestate": state}) is None
    assert _native.extract_tracestate({"traceparent": TP, "tracestate": "Rojo=1"}) is None
    joined = [(b"traceparent", TP.encode()), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")]
    assert _native.extract_tracestate(joined) == "a=1,b=2"


def test_garbage_never_raises() -> None:
    rng = random.Random(1234)
    alphabet = "0123456789abcdefABCDEF-:%3A,=@ \t\x00é" + TRACE
    names = ["traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled"]
    names += ["x-b3-flags", "x-b3-parentspanid", "uber-trace-id"]
    for _ in range(3000):
        headers = {
            rng.choice(names): "".join(rng.choice(alphabet) for _ in range(rng.randrange(70)))
            for _ in range(rng.randrange(1, 4))
        }
        extract(headers)
        _native.extract_sampling(headers)
        _native.extract_tracestate(headers)
        raw = [(k.encode(), bytes(rng.randrange(256) for _ in range(20))) for k in headers]
        extract(raw)


# -- inject ----------------------------------------------------------------------------------------


def test_inject_current_span_default_w3c(uid: str) -> None:
    assert DEFAULT_FORMATS == ("w3c",)
    headers: dict[str, str] = {}
    assert inject(headers) is False and headers == {}
    with start_span(f"outer-{uid}") as span:
        assert inject(headers) is True
    assert headers == {"traceparent": f"00-{span.trace_id}-{span.span_id}-01"}


def test_inject_formats_and_round_trip(uid: str) -> None:
    span = start_span(f"s-{uid}")
    for fmt in ("w3c", "tracecontext", "b3", "b3multi", "jaeger"):
        headers: dict[str, str] = {}
        assert inject(headers, span, formats=[fmt])
        remote = extract(headers)
        assert remote is not None, (fmt, headers)
        assert (remote.trace_id, remote.span_id, remote.sampled) == (
            span.trace_id,
            span.span_id,
            True,
        )
    headers = {}
    inject(headers, span, formats="w3c, b3,b3multi ,jaeger")
    t, s = span.trace_id, span.span_id
    assert headers == {
        "traceparent": f"00-{t}-{s}-01",
        "b3": f"{t}-{s}-1",
        "x-b3-traceid": t,
        "x-b3-spanid": s,
        "x-b3-sampled": "1",
        "uber-trace-id": f"{t}:{s}:0:1",
    }
    with pytest.raises(ValueError, match="baggage"):
        inject({}, span, formats=["baggage"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        inject({}, "span")  # type: ignore[arg-type]
    span.end()


def test_inject_unsampled_and_remote() -> None:
    remote = extract({"traceparent": f"00-{TRACE}-{SPAN}-00"})
    assert remote is not None
    headers: dict[str, str] = {}
    inject(headers, remote, formats=("b3", "jaeger"))
    assert headers == {"b3": f"{TRACE}-{SPAN}-0", "uber-trace-id": f"{TRACE}:{SPAN}:0:0"}
    # the current remote context (set_trace_context) is injected when no span is current
    token = _native.set_trace_context(TRACE, SPAN, True)
    try:
        headers = {}
        inject(headers)
        assert headers == {"traceparent": TP}
    finally:
        token.var.reset(token)


def test_inject_replaces_other_spellings(uid: str) -> None:
    headers: dict[str, str] = {"TraceParent": "old", "Accept": "*/*", "X-B3-TraceId": "old"}
    with start_span(f"r-{uid}") as span:
        inject(headers, formats=("w3c", "b3multi"))
    assert headers["traceparent"].split("-")[2] == span.span_id
    assert "TraceParent" not in headers and "X-B3-TraceId" not in headers
    assert headers["Accept"] == "*/*"
    h = httpx.Headers({"Traceparent": "old"})
    inject(h, span)
    assert h.get_list("traceparent") == [span.traceparent()]


def test_continue_trace_and_tracestate(uid: str, regions: Regions) -> None:
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    other = start_span(f"other-{uid}", sample_ratio=1.0)
    with continue_trace({"traceparent": TP, "tracestate": state}) as remote:
        assert remote is not None and remote.trace_id == TRACE
        assert _native.get_trace_context() == (TRACE, SPAN, True)
        with start_span(f"child-{uid}") as child:
            out: dict[str, str] = {}
            inject(out)
            assert out == {"traceparent": child.traceparent(), "tracestate": state}
        # a span of another trace does not carry the caller's tracestate
        out = {}
        inject(out, other)
        assert "tracestate" not in out
    assert _native.get_trace_context() is None
    out = {}
    inject(out, child)
    assert "tracestate" not in out, "the tracestate belongs to the block"
    record = regions.span(f"child-{uid}")
    assert record["trace_id"] == TRACE
    assert record["parent_span_id"] == SPAN and record["remote_parent"] is True
    with continue_trace({"traceparent": "garbage"}) as nothing:
        assert nothing is None and _native.get_trace_context() is None


# -- traced ----------------------------------------------------------------------------------------


def test_traced_sync(regions: Regions, uid: str) -> None:
    @traced
    def plain(x: int) -> int:
        """Doc."""
        span = current_span()
        assert span is not None
        return x + 1

    @traced(f"named-{uid}", kind="client", attributes={"peer.service": "db", "n": 3})
    def named() -> tuple[str, str]:
        span = current_span()
        assert span is not None and span.name == f"named-{uid}"
        return span.trace_id, span.span_id

    assert plain.__name__ == "plain" and plain.__doc__ == "Doc."
    assert plain.__wrapped__ is not None  # type: ignore[attr-defined]
    with start_span(f"parent-{uid}") as parent:
        assert plain(1) == 2
        trace_id, span_id = named()
    assert trace_id == parent.trace_id
    assert current_span() is None

    record = next(r for r in regions.records("span") if r["span_id"] == span_id)
    assert record["name"] == f"named-{uid}"
    assert record["span_kind"] == "client"
    assert record["parent_span_id"] == parent.span_id
    assert record["status"] == "ok"
    assert regions.span_attrs(span_id) == {"peer.service": "db", "n": 3}
    plain_name = "test_traced_sync.<locals>.plain"
    assert [r for r in regions.spans(plain_name) if r["parent_span_id"] == parent.span_id]


def test_traced_records_exceptions(regions: Regions, uid: str) -> None:
    @traced(f"fails-{uid}")
    def fails() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        fails()
    record = regions.span(f"fails-{uid}")
    assert record["status"] == "error"
    events = [r for r in regions.records("span_event") if r["span_id"] == record["span_id"]]
    assert [e["name"] for e in events] == ["exception"]
    attrs = regions.span_attrs(record["span_id"])
    assert attrs["exception.type"] == "KeyError"
    assert current_span() is None


def test_traced_async(regions: Regions, uid: str) -> None:
    @traced(f"work-{uid}")
    async def work(i: int) -> str:
        span = current_span()
        assert span is not None
        await asyncio.sleep(0.01)
        assert current_span() is span  # still current after the await
        return span.span_id

    @traced
    async def broken() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("async boom")

    async def main() -> list[str]:
        with start_span(f"root-{uid}"):
            ids = await asyncio.gather(*(work(i) for i in range(5)))
        with pytest.raises(RuntimeError):
            await broken()
        return list(ids)

    ids = asyncio.run(main())
    assert len(set(ids)) == 5
    spans = regions.spans(f"work-{uid}")
    assert len(spans) == 5
    assert all(s["duration_ns"] >= 5_000_000 for s in spans), "the span covers the awaits"
    root = regions.span(f"root-{uid}")
    assert {s["parent_span_id"] for s in spans} == {root["span_id"]}
    assert regions.span("test_traced_async.<locals>.broken")["status"] == "error"


def test_traced_refuses_generators_and_bad_kinds() -> None:
    def gen() -> Any:
        yield 1

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        traced(gen)
    with pytest.raises(TypeError, match="generator"):
        traced()(agen)
    with pytest.raises(ValueError, match="kind"):
        traced(kind="sideways")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        traced()(5)  # type: ignore[arg-type]
    assert shmtel.traced is traced


# -- the ASGI middleware with every header format --------------------------------------------------


async def handler(request: Request) -> JSONResponse:
    span = current_span()
    assert span is not None
    out: dict[str, str] = {}
    inject(out, formats=("w3c", "b3"))
    with start_span("handler-child") as child:
        pass
    return JSONResponse(
        {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "sampled": span.sampled,
            "child_parent": child.parent_span_id,
            "outgoing": out,
        }
    )


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


def call(uid: str, headers: dict[str, str], config: dict[str, Any] = CONFIG) -> httpx.Response:
    app = Starlette(routes=[Route(f"/{uid}/h", handler)])
    shmtel.setup_observability(app, config)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get(f"/{uid}/h", headers=headers)

    response: httpx.Response = run(go())
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize(
    ("headers", "trace_id", "parent_id"),
    [
        ({"traceparent": TP}, TRACE, SPAN),
        ({"b3": f"{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}"}, B3_TRACE, B3_SPAN),
        ({"b3": f"{B3_TRACE[16:]}-{B3_SPAN}-d"}, "0" * 16 + B3_TRACE[16:], B3_SPAN),
        (
            {"X-B3-TraceId": B3_TRACE, "X-B3-SpanId": B3_SPAN, "X-B3-Sampled": "1"},
            B3_TRACE,
            B3_SPAN,
        ),
        ({"X-B3-TraceId": B3_TRACE, "X-B3-SpanId": B3_SPAN}, B3_TRACE, B3_SPAN),
        ({"uber-trace-id": f"{TRACE}:{SPAN}:0:1"}, TRACE, SPAN),
        ({"uber-trace-id": f"{TRACE[16:]}%3A{SPAN}%3A0%3A1"}, "0" * 16 + TRACE[16:], SPAN),
    ],
    ids=["w3c", "b3", "b3-64bit-debug", "b3multi", "b3multi-deferred", "jaeger", "jaeger-64bit"],
)
def test_middleware_continues_every_format(
    regions: Regions, uid: str, headers: dict[str, str], trace_id: str, parent_id: str
) -> None:
    response = call(uid, headers)
    body = response.json()
    assert body["trace_id"] == trace_id
    assert body["sampled"] is True
    assert response.headers["traceparent"] == f"00-{trace_id}-{body['span_id']}-01"
    assert "tracestate" not in response.headers
    assert body["child_parent"] == body["span_id"]
    assert body["outgoing"] == {
        "traceparent": f"00-{trace_id}-{body['span_id']}-01",
        "b3": f"{trace_id}-{body['span_id']}-1",
    }
    server = next(r for r in regions.records("span") if r["span_id"] == body["span_id"])
    assert server["span_kind"] == "server"
    assert server["trace_id"] == trace_id
    assert server["parent_span_id"] == parent_id
    assert server["remote_parent"] is True


def test_middleware_unsampled_callers(regions: Regions, uid: str) -> None:
    trace = secrets.token_hex(16)
    for headers in (
        {"b3": f"{trace}-{B3_SPAN}-0"},
        {"X-B3-TraceId": trace, "X-B3-SpanId": B3_SPAN, "X-B3-Sampled": "0"},
        {"uber-trace-id": f"{trace}:{B3_SPAN}:0:0"},
        {"traceparent": f"00-{trace}-{B3_SPAN}-00"},
    ):
        response = call(uid, headers)
        body = response.json()
        assert body["trace_id"] == trace and body["sampled"] is False
        assert response.headers["traceparent"].endswith("-00")
    assert not [r for r in regions.records("span") if r["trace_id"] == trace]


def test_middleware_b3_sampling_only(uid: str) -> None:
    denied = call(uid, {"b3": "0"}).json()
    assert denied["sampled"] is False and denied["trace_id"] not in (TRACE, B3_TRACE)
    assert call(uid, {"x-b3-sampled": "0"}).json()["sampled"] is False
    _native.set_sample_ratio(0.0)
    debug = call(uid, {"b3": "d"}).json()
    assert debug["sampled"] is True


def test_middleware_passes_tracestate(uid: str) -> None:
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    response = call(uid, {"traceparent": TP, "tracestate": state})
    assert response.headers["tracestate"] == state
    body = response.json()
    assert body["outgoing"]["traceparent"].startswith(f"00-{TRACE}-")
    # handlers inject the caller's tracestate (w3c format only)
    assert body["outgoing"] == {
        "traceparent": f"00-{TRACE}-{body['span_id']}-01",
        "b3": f"{TRACE}-{body['span_id']}-1",
    } | {"tracestate": state}
    # without a trace response header the handler still passes the caller's tracestate on
    quiet = {"tracing": {"sampling_ratio": 1.0, "service_name": "prop-tests"}}
    response = call(uid, {"traceparent": TP, "tracestate": state}, quiet)
    assert "tracestate" not in response.headers and "traceparent" not in response.headers
    assert response.json()["outgoing"]["tracestate"] == state
    # an invalid tracestate is dropped; one without a (valid) traceparent is ignored
    assert "tracestate" not in call(uid, {"traceparent": TP, "tracestate": "A=1"}).headers
    response = call(uid, {"traceparent": "junk", "tracestate": state})
    assert "tracestate" not in response.headers
    assert response.json()["trace_id"] != TRACE
    assert _native.get_trace_context() is None


def test_middleware_invalid_headers_start_new_traces(uid: str) -> None:
    seen = set()
    for headers in (
        {"traceparent": f"00-{TRACE.upper()}-{SPAN}-01"},
        {"traceparent": f"ff-{TRACE}-{SPAN}-01"},
        {"b3": f"{'0' * 32}-{B3_SPAN}-1"},
        {"X-B3-TraceId": B3_TRACE},
        {"uber-trace-id": "nonsense"},
    ):
        body = call(uid, headers).json()
        assert body["trace_id"] not in (TRACE, B3_TRACE)
        seen.add(body["trace_id"])
    assert len(seen) == 5
