"""Drop-in parity: the same operations through prometheus_client and through `shmtel.prometheus`
give the same samples (name, labels, value) once the collector has merged them.

References: prometheus_client in this process (a fresh registry) for everything whose
exposition has no pid label; prometheus_client in multiprocess mode, in the worker process
itself, for the gauges in the `all`/`liveall` modes (a `pid` label, the worker's pid). Ignored:
`_created` samples (timestamps), the collector's self-metrics (`shmtel_*`; only `parity_*`
families are compared) and the collector's summary quantiles (prometheus_client has none; their
presence is checked separately).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from apps import parity_ops
from e2e import APPS, Collector, Metrics, Proc, Procs, Sample, worker_env

Key = tuple[str, tuple[tuple[str, str], ...]]


def comparable(m: Metrics, prefix: str) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for s in m.samples:
        if not s.name.startswith(prefix) or s.name.endswith("_created"):
            continue
        if "quantile" in s.label_dict:
            continue
        key = (s.name, s.labels)
        assert key not in out, f"sample {s} appears twice"
        out[key] = s.value
    return out


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def diff(got: dict[Key, float], want: dict[Key, float]) -> str | None:
    lines: list[str] = []
    for key in sorted(set(got) | set(want)):
        g, w = got.get(key), want.get(key)
        if g is None or w is None or not same(g, w):
            shown = str(Sample(key[0], key[1], 0.0)).rsplit(" ", 1)[0]
            lines.append(f"  {shown}: collector {g}, prometheus_client {w}")
    if not lines:
        return None
    return f"{len(lines)} sample(s) differ:\n" + "\n".join(lines)


def in_process_reference(ops: Callable[[Any, Any], None]) -> dict[Key, float]:
    """prometheus_client in this process, on a registry of its own."""
    registry = prometheus_client.CollectorRegistry()
    ops(prometheus_client, registry)
    return comparable(Metrics(prometheus_client.generate_latest(registry).decode()), "parity_")


@pytest.fixture
def parity_worker(
    procs: Procs, region_dir: Path, tmp_path: Path
) -> Iterator[tuple[Proc, dict[str, Any]]]:
    """parity_worker.py, alive until the test is done with it; yields (process, its report)."""
    mp_dir = tmp_path / "prometheus-multiproc"
    mp_dir.mkdir()
    worker = procs.python(
        "parity-worker",
        APPS / "parity_worker.py",
        env=worker_env(region_dir, PROMETHEUS_MULTIPROC_DIR=str(mp_dir)),
    )
    report = worker.read_json()
    assert report["pid"] == worker.pid
    yield worker, report
    worker.send("exit")
    assert worker.wait() == 0, worker.describe()


def test_shmtel_prometheus_exposes_what_prometheus_client_does(
    collector: Collector, parity_worker: tuple[Proc, dict[str, Any]]
) -> None:
    # The references.
    in_process = in_process_reference(parity_ops.run)
    assert not any(name.startswith("parity_all_") for name, _ in in_process)
    untouched = in_process_reference(parity_ops.run_untouched)
    _, report = parity_worker
    pid = report["pid"]
    assert isinstance(report["multiprocess"], str)
    multiprocess = comparable(Metrics(report["multiprocess"]), "parity_all_")
    assert multiprocess, report["multiprocess"]
    assert all(dict(labels).get("pid") == str(pid) for (_, labels) in multiprocess)

    expected = in_process | multiprocess

    def check(m: Metrics) -> str | None:
        got = comparable(m, "parity_")
        return diff({k: v for k, v in got.items() if k not in untouched}, expected)

    m = collector.wait_metrics("the collector's parity_* samples to match", check)

    # The collector's summaries also have quantiles (prometheus_client's have none): each
    # summary series has some, within the observed range (give or take the 1% relative error
    # of the collector's quantile sketch).
    for name, labels, low, high in (
        ("parity_size_bytes", {}, 1.0, 100.0),
        ("parity_rpc_seconds", {"op": "get"}, 0.25, 0.5),
    ):
        quantiles = [s for s in m.series(name, **labels) if "quantile" in s.label_dict]
        assert quantiles, f"no quantile samples for {name}{labels}:\n{m.lines(name)}"
        for s in quantiles:
            assert low * 0.99 <= s.value <= high * 1.01, f"{s} outside [{low}, {high}] ± 1%"


def test_series_never_updated_are_exposed_at_zero(
    collector: Collector, parity_worker: tuple[Proc, dict[str, Any]]
) -> None:
    """prometheus_client exposes an unlabelled metric from its creation and a labelled child
    from its `labels()` call, at 0 (buckets, count and sum for histograms and summaries): an
    error counter that never fired still shows 0, so rate() and alerts work from the start."""
    untouched = in_process_reference(parity_ops.run_untouched)
    assert len(untouched) >= 10, untouched

    def check(m: Metrics) -> str | None:
        got = comparable(m, "parity_")
        return diff({k: v for k, v in got.items() if k in untouched}, untouched)

    collector.wait_metrics("the never-updated series at 0", check, timeout=15)


def test_process_view_matches_prometheus_client(
    parity_worker: tuple[Proc, dict[str, Any]],
) -> None:
    """`shmtel.prometheus.generate_latest()` (the process's own view, no collector) has the
    same samples as prometheus_client in-process for the operations without a pid label."""
    in_process = in_process_reference(parity_ops.run) | in_process_reference(
        parity_ops.run_untouched
    )
    _, report = parity_worker
    assert isinstance(report["process_view"], str)
    view = comparable(Metrics(report["process_view"]), "parity_")
    view = {k: v for k, v in view.items() if not k[0].startswith("parity_all_")}
    problem = diff(view, in_process)
    assert problem is None, f"process view vs prometheus_client:\n{problem}\n{json.dumps(report)}"
