"""The pytest plugin of ``pqueue.crashtest`` (entry point ``pqueue_crashtest``, loaded by
pytest wherever pqueue-durable is installed; ``-p no:pqueue_crashtest`` turns it off).

- Fixture ``simulated_disk``: a new, empty ``SimulatedDisk`` for each test.
- A summary of the crash states each test checked: those of every ``check_crashes`` call
  and those ``simulated_disk.crash_states()`` yielded (not those of other disks, copies of
  it included). pytest's terminal summary ends with one line of totals, and with
  ``--crashtest-report`` or ``-v`` a table of the tests that checked any, with their crash
  points, seconds and states per second. Each such test's report also carries them as
  ``user_properties`` (``crash_states``, ``crash_points``, ``crash_seconds``), so they
  reach ``--junitxml``.

Loading the plugin costs nothing beyond importing ``pqueue.crashtest`` and never imports
Hypothesis, so it works without the ``crashtest`` extra. The per-test table is built from
the reports' ``user_properties``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pqueue.crashtest.check import CrashReport
    from pqueue.crashtest.disk import SimulatedDisk
    from pqueue.crashtest.models import ModelName, PersistenceModel

__all__ = ["simulated_disk"]

_PLUGIN = "pqueue_crashtest_summary"
_KEYS = ("crash_states", "crash_points", "crash_seconds")


class _Tally:
    """The crash states one test checked, at how many crash points, in how many seconds."""

    __slots__ = ("points", "seconds", "states")

    def __init__(self) -> None:
        self.states = 0
        self.points = 0
        self.seconds = 0.0

    def add(self, states: int, points: int, seconds: float) -> None:
        self.states += states
        self.points += points
        self.seconds += seconds


class _Summary:
    """The plugin's state for one pytest run: the tally of the test running and the
    counts of the tests that checked any crash state."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.current: _Tally | None = None
        self.results: list[tuple[str, int, int, float]] = []  # node id, states, points, s

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, None]:
        from pqueue.crashtest import check  # noqa: PLC0415 (imported with the package)

        tally = self.current = _Tally()

        def observe(report: CrashReport) -> None:
            tally.add(report.states, report.crash_points, report.seconds)

        check._report_observers.append(observe)
        try:
            yield
        finally:
            check._report_observers.remove(observe)
            self.current = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, object, None]:
        # The teardown report is made after everything the test ran, and it is the one
        # whose user_properties junitxml writes.
        tally = self.current
        if call.when == "teardown" and tally is not None and tally.states:
            item.user_properties.extend(zip(_KEYS, (tally.states, tally.points,
                                                    round(tally.seconds, 6)), strict=True))
        yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        found = {name: _number(value) for name, value in report.user_properties}
        states, points, seconds = (found.get(name) for name in _KEYS)
        if states is not None and points is not None and seconds is not None:
            self.results.append((report.nodeid, int(states), int(points), seconds))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.results:
            return
        write = terminalreporter.write_line
        if self.config.getoption("crashtest_report") or self.config.getoption("verbose") > 0:
            terminalreporter.write_sep("=", "crash states checked")
            for nodeid, states, points, seconds in self.results:
                write(f"{states:>9} states {points:>7} points {seconds:>8.3f} s "
                      f"{_rate(states, seconds):>8.0f}/s  {nodeid}")
        states = sum(result[1] for result in self.results)
        points = sum(result[2] for result in self.results)
        seconds = sum(result[3] for result in self.results)
        tests = len(self.results)
        write(f"pqueue.crashtest: {states} crash states at {points} crash points checked by "
              f"{tests} test{'' if tests == 1 else 's'} in {seconds:.2f} s "
              f"({_rate(states, seconds):.0f} per second)")


def _number(value: object) -> float | None:
    if isinstance(value, (int, float, str)):
        try:
            return float(value)
        except ValueError:
            pass
    return None


def _rate(states: int, seconds: float) -> float:
    return states / seconds if seconds else 0.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pqueue.crashtest")
    group.addoption(
        "--crashtest-report",
        action="store_true",
        default=False,
        help="list each test that checked crash states (check_crashes, the simulated_disk "
        "fixture) in the terminal summary, as -v does; without it only the total is shown",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Summary(config), _PLUGIN)


def _counted(states: Iterator[SimulatedDisk], tally: _Tally) -> Iterator[SimulatedDisk]:
    """``states``, adding to ``tally`` how many were taken (one crash point) and how long
    that took, the caller's checks of them included, once it is done with them."""
    taken = 0
    started = time.perf_counter()
    try:
        for state in states:
            taken += 1
            yield state
    finally:
        if taken:
            tally.add(taken, 1, time.perf_counter() - started)


@functools.cache
def _disk_class() -> Callable[[_Tally | None], SimulatedDisk]:
    from pqueue.crashtest.disk import SimulatedDisk  # noqa: PLC0415
    from pqueue.crashtest.models import POWER_LOSS  # noqa: PLC0415

    class CountedDisk(SimulatedDisk):
        """A ``SimulatedDisk`` whose ``crash_states`` count in a test's summary."""

        def __init__(self, tally: _Tally | None) -> None:
            super().__init__()
            self._tally = tally

        def crash_states(
            self, model: PersistenceModel | ModelName = POWER_LOSS, *, limit: int | None = None
        ) -> Iterator[SimulatedDisk]:
            states = super().crash_states(model, limit=limit)  # its errors raised now
            return states if self._tally is None else _counted(states, self._tally)

    return CountedDisk


@pytest.fixture
def simulated_disk(request: pytest.FixtureRequest) -> SimulatedDisk:
    """A new, empty ``pqueue.crashtest.SimulatedDisk``. The crash states its
    ``crash_states()`` yields count in the summary of the crash states the test checked
    (those of copies of it do not)."""
    summary = request.config.pluginmanager.get_plugin(_PLUGIN)
    return _disk_class()(summary.current if isinstance(summary, _Summary) else None)
