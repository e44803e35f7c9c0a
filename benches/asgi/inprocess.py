"""The bench app (`app.py`) called in a loop in this process, without a server or a socket.

    .venv/bin/python benches/asgi/inprocess.py VARIANT [N]

Prints the CPU time per request (the best of 5 runs of N requests, after a warm-up): the cost of
the app and its instrumentation with warm caches, which `run.py` cannot separate from the
server's. For instructions per request, run it under callgrind at two values of N and divide the
difference of the totals by the difference of N (start-up cancels out):

    valgrind --tool=callgrind python benches/asgi/inprocess.py shmtel 1000 --once
    valgrind --tool=callgrind python benches/asgi/inprocess.py shmtel 3000 --once

`--once`: one run of N requests after a short warm-up (for callgrind). shmtel's records go to
`SHMTEL_DIR` (default: a temporary directory) with rings large enough that nothing is dropped
without a collector.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


def load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The request scope of the extension's PGO training run, which drives the same app in-process.
TRAIN = load("shmtel_pgo_train", HERE.parents[1] / "pybind" / "pgo" / "train.py")


def scope(i: int) -> dict[str, Any]:
    return TRAIN.scope(f"/users/{i % 100}", [])  # type: ignore[no-any-return]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # today's stack needs run.py's OTLP receiver (its exporter retries and drops without one).
    p.add_argument("variant", choices=("bare", "shmtel"))
    p.add_argument("n", type=int, nargs="?", default=20_000, help="requests per run (20000)")
    p.add_argument("--once", action="store_true", help="one run after a short warm-up")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench-asgi-inprocess.")
    os.environ["BENCH_VARIANT"] = args.variant
    os.environ.setdefault("BENCH_LOG_FILE", os.path.join(work, "app.log"))
    os.environ.setdefault("SHMTEL_DIR", os.path.join(work, "regions"))
    os.environ.setdefault("SHMTEL_RING_BYTES", str(64 << 20))
    app = load("bench_app", HERE / "app.py").app

    async def run(n: int) -> float:
        start = time.process_time()
        for i in range(n):
            await app(scope(i), receive, send)
        return (time.process_time() - start) / n * 1e6

    async def measure() -> float:
        await run(200 if args.once else 2_000)
        if args.once:
            return await run(args.n)
        return min([await run(args.n) for _ in range(5)])

    print(f"{args.variant}: {asyncio.run(measure()):.2f} µs of CPU per request (in-process)")


if __name__ == "__main__":
    main()
