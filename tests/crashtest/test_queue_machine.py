"""The real Queue, crashed anywhere, against the contract (a CrashMachine).

Rules: put, get, task_done, get_delivery + ack, close/reopen, and crashes inside any of
them (after any number of their file operations, a write possibly torn) or between them,
under both durability modes and both persistence models, with chunks of 1-3 items and a
checkpoint at every chunk boundary. After every crash the queue is reopened on a drawn crash
state and everything it holds is checked against the history.
"""

from __future__ import annotations

from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from crashtest.queue_model import PATH, Expected, check_recovered, covered, small_policy
from pqueue import Delivery, Queue
from pqueue.core.state import Durability
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    CrashMachine,
    PersistenceModel,
    SimulatedDisk,
)


class QueueMachine(CrashMachine):
    """pqueue.Queue beside a model: ``waiting`` (items to be got, in order), ``outstanding``
    (got with get(), not acknowledged, oldest first), ``handles`` (got with
    get_delivery()), and the history the contract is checked against."""

    def __init__(self) -> None:
        super().__init__()
        self.durability: Durability = "fsync"
        self.chunksize = 1
        self.q: Queue[int] | None = None
        self.next_item = 0
        self.history = Expected()
        self.waiting: list[int] = []
        self.outstanding: deque[int] = deque()
        self.handles: list[Delivery[int]] = []

    @initialize(
        durability=st.sampled_from(["fsync", "flush"]),
        model=st.sampled_from([POWER_LOSS, PROCESS_CRASH]),
        chunksize=st.integers(min_value=1, max_value=3),
    )
    def start(self, durability: Durability, model: PersistenceModel, chunksize: int) -> None:
        self.durability, self.model, self.chunksize = durability, model, chunksize
        self.open(self.disk)

    def open(self, disk: SimulatedDisk) -> None:
        self.disk = disk
        self.q = Queue(
            PATH, chunksize=self.chunksize, durability=self.durability, fs=disk,
            policy=small_policy(self.durability),
        )

    @property
    def queue(self) -> Queue[int]:
        assert self.q is not None
        return self.q

    def recovered(self) -> None:
        """Everything the reopened queue holds, in order, against the history; then the
        model restarts from what survived (got again and left unacknowledged, reopened)."""
        q = self.queue
        size = q.qsize()
        items = [q.get() for _ in range(size)]
        check_recovered(items, self.history, covered(self.durability, self.model))
        q.close()
        self.open(self.disk)  # nothing was acknowledged: all of it comes back
        self.history = Expected(put=list(items))
        self.waiting = list(items)
        self.outstanding.clear()
        self.handles.clear()

    @rule(data=st.data())
    def put(self, data: st.DataObject) -> None:
        item = self.next_item
        self.next_item += 1
        self.history.maybe_put = {item}
        if self.attempt(lambda: self.queue.put(item), data):
            self.history.put.append(item)
            self.waiting.append(item)
        self.history.maybe_put = set()

    @precondition(lambda self: self.waiting)
    @rule()
    def get(self) -> None:
        item = self.queue.get(timeout=0)
        assert item == self.waiting.pop(0), "FIFO: the oldest waiting item comes first"
        self.outstanding.append(item)

    @precondition(lambda self: self.waiting)
    @rule()
    def get_delivery(self) -> None:
        delivery = self.queue.get_delivery(block=False)
        assert delivery.item == self.waiting.pop(0)
        self.handles.append(delivery)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data())
    def task_done(self, data: st.DataObject) -> None:
        item = self.outstanding[0]
        self.history.maybe_acked = {item}
        if self.attempt(self.queue.task_done, data):
            self.outstanding.popleft()
            self.history.acked.add(item)
        self.history.maybe_acked = set()

    @precondition(lambda self: self.handles)
    @rule(which=st.integers(min_value=0), data=st.data())
    def ack(self, which: int, data: st.DataObject) -> None:
        delivery = self.handles[which % len(self.handles)]
        self.history.maybe_acked = {delivery.item}
        if self.attempt(delivery.ack, data):
            self.handles.remove(delivery)
            self.history.acked.add(delivery.item)
        self.history.maybe_acked = set()

    @rule(data=st.data())
    def reopen(self, data: st.DataObject) -> None:
        def close_and_open() -> None:
            self.queue.close()
            self.open(self.disk)

        if self.attempt(close_and_open, data):
            back = [*self.outstanding, *(d.item for d in self.handles)]
            self.waiting = sorted(back + self.waiting)
            self.outstanding.clear()
            self.handles.clear()

    @invariant()
    def sizes_match(self) -> None:
        if self.q is not None:
            assert self.queue.qsize() == len(self.waiting)
            assert self.queue.unfinished_tasks == (
                len(self.waiting) + len(self.outstanding) + len(self.handles)
            )


QueueMachine.TestCase.settings = settings(QueueMachine.TestCase.settings, stateful_step_count=30)
TestQueueMachine = QueueMachine.TestCase
