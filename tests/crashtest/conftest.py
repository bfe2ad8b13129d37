"""Report how many crash states the exhaustive tests checked, how fast, and what it took
to catch each broken variant."""

from __future__ import annotations

import pytest

from crashtest.exhaustive import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.states:
        rate = TALLY.states / TALLY.seconds if TALLY.seconds else 0.0
        terminalreporter.write_line(
            f"crash states checked: {TALLY.states} in {TALLY.seconds:.1f} s "
            f"({rate:.0f} per second, each reopened and drained)"
        )
        for kind, states in sorted(TALLY.kinds.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"  {states:>7} {kind}")
    for line in TALLY.caught:
        terminalreporter.write_line(f"broken variant {line}")
