"""A one-line progress bar on stderr, for the command line's long commands (``verify``,
``migrate``)."""

from __future__ import annotations

from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """Called with (done, total) as work goes on: redraws one line in place on ``stream``;
    ``finish()`` ends the line (if anything was drawn)."""

    def __init__(self, stream: TextIO, unit: str, width: int = 30) -> None:
        self.stream = stream
        self.unit = unit
        self.width = width
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // total if total else self.width
        percent = 100 * done // total if total else 100
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done:,}/{total:,} {self.unit} ({percent}%)")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
