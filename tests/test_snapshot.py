"""The shared state's codec (``pqueue.core.snapshot``): every snapshot reads back as it was
written, and anything else (torn, damaged, another version) reads as None."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pqueue.core.snapshot import (
    BURIED,
    Hold,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    snapshot_size,
)

seqs = st.integers(0, 2**62)
holds = st.builds(
    Hold, seqs, seqs, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
    st.floats(0.0, 1e9, allow_nan=False),
)
snapshots = st.builds(
    Snapshot,
    st.text(alphabet="0123456789abcdef-", max_size=40),
    st.integers(0, 2**64 - 1),
    st.integers(0, 7),
    *[seqs] * 12,
    st.lists(seqs, max_size=6).map(lambda xs: tuple(sorted(xs))),
    st.lists(holds, max_size=5).map(tuple),
    st.lists(st.tuples(seqs, st.sampled_from([1, 2, BURIED]))).map(tuple),
    st.none() | st.tuples(seqs, seqs),
)


@given(snapshots)
def test_every_snapshot_reads_back_as_written(snap: Snapshot) -> None:
    data = encode_snapshot(snap)
    assert snapshot_size(data) == len(data)
    assert decode_snapshot(data + bytes(100)) == snap  # room after it is never read


@given(snapshots, st.data())
def test_a_torn_or_damaged_snapshot_reads_as_none(snap: Snapshot, data: st.DataObject) -> None:
    raw = encode_snapshot(snap)
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert decode_snapshot(raw[:cut]) is None
    pos = data.draw(st.integers(0, len(raw) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = raw[:pos] + bytes([raw[pos] ^ flip]) + raw[pos + 1 :]
    assert decode_snapshot(damaged) is None


def test_a_snapshot_of_another_version_reads_as_none() -> None:
    snap = Snapshot("b", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (), ())
    raw = bytearray(encode_snapshot(snap))
    raw[4] = 1  # version 1: written before moves to the dead letters were recorded
    assert decode_snapshot(bytes(raw)) is None
