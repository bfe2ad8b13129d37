"""Dead letters: ``Queue(..., max_attempts=N)`` moves an item delivered N times without
being acknowledged to ``q.dead_letters``, once, instead of delivering it again.

Through the public API on the real disk: nack, leases, consumers that die or close, every
participant dying, reopening, exclusive queues, and the errors. The crash sweep of the move
(a process killed at every file operation of it, and power loss) is in
``tests/crashtest/test_dead_letter_crash.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import TypeVar

import pytest

from pqueue import DeadLetter, Empty, Queue
from pqueue.core.deadletter import decode_dead_letter, encode_dead_letter

T = TypeVar("T")

# A consumer that dies (SIGKILL) right after the dead letter of the item it moves was put,
# before the item is acknowledged in its queue.
DIES_AFTER_THE_DEAD_LETTER = """
import os, signal, sys
from pqueue import Queue
q = Queue(sys.argv[1], max_attempts=1)
dead = q.dead_letters
real = dead._bury
def bury_then_die(record):
    real(record)
    os.kill(os.getpid(), signal.SIGKILL)
dead._bury = bury_then_die
q.get(timeout=10)
"""


def die_after_the_dead_letter(qdir: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DIES_AFTER_THE_DEAD_LETTER, qdir],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def drain_dead(q: Queue[T]) -> list[DeadLetter[T]]:
    """Every dead letter of ``q``, acknowledged."""
    out: list[DeadLetter[T]] = []
    while True:
        try:
            d = q.dead_letters.get_delivery(timeout=0)
        except Empty:
            return out
        out.append(d.item)
        d.ack()


def test_an_item_nacked_max_attempts_times_moves_to_the_dead_letters(qdir: str) -> None:
    with Queue[str](qdir, max_attempts=2) as q:
        q.put("poison")
        q.put("fine")
        first = q.get_delivery(timeout=0)
        assert (first.item, first.attempt) == ("poison", 1)
        first.nack()
        second = q.get_delivery(timeout=0)
        assert (second.item, second.attempt) == ("poison", 2)
        second.nack()
        # Not delivered a third time: moved, and the next item comes instead.
        nxt = q.get_delivery(timeout=0)
        assert (nxt.item, nxt.attempt) == ("fine", 1)
        nxt.ack()
        assert q.qsize() == 0 and q.unfinished_tasks == 0
        assert drain_dead(q) == [DeadLetter("poison", 2, 0)]
        q.join()  # the moved item counts as finished here


def test_without_max_attempts_items_are_delivered_again_and_again(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("x")
        for attempt in range(1, 6):
            d = q.get_delivery(timeout=0)
            assert d.attempt == attempt
            d.nack()
        assert q.dead_letters.qsize() == 0


def test_a_lease_that_keeps_running_out_counts_as_an_attempt(qdir: str) -> None:
    with Queue[int](qdir, lease_timeout=0.05, max_attempts=2) as q:
        q.put(7)
        assert q.get_delivery(timeout=0).attempt == 1  # never acknowledged
        time.sleep(0.1)
        assert q.get_delivery(timeout=1).attempt == 2
        time.sleep(0.1)
        with pytest.raises(Empty):
            q.get_delivery(timeout=0)
        assert drain_dead(q) == [DeadLetter(7, 2, 0)]


def test_a_consumer_that_closes_holding_an_item_spends_an_attempt(qdir: str) -> None:
    q: Queue[str] = Queue(qdir, max_attempts=1)
    q.put("a")
    q.put("b")
    worker: Queue[str] = Queue(qdir, max_attempts=1)
    assert worker.get() == "a"
    worker.close()  # "a" is given back, after its one attempt
    assert q.get(timeout=0) == "b"
    q.task_done()
    assert [dl.item for dl in drain_dead(q)] == ["a"]
    q.close()


def test_attempts_and_the_move_survive_consumer_processes_killed_on_the_item(
    qdir: str,
) -> None:
    with Queue[str](qdir, max_attempts=2) as q:
        q.put("poison")
        q.put("next")
    code = """
        import os, signal, sys
        from pqueue import Queue
        q = Queue(sys.argv[1], max_attempts=2)
        d = q.get_delivery(timeout=10)
        print(d.item, d.attempt, flush=True)
        if d.item == "poison":
            os.kill(os.getpid(), signal.SIGKILL)  # dies on it, every time
        d.ack()
    """
    seen = []
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), qdir],
            check=False, capture_output=True, text=True, timeout=60,
        )
        seen.append(proc.stdout.split())
    assert seen == [["poison", "1"], ["poison", "2"], ["next", "1"]]
    with Queue[str](qdir, max_attempts=2) as q:
        assert q.qsize() == 0
        assert drain_dead(q) == [DeadLetter("poison", 2, 0)]


def test_dead_letters_stay_until_acknowledged_and_keep_their_order(qdir: str) -> None:
    with Queue[int](qdir, max_attempts=1, chunksize=2) as q:
        for i in range(5):
            q.put(i)
        for _ in range(5):
            q.get_delivery(timeout=0).nack()
        with pytest.raises(Empty):
            q.get(timeout=0)
        assert q.dead_letters.qsize() == 5
    with Queue[int](qdir) as q:  # any participant reads them, with or without a limit
        letters = drain_dead(q)
    assert [(dl.item, dl.attempts, dl.seq) for dl in letters] == [(i, 1, i) for i in range(5)]


def test_a_dead_letter_put_back_into_the_queue_starts_again(qdir: str) -> None:
    with Queue[str](qdir, max_attempts=1) as q:
        q.put("retry me")
        q.get_delivery(timeout=0).nack()
        with pytest.raises(Empty):
            q.get(timeout=0)
        letter = q.dead_letters.get(timeout=0)
        q.put(letter.item)
        q.dead_letters.task_done()
        d = q.get_delivery(timeout=0)
        assert (d.item, d.attempt) == ("retry me", 1)
        d.ack()


def test_the_dead_letter_queue_refuses_puts(qdir: str) -> None:
    with Queue[int](qdir, max_attempts=1) as q:
        with pytest.raises(TypeError, match="only by moving them"):
            q.dead_letters.put(DeadLetter(1, 1, 0))
        assert q.dead_letters.qsize() == 0


def test_an_exclusive_queue_moves_items_too(qdir: str) -> None:
    with Queue[int](qdir, exclusive=True, max_attempts=1) as q:
        q.put(1)
        q.get_delivery(timeout=0).nack()
        with pytest.raises(Empty):
            q.get(timeout=0)
        assert drain_dead(q) == [DeadLetter(1, 1, 0)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_max_attempts_must_be_a_positive_int(qdir: str, bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="max_attempts"):
        Queue(qdir, max_attempts=bad)  # type: ignore[arg-type]
    assert not os.path.exists(os.path.join(qdir, "info"))


def test_a_move_cut_short_after_the_dead_letter_was_put_is_finished_once(qdir: str) -> None:
    """A consumer killed between putting the dead letter and acknowledging the item in its
    queue: the next open finds the dead letter and acknowledges the item, never moving it
    again nor delivering it. The kill is made at that exact point by a child that stops
    itself right after the dead letter's put returned."""
    with Queue[str](qdir, max_attempts=1) as q:
        q.put("poison")
        q.put("after")
        q.get_delivery(timeout=0).nack()
    die_after_the_dead_letter(qdir)
    with Queue[str](qdir, max_attempts=1) as q:
        assert q.dead_letters.qsize() == 1
        assert q.get(timeout=0) == "after"  # "poison" acknowledged, not delivered
        q.task_done()
        with pytest.raises(Empty):
            q.get(timeout=0)
        assert drain_dead(q) == [DeadLetter("poison", 1, 0)]


def test_a_move_cut_short_is_finished_by_a_live_participant(qdir: str) -> None:
    """The same kill while another participant lives: it finishes the move from the shared
    state, at its next operation, and puts the dead letter only once."""
    with Queue[str](qdir, max_attempts=1) as q:
        q.put("poison")
        q.put("after")
        q.get_delivery(timeout=0).nack()
        die_after_the_dead_letter(qdir)
        assert q.get(timeout=0) == "after"
        q.task_done()
        assert q.unfinished_tasks == 0
        assert drain_dead(q) == [DeadLetter("poison", 1, 0)]


def test_dead_letter_records_round_trip_and_refuse_other_bytes() -> None:
    record = encode_dead_letter(2**40, 7, b"payload")
    assert decode_dead_letter(record) == (2**40, 7, b"payload")
    with pytest.raises(ValueError, match="not a dead-letter record"):
        decode_dead_letter(b"\x80\x05K\x01.")
    with pytest.raises(ValueError, match="not a dead-letter record"):
        decode_dead_letter(record[:10])
