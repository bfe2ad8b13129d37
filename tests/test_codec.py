"""Record framing and the info codec: what parses, and everything that must not."""

from __future__ import annotations

import json
import pickle
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqueue.core import codec
from pqueue.core.codec import (
    ACK_END_MAGIC,
    ACK_FIRST_MAGIC,
    ACK_MAGIC,
    ACK_MORE_MAGIC,
    ACK_RECORD_SIZE,
    BATCH_END_MAGIC,
    BATCH_MAGIC,
    HEADER_SIZE,
    ITEM_MAGIC,
    Corrupt,
    Incomplete,
    Info,
    InfoCursor,
    Record,
    decode,
    decode_block,
    decode_info,
    encode,
    encode_ack,
    encode_info,
    find_record,
    mark_acks_together,
    scan_acks,
)
from pqueue.core.errors import CorruptQueueError, LegacyFormatError, UnsupportedFormatError

seqs = st.integers(min_value=0, max_value=2**64 - 1)
payloads = st.binary(max_size=300)


@given(seqs, payloads)
def test_a_frame_decodes_to_its_record(seq: int, payload: bytes) -> None:
    frame = encode(ITEM_MAGIC, seq, payload)
    assert len(frame) == HEADER_SIZE + len(payload)
    rec = decode(frame, 0, ITEM_MAGIC)
    assert rec == Record(seq, HEADER_SIZE, len(frame))
    assert frame[rec.start : rec.end] == payload


@given(seqs, payloads, st.binary(max_size=40))
def test_a_frame_decodes_anywhere_in_a_buffer(seq: int, payload: bytes, before: bytes) -> None:
    buf = before + encode(ITEM_MAGIC, seq, payload) + b"\x00" * 10
    rec = decode(buf, len(before), ITEM_MAGIC)
    assert isinstance(rec, Record)
    assert buf[rec.start : rec.end] == payload


@given(seqs, payloads, st.data())
def test_every_torn_prefix_is_incomplete_or_corrupt(
    seq: int, payload: bytes, data: st.DataObject
) -> None:
    frame = encode(ITEM_MAGIC, seq, payload)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    fill = data.draw(st.sampled_from([b"", b"\x00" * 600, bytes(range(256)) * 3]))
    torn = frame[:cut] + fill
    rec = decode(torn, 0, ITEM_MAGIC)
    # Only a fill that happens to restore the frame's own bytes (zeros where it had zeros)
    # may parse, and then it is the frame that was written.
    assert not isinstance(rec, Record) or torn[: len(frame)] == frame


@given(seqs, payloads, st.data())
def test_any_flipped_byte_is_detected(seq: int, payload: bytes, data: st.DataObject) -> None:
    magic = data.draw(st.sampled_from([ITEM_MAGIC, BATCH_MAGIC, BATCH_END_MAGIC]))
    frame = bytearray(encode(magic, seq, payload))
    index = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    frame[index] ^= flip
    rec = decode(bytes(frame), 0, ITEM_MAGIC)
    if isinstance(rec, Record):  # only a changed length can leave a whole frame
        pytest.fail(f"a damaged frame parsed as {rec}")


def test_zeros_never_parse() -> None:
    for size in (1, 5, HEADER_SIZE, HEADER_SIZE + 1, 4096):
        rec = decode(bytes(size), 0, ITEM_MAGIC)
        assert isinstance(rec, Corrupt)
        assert "zero" in rec.reason
    assert decode(b"", 0, ITEM_MAGIC) == Incomplete(0)


def test_an_item_frame_is_not_an_ack_frame() -> None:
    frame = encode(ITEM_MAGIC, 1, b"x")
    assert isinstance(decode(frame, 0, ACK_MAGIC), Corrupt)


def test_a_short_buffer_with_a_marker_is_incomplete() -> None:
    frame = encode(ITEM_MAGIC, 3, b"abc")
    assert decode(frame[:5], 0, ITEM_MAGIC) == Incomplete(0)
    assert isinstance(decode(b"\x17abc", 0, ITEM_MAGIC), Corrupt)


def test_a_payload_too_large_for_a_frame_is_refused() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return 2**32

    with pytest.raises(ValueError, match="at most"):
        encode(ITEM_MAGIC, 0, Huge(b"x"))


@given(st.lists(payloads, max_size=12), st.integers(min_value=0, max_value=20))
def test_decode_block_returns_the_whole_frames_up_to_a_limit(
    items: list[bytes], limit: int
) -> None:
    buf = b"".join(encode(ITEM_MAGIC, 100 + i, p) for i, p in enumerate(items))
    torn = encode(ITEM_MAGIC, 100 + len(items), b"tail")[:-2]
    out = decode_block(buf + torn, 1000, ITEM_MAGIC, limit)
    assert [seq for seq, _, _ in out] == list(range(100, 100 + min(limit, len(items))))
    assert [payload for _, _, payload in out] == items[:limit]
    ends = [end for _, end, _ in out]
    assert all(1000 < e <= 1000 + len(buf) for e in ends)


def test_find_record_skips_garbage_and_zeros() -> None:
    good = encode(ITEM_MAGIC, 7, b"payload")
    buf = bytes(64) + b"\xd1garbage\xd1\xd1" + good + bytes(10)
    found = find_record(buf, 0, ITEM_MAGIC)
    assert found is not None and found.seq == 7
    assert find_record(bytes(100) + b"\xd1" * 40, 0, ITEM_MAGIC) is None


@given(seqs, payloads, st.integers(min_value=0, max_value=2**32 - 1))
def test_a_salted_frame_is_valid_only_with_its_salt(seq: int, payload: bytes, salt: int) -> None:
    frame = encode(ITEM_MAGIC, seq, payload, salt)
    assert decode(frame, 0, ITEM_MAGIC, salt) == Record(seq, HEADER_SIZE, len(frame))
    assert decode_block(frame, 0, ITEM_MAGIC, 1, salt) == [(seq, len(frame), payload)]
    other = salt ^ 0x1
    assert decode(frame, 0, ITEM_MAGIC, other) == Corrupt(0, "checksum mismatch")
    assert decode_block(frame, 0, ITEM_MAGIC, 1, other) == []
    assert find_record(frame, 0, ITEM_MAGIC, other) is None


def test_salt_0_is_the_unsalted_frame_of_format_version_1() -> None:
    assert encode(ITEM_MAGIC, 3, b"abc", 0) == encode(ITEM_MAGIC, 3, b"abc")
    assert encode(ITEM_MAGIC, 3, b"abc", 0, 999) == encode(ITEM_MAGIC, 3, b"abc")


@given(seqs, payloads, st.integers(1, 2**32 - 1), st.integers(0, 2**40), st.integers(1, 2**20))
def test_a_salted_frame_is_valid_only_at_its_own_offset(
    seq: int, payload: bytes, salt: int, offset: int, shift: int
) -> None:
    frame = encode(ITEM_MAGIC, seq, payload, salt, offset)
    assert decode(frame, 0, ITEM_MAGIC, salt, offset) == Record(seq, HEADER_SIZE, len(frame))
    assert decode_block(frame, offset, ITEM_MAGIC, 1, salt) == [(seq, offset + len(frame),
                                                                   payload)]
    # The same bytes anywhere else (copied into an item's payload, say) are not a record.
    assert decode(frame, 0, ITEM_MAGIC, salt, offset + shift) == Corrupt(0, "checksum mismatch")
    assert decode_block(frame, offset + shift, ITEM_MAGIC, 1, salt) == []
    assert find_record(bytes(offset % 64) + frame, 0, ITEM_MAGIC, salt) is None or (
        offset % 64 == offset
    )


@given(st.integers(min_value=0, max_value=2**40), st.lists(seqs, max_size=20))
def test_ack_records_decode_in_their_generation_only(generation: int, acked: list[int]) -> None:
    log = b"".join(encode_ack(generation, s) for s in acked)
    assert len(log) == ACK_RECORD_SIZE * len(acked)
    assert scan_acks(log + bytes(100), generation).acks == acked
    assert scan_acks(log, generation + 1).acks == []
    if generation:
        older = encode_ack(generation - 1, 5)
        assert scan_acks(log + older, generation).acks == acked  # the end of this generation
        # A record of this generation after the end is damage: it counts, and is reported.
        scan = scan_acks(log + older + encode_ack(generation, 9), generation)
        end = len(log) + 2 * ACK_RECORD_SIZE
        assert scan == ([*acked, 9], end, [len(log)], end)


def test_encode_ack_is_the_generic_frame() -> None:
    assert encode_ack(7, 123456) == encode(ACK_MAGIC, 7, struct.pack("<Q", 123456))


def test_a_torn_ack_record_ends_the_log() -> None:
    torn = encode_ack(1, 0x0102030405060708)[:-3] + bytes(3)
    assert scan_acks(encode_ack(1, 10) + torn, 1).acks == [10]
    scan = scan_acks(encode_ack(1, 10) + torn + bytes(100), 1)
    assert scan == ([10], ACK_RECORD_SIZE, [], ACK_RECORD_SIZE)  # the torn last: no damage


def test_the_ack_log_scan_tells_a_torn_end_from_damage_before_later_records() -> None:
    records = [encode_ack(4, seq) for seq in (7, 8, 9)]
    stale = encode_ack(3, 100) * 3  # an older generation, rewritten from the start
    log = b"".join(records) + stale + bytes(50)
    end = 3 * ACK_RECORD_SIZE
    assert scan_acks(log, 4) == ([7, 8, 9], end, [], end)
    flipped = bytearray(log)
    flipped[ACK_RECORD_SIZE + 20] ^= 0x10  # record 8 damaged, 9 follows
    assert scan_acks(bytes(flipped), 4) == ([7, 9], end, [ACK_RECORD_SIZE], end)
    zeroed = bytes(ACK_RECORD_SIZE) + log[ACK_RECORD_SIZE:]  # the first record zeroed
    assert scan_acks(zeroed, 4) == ([8, 9], end, [0], end)
    assert scan_acks(b"", 4) == ([], 0, [], 0)


# Acknowledgements written together: a log of whole writes (alone, or several together),
# then the write in flight at a crash, of which any subset of records reached the disk.
ack_writes = st.lists(st.lists(seqs, min_size=1, max_size=5), max_size=6)


def ack_log(writes: list[list[int]], generation: int) -> bytes:
    return b"".join(
        mark_acks_together(b"".join(encode_ack(generation, s) for s in write))
        for write in writes
    )


@given(ack_writes, st.lists(seqs, min_size=2, max_size=8), st.data())
def test_acknowledgements_together_count_all_or_none_whatever_part_a_crash_kept(
    done: list[list[int]], in_flight: list[int], data: st.DataObject
) -> None:
    log = ack_log(done, 6)
    flight = ack_log([in_flight], 6)
    kept = data.draw(
        st.sets(st.integers(0, len(in_flight) - 1), max_size=len(in_flight) - 1),
        label="slots kept (not all: the write did not finish)",
    )
    slots = [
        flight[i * ACK_RECORD_SIZE : (i + 1) * ACK_RECORD_SIZE] if i in kept
        else bytes(ACK_RECORD_SIZE)
        for i in range(len(in_flight))
    ]
    scan = scan_acks(log + b"".join(slots) + bytes(64), 6)
    assert scan.acks == [s for write in done for s in write]
    assert scan.end == len(log)
    assert scan.damaged == []
    last_kept = max(kept, default=-1) + 1
    assert scan.leftover == len(log) + last_kept * ACK_RECORD_SIZE
    assert scan_acks(log + flight, 6).acks == [s for w in [*done, in_flight] for s in w]


@pytest.mark.parametrize("after", [[[5]], [[5, 6]], [[5, 6, 7]], [[5], [6, 7]]])
def test_a_damaged_record_before_later_writes_is_damage_even_when_they_were_together(
    after: list[list[int]]
) -> None:
    log = bytearray(ack_log([[1], [2], *after], 6))
    log[ACK_RECORD_SIZE + 20] ^= 1  # the acknowledgement of 2, durable, then damaged
    scan = scan_acks(bytes(log), 6)
    assert scan.damaged == [ACK_RECORD_SIZE]
    assert scan.acks == [1, *(s for w in after for s in w)]


def test_a_changed_marker_of_acknowledgements_together_fails_their_check() -> None:
    together = ack_log([[3, 4, 5]], 2)
    for offset in range(0, len(together), ACK_RECORD_SIZE):
        for marker in (ACK_MAGIC, ACK_FIRST_MAGIC, ACK_MORE_MAGIC, ACK_END_MAGIC):
            if together[offset] != marker:
                changed = bytearray(together)
                changed[offset] = marker
                assert scan_acks(bytes(changed), 2).acks == []


# --- info -------------------------------------------------------------------------------------

INFO = Info(
    chunksize=10,
    serializer="pickle",
    durability="fsync",
    head=InfoCursor(25, 170),
    tail=12,
    acked=((14, 15), (20, 23)),
    ack_generation=3,
    salt=0xC0FFEE,
    ack_log=4096,
)


def test_info_round_trips() -> None:
    assert decode_info(encode_info(INFO), "/q/info") == INFO
    raw = json.loads(encode_info(INFO))
    assert raw["format"] == "pqueue" and raw["version"] == 2
    assert raw["head"] == {"seq": 25, "offset": 170}
    assert raw["acked"] == [[14, 15], [20, 23]]
    assert list(raw)[-1] == "crc32"


def _signed(raw: dict[str, object]) -> bytes:
    """``raw`` as an info file with a checksum that matches: for testing what the checks
    after the checksum refuse."""
    raw = {k: v for k, v in raw.items() if k != "crc32"}
    body = json.dumps(raw, separators=(",", ":")).encode()[:-1]
    return body + b',"crc32":' + str(zlib.crc32(body)).encode() + b"}\n"


def _info_with(**changes: object) -> bytes:
    raw = json.loads(encode_info(INFO))
    raw.update(changes)
    return _signed(raw)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (bytes(40), "zero bytes"),
        (encode_info(INFO)[:30], "not valid JSON"),
        (b"\xff\xfe garbage \x01", "not valid JSON"),
        (b"[1, 2, 3]", "not a pqueue checkpoint"),
        (b'{"format": "other"}', "not a pqueue checkpoint"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"format":"pqueue","version":2,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
         "nested too deeply"),
        (_info_with(extra=1), "invalid checkpoint"),
        (_info_with(tail="12"), "invalid checkpoint"),
        (_info_with(chunksize=1.5), "invalid checkpoint"),
        (_info_with(durability="sometimes"), "invalid checkpoint"),
        (_info_with(head={"seq": 25}), "invalid checkpoint"),
        (_info_with(acked=[14, 20]), "invalid checkpoint"),
        (_info_with(acked=[[14]]), "invalid checkpoint"),
        (_info_with(chunksize=0), "chunksize 0"),
        (_info_with(chunksize=2**40), "chunksize"),
        (_info_with(tail=26), "tail 26 outside"),
        (_info_with(acked=[[20, 21], [14, 15]]), "out of order"),
        (_info_with(acked=[[11, 13]]), "out of order"),
        (_info_with(acked=[[14, 15], [15, 16]]), "out of order"),
        (_info_with(acked=[[14, 14]]), "empty"),
        (_info_with(acked=[[20, 26]]), "outside"),
        (_info_with(head={"seq": 20, "offset": 5}), "starts a chunk"),
        (_info_with(head={"seq": 25, "offset": 3}), "too small"),
        (_info_with(head={"seq": 2**64 + 4, "offset": 170}), "outside 0..2\\*\\*62"),
        (_info_with(ack_generation=-1), "ack generation -1 outside"),
        (_info_with(ack_generation=2**64 - 1), "ack generation .* outside"),
        (_info_with(salt=2**32), "salt"),
        (_info_with(ack_log=-5), "ack log size"),
        (encode_info(INFO).replace(b'"tail":12', b'"tail":' + b"9" * 5000),
         "not valid JSON|checksum mismatch"),
        (encode_info(INFO).replace(b'"tail":12', b'"tail":17'), "checksum mismatch"),
        (encode_info(INFO).replace(b'"ack_generation":3', b'"ack_generation":2'),
         "checksum mismatch"),
        (encode_info(INFO).replace(b',"crc32":', b',"crc":'), "invalid checkpoint|no checksum"),
        (json.dumps({k: v for k, v in json.loads(encode_info(INFO)).items() if k != "crc32"})
         .encode(), "no checksum"),
        (encode_info(INFO).rstrip(b"\n") + b"  \n", "not the info file's end"),
    ],
)
def test_a_bad_info_file_is_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptQueueError, match=reason) as raised:
        decode_info(data, "/q/info")
    assert raised.value.path == "/q/info"
    assert "/q/info" in str(raised.value)


def test_an_info_file_of_format_version_1_is_still_read() -> None:
    v1 = (
        b'{"format":"pqueue","version":1,"chunksize":10,"serializer":"pickle",'
        b'"durability":"fsync","head":{"seq":25,"offset":170},"tail":12,'
        b'"acked":[14,20,21,22],"ack_generation":3}\n'
    )
    info = decode_info(v1, "/q/info")
    assert info.acked == ((14, 15), (20, 23))
    assert (info.salt, info.ack_log, info.version) == (0, 0, 2)
    with pytest.raises(CorruptQueueError, match="out of order"):
        decode_info(v1.replace(b"[14,20,21,22]", b"[20,14]"), "/q/info")
    with pytest.raises(CorruptQueueError, match="acked must be a list"):
        decode_info(v1.replace(b"[14,20,21,22]", b'"x"'), "/q/info")


@given(
    st.builds(
        Info,
        chunksize=st.integers(1, 1000),
        serializer=st.text(max_size=20),
        durability=st.sampled_from(["fsync", "flush"]),
        head=st.just(InfoCursor(0, 0)),
        tail=st.just(0),
        ack_generation=st.integers(0, 2**62 - 1),
        salt=st.integers(0, 2**32 - 1),
        ack_log=st.integers(0, 2**40),
    ),
    st.data(),
)
def test_any_change_to_an_info_file_is_found(info: Info, data: st.DataObject) -> None:
    encoded = bytearray(encode_info(info))
    assert decode_info(bytes(encoded), "/q/info") == info
    at = data.draw(st.integers(0, len(encoded) - 2), label="byte changed")  # not the newline
    encoded[at] ^= data.draw(st.integers(1, 255), label="bits flipped")
    with pytest.raises((CorruptQueueError, UnsupportedFormatError)):
        decode_info(bytes(encoded), "/q/info")


def test_an_unknown_format_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="version 3") as raised:
        decode_info(_info_with(version=3), "/q/info")
    assert not isinstance(raised.value, CorruptQueueError)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pickled_info_of_pqueue_0_1_is_legacy(protocol: int) -> None:
    old = {"chunksize": 100, "size": 3, "tail": [0, 0, 0], "head": [0, 3, 54]}
    with pytest.raises(LegacyFormatError, match=r"pqueue 0\.1") as raised:
        decode_info(pickle.dumps(old, protocol=protocol), "/q/info")
    assert "migrate" in str(raised.value)


def test_a_json_info_of_persist_queue_is_legacy() -> None:
    old = b'{"chunksize": 3, "size": 6, "tail": [1, 2, 46], "head": [3, 2, 10]}'
    with pytest.raises(LegacyFormatError, match="persist-queue") as raised:
        decode_info(old, "/q/info")
    assert "python -m pqueue migrate SRC DST" in str(raised.value)


def test_the_codec_exports_what_it_defines() -> None:
    for name in codec.__all__:
        assert hasattr(codec, name)
