"""Every transition of the queue, in one place.

Each function takes the current state (and an input) and returns a ``Step``: the new state
and the effects the IO shell must apply, in order, for the new state to be true on disk.
Nothing here touches a file, a clock or a lock; illegal inputs raise and change nothing.

The queue's life (open, shut down, closed, broken, superseded, inherited through ``fork``) is
a second, small state machine: ``advance(phase, command)`` checks every call against one
table.

On disk (see ``codec`` for the byte formats):

- ``info``: the checkpoint, replaced atomically (temp file, fsync, rename, fsync directory).
- ``qNNNNN``: chunk files of framed item records, ``chunksize`` items each.
- ``acks``: the ack log, a row of fixed-size slots. Each acknowledgement writes one record
  into the next slot; a checkpoint folds the acknowledgements into ``info`` and starts a new
  generation of the log from its start.

In ``fsync`` mode a put is durable before it returns (one ``fdatasync`` into preallocated
space) and so is an acknowledgement. In ``flush`` mode both are handed to the OS only; a
checkpoint first makes the chunks it refers to durable, so a power loss can lose only what
came after the last checkpoint and never leaves the queue unopenable.

``put`` and ``ack`` never checkpoint on their own, except an ``ack`` that finds the ack log
full: the shell asks ``wants_checkpoint`` after them and runs ``checkpoint``, which it may put
off when the disk is full (the put or acknowledgement is durable without it).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from pqueue.core import ranges
from pqueue.core.codec import (
    ACK_RECORD_SIZE,
    BATCH_END_MAGIC,
    BATCH_FIRST_MAGIC,
    BATCH_MAGIC,
    HEADER_SIZE,
    ITEM_MAGIC,
    ITEM_MARKERS,
    MAX_SEQ,
    ByteSource,
    Info,
    InfoCursor,
    Record,
    decode,
    decode_info,
    encode,
    encode_ack,
    encode_info,
    find_record,
    mark_acks_together,
    scan_acks,
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
from pqueue.core.errors import (
    CorruptQueueError,
    QueueBrokenError,
    QueueClosedError,
    QueueForkedError,
    QueueSupersededError,
    SerializerMismatchError,
    ShutDown,
)
from pqueue.core.state import Config, Ledger, QueueState, chunk_path

__all__ = [
    "Command",
    "Notice",
    "Observation",
    "Phase",
    "ReadChunks",
    "Recovered",
    "Step",
    "ack",
    "advance",
    "checkpoint",
    "close",
    "deliver",
    "discard",
    "give_back",
    "lend_again",
    "put",
    "reclaimable",
    "recover",
    "reserve_acks",
    "shutdown",
    "undo_created",
    "wants_checkpoint",
]

Step = tuple[QueueState, tuple[Effect, ...]]

# The hot transitions build their NamedTuples with tuple.__new__, skipping the generated
# __new__ wrapper: about 0.4 us less per put, get and acknowledgement on the machines measured.
_new = tuple.__new__

_NO_ACKS: ranges.Ranges = ranges.EMPTY
_PAGE = 4096
_MAX_PREALLOC = 4 * 1024 * 1024
_GROWTH = 64 * 1024
_ZERO_SCAN = 64 * 1024


# --- the lifecycle ---------------------------------------------------------------------------


class Phase(enum.Enum):
    """Where a Queue object is in its life."""

    OPEN = "open"
    SHUTDOWN = "shut down"
    CLOSED = "closed"
    BROKEN = "broken"
    SUPERSEDED = "superseded"
    FORKED = "inherited through fork"


class Command(enum.Enum):
    """What a caller asks of a Queue object, as far as its phase is concerned."""

    PUT = "put"
    GET = "get"
    ACK = "acknowledge"
    INSPECT = "inspect"
    SHUTDOWN = "shut down"
    CLOSE = "close"
    FAIL = "fail"  # an IO operation failed, or an exception interrupted one
    SUPERSEDE = "supersede"  # a newer Queue object took the directory over
    FORK = "fork"  # the process forked: this is the child's copy of the object


def _shut_down(path: str, command: Command) -> Exception:
    return ShutDown(f"cannot {command.value}: the queue at {path!r} was shut down")


def _closed(path: str, command: Command) -> Exception:
    return QueueClosedError(f"cannot {command.value}: the queue at {path!r} is closed")


def _broken(path: str, command: Command) -> Exception:
    return QueueBrokenError(
        f"cannot {command.value}: the queue at {path!r} is broken by an earlier IO error or "
        "interruption; open the directory again to recover"
    )


def _superseded(path: str, command: Command) -> Exception:
    return QueueSupersededError(
        f"cannot {command.value}: this Queue object was superseded by a newer Queue opened "
        f"on {path!r} in this process; use that one"
    )


def _forked(path: str, command: Command) -> Exception:
    return QueueForkedError(
        f"cannot {command.value}: this Queue object on {path!r} was inherited through fork() "
        "from the process that opened it, which still owns the directory; this process must "
        "not use it (open the queue in a process of its own once the owner has closed it)"
    )


_Refusal = Callable[[str, Command], Exception]
_P, _C = Phase, Command

# (phase, command) -> the next phase, or the error that refuses the command.
_PHASES: dict[tuple[Phase, Command], Phase | _Refusal] = {}
for _command in (_C.PUT, _C.GET, _C.ACK, _C.INSPECT):
    _PHASES[_P.OPEN, _command] = _P.OPEN
    _PHASES[_P.SHUTDOWN, _command] = _P.SHUTDOWN
    _PHASES[_P.CLOSED, _command] = _closed
    _PHASES[_P.BROKEN, _command] = _broken
    _PHASES[_P.SUPERSEDED, _command] = _superseded
    _PHASES[_P.FORKED, _command] = _forked
_PHASES[_P.SHUTDOWN, _C.PUT] = _shut_down
_PHASES.update(
    {
        (_P.OPEN, _C.SHUTDOWN): _P.SHUTDOWN,
        (_P.SHUTDOWN, _C.SHUTDOWN): _P.SHUTDOWN,
        (_P.CLOSED, _C.SHUTDOWN): _closed,
        (_P.BROKEN, _C.SHUTDOWN): _broken,
        (_P.SUPERSEDED, _C.SHUTDOWN): _superseded,
        (_P.FORKED, _C.SHUTDOWN): _forked,
        (_P.OPEN, _C.CLOSE): _P.CLOSED,
        (_P.SHUTDOWN, _C.CLOSE): _P.CLOSED,
        (_P.CLOSED, _C.CLOSE): _P.CLOSED,
        (_P.BROKEN, _C.CLOSE): _P.CLOSED,
        (_P.SUPERSEDED, _C.CLOSE): _P.SUPERSEDED,
        (_P.FORKED, _C.CLOSE): _P.FORKED,
        (_P.OPEN, _C.FAIL): _P.BROKEN,
        (_P.SHUTDOWN, _C.FAIL): _P.BROKEN,
        (_P.BROKEN, _C.FAIL): _P.BROKEN,
        (_P.CLOSED, _C.FAIL): _P.CLOSED,
        (_P.SUPERSEDED, _C.FAIL): _P.SUPERSEDED,
        (_P.FORKED, _C.FAIL): _P.FORKED,
        (_P.OPEN, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.SHUTDOWN, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.BROKEN, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.CLOSED, _C.SUPERSEDE): _P.CLOSED,
        (_P.SUPERSEDED, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.FORKED, _C.SUPERSEDE): _P.FORKED,
        (_P.OPEN, _C.FORK): _P.FORKED,
        (_P.SHUTDOWN, _C.FORK): _P.FORKED,
        (_P.BROKEN, _C.FORK): _P.FORKED,
        (_P.CLOSED, _C.FORK): _P.CLOSED,
        (_P.SUPERSEDED, _C.FORK): _P.SUPERSEDED,
        (_P.FORKED, _C.FORK): _P.FORKED,
    }
)
del _command


def advance(phase: Phase, command: Command, path: str) -> Phase:
    """The phase after ``command`` in ``phase``; raises the refusal if it is not allowed.

    A refused command changes nothing: the caller keeps ``phase``.
    """
    outcome = _PHASES[phase, command]
    if isinstance(outcome, Phase):
        return outcome
    raise outcome(path, command)


# --- put, deliver, ack -----------------------------------------------------------------------


def _extent(end: int, hint: int) -> int:
    """Bytes to allocate for a chunk that must hold ``end`` bytes, guided by ``hint``."""
    size = max(end, min(hint, end + _MAX_PREALLOC))
    return -(-size // _PAGE) * _PAGE


def _grown(end: int, frame: int) -> int:
    """The preallocated size of a chunk that a record of ``frame`` bytes ending at ``end``
    outgrew (``fsync`` mode): room for ``_GROWTH`` more bytes of small records, so that
    their fdatasyncs need not change the file's size; none past a large record, whose bytes
    are then written once."""
    pad = _GROWTH if frame < _GROWTH else 0
    return -(-(end + pad) // _PAGE) * _PAGE


def put(state: QueueState, payload: bytes, magic: int = ITEM_MAGIC) -> Step:
    """Append one item (already serialised to ``payload``) at the head. ``magic``: the
    marker of a record of a batch (``put_many``) when it is one."""
    (
        config, seq, offset, read, read_offset, tail, acked, size, outstanding, ack_offset,
        ledger,
    ) = state
    if seq >= MAX_SEQ:
        raise ValueError(f"the queue has reached its last item number ({MAX_SEQ - 1})")
    frame = encode(magic, seq, payload, config.salt, offset)
    end = offset + len(frame)
    effects: tuple[Effect, ...]
    if offset == 0:
        # The first item of a chunk: start the file empty, never append to what is there.
        path = chunk_path(config, seq // config.chunksize)
        if config.sync:
            alloc = _extent(end, ledger.alloc) if len(frame) < _GROWTH else _grown(end, len(frame))
            effects = (
                Create(path),
                Write(path, 0, frame + bytes(alloc - end)),
                Fsync(path),
                FsyncDir(config.directory),
            )
        else:
            alloc = 0
            effects = (Create(path), Write(path, 0, frame))
        ledger = attrs.evolve(ledger, head_path=path, alloc=alloc)
    elif not config.sync:
        path = ledger.head_path
        effects = (_new(Write, (path, offset, frame)),)
    elif end <= ledger.alloc:
        path = ledger.head_path
        effects = (_new(Write, (path, offset, frame)), Fsync(path))
    else:
        path = ledger.head_path
        alloc = _grown(end, len(frame))
        effects = (Write(path, offset, frame + bytes(alloc - end)), Fsync(path))
        ledger = attrs.evolve(ledger, alloc=alloc)
    seq += 1
    if seq % config.chunksize:
        return _new(
            QueueState,
            (
                config, seq, end, read, read_offset, tail, acked, size + 1, outstanding,
                ack_offset, ledger,
            ),
        ), effects
    # The chunk is full: the head crosses into the next one.
    ledger = attrs.evolve(ledger, crossings=ledger.crossings + 1)
    new = QueueState(
        config, seq, 0, read, read_offset, tail, acked, size + 1, outstanding, ack_offset,
        ledger,
    )
    if config.sync:
        return new, (*effects, Release(path))
    # The checkpoint will fdatasync this chunk: have its data on its way to disk now. And
    # make the chunk before it (on its way since the last crossing) durable now, if it
    # holds items the checkpoint would have to sync: the checkpoint then syncs the last two
    # chunks at most, so that no put or get waits for dozens of fsyncs at once.
    done = seq // config.chunksize - 2
    start = done * config.chunksize
    if done >= tail // config.chunksize and start + config.chunksize > max(
        ledger.checkpoint.head.seq, ledger.synced
    ):
        new = new._replace(ledger=attrs.evolve(ledger, synced=start + config.chunksize))
        return new, (*effects, WriteBack(path), Release(path), Fsync(chunk_path(config, done)))
    return new, (*effects, WriteBack(path), Release(path))


def put_many(state: QueueState, payloads: Sequence[bytes]) -> Step:
    """Append several items (serialised) at the head as one batch, durable together or not
    at all: one run of records, the first under ``BATCH_FIRST_MAGIC``, the last under
    ``BATCH_END_MAGIC`` and those between under ``BATCH_MAGIC`` (recovery keeps a batch only
    whole), written with one write per chunk file it falls in and, in ``fsync`` mode, one
    fsync of each."""
    if not payloads:
        raise ValueError("a batch holds at least one item")
    last = len(payloads) - 1
    if not last:
        return put(state, payloads[0])
    effects: list[Effect] = []
    for i, payload in enumerate(payloads):
        magic = BATCH_MAGIC if 0 < i < last else BATCH_FIRST_MAGIC if i == 0 else BATCH_END_MAGIC
        state, made = put(state, payload, magic)
        effects.extend(made)
    return state, coalesce(effects)


def coalesce(effects: Iterable[Effect]) -> tuple[Effect, ...]:
    """The effects of several steps made as one: writes to a file that follow on from (or
    overlap) its previous write merged into it, and every fsync (of a file, then of a
    directory) and handle release made once, after all the writes. Only for steps whose
    order within does not matter to a crash (a batch is durable whole or not at all)."""
    out: list[Effect | list[Any]] = []  # a write being merged: [path, offset, bytearray]
    last_write: dict[str, list[Any]] = {}
    files: dict[str, None] = {}
    dirs: dict[str, None] = {}
    released: dict[str, None] = {}
    for effect in effects:
        kind = type(effect)
        if kind is Write:
            assert isinstance(effect, Write)
            path, offset, data = effect
            merged = last_write.get(path)
            if merged is not None:
                buf: bytearray = merged[2]
                start = offset - merged[1]
                if 0 <= start <= len(buf):
                    buf[start : start + len(data)] = data
                    continue
            merged = [path, offset, bytearray(data)]
            last_write[path] = merged
            out.append(merged)
        elif kind is Fsync:
            assert isinstance(effect, Fsync)
            files[effect.path] = None
        elif kind is FsyncDir:
            assert isinstance(effect, FsyncDir)
            dirs[effect.path] = None
        elif kind is Release:
            assert isinstance(effect, Release)
            released[effect.path] = None
        else:
            target = getattr(effect, "path", None)
            if isinstance(target, str):
                last_write.pop(target, None)  # never merge a write across a create or truncate
            out.append(effect)
    made: list[Effect] = [
        Write(e[0], e[1], bytes(e[2])) if type(e) is list else e  # type: ignore[misc]
        for e in out
    ]
    made.extend(Fsync(path) for path in files)
    made.extend(FsyncDir(path) for path in dirs)
    made.extend(Release(path) for path in released)
    return tuple(made)


def acks_together(writes: Sequence[Effect]) -> tuple[Effect, ...]:
    """The writes of several ``ack`` steps' records (consecutive slots of the ack log, in
    order) made as one write, its records marked as written together (``task_done(n)``,
    ``ack_many`` and grouped acknowledgements), so that recovery counts them all or none of
    them, and never takes what a crash left of them for damage."""
    made = coalesce(writes)
    return tuple(
        Write(e.path, e.offset, mark_acks_together(e.data)) if type(e) is Write else e
        for e in made
    )


def deliver(state: QueueState, seq: int, end: int) -> tuple[QueueState, bool]:
    """Move ``read`` past the record for item ``seq`` that the shell found at ``read``,
    ending at byte ``end``. Returns the new state and whether the item is to be delivered
    (False: it was acknowledged before a reopen, so it is skipped).
    """
    (
        config, head, head_offset, read, read_offset, tail, acked, size, outstanding,
        ack_offset, ledger,
    ) = state
    if read >= head:
        raise ValueError(f"no item to deliver: read {read} is at the head")
    if seq != read:
        raise CorruptQueueError(
            chunk_path(config, read // config.chunksize),
            read_offset,
            f"expected item {read}, found item {seq}",
        )
    seq += 1
    cs = config.chunksize
    if not seq % cs:
        end = 0
    if acked and ranges.contains(acked, read):
        # Acknowledged before a reopen: skip it. If it was the oldest unfinished item, the
        # tail moves past it (and past any acknowledged items up to the read position).
        if tail == read:
            tail, acked = ranges.pop_front(acked, tail, seq)
            if tail // cs != read // cs:
                ledger = attrs.evolve(ledger, crossings=ledger.crossings + 1)
        return _new(
            QueueState,
            (
                config, head, head_offset, seq, end, tail, acked, size, outstanding,
                ack_offset, ledger,
            ),
        ), False
    return _new(
        QueueState,
        (
            config, head, head_offset, seq, end, tail, acked, size - 1, outstanding + 1,
            ack_offset, ledger,
        ),
    ), True


def ack(state: QueueState, seq: int) -> Step:
    """Acknowledge delivered item ``seq``: it will never be delivered again.

    Writes one record into the ack log (and fsyncs it, in ``fsync`` mode); when the log has
    no room left, a checkpoint records the acknowledgement instead. Whether a checkpoint is
    due after it is ``wants_checkpoint``'s to say.
    """
    (
        config, head, head_offset, read, read_offset, tail, acked, size, outstanding,
        ack_offset, ledger,
    ) = state
    if not tail <= seq < read or (acked and ranges.contains(acked, seq)):
        raise ValueError(f"item {seq} is not an outstanding delivery")
    old_tail = tail
    if seq != tail:
        acked = ranges.add(acked, seq)
    elif acked:
        tail, acked = ranges.pop_front(acked, tail + 1, read)
    else:
        tail += 1
    cs = config.chunksize
    if tail // cs != old_tail // cs:
        ledger = attrs.evolve(ledger, crossings=ledger.crossings + tail // cs - old_tail // cs)
    end = ack_offset + ACK_RECORD_SIZE
    new = _new(
        QueueState,
        (
            config, head, head_offset, read, read_offset, tail, acked, size, outstanding - 1,
            end, ledger,
        ),
    )
    if end > ledger.ack_capacity:
        # The ack log is full: the checkpoint records this acknowledgement itself.
        return checkpoint(new)
    path = config.ack_path
    record = _new(Write, (path, ack_offset, encode_ack(ledger.checkpoint.ack_generation, seq)))
    if config.sync:
        return new, (record, Fsync(path))
    return new, (record,)


def give_back(state: QueueState, count: int) -> QueueState:
    """``count`` delivered items wait to be delivered again (their consumer died, gave them
    back with ``nack``, or let its lease run out): they count as waiting, not outstanding.
    Which items they are is the shell's bookkeeping (its holds); their records stay where
    they are, and the read position does not move back."""
    if not 0 <= count <= state.outstanding:
        raise ValueError(f"cannot give back {count} of {state.outstanding} outstanding items")
    return state._replace(size=state.size + count, outstanding=state.outstanding - count)


def lend_again(state: QueueState) -> QueueState:
    """One item that was given back is delivered again (ahead of the read position)."""
    if state.size < 1:
        raise ValueError("no item waits to be delivered again")
    return state._replace(size=state.size - 1, outstanding=state.outstanding + 1)


def discard(state: QueueState, seq: int, offset: int) -> Step:
    """Discard the items from ``read`` up to ``seq`` (not included), which cannot be read:
    the read position moves to item ``seq`` at byte ``offset`` of its chunk (``seq`` may be
    the head), and the discarded items count as acknowledged, durably, by a checkpoint.

    Only ever asked for explicitly (``Queue.discard_damaged``): a damaged item is never
    skipped otherwise.
    """
    config, head, head_offset, read, _, tail, acked, size, outstanding, ack_offset, ledger = (
        state
    )
    if not read < seq <= head:
        raise ValueError(f"cannot discard up to item {seq}: the read position is {read}, "
                         f"the head {head}")
    # Those acknowledged before a reopen were not counted as waiting.
    discarded = seq - read - (ranges.count(acked, seq) - ranges.count(acked, read))
    acked = ranges.add_range(acked, read, seq)
    tail, acked, ledger = _pass_acknowledged(config, tail, acked, seq, ledger)
    new = QueueState(
        config, head, head_offset, seq, offset, tail, acked, size - discarded, outstanding,
        ack_offset, ledger,
    )
    return checkpoint(new)


def _pass_acknowledged(
    config: Config, tail: int, acked: ranges.Ranges, limit: int, ledger: Ledger
) -> tuple[int, ranges.Ranges, Ledger]:
    """Move ``tail`` past the acknowledged items at it (not past ``limit``), counting the
    chunk boundaries it crosses in the ledger."""
    old_tail = tail
    tail, acked = ranges.pop_front(acked, tail, limit)
    cs = config.chunksize
    if tail // cs != old_tail // cs:
        ledger = attrs.evolve(ledger, crossings=ledger.crossings + tail // cs - old_tail // cs)
    return tail, acked, ledger


def drop_waiting(state: QueueState, returned: Iterable[int] = ()) -> Step:
    """Drop every waiting item (``Queue.purge``): those from ``read`` to the head, and the
    delivered items given back to be delivered again, ``returned`` (the shell's holds). They
    count as acknowledged, durably, by one checkpoint, and are never delivered: all of
    them or, before the checkpoint is in place, none. Deliveries outstanding stay."""
    config, head, head_offset, read, _, tail, acked, _, outstanding, ack_offset, ledger = state
    dropped = sorted(returned)
    for seq in dropped:
        if not tail <= seq < read or (acked and ranges.contains(acked, seq)):
            raise ValueError(f"item {seq} is not a delivered item given back")
        acked = ranges.add(acked, seq)
    acked = ranges.add_range(acked, read, head)
    tail, acked, ledger = _pass_acknowledged(config, tail, acked, head, ledger)
    new = QueueState(
        config, head, head_offset, head, head_offset, tail, acked, 0, outstanding, ack_offset,
        ledger,
    )
    return checkpoint(new)


def undo_created(effects: tuple[Effect, ...]) -> tuple[Effect, ...]:
    """What removes the files a step created before it failed half done for lack of space
    (a new chunk of a put, the temp file of a checkpoint): nothing refers to them, and
    leaving them would leave a stray file, or a half-written temp file, until the next open.
    The shell applies these only when the step's state was not committed."""
    return tuple(Unlink(effect.path) for effect in effects if type(effect) is Create)


def shutdown(state: QueueState, immediate: bool) -> QueueState:
    """The state after ``shutdown(immediate)``. An immediate shutdown drops the waiting items
    from this session's view (``qsize`` becomes 0 and ``join`` stops waiting for them); they
    stay on disk, unacknowledged, and are delivered after the next open."""
    if not immediate:
        return state
    return state._replace(size=0)


# --- checkpoints -----------------------------------------------------------------------------


def wants_checkpoint(state: QueueState) -> bool:
    """Whether a checkpoint is due: the policy's number of chunk boundaries was crossed
    since the last one or, where the policy says so, the queue is drained and a consumed
    chunk waits for deletion."""
    ledger = state.ledger
    policy = state.config.policy
    if ledger.crossings >= policy.checkpoint_every:
        return True
    cs = state.config.chunksize
    return (
        policy.checkpoint_when_drained
        and state.tail == state.head
        and state.tail // cs > ledger.checkpoint.tail // cs
    )


def reclaimable(state: QueueState) -> bool:
    """Whether the queue is drained and a checkpoint now would delete chunk files: consumed
    chunks wait for deletion, or the head chunk holds only acknowledged items."""
    cs = state.config.chunksize
    return state.tail == state.head and (
        state.head % cs != 0 or state.tail // cs > state.ledger.checkpoint.tail // cs
    )


def checkpoint(state: QueueState) -> Step:
    """Record the state in ``info``, then delete the chunks it no longer refers to.

    A drained queue (every item acknowledged) moves its head to the next chunk boundary, so
    that the head chunk, which then holds only acknowledged items, is deleted too: a drained
    queue keeps no chunk file.
    """
    config = state.config
    cs = config.chunksize
    ledger = state.ledger
    old = ledger.checkpoint
    head, head_offset, read, read_offset, tail = (
        state.head, state.head_offset, state.read, state.read_offset, state.tail
    )
    effects: list[Effect] = []
    drained = tail == head
    if not drained and (not config.sync or ledger.resync):
        # Everything the new checkpoint refers to must be durable before it is: the items up
        # to the head, and the start of the tail's chunk (recovery walks it to the tail).
        # A drained queue refers to no item.
        first = max(old.head.seq, tail // cs * cs, ledger.synced)
        if first < head:
            last = (head - 1) // cs
            effects.extend(Fsync(chunk_path(config, n)) for n in range(first // cs, last + 1))
            if last * cs >= old.head.seq:  # a chunk was started since: its name too
                effects.append(FsyncDir(config.directory))
    if drained and head % cs:
        # Drained in the middle of a chunk: skip the item numbers left in it, so that the
        # chunk can go and the next put starts a new one.
        head = read = tail = -(-head // cs) * cs
        read_offset = head_offset = 0
        effects.append(Release(ledger.head_path))
    info = Info(
        chunksize=cs,
        serializer=config.serializer,
        durability=config.durability,
        head=InfoCursor(head, head_offset),
        tail=tail,
        acked=tuple(ranges.pairs(state.acked)),
        ack_generation=old.ack_generation + 1,
        salt=config.salt,
        ack_log=ledger.ack_capacity if config.sync else 0,
    )
    effects.extend(_replace_info(config, info))
    # Only now, with no durable checkpoint referring to them, may consumed chunks go.
    effects.extend(Unlink(chunk_path(config, n)) for n in range(old.tail // cs, tail // cs))
    head_path = ledger.head_path if head == state.head else chunk_path(config, head // cs)
    new = QueueState(
        config, head, head_offset, read, read_offset, tail, state.acked, state.size,
        state.outstanding, 0,
        Ledger(info, head_path, ledger.alloc, 0, ledger.ack_capacity),
    )
    return new, tuple(effects)


def _replace_info(config: Config, info: Info) -> tuple[Effect, ...]:
    temp = config.temp_path
    return (
        Create(temp),
        Write(temp, 0, encode_info(info)),
        Fsync(temp),
        Replace(temp, config.info_path),
        FsyncDir(config.directory),
    )


def reserve_acks(state: QueueState, size: int) -> Step | None:
    """Make the ack log (now ``size`` bytes) preallocated: extended with zeros to the
    policy's size if it is smaller (and, in ``fsync`` mode, fsynced), so that
    acknowledgements write into allocated space and go on when the disk is full. None when
    nothing is to be done. (Opening runs it; on a full disk the shell may go on without it,
    with the room the log has.)"""
    config = state.config
    wanted = max(config.policy.ack_log_bytes, size)
    if state.ledger.ack_capacity >= wanted:
        return None
    path = config.ack_path
    effects: tuple[Effect, ...] = (Fsync(path),) if config.sync else ()
    if size < wanted:
        effects = (Write(path, size, bytes(wanted - size)), *effects)
    return state._replace(ledger=attrs.evolve(state.ledger, ack_capacity=wanted)), effects


def close(state: QueueState) -> Step:
    """Checkpoint whatever changed since the last checkpoint, then let go of the files."""
    info = state.ledger.checkpoint
    effects: tuple[Effect, ...] = ()
    if (
        info.head.seq != state.head
        or info.tail != state.tail
        or info.acked != tuple(ranges.pairs(state.acked))
        or reclaimable(state)
    ):
        state, effects = checkpoint(state)
    config = state.config
    return state, (*effects, Release(state.ledger.head_path), Release(config.ack_path))


# --- recovery --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Observation:
    """What the shell found in the queue directory, handed to ``recover``.

    ``info`` and ``acks`` are the contents of those files (None if missing); ``chunks``
    holds the content of the chunk files read so far, by chunk number: ``bytes``, or a view
    that reads the file a window at a time.
    """

    names: frozenset[str]
    info: bytes | None
    acks: bytes | None
    temp_exists: bool
    chunks: Mapping[int, ByteSource] = attrs.field(factory=dict)


@attrs.frozen
class ReadChunks:
    """``recover`` needs these chunk files (by number) before it can decide."""

    numbers: tuple[int, ...]


@attrs.frozen
class Notice:
    """Something recovery repaired or dropped, for the shell to log: ``level`` is
    ``"warning"`` when items or acknowledgements that had been reported done may be lost
    (flush mode only: in fsync mode that is an error), else ``"info"``."""

    level: str
    message: str


@attrs.frozen
class Recovered:
    """What ``recover`` decided.

    - ``state``: the recovered queue, before any checkpoint: its ledger still refers to the
      ``info`` on disk, so that the queue can go on without writing one (a full disk).
    - ``repairs``: effects to apply before anything else (they only remove or shorten files).
    - ``checkpoint``: whether a checkpoint should follow (not for a new queue, whose
      ``info`` is among the repairs).
    - ``ack_size``: the size of the ack log file, for ``reserve_acks``.
    - ``notices``: what was repaired or dropped, for the log.
    """

    state: QueueState
    repairs: tuple[Effect, ...]
    checkpoint: bool
    ack_size: int
    notices: tuple[Notice, ...] = ()


_CHUNK_NAME = re.compile(r"q(\d{5,})")


def _chunk_numbers(names: Iterable[str]) -> list[int]:
    numbers = []
    for name in names:
        match = _CHUNK_NAME.fullmatch(name)
        if match and name == f"q{int(match[1]):05d}":
            numbers.append(int(match[1]))
    return sorted(numbers)


def recover(config: Config, obs: Observation) -> ReadChunks | Recovered:
    """Open the queue from what is on disk: the recovered state and the repairs to apply.

    Repairs: a torn or garbage tail after the last whole item is cut off, stray chunk files
    (past the head, or consumed) and an orphaned temp file are removed. Damage that cannot
    be repaired without losing acknowledged data raises ``CorruptQueueError`` naming the
    file and offset. Returns ``ReadChunks`` when it needs chunk contents first; call again
    with them added to ``obs.chunks``.
    """
    numbers = _chunk_numbers(obs.names)
    if obs.info is None:
        return _recover_fresh(config, obs, numbers)
    info = decode_info(obs.info, config.info_path)
    if info.serializer != config.serializer:
        raise SerializerMismatchError(config.directory, info.serializer, config.serializer)
    if obs.acks is None:
        raise CorruptQueueError(
            config.ack_path, 0, "the ack log is missing; without it acknowledged items would "
            "be delivered again"
        )
    if info.chunksize != config.chunksize or info.salt != config.salt:
        config = attrs.evolve(config, chunksize=info.chunksize, salt=info.salt)
    cs = info.chunksize
    salt = info.salt
    strict = info.durability == "fsync"
    present = set(numbers)
    head = info.head
    head_chunk = head.seq // cs
    tail_chunk = info.tail // cs
    for number in range(tail_chunk, head_chunk + 1):
        holds_items = number * cs < head.seq or (number == head_chunk and head.offset > 0)
        if holds_items and number not in present:
            last = min((number + 1) * cs, head.seq) - 1
            raise CorruptQueueError(
                chunk_path(config, number), 0,
                f"the chunk file is missing, but the checkpoint needs it (items "
                f"{max(number * cs, info.tail)} to {last})",
            )

    wanted = {n for n in numbers if n >= head_chunk}
    if info.tail < head.seq and info.tail % cs:
        wanted.add(tail_chunk)
    missing = sorted(wanted - obs.chunks.keys())
    if missing:
        return ReadChunks(tuple(missing))

    # Scan forward from the checkpointed head for items put after it.
    seq, number, pos = head.seq, head_chunk, head.offset
    head_data = obs.chunks.get(head_chunk)
    if head_data is not None and len(head_data) < head.offset:
        raise CorruptQueueError(
            chunk_path(config, head_chunk), len(head_data),
            f"the chunk ends before the checkpointed head at offset {head.offset}",
        )
    # Where the last whole put ended: a batch (put_many) counts only up to its last record.
    # A batch's later record that follows no start of its batch is what a crash left of a
    # batch whose start a later put overwrote (a shared queue's participant killed before
    # it published its batch): the scan ends there, as it does inside a batch at a record
    # that starts another put.
    committed = (seq, number, pos)
    inside = False
    while (data := obs.chunks.get(number)) is not None:
        rec = decode(data, pos, ITEM_MAGIC, salt)
        if type(rec) is not Record or rec.seq != seq:
            break
        starts = not rec.batch or rec.first  # a put alone, or the first record of a batch
        if starts is inside:
            break  # a start inside a batch, or a batch's later record with no start
        inside = rec.more
        seq += 1
        pos = rec.end
        if seq % cs == 0:
            number += 1
            pos = 0
        if not rec.more:
            committed = (seq, number, pos)
    notices: list[Notice] = []
    later = _later_records(config, obs, numbers, number, pos, seq)
    if later is not None and _only_a_batch(config, obs, numbers, number, pos):
        later = None  # what follows is the rest of the batch in flight: torn, not damage
    if committed[0] != seq:
        notices.append(Notice(
            "warning" if not strict else "info",
            f"{chunk_path(config, committed[1])} at offset {committed[2]}: dropped the "
            f"records of a batch of items (from item {committed[0]}) that a crash cut "
            "short: put_many had not returned",
        ))
        seq, number, pos = committed
    path = chunk_path(config, number)
    if later is not None:
        first, last, where, offset = later
        problem = "is damaged" if number in obs.chunks else "is missing (its chunk file is gone)"
        if strict:
            raise CorruptQueueError(
                path, pos,
                f"item {seq} {problem}, but item {first} follows in {where} at offset "
                f"{offset}; refusing to drop acknowledged puts",
            )
        notices.append(Notice(
            "warning",
            f"{path} at offset {pos}: item {seq} {problem}; dropped it and the "
            f"{last - seq} items after it (items {seq + 1} to {last} were whole): flush mode "
            "had not made them durable",
        ))
    new_head, head_offset = seq, pos

    # Fold in the acknowledgements logged since the checkpoint.
    if strict and len(obs.acks) < info.ack_log:
        raise CorruptQueueError(
            config.ack_path, len(obs.acks),
            f"the ack log is {len(obs.acks)} bytes, but it was {info.ack_log} bytes when the "
            "checkpoint was written: it was truncated, and acknowledged items would be "
            "delivered again",
        )
    scan = scan_acks(obs.acks, info.ack_generation)
    if scan.damaged:
        damaged_at = scan.damaged[0]
        if strict:
            raise CorruptQueueError(
                config.ack_path, damaged_at,
                f"ack record damaged, but {len(scan.acks)} acknowledgements of this log "
                f"generation follow up to offset {scan.end}; refusing to deliver acknowledged "
                "items again",
            )
        notices.append(Notice(
            "warning",
            f"{config.ack_path} at offset {damaged_at}: {len(scan.damaged)} damaged ack "
            "record(s) "
            "passed over; the items they acknowledged may be delivered again",
        ))
    if scan.leftover > scan.end:
        notices.append(Notice(
            "info",
            f"{config.ack_path} at offset {scan.end}: acknowledgements written together "
            "that a crash cut short were not counted (task_done(n) or ack_many had not "
            "returned): their items will be delivered again",
        ))  # (and never later: the checkpoint made at opening starts a new generation)
    acked = ranges.from_pairs(info.acked)
    for s in scan.acks:
        if info.tail <= s < new_head and not ranges.contains(acked, s):
            acked = ranges.add(acked, s)
    tail, acked = ranges.pop_front(acked, info.tail, new_head)
    if tail == new_head:
        tail_offset = head_offset
    elif tail % cs == 0:
        tail_offset = 0
    else:
        data = obs.chunks.get(tail // cs)
        if data is None:
            return ReadChunks((tail // cs,))
        tail_offset = _locate(config, data, tail)

    # Repairs.
    effects: list[Effect] = []
    if obs.temp_exists:
        effects.append(Unlink(config.temp_path))
    alloc = config.policy.prealloc_bytes
    if head_offset:
        data = obs.chunks[number]
        if _holds_data(data, pos):
            effects += [Truncate(path, pos), Fsync(path)]
            alloc = pos
            if later is None:
                notices.append(Notice(
                    "warning" if not strict else "info",
                    f"{path} at offset {pos}: cut off a torn record after item {seq - 1} "
                    "(a put in flight at a crash)",
                ))
        else:
            alloc = len(data)
    stray = [
        n for n in numbers
        if n < tail_chunk or n > number or (n == number and head_offset == 0)
    ]
    effects.extend(Unlink(chunk_path(config, n)) for n in stray)
    if stray:
        effects.append(FsyncDir(config.directory))
    waiting = new_head - tail - ranges.count(acked, new_head)
    # The log was preallocated (and fsynced, by an fsync-mode writer); after a flush-mode
    # writer nothing of it is known durable to an fsync-mode one.
    capacity = len(obs.acks) if not config.sync or strict else 0
    state = QueueState(
        config, new_head, head_offset, tail, tail_offset, tail, acked, waiting, 0, scan.end,
        Ledger(info, chunk_path(config, number), alloc, 0, capacity, resync=True),
    )
    return Recovered(state, tuple(effects), True, len(obs.acks), tuple(notices))


def _later_records(
    config: Config, obs: Observation, numbers: list[int], number: int, pos: int, seq: int
) -> tuple[int, int, str, int] | None:
    """Whole records of later items after the point where the scan stopped (item ``seq``
    at offset ``pos`` of chunk ``number``), if any: (the first one's seq, the last seq of
    the run it starts, its file and its offset). None means the scan stopped at a torn or
    unwritten tail.

    Only a record that can be one of this queue's later items counts: valid with this
    queue's salt at its own offset, numbered after ``seq`` and within the chunk its file
    holds, at an offset that leaves room for the items between, or the first item of a
    later chunk at its start. A record inside the payload of a torn item is never one: its
    bytes are a copy made elsewhere (another queue's salt, or another offset).
    """
    cs = config.chunksize
    salt = config.salt
    data = obs.chunks.get(number)
    if data is not None:
        found = find_record(data, pos + 1, ITEM_MAGIC, salt)
        while found is not None:
            start = found.start - HEADER_SIZE
            if (
                seq < found.seq < (number + 1) * cs
                and start - pos >= HEADER_SIZE * (found.seq - seq)
            ):
                last = _run_end(config, obs, number, found)
                return found.seq, last, chunk_path(config, number), start
            found = find_record(data, start + 1, ITEM_MAGIC, salt)
    for n in numbers:
        if n > number:
            rec = decode(obs.chunks[n], 0, ITEM_MAGIC, salt)
            if type(rec) is Record and rec.seq == n * cs:
                last = _run_end(config, obs, n, rec)
                return rec.seq, last, chunk_path(config, n), 0
    return None


def _only_a_batch(
    config: Config, obs: Observation, numbers: list[int], number: int, pos: int
) -> bool:
    """Whether the whole records after offset ``pos`` of chunk ``number`` (and in every
    later chunk file) are some later records of batches: records
    of a batch but not its first. Then they are what a crash left of a ``put_many`` in
    flight, which never returned (begun at ``pos`` or before it; and, in a shared queue, of
    one a participant killed before it published it left there), rather than later puts cut
    off by damage: a put alone is never a batch's record, a batch that begins after ``pos``
    has its first record there, and a batch that returned is followed by nothing, or by the
    start of another put."""
    salt = config.salt
    found_any = False
    for n in [number, *(m for m in numbers if m > number)]:
        data = obs.chunks.get(n)
        if data is None:
            continue
        found = find_record(data, pos + 1 if n == number else 0, ITEM_MAGIC, salt)
        while found is not None:
            if not found.batch or found.first:
                return False
            found_any = True
            found = find_record(data, found.end, ITEM_MAGIC, salt)
    return found_any


def _run_end(config: Config, obs: Observation, number: int, rec: Record) -> int:
    """The seq of the last item of the run of consecutive whole records starting with
    ``rec`` in chunk ``number`` (and on into the chunks after it)."""
    cs = config.chunksize
    seq, pos = rec.seq, rec.end
    while True:
        nxt = seq + 1
        if nxt % cs == 0:
            number += 1
            pos = 0
        data = obs.chunks.get(number)
        if data is None:
            return seq
        found = decode(data, pos, ITEM_MAGIC, config.salt)
        if type(found) is not Record or found.seq != nxt:
            return seq
        seq, pos = nxt, found.end


def _holds_data(data: ByteSource, pos: int) -> bool:
    """Whether anything but zeros follows ``pos`` (looked at a block at a time)."""
    size = len(data)
    while pos < size:
        if any(data[pos : pos + _ZERO_SCAN]):
            return True
        pos += _ZERO_SCAN
    return False


def _locate(config: Config, data: ByteSource, seq: int) -> int:
    """The offset of item ``seq`` in its chunk ``data``, walking from the start (and
    skipping over damage to consumed items before it)."""
    cs = config.chunksize
    salt = config.salt
    expect = seq // cs * cs
    pos = 0
    while True:
        rec = decode(data, pos, ITEM_MAGIC, salt)
        if type(rec) is not Record or rec.seq != expect:
            found = find_record(data, pos + 1, ITEM_MAGIC, salt)
            while found is not None and found.seq < seq:
                found = find_record(data, found.end, ITEM_MAGIC, salt)
            if found is None or found.seq != seq:
                raise CorruptQueueError(
                    chunk_path(config, seq // cs), pos,
                    f"item {seq}, the oldest unacknowledged one, cannot be found",
                )
            return found.start - HEADER_SIZE
        if rec.seq == seq:
            return pos
        expect += 1
        pos = rec.end


def _starts_with_a_frame(data: ByteSource) -> bool:
    if len(data) < HEADER_SIZE or data[0] not in ITEM_MARKERS:
        return False
    length = int.from_bytes(data[5:9], "little")
    return HEADER_SIZE + length <= len(data)


def _recover_fresh(config: Config, obs: Observation, numbers: list[int]) -> ReadChunks | Recovered:
    """No ``info``: a new queue, unless chunk files hold items (then ``info`` was lost)."""
    missing = tuple(n for n in numbers if n not in obs.chunks)
    if missing:
        return ReadChunks(missing)
    for n in numbers:
        # Without info the salt is unknown, so no CRC can be checked: a chunk that starts
        # with a record header whose frame fits in the file holds items.
        if _starts_with_a_frame(obs.chunks[n]):
            raise CorruptQueueError(
                config.info_path, 0,
                f"the info file is missing, but {chunk_path(config, n)} holds queue items",
            )
    effects: list[Effect] = []
    if obs.temp_exists:
        effects.append(Unlink(config.temp_path))
    effects.extend(Unlink(chunk_path(config, n)) for n in numbers)
    effects.append(Create(config.ack_path))
    capacity = config.policy.ack_log_bytes
    effects += [
        Write(config.ack_path, 0, bytes(capacity)), Fsync(config.ack_path),
        FsyncDir(config.directory),
    ]
    info = Info(
        chunksize=config.chunksize,
        serializer=config.serializer,
        durability=config.durability,
        head=InfoCursor(0, 0),
        tail=0,
        salt=config.salt,
        ack_log=capacity if config.sync else 0,
    )
    effects.extend(_replace_info(config, info))
    state = QueueState(
        config, 0, 0, 0, 0, 0, _NO_ACKS, 0, 0, 0,
        Ledger(info, chunk_path(config, 0), config.policy.prealloc_bytes, 0, capacity),
    )
    return Recovered(state, tuple(effects), False, capacity)
