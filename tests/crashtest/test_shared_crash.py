"""Two processes on one queue, crashed at every point: the contract of a shared queue.

Two Queue objects run on one ``SimulatedDisk`` as two processes (``disk.process()``: each
with its own locks, which vanish when it is killed). A workload is a sequence of operations,
each by one process: ``put``, ``get`` (``get_delivery`` without blocking), ``ack`` (of its
oldest delivery), ``nack`` (of its oldest delivery) and ``purge``. For every workload, every
state-changing file operation of either process (its open included) is a kill point: the
process is killed there (``kill_after``), the other goes on with its part of the workload and
then drains the queue. Every delivery is checked against a model of the history as the
processes saw it:

- nothing invented; nothing acknowledged delivered again;
- never one item held by two live consumers;
- FIFO: each delivery is the oldest item that may be delivered (items given back, by a
  ``nack`` or by the death of their holder, are older than every item never delivered, so
  they come first, in put order);
- ``Empty`` only when no item is certainly waiting; the drain delivers everything
  acknowledged as put and not acknowledged as done.

The workloads: every one of up to three operations, every one of five that starts with
a put by each process, every one of five with a purge among them, and acknowledgements that
checkpoint. Then the whole machine loses power there (fsync mode): every crash state of the
disk is reopened by a new process and drained, and checked as a single queue's recovery
is.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Iterator, Sequence

import attrs
import pytest

from crashtest.exhaustive import TALLY
from crashtest.queue_model import PATH, small_policy
from pqueue import Delivery, Empty, Queue
from pqueue.core.state import Durability
from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk, SimulatedProcess

Op = tuple[str, str]  # (process, operation)
PROCESSES = ("a", "b")
ALPHABET: tuple[Op, ...] = tuple(
    (p, op) for p in PROCESSES for op in ("put", "get", "ack", "nack")
)


@attrs.define
class Model:
    """The history as the two processes saw it."""

    next_item: int = 0
    put: list[int] = attrs.Factory(list)  # puts that returned
    maybe_put: set[int] = attrs.Factory(set)  # puts in flight when their process died
    acked: set[int] = attrs.Factory(set)  # acknowledgements that returned
    maybe_acked: set[int] = attrs.Factory(set)  # in flight when their process died
    held: dict[int, str] = attrs.Factory(dict)  # item -> the live process holding it

    def waiting(self) -> set[int]:
        """Items certainly waiting to be delivered now."""
        return set(self.put) - self.acked - self.maybe_acked - set(self.held)

    def check_delivery(self, process: str, item: int, where: str) -> None:
        assert item in self.put or item in self.maybe_put, f"{where}: invented item {item}"
        assert item not in self.acked, f"{where}: item {item} acknowledged, yet delivered again"
        holder = self.held.get(item)
        assert holder is None, f"{where}: item {item} delivered to {process}, held by {holder}"
        older = sorted(i for i in self.waiting() if i < item)
        assert not older, f"{where}: item {item} delivered before older waiting {older}"

    def check_empty(self, where: str) -> None:
        waiting = sorted(self.waiting())
        assert not waiting, f"{where}: Empty, yet items wait: {waiting}"

    def died(self, process: str) -> None:
        for item in [i for i, p in self.held.items() if p == process]:
            del self.held[item]


def operate(q: Queue[int], name: str, op: str, model: Model, deliveries: list[Delivery[int]],
            where: str) -> None:
    """Run ``op`` (put, get, ack or nack of the oldest delivery) as process ``name`` and
    check it against ``model``, which it brings up to date; ``SimulatedCrash`` (the process
    was killed) is raised once the model knows what may have happened."""
    if op == "put":
        item = model.next_item
        model.next_item += 1
        try:
            q.put(item)
        except SimulatedCrash:
            model.maybe_put.add(item)
            raise
        model.put.append(item)
    elif op == "get":
        try:
            d = q.get_delivery(block=False)
        except Empty:
            model.check_empty(where)
            return
        model.check_delivery(name, d.item, where)
        model.held[d.item] = name
        deliveries.append(d)
    elif op == "purge":
        dropped = model.waiting()
        try:
            q.purge()
        except SimulatedCrash:
            model.maybe_acked |= dropped
            raise
        model.acked |= dropped
        # Puts in flight when their process died may have been dropped too.
        model.maybe_acked |= model.maybe_put - model.acked
    elif deliveries:
        d = deliveries[0]
        try:
            d.ack() if op == "ack" else d.nack()
        except SimulatedCrash:
            if op == "ack":
                model.maybe_acked.add(d.item)
            raise
        deliveries.pop(0)
        del model.held[d.item]
        if op == "ack":
            model.acked.add(d.item)


@attrs.define
class Participant:
    name: str
    fs: SimulatedProcess
    queue: Queue[int] | None = None
    deliveries: list[Delivery[int]] = attrs.Factory(list)
    dead: bool = False


def open_queue(
    fs: SimulatedProcess, durability: Durability, chunksize: int, every: int = 1
) -> Queue[int]:
    return Queue(
        PATH, chunksize=chunksize, durability=durability, fs=fs,
        policy=small_policy(durability, every=every),
    )


def run(
    workload: Sequence[Op], durability: Durability, chunksize: int,
    kill: tuple[str, int] | None, every: int = 1,
) -> tuple[SimulatedDisk, Model]:
    """Run ``workload``, killing process ``kill[0]`` after ``kill[1]`` of its file
    operations; the survivors then drain. Returns the disk and the model as they were at
    the kill (the final ones when it did not happen)."""
    disk = SimulatedDisk()
    model = Model()
    procs = {name: Participant(name, disk.process(name)) for name in PROCESSES}
    at_kill: tuple[SimulatedDisk, Model] | None = None
    if kill is not None:
        procs[kill[0]].fs.kill_after(kill[1])

    def killed(p: Participant) -> None:
        nonlocal at_kill
        p.dead = True
        model.died(p.name)
        p.deliveries.clear()
        if at_kill is None:
            at_kill = disk.copy(), copy.deepcopy(model)

    def live(p: Participant) -> bool:
        if p.dead:
            return False
        if p.queue is None:
            try:
                p.queue = open_queue(p.fs, durability, chunksize, every)
            except SimulatedCrash:
                killed(p)
                return False
        return True

    for name in PROCESSES:
        live(procs[name])
    for step, (name, op) in enumerate(workload):
        p = procs[name]
        if not live(p):
            continue
        assert p.queue is not None
        where = f"step {step} {name}:{op} of {list(workload)}, kill {kill}"
        try:
            operate(p.queue, name, op, model, p.deliveries, where)
        except SimulatedCrash:
            killed(p)
    # The survivors drain, and give back nothing: every item ends acknowledged.
    for name in PROCESSES:
        p = procs[name]
        if not live(p):
            continue
        assert p.queue is not None
        where = f"drain by {name} after {list(workload)}, kill {kill}"
        def ack(d: Delivery[int]) -> None:
            try:
                d.ack()
            except SimulatedCrash:
                model.maybe_acked.add(d.item)
                raise
            model.held.pop(d.item, None)
            model.acked.add(d.item)

        try:
            while p.deliveries:
                ack(p.deliveries[0])
                p.deliveries.pop(0)
            while True:
                try:
                    d = p.queue.get_delivery(block=False)
                except Empty:
                    model.check_empty(where)
                    break
                model.check_delivery(name, d.item, where)
                model.held[d.item] = name
                ack(d)
        except SimulatedCrash:  # killed while draining: the other one drains
            killed(p)
    for p in procs.values():
        if p.queue is not None and not p.dead:
            try:
                p.queue.close()
            except SimulatedCrash:
                killed(p)
    if at_kill is None:
        return disk.copy(), model
    return at_kill


def check_power_loss(disk: SimulatedDisk, model: Model, durability: Durability,
                     chunksize: int, where: str) -> int:
    """Reopen every crash state of ``disk`` after a power loss and check the drain."""
    states = 0
    for state in disk.crash_states(POWER_LOSS):
        states += 1
        q = open_queue(state.process("after"), durability, chunksize)
        items = []
        while True:
            try:
                d = q.get_delivery(block=False)
            except Empty:
                break
            items.append(d.item)
            d.ack()
        q.close()
        at = f"{where}, power loss state {states}"
        assert items == sorted(items), f"{at}: out of put order: {items}"
        invented = set(items) - set(model.put) - model.maybe_put
        assert not invented, f"{at}: invented {sorted(invented)}"
        back = set(items) & model.acked
        assert not back, f"{at}: acknowledged, yet delivered again: {sorted(back)}"
        lost = set(model.put) - model.acked - model.maybe_acked - set(items)
        assert not lost, f"{at}: acknowledged puts lost: {sorted(lost)}"
    return states


def workloads(length: int) -> Iterator[tuple[Op, ...]]:
    for n in range(1, length + 1):
        yield from itertools.product(ALPHABET, repeat=n)


def operations(
    workload: Sequence[Op], durability: Durability, chunksize: int, every: int = 1
) -> dict[str, int]:
    """How many file operations each process makes in ``workload`` (no kill)."""
    disk = SimulatedDisk()
    procs = {name: disk.process(name) for name in PROCESSES}
    queues = {
        name: open_queue(procs[name], durability, chunksize, every) for name in PROCESSES
    }
    held: dict[str, list[Delivery[int]]] = {name: [] for name in PROCESSES}
    counter = itertools.count()
    for name, op in workload:
        q = queues[name]
        if op == "put":
            q.put(next(counter))
        elif op == "get":
            with contextlib.suppress(Empty):
                held[name].append(q.get_delivery(block=False))
        elif op == "purge":
            q.purge()
        elif held[name]:
            d = held[name].pop(0)
            d.ack() if op == "ack" else d.nack()
    for name in PROCESSES:
        for d in held[name]:
            d.ack()
        held[name].clear()
        queues[name].close()
    return {name: procs[name].operations for name in PROCESSES}


@pytest.mark.parametrize(("durability", "chunksize", "length"), [
    ("fsync", 1, 3), ("fsync", 2, 2), ("flush", 2, 2),
])
def test_two_processes_killed_at_every_point(
    durability: Durability, chunksize: int, length: int
) -> None:
    start = time.perf_counter()
    runs = 0
    states = 0
    for workload in workloads(length):
        ops = operations(workload, durability, chunksize)
        for name in PROCESSES:
            for n in range(ops[name] + 1):
                disk, model = run(workload, durability, chunksize, (name, n))
                runs += 1
                if durability == "fsync" and n % 3 == 0:
                    states += check_power_loss(
                        disk, model, durability, chunksize,
                        f"{list(workload)} kill {name} after {n}",
                    )
    TALLY.count(f"two processes, one killed ({durability}, chunksize {chunksize})", runs,
                time.perf_counter() - start)
    if states:
        TALLY.count(f"two processes, then power loss ({durability})", states)
    assert runs > 1000 and (states > 1000 or durability != "fsync")


# Workloads of five operations: one put by each process, then every sequence of three gets,
# acknowledgements and nacks (the two items are delivered, handed back and forth, and
# acknowledged in every order the two processes can make).
PUTS: tuple[Op, ...] = (("a", "put"), ("b", "put"))
AFTER_PUTS: tuple[Op, ...] = tuple((p, op) for p in PROCESSES for op in ("get", "ack", "nack"))


def sweep(workloads: Iterator[tuple[Op, ...]], label: str) -> tuple[int, int]:
    """Kill either process at every point of every workload (fsync mode, one item per chunk),
    with a power loss after every fifth kill point: (runs, power-loss states)."""
    start = time.perf_counter()
    runs = states = 0
    for workload in workloads:
        ops = operations(workload, "fsync", 1)
        for name in PROCESSES:
            for n in range(ops[name] + 1):
                disk, model = run(workload, "fsync", 1, (name, n))
                runs += 1
                if n % 5 == 0:
                    states += check_power_loss(
                        disk, model, "fsync", 1, f"{list(workload)} kill {name} after {n}",
                    )
    TALLY.count(f"two processes, {label}, one killed (fsync)", runs,
                time.perf_counter() - start)
    TALLY.count(f"two processes, {label}, then power loss (fsync)", states)
    return runs, states


def test_two_processes_killed_at_every_point_of_five_operations() -> None:
    workloads = (PUTS + suffix for suffix in itertools.product(AFTER_PUTS, repeat=3))
    runs, states = sweep(workloads, "five operations")
    assert runs > 10000 and states > 10000


def with_a_purge() -> Iterator[tuple[Op, ...]]:
    for position in range(3):
        for pair in itertools.product(AFTER_PUTS, repeat=2):
            suffix = list(pair)
            suffix.insert(position, ("a", "purge"))
            yield PUTS + tuple(suffix)


def test_two_processes_killed_at_every_point_of_five_operations_with_a_purge() -> None:
    """A purge by one process among a put by each and two more gets, acknowledgements and
    nacks: the other's deliveries stay, what waited never comes back once it returned."""
    runs, states = sweep(with_a_purge(), "five operations with a purge")
    assert runs > 3000 and states > 3000


def test_a_checkpoint_made_by_an_acknowledgement_killed_at_every_point() -> None:
    """An acknowledgement that finds the ack log full (three records here, and no
    checkpoint at chunk crossings) checkpoints, moving the tail past consumed chunk files,
    which the checkpoint deletes: the process is killed at every point of it, and the other
    one, adopting the half-made checkpoint, must make it again from the state it leads to,
    never from the one before (whose chunk files may be gone already)."""
    workload: tuple[Op, ...] = (
        *(("a", "put") for _ in range(5)), *(("b", "get") for _ in range(5)),
        *(("b", "ack") for _ in range(5)),
    )
    ops = operations(workload, "fsync", 1, every=100)
    runs = 0
    for n in range(ops["b"] + 1):
        run(workload, "fsync", 1, ("b", n), every=100)
        runs += 1
    TALLY.count("two processes, acknowledgements that checkpoint, one killed (fsync)", runs)
    assert runs > 30
