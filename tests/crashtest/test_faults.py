"""ENOSPC, EIO and a failed fsync at any operation: a clear error, the queue refuses every
call until reopened, and after reopening (on the disk as it is, and on every state a power
loss could leave) nothing acknowledged is lost and nothing acknowledged comes back."""

from __future__ import annotations

import errno

import pytest

from crashtest.queue_model import PATH, Expected, check_recovered, small_policy
from pqueue import PQueueError, Queue, QueueBrokenError, QueueClosedError
from pqueue.crashtest import POWER_LOSS, SimulatedDisk

WORKLOAD = ("put", "put", "put", "get", "get", "ack", "put", "reopen", "get", "get", "ack", "ack")


def open_queue(disk: SimulatedDisk) -> Queue[int]:
    return Queue(PATH, chunksize=2, fs=disk, policy=small_policy("fsync"))


def run_until_failure(disk: SimulatedDisk, expected: Expected) -> BaseException | None:
    """Run the workload; return the first error (recording what returned), or None."""
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
        for call in (lambda: q.put(99), q.get_nowait, q.task_done, q.qsize):
            with pytest.raises(refusal):
                call()
        q.close()
        return exc
    return None


@pytest.mark.parametrize(
    ("error", "ops"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), None),
        (OSError(errno.EIO, "Input/output error"), None),
        (OSError(errno.EIO, "Input/output error"), frozenset({"fsync", "fsync_dir"})),
    ],
    ids=["ENOSPC", "EIO", "failed-fsync"],
)
def test_a_failure_at_any_operation_loses_nothing_acknowledged(
    error: OSError, ops: frozenset[str] | None
) -> None:
    probe = SimulatedDisk()
    assert run_until_failure(probe, Expected()) is None
    failures = 0
    for after in range(probe.operations + 40):
        disk = SimulatedDisk()
        disk.fail(after=after, error=error, ops=ops)
        expected = Expected()
        raised = run_until_failure(disk, expected)
        if raised is None:
            continue
        failures += 1
        cause = raised.__cause__ if isinstance(raised, QueueBrokenError) else raised
        assert isinstance(cause, OSError) and cause.errno == error.errno, (after, raised)
        assert str(error.strerror) in str(raised)
        for state in [disk.copy(), *disk.crash_states(POWER_LOSS)]:
            q = open_queue(state)
            items = [q.get() for _ in range(q.qsize())]
            check_recovered(items, expected, strong=True)
    assert failures > 10  # the failure hit many different operations
