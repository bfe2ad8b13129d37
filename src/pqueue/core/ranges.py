"""Sets of item numbers as sorted, disjoint ranges: the queue's out-of-order acknowledgements.

A set is a flat tuple of bounds ``(a0, b0, a1, b1, ...)`` standing for the half-open ranges
``[a0, b0), [a1, b1), ...``, sorted and apart (``b0 < a1``: touching ranges are merged). A
number is in the set exactly when ``bisect_right(bounds, n)`` is odd.

Acknowledgements out of order come in runs: one item held while the ones after it are
acknowledged is a single range however long the run, and the set only has as many ranges as
there are gaps between acknowledged runs (at most one per item delivered and held). Adding
a number costs a binary search and a copy of the tuple (a ``memcpy`` of two words a range),
so it stays small where a ``frozenset`` of the numbers grew with every acknowledgement and
made acknowledging quadratic. Pure functions of immutable values, like the rest of the core.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

__all__ = [
    "EMPTY",
    "Ranges",
    "add",
    "add_range",
    "contains",
    "count",
    "from_pairs",
    "pairs",
    "pop_front",
]

Ranges = tuple[int, ...]
"""Bounds ``(a0, b0, a1, b1, ...)`` of sorted, disjoint, non-touching half-open ranges."""

EMPTY: Ranges = ()


def contains(bounds: Ranges, n: int) -> bool:
    """Whether ``n`` is in the set."""
    return bool(bisect_right(bounds, n) & 1)


def add(bounds: Ranges, n: int) -> Ranges:
    """The set with ``n`` added (``n`` must not be in it already)."""
    i = bisect_right(bounds, n)
    if i & 1:
        raise ValueError(f"{n} is in the set already")
    joins_left = i > 0 and bounds[i - 1] == n
    joins_right = i < len(bounds) and bounds[i] == n + 1
    if joins_left and joins_right:
        return bounds[: i - 1] + bounds[i + 1 :]
    if joins_left:
        return (*bounds[: i - 1], n + 1, *bounds[i:])
    if joins_right:
        return (*bounds[:i], n, *bounds[i + 1 :])
    return (*bounds[:i], n, n + 1, *bounds[i:])


def add_range(bounds: Ranges, start: int, end: int) -> Ranges:
    """The set with every number of ``[start, end)`` added (some may be in it already)."""
    if start >= end:
        return bounds
    # Ranges ending before start stay, as do ranges starting after end; the rest merge.
    lo = bisect_left(bounds, start)
    hi = bisect_right(bounds, end)
    if lo & 1:  # start falls inside (or at the end of) a range: extend from its start
        lo -= 1
        start = bounds[lo]
    if hi & 1:  # end falls inside (or at the start of) a range: extend to its end
        end = bounds[hi]
        hi += 1
    return (*bounds[:lo], start, end, *bounds[hi:])


def count(bounds: Ranges, below: int) -> int:
    """How many numbers of the set are below ``below``."""
    total = 0
    for i in range(0, len(bounds), 2):
        start = bounds[i]
        if start >= below:
            break
        total += min(bounds[i + 1], below) - start
    return total


def pop_front(bounds: Ranges, tail: int, limit: int) -> tuple[int, Ranges]:
    """Move ``tail`` past the numbers of the set that start at it, but not past ``limit``:
    the new tail and the set without the numbers passed. Every number of the set is at
    least ``tail``."""
    if not bounds or bounds[0] != tail or tail >= limit:
        return tail, bounds
    end = bounds[1]
    if end <= limit:
        return end, bounds[2:]
    return limit, (limit, *bounds[1:])


def from_pairs(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """The set of the half-open ranges ``ranges`` (in any order, overlapping or not)."""
    bounds = EMPTY
    for start, end in sorted(ranges):
        bounds = add_range(bounds, start, end)
    return bounds


def pairs(bounds: Ranges) -> Iterator[tuple[int, int]]:
    """The ranges of the set, in order, as ``(start, end)``."""
    for i in range(0, len(bounds), 2):
        yield bounds[i], bounds[i + 1]
