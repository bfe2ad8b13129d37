"""``python -m pqueue demo`` runs producers and workers on one queue through SIGKILLs and
checks the result; its checker catches broken promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pqueue import DeadLetter
from pqueue.demo import MAX_ATTEMPTS, POISON, Log, check, is_poison, job_name


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pqueue", "demo", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def count(label: str, stdout: str) -> int:
    found = re.search(rf"^  {re.escape(label)}:\s+(\d+)", stdout, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{stdout}"
    return int(found[1])


def test_the_demo_kills_workers_and_finds_every_job_done_or_dead(tmp_path: Path) -> None:
    out = demo(str(tmp_path / "q"), "--seed", "7")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "round 1: killed worker" in out.stdout
    assert re.search(r"^\s+started worker 4 \(pid \d+\)$", out.stdout, re.MULTILINE)
    assert count("jobs lost (not done, no dead letter)", out.stdout) == 0
    assert count("acknowledged jobs delivered again", out.stdout) == 0
    assert count("jobs put (put returned)", out.stdout) >= POISON  # one poison job at least
    # The demo waits for a poison job to be put: there is a dead letter to check.
    assert re.search(r"^  dead letters:\s+[1-9]\d* poison jobs", out.stdout, re.MULTILINE)
    assert count("poison jobs not dead-lettered", out.stdout) == 0
    assert out.stdout.rstrip().endswith("nothing acknowledged came back.")


def test_the_demo_makes_its_own_directory_by_default_and_removes_it() -> None:
    out = demo("--rounds", "1", "--durability", "flush")
    assert out.returncode == 0, out.stdout + out.stderr
    made = re.search(r"^\(removed (\S*pqueue-demo-\S+), made for the demo\)$", out.stdout,
                     re.MULTILINE)
    assert made, out.stdout
    assert not os.path.exists(made[1])
    assert "counts as neither" in out.stdout  # what a kill in the middle of a call means


def test_the_demo_leaves_a_directory_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "q"
    out = demo(str(path), "--rounds", "1", "--durability", "flush")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"(the queue is left in {path}, as given)" in out.stdout
    assert (path / "info").exists()


# --- the checker, fed made-up reports ----------------------------------------------------------


class Clock:
    """Made-up times for the worker lines: each call a little later."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> str:
        self.now += 0.001
        return f"{self.now:.6f}"


def puts(producer: int, last: int) -> list[str]:
    return [f"put {job_name(producer, n)}" for n in range(1, last + 1)]


def served(clock: Clock, job: str, attempt: int, outcome: str | None) -> list[str]:
    """A worker's lines for one delivery: ``outcome`` "done", "nack" or None (killed)."""
    lines = [f"got {job} attempt {attempt} {clock()} {clock()}"]
    if outcome == "done":
        lines.append(f"done {job} {clock()}")
    elif outcome == "nack":
        lines.append(f"nack {job}")
    return lines


POISONED = job_name(1, POISON)


def good_run() -> tuple[list[Log], list[DeadLetter[str]]]:
    """Producer 1 puts 18 jobs, the 17th poison; worker 1 dies holding job 3, which worker 2
    gets again and does; the poison job fails 3 times and is dead-lettered."""
    clock = Clock()
    w1 = ["open"]
    w2 = ["open"]
    for n in (1, 2):
        w1 += served(clock, job_name(1, n), 1, "done")
    w1 += served(clock, job_name(1, 3), 1, None)  # SIGKILL
    w2 += served(clock, job_name(1, 3), 2, "done")
    for n in range(4, POISON):
        w2 += served(clock, job_name(1, n), 1, "done")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        w2 += served(clock, POISONED, attempt, "nack")
    w2 += served(clock, job_name(1, 18), 1, "done")
    logs = [
        Log("producer", 1, ["open", *puts(1, 18)]),
        Log("worker", 1, w1, killed=True),
        Log("worker", 2, w2),
    ]
    return logs, [DeadLetter(POISONED, MAX_ATTEMPTS, POISON - 1)]


def test_poison_is_every_seventeenth_job() -> None:
    assert [n for n in range(1, 60) if is_poison(job_name(2, n))] == [17, 34, 51]
    assert not is_poison("junk") and not is_poison("1-x17")


def test_the_checker_accepts_a_run_that_kept_its_promises() -> None:
    logs, dead = good_run()
    report = check(logs, dead)
    assert report.ok, report.failures()
    assert len(report.put) == 18 and len(report.done) == 17
    assert (report.killed_workers, report.redelivered_after_kill) == (1, 1)


def test_the_checker_catches_a_lost_job() -> None:
    logs, dead = good_run()
    logs[2] = Log("worker", 2, [line for line in logs[2].lines if "1-00005" not in line])
    report = check(logs, dead)
    assert report.lost == ["1-00005"] and not report.ok
    assert report.failures() == ["jobs lost (not done, no dead letter): 1 (1-00005)"]


def test_the_checker_catches_a_job_delivered_after_its_ack() -> None:
    logs, dead = good_run()
    clock = Clock()
    clock.now = 200.0  # after everything else
    again = Log("worker", 3, served(clock, "1-00004", 2, "done"))
    assert check([*logs, again], dead).redelivered_done == ["1-00004"]
    # Even when the attempt number says otherwise: it was asked for after the ack returned.
    again = Log("worker", 3, served(clock, "1-00004", 1, None), killed=True)
    report = check([*logs, again], dead)
    assert report.redelivered_done == ["1-00004"] and report.double_delivered == ["1-00004"]
    # Or found in the queue after the drain.
    assert check(logs, dead, left=["1-00004"]).redelivered_done == ["1-00004"]


def test_the_checker_catches_a_duplicated_dead_letter() -> None:
    logs, dead = good_run()
    report = check(logs, [*dead, dead[0]])
    assert report.duplicate_dead == [POISONED] and not report.ok


def test_the_checker_catches_a_poison_job_delivered_after_it_was_dead_lettered() -> None:
    logs, dead = good_run()
    clock = Clock()
    clock.now = 200.0
    late = Log("worker", 3, served(clock, POISONED, MAX_ATTEMPTS + 1, "nack"))
    report = check([*logs, late], dead)
    assert report.delivered_after_dead == [POISONED] and not report.ok


def test_the_checker_catches_each_other_broken_promise() -> None:
    logs, dead = good_run()
    assert check(logs, []).poison_missing == [POISONED]
    assert check(logs, [DeadLetter(POISONED, 2, 16)]).wrong_attempts == [POISONED]
    good_job = DeadLetter("1-00004", MAX_ATTEMPTS, 3)
    report = check(logs, [*dead, good_job])
    assert report.wrongly_dead == ["1-00004"] and report.done_and_dead == ["1-00004"]
    assert check(logs, [*dead, DeadLetter("1-00099", 3, 98)]).invented == ["1-00099"]
    assert check(logs, dead, left=["9-00001"]).invented == ["9-00001"]
    assert check(logs, dead, left=["1-00018"]).left == ["1-00018"]
    clock = Clock()
    clock.now = 200.0
    forever = Log("worker", 3, served(clock, "1-00002", MAX_ATTEMPTS + 1, "done"))
    assert check([*logs, forever], dead).beyond_max == ["1-00002"]
    garbled = Log("worker", 3, ["done 1-00002 1.0", "what"])
    assert len(check([*logs, garbled], dead).garbled) == 2


def test_the_checker_catches_jobs_delivered_out_of_put_order() -> None:
    clock = Clock()
    w1 = served(clock, "1-00002", 1, "done") + served(clock, "1-00001", 1, "done")
    report = check([Log("producer", 1, puts(1, 2)), Log("worker", 1, w1)], [])
    assert report.out_of_order == ["1-00002"]
    # Two workers whose calls overlap may report in either order: not a break.
    a = ["got 1-00001 attempt 1 10.000000 10.500000", "done 1-00001 10.600000"]
    b = ["got 1-00002 attempt 1 10.100000 10.200000", "done 1-00002 10.300000"]
    logs = [Log("producer", 1, puts(1, 2)), Log("worker", 1, a), Log("worker", 2, b)]
    assert check(logs, []).ok
    b = ["got 1-00002 attempt 1 9.000000 9.500000", "done 1-00002 9.600000"]  # before a asked
    logs = [Log("producer", 1, puts(1, 2)), Log("worker", 1, a), Log("worker", 2, b)]
    assert check(logs, []).out_of_order == ["1-00002"]
    # Across producers there is no order to keep.
    logs = [Log("producer", 1, puts(1, 1)), Log("producer", 2, puts(2, 1)),
            Log("worker", 1, served(clock, "2-00001", 1, "done")
                + served(clock, "1-00001", 1, "done"))]
    assert check(logs, []).ok


def test_what_a_killed_child_left_unreported_may_have_happened() -> None:
    clock = Clock()
    producer = Log("producer", 1, puts(1, 2), killed=True)  # its third put was in flight
    held = served(clock, "1-00001", 1, None)  # killed before (or after) its ack returned
    rest = served(clock, "1-00002", 1, "done")
    for killed_worker in (Log("worker", 1, held, killed=True), Log("worker", 1, [*held, "do"],
                                                                    killed=True)):
        logs = [producer, killed_worker, Log("worker", 2, rest)]
        assert check(logs, []).ok  # job 1 acknowledged unreported, job 3 never put
        third = Log("worker", 3, served(clock, "1-00003", 1, "done"))
        assert check([*logs, third], []).ok  # job 3 was put
    report = check([producer, Log("worker", 2, rest)], [])
    assert report.lost == ["1-00001"]  # no worker died holding it


def test_a_good_job_dead_lettered_by_three_kills_is_no_break() -> None:
    clock = Clock()
    logs = [Log("producer", 1, puts(1, 1))]
    logs += [Log("worker", n, served(clock, "1-00001", n, None), killed=True) for n in (1, 2, 3)]
    report = check(logs, [DeadLetter("1-00001", MAX_ATTEMPTS, 0)])
    assert report.ok and report.dead_by_kills == ["1-00001"]
    logs[2] = Log("worker", 2, served(clock, "1-00001", 2, "nack"))  # not a kill: a break
    assert check(logs, [DeadLetter("1-00001", MAX_ATTEMPTS, 0)]).wrongly_dead == ["1-00001"]
