"""A Starlette app under `uvicorn --workers 4` with `shmtel collect` beside it: the collector's
/metrics adds the workers' RED metrics up exactly, and a worker killed with SIGKILL keeps its
counts in the totals."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from e2e import (
    APPS,
    STARTUP_TIMEOUT,
    Collector,
    Proc,
    Procs,
    free_port,
    red_problems,
    region_files,
    region_pids,
    request_plan,
    send_requests,
    wait_until,
    worker_env,
)

WORKERS = 4


def start_uvicorn(procs: Procs, region_dir: Path) -> tuple[Proc, int, set[int]]:
    """uvicorn with 4 workers on a free port; returns (process, port, worker pids) once every
    worker has completed its startup."""
    port = free_port()
    proc = procs.start(
        "uvicorn",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "starlette_app:app",
            "--app-dir",
            APPS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--no-access-log",
            "--log-level",
            "info",
        ],
        env=worker_env(region_dir),
    )

    def ready() -> str | None:
        if not proc.alive():
            raise AssertionError(f"uvicorn exited with {proc.popen.returncode}\n{proc.describe()}")
        log = proc.log()
        started = log.count("Application startup complete.")
        if started < WORKERS:
            return f"{started} of {WORKERS} workers started\n{proc.describe()}"
        return None

    wait_until("uvicorn's workers to start", ready, timeout=STARTUP_TIMEOUT)
    pids = {int(p) for p in re.findall(r"Started server process \[(\d+)\]", proc.log())}
    assert len(pids) == WORKERS, f"worker pids {pids}\n{proc.describe()}"
    assert proc.pid not in pids
    return proc, port, pids


def test_uvicorn_workers_add_up_exactly_and_survive_sigkill(
    collector: Collector, procs: Procs, region_dir: Path
) -> None:
    uvicorn, port, worker_pids = start_uvicorn(procs, region_dir)
    base = f"http://127.0.0.1:{port}"

    # 1. N requests over every kind of route; the collector shows exactly N, per label set.
    plan = request_plan(40)
    assert len(plan) == 400
    send_requests(base, plan)
    collector.wait_metrics("the RED metrics of 400 requests", lambda m: red_problems(m, plan))

    # Only the workers wrote regions (the supervisor never imports the app), and the requests
    # were served by more than one of them.
    writers = region_pids(region_dir)
    assert writers <= worker_pids, (
        f"region files of pids {writers - worker_pids}, which are not uvicorn workers "
        f"{worker_pids}: {[f.path.name for f in region_files(region_dir)]}"
    )
    recording = {f.pid for f in region_files(region_dir) if f.kind == "ring"}
    names = [f.path.name for f in region_files(region_dir)]
    assert len(recording) >= 2, (
        f"only worker(s) {recording} recorded anything; expected the 400 requests to spread "
        f"over at least 2 of the {WORKERS} workers ({names})"
    )

    # No request is in progress any more (livesum over the live workers).
    m = collector.scrape()
    in_progress = m.series("http_requests_in_progress")
    assert in_progress, "http_requests_in_progress is absent from /metrics"
    assert all(s.value == 0 for s in in_progress), [str(s) for s in in_progress]

    # 2. SIGKILL one worker that recorded requests: what it recorded stays in the totals, also
    # once the collector has drained its rings to the end and removed its region files.
    victim = sorted(recording)[0]
    os.kill(victim, signal.SIGKILL)

    def victim_gone() -> str | None:
        left = [f.path.name for f in region_files(region_dir) if f.pid == victim]
        return f"region files of the killed worker {victim} still there: {left}" if left else None

    wait_until("the collector to clean up the killed worker's regions", victim_gone)
    m = collector.scrape()
    assert red_problems(m, plan) is None, red_problems(m, plan)

    # 3. More requests (served by the remaining workers and by any replacement uvicorn
    # starts): the totals are exact again.
    more = request_plan(10, first_id=1000)
    send_requests(base, more)
    everything = plan + more
    collector.wait_metrics(
        "the RED metrics of 500 requests, one worker killed",
        lambda m: red_problems(m, everything),
    )
    assert uvicorn.alive(), f"uvicorn exited\n{uvicorn.describe()}"
