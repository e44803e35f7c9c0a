"""test_parity.py's worker: runs parity_ops through `shmtel.prometheus` (recorded into the
region directory that SHMTEL_DIR names), then the pid-labelled gauges through prometheus_client
in multiprocess mode (PROMETHEUS_MULTIPROC_DIR is set by the test), prints one JSON line
{"pid", "multiprocess": exposition, "process_view": shmtel's generate_latest()} and stays alive
(live gauge modes count only live processes) until a line arrives on stdin."""

from __future__ import annotations

import json
import os
import sys

import parity_ops

import shmtel.prometheus as shmtel_prometheus

parity_ops.run(shmtel_prometheus, None)
parity_ops.run_untouched(shmtel_prometheus, None)
parity_ops.run_all_mode(shmtel_prometheus, None)

import prometheus_client  # noqa: E402 (after the shmtel part: it reads PROMETHEUS_MULTIPROC_DIR)
from prometheus_client import multiprocess  # noqa: E402

assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "PROMETHEUS_MULTIPROC_DIR is not set"
parity_ops.run_all_mode(prometheus_client, None)
registry = prometheus_client.CollectorRegistry()
multiprocess.MultiProcessCollector(registry)
print(
    json.dumps(
        {
            "pid": os.getpid(),
            "multiprocess": prometheus_client.generate_latest(registry).decode(),
            "process_view": shmtel_prometheus.generate_latest().decode(),
        }
    ),
    flush=True,
)
sys.stdin.readline()
