"""Smoke run of the end-to-end ASGI benchmark (`benches/asgi/run.py --smoke`): every variant under
uvicorn with 1 and with 4 workers, ~2 s of wrk each, and exactness only. The requests the workers
received equal what the metrics counted (the collector's `http_requests_total` for shmtel,
prometheus_client's multiprocess files for today_mp), the spans the OTLP receiver decoded (a server
and a child span per request) and the log lines written. Speed is never asserted here; the
report's arithmetic is (pairing each run with bare's of the same slice, and shmtel's with bare_cid's,
grouping four-worker runs by how many workers wrk's connections landed on).

wrk is installed by the harness when missing (Debian's package), so this test does not skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from e2e import ROOT, shmtel_bin, tail

VARIANTS = ("bare", "today", "today_mp", "shmtel")
WORKERS = (1, 4)
# The checks each variant's run must report (bare has nothing to check but the tally).
CHECKS = {
    "bare": set(),
    "today": {"spans", "logs"},
    "today_mp": {"metrics", "spans", "logs"},
    "shmtel": {"metrics", "spans", "logs"},
}


def test_bench_asgi_smoke_runs_every_variant_exactly(tmp_path: Path) -> None:
    out = tmp_path / "bench-asgi-smoke.json"
    env = dict(os.environ, SHMTEL_BIN=str(shmtel_bin()))
    proc = subprocess.run(
        [sys.executable, ROOT / "benches" / "asgi" / "run.py", "--smoke", "--json", out],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    report = f"exit {proc.returncode}\n{tail(proc.stdout)}\n--- stderr ---\n{tail(proc.stderr)}"
    assert proc.returncode == 0, report
    runs = json.loads(out.read_text())["runs"]
    seen = {(r["variant"], r["workers"]) for r in runs}
    assert seen == {(v, w) for v in VARIANTS for w in WORKERS}, report
    for r in runs:
        where = f"{r['variant']} with {r['workers']} workers"
        assert r["problems"] == [], f"{where}: {r['problems']}\n{report}"
        assert set(r["checks"]) == CHECKS[r["variant"]], f"{where}: {r['checks']}"
        assert all(v == "ok" for v in r["checks"].values()), f"{where}: {r['checks']}"
        # The ground truth lies between wrk's completed and sent counts (run.py checks it too).
        sent = r["warmup_sent"] + r["sent"]
        assert r["completed"] <= r["served"] <= sent, where
        assert r["served"] > 0, where


def load_run_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_asgi_run", ROOT / "benches/asgi/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_result(
    run: Any, variant: str, slice_: int, rps: float, cpu: float, shares: list[float]
) -> Any:
    """One measured run of round 0 as run.py records it (workers: one per CPU share given)."""
    return run.RunResult(
        variant=variant,
        workers=len(shares),
        round=0,
        slice=slice_,
        rps=rps,
        p50_ms=1.0,
        p99_ms=2.0,
        completed=int(rps),
        sent=int(rps),
        warmup_sent=0,
        worker_cpu_us_per_req=cpu,
        collector_cpu_us_per_req=5.0 if variant == "shmtel" else None,
        scrapes=0,
        worker_cpu_shares=shares,
    )


def test_runs_pair_with_bare_of_the_same_slice_and_group_by_busy_workers() -> None:
    run = load_run_module()

    def result(variant: str, slice_: int, rps: float, cpu: float, shares: list[float]) -> Any:
        return run_result(run, variant, slice_, rps, cpu, shares)

    one = [1.0, 0.0, 0.0, 0.0]
    two = [0.5, 0.45, 0.05, 0.0]
    results = [
        # Slice 0: both on one busy worker; slice 1: bare on two, shmtel on one.
        result("bare", 0, 8000, 110, one),
        result("shmtel", 0, 7600, 120, one),
        result("bare", 1, 5000, 180, two),
        result("shmtel", 1, 7200, 125, one),
    ]
    assert [run.busy_workers(r) for r in results] == [1, 1, 2, 1]
    _, summary = run.summarize(results, [4])
    shmtel = summary["4"]["shmtel"]
    # Paired run by run (slice 0: 0.95, slice 1: 1.44): the median of the two.
    assert abs(shmtel["paired_vs_bare"] - (7600 / 8000 + 7200 / 5000) / 2) < 1e-9
    spread = summary["4_by_busy_workers"]
    assert set(spread) == {"1", "2"}
    assert spread["1"]["bare"]["runs"] == 1 and spread["1"]["shmtel"]["runs"] == 2
    # At the same number of busy workers: shmtel's median 7,400 req/s against bare's 8,000.
    assert abs(spread["1"]["shmtel"]["vs_bare"] - 7400 / 8000) < 1e-9
    assert spread["1"]["shmtel"]["added_cpu_us"] == 12.5
    assert "vs_bare" not in spread["2"].get("shmtel", {})
    # bare's own paired cells, and a group without bare's runs, print as "–", not "nan".
    text, _ = run.summarize(results, [4])
    assert "nan" not in text
    assert "| bare | 1 | 8,000 | 110 | 1.000x | +0.0 |" in text


def test_shmtel_pairs_with_bare_cid_of_the_same_slice() -> None:
    run = load_run_module()

    def result(variant: str, slice_: int, rps: float, cpu: float) -> Any:
        return run_result(run, variant, slice_, rps, cpu, [1.0])

    results = [
        result("bare", 0, 8000, 120),
        result("bare_cid", 0, 7600, 126),
        result("shmtel", 0, 7500, 128),
        result("bare", 1, 6000, 160),
        result("bare_cid", 1, 5800, 165),
        result("shmtel", 1, 5900, 163),
        # A slice without bare_cid's run: not paired with it.
        result("shmtel", 2, 1000, 500),
    ]
    text, summary = run.summarize(results, [1])
    shmtel = summary["1"]["shmtel"]
    assert shmtel["pairs_with_bare_cid"] == 2
    assert abs(shmtel["paired_vs_bare_cid"] - (7500 / 7600 + 5900 / 5800) / 2) < 1e-9
    assert abs(shmtel["paired_added_cpu_us_vs_bare_cid"] - (2 + -2) / 2) < 1e-9
    assert "paired_vs_bare_cid" not in summary["1"]["bare_cid"]
    assert "shmtel against bare_cid" in text and "(median of 2 pairs)" in text
