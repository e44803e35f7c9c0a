"""test_threads_fork.py's worker. Prints JSON lines and waits for a line on stdin before it
exits (so that the test can look at its region files while it is alive).

`threads`: 8 threads record concurrently through `shmtel.prometheus` (counter incs on a cached
labelled child and on an unlabelled counter, histogram observations, `labels()` lookups).
`fork`: records, forks with os.fork(); the child records through the same objects (handles made
before the fork and new `labels()` children), the parent records more; both report their pid.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from shmtel.prometheus import Counter, Histogram

THREADS = 8
OPS = 10_000

ops = Counter("mt_ops", "Operations per thread.", ["thread"])
all_ops = Counter("mt_all_ops", "Operations, all threads.")
lookups = Counter("mt_lookups", "labels() on every call.", ["kind", "parity"])
values = Histogram("mt_values", "Observed values.", buckets=(1, 10, 100))


def record(label: str, n: int) -> None:
    child = ops.labels(label)
    for k in range(n):
        child.inc()
        all_ops.inc()
        values.observe(k % 150)
        lookups.labels("loop", "even" if k % 2 == 0 else "odd").inc()


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def threads() -> None:
    start = threading.Barrier(THREADS)
    recorded = threading.Barrier(THREADS + 1)
    done = threading.Event()

    def work(i: int) -> None:
        start.wait()
        record(f"t{i}", OPS)
        recorded.wait()
        done.wait()  # alive (and its ring in place) until the test has looked

    ts = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in ts:
        t.start()
    recorded.wait()
    say(pid=os.getpid(), threads=THREADS, ops=OPS, tids=sorted(t.native_id or 0 for t in ts))
    sys.stdin.readline()
    done.set()
    for t in ts:
        t.join()


def fork() -> None:
    record("parent-before", 3_000)
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        try:
            record("child", 5_000)
            record("parent-before", 1_000)  # the child handle made before the fork, in the child
            say(role="child", pid=os.getpid())
            os.read(go_r, 1)  # until the parent says so
        finally:
            os._exit(0)
    os.close(go_r)
    record("parent-after", 2_000)
    say(role="parent", pid=os.getpid(), child=pid)
    sys.stdin.readline()
    os.write(go_w, b"x")
    _, status = os.waitpid(pid, 0)
    say(role="parent", child_status=status)
    sys.exit(0 if status == 0 else 1)


{"threads": threads, "fork": fork}[sys.argv[1]]()
