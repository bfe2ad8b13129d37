"""Queue.discard_damaged() crashed at every operation: nothing else is lost, and what it
discards never comes back once it has returned."""

from __future__ import annotations

from typing import Any

import pytest

from crashtest.queue_model import PATH, small_policy
from pqueue import CorruptQueueError, Queue
from pqueue.core.codec import HEADER_SIZE, ITEM_MAGIC, Record, decode
from pqueue.core.state import Durability
from pqueue.crashtest import POWER_LOSS, PROCESS_CRASH, SimulatedCrash, SimulatedDisk
from records import salt_on


def open_queue(disk: SimulatedDisk, durability: Durability) -> Queue[int]:
    return Queue(PATH, chunksize=2, durability=durability, fs=disk,
                 policy=small_policy(durability))


def damaged_disk(durability: Durability) -> SimulatedDisk:
    """Items 0..5 put and durable, item 2 (first of chunk q00001) damaged on disk."""
    disk = SimulatedDisk()
    q = open_queue(disk, durability)
    for i in range(6):
        q.put(i)
    q.close()
    chunk = f"{PATH}/q00001"
    data = disk.read(chunk)
    rec = decode(data, 0, ITEM_MAGIC, salt_on(disk, PATH))
    assert isinstance(rec, Record) and rec.seq == 2
    disk.write(chunk, bytes([data[HEADER_SIZE] ^ 0xFF]), HEADER_SIZE)
    disk.fsync(chunk)
    return disk


def drain(disk: SimulatedDisk, durability: Durability) -> tuple[list[int], bool]:
    """Reopen and get everything: the items, and whether item 2's damage was met."""
    q = open_queue(disk, durability)
    got: list[int] = []
    met_damage = False
    while q.qsize():
        try:
            got.append(q.get(timeout=0))
        except CorruptQueueError:
            met_damage = True
            assert q.discard_damaged() == 1
    q.close()
    return got, met_damage


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_crash_during_discard_loses_nothing_else(durability: Any) -> None:
    before = damaged_disk(durability)
    probe = before.copy()
    start = probe.operations
    q = open_queue(probe, durability)
    for _ in range(2):
        q.get()
        q.task_done()
    with pytest.raises(CorruptQueueError):
        q.get(timeout=0)
    q.discard_damaged()
    steps = probe.operations - start
    states = 0
    for crash_at in range(steps + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned = False
        try:
            q = open_queue(disk, durability)
            for _ in range(2):
                q.get()
                q.task_done()
            try:
                q.get(timeout=0)
            except CorruptQueueError:
                q.discard_damaged()
                returned = True
        except SimulatedCrash:
            pass
        for model in (PROCESS_CRASH, POWER_LOSS):
            for state in disk.crash_states(model):
                states += 1
                got, met_damage = drain(state, durability)
                rest = [i for i in got if i > 2]
                assert rest == [3, 4, 5], (crash_at, got)  # nothing else lost, in order
                assert 2 not in got  # a damaged item is never delivered
                if returned:
                    assert not met_damage, crash_at  # the discard was durable when it returned
    assert steps > 5 and states > steps
    print(f"discard_damaged, {durability}: {steps} crash points, {states} crash states")
