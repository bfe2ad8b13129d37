"""The benchmark (``pqueue.bench``: ``pqueue bench``, benchmarks/bench.py) runs end to end
(with tiny N): it measures nothing here, it only has to keep working. Its numbers are read
from a real run, never asserted in tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pqueue
from pqueue import Durability, bench


def test_the_benchmark_runs_every_target_and_reports_every_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    bench.main(
        ["--dir", str(tmp_path), "--n-slow", "20", "--n-fast", "200", "--repeat", "1",
         "--json", str(out)]
    )
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    rows = {row["target"]: row for row in report["targets"]}
    assert set(rows) == {t.key for t in bench.targets(20, 200)}
    for key in ("fsync", "flush", "memory"):  # need nothing beyond pqueue itself
        row = rows[key]
        assert row["skipped"] is None
        assert row["put_per_s"] > 0 and row["get_per_s"] > 0 and row["interleaved_per_s"] > 0
        assert row["get_phase"] == "get + task_done"
    # the rows with deliveries held (min(1,000, N // 2) = 100 of the 1,000 with N = 200)
    held = {"flush_held1": "1", "flush_held1000": "100", "fsync_held1": "1"}
    for key, count in held.items():
        row = rows[key]
        assert row["skipped"] is None
        assert row["put_per_s"] > 0 and row["get_per_s"] > 0 and row["interleaved_per_s"] > 0
        assert row["get_phase"] == f"get + task_done, {count} held"
    assert list(report["held_shares"]) == [text for text, *_ in bench.HELD_SHARES]
    assert len(report["held_shares"]) == 2 * len(held)
    for share in report["held_shares"].values():  # a measurement, never a threshold
        assert share is not None and share > 0
    assert rows["flushwork"]["put_per_s"] > 0 and rows["flushwork"]["interleaved_per_s"] is None
    for row in rows.values():
        if row["skipped"] is not None:  # a peer not installed names its install command
            assert "pip install" in row["skipped"]
            assert "SKIPPED: not installed" in printed
    assert [c["check"] for c in report["checks"]] == [c.text for c in bench.CHECKS]
    for check in report["checks"]:
        assert check["status"] in ("PASS", "FAIL", "SKIPPED")
    assert "| target | N | put/s |" in printed
    assert "## Targets" in printed
    assert "## Deliveries held" in printed
    assert "of the same with none held: " in printed
    assert list(tmp_path.iterdir()) == [out]  # every run's directory was removed


@pytest.mark.parametrize("durability", ["flush", "fsync"])
def test_held_deliveries_are_left_out_of_the_get_phase_and_acked_at_the_end(
    tmp_path: Path, durability: Durability
) -> None:
    phases = bench._pqueue_run(durability, 3)(tmp_path, 10)
    assert phases.get_phase == "get + task_done, 3 held"
    assert phases.get_items == 7  # the get phase got the 10 items put but the 3 held
    assert phases.get is not None and phases.get > 0
    assert phases.interleaved is not None and phases.interleaved > 0
    reopened = pqueue.Queue[bytes](tmp_path / "q", durability="flush")
    try:  # nothing delivered again: the held deliveries were acked before close
        assert reopened.qsize() == 0
    finally:
        reopened.close()


def test_held_deliveries_are_at_most_half_of_n(tmp_path: Path) -> None:
    phases = bench._pqueue_run("flush", 1000)(tmp_path, 9)
    assert phases.get_phase == "get + task_done, 4 held"
    assert phases.get_items == 5


def test_the_chart_is_a_png_of_the_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "bench.png"
    bench.main(["--dir", str(tmp_path), "--n-slow", "10", "--n-fast", "100", "--repeat", "1",
                "--chart", str(chart)])
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
