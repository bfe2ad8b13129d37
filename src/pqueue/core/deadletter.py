"""Dead letters: items that ran out of attempts, and how they are stored.

A queue opened with ``max_attempts=N`` moves an item delivered N times without being
acknowledged to its dead-letter queue (``Queue.dead_letters``, a queue of its own in the
directory ``dead-letters`` inside the queue's) instead of delivering it again. Each record
of the dead-letter queue holds the item's serialised bytes as they were in the queue, with
where it came from::

    magic "PQDL" | seq i64 (the item's number in its queue) | attempts u32 | payload

The seq is what makes the move happen once: a move interrupted after the dead letter was
put is finished by acknowledging that seq in the queue, never by putting it again.
"""

from __future__ import annotations

import struct
from typing import Generic, TypeVar

import attrs

__all__ = ["DeadLetter", "decode_dead_letter", "encode_dead_letter"]

T = TypeVar("T")

MAGIC = b"PQDL"
_HEADER = struct.Struct("<4sqI")


@attrs.frozen
class DeadLetter(Generic[T]):
    """An item moved to the dead-letter queue: the item, how many times it was delivered
    without being acknowledged, and its number (seq) in the queue it came from."""

    item: T
    attempts: int
    seq: int


def encode_dead_letter(seq: int, attempts: int, payload: bytes) -> bytes:
    """The record of item ``seq`` (serialised as ``payload``) after ``attempts``."""
    return _HEADER.pack(MAGIC, seq, attempts) + payload


def decode_dead_letter(data: bytes) -> tuple[int, int, bytes]:
    """``(seq, attempts, payload)`` of a dead-letter record; ``ValueError`` if ``data`` is
    not one."""
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise ValueError(
            f"not a dead-letter record: {len(data)} bytes starting {bytes(data[:8])!r}"
        )
    _, seq, attempts = _HEADER.unpack_from(data)
    return seq, attempts, data[_HEADER.size :]
