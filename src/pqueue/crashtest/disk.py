"""SimulatedDisk: an in-memory ``FileSystem`` that knows what a crash would leave behind.

The disk keeps files as inodes, separate from the directory entries that name them, so a
rename moves an inode and its history, not a copy of its bytes. For every inode it keeps the
visible content (what ``read`` returns), the durable content (what survives a power loss) and
the ordered data operations in between; for every directory, the visible entries, the durable
entries and the ordered entry operations in between. ``crash_states(model)`` combines the
pending operations as a ``PersistenceModel`` allows and yields each possible result as a new
disk.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import errno
import itertools
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from collections.abc import Set as AbstractSet
from typing import Literal, NoReturn, ParamSpec, TypeVar

from pqueue.crashtest.inodes import (
    StrPath,
    _apply_data,
    _Dir,
    _error,
    _File,
    _fspath,
    _join,
    _Link,
    _mutable,
    _Node,
    _Rename,
    _split,
    _Truncate,
    _Unlink,
    _Write,
)
from pqueue.crashtest.models import POWER_LOSS, ModelName, PersistenceModel, _as_model
from pqueue.crashtest.states import _check_limit, _describe, _enumerate, _estimate, _Origin
from pqueue.io.fs import Lock, Watch

__all__ = ["SimulatedCrash", "SimulatedDisk", "SimulatedProcess"]


class SimulatedCrash(BaseException):
    """Raised by a ``SimulatedDisk`` at the crash point armed by ``crash_after``, and by a
    ``SimulatedProcess`` that was killed.

    It derives from ``BaseException``, not ``Exception``, so code under test that handles
    ``Exception`` or ``OSError`` cannot swallow it: it unwinds the code under test like the
    end of the process would. The operation that raised it had no effect; every later
    operation on the same disk (or through the same killed process) raises it again.
    """


_MUTATING = frozenset(
    {
        "create", "fsync", "fsync_dir", "lock", "mkdir", "replace", "rmdir", "truncate",
        "unlink", "write",
    }
)
_READS = frozenset(
    {
        "boot_id", "exists", "file_type", "is_dir", "listdir", "lock_key", "probe", "read",
        "release", "same_filesystem", "size", "volatile", "watch", "write_back",
    }
)
_disk_ids = itertools.count(1)
_P = ParamSpec("_P")
_T = TypeVar("_T")
_K = TypeVar("_K")


def _new_boot_id(after: str | None = None) -> str:
    """The boot id of a new disk (boot 1), or of the boot after ``after``: numbered by the
    disk's history, so that runs are reproducible byte for byte."""
    number = 1 if after is None else int(after.rsplit("-", 1)[1]) + 1
    return f"simulated-boot-{number}"


def _op_names(control: str, ops: AbstractSet[str] | None) -> frozenset[str] | None:
    """``ops`` as given to ``fail`` or ``interrupt``, checked to name FileSystem methods."""
    names = None if ops is None else frozenset(ops)
    if names is not None and not names <= _MUTATING | _READS:
        unknown = sorted(names - _MUTATING - _READS)
        raise ValueError(f"{control}: no such FileSystem operation: {', '.join(unknown)}")
    return names


def _check_count(control: str, name: str, value: object, least: int) -> None:
    """``TypeError`` unless ``value`` is an ``int`` (not a ``bool``), ``ValueError`` unless
    it is at least ``least``; the message names ``control`` and the argument."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{control}: {name} must be an int, got {value!r}")
    if value < least:
        raise ValueError(f"{control} needs {name} >= {least}, got {value}")


class _Trigger:
    """Armed to go off on matching call number ``skip`` and the ``times - 1`` after it."""

    __slots__ = ("ops", "skip", "times")

    def __init__(self, ops: frozenset[str] | None, skip: int, times: int) -> None:
        self.ops = ops
        self.skip = skip
        self.times = times

    def due(self, op: str, mutating: bool) -> bool:
        """Count a call of ``op``; whether this trigger goes off on it."""
        if not (mutating if self.ops is None else op in self.ops):
            return False
        if self.skip:
            self.skip -= 1
            return False
        self.times -= 1
        return True


class _Fault(_Trigger):
    __slots__ = ("drops_writes", "error")

    def __init__(
        self,
        error: OSError,
        ops: frozenset[str] | None,
        skip: int,
        times: int,
        drops_writes: bool,
    ) -> None:
        super().__init__(ops, skip, times)
        self.error = error
        self.drops_writes = drops_writes


class _Interrupt(_Trigger):
    __slots__ = ("exception",)

    def __init__(
        self, exception: BaseException, ops: frozenset[str] | None, skip: int, times: int
    ) -> None:
        super().__init__(ops, skip, times)
        self.exception = exception


class _SimulatedLock:
    """One holder of a lock on an inode, as one ``flock``-ed open file description."""

    __slots__ = ("_disk", "_ino", "_owner", "shared")

    def __init__(
        self, disk: SimulatedDisk, ino: int, shared: bool, owner: SimulatedProcess | None
    ) -> None:
        self._disk: SimulatedDisk | None = disk
        self._ino = ino
        self._owner = owner
        self.shared = shared

    def release(self) -> None:
        disk = self._disk
        if disk is not None:
            with disk._mutex:
                self._drop()

    def _drop(self) -> None:
        """Let go of the lock and wake its waiters; the disk's mutex is held."""
        disk, self._disk = self._disk, None
        if disk is None:
            return
        holders = disk._locks[self._ino]
        holders.remove(self)
        if not holders:
            del disk._locks[self._ino]
        if self._owner is not None:
            self._owner._locks.discard(self)
        for watch in disk._lock_watches.get(self._ino, ()):
            watch._fired = True
        disk._changes.notify_all()


class _SimulatedWatch:
    """What ``SimulatedDisk.watch`` returns (see there)."""

    __slots__ = ("_closed", "_disk", "_fired", "_inos", "_owner", "_parts")

    def __init__(
        self,
        disk: SimulatedDisk,
        parts: tuple[str, ...],
        inos: tuple[int, ...],
        owner: SimulatedProcess | None,
    ) -> None:
        self._disk = disk
        self._parts = parts
        self._inos = inos  # the files of ``closes``, whose lock releases fire it
        self._owner = owner
        self._fired = False
        self._closed = False

    def wait(self, timeout: float | None) -> bool:
        """Block until the file changed, a lock on a file of ``closes`` was released or
        ``wake()`` was called, since the watch was made or the last ``wait`` returned;
        ``False`` if ``timeout`` seconds (``None``: no limit) passed first.

        ``True`` at once if the disk has crashed, the process that made the watch was
        killed or the watch was closed.
        """
        disk = self._disk
        with disk._mutex:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._fired:
                owner = self._owner
                if self._closed or disk._crashed or (owner is not None and owner._killed):
                    return True
                if deadline is None:
                    disk._wait(None)
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    disk._wait(remaining)
            self._fired = False
            return True

    def wake(self) -> None:
        """Make the ``wait`` in progress, or else the next one, return ``True`` at once."""
        disk = self._disk
        with disk._mutex:
            self._fired = True
            disk._changes.notify_all()

    def close(self) -> None:
        """Stop watching (idempotent); a ``wait`` then returns ``True`` at once."""
        disk = self._disk
        with disk._mutex:
            if self._closed:
                return
            self._closed = True
            _forget(disk._watches, self._parts, self)
            for ino in self._inos:
                _forget(disk._lock_watches, ino, self)
            disk._changes.notify_all()


def _forget(registry: dict[_K, set[_SimulatedWatch]], key: _K, watch: _SimulatedWatch) -> None:
    """Take ``watch`` out of ``registry[key]``, and the key out when no watch is left."""
    watches = registry.get(key)
    if watches is not None:
        watches.discard(watch)
        if not watches:
            del registry[key]


class SimulatedDisk:
    """An in-memory file system with POSIX semantics that can be crashed at any operation.

    It implements the ``pqueue.io.FileSystem`` protocol, so a ``pqueue.Queue`` (or any code
    written against that protocol) runs on it unchanged. Paths are absolute POSIX strings
    (``"/q/info"``), normalised with ``posixpath.normpath``; a relative path is taken
    relative to ``/``, which always exists. Every method also takes an ``os.PathLike[str]``
    (a ``pathlib`` path) wherever it takes a path, at run time (the methods are annotated
    ``str``, so that subclasses overriding them with ``str`` stay well typed;
    ``SimulatedProcess`` is annotated with both); bytes paths raise ``TypeError``. Errors
    are the ``OSError`` subclasses, with the ``errno``, that Linux gives for the same call
    (``FileNotFoundError``, ``IsADirectoryError``, ``NotADirectoryError``,
    ``FileExistsError``, ``OSError`` with ``EINVAL``, ``ENOTEMPTY`` or ``EBUSY``). One
    deliberate difference: ``size`` of a directory raises ``IsADirectoryError``, where the
    real value depends on the file system.

    What is *visible* (returned by ``read``, ``listdir``, ``size``) and what is *durable*
    (would survive a power loss) are tracked separately:

    - ``write``, ``truncate`` and ``create`` over an existing file are data operations of the
      file's inode, durable once ``fsync(path)`` returns;
    - creating a file (``create``, ``write`` or ``lock`` on a missing path), ``mkdir``,
      ``replace`` and ``unlink`` are entry operations of the directories involved, durable
      once ``fsync_dir`` of each directory returns. ``fsync`` of a file does not make its
      name durable. A ``replace`` within one directory is one atomic entry operation; across
      directories it is a link in the destination and an unlink in the source.

    Harness controls: ``crash_after`` arms a crash, ``fail`` injects errors, ``interrupt``
    makes calls raise after taking effect (a ``KeyboardInterrupt`` landing just after a
    system call), ``capacity`` sets the size of the disk (``used`` says how much is taken),
    ``operations`` counts the state-changing calls made so far, ``crash_states`` and
    ``count_crash_states`` enumerate what a crash would leave, ``copy`` snapshots the whole
    disk and ``files`` and ``dirs`` show the visible tree. These keep working after a crash.

    The disk is unlimited unless ``capacity`` is set: then a ``write`` or ``truncate`` that
    would make the visible files take more than ``capacity`` bytes raises ``OSError``
    (``ENOSPC``) and has no effect, while calls that do not grow a file always work, so a
    full disk can still be cleaned up. Only file data takes space: directories, names and
    empty files are free, and there is no limit on inodes.

    A disk serialises its own operations, so several threads (or several queues) may share
    one, as they would share a kernel. ``process()`` makes a ``SimulatedProcess``: a view of
    the disk as one process sharing that kernel has it, which owns the locks and watches
    made through it and can be killed alone. Calls made on the disk itself come from a
    default process that is never killed but by the crash of the whole disk.

    Locks (``lock``, ``probe``) follow ``flock``: they belong to the inode, and every ``lock``
    call makes a new holder (an open file description), exclusive or shared, that conflicts
    with the other holders whoever made them. A power loss starts a new boot (``boot_id``).
    ``volatile`` marks a file whose content the code under test never trusts after a reboot,
    which cuts what a power loss may leave of it to two outcomes. ``watch`` waits for a file
    to change.
    """

    def __init__(self) -> None:
        self._root = _Dir(1, {}, {}, [])
        self._next_ino = 2
        self._seq = 0  # state-changing calls ever made, copies included: orders entry ops
        self._uid = next(_disk_ids)
        self._boot = _new_boot_id()
        self._mutex = threading.RLock()
        # Notified on every release of a lock, kill, crash and watched change: what a
        # blocking ``lock`` and ``Watch.wait`` sleep on.
        self._changes = threading.Condition(self._mutex)
        self._locks: dict[int, list[_SimulatedLock]] = {}  # inode -> holders
        self._watches: dict[tuple[str, ...], set[_SimulatedWatch]] = {}  # path -> watches
        self._lock_watches: dict[int, set[_SimulatedWatch]] = {}  # inode -> watches (closes)
        self._caller: SimulatedProcess | None = None  # the process of the call in progress
        self._process_ids = itertools.count(1)
        self._operations = 0
        self._countdown: int | None = None
        self._crashed = False
        self._faults: list[_Fault] = []
        self._dropped_by: _Fault | None = None  # the fault just raised, if it drops writes
        self._interrupts: list[_Interrupt] = []
        self._interrupting: _Interrupt | None = None  # due at the end of the current call
        self._armed = False  # whether there are faults or interrupts to count calls for
        self._capacity: int | None = None
        # While ``_recording``: the disk as it was before each state-changing call.
        self._snapshots: list[SimulatedDisk] | None = None
        self._snapshot_limit = 0
        self._origin: _Origin | None = None  # for a crash state: what it came from

    # -- harness controls --------------------------------------------------------------

    @property
    def operations(self) -> int:
        """How many state-changing calls this disk has served.

        These are the calls of ``write``, ``create``, ``truncate``, ``fsync``,
        ``fsync_dir``, ``replace``, ``unlink`` and ``mkdir``, and of ``lock`` on a path that
        did not exist, whether they succeeded or raised, made on the disk or through any of
        its processes (a call refused because its process was killed does not count). Run a
        workload once on a fresh disk and read this to size a ``crash_after`` sweep:
        crashing after ``0 .. operations`` calls covers every crash point.
        """
        return self._operations

    @property
    def crashed(self) -> bool:
        """Whether the crash armed by ``crash_after`` has happened."""
        return self._crashed

    @property
    def armed(self) -> int:
        """How many faults (``fail``) and interrupts (``interrupt``) are still armed: not yet
        raised as many times as they were asked to be. A sweep that arms one at call
        ``after = 0, 1, 2, ...`` is done when a run leaves it armed: the code under test made
        fewer matching calls."""
        with self._mutex:
            return len(self._faults) + len(self._interrupts)

    def crash_after(self, n: int | None) -> None:
        """Crash after ``n`` more state-changing calls (see ``operations``); ``None`` disarms.

        The next call after those ``n`` raises ``SimulatedCrash`` without taking effect
        (``crash_after(0)``: the very next one). From then on every ``FileSystem`` call on
        this disk, or through any of its processes, raises ``SimulatedCrash``, a blocking
        ``lock`` waiting meanwhile included, and ``Watch.wait`` returns ``True`` at once;
        take the outcome with ``crash_states`` or ``copy``, which still work. A crash cannot
        be undone.
        """
        if n is not None:
            _check_count("crash_after", "n", n, 0)
        with self._mutex:
            self._countdown = n

    def fail(
        self,
        after: int,
        error: OSError,
        *,
        ops: AbstractSet[str] | None = None,
        times: int = 1,
        drops_writes: bool = False,
    ) -> None:
        """Make a coming call raise ``error`` (a copy of it) instead of taking effect.

        Counting only the calls that match, call number ``after`` (0: the next one) and the
        ``times - 1`` matching calls after it fail. ``ops=None`` matches the state-changing
        calls (see ``operations``); otherwise ``ops`` names the methods that match, reads
        included, e.g. ``{"fsync"}`` or ``{"read", "size"}``. Faults
        armed by several ``fail`` calls count independently; when two are due on one call,
        the one armed first is raised.

        A failed call changes nothing. In particular a failed ``fsync`` makes nothing
        durable: the writes it covered stay pending, so a later crash may still lose them,
        even though ``read`` keeps returning them.

        ``drops_writes=True`` models what Linux (ext4, xfs) does after a write-back error:
        the failed ``fsync`` marks the pages it covered clean, so its writes are lost to the
        disk for good (``read`` still returns them) and a later ``fsync`` that succeeds
        makes only the writes after it durable. Code that retries a failed fsync and carries
        on as if it had succeeded passes without it and is caught with it. (Writes that a
        failed fsync got to the disk before the error are not modelled with it: it takes
        the outcome where none did.)
        """
        _check_count("fail", "after", after, 0)
        _check_count("fail", "times", times, 1)
        given: object = error  # checked at run time: a caller may not be type checked
        if not isinstance(given, OSError):
            what = f"the class {given.__name__}" if isinstance(given, type) else repr(given)
            raise TypeError(
                f"fail: error must be an OSError instance (a failing call of the file system, "
                f"e.g. OSError(errno.EIO, 'Input/output error')), got {what}; to raise "
                f"another exception after a call took effect, use interrupt()"
            )
        names = _op_names("fail", ops)
        with self._mutex:
            self._faults.append(_Fault(error, names, after, times, drops_writes))
            self._armed = True

    def interrupt(
        self,
        after: int,
        exception: BaseException,
        *,
        ops: AbstractSet[str] | None = None,
        times: int = 1,
    ) -> None:
        """Make a coming call take effect, then raise ``exception`` (a copy of it).

        This models an asynchronous exception landing just after a system call returned,
        before the code under test could take note of what the call did: a
        ``KeyboardInterrupt``, or what a signal handler raises (a ``SIGALRM`` timeout).
        Calls are counted as by ``fail``: only the matching ones, ``ops=None`` matching the
        state-changing calls (see ``operations``) and otherwise ``ops`` naming the methods
        that match, reads included. Call number ``after`` (0: the next one) and the
        ``times - 1`` matching calls after it do everything they would have done, then raise
        a ``copy.copy`` of ``exception`` instead of returning: the effect stays, a read's
        result is lost. An interrupted ``lock`` has taken the lock, and it stays held with
        no way to release it, as an ``flock`` whose descriptor was never returned, until
        its process is killed (copies and crash states of the disk hold no locks; the
        disk's default process is never killed). A blocking ``lock`` that waits takes the
        lock, then raises the interrupt; if the disk crashes or its process is killed while
        it waits, it raises ``SimulatedCrash`` and the interrupt is used up. A call that
        raises an error of its own
        (say ``FileNotFoundError``, or ``ENOSPC`` on a full disk) raises the interrupt
        instead, with that error as its ``__context__``.

        Interrupts armed by several calls count independently of each other and of the
        faults armed by ``fail``; when two are due on one call, the one armed first is
        raised and both are used up. A fault due on the same call wins: the call raises the
        fault's error and has no effect, and the interrupt is used up all the same. A crash
        armed by ``crash_after`` wins over both: the crashing call raises ``SimulatedCrash``.

        ``ValueError`` unless ``after >= 0`` and ``times >= 1`` and ``ops`` names
        ``FileSystem`` methods; ``TypeError`` if ``exception`` is not an exception instance
        (a class such as ``KeyboardInterrupt`` is refused: pass ``KeyboardInterrupt()``).
        """
        _check_count("interrupt", "after", after, 0)
        _check_count("interrupt", "times", times, 1)
        if not isinstance(exception, BaseException):
            raise TypeError(f"interrupt needs an exception instance, got {exception!r}")
        names = _op_names("interrupt", ops)
        with self._mutex:
            self._interrupts.append(_Interrupt(exception, names, after, times))
            self._armed = True

    @property
    def capacity(self) -> int | None:
        """The size of the disk in bytes; ``None`` (the default): unlimited.

        Settable at any time, also below ``used``: the disk is then full and no file may
        grow until enough is freed. When it is not ``None``, a ``write`` that extends a file
        or a ``truncate`` that extends it, if it would make ``used`` exceed ``capacity``,
        raises ``OSError`` with ``errno.ENOSPC`` and has no effect at all: the whole write
        fails (a real file system may write part of the data first) and a ``write`` to a
        missing file does not create it. The call still counts in ``operations``, as failed
        calls do. Calls that keep or reduce the size always work: writes within a file,
        ``truncate`` down, ``create`` over an existing file, ``unlink``, and ``replace``
        over an existing file (which frees the replaced one). Creating an empty file or a
        directory works on a full disk too, as inodes are not modelled. ``copy`` keeps the
        capacity; the disks of ``crash_states`` and ``crash_state`` are unlimited.
        ``ValueError`` if negative.
        """
        return self._capacity

    @capacity.setter
    def capacity(self, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError(f"capacity needs to be >= 0 or None, got {value}")
        with self._mutex:
            self._capacity = value

    @property
    def used(self) -> int:
        """The bytes taken: the visible size of every regular file in the visible tree.

        A file reachable under two names (as in a crash state where both halves of a rename
        across directories survived) counts once. A gap of zeros left by writing past the
        end counts in full: files are not sparse. Directories take nothing.
        """
        with self._mutex:
            return self._used()

    def files(self) -> dict[str, bytes]:
        """The visible content of every regular file, by absolute path, sorted by path."""
        with self._mutex:
            found: dict[str, bytes] = {}
            for path, node in self._walk_visible():
                if isinstance(node, _File):
                    found[path] = bytes(node.data)
            return dict(sorted(found.items()))

    def tree(self) -> dict[str, tuple[int, bytes | None]]:
        """Every visible path, ``"/"`` included, with its inode number and content (``None``
        for a directory), sorted by path. Two paths with one inode name the same file."""
        with self._mutex:
            found = {
                path: (node.ino, bytes(node.data) if isinstance(node, _File) else None)
                for path, node in self._walk_visible()
            }
            return dict(sorted(found.items()))

    def inode(self, path: StrPath) -> int | None:
        """The inode number of what is visible at ``path``, or ``None`` if nothing is there.
        An inspection, like ``files``: not an operation, never crashed nor counted."""
        path = _fspath(path)
        with self._mutex:
            try:
                return self._lookup(_split(path), path).ino
            except OSError:
                return None

    def dirs(self) -> list[str]:
        """The absolute path of every visible directory, ``"/"`` included, sorted."""
        with self._mutex:
            return sorted(path for path, node in self._walk_visible() if isinstance(node, _Dir))

    def copy(self) -> SimulatedDisk:
        """A deep, independent copy: same visible, durable and pending state.

        The copy is a new disk: it holds no locks, processes or watches, has no crash, fault
        or interrupt armed, is not crashed even if this disk is, and its ``operations``
        count starts at zero. It keeps the ``capacity``, the ``boot_id`` (the same machine,
        the same boot) and the ``volatile`` marks. Inode numbers are kept, so torn-write
        garbage is the same on both.
        """
        with self._mutex:
            new = SimulatedDisk()
            new._next_ino = self._next_ino
            new._seq = self._seq
            new._capacity = self._capacity
            new._boot = self._boot
            memo: dict[int, _Node] = {}

            def clone(node: _Node) -> _Node:
                twin = memo.get(node.ino)
                if twin is not None:
                    return twin
                if isinstance(node, _File):
                    twin = _File(
                        node.ino, bytes(node.data), node.durable, list(node.pending), node.volatile
                    )
                    memo[node.ino] = twin
                    return twin
                twin_dir = _Dir(node.ino, {}, {}, [])
                memo[node.ino] = twin_dir
                twin_dir.entries = {name: clone(child) for name, child in node.entries.items()}
                twin_dir.durable = {name: clone(child) for name, child in node.durable.items()}
                twin_dir.pending = [
                    op._replace(node=clone(op.node)) if isinstance(op, _Link) else op
                    for op in node.pending
                ]
                return twin_dir

            root = clone(self._root)
            assert isinstance(root, _Dir)
            new._root = root
            return new

    def process(self, name: str | None = None) -> SimulatedProcess:
        """A new ``SimulatedProcess`` on this disk, named ``name`` (by default ``"p1"``,
        ``"p2"``, ... in the order made). Works on a crashed disk too (its calls raise)."""
        with self._mutex:
            number = next(self._process_ids)
            return SimulatedProcess(self, f"p{number}" if name is None else name)

    def crash_states(
        self, model: PersistenceModel | ModelName = POWER_LOSS, *, limit: int | None = None
    ) -> Iterator[SimulatedDisk]:
        """Every distinct state this disk could be found in after a crash now, under ``model``
        (``POWER_LOSS`` by default; ``"POWER_LOSS"`` and ``"PROCESS_CRASH"`` name the two
        predefined models, anything else is refused with a ``ValueError`` or ``TypeError``).

        Exhaustive and without duplicates: two outcomes with the same directory tree and the
        same file contents are yielded once. Each state is a new disk whose content is all
        durable (nothing pending, no locks held, no processes, nothing armed, ``capacity``
        None), with the ``volatile`` marks kept. Its ``boot_id`` is this disk's when
        ``model.lose_unsynced`` is false (a process crash: the same boot) and the next one
        when it is true (a power loss: the machine restarted).
        The first state is the visible one (nothing lost); the order is deterministic.
        States are generated lazily from a snapshot taken now, so the disk may be used again
        (or be crashed) meanwhile.

        Under a model with ``lose_unsynced``, a ``volatile`` file with pending data
        operations has two contents only, whatever those operations are: all of them kept
        (the visible content, less writes a failed fsync dropped), or empty (``b""``). Its
        name follows the rules of every file: where its directory entry did not survive,
        it is missing.

        The number of states is the product of the choices of every file and directory with
        pending operations, so it grows quickly with unsynced history (twelve new files,
        never synced, have billions); ``estimate_crash_states`` bounds it at once. Draw from
        ``pqueue.crashtest.crash_state`` instead when it is too large to enumerate.

        With ``limit``, ``ValueError`` if there are more than ``limit`` states, raised by
        this call, before any state is made (counting the states up to ``limit + 1`` first,
        unless ``estimate_crash_states`` already shows there are no more than ``limit``).
        """
        model = _as_model(model, "crash_states")
        snapshot = self.copy()
        if limit is not None:
            _check_count("crash_states", "limit", limit, 0)
            if _estimate(snapshot._root, model) > limit:
                _check_limit("crash_states", snapshot, model, limit)
        return (build() for _, build in _enumerate(snapshot, model, self._uid))

    def count_crash_states(
        self, model: PersistenceModel | ModelName = POWER_LOSS, *, limit: int | None = None
    ) -> int:
        """``len(list(self.crash_states(model)))``, computed without building the disks.

        It still enumerates (and deduplicates) every state, so its cost grows with the count;
        it saves the construction of each disk, about half the time per state. With
        ``limit``, it stops at ``limit + 1`` states and raises ``ValueError`` if there are
        more than ``limit``; ``estimate_crash_states`` gives an upper bound without counting.
        """
        model = _as_model(model, "count_crash_states")
        snapshot = self.copy()
        if limit is not None:
            return _check_limit("count_crash_states", snapshot, model, limit)
        return sum(1 for _ in _enumerate(snapshot, model))

    def estimate_crash_states(self, model: PersistenceModel | ModelName = POWER_LOSS) -> int:
        """An upper bound of ``count_crash_states(model)``, computed without enumerating.

        The product, over every directory and file with pending operations, of the choices a
        crash has for it: for a directory, the prefixes of its pending entry operations (or,
        with ``reorder_dir_ops``, their subsets); for a file, the prefixes of its pending data
        operations and the torn and zero-extended versions of each write (two for a volatile
        file). The time it takes grows with the number of pending operations, not with the
        number of states. It counts outcomes that turn out identical, and files whose
        directory entry a state does not keep, more than once, so it can be far above the
        count; 1 under ``PROCESS_CRASH`` or with nothing pending.
        """
        model = _as_model(model, "estimate_crash_states")
        with self._mutex:
            return _estimate(self._root, model)

    def __repr__(self) -> str:
        """The disk's number, directories and file sizes, and how many operations are
        pending; for a disk ``crash_states`` or ``crash_state`` made, instead of the
        pending operations (there are none), what the crash kept and lost of the pending
        operations of the disk it came from, per directory and file (``kept 1 of 2, lost
        write 9 bytes at 0``; ``kept all 2``; a torn write and how), in path order."""
        with self._mutex:
            sizes = {path: len(data) for path, data in self.files().items()}
            state = " crashed" if self._crashed else ""
            head = f"<SimulatedDisk #{self._uid}{state} dirs={self.dirs()} files={sizes}"
            if self._origin is not None:
                return f"{head} {_describe(self._origin)}>"
            pending = 0
            for _, node in self._walk_visible():
                pending += len(node.pending)
            return f"{head} pending_ops={pending}>"

    # -- the FileSystem protocol ----------------------------------------------------------
    #
    # Every method runs its body in ``try``/``finally`` so that an interrupt found due by
    # ``_begin`` is raised after the body, whether it returned or raised; with nothing
    # armed the ``finally`` costs one attribute test.

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Create directory ``path`` and its missing parents (``os.makedirs(exist_ok=True)``).

        ``FileExistsError`` if ``path`` is a file, ``NotADirectoryError`` if a parent is.
        ``mode`` is accepted and ignored.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("mkdir")
                parts = _split(path)
                node = self._root
                for i, name in enumerate(parts):
                    child = node.entries.get(name)
                    if child is None:
                        child = _Dir(self._new_ino(), {}, {}, [])
                        node.entries[name] = child
                        node.pending.append(_Link(name, child, self._seq))
                    elif isinstance(child, _File):
                        code = errno.EEXIST if i == len(parts) - 1 else errno.ENOTDIR
                        raise _error(code, path)
                    node = child
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def listdir(self, path: str) -> list[str]:
        """The names in directory ``path``."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("listdir")
                node = self._lookup(_split(path), path)
                if isinstance(node, _File):
                    raise _error(errno.ENOTDIR, path)
                return list(node.entries)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def exists(self, path: str) -> bool:
        """Whether a file or directory exists at ``path``."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("exists")
                try:
                    self._lookup(_split(path), path)
                except OSError:
                    return False
                return True
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` exists and is a directory."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("is_dir")
                try:
                    node = self._lookup(_split(path), path)
                except OSError:
                    return False
                return isinstance(node, _Dir)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def file_type(self, path: str) -> Literal["file", "dir"] | None:
        """What is at ``path``, without following a symlink: ``"file"``, ``"dir"`` or ``None``.

        ``"file"`` for a regular file, ``"dir"`` for a directory, and ``None`` when nothing
        is there, including when a parent is missing or is a file (no ``OSError`` for
        those). The real file system (``OsFileSystem``) can also answer ``"symlink"`` (for a
        symbolic link, which it does not follow) and ``"other"`` (a FIFO, a socket or a
        device); the simulated disk has none of those, so it returns only the subset that
        can exist on it.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("file_type")
                try:
                    node = self._lookup(_split(path), path)
                except OSError:
                    return None
                return "dir" if isinstance(node, _Dir) else "file"
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def size(self, path: str) -> int:
        """The visible size of file ``path``."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("size")
                return len(self._file(path).data)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all if negative) of file ``path`` from ``offset``."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("read")
                data = self._file(path).data
                if offset < 0:
                    raise _error(errno.EINVAL, path)
                end = len(data) if size < 0 else offset + size
                return bytes(data[offset:end])
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        """Write ``data`` at ``offset`` (``None``: at the end), creating the file if missing.

        Writing past the end leaves a gap of zeros. Writing ``b""`` creates the file if
        missing and changes nothing else. A negative ``offset`` raises ``OSError`` (EINVAL)
        after creating the file, as ``open`` then ``pwrite`` do. A write that would take the
        disk past its ``capacity`` raises ``OSError`` (ENOSPC) and does nothing.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("write")
                if self._capacity is not None and data and (offset is None or offset >= 0):
                    self._reserve_write(path, offset, len(data))
                node = self._open(path)
                if self._watches:
                    self._touch(_split(path))
                if offset is None:
                    offset = len(node.data)
                elif offset < 0:
                    raise _error(errno.EINVAL, path)
                if not data:
                    return
                op = _Write(offset, bytes(data))
                _apply_data(_mutable(node), op)
                node.pending.append(op)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def create(self, path: str) -> None:
        """Create ``path`` empty; an existing file is truncated to zero (a data operation)."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("create")
                parts = _split(path)
                existed = self._exists(parts)
                node = self._open(path)
                if existed:
                    op = _Truncate(0)
                    _apply_data(_mutable(node), op)
                    node.pending.append(op)
                if self._watches:
                    self._touch(parts)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def truncate(self, path: str, size: int) -> None:
        """Cut, or extend with zeros, existing file ``path`` to ``size`` bytes.

        Extending it past the disk's ``capacity`` raises ``OSError`` (ENOSPC) and does
        nothing.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("truncate")
                if size < 0:
                    raise _error(errno.EINVAL, path)
                node = self._file(path)
                if self._capacity is not None and size > len(node.data):
                    self._reserve(size - len(node.data), path)
                op = _Truncate(size)
                _apply_data(_mutable(node), op)
                node.pending.append(op)
                if self._watches:
                    self._touch(_split(path))
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def fsync(self, path: str) -> None:
        """Make the data operations of file ``path`` durable (not its name: see fsync_dir).

        On a directory it acts as ``fsync_dir``, as ``fsync`` of a directory does on Linux.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                try:
                    self._begin("fsync")
                except OSError:
                    if self._dropped_by is not None:
                        # The pages the fsync covered were marked clean after the write-back
                        # error: their writes will never reach the disk, though reads still
                        # return them, and a later fsync makes only later writes durable.
                        self._dropped_by = None
                        node = self._lookup(_split(path), path)
                        if isinstance(node, _File):
                            node.pending.clear()
                    raise
                node = self._lookup(_split(path), path)
                if isinstance(node, _Dir):
                    node.durable = dict(node.entries)
                else:
                    buf = bytearray(node.durable)
                    for op in node.pending:
                        _apply_data(buf, op)
                    node.durable = bytes(buf)
                node.pending.clear()
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def fsync_dir(self, path: str) -> None:
        """Make the entry operations of directory ``path`` durable."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("fsync_dir")
                node = self._lookup(_split(path), path)
                if isinstance(node, _File):
                    raise _error(errno.ENOTDIR, path)
                node.durable = dict(node.entries)
                node.pending.clear()
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def write_back(self, path: str) -> None:
        """Start writing ``path`` back: changes nothing that is durable or visible.

        Only ``fsync`` makes data durable; until then a crash may keep or drop it, written
        back early or not, as the persistence model says. (Not a crash point: crashing
        here is crashing before the next operation.)
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("write_back")
                self._lookup(_split(path), path)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def replace(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` atomically, replacing ``dst`` (``os.replace``).

        Directories can be renamed too, over a missing or empty directory.
        """
        src = _fspath(src)
        dst = _fspath(dst)
        with self._mutex:
            try:
                self._begin("replace")
                sparts, dparts = _split(src), _split(dst)
                sdir, sname = self._parent(sparts, src, dst)
                ddir, dname = self._parent(dparts, src, dst)
                if not sparts or not dparts:
                    raise _error(errno.EBUSY, src, dst)
                node = sdir.entries.get(sname)
                if node is None:
                    raise _error(errno.ENOENT, src, dst)
                if len(dparts) > len(sparts) and dparts[: len(sparts)] == sparts:
                    raise _error(errno.EINVAL, src, dst)
                if len(sparts) > len(dparts) and sparts[: len(dparts)] == dparts:
                    raise _error(errno.ENOTEMPTY, src, dst)
                target = ddir.entries.get(dname)
                if target is node:
                    return
                if target is not None:
                    if isinstance(target, _Dir):
                        if isinstance(node, _File):
                            raise _error(errno.EISDIR, src, dst)
                        if target.entries:
                            raise _error(errno.ENOTEMPTY, src, dst)
                    elif isinstance(node, _Dir):
                        raise _error(errno.ENOTDIR, src, dst)
                if sdir is ddir:
                    del sdir.entries[sname]
                    sdir.entries[dname] = node
                    sdir.pending.append(_Rename(sname, dname, self._seq))
                else:
                    ddir.entries[dname] = node
                    ddir.pending.append(_Link(dname, node, self._seq))
                    del sdir.entries[sname]
                    sdir.pending.append(_Unlink(sname, self._seq))
                if self._watches:
                    self._touch(dparts, tree=True)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def unlink(self, path: str) -> None:
        """Remove file ``path`` (``IsADirectoryError`` for a directory)."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("unlink")
                parts = _split(path)
                parent, name = self._parent(parts, path)
                node = parent.entries.get(name) if parts else self._root
                if node is None:
                    raise _error(errno.ENOENT, path)
                if isinstance(node, _Dir):
                    raise _error(errno.EISDIR, path)
                del parent.entries[name]
                parent.pending.append(_Unlink(name, self._seq))
                if self._watches:
                    self._touch(parts)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def rmdir(self, path: str) -> None:
        """Remove the empty directory ``path``: an entry operation in its parent, as
        ``unlink`` is for a file (``NotADirectoryError`` for a file, ``OSError`` ``ENOTEMPTY``
        for a directory with entries, ``EBUSY`` for ``/``)."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin("rmdir")
                parts = _split(path)
                if not parts:
                    raise _error(errno.EBUSY, path)
                parent, name = self._parent(parts, path)
                node = parent.entries.get(name)
                if node is None:
                    raise _error(errno.ENOENT, path)
                if not isinstance(node, _Dir):
                    raise _error(errno.ENOTDIR, path)
                if node.entries:
                    raise _error(errno.ENOTEMPTY, path)
                del parent.entries[name]
                parent.pending.append(_Unlink(name, self._seq))
                if self._watches:
                    self._touch(parts)
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def lock(self, path: str, *, shared: bool = False, blocking: bool = False) -> Lock:
        """Lock file ``path`` (created if missing), exclusive or ``shared``, as ``flock``.

        The lock belongs to the file (inode), not the name, and to the process that took it
        (the disk's default process when called on the disk). Every call makes a new holder:
        an exclusive lock conflicts with any other holder, a shared one with an exclusive
        one, even if the same process holds it. On a conflict it raises ``BlockingIOError``
        (``EWOULDBLOCK``), or, with ``blocking``, waits until there is none and takes the
        lock; it raises ``SimulatedCrash`` if the disk crashes or its process is killed
        meanwhile. No fairness is promised among waiters. The lock's ``release()`` is
        idempotent and wakes the waiters; killing its process releases it too. Creating the
        file counts as a state-changing call, and happens before any wait; locking an
        existing file does not count.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                if self._crashed:
                    raise SimulatedCrash("the disk has crashed")
                self._begin("lock", mutating=not self._exists(_split(path)))
                node = self._open(path)
                owner = self._caller
                if self._conflicts(node.ino, shared):
                    if not blocking:
                        raise BlockingIOError(
                            errno.EWOULDBLOCK, f"{path} is locked by another holder"
                        )
                    interrupting, self._interrupting = self._interrupting, None
                    while self._conflicts(node.ino, shared):
                        self._wait(None)
                        if self._crashed:
                            raise SimulatedCrash("the disk has crashed")
                        if owner is not None and owner._killed:
                            raise SimulatedCrash(f"process {owner.name} was killed")
                    self._interrupting = interrupting
                lock = _SimulatedLock(self, node.ino, shared, owner)
                self._locks.setdefault(node.ino, []).append(lock)
                if owner is not None:
                    owner._locks.add(lock)
                return lock
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def probe(self, path: str) -> bool:
        """Whether anyone (any process, this one included) holds a lock on file ``path``.

        ``False`` if nothing is at ``path``; ``IsADirectoryError`` for a directory and
        ``NotADirectoryError`` if a parent is a file, as opening it would raise. A read: it
        changes nothing and is not counted in ``operations``.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("probe")
                try:
                    node = self._lookup(_split(path), path)
                except FileNotFoundError:
                    return False
                if isinstance(node, _Dir):
                    raise _error(errno.EISDIR, path)
                return node.ino in self._locks
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def boot_id(self) -> str:
        """This boot of the disk: ``simulated-boot-1`` for a new disk, kept by ``copy`` and
        by the crash states of a process crash, the next number in every crash state of a
        power loss (see ``crash_states``). Numbered by the disk's history, not drawn, so that
        runs are reproducible byte for byte."""
        with self._mutex:
            try:
                self._begin_read("boot_id")
                return self._boot
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def volatile(self, path: str) -> None:
        """Mark existing file ``path`` volatile: its content need not survive a power loss,
        as the code that wrote it never trusts it after a reboot.

        A hint to the harness (``OsFileSystem`` ignores it), kept on the inode: it follows
        the file through renames, is kept by ``copy`` and crash states, and cannot be
        undone. It changes what ``crash_states`` yields for the file under a power loss
        (see there) and nothing else; it is not a state-changing call.
        """
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("volatile")
                self._file(path).volatile = True
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def watch(self, path: str, closes: tuple[str, ...] = ()) -> Watch:
        """A ``Watch`` on ``path``, which need not exist yet, for the calling process.

        Its ``wait(timeout)`` blocks until a call on this disk changed the file at ``path``
        since the watch was made or since the previous ``wait`` returned, or a lock on one
        of the files ``closes`` was released, or ``wake()`` was called (from any thread; a
        ``wake`` before ``wait`` makes the next ``wait`` return at once), and returns
        ``True``; or until ``timeout`` seconds passed (``None``: no limit) and returns
        ``False``. The calls that change the file at ``path`` are those that took effect
        of: ``write`` (of ``b""`` too), ``create`` and ``truncate`` of ``path``, ``replace``
        onto ``path`` or onto a directory above it, and ``unlink`` of ``path``; they are
        matched by name, not by inode. The files of ``closes`` are the inodes found at
        those paths now (like inotify, a missing one is skipped, a directory is taken too):
        any release of a lock on one of them, by ``release()`` or by the kill of its
        holder's process, fires the watch. After a crash of the disk, a kill of the process
        that made the watch, or ``close()``, ``wait`` returns ``True`` at once. Thread-safe;
        ``close()`` is idempotent. Not a state-changing call.
        """
        path = _fspath(path)
        closing = [_fspath(other) for other in closes]
        with self._mutex:
            try:
                self._begin_read("watch")
                parts = _split(path)
                inos: list[int] = []
                for other in closing:
                    with contextlib.suppress(FileNotFoundError):
                        inos.append(self._lookup(_split(other), other).ino)
                watch = _SimulatedWatch(self, parts, tuple(inos), self._caller)
                self._watches.setdefault(parts, set()).add(watch)
                for ino in inos:
                    self._lock_watches.setdefault(ino, set()).add(watch)
                return watch
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def lock_key(self, path: str) -> Hashable:
        """``(a number unique to this disk, the normalised path)`` of existing ``path``."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("lock_key")
                parts = _split(path)
                self._lookup(parts, path)
                return (self._uid, _join(parts))
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def same_filesystem(self, a: str, b: str) -> bool:
        """``True``: existing paths of one disk are on one file system."""
        a = _fspath(a)
        b = _fspath(b)
        with self._mutex:
            try:
                self._begin_read("same_filesystem")
                self._lookup(_split(a), a)
                self._lookup(_split(b), b)
                return True
            finally:
                if self._interrupting is not None:
                    self._deliver()

    def release(self, path: str) -> None:
        """Nothing to release: the disk keeps no handles."""
        path = _fspath(path)
        with self._mutex:
            try:
                self._begin_read("release")
            finally:
                if self._interrupting is not None:
                    self._deliver()

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _recording(self, limit: int) -> Iterator[list[SimulatedDisk]]:
        """Meanwhile, keep a ``copy()`` of the disk before each of the next ``limit``
        state-changing calls: item ``n`` of the list is the disk ``crash_after(n)`` would
        have left (a crashed call has no effect). What ``CrashMachine`` measures an
        operation with, and crashes it from."""
        snapshots: list[SimulatedDisk] = []
        with self._mutex:
            previous = self._snapshots, self._snapshot_limit
            self._snapshots, self._snapshot_limit = snapshots, limit
        try:
            yield snapshots
        finally:
            with self._mutex:
                self._snapshots, self._snapshot_limit = previous

    def _crash(self) -> None:
        """Crash the disk now, as the crash armed by ``crash_after`` does."""
        with self._mutex:
            self._crashed = True
            self._countdown = None
            self._changes.notify_all()

    def _new_ino(self) -> int:
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def _begin(self, op: str, *, mutating: bool = True) -> None:
        """The gate every call passes: the crash, the calling process's kill, the operation
        counts, faults, interrupts."""
        if self._crashed:
            raise SimulatedCrash("the disk has crashed")
        caller = self._caller
        if caller is not None and caller._killed:
            raise SimulatedCrash(f"process {caller.name} was killed")
        if mutating:
            if self._countdown == 0:
                self._crashed = True
                self._countdown = None
                self._changes.notify_all()
                raise SimulatedCrash(f"simulated crash at {op} #{self._operations + 1}")
            if caller is not None:
                if caller._countdown == 0:
                    self._kill(caller)
                    raise SimulatedCrash(
                        f"process {caller.name} was killed at {op} #{caller._operations + 1}"
                    )
                if caller._countdown is not None:
                    caller._countdown -= 1
                caller._operations += 1
            if self._snapshots is not None and len(self._snapshots) < self._snapshot_limit:
                self._snapshots.append(self.copy())
            if self._countdown is not None:
                self._countdown -= 1
            self._operations += 1
            self._seq += 1
        if self._armed:
            self._inject(op, mutating)

    def _begin_read(self, op: str) -> None:
        if self._crashed or self._armed or self._caller is not None:
            self._begin(op, mutating=False)

    def _kill(self, process: SimulatedProcess) -> None:
        """Kill ``process``: release its locks, wake every waiter."""
        process._killed = True
        process._countdown = None
        for lock in list(process._locks):
            lock._drop()
        self._changes.notify_all()

    def _conflicts(self, ino: int, shared: bool) -> bool:
        """Whether a new lock on ``ino``, ``shared`` or not, conflicts with a holder."""
        holders = self._locks.get(ino)
        if not holders:
            return False
        return not shared or any(not holder.shared for holder in holders)

    def _wait(self, timeout: float | None) -> None:
        """Sleep on ``_changes``, the mutex released meanwhile: the process of the call in
        progress is set aside, as other threads' calls run meanwhile."""
        caller, self._caller = self._caller, None
        try:
            self._changes.wait(timeout)
        finally:
            self._caller = caller

    def _touch(self, parts: tuple[str, ...], *, tree: bool = False) -> None:
        """Fire the watches on ``parts`` (with ``tree``, on anything under it too)."""
        if tree:
            size = len(parts)
            hit = [w for key, ws in self._watches.items() if key[:size] == parts for w in ws]
        else:
            hit = list(self._watches.get(parts, ()))
        for watch in hit:
            watch._fired = True
        if hit:
            self._changes.notify_all()

    def _inject(self, op: str, mutating: bool) -> None:
        """Count the call for every fault and interrupt: raise a fault, or note an interrupt.

        Every trigger counts the call, so one that is due is used up even when another wins.
        """
        interrupts = [it for it in self._interrupts if it.due(op, mutating)]
        faults = [fault for fault in self._faults if fault.due(op, mutating)]
        if not (interrupts or faults):
            return
        self._interrupts = [it for it in self._interrupts if it.times > 0]
        self._faults = [fault for fault in self._faults if fault.times > 0]
        self._armed = bool(self._interrupts or self._faults)
        if faults:
            self._dropped_by = faults[0] if faults[0].drops_writes else None
            raise _copy.copy(faults[0].error)
        self._interrupting = interrupts[0]

    def _deliver(self) -> NoReturn:
        """Raise the interrupt that was due on the call now ending."""
        interrupt, self._interrupting = self._interrupting, None
        assert interrupt is not None
        raise _copy.copy(interrupt.exception)

    def _used(self) -> int:
        total = 0
        seen: set[int] = set()
        todo: list[_Node] = [self._root]
        while todo:
            node = todo.pop()
            if isinstance(node, _Dir):
                todo.extend(node.entries.values())
            elif node.ino not in seen:
                seen.add(node.ino)
                total += len(node.data)
        return total

    def _reserve(self, growth: int, path: str) -> None:
        """``ENOSPC`` unless ``growth`` more bytes fit within the capacity."""
        capacity = self._capacity
        if capacity is not None and growth > 0 and self._used() + growth > capacity:
            raise _error(errno.ENOSPC, path)

    def _reserve_write(self, path: str, offset: int | None, length: int) -> None:
        """``_reserve`` the growth of writing ``length`` bytes to ``path`` at ``offset``.

        A path that cannot be opened is left for ``_open`` to refuse with its own error.
        """
        parts = _split(path)
        parent, name = self._parent(parts, path)
        node = parent.entries.get(name) if parts else self._root
        if isinstance(node, _Dir):
            return
        size = 0 if node is None else len(node.data)
        end = (size if offset is None else offset) + length
        self._reserve(end - size, path)

    def _lookup(self, parts: tuple[str, ...], path: str) -> _Node:
        node: _Node = self._root
        for name in parts:
            if isinstance(node, _File):
                raise _error(errno.ENOTDIR, path)
            child = node.entries.get(name)
            if child is None:
                raise _error(errno.ENOENT, path)
            node = child
        return node

    def _exists(self, parts: tuple[str, ...]) -> bool:
        try:
            self._lookup(parts, "")
        except OSError:
            return False
        return True

    def _parent(
        self, parts: tuple[str, ...], path: str, path2: str | None = None
    ) -> tuple[_Dir, str]:
        if not parts:
            return self._root, ""
        node = self._root
        for name in parts[:-1]:
            child = node.entries.get(name)
            if child is None:
                raise _error(errno.ENOENT, path, path2)
            if isinstance(child, _File):
                raise _error(errno.ENOTDIR, path, path2)
            node = child
        return node, parts[-1]

    def _file(self, path: str) -> _File:
        node = self._lookup(_split(path), path)
        if isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        return node

    def _open(self, path: str) -> _File:
        """The file at ``path``, created (an entry operation) if missing, like ``O_CREAT``."""
        parts = _split(path)
        parent, name = self._parent(parts, path)
        node = parent.entries.get(name) if parts else self._root
        if node is None:
            node = _File(self._new_ino(), b"", b"", [])
            parent.entries[name] = node
            parent.pending.append(_Link(name, node, self._seq))
        elif isinstance(node, _Dir):
            raise _error(errno.EISDIR, path)
        return node

    def _walk_visible(self) -> Iterator[tuple[str, _Node]]:
        stack: list[tuple[str, _Node]] = [("/", self._root)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if isinstance(node, _Dir):
                prefix = path if path.endswith("/") else path + "/"
                stack.extend((prefix + name, child) for name, child in node.entries.items())


class SimulatedProcess:
    """One process using a ``SimulatedDisk``, made by ``SimulatedDisk.process``.

    It implements the ``pqueue.io.FileSystem`` protocol by calling the disk's method of the
    same name, with the disk's semantics (the same files, the same kernel), except that the
    locks taken and the watches made through it belong to it. Harness controls: ``kill``
    ends it as ``kill -9`` would, at once, and ``kill_after`` arms such an end, as
    ``crash_after`` does for the whole disk; ``killed`` and ``operations`` report. Killing a
    process releases every lock it holds (their waiters wake) and wakes its watches'
    ``wait``; from then on every call through it raises ``SimulatedCrash("process <name>
    was killed")``, while the disk and the other processes go on. A crash of the disk
    stops every process.
    """

    def __init__(self, disk: SimulatedDisk, name: str) -> None:
        self._disk = disk
        self._name = name
        self._killed = False
        self._countdown: int | None = None
        self._operations = 0
        self._locks: set[_SimulatedLock] = set()

    # -- harness controls --------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name given to ``SimulatedDisk.process``, used in ``SimulatedCrash`` messages."""
        return self._name

    @property
    def killed(self) -> bool:
        """Whether ``kill`` was called or the kill armed by ``kill_after`` happened (not
        whether the disk crashed: see ``SimulatedDisk.crashed``)."""
        return self._killed

    @property
    def operations(self) -> int:
        """How many state-changing calls (see ``SimulatedDisk.operations``) went through
        this process, whether they succeeded or raised. They count on the disk too."""
        return self._operations

    def kill(self) -> None:
        """Kill the process now (idempotent): as ``kill -9``, see the class docstring.

        A blocking ``lock`` it was waiting in raises ``SimulatedCrash``; a lock taken by an
        interrupted ``lock`` call, never returned, is released too.
        """
        with self._disk._mutex:
            if not self._killed:
                self._disk._kill(self)

    def kill_after(self, n: int | None) -> None:
        """Kill the process after ``n`` more state-changing calls through it; ``None``
        disarms.

        The next such call after those ``n`` raises ``SimulatedCrash`` without taking effect
        (and without being counted) and kills the process, as ``kill`` does. Calls made on
        the disk itself or through other processes do not count. ``crash_after`` of the
        disk, if due on the same call, wins: the disk crashes. ``ValueError`` if ``n < 0``.
        """
        if n is not None and n < 0:
            raise ValueError(f"kill_after needs n >= 0 or None, got {n}")
        with self._disk._mutex:
            if not self._killed:
                self._countdown = n

    def __repr__(self) -> str:
        state = " killed" if self._killed else ""
        return (
            f"<SimulatedProcess {self._name!r}{state} of disk #{self._disk._uid} "
            f"locks={len(self._locks)}>"
        )

    def _run(self, method: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``method(*args, **kwargs)`` of the disk, called as this process."""
        disk = self._disk
        with disk._mutex:
            caller, disk._caller = disk._caller, self
            try:
                return method(*args, **kwargs)
            finally:
                disk._caller = caller

    # -- the FileSystem protocol, through the disk ------------------------------------------

    def mkdir(self, path: StrPath, mode: int = 0o777) -> None:
        """``SimulatedDisk.mkdir``, as this process."""
        self._run(self._disk.mkdir, _fspath(path), mode)

    def listdir(self, path: StrPath) -> list[str]:
        """``SimulatedDisk.listdir``, as this process."""
        return self._run(self._disk.listdir, _fspath(path))

    def exists(self, path: StrPath) -> bool:
        """``SimulatedDisk.exists``, as this process."""
        return self._run(self._disk.exists, _fspath(path))

    def is_dir(self, path: StrPath) -> bool:
        """``SimulatedDisk.is_dir``, as this process."""
        return self._run(self._disk.is_dir, _fspath(path))

    def file_type(self, path: StrPath) -> Literal["file", "dir"] | None:
        """``SimulatedDisk.file_type``, as this process."""
        return self._run(self._disk.file_type, _fspath(path))

    def size(self, path: StrPath) -> int:
        """``SimulatedDisk.size``, as this process."""
        return self._run(self._disk.size, _fspath(path))

    def read(self, path: StrPath, offset: int = 0, size: int = -1) -> bytes:
        """``SimulatedDisk.read``, as this process."""
        return self._run(self._disk.read, _fspath(path), offset, size)

    def write(self, path: StrPath, data: bytes, offset: int | None = None) -> None:
        """``SimulatedDisk.write``, as this process."""
        self._run(self._disk.write, _fspath(path), data, offset)

    def create(self, path: StrPath) -> None:
        """``SimulatedDisk.create``, as this process."""
        self._run(self._disk.create, _fspath(path))

    def truncate(self, path: StrPath, size: int) -> None:
        """``SimulatedDisk.truncate``, as this process."""
        self._run(self._disk.truncate, _fspath(path), size)

    def fsync(self, path: StrPath) -> None:
        """``SimulatedDisk.fsync``, as this process."""
        self._run(self._disk.fsync, _fspath(path))

    def fsync_dir(self, path: StrPath) -> None:
        """``SimulatedDisk.fsync_dir``, as this process."""
        self._run(self._disk.fsync_dir, _fspath(path))

    def write_back(self, path: StrPath) -> None:
        """``SimulatedDisk.write_back``, as this process."""
        self._run(self._disk.write_back, _fspath(path))

    def replace(self, src: StrPath, dst: StrPath) -> None:
        """``SimulatedDisk.replace``, as this process."""
        self._run(self._disk.replace, _fspath(src), _fspath(dst))

    def unlink(self, path: StrPath) -> None:
        """``SimulatedDisk.unlink``, as this process."""
        self._run(self._disk.unlink, _fspath(path))

    def rmdir(self, path: StrPath) -> None:
        """``SimulatedDisk.rmdir``, as this process."""
        self._run(self._disk.rmdir, _fspath(path))

    def lock(self, path: StrPath, *, shared: bool = False, blocking: bool = False) -> Lock:
        """``SimulatedDisk.lock``, as this process: the lock is this process's."""
        return self._run(self._disk.lock, _fspath(path), shared=shared, blocking=blocking)

    def probe(self, path: StrPath) -> bool:
        """``SimulatedDisk.probe``, as this process (it sees every process's locks)."""
        return self._run(self._disk.probe, _fspath(path))

    def boot_id(self) -> str:
        """``SimulatedDisk.boot_id``, as this process."""
        return self._run(self._disk.boot_id)

    def volatile(self, path: StrPath) -> None:
        """``SimulatedDisk.volatile``, as this process."""
        self._run(self._disk.volatile, _fspath(path))

    def watch(self, path: StrPath, closes: tuple[StrPath, ...] = ()) -> Watch:
        """``SimulatedDisk.watch``, as this process: the watch is this process's."""
        closing = tuple(_fspath(other) for other in closes)
        return self._run(self._disk.watch, _fspath(path), closing)

    def lock_key(self, path: StrPath) -> Hashable:
        """``SimulatedDisk.lock_key``, as this process: the same key as the disk's."""
        return self._run(self._disk.lock_key, _fspath(path))

    def same_filesystem(self, a: StrPath, b: StrPath) -> bool:
        """``SimulatedDisk.same_filesystem``, as this process."""
        return self._run(self._disk.same_filesystem, _fspath(a), _fspath(b))

    def release(self, path: StrPath) -> None:
        """``SimulatedDisk.release``, as this process."""
        self._run(self._disk.release, _fspath(path))
