"""Record framing and the ``info`` file codec. Pure: bytes in, values out.

A frame is a 17-byte header followed by the payload::

    offset  size  field
    0       1     magic    non-zero: 0xD1 for an item record, 0xA5 for an ack record
    1       4     crc32    over bytes 5..17 of the header and the payload (little endian)
    5       4     length   of the payload in bytes
    9       8     seq      item sequence number (item records) or ack-log generation (acks)
    17      n     payload

A zero byte is never a magic, so a zero-filled (preallocated or power-loss) tail never parses
as a frame, and the CRC rejects a torn or garbage one. Decoding returns a ``Record``, or an
``Incomplete`` (the bytes end inside the frame) or ``Corrupt`` (the bytes are not a frame).

The ``info`` file is JSON, structured through one cattrs converter with
``forbid_extra_keys``; it is never pickled.
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
    "ACK_MAGIC",
    "ACK_RECORD_SIZE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "ITEM_MAGIC",
    "ByteSource",
    "Corrupt",
    "Decoded",
    "Durability",
    "Incomplete",
    "Info",
    "InfoCursor",
    "Record",
    "decode",
    "decode_acks",
    "decode_block",
    "decode_info",
    "encode",
    "encode_ack",
    "encode_info",
    "find_record",
]

ITEM_MAGIC = 0xD1
ACK_MAGIC = 0xA5
HEADER_SIZE = 17
MAX_PAYLOAD = 0xFFFFFFFF

_HEADER = struct.Struct("<BIIQ")  # magic, crc, length, seq
_BODY = struct.Struct("<IQ")  # length, seq: the header part the CRC covers
_ACK_PAYLOAD = struct.Struct("<Q")
ACK_RECORD_SIZE = HEADER_SIZE + _ACK_PAYLOAD.size

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
    """A whole, valid frame: its ``seq`` and where its payload and the frame end."""

    seq: int
    start: int
    end: int


class Incomplete(NamedTuple):
    """The bytes end inside a frame starting at ``offset`` (a torn or unfinished write)."""

    offset: int


class Corrupt(NamedTuple):
    """The bytes at ``offset`` are not a valid frame, for ``reason``."""

    offset: int
    reason: str


Decoded = Record | Incomplete | Corrupt


def encode(magic: int, seq: int, payload: bytes) -> bytes:
    """Frame ``payload`` with ``seq`` under ``magic``."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"a record holds at most {MAX_PAYLOAD} bytes, got {n}")
    # The CRC covers the header from byte 5 on and the payload: bytes that lie together.
    body = _pack_body(n, seq) + payload
    return _pack_mark(magic, _crc32(body)) + body


def decode(buf: ByteSource, pos: int, magic: int) -> Decoded:
    """Decode the frame starting at ``buf[pos]``."""
    avail = len(buf) - pos
    if avail < HEADER_SIZE:
        if avail > 0 and buf[pos] != 0 and buf[pos] != magic:
            return Corrupt(pos, f"byte 0x{buf[pos]:02x} is not a record marker")
        if avail > 0 and not any(buf[pos:]):
            return Corrupt(pos, "zero bytes where a record should start")
        return Incomplete(pos)
    m, crc, n, seq = _unpack(buf[pos : pos + HEADER_SIZE])
    if m != magic:
        if m == 0:
            return Corrupt(pos, "zero bytes where a record should start")
        return Corrupt(pos, f"byte 0x{m:02x} is not a record marker")
    start = pos + HEADER_SIZE
    end = start + n
    if end > len(buf):
        return Incomplete(pos)
    if _crc32(buf[pos + 5 : end]) != crc:
        return Corrupt(pos, "checksum mismatch")
    return Record(seq, start, end)


def decode_block(
    buf: bytes, base: int, magic: int, limit: int
) -> list[tuple[int, int, bytes]]:
    """The whole, valid frames at the start of ``buf`` (at most ``limit``), as
    ``(seq, end, payload)`` with ``end`` offset by ``base``. Stops at the first frame that
    is not whole and valid; ``decode`` says why."""
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    unpack = _unpack_header
    crc32 = _crc32
    pos = 0
    size = len(buf)
    last = size - HEADER_SIZE  # the last position where a header fits
    while pos <= last and len(out) < limit:
        m, crc, n, seq = unpack(buf, pos)
        end = pos + HEADER_SIZE + n
        if m != magic or end > size or crc32(buf[pos + 5 : end]) != crc:
            break
        append((seq, base + end, buf[pos + HEADER_SIZE : end]))
        pos = end
    return out


def find_record(buf: ByteSource, pos: int, magic: int) -> Record | None:
    """The first valid frame starting at or after ``pos``, if any (used to tell a torn tail
    from damage in the middle: a torn tail has nothing valid after it)."""
    marker = bytes((magic,))
    i = buf.find(marker, pos)
    while i >= 0:
        found = decode(buf, i, magic)
        if isinstance(found, Record):
            return found
        i = buf.find(marker, i + 1)
    return None


_ACK_BODY = struct.Struct("<IQQ")  # length (8), generation, acknowledged seq
_pack_ack_body = _ACK_BODY.pack


def encode_ack(generation: int, seq: int) -> bytes:
    """An ack-log record: item ``seq`` is acknowledged, in log ``generation``.

    The same frame as ``encode(ACK_MAGIC, generation, seq as 8 bytes)``, built in one go.
    """
    body = _pack_ack_body(8, generation, seq)
    return _pack_mark(ACK_MAGIC, _crc32(body)) + body


def decode_acks(buf: bytes, generation: int) -> list[int]:
    """The item seqs acknowledged by the whole, valid records of ``generation`` at the start
    of ``buf``; stops at the first frame that is not one (older generation, torn, zeros)."""
    acks: list[int] = []
    pos = 0
    while True:
        rec = decode(buf, pos, ACK_MAGIC)
        if type(rec) is not Record or rec.seq != generation:
            return acks
        if rec.end - rec.start != _ACK_PAYLOAD.size:
            return acks
        acks.append(_ACK_PAYLOAD.unpack_from(buf, rec.start)[0])
        pos = rec.end


# --- the info file ------------------------------------------------------------------------

FORMAT_NAME = "pqueue"
FORMAT_VERSION = 1

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
    - ``acked``: items from ``tail`` on acknowledged out of order.
    - ``ack_generation``: ack-log records of this generation are newer than this checkpoint.
    - ``durability``: the mode of the writer after this checkpoint, which says whether records
      after ``head`` were made durable one by one (``fsync``) or may be lost (``flush``).
    """

    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    chunksize: int
    serializer: str
    durability: Durability
    head: InfoCursor
    tail: int
    acked: tuple[int, ...] = ()
    ack_generation: int = 0


def _strict_int(value: Any, _type: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_str(value: Any, _type: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    return value


_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(int, _strict_int)
_converter.register_structure_hook(str, _strict_str)


def encode_info(info: Info) -> bytes:
    """The bytes of the ``info`` file for ``info``."""
    return (json.dumps(_converter.unstructure(info), separators=(",", ":")) + "\n").encode()


def decode_info(data: bytes, path: str) -> Info:
    """Parse and validate an ``info`` file read from ``path``.

    Raises ``LegacyFormatError`` for a pqueue 0.1.x (pickled) file, ``UnsupportedFormatError``
    for an unknown format version and ``CorruptQueueError`` for anything else that is not a
    valid checkpoint.
    """
    if not data:
        raise CorruptQueueError(path, 0, "the info file is empty")
    if data[:1] == b"\x80" or data[:3] in (b"(dp", b"}q\x00"):
        raise LegacyFormatError(path)
    if not any(data):
        raise CorruptQueueError(path, 0, "the info file holds only zero bytes")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        offset = getattr(exc, "pos", getattr(exc, "start", 0))
        raise CorruptQueueError(path, offset, f"the info file is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise CorruptQueueError(path, 0, "the info file is not a pqueue checkpoint")
    version = raw.get("version")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(
            path,
            f"on-disk format version {version!r}; this pqueue reads version {FORMAT_VERSION} "
            "(a newer pqueue may have written it)",
        )
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


def _check_info(info: Info) -> str | None:
    cs = info.chunksize
    head = info.head
    if cs < 1:
        return f"chunksize {cs} < 1"
    if head.seq < 0 or head.offset < 0:
        return f"negative head {head}"
    if head.seq % cs == 0 and head.offset != 0:
        return f"head {head.seq} starts a chunk but has offset {head.offset}"
    if head.seq % cs != 0 and head.offset < HEADER_SIZE * (head.seq % cs):
        return f"head offset {head.offset} too small for item {head.seq}"
    if not 0 <= info.tail <= head.seq:
        return f"tail {info.tail} outside 0..head {head.seq}"
    previous = info.tail - 1
    for seq in info.acked:
        if not previous < seq < head.seq:
            return f"acknowledged item {seq} out of order or outside tail..head"
        previous = seq
    if info.ack_generation < 0:
        return f"negative ack generation {info.ack_generation}"
    return None
