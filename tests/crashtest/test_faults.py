"""ENOSPC, EIO and a failed fsync at any operation: a clear error, the queue refuses every
call until reopened, and after reopening (on the disk as it is, and on every state a power
loss could leave) nothing acknowledged is lost and nothing acknowledged comes back.

A full disk is gentler where that is safe: a put that finds no space raises
``DiskFullError`` and changes nothing (the queue stays open), and a checkpoint that finds no
space for its temp file is put off (everything it would record is durable already); every
other ENOSPC breaks the queue like any IO error.

The sweep makes the first, second, ... matching file-system call of a workload fail, until
a run leaves the fault armed (the workload made fewer matching calls): so every call was
hit once.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable

import pytest

from crashtest.exhaustive import check_state
from crashtest.queue_model import PATH, Expected, small_policy
from pqueue import DiskFullError, PQueueError, Queue, QueueBrokenError, QueueClosedError
from pqueue.core.state import Durability
from pqueue.crashtest import POWER_LOSS, SimulatedDisk

WORKLOAD = ("put", "put", "put", "get", "get", "ack", "put", "reopen", "get", "get", "ack", "ack")

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
EIO = OSError(errno.EIO, "Input/output error")


def opener(durability: Durability) -> Callable[[SimulatedDisk], Queue[int]]:
    def open_queue(disk: SimulatedDisk) -> Queue[int]:
        return Queue(
            PATH, chunksize=2, durability=durability, fs=disk, policy=small_policy(durability)
        )

    return open_queue


def refuses_everything(q: Queue[int], refusal: type[PQueueError]) -> None:
    calls: list[Callable[[], object]] = [
        lambda: q.put(99), q.get_nowait, lambda: q.get_delivery(block=False), q.task_done,
        q.qsize, lambda: q.unfinished_tasks, q.join, q.shutdown,
    ]
    for call in calls:
        with pytest.raises(refusal):
            call()


def run_until_failure(
    disk: SimulatedDisk, open_queue: Callable[[SimulatedDisk], Queue[int]], expected: Expected
) -> tuple[BaseException | None, int]:
    """Run the workload; return the first error that broke the queue (recording what
    returned), or None, and how many puts raised ``DiskFullError`` (after which the queue
    went on). After a breaking error, check the queue refuses every call."""
    item = 0
    got: list[int] = []
    full = 0
    refusal: type[PQueueError] = QueueBrokenError  # what a queue refuses calls with after it
    try:
        q = open_queue(disk)
    except QueueBrokenError as exc:  # while opening: the OSError is its cause
        return exc, full
    try:
        for op in WORKLOAD:
            if op == "put":
                expected.maybe_put = {item}
                try:
                    q.put(item)
                except DiskFullError as exc:
                    assert isinstance(exc.__cause__, OSError)
                    assert exc.__cause__.errno == errno.ENOSPC
                    expected.maybe_put = set()  # nothing was put, and the queue goes on
                    full += 1
                else:
                    expected.put.append(item)
                    expected.maybe_put = set()
                item += 1
            elif op == "get":
                if q.qsize():  # a put the disk had no room for is not there
                    got.append(q.get(timeout=0))
            elif op == "ack" and got:
                expected.maybe_acked = {got[0]}
                q.task_done()
                expected.acked.add(got.pop(0))
                expected.maybe_acked = set()
            else:
                refusal = QueueClosedError  # a failed close still closes
                q.close()
                got.clear()
                q = open_queue(disk)
                refusal = QueueBrokenError
        refusal = QueueClosedError
        q.close()
    except (PQueueError, OSError) as exc:
        refuses_everything(q, refusal)
        return exc, full
    return None, full


@pytest.mark.parametrize(
    ("durability", "error", "ops", "least", "drops"),
    [
        ("fsync", ENOSPC, None, 10, False),
        ("fsync", EIO, None, 10, False),
        ("fsync", EIO, frozenset({"fsync", "fsync_dir"}), 10, False),
        # A failed fsync that drops the writes it covered, as Linux does: what it covered
        # never reaches the disk, whatever the queue does next.
        ("fsync", EIO, frozenset({"fsync"}), 10, True),
        ("fsync", EIO, frozenset({"read", "listdir", "exists", "is_dir", "size"}), 10, False),
        ("flush", ENOSPC, None, 10, False),
        ("flush", EIO, frozenset({"fsync", "fsync_dir"}), 10, False),
        ("flush", EIO, frozenset({"fsync"}), 5, True),
        # A filled chunk is written back early: once per chunk the workload fills.
        ("flush", EIO, frozenset({"write_back"}), 2, False),
    ],
    ids=["fsync-ENOSPC", "fsync-EIO", "fsync-failed-fsync", "fsync-failed-fsync-drops-writes",
         "fsync-EIO-on-read", "flush-ENOSPC", "flush-failed-fsync",
         "flush-failed-fsync-drops-writes", "flush-failed-write-back"],
)
def test_a_failure_at_any_operation_loses_nothing_acknowledged(
    durability: Durability, error: OSError, ops: frozenset[str] | None, least: int, drops: bool
) -> None:
    open_queue = opener(durability)
    states = full = 0
    for after in itertools.count():
        disk = SimulatedDisk()
        disk.fail(after=after, error=error, ops=ops, drops_writes=drops)
        expected = Expected()
        raised, refused_puts = run_until_failure(disk, open_queue, expected)
        full += refused_puts
        if disk.armed:
            break  # the workload made fewer matching calls: every one of them failed once
        if raised is not None:
            assert isinstance(raised, QueueBrokenError), (after, raised)  # never raw
            cause = raised.__cause__
            assert isinstance(cause, OSError) and cause.errno == error.errno, (after, raised)
            assert str(error.strerror) in str(raised)
        else:  # a full disk the queue went on through: a refused put or a put-off checkpoint
            assert error.errno == errno.ENOSPC, after
        # Reopened on the disk as it is (the broken queue superseded, never closed), and on
        # every state a power loss now could leave.
        failed = disk.copy()
        check_state(disk, open_queue, expected, strong=True, then=True)
        for state in failed.crash_states(POWER_LOSS):
            check_state(state, open_queue, expected, strong=durability == "fsync", then=True)
            states += 1
    assert after >= least  # the workload made many matching calls, each failed in turn
    assert states > after
    assert (full > 0) == (error.errno == errno.ENOSPC and ops is None)
