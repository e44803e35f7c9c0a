"""A forked child (gunicorn --preload) records into regions of its own, with no hook."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pybind_helpers import Regions, sample

from shmtel import _native
from shmtel.prometheus import Counter

TABLE = re.compile(r"^(\d+)-(\d+)\.table$")


def _tables(directory: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for path in directory.iterdir():
        m = TABLE.match(path.name)
        if m:
            out.setdefault(int(m.group(1)), []).append(path.name)
    return out


def test_fork_child_gets_its_own_regions(region_dir: Path, regions: Regions, uid: str) -> None:
    counter = Counter(f"forked_{uid}", "F.", ["who"])
    counter.labels("parent").inc(5)
    _native.info(f"before fork {uid}")
    assert sample(f"forked_{uid}_total", who="parent") == 5.0
    assert os.getpid() in _tables(region_dir)

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            os.close(read_fd)
            view_before = sample(f"forked_{uid}_total", who="parent")
            counter.labels("child").inc(2)
            _native.info(f"in child {uid}", n=1)
            report = {
                "view_before": view_before,
                "child": sample(f"forked_{uid}_total", who="child"),
                "tables": [
                    p.name for p in region_dir.iterdir() if p.name.startswith(f"{os.getpid()}-")
                ],
            }
            os.write(write_fd, json.dumps(report).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = json.loads(pipe.read())
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0

    # the child's own view starts from zero (reset_process_view ran after fork)
    assert report["view_before"] in (None, 0.0)
    assert report["child"] == 2.0
    assert any(TABLE.match(name) for name in report["tables"]), report["tables"]
    assert pid in _tables(region_dir)

    # the child's records are in its own rings, the parent's in the parent's
    child_logs = [r for r in regions.records("log", pid=pid) if r["message"] == f"in child {uid}"]
    assert len(child_logs) == 1
    assert regions.logs(f"in child {uid}") == []
    child_counts = [
        r for r in regions.records("counter_add", pid=pid) if r["name"] == f"forked_{uid}"
    ]
    assert [(r["labels"], r["value"]) for r in child_counts] == [({"who": "child"}, 2)]

    # the parent's view is untouched by the child
    assert sample(f"forked_{uid}_total", who="parent") == 5.0
    assert sample(f"forked_{uid}_total", who="child") is None
