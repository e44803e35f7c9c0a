"""gunicorn `--preload` with uvicorn workers (3) and `shmtel collect`: the app is imported in the
master before it forks, and every worker still gets regions of its own (no server hook), and
the collector's totals are exact."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from e2e import (
    APPS,
    STARTUP_TIMEOUT,
    Collector,
    Procs,
    free_port,
    red_problems,
    region_files,
    request_plan,
    send_requests,
    wait_until,
    worker_env,
)

WORKERS = 3


def test_gunicorn_preload_workers_get_own_regions_and_exact_counts(
    collector: Collector, procs: Procs, region_dir: Path
) -> None:
    port = free_port()
    gunicorn = procs.start(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-w",
            str(WORKERS),
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            APPS,
            "--no-control-socket",
            "--log-level",
            "info",
            "starlette_app:app",
        ],
        env=worker_env(region_dir),
    )

    def ready() -> str | None:
        if not gunicorn.alive():
            raise AssertionError(
                f"gunicorn exited with {gunicorn.popen.returncode}\n{gunicorn.describe()}"
            )
        started = gunicorn.log().count("Application startup complete.")
        if started < WORKERS:
            return f"{started} of {WORKERS} workers started\n{gunicorn.describe()}"
        return None

    wait_until("gunicorn's workers to start", ready, timeout=STARTUP_TIMEOUT)
    master = gunicorn.pid
    workers = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", gunicorn.log())}
    assert len(workers) == WORKERS and master not in workers, (workers, master)

    plan = request_plan(30)
    send_requests(f"http://127.0.0.1:{port}", plan)
    collector.wait_metrics("the RED metrics of 300 requests", lambda m: red_problems(m, plan))

    files = region_files(region_dir)
    names = [f.path.name for f in files]
    # Every region belongs to the master (which imported the app before forking) or a worker.
    strangers = {f.pid for f in files} - workers - {master}
    assert not strangers, f"region files of unknown pids {strangers}: {names}"
    # The requests were recorded by the workers, each into rings of its own. (The master may
    # have regions of its own from before the fork; the exact totals above show that nothing
    # was counted twice through them.)
    recording = {f.pid for f in files if f.kind == "ring"} - {master}
    assert len(recording) >= 2, f"only worker(s) {recording} recorded requests: {names}"
    for pid in recording:
        assert any(f.pid == pid and f.kind == "table" for f in files), (
            f"worker {pid} has rings but no series table of its own: {names}"
        )
    assert gunicorn.alive(), gunicorn.describe()
