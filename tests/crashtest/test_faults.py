"""ENOSPC, EIO and a failed fsync at any operation: a clear error, the queue refuses every
call until reopened, and after reopening (on the disk as it is, and on every state a power
loss could leave) nothing acknowledged is lost and nothing acknowledged comes back.

The sweep makes the first, second, ... matching file-system call of a workload fail, until
the workload runs through without meeting the fault: so every call was hit once.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable

import pytest

from crashtest.exhaustive import check_state
from crashtest.queue_model import PATH, Expected, small_policy
from pqueue import PQueueError, Queue, QueueBrokenError, QueueClosedError
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
) -> BaseException | None:
    """Run the workload; return the first error (recording what returned), or None. After
    an error, check the queue refuses every call."""
    item = 0
    got: list[int] = []
    refusal: type[PQueueError] = QueueBrokenError  # what a queue refuses calls with after it
    try:
        q = open_queue(disk)
    except OSError as exc:  # while opening, the OSError itself
        return exc
    try:
        for op in WORKLOAD:
            if op == "put":
                expected.maybe_put = {item}
                q.put(item)
                expected.put.append(item)
                expected.maybe_put = set()
                item += 1
            elif op == "get":
                got.append(q.get(timeout=0))
            elif op == "ack":
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
        return exc
    return None


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
    states = 0
    for after in itertools.count():
        disk = SimulatedDisk()
        disk.fail(after=after, error=error, ops=ops, drops_writes=drops)
        expected = Expected()
        raised = run_until_failure(disk, open_queue, expected)
        if raised is None:
            break  # the workload made fewer matching calls: every one of them failed once
        cause = raised.__cause__ if isinstance(raised, QueueBrokenError) else raised
        assert isinstance(cause, OSError) and cause.errno == error.errno, (after, raised)
        assert str(error.strerror) in str(raised)
        # Reopened on the disk as it is (the broken queue superseded, never closed), and on
        # every state a power loss now could leave.
        failed = disk.copy()
        check_state(disk, open_queue, expected, strong=True, then=True)
        for state in failed.crash_states(POWER_LOSS):
            check_state(state, open_queue, expected, strong=durability == "fsync", then=True)
            states += 1
    assert after >= least  # the workload made many matching calls, each failed in turn
    assert states > after
