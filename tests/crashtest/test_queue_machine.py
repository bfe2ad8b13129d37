"""The real Queue, crashed anywhere, against the contract (a CrashMachine).

Rules: put, get, get_delivery, task_done, Delivery.ack (in any order), the batch forms
put_many, get_many, task_done(n) and ack_many, close/reopen, and
crashes inside any of them (after any number of their file operations, a write possibly
torn) or between them, under both durability modes and both persistence models, with chunks
of 1-3 items (small ones, or 1500-byte ones spanning disk sectors) and a checkpoint at every
chunk boundary. After every crash the queue is
reopened on a drawn crash state (the reopening itself possibly crashing) and everything it
holds is checked against the history (``queue_model.check_recovered``: DESIGN.md section 3,
or in flush mode under POWER_LOSS the weaker promise), and a batch put by a put_many the
crash interrupted must come back whole or not at all. Between crashes, every get must
deliver what the model says and ``qsize()``/``unfinished_tasks`` must match it.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from crashtest.exhaustive import drain, opener
from crashtest.queue_model import Expected, check_recovered, covered
from pqueue import Delivery, Empty, Queue
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
    get_delivery(), not acknowledged), and the history the contract is checked against."""

    def __init__(self) -> None:
        super().__init__()
        self.durability: Durability = "fsync"
        self.opener = opener("fsync", 1)
        self.q: Queue[int] | None = None
        self.next_item = 0
        self.history = Expected()
        self.waiting: deque[int] = deque()
        self.outstanding: deque[int] = deque()
        self.handles: list[Delivery[int]] = []
        self.batch: set[int] = set()  # the items of a put_many in flight

    @initialize(
        durability=st.sampled_from(["fsync", "flush"]),
        model=st.sampled_from([POWER_LOSS, PROCESS_CRASH]),
        chunksize=st.integers(min_value=1, max_value=3),
        item_size=st.sampled_from([0, 1500]),
    )
    def start(
        self, durability: Durability, model: PersistenceModel, chunksize: int, item_size: int
    ) -> None:
        self.durability, self.model = durability, model
        self.opener = opener(durability, chunksize, item_size)
        self.open(self.disk)

    def open(self, disk: SimulatedDisk) -> None:
        self.disk = disk
        self.q = self.opener(disk)

    @property
    def queue(self) -> Queue[int]:
        assert self.q is not None
        return self.q

    def recovered(self) -> None:
        """Everything the reopened queue holds, in order, against the history (``drain``
        also checks ``qsize()`` counted exactly those); then the model restarts from what
        survived (got again and left unacknowledged, reopened: all of it comes back)."""
        q = self.queue
        items = drain(q)
        check_recovered(items, self.history, covered(self.durability, self.model))
        kept = self.batch.intersection(items)
        assert kept in (set(), self.batch), (
            f"put_many({sorted(self.batch)}) was cut short by a crash: all of the batch or "
            f"none of it may come back, found {sorted(kept)}"
        )
        q.close()
        self.open(self.disk)
        self.history = Expected(put=list(items))
        self.waiting = deque(items)
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

    @rule(count=st.integers(min_value=1, max_value=4), data=st.data())
    def put_many(self, count: int, data: st.DataObject) -> None:
        items = list(range(self.next_item, self.next_item + count))
        self.next_item += count
        self.history.maybe_put = self.batch = set(items)
        if self.attempt(lambda: self.queue.put_many(items), data):
            self.history.put.extend(items)
            self.waiting.extend(items)
        self.history.maybe_put = self.batch = set()

    @rule(most=st.integers(min_value=1, max_value=3))
    def get_many(self, most: int) -> None:
        if not self.waiting:
            with pytest.raises(Empty):
                self.queue.get_many(most, block=False)
            return
        got = self.queue.get_many(most, block=False)
        assert got == [self.waiting.popleft() for _ in range(min(most, len(self.waiting)))], (
            "FIFO: the oldest waiting items come first, as many as wait up to the most asked"
        )
        self.outstanding.extend(got)

    @rule()
    def get(self) -> None:
        if not self.waiting:
            with pytest.raises(Empty):
                self.queue.get(timeout=0)
            return
        item = self.queue.get(timeout=0)
        assert item == self.waiting.popleft(), "FIFO: the oldest waiting item comes first"
        self.outstanding.append(item)

    @rule()
    def get_delivery(self) -> None:
        if not self.waiting:
            with pytest.raises(Empty):
                self.queue.get_delivery(block=False)
            return
        delivery = self.queue.get_delivery(block=False)
        assert delivery.item == self.waiting.popleft(), "FIFO"
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

    @precondition(lambda self: len(self.outstanding) > 1)
    @rule(n=st.integers(min_value=2, max_value=4), data=st.data())
    def task_done_many(self, n: int, data: st.DataObject) -> None:
        n = min(n, len(self.outstanding))
        items = [self.outstanding[i] for i in range(n)]
        self.history.maybe_acked = set(items)
        if self.attempt(lambda: self.queue.task_done(n), data):
            for _ in items:
                self.outstanding.popleft()
            self.history.acked.update(items)
        self.history.maybe_acked = set()

    @precondition(lambda self: len(self.handles) > 1)
    @rule(data=st.data())
    def ack_many(self, data: st.DataObject) -> None:
        which = data.draw(st.lists(
            st.integers(0, len(self.handles) - 1), min_size=2, max_size=4, unique=True
        ), label="deliveries acknowledged together")
        chosen = [self.handles[i] for i in which]
        self.history.maybe_acked = {d.item for d in chosen}
        if self.attempt(lambda: self.queue.ack_many(chosen), data):
            for delivery in chosen:
                self.handles.remove(delivery)
            self.history.acked.update(d.item for d in chosen)
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
            self.waiting = deque(sorted([*back, *self.waiting]))
            self.outstanding.clear()
            self.handles.clear()

    @invariant()
    def sizes_match(self) -> None:
        if self.q is not None:
            assert self.queue.qsize() == len(self.waiting)
            assert self.queue.unfinished_tasks == (
                len(self.waiting) + len(self.outstanding) + len(self.handles)
            )


QueueMachine.TestCase.settings = settings(
    QueueMachine.TestCase.settings,
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestQueueMachine = QueueMachine.TestCase
