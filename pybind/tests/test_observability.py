"""Observability: create-or-get metrics with the namespace, logs, business metrics, no-op mode."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from pybind_helpers import Regions, sample

from shmtel import (
    LoggingConfig,
    LogLevel,
    MetricConfig,
    Observability,
    TracingConfig,
    _native,
)
from shmtel.observability import NoopMetric, NoopSpan


class Opaque:
    def __str__(self) -> str:
        return "<opaque>"


def make(namespace: str = "covet", **logging: Any) -> Observability:
    return Observability(
        MetricConfig(namespace=namespace),
        TracingConfig(service_name="pybind-tests", sampling_ratio=1.0),
        LoggingConfig(level=LogLevel.TRACE, **logging),
    )


def test_hot_methods_are_the_native_functions() -> None:
    obs = make()
    assert obs.info is _native.info
    assert obs.debug is _native.debug
    assert obs.log is _native.log
    assert obs.start_span is _native.start_span
    assert obs.current_span is _native.current_span
    assert obs.business_metric is _native.business_metric
    assert obs.set_correlation_id is _native.set_correlation_id
    assert obs.set_trace_context is _native.set_trace_context


def test_settings_reach_the_native_module() -> None:
    Observability(logging_config=LoggingConfig(level=LogLevel.WARN))
    assert _native.get_log_level() == 3
    assert not _native.log_enabled(LogLevel.INFO)
    assert _native.log_enabled(LogLevel.ERROR)
    Observability(logging_config=LoggingConfig(level="debug"))  # type: ignore[arg-type]
    assert _native.get_log_level() == LogLevel.DEBUG


def test_namespace_prefix(uid: str) -> None:
    obs = make(namespace=f"svc_{uid}")
    c = obs.counter("user_requests_total", "User requests.")
    assert c.name == f"svc_{uid}_user_requests"
    c.inc()
    assert sample(f"svc_{uid}_user_requests_total") == 1.0
    # a name already carrying the namespace is not prefixed twice
    assert obs.gauge(f"svc_{uid}_queue").name == f"svc_{uid}_queue"
    assert make(namespace="").counter(f"bare_{uid}").name == f"bare_{uid}"


def test_create_or_get(uid: str) -> None:
    obs = make()
    a = obs.counter(f"cg_{uid}", "C.", ["route"])
    assert obs.counter(f"cg_{uid}", "C.", ["route"]) is a
    g = obs.gauge(f"cgg_{uid}", labels=["x"])
    g.labels("1").set(5)
    obs.gauge(f"cgg_{uid}", labels=["x"]).labels(x="1").inc()
    assert sample(f"covet_cgg_{uid}", x="1") == 6.0
    with pytest.raises(ValueError):
        obs.gauge(f"cg_{uid}", labels=["route"])  # same name, another type
    with pytest.raises(ValueError):
        obs.counter(f"cg_{uid}", labels=["other"])  # same name, other labels
    with pytest.raises(TypeError, match="not a str"):
        obs.counter(f"cgs_{uid}", labels="route")
    with pytest.raises(ValueError):
        obs.counter("bad-name")
    with pytest.raises(TypeError):
        obs.counter(42)  # type: ignore[arg-type]


def test_histogram_buckets(uid: str) -> None:
    obs = Observability(MetricConfig(namespace="", default_buckets=[0.1, 1.0]))
    h = obs.histogram(f"hd_{uid}", "H.")
    h.observe(0.5)
    assert sample(f"hd_{uid}_bucket", le="1.0") == 1.0
    assert sample(f"hd_{uid}_bucket", le="0.1") == 0.0
    h2 = obs.histogram(f"hc_{uid}", "H.", [1, 2, 3], ["op"])
    h2.labels("read").observe(2.5)
    assert sample(f"hc_{uid}_bucket", op="read", le="3.0") == 1.0
    assert sample(f"hc_{uid}_bucket", op="read", le="2.0") == 0.0
    with pytest.raises(TypeError):
        obs.histogram(f"hx_{uid}", buckets="1,2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        obs.histogram(f"hy_{uid}", buckets=[3, 1])
    with obs.histogram(f"hd_{uid}", "H.").time():
        pass
    assert sample(f"hd_{uid}_count") == 2.0


def test_summary(uid: str) -> None:
    obs = make()
    obs.summary(f"sm_{uid}").observe(2)
    assert sample(f"covet_sm_{uid}_count") == 1.0


def test_logs_carry_fields_and_correlation(regions: Regions, uid: str) -> None:
    obs = make()
    token = obs.set_correlation_id(f"corr-{uid}")
    try:
        assert obs.get_correlation_id() == f"corr-{uid}"
        with obs.start_span(f"span_{uid}") as span:
            obs.info(
                f"user retrieved {uid}",
                user_id="42",
                found=True,
                count=3,
                ratio=0.5,
                nothing=None,
                tags=["a", "b"],
                meta={"k": 1},
                big=2**70,
                level=LogLevel.INFO,
                obj=Opaque(),
            )
        obs.warn(f"outside {uid}")
    finally:
        token.var.reset(token)
    assert obs.get_correlation_id() is None
    record = regions.log(f"user retrieved {uid}")
    assert record["level"] == "INFO"
    assert record["correlation_id"] == f"corr-{uid}"
    assert record["trace_id"] == span.trace_id
    assert record["span_id"] == span.span_id
    fields = record["fields"]
    assert fields["user_id"] == "42"
    assert fields["found"] is True
    assert fields["count"] == 3
    assert fields["ratio"] == 0.5
    assert fields["nothing"] is None
    assert fields["tags"] == ["a", "b"]
    assert fields["meta"] == {"k": 1}
    assert fields["big"] == str(2**70)
    assert fields["obj"] == "<opaque>"
    assert fields["level"] == 2  # an IntEnum is an int
    outside = regions.log(f"outside {uid}")
    assert outside["level"] == "WARN"
    assert outside["trace_id"] is None and outside["span_id"] is None
    assert outside["correlation_id"] == f"corr-{uid}"


def test_every_level(regions: Regions, uid: str) -> None:
    obs = make()
    obs.trace(f"lv trace {uid}")
    obs.debug(f"lv debug {uid}")
    obs.info(f"lv info {uid}")
    obs.warn(f"lv warn {uid}")
    obs.warning(f"lv warning {uid}")
    obs.error(f"lv error {uid}")
    obs.fatal(f"lv fatal {uid}")
    obs.critical(f"lv critical {uid}")
    obs.log(LogLevel.INFO, f"lv log {uid}", n=1)
    obs.log(4, f"lv log4 {uid}")
    got = {r["message"]: r["level"] for r in regions.records("log") if uid in r["message"]}
    assert got == {
        f"lv trace {uid}": "TRACE",
        f"lv debug {uid}": "DEBUG",
        f"lv info {uid}": "INFO",
        f"lv warn {uid}": "WARN",
        f"lv warning {uid}": "WARN",
        f"lv error {uid}": "ERROR",
        f"lv fatal {uid}": "FATAL",
        f"lv critical {uid}": "FATAL",
        f"lv log {uid}": "INFO",
        f"lv log4 {uid}": "ERROR",
    }


def test_level_filter(regions: Regions, uid: str) -> None:
    obs = Observability(logging_config=LoggingConfig(level=LogLevel.WARN))
    obs.debug(f"filtered {uid}", x=1)
    obs.info(f"filtered {uid}")
    obs.error(f"kept {uid}")
    assert regions.logs(f"filtered {uid}") == []
    assert len(regions.logs(f"kept {uid}")) == 1


def test_log_errors() -> None:
    obs = make()
    with pytest.raises(TypeError):
        obs.info()
    with pytest.raises((TypeError, ValueError)):
        obs.log(9, "no such level")
    with pytest.raises(TypeError):
        obs.log("INFO", "level must be an int")


def test_log_message_objects_are_strd(regions: Regions, uid: str) -> None:
    obs = make()
    obs.info(f"{uid}-msg".encode())  # bytes: str() of it
    obs.info(12345678 + len(uid))
    assert len(regions.logs(str(f"{uid}-msg".encode()))) == 1


def test_correlation_fields_exclude(regions: Regions, uid: str) -> None:
    obs = make(correlation_fields=["correlation_id"])
    token = obs.set_correlation_id(f"c-{uid}")
    try:
        with obs.start_span(f"cf_{uid}"):
            obs.info(f"no trace {uid}")
    finally:
        token.var.reset(token)
    record = regions.log(f"no trace {uid}")
    assert record["correlation_id"] == f"c-{uid}"
    assert record["trace_id"] is None

    obs = make(correlation_fields=["trace_id"])
    token = obs.set_correlation_id(f"c-{uid}")
    try:
        with obs.start_span(f"cf2_{uid}") as span:
            obs.info(f"no corr {uid}")
    finally:
        token.var.reset(token)
    record = regions.log(f"no corr {uid}")
    assert record["correlation_id"] is None
    assert record["trace_id"] == span.trace_id


def test_include_caller(regions: Regions, uid: str) -> None:
    obs = make(include_caller=True)
    obs.info(f"with caller {uid}")
    caller = regions.log(f"with caller {uid}")["caller"]
    assert caller is not None and "test_observability" in caller


def test_correlation_ids() -> None:
    obs = make()
    cid = obs.new_correlation_id()
    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    assert obs.new_correlation_id() != cid
    assert obs.get_correlation_id() is None
    token = obs.set_correlation_id(cid)
    assert obs.get_correlation_id() == cid
    token.var.reset(token)
    assert obs.get_correlation_id() is None
    with pytest.raises(TypeError):
        obs.set_correlation_id(42)


def test_correlation_id_is_per_task() -> None:
    obs = make()

    async def handler(cid: str) -> str | None:
        obs.set_correlation_id(cid)
        await asyncio.sleep(0.01)
        return obs.get_correlation_id()

    async def main() -> list[str | None]:
        return list(await asyncio.gather(handler("a"), handler("b")))

    assert asyncio.run(main()) == ["a", "b"]


def test_business_metric(regions: Regions, uid: str) -> None:
    obs = make()
    obs.business_metric(f"user_lookup_{uid}", 1, "count", {"user_type": "premium"})
    obs.business_metric(f"revenue_{uid}", 9.99, unit="usd")
    obs.business_metric(f"plain_{uid}", 2)
    got = {r["name"]: r for r in regions.records("business") if uid in r["name"]}
    assert got[f"user_lookup_{uid}"]["value"] == 1
    assert got[f"user_lookup_{uid}"]["unit"] == "count"
    assert got[f"user_lookup_{uid}"]["tags"] == {"user_type": "premium"}
    assert got[f"revenue_{uid}"]["value"] == pytest.approx(9.99)
    assert got[f"revenue_{uid}"]["unit"] == "usd"
    assert got[f"plain_{uid}"]["unit"] == "count"
    with pytest.raises(TypeError):
        obs.business_metric(f"bad_{uid}", "lots")
    with pytest.raises(TypeError):
        obs.business_metric(f"bad_{uid}", 1, "count", ["not", "a", "dict"])


def test_disabled_metrics_are_noops(uid: str) -> None:
    obs = Observability(MetricConfig(enabled=False))
    c = obs.counter(f"off_{uid}", "Off.", ["a"])
    assert isinstance(c, NoopMetric)
    c.labels("x").inc()
    c.inc(5)
    g = obs.gauge(f"offg_{uid}")
    g.set(1)
    g.dec()
    g.set_to_current_time()
    with g.track_inprogress():
        pass
    h = obs.histogram(f"offh_{uid}")
    h.observe(1)
    with h.time():
        pass

    @h.time()  # type: ignore[untyped-decorator]
    def f() -> int:
        return 1

    assert f() == 1
    with c.count_exceptions():
        pass
    obs.summary(f"offs_{uid}").observe(1)
    obs.business_metric("nothing", 1)
    assert f"off_{uid}" not in _native.render_process_metrics()


def test_disabled_tracing_is_noop(regions: Regions, uid: str) -> None:
    obs = Observability(tracing_config=TracingConfig(enabled=False))
    with obs.start_span(f"off_{uid}") as span:
        assert isinstance(span, NoopSpan)
        span.set_attribute("a", 1).add_event("e").set_status("ok")
        span.set_attributes({"b": 2})
        assert not span.is_recording
        assert obs.current_span() is None
        assert span.traceparent() == ""
    span.record_exception(ValueError("x"))
    span.end()
    span.finish()
    with pytest.raises(ValueError):
        span.set_status("fine")
    with pytest.raises(TypeError):
        obs.start_span(42)
    assert regions.spans(f"off_{uid}") == []


def test_repr() -> None:
    assert "covet" in repr(make())
