"""Migrating a queue directory of pqueue 0.1.x or persist-queue into a new pqueue queue.

    from pqueue.migrate import migrate

    report = migrate("/var/lib/myapp/old-jobs", "/var/lib/myapp/jobs")
    print(report.items, "items migrated")

Two on-disk formats are read, without the old packages installed:

- ``"pqueue-0.1"``: the ``info`` file is a pickled dict (``chunksize``, ``size``, ``tail``,
  ``head``) and the chunk files ``q00000``, ``q00001``... hold pickled items one after the
  other. pqueue 0.1.x writes it, and so does persist-queue's file-based ``Queue`` with its
  default (pickle) serializer: their files are the same, byte for byte, and are read the same
  way, so one name covers both.
- ``"persist-queue"``: persist-queue's file-based ``Queue`` with its ``json`` serializer: the
  same layout, with a JSON ``info`` and one JSON document per line in the chunk files.

(persist-queue's file Queue with its msgpack or cbor2 serializer, and its SQLite queues, are
recognised and refused with ``UnknownFormatError``: drain those with persist-queue itself.)

What is migrated is exactly what the old package delivers when it reopens the directory, in
the same order: the items from the read position recorded in ``info`` (the ``tail``) to its
``head``. The old packages record the read position on ``task_done()`` and on every
``put()`` (persist-queue with ``autosave=True`` on every ``get()`` too): an item got without
``task_done()`` since then is delivered again on reopen, so it is migrated; one the recorded
position has passed is consumed, and is not. Bytes after the recorded head of the last chunk
(the record of a put whose ``info`` was never written, which the old package cuts off on
reopen) are ignored.

**The source must be trusted**: its items are unpickled, and unpickling runs whatever code
the pickle names. (The ``info`` file is read with an unpickler that refuses any class or
function, so that ``detect`` is safe on any directory.) The source is only read: no file in
it is created, written, truncated or removed (the old packages themselves truncate the head
chunk on open, which is why ``migrate`` does not open it with them). No process may use it
while it is migrated.

The new queue is written into ``DST.partial`` beside ``DST`` and renamed to ``DST`` once it
is complete and (with ``durability="fsync"``, the default) on stable storage. An interruption
(an exception, Ctrl-C) removes ``DST.partial``; one that leaves it behind (the process
killed, a power loss) is reported by the next run, which refuses to start until it is
removed. ``DST`` itself never holds a half-migrated queue.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pickle
import re
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from time import monotonic
from typing import Any, BinaryIO, Literal

import attrs

from pqueue.core.errors import CorruptQueueError, PQueueError, UnsupportedFormatError
from pqueue.progress import ProgressBar
from pqueue.queue import Queue

__all__ = [
    "FORMATS",
    "AlreadyPQueueError",
    "Damage",
    "DamagedSourceError",
    "DestinationError",
    "ItemLoadError",
    "MigrationError",
    "MigrationReport",
    "UnknownFormatError",
    "add_arguments",
    "detect",
    "main",
    "migrate",
    "run",
]

PQUEUE_01 = "pqueue-0.1"
PERSIST_QUEUE = "persist-queue"

FORMATS: dict[str, str] = {
    PQUEUE_01: "pqueue 0.1.x, or persist-queue's file Queue with its default pickle "
    "serializer (the same files)",
    PERSIST_QUEUE: "persist-queue's file Queue with its json serializer",
}

_INFO = "info"
_CHUNK = re.compile(r"q\d{5,}")
# Names only pqueue's own format has in a queue directory.
_PQUEUE_NAMES = frozenset({"acks", "shared", "ready", "lock", "info.tmp"})
_INFO_LIMIT = 1 << 20  # an old info file is some 70 bytes; a larger one is not one
_PROGRESS_INTERVAL = 0.1  # seconds between progress calls (the first and last always come)

Progress = Callable[[int, int], object]


# --- errors ------------------------------------------------------------------------------------


class MigrationError(PQueueError):
    """Base class of the errors of ``pqueue.migrate``."""


class UnknownFormatError(MigrationError, UnsupportedFormatError):
    """The source is not a queue directory in a format ``migrate`` reads.

    ``path`` names it and ``reason`` says what was found there.
    """

    def __init__(self, path: str, found: str) -> None:
        UnsupportedFormatError.__init__(
            self, path, f"not a pqueue 0.1.x or persist-queue directory: {found}"
        )
        self.found = found


class AlreadyPQueueError(MigrationError):
    """The source is a queue of this pqueue already: there is nothing to migrate."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path}: already a pqueue queue (written by this pqueue, not by pqueue 0.1.x or "
            "persist-queue); open it with pqueue.Queue, there is nothing to migrate"
        )
        self.path = path


class DamagedSourceError(MigrationError, CorruptQueueError):
    """A file of the source is damaged: a torn or garbled record, a missing chunk, an
    ``info`` that cannot be read. ``path`` names the file and ``offset`` the byte where the
    damage was found (for a record: where it starts)."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        CorruptQueueError.__init__(self, path, offset, reason)


class ItemLoadError(MigrationError):
    """An item of the source cannot be unpickled here, though its record is not damaged as
    far as pickle can tell (its class or module cannot be imported, its ``__setstate__``
    failed, ...); the original exception is the ``__cause__``. Never skipped: install what
    the item needs and run the migration again."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class DestinationError(MigrationError):
    """The destination cannot take the migrated queue: it exists and is not an empty
    directory, overlaps the source, or a previous migration into it was interrupted."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# --- results -------------------------------------------------------------------------------------


@attrs.frozen
class Damage:
    """Damage skipped with ``skip_damaged=True``: ``items`` items, from the record at
    ``offset`` of ``path`` to the end of that chunk, were not migrated."""

    path: str
    offset: int
    reason: str
    items: int


@attrs.frozen
class MigrationReport:
    """What ``migrate`` did: ``items`` items of a ``format`` directory at ``source`` are now
    the queue at ``destination``; ``skipped`` items were lost to ``damage``."""

    format: str
    items: int
    source: str
    destination: str
    skipped: int = 0
    damage: tuple[Damage, ...] = ()

    def summary(self) -> str:
        """One line saying what was migrated."""
        line = (
            f"migrated {self.items} item{'' if self.items == 1 else 's'} from {self.source} "
            f"({self.format}) to {self.destination}"
        )
        if self.skipped:
            places = len(self.damage)
            line += (
                f"; skipped {self.skipped} damaged item{'' if self.skipped == 1 else 's'} "
                f"(in {places} place{'' if places == 1 else 's'})"
            )
        return line


# --- reading the source --------------------------------------------------------------------------


@attrs.frozen
class _Source:
    """A legacy queue directory as its ``info`` describes it; positions are
    ``(chunk number, items before it in the chunk, byte offset)``."""

    path: str
    format: str
    chunksize: int
    tail: tuple[int, int, int]
    head: tuple[int, int, int]

    @property
    def size(self) -> int:
        """Items from the tail to the head: what the old package delivers on reopen."""
        cs = self.chunksize
        return (self.head[0] * cs + self.head[1]) - (self.tail[0] * cs + self.tail[1])

    def chunk(self, number: int) -> str:
        return os.path.join(self.path, f"q{number:05d}")


class _InfoUnpickler(pickle.Unpickler):
    """Unpickles an old ``info`` file, which holds only a dict of numbers and lists:
    refuses every class and function, so that reading one runs no code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"it names {module}.{name}; an old info file holds only numbers"
        )


def _read_limited(path: str, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as f:
        return f.read(limit + 1)


def _looks_like_pickle(data: bytes) -> bool:
    # protocol 2+ starts with PROTO; protocols 0 and 1 of a dict with MARK+DICT or EMPTY_DICT
    return data[:1] == b"\x80" or data[:2] == b"(d" or data[:1] == b"}"


def _survey(path: str) -> _Source:
    """What ``path`` holds; raises for anything but a legacy queue ``migrate`` reads."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UnknownFormatError(path, "no such file or directory") from None
    if not stat.S_ISDIR(mode):
        raise UnknownFormatError(path, "it is not a directory")
    names = set(os.listdir(path))
    if names & _PQUEUE_NAMES:
        raise AlreadyPQueueError(path)
    info_path = os.path.join(path, _INFO)
    if _INFO not in names:
        return _without_info(path, names)
    if not stat.S_ISREG(os.stat(info_path).st_mode):
        raise UnknownFormatError(path, "its info is not a regular file")
    data = _read_limited(info_path, _INFO_LIMIT)
    if len(data) > _INFO_LIMIT:
        raise UnknownFormatError(path, f"its info file is larger than {_INFO_LIMIT} bytes")
    if not data:
        raise DamagedSourceError(
            info_path, 0, "the info file is empty (its content was lost, as a power loss can "
            "do to a file the old packages never fsync): where the queue starts is unknown"
        )
    if data.lstrip()[:1] == b"{":
        return _json_info(path, info_path, data)
    if _looks_like_pickle(data):
        try:
            raw = _InfoUnpickler(io.BytesIO(data)).load()
        except Exception as exc:  # any failure of a damaged pickle
            raise DamagedSourceError(
                info_path, 0, f"the info file is not a readable pickle ({exc})"
            ) from exc
        return _checked(path, info_path, PQUEUE_01, raw)
    if len(data) > 4 and int.from_bytes(data[:4], "little") == len(data) - 4:
        raise UnknownFormatError(
            path, "its info file is length-prefixed: persist-queue with its msgpack or cbor2 "
            "serializer, which migrate does not read (drain it with persist-queue and put the "
            "items into a pqueue.Queue)"
        )
    raise UnknownFormatError(path, "its info file is neither a pickle nor JSON")


def _json_info(path: str, info_path: str, data: bytes) -> _Source:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DamagedSourceError(
            info_path, getattr(exc, "pos", 0), f"the info file is not valid JSON ({exc})"
        ) from exc
    if isinstance(raw, dict) and raw.get("format") == "pqueue":
        raise AlreadyPQueueError(path)
    return _checked(path, info_path, PERSIST_QUEUE, raw)


def _position(value: object, chunksize: int) -> tuple[int, int, int] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return None
    if not all(type(n) is int and n >= 0 for n in value):
        return None
    number, count, offset = value
    if count >= chunksize:
        return None
    return number, count, offset


def _checked(path: str, info_path: str, fmt: str, raw: object) -> _Source:
    keys = {"chunksize", "size", "tail", "head"}
    if not isinstance(raw, dict) or not keys <= raw.keys():
        found = sorted(map(str, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise UnknownFormatError(
            path, f"its info file holds {found}, not chunksize, size, tail and head"
        )
    cs = raw["chunksize"]
    if type(cs) is not int or cs < 1:
        raise DamagedSourceError(info_path, 0, f"invalid chunksize {cs!r} in the info file")
    tail = _position(raw["tail"], cs)
    head = _position(raw["head"], cs)
    if tail is None or head is None or tail[:2] > head[:2]:
        raise DamagedSourceError(
            info_path, 0, f"invalid positions in the info file: tail {raw['tail']!r}, "
            f"head {raw['head']!r} (chunksize {cs})"
        )
    source = _Source(path, fmt, cs, tail, head)
    size = raw["size"]
    if size != source.size or type(size) is not int:
        raise DamagedSourceError(
            info_path, 0, f"the info file says the queue holds {size!r} items, but its tail "
            f"{list(tail)} and head {list(head)} hold {source.size}"
        )
    return source


def _without_info(path: str, names: set[str]) -> _Source:
    """A directory with no ``info``: an old queue that was opened but never put to (which
    leaves an empty first chunk), or not a queue at all."""
    chunks = sorted(n for n in names if _CHUNK.fullmatch(n))
    databases = sorted(n for n in names if n.endswith(".db"))
    if databases and not chunks:
        raise UnknownFormatError(
            path, f"{databases[0]} looks like an SQLite queue of persist-queue, which "
            "migrate does not read (only its file-based Queue)"
        )
    if not chunks:
        found = "an empty directory" if not names else (
            "no info file and no chunk files (it holds " + ", ".join(sorted(names)[:5])
            + (", ..." if len(names) > 5 else "") + ")"
        )
        raise UnknownFormatError(path, found)
    for name in chunks:
        chunk_path = os.path.join(path, name)
        if os.stat(chunk_path).st_size:
            raise DamagedSourceError(
                os.path.join(path, _INFO), 0, f"the info file is missing, but {chunk_path} "
                "holds data: where the queue starts and ends is unknown"
            )
    return _Source(path, PQUEUE_01, 100, (0, 0, 0), (0, 0, 0))


def _pickle_record(f: BinaryIO) -> Any:
    return pickle.load(f)


def _json_record(f: BinaryIO) -> Any:
    line = f.readline()
    if not line.endswith(b"\n"):
        raise EOFError("the line has no end (torn)" if line else "no record here")
    try:
        return json.loads(line)
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from exc


# What an item that is fine but cannot be made here raises (its module or class is missing,
# or it is a Python 2 str that is not ASCII); anything else a record raises is damage.
_UNLOADABLE = (ImportError, AttributeError, UnicodeDecodeError)


def _items(
    source: _Source, skip_damaged: bool, damage: list[Damage]
) -> Iterator[Any]:
    """The items the old package delivers on reopen, in order. Damage raises
    ``DamagedSourceError``, or with ``skip_damaged`` is noted in ``damage`` and the rest of
    the damaged chunk skipped (its records cannot be told apart after a damaged one)."""
    read = _pickle_record if source.format == PQUEUE_01 else _json_record
    cs = source.chunksize
    tnum, tcnt, toffset = source.tail
    hnum, hcnt, hoffset = source.head
    for number in range(tnum, hnum + 1):
        first, offset = (tcnt, toffset) if number == tnum else (0, 0)
        count = (hcnt if number == hnum else cs) - first
        if count <= 0:
            continue
        path = source.chunk(number)
        limit = hoffset if number == hnum else None

        def damaged(at: int, reason: str, left: int, path: str = path) -> None:
            if not skip_damaged:
                raise DamagedSourceError(path, at, reason)
            damage.append(Damage(path, at, reason, left))

        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            damaged(0, f"the chunk file is missing; it holds {count} of the items to migrate",
                    count)
            continue
        with open(fd, "rb", buffering=64 * 1024) as f:
            end = os.fstat(fd).st_size
            if limit is not None and limit < end:
                end = limit  # what follows was never recorded: the old package cuts it off
            if offset > end:
                damaged(end, f"the file ends at offset {end}, before the read position "
                        f"{offset} recorded in info", count)
                continue
            f.seek(offset)
            for index in range(count):
                start = f.tell()
                what = f"record {first + index + 1} of the chunk"
                try:
                    item = read(f)
                except _UNLOADABLE as exc:
                    raise ItemLoadError(
                        path, start, f"{what} cannot be unpickled here "
                        f"({type(exc).__name__}: {exc})"
                    ) from exc
                except Exception as exc:  # EOFError, UnpicklingError, ... on a damaged record
                    damaged(start, f"{what} is torn or damaged ({type(exc).__name__}: {exc}; "
                            f"the file ends at offset {end})", count - index)
                    break
                if f.tell() > end:
                    damaged(start, f"{what} runs past offset {end}, where the queue's "
                            "recorded end is (torn)", count - index)
                    break
                yield item


# --- the destination -------------------------------------------------------------------------


def _path(value: str | bytes | os.PathLike[str] | os.PathLike[bytes], name: str) -> str:
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a str, bytes or os.PathLike, got "
                        f"{type(value).__name__}")
    text = os.fsdecode(os.fspath(value))
    if not text:
        raise ValueError(f"the {name} path is empty")
    return os.path.abspath(text)


def _inside(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _check_destination(source: str, destination: str) -> str:
    """The path of the partial queue beside ``destination``; raises if either cannot be
    used."""
    real_src = os.path.realpath(source)
    real_dst = os.path.realpath(destination)
    if _inside(real_dst, real_src) or _inside(real_src, real_dst):
        raise DestinationError(
            destination, f"it overlaps the source {source}; name a directory outside it"
        )
    partial = destination.rstrip(os.sep) + ".partial"
    if os.path.lexists(partial):
        raise DestinationError(
            partial, f"left by an interrupted migration into {destination}; remove it "
            f"(rm -r {partial}) and run the migration again"
        )
    if os.path.lexists(destination):
        if not os.path.isdir(destination) or os.path.islink(destination):
            raise DestinationError(destination, "it exists and is not a directory")
        entries = os.listdir(destination)
        if entries:
            raise DestinationError(
                destination, f"the directory is not empty ({len(entries)} entries); "
                "migrate writes a new queue: name a directory that does not exist or is empty"
            )
    return partial


def _make_partial(partial: str) -> list[str]:
    """Make the (new, empty) partial directory, so that a migration started beside this one
    cannot use it too; returns the missing parents it made, innermost first."""
    made = []
    parent = os.path.dirname(partial)
    while parent and not os.path.lexists(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(made):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory)
    try:
        os.mkdir(partial, 0o700)
    except FileExistsError:
        raise DestinationError(
            partial, "made by another migration into the same destination just now"
        ) from None
    return made


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_durable(directory: str) -> None:
    """Every file of the new queue and its directory on stable storage (closing the queue
    wrote a checkpoint that synced what it refers to; this covers the rest)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if stat.S_ISREG(os.lstat(path).st_mode):
            _fsync_path(path)
    _fsync_path(directory)


# --- the public functions ----------------------------------------------------------------------


def detect(src: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """The format of the queue directory ``src``: ``"pqueue-0.1"`` or ``"persist-queue"``
    (see ``FORMATS``). Reads only the directory listing and ``info`` (with an unpickler
    that runs no code).

    Raises ``AlreadyPQueueError`` for a queue of this pqueue, ``UnknownFormatError`` for
    anything else that is not a queue of those formats (naming the path and what is there),
    and ``DamagedSourceError`` for one whose ``info`` is damaged."""
    return _survey(_path(src, "source")).format


def migrate(
    src: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    dst: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    progress: Progress | None = None,
    durability: Literal["fsync", "flush"] = "fsync",
    chunksize: int | None = None,
    skip_damaged: bool = False,
) -> MigrationReport:
    """Copy the items of the pqueue 0.1.x or persist-queue directory ``src`` that the old
    package would deliver on reopen, in order, into a new pqueue queue at ``dst``.

    ``src`` must be trusted (its items are unpickled) and not in use; it is never changed.
    ``dst`` must not exist or be an empty directory. The items go in as the same Python
    objects, stored with the default serializer (``pickle``); open the result with
    ``pqueue.Queue(dst)``.

    ``progress``: called as ``progress(done, total)`` with ``(0, total)`` first, then every
    so often as items are copied (or skipped), and last with ``(total, total)``; ``total``
    is known from the source's ``info``.
    ``durability``: ``"fsync"`` (default): the new queue is on stable storage when this
    returns, power loss included; ``"flush"``: it survives the process being killed, and
    the final syncs are left out.
    ``chunksize``: items per chunk file of the new queue (default: the source's).
    ``skip_damaged``: False (default): damage in the source raises ``DamagedSourceError``
    (naming the file and offset) and nothing is written; True: the items of the damaged
    chunk from the damage on are left out, noted in the report's ``damage``.

    Raises ``UnknownFormatError``, ``AlreadyPQueueError``, ``DamagedSourceError``,
    ``ItemLoadError`` (an item cannot be unpickled here), ``DestinationError``, or the
    ``OSError`` of reading or writing.
    """
    if durability not in ("fsync", "flush"):
        raise ValueError(f"durability must be 'fsync' or 'flush', got {durability!r}")
    if chunksize is not None and (type(chunksize) is not int or chunksize < 1):
        raise ValueError(f"chunksize must be a positive int or None, got {chunksize!r}")
    source_path = _path(src, "source")
    destination = _path(dst, "destination")
    source = _survey(source_path)
    partial = _check_destination(source_path, destination)
    total = source.size
    damage: list[Damage] = []
    copied = 0
    if progress is not None:
        progress(0, total)
    reported = 0
    last = monotonic()
    made = _make_partial(partial)
    queue: Queue[Any] | None = None
    try:
        # Flush mode: closing checkpoints, which syncs everything the queue refers to.
        queue = Queue(
            partial, chunksize=chunksize or source.chunksize, durability="flush",
            exclusive=True,
        )
        put = queue.put
        for item in _items(source, skip_damaged, damage):
            put(item)
            copied += 1
            if progress is not None and monotonic() - last >= _PROGRESS_INTERVAL:
                reported = copied + sum(d.items for d in damage)
                progress(reported, total)
                last = monotonic()
        queue.close()
        skipped = sum(d.items for d in damage)
        if copied + skipped != total:  # pragma: no cover - _items yields exactly total
            raise AssertionError(f"read {copied} + {skipped} items of {total}")
        if durability == "fsync":
            _make_durable(partial)
        os.rename(partial, destination)
        if durability == "fsync":
            for directory in (destination, *made):
                _fsync_path(os.path.dirname(directory) or os.sep)
    except BaseException:
        if queue is not None:
            with contextlib.suppress(Exception):
                queue.close()
        shutil.rmtree(partial, ignore_errors=True)  # made by this call: nothing else is there
        raise
    if progress is not None and reported != total:
        progress(total, total)
    return MigrationReport(
        format=source.format, items=copied, source=source_path, destination=destination,
        skipped=skipped, damage=tuple(damage),
    )


# --- the command line ----------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``pqueue migrate SRC DST``, added to ``parser``."""
    parser.add_argument("src", metavar="SRC",
                        help="the pqueue 0.1.x or persist-queue directory (only read)")
    parser.add_argument("dst", metavar="DST",
                        help="the new queue's directory (must not exist, or be empty)")
    parser.add_argument("--chunksize", type=_positive, default=None,
                        help="items per chunk file of the new queue (default: the source's)")
    parser.add_argument("--skip-damaged", action="store_true",
                        help="leave out the items of a damaged chunk from the damage on "
                        "(default: stop with an error and write nothing)")
    parser.add_argument("--durability", choices=("fsync", "flush"), default="fsync",
                        help="fsync (default): the new queue survives a power loss once "
                        "the command returns; flush: it survives the process being killed")
    parser.add_argument("--progress", action="store_true",
                        help="draw a progress bar on stderr even when it is not a terminal")


def run(args: argparse.Namespace) -> int:
    """Run ``pqueue migrate`` with the parsed ``args``: prints a one-line summary on stdout
    and returns 0; prints errors on stderr and returns 1 (the source is damaged or cannot
    be read, an item cannot be unpickled, an IO error) or 2 (a usage error: the source is
    not a queue of those formats, or a pqueue queue already; the destination cannot be
    used)."""
    bar = ProgressBar(sys.stderr, "items") if args.progress or sys.stderr.isatty() else None
    try:
        report = migrate(
            args.src, args.dst, progress=bar, durability=args.durability,
            chunksize=args.chunksize, skip_damaged=args.skip_damaged,
        )
    except (DestinationError, AlreadyPQueueError, UnknownFormatError) as exc:
        _error(bar, str(exc))
        return 2
    except DamagedSourceError as exc:
        _error(bar, f"the source is damaged: {exc}")
        return 1
    except (PQueueError, OSError) as exc:
        _error(bar, str(exc))
        return 1
    if bar is not None:
        bar.finish()
    for damage in report.damage:
        print(f"pqueue migrate: skipped {damage.items} item(s): {damage.path} at offset "
              f"{damage.offset}: {damage.reason}", file=sys.stderr)
    print(report.summary())
    return 0


def _error(bar: ProgressBar | None, message: str) -> None:
    if bar is not None:
        bar.finish()
    print(f"pqueue migrate: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``pqueue migrate`` on its own: parses ``argv`` and runs it."""
    parser = argparse.ArgumentParser(
        prog="pqueue migrate",
        description="Copy the items of a pqueue 0.1.x or persist-queue directory into a new "
        "pqueue queue. SRC is only read; it must be trusted (its items are unpickled).",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
