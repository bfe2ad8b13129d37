"""Damage is never silent: every byte of ``info``, of the ack log and of the records after
the checkpoint, changed in turn, and every length the ack log could be cut to.

- ``info``: any change is found (its checksum), and the queue refuses to open, naming it.
- The ack log, in fsync mode: damage to any record but the last of its generation, or a log
  cut short, is ``CorruptQueueError`` naming the log and the offset; damage to the last one
  may lose only that acknowledgement (the item comes back, as if the acknowledgement had
  been torn by a crash). In flush mode the damaged records are passed over with a warning,
  and only their acknowledgements are lost.
- Item records after the checkpoint, in fsync mode: damage before the last record is
  ``CorruptQueueError``; to the last one, only that item may be lost. In flush mode the
  queue drops the damaged item and those after it, and says so in a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from crashtest.exhaustive import TALLY
from crashtest.queue_model import PATH, small_policy
from pqueue import CorruptQueueError, Queue, UnsupportedFormatError
from pqueue.core.codec import ACK_RECORD_SIZE
from pqueue.core.state import Durability
from pqueue.crashtest import SimulatedDisk
from records import record_offsets, salt_on

ITEMS = 8


def open_queue(disk: SimulatedDisk, durability: Durability) -> Queue[int]:
    return Queue(
        PATH, chunksize=100, durability=durability, fs=disk,
        policy=small_policy(durability, every=1000, acks=40),
    )


def drain(q: Queue[int]) -> list[int]:
    items = []
    while q.qsize():
        items.append(q.get(timeout=0))
        q.task_done()
    q.close()
    return items


def prepared(durability: Durability, acks: int) -> SimulatedDisk:
    """Items 0..7 checkpointed; then, since, items 0..acks-1 acknowledged out of the ack
    log only (0 and 2.. in order, 1 last), and items 8..11 put after the checkpoint."""
    disk = SimulatedDisk()
    q = open_queue(disk, durability)
    for i in range(ITEMS):
        q.put(i)
    q.close()
    q = open_queue(disk, durability)
    deliveries = [q.get_delivery() for _ in range(acks)]
    for delivery in [*deliveries[:1], *deliveries[2:], *deliveries[1:2]]:
        delivery.ack()
    for i in range(ITEMS, ITEMS + 4):
        q.put(i)
    return disk  # q is never closed: the disk is as a crash left it


def flips(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``data`` with each byte changed in turn (one bit, and every bit): (offset, data)."""
    for at in range(len(data)):
        for mask in (0x01, 0xFF):
            changed = bytearray(data)
            changed[at] ^= mask
            yield at, bytes(changed)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_any_change_to_info_is_found_and_refused(durability: Durability) -> None:
    base = prepared(durability, 3)
    info = base.read(f"{PATH}/info")
    start = time.perf_counter()
    states = 0
    for at, changed in flips(info):
        disk = base.copy()
        disk.write(f"{PATH}/info", changed, 0)
        with pytest.raises((CorruptQueueError, UnsupportedFormatError)) as raised:
            open_queue(disk, durability)
        error = raised.value
        assert isinstance(error, (CorruptQueueError, UnsupportedFormatError))
        assert error.path == f"{PATH}/info", at
        states += 1
    TALLY.count("damaged info files, each byte changed", states, time.perf_counter() - start)
    assert states == 2 * len(info)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_ack_log_damage_is_never_silent(
    durability: Durability, caplog: pytest.LogCaptureFixture
) -> None:
    acks = 5
    base = prepared(durability, acks)
    log = base.read(f"{PATH}/acks")
    acked = set(range(acks))
    start = time.perf_counter()
    states = refused = 0
    for at, changed in flips(log[: (acks + 2) * ACK_RECORD_SIZE]):
        disk = base.copy()
        disk.write(f"{PATH}/acks", changed, 0)
        slot = at // ACK_RECORD_SIZE
        states += 1
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pqueue"):
            try:
                items = drain(open_queue(disk, durability))
            except CorruptQueueError as exc:
                assert durability == "fsync" and slot < acks - 1, (at, exc)
                assert (exc.path, exc.offset) == (f"{PATH}/acks", slot * ACK_RECORD_SIZE)
                refused += 1
                continue
        back = acked & set(items)
        if slot < acks:  # a record of the generation: at most its own item comes back
            assert back <= {[0, 2, 3, 4, 1][slot]}, (at, back)
            if durability == "flush" and slot < acks - 1:
                assert f"{PATH}/acks at offset {slot * ACK_RECORD_SIZE}" in caplog.text
        else:  # past the generation's records: nothing changes
            assert not back, (at, back)
        assert sorted(set(range(ITEMS + 4)) - acked) == [i for i in items if i not in back]
    TALLY.count("damaged ack logs, each byte changed", states, time.perf_counter() - start)
    assert refused == (2 * (acks - 1) * ACK_RECORD_SIZE if durability == "fsync" else 0)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_cut_ack_log_is_refused_in_fsync_mode(durability: Durability) -> None:
    base = prepared(durability, 5)
    log = base.read(f"{PATH}/acks")
    start = time.perf_counter()
    states = 0
    for length in range(len(log)):
        disk = base.copy()
        disk.truncate(f"{PATH}/acks", length)
        states += 1
        if durability == "fsync":
            with pytest.raises(CorruptQueueError, match="truncated") as raised:
                open_queue(disk, durability)
            assert raised.value.path == f"{PATH}/acks"
        else:  # flush mode promised nothing of unsynced acknowledgements: they come back
            items = drain(open_queue(disk, durability))
            assert set(range(5, ITEMS + 4)) <= set(items) and items == sorted(items)
    TALLY.count("ack logs cut to every length", states, time.perf_counter() - start)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_damage_to_records_after_the_checkpoint_is_never_silent(
    durability: Durability, caplog: pytest.LogCaptureFixture
) -> None:
    base = prepared(durability, 0)
    chunk = f"{PATH}/q00000"
    data = base.read(chunk)
    offsets = record_offsets(data, salt_on(base, PATH))
    assert len(offsets) == ITEMS + 4 + 1  # the checkpointed 8, the 4 after, and the end
    first = offsets[ITEMS]
    start = time.perf_counter()
    states = 0
    for at, changed in flips(data[first : offsets[-1]]):
        disk = base.copy()
        disk.write(chunk, changed, first)
        damaged = next(i for i in range(ITEMS, ITEMS + 4) if offsets[i + 1] > first + at)
        states += 1
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pqueue"):
            try:
                items = drain(open_queue(disk, durability))
            except CorruptQueueError as exc:
                assert durability == "fsync" and damaged < ITEMS + 3, at
                assert (exc.path, exc.offset) == (chunk, offsets[damaged])
                continue
        if durability == "fsync":
            assert damaged == ITEMS + 3 and items in (list(range(12)), list(range(11)))
        else:
            assert items == list(range(damaged))  # the damaged item and the rest dropped
            assert f"{chunk} at offset {offsets[damaged]}" in caplog.text
    TALLY.count("damaged records after the checkpoint, each byte changed", states,
                time.perf_counter() - start)
