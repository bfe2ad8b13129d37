"""The shared state's codec (``pqueue.core.snapshot``): every snapshot reads back as it was
written, and anything else (torn, damaged, another version) reads as None."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from pqueue import Queue
from pqueue.core.snapshot import (
    BURIED,
    Hold,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    snapshot_of,
    snapshot_size,
    state_of,
)
from pqueue.core.state import Policy

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


def test_the_state_reads_back_from_its_snapshot_at_every_step(qdir: str) -> None:
    """``state_of`` inverts ``snapshot_of`` for every state a queue goes through: puts,
    deliveries, acknowledgements out of order, chunk roll-overs and checkpoints."""
    policy = Policy(checkpoint_every=1, checkpoint_when_drained=True, ack_log_bytes=75,
                    prealloc_bytes=512)
    q: Queue[int] = Queue(qdir, chunksize=2, policy=policy)
    shell = q._shell
    seen = 0

    def check() -> None:
        nonlocal seen
        state = shell.state
        snap = snapshot_of(state, "boot", 7, 0, (), (), None)
        back = decode_snapshot(encode_snapshot(snap))
        assert back is not None
        again = state_of(back, state.config, state.ledger.checkpoint)
        if state.head % state.config.chunksize == 0:
            # At a chunk boundary the head's file is the next put's to create, whatever the
            # state names (the chunk just filled, or the one a drained checkpoint skipped to).
            again = again._replace(ledger=attrs.evolve(again.ledger,
                                                       head_path=state.ledger.head_path))
        assert again == state
        seen += 1

    deliveries = []
    for i in range(7):
        q.put(i)
        check()
        if i % 2:
            deliveries.append(q.get_delivery(timeout=0))
            check()
    for d in reversed(deliveries):  # out of order: acked ranges
        d.ack()
        check()
    q.close()
    assert seen == 7 + 3 + 3
