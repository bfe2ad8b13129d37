"""An asynchronous exception after every file operation: ``KeyboardInterrupt``, or what a
signal handler raises (a timeout), landing just after a call returned, in the middle of a
put, a get, an acknowledgement, a checkpoint, an open or a close.

After it the Queue object must not lie: the exception reaches the caller, and every later
call on the object raises ``QueueBrokenError`` (or, had the exception landed in a call that
changed nothing yet, works); never does a later call return as if it had done what the disk
does not hold. Then the directory always reopens, on the disk as it is and on every state a
power loss could leave, and nothing acknowledged is lost or comes back.

The sweep interrupts the first, second, ... matching file-system call of a workload, until a
run leaves the interrupt armed: every call was interrupted once.
"""

from __future__ import annotations

import itertools
import time
import traceback
from collections.abc import Callable

import pytest

from crashtest.exhaustive import TALLY, check_state
from crashtest.queue_model import PATH, Expected, small_policy
from pqueue import Delivery, Queue, QueueBrokenError
from pqueue.core.state import Durability
from pqueue.core.transitions import Phase
from pqueue.crashtest import POWER_LOSS, SimulatedDisk

WORKLOAD = (
    "put", "put", "put", "get", "take", "ack", "put", "reopen", "get", "take", "take",
    "ack-delivery", "ack", "put", "get", "ack", "ack-delivery", "put", "reopen", "get", "ack",
)
"""put; get() + task_done(); get_delivery() + ack() (``take``, ``ack-delivery``); close and
open again. Chunks of 2 items and a checkpoint at every crossing, so that interrupts land
in roll-overs, checkpoints and deletions."""


class Timeout(Exception):  # noqa: N818 - named as signal-timeout libraries name theirs
    """What a signal handler raises: an ordinary exception, not a BaseException."""


def opener(durability: Durability) -> Callable[[SimulatedDisk], Queue[int]]:
    def open_queue(disk: SimulatedDisk) -> Queue[int]:
        return Queue(
            PATH, chunksize=2, durability=durability, fs=disk, policy=small_policy(durability)
        )

    return open_queue


def run_until_interrupted(
    disk: SimulatedDisk, open_queue: Callable[[SimulatedDisk], Queue[int]], expected: Expected,
    interrupt: type[BaseException],
) -> tuple[Queue[int] | None, str]:
    """Run the workload, recording in ``expected`` what returned. Return the Queue object the
    interrupt reached (None if it reached the opening of one, or none came) and the disk
    call it came out of."""
    item = 0
    got: list[int] = []
    held: list[Delivery[int]] = []
    q: Queue[int] | None = None
    try:
        q = open_queue(disk)
        for op in WORKLOAD:
            if op == "put":
                expected.maybe_put = {item}
                q.put(item)
                expected.put.append(item)
                expected.maybe_put = set()
                item += 1
            elif op == "get":
                got.append(q.get(timeout=0))
            elif op == "take":
                held.append(q.get_delivery(timeout=0))
            elif op in ("ack", "ack-delivery"):
                oldest = got[0] if op == "ack" else held[0].item
                expected.maybe_acked = {oldest}
                if op == "ack":
                    q.task_done()
                    got.pop(0)
                else:
                    held.pop(0).ack()
                expected.acked.add(oldest)
                expected.maybe_acked = set()
            else:
                q.close()
                q = None
                got.clear()
                held.clear()
                q = open_queue(disk)
        q.close()
    except interrupt as exc:
        calls = [
            frame.name for frame in traceback.extract_tb(exc.__traceback__)
            if frame.filename.endswith("disk.py") and not frame.name.startswith("_")
        ]
        return q, calls[-1]
    return None, ""


def broken_until_reopened(q: Queue[int]) -> None:
    """Every call on a Queue an interrupt left half done raises; none returns."""
    calls: list[Callable[[], object]] = [
        lambda: q.put(99), lambda: q.get(timeout=0), q.task_done, q.qsize,
        lambda: q.unfinished_tasks,
    ]
    for call in calls:
        with pytest.raises(QueueBrokenError) as raised:
            call()
        assert raised.value.__cause__ is not None


@pytest.mark.parametrize("durability", ["fsync", "flush"])
@pytest.mark.parametrize(
    ("interrupt", "ops"),
    [
        (KeyboardInterrupt, None),
        (Timeout, None),
        (KeyboardInterrupt, frozenset({"read", "listdir", "exists", "size", "file_type"})),
    ],
    ids=["KeyboardInterrupt", "signal-handler-exception", "KeyboardInterrupt-in-reads"],
)
def test_an_exception_after_any_file_operation_never_lies_and_always_reopens(
    durability: Durability, interrupt: type[BaseException], ops: frozenset[str] | None
) -> None:
    open_queue = opener(durability)
    states = 0
    broken = 0
    start = time.perf_counter()
    for after in itertools.count():
        disk = SimulatedDisk()
        disk.interrupt(after, interrupt(), ops=ops)
        expected = Expected()
        q, where = run_until_interrupted(disk, open_queue, expected, interrupt)
        if disk.armed:
            break  # the workload made fewer matching calls: every one was interrupted once
        if q is not None and q._phase is Phase.OPEN:
            # Only while a shared queue catches up with the shared state (reading it, before
            # any change), once it wrote it back (the step whole), or once it made an
            # acknowledgement durable after letting the lock go: the queue goes on.
            assert where in ("read", "write", "fsync"), (after, where, q)
            q.close()
        elif q is not None and q._phase is not Phase.CLOSED:  # not in close(), which closes
            assert q._phase is Phase.BROKEN, (after, q)
            broken_until_reopened(q)
            broken += 1
        # Reopened on the disk as it is (the interrupted object superseded), and on every
        # state a power loss could leave now. An interrupt just after the lock was taken
        # leaves it held by nobody in this process, as a real one would until it exits:
        # reopen as the next process would, on a copy (which holds no locks).
        snapshot = disk.copy()
        here = disk.copy() if where == "lock" else disk
        check_state(here, open_queue, expected, strong=True, then=True)
        for state in snapshot.crash_states(POWER_LOSS):
            check_state(state, open_queue, expected, strong=durability == "fsync", then=True)
            states += 1
    TALLY.count("async exceptions after every file operation", states + after,
                time.perf_counter() - start)
    assert after > 40 if ops is None else after > 5  # every call of the workload, in turn
    assert broken > 10 if ops is None else True
    assert states > after
