"""``python -m pqueue demo`` runs the main job, and its checker catches broken promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pqueue.demo import check


def test_the_demo_kills_a_worker_and_finds_nothing_lost(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pqueue", "demo", str(tmp_path / "q"), "--seed", "7"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "then SIGKILL" in out.stdout
    assert "acknowledged puts lost:              0" in out.stdout
    assert out.stdout.rstrip().endswith("nothing acknowledged came back.")


def test_the_demo_makes_its_own_directory_by_default() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pqueue", "demo", "--rounds", "1", "--durability", "flush"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "pqueue-demo-" in out.stdout


ROUND = ["put 1-000000", "put 1-000001", "got 1-000000", "done 1-000000", "put 1-000002"]


def test_the_checker_accepts_a_queue_that_kept_its_promises() -> None:
    report = check([ROUND], ["1-000001", "1-000002"])
    assert report.ok and report.done == {"1-000000"}
    assert check([ROUND], ["1-000001", "1-000002", "1-000003"]).ok  # the put in flight


def test_the_checker_catches_each_broken_promise() -> None:
    assert check([ROUND], ["1-000002"]).lost == ["1-000001"]
    assert check([ROUND], ["1-000000", "1-000001", "1-000002"]).redelivered_done == ["1-000000"]
    assert check([ROUND], ["1-000001", "1-000002", "1-000007"]).invented == ["1-000007"]
    assert check([ROUND], ["1-000002", "1-000001"]).out_of_order == 1
    again = [*ROUND, "got 1-000000"]
    assert check([again], ["1-000001", "1-000002"]).redelivered_done == ["1-000000"]


def test_a_task_done_in_flight_at_the_kill_may_have_happened() -> None:
    killed_after_get = ["put 1-000000", "got 1-000000"]
    assert check([killed_after_get], []).ok
    assert check([killed_after_get], ["1-000000"]).ok
