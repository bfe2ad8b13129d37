"""Throughput of pqueue.aio.AsyncQueue beside the threaded pqueue.Queue, in one run.

Each target puts N items (a ``bytes`` of 64 bytes, pickled), then gets and acknowledges N
items, in a fresh shared queue (the default, ``exclusive=False``) under one base directory, in
both durability modes; only the two phases are timed. The rates are the median of --repeat
rounds, each round running every target once. See benchmarks/README.md.

- ``Queue, 1 thread``: ``put``; then ``get`` + ``task_done``.
- ``Queue, 8 threads``: the same work split over 8 threads at once.
- ``AsyncQueue, 1 task``: ``await put``; then ``await get`` + ``await atask_done()``.
- ``AsyncQueue, 8 tasks``: the same work split over 8 tasks at once.
- ``AsyncQueue, 1 task, task_done``: as ``1 task``, acknowledging with the synchronous
  ``task_done()`` (its write on the loop's thread).

The ratios compare each AsyncQueue row with the Queue row of the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter
from typing import Any, Literal

import pqueue
from pqueue.aio import AsyncQueue

Durability = Literal["fsync", "flush"]
ITEM = b"x" * 64
CONCURRENCY = 8


@dataclass
class Row:
    target: str
    durability: Durability
    n: int
    put_per_s: float
    get_per_s: float
    put_ratio: float | None = None
    get_ratio: float | None = None


Phases = tuple[float, float]  # seconds: put phase, get + ack phase


def _split(n: int, k: int) -> list[int]:
    return [n // k + (i < n % k) for i in range(k)]


def _in_threads(k: int, n: int, work: Callable[[int], None]) -> float:
    threads = [threading.Thread(target=work, args=(share,)) for share in _split(n, k)]
    started = perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return perf_counter() - started


def run_threaded(path: Path, durability: Durability, n: int, k: int) -> Phases:
    q: pqueue.Queue[bytes] = pqueue.Queue(path, durability=durability)
    try:

        def put(count: int) -> None:
            for _ in range(count):
                q.put(ITEM)

        def get(count: int) -> None:
            for _ in range(count):
                q.get()
                q.task_done()

        return _in_threads(k, n, put), _in_threads(k, n, get)
    finally:
        q.close()


def run_async(path: Path, durability: Durability, n: int, k: int, sync_ack: bool) -> Phases:
    async def main() -> Phases:
        q: AsyncQueue[bytes] = AsyncQueue(path, durability=durability)
        try:

            async def put(count: int) -> None:
                for _ in range(count):
                    await q.put(ITEM)

            async def get(count: int) -> None:
                for _ in range(count):
                    await q.get()
                    if sync_ack:
                        q.task_done()
                    else:
                        await q.atask_done()

            async def timed(work: Callable[[int], Any]) -> float:
                started = perf_counter()
                await asyncio.gather(*(work(share) for share in _split(n, k)))
                return perf_counter() - started

            return await timed(put), await timed(get)
        finally:
            await q.aclose()

    return asyncio.run(main())


TARGETS: dict[str, Callable[[Path, Durability, int], Phases]] = {
    "Queue, 1 thread": lambda p, d, n: run_threaded(p, d, n, 1),
    f"Queue, {CONCURRENCY} threads": lambda p, d, n: run_threaded(p, d, n, CONCURRENCY),
    "AsyncQueue, 1 task": lambda p, d, n: run_async(p, d, n, 1, False),
    f"AsyncQueue, {CONCURRENCY} tasks": lambda p, d, n: run_async(p, d, n, CONCURRENCY, False),
    "AsyncQueue, 1 task, task_done": lambda p, d, n: run_async(p, d, n, 1, True),
}
BASELINE = {
    "AsyncQueue, 1 task": "Queue, 1 thread",
    f"AsyncQueue, {CONCURRENCY} tasks": f"Queue, {CONCURRENCY} threads",
    "AsyncQueue, 1 task, task_done": "Queue, 1 thread",
}


def measure(base: Path, n: dict[Durability, int], repeat: int) -> list[Row]:
    times: dict[tuple[str, Durability], list[Phases]] = {}
    for round_ in range(repeat):
        for durability in ("fsync", "flush"):
            for target, run in TARGETS.items():
                path = base / f"{round_}-{durability}-{len(times)}"
                measured = run(path, durability, n[durability])
                times.setdefault((target, durability), []).append(measured)
                shutil.rmtree(path, ignore_errors=True)
    rows = {}
    for (target, durability), phases in times.items():
        count = n[durability]
        rows[target, durability] = Row(
            target, durability, count,
            statistics.median(count / put for put, _ in phases),
            statistics.median(count / get for _, get in phases),
        )
    for (target, durability), row in rows.items():
        if target in BASELINE:
            base_row = rows[BASELINE[target], durability]
            row.put_ratio = row.put_per_s / base_row.put_per_s
            row.get_ratio = row.get_per_s / base_row.get_per_s
    return list(rows.values())


def _file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; "?" elsewhere)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount = fields[1]
                if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| target | durability | N | put/s | get + ack/s | put, of Queue | get + ack, of Queue |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        put_ratio = f"{row.put_ratio:.2f}x" if row.put_ratio is not None else ""
        get_ratio = f"{row.get_ratio:.2f}x" if row.get_ratio is not None else ""
        lines.append(
            f"| {row.target} | {row.durability} | {row.n:,} | {row.put_per_s:,.0f} "
            f"| {row.get_per_s:,.0f} | {put_ratio} | {get_ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--dir", type=Path,
        help="base directory, on the disk to measure (default: the system temp directory)",
    )
    parser.add_argument("--n", type=_positive, default=2000, help="items in fsync mode")
    parser.add_argument(
        "--n-flush", type=_positive, help="items in flush mode (default: 10 x --n)"
    )
    parser.add_argument("--repeat", type=_positive, default=3, help="rounds; the median is kept")
    parser.add_argument(
        "--quick", action="store_true",
        help="a quick check that everything works: --n 100 --n-flush 500 --repeat 1",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.n_flush, args.repeat = 100, 500, 1
    n: dict[Durability, int] = {"fsync": args.n, "flush": args.n_flush or 10 * args.n}
    base = Path(tempfile.mkdtemp(prefix="pqueue-bench-async-", dir=args.dir))
    try:
        fstype = _file_system(base)
        rows = measure(base, n, args.repeat)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    header = {
        "pqueue": pqueue.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "file_system": fstype,
        "directory": str(base.parent),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repeat": args.repeat,
    }
    print(
        f"pqueue {header['pqueue']}, Python {header['python']}, {header['platform']}, "
        f"{header['cpus']} CPUs, {fstype} at {header['directory']}, {header['date']}, "
        f"median of {args.repeat}; 64-byte items, shared queues"
    )
    print()
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({**header, "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
