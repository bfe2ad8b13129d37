"""Every short workload, every crash point, every crash state: the contract holds.

Workloads are all the valid sequences of put/get/task_done/close-and-reopen (or put,
get_delivery, ack of the oldest or of the newest delivery, close-and-reopen) up to a length,
on chunks of one to three items (small ones, or ones whose records span disk sectors) with a
checkpoint at every chunk boundary, so that crashes land in roll-overs, checkpoints and chunk
deletions. A crash is tried before every file operation, from the first one (inside the first
open) to after the last; every state the persistence model allows at that point is reopened,
drained and checked against DESIGN.md section 3 (in flush mode, under POWER_LOSS, against
the weaker promise). Some runs also put an item into
each recovered queue and reopen it (``then``), or crash each recovery at every point and
check every state that leaves (``nested``).
"""

from __future__ import annotations

import contextlib

import attrs
import pytest

from crashtest.exhaustive import (
    DELIVERY_OPS,
    OPS,
    crash_points,
    opener,
    run,
    sweep,
    workloads,
)
from crashtest.queue_model import PATH, Expected
from pqueue.core.state import Durability
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedCrash,
    SimulatedDisk,
)

REORDERING = attrs.evolve(POWER_LOSS, reorder_dir_ops=True)

@attrs.frozen
class Case:
    """One exhaustive run: every workload of up to ``length`` operations from ``ops``."""

    durability: Durability
    model: PersistenceModel
    chunksize: int
    length: int
    ops: tuple[str, ...] = OPS
    then: bool = False  # each recovered queue also takes a put and a reopen
    nested: bool = False  # each recovery is crashed too, at every point
    item_size: int = 0  # items stored in this many bytes (records span 512-byte sectors)
    frames: bool = False  # ... and those bytes are records of the items to come
    path: str = PATH  # PATH's parent exists; a deeper path makes new parent directories

    def __str__(self) -> str:
        name = {POWER_LOSS: "power", PROCESS_CRASH: "kill", REORDERING: "reorder"}[self.model]
        kind = "deliveries" if self.ops == DELIVERY_OPS else "task_done"
        size = f"-{self.item_size}B" if self.item_size else ""
        size += "-of-records" if self.frames else ""
        extra = "-then" if self.then else "-nested" if self.nested else ""
        where = "" if self.path == PATH else "-new-parents"
        chunk = f"chunk{self.chunksize}{size}"
        return f"{self.durability}-{name}-{chunk}-{kind}-{self.length}ops{extra}{where}"

    @property
    def kind(self) -> str:
        if self.frames:
            return "workloads of items that hold records, crashed at every file operation"
        if self.path != PATH:
            return "workloads making new parent directories, crashed at every file operation"
        return "workloads crashed at every file operation"


CASES = [
    Case("fsync", POWER_LOSS, 1, 6),
    Case("fsync", POWER_LOSS, 2, 5, then=True),
    Case("fsync", POWER_LOSS, 3, 5, then=True),
    Case("fsync", POWER_LOSS, 1, 5, DELIVERY_OPS),
    Case("fsync", POWER_LOSS, 3, 5, item_size=1500),
    Case("fsync", PROCESS_CRASH, 1, 5, then=True),
    Case("fsync", REORDERING, 1, 5),
    Case("fsync", POWER_LOSS, 1, 3, nested=True),
    Case("flush", PROCESS_CRASH, 1, 5, then=True),
    Case("flush", POWER_LOSS, 1, 5, then=True),
    Case("flush", POWER_LOSS, 2, 5),
    Case("flush", POWER_LOSS, 1, 5, DELIVERY_OPS),
    Case("flush", POWER_LOSS, 2, 5, item_size=1500),
    Case("flush", POWER_LOSS, 1, 3, nested=True),
    Case("fsync", POWER_LOSS, 2, 4, item_size=1500, frames=True),
    Case("flush", POWER_LOSS, 2, 4, item_size=1500, frames=True),
    Case("fsync", POWER_LOSS, 1, 4, path="/a/b/q"),
    Case("fsync", REORDERING, 1, 3, path="/a/b/q"),
    Case("flush", POWER_LOSS, 1, 4, path="/a/b/q"),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_crash_state_of_short_workloads_recovers(case: Case) -> None:
    open_queue = opener(
        case.durability, case.chunksize, case.item_size, path=case.path, frames=case.frames
    )
    checked = sweep(
        case.length, case.ops, open_queue, case.durability, case.model,
        then=case.then, nested=case.nested, kind=case.kind,
    )
    assert checked > 100 * case.length  # every workload had crash states to check


def test_workloads_are_every_valid_sequence_once_prefixes_first() -> None:
    found = list(workloads(4))
    assert len(found) == len(set(found)) == 41
    assert found[:3] == [("put",), ("put", "put"), ("put", "put", "put")]
    seen: set[tuple[str, ...]] = set()
    for w in found:
        assert w[0] == "put" and len(w) <= 4
        assert len(w) == 1 or w[:-1] in seen  # the prefix came first
        seen.add(w)
        waiting = out = 0
        for op in w:  # valid: every operation has something to work on
            waiting, out = {
                "put": (waiting + 1, out),
                "get": (waiting - 1, out + 1),
                "ack": (waiting, out - 1),
                "reopen": (waiting + out, 0),
            }[op]
            assert waiting >= 0 and out >= 0, w
    assert ("put", "get", "get") not in seen and ("put", "ack") not in seen
    deliveries = set(workloads(5, DELIVERY_OPS))
    assert ("put", "put", "take", "take", "ack-last") in deliveries
    assert ("put", "take", "ack-last") not in deliveries  # with one delivery it is ack-first


@pytest.mark.parametrize(("durability", "chunksize"), [("fsync", 1), ("flush", 2)])
def test_recorded_crash_points_are_those_of_crash_after(
    durability: Durability, chunksize: int
) -> None:
    """One recorded run gives what re-running with ``crash_after(n)`` gives, for every n."""
    open_queue = opener(durability, chunksize)
    for ops in workloads(4):
        points = crash_points(ops, open_queue)
        probe = SimulatedDisk()
        run(ops, probe, open_queue, Expected())
        assert [p.after for p in points] == list(range(probe.operations + 1))
        for point in points:
            disk = SimulatedDisk()
            disk.crash_after(point.after)
            expected = Expected()
            with contextlib.suppress(SimulatedCrash):
                run(ops, disk, open_queue, expected)
            assert disk.crashed == (point.after < probe.operations)
            assert expected == point.expected, (ops, point.after)
            assert [s.files() for s in disk.crash_states(POWER_LOSS)] == [
                s.files() for s in point.disk.crash_states(POWER_LOSS)
            ], (ops, point.after)


def test_crashing_only_the_last_operation_of_each_workload_covers_every_crash_point() -> None:
    """What ``sweep`` skips is checked, with the same or a stronger history, for a prefix."""
    open_queue = opener("fsync", 1)

    def key(disk: SimulatedDisk) -> tuple[object, ...]:
        return tuple(tuple(s.files().items()) for s in disk.crash_states(POWER_LOSS))

    for ops in workloads(4):
        swept = [
            (key(p.disk), p.expected)
            for j in range(1, len(ops) + 1)
            for p in crash_points(ops[:j], open_queue, last_only=True)
        ]
        for point in crash_points(ops, open_queue):
            k, e = key(point.disk), point.expected
            assert any(
                k == k2
                and (e2.put, e2.acked) == (e.put, e.acked)
                and e2.maybe_put <= e.maybe_put
                and e2.maybe_acked <= e.maybe_acked
                for k2, e2 in swept
            ), (ops, point.after)
