"""Disk effects: what a transition asks the IO shell to do, in order.

Each effect maps to one ``FileSystem`` call. They are immutable values, so a test can compare
the effects of a transition with what it expects, and the crash harness can crash between
any two of them. They are ``NamedTuple`` classes because one is built on every put and
acknowledgement; unlike plain tuples, two effects are equal only if they are of one kind.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "Create",
    "Effect",
    "Fsync",
    "FsyncDir",
    "Release",
    "Replace",
    "Truncate",
    "Unlink",
    "Write",
    "WriteBack",
]


def _eq(self: tuple[object, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _ne(self: tuple[object, ...], other: object) -> bool:
    return not _eq(self, other)


def _hash(self: tuple[object, ...]) -> int:
    return hash((type(self).__name__, tuple(self)))


class Write(NamedTuple):
    """Write ``data`` into file ``path`` at byte ``offset`` (creating the file if missing)."""

    path: str
    offset: int
    data: bytes

    def __repr__(self) -> str:
        return f"Write(path={self.path!r}, offset={self.offset}, data=<{len(self.data)} bytes>)"


class Create(NamedTuple):
    """Create ``path`` empty, truncating whatever is there (never append to old bytes)."""

    path: str


class Truncate(NamedTuple):
    """Cut file ``path`` to ``size`` bytes."""

    path: str
    size: int


class Fsync(NamedTuple):
    """Make the content of file ``path`` durable."""

    path: str


class FsyncDir(NamedTuple):
    """Make the entries (creates, renames, unlinks) of directory ``path`` durable."""

    path: str


class Replace(NamedTuple):
    """Atomically rename ``src`` over ``dst``."""

    src: str
    dst: str


class Unlink(NamedTuple):
    """Remove file ``path``."""

    path: str


class WriteBack(NamedTuple):
    """Start writing the data of file ``path`` to disk, without waiting for it.

    A hint, not a guarantee: nothing is durable until ``Fsync(path)``. It lets a later
    fsync find the data on disk already, and several files written back together share
    the file system's journal commits.
    """

    path: str


class Release(NamedTuple):
    """The shell is done with ``path`` for now: drop any cached handle (no disk change)."""

    path: str


Effect = Write | Create | Truncate | Fsync | FsyncDir | Replace | Unlink | WriteBack | Release

# Unlike plain tuples, two effects are equal only if they are of the same kind:
# Fsync(p) != Release(p) != (p,).
for _kind in (Write, Create, Truncate, Fsync, FsyncDir, Replace, Unlink, WriteBack, Release):
    setattr(_kind, "__eq__", _eq)  # noqa: B010 - mypy forbids methods named so in a NamedTuple
    setattr(_kind, "__ne__", _ne)  # noqa: B010
    setattr(_kind, "__hash__", _hash)  # noqa: B010
del _kind
