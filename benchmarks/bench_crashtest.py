"""Speed of pqueue.crashtest.check_crashes on the atomic-save examples, in crash states/s.

Each row runs ``check_crashes`` over one json saver written with plain ``open``/``os``
(the right one and each broken variant of tests/crashtest/test_check_crashes.py: the same
code, imported from there), under POWER_LOSS, --repeat times, and reports the median:
crash states checked, crash points, seconds and states per second. The first row of the
table is the right saver; a broken one also spends time explaining its violations only if
asked (``str(violation)``), which this does not do. Run from the repository's root:

    python benchmarks/bench_crashtest.py [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _examples() -> Any:
    """The savers of tests/crashtest/test_check_crashes.py (loaded from its file, so that
    the benchmark runs what the tests check)."""
    spec = importlib.util.spec_from_file_location(
        "_crashtest_examples", ROOT / "tests" / "crashtest" / "test_check_crashes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


examples = _examples()

SAVERS: list[tuple[str, Callable[[str, object], None]]] = [
    ("right (temp, fsync, rename, fsync dir)", examples.save),
    ("right, through pathlib", examples.save_with_pathlib),
    ("no fsync", examples.save_without_fsync),
    ("no directory fsync", examples.save_without_directory_fsync),
    ("rename before fsync", examples.save_renaming_before_fsync),
    ("written in place", examples.save_in_place),
    ("temp file on another file system", examples.save_through_system_temp),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        tempfile.tempdir = temp  # the system-temp saver's leftovers from crashed runs
        for name, saver in SAVERS:
            runs = [examples.ConfigFile(saver).run() for _ in range(args.repeat)]
            seconds = statistics.median(r.seconds for r in runs)
            report = runs[0]
            rows.append({
                "saver": name, "states": report.states, "crash_points": report.crash_points,
                "violations": len(report.violations), "seconds": seconds,
                "states_per_s": report.states / seconds,
            })
        tempfile.tempdir = None
    print("| saver | states | crash points | violations | ms | states/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['saver']} | {row['states']} | {row['crash_points']} | "
              f"{row['violations']} | {row['seconds'] * 1000:.1f} | "
              f"{row['states_per_s']:,.0f} |")
    total = sum(r["states"] for r in rows) / sum(r["seconds"] for r in rows)
    print(f"\nall savers: {total:,.0f} crash states/s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
