"""benchmarks/bench.py runs end to end (with tiny N): it measures nothing here, it only
has to keep working. Its numbers are read from a real run, never asserted in tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def load_bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("pqueue_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_every_target_and_reports_every_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench(monkeypatch)
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
    assert list(tmp_path.iterdir()) == [out]  # every run's directory was removed
