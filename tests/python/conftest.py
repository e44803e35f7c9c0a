"""Fixtures for the multi-process end-to-end tests: a throwaway region directory, a real
`shmtel collect` on a free loopback port (SIGTERMed at the end, must exit 0), and a process
starter whose finalizer stops everything a test started. The helpers live in e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import Collector, Procs, running_collector


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
    with running_collector(procs, sandbox) as c:
        yield c
