"""Two processes sharing a queue, driven by Hypothesis: the stateful test beyond the sweeps.

The exhaustive sweep (``test_shared_crash.py``) kills one of two processes at every point of
every short workload. This machine goes further in length: Hypothesis picks any sequence of
puts, gets, acknowledgements and nacks by either of two processes on one ``SimulatedDisk``,
kills a process at once or in the middle of its next operation (after k of its file
operations), replaces it with a new process, and now and then cuts the power (a crash state
of the whole disk, drawn among those POWER_LOSS allows, after which both processes start
again). Every delivery is checked against the model of what the processes saw (the same
model as the sweep's): nothing invented, nothing acknowledged delivered again, one live
holder per item, first deliveries in put order with given-back items first; ``Empty`` only
when no item is certainly waiting; at the end, a drain delivers everything not acknowledged.
"""

from __future__ import annotations

import contextlib

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crashtest.exhaustive import TALLY
from crashtest.queue_model import PATH, small_policy
from crashtest.test_shared_crash import Model, operate
from pqueue import Delivery, Empty, Queue
from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk, SimulatedProcess

PROCESSES = ("a", "b")
process = st.sampled_from(PROCESSES)


class TwoProcesses(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.disk = SimulatedDisk()
        self.model = Model()
        self.generation = 0
        self.fs: dict[str, SimulatedProcess] = {}
        self.queues: dict[str, Queue[int] | None] = {}
        self.held: dict[str, list[Delivery[int]]] = {}
        self.steps = 0
        for name in PROCESSES:
            self._start(name)

    # --- processes ------------------------------------------------------------------------

    def _start(self, name: str) -> None:
        self.generation += 1
        fs = self.disk.process(f"{name}{self.generation}")
        self.fs[name] = fs
        self.held[name] = []
        try:
            self.queues[name] = Queue(PATH, chunksize=2, fs=fs, policy=small_policy("fsync"))
        except SimulatedCrash:
            self.queues[name] = None  # killed while opening (an armed kill): start again
            self.model.died(name)

    def _died(self, name: str) -> None:
        TALLY.count("two processes, Hypothesis machine: a process killed", 1)
        self.fs[name].kill()
        self.model.died(name)
        self._start(name)

    def _live(self, name: str) -> Queue[int]:
        q = self.queues[name]
        if q is None:
            self._start(name)
            q = self.queues[name]
        assert q is not None
        return q

    # --- operations -------------------------------------------------------------------------

    def _do(self, name: str, op: str) -> None:
        """Run ``op`` as process ``name``; a ``SimulatedCrash`` (an armed kill) kills it."""
        q = self._live(name)
        self.steps += 1
        try:
            operate(q, name, op, self.model, self.held[name], f"step {self.steps}: {name}:{op}")
        except SimulatedCrash:
            self._died(name)

    @rule(name=process, op=st.sampled_from(["put", "put", "get", "get", "ack", "nack"]))
    def operate(self, name: str, op: str) -> None:
        self._do(name, op)

    @rule(name=process, op=st.sampled_from(["put", "get", "ack", "nack"]),
          after=st.integers(0, 12))
    def killed_during(self, name: str, op: str, after: int) -> None:
        """Kill ``name`` after ``after`` file operations of its next operation."""
        self._live(name)
        self.fs[name].kill_after(after)
        self._do(name, op)
        if not self.fs[name].killed:
            self.fs[name].kill_after(None)

    @rule(name=process)
    def kill(self, name: str) -> None:
        self._died(name)

    @precondition(lambda self: self.steps > 0)
    @rule(data=st.data())
    def power_loss(self, data: st.DataObject) -> None:
        """The machine loses power: one crash state of the disk, both processes anew."""
        count = self.disk.count_crash_states(POWER_LOSS)
        pick = data.draw(st.integers(0, count - 1), label="crash state")
        for i, state in enumerate(self.disk.crash_states(POWER_LOSS)):
            if i == pick:
                self.disk = state
                break
        TALLY.count("two processes, Hypothesis machine: power loss", 1)
        model = self.model
        # What a power loss may take: nothing acknowledged as put or as done (fsync mode).
        model.held.clear()
        for name in PROCESSES:
            self._start(name)

    @invariant()
    def one_holder_per_item(self) -> None:
        held = [d.item for ds in self.held.values() for d in ds]
        assert len(held) == len(set(held)), f"one item held twice: {sorted(held)}"

    def teardown(self) -> None:
        """Drain: everything put and not acknowledged comes out, once, in the end."""
        model = self.model
        q = self._live("a")
        with contextlib.suppress(SimulatedCrash):
            for d in self.held["a"]:
                d.ack()
                model.acked.add(d.item)
                model.held.pop(d.item, None)
        self._died("b")  # what it held comes back to "a"
        q = self._live("a")
        while True:
            try:
                d = q.get_delivery(block=False)
            except Empty:
                model.check_empty("drain")
                break
            model.check_delivery("a", d.item, "drain")
            d.ack()
            model.acked.add(d.item)
        lost = set(model.put) - model.acked - model.maybe_acked
        assert not lost, f"drain: acknowledged puts lost: {sorted(lost)}"


TwoProcesses.TestCase.settings = settings(
    max_examples=2 * (settings.default.max_examples if settings.default else 60),
    stateful_step_count=50, deadline=None,
)
test_two_processes_machine = TwoProcesses.TestCase
