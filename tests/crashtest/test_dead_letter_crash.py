"""Moves to the dead letters, crashed at every point: an item moves exactly once.

Two processes share a queue opened with ``max_attempts=1`` on one ``SimulatedDisk``: every
item given back (``nack``, or the death of its holder) has had its one attempt and is moved
to ``q.dead_letters`` by the next ``get`` that reaches it. For every workload (two puts,
then every sequence of gets, nacks and acks by either process up to a length), either
process is killed at every state-changing file operation it makes, its open, the moves and
the drain included. Then:

- the survivor goes on, drains the queue (acknowledging what it gets, which moves every
  item given back) and then the dead-letter queue;
- the disk as the kill left it is reopened by a new process, alone (every process died:
  the next open recovers from the files, finding the dead letters of moves cut short);
- (fsync) every power-loss state of that moment is reopened and drained likewise.

Checked throughout: no item is delivered twice from the queue (one attempt each, in this
boot); nothing acknowledged comes back; nothing invented. At the end of each drain: no item
is in the dead letters twice, or both there and acknowledged (or delivered again); every
item put is acknowledged or a dead letter, with ``attempts == 1``. After a power loss the
attempt counts start again (``shared`` is not trusted after a new boot), so an item given
back may be delivered once more instead of moved; it is still never in both places.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator, Sequence

import attrs
import pytest

from crashtest.exhaustive import TALLY
from crashtest.queue_model import PATH, small_policy
from pqueue import DeadLetter, Delivery, Empty, Queue
from pqueue.core.state import Durability
from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk, SimulatedProcess

Op = tuple[str, str]
PROCESSES = ("a", "b")
PREFIX: tuple[Op, ...] = (("a", "put"), ("a", "put"))
ALPHABET: tuple[Op, ...] = (
    ("a", "get"), ("b", "get"), ("a", "nack"), ("b", "nack"), ("b", "ack"),
)


@attrs.define
class Model:
    """What the processes saw."""

    next_item: int = 0
    put: list[int] = attrs.Factory(list)
    maybe_put: set[int] = attrs.Factory(set)
    acked: set[int] = attrs.Factory(set)
    maybe_acked: set[int] = attrs.Factory(set)
    delivered: set[int] = attrs.Factory(set)  # delivered from the queue, in this boot
    # Dead letters got from the dead-letter queue: the item -> the seq of its record there
    # (two records of one item: moved twice), and those whose acknowledgement returned.
    letters: dict[int, int] = attrs.Factory(dict)
    dead: set[int] = attrs.Factory(set)

    def check_letter(self, letter: DeadLetter[int], record: int, where: str) -> None:
        item = letter.item
        assert (letter.attempts, letter.seq) == (1, item), f"{where}: {letter}"
        assert item in self.put or item in self.maybe_put, f"{where}: invented {letter}"
        assert item not in self.dead, f"{where}: dead letter {item} acknowledged, yet again"
        first = self.letters.setdefault(item, record)
        assert first == record, f"{where}: item {item} moved twice (records {first}, {record})"
        both = {item} & self.acked
        assert not both, f"{where}: item {item} acknowledged, and a dead letter"

    def check_delivery(self, item: int, where: str, boot_changed: bool = False) -> None:
        assert item in self.put or item in self.maybe_put, f"{where}: invented item {item}"
        assert item not in self.acked, f"{where}: item {item} acknowledged, yet delivered"
        assert boot_changed or item not in self.delivered, (
            f"{where}: item {item} delivered a second time with max_attempts=1"
        )
        assert item not in self.dead, f"{where}: item {item} delivered after it was moved"

    def check_end(self, where: str) -> None:
        """After a drain of the queue and of its dead letters."""
        items = set(self.letters)
        both = items & self.acked
        assert not both, f"{where}: acknowledged and a dead letter: {sorted(both)}"
        lost = set(self.put) - self.acked - self.maybe_acked - items
        assert not lost, f"{where}: lost {sorted(lost)}"


def open_queue(fs: SimulatedProcess, durability: Durability) -> Queue[int]:
    return Queue(PATH, chunksize=2, durability=durability, fs=fs, max_attempts=1,
                 policy=small_policy(durability))


def drain(q: Queue[int], model: Model, where: str, boot_changed: bool = False,
          held: Sequence[Delivery[int]] = ()) -> None:
    """Acknowledge ``held``, then drain the queue and its dead letters."""

    def ack(d: Delivery[int]) -> None:
        try:
            d.ack()
        except SimulatedCrash:
            model.maybe_acked.add(d.item)
            raise
        model.acked.add(d.item)

    for d in held:
        ack(d)
    while True:
        try:
            d = q.get_delivery(block=False)
        except Empty:
            break
        model.check_delivery(d.item, where, boot_changed)
        model.delivered.add(d.item)
        ack(d)
    while True:
        try:
            letter = q.dead_letters.get_delivery(block=False)
        except Empty:
            break
        model.check_letter(letter.item, letter.seq, where)
        letter.ack()
        model.dead.add(letter.item.item)


def run(workload: Sequence[Op], durability: Durability, kill: tuple[str, int] | None,
        counts: dict[str, int] | None = None) -> tuple[SimulatedDisk, Model]:
    """Run ``workload`` killing ``kill[0]`` after ``kill[1]`` file operations; the survivor
    drains. Returns the disk and model at the kill (``counts``: set to how many file
    operations each process made)."""
    disk = SimulatedDisk()
    model = Model()
    fss = {name: disk.process(name) for name in PROCESSES}
    queues: dict[str, Queue[int] | None] = dict.fromkeys(PROCESSES)
    held: dict[str, list[Delivery[int]]] = {name: [] for name in PROCESSES}
    dead: set[str] = set()
    at_kill: tuple[SimulatedDisk, Model] | None = None
    if kill is not None:
        fss[kill[0]].kill_after(kill[1])

    def killed(name: str) -> None:
        nonlocal at_kill
        dead.add(name)
        held[name].clear()
        if at_kill is None:
            at_kill = disk.copy(), copy.deepcopy(model)

    def live(name: str) -> Queue[int] | None:
        if name in dead:
            return None
        q = queues[name]
        if q is None:
            try:
                q = queues[name] = open_queue(fss[name], durability)
            except SimulatedCrash:
                killed(name)
                return None
        return q

    for name in PROCESSES:
        live(name)
    for step, (name, op) in enumerate(workload):
        q = live(name)
        if q is None:
            continue
        where = f"step {step} {name}:{op} of {list(workload)}, kill {kill}"
        try:
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
                    continue
                model.check_delivery(d.item, where)
                model.delivered.add(d.item)
                held[name].append(d)
            elif held[name]:
                d = held[name][0]
                try:
                    d.ack() if op == "ack" else d.nack()
                except SimulatedCrash:
                    if op == "ack":
                        model.maybe_acked.add(d.item)
                    raise
                held[name].pop(0)
                if op == "ack":
                    model.acked.add(d.item)
        except SimulatedCrash:
            killed(name)
    # The survivors drain; once more if one of them died draining (what it held is
    # given back then, after the other one finished).
    for _ in range(2):
        before = len(dead)
        for name in PROCESSES:
            q = live(name)
            if q is None:
                continue
            try:
                drain(q, model, f"drain by {name} after {list(workload)}, kill {kill}",
                      held=held[name])
                held[name].clear()
            except SimulatedCrash:
                killed(name)
        if len(dead) == before:
            break
    for name in PROCESSES:
        q = queues[name]
        if q is not None and name not in dead:
            try:
                q.close()
            except SimulatedCrash:
                killed(name)
    if len(dead) < len(PROCESSES):
        model.check_end(f"after the drain of {list(workload)}, kill {kill}")
    if counts is not None:
        counts.update((name, fs.operations) for name, fs in fss.items())
    return at_kill if at_kill is not None else (disk.copy(), model)


def reopen_and_check(disk: SimulatedDisk, model: Model, durability: Durability, where: str,
                     boot_changed: bool) -> None:
    """A new process opens ``disk`` alone, drains it, and checks the end."""
    model = copy.deepcopy(model)
    if boot_changed:
        model.delivered.clear()
    q = open_queue(disk.process("after"), durability)
    drain(q, model, where, boot_changed)
    q.close()
    model.check_end(where)


def workloads(length: int) -> Iterator[tuple[Op, ...]]:
    for n in range(length + 1):
        for suffix in itertools.product(ALPHABET, repeat=n):
            yield PREFIX + suffix


def operations(workload: Sequence[Op], durability: Durability) -> dict[str, int]:
    """How many file operations each process makes in ``workload`` (no kill)."""
    counts: dict[str, int] = {}
    run(workload, durability, None, counts)
    return counts


@pytest.mark.parametrize(("durability", "length"), [("fsync", 3), ("flush", 2)])
def test_moves_to_the_dead_letters_killed_at_every_point(
    durability: Durability, length: int
) -> None:
    start = time.perf_counter()
    runs = reopened = states = 0
    for workload in workloads(length):
        ops = operations(workload, durability)
        for name in PROCESSES:
            for n in range(ops[name] + 1):
                where = f"{list(workload)} kill {name} after {n}"
                disk, model = run(workload, durability, (name, n))
                runs += 1
                reopen_and_check(disk.copy(), model, durability, f"{where}, all dead", False)
                reopened += 1
                if durability == "fsync" and n % 4 == 0:
                    for k, state in enumerate(disk.crash_states(POWER_LOSS)):
                        reopen_and_check(state, model, durability,
                                         f"{where}, power loss state {k}", True)
                        states += 1
    TALLY.count(f"dead-letter moves, one of two processes killed ({durability})",
                runs + reopened, time.perf_counter() - start)
    if states:
        TALLY.count("dead-letter moves, then power loss", states)
    assert runs > 500 and (states > 500 or durability != "fsync")
