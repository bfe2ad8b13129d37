"""Record framing and the ``info`` file codec. Pure: bytes in, values out.

A frame is a 17-byte header followed by the payload::

    offset  size  field
    0       1     magic    non-zero: 0xD1 for an item record, 0xD4 for the first record
                           of a batch, 0xD2 for a later record of a batch that more of it
                           follow, 0xD3 for the last record of a batch; 0xA5 for an ack
                           record, 0xA6, 0xA7 and 0xA8 for the first, a middle and the last
                           ack record of acknowledgements written together
    1       4     crc32    over bytes 5..17 of the header and the payload (little endian),
                           seeded with the queue's salt
    5       4     length   of the payload in bytes
    9       8     seq      item sequence number (item records) or ack-log generation (acks)
    17      n     payload

A zero byte is never a magic, so a zero-filled (preallocated or power-loss) tail never parses
as a frame, and the CRC rejects a torn or garbage one. Decoding returns a ``Record``, or an
``Incomplete`` (the bytes end inside the frame) or ``Corrupt`` (the bytes are not a frame).

A batch of items put together (``Queue.put_many``) is written as one run of records: the
first under ``BATCH_FIRST_MAGIC``, the last under ``BATCH_END_MAGIC``, those between under
``BATCH_MAGIC``. Decoding an item record accepts all four (``Record.more``: more of its batch
follow; ``Record.batch``: it is one of a batch; ``Record.first``: it starts one). Recovery
keeps a batch only whole, so a batch torn by a crash is dropped whole; and because both ends
of a batch are marked it can tell what a crash left of a batch from later puts (a batch's
later records that follow no start of theirs are leftovers, and a run after damage that
holds the start of a batch is a later put, never the rest of the torn one). Acknowledgements
written together (``task_done(n)``, ``ack_many``) are marked the same way in the ack log.

The CRC of an item record is seeded with the queue's *salt* (a non-zero 32-bit number chosen
when the queue is created and kept in ``info``) combined with the record's byte offset in its
chunk file. A record is valid only in its own queue and at its own place: a frame of another
queue, or a copy of one of this queue's records anywhere else (inside the payload of an item:
a queue of queue files), fails the check, so recovery can never mistake it for one of this
queue's items. Salt 0 is format version 1, whose records carry a plain CRC. Ack records are
not salted (their slots and generation number place them).

The ``info`` file is JSON, structured through one cattrs converter with
``forbid_extra_keys``; it is never pickled. Version 2 ends with a CRC-32 over the bytes
before it (``...,"crc32":N}``), so an edit that leaves valid JSON is still found; every
number is bounded, so that no value read back can overflow a record header later.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, Literal, NamedTuple, Protocol, SupportsIndex, overload

import attrs
import cattrs

from pqueue.core.errors import CorruptQueueError, LegacyFormatError, UnsupportedFormatError

__all__ = [
    "ACK_END_MAGIC",
    "ACK_FIRST_MAGIC",
    "ACK_MAGIC",
    "ACK_MORE_MAGIC",
    "ACK_RECORD_SIZE",
    "BATCH_END_MAGIC",
    "BATCH_FIRST_MAGIC",
    "BATCH_MAGIC",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "ITEM_MAGIC",
    "ITEM_MARKERS",
    "MAX_CHUNKSIZE",
    "MAX_SALT",
    "MAX_SEQ",
    "READABLE_VERSIONS",
    "AckScan",
    "ByteSource",
    "Corrupt",
    "Decoded",
    "Durability",
    "Incomplete",
    "Info",
    "InfoCursor",
    "Record",
    "decode",
    "decode_block",
    "decode_info",
    "encode",
    "encode_ack",
    "encode_info",
    "find_record",
    "mark_acks_together",
    "scan_acks",
    "seed",
]

ITEM_MAGIC = 0xD1
BATCH_MAGIC = 0xD2
BATCH_END_MAGIC = 0xD3
BATCH_FIRST_MAGIC = 0xD4
ACK_MAGIC = 0xA5
ACK_FIRST_MAGIC = 0xA6
ACK_MORE_MAGIC = 0xA7
ACK_END_MAGIC = 0xA8
HEADER_SIZE = 17
MAX_PAYLOAD = 0xFFFFFFFF

_HEADER = struct.Struct("<BIIQ")  # magic, crc, length, seq
_BODY = struct.Struct("<IQ")  # length, seq: the header part the CRC covers
_ACK_PAYLOAD = struct.Struct("<Q")
ACK_RECORD_SIZE = HEADER_SIZE + _ACK_PAYLOAD.size
_ACK_SLOT = struct.Struct("<BIIQQ")  # a whole ack record: magic, crc, length, generation, seq

_crc32 = zlib.crc32
_pack_body = _BODY.pack
_unpack_header = _HEADER.unpack_from
_unpack = _HEADER.unpack
_pack_mark = struct.Struct("<BI").pack  # magic, crc: the header before what the CRC covers


class ByteSource(Protocol):
    """What ``decode`` and ``find_record`` read: ``bytes``, or a view of a file that reads it
    a window at a time (so that recovery never holds a whole chunk of large items)."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...

    @overload
    def __getitem__(self, key: slice, /) -> bytes: ...

    def find(self, sub: bytes, start: SupportsIndex, /) -> int: ...


class Record(NamedTuple):
    """A whole, valid frame: its ``seq`` and where its payload and the frame end; ``more``
    for an item record of a batch that is not the batch's last, ``batch`` for any item
    record of a batch, ``first`` for the first record of a batch."""

    seq: int
    start: int
    end: int
    more: bool = False
    batch: bool = False
    first: bool = False


class Incomplete(NamedTuple):
    """The bytes end inside a frame starting at ``offset`` (a torn or unfinished write)."""

    offset: int


class Corrupt(NamedTuple):
    """The bytes at ``offset`` are not a valid frame, for ``reason``."""

    offset: int
    reason: str


Decoded = Record | Incomplete | Corrupt


_MASK = 0xFFFFFFFF
# The CRC of a batch record covers its marker too (the CRC seed goes through it first), so
# that a damaged marker can never turn a batch's last record into one that more follow, or
# the other way round.
_BATCH_MARKS = {
    m: bytes((m,)) for m in (BATCH_MAGIC, BATCH_END_MAGIC, BATCH_FIRST_MAGIC)
}
# The other markers a record read as ``magic`` may carry: an item record may be one of a
# batch.
_ALSO: dict[int, tuple[int, ...]] = {
    ITEM_MAGIC: (BATCH_MAGIC, BATCH_END_MAGIC, BATCH_FIRST_MAGIC)
}
ITEM_MARKERS = (ITEM_MAGIC, *_ALSO[ITEM_MAGIC])
"""Every marker an item record may carry (alone, or one of a batch)."""


def seed(salt: int, offset: int) -> int:
    """The CRC seed of a record at byte ``offset`` of a chunk of a queue with ``salt``."""
    return (salt ^ offset ^ offset >> 32) & _MASK if salt else 0


def encode(magic: int, seq: int, payload: bytes, salt: int = 0, offset: int = 0) -> bytes:
    """Frame ``payload`` with ``seq`` under ``magic``, for byte ``offset`` of a chunk of a
    queue with ``salt`` (both 0: the unsalted frame of format version 1)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"a record holds at most {MAX_PAYLOAD} bytes, got {n}")
    # The CRC covers the header from byte 5 on and the payload: bytes that lie together.
    body = _pack_body(n, seq) + payload
    start = (salt ^ offset ^ offset >> 32) & _MASK if salt else 0
    if magic in _BATCH_MARKS:
        start = _crc32(_BATCH_MARKS[magic], start)  # the marker is checked too
    return _pack_mark(magic, _crc32(body, start)) + body


def decode(buf: ByteSource, pos: int, magic: int, salt: int = 0, base: int = 0) -> Decoded:
    """Decode the frame starting at ``buf[pos]``, which is byte ``base + pos`` of its chunk
    file, as a record of a queue with ``salt``."""
    avail = len(buf) - pos
    also = _ALSO.get(magic, ())
    if avail < HEADER_SIZE:
        if avail > 0 and buf[pos] != 0 and buf[pos] != magic and buf[pos] not in also:
            return Corrupt(pos, f"byte 0x{buf[pos]:02x} is not a record marker")
        if avail > 0 and not any(buf[pos:]):
            return Corrupt(pos, "zero bytes where a record should start")
        return Incomplete(pos)
    m, crc, n, seq = _unpack(buf[pos : pos + HEADER_SIZE])
    if m != magic and m not in also:
        if m == 0:
            return Corrupt(pos, "zero bytes where a record should start")
        return Corrupt(pos, f"byte 0x{m:02x} is not a record marker")
    start = pos + HEADER_SIZE
    end = start + n
    if end > len(buf):
        return Incomplete(pos)
    at = base + pos
    first = (salt ^ at ^ at >> 32) & _MASK if salt else 0
    mark = _BATCH_MARKS.get(m)
    if mark is not None:
        first = _crc32(mark, first)
    if _crc32(buf[pos + 5 : end], first) != crc:
        return Corrupt(pos, "checksum mismatch")
    if mark is None:
        return Record(seq, start, end)
    return Record(seq, start, end, m != BATCH_END_MAGIC, True, m == BATCH_FIRST_MAGIC)


def decode_block(
    buf: bytes, base: int, magic: int, limit: int, salt: int = 0
) -> list[tuple[int, int, bytes]]:
    """The whole, valid frames at the start of ``buf``, which starts at byte ``base`` of its
    chunk file (at most ``limit``), as ``(seq, end, payload)`` with ``end`` a file offset.
    Stops at the first frame that is not whole and valid; ``decode`` says why."""
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    unpack = _unpack_header
    crc32 = _crc32
    also = _ALSO.get(magic, ())
    marks = _BATCH_MARKS
    pos = 0
    size = len(buf)
    last = size - HEADER_SIZE  # the last position where a header fits
    while pos <= last and len(out) < limit:
        m, crc, n, seq = unpack(buf, pos)
        end = pos + HEADER_SIZE + n
        at = base + pos
        start = (salt ^ at ^ at >> 32) & _MASK if salt else 0
        if m != magic:
            if m not in also:
                break
            start = crc32(marks[m], start)
        if end > size or crc32(buf[pos + 5 : end], start) != crc:
            break
        append((seq, base + end, buf[pos + HEADER_SIZE : end]))
        pos = end
    return out


def find_record(buf: ByteSource, pos: int, magic: int, salt: int = 0) -> Record | None:
    """The first valid frame starting at or after ``pos`` of the chunk file ``buf`` (whole,
    from byte 0), if any (used to tell a torn tail from damage in the middle: a torn tail
    has nothing valid after it)."""
    markers = [bytes((m,)) for m in (magic, *_ALSO.get(magic, ()))]

    def next_marker(start: int) -> int:
        hits = [i for i in (buf.find(m, start) for m in markers) if i >= 0]
        return min(hits) if hits else -1

    i = next_marker(pos)
    while i >= 0:
        found = decode(buf, i, magic, salt)
        if isinstance(found, Record):
            return found
        i = next_marker(i + 1)
    return None


_ACK_BODY = struct.Struct("<IQQ")  # length (8), generation, acknowledged seq
_pack_ack_body = _ACK_BODY.pack


def encode_ack(generation: int, seq: int, magic: int = ACK_MAGIC) -> bytes:
    """An ack-log record: item ``seq`` is acknowledged, in log ``generation``; ``magic``
    says whether it is one alone (``ACK_MAGIC``) or the first, a middle or the last of
    acknowledgements written together (``ACK_FIRST_MAGIC``, ``ACK_MORE_MAGIC``,
    ``ACK_END_MAGIC``; their CRC covers the marker too).

    The same frame as ``encode(ACK_MAGIC, generation, seq as 8 bytes)``, built in one go.
    Every ack record is ``ACK_RECORD_SIZE`` bytes, so the log is a row of fixed slots.
    """
    body = _pack_ack_body(8, generation, seq)
    mark = _ACK_MARKS.get(magic)
    return _pack_mark(magic, _crc32(body, _crc32(mark)) if mark else _crc32(body)) + body


def mark_acks_together(records: bytes) -> bytes:
    """The ack records ``records`` (consecutive slots, each made by ``encode_ack`` alone)
    marked as written together: the first, the middle ones and the last, so that a crash
    that keeps only some of them (a write reaches the disk a sector or a page at a time, in
    any order) leaves what recovery recognises as one unfinished write, not damage."""
    count = len(records) // ACK_RECORD_SIZE
    if count < 2:
        return records
    out = []
    for i in range(count):
        _magic, _crc, _length, gen, seq = _ACK_SLOT.unpack_from(records, i * ACK_RECORD_SIZE)
        magic = ACK_FIRST_MAGIC if i == 0 else ACK_END_MAGIC if i == count - 1 else ACK_MORE_MAGIC
        out.append(encode_ack(gen, seq, magic))
    return b"".join(out)


class AckScan(NamedTuple):
    """What ``scan_acks`` found in the ack log for one generation.

    - ``acks``: the item seqs acknowledged by whole, valid records of the generation, in
      log order (of acknowledgements written together, only when all of them are).
    - ``end``: the offset just after the last such record: where the next record goes.
    - ``damaged``: the offsets of slots before ``end`` that hold no valid record of the
      generation (damage: records are written one after another, so the generation's
      records fill the slots from the start without a gap).
    - ``leftover``: the offset just after what a crash left of acknowledgements written
      together that did not all reach the disk (``end`` when there are none): their
      records are not counted.
    """

    acks: list[int]
    end: int
    damaged: list[int]
    leftover: int = 0


_SINGLE, _FIRST, _MORE, _END = range(4)
_ACK_KIND = {
    ACK_MAGIC: _SINGLE, ACK_FIRST_MAGIC: _FIRST, ACK_MORE_MAGIC: _MORE, ACK_END_MAGIC: _END
}
_ACK_MARKS = {m: bytes((m,)) for m in (ACK_FIRST_MAGIC, ACK_MORE_MAGIC, ACK_END_MAGIC)}
_ACK_SEEDS = {m: _crc32(mark) for m, mark in _ACK_MARKS.items()}


def scan_acks(buf: bytes, generation: int) -> AckScan:
    """Read the ack log ``buf`` as a row of ``ACK_RECORD_SIZE``-byte slots.

    The records of ``generation`` fill the slots from offset 0 on, one write after another,
    each made durable before the next: a record alone, or records written together (first,
    middle ones, last). After the last one come zeros (the preallocation), records of older
    generations (the log is rewritten from its start by each generation), or what a crash
    left of the write in flight: a torn record, or some of the records written together, in
    any order. A slot that is not a valid record of the generation but is followed by a valid
    one that cannot be part of that last write (a record alone, a first one, or anything
    after a last one) is damage: it is reported in ``damaged``, never taken for the end of the
    log.
    """
    unpack = _ACK_SLOT.unpack_from
    crc32 = _crc32
    seeds = _ACK_SEEDS
    kinds = _ACK_KIND
    size = len(buf)
    # The valid records of the generation: (offset, kind, seq).
    found: list[tuple[int, int, int]] = []
    pos = 0
    while pos + ACK_RECORD_SIZE <= size:
        magic, crc, length, gen, seq = unpack(buf, pos)
        kind = kinds.get(magic)
        if (
            kind is not None and length == 8 and gen == generation
            and crc32(buf[pos + 5 : pos + ACK_RECORD_SIZE], seeds.get(magic, 0)) == crc
        ):
            found.append((pos, kind, seq))
        pos += ACK_RECORD_SIZE
    # Whole writes, from the start: each a record alone or a run from a first to a last.
    acks: list[int] = []
    end = 0
    i = 0
    n = len(found)
    while i < n:
        at, kind, seq = found[i]
        if at != end:
            break
        if kind == _SINGLE:
            acks.append(seq)
            end += ACK_RECORD_SIZE
            i += 1
            continue
        if kind != _FIRST:
            break
        j = i + 1
        while j < n and found[j][1] == _MORE and found[j][0] == at + (j - i) * ACK_RECORD_SIZE:
            j += 1
        if j < n and found[j][1] == _END and found[j][0] == at + (j - i) * ACK_RECORD_SIZE:
            acks.extend(s for _, _, s in found[i : j + 1])
            end = found[j][0] + ACK_RECORD_SIZE
            i = j + 1
            continue
        break
    rest = found[i:]
    if not rest:
        return AckScan(acks, end, [], end)
    if _one_unfinished_write(rest, end):
        return AckScan(acks, end, [], rest[-1][0] + ACK_RECORD_SIZE)
    # Damage: count every valid record, and report the slots without one before the last.
    last = rest[-1][0] + ACK_RECORD_SIZE
    have = {at for at, _, _ in found}
    damaged = [p for p in range(end, last, ACK_RECORD_SIZE) if p not in have]
    acks.extend(s for _, _, s in rest)
    return AckScan(acks, last, damaged, last)


def _one_unfinished_write(rest: list[tuple[int, int, int]], end: int) -> bool:
    """Whether the valid records ``rest`` after the whole writes (which end at ``end``) can
    all be what a crash left of one write of records together begun at ``end``: no record
    alone, a first record only as the first of them and at ``end``, a last record only as
    the last of them."""
    last = len(rest) - 1
    return not any(
        kind == _SINGLE
        or (kind == _FIRST and (i or at != end))
        or (kind == _END and i != last)
        for i, (at, kind, _) in enumerate(rest)
    )


# --- the info file ------------------------------------------------------------------------

FORMAT_NAME = "pqueue"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

MAX_SEQ = 1 << 62
"""Every sequence number, offset and generation read from disk is below this: record headers
hold them in 64 bits, so a value read back can always be incremented and written again."""
MAX_CHUNKSIZE = 1 << 32
MAX_SALT = 1 << 32

Durability = Literal["fsync", "flush"]


@attrs.frozen
class InfoCursor:
    """A position in the chunk files: item ``seq`` starts at byte ``offset`` of its chunk."""

    seq: int
    offset: int


@attrs.frozen(kw_only=True)
class Info:
    """The checkpoint stored in ``info``: everything recovery starts from.

    - ``head``: where the next item goes; everything before it is durable.
    - ``tail``: everything before it is acknowledged.
    - ``acked``: items from ``tail`` on acknowledged out of order, as half-open ranges
      ``(start, end)``, sorted and apart.
    - ``ack_generation``: ack-log records of this generation are newer than this checkpoint.
    - ``durability``: the mode of the writer after this checkpoint, which says whether records
      after ``head`` were made durable one by one (``fsync``) or may be lost (``flush``).
    - ``salt``: the seed of the CRC of this queue's item records (0: format version 1).
    - ``ack_log``: the size in bytes the ack log had, durably, when this checkpoint was
      written (0 when it was not preallocated: flush mode, or format version 1): a shorter
      log was truncated.
    """

    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    chunksize: int
    serializer: str
    durability: Durability
    head: InfoCursor
    tail: int
    acked: tuple[tuple[int, int], ...] = ()
    ack_generation: int = 0
    salt: int = 0
    ack_log: int = 0


def _strict_int(value: Any, _type: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_str(value: Any, _type: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _ranges(value: Any, _type: Any) -> tuple[tuple[int, int], ...]:
    if type(value) is not list:
        raise TypeError(f"expected a list of [start, end] ranges, got {value!r}")
    out = []
    for pair in value:
        if type(pair) is not list or len(pair) != 2:
            raise TypeError(f"expected a [start, end] range, got {pair!r}")
        out.append((_strict_int(pair[0], int), _strict_int(pair[1], int)))
    return tuple(out)


_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(int, _strict_int)
_converter.register_structure_hook(str, _strict_str)
_Ranges = tuple[tuple[int, int], ...]
_converter.register_structure_hook_func(lambda kind: kind == _Ranges, _ranges)
_converter.register_unstructure_hook_func(
    lambda kind: kind == _Ranges, lambda ranges: [[a, b] for a, b in ranges]
)

_CRC_KEY = b',"crc32":'


def encode_info(info: Info) -> bytes:
    """The bytes of the ``info`` file for ``info``: JSON whose last member, ``crc32``, is the
    CRC-32 of every byte before it."""
    body = json.dumps(_converter.unstructure(info), separators=(",", ":")).encode()
    assert body.endswith(b"}")
    body = body[:-1]
    return body + _CRC_KEY + str(_crc32(body)).encode() + b"}\n"


def decode_info(data: bytes, path: str) -> Info:
    """Parse and validate an ``info`` file read from ``path``.

    Raises ``LegacyFormatError`` for a pqueue 0.1.x (pickled) file or one of persist-queue's
    file ``Queue`` with the json serializer, ``UnsupportedFormatError``
    for an unknown format version and ``CorruptQueueError`` for anything else that is not a
    valid checkpoint: not JSON, a checksum that does not match (version 2), a field missing,
    unknown, of the wrong type or out of bounds.
    """
    if not data:
        raise CorruptQueueError(path, 0, "the info file is empty")
    if data[:1] == b"\x80" or data[:3] in (b"(dp", b"}q\x00"):
        raise LegacyFormatError(path)
    if not any(data):
        raise CorruptQueueError(path, 0, "the info file holds only zero bytes")
    try:
        raw = json.loads(data)
    except RecursionError as exc:
        raise CorruptQueueError(path, 0, "the info file is not a pqueue checkpoint "
                                "(JSON nested too deeply)") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        offset = getattr(exc, "pos", getattr(exc, "start", 0))
        raise CorruptQueueError(path, offset, f"the info file is not valid JSON ({exc})") from exc
    if isinstance(raw, dict) and "format" not in raw and {"chunksize", "size", "tail",
                                                           "head"} <= raw.keys():
        raise LegacyFormatError(
            path, "persist-queue's file Queue (its info file has persist-queue's fields)",
            "persist-queue",
        )
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise CorruptQueueError(path, 0, "the info file is not a pqueue checkpoint")
    version = raw.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise UnsupportedFormatError(
            path,
            f"on-disk format version {version!r}; this pqueue reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))} (a newer pqueue may have written it)",
        )
    if version == 1:
        raw = _upgrade_v1(raw, path)
    else:
        _check_crc(data, raw, path)
    try:
        info = _converter.structure(raw, Info)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        detail = "; ".join(cattrs.transform_error(exc)) if isinstance(
            exc, cattrs.BaseValidationError
        ) else str(exc)
        raise CorruptQueueError(path, 0, f"invalid checkpoint: {detail}") from exc
    problem = _check_info(info)
    if problem:
        raise CorruptQueueError(path, 0, f"invalid checkpoint: {problem}")
    return info


def _check_crc(data: bytes, raw: dict[str, Any], path: str) -> None:
    where = data.rfind(_CRC_KEY)
    recorded = raw.pop("crc32", None)
    if where < 0 or type(recorded) is not int:
        raise CorruptQueueError(path, 0, "the info file has no checksum (crc32)")
    if data[where + len(_CRC_KEY) :].rstrip(b"\n") != str(recorded).encode() + b"}":
        raise CorruptQueueError(path, where, "the checksum (crc32) is not the info file's end")
    if _crc32(data[:where]) != recorded:
        raise CorruptQueueError(
            path, 0, "checksum mismatch: the info file was changed or damaged after it was written"
        )


def _upgrade_v1(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """A version-1 ``info`` (no checksum, no salt, acknowledged items as a list of seqs) as
    the version-2 fields it stands for."""
    raw = dict(raw)
    raw["version"] = FORMAT_VERSION
    acked = raw.get("acked", [])
    if type(acked) is not list or any(type(seq) is not int for seq in acked):
        raise CorruptQueueError(path, 0, f"invalid checkpoint: acked must be a list of item "
                                f"numbers, got {acked!r}")
    ranges: list[list[int]] = []
    for seq in acked:
        if ranges and ranges[-1][1] == seq:
            ranges[-1][1] = seq + 1
        else:
            ranges.append([seq, seq + 1])
    raw["acked"] = ranges
    return raw


def _check_info(info: Info) -> str | None:
    cs = info.chunksize
    head = info.head
    if not 1 <= cs <= MAX_CHUNKSIZE:
        return f"chunksize {cs} outside 1..{MAX_CHUNKSIZE}"
    if not (0 <= head.seq < MAX_SEQ and 0 <= head.offset < MAX_SEQ):
        return f"head {head} outside 0..2**62"
    if head.seq % cs == 0 and head.offset != 0:
        return f"head {head.seq} starts a chunk but has offset {head.offset}"
    if head.seq % cs != 0 and head.offset < HEADER_SIZE * (head.seq % cs):
        return f"head offset {head.offset} too small for item {head.seq}"
    if not 0 <= info.tail <= head.seq:
        return f"tail {info.tail} outside 0..head {head.seq}"
    previous = info.tail - 1
    for start, end in info.acked:
        if not previous < start < end <= head.seq:
            return (
                f"acknowledged range {start}..{end} out of order, empty or outside "
                f"tail..head ({info.tail}..{head.seq})"
            )
        previous = end
    if not 0 <= info.ack_generation < MAX_SEQ:
        return f"ack generation {info.ack_generation} outside 0..2**62"
    if not 0 <= info.salt < MAX_SALT:
        return f"salt {info.salt} outside 0..2**32"
    if not 0 <= info.ack_log < MAX_SEQ:
        return f"ack log size {info.ack_log} outside 0..2**62"
    return None
