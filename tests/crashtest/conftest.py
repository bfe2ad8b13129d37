"""Report how many crash states the exhaustive tests checked, and how fast."""

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
