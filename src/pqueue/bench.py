"""Throughput of pqueue beside its predecessor, its peers and the raw disk, in one run.

Each target puts N items of 64 bytes, then gets (and acknowledges, where the target can) N
items, in a fresh directory under one base directory; the rates are the median of --repeat
runs. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pickle
import platform
import queue
import shutil
import statistics
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from time import perf_counter
from types import ModuleType
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import pqueue
from pqueue.io import OsFileSystem

ITEM_SIZE = 64
RECORD_SIZE = 81  # 64 bytes in pqueue's 17-byte frame
# pqueue 0.1.7 has pqueue's import name: it is installed apart, under the directory the
# benchmark runs in, and its module file loaded under another name.
PQUEUE017 = Path(".bench/pqueue017/pqueue/pqueue.py")
INSTALL_PQUEUE017 = "pip install --no-deps --target .bench/pqueue017 pqueue==0.1.7"
INSTALL_PEERS = "pip install -r benchmarks/requirements.txt (in the repository)"

_fdatasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


@runtime_checkable
class Fifo(Protocol):
    """What the benchmark calls on a queue."""

    def put(self, item: bytes, /) -> object: ...
    def get(self) -> object: ...
    def close(self) -> object: ...


@runtime_checkable
class AckedFifo(Fifo, Protocol):
    """A queue whose items are acknowledged one by one after get."""

    def task_done(self) -> object: ...


class Held(Protocol):
    """One delivery got with ``get_delivery()`` and held, acknowledged later with ``ack()``."""

    @property
    def item(self) -> object: ...
    def ack(self) -> object: ...


@runtime_checkable
class DeliveringFifo(AckedFifo, Protocol):
    """A queue that also delivers items to acknowledge explicitly (pqueue's get_delivery)."""

    def get_delivery(self) -> Held: ...


class _MemoryQueue(queue.Queue[bytes]):
    def close(self) -> None:
        """Nothing to release."""


class _FileQueue:
    """pqueue 0.1.7 or persist-queue's file Queue: neither has close(), so close their files."""

    def __init__(self, fifo: Any) -> None:
        self._fifo = fifo
        self.put: Callable[[bytes], object] = fifo.put
        self.get: Callable[[], object] = fifo.get
        self.task_done: Callable[[], object] = fifo.task_done

    def close(self) -> None:
        self._fifo.headf.close()
        self._fifo.tailf.close()


class _SQLiteQueue:
    """persist-queue's SQLiteQueue(auto_commit=True): get deletes and commits the item, and
    task_done does nothing, so the get phase is get only."""

    def __init__(self, fifo: Any) -> None:
        self.put: Callable[[bytes], object] = fifo.put
        self.get: Callable[[], object] = fifo.get
        self.close: Callable[[], object] = fifo.close


class _Deque:
    """diskcache's Deque: append and popleft; it has no task_done."""

    def __init__(self, deque: Any) -> None:
        self.put: Callable[[bytes], object] = deque.append
        self.get: Callable[[], object] = deque.popleft
        self.close: Callable[[], object] = deque.cache.close


def _open_pqueue(durability: Literal["fsync", "flush"], directory: Path) -> Fifo:
    return pqueue.Queue[bytes](directory / "q", durability=durability)


def _open_memory(directory: Path) -> Fifo:
    return _MemoryQueue()


def _open_file_queue(module: ModuleType, directory: Path) -> Fifo:
    # Both write their info file in tempdir and rename it into the queue, so tempdir must be
    # on the queue's file system; both check that with os.stat, so the directories must exist.
    path, temp = directory / "q", directory / "tmp"
    path.mkdir()
    temp.mkdir()
    return _FileQueue(module.Queue(str(path), tempdir=str(temp)))


def _open_sqlite_queue(module: ModuleType, directory: Path) -> Fifo:
    return _SQLiteQueue(module.SQLiteQueue(str(directory / "q"), auto_commit=True))


def _open_deque(module: ModuleType, directory: Path) -> Fifo:
    return _Deque(module.Deque(directory=str(directory / "q")))


PHASES = ("put", "get", "interleaved")


class Phases(NamedTuple):
    put: float  # seconds
    get: float | None  # seconds; None for the raw loops, which have no get phase
    get_phase: str  # what the get phase does: "get + task_done", "get only" or ""
    # seconds for N rounds of put, get (+ task_done): a consumer keeping up with a producer.
    # None where there is no such phase (the raw loops and the bare loop).
    interleaved: float | None = None
    # the items the get phase got, where that is not N: N minus the deliveries held
    get_items: int | None = None


def _run_queue(open_fifo: Callable[[Path], Fifo], directory: Path, n: int, held: int = 0) -> Phases:
    """Put N items, get (+ task_done) them, then N rounds of put, get (+ task_done).

    With ``held``, the first ``min(held, N // 2)`` items are taken with ``get_delivery()``
    before the get phase (untimed) and held, unacknowledged, through the get phase (the
    remaining items) and the interleaved phase; then they are acked (untimed).
    """
    fifo = open_fifo(directory)
    item = os.urandom(ITEM_SIZE)
    put, get = fifo.put, fifo.get
    got: object = None
    held = min(held, n // 2)
    deliveries: list[Held] = []
    try:
        start = perf_counter()
        for _ in range(n):
            put(item)
        put_seconds = perf_counter() - start
        if held:
            if not isinstance(fifo, DeliveringFifo):
                raise TypeError(f"{fifo!r} has no get_delivery(): it cannot hold deliveries")
            deliveries = [fifo.get_delivery() for _ in range(held)]
            if any(delivery.item != item for delivery in deliveries):
                raise RuntimeError("an item held is not the item put")
        if isinstance(fifo, AckedFifo):
            task_done = fifo.task_done
            get_phase = f"get + task_done, {held:,} held" if held else "get + task_done"
            start = perf_counter()
            for _ in range(n - held):
                got = get()
                task_done()
            get_seconds = perf_counter() - start
            start = perf_counter()
            for _ in range(n):
                put(item)
                got = get()
                task_done()
        else:
            get_phase = "get only"
            start = perf_counter()
            for _ in range(n):
                got = get()
            get_seconds = perf_counter() - start
            start = perf_counter()
            for _ in range(n):
                put(item)
                got = get()
        interleaved_seconds = perf_counter() - start
        for delivery in deliveries:
            delivery.ack()
    finally:
        fifo.close()
    if got != item:
        raise RuntimeError(f"the last item got is {got!r}, not the item put")
    return Phases(
        put_seconds, get_seconds, get_phase, interleaved_seconds, n - held if held else None
    )


def _append_loop(sync: bool, directory: Path, n: int) -> Phases:
    record = os.urandom(RECORD_SIZE)
    fd = os.open(directory / "data", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    write = os.write
    try:
        start = perf_counter()
        if sync:
            for _ in range(n):
                write(fd, record)
                _fdatasync(fd)
        else:
            for _ in range(n):
                write(fd, record)
        seconds = perf_counter() - start
    finally:
        os.close(fd)
    return Phases(seconds, None, "")


def _preallocated_loop(directory: Path, n: int) -> Phases:
    record = os.urandom(RECORD_SIZE)
    fd = os.open(directory / "data", os.O_RDWR | os.O_CREAT, 0o600)
    pwrite = os.pwrite
    try:
        os.write(fd, bytes(n * RECORD_SIZE))
        os.fsync(fd)
        start = perf_counter()
        for offset in range(0, n * RECORD_SIZE, RECORD_SIZE):
            pwrite(fd, record, offset)
            _fdatasync(fd)
        seconds = perf_counter() - start
    finally:
        os.close(fd)
    return Phases(seconds, None, "")


# pqueue's defaults that the bare loop of flush mode's work follows.
CHUNKSIZE = 100  # Queue(chunksize=100)
FLUSH_CHECKPOINT_EVERY = 64  # chunk boundaries crossed between flush-mode checkpoints
FLUSH_ACK_LOG_BYTES = 256 * 1024
_pack_body = struct.Struct("<IQ").pack  # a frame: magic, crc32 | length, seq | payload
_pack_mark = struct.Struct("<BI").pack
_unpack_header = struct.Struct("<BIIQ").unpack_from


def _frame(magic: int, seq: int, payload: bytes) -> bytes:
    body = _pack_body(len(payload), seq) + payload
    return _pack_mark(magic, zlib.crc32(body)) + body


def _replace_info(directory: Path, dir_fd: int) -> None:
    temp = os.open(directory / "info.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(temp, b'{"checkpoint": "of about this size, in JSON"}')
        _fdatasync(temp)
    finally:
        os.close(temp)
    os.replace(directory / "info.tmp", directory / "info")
    os.fsync(dir_fd)


def _flush_work_loop(directory: Path, n: int) -> Phases:
    """The disk work of ``Queue(path, durability="flush")`` with as little Python around it
    as a loop can have: what any Python queue keeping pqueue's files and flush-mode
    guarantees could reach at best on this machine.

    Put: pickle and frame each item (CRC32) and pwrite it; a new chunk file every 100
    items, each filled one's write-back started (``FileSystem.write_back``); every 64
    chunks a checkpoint: fdatasync those chunks, then replace ``info``
    (temp file, fdatasync, rename, directory fsync). Get: read each chunk whole, check each
    frame's CRC, unpickle the item, pwrite a framed acknowledgement into the ack log; every
    64 chunks (or a full ack log) a checkpoint, then unlink the chunks consumed.
    """
    item = os.urandom(ITEM_SIZE)
    dumps, loads, pwrite = pickle.dumps, pickle.loads, os.pwrite
    protocol = pickle.HIGHEST_PROTOCOL
    dir_fd = os.open(directory, os.O_RDONLY)
    ack_fd = os.open(directory / "acks", os.O_RDWR | os.O_CREAT, 0o600)
    pending: list[int] = []  # descriptors of the chunks written since the last checkpoint
    write_back = OsFileSystem().write_back
    got = None
    try:
        start = perf_counter()
        fd, offset = -1, 0
        for seq in range(n):
            if not seq % CHUNKSIZE:
                if seq:
                    write_back(str(directory / f"q{seq // CHUNKSIZE - 1:05d}"))
                if len(pending) == FLUSH_CHECKPOINT_EVERY:
                    for old in pending:
                        _fdatasync(old)
                        os.close(old)
                    pending.clear()
                    _replace_info(directory, dir_fd)
                name = directory / f"q{seq // CHUNKSIZE:05d}"
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                pending.append(fd)
                offset = 0
            frame = _frame(0xD1, seq, dumps(item, protocol))
            pwrite(fd, frame, offset)
            offset += len(frame)
        put_seconds = perf_counter() - start

        start = perf_counter()
        ack_offset = 0
        consumed: list[int] = []
        for number in range(-(-n // CHUNKSIZE)):
            with open(directory / f"q{number:05d}", "rb") as f:
                buf = f.read()
            pos = 0
            while pos < len(buf):
                magic, crc, length, seq = _unpack_header(buf, pos)
                end = pos + 17 + length
                if magic != 0xD1 or zlib.crc32(buf[pos + 5 : end]) != crc:
                    raise RuntimeError(f"bad frame at {pos} of chunk {number}")
                got = loads(buf[pos + 17 : end])
                pos = end
                ack = _frame(0xA5, 1, seq.to_bytes(8, "little"))
                if ack_offset + len(ack) > FLUSH_ACK_LOG_BYTES:
                    _replace_info(directory, dir_fd)
                    ack_offset = 0
                pwrite(ack_fd, ack, ack_offset)
                ack_offset += len(ack)
            consumed.append(number)
            if len(consumed) == FLUSH_CHECKPOINT_EVERY:
                _replace_info(directory, dir_fd)
                for old_number in consumed:
                    os.unlink(directory / f"q{old_number:05d}")
                consumed.clear()
        get_seconds = perf_counter() - start
    finally:
        for old in pending:
            os.close(old)
        os.close(ack_fd)
        os.close(dir_fd)
    if got != item:
        raise RuntimeError(f"the last item got is {got!r}, not the item put")
    return Phases(put_seconds, get_seconds, "get + acknowledge")


@dataclass(frozen=True)
class Target:
    key: str
    name: str
    n: int
    run: Callable[[Path, int], Phases] | None  # None: the peer is not installed
    install: str = ""


@dataclass(frozen=True)
class Result:
    target: Target
    rates: dict[str, float]  # items/s by phase (PHASES); empty when skipped
    get_phase: str


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _load_pqueue017() -> ModuleType | None:
    """Load pqueue 0.1.7's module file under another name: it is also called pqueue."""
    if not PQUEUE017.is_file():
        return None
    spec = importlib.util.spec_from_file_location("pqueue017", PQUEUE017)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peer(
    module: ModuleType | None, opener: Callable[[ModuleType, Path], Fifo]
) -> Callable[[Path, int], Phases] | None:
    return None if module is None else partial(_run_queue, partial(opener, module))


def _pqueue_run(
    durability: Literal["fsync", "flush"], held: int = 0
) -> Callable[[Path, int], Phases]:
    return partial(_run_queue, partial(_open_pqueue, durability), held=held)


def targets(n_slow: int, n_fast: int) -> list[Target]:
    pqueue017 = _load_pqueue017()
    persistqueue = _import("persistqueue")
    diskcache = _import("diskcache")
    return [
        Target("fsync", "pqueue, fsync", n_slow, _pqueue_run("fsync")),
        Target("flush", "pqueue, flush", n_fast, _pqueue_run("flush")),
        Target("flush_held1", "pqueue, flush, 1 delivery held", n_fast, _pqueue_run("flush", 1)),
        Target(
            "flush_held1000",
            "pqueue, flush, 1,000 deliveries held",
            n_fast,
            _pqueue_run("flush", 1000),
        ),
        Target("fsync_held1", "pqueue, fsync, 1 delivery held", n_slow, _pqueue_run("fsync", 1)),
        Target(
            "pqueue017",
            "pqueue 0.1.7",
            n_slow,
            _peer(pqueue017, _open_file_queue),
            INSTALL_PQUEUE017,
        ),
        Target(
            "persistqueue",
            "persist-queue Queue",
            n_slow,
            _peer(persistqueue, _open_file_queue),
            INSTALL_PEERS,
        ),
        Target(
            "sqlitequeue",
            "persist-queue SQLiteQueue, auto_commit=True",
            n_slow,
            _peer(persistqueue, _open_sqlite_queue),
            INSTALL_PEERS,
        ),
        Target(
            "diskcache",
            "diskcache Deque, append/popleft",
            n_slow,
            _peer(diskcache, _open_deque),
            INSTALL_PEERS,
        ),
        Target(
            "flushwork",
            "pqueue flush's disk work, bare loop",
            n_fast,
            _flush_work_loop,
        ),
        Target("memory", "queue.Queue, in memory", n_fast, partial(_run_queue, _open_memory)),
        Target("write", f"os.write loop, {RECORD_SIZE} B", n_fast, partial(_append_loop, False)),
        Target(
            "fdatasync",
            f"write+fdatasync loop, {RECORD_SIZE} B",
            n_slow,
            partial(_append_loop, True),
        ),
        Target(
            "pwrite",
            f"pwrite+fdatasync loop, preallocated, {RECORD_SIZE} B",
            n_slow,
            _preallocated_loop,
        ),
    ]


def _run_once(run: Callable[[Path, int], Phases], n: int, base: Path) -> Phases:
    directory = Path(tempfile.mkdtemp(dir=base))
    try:
        return run(directory, n)
    finally:
        shutil.rmtree(directory)


def measure(targets: Sequence[Target], base: Path, repeat: int) -> dict[str, Result]:
    """Run every target ``repeat`` times, round by round (each round runs every target
    once), so that a ratio compares runs made under the same conditions of the disk."""
    runs: dict[str, list[Phases]] = {t.key: [] for t in targets}
    for round_number in range(1, repeat + 1):
        for target in targets:
            if target.run is not None:
                print(
                    f"round {round_number}/{repeat}: {target.name} ...", file=sys.stderr, flush=True
                )
                runs[target.key].append(_run_once(target.run, target.n, base))
    results = {}
    for target in targets:
        done = runs[target.key]
        if not done:
            results[target.key] = Result(target, {}, "")
            continue
        rates = {"put": statistics.median(target.n / run.put for run in done)}
        gets = [
            (target.n if run.get_items is None else run.get_items) / run.get
            for run in done
            if run.get is not None
        ]
        if gets:
            rates["get"] = statistics.median(gets)
        mixed = [target.n / run.interleaved for run in done if run.interleaved is not None]
        if mixed:
            rates["interleaved"] = statistics.median(mixed)
        results[target.key] = Result(target, rates, done[0].get_phase)
    return results


def _file_system(path: Path) -> str | None:
    """The type of the file system holding ``path``, from /proc/mounts (None elsewhere)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, fstype = "", None
    for line in mounts:
        fields = line.split()
        mount = fields[1].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, fields[2]
    return fstype


def _ratio(results: dict[str, Result], key: str, phase: str, base_key: str) -> float | None:
    rate = results[key].rates.get(phase)
    base = results[base_key].rates.get(phase)
    return None if rate is None or base is None else rate / base


def _cells(results: dict[str, Result], key: str) -> list[str]:
    result = results[key]
    target = result.target
    if not result.rates:
        return [target.name, str(target.n), f"SKIPPED: not installed (`{target.install}`)"]
    put, get, mixed = (result.rates.get(phase) for phase in PHASES)
    put_ratio, get_ratio, mixed_ratio = (
        _ratio(results, key, phase, "pqueue017") for phase in PHASES
    )

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    return [
        target.name,
        str(target.n),
        rate(put),
        result.get_phase or "-",
        rate(get),
        rate(mixed),
        ratio(put_ratio),
        ratio(get_ratio),
        ratio(mixed_ratio),
    ]


COLUMNS = [
    "target", "N", "put/s", "get phase", "get/s", "interleaved/s",
    "put vs 0.1.7", "get vs 0.1.7", "interleaved vs 0.1.7",
]


def table(results: dict[str, Result]) -> list[str]:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for key in results:
        cells = _cells(results, key)
        cells += [""] * (len(COLUMNS) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


class Check(NamedTuple):
    text: str
    key: str
    base_key: str
    phase: str
    minimum: float


CHECKS = [
    Check("pqueue fsync put >= 1.2x pqueue 0.1.7 put", "fsync", "pqueue017", "put", 1.2),
    Check(
        "pqueue fsync put >= 0.7x the pwrite+fdatasync preallocated loop",
        "fsync",
        "pwrite",
        "put",
        0.7,
    ),
    Check(
        "pqueue fsync get+task_done >= 1.2x pqueue 0.1.7 get+task_done",
        "fsync",
        "pqueue017",
        "get",
        1.2,
    ),
    Check("pqueue flush put >= 50x pqueue 0.1.7 put", "flush", "pqueue017", "put", 50.0),
    Check(
        "pqueue flush get+task_done >= 30x pqueue 0.1.7 get+task_done",
        "flush",
        "pqueue017",
        "get",
        30.0,
    ),
]


# Not targets: how much of the bare loop of its own disk work pqueue flush reaches.
SHARES = [
    ("pqueue flush put, of the bare loop's put", "flush", "flushwork", "put"),
    ("pqueue flush get+task_done, of the bare loop's get", "flush", "flushwork", "get"),
]


def shares(results: dict[str, Result]) -> dict[str, float | None]:
    return {text: _ratio(results, key, phase, base) for text, key, base, phase in SHARES}


# Not targets either: pqueue's rates with deliveries held (got with get_delivery() and not
# acked) while the rest flows, as a share of the same mode's rates with none held.
HELD_ROWS = [  # the row with deliveries held, the same mode's row with none, how many held
    ("flush_held1", "flush", "1 delivery"),
    ("flush_held1000", "flush", "1,000 deliveries"),
    ("fsync_held1", "fsync", "1 delivery"),
]
HELD_SHARES = [
    (f"pqueue {base} {text} with {held} held, of the same with none held", key, base, phase)
    for key, base, held in HELD_ROWS
    for text, phase in (("get+task_done", "get"), ("interleaved", "interleaved"))
]


def held_shares(results: dict[str, Result]) -> dict[str, float | None]:
    return {text: _ratio(results, key, phase, base) for text, key, base, phase in HELD_SHARES}


class Outcome(NamedTuple):
    check: Check
    status: str  # PASS, FAIL or SKIPPED
    ratio: float | None
    missing: list[Target]  # for SKIPPED: the targets not installed

    def line(self) -> str:
        if self.ratio is None:
            return f"SKIPPED {self.check.text}: " + "; ".join(
                f"{t.name} not installed (`{t.install}`)" for t in self.missing
            )
        return f"{self.status} {self.check.text}: {self.ratio:.2f}x"


def evaluate(results: dict[str, Result], spec: Check) -> Outcome:
    ratio = _ratio(results, spec.key, spec.phase, spec.base_key)
    if ratio is None:
        missing = [results[k].target for k in (spec.key, spec.base_key) if not results[k].rates]
        return Outcome(spec, "SKIPPED", None, missing)
    return Outcome(spec, "PASS" if ratio >= spec.minimum else "FAIL", ratio, [])


def write_json(
    path: Path, header: dict[str, object], results: dict[str, Result], outcomes: list[Outcome]
) -> None:
    rows = [
        {
            "target": key,
            "name": r.target.name,
            "n": r.target.n,
            "skipped": None if r.rates else r.target.install,
            "put_per_s": r.rates.get("put"),
            "get_per_s": r.rates.get("get"),
            "get_phase": r.get_phase or None,
            "interleaved_per_s": r.rates.get("interleaved"),
            "put_vs_0.1.7": _ratio(results, key, "put", "pqueue017"),
            "get_vs_0.1.7": _ratio(results, key, "get", "pqueue017"),
            "interleaved_vs_0.1.7": _ratio(results, key, "interleaved", "pqueue017"),
        }
        for key, r in results.items()
    ]
    checks = [
        {"check": o.check.text, "minimum": o.check.minimum, "ratio": o.ratio, "status": o.status}
        for o in outcomes
    ]
    data = {
        **header,
        "targets": rows,
        "checks": checks,
        "shares": shares(results),
        "held_shares": held_shares(results),
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


QUICK = {"n_slow": 400, "n_fast": 5000, "repeat": 1}
FULL = {"n_slow": 4000, "n_fast": 100_000, "repeat": 3}


def write_chart(path: Path, header: dict[str, object], results: dict[str, Result]) -> None:
    """Draw the run's put and get rates (items/s, log scale) of every target measured, as a
    PNG at ``path``. Needs matplotlib (not a dependency of pqueue: ``pip install
    matplotlib``)."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise SystemExit("--chart needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    rows = [(r.target.name, r.rates) for r in results.values() if r.rates]
    rows.reverse()  # the first target on top
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    y = list(range(len(rows)))
    for offset, phase, label in ((0.2, "put", "put/s"), (-0.2, "get", "get (+ ack)/s")):
        values = [rates.get(phase, 0.0) for _, rates in rows]
        ax.barh([i + offset for i in y], values, height=0.4, label=label)
    ax.set_yticks(y)
    ax.set_yticklabels([name for name, _ in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"items of {ITEM_SIZE} bytes per second (log scale)")
    ax.set_title(
        f"pqueue {header['pqueue']}, Python {header['python']}, {header['file_system']}, "
        f"{header['date']}", fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser, sizes: dict[str, int]) -> None:
    """The benchmark's options, added to ``parser``, with ``sizes`` (QUICK or FULL) as the
    defaults."""
    parser.add_argument(
        "--dir",
        type=Path,
        help="base directory, on the disk to measure (default: the system temp directory)",
    )
    parser.add_argument("--n-slow", type=_positive, default=sizes["n_slow"],
                        help=f"N for the fsync-bound and slow targets ({sizes['n_slow']})")
    parser.add_argument("--n-fast", type=_positive, default=sizes["n_fast"],
                        help=f"N for the fast targets ({sizes['n_fast']})")
    parser.add_argument("--repeat", type=_positive, default=sizes["repeat"],
                        help=f"runs per target; the median rate is kept ({sizes['repeat']})")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")
    parser.add_argument("--chart", type=Path, metavar="FILE",
                        help="also draw the rates as a PNG here (needs matplotlib)")


def main(argv: Sequence[str] | None = None) -> None:
    """``python benchmarks/bench.py``: the full run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, FULL)
    run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` say and print its report."""
    base = Path(tempfile.mkdtemp(prefix="pqueue-bench-", dir=args.dir))
    try:
        fstype = _file_system(base)
        results = measure(targets(args.n_slow, args.n_fast), base, args.repeat)
    finally:
        shutil.rmtree(base)

    header: dict[str, object] = {
        "pqueue": pqueue.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "file_system": fstype,
        "directory": str(base.parent),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repeat": args.repeat,
    }
    where = f"{fstype} at {base.parent}" if fstype else str(base.parent)
    print(
        f"pqueue {header['pqueue']}, Python {header['python']}, {header['platform']}, {where}, "
        f"{header['date']}; items of {ITEM_SIZE} bytes, median rate of {args.repeat} run(s)"
    )
    print()
    print("\n".join(table(results)))
    print()
    print("## Targets")
    print()
    outcomes = [evaluate(results, spec) for spec in CHECKS]
    for outcome in outcomes:
        print(f"- {outcome.line()}")
    print()
    print("## Against the bare loop of the same disk work")
    print()
    for text, share in shares(results).items():
        print(f"- {text}: " + ("SKIPPED" if share is None else f"{share:.2f}x"))
    print()
    print("## Deliveries held")
    print()
    for text, share in held_shares(results).items():
        print(f"- {text}: " + ("SKIPPED" if share is None else f"{share:.2f}x"))

    if args.json is not None:
        write_json(args.json, header, results, outcomes)
    if args.chart is not None:
        write_chart(args.chart, header, results)
    return 0


if __name__ == "__main__":
    main()
