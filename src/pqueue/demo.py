"""``python -m pqueue demo``: a producer/consumer killed with SIGKILL, then checked.

A worker process opens the queue, puts numbered jobs and works through them (get, then
task_done), printing a line after each call returns. The demo kills it with SIGKILL at a
random moment, starts a new worker on the same directory, and does this a few times. Then it
reopens the queue, drains it, and checks what the workers reported against what is there:

- every job whose put returned is there, unless its task_done returned;
- no job whose task_done returned is ever delivered again;
- nothing appears that was never put, and jobs come back in the order they were put.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import attrs

from pqueue.core.state import Durability
from pqueue.queue import Queue

__all__ = ["Report", "check", "main", "run", "worker"]


def worker(path: str, round_no: int, durability: str, seed: int) -> None:
    """Put and consume jobs forever, printing ``put``/``got``/``done`` after each call."""
    rng = random.Random(seed)
    mode: Durability = "flush" if durability == "flush" else "fsync"
    q: Queue[str] = Queue(path, chunksize=20, durability=mode)
    out = sys.stdout
    n = 0
    while True:
        if rng.random() < 0.55:
            job = f"{round_no}-{n:06d}"
            n += 1
            q.put(job)
            out.write(f"put {job}\n")
        elif q.qsize():
            job = q.get()
            out.write(f"got {job}\n")
            out.flush()
            q.task_done()
            out.write(f"done {job}\n")
        out.flush()


@attrs.define
class Report:
    """What the workers reported and what the drained queue held."""

    put: list[str] = attrs.Factory(list)
    done: set[str] = attrs.Factory(set)
    redelivered_done: list[str] = attrs.Factory(list)
    lost: list[str] = attrs.Factory(list)
    invented: list[str] = attrs.Factory(list)
    out_of_order: int = 0
    drained: list[str] = attrs.Factory(list)
    rounds: list[tuple[int, int, int]] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return not (self.redelivered_done or self.lost or self.invented or self.out_of_order)


def _kill_worker(
    path: str, round_no: int, durability: str, seed: int, lines: int
) -> list[str]:
    """Start a worker, SIGKILL it after ``lines`` lines, return every line it wrote."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pqueue", "_worker", path, str(round_no), durability, str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    for line in proc.stdout:
        seen.append(line.rstrip("\n"))
        if len(seen) >= lines:
            break
    proc.send_signal(signal.SIGKILL)
    seen.extend(line.rstrip("\n") for line in proc.stdout)  # what it wrote before dying
    proc.wait()
    if proc.returncode not in (-signal.SIGKILL, 0) and len(seen) < lines:
        raise RuntimeError(f"the worker failed (exit code {proc.returncode})")
    return [line for line in seen if line.count(" ") == 1]  # drop a torn last line


def run(path: str, *, rounds: int = 3, durability: str = "fsync", seed: int | None = None,
        max_lines: int = 600) -> Report:
    """Kill ``rounds`` workers on ``path``, then drain the queue and check it."""
    rng = random.Random(seed)
    outputs = [
        _kill_worker(path, round_no, durability, rng.randrange(2**32), rng.randrange(20, max_lines))
        for round_no in range(1, rounds + 1)
    ]
    with Queue[str](path) as q:
        drained = []
        while q.qsize():
            drained.append(q.get())
            q.task_done()
    return check(outputs, drained)


def check(outputs: list[list[str]], drained: list[str]) -> Report:
    """Check what the workers of each round reported against the jobs ``drained`` at the end.

    A line is written only after the call it reports returned, so the call in flight at the
    kill may have happened unreported: the next put of that round, or the task_done of a
    job whose "got" line is the round's last.
    """
    report = Report(drained=drained)
    maybe_done: set[str] = set()
    for round_no, lines in enumerate(outputs, 1):
        puts = gets = 0
        for line in lines:
            verb, job = line.split(" ")
            if verb == "put":
                report.put.append(job)
                puts += 1
            elif verb == "got":
                gets += 1
                if job in report.done:
                    report.redelivered_done.append(job)
            elif verb == "done":
                report.done.add(job)
        report.rounds.append((round_no, puts, gets))
        if lines and lines[-1].startswith("got "):
            maybe_done.add(lines[-1].split(" ")[1])
    put_order = {job: i for i, job in enumerate(report.put)}
    present = set(drained)
    report.lost = [
        job for job in report.put if job not in report.done | maybe_done and job not in present
    ]
    for job in drained:
        if job in report.done:
            report.redelivered_done.append(job)
        elif job not in put_order and not _next_of_round(job, report.put):
            report.invented.append(job)
    known = [put_order[job] for job in drained if job in put_order]
    report.out_of_order = sum(1 for a, b in itertools.pairwise(known) if a > b)
    return report


def _next_of_round(job: str, put: list[str]) -> bool:
    round_no, number = job.split("-")
    mine = [p for p in put if p.startswith(f"{round_no}-")]
    return int(number) == len(mine)


def _unusable(path: str) -> str | None:
    """Why the demo must not use ``path`` (it kills workers on it and drains it at the end,
    so it must be new or an empty directory), or None."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python -m pqueue demo [PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m pqueue")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="kill a producer/consumer and show nothing is lost")
    demo.add_argument(
        "path", nargs="?",
        help="a new or empty directory for the queue (default: a new temp directory)",
    )
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--durability", choices=["fsync", "flush"], default="fsync")
    demo.add_argument("--seed", type=int, default=None)
    work = commands.add_parser("_worker")  # the process the demo kills
    work.add_argument("path")
    work.add_argument("round", type=int)
    work.add_argument("durability")
    work.add_argument("seed", type=int)
    args = parser.parse_args(argv)
    if args.command == "_worker":
        worker(args.path, args.round, args.durability, args.seed)
        return 0
    if args.path is not None:
        refusal = _unusable(args.path)
        if refusal:
            print(f"python -m pqueue demo: {refusal}", file=sys.stderr)
            return 2
    path = args.path or tempfile.mkdtemp(prefix="pqueue-demo-")
    print(f"pqueue demo: a producer/consumer on {path} ({args.durability} mode),")
    print(f"killed with SIGKILL at a random moment, {args.rounds} times over.")
    start = time.monotonic()
    report = run(path, rounds=args.rounds, durability=args.durability, seed=args.seed)
    for round_no, puts, gets in report.rounds:
        print(f"  worker {round_no}: {puts} puts and {gets} gets returned, then SIGKILL")
    print(f"reopened: {len(report.drained)} jobs were waiting; drained them all")
    print(f"  puts that returned:                  {len(report.put)}")
    print(f"  acknowledged (task_done returned):   {len(report.done)}")
    print(f"  acknowledged puts lost:              {len(report.lost)}")
    print(f"  acknowledged jobs delivered again:   {len(report.redelivered_done)}")
    print(f"  jobs that were never put:            {len(report.invented)}")
    print(f"  jobs out of put order:               {report.out_of_order}")
    print(f"  ({time.monotonic() - start:.1f} s; queue directory: {path})")
    if report.ok:
        print("OK: nothing acknowledged was lost, nothing acknowledged came back.")
        return 0
    print("FAILED: the queue broke its promises (see above).")
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
