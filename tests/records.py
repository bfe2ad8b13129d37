"""Reading a queue's records in tests: each queue salts the CRC of its records (see
``pqueue.core.codec``), so decoding them needs the salt recorded in its ``info``."""

from __future__ import annotations

from pathlib import Path

from pqueue.core.codec import ITEM_MAGIC, Record, decode, decode_info
from pqueue.crashtest import SimulatedDisk


def salt_of(directory: str | Path) -> int:
    """The salt of the queue in ``directory`` on the real disk."""
    path = Path(directory, "info")
    return decode_info(path.read_bytes(), str(path)).salt


def salt_on(disk: SimulatedDisk, directory: str) -> int:
    """The salt of the queue in ``directory`` on a simulated disk."""
    path = f"{directory}/info"
    return decode_info(disk.read(path), path).salt


def record_offsets(data: bytes, salt: int) -> list[int]:
    """The offsets of the whole records at the start of chunk ``data``, and where they end."""
    offsets, pos = [], 0
    while isinstance(rec := decode(data, pos, ITEM_MAGIC, salt), Record):
        offsets.append(pos)
        pos = rec.end
    return [*offsets, pos]
