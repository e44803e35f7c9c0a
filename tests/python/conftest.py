"""Fixtures for the multi-process end-to-end tests: a throwaway region directory, a real
`shmtel collect` on a free loopback port (SIGTERMed at the end, must exit 0), and a process
starter whose finalizer stops everything a test started. The helpers live in e2e.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import STARTUP_TIMEOUT, Collector, Procs, free_port, http_get, shmtel_bin, tail


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is an end-to-end test."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A temporary directory with `regions/` (mode 0700) for the writers and the collector."""
    (tmp_path / "regions").mkdir(mode=0o700)
    (tmp_path / "logs").mkdir()
    return tmp_path


@pytest.fixture
def region_dir(sandbox: Path) -> Path:
    return sandbox / "regions"


@pytest.fixture
def procs(sandbox: Path) -> Iterator[Procs]:
    p = Procs(sandbox / "logs")
    try:
        yield p
    finally:
        p.stop_all()


@pytest.fixture
def collector(sandbox: Path, procs: Procs) -> Iterator[Collector]:
    """`shmtel collect` on a free 127.0.0.1 port draining `sandbox/regions`; healthy when
    yielded; SIGTERMed at the end, when it must exit 0."""
    exe = shmtel_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHMTEL_")}
    last_log = ""
    for attempt in range(3):
        port = free_port()
        proc = procs.start(
            f"collector-{attempt}",
            [
                exe,
                "collect",
                "--dir",
                sandbox / "regions",
                "--listen",
                f"127.0.0.1:{port}",
                "--state-file",
                sandbox / "collector-state.json",
            ],
            env=env,
        )
        c = Collector(proc, port, sandbox / "regions")
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while proc.alive() and time.monotonic() < deadline:
            try:
                status, body = http_get(c.url("/healthz"), timeout=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                break
            time.sleep(0.05)
        else:
            last_log = proc.log()
            proc.stop()
            if "in use" in last_log:
                continue  # someone took the port between our probe and its bind
            pytest.fail(f"shmtel collect did not become healthy:\n{tail(last_log)}")
        yield c
        status_code = proc.stop(signal.SIGTERM)
        assert status_code == 0, (
            f"the collector exited with {status_code} after SIGTERM\n{proc.describe()}"
        )
        return
    pytest.fail(f"shmtel collect could not bind a port in 3 attempts:\n{tail(last_log)}")
