"""The inodes of a ``SimulatedDisk``: files and directories with their pending operations.

A file (``_File``) keeps its visible content, its durable content and the ordered data
operations in between (``_Write``, ``_Truncate``); a directory (``_Dir``) its visible entries,
its durable entries and the ordered entry operations in between (``_Link``, ``_Unlink``,
``_Rename``). ``_apply_data`` and ``_apply_entry`` replay one operation. The disk
(``disk.py``) changes them; crash-state enumeration (``states.py``) reads them.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple


class _Write(NamedTuple):
    offset: int
    data: bytes


class _Truncate(NamedTuple):
    size: int


_DataOp = _Write | _Truncate


class _File:
    """An inode: visible content, durable content and the data operations in between."""

    __slots__ = ("data", "durable", "ino", "pending", "volatile")

    def __init__(
        self,
        ino: int,
        data: bytes | bytearray,
        durable: bytes,
        pending: list[_DataOp],
        volatile: bool = False,
    ) -> None:
        self.ino = ino
        # ``bytes`` until the first write, then a ``bytearray`` edited in place.
        self.data = data
        self.durable = durable
        self.pending = pending
        self.volatile = volatile  # marked by ``SimulatedDisk.volatile``


class _Dir:
    """A directory: visible entries, durable entries and the entry operations in between."""

    __slots__ = ("durable", "entries", "ino", "pending")

    def __init__(
        self,
        ino: int,
        entries: dict[str, _Node],
        durable: dict[str, _Node],
        pending: list[_EntryOp],
    ) -> None:
        self.ino = ino
        self.entries = entries
        self.durable = durable
        self.pending = pending


_Node = _File | _Dir


# ``seq``: the number of the disk call that made the operation, so that operations in
# different directories can be ordered (``PersistenceModel.journaled_dirs``); the two halves
# of a rename across directories share it.


class _Link(NamedTuple):
    name: str
    node: _Node
    seq: int = 0


class _Unlink(NamedTuple):
    name: str
    seq: int = 0


class _Rename(NamedTuple):
    src: str
    dst: str
    seq: int = 0


_EntryOp = _Link | _Unlink | _Rename


def _apply_data(buf: bytearray, op: _DataOp) -> None:
    if isinstance(op, _Write):
        if op.offset > len(buf):
            buf.extend(bytes(op.offset - len(buf)))
        buf[op.offset : op.offset + len(op.data)] = op.data
    elif op.size < len(buf):
        del buf[op.size :]
    else:
        buf.extend(bytes(op.size - len(buf)))


def _apply_entry(entries: dict[str, _Node], op: _EntryOp) -> None:
    # Tolerant of missing names: with ``reorder_dir_ops`` an unlink or rename can survive
    # without the create it depended on; it then did nothing.
    if isinstance(op, _Link):
        entries[op.name] = op.node
    elif isinstance(op, _Unlink):
        entries.pop(op.name, None)
    else:
        node = entries.pop(op.src, None)
        if node is not None:
            entries[op.dst] = node


def _mutable(node: _File) -> bytearray:
    data = node.data
    if isinstance(data, bytearray):
        return data
    buf = node.data = bytearray(data)
    return buf


StrPath = str | os.PathLike[str]
"""A path as the disk takes it: a ``str`` or any ``os.PathLike[str]`` (a ``pathlib`` path)."""


def _fspath(path: StrPath) -> str:
    """``path`` as a ``str`` (``os.fspath``); ``TypeError`` for anything else, bytes
    included (the disk's paths are text)."""
    if type(path) is str:
        return path
    given: object = path  # checked at run time: a caller may not be type checked
    found = os.fspath(given) if isinstance(given, (str, os.PathLike)) else None
    if not isinstance(found, str):
        raise TypeError(f"a path must be a str or an os.PathLike[str], got {path!r}")
    return found


@lru_cache(maxsize=4096)
def _split(path: str) -> tuple[str, ...]:
    norm = posixpath.normpath("/" + path.lstrip("/"))
    return tuple(part for part in norm.split("/") if part)


def _join(parts: Iterable[str]) -> str:
    return "/" + "/".join(parts)


def _error(code: int, path: str, path2: str | None = None) -> OSError:
    # OSError(errno, ...) returns the matching subclass (FileNotFoundError for ENOENT, ...).
    return OSError(code, os.strerror(code), path, None, path2)
