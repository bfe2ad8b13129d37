"""Record framing and the info codec: what parses, and everything that must not."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqueue.core import codec
from pqueue.core.codec import (
    ACK_MAGIC,
    ACK_RECORD_SIZE,
    HEADER_SIZE,
    ITEM_MAGIC,
    Corrupt,
    Incomplete,
    Info,
    InfoCursor,
    Record,
    decode,
    decode_acks,
    decode_block,
    decode_info,
    encode,
    encode_ack,
    encode_info,
    find_record,
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
    frame = bytearray(encode(ITEM_MAGIC, seq, payload))
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


@given(st.integers(min_value=0, max_value=2**40), st.lists(seqs, max_size=20))
def test_ack_records_decode_in_their_generation_only(generation: int, acked: list[int]) -> None:
    log = b"".join(encode_ack(generation, s) for s in acked)
    assert len(log) == ACK_RECORD_SIZE * len(acked)
    assert decode_acks(log + bytes(100), generation) == acked
    assert decode_acks(log, generation + 1) == []
    if generation:
        older = encode_ack(generation - 1, 5)
        assert decode_acks(log + older + encode_ack(generation, 9), generation) == acked


def test_encode_ack_is_the_generic_frame() -> None:
    assert encode_ack(7, 123456) == encode(ACK_MAGIC, 7, struct.pack("<Q", 123456))


def test_a_torn_ack_record_ends_the_log() -> None:
    torn = encode_ack(1, 0x0102030405060708)[:-3] + bytes(3)
    assert decode_acks(encode_ack(1, 10) + torn, 1) == [10]


# --- info -------------------------------------------------------------------------------------

INFO = Info(
    chunksize=10,
    serializer="pickle",
    durability="fsync",
    head=InfoCursor(25, 170),
    tail=12,
    acked=(14, 20),
    ack_generation=3,
)


def test_info_round_trips() -> None:
    assert decode_info(encode_info(INFO), "/q/info") == INFO
    raw = json.loads(encode_info(INFO))
    assert raw["format"] == "pqueue" and raw["version"] == 1
    assert raw["head"] == {"seq": 25, "offset": 170}


def _info_with(**changes: object) -> bytes:
    raw = json.loads(encode_info(INFO))
    raw.update(changes)
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (bytes(40), "zero bytes"),
        (encode_info(INFO)[:30], "not valid JSON"),
        (b"\xff\xfe garbage \x01", "not valid JSON"),
        (b"[1, 2, 3]", "not a pqueue checkpoint"),
        (b'{"format": "other"}', "not a pqueue checkpoint"),
        (_info_with(extra=1), "invalid checkpoint"),
        (_info_with(tail="12"), "invalid checkpoint"),
        (_info_with(chunksize=1.5), "invalid checkpoint"),
        (_info_with(durability="sometimes"), "invalid checkpoint"),
        (_info_with(head={"seq": 25}), "invalid checkpoint"),
        (_info_with(chunksize=0), "chunksize 0"),
        (_info_with(tail=26), "tail 26 outside"),
        (_info_with(acked=[20, 14]), "out of order"),
        (_info_with(acked=[11]), "out of order"),
        (_info_with(head={"seq": 20, "offset": 5}), "starts a chunk"),
        (_info_with(head={"seq": 25, "offset": 3}), "too small"),
        (_info_with(ack_generation=-1), "negative ack generation"),
    ],
)
def test_a_bad_info_file_is_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptQueueError, match=reason) as raised:
        decode_info(data, "/q/info")
    assert raised.value.path == "/q/info"
    assert "/q/info" in str(raised.value)


def test_an_unknown_format_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedFormatError, match="version 2") as raised:
        decode_info(_info_with(version=2), "/q/info")
    assert not isinstance(raised.value, CorruptQueueError)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pickled_info_of_pqueue_0_1_is_legacy(protocol: int) -> None:
    old = {"chunksize": 100, "size": 3, "tail": [0, 0, 0], "head": [0, 3, 54]}
    with pytest.raises(LegacyFormatError, match=r"pqueue 0\.1") as raised:
        decode_info(pickle.dumps(old, protocol=protocol), "/q/info")
    assert "migrate" in str(raised.value)


def test_the_codec_exports_what_it_defines() -> None:
    for name in codec.__all__:
        assert hasattr(codec, name)
