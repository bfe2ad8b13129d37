"""The pytest plugin pqueue.crashtest.plugin (entry point pqueue_crashtest), run in real
inner pytest processes: the simulated_disk fixture, the summary of the crash states each test
checked, the user_properties, and loading without Hypothesis."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# An inner test file: a saver checked by check_crashes (its report's counts written to
# counts.json), one whose violations fail the test, a test that uses the fixture's
# crash_states by hand, and tests that check nothing.
TESTS = '''
import contextlib
import json
import os

from pqueue.crashtest import PROCESS_CRASH, SimulatedCrash, SimulatedDisk, check_crashes

COUNTS = {counts!r}


def note(name, **counts):
    found = json.load(open(COUNTS)) if os.path.exists(COUNTS) else {{}}
    found[name] = counts
    with open(COUNTS, "w") as f:
        json.dump(found, f)


def save(data, *, sync=True):
    with open("/app/config.tmp", "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace("/app/config.tmp", "/app/config")
    fd = os.open("/app", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def setup():
    save(b"old")


def check():
    with open("/app/config", "rb") as f:
        assert f.read() in (b"old", b"new")


def test_saver():
    first = check_crashes(lambda: save(b"new"), check, setup=setup)
    second = check_crashes(lambda: save(b"new"), check, setup=setup, model=PROCESS_CRASH)
    first.assert_ok()
    second.assert_ok()
    note("test_saver", states=first.states + second.states,
         points=first.crash_points + second.crash_points)


def test_broken_saver():
    report = check_crashes(lambda: save(b"new", sync=False), check, setup=setup)
    note("test_broken_saver", states=report.states, points=report.crash_points)
    report.assert_ok()


def test_by_hand(simulated_disk):
    assert isinstance(simulated_disk, SimulatedDisk)
    simulated_disk.mkdir("/d")
    states = points = 0
    for n in range(3):
        disk = simulated_disk.copy()  # a copy's states are not counted
        disk.crash_after(n)
        with contextlib.suppress(SimulatedCrash):
            disk.write("/d/a", b"x")
            disk.fsync("/d/a")
        assert list(disk.crash_states())
    simulated_disk.write("/d/a", b"xy")
    for _ in simulated_disk.crash_states():
        states += 1
    points += 1
    for state in simulated_disk.crash_states(PROCESS_CRASH):
        states += 1
        break  # one taken: counted as one state, one crash point
    points += 1
    note("test_by_hand", states=states, points=points)


def test_fixture(simulated_disk):
    assert isinstance(simulated_disk, SimulatedDisk)
    assert simulated_disk.files() == {{}}  # fresh: test_fixture_again wrote nothing here
    simulated_disk.write("/a", b"data")
    assert simulated_disk.read("/a") == b"data"


def test_fixture_again(simulated_disk):
    assert simulated_disk.files() == {{}}
    simulated_disk.write("/a", b"other")


def test_nothing():
    pass
'''

TOTAL = re.compile(
    r"^pqueue\.crashtest: (\d+) crash states at (\d+) crash points checked by (\d+) tests? "
    r"in [0-9.]+ s \((\d+) per second\)$"
)
ROW = re.compile(r"^\s*(\d+) states\s+(\d+) points\s+([0-9.]+) s\s+(\d+)/s  (\S+)$")


@pytest.fixture(autouse=True)
def _autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    # The inner runs find the plugin by its entry point, as a user's pytest does.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_PLUGINS", raising=False)


def inner(pytester: pytest.Pytester) -> Path:
    """The inner test file, written; returns where its tests note their own counts."""
    counts = pytester.path / "counts.json"
    pytester.makepyfile(test_inner=TESTS.format(counts=str(counts)))
    return counts


def table(lines: list[str]) -> dict[str, tuple[int, int]]:
    rows = {}
    for line in lines:
        match = ROW.match(line)
        if match:
            rows[match[5].split("::")[-1]] = (int(match[1]), int(match[2]))
    return rows


def totals(lines: list[str]) -> list[tuple[int, ...]]:
    return [tuple(int(g) for g in m.groups()) for m in map(TOTAL.match, lines) if m]


def test_the_summary_lists_each_test_that_checked_crash_states(pytester: pytest.Pytester) -> None:
    counts_file = inner(pytester)
    result = pytester.runpytest_subprocess("--crashtest-report")
    result.assert_outcomes(passed=5, failed=1)
    counts = json.loads(counts_file.read_text())
    lines = result.outlines
    assert any(re.fullmatch(r"=+ crash states checked =+", line) for line in lines)
    rows = table(lines)
    # Exactly the tests that checked states, with the counts of their own reports (the
    # failing test's too); test_by_hand: only the fixture disk's states, not its copies'.
    assert rows == {name: (c["states"], c["points"]) for name, c in counts.items()}
    assert set(rows) == {"test_saver", "test_broken_saver", "test_by_hand"}
    assert counts["test_by_hand"]["states"] > 1 and counts["test_by_hand"]["points"] == 2
    states = sum(c["states"] for c in counts.values())
    points = sum(c["points"] for c in counts.values())
    [(total_states, total_points, tests, rate)] = totals(lines)
    assert (total_states, total_points, tests) == (states, points, 3)
    assert rate > 0


def test_the_table_needs_verbose_or_the_option(pytester: pytest.Pytester) -> None:
    inner(pytester)
    quiet = pytester.runpytest_subprocess("-k", "saver and not broken")
    quiet.assert_outcomes(passed=1)
    assert not table(quiet.outlines)
    assert "crash states checked" not in quiet.stdout.str()
    [(states, points, tests, _)] = totals(quiet.outlines)
    assert tests == 1 and states > points > 0
    verbose = pytester.runpytest_subprocess("-v", "-k", "saver and not broken")
    assert set(table(verbose.outlines)) == {"test_saver"}
    assert totals(verbose.outlines)[0][:3] == (states, points, 1)


def test_nothing_is_printed_when_no_test_checked_a_crash_state(
    pytester: pytest.Pytester,
) -> None:
    inner(pytester)
    result = pytester.runpytest_subprocess("-v", "--crashtest-report", "-k", "fixture or nothing")
    result.assert_outcomes(passed=3)  # the fixture is fresh for each test
    assert "crash states" not in result.stdout.str()
    assert not totals(result.outlines)


def test_the_counts_are_user_properties_in_junit_xml(pytester: pytest.Pytester) -> None:
    counts_file = inner(pytester)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(f"--junitxml={xml}", "-k", "saver or nothing")
    result.assert_outcomes(passed=2, failed=1)
    counts = json.loads(counts_file.read_text())
    found: dict[str, dict[str, str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        found[case.attrib["name"]] = {
            prop.attrib["name"]: prop.attrib["value"] for prop in case.iter("property")
        }
    assert found["test_nothing"] == {}
    for name in ("test_saver", "test_broken_saver"):
        props = found[name]
        assert set(props) == {"crash_states", "crash_points", "crash_seconds"}
        assert int(props["crash_states"]) == counts[name]["states"]
        assert int(props["crash_points"]) == counts[name]["points"]
        assert float(props["crash_seconds"]) > 0


BLOCK_HYPOTHESIS = '''
import sys


class Refuse:
    """As if Hypothesis were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "hypothesis" or name.startswith("hypothesis."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


assert "hypothesis" not in sys.modules
sys.meta_path.insert(0, Refuse())
'''

WITHOUT_HYPOTHESIS = '''
import sys

import pytest

from pqueue.crashtest import SimulatedDisk, check_crashes


def test_without_hypothesis(simulated_disk, request):
    with pytest.raises(ImportError):
        import hypothesis  # noqa: F401
    assert "hypothesis" not in sys.modules
    assert isinstance(simulated_disk, SimulatedDisk)
    assert request.config.pluginmanager.get_plugin("pqueue_crashtest") is not None

    def save():
        with open("/app/a", "wb") as f:
            f.write(b"new")

    check_crashes(save, lambda: None)
'''


def test_the_plugin_loads_without_hypothesis(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(block_hypothesis=BLOCK_HYPOTHESIS, test_alone=WITHOUT_HYPOTHESIS)
    # The blocker is loaded first (-p plugins come before the entry points), Hypothesis's
    # own pytest plugin is left out, as without the crashtest extra.
    result = pytester.runpytest_subprocess(
        "-p", "block_hypothesis", "-p", "no:hypothesispytest", "test_alone.py"
    )
    result.assert_outcomes(passed=1)
    assert len(totals(result.outlines)) == 1


def test_importing_the_plugin_imports_no_hypothesis() -> None:
    code = (
        "import sys, pqueue.crashtest.plugin\n"
        "assert 'hypothesis' not in sys.modules, 'hypothesis imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_it_is_enabled_and_disabled_by_its_entry_point_name(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner(pytester)
    off = pytester.runpytest_subprocess("-p", "no:pqueue_crashtest", "-k", "fixture or saver")
    assert "fixture 'simulated_disk' not found" in off.stdout.str()
    assert not totals(off.outlines)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    on = pytester.runpytest_subprocess("-p", "pqueue_crashtest", "-k", "test_fixture or saver")
    on.assert_outcomes(passed=3, failed=1)
    assert totals(on.outlines)[0][2] == 2
