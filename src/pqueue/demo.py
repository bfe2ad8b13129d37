"""``python -m pqueue demo``: producers and workers sharing one queue, killed with SIGKILL.

One directory holds one queue, which every process opens at once (the default, shared mode)
with ``max_attempts=3``. Producer processes put numbered jobs (``"2-00017"``: producer 2's
17th job); worker processes take them with ``get_delivery()``, work on each for a moment and
``ack()`` it. A job whose number is a multiple of 17 is poison: the workers always ``nack()``
it, so after its third attempt the queue moves it to ``q.dead_letters``. Every child prints a
line after each call returns (flushed, to a pipe the demo reads)::

    open                                 Queue(path) returned (and SIGTERM stops it cleanly)
    put JOB                              a producer's put returned
    got JOB attempt N START END          get_delivery() returned (called at START, back at END)
    done JOB END                         ack() returned (at END)
    nack JOB                             nack() returned

Times are ``time.monotonic()``, one clock for every process of the machine. The demo SIGKILLs
random workers (and sometimes a producer) at random moments and starts replacements, for a
few rounds. Then it stops the producers, lets the workers drain the queue, stops them,
reopens the queue and checks what the children reported against what is there (``check``):

- every job whose put returned is done (its ack returned) or in ``dead_letters``, never both;
- no job whose ack returned is delivered again, and no delivery is made twice;
- every poison job is in ``dead_letters`` exactly once, after 3 attempts, and is not delivered
  after that; no other job is there, unless each of its deliveries died with a killed worker
  (three such deaths are three attempts too: that is what ``max_attempts`` is for);
- nothing appears that was never put, and the first deliveries of each producer's jobs come
  in the order it put them.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from types import FrameType
from typing import IO, Any, Literal

import attrs

from pqueue import DeadLetter, Empty, Queue

__all__ = [
    "MAX_ATTEMPTS",
    "POISON",
    "Log",
    "Outcome",
    "Report",
    "add_arguments",
    "check",
    "is_poison",
    "job_name",
    "producer",
    "run",
    "run_command",
    "worker",
]

POISON = 17  # a job whose number is a multiple of this always fails
MAX_ATTEMPTS = 3  # the queue's max_attempts: deliveries before a job is dead-lettered
CHUNKSIZE = 20  # small, so that chunks roll over and checkpoints happen during the demo
PUT_PAUSE = 0.02  # a producer waits up to this long between puts (seconds)
WORK = (0.003, 0.018)  # how long a worker works on a job (seconds, at random in this range)
NACK_DELAY = 0.02  # a poison job is given back to be delivered again after this long
ROUND_PAUSE = (0.3, 0.9)  # the wait before each round of kills (seconds)
DRAIN_TIMEOUT = 60.0  # the workers must drain the queue within this long
STOP_TIMEOUT = 10.0  # a child must exit within this long of SIGTERM

Mode = Literal["fsync", "flush"]


def job_name(producer: int, number: int) -> str:
    """The name of producer ``producer``'s job ``number`` (from 1)."""
    return f"{producer}-{number:05d}"


def _job_number(job: str) -> tuple[int, int] | None:
    producer, sep, number = job.partition("-")
    if not (sep and producer.isascii() and producer.isdigit() and number.isascii()
            and number.isdigit()):
        return None
    return int(producer), int(number)


def is_poison(job: str) -> bool:
    """Whether the workers always fail ``job`` (its number is a multiple of ``POISON``)."""
    parsed = _job_number(job)
    return parsed is not None and parsed[1] % POISON == 0


# --- the child processes -----------------------------------------------------------------


def _open(path: str, durability: str) -> Queue[str]:
    mode: Mode = "flush" if durability == "flush" else "fsync"
    return Queue(path, chunksize=CHUNKSIZE, durability=mode, max_attempts=MAX_ATTEMPTS)


def _stop_on_sigterm() -> list[bool]:
    """A flag that SIGTERM sets: the child finishes the call it is in, then stops."""
    stop = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, handler)
    return stop


def producer(path: str, number: int, durability: str, seed: int) -> None:
    """Put jobs ``number-00001``, ``number-00002``... until SIGTERM, printing ``put JOB``
    after each put returns."""
    stop = _stop_on_sigterm()
    rng = random.Random(seed)
    q = _open(path, durability)
    out = sys.stdout
    out.write("open\n")
    out.flush()
    n = 0
    while not stop[0]:
        n += 1
        job = job_name(number, n)
        q.put(job)
        out.write(f"put {job}\n")
        out.flush()
        time.sleep(rng.uniform(0.0, PUT_PAUSE))
    q.close()


def worker(path: str, number: int, durability: str, seed: int) -> None:
    """Take jobs with ``get_delivery()`` until SIGTERM: work on each, then ``ack()`` it, or
    ``nack()`` it if it is poison; print a line after each call returns."""
    stop = _stop_on_sigterm()
    rng = random.Random(seed)
    q = _open(path, durability)
    out = sys.stdout
    out.write("open\n")
    out.flush()
    while not stop[0]:
        start = time.monotonic()
        try:
            delivery = q.get_delivery(timeout=0.1)
        except Empty:
            continue
        job = delivery.item
        out.write(f"got {job} attempt {delivery.attempt} {start:.6f} {time.monotonic():.6f}\n")
        out.flush()
        time.sleep(rng.uniform(*WORK))  # the work
        if is_poison(job):
            delivery.nack(delay=NACK_DELAY)
            out.write(f"nack {job}\n")
        else:
            delivery.ack()
            out.write(f"done {job} {time.monotonic():.6f}\n")
        out.flush()
    q.close()


# --- the check ---------------------------------------------------------------------------


@attrs.frozen
class Log:
    """What one child process printed, in order, and whether the demo SIGKILLed it."""

    role: Literal["producer", "worker"]
    number: int
    lines: Sequence[str]
    killed: bool = False


_OPEN = re.compile(r"open")
_PUT = re.compile(r"put (\S+)")
_GOT = re.compile(r"got (\S+) attempt (\d+) (\d+\.\d+) (\d+\.\d+)")
_DONE = re.compile(r"done (\S+) (\d+\.\d+)")
_NACK = re.compile(r"nack (\S+)")


@attrs.define(eq=False)
class _Delivery:
    worker: int
    job: str
    attempt: int
    start: float  # get_delivery() called
    end: float  # get_delivery() returned
    outcome: str = ""  # "done" (ack returned) or "nack" (nack returned)
    done_at: float = 0.0  # ack() returned
    died: bool = False  # its worker was killed before it was settled


# Report fields that must be empty, and what a job in each of them means.
_CHECKS = (
    ("lost", "jobs lost (not done, no dead letter)"),
    ("redelivered_done", "acknowledged jobs delivered again"),
    ("done_and_dead", "jobs both done and dead-lettered"),
    ("double_delivered", "deliveries made twice (same attempt)"),
    ("poison_missing", "poison jobs not dead-lettered"),
    ("duplicate_dead", "jobs dead-lettered more than once"),
    ("wrong_attempts", f"dead letters without {MAX_ATTEMPTS} attempts"),
    ("wrongly_dead", "good jobs dead-lettered"),
    ("delivered_after_dead", "jobs delivered after their dead letter"),
    ("beyond_max", f"jobs delivered more than {MAX_ATTEMPTS} times"),
    ("invented", "jobs that were never put"),
    ("out_of_order", "first deliveries out of put order"),
    ("left", "jobs still queued after the drain"),
    ("garbled", "log lines that make no sense"),
)


@attrs.define
class Report:
    """What the children reported, checked against the dead letters and what was left."""

    put: list[str] = attrs.Factory(list)  # jobs whose put returned, producer by producer
    maybe_put: list[str] = attrs.Factory(list)  # the put in flight when a producer was killed
    deliveries: int = 0  # get_delivery() calls that returned
    done: set[str] = attrs.Factory(set)  # jobs whose ack returned
    dead_letters: list[DeadLetter[str]] = attrs.Factory(list)
    redelivered_after_kill: int = 0  # deliveries of a job its last holder died with
    killed_workers: int = 0
    killed_producers: int = 0
    dead_by_kills: list[str] = attrs.Factory(list)  # good jobs all of whose holders died
    # The checks: each lists the jobs (or lines) that break it.
    lost: list[str] = attrs.Factory(list)
    redelivered_done: list[str] = attrs.Factory(list)
    done_and_dead: list[str] = attrs.Factory(list)
    double_delivered: list[str] = attrs.Factory(list)
    poison_missing: list[str] = attrs.Factory(list)
    duplicate_dead: list[str] = attrs.Factory(list)
    wrong_attempts: list[str] = attrs.Factory(list)
    wrongly_dead: list[str] = attrs.Factory(list)
    delivered_after_dead: list[str] = attrs.Factory(list)
    beyond_max: list[str] = attrs.Factory(list)
    invented: list[str] = attrs.Factory(list)
    out_of_order: list[str] = attrs.Factory(list)
    left: list[str] = attrs.Factory(list)
    garbled: list[str] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return not self.failures()

    def checks(self) -> list[tuple[str, list[str]]]:
        """Each check's description and the jobs that break it."""
        return [(label, getattr(self, name)) for name, label in _CHECKS]

    def failures(self) -> list[str]:
        """One line per failed check, naming (some of) the jobs that break it."""
        out = []
        for label, jobs in self.checks():
            if jobs:
                shown = ", ".join(jobs[:5]) + (", ..." if len(jobs) > 5 else "")
                out.append(f"{label}: {len(jobs)} ({shown})")
        return out


def _unique(jobs: list[str]) -> list[str]:
    return list(dict.fromkeys(jobs))


def check(
    logs: Sequence[Log],
    dead_letters: Sequence[DeadLetter[str]],
    left: Sequence[str] = (),
) -> Report:
    """Check what the children reported (``logs``) against the dead letters found at the end
    and the jobs ``left`` in the queue after the workers drained it.

    A line is written only after the call it reports returned, so a killed child may have
    made its last call unreported: a producer's next put (that job may be there, or not), a
    worker's ack of the job its last line says it got (that job may be done, or not), or a
    delivery (the job's next delivery then has an attempt number one higher).
    """
    report = Report(dead_letters=list(dead_letters), left=list(left))
    puts_of: dict[int, list[str]] = {}  # producer -> its jobs, in put order
    deliveries: dict[str, list[_Delivery]] = {}
    maybe_acked: set[str] = set()
    for log in logs:
        lines = list(log.lines)
        if log.killed and lines and not _parses(lines[-1]):
            lines.pop()  # torn by the kill
        if log.role == "producer":
            report.killed_producers += log.killed
            mine = puts_of.setdefault(log.number, [])
            for line in lines:
                put = _PUT.fullmatch(line)
                if put:
                    mine.append(put[1])
                    report.put.append(put[1])
                elif not _OPEN.fullmatch(line):
                    report.garbled.append(f"producer {log.number}: {line!r}")
            if log.killed:
                last = _job_number(mine[-1]) if mine else None
                following = job_name(log.number, last[1] + 1 if last else 1)
                mine.append(following)
                report.maybe_put.append(following)
            continue
        report.killed_workers += log.killed
        current: _Delivery | None = None
        for line in lines:
            got, done = _GOT.fullmatch(line), _DONE.fullmatch(line)
            settled = done or _NACK.fullmatch(line)
            if got:
                if current is not None and not current.outcome:
                    report.garbled.append(f"worker {log.number}: {line!r} (still holding one)")
                current = _Delivery(log.number, got[1], int(got[2]), float(got[3]),
                                    float(got[4]))
                deliveries.setdefault(current.job, []).append(current)
                report.deliveries += 1
            elif (settled and current is not None and not current.outcome
                  and current.job == settled[1]):
                current.outcome = "done" if done else "nack"
                if done:
                    current.done_at = float(done[2])
                    report.done.add(current.job)
            elif not _OPEN.fullmatch(line):
                report.garbled.append(f"worker {log.number}: {line!r}")
        if log.killed and current is not None and not current.outcome:
            current.died = True
            maybe_acked.add(current.job)

    dead_count = Counter(letter.item for letter in dead_letters)
    dead_attempts: dict[str, int] = {}
    for letter in dead_letters:
        dead_attempts.setdefault(letter.item, letter.attempts)
        if letter.attempts != MAX_ATTEMPTS:
            report.wrong_attempts.append(letter.item)
    report.duplicate_dead = [job for job, n in dead_count.items() if n > 1]
    known = {job for jobs in puts_of.values() for job in jobs}
    seen = [*deliveries, *dead_count, *left]
    report.invented = _unique([job for job in seen if job not in known])
    present = set(left)

    for job in report.put:
        if is_poison(job):
            if job not in dead_count:
                report.poison_missing.append(job)
        elif not (job in report.done or job in dead_count or job in present
                  or job in maybe_acked):
            report.lost.append(job)
    report.done_and_dead = [job for job in report.done if job in dead_count]
    report.done_and_dead.sort()

    for job, ds in deliveries.items():
        attempts = Counter(d.attempt for d in ds)
        if any(n > 1 for n in attempts.values()):
            report.double_delivered.append(job)
        acked = [d for d in ds if d.outcome == "done"]
        if acked:
            first = min(acked, key=lambda d: d.done_at)
            if job in present or any(
                d is not first and (d.attempt >= first.attempt or d.start > first.done_at)
                for d in ds
            ):
                report.redelivered_done.append(job)
        limit = dead_attempts.get(job)
        if limit is not None and any(d.attempt > limit for d in ds):
            report.delivered_after_dead.append(job)
        elif any(d.attempt > MAX_ATTEMPTS for d in ds):
            report.beyond_max.append(job)
        nacked = {d.attempt for d in ds if d.outcome == "nack"}
        report.redelivered_after_kill += sum(
            1 for d in ds if d.attempt > 1 and d.attempt - 1 not in nacked
        )
    for job in dead_count:
        if is_poison(job) or job not in known:
            continue
        if all(d.died for d in deliveries.get(job, ())):
            report.dead_by_kills.append(job)
        else:
            report.wrongly_dead.append(job)

    # A producer's puts return one after the other: a job is waiting before the next one is
    # put, so it must be delivered first. A delivery of B that returned before a delivery of
    # an earlier-put A was even asked for breaks that.
    for jobs in puts_of.values():
        latest_start = float("-inf")
        for job in jobs:
            firsts = [d for d in deliveries.get(job, ()) if d.attempt == 1]
            if not firsts:
                continue
            first = min(firsts, key=lambda d: d.end)
            if latest_start > first.end:
                report.out_of_order.append(job)
            latest_start = max(latest_start, first.start)
    return report


def _parses(line: str) -> bool:
    return any(p.fullmatch(line) for p in (_OPEN, _PUT, _GOT, _DONE, _NACK))


# --- the demo ------------------------------------------------------------------------------


@attrs.define(eq=False)
class _Child:
    role: Literal["producer", "worker"]
    number: int
    proc: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread
    killed: bool = False

    @property
    def name(self) -> str:
        return f"{self.role} {self.number}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> Log:
        return Log(self.role, self.number, list(self.lines), self.killed)


def _read(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line.rstrip("\n"))


def _spawn(
    role: Literal["producer", "worker"], number: int, path: str, durability: str, seed: int
) -> _Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pqueue", f"_{role}", path, str(number), durability, str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=_read, args=(proc.stdout, lines), daemon=True)
    reader.start()
    return _Child(role, number, proc, lines, reader)


def _kill(child: _Child) -> None:
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait()
    child.reader.join()
    child.killed = True


def _stop(child: _Child) -> bool:
    """SIGTERM ``child`` and wait for it to exit; SIGKILL it if it does not (False)."""
    _wait_for(lambda: bool(child.lines) or not child.alive(), STOP_TIMEOUT)  # its "open"
    if child.alive():
        child.proc.send_signal(signal.SIGTERM)
    try:
        child.proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(child)
        return False
    child.reader.join()
    return True


def _what_it_was_doing(child: _Child) -> str:
    """What a killed child was doing, as far as its log shows."""
    lines = [line for line in child.lines if _parses(line) and line != "open"]
    if child.role == "producer":
        last = f", the last {lines[-1].split()[1]}" if lines else ""
        return f"after {len(lines)} puts{last}"
    if not lines:
        return "before its first job"
    got = _GOT.fullmatch(lines[-1])
    if got:
        return f"holding job {got[1]} (attempt {got[2]})"
    return "between jobs"


@attrs.define
class Outcome:
    """A run of the demo: the check, and what went wrong with the run itself."""

    report: Report
    path: str
    problems: list[str] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.problems


def run(
    path: str,
    *,
    rounds: int = 3,
    durability: str = "fsync",
    seed: int | None = None,
    producers: int = 2,
    workers: int = 3,
    say: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Run producers and workers on ``path`` through ``rounds`` rounds of SIGKILL, let the
    workers drain the queue, reopen it and check it; ``say`` is told what happens."""
    rng = random.Random(seed)
    problems: list[str] = []
    children: list[_Child] = []
    started = {"producer": 0, "worker": 0}

    def start(role: Literal["producer", "worker"], indent: str) -> None:
        started[role] += 1
        child = _spawn(role, started[role], path, durability, rng.randrange(2**32))
        children.append(child)
        say(f"{indent}started {child.name} (pid {child.proc.pid})")

    def live(role: str) -> list[_Child]:
        return [c for c in children if c.role == role and c.alive()]

    monitor = _open(path, durability)  # creates the queue before the children open it
    try:
        for _ in range(producers):
            start("producer", "  ")
        for _ in range(workers):
            start("worker", "  ")
        # Kill no worker before it has opened the queue (a behaviour, not a time: bounded
        # only so that a broken start cannot hang the demo).
        _wait_for(lambda: all(c.lines for c in live("worker")), 30.0)
        for round_no in range(1, rounds + 1):
            time.sleep(rng.uniform(*ROUND_PAUSE))
            candidates = live("worker")
            victims = rng.sample(candidates, min(len(candidates), rng.choice((1, 1, 2))))
            if live("producer") and rng.random() < 0.4:
                victims.append(rng.choice(live("producer")))
            indent = f"round {round_no}: "
            for victim in victims:
                _kill(victim)
                say(f"{indent}killed {victim.name} (pid {victim.proc.pid}) "
                    f"{_what_it_was_doing(victim)}")
                indent = " " * len(indent)
            for victim in victims:
                start(victim.role, indent)
        # At least one poison job, so that there is a dead letter to check.
        if producers and not _wait_for(
            lambda: any(is_poison(line[4:]) for c in children if c.role == "producer"
                        for line in list(c.lines)), 30.0
        ):
            problems.append("no poison job was put")
        for child in live("producer"):
            if not _stop(child):
                problems.append(f"{child.name} did not stop on SIGTERM (killed)")
        puts = sum(1 for c in children if c.role == "producer" for line in list(c.lines)
                   if _PUT.fullmatch(line))
        say(f"stopped the producers ({puts} puts returned); the workers drain the queue")
        deadline = time.monotonic() + DRAIN_TIMEOUT
        drained = "the queue is drained (unfinished_tasks == 0)"
        while monitor.unfinished_tasks:
            if not live("worker"):
                drained = "every worker exited before the queue was drained"
                problems.append(drained)
                break
            if time.monotonic() > deadline:
                drained = f"the workers did not drain the queue in {DRAIN_TIMEOUT:.0f} s"
                problems.append(drained)
                break
            time.sleep(0.02)
        for child in live("worker"):
            if not _stop(child):
                problems.append(f"{child.name} did not stop on SIGTERM (killed)")
        say(f"{drained}; stopped the workers")
    finally:
        for child in children:
            if child.alive():
                _kill(child)
        monitor.close()
    for child in children:
        code = child.proc.returncode
        if not child.killed and code != 0:
            problems.append(f"{child.name} exited with code {code} (its error is above)")

    with _open(path, durability) as q:  # reopened: every other process is gone
        left = []
        if q.unfinished_tasks:
            while True:
                try:
                    delivery = q.get_delivery(timeout=1.0)
                except Empty:
                    break
                left.append(delivery.item)
                delivery.ack()
        dead = []
        dead_queue = q.dead_letters
        while True:  # read, not acknowledged: they stay in the dead-letter queue
            try:
                dead.append(dead_queue.get_delivery(timeout=0).item)
            except Empty:
                break
    report = check([c.log() for c in children], dead, left)
    return Outcome(report, path, problems)


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _unusable(path: str) -> str | None:
    """Why the demo must not use ``path`` (it kills processes on it and drains it, so it
    must be new or an empty directory), or None."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path):
        return f"{path!r} exists and is not a directory; name a new or empty directory"
    if os.listdir(path):
        what = "a queue" if os.path.exists(os.path.join(path, "info")) else "files"
        return (
            f"{path!r} already holds {what}; the demo drains the queue it runs on, so it only "
            "uses a new or empty directory (leave the path out to use a new temp directory)"
        )
    return None


def _say(line: str) -> None:
    print(line, flush=True)


def _summary(outcome: Outcome, seconds: float) -> list[str]:
    r = outcome.report
    poison = sum(1 for letter in r.dead_letters if is_poison(letter.item))
    others = len(r.dead_letters) - poison
    lines = [
        f"reopened: {len(r.left)} jobs waiting, {len(r.dead_letters)} dead letters",
        f"  jobs put (put returned):                  {len(r.put)}",
        f"  done (ack returned):                      {len(r.done)}",
        f"  dead letters:                             {poison} poison jobs"
        + (f", {others} others" if others else ""),
        f"  deliveries (get_delivery returned):       {r.deliveries}",
        f"  kills:                                    {r.killed_workers + r.killed_producers}"
        f" ({r.killed_workers} workers, {r.killed_producers} producers)",
        f"  redeliveries after a kill:                {r.redelivered_after_kill}",
        "  (a put or an ack in flight when its process was killed counts as neither: it",
        "  may or may not have happened, and the checks allow both)",
    ]
    if r.dead_by_kills:
        lines.append(f"  good jobs dead-lettered by {MAX_ATTEMPTS} kills:  "
                     f"{len(r.dead_by_kills)} ({', '.join(r.dead_by_kills)})")
    for label, jobs in r.checks():
        if jobs or label != "log lines that make no sense":
            lines.append(f"  {label + ':':<41} {len(jobs)}")
    lines.extend(f"  problem: {problem}" for problem in outcome.problems)
    lines.append(f"  ({seconds:.1f} s)")
    return lines


def add_arguments(commands: Any) -> None:
    """Add ``demo`` (and the private commands of the processes it starts) to the command
    line's subcommands ``commands`` (what ``ArgumentParser.add_subparsers`` returned)."""
    demo = commands.add_parser(
        "demo", help="producers and workers on one queue, killed with SIGKILL; then checked",
        description="Producers and workers share one queue; random ones are killed with "
        "SIGKILL and replaced; then the queue is drained and checked against what every "
        "process reported.",
    )
    demo.add_argument(
        "path", nargs="?",
        help="a new or empty directory for the queue, left there at the end (default: a "
        "new temp directory, removed at the end when the check passes)",
    )
    demo.add_argument("--rounds", type=int, default=3, help="rounds of kills (default 3)")
    demo.add_argument("--durability", choices=["fsync", "flush"], default="fsync")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--producers", type=int, default=2, help="producer processes (2)")
    demo.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    for role in ("_producer", "_worker"):  # the processes the demo kills: not in --help
        child = commands.add_parser(role)
        child.add_argument("path")
        child.add_argument("number", type=int)
        child.add_argument("durability")
        child.add_argument("seed", type=int)


def run_command(args: argparse.Namespace) -> int:
    """Run ``demo`` (or one of its processes) as the command line parsed it."""
    if args.command in ("_producer", "_worker"):
        body = producer if args.command == "_producer" else worker
        body(args.path, args.number, args.durability, args.seed)
        return 0
    if args.rounds < 0 or args.producers < 1 or args.workers < 1:
        print("pqueue demo: --rounds must be >= 0, --producers and --workers >= 1",
              file=sys.stderr)
        return 2
    if args.path is not None:
        refusal = _unusable(args.path)
        if refusal:
            print(f"pqueue demo: {refusal}", file=sys.stderr)
            return 2
    path = args.path or tempfile.mkdtemp(prefix="pqueue-demo-")
    print(f"pqueue demo: {args.producers} producers and {args.workers} workers share one queue "
          f"on {path}")
    print(f"({args.durability} mode, max_attempts={MAX_ATTEMPTS}); jobs numbered a multiple of "
          f"{POISON} are poison: the workers always nack them.")
    print(f"{args.rounds} rounds of SIGKILL at random moments, each victim replaced.", flush=True)
    start = time.monotonic()
    outcome = run(path, rounds=args.rounds, durability=args.durability, seed=args.seed,
                  producers=args.producers, workers=args.workers, say=_say)
    for line in _summary(outcome, time.monotonic() - start):
        print(line)
    if outcome.ok and args.path is None:
        shutil.rmtree(path, ignore_errors=True)  # made for the demo: gone with it
        print(f"(removed {path}, made for the demo)")
    elif args.path is not None:
        print(f"(the queue is left in {path}, as given)")
    else:
        print(f"(the queue is left in {path}, to look into: pqueue stat {path})")
    if outcome.ok:
        print("OK: every job was done or dead-lettered, once; nothing acknowledged came back.")
        return 0
    print("FAILED: " + "; ".join(outcome.report.failures() + outcome.problems))
    return 1
