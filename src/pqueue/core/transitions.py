"""Every transition of the queue, in one place.

Each function takes the current state (and an input) and returns a ``Step``: the new state
and the effects the IO shell must apply, in order, for the new state to be true on disk.
Nothing here touches a file, a clock or a lock; illegal inputs raise and change nothing.

The queue's life (open, shut down, closed, broken, superseded) is a second, small state
machine: ``advance(phase, command)`` checks every call against one table.

On disk (see ``codec`` for the byte formats):

- ``info``: the checkpoint, replaced atomically (temp file, fsync, rename, fsync directory).
- ``qNNNNN``: chunk files of framed item records, ``chunksize`` items each.
- ``acks``: the ack log. Each acknowledgement appends one record; a checkpoint folds the
  acknowledgements into ``info`` and starts a new generation of the log from its start.

In ``fsync`` mode a put is durable before it returns (one ``fdatasync`` into preallocated
space) and so is an acknowledgement. In ``flush`` mode both are handed to the OS only; a
checkpoint first makes the chunks it refers to durable, so a power loss can lose only what
came after the last checkpoint and never leaves the queue unopenable.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping

import attrs

from pqueue.core.codec import (
    ACK_RECORD_SIZE,
    HEADER_SIZE,
    ITEM_MAGIC,
    ByteSource,
    Info,
    InfoCursor,
    Record,
    decode,
    decode_acks,
    decode_info,
    encode,
    encode_ack,
    encode_info,
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
from pqueue.core.errors import (
    CorruptQueueError,
    QueueBrokenError,
    QueueClosedError,
    QueueSupersededError,
    SerializerMismatchError,
    ShutDown,
)
from pqueue.core.state import Config, Ledger, QueueState, chunk_path

__all__ = [
    "Command",
    "Observation",
    "Phase",
    "ReadChunks",
    "Step",
    "ack",
    "advance",
    "checkpoint",
    "close",
    "deliver",
    "discard",
    "put",
    "recover",
    "shutdown",
]

Step = tuple[QueueState, tuple[Effect, ...]]

# The hot transitions build their NamedTuples with tuple.__new__, skipping the generated
# __new__ wrapper: about 0.4 us less per put, get and acknowledgement on the machines measured.
_new = tuple.__new__

_NO_ACKS: frozenset[int] = frozenset()
_PAGE = 4096
_MAX_PREALLOC = 4 * 1024 * 1024
_ZERO_SCAN = 64 * 1024


# --- the lifecycle ---------------------------------------------------------------------------


class Phase(enum.Enum):
    """Where a Queue object is in its life."""

    OPEN = "open"
    SHUTDOWN = "shut down"
    CLOSED = "closed"
    BROKEN = "broken"
    SUPERSEDED = "superseded"


class Command(enum.Enum):
    """What a caller asks of a Queue object, as far as its phase is concerned."""

    PUT = "put"
    GET = "get"
    ACK = "acknowledge"
    INSPECT = "inspect"
    SHUTDOWN = "shut down"
    CLOSE = "close"
    FAIL = "fail"  # an IO operation failed
    SUPERSEDE = "supersede"  # a newer Queue object took the directory over


def _shut_down(path: str, command: Command) -> Exception:
    return ShutDown(f"cannot {command.value}: the queue at {path!r} was shut down")


def _closed(path: str, command: Command) -> Exception:
    return QueueClosedError(f"cannot {command.value}: the queue at {path!r} is closed")


def _broken(path: str, command: Command) -> Exception:
    return QueueBrokenError(
        f"cannot {command.value}: the queue at {path!r} is broken by an earlier IO error; "
        "open the directory again to recover"
    )


def _superseded(path: str, command: Command) -> Exception:
    return QueueSupersededError(
        f"cannot {command.value}: this Queue object was superseded by a newer Queue opened "
        f"on {path!r} in this process; use that one"
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
_PHASES[_P.SHUTDOWN, _C.PUT] = _shut_down
_PHASES.update(
    {
        (_P.OPEN, _C.SHUTDOWN): _P.SHUTDOWN,
        (_P.SHUTDOWN, _C.SHUTDOWN): _P.SHUTDOWN,
        (_P.CLOSED, _C.SHUTDOWN): _closed,
        (_P.BROKEN, _C.SHUTDOWN): _broken,
        (_P.SUPERSEDED, _C.SHUTDOWN): _superseded,
        (_P.OPEN, _C.CLOSE): _P.CLOSED,
        (_P.SHUTDOWN, _C.CLOSE): _P.CLOSED,
        (_P.CLOSED, _C.CLOSE): _P.CLOSED,
        (_P.BROKEN, _C.CLOSE): _P.CLOSED,
        (_P.SUPERSEDED, _C.CLOSE): _P.SUPERSEDED,
        (_P.OPEN, _C.FAIL): _P.BROKEN,
        (_P.SHUTDOWN, _C.FAIL): _P.BROKEN,
        (_P.BROKEN, _C.FAIL): _P.BROKEN,
        (_P.CLOSED, _C.FAIL): _P.CLOSED,
        (_P.SUPERSEDED, _C.FAIL): _P.SUPERSEDED,
        (_P.OPEN, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.SHUTDOWN, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.BROKEN, _C.SUPERSEDE): _P.SUPERSEDED,
        (_P.CLOSED, _C.SUPERSEDE): _P.CLOSED,
        (_P.SUPERSEDED, _C.SUPERSEDE): _P.SUPERSEDED,
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


def put(state: QueueState, payload: bytes) -> Step:
    """Append one item (already serialised to ``payload``) at the head."""
    config, seq, offset, read, read_offset, tail, acked, size, ack_offset, ledger = state
    frame = encode(ITEM_MAGIC, seq, payload)
    end = offset + len(frame)
    effects: tuple[Effect, ...]
    if offset == 0:
        # The first item of a chunk: start the file empty, never append to what is there.
        path = chunk_path(config, seq // config.chunksize)
        if config.sync:
            alloc = _extent(end, ledger.alloc)
            effects = (
                Create(path),
                Write(path, 0, frame + bytes(alloc - end)),
                Fsync(path),
                FsyncDir(config.directory),
            )
        else:
            alloc = 0
            effects = (Create(path), Write(path, 0, frame))
        ledger = Ledger(ledger.checkpoint, path, alloc, ledger.crossings)
    elif not config.sync:
        path = ledger.head_path
        effects = (_new(Write, (path, offset, frame)),)
    elif end <= ledger.alloc:
        path = ledger.head_path
        effects = (_new(Write, (path, offset, frame)), Fsync(path))
    else:
        path = ledger.head_path
        alloc = _extent(end, 2 * ledger.alloc)
        effects = (Write(path, offset, frame + bytes(alloc - end)), Fsync(path))
        ledger = Ledger(ledger.checkpoint, path, alloc, ledger.crossings)
    seq += 1
    if seq % config.chunksize:
        return _new(
            QueueState,
            (config, seq, end, read, read_offset, tail, acked, size + 1, ack_offset, ledger),
        ), effects
    # The chunk is full: the head crosses into the next one.
    ledger = Ledger(ledger.checkpoint, path, ledger.alloc, ledger.crossings + 1)
    new = QueueState(config, seq, 0, read, read_offset, tail, acked, size + 1, ack_offset, ledger)
    if config.sync:
        effects = (*effects, Release(path))
    else:
        # The checkpoint will fdatasync this chunk: have its data on its way to disk now.
        effects = (*effects, WriteBack(path), Release(path))
    if _wants_checkpoint(new):
        new, more = checkpoint(new)
        effects += more
    return new, effects


def deliver(state: QueueState, seq: int, end: int) -> tuple[QueueState, bool]:
    """Move ``read`` past the record for item ``seq`` that the shell found at ``read``,
    ending at byte ``end``. Returns the new state and whether the item is to be delivered
    (False: it was acknowledged before a reopen, so it is skipped).
    """
    config, head, head_offset, read, read_offset, tail, acked, size, ack_offset, ledger = state
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
    if acked and read in acked:
        # Acknowledged before a reopen: skip it. If it was the oldest unfinished item, the
        # tail moves past it (and past any acknowledged items up to the read position).
        if tail == read:
            tail, acked = _advance(tail, acked, seq)
            if tail // cs != read // cs:
                ledger = Ledger(
                    ledger.checkpoint, ledger.head_path, ledger.alloc, ledger.crossings + 1
                )
        return _new(
            QueueState,
            (config, head, head_offset, seq, end, tail, acked, size, ack_offset, ledger),
        ), False
    return _new(
        QueueState,
        (config, head, head_offset, seq, end, tail, acked, size - 1, ack_offset, ledger),
    ), True


def ack(state: QueueState, seq: int) -> Step:
    """Acknowledge delivered item ``seq``: it will never be delivered again."""
    config, head, head_offset, read, read_offset, tail, acked, size, ack_offset, ledger = state
    if not tail <= seq < read or (acked and seq in acked):
        raise ValueError(f"item {seq} is not an outstanding delivery")
    old_tail = tail
    if seq != tail:
        acked = acked | {seq}
    elif acked:
        tail, acked = _advance(tail + 1, acked, read)
    else:
        tail += 1
    cs = config.chunksize
    if tail // cs != old_tail // cs:
        ledger = _tail_crossed(ledger, old_tail, tail, cs)
    new = _new(
        QueueState,
        (
            config, head, head_offset, read, read_offset, tail, acked, size,
            ack_offset + ACK_RECORD_SIZE, ledger,
        ),
    )
    policy = config.policy
    if (
        ack_offset + ACK_RECORD_SIZE > policy.ack_log_bytes  # the ack log is full
        or ledger.crossings >= policy.checkpoint_every
        or (tail == head and _wants_checkpoint(new))
    ):
        # The checkpoint records this acknowledgement itself; no ack record is needed.
        return checkpoint(new)
    path = config.ack_path
    record = _new(Write, (path, ack_offset, encode_ack(ledger.checkpoint.ack_generation, seq)))
    if config.sync:
        return new, (record, Fsync(path))
    return new, (record,)


def _tail_crossed(ledger: Ledger, old_tail: int, tail: int, cs: int) -> Ledger:
    """The ledger once the tail moved from ``old_tail`` to ``tail`` across chunk boundaries
    (each fully acknowledged chunk counts towards the next checkpoint)."""
    return Ledger(
        ledger.checkpoint, ledger.head_path, ledger.alloc,
        ledger.crossings + tail // cs - old_tail // cs,
    )


def _advance(tail: int, acked: frozenset[int], limit: int) -> tuple[int, frozenset[int]]:
    """Move ``tail`` past acknowledged items, but not past ``limit`` (the read position:
    acknowledged items not yet read again after a reopen stay in ``acked`` to be skipped)."""
    if acked and tail < limit and tail in acked:
        rest = set(acked)
        while tail < limit and tail in rest:
            rest.discard(tail)
            tail += 1
        acked = frozenset(rest) if rest else _NO_ACKS
    return tail, acked


def discard(state: QueueState, seq: int, offset: int) -> Step:
    """Discard the items from ``read`` up to ``seq`` (not included), which cannot be read:
    the read position moves to item ``seq`` at byte ``offset`` of its chunk (``seq`` may be
    the head), and the discarded items count as acknowledged, durably, by a checkpoint.

    Only ever asked for explicitly (``Queue.discard_damaged``): a damaged item is never
    skipped otherwise.
    """
    config, head, head_offset, read, _, tail, acked, size, ack_offset, ledger = state
    if not read < seq <= head:
        raise ValueError(f"cannot discard up to item {seq}: the read position is {read}, "
                         f"the head {head}")
    skipped = frozenset(range(read, seq))
    discarded = len(skipped - acked)  # those acknowledged before a reopen were not counted
    acked = acked | skipped
    old_tail = tail
    tail, acked = _advance(tail, acked, seq)
    cs = config.chunksize
    if tail // cs != old_tail // cs:
        ledger = _tail_crossed(ledger, old_tail, tail, cs)
    new = QueueState(
        config, head, head_offset, seq, offset, tail, acked, size - discarded, ack_offset,
        ledger,
    )
    return checkpoint(new)


def shutdown(state: QueueState, immediate: bool) -> QueueState:
    """The state after ``shutdown(immediate)``. An immediate shutdown drops the waiting items
    from this session's view (``qsize`` becomes 0 and ``join`` stops waiting for them); they
    stay on disk, unacknowledged, and are delivered after the next open."""
    if not immediate:
        return state
    return QueueState(
        state.config, state.head, state.head_offset, state.read, state.read_offset,
        state.tail, state.acked, 0, state.ack_offset, state.ledger,
    )


# --- checkpoints -----------------------------------------------------------------------------


def _wants_checkpoint(state: QueueState) -> bool:
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


def checkpoint(state: QueueState) -> Step:
    """Record the state in ``info``, then delete the chunks it no longer refers to."""
    return _checkpoint(state, sync_data=not state.config.sync)


def _checkpoint(state: QueueState, *, sync_data: bool) -> Step:
    config = state.config
    cs = config.chunksize
    ledger = state.ledger
    old = ledger.checkpoint
    head = state.head
    effects: list[Effect] = []
    if sync_data:
        # Everything the new checkpoint refers to must be durable before it is: the items up
        # to the head, and the start of the tail's chunk (recovery walks it to the tail).
        first = max(old.head.seq, state.tail // cs * cs)
        if first < head:
            last = (head - 1) // cs
            effects.extend(Fsync(chunk_path(config, n)) for n in range(first // cs, last + 1))
            if last * cs >= old.head.seq:  # a chunk was started since: its name too
                effects.append(FsyncDir(config.directory))
    info = Info(
        chunksize=cs,
        serializer=config.serializer,
        durability=config.durability,
        head=InfoCursor(head, state.head_offset),
        tail=state.tail,
        acked=tuple(sorted(state.acked)),
        ack_generation=old.ack_generation + 1,
    )
    effects.extend(_replace_info(config, info))
    # Only now, with no durable checkpoint referring to them, may consumed chunks go.
    effects.extend(
        Unlink(chunk_path(config, n)) for n in range(old.tail // cs, state.tail // cs)
    )
    new = QueueState(
        config, head, state.head_offset, state.read, state.read_offset, state.tail,
        state.acked, state.size, 0, Ledger(info, ledger.head_path, ledger.alloc, 0),
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


def close(state: QueueState) -> Step:
    """Checkpoint whatever changed since the last checkpoint, then let go of the files."""
    info = state.ledger.checkpoint
    effects: tuple[Effect, ...] = ()
    if (
        info.head.seq != state.head
        or info.tail != state.tail
        or frozenset(info.acked) != state.acked
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


_CHUNK_NAME = re.compile(r"q(\d{5,})")


def _chunk_numbers(names: Iterable[str]) -> list[int]:
    numbers = []
    for name in names:
        match = _CHUNK_NAME.fullmatch(name)
        if match and name == f"q{int(match[1]):05d}":
            numbers.append(int(match[1]))
    return sorted(numbers)


def recover(config: Config, obs: Observation) -> ReadChunks | Step:
    """Open the queue from what is on disk: the recovered state and the repairs to apply.

    Repairs: a torn or garbage tail after the last whole item is cut off, stray chunk files
    (past the head, or consumed) and an orphaned temp file are removed, and a new checkpoint
    is written. Damage that cannot be repaired without losing acknowledged data raises
    ``CorruptQueueError`` naming the file and offset. Returns ``ReadChunks`` when it needs
    chunk contents first; call again with them added to ``obs.chunks``.
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
    if info.chunksize != config.chunksize:
        config = attrs.evolve(config, chunksize=info.chunksize)
    cs = info.chunksize
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
    while (data := obs.chunks.get(number)) is not None:
        rec = decode(data, pos, ITEM_MAGIC)
        if type(rec) is not Record or rec.seq != seq:
            break
        seq += 1
        pos = rec.end
        if seq % cs == 0:
            number += 1
            pos = 0
    if info.durability == "fsync":
        _refuse_lost_items(config, obs, numbers, number, pos, seq)
    new_head, head_offset = seq, pos

    # Fold in the acknowledgements logged since the checkpoint.
    acked = set(info.acked)
    acked.update(
        s for s in decode_acks(obs.acks, info.ack_generation) if info.tail <= s < new_head
    )
    tail = info.tail
    while tail in acked:
        acked.discard(tail)
        tail += 1
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
        path = chunk_path(config, number)
        if _holds_data(data, pos):
            effects += [Truncate(path, pos), Fsync(path)]
            alloc = pos
        else:
            alloc = len(data)
    stray = [
        n for n in numbers
        if n < tail_chunk or n > number or (n == number and head_offset == 0)
    ]
    effects.extend(Unlink(chunk_path(config, n)) for n in stray)
    if stray:
        effects.append(FsyncDir(config.directory))
    ack_bytes = len(obs.acks)
    if config.sync and ack_bytes < config.policy.ack_log_bytes:
        padding = bytes(config.policy.ack_log_bytes - ack_bytes)
        effects += [Write(config.ack_path, ack_bytes, padding), Fsync(config.ack_path)]
    state = QueueState(
        config, new_head, head_offset, tail, tail_offset, tail, frozenset(acked),
        new_head - tail - len(acked), 0,
        Ledger(info, chunk_path(config, number), alloc, 0),
    )
    state, more = _checkpoint(state, sync_data=True)
    return state, (*effects, *more)


def _refuse_lost_items(
    config: Config, obs: Observation, numbers: list[int], number: int, pos: int, seq: int
) -> None:
    """In fsync mode every put was durable before the next began, so a whole item after the
    point where the scan stopped means acknowledged items in between were damaged."""
    data = obs.chunks.get(number)
    found = find_record(data, pos, ITEM_MAGIC) if data is not None else None
    where = number
    if found is None:
        for n in numbers:
            if n > number and (found := find_record(obs.chunks[n], 0, ITEM_MAGIC)):
                where = n
                break
    if found is not None:
        problem = "is damaged" if data is not None else "is missing (its chunk file is gone)"
        raise CorruptQueueError(
            chunk_path(config, number), pos,
            f"item {seq} {problem}, but item {found.seq} follows in "
            f"{chunk_path(config, where)} at offset {found.start - HEADER_SIZE}; refusing to drop "
            "acknowledged puts",
        )


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
    expect = seq // cs * cs
    pos = 0
    while True:
        rec = decode(data, pos, ITEM_MAGIC)
        if type(rec) is not Record or rec.seq != expect:
            found = find_record(data, pos + 1, ITEM_MAGIC)
            while found is not None and found.seq < seq:
                found = find_record(data, found.end, ITEM_MAGIC)
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


def _recover_fresh(config: Config, obs: Observation, numbers: list[int]) -> ReadChunks | Step:
    """No ``info``: a new queue, unless chunk files hold items (then ``info`` was lost)."""
    missing = tuple(n for n in numbers if n not in obs.chunks)
    if missing:
        return ReadChunks(missing)
    for n in numbers:
        if find_record(obs.chunks[n], 0, ITEM_MAGIC) is not None:
            raise CorruptQueueError(
                config.info_path, 0,
                f"the info file is missing, but {chunk_path(config, n)} holds queue items",
            )
    effects: list[Effect] = []
    if obs.temp_exists:
        effects.append(Unlink(config.temp_path))
    effects.extend(Unlink(chunk_path(config, n)) for n in numbers)
    effects.append(Create(config.ack_path))
    if config.sync:
        effects.append(Write(config.ack_path, 0, bytes(config.policy.ack_log_bytes)))
    effects += [Fsync(config.ack_path), FsyncDir(config.directory)]
    info = Info(
        chunksize=config.chunksize,
        serializer=config.serializer,
        durability=config.durability,
        head=InfoCursor(0, 0),
        tail=0,
    )
    effects.extend(_replace_info(config, info))
    state = QueueState(
        config, 0, 0, 0, 0, 0, _NO_ACKS, 0, 0,
        Ledger(info, chunk_path(config, 0), config.policy.prealloc_bytes, 0),
    )
    return state, tuple(effects)
