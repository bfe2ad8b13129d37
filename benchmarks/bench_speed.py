"""pqueue's speed targets, measured side by side in one run and reported as ratios.

Every row is measured beside its reference in the same run (a raw disk loop, pqueue's own
one-thread rate, or an absolute rate for the batch rows), as the median of --repeat rounds,
each round running every row once in a fresh directory under one base directory. Then the
latency of each put and each get + task_done (p50, p99, max), in both durability modes.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any, Literal, TypeVar

import bench_processes  # its peers' ends and the SQLite settings they run with
import pqueue
from pqueue import bench

Durability = Literal["fsync", "flush"]
ITEM = os.urandom(bench.ITEM_SIZE)
THREADS = 8
BATCH = 100
MIB = 1 << 20
BIG_RECORD = MIB + 17  # a 1 MiB item in pqueue's 17-byte frame
ABSOLUTE_BATCH = 100_000.0  # items/s: the batch rows' target is absolute
NOT_BUILT = "n/a (not built)"
_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Sizes:
    """Items per row. ``--n`` is the fsync rows' N; every other row scales with it."""

    fsync: int  # one and 8 threads in fsync mode, the raw pwrite loops, the peers
    batch: int  # put_many / get_many
    flush: int  # flush mode and the os.write loop
    big: int  # 1 MiB items

    @classmethod
    def from_n(cls, n: int) -> Sizes:
        return cls(fsync=n, batch=10 * n, flush=25 * n, big=max(2, n // 10))


# --- the rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    name: str
    n: int
    unit: Literal["items/s", "MiB/s"] = "items/s"
    reference: str | None = None  # a row's key, or ABSOLUTE
    target: float | None = None  # the ratio to reach, at least
    fsync_note: str = ""  # for the peers: whether they fsync per operation


ABSOLUTE = "absolute"


def _has_batches() -> bool:
    return hasattr(pqueue.Queue, "put_many") and hasattr(pqueue.Queue, "get_many")


def rows(sizes: Sizes, notes: dict[str, str]) -> list[Row]:
    n, big = sizes.fsync, sizes.big
    return [
        Row("raw_pwrite", f"raw: pwrite+fdatasync, preallocated, {bench.RECORD_SIZE} B", n),
        Row("fsync_put", "pqueue fsync, 1 thread: put", n, reference="raw_pwrite", target=0.9),
        Row(
            "fsync_get",
            "pqueue fsync, 1 thread: get+task_done",
            n,
            reference="raw_pwrite",
            target=0.9,
        ),
        Row(
            "raw_pwrite_8t",
            f"raw: {THREADS} threads pwrite+fdatasync, one preallocated file (ceiling)",
            n,
            reference="raw_pwrite",
        ),
        Row(
            "fsync_put_8t",
            f"pqueue fsync, {THREADS} threads: put",
            n,
            reference="fsync_put",
            target=3.0,
        ),
        Row(
            "fsync_get_8t",
            f"pqueue fsync, {THREADS} threads: get+task_done",
            n,
            reference="fsync_get",
            target=2.0,
        ),
        Row(
            "batch_put",
            f"pqueue fsync, batches of {BATCH}: put_many",
            sizes.batch,
            reference=ABSOLUTE,
            target=1.0,
        ),
        Row(
            "batch_get",
            f"pqueue fsync, batches of {BATCH}: get_many+task_done(n)",
            sizes.batch,
            reference=ABSOLUTE,
            target=1.0,
        ),
        Row("raw_write", f"raw: os.write, appending, {bench.RECORD_SIZE} B", sizes.flush),
        Row(
            "flush_put",
            "pqueue flush, 1 thread: put",
            sizes.flush,
            reference="raw_write",
            target=0.3,
        ),
        Row(
            "flush_get",
            "pqueue flush, 1 thread: get+task_done",
            sizes.flush,
            reference="raw_write",
            target=0.2,
        ),
        Row("raw_big", "raw: pwrite+fdatasync, appending, 1 MiB+17 B", big, "MiB/s"),
        Row(
            "raw_big_prealloc",
            "raw: pwrite+fdatasync, preallocated, 1 MiB+17 B",
            big,
            "MiB/s",
            reference="raw_big",
        ),
        Row("big_put", "pqueue fsync, 1 MiB items: put", big, "MiB/s", "raw_big", 0.8),
        Row("big_get", "pqueue fsync, 1 MiB items: get+task_done", big, "MiB/s"),
        *(
            Row(f"{peer}_{phase}", f"{name}: {what}", n, reference="raw_pwrite",
                fsync_note=notes[peer])
            for peer, name, ack in PEERS
            for phase, what in (("put", "put"), ("get", f"get+{ack}"))
        ),
    ]


# The peers, durable ones where bench.py and bench_processes.py already run them.
PEERS = [
    ("persistqueue_file", "persist-queue Queue (file)", "task_done"),
    ("persistqueue_sqlite", "persist-queue SQLiteAckQueue", "ack"),
    ("litequeue", "litequeue LiteQueue", "done"),
]
PEER_MODULE = {
    "persistqueue_file": "persistqueue",
    "persistqueue_sqlite": "persistqueue",
    "litequeue": "litequeue",
}
# persist-queue 1.1.0's file Queue (persistqueue/queue.py): put writes and flushes the
# item, fsyncs the chunk only when it is full, and replaces the info file (a temp file
# renamed over it, never fsynced) on every put and task_done.
FILE_QUEUE_NOTE = (
    "no fsync per operation: the chunk is fsynced only when full (every 100 puts); the info "
    "file is renamed over on each put and task_done, never fsynced"
)


@dataclass(frozen=True)
class Latency:
    key: str
    name: str
    n: int
    p99_under_us: float | None = None
    max_under_us: float | None = None


def latencies(sizes: Sizes) -> list[Latency]:
    return [
        Latency("flush_put", "pqueue flush: put", sizes.flush, 1000.0, 5000.0),
        Latency("flush_get", "pqueue flush: get+task_done", sizes.flush, 1000.0, 5000.0),
        Latency("fsync_put", "pqueue fsync: put", sizes.fsync),
        Latency("fsync_get", "pqueue fsync: get+task_done", sizes.fsync),
    ]


# --- the runs: each makes one or more rows' timings, in a fresh directory ------------------


Seconds = dict[str, float]  # a row's key: the seconds of its measured phase


def _split(n: int, k: int) -> list[int]:
    return [n // k + (i < n % k) for i in range(k)]


def _in_threads(work: Callable[[int], None], shares: Sequence[int]) -> float:
    """Run ``work(share)`` in one thread per share, all let go at once by a barrier; the
    seconds from the barrier's release to the last join."""
    barrier = threading.Barrier(len(shares) + 1)
    errors: list[BaseException] = []

    def body(share: int) -> None:
        barrier.wait()
        try:
            work(share)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = perf_counter()
    for thread in threads:
        thread.join()
    seconds = perf_counter() - start
    if errors:
        raise errors[0]
    return seconds


def _check_empty(q: pqueue.Queue[bytes], got: object, item: bytes) -> None:
    if got != item:
        raise RuntimeError(f"the last item got is {got!r:.40}, not the item put")
    if q.qsize():
        raise RuntimeError(f"{q.qsize()} items left in the queue after the get phase")


def run_raw_pwrite(directory: Path, sizes: Sizes) -> Seconds:
    return {"raw_pwrite": bench._preallocated_loop(directory, sizes.fsync).put}


def run_raw_pwrite_threads(directory: Path, sizes: Sizes) -> Seconds:
    """8 threads, each pwrite + fdatasync of its own records (a slice of its own) into one
    preallocated file, through one descriptor."""
    n, size = sizes.fsync, bench.RECORD_SIZE
    record = os.urandom(size)
    fd = os.open(directory / "data", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, bytes(n * size))
        os.fsync(fd)
        shares = _split(n, THREADS)
        starts = [sum(shares[:i]) for i in range(THREADS)]
        pwrite = os.pwrite

        def work(index: int) -> None:
            first = starts[index] * size
            for offset in range(first, first + shares[index] * size, size):
                pwrite(fd, record, offset)
                _fdatasync(fd)

        seconds = _in_threads(work, range(THREADS))
    finally:
        os.close(fd)
    return {"raw_pwrite_8t": seconds}


def run_raw_write(directory: Path, sizes: Sizes) -> Seconds:
    return {"raw_write": bench._append_loop(False, directory, sizes.flush).put}


def _big_loop(directory: Path, n: int, preallocated: bool) -> float:
    record = os.urandom(BIG_RECORD)
    fd = os.open(directory / "data", os.O_RDWR | os.O_CREAT, 0o600)
    pwrite = os.pwrite
    try:
        if preallocated:
            zeros = bytes(BIG_RECORD)
            for _ in range(n):
                os.write(fd, zeros)
            os.fsync(fd)
        start = perf_counter()
        for offset in range(0, n * BIG_RECORD, BIG_RECORD):
            pwrite(fd, record, offset)
            _fdatasync(fd)
        seconds = perf_counter() - start
    finally:
        os.close(fd)
    return seconds


def run_raw_big(directory: Path, sizes: Sizes) -> Seconds:
    return {"raw_big": _big_loop(directory, sizes.big, preallocated=False)}


def run_raw_big_prealloc(directory: Path, sizes: Sizes) -> Seconds:
    return {"raw_big_prealloc": _big_loop(directory, sizes.big, preallocated=True)}


def _one_thread(
    directory: Path, durability: Durability, n: int, item: bytes, put_key: str, get_key: str
) -> Seconds:
    q = pqueue.Queue[bytes](directory / "q", durability=durability)
    put, get, task_done = q.put, q.get, q.task_done
    got: object = None
    try:
        start = perf_counter()
        for _ in range(n):
            put(item)
        put_seconds = perf_counter() - start
        start = perf_counter()
        for _ in range(n):
            got = get()
            task_done()
        get_seconds = perf_counter() - start
        _check_empty(q, got, item)
    finally:
        q.close()
    return {put_key: put_seconds, get_key: get_seconds}


def run_fsync(directory: Path, sizes: Sizes) -> Seconds:
    return _one_thread(directory, "fsync", sizes.fsync, ITEM, "fsync_put", "fsync_get")


def run_flush(directory: Path, sizes: Sizes) -> Seconds:
    return _one_thread(directory, "flush", sizes.flush, ITEM, "flush_put", "flush_get")


def run_big(directory: Path, sizes: Sizes) -> Seconds:
    return _one_thread(directory, "fsync", sizes.big, os.urandom(MIB), "big_put", "big_get")


def run_fsync_threads(directory: Path, sizes: Sizes) -> Seconds:
    """8 producers put N/8 each; then 8 consumers get + task_done until N are consumed."""
    n = sizes.fsync
    q = pqueue.Queue[bytes](directory / "q")
    claimed = 0
    claim = threading.Lock()
    last: list[object] = []

    def produce(share: int) -> None:
        put = q.put
        for _ in range(share):
            put(ITEM)

    def consume(_: int) -> None:
        nonlocal claimed
        get, task_done = q.get, q.task_done
        got: object = None
        while True:
            with claim:
                if claimed == n:
                    break
                claimed += 1
            got = get(timeout=60)
            task_done()
        last.append(got)

    try:
        put_seconds = _in_threads(produce, _split(n, THREADS))
        get_seconds = _in_threads(consume, range(THREADS))
        _check_empty(q, next((got for got in last if got is not None), ITEM), ITEM)
    finally:
        q.close()
    return {"fsync_put_8t": put_seconds, "fsync_get_8t": get_seconds}


def run_batches(directory: Path, sizes: Sizes) -> Seconds:
    """put_many of lists of 100 items; then get_many(100) + task_done(len(got)) until N."""
    n = sizes.batch
    q = pqueue.Queue[bytes](directory / "q")
    batched: Any = q  # put_many and get_many are new: called only where they exist
    put_many, get_many, task_done = batched.put_many, batched.get_many, batched.task_done
    batches = [[ITEM] * len(range(i, min(i + BATCH, n))) for i in range(0, n, BATCH)]
    got: list[bytes] = []
    try:
        start = perf_counter()
        for items in batches:
            put_many(items)
        put_seconds = perf_counter() - start
        count = 0
        start = perf_counter()
        while count < n:
            got = get_many(BATCH, timeout=60)
            task_done(len(got))
            count += len(got)
        get_seconds = perf_counter() - start
        if count != n:
            raise RuntimeError(f"get_many delivered {count} items, not the {n} put")
        _check_empty(q, got[-1] if got else None, ITEM)
    finally:
        q.close()
    return {"batch_put": put_seconds, "batch_get": get_seconds}


def _run_end(end: bench_processes.End, n: int, key: str) -> Seconds:
    got: object = None
    try:
        start = perf_counter()
        for _ in range(n):
            end.put(ITEM)
        put_seconds = perf_counter() - start
        start = perf_counter()
        for _ in range(n):
            taken = end.take(10.0)
            if taken is None:
                raise RuntimeError(f"{key}: an item put was not there to take")
            got, token = taken
            end.ack(token)
        get_seconds = perf_counter() - start
    finally:
        end.close()
    if got != ITEM:
        raise RuntimeError(f"{key}: the last item got is {got!r:.40}, not the item put")
    return {f"{key}_put": put_seconds, f"{key}_get": get_seconds}


def run_persistqueue_file(directory: Path, sizes: Sizes) -> Seconds:
    module = importlib.import_module("persistqueue")
    fifo: Any = bench._open_file_queue(module, directory)
    n, got = sizes.fsync, None
    try:
        start = perf_counter()
        for _ in range(n):
            fifo.put(ITEM)
        put_seconds = perf_counter() - start
        start = perf_counter()
        for _ in range(n):
            got = fifo.get()
            fifo.task_done()
        get_seconds = perf_counter() - start
    finally:
        fifo.close()
    if got != ITEM:
        raise RuntimeError(f"persist-queue Queue: the last item got is {got!r:.40}")
    return {"persistqueue_file_put": put_seconds, "persistqueue_file_get": get_seconds}


def run_persistqueue_sqlite(directory: Path, sizes: Sizes) -> Seconds:
    end = bench_processes._PersistQueueEnd(str(directory / "q"))
    return _run_end(end, sizes.fsync, "persistqueue_sqlite")


def run_litequeue(directory: Path, sizes: Sizes) -> Seconds:
    end = bench_processes._LiteQueueEnd(str(directory / "q.db"))
    return _run_end(end, sizes.fsync, "litequeue")


Samples = dict[str, list[int]]  # a latency row's key: nanoseconds of each operation


def _latency_run(directory: Path, durability: Durability, n: int) -> Samples:
    q = pqueue.Queue[bytes](directory / "q", durability=durability)
    put, get, task_done, now = q.put, q.get, q.task_done, perf_counter_ns
    puts, gets = [0] * n, [0] * n
    got: object = None
    try:
        for i in range(n):
            start = now()
            put(ITEM)
            puts[i] = now() - start
        for i in range(n):
            start = now()
            got = get()
            task_done()
            gets[i] = now() - start
        _check_empty(q, got, ITEM)
    finally:
        q.close()
    return {f"{durability}_put": puts, f"{durability}_get": gets}


@dataclass(frozen=True)
class Run:
    key: str
    makes: tuple[str, ...]  # the rows (or latency rows) whose timings it makes
    run: Callable[[Path, Sizes], Seconds] | None = None
    latency: Callable[[Path, Sizes], Samples] | None = None
    unavailable: str | None = None  # why it does not run: not built, not installed


def _installed(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def runs() -> list[Run]:
    """Every run of one round, in order: each reference beside what it is compared with."""
    batches = None if _has_batches() else NOT_BUILT

    def peer(key: str, run: Callable[[Path, Sizes], Seconds]) -> Run:
        module = PEER_MODULE[key]
        missing = None if _installed(module) else f"SKIPPED: not installed ({_install(module)})"
        return Run(key, (f"{key}_put", f"{key}_get"), run, unavailable=missing)

    def latency(durability: Durability) -> Callable[[Path, Sizes], Samples]:
        def run(directory: Path, sizes: Sizes) -> Samples:
            n = sizes.flush if durability == "flush" else sizes.fsync
            return _latency_run(directory, durability, n)

        return run

    return [
        Run("raw_pwrite", ("raw_pwrite",), run_raw_pwrite),
        Run("fsync", ("fsync_put", "fsync_get"), run_fsync),
        Run("raw_pwrite_8t", ("raw_pwrite_8t",), run_raw_pwrite_threads),
        Run("fsync_8t", ("fsync_put_8t", "fsync_get_8t"), run_fsync_threads),
        Run("batches", ("batch_put", "batch_get"), run_batches, unavailable=batches),
        Run("raw_write", ("raw_write",), run_raw_write),
        Run("flush", ("flush_put", "flush_get"), run_flush),
        Run("raw_big", ("raw_big",), run_raw_big),
        Run("raw_big_prealloc", ("raw_big_prealloc",), run_raw_big_prealloc),
        Run("big", ("big_put", "big_get"), run_big),
        Run("latency_flush", ("flush_put", "flush_get"), latency=latency("flush")),
        Run("latency_fsync", ("fsync_put", "fsync_get"), latency=latency("fsync")),
        peer("persistqueue_file", run_persistqueue_file),
        peer("persistqueue_sqlite", run_persistqueue_sqlite),
        peer("litequeue", run_litequeue),
    ]


def _install(module: str) -> str:
    return bench_processes.INSTALL.get(module, f"pip install {module}")


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Measured:
    seconds: dict[str, list[float]] = field(default_factory=dict)  # per round
    samples: dict[str, list[int]] = field(default_factory=dict)  # pooled over the rounds
    unavailable: dict[str, str] = field(default_factory=dict)  # a row's key: why not


def _in_fresh_directory(base: Path, work: Callable[[Path, Sizes], _T], sizes: Sizes) -> _T:
    directory = Path(tempfile.mkdtemp(dir=base))
    try:
        os.sync()  # what earlier runs left dirty is written back before this one is timed
        return work(directory, sizes)
    finally:
        shutil.rmtree(directory)


def measure(all_runs: Sequence[Run], sizes: Sizes, base: Path, repeat: int) -> Measured:
    """Run every run ``repeat`` times, round by round (each round runs every run once), so
    that drift of the machine hits every row alike."""
    measured = Measured()
    for run in all_runs:
        if run.unavailable is not None and run.run is not None:
            measured.unavailable.update(dict.fromkeys(run.makes, run.unavailable))
    for round_number in range(1, repeat + 1):
        for run in all_runs:
            if run.unavailable is not None:
                continue
            print(f"round {round_number}/{repeat}: {run.key} ...", file=sys.stderr, flush=True)
            if run.run is not None:
                timed = _in_fresh_directory(base, run.run, sizes)
                for key, seconds in timed.items():
                    measured.seconds.setdefault(key, []).append(seconds)
            if run.latency is not None:
                got = _in_fresh_directory(base, run.latency, sizes)
                for key, samples in got.items():
                    measured.samples.setdefault(key, []).extend(samples)
    return measured


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowResult:
    row: Row
    rates: list[float]  # per round, in the row's unit
    unavailable: str | None

    @property
    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def spread(self) -> float | None:
        """(max - min) / median of the rounds' rates."""
        if len(self.rates) < 2 or not self.rate:
            return None
        return (max(self.rates) - min(self.rates)) / self.rate


@dataclass(frozen=True)
class Report:
    header: dict[str, object]
    rows: dict[str, RowResult]
    latency: list[tuple[Latency, dict[str, float] | None]]

    def ratio(self, key: str) -> float | None:
        result = self.rows[key]
        reference, rate = result.row.reference, result.rate
        if reference is None or rate is None:
            return None
        if reference == ABSOLUTE:
            return rate / ABSOLUTE_BATCH
        base = self.rows[reference].rate
        return None if base is None or not base else rate / base

    def reference_name(self, key: str) -> str:
        reference = self.rows[key].row.reference
        if reference is None:
            return "-"
        if reference == ABSOLUTE:
            return f"{ABSOLUTE_BATCH:,.0f} items/s"
        return self.rows[reference].row.name

    def status(self, key: str) -> str:
        result = self.rows[key]
        if result.unavailable is not None:
            return result.unavailable
        target, ratio = result.row.target, self.ratio(key)
        if target is None:
            return "-"
        if ratio is None:
            return "n/a (its reference did not run)"
        return "met" if ratio >= target else "not met"


def _percentile(ordered: Sequence[int], fraction: float) -> int:
    """Nearest rank: the smallest sample with at least ``fraction`` of them at or below."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _stats(samples: list[int]) -> dict[str, float] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return {
        "samples": len(ordered),
        "p50_us": _percentile(ordered, 0.50) / 1000,
        "p99_us": _percentile(ordered, 0.99) / 1000,
        "max_us": ordered[-1] / 1000,
    }


def report(
    header: dict[str, object], all_rows: Sequence[Row], all_latencies: Sequence[Latency],
    measured: Measured,
) -> Report:
    results = {}
    for row in all_rows:
        rates = [row.n / seconds for seconds in measured.seconds.get(row.key, [])]
        results[row.key] = RowResult(row, rates, measured.unavailable.get(row.key))
    stats = [(lat, _stats(measured.samples.get(lat.key, []))) for lat in all_latencies]
    return Report(header, results, stats)


def _rate_cell(result: RowResult) -> str:
    if result.unavailable is not None:
        return result.unavailable
    rate = result.rate
    if rate is None:
        return "-"
    unit = result.row.unit
    return f"{rate:,.1f} {unit}" if unit == "MiB/s" else f"{rate:,.0f} {unit}"


def _times(ratio: float | None, target: float | None) -> str:
    """The ratio, with a third decimal where two would round a miss up to its target."""
    if ratio is None:
        return "-"
    text = f"{ratio:.2f}x"
    if target is not None and ratio < target and text == f"{target:.2f}x":
        text = f"{ratio:.3f}x"
    return text


def table(rep: Report) -> list[str]:
    lines = [
        "| row | N | rate | spread | reference | ratio | target | |",
        "|---|--:|--:|--:|---|--:|--:|---|",
    ]
    for key, result in rep.rows.items():
        ratio, target, spread = rep.ratio(key), result.row.target, result.spread
        lines.append(
            "| "
            + " | ".join([
                result.row.name,
                f"{result.row.n:,}",
                _rate_cell(result),
                "-" if spread is None else f"{spread:.0%}",
                rep.reference_name(key),
                _times(ratio, target),
                "-" if target is None else f">= {target:.2f}x",
                rep.status(key),
            ])
            + " |"
        )
    return lines


def _latency_status(lat: Latency, stats: dict[str, float] | None) -> str:
    if lat.p99_under_us is None and lat.max_under_us is None:
        return "-"
    if stats is None:
        return "n/a"
    met = []
    if lat.p99_under_us is not None:
        met.append(("p99", stats["p99_us"] < lat.p99_under_us))
    if lat.max_under_us is not None:
        met.append(("max", stats["max_us"] < lat.max_under_us))
    if all(ok for _, ok in met):
        return "met"
    return "not met (" + ", ".join(name for name, ok in met if not ok) + ")"


def _latency_target(lat: Latency) -> str:
    parts = []
    if lat.p99_under_us is not None:
        parts.append(f"p99 < {lat.p99_under_us:,.0f}")
    if lat.max_under_us is not None:
        parts.append(f"max < {lat.max_under_us:,.0f}")
    return ", ".join(parts) or "-"


def latency_table(rep: Report) -> list[str]:
    lines = [
        "| operation | samples | p50 µs | p99 µs | max µs | target µs | |",
        "|---|--:|--:|--:|--:|---|---|",
    ]
    for lat, stats in rep.latency:
        cells = (
            ["-"] * 4
            if stats is None
            else [f"{stats['samples']:,.0f}"]
            + [f"{stats[name]:,.1f}" for name in ("p50_us", "p99_us", "max_us")]
        )
        lines.append(
            "| " + " | ".join([lat.name, *cells, _latency_target(lat),
                               _latency_status(lat, stats)]) + " |"
        )
    return lines


# Not targets: ratios that say where a row stands against another ceiling.
ALSO = [
    ("pqueue fsync 8 threads put, of the raw 8-thread ceiling", "fsync_put_8t", "raw_pwrite_8t"),
    ("pqueue fsync 8 threads get+task_done, of the raw 8-thread ceiling", "fsync_get_8t",
     "raw_pwrite_8t"),
    ("pqueue fsync 1 MiB put, of the preallocated 1 MiB loop", "big_put", "raw_big_prealloc"),
    ("pqueue fsync batches put_many, of the raw pwrite+fdatasync loop (items/s)", "batch_put",
     "raw_pwrite"),
]


def also(rep: Report) -> dict[str, float | None]:
    shares = {}
    for text, key, base in ALSO:
        rate, base_rate = rep.rows[key].rate, rep.rows[base].rate
        shares[text] = None if rate is None or not base_rate else rate / base_rate
    return shares


def to_json(rep: Report) -> dict[str, object]:
    return {
        **rep.header,
        "rows": [
            {
                "row": key,
                "name": r.row.name,
                "n": r.row.n,
                "unit": r.row.unit,
                "rate": r.rate,
                "rates_per_round": r.rates,
                "spread": r.spread,
                "reference": r.row.reference,
                "reference_name": rep.reference_name(key),
                "ratio": rep.ratio(key),
                "target": r.row.target,
                "status": rep.status(key),
                "unavailable": r.unavailable,
                "fsync_note": r.row.fsync_note or None,
            }
            for key, r in rep.rows.items()
        ],
        "latency": [
            {
                "operation": lat.key,
                "name": lat.name,
                "n_per_round": lat.n,
                **(stats or {"samples": 0, "p50_us": None, "p99_us": None, "max_us": None}),
                "p99_under_us": lat.p99_under_us,
                "max_under_us": lat.max_under_us,
                "status": _latency_status(lat, stats),
            }
            for lat, stats in rep.latency
        ],
        "also": also(rep),
    }


def write_chart(path: Path, rep: Report) -> None:
    """One horizontal bar chart: each targeted row's ratio, with its target marked."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise SystemExit("--chart needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    shown = [
        (r.row.name, rep.ratio(key), r.row.target)
        for key, r in rep.rows.items()
        if r.row.target is not None
    ]
    shown.reverse()  # the first row on top
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.8))
    y = list(range(len(shown)))
    ratios = [ratio or 0.0 for _, ratio, _ in shown]
    colors = [
        "lightgray" if ratio is None else "tab:green" if ratio >= (target or 0) else "tab:red"
        for _, ratio, target in shown
    ]
    ax.barh(y, ratios, height=0.6, color=colors)
    ax.scatter([target for *_, target in shown], y, marker="|", s=400, color="black",
               label="target", zorder=3)
    for i, (_, ratio, _) in enumerate(shown):
        ax.text(ratio or 0.0, i, " n/a (not built)" if ratio is None else f" {ratio:.2f}x",
                va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels([name for name, *_ in shown], fontsize=8)
    ax.set_xlabel("ratio to the row's reference (batch rows: to 100,000 items/s)")
    h = rep.header
    ax.set_title(
        f"pqueue {h['pqueue']} (src {h['src_commit']}), Python {h['python']}, "
        f"{h['cpus']} CPUs, {h['file_system']}, {h['date']}", fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the command line -------------------------------------------------------------------------


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _default_base() -> Path:
    """The current directory: a benchmark of the disk belongs on the disk, and the system
    temp directory is often a tmpfs."""
    return Path.cwd()


QUICK = {"n": 500, "repeat": 3}
FULL = {"n": 2000, "repeat": 3}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path,
        help="where the base directory is made, on the disk to measure (the current directory)",
    )
    parser.add_argument(
        "--n", type=bench._positive,
        help=f"N of the fsync rows ({FULL['n']}; --quick: {QUICK['n']}); the other rows "
        "scale with it: batches 10 N, flush 25 N, 1 MiB items N / 10",
    )
    parser.add_argument(
        "--repeat", type=bench._positive,
        help=f"rounds; the median rate is kept ({FULL['repeat']}; --quick: {QUICK['repeat']})",
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"--n {QUICK['n']} --repeat {QUICK['repeat']} (under a minute)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write everything here")
    parser.add_argument("--chart", type=Path, metavar="FILE",
                        help="also draw the ratios and targets as a PNG (needs matplotlib)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    n: int = args.n or defaults["n"]
    repeat: int = args.repeat or defaults["repeat"]
    sizes = Sizes.from_n(n)

    # The pqueue measured: where it was imported from, and the last commit of that source
    # (None outside a git checkout), with the files changed since.
    package = Path(pqueue.__file__).resolve().parent
    src_commit = _git(package, "log", "-1", "--format=%h", "--", ".")
    src_changed = _git(package, "status", "--porcelain", "--", ".")
    base = Path(tempfile.mkdtemp(prefix="pqueue-bench-speed-", dir=args.dir or _default_base()))
    started = perf_counter()
    try:
        fstype = bench._file_system(base)
        notes = {"persistqueue_file": FILE_QUEUE_NOTE}
        for key, kind in (("persistqueue_sqlite", "persistqueue"), ("litequeue", "litequeue")):
            notes[key] = (
                bench_processes._sqlite_settings(bench_processes.KINDS[kind], base)
                if _installed(kind)
                else "not installed"
            )
        all_rows, all_latencies = rows(sizes, notes), latencies(sizes)
        measured = measure(runs(), sizes, base, repeat)
    finally:
        shutil.rmtree(base)
    header: dict[str, object] = {
        "pqueue": pqueue.__version__,
        "pqueue_path": str(package),
        "src_commit": src_commit,
        "src_uncommitted": src_changed.splitlines() if src_changed else [],
        "put_many_built": _has_batches(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "file_system": fstype,
        "directory": str(base.parent),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repeat": repeat,
        "sizes": {"fsync": sizes.fsync, "batch": sizes.batch, "flush": sizes.flush,
                  "big": sizes.big},
        "seconds": round(perf_counter() - started, 1),
    }
    rep = report(header, all_rows, all_latencies, measured)
    where = f"{fstype} at {base.parent}" if fstype else str(base.parent)
    dirty = " (with uncommitted changes)" if header["src_uncommitted"] else ""
    print(
        f"pqueue {header['pqueue']} from {package}, last commit {src_commit}{dirty}, "
        f"Python {header['python']}, "
        f"{header['platform']}, {header['cpus']} CPUs, {where}, {header['date']}; "
        f"median of {repeat} round(s), {header['seconds']} s"
    )
    if fstype in ("tmpfs", "ramfs"):
        print(f"\nWARNING: {base.parent} is on {fstype}, not a disk: pass --dir on the disk.")
    print()
    print("\n".join(table(rep)))
    print()
    print("## Latency, one thread (each operation timed alone, all rounds pooled)")
    print()
    print("\n".join(latency_table(rep)))
    print()
    print("## Also (not targets)")
    print()
    for text, share in also(rep).items():
        print(f"- {text}: " + ("n/a" if share is None else f"{share:.2f}x"))
    print()
    print("## Whether the peers fsync per operation")
    print()
    for peer, name, _ in PEERS:
        print(f"- {name}: {notes[peer]}")
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(rep), indent=2) + "\n")
    if args.chart is not None:
        write_chart(args.chart, rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
