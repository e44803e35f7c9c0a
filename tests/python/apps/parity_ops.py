"""One sequence of metric operations, run through prometheus_client and through
`shmtel.prometheus` (test_parity.py compares what each exposes). `prom` is either module;
`registry` is passed to every constructor (a CollectorRegistry for prometheus_client in-process,
None elsewhere).

Every family is named `parity_*`; the gauges in the default `all` (and `liveall`) mode, whose
prometheus_client exposition only exists in multiprocess mode (a `pid` label), are named
`parity_all_*` and made by `run_all_mode`.
"""

from __future__ import annotations

import contextlib
from typing import Any


def run(prom: Any, registry: Any) -> None:
    r = {"registry": registry}

    # Counters: plain, labelled (positional, keyword, non-str values), a name ending in _total,
    # namespace + subsystem + unit, count_exceptions.
    c = prom.Counter("parity_requests", "Requests handled.", **r)
    c.inc()
    c.inc(2.5)
    cl = prom.Counter("parity_http_total", "HTTP requests.", ["method", "path"], **r)
    cl.labels("GET", "/a").inc()
    cl.labels("GET", "/a").inc(3)
    cl.labels(method="POST", path="/b").inc()
    cl.labels("PUT", 7).inc(0.5)
    cu = prom.Counter(
        "transfer", "Bytes sent.", namespace="parity", subsystem="net", unit="bytes", **r
    )
    cu.inc(1024)
    ce = prom.Counter("parity_errors", "Exceptions counted.", **r)
    with contextlib.suppress(ValueError), ce.count_exceptions(ValueError):
        raise ValueError("counted")
    with contextlib.suppress(ValueError), ce.count_exceptions(KeyError):
        raise ValueError("a different type: not counted")

    @ce.count_exceptions(KeyError)
    def fails() -> None:
        raise KeyError("counted too")

    with contextlib.suppress(KeyError):
        fails()

    # Gauges in the modes whose exposition has no pid label.
    g = prom.Gauge("parity_temperature", "livesum.", multiprocess_mode="livesum", **r)
    g.inc(5)
    g.dec(2)
    g.set(7.5)
    g.inc()
    gmax = prom.Gauge("parity_peak", "max.", ["shard"], multiprocess_mode="max", **r)
    gmax.labels("a").set(3)
    gmax.labels("b").set(-1.5)
    gmin = prom.Gauge("parity_low", "min.", ["shard"], multiprocess_mode="min", **r)
    gmin.labels("x").set(4)
    gmin.labels("x").set(2)
    grec = prom.Gauge("parity_last", "mostrecent.", multiprocess_mode="mostrecent", **r)
    grec.set(1)
    grec.set(42)
    gsum = prom.Gauge("parity_pool", "sum.", multiprocess_mode="sum", **r)
    gsum.set(10)
    gsum.dec(4)
    gin = prom.Gauge("parity_inflight", "In progress.", multiprocess_mode="livesum", **r)
    with gin.track_inprogress():
        pass

    @gin.track_inprogress()
    def tracked() -> None:
        pass

    tracked()
    gmr = prom.Gauge("parity_live_max", "livemax.", multiprocess_mode="livemax", **r)
    gmr.set(11)
    gmr.set(6)

    # Histograms: custom buckets (with a trailing +Inf), the default buckets, observations on
    # bucket bounds.
    h = prom.Histogram(
        "parity_latency_seconds",
        "Latency.",
        ["route"],
        buckets=(0.1, 0.5, 1, 2.5, float("inf")),
        **r,
    )
    for v in (0.05, 0.1, 0.3, 0.5, 0.75, 2, 3, 10):
        h.labels("/x").observe(v)
    hd = prom.Histogram("parity_default_seconds", "Default buckets.", **r)
    for v in (0.001, 0.005, 0.02, 0.25, 2, 20):
        hd.observe(v)

    # Summaries (the collector adds quantiles; prometheus_client has none).
    s = prom.Summary("parity_size_bytes", "Sizes.", **r)
    for v in (1, 2, 3, 100):
        s.observe(v)
    sl = prom.Summary("parity_rpc_seconds", "RPC time.", ["op"], **r)
    sl.labels("get").observe(0.25)
    sl.labels("get").observe(0.5)

    # Info and Enum.
    i = prom.Info("parity_build", "Build information.", **r)
    i.info({"version": "1.2.3", "commit": "abc"})
    e = prom.Enum("parity_state", "State.", states=["starting", "running", "stopped"], **r)
    e.state("running")
    el = prom.Enum("parity_task_state", "Task state.", ["task"], states=["a", "b"], **r)
    el.labels("t1").state("b")


def run_untouched(prom: Any, registry: Any) -> None:
    """Series that exist but were never updated: prometheus_client exposes them at 0 (an
    unlabelled metric as soon as it is created, a labelled one once `labels()` made the child)."""
    r = {"registry": registry}
    prom.Counter("parity_untouched", "Never incremented.", **r)
    prom.Counter("parity_idle_jobs", "A child never incremented.", ["queue"], **r).labels("slow")
    prom.Gauge("parity_idle_level", "Never set.", multiprocess_mode="max", **r)
    prom.Histogram("parity_idle_seconds", "Never observed.", buckets=(1, 2), **r)
    hl = prom.Histogram(
        "parity_idle_route_seconds", "A child never observed.", ["route"], buckets=(1,), **r
    )
    hl.labels("/idle")
    prom.Summary("parity_idle_size", "Never observed.", **r)


def run_all_mode(prom: Any, registry: Any) -> None:
    r = {"registry": registry}
    ga = prom.Gauge("parity_all_workers", "all (the default).", **r)
    ga.set(3)
    ga.inc(2)
    gal = prom.Gauge("parity_all_queue_depth", "all, labelled.", ["queue"], **r)
    gal.labels("q1").set(5)
    gal.labels("q2").dec(1.5)
    gla = prom.Gauge("parity_all_live", "liveall.", multiprocess_mode="liveall", **r)
    gla.set(9)
