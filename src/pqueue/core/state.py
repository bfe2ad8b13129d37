"""The queue's state: plain frozen values, no behaviour (see ``transitions``).

Items are numbered by a sequence number ``seq`` from 0. Item ``seq`` lives in chunk file
``q{seq // chunksize:05d}``, so a chunk holds at most ``chunksize`` items; within its chunk it
starts at a byte offset that depends on the sizes of the items before it.

Three positions move through the sequence, ``tail <= read <= head``:

- ``head``: the next item to be put (and the byte offset where it will be written);
- ``read``: the next item to be delivered by ``get`` (and its byte offset);
- ``tail``: every item before it is acknowledged. Items in ``acked`` (all from ``tail`` on,
  a ``ranges`` set) were acknowledged out of order; after a reopen they are skipped when
  delivery reaches them. ``tail`` moves past acknowledged items only up to ``read``, so the
  skipping can still see them.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs

from pqueue.core.codec import Durability, Info
from pqueue.core.ranges import Ranges

__all__ = ["Config", "Durability", "Ledger", "Policy", "QueueState", "chunk_path"]

@attrs.frozen(kw_only=True)
class Policy:
    """When the queue checkpoints and how it lays out files. Tunable for tests.

    - ``checkpoint_every``: checkpoint after this many chunk boundaries were crossed by the
      head (a chunk filled) or the tail (a chunk fully acknowledged, so it can be deleted).
    - ``checkpoint_when_drained``: also checkpoint as soon as every item is acknowledged and
      a consumed chunk waits for deletion.
    - ``ack_log_bytes``: the size of the ack log; when full, a checkpoint folds it into info.
    - ``prealloc_bytes``: the first chunk is preallocated with this many zero bytes (``fsync``
      mode; later chunks take the size of the one before), so that a durable put rewrites
      allocated space and ``fdatasync`` need not flush the file size.
    - ``reclaim_after``: seconds after the queue became drained at which a checkpoint
      deletes its chunk files, if it is still drained then (None: only at the checkpoints
      above and at close). The Queue runs a one-off timer thread for it.
    """

    checkpoint_every: int
    checkpoint_when_drained: bool
    ack_log_bytes: int
    prealloc_bytes: int
    reclaim_after: float | None = None


FSYNC_POLICY = Policy(
    checkpoint_every=4, checkpoint_when_drained=True, ack_log_bytes=64 * 1024,
    prealloc_bytes=16 * 1024, reclaim_after=1.0,
)
FLUSH_POLICY = Policy(
    checkpoint_every=64, checkpoint_when_drained=False, ack_log_bytes=256 * 1024,
    prealloc_bytes=0, reclaim_after=1.0,
)


def default_policy(durability: Durability) -> Policy:
    """The policy pqueue uses for ``durability``."""
    return FSYNC_POLICY if durability == "fsync" else FLUSH_POLICY


@attrs.frozen(kw_only=True)
class Config:
    """What a queue was opened with. ``sync`` is ``durability == "fsync"``.

    ``salt`` seeds the CRC of item records (see ``codec``): for a new queue, the value the
    shell drew for it; recovery replaces it with the one recorded in ``info``.
    """

    directory: str
    chunksize: int
    durability: Durability
    serializer: str
    temp_path: str
    policy: Policy
    salt: int = 0
    info_path: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.directory}/info", takes_self=True)
    )
    ack_path: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.directory}/acks", takes_self=True)
    )
    sync: bool = attrs.field(
        default=attrs.Factory(lambda self: self.durability == "fsync", takes_self=True)
    )


def chunk_path(config: Config, number: int) -> str:
    """The path of chunk file ``number``."""
    return f"{config.directory}/q{number:05d}"


@attrs.frozen
class Ledger:
    """What the state knows about its files, which changes only now and then.

    - ``checkpoint``: the last checkpoint made durable (what ``info`` says on disk).
    - ``head_path``: the chunk file the head writes into.
    - ``alloc``: bytes allocated in that file (zeros past the head are preallocated space).
    - ``crossings``: chunk boundaries crossed since the checkpoint.
    - ``ack_capacity``: bytes of the ack log that records may be written into: its
      preallocated size (in ``fsync`` mode, durably allocated).
    - ``resync``: the items after the checkpointed head may not be durable although the mode
      is ``fsync`` (they were found by recovery, written by an earlier writer): the next
      checkpoint makes them durable first, as a ``flush`` checkpoint does.
    - ``synced``: in ``flush`` mode, the items before it are durable: their chunks were
      synced as the head crossed the chunk after them (0: none since the checkpoint).
    """

    checkpoint: Info
    head_path: str
    alloc: int
    crossings: int
    ack_capacity: int
    resync: bool = False
    synced: int = 0


class QueueState(NamedTuple):
    """The whole state of an open queue, built directly by the transitions.

    A ``NamedTuple`` rather than an attrs class: a new one is built on every put, get and
    acknowledgement, and a tuple is built about three times faster (see
    docs/architecture.md).
    """

    config: Config
    head: int
    head_offset: int
    read: int
    read_offset: int
    tail: int
    acked: Ranges
    size: int
    outstanding: int  # items delivered and not yet acknowledged
    ack_offset: int
    ledger: Ledger

    @property
    def unfinished(self) -> int:
        """Items not acknowledged: outstanding deliveries plus items waiting (``join``)."""
        return self.outstanding + self.size
