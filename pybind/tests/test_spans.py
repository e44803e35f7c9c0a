"""Spans: nesting through contextvars (also across await), status, exceptions, remote parents."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest
from pybind_helpers import Regions

from shmtel import Span, _native, current_span, set_trace_context, start_span

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


def test_root_span(regions: Regions, uid: str) -> None:
    span = start_span(f"root_{uid}", attributes={"k": "v", "n": 3})
    assert isinstance(span, Span)
    assert span.name == f"root_{uid}"
    assert HEX32.fullmatch(span.trace_id) and HEX16.fullmatch(span.span_id)
    assert span.parent_span_id is None
    assert span.sampled and span.is_recording
    assert span.traceparent() == f"00-{span.trace_id}-{span.span_id}-01"
    assert current_span() is None  # started, not entered
    span.end()
    assert not span.is_recording
    span.end()  # idempotent
    span.finish()
    record = regions.span(f"root_{uid}")
    assert record["trace_id"] == span.trace_id
    assert record["span_id"] == span.span_id
    assert record["parent_span_id"] is None
    assert record["span_kind"] == "internal"
    assert record["status"] == "unset"
    assert record["duration_ns"] >= 0
    assert regions.span_attrs(span.span_id) == {"k": "v", "n": 3}


def test_nesting_and_current_span(regions: Regions, uid: str) -> None:
    assert current_span() is None
    with start_span(f"outer_{uid}") as outer:
        assert current_span() is outer
        with start_span(f"inner_{uid}", kind="client") as inner:
            assert current_span() is inner
            assert inner.parent_span_id == outer.span_id
            assert inner.trace_id == outer.trace_id
        assert current_span() is outer
        explicit = start_span(f"explicit_{uid}", parent=inner)
        assert explicit.parent_span_id == inner.span_id
        explicit.end()
    assert current_span() is None
    assert regions.span(f"outer_{uid}")["status"] == "ok"
    assert regions.span(f"inner_{uid}")["span_kind"] == "client"
    assert regions.span(f"inner_{uid}")["parent_span_id"] == outer.span_id


def test_attributes_events_status(regions: Regions, uid: str) -> None:
    with start_span(f"attrs_{uid}") as span:
        assert span.set_attribute("user_id", "42") is span
        span.set_attribute("rows", 1).set_attribute("ok", True).set_attribute("ratio", 0.25)
        span.set_attribute("none", None)
        span.set_attribute("list", [1, 2])
        span.set_attributes({"a": 1, "b": "two"})
        span.add_event("cache_miss", {"key": "u:42"})
        span.add_event("plain")
        span.set_status("ERROR", "backend said no")
    record = regions.span(f"attrs_{uid}")
    assert record["status"] == "error"  # set explicitly: the clean exit does not override it
    assert record["event_count"] == 2
    attrs = {
        r["key"]: r["value"]
        for r in regions.records("span_attr")
        if r["span_id"] == span.span_id and r["event_seq"] == 0
    }
    assert attrs["user_id"] == "42"
    assert attrs["rows"] == 1
    assert attrs["ok"] is True
    assert attrs["ratio"] == 0.25
    assert attrs["none"] is None
    assert attrs["list"] == [1, 2]
    assert attrs["a"] == 1 and attrs["b"] == "two"
    assert attrs["otel.status_description"] == "backend said no"
    events = [r["name"] for r in regions.records("span_event") if r["span_id"] == span.span_id]
    assert events == ["cache_miss", "plain"]


def test_links_from_spans_remote_contexts_and_traceparents(regions: Regions, uid: str) -> None:
    with start_span(f"message_{uid}") as message:
        pass
    remote = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with start_span(
        f"batch_{uid}", links=[message, (remote, {"messaging.batch.index": 1})]
    ) as batch:
        assert batch.add_link(extract_ctx(remote), {"k": "v"}) is batch
        batch.add_link("not a traceparent")  # ignored, as propagators ignore invalid headers
        with pytest.raises(TypeError, match="link must be"):
            batch.add_link(42)  # type: ignore[arg-type]
    links = [r for r in regions.records("span_link") if r["span_id"] == batch.span_id]
    assert [(r["link_seq"], r["linked_trace_id"], r["linked_span_id"]) for r in links] == [
        (1, message.trace_id, message.span_id),
        (2, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        (3, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    ]
    assert [(r["sampled"], r["remote"]) for r in links] == [
        (True, False),
        (True, True),
        (True, True),
    ]
    link_attrs = [
        (r["link_seq"], r["key"], r["value"])
        for r in regions.records("span_link_attr")
        if r["span_id"] == batch.span_id
    ]
    assert link_attrs == [(2, "messaging.batch.index", 1), (3, "k", "v")]


def extract_ctx(traceparent: str) -> _native.RemoteContext:
    ctx = _native.extract({"traceparent": traceparent})
    assert ctx is not None
    return ctx


@pytest.mark.parametrize("status", ["ok", "OK", "error", "Unset"])
def test_set_status_values(status: str) -> None:
    with start_span("status") as span:
        span.set_status(status)


def test_set_status_invalid() -> None:
    with start_span("status") as span, pytest.raises(ValueError):
        span.set_status("fine")


def test_exception_is_recorded_and_reraised(regions: Regions, uid: str) -> None:
    with pytest.raises(ZeroDivisionError), start_span(f"boom_{uid}") as span:
        _ = 1 / 0
    assert current_span() is None
    record = regions.span(f"boom_{uid}")
    assert record["status"] == "error"
    events = [r for r in regions.records("span_event") if r["span_id"] == span.span_id]
    assert [e["name"] for e in events] == ["exception"]
    attrs = {
        r["key"]: r["value"]
        for r in regions.records("span_attr")
        if r["span_id"] == span.span_id and r["event_seq"] != 0
    }
    assert attrs["exception.type"] == "ZeroDivisionError"
    assert "division by zero" in attrs["exception.message"]
    assert (
        "Traceback" in attrs["exception.stacktrace"]
        or "ZeroDivisionError" in attrs["exception.stacktrace"]
    )


def test_explicit_ok_survives_exception(regions: Regions, uid: str) -> None:
    with pytest.raises(KeyError), start_span(f"okexc_{uid}") as span:
        span.set_status("ok")
        raise KeyError("x")
    assert regions.span(f"okexc_{uid}")["status"] == "ok"


def test_record_exception(regions: Regions, uid: str) -> None:
    with start_span(f"rec_{uid}") as span:
        try:
            raise ValueError("bad input")
        except ValueError as e:
            span.record_exception(e)
    events = [r["name"] for r in regions.records("span_event") if r["span_id"] == span.span_id]
    assert events == ["exception"]
    assert regions.span(f"rec_{uid}")["status"] == "ok"


def test_concurrent_tasks_keep_separate_spans(regions: Regions, uid: str) -> None:
    seen: dict[str, Any] = {}

    async def handler(name: str) -> None:
        with start_span(f"{name}_{uid}") as parent:
            await asyncio.sleep(0.01)
            assert current_span() is parent
            with start_span(f"{name}_child_{uid}") as child:
                await asyncio.sleep(0.01)
                assert current_span() is child
            seen[name] = (parent, child)
            await asyncio.sleep(0)
            assert current_span() is parent

    async def main() -> None:
        await asyncio.gather(handler("a"), handler("b"))
        assert current_span() is None

    asyncio.run(main())
    (pa, ca), (pb, cb) = seen["a"], seen["b"]
    assert ca.parent_span_id == pa.span_id and ca.trace_id == pa.trace_id
    assert cb.parent_span_id == pb.span_id and cb.trace_id == pb.trace_id
    assert pa.trace_id != pb.trace_id
    assert regions.span(f"a_child_{uid}")["parent_span_id"] == pa.span_id


def test_thread_does_not_see_other_threads_span(uid: str) -> None:
    seen: list[Span | None] = []
    with start_span(f"main_{uid}"):
        t = threading.Thread(target=lambda: seen.append(current_span()))
        t.start()
        t.join()
    assert seen == [None]


def test_set_trace_context_joins_remote_trace(regions: Regions, uid: str) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    token = set_trace_context(trace_id, span_id)
    try:
        assert _native.get_trace_context() == (trace_id, span_id, True)
        assert current_span() is None
        _native.info(f"remote log {uid}")
        with start_span(f"joined_{uid}") as span:
            assert span.trace_id == trace_id
            assert span.parent_span_id == span_id
    finally:
        token.var.reset(token)
    assert _native.get_trace_context() is None
    record = regions.span(f"joined_{uid}")
    assert record["remote_parent"] is True
    assert record["parent_span_id"] == span_id
    log = regions.log(f"remote log {uid}")
    assert (log["trace_id"], log["span_id"]) == (trace_id, span_id)


def test_set_trace_context_unsampled(regions: Regions, uid: str) -> None:
    token = set_trace_context("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", sampled=False)
    try:
        with start_span(f"unsampled_{uid}") as span:
            assert not span.sampled and not span.is_recording
            with start_span(f"unsampled_child_{uid}") as child:
                assert not child.sampled
    finally:
        token.var.reset(token)
    assert regions.spans(f"unsampled_{uid}") == []


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [
        ("xyz", "00f067aa0ba902b7"),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "short"),
        ("0" * 32, "00f067aa0ba902b7"),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 16),
        ("4bf92f3577b34da6a3ce929d0e0e473g", "00f067aa0ba902b7"),
    ],
)
def test_set_trace_context_rejects(trace_id: str, span_id: str) -> None:
    with pytest.raises(ValueError):
        set_trace_context(trace_id, span_id)


def test_traceparent_parent(uid: str) -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    span = start_span(f"tp_{uid}", tp, kind="server")
    assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_span_id == "00f067aa0ba902b7"
    span.end()
    fresh = start_span(f"tpbad_{uid}", "garbage")
    assert fresh.parent_span_id is None
    fresh.end()


def test_sampling(uid: str) -> None:
    never = start_span(f"never_{uid}", sample_ratio=0.0)
    assert not never.sampled and not never.is_recording
    with never:
        child = start_span(f"never_child_{uid}")
        assert not child.sampled
        assert child.trace_id == never.trace_id
        child.end()
    always = start_span(f"always_{uid}", sample_ratio=1.0)
    assert always.sampled
    always.end()
    _native.set_sample_ratio(0.0)
    assert not start_span(f"proc_{uid}").sampled
    with pytest.raises(ValueError):
        _native.set_sample_ratio(1.5)
    with pytest.raises(ValueError):
        start_span(f"nan_{uid}", sample_ratio=float("nan"))


def test_start_span_errors() -> None:
    with pytest.raises(ValueError):
        start_span("x", kind="sideways")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        start_span("x", parent=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        start_span(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        start_span("x", attributes=[("a", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["internal", "server", "client", "producer", "consumer", "SERVER"])
def test_kinds(kind: str) -> None:
    start_span("k", kind=kind).end()  # type: ignore[arg-type]


# -- propagation ----------------------------------------------------------------------------------

TP_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TP_SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TP_TRACE}-{TP_SPAN}-01", (TP_TRACE, TP_SPAN, True)),
        (f"00-{TP_TRACE}-{TP_SPAN}-00", (TP_TRACE, TP_SPAN, False)),
        (f"00-{TP_TRACE}-{TP_SPAN}-09", (TP_TRACE, TP_SPAN, True)),
        (f"01-{TP_TRACE}-{TP_SPAN}-01-future", (TP_TRACE, TP_SPAN, True)),
        (f"00-{TP_TRACE}-{TP_SPAN}-01-extra", None),
        (f"ff-{TP_TRACE}-{TP_SPAN}-01", None),
        (f"00-{'0' * 32}-{TP_SPAN}-01", None),
        (f"00-{TP_TRACE}-{'0' * 16}-01", None),
        (f"00-{TP_TRACE.upper()}-{TP_SPAN}-01", None),
        (f"00-{TP_TRACE}-{TP_SPAN}", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_parse_traceparent(header: str, expected: tuple[str, str, bool] | None) -> None:
    assert _native.parse_traceparent(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"{TP_TRACE}:{TP_SPAN}:0:1", (TP_TRACE, TP_SPAN, True)),
        (f"{TP_TRACE}:{TP_SPAN}:0:0", (TP_TRACE, TP_SPAN, False)),
        ("abc:def:0:3", ("0" * 29 + "abc", "0" * 13 + "def", True)),
        (f"{TP_TRACE}%3A{TP_SPAN}%3A0%3A1", (TP_TRACE, TP_SPAN, True)),
        (f"{TP_TRACE}:{TP_SPAN}:0", None),
        ("zz:def:0:1", None),
        ("", None),
    ],
)
def test_parse_uber_trace_id(header: str, expected: tuple[str, str, bool] | None) -> None:
    assert _native.parse_uber_trace_id(header) == expected


def test_format_traceparent() -> None:
    assert _native.format_traceparent(TP_TRACE, TP_SPAN, True) == f"00-{TP_TRACE}-{TP_SPAN}-01"
    assert _native.format_traceparent(TP_TRACE, TP_SPAN, False) == f"00-{TP_TRACE}-{TP_SPAN}-00"
    with pytest.raises(ValueError):
        _native.format_traceparent("nothex", TP_SPAN, True)
