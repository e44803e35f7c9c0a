"""Per-thread rings, exact totals from concurrent threads, exemplars, writer statistics."""

from __future__ import annotations

import asyncio
import threading

from pybind_helpers import Regions, sample

from shmtel import _native, start_span
from shmtel.prometheus import Counter, Gauge, Histogram


def test_each_thread_records_into_its_own_ring(regions: Regions, uid: str) -> None:
    counter = Counter(f"threads_{uid}", "T.", ["worker"])
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        child = counter.labels(str(i % 2))
        barrier.wait()
        for _ in range(10_000):
            child.inc()
        _native.info(f"thread done {uid}", worker=i)

    threads = [threading.Thread(target=work, args=(i,), name=f"worker-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sample(f"threads_{uid}_total", worker="0") == 20_000.0
    assert sample(f"threads_{uid}_total", worker="1") == 20_000.0
    logs = regions.logs(f"thread done {uid}")
    assert sorted(r["fields"]["worker"] for r in logs) == [0, 1, 2, 3]
    assert len({r["ring_tid"] for r in logs}) == 4


def test_async_track_inprogress(uid: str) -> None:
    gauge = Gauge(f"async_inprog_{uid}", "I.", multiprocess_mode="livesum")
    seen: list[float | None] = []

    @gauge.track_inprogress()
    async def handler() -> None:
        await asyncio.sleep(0.01)
        seen.append(sample(f"async_inprog_{uid}"))

    async def main() -> None:
        await asyncio.gather(handler(), handler(), handler())

    asyncio.run(main())
    assert max(v or 0.0 for v in seen) == 3.0
    assert sample(f"async_inprog_{uid}") == 0.0


def test_histogram_exemplar_from_current_span(regions: Regions, uid: str) -> None:
    histogram = Histogram(f"exemplar_{uid}", "E.")
    with start_span(f"exemplar_span_{uid}") as span:
        histogram.observe(0.5)
    histogram.observe(0.25)
    records = [r for r in regions.records("histogram") if r["name"] == f"exemplar_{uid}"]
    assert [r["value"] for r in records] == [0.5, 0.25]
    assert records[0].get("exemplar") == {"trace_id": span.trace_id, "span_id": span.span_id}
    assert "exemplar" not in records[1]


def test_writer_stats() -> None:
    stats = _native.writer_stats()
    assert isinstance(stats, dict) and stats
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in stats.items())
