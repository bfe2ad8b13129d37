"""The shared state of a queue that several participants (processes, Queue objects) use.

A shared queue keeps, beside its durable files, one small file ``shared`` that holds the
queue's current state as the participants see it: the positions, the acknowledgements not
yet checkpointed, and which participant holds which delivered item. It lives in the page
cache only (never fsynced): every participant reads it at the start of each operation, under
an exclusive lock on the same file, and writes it back at the end. A participant that dies
(``kill -9``) leaves it as the last operation that finished wrote it; a power loss restarts
the machine, and the boot id recorded in it tells the next participant not to trust it
(recovery from the durable files then starts afresh, as for a queue of one process).

Layout (little-endian)::

    magic "PQSH" | version u16 | busy u8 | boot length u8 | crc32 u32 | body length u32
    body: boot id | counter u64 | 12 x i64 (positions, see ``_FIXED``) |
          moving: seq i64, dead-letter head i64 (-1, -1: none) |
          acked bound count u32, bounds i64... | hold count u32, holds (seq i64, offset i64,
          owner u64, attempt u32, deadline f64)... | attempt count u32, (seq i64, u32)...

The CRC covers everything after its own field. ``busy`` is set while a checkpoint is applied
(``BUSY_CHECKPOINT``) or an item is moved to the dead-letter queue (``BUSY_MOVE``, with
``moving``: the item, and the dead-letter queue's head before the move): a participant that
finds it set knows the one before it died in the middle of one, and finishes it.
"""

from __future__ import annotations

import functools
import itertools
import struct
import zlib
from typing import NamedTuple

from pqueue.core.codec import Info
from pqueue.core.state import Config, Ledger, QueueState, chunk_path

__all__ = [
    "BURIED",
    "BUSY_CHECKPOINT",
    "BUSY_MOVE",
    "BUSY_RESYNC",
    "Hold",
    "Snapshot",
    "decode_snapshot",
    "encode_snapshot",
    "snapshot_of",
    "state_of",
]

MAGIC = b"PQSH"
VERSION = 2
BUSY_CHECKPOINT = 1
BUSY_RESYNC = 2  # ``Ledger.resync``
BUSY_MOVE = 4
# An attempt count that says: the item is in the dead-letter queue already (its move was
# interrupted after the dead letter was put), and is to be acknowledged, not delivered.
BURIED = 0xFFFFFFFF

_HEAD = struct.Struct("<4sHBBII")  # magic, version, busy, boot length, crc, body length
_FIXED = struct.Struct("<Q14q")
_COUNT = struct.Struct("<I")
_HOLD = struct.Struct("<qqQId")
_ATTEMPT = struct.Struct("<qI")
_MAX_BOOT = 255
_new = tuple.__new__
_flat = itertools.chain.from_iterable


class Hold(NamedTuple):
    """A delivered item not yet acknowledged, or one waiting to be delivered again.

    - ``offset``: where its record starts in its chunk file;
    - ``owner``: the participant that holds it, 0 when it waits to be delivered again (its
      holder died, gave it back with ``nack``, or its lease ran out);
    - ``attempt``: how many times it was delivered;
    - ``deadline``: when held, the end of its lease (0.0: none); when waiting, the time
      before which it is not to be delivered again (a delayed ``nack``; 0.0: at once). On
      the machine's monotonic clock, which all processes share.
    """

    seq: int
    offset: int
    owner: int
    attempt: int
    deadline: float


class Snapshot(NamedTuple):
    """What the ``shared`` file holds (see the module docstring)."""

    boot: str
    counter: int
    busy: int
    head: int
    head_offset: int
    read: int
    read_offset: int
    tail: int
    size: int
    outstanding: int
    ack_offset: int
    alloc: int
    crossings: int
    ack_capacity: int
    generation: int  # the ack generation of the checkpoint in ``info``
    acked: tuple[int, ...]  # the flat bounds of ``ranges``
    holds: tuple[Hold, ...]
    # Deliveries counted before the state was last recovered, of items not delivered since:
    # (seq, attempts), so that the count goes on when they are delivered again.
    attempts: tuple[tuple[int, int], ...] = ()
    # An item being moved to the dead-letter queue: (seq, the dead-letter queue's head
    # before its dead letter was put), or None.
    moving: tuple[int, int] | None = None


def snapshot_of(
    state: QueueState, boot: str, counter: int, busy: int, holds: tuple[Hold, ...],
    attempts: tuple[tuple[int, int], ...], moving: tuple[int, int] | None,
) -> Snapshot:
    """The snapshot of ``state`` (with the participants' holds and carried-over attempt
    counts, and the move to the dead letters under way, if any)."""
    ledger = state.ledger
    if ledger.resync:
        busy |= BUSY_RESYNC
    if moving is not None:
        busy |= BUSY_MOVE
    return Snapshot(
        boot, counter, busy, state.head, state.head_offset, state.read, state.read_offset,
        state.tail, state.size, state.outstanding, state.ack_offset, ledger.alloc,
        ledger.crossings, ledger.ack_capacity, ledger.checkpoint.ack_generation,
        state.acked, holds, attempts, moving,
    )


def state_of(snap: Snapshot, config: Config, checkpoint: Info) -> QueueState:
    """The state ``snap`` records, for a queue of ``config`` whose ``info`` holds
    ``checkpoint``: the inverse of ``snapshot_of``."""
    head_path = chunk_path(config, snap.head // config.chunksize)
    return QueueState(
        config, snap.head, snap.head_offset, snap.read, snap.read_offset, snap.tail,
        snap.acked, snap.size, snap.outstanding, snap.ack_offset,
        Ledger(checkpoint, head_path, snap.alloc, snap.crossings, snap.ack_capacity,
               bool(snap.busy & BUSY_RESYNC)),
    )


@functools.lru_cache(maxsize=256)
def _layout(acked: int, holds: int, attempts: int) -> struct.Struct:
    """The body after the boot id, for these counts, as one struct."""
    return struct.Struct(
        f"<Q14qI{acked}qI{'qqQId' * holds}I{'qI' * attempts}"
    )


@functools.lru_cache(maxsize=16)
def _boot_bytes(boot: str) -> bytes:
    return boot.encode("ascii", "replace")[:_MAX_BOOT]


def encode_snapshot(snap: Snapshot) -> bytes:
    """The bytes of ``snap``."""
    boot = _boot_bytes(snap.boot)
    acked = snap.acked
    holds = snap.holds
    attempts = snap.attempts
    moving = snap.moving if snap.moving is not None else (-1, -1)
    body = boot + _layout(len(acked), len(holds), len(attempts)).pack(
        snap.counter, snap.head, snap.head_offset, snap.read, snap.read_offset, snap.tail,
        snap.size, snap.outstanding, snap.ack_offset, snap.alloc, snap.crossings,
        snap.ack_capacity, snap.generation, *moving,
        len(acked), *acked, len(holds), *_flat(holds), len(attempts), *_flat(attempts),
    )
    crc = zlib.crc32(body, zlib.crc32(bytes((snap.busy, len(boot)))))
    return _HEAD.pack(MAGIC, VERSION, snap.busy, len(boot), crc, len(body)) + body


def snapshot_size(data: bytes) -> int | None:
    """The whole size of the snapshot whose first bytes are ``data`` (None if they are not
    the start of one), so that a reader that read too little knows how much to read."""
    if len(data) < _HEAD.size:
        return None
    magic, version, _, _, _, length = _HEAD.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        return None
    return _HEAD.size + int(length)


def decode_snapshot(data: bytes) -> Snapshot | None:
    """The snapshot in ``data``, or None if ``data`` is not a whole, valid one (missing,
    empty, torn, or written by another version)."""
    size = snapshot_size(data)
    if size is None or len(data) < size:
        return None
    _, _, busy, boot_length, crc, _length = _HEAD.unpack_from(data)
    body = data[_HEAD.size : size]
    if zlib.crc32(body, zlib.crc32(bytes((busy, boot_length)))) != crc:
        return None
    try:
        boot = body[:boot_length].decode("ascii")
        pos = boot_length + _FIXED.size
        (acked_count,) = _COUNT.unpack_from(body, pos)
        pos += _COUNT.size + 8 * acked_count
        (hold_count,) = _COUNT.unpack_from(body, pos)
        pos += _COUNT.size + _HOLD.size * hold_count
        (attempt_count,) = _COUNT.unpack_from(body, pos)
        if pos + _COUNT.size + _ATTEMPT.size * attempt_count != len(body):
            return None
        values = _layout(acked_count, hold_count, attempt_count).unpack_from(body, boot_length)
    except (struct.error, UnicodeDecodeError):
        return None
    fixed = values[:15]
    pos = 16
    acked = values[pos : pos + acked_count]
    pos += acked_count + 1
    holds = tuple(
        _new(Hold, values[i : i + 5]) for i in range(pos, pos + 5 * hold_count, 5)
    )
    pos += 5 * hold_count + 1
    attempts = tuple(values[i : i + 2] for i in range(pos, pos + 2 * attempt_count, 2))
    (counter, head, head_offset, read, read_offset, tail, size_, outstanding, ack_offset,
     alloc, crossings, ack_capacity, generation, moving_seq, moving_head) = fixed
    return Snapshot(
        boot, counter, busy, head, head_offset, read, read_offset, tail, size_, outstanding,
        ack_offset, alloc, crossings, ack_capacity, generation, acked, holds, attempts,
        (moving_seq, moving_head) if moving_seq >= 0 else None,
    )
