"""Every short workload, every crash point, every crash state: the contract holds.

Workloads are all sequences of put/get/ack/close-and-reopen up to a length, on chunks of one
or two items with a checkpoint at every chunk boundary (so crashes land in roll-overs,
checkpoints and chunk deletions). A crash is tried after every number of file operations,
from none (inside the first open) to all; every state the persistence model allows at that
point is reopened, drained and checked.
"""

from __future__ import annotations

import attrs
import pytest

from crashtest.exhaustive import explore, opener, workloads
from pqueue.core.state import Durability
from pqueue.crashtest import POWER_LOSS, PROCESS_CRASH, PersistenceModel

REORDERING = attrs.evolve(POWER_LOSS, reorder_dir_ops=True)


@pytest.mark.parametrize(
    ("durability", "model", "chunksize", "length"),
    [
        ("fsync", POWER_LOSS, 1, 4),
        ("fsync", POWER_LOSS, 2, 4),
        ("fsync", PROCESS_CRASH, 1, 4),
        ("fsync", REORDERING, 1, 3),
        ("flush", PROCESS_CRASH, 1, 4),
        ("flush", POWER_LOSS, 1, 4),
        ("flush", POWER_LOSS, 2, 3),
    ],
    ids=lambda v: v if isinstance(v, (str, int)) else "",
)
def test_every_crash_state_of_short_workloads_recovers(
    durability: Durability, model: PersistenceModel, chunksize: int, length: int
) -> None:
    open_queue = opener(durability, chunksize)
    checked = sum(explore(ops, open_queue, durability, model) for ops in workloads(length))
    assert checked > 100 * length  # every workload had crash states to check
