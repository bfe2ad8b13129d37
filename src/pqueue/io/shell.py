"""The IO shell: runs the core's transitions and applies their effects through a FileSystem.

It owns no policy. It observes the directory for recovery, applies effects in order, and
reads item records back for delivery. Any ``OSError`` propagates to the caller, which moves
the queue to its broken phase, except where the disk is full and going on is safe: a put
that found no space changes nothing (``DiskFullError``), and a checkpoint that found no
space for its temp file is put off (what it would record is durable without it).

While effects are being applied, ``dirty`` is True: an exception that escapes then (an
``OSError``, or any other, such as ``KeyboardInterrupt`` from a signal) leaves the disk ahead
of ``state``, and the caller must treat the shell as broken.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import operator
import struct
from collections.abc import Iterator, Sequence
from typing import SupportsIndex, overload

from pqueue.core import ranges, transitions
from pqueue.core.codec import (
    HEADER_SIZE,
    ITEM_MAGIC,
    ByteSource,
    Corrupt,
    Incomplete,
    Record,
    decode,
    decode_block,
    find_record,
)
from pqueue.core.effects import (
    Create,
    Effect,
    Fsync,
    FsyncDir,
    Release,
    Replace,
    Truncate,
    Unlink,
    Write,
    WriteBack,
)
from pqueue.core.errors import CorruptQueueError, DiskFullError
from pqueue.core.state import Config, QueueState, chunk_path
from pqueue.io.fs import FileSystem

__all__ = ["Shell", "apply", "failed_effect", "observe"]

log = logging.getLogger("pqueue")

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

# Records put while every earlier one is read already are kept for the reader: up to this
# many unread, each of at most _HANDOFF_BYTES (4 MiB at most in all). Beyond that the
# reader reads them back from the file, a block at a time.
_READ_AHEAD_LIMIT = 64
# Chunk files a checkpoint deletes at once; the rest go one per later operation.
_UNLINK_AT_ONCE = 2
_HANDOFF_BYTES = 64 * 1024

# How much of a chunk file recovery reads at a time (a chunk no larger is read whole).
_VIEW_WINDOW = 1024 * 1024

_put = transitions.put
_ack = transitions.ack
_deliver = transitions.deliver
_discard = transitions.discard
_wants_checkpoint = transitions.wants_checkpoint

_LENGTH = struct.Struct("<I")

_FAILED_EFFECT = "pqueue_effect"


def apply(fs: FileSystem, effects: tuple[Effect, ...] | list[Effect]) -> None:
    """Apply ``effects`` in order through ``fs``.

    An ``OSError`` propagates with the effect that raised it attached (``failed_effect``).
    """
    effect: Effect | None = None
    try:
        if len(effects) == 1 and type(effect := effects[0]) is Write:
            # The common case (a put or acknowledgement between checkpoints), made short.
            fs.write(effect.path, effect.data, effect.offset)
            return
        for effect in effects:
            if type(effect) is Write:
                fs.write(effect.path, effect.data, effect.offset)
            elif type(effect) is Fsync:
                fs.fsync(effect.path)
            else:
                _apply_other(fs, effect)
    except OSError as exc:
        setattr(exc, _FAILED_EFFECT, effect)  # an attribute OSError does not declare
        raise


def failed_effect(exc: OSError) -> Effect | None:
    """The effect whose application raised ``exc`` (None if ``apply`` did not raise it)."""
    found: Effect | None = getattr(exc, _FAILED_EFFECT, None)
    return found


def _no_space(exc: OSError, kinds: tuple[type, ...], path: str | None = None) -> bool:
    """Whether ``exc`` says the disk is full and was raised by an effect of ``kinds`` (on
    ``path``, if given): the writes that may fail so without harm."""
    effect = failed_effect(exc)
    return (
        exc.errno in _NO_SPACE
        and type(effect) in kinds
        and (path is None or getattr(effect, "path", None) == path)
    )


def _apply_other(fs: FileSystem, effect: Effect) -> None:
    if isinstance(effect, Write):
        fs.write(effect.path, effect.data, effect.offset)
    elif isinstance(effect, Fsync):
        fs.fsync(effect.path)
    elif isinstance(effect, WriteBack):
        fs.write_back(effect.path)
    elif isinstance(effect, Release):
        fs.release(effect.path)
    elif isinstance(effect, Create):
        fs.create(effect.path)
    elif isinstance(effect, FsyncDir):
        fs.fsync_dir(effect.path)
    elif isinstance(effect, Replace):
        fs.replace(effect.src, effect.dst)
    elif isinstance(effect, Unlink):
        fs.unlink(effect.path)
    elif isinstance(effect, Truncate):
        fs.truncate(effect.path, effect.size)
    else:  # pragma: no cover - the Effect union is closed
        raise TypeError(f"unknown effect {effect!r}")


class FileView:
    """A file read through a ``FileSystem`` as if it were ``bytes`` (length, indexing,
    slicing, ``find``), a window at a time: recovery scans chunk files through it without
    holding a whole chunk of large items. The file must not change while it is viewed.
    """

    __slots__ = ("_fs", "_path", "_size", "_start", "_window", "_window_size")

    def __init__(
        self, fs: FileSystem, path: str, size: int, window_size: int = 1024 * 1024
    ) -> None:
        self._fs = fs
        self._path = path
        self._size = size
        self._window_size = window_size
        self._start = 0
        self._window = b""

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...

    @overload
    def __getitem__(self, key: slice, /) -> bytes: ...

    def __getitem__(self, key: SupportsIndex | slice, /) -> int | bytes:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._size)
            if step != 1:
                raise ValueError("a FileView slices with step 1 only")
            return self._read(start, stop)
        index = operator.index(key)
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("FileView index out of range")
        return self._read(index, index + 1)[0]

    def find(self, sub: bytes, start: SupportsIndex, /) -> int:
        """The lowest index of ``sub`` at or after ``start``, or -1."""
        pos = max(0, operator.index(start))
        overlap = max(len(sub) - 1, 0)
        while pos < self._size:
            stop = min(pos + self._window_size, self._size)
            found = self._read(pos, min(stop + overlap, self._size)).find(sub)
            if found >= 0:
                return pos + found
            pos = stop
        return -1

    def _read(self, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        offset = start - self._start
        if offset >= 0 and stop - self._start <= len(self._window):
            return self._window[offset : offset + stop - start]
        if stop - start > self._window_size:  # larger than a window: read it on its own
            return self._fs.read(self._path, start, stop - start)
        self._start = start
        self._window = self._fs.read(self._path, start, self._window_size)
        return self._window[: stop - start]


_FILE_KINDS = {"dir": "a directory", "symlink": "a symbolic link", "other": "not a regular file"}


def check_regular(fs: FileSystem, path: str) -> None:
    """Raise ``CorruptQueueError`` naming ``path`` if something other than a regular file (a
    directory, a symbolic link, a FIFO, a socket, a device) is there: pqueue only ever puts
    regular files in its directory, and reading a FIFO would block forever."""
    kind = fs.file_type(path)
    if kind is not None and kind != "file":
        raise CorruptQueueError(
            path, 0, f"is {_FILE_KINDS.get(kind, kind)}, not a regular file as pqueue writes"
        )


def _read_whole(fs: FileSystem, path: str) -> bytes:
    check_regular(fs, path)
    return fs.read(path)


def observe(fs: FileSystem, config: Config) -> transitions.Recovered:
    """Read what recovery needs from ``config.directory`` and run ``transitions.recover``
    on it, reading the chunk files it asks for: what to do to open the queue. Reads only:
    nothing on disk changes (``Shell.start`` applies the outcome)."""
    directory = config.directory
    names = frozenset(fs.listdir(directory))
    info_name = config.info_path.rsplit("/", 1)[1]
    ack_name = config.ack_path.rsplit("/", 1)[1]
    check_regular(fs, config.temp_path)
    obs = transitions.Observation(
        names=names,
        info=_read_whole(fs, config.info_path) if info_name in names else None,
        acks=_read_whole(fs, config.ack_path) if ack_name in names else None,
        temp_exists=fs.exists(config.temp_path),
    )
    chunks: dict[int, ByteSource] = {}
    while True:
        outcome = transitions.recover(config, obs)
        if not isinstance(outcome, transitions.ReadChunks):
            return outcome
        for number in outcome.numbers:
            path = chunk_path(config, number)
            check_regular(fs, path)
            size = fs.size(path)
            # A small chunk is read whole; a larger one through a window.
            chunks[number] = (
                fs.read(path) if size <= _VIEW_WINDOW
                else FileView(fs, path, size, _VIEW_WINDOW)
            )
        obs = transitions.Observation(
            names=names, info=obs.info, acks=obs.acks, temp_exists=obs.temp_exists,
            chunks=chunks,
        )


class Shell:
    """Holds the current state and the file system; the Queue calls it under its lock."""

    def __init__(self, fs: FileSystem, state: QueueState) -> None:
        self.fs = fs
        self.state = state
        # Records read ahead from the read position: (seq, end offset, payload).
        self._records: list[tuple[int, int, bytes]] = []
        self._next = 0
        # The item after the last record read ahead (or the read position when none is):
        # a put of this item extends the read-ahead.
        self._ahead = state.read
        self._block = 256 * 1024
        # True while effects are applied: an exception escaping then leaves the disk ahead
        # of ``state``, and the shell must not be used again.
        self.dirty = False
        # The chunk crossings at which a checkpoint was last put off for lack of space: it
        # is tried again after the next crossing (or when the ack log is full).
        self.deferred: int | None = None
        # The offset in its chunk of the record ``take`` returned last.
        self.taken_at = 0
        # Set by a shared shell: ``ack`` leaves the fsync of its record to the caller
        # (``unsynced``), which makes it after the lock on the shared state is let go.
        self.defer_sync = False
        self.unsynced: Effect | None = None
        # Set by a caller that makes that fsync itself, after letting go of the queue's
        # mutex (group commit): it is then left in ``unsynced`` for the caller.
        self.hold_sync = False
        # Within ``one_fsync``: the records of plain acknowledgements, written together at
        # its end (or before anything that could start a new generation of the ack log).
        self._ack_writes: list[Effect] | None = None
        # Consumed chunk files a checkpoint no longer refers to, deleted one per put,
        # acknowledgement or delivery after it rather than all at once (see ``_apply``).
        self._doomed: list[str] = []

    @classmethod
    def start(cls, fs: FileSystem, recovered: transitions.Recovered) -> Shell:
        """Open the queue as ``observe`` decided: apply its repairs, preallocate the ack log
        and checkpoint. On a full disk the last two are put off: the queue opens on what is
        on disk, delivers, and acknowledges into the room the ack log has."""
        for notice in recovered.notices:
            log.log(logging.WARNING if notice.level == "warning" else logging.INFO,
                    "%s", notice.message)
        shell = cls(fs, recovered.state)
        shell.dirty = True
        apply(fs, recovered.repairs)
        shell.dirty = False
        state = recovered.state
        reserve = transitions.reserve_acks(state, recovered.ack_size)
        if reserve is not None:
            full = shell._run_unless_full(reserve, (Write,), state.config.ack_path)
            if full is not None:
                log.warning(
                    "%s: no space left to preallocate the ack log (%s); acknowledgements "
                    "go on in the %d bytes it has", state.config.ack_path, full,
                    state.ledger.ack_capacity,
                )
        if recovered.checkpoint:
            shell.checkpoint()
        return shell

    def run(self, step: transitions.Step) -> None:
        """Apply a step's effects, then make its state current."""
        self._write_acks()
        state, effects = step
        self.dirty = True
        self._apply(effects, state)
        self._commit(state)

    def _apply(self, effects: tuple[Effect, ...], state: QueueState) -> None:
        """Apply the effects of a step that leads to ``state`` and is not a put or a plain
        acknowledgement (those apply theirs directly, on the hot path).

        A checkpoint ends by deleting the chunk files its new tail passed. Beyond the first
        ``_UNLINK_AT_ONCE`` of them they are left for the operations that follow, one each
        (``unlink_doomed``): no durable checkpoint refers to them any more, a chunk number
        below the tail is never used again, and recovery deletes any that a crash left."""
        end = len(effects)
        while end and type(effects[end - 1]) is Unlink:
            end -= 1
        if len(effects) - end > _UNLINK_AT_ONCE:
            later = effects[end + _UNLINK_AT_ONCE :]
            effects = effects[: end + _UNLINK_AT_ONCE]
            self._doomed.extend(e.path for e in reversed(later) if type(e) is Unlink)
        apply(self.fs, effects)

    def unlink_doomed(self, every: bool = False) -> None:
        """Delete one of the chunk files left by a checkpoint (``every``: all of them). A
        failure is logged, never raised: the file is of no use, and recovery deletes it."""
        doomed = self._doomed
        while doomed:
            path = doomed.pop()
            try:
                self.fs.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("%s: could not delete the consumed chunk file: %s", path, exc)
            if not every:
                return

    def _commit(self, state: QueueState) -> None:
        """Make ``state`` current once its effects are applied; a checkpoint that moved the
        read position (a drained queue skips to the next chunk) empties the read-ahead."""
        if state.read != self.state.read:
            records = self._records
            # Read on in the read-ahead when the read position moved forward within it
            # (other participants took the items between), else drop it.
            i = state.read - records[0][0] if records else -1
            if (
                0 < i < len(records) and records[i][0] == state.read
                and records[i - 1][1] == state.read_offset
            ):
                self._next = i
            else:
                self._records = []
                self._next = 0
                self._ahead = state.read
        self.state = state
        self.dirty = False

    def checkpoint(self) -> None:
        """Checkpoint now. If the disk has no room for the temp file, put it off: ``info``
        and the chunks are as they were, and what the checkpoint would have recorded is
        durable without it (the ack log, the chunks)."""
        self._write_acks()
        step = transitions.checkpoint(self.state)
        full = self._run_unless_full(step, (Create, Write, Fsync), self.state.config.temp_path)
        if full is None:
            self.deferred = None
            if self.state.tail == self.state.head:
                # Drained: nothing may come to delete the rest soon, and nothing waits.
                self.unlink_doomed(every=True)
            return
        self.deferred = self.state.ledger.crossings
        log.warning(
            "%s: no space left for a checkpoint (%s); going on without it",
            self.state.config.directory, full,
        )

    def _run_unless_full(
        self, step: transitions.Step, kinds: tuple[type, ...], path: str
    ) -> OSError | None:
        """Run ``step``, unless one of its effects of ``kinds`` on ``path`` finds no space
        left: then undo what it created, keep the state, and return the error."""
        state, effects = step
        self.dirty = True
        try:
            self._apply(effects, state)
        except OSError as exc:
            if not _no_space(exc, kinds, path):
                raise
            self._undo(effects)
            self.dirty = False
            return exc
        self._commit(state)
        return None

    def _undo(self, effects: tuple[Effect, ...]) -> None:
        """Remove what a step that found no space created (``transitions.undo_created``),
        as well as can be: what is left is removed at the next open."""
        with contextlib.suppress(OSError):
            apply(self.fs, transitions.undo_created(effects))

    def _after(self, state: QueueState) -> None:
        """Checkpoint if one is due, unless one was put off for lack of space since the
        last chunk crossing."""
        if _wants_checkpoint(state) and (
            self.deferred is None or state.ledger.crossings > self.deferred
        ):
            self.checkpoint()

    def reclaim(self) -> None:
        """Checkpoint if the queue is drained and that would delete chunk files (and delete
        every one left to delete)."""
        if transitions.reclaimable(self.state):
            self.checkpoint()
        self.unlink_doomed(every=True)

    def put(self, payload: bytes) -> QueueState:
        """Append one serialised item: run the ``put`` transition and apply its effects.

        When every record before this one is read already (or read ahead), the record is
        also kept in the read-ahead: a consumer that keeps up gets it without reading back
        what was just written, since a read would return exactly these bytes. A put that
        finds no space left (creating or writing the chunk) raises ``DiskFullError`` and
        changes nothing: the state stays, and the next put writes at the same place.
        """
        old = self.state
        state, effects = _put(old, payload)
        self._apply_put(state, effects, "a put")
        if self._doomed:
            self.unlink_doomed()
        if old.head == self._ahead:
            self._hand_off(old.head, state.head_offset, payload)
        if state.ledger is not old.ledger:
            self._after(state)
        return self.state

    def put_many(self, payloads: Sequence[bytes]) -> QueueState:
        """Append several serialised items as one batch (``transitions.put_many``): all of
        them durable together, or, on a crash or a full disk, none. Kept in the read-ahead
        as ``put`` keeps one."""
        old = self.state
        state, effects = transitions.put_many(old, payloads)
        self._apply_put(state, effects, f"a batch of {len(payloads)} items")
        if old.head == self._ahead:
            cs = old.config.chunksize
            seq, offset = old.head, old.head_offset
            for payload in payloads:
                end = offset + HEADER_SIZE + len(payload)
                seq += 1
                offset = 0 if not seq % cs else end
                if not self._hand_off(seq - 1, offset, payload):
                    break
        if state.ledger is not old.ledger:
            self._after(state)
        return self.state

    def _apply_put(self, state: QueueState, effects: tuple[Effect, ...], what: str) -> None:
        """Apply the effects of a put (or a batch) and make ``state`` current; on a full disk
        undo what they created and raise ``DiskFullError``, the queue unchanged."""
        self.dirty = True
        try:
            apply(self.fs, effects)
        except OSError as exc:
            if _no_space(exc, (Create, Write)):
                path = getattr(failed_effect(exc), "path", "?")
                self._undo(effects)
                self.dirty = False
                raise DiskFullError(
                    f"no space left on the device for {what} into {path}: {exc}; nothing "
                    f"was put, and the queue at {state.config.directory!r} is unchanged and "
                    "open"
                ) from exc
            raise
        self.state = state
        self.dirty = False

    def _hand_off(self, seq: int, end: int, payload: bytes) -> bool:
        """Keep item ``seq`` (its record ending at ``end``, 0 at a chunk's end), just put
        after every record read or read ahead, in the read-ahead; False if it is not kept
        (too large, or the read-ahead is full: the reader reads it back from the file)."""
        if len(payload) > _HANDOFF_BYTES:
            return False
        records = self._records
        unread = len(records) - self._next
        if not unread:
            self._records = [(seq, end, payload)]
            self._next = 0
        elif unread < _READ_AHEAD_LIMIT:
            if self._next >= _READ_AHEAD_LIMIT:  # drop the records handed out
                del records[: self._next]
                self._next = 0
            records.append((seq, end, payload))
        else:
            return False
        self._ahead += 1
        return True

    def ack(self, seq: int) -> QueueState:
        """Acknowledge delivered item ``seq``: run the ``ack`` transition, apply its effects,
        and checkpoint if one is due."""
        old = self.state
        state, effects = _ack(old, seq)
        if self.defer_sync and len(effects) == 2 and type(effects[1]) is Fsync:
            # (the record, its fsync): the caller syncs once it let the others go on.
            self.unsynced = effects[1]
            effects = effects[:1]
        if self._doomed:
            self.unlink_doomed()
        pending = self._ack_writes
        if pending is not None and state.ledger is old.ledger and len(effects) == 1:
            pending.append(effects[0])  # written with the others, at the end of one_fsync
            self.state = state
            if state.tail == state.head:
                self._after(state)
            return self.state
        self.dirty = True
        if state.ledger is old.ledger:
            apply(self.fs, effects)
        else:  # the ack log was full: the acknowledgement is a checkpoint
            self._write_acks()
            self._apply(effects, state)
        if state.read == old.read:
            self.state = state
            self.dirty = False
        else:  # the ack log was full: the ack was a checkpoint, which skipped ahead
            self._commit(state)
        if state.ledger is not old.ledger or state.tail == state.head:
            self._after(state)
        return self.state

    @contextlib.contextmanager
    def one_fsync(self) -> Iterator[None]:
        """Acknowledgements made within write their records and leave the fsync of the ack
        log to the end, where one fsync makes them all durable (for a shared shell, after
        the lock on the shared state is let go, as for one acknowledgement). Nothing is
        synced if applying effects failed: the shell is then broken."""
        deferred = self.defer_sync
        self.defer_sync = True
        self._ack_writes = []
        try:
            yield
        finally:
            try:
                self._write_acks()
            finally:
                self._ack_writes = None
                self.defer_sync = deferred
            unsynced = self.unsynced
            if unsynced is not None and not deferred and not self.hold_sync:
                self.unsynced = None
                if not self.dirty:
                    apply(self.fs, (unsynced,))

    def _write_acks(self) -> None:
        """Write the acknowledgement records ``one_fsync`` has held back, in one write (they
        fill consecutive slots of the ack log)."""
        pending = self._ack_writes
        if pending:
            self._ack_writes = []
            self.dirty = True
            apply(self.fs, transitions.acks_together(pending))
            self.dirty = False

    def take(self) -> tuple[int, bytes]:
        """Deliver the item at the read position: ``(seq, payload)``.

        Records are read a block at a time and decoded together; items acknowledged
        before a reopen are skipped here, as ``transitions.deliver`` says. The state must
        have an item waiting (``state.size > 0``).
        """
        while True:
            i = self._next
            records = self._records
            if i < len(records):
                self._next = i + 1
                seq, end, payload = records[i]
            else:
                try:
                    seq, end, payload = self._load()
                except CorruptQueueError:
                    if self._pass_acknowledged():
                        continue
                    raise
            old = self.state
            state, delivered = _deliver(old, seq, end)
            self.state = state
            if delivered:
                self.taken_at = old.read_offset
                return seq, payload

    def backlog(self, undelivered: bool = False) -> Iterator[tuple[int, bytes]]:
        """Every item not acknowledged (delivered or not; ``undelivered``: only those from
        the read position on), in put order: ``(seq, payload)``, read from the chunk files
        a chunk at a time, without changing anything. A damaged record raises
        ``CorruptQueueError`` naming its file and offset."""
        state = self.state
        config = state.config
        cs = config.chunksize
        acked = state.acked
        first, start = (state.read, state.read_offset) if undelivered else (state.tail, 0)
        for number in range(first // cs, (state.head + cs - 1) // cs):
            stop = min(state.head, (number + 1) * cs)  # after it: preallocated zeros
            if stop <= first:
                break  # (undelivered) everything was delivered
            path = chunk_path(config, number)
            end = state.head_offset if number == state.head // cs else self.fs.size(path)
            buf = self._read(path, start, end - start)
            records = decode_block(buf, start, ITEM_MAGIC, cs, config.salt)
            if not records or records[-1][0] < stop - 1:
                at = records[-1][1] if records else start
                self._one_record(path, at, buf[at - start :])  # names the damage there
                raise CorruptQueueError(path, at, "an item record is missing")
            for seq, _end, payload in records:
                if seq >= first and not (acked and ranges.contains(acked, seq)):
                    yield seq, payload
            start = 0

    def discard_damaged(self) -> int:
        """Discard the damaged item at the read position and any damaged ones after it, up to
        the next whole item (or the head): the number of items discarded.

        Items acknowledged before a reopen are passed over first, as ``take`` does. Raises
        ``ValueError`` when the item at the read position is whole, or none waits.
        """
        if not self.state.size:
            raise ValueError("no item waits to be got; nothing to discard")
        while True:
            try:
                if self._next < len(self._records):
                    seq, end, _ = self._records[self._next]
                    self._next += 1
                else:
                    seq, end, _ = self._load()
            except CorruptQueueError:
                break
            state = self.state
            if seq != state.read:  # a whole record, but not the item expected: damage
                break
            if state.acked and ranges.contains(state.acked, seq):  # acked before a reopen
                self.state, _ = _deliver(state, seq, end)
                continue
            self._next -= 1  # whole and due: leave it for take()
            raise ValueError(f"the next item (item {seq}) is not damaged; nothing to discard")
        state = self.state
        new = self._discard_to(*self._next_whole(state))
        return state.size - new.size

    def _pass_acknowledged(self) -> bool:
        """Move the read position over damaged items that were acknowledged before a reopen
        (their content is not needed) to the next item not acknowledged, if that one is
        whole. Damage to an item not acknowledged is never passed over here."""
        state = self.state
        acked = state.acked
        if not acked or not ranges.contains(acked, state.read):
            return False
        wanted = state.read
        while ranges.contains(acked, wanted):
            wanted += 1
        seq, offset = self._next_whole(state, wanted)
        if seq != wanted:
            return False
        self._discard_to(seq, offset)
        return True

    def _discard_to(self, seq: int, offset: int) -> QueueState:
        """Run ``transitions.discard`` to item ``seq`` at ``offset`` and read on from there."""
        self.run(_discard(self.state, seq, offset))
        self.forget_read_ahead()
        return self.state

    def forget_read_ahead(self) -> None:
        """Read on from the read position: the records read ahead are not needed."""
        self._records = []
        self._next = 0
        self._ahead = self.state.read

    def _next_whole(self, state: QueueState, wanted: int | None = None) -> tuple[int, int]:
        """The first whole item after the damaged one at the read position (item ``wanted``
        if given), as (seq, offset in its chunk); the head when there is none."""
        fs = self.fs
        config = state.config
        cs = config.chunksize
        number = state.read // cs
        pos = state.read_offset + 1
        while number * cs < state.head:
            path = chunk_path(config, number)
            if fs.file_type(path) == "file":  # gone or not a file: nothing to find in it
                size = fs.size(path)
                end = state.head_offset if number == state.head // cs else size
                data: ByteSource = (
                    fs.read(path) if size <= _VIEW_WINDOW
                    else FileView(fs, path, size, _VIEW_WINDOW)
                )
                found = find_record(data, pos, ITEM_MAGIC, config.salt)
                while found is not None:
                    start = found.start - HEADER_SIZE
                    if (
                        state.read < found.seq < state.head
                        and (wanted is None or found.seq == wanted)
                        and found.seq // cs == number
                        and found.end <= end
                    ):
                        return found.seq, start
                    found = find_record(data, start + 1, ITEM_MAGIC, config.salt)
            number += 1
            pos = 0
        return state.head, state.head_offset

    def _load(self) -> tuple[int, int, bytes]:
        state = self.state
        config = state.config
        cs = config.chunksize
        number = state.read // cs
        offset = state.read_offset
        path = chunk_path(config, number)
        size = self._block
        if number == state.head // cs:
            # The head chunk: only what was written is valid; what follows is preallocated.
            size = max(HEADER_SIZE, min(size, state.head_offset - offset))
        buf = self._read(path, offset, size)
        records = decode_block(buf, offset, ITEM_MAGIC, cs - state.read % cs, config.salt)
        if not records:
            records = [self._one_record(path, offset, buf)]
        self._records = records
        self._next = 1
        self._ahead = records[-1][0] + 1
        return records[0]

    def _one_record(self, path: str, offset: int, buf: bytes) -> tuple[int, int, bytes]:
        """The record at ``offset`` of chunk ``path`` whose first bytes, read already, are
        ``buf`` (read again whole when it is larger than they are), as ``(seq, end,
        payload)``; ``CorruptQueueError`` naming the file and offset when it is not whole
        and valid."""
        salt = self.state.config.salt
        rec = decode(buf, 0, ITEM_MAGIC, salt, offset)
        if type(rec) is Incomplete and len(buf) >= HEADER_SIZE:
            (length,) = _LENGTH.unpack_from(buf, 5)
            buf = self._read(path, offset, HEADER_SIZE + length)
            rec = decode(buf, 0, ITEM_MAGIC, salt, offset)
        if type(rec) is not Record:
            reason = rec.reason if isinstance(rec, Corrupt) else "the item record is truncated"
            raise CorruptQueueError(path, offset, reason)
        return rec.seq, offset + rec.end, buf[rec.start : rec.end]

    def read_record(self, seq: int, offset: int) -> bytes:
        """The payload of item ``seq``, whose record starts at ``offset`` of its chunk (an
        item given back, delivered again)."""
        path = chunk_path(self.state.config, seq // self.state.config.chunksize)
        found, _, payload = self._one_record(path, offset, self._read(path, offset, 64 * 1024))
        if found != seq:
            raise CorruptQueueError(
                path, offset, f"item {seq}, to be delivered again, is not there"
            )
        return payload

    def _read(self, path: str, offset: int, size: int) -> bytes:
        """Read a chunk of the backlog; a chunk file that is gone or not a regular file is
        ``CorruptQueueError`` naming it, any other failure the ``OSError``."""
        try:
            return self.fs.read(path, offset, size)
        except FileNotFoundError as exc:
            raise CorruptQueueError(
                path, offset, "the chunk file is missing, but it holds items not yet delivered"
            ) from exc
        except OSError:
            check_regular(self.fs, path)
            raise
