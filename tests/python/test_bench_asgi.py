"""Smoke run of the end-to-end ASGI benchmark (`benches/asgi/run.py --smoke`): every variant under
uvicorn with 1 and with 4 workers, ~2 s of wrk each, and exactness only. The requests the workers
received equal what the metrics counted (the collector's `http_requests_total` for shmtel,
prometheus_client's multiprocess files for today_mp), the spans the OTLP receiver decoded (a server
and a child span per request) and the log lines written. Speed is never asserted here.

wrk is installed by the harness when missing (Debian's package), so this test does not skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
