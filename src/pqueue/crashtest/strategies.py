"""Hypothesis strategies over crash states.

Hypothesis is imported when a strategy is built, not when ``pqueue.crashtest`` is imported,
so the rest of the harness works without it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from pqueue.crashtest.disk import SimulatedDisk
from pqueue.crashtest.models import POWER_LOSS, ModelName, PersistenceModel, _as_model
from pqueue.crashtest.states import _draw_crash_state

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["crash_state"]


def crash_state(
    disk: SimulatedDisk, model: PersistenceModel | ModelName = POWER_LOSS
) -> SearchStrategy[SimulatedDisk]:
    """A strategy drawing one state ``disk`` could be found in after a crash under ``model``
    (``POWER_LOSS`` by default, or named as ``crash_states`` takes it).

    Use it where ``disk.crash_states(model)`` is too large to enumerate (a long unsynced
    history). Every disk it draws is one ``crash_states`` would yield, as a new disk with
    everything durable. The disk is snapshotted now; later changes to it are not seen.

    Examples shrink toward losing fewer operations and toward untorn writes: the simplest
    example is the visible state, where nothing was lost. For each directory it draws how
    many of its pending entry operations were lost (with ``reorder_dir_ops``, whether each
    one was); for each file, how many of its pending data operations were lost and then
    whether, and how, the last surviving write was torn.
    """
    return _strategy()(disk.copy(), _as_model(model, "crash_state"), disk._uid)


@functools.cache
def _strategy() -> Callable[
    [SimulatedDisk, PersistenceModel, int], SearchStrategy[SimulatedDisk]
]:
    """The composite strategy, built once: building one inspects source code (about 1.6 ms),
    and a state machine asks for a crash state at every crash."""
    from hypothesis import strategies as st  # noqa: PLC0415 (hypothesis is optional)

    @st.composite
    def states(
        draw: st.DrawFn, snapshot: SimulatedDisk, model: PersistenceModel, source: int
    ) -> SimulatedDisk:
        return _draw_crash_state(
            snapshot,
            model,
            lambda lo, hi: draw(st.integers(lo, hi)),
            lambda: draw(st.booleans()),
            source,
        )

    return states
