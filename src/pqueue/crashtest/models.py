"""Persistence models: what a crash leaves of the operations a disk had not made durable.

A ``SimulatedDisk`` records, for every file (inode), the data operations that are not yet
durable (writes, truncates; creating over an existing file counts as a truncate to zero) and,
for every directory, the entry operations that are not yet durable (create, mkdir, rename in
or out, unlink). ``fsync(path)`` makes a file's data operations durable, ``fsync_dir(dir)``
makes a directory's entry operations durable. A ``PersistenceModel`` says which combinations
of the pending operations a crash may leave behind. ``SimulatedDisk.crash_states(model)``
enumerates every such combination, ``pqueue.crashtest.crash_state(disk, model)`` draws one.

``PROCESS_CRASH`` (``kill -9``): every operation that returned survives, because the kernel
still holds it in the page cache. There is exactly one crash state: the visible one.

``POWER_LOSS``: only what was made durable is certain. The rules, and where they come from:

1. Each file's pending data operations survive as an in-order prefix, of any length from none
   to all (the "prefix" persistence of ALICE, Pillai et al., OSDI'14, "All File Systems Are
   Not Created Equal"; LazyFS's "lose unsynced data" fault, Ramos et al., VLDB'24).
2. The last surviving operation, if it is a write, may be torn (ALICE's non-atomic writes,
   LazyFS's "torn-op" fault, SQLite's crash-test VFS, ``src/test6.c``): a prefix of its bytes
   reached the disk, then the rest of the 512-byte sector holding the cut is filled with zeros
   or with garbage, and the bytes after that sector keep their old content. The cuts tried are
   every sector boundary strictly inside the write (nothing is filled there: whole sectors
   either made it or did not) and, so that records smaller than a sector tear too, 1 byte in
   and the middle of the write. A torn write only damages bytes that write was writing; if it
   extended the file, the file ends where the filled region ends.
3. A write that extended the file may survive as zeros over the whole extension: the size made
   it to the journal, the data did not (the zero-filled tail seen after a power loss on ext4
   with delayed allocation; CrashMonkey, Mohan et al., OSDI'18; ALICE's "garbage or zeros"
   outcomes of appends).
4. Each directory's pending entry operations survive as an in-order prefix, independently of
   other directories and of file data (ALICE, CrashMonkey): a create or rename can survive
   while the file's unsynced data does not, and a file whose create did not survive is gone
   whatever its data. A rename across directories is a link in the destination and an unlink
   in the source, each of which may or may not survive on its own; a directory that ends up
   reachable under two names is kept only under the first (the shallower, then the
   alphabetically first), so that directories keep a single parent.
5. Garbage is deterministic, derived from the inode number and the file offset, so crash
   states are reproducible and comparable; it never contains a zero byte, so it can never be
   mistaken for a zero fill (SQLite's crash VFS also fills with pseudo-random bytes).

Options for other file systems and devices, each off by default (``attrs.evolve`` them in):

- ``journaled_dirs``: entry operations survive as one in-order prefix across all directories,
  instead of per directory (rule 4), so a rename across directories survives whole or not at
  all. A journaling file system commits metadata in order, in transactions: ext4 (ALICE
  found its directory operations atomic and ordered), xfs. Fewer states than rule 4.
- ``page_size``: the page cache writes a file's dirty pages back in any order, each page as
  it was at some moment: each page of a file may hold the content it had after any prefix of
  the file's pending operations, independently of its other pages, and the file's size that
  of any prefix (a page the size covers but whose data did not make it reads as zeros).
  Linux writeback makes no promise of order within a file; LazyFS's "reorder" fault and
  ALICE's out-of-order appends model it. More states than rule 1 (which it extends).
- ``torn_sectors="any"``: a torn write may have reached the disk in any subset of its
  sectors, not only a prefix (rule 2): a device may write the sectors of one request in any
  order (SQLite's crash VFS, ``src/test6.c``, writes each unsynced sector or not at random).
  Every subset is tried for writes of up to ``_SUBSET_SECTORS`` sectors; beyond that, the
  subsets missing one sector and those holding one sector.

Variants are built with ``attrs.evolve``, e.g. ``attrs.evolve(POWER_LOSS,
reorder_dir_ops=True)`` for file systems that reorder directory operations (ext2, btrfs
without ``fsync`` of the directory, in ALICE's study), or ``torn_writes=False`` for a device
with atomic sector writes and a file system that never exposes partial writes.
"""

from __future__ import annotations

import functools
import itertools
import random
from typing import Literal

import attrs

__all__ = ["POWER_LOSS", "PROCESS_CRASH", "Fill", "ModelName", "PersistenceModel"]

Fill = Literal["zeros", "garbage"]
"""How the rest of a torn sector reads after a crash."""

_FILLS: tuple[Fill, ...] = ("zeros", "garbage")


def _check_fills(instance: PersistenceModel, attribute: object, value: tuple[Fill, ...]) -> None:
    if not value or len(set(value)) != len(value) or not set(value) <= set(_FILLS):
        raise ValueError(f"torn_fill must be distinct values among {_FILLS}, got {value!r}")


def _check_positive(instance: PersistenceModel, attribute: object, value: int) -> None:
    if value <= 0:
        raise ValueError(f"sector_size must be positive, got {value!r}")


def _check_page(instance: PersistenceModel, attribute: object, value: int | None) -> None:
    if value is not None and (value <= 0 or value % instance.sector_size):
        raise ValueError(
            f"page_size must be None or a positive multiple of sector_size "
            f"({instance.sector_size}), got {value!r}"
        )


def _check_torn_sectors(instance: PersistenceModel, attribute: object, value: str) -> None:
    if value not in ("prefix", "any"):
        raise ValueError(f"torn_sectors must be 'prefix' or 'any', got {value!r}")


def _check_journaled(instance: PersistenceModel, attribute: object, value: bool) -> None:
    if value and instance.reorder_dir_ops:
        raise ValueError(
            "journaled_dirs and reorder_dir_ops contradict each other: directory operations "
            "either survive in order across directories or in any order"
        )


@attrs.frozen(kw_only=True)
class PersistenceModel:
    """What survives a crash of a ``SimulatedDisk`` (the rules are in the module docstring).

    Attributes:
        lose_unsynced: whether operations that were not made durable may be lost. ``False``
            models a process crash (``PROCESS_CRASH``): the visible state survives whole and
            every other attribute is ignored. ``True`` models a power loss (rules 1 and 4:
            pending data operations per file and pending entry operations per directory
            survive as prefixes).
        sector_size: the unit of torn writes, in bytes (rule 2; SQLite's crash VFS and
            ALICE both tear at sector or block granularity). 512 by default.
        torn_writes: whether the last surviving write of a file may be torn (rule 2).
        torn_fill: what the rest of a torn sector reads as: ``"zeros"``, ``"garbage"`` or
            both (each is a separate crash state). Both by default.
        zero_extend: whether a write that extended a file may survive as zeros over the
            whole extension (rule 3).
        reorder_dir_ops: whether any subset of a directory's pending entry operations may
            survive (applied in their original order), instead of only a prefix. ALICE
            observed such reordering on ext2 and btrfs. ``False`` by default.
        journaled_dirs: whether entry operations survive as one in-order prefix across all
            directories (ext4, xfs), so that a rename across directories is atomic.
            ``False`` by default; cannot be combined with ``reorder_dir_ops``.
        page_size: ``None`` (by default), or the size of the pages (a multiple of
            ``sector_size``) that write-back may write out of order within a file.
        torn_sectors: ``"prefix"`` (by default): a torn write reached the disk as a
            prefix; ``"any"``: as any subset of its sectors.
    """

    lose_unsynced: bool = True
    sector_size: int = attrs.field(default=512, validator=_check_positive)
    torn_writes: bool = True
    torn_fill: tuple[Fill, ...] = attrs.field(default=_FILLS, validator=_check_fills)
    zero_extend: bool = True
    reorder_dir_ops: bool = False
    journaled_dirs: bool = attrs.field(default=False, validator=_check_journaled)
    page_size: int | None = attrs.field(default=None, validator=_check_page)
    torn_sectors: Literal["prefix", "any"] = attrs.field(
        default="prefix", validator=_check_torn_sectors
    )


PROCESS_CRASH = PersistenceModel(lose_unsynced=False)
"""The process was killed (``kill -9``): everything that completed survives."""

POWER_LOSS = PersistenceModel()
"""The machine lost power: only what was fsynced is certain (rules 1 to 5)."""


ModelName = Literal["POWER_LOSS", "PROCESS_CRASH"]
"""The names of the two predefined models, accepted wherever a model is."""

_BY_NAME: dict[str, PersistenceModel] = {"POWER_LOSS": POWER_LOSS, "PROCESS_CRASH": PROCESS_CRASH}


def _as_model(model: PersistenceModel | ModelName, where: str) -> PersistenceModel:
    """``model``, or the predefined model it names; ``where`` (the function asking) and the
    accepted values are named in the ``TypeError`` or ``ValueError`` otherwise."""
    if isinstance(model, PersistenceModel):
        return model
    if isinstance(model, str):
        found = _BY_NAME.get(model)
        if found is None:
            names = ", ".join(repr(name) for name in _BY_NAME)
            raise ValueError(
                f"{where}: model must be a PersistenceModel or one of {names}, got {model!r}"
            )
        return found
    raise TypeError(
        f"{where}: model must be a PersistenceModel (POWER_LOSS, PROCESS_CRASH or one made "
        f"with attrs.evolve) or its name, got {type(model).__name__} {model!r}"
    )


def _model_name(model: PersistenceModel) -> str:
    """``POWER_LOSS``, ``PROCESS_CRASH``, or how another model differs from one of them
    (``POWER_LOSS with reorder_dir_ops=True``)."""
    for name, known in _BY_NAME.items():
        if model == known:
            return name
    base = POWER_LOSS if model.lose_unsynced else PROCESS_CRASH
    changed = [
        f"{field.name}={getattr(model, field.name)!r}"
        for field in attrs.fields(PersistenceModel)
        if getattr(model, field.name) != getattr(base, field.name)
    ]
    return f"{_model_name(base)} with {', '.join(changed)}"


_NO_ZERO = bytes([0xA5]) + bytes(range(1, 256))
_POOL = 1 << 16


@functools.lru_cache(maxsize=1)
def _garbage_pool() -> bytes:
    return random.Random(0x7175657565).randbytes(2 * _POOL).translate(_NO_ZERO)


def _garbage(ino: int, offset: int, size: int) -> bytes:
    """Deterministic, never-zero bytes for file ``ino`` at ``offset`` (rule 5)."""
    pool = _garbage_pool()
    parts = []
    while size > 0:
        start = (ino * 0x9E3779B1 ^ offset * 0x85EBCA77) % _POOL
        n = min(size, _POOL)
        parts.append(pool[start : start + n])
        offset += n
        size -= n
    return b"".join(parts)


def _torn_outcomes(
    model: PersistenceModel, ino: int, base: bytes, offset: int, data: bytes
) -> list[bytes]:
    """The contents file ``ino`` may have if writing ``data`` at ``offset`` over ``base`` was
    cut short by a power loss (rules 2 and 3), in a fixed order, excluding the two untorn
    outcomes (``base`` itself and the completed write). May contain duplicates.
    """
    outcomes: list[bytes] = []
    size = len(data)
    end = offset + size
    old_size = len(base)
    if model.torn_writes and size > 1:
        sector = model.sector_size
        view = memoryview(base)
        head = view[:offset] if offset <= old_size else base + bytes(offset - old_size)
        for cut in _cuts(sector, offset, size):
            at = offset + cut
            if at % sector == 0:
                fills: tuple[Fill | None, ...] = (None,)
                fill_end = at
            else:
                fills = model.torn_fill
                fill_end = min(end, (at // sector + 1) * sector)
            for fill in fills:
                if fill is None:
                    filler = b""
                elif fill == "zeros":
                    filler = bytes(fill_end - at)
                else:
                    filler = _garbage(ino, at, fill_end - at)
                outcomes.append(b"".join((head, data[:cut], filler, view[fill_end:])))
    if model.torn_sectors == "any" and size > 1:
        pieces = _pieces(model.sector_size, offset, size)
        for mask in _masks(len(pieces)):
            last = max(i for i in range(len(pieces)) if mask >> i & 1)
            length = max(old_size, offset + pieces[last][1])
            buf = bytearray(base[:length].ljust(length, b"\0"))
            for i, (start, stop) in enumerate(pieces):
                if mask >> i & 1:
                    buf[offset + start : offset + stop] = data[start:stop]
            outcomes.append(bytes(buf))
    if model.zero_extend and end > old_size:
        outcomes.append(base + bytes(end - old_size))
    return outcomes


_SUBSET_SECTORS = 8
"""Writes of up to this many sectors tear into every subset of them under
``torn_sectors="any"``; longer ones into the subsets missing one sector or holding one."""


def _pieces(sector: int, offset: int, size: int) -> list[tuple[int, int]]:
    """The parts of a write of ``size`` bytes at ``offset`` that fall in one sector each, as
    (start, stop) within the write."""
    cuts = [0, *range(sector - offset % sector, size, sector), size]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


@functools.lru_cache(maxsize=64)
def _masks(n: int) -> tuple[int, ...]:
    """The subsets of ``n`` sectors a write may tear into under ``torn_sectors="any"`` that
    a prefix tear does not give: not empty, not all, not a prefix (bit i: sector i made it).
    """
    full = (1 << n) - 1
    prefixes = {(1 << k) - 1 for k in range(n + 1)}
    if n <= _SUBSET_SECTORS:
        masks: list[int] = list(range(1, full))
    else:
        masks = [full & ~(1 << i) for i in range(n)] + [1 << i for i in range(n)]
    return tuple(dict.fromkeys(m for m in masks if m not in prefixes))


def _torn_count(model: PersistenceModel, old_size: int, offset: int, size: int) -> int:
    """How many outcomes ``_torn_outcomes`` lists for such a write, without making them."""
    count = 0
    end = offset + size
    if model.torn_writes and size > 1:
        sector = model.sector_size
        first = sector - offset % sector
        boundaries = len(range(first, size, sector))  # cuts on a sector boundary: no fill
        # 1 and size // 2 are cuts too, inside a sector (filled), unless on a boundary.
        extra = {cut for cut in (1, size // 2) if cut < first or (cut - first) % sector}
        count = boundaries + len(extra) * len(model.torn_fill)
    if model.torn_sectors == "any" and size > 1:
        count += len(_masks(len(_pieces(model.sector_size, offset, size))))
    if model.zero_extend and end > old_size:
        count += 1
    return count


def _cuts(sector: int, offset: int, size: int) -> list[int]:
    """Where a write of ``size`` bytes at ``offset`` may be cut (rule 2), in order."""
    cuts = set(range(sector - offset % sector, size, sector))
    cuts.add(1)
    cuts.add(size // 2)
    return sorted(cuts)


def _torn_labels(model: PersistenceModel, old_size: int, offset: int, size: int) -> list[str]:
    """What each outcome of ``_torn_outcomes`` for such a write is, in the same order."""
    labels: list[str] = []
    end = offset + size
    if model.torn_writes and size > 1:
        sector = model.sector_size
        for cut in _cuts(sector, offset, size):
            torn = f"torn after {cut} byte{'' if cut == 1 else 's'}"
            if (offset + cut) % sector == 0:
                labels.append(f"{torn} (a sector boundary)")
            else:
                labels.extend(f"{torn}, then {fill}" for fill in model.torn_fill)
    if model.torn_sectors == "any" and size > 1:
        n = len(_pieces(model.sector_size, offset, size))
        for mask in _masks(n):
            kept = ", ".join(str(i + 1) for i in range(n) if mask >> i & 1)
            labels.append(f"torn, only sector{'s' if mask & (mask - 1) else ''} {kept} of {n} "
                          f"written")
    if model.zero_extend and end > old_size:
        labels.append("zero-extended (the size survived, the data did not)")
    return labels
