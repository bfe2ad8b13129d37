"""The core's transitions, on their own: the phase table, each transition's effects, and a
model-checked run of put/deliver/ack/checkpoint/recover over an in-memory disk."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from memdisk import MemDisk, config
from pqueue.core import transitions
from pqueue.core.codec import ACK_RECORD_SIZE, HEADER_SIZE, decode_info
from pqueue.core.effects import (
    Create,
    Fsync,
    FsyncDir,
    Release,
    Replace,
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
from pqueue.core.state import QueueState, chunk_path
from pqueue.core.transitions import Command, Phase

# --- the phase table: every phase against every command ------------------------------------

P, C = Phase, Command
DATA = (C.PUT, C.GET, C.ACK, C.INSPECT)
EXPECTED: dict[tuple[Phase, Command], Phase | type[Exception]] = {
    **{(P.OPEN, c): P.OPEN for c in DATA},
    (P.OPEN, C.SHUTDOWN): P.SHUTDOWN,
    (P.OPEN, C.CLOSE): P.CLOSED,
    (P.OPEN, C.FAIL): P.BROKEN,
    (P.OPEN, C.SUPERSEDE): P.SUPERSEDED,
    (P.SHUTDOWN, C.PUT): ShutDown,
    (P.SHUTDOWN, C.GET): P.SHUTDOWN,
    (P.SHUTDOWN, C.ACK): P.SHUTDOWN,
    (P.SHUTDOWN, C.INSPECT): P.SHUTDOWN,
    (P.SHUTDOWN, C.SHUTDOWN): P.SHUTDOWN,
    (P.SHUTDOWN, C.CLOSE): P.CLOSED,
    (P.SHUTDOWN, C.FAIL): P.BROKEN,
    (P.SHUTDOWN, C.SUPERSEDE): P.SUPERSEDED,
    **{(P.CLOSED, c): QueueClosedError for c in (*DATA, C.SHUTDOWN)},
    (P.CLOSED, C.CLOSE): P.CLOSED,
    (P.CLOSED, C.FAIL): P.CLOSED,
    (P.CLOSED, C.SUPERSEDE): P.CLOSED,
    **{(P.BROKEN, c): QueueBrokenError for c in (*DATA, C.SHUTDOWN)},
    (P.BROKEN, C.CLOSE): P.CLOSED,
    (P.BROKEN, C.FAIL): P.BROKEN,
    (P.BROKEN, C.SUPERSEDE): P.SUPERSEDED,
    **{(P.SUPERSEDED, c): QueueSupersededError for c in (*DATA, C.SHUTDOWN)},
    (P.SUPERSEDED, C.CLOSE): P.SUPERSEDED,
    (P.SUPERSEDED, C.FAIL): P.SUPERSEDED,
    (P.SUPERSEDED, C.SUPERSEDE): P.SUPERSEDED,
    # The child's copy of a live object after fork() is dead to the child; a closed or
    # superseded one stays as it was.
    (P.OPEN, C.FORK): P.FORKED,
    (P.SHUTDOWN, C.FORK): P.FORKED,
    (P.BROKEN, C.FORK): P.FORKED,
    (P.CLOSED, C.FORK): P.CLOSED,
    (P.SUPERSEDED, C.FORK): P.SUPERSEDED,
    **{(P.FORKED, c): QueueForkedError for c in (*DATA, C.SHUTDOWN)},
    (P.FORKED, C.CLOSE): P.FORKED,
    (P.FORKED, C.FAIL): P.FORKED,
    (P.FORKED, C.SUPERSEDE): P.FORKED,
    (P.FORKED, C.FORK): P.FORKED,
}


def test_the_expected_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(Phase, Command))


@pytest.mark.parametrize(
    ("phase", "command"), list(itertools.product(Phase, Command)), ids=lambda v: v.name
)
def test_every_phase_against_every_command(phase: Phase, command: Command) -> None:
    expected = EXPECTED[phase, command]
    if isinstance(expected, Phase):
        assert transitions.advance(phase, command, "/q") is expected
    else:
        with pytest.raises(expected) as raised:
            transitions.advance(phase, command, "/q")
        assert "/q" in str(raised.value)
        assert command.value in str(raised.value)


def test_data_commands_keep_an_open_queue_open() -> None:
    # Queue skips the table lookup for these while OPEN; this is what makes that right.
    for command in DATA:
        assert transitions.advance(P.OPEN, command, "/q") is P.OPEN


# --- single transitions ----------------------------------------------------------------------


def fresh(**kwargs: object) -> tuple[MemDisk, QueueState]:
    disk = MemDisk()
    state = disk.recover(config(**kwargs))  # type: ignore[arg-type]
    return disk, state


def test_a_new_queue_writes_an_ack_log_and_then_its_info() -> None:
    disk, state = fresh()
    kinds = [type(e) for e in disk.log]
    assert kinds == [Create, Write, Fsync, FsyncDir, Create, Write, Fsync, Replace, FsyncDir]
    assert disk.names() == {"acks", "info"}
    info = decode_info(bytes(disk.files["/q/info"]), "/q/info")
    assert (info.head.seq, info.tail, info.chunksize) == (0, 0, 4)
    assert (state.head, state.read, state.tail, state.size) == (0, 0, 0, 0)
    assert len(disk.files["/q/acks"]) == state.config.policy.ack_log_bytes


def test_the_first_put_of_a_chunk_creates_and_preallocates_it_durably() -> None:
    _, state = fresh(prealloc_bytes=4096)
    state, effects = transitions.put(state, b"item")
    path = chunk_path(state.config, 0)
    assert [type(e) for e in effects] == [Create, Write, Fsync, FsyncDir]
    assert effects[0] == Create(path)
    write = effects[1]
    assert isinstance(write, Write)
    assert (write.offset, len(write.data)) == (0, 4096)
    assert effects[2:] == (Fsync(path), FsyncDir("/q"))
    assert (state.head, state.head_offset, state.size) == (1, HEADER_SIZE + 4, 1)


def test_a_later_put_writes_into_preallocated_space_and_fsyncs() -> None:
    _, state = fresh(prealloc_bytes=4096)
    state, _ = transitions.put(state, b"one")
    offset = state.head_offset
    state, effects = transitions.put(state, b"two")
    path = chunk_path(state.config, 0)
    assert effects[0] == Write(path, offset, effects[0].data)  # type: ignore[union-attr]
    assert effects[1:] == (Fsync(path),)


def test_a_put_past_the_preallocation_extends_it() -> None:
    _, state = fresh(prealloc_bytes=4096)
    state, _ = transitions.put(state, b"x" * 3000)
    state, effects = transitions.put(state, b"y" * 3000)
    write = effects[0]
    assert isinstance(write, Write)
    assert write.offset + len(write.data) == state.ledger.alloc
    assert state.ledger.alloc % 4096 == 0 and state.ledger.alloc >= 2 * (3000 + HEADER_SIZE)


def test_a_put_in_flush_mode_only_writes() -> None:
    _, state = fresh(durability="flush")
    state, first = transitions.put(state, b"one")
    assert [type(e) for e in first] == [Create, Write]
    state, second = transitions.put(state, b"two")
    assert [type(e) for e in second] == [Write]


def test_filling_a_chunk_releases_it_and_counts_a_crossing() -> None:
    _, state = fresh(chunksize=2, checkpoint_every=10)
    state, _ = transitions.put(state, b"a")
    state, effects = transitions.put(state, b"b")
    assert effects[-1] == Release(chunk_path(state.config, 0))
    assert (state.head, state.head_offset, state.ledger.crossings) == (2, 0, 1)


def test_a_filled_chunk_is_written_back_early_in_flush_mode_only() -> None:
    # Flush mode fdatasyncs the chunks at the next checkpoint; starting their write-back as
    # each fills lets that checkpoint find the data on disk already.
    _, state = fresh(chunksize=2, checkpoint_every=10, durability="flush")
    state, _ = transitions.put(state, b"a")
    state, effects = transitions.put(state, b"b")
    path = chunk_path(state.config, 0)
    assert effects[-2:] == (WriteBack(path), Release(path))
    _, state = fresh(chunksize=2, checkpoint_every=10, durability="fsync")
    state, _ = transitions.put(state, b"a")
    state, effects = transitions.put(state, b"b")
    assert not any(isinstance(e, WriteBack) for e in effects)


def test_a_checkpoint_follows_enough_crossings() -> None:
    disk, state = fresh(chunksize=1, checkpoint_every=2)
    state = disk.put(state, b"a")
    assert state.ledger.checkpoint.head.seq == 0
    assert not transitions.wants_checkpoint(state)
    state, effects = transitions.put(state, b"b")
    assert not any(isinstance(e, Replace) for e in effects)  # a put never checkpoints itself
    assert transitions.wants_checkpoint(state)
    state, effects = transitions.checkpoint(state)
    assert Replace("/q/info.tmp", "/q/info") in effects
    assert state.ledger.checkpoint.head.seq == 2
    assert state.ledger.crossings == 0


def test_a_flush_checkpoint_makes_the_chunks_durable_before_info() -> None:
    disk, state = fresh(durability="flush", chunksize=2, checkpoint_every=100)
    for item in (b"a", b"b", b"c"):
        state = disk.put(state, item)
    state, effects = transitions.checkpoint(state)
    replace_at = effects.index(Replace("/q/info.tmp", "/q/info"))
    before = effects[:replace_at]
    assert Fsync("/q/q00000") in before and Fsync("/q/q00001") in before
    assert FsyncDir("/q") in before[: before.index(Create("/q/info.tmp"))]


def test_delivering_advances_read_and_skips_nothing_else() -> None:
    disk, state = fresh()
    state = disk.put(state, b"a")
    state, seq, payload = disk.deliver(state)
    assert (seq, payload, state.read, state.size, state.outstanding) == (0, b"a", 1, 0, 1)


def test_delivering_at_the_head_is_refused() -> None:
    _, state = fresh()
    with pytest.raises(ValueError, match="no item"):
        transitions.deliver(state, 0, 10)


def test_delivering_a_record_of_another_item_is_corruption() -> None:
    disk, state = fresh()
    state = disk.put(state, b"a")
    with pytest.raises(CorruptQueueError, match="expected item 0, found item 5") as raised:
        transitions.deliver(state, 5, 30)
    assert raised.value.path == "/q/q00000"


def test_discarding_moves_read_and_acknowledges_durably() -> None:
    disk, state = fresh(chunksize=10)
    for item in (b"a", b"b", b"c", b"d"):
        state = disk.put(state, item)
    state, _, _ = disk.deliver(state)  # item 0 delivered, not acknowledged
    offset_of_3 = state.read_offset + 2 * (HEADER_SIZE + 1)
    state, effects = transitions.discard(state, 3, offset_of_3)
    assert (state.read, state.read_offset, state.size) == (3, offset_of_3, 1)
    assert (state.tail, state.acked) == (0, (1, 3))  # item 0 still outstanding
    assert Replace("/q/info.tmp", "/q/info") in effects  # a checkpoint records it
    disk.apply(effects)
    info = decode_info(bytes(disk.files["/q/info"]), "/q/info")
    assert info.acked == ((1, 3),)
    state, seq, payload = disk.deliver(state)
    assert (seq, payload) == (3, b"d")


@pytest.mark.parametrize("seq", [0, 1, 4])
def test_discarding_outside_read_to_head_is_refused(seq: int) -> None:
    disk, state = fresh(chunksize=10)
    for item in (b"a", b"b", b"c"):
        state = disk.put(state, item)
    state, _, _ = disk.deliver(state)
    with pytest.raises(ValueError, match="cannot discard"):
        transitions.discard(state, seq, 0)


def test_dropping_the_waiting_items_acknowledges_them_in_one_checkpoint() -> None:
    disk, state = fresh(chunksize=10)
    for item in (b"a", b"b", b"c", b"d", b"e"):
        state = disk.put(state, item)
    state, _, _ = disk.deliver(state)  # item 0: outstanding
    state, _, _ = disk.deliver(state)  # item 1: given back below
    state = transitions.give_back(state, 1)
    assert (state.size, state.outstanding) == (4, 1)
    state, effects = transitions.drop_waiting(state, [1])
    assert (state.read, state.size, state.outstanding) == (5, 0, 1)
    assert (state.tail, state.acked) == (0, (1, 5))  # item 0 still outstanding
    assert Replace("/q/info.tmp", "/q/info") in effects
    assert not any(type(effect) is Write and effect.path == "/q/acks" for effect in effects)
    disk.apply(effects)
    info = decode_info(bytes(disk.files["/q/info"]), "/q/info")
    assert (info.tail, info.acked) == (0, ((1, 5),))
    state, effects = transitions.ack(state, 0)
    assert (state.tail, state.acked, state.unfinished) == (5, (), 0)


def test_dropping_everything_drains_the_queue_and_deletes_its_chunks() -> None:
    disk, state = fresh(chunksize=2)
    for item in (b"a", b"b", b"c"):
        state = disk.put(state, item)
    state, effects = transitions.drop_waiting(state)
    assert state.tail == state.head == state.read == 4  # the next chunk boundary
    assert Unlink("/q/q00000") in effects
    assert state.size == state.outstanding == 0


@pytest.mark.parametrize("seq", [0, 2, 3])
def test_dropping_an_item_not_given_back_is_refused(seq: int) -> None:
    disk, state = fresh(chunksize=10)
    for item in (b"a", b"b", b"c"):
        state = disk.put(state, item)
    state, _, _ = disk.deliver(state)
    state, _, _ = disk.deliver(state)
    state, _ = transitions.ack(state, 0)
    with pytest.raises(ValueError, match="not a delivered item given back"):
        transitions.drop_waiting(state, [seq])


def test_acknowledging_writes_one_durable_record() -> None:
    disk, state = fresh()
    state = disk.put(state, b"a")
    state, _, _ = disk.deliver(state)
    state, effects = transitions.ack(state, 0)
    assert [type(e) for e in effects] == [Write, Fsync]
    assert effects[0] == Write("/q/acks", 0, effects[0].data)  # type: ignore[union-attr]
    assert (state.tail, state.ack_offset, state.unfinished) == (1, ACK_RECORD_SIZE, 0)


@pytest.mark.parametrize("seq", [-1, 1, 2, 5])
def test_acknowledging_what_is_not_outstanding_is_refused(seq: int) -> None:
    disk, state = fresh()
    for item in (b"a", b"b"):
        state = disk.put(state, item)
    state, _, _ = disk.deliver(state)
    with pytest.raises(ValueError, match="not an outstanding delivery"):
        transitions.ack(state, seq)


def test_out_of_order_acks_move_the_tail_when_the_gap_closes() -> None:
    disk, state = fresh(chunksize=10)
    for item in (b"a", b"b", b"c"):
        state = disk.put(state, item)
    for _ in range(3):
        state, _, _ = disk.deliver(state)
    state = disk.run(transitions.ack(state, 2))
    state = disk.run(transitions.ack(state, 1))
    assert (state.tail, state.acked) == (0, (1, 3))
    with pytest.raises(ValueError):
        transitions.ack(state, 1)
    state = disk.run(transitions.ack(state, 0))
    assert (state.tail, state.acked, state.outstanding) == (3, (), 0)


def test_a_full_ack_log_is_folded_into_a_checkpoint() -> None:
    disk, state = fresh(chunksize=100, ack_log_bytes=2 * ACK_RECORD_SIZE)
    for i in range(4):
        state = disk.put(state, bytes([i]))
    for _ in range(3):
        state, _, _ = disk.deliver(state)
    generation = state.ledger.checkpoint.ack_generation
    state = disk.run(transitions.ack(state, 0))
    state = disk.run(transitions.ack(state, 1))
    state, effects = transitions.ack(state, 2)
    assert Replace("/q/info.tmp", "/q/info") in effects
    assert not any(isinstance(e, Write) and e.path == "/q/acks" for e in effects)
    assert state.ledger.checkpoint.tail == 3
    assert (state.ack_offset, state.ledger.checkpoint.ack_generation) == (0, generation + 1)


def test_draining_in_fsync_mode_deletes_the_consumed_chunks_at_once() -> None:
    disk, state = fresh(chunksize=2, checkpoint_every=100)
    for i in range(5):
        state = disk.put(state, bytes([i]))
    for seq in range(4):
        state, _, _ = disk.deliver(state)
        state = disk.ack(state, seq)
    assert disk.chunks() == ["q00000", "q00001", "q00002"]  # item 4 waits: not drained
    state, _, _ = disk.deliver(state)
    state = disk.ack(state, 4)
    assert disk.chunks() == []  # drained: the consumed chunks went, the head chunk too
    assert (state.head, state.tail, state.read) == (6, 6, 6)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_drained_checkpoint_skips_to_the_next_chunk_and_deletes_the_head_chunk(
    durability: str,
) -> None:
    disk, state = fresh(chunksize=10, durability=durability)
    for i in range(3):
        state = disk.put(state, bytes([i]) * 1000)
    for seq in range(3):
        state, _, _ = disk.deliver(state)
        state = disk.run(transitions.ack(state, seq))
    assert transitions.reclaimable(state) and disk.chunks() == ["q00000"]
    state, effects = transitions.checkpoint(state)
    assert not any(isinstance(e, Fsync) and e.path.startswith("/q/q") for e in effects)
    disk.apply(effects)
    assert disk.chunks() == []  # a drained queue keeps no chunk file
    assert (state.head, state.head_offset, state.read, state.tail) == (10, 0, 10, 10)
    assert not transitions.reclaimable(state)
    state = disk.put(state, b"next")
    assert disk.chunks() == ["q00001"]
    reopened = disk.recover(state.config)
    state, seq, payload = disk.deliver(reopened)
    assert (seq, payload) == (10, b"next")


def test_close_checkpoints_only_what_changed() -> None:
    disk, state = fresh()
    state, effects = transitions.close(state)
    assert all(isinstance(e, Release) for e in effects)
    state = disk.put(state, b"a")
    state, effects = transitions.close(state)
    assert Replace("/q/info.tmp", "/q/info") in effects


def test_an_immediate_shutdown_drops_the_waiting_items_from_the_session_only() -> None:
    disk, state = fresh()
    for item in (b"a", b"b"):
        state = disk.put(state, item)
    assert transitions.shutdown(state, immediate=False) is state
    after = transitions.shutdown(state, immediate=True)
    assert (after.size, after.unfinished, after.head) == (0, 0, 2)
    state = disk.run(transitions.close(after))
    reopened = disk.recover(state.config)
    assert reopened.size == 2


# --- recovery --------------------------------------------------------------------------------


def test_reopening_with_another_serializer_is_refused() -> None:
    disk, _ = fresh()
    with pytest.raises(SerializerMismatchError, match=r"'pickle'.*'json'"):
        disk.recover(config(serializer="json"))


def test_the_recorded_chunksize_wins() -> None:
    disk, state = fresh(chunksize=3)
    state = disk.put(state, b"a")
    reopened = disk.recover(config(chunksize=50))
    assert reopened.config.chunksize == 3


def test_recovery_finds_puts_made_after_the_checkpoint() -> None:
    disk, state = fresh(chunksize=3, checkpoint_every=100)
    for i in range(7):
        state = disk.put(state, bytes([i]))
    assert state.ledger.checkpoint.head.seq == 0
    reopened = disk.recover(state.config)
    assert (reopened.head, reopened.head_offset, reopened.size) == (7, state.head_offset, 7)


def test_recovery_cuts_a_torn_tail_and_keeps_the_whole_records() -> None:
    disk, state = fresh(chunksize=10)
    for i in range(3):
        state = disk.put(state, bytes([i]) * 5)
    data = disk.files["/q/q00000"]
    end = state.head_offset
    data[end - 4 : end] = b"\x00\x00\x00\x00"  # the last record torn
    data[end:] = b"\xd1garbage" * 20
    reopened = disk.recover(state.config)
    assert (reopened.head, reopened.size) == (2, 2)
    assert len(disk.files["/q/q00000"]) == reopened.head_offset


def test_recovery_refuses_damage_before_later_records_in_fsync_mode() -> None:
    disk, state = fresh(chunksize=10)
    for i in range(4):
        state = disk.put(state, bytes([i]) * 5)
    second = HEADER_SIZE + 5
    disk.files["/q/q00000"][second + 20] ^= 0xFF
    with pytest.raises(CorruptQueueError, match="item 1 is damaged, but item 2") as raised:
        disk.recover(state.config)
    assert (raised.value.path, raised.value.offset) == ("/q/q00000", second)


def test_recovery_drops_unsynced_later_records_in_flush_mode() -> None:
    disk, state = fresh(chunksize=10, durability="flush")
    for i in range(4):
        state = disk.put(state, bytes([i]) * 5)
    second = HEADER_SIZE + 5
    disk.files["/q/q00000"][second + 20] ^= 0xFF
    reopened = disk.recover(state.config)
    assert (reopened.head, reopened.size) == (1, 1)


def test_recovery_refuses_a_missing_chunk_between_tail_and_head() -> None:
    disk, state = fresh(chunksize=2)
    for i in range(6):
        state = disk.put(state, bytes([i]))
    state = disk.run(transitions.checkpoint(state))
    del disk.files["/q/q00001"]
    with pytest.raises(CorruptQueueError, match=r"missing.*items 2 to 3") as raised:
        disk.recover(state.config)
    assert raised.value.path == "/q/q00001"


def test_recovery_refuses_a_lost_ack_log() -> None:
    disk, state = fresh()
    del disk.files["/q/acks"]
    with pytest.raises(CorruptQueueError, match="ack log is missing"):
        disk.recover(state.config)


def test_recovery_of_a_new_queue_ignores_garbage_chunks_but_not_real_ones() -> None:
    disk = MemDisk()
    disk.files["/q/q00000"] = bytearray(b"\xd1 not a record at all" * 10)
    disk.files["/q/info.tmp"] = bytearray(b"half a checkpoint")
    state = disk.recover(config())
    assert disk.names() == {"acks", "info"}
    state = disk.put(state, b"a")
    del disk.files["/q/info"]
    with pytest.raises(CorruptQueueError, match="info file is missing, but /q/q00000 holds"):
        disk.recover(state.config)


# --- a model-checked run of the core ---------------------------------------------------------


class CoreMachine(RuleBasedStateMachine):
    """put/deliver/ack/checkpoint/reopen on the core and a MemDisk, against a model.

    The model: ``items`` maps each unacknowledged seq to its payload; ``delivered`` the seqs
    delivered since the last open. After a reopen every unacknowledged item is delivered
    again, in put order.
    """

    delivered_seqs = Bundle("delivered_seqs")

    def __init__(self) -> None:
        super().__init__()
        self.disk = MemDisk()
        self.state: QueueState | None = None
        self.items: dict[int, bytes] = {}
        self.delivered: list[int] = []
        self.next_payload = 0

    @initialize(
        chunksize=st.integers(min_value=1, max_value=5),
        durability=st.sampled_from(["fsync", "flush"]),
        every=st.integers(min_value=1, max_value=4),
        ack_bytes=st.integers(min_value=1, max_value=6),
    )
    def open(self, chunksize: int, durability: str, every: int, ack_bytes: int) -> None:
        self.state = self.disk.recover(
            config(
                chunksize=chunksize, durability=durability, checkpoint_every=every,
                ack_log_bytes=ack_bytes * ACK_RECORD_SIZE,
            )
        )

    @property
    def s(self) -> QueueState:
        assert self.state is not None
        return self.state

    def waiting(self) -> list[int]:
        return sorted(seq for seq in self.items if seq not in self.delivered)

    @rule(size=st.integers(min_value=0, max_value=40))
    def put(self, size: int) -> None:
        payload = self.next_payload.to_bytes(4, "big") * (size // 4 + 1)
        self.next_payload += 1
        seq = self.s.head
        self.state = self.disk.put(self.s, payload)
        self.items[seq] = payload

    @precondition(lambda self: self.state is not None and self.state.size > 0)
    @rule(target=delivered_seqs)
    def deliver(self) -> int:
        self.state, seq, payload = self.disk.deliver(self.s)
        expected = self.waiting()[0]
        assert seq == expected, f"delivered {seq}, expected {expected}"
        assert payload == self.items[seq]
        self.delivered.append(seq)
        return seq

    @rule(seq=consumes(delivered_seqs))
    def ack(self, seq: int) -> None:
        assume(seq in self.delivered)
        self.state = self.disk.ack(self.s, seq)
        self.delivered.remove(seq)
        del self.items[seq]

    @rule()
    def checkpoint(self) -> None:
        self.state = self.disk.run(transitions.checkpoint(self.s))

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if clean:
            self.state = self.disk.run(transitions.close(self.s))
        self.state = self.disk.recover(self.s.config)
        self.delivered.clear()
        note(f"reopened: {self.state}")

    @invariant()
    def positions_are_ordered(self) -> None:
        if self.state is not None:
            s = self.state
            assert 0 <= s.tail <= s.read <= s.head
            assert all(s.tail <= seq <= s.head for seq in s.acked)
            assert list(s.acked) == sorted(set(s.acked))  # ranges sorted and apart

    @invariant()
    def counts_match_the_model(self) -> None:
        if self.state is not None:
            assert self.state.size == len(self.waiting())
            assert self.state.unfinished == len(self.items)
            assert self.state.outstanding == len(self.delivered)

    @invariant()
    def consumed_chunks_are_deleted_in_time(self) -> None:
        if self.state is not None:
            cs = self.s.config.chunksize
            oldest = self.s.ledger.checkpoint.tail // cs
            for name in self.disk.chunks():
                assert int(name[1:]) >= oldest, f"{name} outlived checkpoint {oldest}"


TestCoreMachine = CoreMachine.TestCase


@given(st.lists(st.binary(max_size=30), max_size=30), st.integers(min_value=1, max_value=7))
def test_every_put_comes_back_in_order_after_a_reopen(items: list[bytes], chunksize: int) -> None:
    disk, state = fresh(chunksize=chunksize)
    for item in items:
        state = disk.put(state, item)
    state = disk.recover(state.config)
    got = []
    while state.size:
        state, _, payload = disk.deliver(state)
        got.append(payload)
    assert got == items


def test_what_a_step_created_is_what_undoing_it_removes() -> None:
    _, state = fresh(prealloc_bytes=4096)
    _, effects = transitions.put(state, b"first of a chunk")
    assert transitions.undo_created(effects) == (Unlink(chunk_path(state.config, 0)),)
    _, effects = transitions.checkpoint(state)
    assert transitions.undo_created(effects) == (Unlink("/q/info.tmp"),)
    state, _ = transitions.put(state, b"a")
    _, effects = transitions.put(state, b"b")  # into the chunk that exists
    assert transitions.undo_created(effects) == ()


# --- batches: put_many against put, and coalesce ----------------------------------------------

from pqueue.core.codec import (  # noqa: E402
    BATCH_END_MAGIC,
    BATCH_FIRST_MAGIC,
    BATCH_MAGIC,
    ITEM_MAGIC,
    Record,
    decode,
)
from pqueue.core.effects import Effect, Truncate  # noqa: E402

Files = dict[str, bytearray]


def interpret(files: Files, effects: tuple[Effect, ...] | list[Effect]) -> Files:
    """What ``effects`` leave of ``files`` (a copy), for Write, Create, Truncate and Unlink;
    every other effect changes no content. A write past the end fills the gap with zeros,
    as does a truncate to a larger size."""
    out = {path: bytearray(data) for path, data in files.items()}
    for effect in effects:
        if isinstance(effect, Write):
            data = out.setdefault(effect.path, bytearray())
            end = effect.offset + len(effect.data)
            if len(data) < end:
                data.extend(bytes(end - len(data)))
            data[effect.offset : end] = effect.data
        elif isinstance(effect, Create):
            out[effect.path] = bytearray()
        elif isinstance(effect, Truncate):
            data = out.setdefault(effect.path, bytearray())
            if len(data) < effect.size:
                data.extend(bytes(effect.size - len(data)))
            del data[effect.size :]
        elif isinstance(effect, Unlink):
            out.pop(effect.path, None)
    return out


def fold_puts(
    state: QueueState, payloads: list[bytes], batch_magic: bool = False
) -> tuple[QueueState, list[Effect], list[tuple[str, int]]]:
    """``put`` of each payload in turn: the state, the effects, and where each record went
    (its chunk path and offset). With ``batch_magic``, the first record is put under
    ``BATCH_FIRST_MAGIC``, the last under ``BATCH_END_MAGIC`` and those between under
    ``BATCH_MAGIC``, as ``put_many`` marks them (a batch of one is a plain put)."""
    effects: list[Effect] = []
    where = []
    for i, payload in enumerate(payloads):
        where.append((chunk_path(state.config, state.head // state.config.chunksize),
                      state.head_offset))
        magic = ITEM_MAGIC
        if batch_magic and len(payloads) > 1:
            last = len(payloads) - 1
            magic = BATCH_FIRST_MAGIC if i == 0 else BATCH_END_MAGIC if i == last else BATCH_MAGIC
        state, made = transitions.put(state, payload, magic)
        effects.extend(made)
    return state, effects, where


payload_lists = st.lists(
    st.one_of(st.binary(max_size=60), st.builds(lambda n: b"L" * n, st.integers(60_000, 70_000))),
    min_size=1, max_size=8,
)


@given(
    st.integers(1, 4), st.sampled_from(["fsync", "flush"]), st.integers(0, 5), payload_lists,
    st.sampled_from([0, 512, 4096]),
)
def test_put_many_is_the_puts_one_by_one_with_the_batch_marked(
    chunksize: int, durability: str, before: int, payloads: list[bytes], prealloc: int
) -> None:
    disk, state = fresh(chunksize=chunksize, durability=durability, prealloc_bytes=prealloc)
    for i in range(before):
        state = disk.run(transitions.put(state, b"before-%d" % i))
    files = {path: bytearray(data) for path, data in disk.files.items()}

    many, effects = transitions.put_many(state, payloads)
    one_by_one, singles, where = fold_puts(state, payloads)
    assert many == one_by_one

    # The same bytes as the puts made one by one, but for the marker and CRC (bytes 0 to 4)
    # of the batch's records: the first under BATCH_FIRST_MAGIC, the last under a marker the
    # codec reads as a batch's last record, those between under BATCH_MAGIC (more follow).
    after_many = interpret(files, effects)
    plain = interpret(files, singles)
    assert after_many.keys() == plain.keys()
    salt = state.config.salt
    for i, (path, offset) in enumerate(where):
        got = after_many[path]
        rec = decode(bytes(got), offset, ITEM_MAGIC, salt, 0)
        assert isinstance(rec, Record) and rec.seq == state.head + i
        last = i == len(payloads) - 1
        assert rec.more == (not last)
        assert rec.first == (i == 0 and not last)
        assert rec.batch == (len(payloads) > 1)
        if 0 < i < len(payloads) - 1:
            assert got[offset] == BATCH_MAGIC
        plain[path][offset : offset + 5] = got[offset : offset + 5]
    assert after_many == plain

    # One write per chunk file, one fsync of each in fsync mode (none in flush mode), after
    # every write; the directory fsynced once if a chunk was created, in fsync mode.
    writes = [e for e in effects if isinstance(e, Write)]
    written = [e.path for e in writes]
    assert len(written) == len(set(written))
    assert set(written) == {path for path, _ in where}
    fsyncs = [e for e in effects if isinstance(e, Fsync)]
    created = [e for e in effects if isinstance(e, Create)]
    dir_syncs = [e for e in effects if isinstance(e, FsyncDir)]
    if durability == "fsync":
        assert sorted(e.path for e in fsyncs) == sorted(set(written))
        last_write = max(i for i, e in enumerate(effects) if isinstance(e, Write))
        assert all(effects.index(e) > last_write for e in fsyncs)
        assert dir_syncs == ([FsyncDir("/q")] if created else [])
    else:
        # Only the syncs of chunk crossings: each the chunk before the one just filled,
        # never one the batch is still writing after.
        assert not dir_syncs
        assert {e.path for e in fsyncs} == {
            e.path for e in singles if isinstance(e, Fsync)
        }
        newest = max(path for path, _ in where)
        assert all(e.path < newest for e in fsyncs)


def test_put_many_of_one_item_is_a_put() -> None:
    _, state = fresh(prealloc_bytes=4096)
    assert transitions.put_many(state, [b"only"]) == transitions.put(state, b"only")


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_an_empty_batch_is_refused(durability: str) -> None:
    _, state = fresh(durability=durability)
    with pytest.raises(ValueError, match="at least one item"):
        transitions.put_many(state, [])


paths = st.sampled_from(["/q/a", "/q/b"])
effect_lists = st.lists(
    st.one_of(
        st.builds(Write, paths, st.integers(0, 40), st.binary(max_size=12)),
        st.builds(Write, paths, st.integers(0, 40), st.binary(max_size=12)),  # more writes
        st.builds(Create, paths),
        st.builds(Truncate, paths, st.integers(0, 40)),
        st.builds(Unlink, paths),
        st.builds(Fsync, paths),
        st.builds(Release, paths),
        st.builds(WriteBack, paths),
        st.just(FsyncDir("/q")),
    ),
    max_size=20,
)


@given(effect_lists, st.dictionaries(paths, st.binary(max_size=30).map(bytearray)))
def test_coalesced_effects_leave_the_files_the_effects_leave(
    effects: list[Effect], files: Files
) -> None:
    merged = transitions.coalesce(effects)
    note(f"coalesced: {merged}")
    assert interpret(files, merged) == interpret(files, effects)
    # Each fsync and release once, after everything else; no write more than given.
    kinds = [type(e) for e in merged]
    tail = [e for e in merged if type(e) in (Fsync, FsyncDir, Release)]
    assert merged[len(merged) - len(tail) :] == tuple(tail)
    assert len(tail) == len(set(tail))
    assert set(tail) == {e for e in effects if type(e) in (Fsync, FsyncDir, Release)}
    assert kinds.count(Write) <= sum(type(e) is Write for e in effects)


def test_coalesce_merges_a_write_that_follows_on_and_one_that_overlaps() -> None:
    merged = transitions.coalesce([
        Write("/q/a", 0, b"abc"), Fsync("/q/a"), Write("/q/a", 3, b"def"),
        Write("/q/a", 1, b"XY"), Fsync("/q/a"), Write("/q/a", 10, b"gap"),
    ])
    assert merged == (Write("/q/a", 0, b"aXYdef"), Write("/q/a", 10, b"gap"), Fsync("/q/a"))
    merged = transitions.coalesce([
        Write("/q/a", 0, b"abc"), Truncate("/q/a", 1), Write("/q/a", 1, b"d"),
    ])
    assert merged == (Write("/q/a", 0, b"abc"), Truncate("/q/a", 1), Write("/q/a", 1, b"d"))
