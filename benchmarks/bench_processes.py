"""pqueue shared by several processes, beside persist-queue and litequeue, in one run.

Four measurements, each in fresh directories under one base directory: a drain by K consumer
processes while one producer process puts (K = 1 and K = 3); the same for persist-queue's
SQLiteAckQueue and litequeue; the wake-up latency of a consumer process blocked in get(); and
the single-process hot path of Queue(path) beside Queue(path, exclusive=True). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Literal, Protocol

import pqueue
from pqueue.bench import ITEM_SIZE, Fifo, _file_system, _positive, _run_once, _run_queue
from pqueue.io import OsFileSystem

Durability = Literal["fsync", "flush"]
MODES: tuple[Durability, ...] = ("fsync", "flush")
KS = (1, 3)  # consumer processes
STOP = b"stop"  # one per consumer, put after the N items: never counted
POLL = 0.001  # seconds between two tries of a peer that cannot wait across processes
IDLE = 10.0  # the timeout of each get_delivery() of a consumer
ROOT = Path(__file__).resolve().parent.parent
INSTALL = {
    "persistqueue": f"pip install -r {ROOT}/benchmarks/requirements.txt",
    "litequeue": "pip install litequeue",
}
_now = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for every process of the machine


# --- the ends: one process's handle on a queue ------------------------------------------------


class End(Protocol):
    """What a producer or a consumer process calls on its queue."""

    def put(self, item: bytes) -> None: ...
    def take(self, timeout: float) -> tuple[bytes, Any] | None: ...  # None: timed out
    def ack(self, token: Any) -> None: ...
    def left(self) -> int: ...  # items neither acknowledged nor done
    def close(self) -> None: ...


class _PQueueEnd:
    """pqueue, shared (the default): get_delivery(timeout=...) + Delivery.ack()."""

    def __init__(self, path: str, durability: Durability) -> None:
        self._q = pqueue.Queue[bytes](path, durability=durability)

    def put(self, item: bytes) -> None:
        self._q.put(item)

    def take(self, timeout: float) -> tuple[bytes, Any] | None:
        try:
            delivery = self._q.get_delivery(timeout=timeout)
        except pqueue.Empty:
            return None
        return delivery.item, delivery

    def ack(self, token: Any) -> None:
        token.ack()

    def left(self) -> int:
        return self._q.qsize()

    def close(self) -> None:
        self._q.close()


class _PersistQueueEnd:
    """persist-queue's SQLiteAckQueue(multithreading=True): get + ack(item).

    Its blocking get() waits on a threading.Event set by put() in the same process (every 10
    s at most it looks again), so a consumer in another process polls get(block=False)."""

    def __init__(self, path: str) -> None:
        persistqueue: Any = importlib.import_module("persistqueue")  # optional: not typed

        self._empty = persistqueue.Empty
        self._q = persistqueue.SQLiteAckQueue(path, multithreading=True)

    def put(self, item: bytes) -> None:
        self._q.put(item)

    def take(self, timeout: float) -> tuple[bytes, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._q.get(block=False)
            except self._empty:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(POLL)
            else:
                return item, item

    def ack(self, token: Any) -> None:
        self._q.ack(token)

    def left(self) -> int:
        return int(self._q._count() + self._q.unack_count())

    def close(self) -> None:
        self._q.close()


class _LiteQueueEnd:
    """litequeue's LiteQueue: pop() + done(message_id); pop() never waits, so consumers poll."""

    def __init__(self, path: str) -> None:
        import litequeue  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: PLC0415

        self._q: Any = litequeue.LiteQueue(path)

    def put(self, item: bytes) -> None:
        self._q.put(item)  # stored as a BLOB

    def take(self, timeout: float) -> tuple[bytes, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            message = self._q.pop()
            if message is not None:
                return message.data, message.message_id
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL)

    def ack(self, token: Any) -> None:
        self._q.done(token)

    def left(self) -> int:
        return int(self._q.qsize())

    def close(self) -> None:
        self._q.close()


class _BareEnd:
    """The disk work of a durable shared queue and nothing else: a baseline, not a queue.

    Under an ``flock`` on ``lock``: a counters file (items put, taken, acknowledged) and a
    ``pwrite`` of the item into its slot of a preallocated ``log`` (or of a 25-byte record
    into a preallocated ``acks``); then, with the lock let go, one ``fdatasync`` per put
    and per ack, as pqueue's fsync mode makes. Consumers poll every 0.1 ms when no item
    waits. What pqueue would reach if its Python cost nothing."""

    SLOT = 128
    SLOTS = 1 << 17  # a ring of 16 MiB: the run's items fit
    ACK = 32
    _COUNTS = struct.Struct("<3Q")

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        sizes = {"lock": 0, "counts": self._COUNTS.size, "log": self.SLOT * self.SLOTS,
                 "acks": self.ACK * self.SLOTS}
        self._fds = {}
        for name, size in sizes.items():
            fd = os.open(os.path.join(path, name), os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(fd).st_size < size:
                os.pwrite(fd, bytes(size), 0)
                os.fsync(fd)
            self._fds[name] = fd
        self._lock, self._counts = self._fds["lock"], self._fds["counts"]
        self._log, self._acks = self._fds["log"], self._fds["acks"]

    def _read(self) -> tuple[int, int, int]:
        put, taken, acked = self._COUNTS.unpack(os.pread(self._counts, self._COUNTS.size, 0))
        return put, taken, acked

    def put(self, item: bytes) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            put, taken, acked = self._read()
            record = len(item).to_bytes(4, "little") + item
            os.pwrite(self._log, record, put % self.SLOTS * self.SLOT)
            os.pwrite(self._counts, self._COUNTS.pack(put + 1, taken, acked), 0)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        os.fdatasync(self._log)

    def take(self, timeout: float) -> tuple[bytes, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            try:
                put, taken, acked = self._read()
                if taken < put:
                    slot = os.pread(self._log, self.SLOT, taken % self.SLOTS * self.SLOT)
                    os.pwrite(self._counts, self._COUNTS.pack(put, taken + 1, acked), 0)
                    return slot[4 : 4 + int.from_bytes(slot[:4], "little")], taken
            finally:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.0001)

    def ack(self, token: Any) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            put, taken, acked = self._read()
            os.pwrite(self._acks, int(token).to_bytes(8, "little") * 3 + b"\xa5",
                      acked % self.SLOTS * self.ACK)
            os.pwrite(self._counts, self._COUNTS.pack(put, taken, acked + 1), 0)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        os.fdatasync(self._acks)

    def left(self) -> int:
        put, _, acked = self._read()
        return put - acked

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


@dataclass(frozen=True)
class Kind:
    key: str
    name: str
    open: Callable[[str], End]
    module: str | None = None  # the peer's import name: None for pqueue
    n_flush: bool = False  # whether it takes --n-flush items (not --n)

    def path(self, directory: Path) -> str:
        return str(directory / ("q.db" if self.key == "litequeue" else "q"))


KINDS = {
    kind.key: kind
    for kind in (
        Kind("fsync", 'pqueue, durability="fsync"', partial(_PQueueEnd, durability="fsync")),
        Kind(
            "flush",
            'pqueue, durability="flush"',
            partial(_PQueueEnd, durability="flush"),
            n_flush=True,
        ),
        Kind(
            "persistqueue",
            "persist-queue SQLiteAckQueue, multithreading=True",
            _PersistQueueEnd,
            "persistqueue",
        ),
        Kind("litequeue", "litequeue LiteQueue", _LiteQueueEnd, "litequeue"),
        Kind("bare", "the disk work alone (no queue)", _BareEnd),
    )
}


def _installed(kind: Kind) -> bool:
    if kind.module is None:
        return True
    try:
        __import__(kind.module)
    except ImportError:
        return False
    return True


# --- the processes ----------------------------------------------------------------------------


def _report(results: Any, *message: object) -> None:
    results.put(message)


def _consumer(
    kind_key: str, path: str, role: str, go: Event, results: Any, idle: float
) -> None:
    """Take and acknowledge items until a STOP; report the sequence numbers got, the time
    the first get returned and the time the last acknowledgement returned."""
    try:
        end = KINDS[kind_key].open(path)
    except BaseException:
        _report(results, "error", role, traceback.format_exc())
        return
    try:
        _report(results, "ready", role, None)
        go.wait()
        seqs = array("Q")
        first = last = 0
        empties = 0
        stopped = False
        take, ack, append = end.take, end.ack, seqs.append
        while True:
            taken = take(idle)
            if taken is None:
                empties += 1
                continue
            if not first:
                first = _now()
            item, token = taken
            if item == STOP:
                ack(token)
                stopped = True
                break
            append(int.from_bytes(item[:8], "little"))
            ack(token)
            last = _now()
        payload = {
            "first": first, "last": last, "seqs": seqs.tobytes(), "empties": empties,
            "stopped": stopped,
        }
        _report(results, "done", role, payload)
    except BaseException:
        _report(results, "error", role, traceback.format_exc())
    finally:
        end.close()


def _producer(
    kind_key: str, path: str, role: str, n: int, stops: int, go: Event, results: Any
) -> None:
    """Put N items of 64 bytes (a sequence number and random bytes) as fast as it can, then
    one STOP per consumer; report the times of the first put's start and the Nth put's end."""
    try:
        end = KINDS[kind_key].open(path)
    except BaseException:
        _report(results, "error", role, traceback.format_exc())
        return
    try:
        _report(results, "ready", role, None)
        pad = os.urandom(ITEM_SIZE - 8)
        put = end.put
        go.wait()
        first = _now()
        for seq in range(n):
            put(seq.to_bytes(8, "little") + pad)
        last = _now()
        for _ in range(stops):
            put(STOP)
        _report(results, "done", role, {"first": first, "last": last})
    except BaseException:
        _report(results, "error", role, traceback.format_exc())
    finally:
        end.close()


class _Gather:
    """The messages of a run's processes, by role: which are ready, done, failed."""

    def __init__(self, results: Any, deadline: float) -> None:
        self.results = results
        self.deadline = deadline
        self.stage: dict[str, str] = {}
        self.payload: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def until(self, roles: Sequence[str], stage: str) -> bool:
        """Wait until every role reached ``stage``; False at the deadline or on an error."""
        while not all(self.stage.get(role) == stage for role in roles):
            if self.errors:
                return False
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                what, role, payload = self.results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            self.stage[role] = what
            if what == "error":
                self.errors[role] = payload
            else:
                self.payload[role] = payload
        return True


# --- 1 and 2: the drain by K consumer processes -------------------------------------------------


@dataclass
class Drain:
    kind: str
    k: int
    prefilled: bool
    n: int
    rate: float | None = None  # distinct items acknowledged per second, first get to last ack
    put_rate: float | None = None  # the producer's, first put to Nth put
    lag_ms: float | None = None  # last ack after the producer's Nth put
    per_consumer: list[int] = field(default_factory=list)
    duplicates: int = 0  # items delivered and acknowledged more than once
    lost: int = 0  # items put and never delivered
    left: int | None = None  # items left in the queue after the run, by the queue's count
    problems: list[str] = field(default_factory=list)


def _drain_once(kind: Kind, k: int, n: int, prefilled: bool, base: Path, limit: float) -> Drain:
    run = Drain(kind.key, k, prefilled, n)
    directory = Path(tempfile.mkdtemp(dir=base))
    path = kind.path(directory)
    ctx = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = []
    try:
        kind.open(path).close()  # made here: the processes only open it
        results = ctx.Queue()
        go_producer, go_consumers = ctx.Event(), ctx.Event()
        consumers = [f"consumer {i + 1}" for i in range(k)]
        for role in consumers:
            processes.append(
                ctx.Process(
                    target=_consumer,
                    args=(kind.key, path, role, go_consumers, results, IDLE),
                    name=role,
                )
            )
        processes.append(
            ctx.Process(
                target=_producer,
                args=(kind.key, path, "producer", n, k, go_producer, results),
                name="producer",
            )
        )
        for process in processes:
            process.start()
        gather = _Gather(results, time.monotonic() + limit)
        roles = [*consumers, "producer"]
        ok = gather.until(roles, "ready")
        if ok and prefilled:
            go_producer.set()
            ok = gather.until(["producer"], "done")
            go_consumers.set()
        elif ok:
            go_consumers.set()
            go_producer.set()
        ok = ok and gather.until(roles, "done")
        for role, text in gather.errors.items():
            run.problems.append(f"{role} failed: {text.strip().splitlines()[-1]}")
            print(f"{kind.name}, K={k}: {role} failed:\n{text}", file=sys.stderr)
        if not ok and not gather.errors:
            stuck = [role for role in roles if gather.stage.get(role) != "done"]
            run.problems.append(
                f"not done after {limit:.0f} s: {', '.join(stuck)} "
                f"(stages: {gather.stage})"
            )
        if ok:
            _tally(run, gather, consumers)
    finally:
        go_clean = True
        for process in processes:
            process.join(timeout=10.0)
            if process.is_alive():
                go_clean = False
                process.terminate()
                process.join(timeout=10.0)
        if go_clean and not run.problems:
            try:
                end = kind.open(path)
                try:
                    run.left = end.left()
                finally:
                    end.close()
            except Exception as exc:
                run.problems.append(f"reopening after the run failed: {exc!r}")
            if run.left:
                run.problems.append(f"{run.left} item(s) left in the queue after the run")
        shutil.rmtree(directory, ignore_errors=True)
    return run


def _tally(run: Drain, gather: _Gather, consumers: Sequence[str]) -> None:
    got = [gather.payload[role] for role in consumers]
    produced = gather.payload["producer"]
    seen: array[int] = array("Q")
    for payload in got:
        seqs = array("Q")
        seqs.frombytes(payload["seqs"])
        run.per_consumer.append(len(seqs))
        seen.extend(seqs)
        if payload["empties"]:
            run.problems.append(
                f"a consumer's get timed out ({IDLE:.0f} s) {payload['empties']} time(s)"
            )
    distinct = set(seen)
    run.duplicates = len(seen) - len(distinct)
    run.lost = run.n - len(distinct & set(range(run.n)))
    if run.duplicates:
        run.problems.append(f"{run.duplicates} item(s) delivered and acknowledged twice or more")
    if run.lost:
        run.problems.append(f"{run.lost} item(s) put and never delivered")
    active = [payload for payload in got if payload["last"]]
    if active:
        start = min(payload["first"] for payload in active)
        stop = max(payload["last"] for payload in active)
        run.rate = len(distinct) / ((stop - start) / 1e9) if stop > start else None
        run.lag_ms = (stop - produced["last"]) / 1e6
    run.put_rate = run.n / ((produced["last"] - produced["first"]) / 1e9)


@dataclass(frozen=True)
class DrainRow:
    kind: Kind
    prefilled: bool
    n: int
    runs: dict[int, list[Drain]]  # by K

    def rate(self, k: int) -> float | None:
        rates = [run.rate for run in self.runs.get(k, []) if run.rate is not None]
        return statistics.median(rates) if rates else None

    def put_rate(self, k: int) -> float | None:
        rates = [run.put_rate for run in self.runs.get(k, []) if run.put_rate is not None]
        return statistics.median(rates) if rates else None

    def ratio(self) -> float | None:
        one, three = self.rate(KS[0]), self.rate(KS[-1])
        return None if one is None or three is None else three / one

    def problems(self) -> list[str]:
        return [
            f"K={run.k}: {problem}"
            for k in KS
            for run in self.runs.get(k, [])
            for problem in run.problems
        ]


def measure_drains(
    kinds: Sequence[Kind], n: int, n_flush: int, base: Path, repeat: int, limit: float
) -> list[DrainRow]:
    """Each round runs every kind, workload and K once, so that the ratio K=3 / K=1 compares
    runs made close together; the median of the rounds is reported."""
    rows = [
        DrainRow(kind, prefilled, n_flush if kind.n_flush else n, {k: [] for k in KS})
        for kind in kinds
        for prefilled in (False, True)
    ]
    for round_number in range(1, repeat + 1):
        for row in rows:
            for k in KS:
                workload = "prefilled" if row.prefilled else "live"
                print(
                    f"round {round_number}/{repeat}: drain, {row.kind.name}, {workload}, K={k} ...",
                    file=sys.stderr,
                    flush=True,
                )
                row.runs[k].append(_drain_once(row.kind, k, row.n, row.prefilled, base, limit))
    return rows


# --- 3: the wake-up latency -------------------------------------------------------------------

_STAMP = struct.Struct("<QQ")  # sequence number, time.monotonic_ns() before the put


def _latency_consumer(path: str, durability: Durability, results: Any) -> None:
    """Block in get() (no timeout), note when it returned, task_done(), report; until STOP."""
    try:
        q = pqueue.Queue[bytes](path, durability=durability)
    except BaseException:
        _report(results, "error", "consumer", traceback.format_exc())
        return
    try:
        _report(results, "ready", "consumer", None)
        while True:
            item = q.get()
            received = _now()
            q.task_done()
            if item == STOP:
                break
            seq, sent = _STAMP.unpack_from(item)
            _report(results, "got", "consumer", (seq, sent, received))
        _report(results, "done", "consumer", None)
    except BaseException:
        _report(results, "error", "consumer", traceback.format_exc())
    finally:
        q.close()


def _pipe_consumer(conn: Any, results: Any) -> None:
    """The baseline: block in recv_bytes() of a multiprocessing Pipe; report as above."""
    try:
        _report(results, "ready", "consumer", None)
        while True:
            item = conn.recv_bytes()
            received = _now()
            if item == STOP:
                break
            seq, sent = _STAMP.unpack_from(item)
            _report(results, "got", "consumer", (seq, sent, received))
        _report(results, "done", "consumer", None)
    except BaseException:
        _report(results, "error", "consumer", traceback.format_exc())


@dataclass
class Latency:
    key: str  # "fsync", "flush" or "pipe"
    name: str
    wake_us: list[float] = field(default_factory=list)  # put() called -> get() returned
    put_us: list[float] = field(default_factory=list)  # put() called -> put() returned
    problems: list[str] = field(default_factory=list)


LATENCIES = [
    ("fsync", 'pqueue, durability="fsync"'),
    ("flush", 'pqueue, durability="flush"'),
    ("pipe", "baseline: multiprocessing Pipe, send_bytes / recv_bytes"),
]


def _latency_once(m: int, base: Path, limit: float, rng: random.Random, into: Latency) -> None:
    """M times: sleep 2-10 ms (random), put one item carrying time.monotonic_ns(), wait for
    the consumer process to report when its get() returned."""
    directory = Path(tempfile.mkdtemp(dir=base))
    path = str(directory / "q")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    q: pqueue.Queue[bytes] | None = None
    if into.key == "pipe":
        mine, theirs = ctx.Pipe()
        put: Callable[[bytes], object] = mine.send_bytes
        process = ctx.Process(target=_pipe_consumer, args=(theirs, results))
    else:
        durability: Durability = "fsync" if into.key == "fsync" else "flush"
        q = pqueue.Queue[bytes](path, durability=durability)
        put = q.put
        process = ctx.Process(target=_latency_consumer, args=(path, durability, results))
    try:
        process.start()
        gather = _Gather(results, time.monotonic() + limit)
        if not gather.until(["consumer"], "ready"):
            into.problems.append(f"the consumer did not start: {gather.errors or gather.stage}")
            return
        pad = os.urandom(ITEM_SIZE - _STAMP.size)
        for seq in range(m):
            time.sleep(rng.uniform(0.002, 0.010))
            sent = _now()
            put(_STAMP.pack(seq, sent) + pad)
            returned = _now()
            late = False
            while True:
                try:
                    what, _role, payload = results.get(timeout=5.0)
                except queue.Empty:
                    if not late:
                        into.problems.append(
                            f"item {seq}: the consumer blocked in get() had not got it 5 s after "
                            f"the put (the put took {(returned - sent) / 1e3:.0f} µs)"
                        )
                        late = True
                    if time.monotonic() > gather.deadline:
                        into.problems.append(f"item {seq}: never got; run abandoned")
                        return
                    continue
                break
            if what != "got":
                into.problems.append(f"the consumer stopped: {what}: {payload}")
                return
            got_seq, got_sent, received = payload
            if (got_seq, got_sent) != (seq, sent):
                into.problems.append(f"item {seq}: the consumer got item {got_seq}")
                return
            into.wake_us.append((received - sent) / 1e3)
            into.put_us.append((returned - sent) / 1e3)
        put(STOP)
        if not gather.until(["consumer"], "done"):
            into.problems.append(f"the consumer did not end: {gather.errors or gather.stage}")
    finally:
        process.join(timeout=10.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=10.0)
        if q is not None:
            q.close()
        shutil.rmtree(directory, ignore_errors=True)


def measure_latency(m: int, base: Path, repeat: int, limit: float) -> list[Latency]:
    rng = random.Random(20250)
    latencies = [Latency(key, name) for key, name in LATENCIES]
    for round_number in range(1, repeat + 1):
        for latency in latencies:
            print(
                f"round {round_number}/{repeat}: wake-up latency, {latency.name}, M={m} ...",
                file=sys.stderr,
                flush=True,
            )
            _latency_once(m, base, limit, rng, latency)
    return latencies


def measure_watch(base: Path, count: int = 50) -> dict[str, object]:
    """What one ``FileSystem.watch()`` costs pqueue: a shared queue's get() that waits makes
    one, and closes it when it wakes, before it takes the item. Timed: making it, and closing
    it after the watched file changed once."""
    directory = Path(tempfile.mkdtemp(dir=base))
    fs = OsFileSystem()
    path = str(directory / "watched")
    Path(path).write_bytes(b"")
    made, closed = [], []
    kind = ""
    try:
        for _ in range(count):
            start = time.perf_counter()
            watch = fs.watch(path)
            middle = time.perf_counter()
            kind = type(watch).__name__
            with open(path, "ab") as file:
                file.write(b"x")
            watch.wait(1.0)
            before = time.perf_counter()
            watch.close()
            closed.append((time.perf_counter() - before) * 1e6)
            made.append((middle - start) * 1e6)
    finally:
        fs.close()
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "watch": kind,
        "samples": count,
        "make_us_median": statistics.median(made),
        "close_us_median": statistics.median(closed),
        "close_us_p99": _percentile(closed, 0.99),
    }


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- 4: one process, shared beside exclusive ---------------------------------------------------

PHASES = (("put", "put"), ("get", "get + task_done"), ("interleaved", "interleaved"))
BUDGET = {"fsync": 0.90, "flush": 0.75}  # the project's: shared costs at most 10% / 25%


def _open_hot(durability: Durability, exclusive: bool, directory: Path) -> Fifo:
    return pqueue.Queue[bytes](directory / "q", durability=durability, exclusive=exclusive)


def measure_hot(
    n: int, n_flush: int, base: Path, repeat: int
) -> dict[tuple[Durability, bool], dict[str, float]]:
    """bench.py's three phases in one process, for Queue(path) and Queue(path,
    exclusive=True), one after the other in each round; the median rates by phase."""
    configs = [(mode, exclusive) for mode in MODES for exclusive in (False, True)]
    runs: dict[tuple[Durability, bool], list[dict[str, float]]] = {c: [] for c in configs}
    for round_number in range(1, repeat + 1):
        for mode, exclusive in configs:
            count = n if mode == "fsync" else n_flush
            print(
                f"round {round_number}/{repeat}: one process, {mode}, "
                f"{'exclusive' if exclusive else 'shared'}, N={count} ...",
                file=sys.stderr,
                flush=True,
            )
            run = partial(_run_queue, partial(_open_hot, mode, exclusive))
            phases = _run_once(run, count, base)
            assert phases.get is not None and phases.interleaved is not None
            runs[(mode, exclusive)].append(
                {
                    "put": count / phases.put,
                    "get": count / phases.get,
                    "interleaved": count / phases.interleaved,
                }
            )
    return {
        config: {phase: statistics.median(run[phase] for run in done) for phase, _ in PHASES}
        for config, done in runs.items()
    }


# --- the peers' SQLite settings ----------------------------------------------------------------

_SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _sqlite_settings(kind: Kind, base: Path) -> str:
    """The journal mode and synchronous setting a peer's connection has by default, asked
    of the connection itself; and what that means for a commit."""
    directory = Path(tempfile.mkdtemp(dir=base))
    try:
        end = kind.open(kind.path(directory))
        try:
            peer: Any = getattr(end, "_q")  # noqa: B009 - End does not declare it
            conn: sqlite3.Connection = (
                peer._putter if isinstance(end, _PersistQueueEnd) else peer.conn
            )
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            end.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    name = _SYNCHRONOUS.get(sync, str(sync))
    setter = (
        "SQLite's default; persist-queue sets none"
        if kind.key == "persistqueue"
        else "set by LiteQueue()"
    )
    if journal.lower() == "wal":
        effect = (
            "the WAL is fdatasynced at every commit (each put, get and ack is one)"
            if sync >= 2
            else "no fsync at commit, only at WAL checkpoints: not durable per operation"
            if sync == 1
            else "never fsyncs"
        )
    else:
        effect = "fsync per commit" if sync >= 1 else "never fsyncs"
    return f"journal_mode={journal}, synchronous={name} ({setter}): {effect}"


# --- the report ------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


DRAIN_COLUMNS = [
    "target", "workload", "N", "K=1 items/s", "K=3 items/s", "K=3 / K=1",
    "producer put/s, K=1 / K=3", "items per consumer, K=3", "last ack after last put, K=3",
    "durability",
]


def _drain_table(rows: Sequence[DrainRow], durability: dict[str, str]) -> list[str]:
    lines = [
        "| " + " | ".join(DRAIN_COLUMNS) + " |",
        "|---|---|--:|--:|--:|--:|--:|---|--:|---|",
    ]
    for row in rows:
        kind = row.kind
        if not _installed(kind):
            cells = [
                kind.name, "live" if not row.prefilled else "prefilled", str(row.n),
                f"SKIPPED: not installed (`{INSTALL[kind.key]}`)",
            ]
            cells += [""] * (len(DRAIN_COLUMNS) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        last = row.runs[KS[-1]]
        shares = "/".join(str(count) for count in last[-1].per_consumer) if last else "-"
        lags = [run.lag_ms for run in last if run.lag_ms is not None]
        cells = [
            kind.name,
            "prefilled" if row.prefilled else "live",
            str(row.n),
            _rate(row.rate(1)),
            _rate(row.rate(3)),
            _times(row.ratio()),
            f"{_rate(row.put_rate(1))} / {_rate(row.put_rate(3))}",
            shares,
            "-" if not lags or row.prefilled else f"{statistics.median(lags):,.0f} ms",
            durability[kind.key],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _latency_table(latencies: Sequence[Latency]) -> list[str]:
    lines = [
        "| target | samples | put -> get returned, median | p99 | put call, median | p99 |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for latency in latencies:
        if not latency.wake_us:
            lines.append(f"| {latency.name} | 0 | - | - | - | - |")
            continue
        wake, put = latency.wake_us, latency.put_us
        lines.append(
            f"| {latency.name} | {len(wake)} "
            f"| {statistics.median(wake):,.0f} µs | {_percentile(wake, 0.99):,.0f} µs "
            f"| {statistics.median(put):,.0f} µs | {_percentile(put, 0.99):,.0f} µs |"
        )
    return lines


def _hot_table(
    hot: dict[tuple[Durability, bool], dict[str, float]], n: int, n_flush: int
) -> list[str]:
    lines = [
        "| durability | N | phase | Queue(path) items/s | exclusive=True items/s "
        "| shared / exclusive | budget |",
        "|---|--:|---|--:|--:|--:|---|",
    ]
    for mode in MODES:
        shared, exclusive = hot[(mode, False)], hot[(mode, True)]
        for phase, label in PHASES:
            ratio = shared[phase] / exclusive[phase]
            verdict = "within" if ratio >= BUDGET[mode] else "OVER"
            lines.append(
                f"| {mode} | {n if mode == 'fsync' else n_flush} | {label} "
                f"| {_rate(shared[phase])} | {_rate(exclusive[phase])} | {ratio:.2f}x "
                f"| >= {BUDGET[mode]:.2f}x: {verdict} |"
            )
    return lines


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        help="base directory, on the disk to measure (default: the system temp directory)",
    )
    parser.add_argument(
        "--n", type=_positive, default=3000, help="items for fsync mode and the peers"
    )
    parser.add_argument(
        "--n-flush", type=_positive, help="items for flush mode (default: 5 x --n)"
    )
    parser.add_argument(
        "--m", type=_positive, default=200, help="wake-ups measured per round and mode"
    )
    parser.add_argument(
        "--repeat", type=_positive, default=3, help="rounds; the median rate is kept"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one run may take before it is reported as stuck and ended",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a quick check that everything works: --n 200 --n-flush 1000 --m 30 --repeat 1",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.n_flush, args.m, args.repeat = 200, 1000, 30, 1
    n, n_flush = args.n, args.n_flush or 5 * args.n

    kinds = list(KINDS.values())
    base = Path(tempfile.mkdtemp(prefix="pqueue-bench-processes-", dir=args.dir))
    durability = {
        "fsync": "fdatasync per put and per ack",
        "flush": "no fsync per operation (handed to the OS; fdatasync at checkpoints)",
        "bare": "fdatasync per put and per ack, after the lock (a baseline: see _BareEnd)",
    }
    try:
        fstype = _file_system(base)
        for kind in kinds:
            if kind.module is not None:
                durability[kind.key] = (
                    _sqlite_settings(kind, base) if _installed(kind) else "not installed"
                )
        hot = measure_hot(n, n_flush, base, args.repeat)
        latencies = measure_latency(args.m, base, args.repeat, args.timeout)
        watch = measure_watch(base)
        drains = measure_drains(
            [kind for kind in kinds if _installed(kind)], n, n_flush, base, args.repeat,
            args.timeout,
        )
        drains += [
            DrainRow(kind, prefilled, n, {})
            for kind in kinds
            if not _installed(kind)
            for prefilled in (False, True)
        ]
    finally:
        shutil.rmtree(base)

    header: dict[str, object] = {
        "pqueue": pqueue.__version__,
        "persist-queue": _version("persist-queue"),
        "litequeue": _version("litequeue"),
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "file_system": fstype,
        "directory": str(base.parent),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repeat": args.repeat,
        "n": n,
        "n_flush": n_flush,
        "m": args.m,
    }
    where = f"{fstype} at {base.parent}" if fstype else str(base.parent)
    peers = ", ".join(
        f"{name} {header[name]}" for name in ("persist-queue", "litequeue") if header[name]
    )
    print(
        f"pqueue {header['pqueue']} ({peers}, SQLite {header['sqlite']}), Python "
        f"{header['python']}, {header['platform']}, {header['cpus']} CPUs, {where}, "
        f"{header['date']}; items of {ITEM_SIZE} bytes, median of {args.repeat} round(s)"
    )
    by_kind = {key: [row for row in drains if row.kind.key == key] for key in KINDS}
    for title, keys in (
        ('Drain by K consumer processes, pqueue durability="fsync"', ["fsync", "bare"]),
        ('Drain by K consumer processes, pqueue durability="flush"', ["flush"]),
        ("Drain by K consumer processes, peers", ["persistqueue", "litequeue"]),
    ):
        print()
        print(f"## {title}")
        print()
        print("\n".join(_drain_table([row for key in keys for row in by_kind[key]], durability)))
    print()
    print("## Aim")
    print()
    aim = next(row for row in by_kind["fsync"] if not row.prefilled).ratio()
    verdict = "-" if aim is None else "PASS" if aim >= 1.5 else "FAIL"
    print(f"- {verdict} pqueue fsync live drain, K=3 / K=1 >= 1.5x: {_times(aim)}")
    bare = next((row for row in by_kind["bare"] if not row.prefilled), None)
    if bare is not None:
        print(f"  (the disk work alone, on this machine: K=3 / K=1 = {_times(bare.ratio())})")
    print()
    print("## Wake-up latency of a consumer process blocked in get()")
    print()
    print("\n".join(_latency_table(latencies)))
    print()
    print(
        f"pqueue's FileSystem.watch() here is {watch['watch']}: a shared get() that waits makes "
        f"one and closes it on waking, before it takes the item; made in "
        f"{watch['make_us_median']:,.0f} µs, closed (after one change) in "
        f"{watch['close_us_median']:,.0f} µs median, {watch['close_us_p99']:,.0f} µs p99 "
        f"({watch['samples']} samples)."
    )
    print()
    print("## One process: Queue(path) beside Queue(path, exclusive=True)")
    print()
    print("\n".join(_hot_table(hot, n, n_flush)))
    print()
    print("## Problems")
    print()
    problems = [
        f"{row.kind.name}, {'prefilled' if row.prefilled else 'live'}, {problem}"
        for row in drains
        for problem in row.problems()
    ] + [
        f"wake-up latency, {latency.name}: {problem}"
        for latency in latencies
        for problem in latency.problems
    ]
    print("\n".join(f"- {problem}" for problem in problems) or "none")

    if args.json is not None:
        data = {
            **header,
            "drains": [
                {
                    "target": row.kind.key,
                    "name": row.kind.name,
                    "workload": "prefilled" if row.prefilled else "live",
                    "n": row.n,
                    "skipped": None if _installed(row.kind) else INSTALL[row.kind.key],
                    "durability": durability[row.kind.key],
                    **{f"k{k}_per_s": row.rate(k) for k in KS},
                    **{f"k{k}_producer_put_per_s": row.put_rate(k) for k in KS},
                    "k3_vs_k1": row.ratio(),
                    "runs": [
                        {key: value for key, value in vars(run).items() if key != "kind"}
                        for k in KS
                        for run in row.runs.get(k, [])
                    ],
                }
                for row in drains
            ],
            "latency": [
                {
                    "target": latency.key,
                    "name": latency.name,
                    "samples": len(latency.wake_us),
                    "wake_us_median": statistics.median(latency.wake_us)
                    if latency.wake_us else None,
                    "wake_us_p99": _percentile(latency.wake_us, 0.99)
                    if latency.wake_us else None,
                    "put_us_median": statistics.median(latency.put_us)
                    if latency.put_us else None,
                    "put_us_p99": _percentile(latency.put_us, 0.99) if latency.put_us else None,
                    "problems": latency.problems,
                }
                for latency in latencies
            ],
            "watch": watch,
            "single_process": [
                {
                    "durability": mode,
                    "phase": phase,
                    "shared_per_s": hot[(mode, False)][phase],
                    "exclusive_per_s": hot[(mode, True)][phase],
                    "shared_vs_exclusive": hot[(mode, False)][phase] / hot[(mode, True)][phase],
                    "budget": BUDGET[mode],
                }
                for mode in MODES
                for phase, _ in PHASES
            ],
            "problems": problems,
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
