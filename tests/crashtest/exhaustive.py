"""Exhaustive crash checking of short workloads: every crash point, every crash state."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from crashtest.queue_model import PATH, Expected, check_recovered, covered, small_policy
from pqueue import PQueueError, Queue
from pqueue.core.state import Durability
from pqueue.crashtest import PersistenceModel, SimulatedCrash, SimulatedDisk

OPS = ("put", "get", "ack", "reopen")


@attrs.define
class Tally:
    """Crash states checked, and the time it took (summed over a test session)."""

    states: int = 0
    seconds: float = 0.0


TALLY = Tally()

Opener = Callable[[SimulatedDisk], "Queue[int]"]


def opener(durability: Durability, chunksize: int) -> Opener:
    def open_queue(disk: SimulatedDisk) -> Queue[int]:
        return Queue(
            PATH, chunksize=chunksize, durability=durability, fs=disk,
            policy=small_policy(durability),
        )

    return open_queue


def workloads(length: int) -> Iterator[tuple[str, ...]]:
    """Every sequence of up to ``length`` operations that starts with a put."""
    for n in range(1, length + 1):
        for rest in itertools.product(OPS, repeat=n - 1):
            yield ("put", *rest)


def run(ops: Sequence[str], disk: SimulatedDisk, open_queue: Opener, expected: Expected) -> None:
    """Run ``ops`` (skipping a get or ack with nothing to get or acknowledge), recording in
    ``expected`` what returned and what was in flight."""
    q = open_queue(disk)
    got: list[int] = []
    item = 0
    for op in ops:
        if op == "put":
            expected.maybe_put = {item}
            q.put(item)
            expected.put.append(item)
            expected.maybe_put = set()
            item += 1
        elif op == "get" and q.qsize():
            got.append(q.get())
        elif op == "ack" and got:
            expected.maybe_acked = {got[0]}
            q.task_done()
            expected.acked.add(got.pop(0))
            expected.maybe_acked = set()
        elif op == "reopen":
            q.close()
            q = open_queue(disk)
            got.clear()


def explore(
    ops: Sequence[str], open_queue: Opener, durability: str, model: PersistenceModel
) -> int:
    """Crash ``ops`` after every number of file operations (including none and all), reopen
    on every crash state and check it; return the number of states checked."""
    probe = SimulatedDisk()
    run(ops, probe, open_queue, Expected())
    strong = covered(durability, model)
    checked = 0
    start = time.perf_counter()
    for crash_at in range(probe.operations + 1):
        disk = SimulatedDisk()
        disk.crash_after(crash_at)
        expected = Expected()
        with contextlib.suppress(SimulatedCrash):
            run(ops, disk, open_queue, expected)
        for state in disk.crash_states(model):
            try:
                q = open_queue(state)  # guarantee 5: it always reopens
                items = [q.get() for _ in range(q.qsize())]
                check_recovered(items, expected, strong)
            except (AssertionError, PQueueError) as exc:
                raise AssertionError(
                    f"workload {list(ops)}, crash after {crash_at} file operations: {exc}"
                ) from None
            checked += 1
    TALLY.states += checked
    TALLY.seconds += time.perf_counter() - start
    return checked
