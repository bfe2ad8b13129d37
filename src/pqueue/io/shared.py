"""Participants: the shell of a queue that several Queue objects and processes share.

Every Queue object is a *participant*. Its ``SharedShell`` is a ``Shell`` that also keeps the
*holds*: which delivered item is held by which participant, since when, for how many
deliveries, and which items were given back to be delivered again. Exclusive queues
(``Queue(..., exclusive=True)``) keep their holds in memory only. Shared queues (the
default) keep the whole state, holds included, in the ``shared`` file
(``pqueue.core.snapshot``), and each operation runs between ``enter`` and ``leave``:

- ``enter`` takes an exclusive lock on ``shared`` (blocking: other participants hold it for
  one operation at a time), and reads it; when another participant changed it since, the
  shell adopts what it says (re-reading ``info`` when a checkpoint was made meanwhile).
- ``leave`` writes the state back (when it changed), writes ``ready`` when the operation
  left more items waiting than it found (getters waiting in other processes watch it), lets
  the lock go, and then makes an acknowledgement the operation wrote durable (its
  ``fdatasync`` after the lock, so that several consumers' overlap).

Liveness needs no clock: each participant holds an exclusive lock on a file of its own,
``peer-<id>``, for as long as it is open. A participant that finds it can take that lock
(``FileSystem.probe``) knows its holder is gone (closed, collected, or its process died), and
gives back what it held. Every participant also holds a *shared* lock on ``lock``, which a
Queue opened with ``exclusive=True`` takes exclusively: the two kinds never mix.

With ``max_attempts``, an item delivered that many times is moved to the dead-letter queue
instead of being delivered again: its dead letter is put first, then it is acknowledged
here, and a move cut short is finished once (``_bury``, ``finish_move``, ``recall_buried``).

A participant that dies between two effects leaves ``shared`` as its last finished
operation wrote it. The orphaned bytes it may have written past the head of a chunk or of
the ack log are overwritten by the next put or acknowledgement, as they would be after a
crash. A checkpoint is the one operation that is not safe to abandon (it starts a new
generation of the ack log): the shell marks ``shared`` busy before it, and a participant that
finds it busy makes the checkpoint again from the state recorded there.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import attrs

from pqueue.core import ranges, transitions
from pqueue.core.codec import Info, decode_info
from pqueue.core.deadletter import encode_dead_letter
from pqueue.core.effects import Effect, Replace
from pqueue.core.errors import (
    LeaseExpiredError,
    QueueLocked,
    SerializerMismatchError,
    SharedStateError,
)
from pqueue.core.snapshot import (
    BURIED,
    BUSY_CHECKPOINT,
    Hold,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    snapshot_of,
    snapshot_size,
    state_of,
)
from pqueue.core.state import Config, Ledger, QueueState, chunk_path
from pqueue.io.fs import FileMutex, FileSystem, Lock, OsFileSystem, Watch
from pqueue.io.shell import Shell, apply, check_regular, log, observe

__all__ = ["PEER_PREFIX", "DeadLetterSink", "SharedShell", "join", "peer_path", "shared_path"]

PEER_PREFIX = "peer-"
_ROOM = 4096  # bytes the ``shared`` file is given at once
_READ = 4096  # bytes of ``shared`` read at first; a larger snapshot is read whole after
_new = tuple.__new__
_NEVER = float("inf")
READY = "ready"  # written whenever an operation leaves more items waiting than it found


# The signals held back during an operation on a shared queue: all but those the kernel
# raises for a fault of the process itself, which cannot wait.
_SYNCHRONOUS = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS"}
_HELD_BACK = frozenset(
    sig for sig in signal.valid_signals()
    if getattr(sig, "name", "") not in _SYNCHRONOUS and sig not in (signal.SIGKILL, signal.SIGSTOP)
) if hasattr(signal, "pthread_sigmask") else frozenset()


# The C function itself: ``signal.pthread_sigmask`` turns the mask it returns into a set of
# enum members, which costs tens of microseconds per call.
_sigmask: Callable[[int, Iterable[int]], set[int]] = getattr(
    importlib.import_module("_signal"), "pthread_sigmask", signal.pthread_sigmask
)
_HELD_BACK_INTS = tuple(int(sig) for sig in _HELD_BACK)


def _signal_mask() -> set[int] | None:
    """The signals blocked now (None where masks cannot be set), to restore later. Asked
    before blocking any: a handler's exception landing right after a call that blocked them
    would leave them blocked with nobody holding the mask to restore."""
    if not _HELD_BACK_INTS:
        return None
    return _sigmask(signal.SIG_BLOCK, ())


def _block_signals() -> None:
    if _HELD_BACK_INTS:
        _sigmask(signal.SIG_BLOCK, _HELD_BACK_INTS)


def _restore_signals(mask: set[int] | None) -> None:
    if mask is not None:
        _sigmask(signal.SIG_SETMASK, mask)


def shared_path(directory: str) -> str:
    return f"{directory}/shared"


def peer_path(directory: str, owner: int) -> str:
    return f"{directory}/{PEER_PREFIX}{owner:016x}"


class DeadLetterSink(Protocol):
    """Where a queue with ``max_attempts`` moves the items that ran out of attempts: its
    dead-letter queue, opened when first needed."""

    def head(self) -> int:
        """The seq the next dead letter will get (the dead-letter queue's head)."""
        ...

    def bury(self, record: bytes) -> None:
        """Put one dead-letter record (durable on return in fsync mode)."""
        ...

    def origins(self) -> list[int]:
        """The seqs (in the queue they came from) of the dead letters not acknowledged in
        the dead-letter queue; none when it does not exist."""
        ...


class SharedShell(Shell):
    """A ``Shell`` with holds, shared with other participants when ``shared`` is set.

    ``me`` is this participant's id (never 0). The Queue calls every method under its own
    mutex; with ``shared`` set, between ``enter`` and ``leave``.
    """

    def __init__(self, fs: FileSystem, state: QueueState) -> None:
        super().__init__(fs, state)
        self.me = 1
        self.shared = False
        # seq -> Hold, for every delivered item not acknowledged, and every item given back.
        self.holds: dict[int, Hold] = {}
        self.waiting: list[int] = []  # the seqs of the holds given back (owner 0), sorted
        # seq -> deliveries counted before the last recovery, for items not delivered since.
        self.prior: dict[int, int] = {}
        self.member: Lock | None = None  # shared lock on ``lock``
        self.peer: Lock | None = None  # exclusive lock on ``peer-<me>``
        self.path = shared_path(state.config.directory)
        self.ready_path = f"{state.config.directory}/{READY}"
        self._entered_size = 0  # the number of items waiting when the operation started
        self._boot = ""
        self._op: Lock | None = None
        self._sigmask: set[int] | None = None  # the signals blocked before ``enter``
        # On the real disk, the lock on ``shared`` is taken over one cached descriptor.
        self._mutex: FileMutex | None = None
        self._seen = b""  # the snapshot last read or written
        self._counter = 0
        self._published = state  # the state in that snapshot
        self._changed = False  # whether the holds changed since
        # Dead letters: the limit on deliveries (None: none), where items beyond it go,
        # and the item being moved there now, with the dead-letter queue's head before.
        # A bound below the end of every lease among the holds (see ``reap``).
        self._earliest = 0.0
        self.max_attempts: int | None = None
        self.sink: DeadLetterSink | None = None
        self._moving: tuple[int, int] | None = None
        # During a step that changed the holds ahead of a checkpoint it may make (``settle``,
        # ``purge``): the state before it, the holds it removed and the attempt counts
        # before it, for the busy snapshot of the state before the step (while that state
        # is still the current one: not for a checkpoint that follows the step).
        self._before: tuple[QueueState, tuple[Hold, ...], dict[int, int]] | None = None

    # --- the critical section ------------------------------------------------------------

    def enter(self) -> None:
        """Start an operation: lock ``shared`` and catch up with what others did. Nothing
        to do when the operation is started already."""
        if not self.shared or self._op is not None:
            return
        # Signals wait until the operation is over: a handler's exception (Ctrl-C, an alarm)
        # landing between taking the lock and letting it go would leave it held, and every
        # participant waiting for it. No Python code runs a handler while they are blocked.
        self._sigmask = _signal_mask()
        try:
            _block_signals()
            mutex = self._mutex
            if mutex is not None:
                mutex.acquire()
                op: Lock = mutex
            else:
                op = self.fs.lock(self.path, blocking=True)
            self._op = op
            try:
                self._sync()
                self._entered_size = self.state.size
            except BaseException:
                self._op = None
                op.release()
                raise
        except BaseException:
            _restore_signals(self._sigmask)
            raise

    def leave(self) -> None:
        """End an operation: write the state back if it changed, and unlock ``shared``.
        Nothing is written when the shell is dirty (an exception escaped in the middle of
        applying effects): the others then see the state from before the operation."""
        op = self._op
        if op is None:
            return
        try:
            try:
                if not self.dirty and (self._changed or self.state is not self._published):
                    self._publish()
                    if self.state.size > self._entered_size:
                        self.fs.write(self.ready_path, b"\x01", 0)  # wakes getters waiting
            finally:
                self._op = None
                op.release()
            unsynced = self.unsynced
            if unsynced is not None and not self.hold_sync:
                # An acknowledgement's record, written under the lock, made durable after
                # it (signals still held back, so the call is whole when one lands): the
                # fsyncs of several participants overlap instead of queueing for the lock.
                # Its slot of the ack log stays its own until a checkpoint has recorded it.
                self.unsynced = None
                apply(self.fs, (unsynced,))
        finally:
            _restore_signals(self._sigmask)

    def abandon(self) -> None:
        """Let go of the lock on ``shared`` (if held: an exception may have landed between
        taking it and noting it) and of this participant's own lock, writing nothing: the
        shell is broken, and the others take back what it held."""
        op, self._op = self._op, None
        try:
            if self._mutex is not None:
                self._mutex.release()
            elif op is not None:
                op.release()
        finally:
            if op is not None:
                _restore_signals(self._sigmask)
            if self.peer is not None:
                self.peer.release()

    def _publish(
        self, busy: int = 0, state: QueueState | None = None,
        holds: dict[int, Hold] | None = None, prior: dict[int, int] | None = None,
    ) -> None:
        """Write ``state`` (default: the current one) into ``shared``, with ``holds`` and
        ``prior`` (default: the current ones)."""
        if state is None:
            state = self.state
        if holds is None:
            holds = self.holds
        if prior is None:
            prior = self.prior
        self._counter += 1
        data = encode_snapshot(snapshot_of(
            state, self._boot, self._counter, busy, tuple(sorted(holds.values())),
            tuple(sorted(prior.items())), self._moving,
        ))
        self.fs.write(self.path, data, 0)
        self._seen = data
        self._published = state
        # A busy snapshot is published again, not busy, when the operation is over.
        self._changed = bool(busy)

    def _sync(self) -> None:
        fs = self.fs
        data = fs.read(self.path, 0, _READ)
        size = snapshot_size(data)
        if size is not None:
            data = data[:size] if size <= len(data) else fs.read(self.path, 0, size)
        if data == self._seen:
            return
        snap = decode_snapshot(data)
        if snap is None:
            raise SharedStateError(
                f"{self.path}: the shared state of the queue is damaged or was written by "
                "another version, while other participants have the queue open; close every "
                "Queue on it and open it again"
            )
        self._adopt(snap)
        self._seen = data
        if snap.busy & BUSY_CHECKPOINT:
            # The participant before died in the middle of a checkpoint: make it again,
            # from the state it recorded, over whichever ``info`` it left.
            self.checkpoint()
            self._changed = True
        if snap.moving is not None:
            self.finish_move(*snap.moving)  # it died moving an item to the dead letters

    def _adopt(self, snap: Snapshot) -> None:
        """Make what ``snap`` says current (the holds too)."""
        old = self.state
        config = old.config
        checkpoint = old.ledger.checkpoint
        if snap.busy & BUSY_CHECKPOINT or snap.generation != checkpoint.ack_generation:
            checkpoint = _read_info(self.fs, config)
            if checkpoint.ack_generation != snap.generation and not snap.busy & BUSY_CHECKPOINT:
                raise SharedStateError(
                    f"{config.info_path}: its checkpoint (generation "
                    f"{checkpoint.ack_generation}) is not the one the shared state of the "
                    f"queue refers to ({snap.generation}); close every Queue on it and open "
                    "it again"
                )
        state = state_of(snap, config, checkpoint)
        if old.ledger.head_path != state.ledger.head_path:
            self.fs.release(old.ledger.head_path)
        self._commit(state)  # empties the read-ahead if the read position moved
        self.take_holds(snap)
        self._published = state
        self._changed = False
        self._counter = snap.counter

    def take_holds(self, snap: Snapshot) -> None:
        """Make the holds and carried-over attempt counts ``snap`` records current."""
        self.holds = {hold.seq: hold for hold in snap.holds}
        self._earliest = 0.0  # leases of others' making: look at the next reap
        self.waiting = [hold.seq for hold in snap.holds if not hold.owner]
        self.prior = dict(snap.attempts)

    def _apply(self, effects: tuple[Effect, ...], state: QueueState) -> None:
        replace = next(
            (i for i, effect in enumerate(effects) if type(effect) is Replace), None
        ) if self.shared else None
        if replace is None:
            super()._apply(effects, state)
            return
        # A checkpoint: not safe to abandon half done. ``shared`` is marked busy before its
        # first effect, so that a participant finding it busy makes the checkpoint again,
        # from the state recorded there: the state before the step until the new ``info``
        # is renamed into place (a step that fails before that, for lack of space, did not
        # happen), the state the step leads to from then on. A checkpoint that moves
        # positions (an acknowledgement that found the ack log full, a discard, a purge)
        # deletes the chunk files its new tail passed: made again from the state before,
        # it would refer to files already gone.
        before = self._before
        if before is None or before[0] is not self.state:
            before = None
            self._publish(BUSY_CHECKPOINT)
        else:  # the holds as they were before the step, which agree with the state before
            _, removed, prior = before
            holds = dict(self.holds)
            holds.update((hold.seq, hold) for hold in removed)
            self._publish(BUSY_CHECKPOINT, self.state, holds, prior)
        super()._apply(effects[:replace], state)
        if state is not self.state or before is not None:
            self._publish(BUSY_CHECKPOINT, state)
        super()._apply(effects[replace:], state)

    # --- holds ---------------------------------------------------------------------------

    def deliver(self, now: float, lease: float) -> tuple[int, bytes, int] | None:
        """Deliver the next item to this participant: ``(seq, payload, attempt)``, or None
        when no item waits (or only items given back with a delay not yet over).

        Items given back come first, in put order, then the item at the read position.
        ``lease`` (seconds, 0: none) is how long the delivery may stay unacknowledged
        before it is given back. With ``max_attempts`` set, an item delivered that many
        times already is moved to the dead-letter queue instead (``_bury``), and the next
        one is delivered.
        """
        deadline = now + lease if lease else 0.0
        if deadline and deadline < self._earliest:
            self._earliest = deadline
        limit = self.max_attempts
        holds = self.holds
        while True:
            waiting = self.waiting
            if waiting:
                i = next((i for i, seq in enumerate(waiting) if holds[seq].deadline <= now), -1)
                if i >= 0:
                    seq = waiting[i]
                    hold = holds[seq]
                    payload = self.read_record(seq, hold.offset)
                    del waiting[i]
                    self.state = transitions.lend_again(self.state)
                    self._changed = True
                    if limit is not None and hold.attempt >= limit:
                        holds[seq] = Hold(seq, hold.offset, self.me, hold.attempt, 0.0)
                        self._bury(seq, hold.attempt, payload)
                        continue
                    attempt = hold.attempt + 1
                    holds[seq] = Hold(seq, hold.offset, self.me, attempt, deadline)
                    return seq, payload, attempt
                if self.state.size <= len(waiting):
                    return None
            elif not self.state.size:
                return None
            seq, payload = self.take()
            attempt = 1
            if self.prior:
                prior = self.prior.pop(seq, 0)
                self._changed = True
                if prior == BURIED:  # its dead letter is in the dead-letter queue already
                    holds[seq] = Hold(seq, self.taken_at, self.me, 0, 0.0)
                    self.settle(seq)
                    continue
                attempt += prior
            if limit is not None and attempt > limit:
                holds[seq] = Hold(seq, self.taken_at, self.me, attempt - 1, 0.0)
                self._bury(seq, attempt - 1, payload)
                continue
            holds[seq] = _new(Hold, (seq, self.taken_at, self.me, attempt, deadline))
            return seq, payload, attempt

    def purge(self) -> int:
        """Drop every waiting item, given-back ones included (``transitions.drop_waiting``):
        how many. Items delivered and not acknowledged stay their holders'."""
        dropped = self.state.size
        returned = self.waiting
        self._before = (self.state, tuple(self.holds[seq] for seq in returned), self.prior)
        # The holds go first: once the checkpoint is in place, its busy snapshot must not
        # offer them again.
        for seq in returned:
            del self.holds[seq]
        self.waiting = []
        self.prior = {}  # counts of items not delivered since a recovery: all dropped
        self._changed = True
        try:
            self.run(transitions.drop_waiting(self.state, returned))
        finally:
            self._before = None
        self.forget_read_ahead()
        return dropped

    def upcoming(self, now: float) -> Iterator[tuple[int, bytes]]:
        """The items that gets would deliver next, in that order, as ``(seq, payload)``,
        read without changing anything: items given back (whose delay is over) first, then
        those from the read position on. Items the dead-letter queue takes instead (with
        ``max_attempts``) are left out."""
        limit = self.max_attempts
        holds = self.holds
        for seq in list(self.waiting):
            hold = holds[seq]
            if hold.deadline <= now and (limit is None or hold.attempt < limit):
                yield seq, self.read_record(seq, hold.offset)
        prior = self.prior
        for seq, payload in self.backlog(undelivered=True):
            count = prior.get(seq, 0) if prior else 0
            if count != BURIED and (limit is None or count < limit):
                yield seq, payload

    # --- dead letters ----------------------------------------------------------------------

    def _bury(self, seq: int, attempts: int, payload: bytes) -> None:
        """Move item ``seq`` (held by this participant, delivered ``attempts`` times) to the
        dead-letter queue: put its dead letter there (durably), then acknowledge it here.

        Once: the shared state says the move is under way (the item and the dead-letter
        queue's head) before the dead letter is put. A participant that finds it so (this
        one died in between) finishes the move, putting the dead letter only if the head
        says it is not there (``finish_move``). A recovery from the durable files finds the
        dead letters not acknowledged here in the dead-letter queue (``recall_buried``).
        """
        sink = self.sink
        if sink is None:
            raise RuntimeError("a queue with max_attempts needs its dead-letter queue")
        head = sink.head()
        self._moving = (seq, head)
        try:
            if self.shared:
                self._publish()
            sink.bury(encode_dead_letter(seq, attempts, payload))
        except BaseException:
            # Not put, unless the head moved (it failed after): then finish the move.
            landed = False
            with contextlib.suppress(Exception):
                landed = sink.head() > head
            if not landed:
                self._moving = None
                self._return([self.holds[seq]])
                raise
        self.settle(seq)
        self._moving = None
        self._changed = True

    def finish_move(self, seq: int, head: int) -> None:
        """Finish the move of item ``seq`` to the dead-letter queue that a participant
        started and did not finish (it died, or broke): put its dead letter if the
        dead-letter queue's head is still ``head``, then acknowledge it here."""
        hold = self.holds.get(seq)
        sink = self.sink
        if hold is None or sink is None:
            return
        if not hold.owner:
            self.waiting.remove(seq)
            self.state = transitions.lend_again(self.state)
        self.holds[seq] = Hold(seq, hold.offset, self.me, hold.attempt, 0.0)
        self._moving = (seq, head)
        self._changed = True
        if sink.head() <= head:
            payload = self.read_record(seq, hold.offset)
            sink.bury(encode_dead_letter(seq, hold.attempt, payload))
        self.settle(seq)
        self._moving = None

    def recall_buried(self) -> None:
        """After a recovery from the durable files: mark the items whose dead letter waits
        in the dead-letter queue although they were not acknowledged here (a move cut short
        between the two) to be acknowledged, not delivered, when they are reached."""
        sink = self.sink
        if sink is None:
            return
        state = self.state
        acked = state.acked
        for seq in sink.origins():
            if state.tail <= seq < state.head and not (acked and ranges.contains(acked, seq)):
                self.prior[seq] = BURIED
                self._changed = True

    def settle(self, seq: int) -> None:
        """Acknowledge item ``seq``, held by this participant.

        The hold goes before the acknowledgement is applied, so that a checkpoint it makes
        records a state whose holds agree with its counts; it is put back if the
        acknowledgement fails (the shell is then broken, and nothing of it is published).
        """
        hold = self._mine(seq)
        self._before = (self.state, (hold,), self.prior)  # for a checkpoint the ack makes
        del self.holds[seq]
        try:
            self.ack(seq)
        except BaseException:
            self.holds[seq] = hold
            raise
        finally:
            self._before = None

    def give_back(self, seq: int, not_before: float, counted: bool = True) -> None:
        """Give item ``seq`` (held by this participant) back, to be delivered again from
        ``not_before`` on (0.0: at once). Not ``counted``: as if this delivery had never
        been made (its attempt is not counted; for a delivery nobody was given)."""
        hold = self._mine(seq)
        self.state = transitions.give_back(self.state, 1)
        attempt = hold.attempt if counted else hold.attempt - 1
        self.holds[seq] = Hold(seq, hold.offset, 0, attempt, not_before)
        bisect.insort(self.waiting, seq)
        self._changed = True

    def extend(self, seq: int, deadline: float) -> None:
        """Renew the lease on item ``seq`` (held by this participant) to ``deadline``."""
        hold = self._mine(seq)
        self.holds[seq] = hold._replace(deadline=deadline)
        self._earliest = min(self._earliest, deadline)
        self._changed = True

    def _mine(self, seq: int) -> Hold:
        hold = self.holds.get(seq)
        if hold is None or hold.owner != self.me:
            raise LeaseExpiredError(self.state.config.directory, seq)
        return hold

    def release_owner(self, owner: int) -> int:
        """Give back everything ``owner`` holds; how many items."""
        mine = [hold for hold in self.holds.values() if hold.owner == owner]
        self._return(mine)
        return len(mine)

    def release_all(self) -> None:
        """Give back every item held (their holders are all gone)."""
        self._return([hold for hold in self.holds.values() if hold.owner])

    def _return(self, holds: Iterable[Hold]) -> None:
        count = 0
        for hold in holds:
            self.holds[hold.seq] = Hold(hold.seq, hold.offset, 0, hold.attempt, 0.0)
            bisect.insort(self.waiting, hold.seq)
            count += 1
        if count:
            self.state = transitions.give_back(self.state, count)
            self._changed = True

    def reap(self, now: float) -> None:
        """Give back the items of participants that are gone, and of leases that ran out.

        The holds are looked through for leases only once ``now`` reaches ``_earliest``, a
        bound below every lease end (every hold given a deadline lowers it; a look through
        sets it to the earliest one left), so that a participant holding many deliveries
        without leases does not look at each of them at every get."""
        if now >= self._earliest:
            expired = []
            earliest = _NEVER
            for hold in self.holds.values():
                deadline = hold.deadline
                if hold.owner and deadline > 0.0:
                    if deadline <= now:
                        expired.append(hold)
                    elif deadline < earliest:
                        earliest = deadline
            self._earliest = earliest
            if expired:
                log.info("%s: the lease of %s ran out; delivered again",
                         self.state.config.directory,
                         "1 delivery" if len(expired) == 1 else f"{len(expired)} deliveries")
            self._return(expired)
        if not self.shared:
            return
        others = {hold.owner for hold in self.holds.values()} - {0, self.me}
        directory = self.state.config.directory
        for owner in others:
            path = peer_path(directory, owner)
            if not self.fs.probe(path):
                count = self.release_owner(owner)
                log.warning(
                    "%s: participant %x is gone (its process died, or it was dropped without "
                    "close()); %s it held %s delivered again", directory, owner,
                    "the item" if count == 1 else f"the {count} items",
                    "is" if count == 1 else "are",
                )
                with contextlib.suppress(FileNotFoundError):
                    self.fs.unlink(path)

    def next_deadline(self) -> float | None:
        """The earliest lease end or end of a delay among the holds (None: none)."""
        deadlines = [hold.deadline for hold in self.holds.values() if hold.deadline > 0.0]
        return min(deadlines) if deadlines else None

    def watch(self, items: bool = False) -> Watch:
        """A watch on the files of the participants holding items, and on ``shared`` (any
        change) or, with ``items``, on ``ready`` (a change that made items waiting: a put,
        a give-back), so that consumers waiting for an item do not all wake at every get
        and acknowledgement of the others."""
        directory = self.state.config.directory
        owners = {hold.owner for hold in self.holds.values()} - {0, self.me}
        path = self.ready_path if items else self.path
        return self.fs.watch(path, tuple(peer_path(directory, o) for o in owners))

    # --- leaving --------------------------------------------------------------------------

    def part(self) -> None:
        """Let go of the locks of this participant: the others see it gone."""
        try:
            for lock in (self.peer, self.member):
                if lock is not None:
                    lock.release()
        finally:
            if self._mutex is not None:
                self._mutex.close()


def _read_info(fs: FileSystem, config: Config) -> Info:
    info = decode_info(fs.read(config.info_path), config.info_path)
    if info.serializer != config.serializer:
        raise SerializerMismatchError(config.directory, info.serializer, config.serializer)
    return info


def join(
    fs: FileSystem, config: Config, me: int | None = None, *,
    sink: DeadLetterSink | None = None, max_attempts: int | None = None,
) -> SharedShell:
    """Open the queue in ``config.directory`` as participant ``me``, beside any others
    (None: the number of the state's next version, unique among the participants since the
    state was last recovered; reproducible on a simulated disk).

    Under the lock on ``shared``: a participant that finds no other recovers from the
    durable files (``observe``, as an exclusive queue does) unless ``shared`` was written
    during this boot of the machine and agrees with ``info`` (everyone before it died or
    closed: what it says is still true, and it keeps the attempt counts). One that finds
    others adopts what ``shared`` says (finishing a checkpoint or a move to the dead
    letters that the last participant died in). ``sink`` is the queue's dead-letter queue.
    """
    directory = config.directory
    spath = shared_path(directory)
    lpath = f"{directory}/lock"
    check_regular(fs, spath)
    check_regular(fs, lpath)
    if not fs.exists(spath) and fs.exists(config.info_path):
        # A queue never opened shared (or by another version): refuse what cannot be opened
        # (another format, another serializer) before creating anything in it.
        check_regular(fs, config.info_path)
        _read_info(fs, config)
    mask = _signal_mask()  # signals wait, as for every operation (``SharedShell.enter``)
    try:
        _block_signals()
        return _join(fs, config, me, spath, lpath, sink, max_attempts)
    finally:
        _restore_signals(mask)


def _join(
    fs: FileSystem, config: Config, me: int | None, spath: str, lpath: str,
    sink: DeadLetterSink | None, max_attempts: int | None,
) -> SharedShell:
    directory = config.directory
    op = fs.lock(spath, blocking=True)
    try:
        fs.volatile(spath)
        _reserve(fs, spath, directory)
        ready = f"{directory}/{READY}"
        check_regular(fs, ready)
        if not fs.exists(ready):
            fs.write(ready, b"\x00", 0)
        fs.volatile(ready)
        try:
            alone: Lock | None = fs.lock(lpath)
        except BlockingIOError:
            alone = None
        member: Lock | None = None
        try:
            if alone is None:
                member = _member(fs, lpath, directory)
            shell = _open(fs, config, spath, alone is not None, sink)
            shell.max_attempts = max_attempts
            shell.me = shell._counter + 1 if me is None else me
            if alone is not None:
                alone.release()
                member = _member(fs, lpath, directory)
            shell.member = member
            shell.shared = True
            shell.defer_sync = True
            if isinstance(fs, OsFileSystem):
                shell._mutex = fs.mutex(spath)
            while True:
                try:
                    shell.peer = fs.lock(peer_path(directory, shell.me))
                    break
                except BlockingIOError:
                    if me is not None:
                        raise
                    shell.me += 1  # numbered: taken by one that joined and never said so
            if alone is not None:
                _clear_peers(fs, directory, shell.me)
                shell.release_all()  # every participant before this one is gone
            shell._publish()
        except BaseException:
            for lock in (alone, member):
                if lock is not None:
                    lock.release()
            raise
    finally:
        op.release()
    return shell


def _reserve(fs: FileSystem, spath: str, directory: str) -> None:
    """Give ``shared`` its room once, so that writing it never grows it (a full disk then
    never stops an operation at its end; one that has no room for it stops the open)."""
    size = fs.size(spath)
    if size < _ROOM:
        fs.write(spath, bytes(_ROOM - size), size)


def _member(fs: FileSystem, lpath: str, directory: str) -> Lock:
    try:
        return fs.lock(lpath, shared=True)
    except BlockingIOError:
        raise QueueLocked(directory) from None


def _open(
    fs: FileSystem, config: Config, spath: str, alone: bool, sink: DeadLetterSink | None
) -> SharedShell:
    boot = fs.boot_id()
    snap = decode_snapshot(fs.read(spath))
    if not alone:
        if snap is None:
            raise SharedStateError(
                f"{spath}: the shared state of the queue is missing or damaged while other "
                "participants have it open; close every Queue on it and open it again"
            )
        return _adopted(fs, config, snap, boot, sink)
    # No other participant: recover from the durable files, as an exclusive queue does
    # (with every check of their integrity), and keep only the attempt counts of the
    # shared state, if it was written during this boot of the machine.
    shell = SharedShell.start(fs, observe(fs, config))
    assert isinstance(shell, SharedShell)
    shell._boot = boot or ""
    if snap is not None:
        shell._counter = snap.counter
        if boot is not None and snap.boot == boot:
            shell.prior = _counts(shell.state, snap)
    shell.sink = sink
    shell.recall_buried()
    return shell


def _counts(state: QueueState, snap: Snapshot) -> dict[int, int]:
    """The attempt counts ``snap`` holds for the items ``state`` still has to deliver."""
    counts = dict(snap.attempts)
    counts.update((hold.seq, hold.attempt) for hold in snap.holds)
    acked = state.acked
    return {
        seq: n for seq, n in counts.items()
        if state.tail <= seq < state.head and not (acked and ranges.contains(acked, seq))
    }


def _adopted(
    fs: FileSystem, config: Config, snap: Snapshot, boot: str | None,
    sink: DeadLetterSink | None,
) -> SharedShell:
    """A shell for the state ``snap`` records (and the ``info`` it refers to)."""
    info = _read_info(fs, config)
    config = attrs.evolve(config, chunksize=info.chunksize, salt=info.salt)
    placeholder = QueueState(
        config, 0, 0, 0, 0, 0, (), 0, 0, 0,
        Ledger(info, chunk_path(config, 0), 0, 0, 0),
    )
    shell = SharedShell(fs, placeholder)
    shell._boot = snap.boot if boot is None else boot
    shell.shared = True
    shell.sink = sink
    shell._adopt(snap)
    if snap.busy & BUSY_CHECKPOINT:
        shell.checkpoint()  # the last participant died in the middle of one: make it again
    if snap.moving is not None:
        shell.finish_move(*snap.moving)  # or in the middle of a move to the dead letters
    return shell


def _clear_peers(fs: FileSystem, directory: str, me: int) -> None:
    """Remove the files of participants that are gone (there is no other when this runs)."""
    mine = f"{PEER_PREFIX}{me:016x}"
    for name in fs.listdir(directory):
        if name.startswith(PEER_PREFIX) and name != mine:
            with contextlib.suppress(FileNotFoundError):
                fs.unlink(f"{directory}/{name}")
