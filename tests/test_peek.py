"""``Queue.peek()``: the item the next ``get`` would deliver, without delivering it."""

from __future__ import annotations

import os

import pytest

from pqueue import CorruptQueueError, Empty, Queue


@pytest.fixture(params=[False, True], ids=["shared", "exclusive"])
def exclusive(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_peek_shows_the_next_item_and_delivers_nothing(qdir: str, exclusive: bool) -> None:
    with Queue[str](qdir, chunksize=2, exclusive=exclusive) as q:
        with pytest.raises(Empty):
            q.peek()
        for item in "abcde":
            q.put(item)
        seen = []
        for _ in range(5):
            seen.append(q.peek())
            assert q.peek() == seen[-1]  # peeking twice: the same item
            assert (q.qsize(), q.unfinished_tasks) == (5 - len(seen) + 1, 5)
            assert q.get() == seen[-1]
        assert seen == list("abcde")  # across chunk files
        with pytest.raises(Empty):
            q.peek()


def test_an_item_given_back_is_next_and_a_delayed_one_is_not(qdir: str, exclusive: bool) -> None:
    with Queue[str](qdir, exclusive=exclusive) as q:
        for item in "abc":
            q.put(item)
        first = q.get_delivery()
        second = q.get_delivery()
        second.nack()
        assert q.peek() == "b"
        first.nack(delay=60.0)
        assert q.peek() == "b"
        again = q.get_delivery()
        assert (again.item, again.attempt) == ("b", 2)  # peeking counted no attempt
        assert q.peek() == "c"


def test_peek_passes_over_items_acknowledged_before_a_reopen(qdir: str) -> None:
    with Queue[int](qdir, exclusive=True) as q:
        for i in range(4):
            q.put(i)
        held = [q.get_delivery() for _ in range(3)]
        held[1].ack()  # out of order: recorded as a range past the tail
    with Queue[int](qdir, exclusive=True) as q:
        assert q.peek() == 0
        assert q.get() == 0
        assert q.peek() == 2  # 1 was acknowledged already
        assert q.get() == 2


def test_peek_leaves_out_an_item_bound_for_the_dead_letters(qdir: str) -> None:
    with Queue[str](qdir, max_attempts=1) as q:
        q.put("poison")
        q.put("next")
        q.get_delivery().nack()
        assert q.peek() == "next"
        assert q.get() == "next"
        assert q.dead_letters.get().item == "poison"


def test_peek_sees_what_another_participant_put(qdir: str) -> None:
    with Queue[str](qdir) as producer, Queue[str](qdir) as consumer:
        producer.put("job")
        assert consumer.peek() == "job"
        assert producer.get() == "job"
        with pytest.raises(Empty):
            consumer.peek()


def test_peek_after_an_immediate_shutdown_finds_nothing(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("job")
        q.shutdown(immediate=True)
        with pytest.raises(Empty):
            q.peek()


def test_peek_names_a_damaged_item(qdir: str) -> None:
    with Queue[bytes](qdir, exclusive=True) as q:
        q.put(b"x" * 100)
        with open(os.path.join(qdir, "q00000"), "r+b") as f:
            f.seek(60)
            f.write(b"\xff")
        with pytest.raises(CorruptQueueError, match=r"q00000") as raised:
            q.peek()
        assert raised.value.offset == 0
