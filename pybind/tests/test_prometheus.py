"""shmtel.prometheus as a prometheus_client drop-in: constructors, methods, errors, exposition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
from pybind_helpers import families, parse_exposition, sample

from shmtel import _native, prometheus
from shmtel.prometheus import (
    CONTENT_TYPE_LATEST,
    DEFAULT_BUCKETS,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)


def test_classes_are_native() -> None:
    assert Counter is _native.Counter
    assert Gauge is _native.Gauge
    assert Histogram is _native.Histogram
    assert Summary is _native.Summary
    assert tuple(DEFAULT_BUCKETS) == tuple(prometheus_client.Histogram.DEFAULT_BUCKETS)


# -- Counter --------------------------------------------------------------------------------------


def test_counter_inc(uid: str) -> None:
    c = Counter(f"jobs_{uid}", "Jobs done.")
    c.inc()
    c.inc(2.5)
    assert sample(f"jobs_{uid}_total") == 3.5
    assert c.name == f"jobs_{uid}"
    assert c.documentation == "Jobs done."
    assert c.labelnames == ()
    assert c.type == "counter"
    text = _native.render_process_metrics()
    assert f"# TYPE jobs_{uid} counter" in text or f"# TYPE jobs_{uid}_total counter" in text
    assert f"# HELP jobs_{uid}" in text


def test_counter_total_suffix_is_stripped(uid: str) -> None:
    c = Counter(f"hits_{uid}_total", "Hits.")
    assert c.name == f"hits_{uid}"
    c.inc()
    assert sample(f"hits_{uid}_total") == 1.0


def test_full_name_from_parts(uid: str) -> None:
    c = Counter("bytes", "Bytes.", namespace=f"ns_{uid}", subsystem="io", unit="bytes")
    assert c.name == f"ns_{uid}_io_bytes"
    assert c.unit == "bytes"
    g = Gauge("temp", "T.", namespace=f"ns_{uid}", unit="celsius")
    assert g.name == f"ns_{uid}_temp_celsius"


def test_counter_labels_positional_and_keyword(uid: str) -> None:
    c = Counter(f"req_{uid}", "Requests.", ["method", "route"])
    c.labels("GET", "/users").inc()
    c.labels(method="GET", route="/users").inc(2)
    c.labels(route="/x", method="POST").inc()
    assert sample(f"req_{uid}_total", method="GET", route="/users") == 3.0
    assert sample(f"req_{uid}_total", method="POST", route="/x") == 1.0
    child = c.labels("GET", "/users")
    assert child is c.labels("GET", "/users")
    assert child.labelvalues == ("GET", "/users")
    assert child.value == 3.0


def test_label_values_are_strd(uid: str) -> None:
    c = Counter(f"codes_{uid}", "Codes.", ("code", "ok"))
    c.labels(200, True).inc()
    assert c.labels(200, True).labelvalues == ("200", "True")
    assert sample(f"codes_{uid}_total", code="200", ok="True") == 1.0


def test_label_errors(uid: str) -> None:
    c = Counter(f"lab_{uid}", "L.", ("a", "b"))
    with pytest.raises(ValueError, match="Incorrect label count"):
        c.labels("x")
    with pytest.raises(ValueError, match="Incorrect label count"):
        c.labels("x", "y", "z")
    with pytest.raises(ValueError, match="Incorrect label names"):
        c.labels(a="x", c="y")
    with pytest.raises(ValueError):
        c.labels("x", b="y")
    with pytest.raises(ValueError, match="missing label values"):
        c.inc()
    plain = Counter(f"plain_{uid}", "P.")
    with pytest.raises(ValueError):
        plain.labels("x")


def test_counter_amount_errors(uid: str) -> None:
    c = Counter(f"amt_{uid}", "A.")
    with pytest.raises(ValueError, match="non-negative"):
        c.inc(-1)
    with pytest.raises(TypeError):
        c.inc("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.inc(None)  # type: ignore[arg-type]
    c.inc(float("nan"))  # accepted, as prometheus_client does
    child = Counter(f"amtc_{uid}", "A.", ["x"]).labels("1")
    with pytest.raises(ValueError, match="non-negative"):
        child.inc(-0.5)
    with pytest.raises(TypeError):
        child.inc([1])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "ä"])
def test_invalid_metric_names(name: str) -> None:
    with pytest.raises(ValueError):
        Counter(name, "bad")
    with pytest.raises(ValueError):
        Gauge(name, "bad")


@pytest.mark.parametrize("label", ["a-b", "1a", "__reserved", ""])
def test_invalid_label_names(uid: str, label: str) -> None:
    with pytest.raises(ValueError):
        Counter(f"badlabel_{uid}", "bad", [label])


def test_reserved_labels(uid: str) -> None:
    with pytest.raises(ValueError):
        Histogram(f"h_le_{uid}", "bad", ["le"])
    with pytest.raises(ValueError):
        Summary(f"s_q_{uid}", "bad", ["quantile"])


def test_create_or_get(uid: str) -> None:
    a = Counter(f"same_{uid}", "S.", ["x"])
    b = Counter(f"same_{uid}", "S.", ["x"])
    a.labels("1").inc()
    b.labels("1").inc()
    assert sample(f"same_{uid}_total", x="1") == 2.0


def test_conflicting_definitions(uid: str) -> None:
    Counter(f"conf_{uid}", "C.", ["x"])
    with pytest.raises(ValueError):
        Gauge(f"conf_{uid}", "C.", ["x"])
    with pytest.raises(ValueError):
        Counter(f"conf_{uid}", "C.", ["y"])
    Histogram(f"confh_{uid}", "H.", buckets=[1, 2])
    with pytest.raises(ValueError):
        Histogram(f"confh_{uid}", "H.", buckets=[1, 3])


def test_count_exceptions(uid: str) -> None:
    c = Counter(f"exc_{uid}", "E.")
    with pytest.raises(KeyError), c.count_exceptions():
        raise KeyError("x")
    with pytest.raises(ZeroDivisionError), c.count_exceptions(KeyError):
        _ = 1 / 0
    with c.count_exceptions():
        pass

    @c.count_exceptions(ValueError)
    def parse(s: str) -> int:
        return int(s)

    assert parse("3") == 3
    with pytest.raises(ValueError):
        parse("x")
    assert parse.__name__ == "parse"
    assert sample(f"exc_{uid}_total") == 2.0

    child = Counter(f"excl_{uid}", "E.", ["k"]).labels("a")
    with pytest.raises(RuntimeError), child.count_exceptions():
        raise RuntimeError
    assert child.value == 1.0


# -- Gauge ----------------------------------------------------------------------------------------


def test_gauge_ops(uid: str) -> None:
    g = Gauge(f"g_{uid}", "G.")
    g.set(10)
    g.inc()
    g.inc(4)
    g.dec()
    g.dec(2.5)
    assert g.type == "gauge"
    assert sample(f"g_{uid}") == 11.5
    g.set(-3)
    assert sample(f"g_{uid}") == -3.0
    before = time.time()
    g.set_to_current_time()
    value = sample(f"g_{uid}")
    assert value is not None and before - 1 <= value <= time.time() + 1


def test_gauge_labels(uid: str) -> None:
    g = Gauge(f"gl_{uid}", "G.", ["shard"], multiprocess_mode="livesum")
    g.labels("1").inc(3)
    g.labels(shard="1").dec()
    assert sample(f"gl_{uid}", shard="1") == 2.0
    with pytest.raises(ValueError):
        g.set(1)


def test_gauge_value_errors(uid: str) -> None:
    g = Gauge(f"gerr_{uid}", "G.")
    with pytest.raises(TypeError):
        g.set("high")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        g.inc(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "mode",
    [
        "all",
        "liveall",
        "min",
        "livemin",
        "max",
        "livemax",
        "sum",
        "livesum",
        "mostrecent",
        "livemostrecent",
    ],
)
def test_gauge_modes(uid: str, mode: str) -> None:
    Gauge(f"gm_{mode}_{uid}", "G.", multiprocess_mode=mode).set(1)


def test_gauge_bad_mode(uid: str) -> None:
    with pytest.raises(ValueError):
        Gauge(f"gbad_{uid}", "G.", multiprocess_mode="average")


def test_track_inprogress(uid: str) -> None:
    g = Gauge(f"inprog_{uid}", "I.")
    with g.track_inprogress():
        assert sample(f"inprog_{uid}") == 1.0
        with g.track_inprogress():
            assert sample(f"inprog_{uid}") == 2.0
    assert sample(f"inprog_{uid}") == 0.0

    @g.track_inprogress()
    def work() -> float | None:
        return sample(f"inprog_{uid}")

    assert work() == 1.0
    assert sample(f"inprog_{uid}") == 0.0

    with pytest.raises(RuntimeError), g.track_inprogress():
        raise RuntimeError
    assert sample(f"inprog_{uid}") == 0.0


def test_gauge_time(uid: str) -> None:
    g = Gauge(f"gtime_{uid}", "T.")
    with g.time():
        time.sleep(0.02)
    value = sample(f"gtime_{uid}")
    assert value is not None and 0.015 <= value < 2.0


# -- Histogram and Summary ------------------------------------------------------------------------


def test_histogram_default_buckets(uid: str) -> None:
    h = Histogram(f"lat_{uid}", "L.")
    for v in (0.003, 0.2, 0.2, 7.0, 50.0):
        h.observe(v)
    assert h.type == "histogram"
    assert sample(f"lat_{uid}_bucket", le="0.005") == 1.0
    assert sample(f"lat_{uid}_bucket", le="0.25") == 3.0
    assert sample(f"lat_{uid}_bucket", le="10.0") == 4.0
    assert sample(f"lat_{uid}_bucket", le="+Inf") == 5.0
    assert sample(f"lat_{uid}_count") == 5.0
    assert sample(f"lat_{uid}_sum") == pytest.approx(57.403)
    les = {
        k[1][0][1]
        for k in parse_exposition(_native.render_process_metrics())
        if k[0] == f"lat_{uid}_bucket"
    }
    assert len(les) == len(DEFAULT_BUCKETS)  # the trailing +Inf is part of DEFAULT_BUCKETS


def test_histogram_custom_buckets(uid: str) -> None:
    h = Histogram(f"size_{uid}", "S.", ["kind"], buckets=[1, 10, 100, float("inf")])
    h.labels("a").observe(5)
    h.labels(kind="a").observe(500)
    assert sample(f"size_{uid}_bucket", kind="a", le="1.0") == 0.0
    assert sample(f"size_{uid}_bucket", kind="a", le="10.0") == 1.0
    assert sample(f"size_{uid}_bucket", kind="a", le="+Inf") == 2.0


@pytest.mark.parametrize("buckets", [[2, 1], [1, 1], [], ["a"]])
def test_histogram_bad_buckets(uid: str, buckets: list[object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Histogram(f"hb_{uid}", "B.", buckets=buckets)  # type: ignore[arg-type]


def test_histogram_observe_errors(uid: str) -> None:
    h = Histogram(f"hobs_{uid}", "H.")
    with pytest.raises(TypeError):
        h.observe("slow")  # type: ignore[arg-type]
    labelled = Histogram(f"hobsl_{uid}", "H.", ["x"])
    with pytest.raises(ValueError):
        labelled.observe(1)


def test_histogram_time(uid: str) -> None:
    h = Histogram(f"htime_{uid}", "T.")
    with h.time():
        time.sleep(0.01)

    @h.time()
    def sync_work() -> str:
        time.sleep(0.01)
        return "done"

    @h.time()
    async def async_work() -> str:
        await asyncio.sleep(0.03)
        return "async done"

    assert sync_work() == "done"
    assert sync_work.__name__ == "sync_work"
    assert asyncio.iscoroutinefunction(async_work)
    assert asyncio.run(async_work()) == "async done"
    assert sample(f"htime_{uid}_count") == 3.0
    total = sample(f"htime_{uid}_sum")
    # the async observation covers the await (>= 30 ms), not just the coroutine's creation
    assert total is not None and total >= 0.045
    assert sample(f"htime_{uid}_bucket", le="0.025") == 2.0


def test_summary(uid: str) -> None:
    s = Summary(f"req_size_{uid}", "S.")
    s.observe(3)
    s.observe(4.5)
    assert s.type == "summary"
    assert sample(f"req_size_{uid}_count") == 2.0
    assert sample(f"req_size_{uid}_sum") == 7.5
    with s.time():
        pass
    assert sample(f"req_size_{uid}_count") == 3.0
    with pytest.raises(TypeError):
        s.observe("x")  # type: ignore[arg-type]


# -- registry placeholders and exposition ---------------------------------------------------------


def test_registry_arguments_are_accepted(uid: str) -> None:
    Counter(f"reg1_{uid}", "R.", registry=REGISTRY).inc()
    Counter(f"reg2_{uid}", "R.", registry=None).inc()
    Counter(f"reg3_{uid}", "R.", registry=CollectorRegistry()).inc()
    assert sample(f"reg3_{uid}_total") == 1.0
    REGISTRY.register(Counter(f"reg4_{uid}", "R."))  # shmtel's own: recorded already
    with pytest.raises(TypeError, match="no collect"):
        REGISTRY.register(object())
    REGISTRY.unregister(object())


def test_custom_collectors_are_sampled_into_shmtel_families(uid: str) -> None:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        InfoMetricFamily,
    )

    class Source:
        def __init__(self) -> None:
            self.total = 5.0
            self.fail = False

        def collect(self) -> Iterator[Any]:
            if self.fail:
                raise RuntimeError("backend down")
            c = CounterMetricFamily(f"cc_jobs_{uid}", "Jobs.", labels=["queue"])
            c.add_metric(["fast"], self.total)
            yield c
            g = GaugeMetricFamily(f"cc_temp_{uid}", "Temperature.")
            g.add_metric([], 21.5)
            yield g
            yield InfoMetricFamily(f"cc_build_{uid}", "Build.", value={"version": "1.2"})
            h = HistogramMetricFamily(f"cc_lat_{uid}", "Latency.", labels=[])
            h.add_metric([], buckets=[("0.5", 2.0), ("+Inf", 3.0)], sum_value=1.25)
            yield h

    src = Source()
    REGISTRY.register(src)  # sampled once at once, then every interval
    try:
        with pytest.raises(ValueError, match="already registered"):
            REGISTRY.register(src)
        # This process's own view; the collector adds `pid` to these `all`-mode gauges.
        assert sample(f"cc_jobs_{uid}_total", queue="fast") == 5.0
        assert sample(f"cc_temp_{uid}") == 21.5
        assert sample(f"cc_build_{uid}_info", version="1.2") == 1.0
        assert sample(f"cc_lat_{uid}_bucket", le="0.5") == 2.0
        assert sample(f"cc_lat_{uid}_count") == 3.0
        assert sample(f"cc_lat_{uid}_sum") == 1.25
        src.total = 8.0
        prometheus._CUSTOM.sample(src)
        assert sample(f"cc_jobs_{uid}_total", queue="fast") == 8.0, "the growth is added"
        src.total = 2.0  # the source restarted
        prometheus._CUSTOM.sample(src)
        assert sample(f"cc_jobs_{uid}_total", queue="fast") == 10.0, "a reset adds the new value"
        src.fail = True
        prometheus._CUSTOM.sample(src)  # logged, nothing recorded, no exception
        assert sample(f"cc_jobs_{uid}_total", queue="fast") == 10.0
    finally:
        REGISTRY.unregister(src)


def test_generate_latest(uid: str) -> None:
    Counter(f"gen_{uid}", "G.").inc(7)
    body = generate_latest()
    assert isinstance(body, bytes)
    assert parse_exposition(body.decode())[(f"gen_{uid}_total", ())] == 7.0
    assert generate_latest(CollectorRegistry()) == generate_latest(REGISTRY), "one process view"
    assert CONTENT_TYPE_LATEST == "text/plain; version=0.0.4; charset=utf-8"


# -- Info and Enum --------------------------------------------------------------------------------


def test_info(uid: str) -> None:
    i = Info(f"build_{uid}", "Build.")
    i.info({"version": "1.2.3", "commit": "abc"})
    assert sample(f"build_{uid}_info", version="1.2.3", commit="abc") == 1.0
    fam = families(_native.render_process_metrics())[f"build_{uid}_info"]
    assert fam.type == "gauge"
    assert fam.documentation == "Build."
    i.info({"version": "1.2.4", "commit": "abd"})
    assert sample(f"build_{uid}_info", version="1.2.4", commit="abd") == 1.0
    assert sample(f"build_{uid}_info", version="1.2.3", commit="abc") == 0.0


def test_info_errors(uid: str) -> None:
    i = Info(f"inf_{uid}", "I.", ["host"])
    with pytest.raises(ValueError, match="missing label values"):
        i.info({"a": "b"})
    with pytest.raises(ValueError, match="Overlapping"):
        i.labels("h1").info({"host": "x"})
    with pytest.raises(ValueError, match="cannot be None"):
        i.labels("h1").info({"a": None})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        i.labels("h1").info(["a"])  # type: ignore[arg-type]
    i.labels("h1").info({"a": "1"})
    with pytest.raises(ValueError, match="info keys must stay the same"):
        i.labels("h2").info({"b": "1"})
    with pytest.raises(ValueError, match="Incorrect label count"):
        i.labels("h1", "h2")
    with pytest.raises(ValueError, match="cannot have a unit"):
        Info(f"infu_{uid}", "I.", unit="seconds")
    with pytest.raises(ValueError):
        Info("bad-name", "I.")
    with pytest.raises(ValueError):
        Info(f"infl_{uid}", "I.", ["bad-label"])


def test_enum(uid: str) -> None:
    e = Enum(f"task_{uid}", "Task state.", states=["starting", "running", "stopped"])
    name = f"task_{uid}"
    assert sample(name, **{name: "starting"}) == 1.0
    assert sample(name, **{name: "running"}) == 0.0
    e.state("running")
    assert sample(name, **{name: "starting"}) == 0.0
    assert sample(name, **{name: "running"}) == 1.0
    assert sample(name, **{name: "stopped"}) == 0.0
    assert families(_native.render_process_metrics())[name].type == "gauge"


def test_enum_labels_and_errors(uid: str) -> None:
    name = f"job_{uid}"
    e = Enum(name, "J.", ["queue"], states=["idle", "busy"])
    e.labels("q1").state("busy")
    e.labels(queue="q2")
    assert sample(name, queue="q1", **{name: "busy"}) == 1.0
    assert sample(name, queue="q2", **{name: "idle"}) == 1.0
    with pytest.raises(ValueError, match="missing label values"):
        e.state("busy")
    with pytest.raises(ValueError, match="not a state"):
        e.labels("q1").state("asleep")
    with pytest.raises(ValueError, match="Overlapping"):
        Enum(f"ov_{uid}", "O.", [f"ov_{uid}"], states=["a"])
    with pytest.raises(ValueError, match="No states"):
        Enum(f"ns_{uid}", "N.")
    with pytest.raises(ValueError, match="Duplicate"):
        Enum(f"dup_{uid}", "D.", states=["a", "a"])
    with pytest.raises(ValueError, match="cannot have a unit"):
        Enum(f"un_{uid}", "U.", states=["a"], unit="seconds")


def test_info_and_enum_match_prometheus_client(uid: str) -> None:
    registry = prometheus_client.CollectorRegistry()
    ops = [
        (prometheus_client.Info, prometheus_client.Enum, {"registry": registry}),
        (Info, Enum, {}),
    ]
    for info_cls, enum_cls, extra in ops:
        info = info_cls(f"par_{uid}", "Build.", ["region"], **extra)
        info.labels("eu").info({"version": "2", "arch": "x86"})
        enum = enum_cls(f"par_state_{uid}", "State.", ["worker"], states=["a", "b", "c"], **extra)
        enum.labels("1").state("c")
        enum.labels("2")
        plain = enum_cls(f"par_plain_{uid}", "Plain.", states=["up", "down"], **extra)
        plain.state("down")
    expected = {
        k: v
        for k, v in parse_exposition(prometheus_client.generate_latest(registry).decode()).items()
        if uid in k[0]
    }
    ours = {
        k: v
        for k, v in parse_exposition(_native.render_process_metrics()).items()
        if k[0] in {n for n, _ in expected}
    }
    assert ours == expected
    assert len(expected) == 1 + 6 + 2
