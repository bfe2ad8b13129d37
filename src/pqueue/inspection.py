"""Looking into a queue directory without opening it: what the command line's ``stat``,
``peek``, ``dump`` and ``verify`` show.

Nothing here writes, locks or creates anything, so it works on a queue that other processes
hold open, and never disturbs them:

- Which Queue objects have the directory open is read from ``/proc/locks`` (every
  participant holds a shared ``flock`` on ``lock``, an exclusive queue an exclusive one),
  never by taking a lock.
- While participants are open, the state is what the ``shared`` file says (read without its
  lock: a snapshot caught half written fails its CRC and is read again). Otherwise it is
  what the next open would recover from the durable files (``observe``), whose repairs are
  reported, not made.
- The chunk files are read at the positions that state gives; a checkpoint of another
  process that removes or replaces files meanwhile makes the look start again.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

import attrs

from pqueue.core.codec import (
    HEADER_SIZE,
    ITEM_MAGIC,
    Corrupt,
    Incomplete,
    Info,
    Record,
    decode,
    decode_info,
    find_record,
    scan_acks,
)
from pqueue.core.errors import CorruptQueueError, NotAQueueError, SharedStateError
from pqueue.core.snapshot import decode_snapshot, snapshot_size, state_of
from pqueue.core.state import Config, default_policy
from pqueue.core.transitions import Notice
from pqueue.io.fs import OsFileSystem
from pqueue.io.shared import SharedShell, shared_path
from pqueue.io.shell import FileView, check_regular, observe

__all__ = ["Damage", "QueueStat", "VerifyReport", "loader", "stat", "upcoming", "verify"]

DEAD_LETTERS = "dead-letters"
_ATTEMPTS = 20  # looks started again when other processes changed the queue meanwhile
_WINDOW = 1 << 20  # chunk files larger than this are read through a window


@attrs.frozen(kw_only=True)
class QueueStat:
    """What ``stat`` found in a queue directory.

    - ``waiting``: items a ``get`` would deliver (given-back ones included);
    - ``delivered``: items delivered and not yet acknowledged (None when a queue opened with
      ``exclusive=True`` holds the directory: its deliveries are known to it alone);
    - ``dead_letters``: items waiting in the dead-letter queue (None: it has none);
    - ``durability``: the mode of the last writer of the checkpoint;
    - ``participants``: Queue objects that have it open, in any process (None when the
      platform does not say: no ``/proc/locks``); ``exclusive``: one of them owns it alone;
    - ``chunk_files`` and ``bytes_on_disk``: the ``q*`` files, and every file of the
      directory (the dead-letter queue's included);
    - ``next_seq``: the number the next item put gets; ``notices``: what the next open
      would repair (only when no participant has it open).
    """

    path: str
    format_version: int
    serializer: str
    durability: str
    chunksize: int
    waiting: int
    delivered: int | None
    dead_letters: int | None
    participants: int | None
    exclusive: bool
    chunk_files: int
    bytes_on_disk: int
    next_seq: int
    notices: tuple[str, ...] = ()

    @property
    def unfinished(self) -> int | None:
        """Items not acknowledged: waiting plus delivered (``join`` waits for them)."""
        return None if self.delivered is None else self.waiting + self.delivered

    def as_dict(self) -> dict[str, Any]:
        """The fields (and ``unfinished``) as plain JSON-able values."""
        out = attrs.asdict(self)
        out["notices"] = list(self.notices)
        out["unfinished"] = self.unfinished
        return out


@attrs.frozen
class Damage:
    """Damage ``verify`` found: in file ``path`` at byte ``offset``, why."""

    path: str
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} at offset {self.offset}: {self.reason}"


@attrs.frozen(kw_only=True)
class VerifyReport:
    """What ``verify`` read: ``records`` item records checked in ``chunk_files`` files and
    ``acks`` acknowledgement records, ``bytes_read`` bytes; every ``damage`` found (empty:
    the queue is whole) and what the next open would repair (``notices``: a torn tail a
    crash left, damage to items acknowledged already)."""

    path: str
    records: int
    acks: int
    chunk_files: int
    bytes_read: int
    damage: tuple[Damage, ...]
    notices: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.damage


@attrs.frozen
class _Look:
    """One consistent look at a queue: its checkpoint, config, and a shell holding the
    current state (never started: it only reads)."""

    info: Info
    config: Config
    shell: SharedShell
    live: bool  # the state came from the participants' shared snapshot
    participants: int | None
    exclusive: bool
    notices: tuple[Notice, ...]


def _directory(path: str | os.PathLike[str]) -> str:
    directory = os.path.abspath(os.fspath(path))
    if not os.path.exists(directory):
        raise NotAQueueError(directory, "no such directory")
    if not os.path.isdir(directory):
        raise NotAQueueError(directory, "not a directory")
    if not os.path.exists(os.path.join(directory, "info")):
        raise NotAQueueError(directory, "no 'info' file: not a pqueue queue directory")
    return directory


def _lock_holders(path: str) -> tuple[int, bool] | None:
    """How many processes hold a shared ``flock`` on ``path``, and whether one holds an
    exclusive one, from ``/proc/locks`` (None where that cannot be read)."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    shared = 0
    exclusive = False
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or "->" in fields or fields[1] != "FLOCK":
            continue  # not a flock, or one waited for
        if fields[5] == wanted:
            if fields[3] == "READ":
                shared += 1
            else:
                exclusive = True
    return shared, exclusive


def _config(directory: str, info: Info) -> Config:
    return Config(
        directory=directory, chunksize=info.chunksize, durability=info.durability,
        serializer=info.serializer, temp_path=f"{directory}/info.tmp",
        policy=default_policy(info.durability), salt=info.salt,
    )


def _look(directory: str) -> _Look:
    fs = OsFileSystem()
    info_path = f"{directory}/info"
    check_regular(fs, info_path)
    info = decode_info(fs.read(info_path), info_path)
    config = _config(directory, info)
    holders = _lock_holders(f"{directory}/lock") if os.path.exists(f"{directory}/lock") else (
        0, False)
    participants, exclusive = (None, False) if holders is None else holders
    spath = shared_path(directory)
    if not exclusive and participants != 0 and fs.exists(spath):
        data = fs.read(spath)
        size = snapshot_size(data)
        snap = decode_snapshot(data[:size] if size is not None else data)
        if snap is not None and snap.boot == (fs.boot_id() or snap.boot):
            if snap.generation != info.ack_generation:
                raise SharedStateError(f"{spath}: a checkpoint was made meanwhile")
            shell = SharedShell(fs, state_of(snap, config, info))
            shell.take_holds(snap)
            return _Look(info, config, shell, True, participants, exclusive, ())
        if participants:  # caught half written: look again
            raise SharedStateError(f"{spath}: the shared state is being written")
    recovered = observe(fs, config)
    shell = SharedShell(fs, recovered.state)
    return _Look(info, recovered.state.config, shell, False, participants, exclusive,
                 recovered.notices)


def _again(directory: str, attempt: Callable[[_Look], Any]) -> Any:
    """Run ``attempt`` on a look at the queue, looking again (a few times) when another
    process changed the queue under it."""
    for n in range(_ATTEMPTS):
        look = None
        try:
            look = _look(directory)
            return attempt(look)
        except (CorruptQueueError, SharedStateError, FileNotFoundError):
            busy = look is None or look.live or look.exclusive or bool(look.participants)
            if not busy or n == _ATTEMPTS - 1:
                raise
            time.sleep(0.001 * (n + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def stat(path: str | os.PathLike[str]) -> QueueStat:
    """What the queue directory ``path`` holds, read only (see the module docstring).

    Raises ``NotAQueueError`` when ``path`` is not a queue directory, ``LegacyFormatError``
    for one of pqueue 0.1.x (``pqueue migrate`` converts it), ``CorruptQueueError`` naming
    the file and offset of damage the next open could not repair.
    """
    directory = _directory(path)

    def attempt(look: _Look) -> QueueStat:
        state = look.shell.state
        delivered: int | None = sum(1 for h in look.shell.holds.values() if h.owner)
        if look.exclusive:
            delivered = None
        elif not look.live:
            delivered = 0
        return QueueStat(
            path=directory, format_version=look.info.version, serializer=look.info.serializer,
            durability=look.info.durability, chunksize=look.config.chunksize,
            waiting=state.size, delivered=delivered, dead_letters=None,
            participants=look.participants, exclusive=look.exclusive, chunk_files=0,
            bytes_on_disk=0, next_seq=state.head,
            notices=tuple(notice.message for notice in look.notices),
        )

    found: QueueStat = _again(directory, attempt)
    chunks = 0
    total = 0
    dead: int | None = None
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
            chunks += entry.name.startswith("q") and entry.name[1:].isdigit()
        elif entry.name == DEAD_LETTERS and entry.is_dir(follow_symlinks=False):
            try:
                graveyard = stat(entry.path)
            except NotAQueueError:
                continue
            dead = graveyard.waiting + (graveyard.delivered or 0)
            total += graveyard.bytes_on_disk
    return attrs.evolve(found, chunk_files=chunks, bytes_on_disk=total, dead_letters=dead)


def upcoming(path: str | os.PathLike[str], limit: int | None = None) -> list[bytes]:
    """The payloads of the next ``limit`` items (all when None) that gets would deliver, in
    that order, read only. Items a queue opened with ``max_attempts`` would move to its
    dead letters instead are included (the limit is not recorded in the directory)."""
    directory = _directory(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    def attempt(look: _Look) -> list[bytes]:
        out: list[bytes] = []
        if limit == 0:
            return out
        for _seq, payload in look.shell.upcoming(time.monotonic()):
            out.append(payload)
            if limit is not None and len(out) >= limit:
                break
        return out

    found: list[bytes] = _again(directory, attempt)
    return found


def loader(serializer: str) -> Callable[[bytes], Any] | None:
    """The ``loads`` of a serializer pqueue names ``serializer`` (None for one of the
    application's own, which the command line cannot know). Loading with ``pickle`` runs
    code the file names: only for directories you trust."""
    if serializer == "pickle":
        return pickle.loads
    if serializer == "json":
        return json.loads
    if serializer == "bytes":
        return bytes
    return None


def verify(
    path: str | os.PathLike[str], progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Read every record of every chunk file and of the ack log of the queue at ``path``,
    read only, and report every damaged record by file and offset (``VerifyReport``).

    Damage the next open would repair without losing anything (a torn tail a crash left,
    damage to items acknowledged already) is reported in ``notices``. ``progress`` is
    called with (bytes read, bytes to read) as the chunk files are read.
    """
    directory = _directory(path)
    fs = OsFileSystem()
    damage: list[Damage] = []
    notices: list[str] = []
    try:
        look: _Look | None = _again(directory, lambda look: look)
    except CorruptQueueError as exc:
        damage.append(Damage(exc.path, exc.offset, exc.reason))
        look = None
    if look is None:
        info_path = f"{directory}/info"
        try:
            info = decode_info(fs.read(info_path), info_path)
        except CorruptQueueError:
            return VerifyReport(path=directory, records=0, acks=0, chunk_files=0,
                                bytes_read=0, damage=tuple(damage), notices=())
        config = _config(directory, info)
        tail, head, head_offset = info.tail, info.head.seq, info.head.offset
        strict_head = False
    else:
        info, config = look.info, look.config
        notices.extend(notice.message for notice in look.notices)
        state = look.shell.state
        tail, head, head_offset = state.tail, state.head, state.head_offset
        strict_head = True

    acks = 0
    ack_path = config.ack_path
    if fs.exists(ack_path):
        scan = scan_acks(fs.read(ack_path), info.ack_generation)
        acks = len(scan.acks)
        for offset in scan.damaged:
            found = Damage(ack_path, offset, "an acknowledgement record is damaged")
            if found not in damage:
                damage.append(found)

    cs = config.chunksize
    numbers = sorted(
        int(name[1:]) for name in fs.listdir(directory)
        if name.startswith("q") and name[1:].isdigit()
    )
    wanted = [n for n in numbers if tail // cs <= n <= head // cs]
    sizes = {n: fs.size(f"{directory}/q{n:05d}") for n in wanted}
    total = sum(sizes.values())
    done = 0
    records = 0
    for number in wanted:
        chunk = f"{directory}/q{number:05d}"
        size = sizes[number]
        end = head_offset if number == head // cs and strict_head else size
        records += _scan_chunk(fs, chunk, number * cs, min(head, (number + 1) * cs), tail,
                               end, size, config.salt, damage, notices)
        done += size
        if progress is not None:
            progress(done, total)
    return VerifyReport(path=directory, records=records, acks=acks, chunk_files=len(wanted),
                        bytes_read=done, damage=tuple(damage), notices=tuple(notices))


def _scan_chunk(
    fs: OsFileSystem, path: str, first: int, stop: int, tail: int, end: int, size: int,
    salt: int, damage: list[Damage], notices: list[str],
) -> int:
    """Check the records of items ``first`` to ``stop`` - 1 in chunk ``path`` (those up to
    byte ``end``): the number of whole records. Damage found goes into ``damage`` (or, for
    items before ``tail``, acknowledged already, into ``notices``), resynchronising on the
    next whole record; garbage after ``end`` is a torn tail the next open cuts off."""
    data = fs.read(path) if size <= _WINDOW else FileView(fs, path, size, _WINDOW)
    pos = 0
    expected = first
    whole = 0
    limit = min(end, size)
    while pos < limit and expected < stop:
        rec = decode(data, pos, ITEM_MAGIC, salt)
        if type(rec) is Record and rec.seq == expected and rec.end <= limit:
            whole += 1
            expected += 1
            pos = rec.end
            continue
        if type(rec) is Record:
            reason = f"item {expected} expected here, found item {rec.seq}"
        elif isinstance(rec, Corrupt):
            reason = rec.reason
        elif isinstance(rec, Incomplete):
            reason = "the item record is truncated"
        else:  # pragma: no cover
            reason = "not an item record"
        found = Damage(path, pos, reason)
        if expected < tail:
            notices.append(f"{found} (an item acknowledged already: nothing is lost)")
        elif found not in damage:
            damage.append(found)
        nxt = find_record(data, pos + 1, ITEM_MAGIC, salt)
        if nxt is None or nxt.start - HEADER_SIZE >= limit:
            break
        pos = nxt.start - HEADER_SIZE
        expected = max(expected + 1, nxt.seq)
    if expected < stop:
        missing = Damage(path, pos, f"items {expected} to {stop - 1} are missing")
        if stop <= tail:
            pass  # acknowledged already: nothing is lost
        elif not any(d.path == path for d in damage):
            damage.append(missing)
    if end < size and any(data[end:min(size, end + 4096)]):
        notices.append(f"{path} at offset {end}: a torn tail after the last whole item; the "
                       "next open cuts it off")
    return whole
