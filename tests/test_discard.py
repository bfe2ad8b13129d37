"""Queue.discard_damaged(): the explicit way past a damaged item, never taken by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pqueue import CorruptQueueError, Queue
from pqueue.core.codec import HEADER_SIZE
from records import record_offsets, salt_of


def damage(qdir: str, chunk: str, *indexes: int) -> None:
    """Flip a payload byte of each record ``indexes`` of ``chunk``."""
    path = Path(qdir, chunk)
    offsets = record_offsets(path.read_bytes(), salt_of(qdir))[:-1]
    data = bytearray(path.read_bytes())
    for index in indexes:
        data[offsets[index] + HEADER_SIZE] ^= 0xFF
    path.write_bytes(bytes(data))


def filled(qdir: str, n: int, **kwargs: Any) -> None:
    with Queue[int](qdir, chunksize=4, **kwargs) as q:
        for i in range(n):
            q.put(i)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_damaged_item_is_discarded_only_when_asked(qdir: str, durability: Any) -> None:
    filled(qdir, 10, durability=durability)
    damage(qdir, "q00001", 1)  # item 5
    with Queue[int](qdir, chunksize=4, durability=durability) as q:
        assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(CorruptQueueError):
            q.get()
        assert q.qsize() == 5
        assert q.discard_damaged() == 1
        assert q.qsize() == 4
        assert q.get() == 6
        for _ in range(6):
            q.task_done()
        assert q.unfinished_tasks == 3
    with Queue[int](qdir, chunksize=4, durability=durability) as q:
        assert [q.get() for _ in range(3)] == [7, 8, 9]  # 5 never comes back
        assert q.qsize() == 0


def test_discarding_skips_every_damaged_item_up_to_the_next_whole_one(qdir: str) -> None:
    filled(qdir, 12)
    damage(qdir, "q00001", 2, 3)  # items 6 and 7, the end of a chunk
    with Queue[int](qdir, chunksize=4) as q:
        for _ in range(6):
            q.get()
        assert q.discard_damaged() == 2
        assert q.get() == 8  # the first item of the next chunk
    with Queue[int](qdir, chunksize=4) as q:
        assert q.get() == 0  # nothing acknowledged: all come back, but 6 and 7
        assert [q.get() for _ in range(7)] == [1, 2, 3, 4, 5, 8, 9]


def test_a_damaged_last_item_is_discarded_and_the_queue_goes_on(qdir: str) -> None:
    filled(qdir, 3)
    damage(qdir, "q00000", 2)
    with Queue[int](qdir, chunksize=4) as q:
        assert [q.get(), q.get()] == [0, 1]
        assert q.discard_damaged() == 1
        assert q.qsize() == 0
        q.put(3)
        assert q.get() == 3


def test_discarding_when_the_next_item_is_whole_is_refused(qdir: str) -> None:
    filled(qdir, 3)
    with Queue[int](qdir, chunksize=4) as q:
        with pytest.raises(ValueError, match="not damaged"):
            q.discard_damaged()
        assert q.get() == 0
        q.get()
        q.get()
        with pytest.raises(ValueError, match="no item"):
            q.discard_damaged()


def test_damage_to_an_item_acknowledged_before_a_reopen_is_passed_over(qdir: str) -> None:
    # Item 3 was acknowledged out of order; its record is only needed to be skipped, so
    # damage to it does not stop the queue. Damage to an item not acknowledged would.
    filled(qdir, 6)
    with Queue[int](qdir, chunksize=4) as q:
        deliveries = [q.get_delivery() for _ in range(4)]
        deliveries[3].ack()
    damage(qdir, "q00000", 3)
    with Queue[int](qdir, chunksize=4) as q:
        assert q.qsize() == 5
        assert [q.get() for _ in range(5)] == [0, 1, 2, 4, 5]
        for _ in range(5):
            q.task_done()
    with Queue[int](qdir, chunksize=4) as q:
        assert q.qsize() == 0
