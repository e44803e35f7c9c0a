"""Shared fixtures: a private region directory, the process's own exposition, the dump CLI.

The writer's configuration is process-wide and fixed on first use, so the region directory and
service name are set in the environment here, before any test module imports ``shmtel``. Metric
families are process-wide too: tests use names made unique by the ``uid`` fixture.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib (pytest.ini), which puts no test folder on sys.path;
# the test modules import their shared helpers from here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybind_helpers import Regions  # noqa: E402

REGION_DIR = Path(tempfile.mkdtemp(prefix="shmtel-pybind-tests-"))
os.environ["SHMTEL_DIR"] = str(REGION_DIR)
os.environ["SHMTEL_SERVICE"] = "pybind-tests"

REPO = Path(__file__).resolve().parents[2]

_counter = itertools.count()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(REGION_DIR, ignore_errors=True)


@pytest.fixture
def uid() -> str:
    """A suffix that makes metric and span names unique within the test process."""
    return f"t{next(_counter)}_{os.getpid()}"


@pytest.fixture(scope="session")
def region_dir() -> Path:
    """Where the writer puts this process's regions (REGION_DIR unless something else set it)."""
    from shmtel import _native

    return Path(_native.region_dir())


@pytest.fixture(scope="session")
def shmtel_cli() -> Path:
    """The collector CLI, built once if the release binary is missing."""
    binary = REPO / "target" / "release" / "shmtel"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", "shmtel-collector"],
            cwd=REPO,
            check=True,
            timeout=900,
        )
    return binary


@pytest.fixture
def regions(shmtel_cli: Path, region_dir: Path) -> Iterator[Regions]:
    yield Regions(shmtel_cli, region_dir)


@pytest.fixture(autouse=True)
def _process_settings() -> Iterator[None]:
    """Each test starts from the same process-wide settings (they are global in the writer)."""
    from shmtel import _native

    _native.set_log_level(0)
    _native.set_include_caller(False)
    _native.set_correlation_fields(True, True)
    _native.set_sample_ratio(1.0)
    yield
