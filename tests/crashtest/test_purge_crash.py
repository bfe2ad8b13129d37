"""Queue.purge() crashed at every operation, in every crash state: the waiting items are
dropped all together or not at all, never some of them; once it returned they never come
back; the delivery outstanding during it is never dropped."""

from __future__ import annotations

import time
from typing import Any

import pytest

from crashtest.exhaustive import TALLY
from crashtest.queue_model import PATH, small_policy
from pqueue import Queue
from pqueue.core.state import Durability
from pqueue.crashtest import POWER_LOSS, PROCESS_CRASH, SimulatedCrash, SimulatedDisk

ITEMS = 7
WAITING = [2, 3, 4, 5, 6]  # 0 stays delivered (outstanding), 1 is given back: 1..6 dropped


def open_queue(disk: SimulatedDisk, durability: Durability) -> Queue[int]:
    return Queue(PATH, chunksize=2, durability=durability, fs=disk,
                 policy=small_policy(durability))


def prepared(durability: Durability) -> SimulatedDisk:
    disk = SimulatedDisk()
    q = open_queue(disk, durability)
    for i in range(ITEMS):
        q.put(i)
    q.close()
    return disk


def workload(q: Queue[int]) -> int:
    """Deliver item 0 (kept), deliver and give back item 1, then purge."""
    q.get_delivery()
    q.get_delivery().nack()
    return q.purge()


def drain(disk: SimulatedDisk, durability: Durability) -> list[int]:
    q = open_queue(disk, durability)
    got = []
    while q.qsize():
        got.append(q.get(timeout=0))
        q.task_done()
    q.close()
    return got


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_crash_during_purge_drops_all_or_nothing(durability: Any) -> None:
    start = time.perf_counter()
    before = prepared(durability)
    probe = before.copy()
    operations = probe.operations
    assert workload(open_queue(probe, durability)) == ITEMS - 1
    steps = probe.operations - operations
    states = 0
    for crash_at in range(steps + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned = False
        try:
            workload(open_queue(disk, durability))
            returned = True
        except SimulatedCrash:
            pass
        models = (PROCESS_CRASH, POWER_LOSS) if durability == "fsync" else (PROCESS_CRASH,)
        for model in models:
            for state in disk.crash_states(model):
                states += 1
                got = drain(state, durability)
                where = f"crash after {crash_at} of {steps} ({model}): {got}"
                assert got in ([0], list(range(ITEMS))), where  # all dropped, or none
                if returned:
                    assert got == [0], where  # durable once purge() returned
    TALLY.count(f"purge, one process ({durability})", states, time.perf_counter() - start)
    assert steps > 10 and states > steps
