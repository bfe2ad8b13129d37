"""benchmarks/bench_speed.py runs end to end with every row tiny: it measures nothing here, it
only has to keep working, with or without Queue.put_many. Its numbers are read from a real
run, never asserted in tests."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import pqueue

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ["--quick", "--n", "20", "--repeat", "1"]  # --n scales every row: 1 MiB rows get 2


@pytest.fixture
def bench_speed(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports bench_processes beside it
    return importlib.import_module("bench_speed")


def _run(bench_speed: ModuleType, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "speed.json"
    assert bench_speed.main([*TINY, "--dir", str(tmp_path), "--json", str(out), *extra]) == 0
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def test_every_row_has_a_rate_and_the_latencies_are_ordered(
    bench_speed: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _run(bench_speed, tmp_path)
    printed = capsys.readouterr().out
    built = hasattr(pqueue.Queue, "put_many")
    assert report["put_many_built"] is built
    rows = {row["row"]: row for row in report["rows"]}
    expected = bench_speed.rows(bench_speed.Sizes.from_n(20), dict.fromkeys(
        key for key, *_ in bench_speed.PEERS
    ))
    assert list(rows) == [row.key for row in expected]
    for key, row in rows.items():
        if key.startswith("batch_") and not built:
            assert row["status"] == "n/a (not built)" and row["rate"] is None
        elif row["unavailable"] is not None:  # a peer not installed names its install
            assert row["unavailable"].startswith("SKIPPED: not installed (pip install")
        else:
            assert row["rate"] > 0, key
            assert row["status"] in (("met", "not met") if row["target"] else ("-",)), key
    latency = report["latency"]
    assert [lat["operation"] for lat in latency] == [
        "flush_put", "flush_get", "fsync_put", "fsync_get"
    ]
    for lat in latency:
        assert lat["samples"] > 0
        assert 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
    assert "| row | N | rate |" in printed
    assert "| operation | samples | p50 µs |" in printed
    assert list(tmp_path.iterdir()) == [tmp_path / "speed.json"]  # every directory removed


def test_without_put_many_the_batch_rows_say_not_built(
    bench_speed: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_speed, "_has_batches", lambda: False)
    extra = []
    if importlib.util.find_spec("matplotlib") is not None:
        extra = ["--chart", str(tmp_path / "speed.png")]
    report = _run(bench_speed, tmp_path, *extra)
    rows = {row["row"]: row for row in report["rows"]}
    for key in ("batch_put", "batch_get"):
        assert rows[key]["status"] == "n/a (not built)"
        assert rows[key]["rate"] is None and rows[key]["ratio"] is None
    assert rows["fsync_put"]["rate"] > 0
    if extra:
        assert (tmp_path / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
