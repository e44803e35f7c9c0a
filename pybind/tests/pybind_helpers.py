"""Helpers shared by the test modules (a unique module name: tests/python has a conftest too)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_exposition(text: str) -> Samples:
    """Samples of a Prometheus text exposition, keyed by (name, sorted labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(name: str, **labels: str) -> float | None:
    """One sample of this process's own view (``render_process_metrics``), or None."""
    from shmtel import _native

    return parse_exposition(_native.render_process_metrics()).get(
        (name, tuple(sorted(labels.items())))
    )


def families(text: str) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


class Regions:
    """What ``shmtel dump --json`` reads from the region directory."""

    def __init__(self, cli: Path, directory: Path) -> None:
        self.cli = cli
        self.directory = directory

    def dump(self) -> dict[str, Any]:
        out = subprocess.run(
            [str(self.cli), "dump", "--json", "--limit", "0", "--dir", str(self.directory)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    def records(self, kind: str | None = None, pid: int | None = None) -> list[dict[str, Any]]:
        """Every record of process ``pid`` (default: this one), optionally of one kind; each
        with ``ring_tid`` and ``ring_thread`` of the ring that holds it."""
        pid = os.getpid() if pid is None else pid
        found: list[dict[str, Any]] = []
        for process in self.dump()["processes"]:
            if process["pid"] != pid:
                continue
            for ring in process["rings"]:
                for record in ring["records"]:
                    if kind is None or record["kind"] == kind:
                        found.append(
                            {**record, "ring_tid": ring["tid"], "ring_thread": ring["thread"]}
                        )
        return found

    def spans(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records("span") if r["name"] == name]

    def span(self, name: str) -> dict[str, Any]:
        spans = self.spans(name)
        assert len(spans) == 1, f"expected one span {name!r}, found {spans}"
        return spans[0]

    def span_attrs(self, span_id: str) -> dict[str, Any]:
        return {r["key"]: r["value"] for r in self.records("span_attr") if r["span_id"] == span_id}

    def logs(self, message: str) -> list[dict[str, Any]]:
        return [r for r in self.records("log") if r["message"] == message]

    def log(self, message: str) -> dict[str, Any]:
        logs = self.logs(message)
        assert len(logs) == 1, f"expected one log {message!r}, found {logs}"
        return logs[0]


def configure_structlog(*extra: Any) -> None:
    """structlog through shmtel (``structlog_render`` last, ``StructlogLoggerFactory``), with
    ``extra`` processors before the render; loggers are not cached, so tests can reconfigure."""
    import structlog

    import shmtel

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *extra,
            shmtel.structlog_render,
        ],
        logger_factory=shmtel.StructlogLoggerFactory(),
        cache_logger_on_first_use=False,
    )
