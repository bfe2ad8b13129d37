"""What the contract allows after a crash: the model the crash tests check pqueue against.

Items are the integers 0, 1, 2, ... put in that order, so put order is numeric order.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from pqueue import Queue
from pqueue.core.state import Durability, Policy
from pqueue.crashtest import PROCESS_CRASH, PersistenceModel

PATH = "/q"


def small_policy(durability: Durability, *, every: int = 1, acks: int = 3) -> Policy:
    """Checkpoints and roll-over as often as possible, so crashes hit them."""
    return Policy(
        checkpoint_every=every,
        checkpoint_when_drained=durability == "fsync",
        ack_log_bytes=25 * acks,
        prealloc_bytes=512 if durability == "fsync" else 0,
    )


@attrs.define
class Expected:
    """The history of a workload, as the caller saw it.

    ``put``: items whose put returned. ``acked``: items whose acknowledgement returned.
    ``maybe_put``: an item whose put was in flight at the crash. ``maybe_acked``: items
    whose acknowledgement was in flight.
    """

    put: list[int] = attrs.Factory(list)
    acked: set[int] = attrs.Factory(set)
    maybe_put: set[int] = attrs.Factory(set)
    maybe_acked: set[int] = attrs.Factory(set)

    def snapshot(self) -> Expected:
        """An independent copy of the history as it is now."""
        return Expected(
            list(self.put), set(self.acked), set(self.maybe_put), set(self.maybe_acked)
        )

    def unacked(self) -> list[int]:
        return [x for x in self.put if x not in self.acked]


def covered(durability: str, model: PersistenceModel) -> bool:
    """Whether the mode promises no loss for crashes of this kind (fsync: all; flush: a
    process crash only)."""
    return durability == "fsync" or model == PROCESS_CRASH


def check_recovered(items: Sequence[int], expected: Expected, strong: bool) -> None:
    """Check the items a reopened queue delivers (all of them, in order) against the history.

    Always: nothing invented, no duplicates, put order. With ``strong`` (the crash kind is
    covered by the mode): every unacknowledged put is there (but for in-flight acks) and no
    acknowledged item is. Otherwise (flush mode, power loss): what survives is a prefix of
    the puts, less some acknowledged items.
    """
    known = set(expected.put) | expected.maybe_put
    assert list(items) == sorted(items), f"out of put order: {items}"
    assert len(set(items)) == len(items), f"delivered twice: {items}"
    invented = [x for x in items if x not in known]
    assert not invented, f"never put: {invented}"
    if strong:
        back = [x for x in items if x in expected.acked]
        assert not back, f"acknowledged, yet delivered again: {back}"
        lost = [
            x for x in expected.unacked() if x not in items and x not in expected.maybe_acked
        ]
        assert not lost, f"acknowledged puts lost: {lost} (recovered {items})"
    elif items:
        last = items[-1]
        gaps = [
            x for x in expected.unacked()
            if x < last and x not in items and x not in expected.maybe_acked
        ]
        assert not gaps, f"puts lost before later ones survived: {gaps} (recovered {items})"


def drain(q: Queue[int]) -> list[int]:
    """Every item the queue delivers now, acknowledged."""
    items = []
    while q.qsize():
        items.append(q.get())
        q.task_done()
    return items
