"""Exhaustive crash checking of short workloads: every crash point, every crash state.

``explore`` runs a workload on a ``RecordingDisk``, which keeps a copy of itself before every
state-changing call: the disk a crash at that call leaves (``crash_after(n)`` stops the
program at call ``n + 1`` without letting it take effect), together with the history the
program had seen by then. It then reopens the queue on every state the persistence model
allows from each of those disks, and from the disk after the last operation, and checks what
the queue delivers against the history (``queue_model.check_recovered``). That one run gives
the same crash points as re-running the workload once per ``crash_after(n)``, which
``test_exhaustive`` checks, at a fraction of the cost.

Optionally it also checks that the recovered queue goes on working (``then``), and crashes
the recovery itself at every point and checks every state that leaves (``nested``).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from crashtest.queue_model import PATH, Expected, check_recovered, covered, small_policy
from pqueue import Delivery, Empty, Queue
from pqueue.core.codec import ITEM_MAGIC, encode
from pqueue.core.state import Durability
from pqueue.crashtest import PersistenceModel, SimulatedCrash, SimulatedDisk
from pqueue.io import Lock
from pqueue.queue import _new_salt
from pqueue.serializers import NamedSerializer

OPS = ("put", "get", "ack", "reopen")
"""get(), task_done() (acknowledges the oldest item got), close() and open again."""

DELIVERY_OPS = ("put", "take", "ack-first", "ack-last", "reopen")
"""get_delivery(), and Delivery.ack() of the oldest or the newest outstanding delivery
(out of order), close() and open again."""

NEW_ITEM = 1_000_000
"""The item put into a recovered queue to check that it goes on working."""


@attrs.define
class Tally:
    """Crash states checked and the time it took, summed over a test session, how many of
    them each kind of sweep checked, and how much checking each broken variant took to be
    caught."""

    states: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = attrs.Factory(dict)
    caught: list[str] = attrs.Factory(list)

    def count(self, kind: str, states: int, seconds: float = 0.0) -> None:
        """Record ``states`` checked by a sweep of ``kind`` (in ``seconds``)."""
        self.states += states
        self.seconds += seconds
        self.kinds[kind] = self.kinds.get(kind, 0) + states


TALLY = Tally()

Opener = Callable[[SimulatedDisk], "Queue[int]"]


class Violation(AssertionError):  # noqa: N818 - a finding, not an error of the harness
    """A crash state in which the queue broke the contract."""

    def __init__(self, message: str, checked: int) -> None:
        super().__init__(message)
        self.checked = checked  # crash states checked before this one, in this exploration


@attrs.frozen
class CrashPoint:
    """The disk as a crash after ``after`` file operations leaves it, and the history."""

    after: int
    disk: SimulatedDisk
    expected: Expected


class RecordingDisk(SimulatedDisk):
    """A ``SimulatedDisk`` that, while ``recording``, keeps a copy of itself and of
    ``history`` before every state-changing call (see ``SimulatedDisk.operations``)."""

    def __init__(self, history: Expected) -> None:
        super().__init__()
        self.history = history
        self.recording = False
        self.points: list[CrashPoint] = []

    def _point(self) -> None:
        if self.recording:
            self.points.append(CrashPoint(self.operations, self.copy(), self.history.snapshot()))

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._point()
        super().mkdir(path, mode)

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        self._point()
        super().write(path, data, offset)

    def create(self, path: str) -> None:
        self._point()
        super().create(path)

    def truncate(self, path: str, size: int) -> None:
        self._point()
        super().truncate(path, size)

    def fsync(self, path: str) -> None:
        self._point()
        super().fsync(path)

    def fsync_dir(self, path: str) -> None:
        self._point()
        super().fsync_dir(path)

    def replace(self, src: str, dst: str) -> None:
        self._point()
        super().replace(src, dst)

    def unlink(self, path: str) -> None:
        self._point()
        super().unlink(path)

    def lock(self, path: str, *, shared: bool = False, blocking: bool = False) -> Lock:
        if not self.exists(path):  # locking an existing file changes nothing
            self._point()
        return super().lock(path, shared=shared, blocking=blocking)


def padded(size: int) -> NamedSerializer:
    """A serializer that stores an int in ``size`` bytes, so that records span sectors."""
    return NamedSerializer(
        f"int-in-{size}-bytes",
        lambda n: n.to_bytes(8, "little") + b"\xa5" * (size - 8),
        lambda data: int.from_bytes(data[:8], "little"),
    )


def framed(size: int) -> NamedSerializer:
    """A serializer that stores int ``n`` in ``size`` bytes full of valid records: records
    of the items that come next (``n + 1``, ``n + 2``, ...), framed for this queue's salt
    and for others, at the offsets where they would start a chunk or follow one another.
    None of them may ever be taken for one of the queue's own records."""
    salts = (_new_salt(SimulatedDisk(), PATH), 0, 0x12345678)

    def dumps(n: int) -> bytes:
        frames = bytearray(n.to_bytes(8, "little"))
        seq = n + 1
        while len(frames) < size:
            for salt in salts:
                frames += encode(ITEM_MAGIC, seq, b"f" * 40, salt, len(frames) % 512)
            seq += 1
        return bytes(frames[:8]) + bytes(frames[8:size])

    return NamedSerializer(
        f"int-in-{size}-bytes-of-records", dumps, lambda data: int.from_bytes(data[:8], "little")
    )


def opener(
    durability: Durability, chunksize: int, item_size: int = 0, *, path: str = PATH,
    frames: bool = False,
) -> Opener:
    """Opens the queue the crash tests check at ``path``; items are pickled ints, or with
    ``item_size``, ints stored in that many bytes (which, with ``frames``, are records)."""
    serializer = (framed if frames else padded)(item_size) if item_size else None

    def open_queue(disk: SimulatedDisk) -> Queue[int]:
        return Queue(
            path, chunksize=chunksize, durability=durability, fs=disk,
            policy=small_policy(durability), serializer=serializer,
        )

    return open_queue


def workloads(length: int, ops: Sequence[str] = OPS) -> Iterator[tuple[str, ...]]:
    """Every sequence of 1 to ``length`` operations from ``ops`` that starts with a put and
    in which every operation does something: a get or take has an item waiting, an ack an
    outstanding delivery, an "ack-last" at least two (with one it is "ack-first").
    A workload comes before the workloads it is a prefix of."""

    def extend(prefix: tuple[str, ...], waiting: int, out: int) -> Iterator[tuple[str, ...]]:
        yield prefix
        if len(prefix) == length:
            return
        for op in ops:
            if op == "put":
                yield from extend((*prefix, op), waiting + 1, out)
            elif op in ("get", "take") and waiting:
                yield from extend((*prefix, op), waiting - 1, out + 1)
            elif (op in ("ack", "ack-first") and out) or (op == "ack-last" and out > 1):
                yield from extend((*prefix, op), waiting, out - 1)
            elif op == "reopen":
                yield from extend((*prefix, op), waiting + out, 0)

    yield from extend(("put",), 1, 0)


def run(
    ops: Sequence[str],
    disk: SimulatedDisk,
    open_queue: Opener,
    expected: Expected,
    before: Callable[[int], None] = lambda index: None,
) -> None:
    """Run ``ops`` (a valid workload), recording in ``expected`` what returned and what was
    in flight, and checking that every get delivers the item the model expects.
    ``before(i)`` is called before operation ``i`` (``before(0)`` also before the first
    open)."""
    before(0)
    q = open_queue(disk)
    waiting: deque[int] = deque()  # put and not delivered (again), in order
    got: deque[int] = deque()  # delivered by get(), not acknowledged, oldest first
    handles: list[Delivery[int]] = []  # delivered by get_delivery(), not acknowledged
    item = 0

    def acknowledge(which: int, call: Callable[[], None]) -> None:
        expected.maybe_acked = {which}
        call()
        expected.acked.add(which)
        expected.maybe_acked = set()

    for index, op in enumerate(ops):
        before(index)
        if op == "put":
            expected.maybe_put = {item}
            q.put(item)
            expected.put.append(item)
            expected.maybe_put = set()
            waiting.append(item)
            item += 1
        elif op == "get":
            delivered = q.get_nowait()
            assert delivered == waiting.popleft(), "FIFO"
            got.append(delivered)
        elif op == "take":
            delivery = q.get_delivery(block=False)
            assert delivery.item == waiting.popleft(), "FIFO"
            handles.append(delivery)
        elif op == "ack":
            acknowledge(got[0], q.task_done)
            got.popleft()
        elif op in ("ack-first", "ack-last"):
            delivery = handles[0 if op == "ack-first" else -1]
            acknowledge(delivery.item, delivery.ack)
            handles.remove(delivery)
        elif op == "reopen":
            q.close()
            q = open_queue(disk)
            # Every delivery not acknowledged comes back before the rest, in put order.
            waiting = deque(sorted([*got, *(d.item for d in handles), *waiting]))
            got.clear()
            handles.clear()
        else:
            raise ValueError(f"unknown operation {op!r}")


def crash_points(
    ops: Sequence[str], open_queue: Opener, *, last_only: bool = False
) -> list[CrashPoint]:
    """The disk a crash leaves after each number of file operations of ``ops`` (0 to all,
    the first open included), with the history as the program saw it then.

    With ``last_only``, only the crashes inside the last operation and after it: the
    others are the crashes of the workload without its last operation, which leave the same
    disks with the same history (or a weaker one: the last operation in flight before its
    first file operation).
    """
    expected = Expected()
    disk = RecordingDisk(expected)
    first = len(ops) - 1 if last_only and len(ops) > 1 else 0

    def before(index: int) -> None:
        if index == first:
            disk.recording = True

    run(ops, disk, open_queue, expected, before)
    end = CrashPoint(disk.operations, disk.copy(), expected.snapshot())
    return [*disk.points[1 if first else 0 :], end]


def drain(q: Queue[int]) -> list[int]:
    """Every item ``q`` delivers now, not acknowledged; checks that ``qsize()`` said so."""
    size = q.qsize()
    items = [q.get_nowait() for _ in range(size)]
    with contextlib.suppress(Empty):
        extra = q.get_nowait()
        raise AssertionError(f"qsize() was {size}, yet {items} was followed by {extra}")
    return items


def check_state(
    state: SimulatedDisk, open_queue: Opener, expected: Expected, strong: bool, then: bool
) -> None:
    """Reopen the queue on a crash state and check what it delivers; with ``then``, also
    put an item, close, reopen, and check everything comes back."""
    q = open_queue(state)  # guarantee 5: it always reopens
    items = drain(q)
    check_recovered(items, expected, strong)
    if then:
        q.put(NEW_ITEM)
        q.close()
        again = drain(open_queue(state))
        assert again == [*items, NEW_ITEM], (
            f"recovered {items}; after a put of {NEW_ITEM} and a reopen: {again}"
        )


def recovery_crashes(
    state: SimulatedDisk, open_queue: Opener, model: PersistenceModel
) -> Iterator[tuple[int, SimulatedDisk]]:
    """Every state a crash inside the recovery on ``state`` can leave: (crash point, state)."""
    probe = state.copy()
    open_queue(probe)
    for k in range(probe.operations):
        disk = state.copy()
        disk.crash_after(k)
        with contextlib.suppress(SimulatedCrash):
            open_queue(disk)
        assert disk.crashed, f"the recovery did not reach file operation {k + 1} again"
        for again in disk.crash_states(model):
            yield k, again


def explore(
    ops: Sequence[str],
    open_queue: Opener,
    durability: str,
    model: PersistenceModel,
    *,
    then: bool = False,
    nested: bool = False,
    last_only: bool = False,
    kind: str = "workloads crashed at every file operation",
) -> int:
    """Crash ``ops`` at every point (``crash_points``), reopen on every crash state and
    check it; return the number of states checked (counted under ``kind``).

    With ``nested``, each recovery is crashed too, after every number of its own file
    operations, and every state that crash leaves is reopened and checked against the same
    history. A violation raises ``Violation``, saying where.
    """
    strong = covered(durability, model)
    checked = 0
    start = time.perf_counter()

    def verify(state: SimulatedDisk, expected: Expected, where: str) -> None:
        nonlocal checked
        try:
            check_state(state, open_queue, expected, strong, then)
        except Exception as exc:
            raise Violation(
                f"workload {list(ops)}, {where}: {type(exc).__name__}: {exc}\n  on {state!r}",
                checked,
            ) from exc
        checked += 1

    try:
        for point in crash_points(ops, open_queue, last_only=last_only):
            where = f"crash after {point.after} file operations"
            for i, state in enumerate(point.disk.crash_states(model)):
                original = state.copy() if nested else state
                verify(state, point.expected, f"{where}, crash state {i}")
                if nested:
                    for k, again in recovery_crashes(original, open_queue, model):
                        label = f"{where}, crash state {i}, its recovery crashed after {k}"
                        verify(again, point.expected, label)
    finally:
        TALLY.count(kind, checked, time.perf_counter() - start)
    return checked


def sweep(
    length: int,
    ops: Sequence[str],
    open_queue: Opener,
    durability: str,
    model: PersistenceModel,
    *,
    then: bool = False,
    nested: bool = False,
    kind: str = "workloads crashed at every file operation",
) -> int:
    """Every workload of up to ``length`` operations from ``ops``, every crash point, every
    crash state: the number of states checked.

    Each workload is crashed only inside and after its last operation: ``workloads``
    yields every prefix of a workload too, and the prefix covers the earlier crash points.
    """
    return sum(
        explore(
            w, open_queue, durability, model, then=then, nested=nested, last_only=True,
            kind=kind,
        )
        for w in workloads(length, ops)
    )


def first_violation(
    workloads: Iterable[Sequence[str]],
    open_queue: Opener,
    durability: str,
    model: PersistenceModel,
    *,
    then: bool = False,
) -> tuple[Violation | None, int]:
    """Explore ``workloads`` in order, as ``sweep`` does (every prefix of a workload must
    come before it), until one breaks the contract: (the violation or None, the crash
    states checked up to and including it)."""
    checked = 0
    for ops in workloads:
        try:
            checked += explore(
                ops, open_queue, durability, model, then=then, last_only=True,
                kind="broken variants checked until caught",
            )
        except Violation as found:
            return found, checked + found.checked + 1
    return None, checked
