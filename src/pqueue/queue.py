"""``Queue``: the ``queue.Queue``-compatible front of pqueue.

It serialises items, holds the locks and conditions, tracks which thread got which item,
and hands everything that touches the disk to the IO shell (``pqueue.io.shell``), which runs
the pure transitions of ``pqueue.core``.

Every call that changes the queue does so in one guarded step under the mutex: the shell's
effects and the bookkeeping that goes with them (which thread got which item). An exception
that escapes a step half done, an ``OSError`` or any other (``KeyboardInterrupt``, an
exception raised by a signal handler), moves the queue to its broken phase, so that it can
never claim what the disk does not hold; reopening the directory recovers from the disk.
Waiting (for an item, for room, for ``join``) is outside the steps: an exception there
changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Hashable, Iterable
from time import monotonic
from types import ModuleType, TracebackType
from typing import Any, Generic, NoReturn, TypeVar

from pqueue.core import transitions
from pqueue.core.deadletter import DeadLetter, decode_dead_letter
from pqueue.core.errors import (
    CorruptQueueError,
    Empty,
    Full,
    LeaseExpiredError,
    PQueueError,
    QueueBrokenError,
    QueueLocked,
    SharedStateError,
    ShutDown,
)
from pqueue.core.state import Config, Durability, Policy, QueueState, default_policy
from pqueue.core.transitions import Command, Phase
from pqueue.group import GroupCommit, Request
from pqueue.io.fs import FileSystem, Lock, OsFileSystem, Watch
from pqueue.io.shared import (
    PEER_PREFIX,
    READY,
    SharedShell,
    _block_signals,
    _restore_signals,
    _signal_mask,
    join,
    peer_path,
)
from pqueue.io.shell import apply, check_regular, observe
from pqueue.serializers import NamedSerializer, Serializer, resolve

__all__ = ["DeadLetter", "Delivery", "Queue"]

T = TypeVar("T")

_get_ident = threading.get_ident
_OPEN = Phase.OPEN  # in OPEN every data command keeps the phase (the table says so; tested)
_PRUNE_AT = 32  # threads tracked before entries left empty are looked for
_LIVE = (Phase.OPEN, Phase.SHUTDOWN)

# Exceptions a step raises on purpose, before it changes anything: they leave the queue as
# it was. Any other exception escaping a step (or one of these while the shell is applying
# effects) breaks the queue.
_CLEAN = (Empty, Full, ShutDown, ValueError, TypeError, PQueueError)

# The live Queue objects of this process, by directory, so that opening a directory again
# supersedes the earlier object instead of failing on its own lock.
_owners: dict[Hashable, weakref.ref[Queue[Any]]] = {}
_owners_lock = threading.Lock()
# Every Queue object of this process, for the child's side of fork().
_instances: weakref.WeakSet[Queue[Any]] = weakref.WeakSet()


def _check_size(name: str, value: object, minimum: int) -> int:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _directory(path: object) -> str:
    """The queue directory named by ``path`` (``str``, ``bytes`` or a path-like of either),
    as ``str``; an empty path is refused before anything is created."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}")
    name = os.fsdecode(os.fspath(path))
    if not name:
        raise ValueError("the queue path is empty (name a directory; '.' is the current one)")
    if "\0" in name:
        raise ValueError(f"the queue path {name!r} contains a NUL character")
    return name


def _new_salt(fs: FileSystem, directory: str) -> int:
    """The CRC seed of a new queue's records (see ``pqueue.core.codec``): random on the real
    disk, so that no two queues share one, even at the same path on two machines; derived
    from the path on any other file system (the crash harness's simulated disk), so that
    runs there are reproducible byte for byte."""
    if isinstance(fs, OsFileSystem):
        salt = int.from_bytes(os.urandom(4), "little")
    else:
        salt = zlib.crc32(directory.encode(errors="surrogateescape"), 0x7175)
    return salt or 1  # 0 is format version 1's plain CRC


class Delivery(Generic[T]):
    """One delivered item, acknowledged explicitly with ``ack()`` (or given back with
    ``nack()``).

    Got from ``Queue.get_delivery()``. Until ``ack()`` returns, the item counts as unfinished
    and is delivered again if its consumer dies, closes, gives it back, or lets its lease
    run out. As a context manager it acknowledges when the block ends without an exception
    (and gives the item back at once when it ends with one).
    """

    __slots__ = ("_done", "_queue", "attempt", "item", "seq")

    def __init__(self, queue: Queue[T], seq: int, item: T, attempt: int) -> None:
        self._queue = queue
        self.seq = seq
        self.item = item
        self.attempt = attempt  # 1 for the first delivery of the item
        self._done = ""  # "acked" or "nacked" once settled

    @property
    def acked(self) -> bool:
        """Whether ``ack()`` has returned."""
        return self._done == "acked"

    def ack(self) -> None:
        """Acknowledge this item (durably, in ``fsync`` mode): it is never delivered again.

        Raises ``ValueError`` if it was acknowledged or given back already, and
        ``LeaseExpiredError`` (acknowledging nothing) if its lease ran out and it was given
        back to be delivered again."""
        self._queue._settle(self, None)

    def nack(self, delay: float = 0.0) -> None:
        """Give the item back: it is delivered again (to any consumer, before the items
        put after it) at once, or once ``delay`` seconds have passed. Items behind it are
        delivered meanwhile. Raises as ``ack``."""
        if not delay >= 0.0:
            raise ValueError(f"delay must be a non-negative number of seconds, got {delay!r}")
        self._queue._settle(self, delay)

    def extend(self, seconds: float) -> None:
        """Renew the lease: the item stays this consumer's for ``seconds`` from now.
        Raises ``LeaseExpiredError`` if the lease ran out already and the item was given
        back."""
        if not seconds > 0.0:
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        self._queue._extend(self, seconds)

    def __enter__(self) -> Delivery[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._done:
            return
        if exc_type is None:
            self.ack()
        elif issubclass(exc_type, Exception):
            with contextlib.suppress(PQueueError):
                self.nack()

    def __repr__(self) -> str:
        state = self._done or "outstanding"
        return (
            f"<pqueue.Delivery seq={self.seq} attempt={self.attempt} {state} "
            f"item={self.item!r}>"
        )


def _settled(delivery: Delivery[Any]) -> str:
    done = {"nacked": "given back (nack)", "lost": "lost with its lease"}
    return f"{delivery!r} was {done.get(delivery._done, 'acknowledged')} already"


class Queue(Generic[T]):
    """A persistent FIFO queue in directory ``path``, with the interface of ``queue.Queue``.

    ``path``: a ``str``, ``bytes`` or path-like naming the directory (created if missing).
    ``maxsize``: as ``queue.Queue`` (0 for unbounded); may be changed at run time.
    ``chunksize``: items per chunk file; recorded at creation, the recorded value wins later.
    ``tempdir``: where the temp file of a checkpoint is written; it must be on the same file
    system as ``path`` (default: ``path`` itself).
    ``durability``: ``"fsync"`` (default: a put or acknowledgement is durable, power loss
    included, before it returns) or ``"flush"`` (handed to the OS: survives the process
    being killed, and a power loss may lose the latest puts and acknowledgements).
    ``serializer``: ``pickle`` (default), ``json``, ``pqueue.serializers.BYTES`` or any object
    with ``dumps``/``loads``; recorded in the queue, which refuses another one later.
    ``exclusive``: False (default): any number of Queue objects, in any number of processes,
    share the directory; True: this object owns it alone (others get ``QueueLocked``), and
    skips the per-operation lock and shared state.
    ``lease_timeout``: seconds an item may stay delivered without acknowledgement before it
    is given back to be delivered again (None: no limit; a consumer that dies or closes
    gives its items back at once anyway).
    ``max_attempts``: an item delivered this many times without being acknowledged is
    moved, once, to the dead-letter queue ``dead_letters`` instead of being delivered
    again (None: no limit).
    ``fs``: the ``FileSystem`` to use (default: the real one); the crash harness passes a
    simulated disk.
    ``policy``: when to checkpoint and how to lay out files (``pqueue.core.state.Policy``);
    the default suits the durability mode, and tests pass small values to exercise
    checkpoints and chunk roll-over often.
    """

    def __init__(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        maxsize: int = 0,
        chunksize: int = 100,
        tempdir: str | os.PathLike[str] | None = None,
        *,
        durability: Durability = "fsync",
        serializer: Serializer | ModuleType | None = None,
        exclusive: bool = False,
        lease_timeout: float | None = None,
        max_attempts: int | None = None,
        fs: FileSystem | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._maxsize = _check_size("maxsize", maxsize, 0)
        _check_size("chunksize", chunksize, 1)
        if durability not in ("fsync", "flush"):
            raise ValueError(f"durability must be 'fsync' or 'flush', got {durability!r}")
        if lease_timeout is not None and not (
            isinstance(lease_timeout, (int, float)) and lease_timeout > 0
        ):
            raise ValueError(
                f"lease_timeout must be a positive number of seconds or None, got "
                f"{lease_timeout!r}"
            )
        if max_attempts is not None:
            _check_size("max_attempts", max_attempts, 1)
        directory = _directory(path)
        codec = resolve(serializer)
        self._dumps = codec.dumps
        self._loads = codec.loads
        owns_fs = fs is None
        self._owns_fs = owns_fs
        self._fs: FileSystem = OsFileSystem() if fs is None else fs
        if owns_fs:
            directory = os.path.abspath(directory)
        self.path = directory
        self.durability: Durability = durability
        self.serializer = codec.name
        self.exclusive = bool(exclusive)
        self.lease_timeout = lease_timeout
        self.max_attempts = max_attempts
        self._lease = float(lease_timeout or 0.0)
        self._init_locks()
        self._phase = Phase.CLOSED  # OPEN once it is open
        # True until the constructor is done: an exception landing in it (a signal's) may
        # leave the lock taken by an object nobody holds, which a newer one then takes over.
        self._opening = True
        self._broken_by: BaseException | None = None
        self._dropped = False  # shut down with immediate=True: no item is delivered
        self._deliveries: dict[int, deque[int]] = {}
        self._prune_at = _PRUNE_AT  # size of _deliveries at which empty entries are dropped
        self._handles: dict[int, int] = {}  # seq -> attempt of its Delivery handed out
        # fsync mode: puts, and acknowledgements by task_done(), from several threads at
        # once share one write and one fsync (see pqueue.group).
        grouped = durability == "fsync"
        self._put_group: GroupCommit[bytes | list[bytes]] | None = (
            GroupCommit() if grouped else None
        )
        self._ack_group: GroupCommit[None] | None = GroupCommit() if grouped else None
        self._unfinished_synced = 0  # requests acknowledged whose fsync is still to come
        # Threads waiting on each condition: notify only when someone waits.
        self._getters = 0
        self._putters = 0
        self._joiners = 0
        self._watches: set[Watch] = set()  # of threads waiting on other participants
        self._reclaimer: threading.Timer | None = None
        self._lock: Lock | None = None
        self._key: Hashable = None

        # The dead-letter queue, opened when first needed (by a move, dead_letters, or an
        # open that must look into it).
        self._graveyard = _Graveyard(self.path, self._fs, fs, durability, codec, policy)

        # Signals wait while the directory is opened: a handler's exception landing between
        # taking the lock and noting who holds it would leave it held by nobody.
        mask = _signal_mask()
        try:
            _block_signals()
            try:
                if self.exclusive:
                    recovered = self._open(
                        directory, tempdir, chunksize, durability, codec.name, policy
                    )
                else:
                    config = self._config(directory, tempdir, chunksize, durability, codec.name,
                                          policy)
                    self._shell = join(
                        self._fs, config, _new_id(self._fs),
                        sink=self._graveyard, max_attempts=max_attempts,
                    )
            except OSError as exc:
                if isinstance(exc, (PermissionError, NotADirectoryError)):
                    raise  # bad input, named: the path or a file in it cannot be made or used
                raise self._open_failed(exc) from exc
            if self.exclusive:
                try:
                    try:
                        self._forget_participants(directory)
                        shell = SharedShell.start(self._fs, recovered)
                        assert isinstance(shell, SharedShell)
                        shell.sink = self._graveyard
                        shell.max_attempts = max_attempts
                        shell.recall_buried()
                    except OSError as exc:
                        raise self._open_failed(exc) from exc
                except BaseException:
                    self._release_files(None)
                    self._unregister()
                    raise
                assert isinstance(shell, SharedShell)
                self._shell = shell
        except BaseException:
            _restore_signals(mask)
            raise
        owned = self._fs if owns_fs and isinstance(self._fs, OsFileSystem) else None
        locks = (self._lock,) if self.exclusive else (self._shell.peer, self._shell.member)
        weakref.finalize(self, _finalize, owned, *locks)
        _instances.add(self)
        self._phase = Phase.OPEN
        self._opening = False
        try:
            _restore_signals(mask)  # a signal that waited is handled here
        except BaseException:
            # Its handler raised: the caller never gets this queue, so it must not keep the
            # directory's locks until a garbage collection (a later open in this process
            # would wait for them for good).
            try:
                _block_signals()
                self.close()
            finally:
                _restore_signals(mask)
            raise

    # --- opening ----------------------------------------------------------------------------

    def _config(
        self,
        directory: str,
        tempdir: str | os.PathLike[str] | None,
        chunksize: int,
        durability: Durability,
        serializer: str,
        policy: Policy | None,
    ) -> Config:
        self._prepare_directory(directory)
        config = Config(
            directory=directory,
            chunksize=chunksize,
            durability=durability,
            serializer=serializer,
            temp_path=self._temp_path(directory, tempdir),
            policy=policy or default_policy(durability),
            salt=_new_salt(self._fs, directory),
        )
        self._reclaim_after = config.policy.reclaim_after
        return config

    def _open(
        self,
        directory: str,
        tempdir: str | os.PathLike[str] | None,
        chunksize: int,
        durability: Durability,
        serializer: str,
        policy: Policy | None,
    ) -> transitions.Recovered:
        """Make the directory, take its lock alone and decide how to open it (reads only,
        but for the shared state of participants before it, which this one makes stale)."""
        config = self._config(directory, tempdir, chunksize, durability, serializer, policy)
        self._key = self._fs.lock_key(directory)
        lock_path = f"{directory}/lock"
        check_regular(self._fs, lock_path)
        with _owners_lock:
            earlier = _owners.get(self._key)
            previous = earlier() if earlier is not None else None
            if previous is not None and (
                previous._phase in (*_LIVE, Phase.BROKEN) or previous._opening
            ):
                # The earlier object holds the lock: decide how to open while it can change
                # nothing (its mutex held), and take over only once that is decided, so
                # that a failing open (a wrong serializer, damage) leaves it working.
                with previous.mutex:
                    recovered = observe(self._fs, config)
                    previous._supersede_locked()
                    self._lock = self._take_lock(lock_path)
            else:
                self._lock = self._take_lock(lock_path)
                try:
                    recovered = observe(self._fs, config)
                except BaseException:
                    self._lock.release()
                    raise
            _owners[self._key] = weakref.ref(self)
        return recovered

    def _forget_participants(self, directory: str) -> None:
        """An exclusive owner changes the queue without the shared state: remove it (and
        the files of the participants before, all gone), so that a shared open later
        recovers from the durable files."""
        fs = self._fs
        for name in fs.listdir(directory):
            if name in ("shared", READY) or name.startswith(PEER_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    fs.unlink(f"{directory}/{name}")

    def _init_locks(self) -> None:
        self.mutex = threading.Lock()
        self.not_empty = threading.Condition(self.mutex)
        self.not_full = threading.Condition(self.mutex)
        self.all_tasks_done = threading.Condition(self.mutex)

    def _take_lock(self, lock_path: str) -> Lock:
        try:
            return self._fs.lock(lock_path)
        except BlockingIOError:
            raise QueueLocked(self.path) from None

    def _open_failed(self, exc: OSError) -> QueueBrokenError:
        return QueueBrokenError(
            f"cannot open the queue at {self.path!r}: IO error {exc}; nothing was changed "
            "that a later open does not repair"
        )

    def _prepare_directory(self, directory: str) -> None:
        """Create ``directory`` and any missing parents, and make each new directory's name
        durable in its parent (a power loss must not take a directory that holds acknowledged
        puts)."""
        fs = self._fs
        if fs.exists(directory):
            if not fs.is_dir(directory):
                raise NotADirectoryError(
                    errno.ENOTDIR, "the queue path exists and is not a directory", directory
                )
            return
        created = []
        parent = directory.rstrip("/") or "/"
        while parent not in ("", "/") and not fs.exists(parent):
            created.append(parent)
            parent = parent.rsplit("/", 1)[0] or "/"
        try:
            fs.mkdir(directory, 0o700)
        except PermissionError as exc:
            raise PermissionError(
                errno.EACCES, "cannot create the queue directory (permission denied)", directory
            ) from exc
        except (FileExistsError, NotADirectoryError) as exc:
            raise NotADirectoryError(
                errno.ENOTDIR, "a parent of the queue path is not a directory", directory
            ) from exc
        for made in reversed(created):  # outermost first: each name, then what is in it
            fs.fsync_dir(made.rsplit("/", 1)[0] or "/")

    def _temp_path(self, directory: str, tempdir: str | os.PathLike[str] | None) -> str:
        if tempdir is None:
            return f"{directory}/info.tmp"
        temp = os.fspath(tempdir)
        if not self._fs.is_dir(temp):
            raise ValueError(f"tempdir {temp!r} is not an existing directory")
        if not self._fs.same_filesystem(temp, directory):
            raise ValueError(
                f"tempdir {temp!r} must be on the same file system as the queue {directory!r} "
                "(a checkpoint is renamed from it into the queue)"
            )
        digest = hashlib.sha256(directory.encode()).hexdigest()[:16]
        return f"{temp.rstrip('/') or ''}/pqueue-{digest}.info.tmp"

    # --- the phase machine ----------------------------------------------------------------

    def _enter(self, command: Command) -> None:
        """Check ``command`` against the phase (under the mutex)."""
        try:
            self._phase = transitions.advance(self._phase, command, self.path)
        except QueueBrokenError as exc:
            raise exc from self._broken_by

    def _break(self, cause: BaseException) -> None:
        """Move to the broken phase for ``cause`` (under the mutex), waking every waiter.
        A shared participant also lets the others see it gone, so that they take back the
        items it holds."""
        self._phase = transitions.advance(self._phase, Command.FAIL, self.path)
        self._broken_by = cause
        shell = getattr(self, "_shell", None)
        if shell is not None and shell.shared:
            shell.abandon()
        self._wake_all()

    def _fail(self, exc: OSError) -> NoReturn:
        self._break(exc)
        raise QueueBrokenError(
            f"IO error on the queue at {self.path!r}: {exc}; the queue is broken until it is "
            "opened again (reopening recovers from what is on disk)"
        ) from exc

    def _step_failed(self, exc: BaseException) -> NoReturn:
        """A step (under the mutex) raised ``exc``: an ``OSError`` breaks the queue and is
        raised as ``QueueBrokenError``; any other exception breaks it too, unless it is a
        refusal raised on purpose before anything changed, and is raised as it is."""
        if isinstance(exc, OSError):
            self._fail(exc)
        if not isinstance(exc, _CLEAN) or self._shell.dirty or isinstance(
            exc, SharedStateError
        ):
            self._break(exc)
        raise exc

    def _begin(self) -> None:
        """Start an operation on the shell (under the mutex): for a shared queue, lock the
        shared state and catch up with the other participants. Callers call it inside the
        ``try`` whose ``finally`` calls ``leave()``, so that no exception landing in between
        can leave the lock held."""
        shell = self._shell
        if shell.shared:
            try:
                shell.enter()
            except BaseException as exc:
                # Catching up changes nothing on disk (but for a checkpoint it makes again
                # for a participant that died in one): any other exception leaves it as it was.
                if isinstance(exc, OSError):
                    self._fail(exc)
                if shell.dirty or isinstance(exc, SharedStateError):
                    self._break(exc)
                raise

    def _leave(self) -> None:
        """End an operation on the shell (see ``_begin``). Writing the shared state back can
        fail like any write: the queue is then broken (the others never saw the operation,
        and this object must not go on as if they had)."""
        try:
            self._shell.leave()
        except OSError as exc:
            if self._phase in _LIVE:
                self._fail(exc)
            raise
        # Any other exception is a signal's, held back during the operation and handled
        # as the lock was let go: the operation is over, whole.

    # --- queue.Queue ------------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The bound on ``qsize()`` that makes ``put`` block (0: unbounded)."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        _check_size("maxsize", value, 0)
        with self.mutex:
            self._maxsize = value
            self.not_full.notify_all()

    @property
    def dead_letters(self) -> Queue[DeadLetter[T]]:
        """The dead-letter queue: the items that ran out of attempts (``max_attempts``), as
        ``DeadLetter(item, attempts, seq)``, in the order they were moved. A shared queue
        in the directory ``dead-letters`` inside this one, opened on first use and closed
        with this object. Items reach it only by being moved; its ``put`` refuses them (put
        a dead letter's item back into this queue to try it again)."""
        if self._phase not in _LIVE:
            self._enter(Command.INSPECT)
        return self._graveyard.open()

    @property
    def unfinished_tasks(self) -> int:
        """Items not yet acknowledged, by any participant (``join`` waits for them)."""
        with self.mutex:
            self._enter(Command.INSPECT)
            return self._unfinished()

    @property
    def is_shutdown(self) -> bool:
        """Whether ``shutdown()`` was called."""
        return self._phase is Phase.SHUTDOWN

    def _inspect(self) -> QueueState:
        """The state, caught up with the other participants (under the mutex)."""
        shell = self._shell
        try:
            self._begin()
            if shell.shared or shell.holds:
                shell.reap(monotonic())
        finally:
            self._leave()
        return shell.state

    def qsize(self) -> int:
        """The number of items waiting to be got (put by any participant)."""
        with self.mutex:
            self._enter(Command.INSPECT)
            if self._dropped:
                return 0
            return self._inspect().size

    def empty(self) -> bool:
        """Whether no item is waiting to be got."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether ``put`` would block (never, for an unbounded queue)."""
        size = self.qsize()
        return 0 < self._maxsize <= size

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item`` at the end of the queue; in ``fsync`` mode it is durable on return.

        Blocks while the queue is full, as ``queue.Queue.put``. Raises ``Full``,
        ``ShutDown``, ``DiskFullError`` (no space on the device: nothing was put), or the
        serializer's error (the queue is then unchanged).
        """
        self._insert(self._dumps(item), 1, block, timeout)

    def put_many(
        self, items: Iterable[T], block: bool = True, timeout: float | None = None
    ) -> None:
        """Put every item of ``items``, in order, as one batch: together, or not at all.

        In ``fsync`` mode the batch is durable on return, with one write and one fsync (per
        chunk file it falls in) for all of its items; a crash before then leaves either all
        of them in the queue or none. Under ``maxsize`` it blocks until there is room for
        the whole batch, as ``put`` does for one item (``ValueError`` for a batch larger
        than ``maxsize``: it could never fit). Nothing is put if serialising any item fails.
        """
        payloads = [self._dumps(item) for item in items]
        if payloads:
            self._insert(payloads, len(payloads), block, timeout)

    def _insert(
        self, payload: bytes | list[bytes], count: int, block: bool, timeout: float | None
    ) -> None:
        """Put one serialised item (``payload`` bytes) or a batch (a list of ``count``)."""
        group = self._put_group
        if group is not None and self._maxsize <= 0:
            # Signals wait until the grouped put is over: a handler's exception landing
            # inside the group's bookkeeping (its Condition is Python code, whose lock such
            # an exception can leave held) would leave every later put waiting for good.
            mask = _signal_mask()
            try:
                _block_signals()
                self._insert_grouped(group, payload, count)
            finally:
                _restore_signals(mask)
            return
        # "with", never acquire() then try: a signal handler's exception can land right
        # after acquire() returns, before the try, and leave the mutex held for good.
        with self.mutex:
            if self._phase is not _OPEN:
                self._enter(Command.PUT)
            maxsize = self._maxsize
            if count > maxsize > 0:
                raise ValueError(
                    f"a batch of {count} items cannot fit a queue of maxsize {maxsize}"
                )
            shell = self._shell
            try:
                self._begin()
                if maxsize > 0:
                    if not block:
                        if shell.state.size + count > maxsize:
                            raise Full
                    else:
                        if timeout is not None and timeout < 0:
                            raise ValueError("'timeout' must be a non-negative number")
                        if shell.state.size + count > maxsize:
                            self._wait_for_room(timeout, count)
                try:
                    if type(payload) is bytes:
                        shell.put(payload)
                    else:
                        assert isinstance(payload, list)
                        shell.put_many(payload)
                    if self._getters:
                        self.not_empty.notify(count)
                except BaseException as exc:
                    self._step_failed(exc)
            finally:
                self._leave()

    def _insert_grouped(
        self, group: GroupCommit[bytes | list[bytes]], payload: bytes | list[bytes], count: int
    ) -> None:
        """``_insert`` with group commit (``fsync`` mode, no ``maxsize``): the puts of the
        threads waiting meanwhile go in as one batch (all of them durable with one fsync,
        or, on a crash or an error, none of them), led by one of those threads."""
        own = Request(payload, count, 0)
        if not group.join(own):
            if own.error is not None:
                raise own.error
            return
        led: list[Request[bytes | list[bytes]]] = []
        try:
            with self.mutex:
                led = group.take()
                if self._phase is not _OPEN:
                    self._enter(Command.PUT)
                shell = self._shell
                try:
                    self._begin()
                    try:
                        if len(led) == 1 and type(payload) is bytes:
                            shell.put(payload)
                        else:
                            payloads: list[bytes] = []
                            for request in led:
                                part = request.payload
                                if type(part) is bytes:
                                    payloads.append(part)
                                else:
                                    assert isinstance(part, list)
                                    payloads.extend(part)
                            shell.put_many(payloads)
                        if self._getters:
                            self.not_empty.notify(sum(r.count for r in led))
                    except BaseException as exc:
                        self._step_failed(exc)
                finally:
                    self._leave()
        except BaseException as exc:
            for request in led:
                if request is not own:
                    request.error = exc
            raise
        finally:
            group.finish(led, own)

    def _wait_for_room(self, timeout: float | None, count: int = 1) -> None:
        endtime = None if timeout is None else monotonic() + timeout
        self._putters += 1
        try:
            while self._shell.state.size + count > self._maxsize > 0:
                self._wait(self.not_full, endtime, Full)
                self._enter(Command.PUT)
        finally:
            self._putters -= 1

    def _wait(
        self, condition: threading.Condition, endtime: float | None, timeout_error: type
    ) -> None:
        """Wait (under the mutex) for a change: another thread's, or for a shared queue,
        another participant's, the end of a lease or a delay; raise ``timeout_error`` at
        ``endtime``. Returns with the mutex held (and a shared shell entered again)."""
        shell = self._shell
        wake_at = shell.next_deadline()
        if endtime is not None:
            if endtime - monotonic() <= 0.0:
                raise timeout_error
            wake_at = endtime if wake_at is None else min(wake_at, endtime)
        remaining = None if wake_at is None else max(0.0, wake_at - monotonic())
        if not shell.shared:
            condition.wait(remaining)
            return
        # Made before letting go: no change after this is missed. A getter waits for a
        # change that made items waiting; a putter or joiner for any change.
        watch = shell.watch(items=condition is self.not_empty)
        self._watches.add(watch)
        try:
            self._leave()
            self.mutex.release()
            try:
                watch.wait(remaining)
            finally:
                self.mutex.acquire()
        finally:
            self._watches.discard(watch)
            watch.close()
        if self._phase in _LIVE:  # else the caller's check of the phase raises
            self._begin()

    def put_nowait(self, item: T) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """Remove and return the next item, blocking as ``queue.Queue.get``.

        The item counts as unfinished until ``task_done()`` (by this thread) acknowledges it;
        until then it is delivered again if this participant dies or closes (or its lease
        runs out).
        """
        with self.mutex:
            _seq, payload, _ = self._take(block, timeout, True)
        # If loads() fails, the item stays delivered to this thread: task_done() drops it.
        item: T = self._loads(payload)
        return item

    def get_nowait(self) -> T:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_many(
        self, max_items: int, block: bool = True, timeout: float | None = None
    ) -> list[T]:
        """Remove and return up to ``max_items`` waiting items, oldest first, waiting for the
        first one as ``get`` does (``Empty``, ``ShutDown``): at least one, and no more than
        are waiting. Each is delivered to the calling thread, as by ``get``: acknowledge
        them with ``task_done(len(items))``, or one by one."""
        _check_size("max_items", max_items, 1)
        extra: list[tuple[int, bytes, int]] = []
        with self.mutex:
            first = self._take(block, timeout, True, extra, max_items - 1)
        loads = self._loads
        return [loads(first[1]), *(loads(payload) for _, payload, _ in extra)]

    def get_deliveries(
        self, max_items: int, block: bool = True, timeout: float | None = None
    ) -> list[Delivery[T]]:
        """``get_many``, each item with its ``Delivery`` handle (see ``get_delivery``);
        ``ack_many(deliveries)`` acknowledges several with one durable write."""
        _check_size("max_items", max_items, 1)
        extra: list[tuple[int, bytes, int]] = []
        with self.mutex:
            first = self._take(block, timeout, False, extra, max_items - 1)
        loads = self._loads
        return [Delivery(self, seq, loads(payload), attempt)
                for seq, payload, attempt in (first, *extra)]

    def get_delivery(self, block: bool = True, timeout: float | None = None) -> Delivery[T]:
        """Like ``get``, but returns a ``Delivery`` to acknowledge explicitly with ``ack()``
        (or give back with ``nack()``); its ``attempt`` says how many times the item was
        delivered, this time included.

        ``task_done()`` never acknowledges an item got this way.
        """
        with self.mutex:
            seq, payload, attempt = self._take(block, timeout, False)
        try:
            item: T = self._loads(payload)
        except BaseException:
            # An item that cannot be loaded is left to task_done() of this thread to drop.
            with self.mutex:
                self._handles.pop(seq, None)
                self._track(seq)
            raise
        return Delivery(self, seq, item, attempt)

    def peek(self) -> T:
        """The item the next ``get`` would deliver, without delivering it; raises ``Empty``
        when none waits. Other consumers may take it meanwhile: what the next ``get``
        returns is only known when it returns."""
        with self.mutex:
            self._enter(Command.INSPECT)
            shell = self._shell
            try:
                self._begin()
                try:
                    now = self._reap()
                    found = None if self._dropped else next(shell.upcoming(now), None)
                except BaseException as exc:
                    self._step_failed(exc)
            finally:
                self._leave()
        if found is None:
            raise Empty
        item: T = self._loads(found[1])
        return item

    def _reap(self) -> float:
        """Give back (in the operation begun) what participants that are gone held, and
        deliveries whose lease ran out: the time it is now."""
        now = monotonic()
        shell = self._shell
        if shell.shared or shell.holds:
            shell.reap(now)
        return now

    def _take(
        self, block: bool, timeout: float | None, track: bool,
        extra: list[tuple[int, bytes, int]] | None = None, more: int = 0,
    ) -> tuple[int, bytes, int]:
        """Deliver the next item to the calling thread (under the mutex), waiting for one as
        ``get`` says: ``(seq, payload, attempt)``; and up to ``more`` more items, if they
        are waiting, into ``extra`` (in the same operation)."""
        if self._phase is not _OPEN:
            self._check_get()
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        shell = self._shell
        try:
            self._begin()
            try:
                now = self._reap()
                taken = None if self._dropped else shell.deliver(now, self._lease)
            except BaseException as exc:
                # A CorruptQueueError leaves the state as it was: the damaged item is not
                # skipped, every get() names it again, and puts and acknowledgements go on.
                self._step_failed(exc)
            if taken is None:
                taken = self._wait_for_item(block, timeout)
            # Record the delivery as this thread's in the same step.
            self._delivered(taken, track)
            if extra is not None:
                while len(extra) < more:
                    try:
                        now = monotonic()
                        another = None if self._dropped else shell.deliver(now, self._lease)
                    except BaseException as exc:
                        if not isinstance(exc, CorruptQueueError):
                            self._step_failed(exc)
                        break  # a damaged item: it is the next get's to report
                    if another is None:
                        break
                    self._delivered(another, track)
                    extra.append(another)
            if self._putters:
                # Every putter: one waiting for room for a whole batch may still have none,
                # while a single put behind it has.
                self.not_full.notify_all()
            return taken
        finally:
            self._leave()

    def _delivered(self, taken: tuple[int, bytes, int], track: bool) -> None:
        """Record delivery ``taken`` as the calling thread's (``track``), or as that of the
        handle made for it (under the mutex)."""
        seq = taken[0]
        if seq in self._handles:
            # Delivered again to this object after its lease ran out: the old handle is
            # stale (0 is no attempt), and the new delivery has its own handle or none.
            self._handles[seq] = 0
        if track:
            dq = self._deliveries.get(_get_ident())
            if dq is None:
                self._track(seq)
            else:
                dq.append(seq)
        else:
            self._handles[seq] = taken[2]

    def _wait_for_item(self, block: bool, timeout: float | None) -> tuple[int, bytes, int]:
        endtime = None if timeout is None else monotonic() + timeout
        shell = self._shell
        self._getters += 1
        try:
            while True:
                if not block:
                    raise Empty
                self._wait(self.not_empty, endtime, Empty)
                self._check_get()
                try:
                    now = monotonic()
                    shell.reap(now)
                    taken = None if self._dropped else shell.deliver(now, self._lease)
                except BaseException as exc:
                    self._step_failed(exc)
                if taken is not None:
                    return taken
        finally:
            self._getters -= 1

    def discard_damaged(self) -> int:
        """Discard the damaged item that ``get`` reports with ``CorruptQueueError``, and any
        damaged items right after it, up to the next whole one; returns how many.

        The discarded items count as acknowledged (durably, in ``fsync`` mode) and are never
        delivered. Nothing is ever discarded unless this is called. Raises ``ValueError``
        when the next item is not damaged or no item waits.
        """
        with self.mutex:
            self._enter(Command.GET)
            shell = self._shell
            try:
                self._begin()
                try:
                    discarded = shell.discard_damaged()
                    self._dropped_items()
                except BaseException as exc:
                    self._step_failed(exc)
                return discarded
            finally:
                self._leave()

    def purge(self) -> int:
        """Drop every waiting item, and return how many: they count as acknowledged (all of
        them durably at once, in ``fsync`` mode, by one checkpoint) and are never
        delivered. Items delivered and not yet acknowledged, in this or any other process,
        stay with their consumers (and are delivered again if given back later)."""
        with self.mutex:
            self._enter(Command.GET)
            shell = self._shell
            try:
                self._begin()
                try:
                    self._reap()  # items of holders that are gone wait: dropped too
                    dropped = shell.purge()
                    self._dropped_items()
                except BaseException as exc:
                    self._step_failed(exc)
                return dropped
            finally:
                self._leave()

    def _dropped_items(self) -> None:
        """(Under the mutex.) Items were dropped without a delivery (discarded, purged):
        wake whoever waits for room or for the queue to be done, and have a queue that is
        drained now delete its chunk files soon."""
        if self._putters:
            self.not_full.notify_all()
        state = self._shell.state
        if self._joiners and not state.unfinished:
            self.all_tasks_done.notify_all()
        if self._reclaimer is None and transitions.reclaimable(state):
            self._arm_reclaim()

    def _check_get(self) -> None:
        self._enter(Command.GET)
        if self._phase is Phase.SHUTDOWN and (self._dropped or not self._shell.state.size):
            raise ShutDown(f"the queue at {self.path!r} was shut down and is empty")

    def task_done(self, n: int = 1) -> None:
        """Acknowledge the oldest item this thread got and has not acknowledged (or, if it has
        none, the oldest such item of any thread of this Queue object). In ``fsync`` mode
        the acknowledgement is durable on return: the item is never delivered again.

        ``n`` > 1 acknowledges that thread's ``n`` oldest such items at once, durable
        together on return with one fsync (``ValueError``, and nothing acknowledged, if it
        has fewer). A crash before then may keep any of them acknowledged: each of the
        others is delivered again.

        Raises ``ValueError`` when no delivered item waits for acknowledgement (unlike
        ``queue.Queue``, an item must be got before it can be acknowledged), and
        ``LeaseExpiredError`` when the item's lease ran out and it was given back (the item
        is then no longer this thread's: the next ``task_done`` acknowledges the next one;
        with ``n`` > 1, the others are acknowledged, and the error names the first lost).
        """
        if n != 1:
            _check_size("n", n, 1)
        group = self._ack_group
        if group is not None:
            mask = _signal_mask()  # signals wait, as for a grouped put (``_insert``)
            try:
                _block_signals()
                self._task_done_grouped(group, n)
            finally:
                _restore_signals(mask)
            return
        with self.mutex:
            if self._phase is not _OPEN:
                self._enter(Command.ACK)
            try:
                self._begin()
                try:
                    with self._shell.one_fsync():
                        self._ack_oldest(_get_ident(), n)
                except (ValueError, LeaseExpiredError):
                    raise
                except BaseException as exc:
                    self._step_failed(exc)
            finally:
                self._leave()

    def _task_done_grouped(self, group: GroupCommit[None], n: int) -> None:
        """``task_done(n)`` with group commit (``fsync`` mode): the acknowledgements of the
        threads waiting meanwhile are written together and made durable with one fsync, by
        one of those threads. Each succeeds or fails on its own (``ValueError``,
        ``LeaseExpiredError``), except an IO error, which fails them all."""
        own: Request[None] = Request(None, n, _get_ident())
        if not group.join(own):
            if own.error is not None:
                raise own.error
            return
        led: list[Request[None]] = []
        try:
            with self.mutex:
                led = group.take()
                if self._phase is not _OPEN:
                    self._enter(Command.ACK)
                shell = self._shell
                self._unfinished_synced += len(led)
                try:
                    shell.hold_sync = True
                    try:
                        self._begin()
                        try:
                            with shell.one_fsync():
                                for request in led:
                                    try:
                                        self._ack_oldest(request.ident, request.count)
                                    except (ValueError, LeaseExpiredError) as exc:
                                        request.error = exc
                        except BaseException as exc:
                            self._step_failed(exc)
                    finally:
                        try:
                            self._leave()
                        finally:
                            shell.hold_sync = False
                            unsynced, shell.unsynced = shell.unsynced, None
                except BaseException:
                    self._unfinished_synced -= len(led)
                    raise
            # The fsync of the ack log, made with the mutex let go, so that other threads
            # get (and join the next group) meanwhile; join() waits for it.
            try:
                if unsynced is not None:
                    apply(shell.fs, (unsynced,))
            except OSError as exc:
                with self.mutex:
                    self._unfinished_synced -= len(led)
                    self._fail(exc)
            with self.mutex:
                self._unfinished_synced -= len(led)
                if self._joiners and not self._unfinished_synced:
                    # A joiner of a shared queue waits on a watch of the shared files,
                    # which this changed nothing in: wake it to look again.
                    self.all_tasks_done.notify_all()
                    for watch in self._watches:
                        watch.wake()
        except BaseException as exc:
            for request in led:
                if request is not own:
                    request.error = exc
            raise
        finally:
            group.finish(led, own)
        if own.error is not None:
            raise own.error

    def _ack_oldest(self, ident: int, n: int) -> None:
        """Acknowledge the ``n`` oldest deliveries of thread ``ident`` (or, if it has none,
        of the thread with the oldest one), in the operation begun: ``ValueError`` with
        nothing acknowledged if it has fewer; ``LeaseExpiredError`` for the first whose
        lease ran out, after acknowledging the others."""
        dq = self._deliveries.get(ident)
        if not dq:
            dq = self._oldest_deliveries()
        if len(dq) < n:
            raise ValueError(
                f"task_done({n}): only {len(dq)} delivered items of this thread wait for "
                "acknowledgement; nothing was acknowledged"
            )
        lost: LeaseExpiredError | None = None
        for _ in range(n):
            try:
                self._acknowledge(dq[0])
            except LeaseExpiredError as exc:
                lost = lost or exc
            dq.popleft()
        if lost is not None:
            raise lost

    def ack_many(self, deliveries: Iterable[Delivery[T]]) -> None:
        """Acknowledge several ``Delivery`` handles of this queue (as ``Delivery.ack``) with
        one durable write: in ``fsync`` mode all of them durable on return, with one fsync.
        Each handle is checked first (``ValueError`` for one settled already or of another
        queue, and nothing acknowledged); one whose lease ran out is marked lost and the
        others acknowledged, then ``LeaseExpiredError`` is raised for the first such."""
        batch = list(deliveries)
        if not batch:
            return
        with self.mutex:
            if self._phase is not _OPEN:
                self._enter(Command.ACK)
            seen: set[int] = set()
            for delivery in batch:
                if delivery._queue is not self or delivery.seq in seen:
                    raise ValueError(
                        f"{delivery!r} is not an unsettled delivery of this queue, or is "
                        "given twice; nothing was acknowledged"
                    )
                seen.add(delivery.seq)
                if delivery._done or delivery.seq not in self._handles:
                    raise ValueError(_settled(delivery) + "; nothing was acknowledged")
            try:
                self._begin()
                lost: LeaseExpiredError | None = None
                try:
                    with self._shell.one_fsync():
                        for delivery in batch:
                            try:
                                self._check_handle(delivery)
                                self._acknowledge(delivery.seq)
                                delivery._done = "acked"
                            except LeaseExpiredError as exc:
                                delivery._done = "lost"
                                lost = lost or exc
                            del self._handles[delivery.seq]
                except BaseException as exc:
                    self._step_failed(exc)
                if lost is not None:
                    raise lost
            finally:
                self._leave()

    def _track(self, seq: int) -> None:
        """Track delivery ``seq`` as the calling thread's (under the mutex). Entries left
        empty by threads that have ended are dropped now and then, so that threads that
        come and go do not grow the table."""
        deliveries = self._deliveries
        dq = deliveries.get(_get_ident())
        if dq is not None:
            dq.append(seq)
            return
        if len(deliveries) >= self._prune_at:
            for ident in [ident for ident, dq in deliveries.items() if not dq]:
                del deliveries[ident]
            self._prune_at = max(_PRUNE_AT, 2 * len(deliveries))
        deliveries[_get_ident()] = deque((seq,))

    def _oldest_deliveries(self) -> deque[int]:
        """The deliveries of the thread holding the oldest unacknowledged one."""
        oldest: deque[int] | None = None
        for ident, dq in list(self._deliveries.items()):
            if not dq:
                del self._deliveries[ident]
            elif oldest is None or dq[0] < oldest[0]:
                oldest = dq
        if oldest is None:
            raise ValueError(
                "task_done() called with no delivered item waiting for acknowledgement "
                "(every item got with get() is acknowledged, or none was got)"
            )
        return oldest

    def _settle(self, delivery: Delivery[T], delay: float | None, counted: bool = True) -> None:
        """Acknowledge ``delivery`` (``delay`` None) or give it back after ``delay``; not
        ``counted``: give it back at once as if it had not been delivered (for a delivery
        that reached nobody, such as that of a cancelled asyncio ``get``)."""
        with self.mutex:
            if self._phase is not _OPEN:
                self._enter(Command.ACK)
            self._check_handle(delivery)
            shell = self._shell
            try:
                self._begin()
                try:
                    if delay is None:
                        self._acknowledge(delivery.seq)
                    else:
                        shell.give_back(
                            delivery.seq, monotonic() + delay if delay else 0.0, counted
                        )
                        if self._getters:
                            self.not_empty.notify()
                    del self._handles[delivery.seq]
                    delivery._done = "acked" if delay is None else "nacked"
                except LeaseExpiredError:
                    del self._handles[delivery.seq]
                    delivery._done = "lost"
                    raise
                except BaseException as exc:
                    self._step_failed(exc)
            finally:
                self._leave()

    def _extend(self, delivery: Delivery[T], seconds: float) -> None:
        with self.mutex:
            if self._phase is not _OPEN:
                self._enter(Command.ACK)
            self._check_handle(delivery)
            shell = self._shell
            try:
                self._begin()
                try:
                    shell.extend(delivery.seq, monotonic() + seconds)
                except BaseException as exc:
                    self._step_failed(exc)
            finally:
                self._leave()

    def _check_handle(self, delivery: Delivery[T]) -> None:
        """Refuse to settle (or extend) ``delivery`` unless it is the handle this object
        handed out for the item's current delivery to it: a handle settled already raises
        ``ValueError``; one whose lease ran out, the item having been delivered to this
        object again since, raises ``LeaseExpiredError`` and leaves the new handle alone."""
        attempt = self._handles.get(delivery.seq)
        if delivery._done or attempt is None:
            raise ValueError(_settled(delivery))
        if attempt != delivery.attempt:
            delivery._done = "lost"
            raise LeaseExpiredError(self._shell.state.config.directory, delivery.seq)

    def _acknowledge(self, seq: int) -> None:
        shell = self._shell
        shell.settle(seq)
        state = shell.state
        if state.tail == state.head:
            if self._joiners:
                self.all_tasks_done.notify_all()
            if self._reclaimer is None and transitions.reclaimable(state):
                self._arm_reclaim()
        elif self._joiners and not state.unfinished:
            self.all_tasks_done.notify_all()

    def _arm_reclaim(self) -> None:
        """Have a drained queue's chunk files deleted soon (under the mutex): a checkpoint
        ``reclaim_after`` seconds from now, if the queue is still drained then."""
        delay = self._reclaim_after
        if delay is None:
            return
        timer = threading.Timer(delay, _reclaim, (weakref.ref(self),))
        timer.daemon = True
        timer.name = f"pqueue reclaim {self.path}"
        self._reclaimer = timer
        timer.start()

    def _reclaim(self) -> None:
        """The reclaim timer fired: checkpoint if the queue is still drained."""
        with self.mutex:
            self._reclaimer = None
            if self._phase not in _LIVE:
                return
            try:
                shell = self._shell
                try:
                    self._begin()
                    shell.reclaim()
                finally:
                    self._leave()
            except BaseException as exc:  # the caller is a timer thread: nobody to raise to
                if self._phase in _LIVE:
                    self._break(exc)

    def join(self) -> None:
        """Block until every item put (by any participant, including those from before a
        reopen) is acknowledged."""
        with self.mutex:
            self._enter(Command.INSPECT)
            self._joiners += 1
            try:
                while self._unfinished() or self._unfinished_synced:
                    self._wait(self.all_tasks_done, None, RuntimeError)
                    self._enter(Command.INSPECT)
            finally:
                self._joiners -= 1
                self._leave()

    def _unfinished(self) -> int:
        if self._dropped:
            return self._shell.state.outstanding
        return self._inspect().unfinished

    def shutdown(self, immediate: bool = False) -> None:
        """Shut this Queue object down, as ``queue.Queue.shutdown`` (Python 3.13).

        Later ``put`` calls raise ``ShutDown``; ``get`` drains what is left, then raises
        ``ShutDown``. With ``immediate=True`` no item is delivered any more (``get`` raises
        ``ShutDown``, ``join`` waits only for items already delivered): they stay on disk,
        for other participants and the next open. Other Queue objects on the directory go
        on as they were.
        """
        with self.mutex:
            self._enter(Command.SHUTDOWN)
            if immediate:
                self._dropped = True
                if not self._shell.shared:
                    self._shell.state = transitions.shutdown(self._shell.state, immediate)
            self._wake_all()  # each waiter re-checks: getters of an empty queue raise ShutDown

    # --- life ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint and let go of the directory. Later calls raise ``QueueClosedError``.

        Idempotent. Items this object got and did not acknowledge are delivered again: at
        once to the other participants of a shared queue, after a reopen otherwise.
        """
        with self.mutex:
            if self._phase in (Phase.CLOSED, Phase.SUPERSEDED, Phase.FORKED):
                return
            was_broken = self._phase is Phase.BROKEN
            self._phase = transitions.advance(self._phase, Command.CLOSE, self.path)
            self._cancel_reclaim()
            shell = self._shell
            try:
                if not was_broken and not shell.dirty:
                    try:
                        if shell.shared:
                            shell.enter()
                        try:
                            shell.release_owner(shell.me)
                            shell.run(transitions.close(shell.state))
                            shell.unlink_doomed(every=True)  # what checkpoints left
                            if shell.shared:
                                with contextlib.suppress(FileNotFoundError):
                                    self._fs.unlink(peer_path(self.path, shell.me))
                        finally:
                            self._leave()
                    except OSError as exc:
                        raise QueueBrokenError(
                            f"IO error while closing the queue at {self.path!r}: {exc}"
                        ) from exc
            finally:
                self._release_files(shell.state)
                self._wake_all()
        self._unregister()
        self._graveyard.close()

    # --- as a dead-letter queue (the calls of ``_Graveyard``) -------------------------------

    def _head(self) -> int:
        """The seq the next put gets."""
        with self.mutex:
            self._enter(Command.INSPECT)
            try:
                self._begin()
                return self._shell.state.head
            finally:
                self._leave()

    def _bury(self, record: bytes) -> None:
        """Put an already serialised dead letter (durable on return in fsync mode)."""
        with self.mutex:
            self._enter(Command.INSPECT)  # a dead-letter queue shut down still takes them
            shell = self._shell
            try:
                self._begin()
                try:
                    shell.put(record)
                    if self._getters:
                        self.not_empty.notify()
                except BaseException as exc:
                    self._step_failed(exc)
            finally:
                self._leave()

    def _origins(self) -> list[int]:
        """The origin seqs of the dead letters not acknowledged here."""
        with self.mutex:
            self._enter(Command.INSPECT)
            try:
                self._begin()
                seqs = []
                for _seq, record in self._shell.backlog():
                    with contextlib.suppress(ValueError):  # not a dead letter: not ours
                        seqs.append(decode_dead_letter(record)[0])
                return seqs
            finally:
                self._leave()

    def _supersede_locked(self) -> None:
        """A newer Queue object takes the directory over (under the mutex): let go of it
        without writing."""
        if self._opening:  # its constructor never finished: only its files to let go of
            self._opening = False
            shell = getattr(self, "_shell", None)
            self._release_files(shell.state if shell is not None else None)
            return
        if self._phase in (Phase.CLOSED, Phase.SUPERSEDED, Phase.FORKED):
            return
        self._phase = transitions.advance(self._phase, Command.SUPERSEDE, self.path)
        self._cancel_reclaim()
        self._release_files(self._shell.state)
        self._wake_all()

    def _forked(self) -> None:
        """In the child of a fork: this object belongs to the parent. Refuse every call from
        now on, and never release the parent's lock or files (new locks: the parent's may
        have been held by a thread that does not exist here)."""
        self._init_locks()
        self._reclaimer = None
        self._watches = set()
        self._phase = transitions.advance(self._phase, Command.FORK, self.path)

    def _cancel_reclaim(self) -> None:
        timer, self._reclaimer = self._reclaimer, None
        if timer is not None:
            timer.cancel()

    def _wake_all(self) -> None:
        """Wake every waiting thread to re-check the phase (under the mutex)."""
        self.not_empty.notify_all()
        self.not_full.notify_all()
        self.all_tasks_done.notify_all()
        for watch in self._watches:
            watch.wake()

    def _release_files(self, state: QueueState | None) -> None:
        fs = self._fs
        try:
            if state is not None:
                fs.release(state.ledger.head_path)
                fs.release(state.config.ack_path)
                fs.release(state.config.temp_path)
            if self._owns_fs and isinstance(fs, OsFileSystem):
                fs.close()
        finally:
            if self._lock is not None:
                self._lock.release()
            shell = getattr(self, "_shell", None)
            if shell is not None:
                shell.part()

    def _unregister(self) -> None:
        if not self.exclusive:
            return
        with _owners_lock:
            ref = _owners.get(self._key)
            if ref is not None and ref() in (self, None):
                del _owners[self._key]

    def __enter__(self) -> Queue[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = getattr(getattr(self, "_shell", None), "state", None)
        size = state.size if state is not None else "?"
        unfinished = state.unfinished if state is not None else "?"
        mode = " exclusive" if self.exclusive else ""
        return (
            f"<pqueue.Queue path={self.path!r} size={size} unfinished={unfinished} "
            f"durability={self.durability!r}{mode} {self._phase.value}>"
        )


DEAD_LETTERS = "dead-letters"  # the directory of a queue's dead-letter queue, inside it


def dead_letter_serializer(inner: NamedSerializer) -> NamedSerializer:
    """The serializer of the dead-letter queue of a queue whose serializer is ``inner``:
    records are ``pqueue.core.deadletter`` frames, loaded as ``DeadLetter``; ``dumps``
    refuses (dead letters are put by moving items, never by ``put``)."""

    def dumps(obj: object) -> bytes:
        raise TypeError(
            "a dead-letter queue takes items only by moving them from its queue (max_attempts);"
            " put the item back into the queue itself to try it again"
        )

    def loads(data: bytes) -> DeadLetter[Any]:
        seq, attempts, payload = decode_dead_letter(data)
        return DeadLetter(inner.loads(payload), attempts, seq)

    return NamedSerializer(f"{DEAD_LETTERS}/{inner.name}", dumps, loads)


class _Graveyard:
    """The dead-letter queue of a Queue (``pqueue.io.shared.DeadLetterSink``), opened when
    first needed: by the first move to it, by ``dead_letters``, or at an open that must
    look into it. It holds no reference to its Queue, so that dropping the Queue still
    lets it go at once."""

    def __init__(
        self, directory: str, looker: FileSystem, fs: FileSystem | None,
        durability: Durability, codec: NamedSerializer, policy: Policy | None,
    ) -> None:
        self.directory = f"{directory}/{DEAD_LETTERS}"
        self._looker = looker  # the queue's own FileSystem, to look for the directory
        self._fs = fs  # what the dead-letter queue opens with (None: a real one of its own)
        self._durability = durability
        self._serializer = dead_letter_serializer(codec)
        self._policy = policy
        self._queue: Queue[Any] | None = None
        self._lock = threading.Lock()

    def open(self) -> Queue[Any]:
        with self._lock:
            queue = self._queue
            if queue is None or queue._phase not in _LIVE:
                queue = Queue(
                    self.directory, durability=self._durability, serializer=self._serializer,
                    fs=self._fs, policy=self._policy,
                )
                self._queue = queue
            return queue

    def head(self) -> int:
        return self.open()._head()

    def bury(self, record: bytes) -> None:
        self.open()._bury(record)

    def origins(self) -> list[int]:
        if self._queue is None and not self._looker.exists(f"{self.directory}/info"):
            return []
        return self.open()._origins()

    def close(self) -> None:
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.close()


def _reclaim(ref: weakref.ref[Queue[Any]]) -> None:
    # A thread of pqueue's own never takes a signal: while the main thread holds signals
    # back for an operation, the kernel would deliver one here, and Python would run its
    # handler in the main thread at once, inside that operation.
    _block_signals()
    queue = ref()
    if queue is not None:
        queue._reclaim()


def _finalize(fs: OsFileSystem | None, *locks: Lock | None) -> None:
    """Let go of the directory when a Queue is garbage collected without close(): the
    other participants then see it gone, and take back what it held."""
    try:
        if fs is not None:
            fs.close()
    finally:
        for lock in locks:
            if lock is not None:
                lock.release()


def _new_id(fs: FileSystem) -> int | None:
    """A participant id: random on the real disk (unique across processes and boots);
    None on any other file system, where ``join`` numbers participants by the shared
    state's version, so that harness runs are reproducible."""
    if isinstance(fs, OsFileSystem):
        return int.from_bytes(os.urandom(8), "little") >> 1 | 1
    return None


def _after_fork_in_child() -> None:
    """The child of a fork: every Queue object it inherited belongs to the parent."""
    global _owners_lock
    _owners_lock = threading.Lock()
    _owners.clear()
    for queue in list(_instances):
        queue._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
