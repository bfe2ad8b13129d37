"""Batches crashed at every file operation, in every crash state.

- ``put_many`` of a batch that spans two or three chunks, after single puts and before one:
  a reopen finds the puts in order, the batch all there or not at all (never a part of it),
  everything whose put returned (where the mode covers the crash), and a queue that goes on.
  Also under the model options that tear finer (``torn_sectors="any"``), write pages back
  in any order (``page_size=4096``) or keep directory operations in one order
  (``journaled_dirs``), with items whose records span sectors and pages.
- ``get_many`` + ``task_done(n)`` and ``get_deliveries`` + ``ack_many``: what returned is
  never delivered again; what was in flight may be acknowledged in any part; nothing lost,
  nothing twice, put order.
- A recovery that drops a torn batch, itself crashed at every file operation, and reopened
  again: still all or nothing.

Each sweep runs on the shared queue (the default) and on an exclusive one. In flush mode
only a process crash is covered in full (``queue_model.covered``); after a power loss what
survives must still be a prefix of the puts, a batch whole or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence

import attrs
import pytest

from crashtest.exhaustive import NEW_ITEM, TALLY, drain, framed, padded, recovery_crashes
from crashtest.queue_model import PATH, Expected, check_recovered, covered, small_policy
from pqueue import CorruptQueueError, Queue
from pqueue.core.codec import ITEM_MAGIC, decode_info, find_record
from pqueue.core.state import Durability
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedCrash,
    SimulatedDisk,
    SimulatedProcess,
)

PAGES = attrs.evolve(POWER_LOSS, page_size=4096)
ANY_SECTORS = attrs.evolve(POWER_LOSS, torn_sectors="any")
JOURNALED = attrs.evolve(POWER_LOSS, journaled_dirs=True)

Opener = Callable[[SimulatedDisk], "Queue[int]"]


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    """Recovery logs what it repaired, once per crash state: thousands of lines."""
    logger = logging.getLogger("pqueue")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def queue_opener(
    durability: Durability, exclusive: bool, chunksize: int, item_size: int = 0,
    frames: bool = False,
) -> Opener:
    """Opens the queue at ``PATH``, checkpointing at every chunk boundary; items are pickled
    ints, or ints in ``item_size`` bytes (bytes full of records, with ``frames``)."""
    serializer = (framed if frames else padded)(item_size) if item_size else None

    def open_queue(disk: SimulatedDisk) -> Queue[int]:
        return Queue(
            PATH, chunksize=chunksize, durability=durability, exclusive=exclusive, fs=disk,
            policy=small_policy(durability), serializer=serializer,
        )

    return open_queue


MODELS = (PROCESS_CRASH, POWER_LOSS)  # in flush mode, the power loss checked as it may lose


def mode(exclusive: bool) -> str:
    return "exclusive" if exclusive else "shared"


# --- put_many: all of the batch or none of it ------------------------------------------------


@attrs.frozen
class Shape:
    """``earlier`` single puts, a batch of ``batch`` items, then ``after`` single puts, in
    chunks of ``chunksize``: items 0, 1, 2, ... in that order."""

    chunksize: int
    earlier: int
    batch: int
    after: int

    @property
    def items(self) -> list[int]:
        return list(range(self.earlier + self.batch + self.after))

    @property
    def batch_items(self) -> range:
        return range(self.earlier, self.earlier + self.batch)

    def __str__(self) -> str:
        return f"chunk{self.chunksize}-{self.earlier}+batch{self.batch}+{self.after}"


def put_workload(q: Queue[int], shape: Shape, returned: list[int]) -> None:
    """The puts of ``shape``, then a close; ``returned`` gets each item as its put returns."""
    for item in range(shape.earlier):
        q.put(item)
        returned.append(item)
    q.put_many(shape.batch_items)
    returned.extend(shape.batch_items)
    for item in range(shape.earlier + shape.batch, len(shape.items)):
        q.put(item)
        returned.append(item)
    q.close()


def check_all_or_nothing(items: list[int], shape: Shape, returned: int, strong: bool) -> None:
    """What a reopen delivers after a crash of ``put_workload``: a prefix of the puts in
    order, which never ends inside the batch, and (``strong``) holds every put that
    returned, ``returned`` of them."""
    n = len(items)
    assert items == shape.items[:n], f"not the puts in order: {items}"
    lo, hi = shape.earlier, shape.earlier + shape.batch
    assert not lo < n < hi, f"part of the batch {list(shape.batch_items)}: {items}"
    if strong:
        assert n >= returned, f"puts that returned are lost: {items} ({returned} returned)"


def prepared(open_queue: Opener) -> SimulatedDisk:
    """A disk holding the new, empty queue, closed."""
    disk = SimulatedDisk()
    open_queue(disk).close()
    return disk


def check_reopened(
    state: SimulatedDisk, open_queue: Opener, shape: Shape, returned: int, strong: bool,
    then: bool,
) -> list[int]:
    """Reopen ``state``, drain it and check it; with ``then``, put an item, reopen, and find
    everything again with it. The items found."""
    q = open_queue(state)
    items = drain(q)
    check_all_or_nothing(items, shape, returned, strong)
    if then:
        q.put(NEW_ITEM)
        q.close()
        again = drain(open_queue(state))
        assert again == [*items, NEW_ITEM], f"recovered {items}; after a put and a reopen {again}"
    else:
        q.close()
    return items


def sweep_put_many(
    open_queue: Opener, durability: Durability, shape: Shape,
    models: Sequence[PersistenceModel], *, then: bool = False,
) -> tuple[int, int]:
    """Crash ``put_workload`` after every number of its file operations, and check every
    crash state under each of ``models``: (crash points, states checked)."""
    before = prepared(open_queue)
    probe = before.copy()
    start_ops = probe.operations
    put_workload(open_queue(probe), shape, [])
    steps = probe.operations - start_ops
    states = 0
    for crash_at in range(steps + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned: list[int] = []
        with contextlib.suppress(SimulatedCrash):
            put_workload(open_queue(disk), shape, returned)
        assert crash_at == steps or disk.crashed
        for model in models:
            strong = covered(durability, model)
            for i, state in enumerate(disk.crash_states(model)):
                where = f"{shape}, crash after {crash_at} of {steps} ({model}), state {i}"
                try:
                    check_reopened(state, open_queue, shape, len(returned), strong, then)
                except Exception as exc:
                    raise AssertionError(
                        f"{where}: {type(exc).__name__}: {exc}\n  {state!r}"
                    ) from exc
                states += 1
    return steps, states


SHAPES = [Shape(2, 1, 4, 1), Shape(3, 2, 5, 1), Shape(2, 2, 3, 0)]
CASES = [
    (durability, exclusive, shape)
    for durability in ("fsync", "flush")
    for exclusive in (False, True)
    for shape in (SHAPES if durability == "fsync" else SHAPES[::2])  # time: 60 s for all
]


@pytest.mark.parametrize(
    ("durability", "exclusive", "shape"), CASES,
    ids=[f"{d}-{mode(e)}-{s}" for d, e, s in CASES],
)
def test_a_crash_during_put_many_leaves_all_of_the_batch_or_none(
    durability: Durability, exclusive: bool, shape: Shape
) -> None:
    start = time.perf_counter()
    open_queue = queue_opener(durability, exclusive, shape.chunksize)
    steps, states = sweep_put_many(
        open_queue, durability, shape, MODELS, then=True
    )
    TALLY.count(f"put_many crashed at every operation ({durability}, {mode(exclusive)})",
                states, time.perf_counter() - start)
    assert steps > 15 and states > steps


@attrs.frozen
class Variant:
    """A model option, with items sized so that the batch spans what the option splits."""

    name: str
    model: PersistenceModel
    shape: Shape
    item_size: int = 0
    frames: bool = False
    exclusive: bool = True


VARIANTS = [
    # 1517-byte records, three to a chunk: the batch's second record spans the first 4 KiB
    # page of q00000 and the next; its last record is in q00001.
    Variant("pages", PAGES, Shape(3, 1, 3, 0), item_size=1500),
    Variant("pages-small", PAGES, Shape(3, 2, 5, 1), exclusive=False),
    # 617-byte records of records: each spans two sectors, kept in any subset when torn.
    Variant("any-sectors", ANY_SECTORS, Shape(2, 1, 4, 0), item_size=600, frames=True),
    Variant("any-sectors-small", ANY_SECTORS, Shape(3, 2, 5, 1), exclusive=False),
    Variant("journaled", JOURNALED, Shape(2, 1, 4, 1), exclusive=False),
    Variant("journaled-sectors", JOURNALED, Shape(2, 1, 4, 1), item_size=600),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_put_many_is_all_or_nothing_under_every_model_option(variant: Variant) -> None:
    start = time.perf_counter()
    open_queue = queue_opener(
        "fsync", variant.exclusive, variant.shape.chunksize, variant.item_size, variant.frames
    )
    steps, states = sweep_put_many(open_queue, "fsync", variant.shape, (variant.model,))
    TALLY.count(f"put_many crashed at every operation, {variant.name} model option",
                states, time.perf_counter() - start)
    assert states > steps


# --- the recovery of a torn batch, crashed -----------------------------------------------------


def holds_batch_records(disk: SimulatedDisk, shape: Shape) -> bool:
    """Whether a chunk file on ``disk`` holds a whole, valid record of one of the batch's
    items (item ``n`` is the queue's item number ``n`` here)."""
    info = f"{PATH}/info"
    salt = decode_info(disk.read(info), info).salt
    for path, data in disk.files().items():
        if not path.startswith(f"{PATH}/q"):
            continue
        found = find_record(data, 0, ITEM_MAGIC, salt)
        while found is not None:
            if found.seq in shape.batch_items:
                return True
            found = find_record(data, found.end, ITEM_MAGIC, salt)
    return False


@pytest.mark.parametrize(
    ("durability", "exclusive", "shape"),
    [
        ("fsync", True, Shape(2, 1, 4, 0)),
        ("fsync", False, Shape(2, 1, 3, 0)),
        ("flush", True, Shape(2, 1, 4, 0)),
    ],
    ids=lambda v: v if isinstance(v, str) else mode(v) if isinstance(v, bool) else str(v),
)
def test_a_crashed_recovery_of_a_torn_batch_is_still_all_or_nothing(
    durability: Durability, exclusive: bool, shape: Shape
) -> None:
    """Every crash state inside put_many in which records of the batch are on disk but the
    reopen drops the batch (torn): that reopen crashed after each of its file operations,
    in every state that leaves, then reopened again."""
    start = time.perf_counter()
    open_queue = queue_opener(durability, exclusive, shape.chunksize)
    strong = covered(durability, POWER_LOSS)

    def before() -> tuple[SimulatedDisk, Queue[int]]:
        disk = prepared(open_queue)
        q = open_queue(disk)
        for item in range(shape.earlier):
            q.put(item)
        return disk, q

    disk, q = before()
    first = disk.operations
    q.put_many(shape.batch_items)
    steps = disk.operations - first
    torn = states = 0
    seen: set[tuple[object, ...]] = set()
    for crash_at in range(steps):  # inside put_many: it never returns
        disk, q = before()
        disk.crash_after(crash_at)
        with pytest.raises(SimulatedCrash):
            q.put_many(shape.batch_items)
        for state in disk.crash_states(POWER_LOSS):
            key = (tuple(sorted(state.files().items())), tuple(sorted(state.dirs())))
            if key in seen:
                continue  # the same files: the same recovery
            seen.add(key)
            original = state.copy()
            items = check_reopened(state, open_queue, shape, shape.earlier, strong, False)
            states += 1
            if len(items) > shape.earlier or not holds_batch_records(original, shape):
                continue  # the batch is whole, or none of it reached the disk
            torn += 1
            for k, again in recovery_crashes(original, open_queue, POWER_LOSS):
                where = f"crash after {crash_at} in put_many, its recovery crashed after {k}"
                try:
                    check_reopened(again, open_queue, shape, shape.earlier, strong, False)
                except Exception as exc:
                    raise AssertionError(f"{where}: {exc}\n  {again!r}") from exc
                states += 1
    TALLY.count("torn batches whose recovery crashed at every operation", states,
                time.perf_counter() - start)
    assert torn > 5 and states > 10 * torn


# --- get_many + task_done(n), get_deliveries + ack_many -------------------------------------------

ITEMS = 7


def take_and_task_done(q: Queue[int], expected: Expected) -> None:
    """get_many(3), task_done(3), get_many(3), task_done(2); then a close."""

    def settle(items: list[int], call: Callable[[], None]) -> None:
        expected.maybe_acked = set(items)
        call()
        expected.acked |= set(items)
        expected.maybe_acked = set()

    got = q.get_many(3)
    assert got == [0, 1, 2], "FIFO"
    settle(got, lambda: q.task_done(3))
    got = q.get_many(3)
    assert got == [3, 4, 5], "FIFO"
    settle(got[:2], lambda: q.task_done(2))
    q.close()


def take_and_ack_many(q: Queue[int], expected: Expected) -> None:
    """get_deliveries(4), ack_many of two of them out of order, then of the other two, then
    get_deliveries of the rest and ack_many of all of them; then a close."""

    def settle(items: list[int], call: Callable[[], None]) -> None:
        expected.maybe_acked = set(items)
        call()
        expected.acked |= set(items)
        expected.maybe_acked = set()

    first = q.get_deliveries(4)
    assert [d.item for d in first] == [0, 1, 2, 3], "FIFO"
    settle([2, 0], lambda: q.ack_many([first[2], first[0]]))
    settle([3, 1], lambda: q.ack_many([first[3], first[1]]))
    rest = q.get_deliveries(5)
    assert [d.item for d in rest] == [4, 5, 6], "FIFO"
    settle([4, 5, 6], lambda: q.ack_many(rest))
    q.close()


WORKLOADS = {"task_done": take_and_task_done, "ack_many": take_and_ack_many}


@pytest.mark.parametrize(
    ("durability", "model"),
    [("fsync", POWER_LOSS), ("fsync", PROCESS_CRASH), ("fsync", PAGES), ("flush", PROCESS_CRASH)],
    ids=["fsync-power", "fsync-kill", "fsync-pages", "flush-kill"],
)
@pytest.mark.parametrize("exclusive", [False, True], ids=mode)
@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_a_crash_during_several_acknowledgements_keeps_any_part_of_them(
    kind: str, exclusive: bool, durability: Durability, model: PersistenceModel
) -> None:
    """Items acknowledged by a call that returned never come back; those of a call in
    flight may come back or not, each on its own; nothing else is lost or doubled, and
    what comes back is in put order."""
    start = time.perf_counter()
    workload = WORKLOADS[kind]
    open_queue = queue_opener(durability, exclusive, 2)
    before = prepared(open_queue)
    q = open_queue(before)
    for item in range(ITEMS):
        q.put(item)
    q.close()
    probe = before.copy()
    first = probe.operations
    workload(open_queue(probe), Expected(put=list(range(ITEMS))))
    steps = probe.operations - first
    strong = covered(durability, model)
    states = 0
    for crash_at in range(steps + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        expected = Expected(put=list(range(ITEMS)))
        with contextlib.suppress(SimulatedCrash):
            workload(open_queue(disk), expected)
        for i, state in enumerate(disk.crash_states(model)):
            where = f"{kind}: crash after {crash_at} of {steps}, state {i}"
            try:
                check_recovered(drain(open_queue(state)), expected, strong)
            except Exception as exc:
                raise AssertionError(f"{where}: {exc}\n  {state!r}") from exc
            states += 1
    TALLY.count(f"{kind}(n) crashed at every operation ({mode(exclusive)})", states,
                time.perf_counter() - start)
    assert steps > 10 and states > steps


ACKED_SINGLY = 160  # ack log slots 0..159, each durable, fill bytes 0..3999
ACKED_TOGETHER = 6  # slots 160..165: bytes 4000..4150, across the page (and sector) at 4096


def acks_across_a_page(kind: str, disk: SimulatedDisk) -> tuple[Queue[int], Callable[[], None]]:
    """A queue whose next acknowledgements write ack records across byte 4096 of the ack
    log, and the call that makes them, all together."""
    q: Queue[int] = Queue(PATH, chunksize=1000, exclusive=True, fs=disk)
    q.put_many(range(ACKED_SINGLY + ACKED_TOGETHER + 2))
    for _ in range(ACKED_SINGLY):
        q.get()
        q.task_done()
    if kind == "task_done":
        q.get_many(ACKED_TOGETHER)
        return q, lambda: q.task_done(ACKED_TOGETHER)
    deliveries = q.get_deliveries(ACKED_TOGETHER)
    return q, lambda: q.ack_many(deliveries)


def ack_sweep(kind: str, model: PersistenceModel) -> int:
    """Crash the acknowledgements of ``acks_across_a_page`` at every file operation; every
    crash state must reopen, with none of those items lost or doubled."""
    probe = SimulatedDisk()
    _, call = acks_across_a_page(kind, probe)
    first = probe.operations
    call()
    steps = probe.operations - first
    states = 0
    unacked = list(range(ACKED_SINGLY, ACKED_SINGLY + ACKED_TOGETHER + 2))
    for crash_at in range(steps + 1):
        disk = SimulatedDisk()
        _, call = acks_across_a_page(kind, disk)
        disk.crash_after(crash_at)
        returned = False
        with contextlib.suppress(SimulatedCrash):
            call()
            returned = True
        for state in disk.crash_states(model):
            expected = Expected(put=list(range(len(unacked) + ACKED_SINGLY)),
                                acked=set(range(ACKED_SINGLY)))
            together = set(unacked[:ACKED_TOGETHER])
            if returned:
                expected.acked |= together
            else:
                expected.maybe_acked = together
            try:
                q: Queue[int] = Queue(PATH, exclusive=True, fs=state)
            except CorruptQueueError as exc:
                raise AssertionError(
                    f"crash after {crash_at} of {steps}: the queue does not reopen: {exc}\n"
                    f"  {state!r}"
                ) from exc
            check_recovered(drain(q), expected, True)
            states += 1
    return states


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_acknowledgements_together_across_a_sector_always_reopen(kind: str) -> None:
    start = time.perf_counter()
    states = ack_sweep(kind, ANY_SECTORS)
    TALLY.count("acknowledgements together across a sector, torn in any sectors", states,
                time.perf_counter() - start)
    assert states >= 10  # the write's two sectors in each of their four subsets, and more


@pytest.mark.parametrize("kind", sorted(WORKLOADS))
def test_acknowledgements_together_across_a_page_always_reopen(kind: str) -> None:
    assert ack_sweep(kind, PAGES) >= 10


# --- two processes: one killed inside put_many --------------------------------------------------


def test_a_participant_killed_inside_put_many_leaves_all_of_the_batch_or_none() -> None:
    """Process a is killed at every file operation of its put_many; process b then puts one
    item and closes; a new process finds the batch whole or not at all."""
    batch = [1, 2, 3]

    def start(disk: SimulatedDisk) -> tuple[SimulatedProcess, Queue[int], Queue[int]]:
        a = disk.process("a")
        qa: Queue[int] = Queue(PATH, fs=a)
        qb: Queue[int] = Queue(PATH, fs=disk.process("b"))
        qa.put(0)
        return a, qa, qb

    probe = SimulatedDisk()
    a, qa, _ = start(probe)
    first = a.operations
    qa.put_many(batch)
    steps = a.operations - first
    for kill_at in range(steps + 1):
        disk = SimulatedDisk()
        a, qa, qb = start(disk)
        a.kill_after(kill_at)
        returned = False
        with contextlib.suppress(SimulatedCrash):
            qa.put_many(batch)
            returned = True
        qb.put(10)  # the same size as each item of the batch
        qb.close()
        items = drain(Queue(PATH, fs=disk.process("c")))
        found = [x for x in items if x in batch]
        where = f"a killed after {kill_at} of {steps} operations of put_many: {items}"
        assert found in ([], batch), f"{where}: part of the batch"
        assert 0 in items and 10 in items, where
        if returned:
            assert found == batch, where
