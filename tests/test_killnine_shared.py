"""SIGKILL on a shared queue: 2 producer and 3 consumer processes on one directory, one of
them killed at random moments and replaced by a new process of the same role, for a few
seconds; then the producers and consumers are stopped and the queue is drained here.

The children (``killnine_shared_child.py``, a fresh interpreter each) log every event after
the call it reports returned, with ``time.monotonic_ns()`` (one clock for every process on
Linux); the parent reads the clock just before each kill. The logs are then checked against
what a shared queue promises: nothing acknowledged is lost or delivered again, nothing is
invented, an item is held by one live consumer at a time, first deliveries keep put order,
attempt counts grow, and the drain leaves an empty queue.
"""

from __future__ import annotations

import math
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings

from pqueue import Empty, Queue
from pqueue.core.state import Durability

CHILD = Path(__file__).with_name("killnine_shared_child.py")
PRODUCERS = 2
CONSUMERS = 3
KILL_GAP = (0.05, 0.3)  # seconds between two kills
WAIT = 20.0  # seconds a child is given to exit once told to, or to die once killed
FOREVER = 1 << 62  # the end of a hold that nothing ended (a consumer that vanished)


def run_seconds() -> float:
    """How long children are killed, per durability mode: 4 s, longer under a longer
    Hypothesis profile (HYPOTHESIS_PROFILE=ci: ~9 s, long: ~28 s)."""
    assert settings.default is not None
    return 4.0 * math.sqrt(max(1.0, settings.default.max_examples / 60))


@dataclass
class Child:
    role: str  # "producer" or "consumer"
    name: str  # a producer's name ("p0") is kept by its replacements; a consumer's is new
    log: Path
    proc: subprocess.Popen[bytes]
    err: Path
    first: int = 0  # a producer's first n
    killed_at: int | None = None  # monotonic_ns read just before SIGKILL was sent

    def stderr(self) -> str:
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        return f"{self.name} (pid {self.proc.pid}) stderr:\n{text[-3000:]}"


@dataclass(frozen=True)
class Got:
    consumer: str
    item: str
    attempt: int
    t: int


@dataclass(frozen=True)
class Settled:
    consumer: str
    item: str
    acked: bool
    t0: int  # read just before ack()/nack() was called
    t1: int  # read just after it returned


@dataclass
class Consumer:
    """What one consumer process logged, and how it ended."""

    name: str
    events: list[Got | Settled]
    killed_at: int | None
    closing_at: int | None  # logged just before close(), after it settled what it held


@dataclass
class Run:
    tmp: Path
    durability: str
    rng: random.Random
    path: str = ""
    slots: list[Child] = field(default_factory=list)
    ended: list[Child] = field(default_factory=list)
    next_n: dict[str, int] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)  # put when a kill hit: maybe put
    spawned: int = 0
    started_at: int = 0

    def __post_init__(self) -> None:
        self.path = str(self.tmp / "q")
        self.stop_producers = self.tmp / "stop-producers"
        self.stop_consumers = self.tmp / "stop-consumers"
        self.started_at = time.monotonic_ns()

    def spawn(self, role: str, name: str) -> Child:
        self.spawned += 1
        if role == "producer":
            log = self.tmp / f"{name}.log"
            first = self.next_n.get(name, 0)
            stop = self.stop_producers
        else:
            name = f"{name}.{self.spawned}"
            log = self.tmp / f"{name}.log"
            first = 0
            stop = self.stop_consumers
        err = self.tmp / f"{name}.{self.spawned}.err"
        seed = f"{self.rng.random()}"
        args = [sys.executable, str(CHILD), role, self.path, self.durability, name, str(log),
                str(stop), seed, str(first)]
        with err.open("wb") as stderr:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        return Child(role, name, log, proc, err, first)

    def start(self) -> None:
        for i in range(PRODUCERS):
            self.slots.append(self.spawn("producer", f"p{i}"))
        for i in range(CONSUMERS):
            self.slots.append(self.spawn("consumer", f"c{i}"))

    def check_alive(self) -> None:
        for child in self.slots:
            code = child.proc.poll()
            assert code is None, f"{child.name} exited by itself ({code})\n{child.stderr()}"

    def kill(self, child: Child) -> None:
        t = time.monotonic_ns()
        child.proc.send_signal(signal.SIGKILL)
        code = child.proc.wait(WAIT)
        assert code == -signal.SIGKILL, f"{child.name} ended with {code}\n{child.stderr()}"
        child.killed_at = t
        self.ended.append(child)
        if child.role == "producer":
            # The put in progress (if any) may have been made: its item may turn up; the
            # replacement goes on after it, so that no item is put twice.
            logged = [n for _, n in producer_log(child.log) if n >= child.first]
            flying = logged[-1] + 1 if logged else child.first
            self.in_flight.add(f"{child.name}:{flying}")
            self.next_n[child.name] = flying + 1

    def kill_at_random(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(self.rng.uniform(*KILL_GAP))
            self.check_alive()
            slot = self.rng.randrange(len(self.slots))
            child = self.slots[slot]
            self.kill(child)
            self.slots[slot] = self.spawn(child.role, child.name.split(".")[0])

    def stop(self) -> None:
        """Stop the producers (each ends after the put in progress), then kill one consumer
        and stop the others (each settles what it holds first)."""
        self.check_alive()
        for role, flag in (("producer", self.stop_producers), ("consumer", self.stop_consumers)):
            if role == "consumer":
                consumers = [c for c in self.slots if c.role == role]
                victim = self.rng.choice(consumers)
                self.kill(victim)
                self.slots.remove(victim)
            flag.touch()
            for child in [c for c in self.slots if c.role == role]:
                try:
                    code = child.proc.wait(WAIT)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{child.name} did not stop within {WAIT} s\n{child.stderr()}")
                assert code == 0, f"{child.name} exited with {code}\n{child.stderr()}"
                self.slots.remove(child)
                self.ended.append(child)

    def kill_all(self) -> None:
        for child in self.slots:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait(WAIT)

    def ms(self, t: int) -> str:
        return f"{(t - self.started_at) / 1e6:.3f} ms"


def lines(log: Path) -> Iterator[list[str]]:
    """The complete lines of ``log``, split (a kill may cut the last one short)."""
    if not log.exists():
        return
    for line in log.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            yield line.split()


def producer_log(log: Path) -> list[tuple[str, int]]:
    """The items a producer's log says were put: ``(item, n)``, in log order."""
    puts = []
    for words in lines(log):
        if words[0] == "put":
            puts.append((words[1], int(words[1].split(":")[1])))
    return puts


def consumer_log(child: Child) -> Consumer:
    events: list[Got | Settled] = []
    closing = None
    for words in lines(child.log):
        verb = words[0]
        if verb == "got":
            events.append(Got(child.name, words[1], int(words[2]), int(words[3])))
        elif verb in ("ack", "nack"):
            events.append(Settled(child.name, words[1], verb == "ack", int(words[2]),
                                  int(words[3])))
        elif verb == "closing":
            closing = int(words[1])
    return Consumer(child.name, events, child.killed_at, closing)


def producer_and_n(item: str) -> tuple[str, int]:
    producer, n = item.split(":")
    return producer, int(n)


def no_child_raised(run: Run) -> None:
    """No child logged an exception (none is expected; and a queue that raised may have
    broken, and a broken participant lets go of what it holds at once: the checks would then
    report a consequence, not the cause)."""
    for log in sorted(run.tmp.glob("*.log")):
        for words in lines(log):
            assert words[0] != "error", (
                f"{log.stem} raised at {run.ms(int(words[1]))}: {' '.join(words[2:])}"
            )


def drain(path: str, durability: str, bound: int) -> list[tuple[str, int]]:
    """Every item left, acknowledged one by one: ``(item, attempt)``, in delivery order."""
    drained = []
    mode: Durability = "fsync" if durability == "fsync" else "flush"
    with Queue[str](path, durability=mode) as q:
        for _ in range(bound):
            try:
                delivery = q.get_delivery(block=False)
            except Empty:
                break
            drained.append((delivery.item, delivery.attempt))
            delivery.ack()
        else:
            pytest.fail(f"the drain got more than {bound} items")
        assert q.qsize() == 0, f"the drain left {q.qsize()} items"
        assert q.unfinished_tasks == 0, f"the drain left {q.unfinished_tasks} unfinished"
    with Queue[str](path, durability=mode) as q:
        assert q.qsize() == 0 and q.unfinished_tasks == 0, f"reopened after the drain: {q!r}"
    return drained


@dataclass(frozen=True)
class Hold:
    start: int  # the "got" line's time: the item was this consumer's by then
    end: int  # the start of its ack/nack, or its kill (read before SIGKILL), or its close
    consumer: str
    ended_by_kill: bool


class Logs:
    """What the children logged and the drain delivered, and the checks on it."""

    def __init__(self, run: Run, drained: list[tuple[str, int]]) -> None:
        self.run = run
        self.put: set[str] = set()
        for log in sorted(run.tmp.glob("p*.log")):
            for item, _ in producer_log(log):
                assert item not in self.put, f"{item}: logged as put twice (the test's numbering)"
                self.put.add(item)
        self.consumers = [consumer_log(c) for c in run.ended if c.role == "consumer"]
        self.gots: dict[str, list[Got]] = defaultdict(list)
        self.settles: dict[str, list[Settled]] = defaultdict(list)
        for consumer in self.consumers:
            for event in consumer.events:
                if isinstance(event, Got):
                    self.gots[event.item].append(event)
                else:
                    self.settles[event.item].append(event)
        for item_gots in self.gots.values():
            item_gots.sort(key=lambda g: g.t)
        self.drained = drained
        self.drained_at = dict(drained)
        assert len(self.drained_at) == len(drained), f"the drain delivered twice: {drained}"
        self.holds = self._holds()

    def _holds(self) -> dict[str, list[Hold]]:
        holds: dict[str, list[Hold]] = defaultdict(list)
        for consumer in self.consumers:
            held: dict[str, Got] = {}
            for event in consumer.events:
                item = event.item
                if isinstance(event, Got):
                    assert item not in held, (
                        f"{item}: {consumer.name} got it twice without settling it\n"
                        f"{self.history(item)}"
                    )
                    held[item] = event
                else:
                    got = held.pop(item, None)
                    assert got is not None, (
                        f"{item}: {consumer.name} settled it without getting it\n"
                        f"{self.history(item)}"
                    )
                    holds[item].append(Hold(got.t, event.t0, consumer.name, False))
            for item, got in held.items():
                if consumer.killed_at is not None:
                    end = consumer.killed_at
                elif consumer.closing_at is not None:
                    end = consumer.closing_at
                else:
                    end = FOREVER
                by_kill = consumer.killed_at is not None
                # A "got" logged after the parent read the clock for the kill: empty.
                holds[item].append(Hold(got.t, max(got.t, end), consumer.name, by_kill))
        for spans in holds.values():
            spans.sort(key=lambda hold: hold.start)
        return holds

    def history(self, item: str) -> str:
        """Every event of ``item``, in time order, for an assertion message."""
        ms = self.run.ms
        said = [(g.t, f"{ms(g.t)}: {g.consumer} got it, attempt {g.attempt}")
                for g in self.gots.get(item, [])]
        said += [(s.t0, f"{ms(s.t0)}..{ms(s.t1)}: {s.consumer} "
                  f"{'acked' if s.acked else 'nacked'} it") for s in self.settles.get(item, [])]
        said += [(c.killed_at, f"{ms(c.killed_at)}: {c.name} was killed")
                 for c in self.consumers
                 if c.killed_at is not None and any(e.item == item for e in c.events)]
        told = [text for _, text in sorted(said)]
        if item in self.drained_at:
            told.append(f"drained, attempt {self.drained_at[item]}")
        if item in self.run.in_flight:
            told.append("(its put was in progress when its producer was killed)")
        return "\n  ".join([f"history of {item}:", *told])

    def nothing_acknowledged_lost(self) -> None:
        """Every item logged as put was delivered (got or drained); more: it was acknowledged,
        or drained, or its latest holder was killed holding it (and may have acknowledged it
        just before)."""
        for item in sorted(self.put):
            delivered = item in self.gots or item in self.drained_at
            assert delivered, f"{item}: put, and never delivered (lost)\n{self.history(item)}"
            if item in self.drained_at or any(s.acked for s in self.settles.get(item, [])):
                continue
            latest = self.holds[item][-1]
            assert latest.ended_by_kill, (
                f"{item}: put, delivered, never acknowledged, and not left in the queue "
                f"(lost)\n{self.history(item)}"
            )

    def no_acknowledged_item_delivered_again(self) -> None:
        """No "got" after an ack began (the acknowledging consumer held the item until
        then), and no acknowledged item drained."""
        for item, item_settles in self.settles.items():
            acks = [s for s in item_settles if s.acked]
            if not acks:
                continue
            assert len(acks) == 1, f"{item}: acknowledged twice\n{self.history(item)}"
            later = [g for g in self.gots[item] if g.t > acks[0].t0]
            assert not later, (
                f"{item}: delivered again after it was acknowledged\n{self.history(item)}"
            )
            assert item not in self.drained_at, (
                f"{item}: drained after it was acknowledged\n{self.history(item)}"
            )

    def nothing_invented(self) -> None:
        """Every item delivered was put: logged as put, or in a put a kill interrupted."""
        for item in [*self.gots, *self.drained_at]:
            known = item in self.put or item in self.run.in_flight
            assert known, f"{item}: delivered, and never put\n{self.history(item)}"

    def never_held_twice(self) -> None:
        """The holds of an item by different consumers do not overlap."""
        for item, spans in self.holds.items():
            reach, by = 0, ""
            for hold in spans:
                assert hold.start >= reach or hold.consumer == by, (
                    f"{item}: held by {by} until {self.run.ms(reach)} and by {hold.consumer} "
                    f"from {self.run.ms(hold.start)}\n{self.history(item)}"
                )
                if hold.end > reach:
                    reach, by = hold.end, hold.consumer

    def first_deliveries_in_put_order(self) -> None:
        """Within one consumer, the first deliveries (attempt 1) of one producer's items come
        in increasing n; in the drain every item does (all come in put order there: those
        given back first, all behind the read position)."""
        for consumer in self.consumers:
            last: dict[str, int] = {}
            for event in consumer.events:
                if isinstance(event, Got) and event.attempt == 1:
                    producer, n = producer_and_n(event.item)
                    assert n > last.get(producer, -1), (
                        f"{event.item}: first delivered to {consumer.name} after "
                        f"{producer}:{last[producer]}\n{self.history(event.item)}"
                    )
                    last[producer] = n
        last = {}
        for item, _ in self.drained:
            producer, n = producer_and_n(item)
            assert n > last.get(producer, -1), (
                f"{item}: drained after {producer}:{last[producer]}\n{self.history(item)}"
            )
            last[producer] = n

    def attempts_increase(self) -> None:
        for item in {*self.gots, *self.drained_at}:
            attempts = [g.attempt for g in self.gots.get(item, [])]
            if item in self.drained_at:
                attempts.append(self.drained_at[item])
            assert attempts == sorted(set(attempts)) and attempts[0] >= 1, (
                f"{item}: attempts {attempts}\n{self.history(item)}"
            )

    def summary(self) -> str:
        run = self.run
        kills = [c for c in run.ended if c.killed_at is not None]
        gets = [g for item_gots in self.gots.values() for g in item_gots]
        settles = [s for item_settles in self.settles.values() for s in item_settles]
        acks = sum(1 for s in settles if s.acked)
        redelivered = sum(1 for g in gets if g.attempt > 1)
        redelivered += sum(1 for _, attempt in self.drained if attempt > 1)
        killed_holding = sum(
            1 for spans in self.holds.values() for hold in spans if hold.ended_by_kill
        )
        return (
            f"{len(self.put)} puts (+{len(run.in_flight)} in progress at a kill), "
            f"{len(gets)} gets, {acks} acks, {len(settles) - acks} nacks, {len(kills)} kills "
            f"({sum(c.role == 'producer' for c in kills)} of producers, "
            f"{killed_holding} of consumers holding an item), {redelivered} redeliveries, "
            f"{len(self.drained)} drained"
        )


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_shared_queue_survives_sigkills_of_its_processes(
    tmp_path: Path, durability: str
) -> None:
    run = Run(tmp_path, durability, random.Random(f"killnine-shared-{durability}"))
    try:
        run.start()
        run.kill_at_random(run_seconds())
        run.stop()
    finally:
        run.kill_all()
    seconds = (time.monotonic_ns() - run.started_at) / 1e9
    no_child_raised(run)
    puts = sum(len(producer_log(log)) for log in tmp_path.glob("p*.log"))
    drained = drain(run.path, durability, puts + len(run.in_flight) + 10)
    logs = Logs(run, drained)
    print(f"\n{durability}, {seconds:.1f} s: {logs.summary()}")
    logs.nothing_acknowledged_lost()  # 1
    logs.no_acknowledged_item_delivered_again()  # 2
    logs.nothing_invented()  # 3
    logs.never_held_twice()  # 4
    logs.first_deliveries_in_put_order()  # 5
    logs.attempts_increase()  # 6
    # 7: drain() found the queue empty after it, and again after a reopen.
    assert len(logs.put) > 100 and len(run.ended) > 10, "the children did little work"
