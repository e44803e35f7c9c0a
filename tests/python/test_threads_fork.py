"""Threads and fork: 8 Python threads recording concurrently give exact totals at the collector,
each thread in a ring of its own; a child made with os.fork() records into regions of its own
and the totals of parent and child add up exactly."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from pathlib import Path

from e2e import APPS, Collector, Metrics, Procs, region_files, ring_tids, worker_env

# Room for every record even if the collector were not draining at all (the test is about
# exactness under concurrency, not about a full ring).
RING_BYTES = str(8 << 20)
BUCKETS = ("1.0", "10.0", "100.0", "+Inf")


def expected_totals(runs: Sequence[tuple[str, int]]) -> dict[str, dict[tuple[str, ...], float]]:
    """What threads_worker.record(label, n) for each (label, n) adds up to, per family and
    label values."""
    ops: Tally[tuple[str, ...]] = Tally()
    lookups: Tally[tuple[str, ...]] = Tally()
    buckets: Tally[tuple[str, ...]] = Tally()
    total = 0
    value_sum = 0
    for label, n in runs:
        ops[(label,)] += n
        total += n
        for k in range(n):
            v = k % 150
            value_sum += v
            lookups[("loop", "even" if k % 2 == 0 else "odd")] += 1
            for le, bound in zip(BUCKETS, (1, 10, 100, float("inf")), strict=True):
                if v <= bound:
                    buckets[(le,)] += 1
    return {
        "mt_ops_total": {k: float(v) for k, v in ops.items()},
        "mt_all_ops_total": {(): float(total)},
        "mt_lookups_total": {k: float(v) for k, v in lookups.items()},
        "mt_values_bucket": {k: float(v) for k, v in buckets.items()},
        "mt_values_count": {(): float(total)},
        "mt_values_sum": {(): float(value_sum)},
    }


LABELS = {
    "mt_ops_total": ("thread",),
    "mt_all_ops_total": (),
    "mt_lookups_total": ("kind", "parity"),
    "mt_values_bucket": ("le",),
    "mt_values_count": (),
    "mt_values_sum": (),
}


def totals_problems(m: Metrics, want: dict[str, dict[tuple[str, ...], float]]) -> str | None:
    problems = []
    for name, series in want.items():
        got = m.by_labels(name, LABELS[name])
        if got != series:
            problems.append(
                f"{name}: /metrics {sorted(got.items())}, expected {sorted(series.items())}"
            )
    return "\n".join(problems) or None


def test_eight_threads_exact_totals(collector: Collector, procs: Procs, region_dir: Path) -> None:
    worker = procs.python(
        "threads-worker",
        APPS / "threads_worker.py",
        "threads",
        env=worker_env(region_dir, SHMTEL_RING_BYTES=RING_BYTES),
    )
    report = worker.read_json()
    pid, threads, ops = report["pid"], report["threads"], report["ops"]
    assert isinstance(threads, int) and isinstance(ops, int) and isinstance(pid, int)
    assert threads == 8
    want = expected_totals([(f"t{i}", ops) for i in range(threads)])
    collector.wait_metrics(
        f"the totals of {threads} threads x {ops} ops", lambda m: totals_problems(m, want)
    )
    # Each thread wrote into a ring of its own (ring files are named by the writer's tid).
    tids = report["tids"]
    assert isinstance(tids, list)
    rings = ring_tids(region_dir, pid)
    missing = set(tids) - rings
    assert not missing, (
        f"threads {missing} have no ring of their own; rings of pid {pid}: {sorted(rings)}"
    )
    worker.send("exit")
    assert worker.wait() == 0, worker.describe()


def test_forked_child_records_into_own_regions(
    collector: Collector, procs: Procs, region_dir: Path
) -> None:
    worker = procs.python(
        "fork-worker",
        APPS / "threads_worker.py",
        "fork",
        env=worker_env(region_dir, SHMTEL_RING_BYTES=RING_BYTES),
    )
    first, second = worker.read_json(), worker.read_json()
    by_role = {str(first["role"]): first, str(second["role"]): second}
    assert set(by_role) == {"parent", "child"}, (first, second)
    parent, child = by_role["parent"]["pid"], by_role["child"]["pid"]
    assert parent == worker.pid and by_role["parent"]["child"] == child and child != parent

    want = expected_totals(
        [
            ("parent-before", 3_000),
            ("child", 5_000),
            ("parent-before", 1_000),
            ("parent-after", 2_000),
        ]
    )
    collector.wait_metrics("the totals of parent and child", lambda m: totals_problems(m, want))

    # The child has a table and rings of its own (named by its pid), and so does the parent.
    files = region_files(region_dir)
    names = [f.path.name for f in files]
    for who, pid in (("child", child), ("parent", parent)):
        kinds = {f.kind for f in files if f.pid == pid}
        assert kinds == {"table", "ring"}, f"the {who} ({pid}) has {kinds or 'no'} regions: {names}"
    assert {f.pid for f in files} == {parent, child}, names

    worker.send("exit")
    done = worker.read_json()
    assert done.get("child_status") == 0, done
    assert worker.wait() == 0, worker.describe()
