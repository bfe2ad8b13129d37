"""check_crashes: crash a workload at every file operation and check every crash state.

``check_crashes(workload, check)`` runs ``workload()`` with a ``SimulatedDisk`` mounted at
``at`` (see ``pqueue.crashtest.mount``), counts its state-changing file operations, then
runs it again once per crash point on a fresh copy of the starting disk, crashed there
(``disk.crash_after(n)``), and for every state the persistence model allows after that
crash, mounts the state at ``at`` and calls ``check()``. Re-running the workload (rather
than snapshotting the disk) keeps the program's own variables true to the crash point:
``check`` may read what the workload noted (say, which saves had returned) to know what it
is owed. With ``fs=True`` the same is done without a mount, for code written against the
``pqueue.io.FileSystem`` protocol: ``setup``, ``workload`` and ``check`` then receive the
file system to use.
"""

from __future__ import annotations

import gc
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pqueue.crashtest.disk import SimulatedCrash, SimulatedDisk
from pqueue.crashtest.models import POWER_LOSS, PROCESS_CRASH, PersistenceModel
from pqueue.crashtest.mount import Mount, Operation, _inner, _ino
from pqueue.crashtest.states import _draw_crash_state, _enumerate

__all__ = ["CrashCheckError", "CrashReport", "Violation", "check_crashes"]

_Tree = dict[str, tuple[int, bytes | None]]  # path -> (inode, content; None: a directory)

_DATA_KINDS = frozenset({"write", "truncate"})
_ENTRY_KINDS = frozenset({"create", "mkdir", "rename", "unlink", "rmdir"})


class CrashCheckError(AssertionError):
    """Raised by ``CrashReport.assert_ok`` when a crash state failed the check."""


def _tree(fs: Any, prefix: str) -> _Tree:
    """Every visible path of the disk (named as the program names them) with its inode and
    content."""
    found: _Tree = {}
    for path, entry in _inner(fs).tree().items():
        found[(prefix or "/") if path == "/" else prefix + path] = entry
    return found


def _short(data: bytes) -> str:
    return repr(data) if len(data) <= 24 else repr(data[:20])[:-1] + "...'"


class Violation:
    """A crash state that failed the check: where the crash was, what the state lost or
    kept of what the program had done, and what the check said.

    ``crash_point`` is how many state-changing operations had run (``operations``: the
    workload returned); ``after`` the last of them, ``crashed_in`` the call that crashed
    (None when the workload returned); ``state`` the state's index among the crash states
    of that point (``sampled``: the number of the draw, when the point had more than
    ``max_states`` and its states were drawn); ``error`` what the check raised. ``lost``,
    ``kept`` and ``differences``
    (computed when first asked for) compare the state with what the program saw at the
    crash: the operations not yet durable then that the state lost (a write partly lost is
    ``torn``) or kept, and every file that differs.
    """

    def __init__(
        self,
        crash_point: int,
        operations: int,
        after: Operation | None,
        crashed_in: Operation | None,
        state: int,
        error: BaseException,
        *,
        disk: SimulatedDisk,
        model: PersistenceModel,
        log: Sequence[Operation],
        prefix: str,
        found: SimulatedDisk | None = None,
        sampled: bool = False,
    ) -> None:
        self.crash_point = crash_point
        self.operations = operations
        self.after = after
        self.crashed_in = crashed_in
        self.state = state
        self.error = error
        self._disk = disk
        self._model = model
        self._log = list(log)
        self._prefix = prefix
        self._found = found
        self.sampled = sampled
        self._explained: tuple[list[str], list[str], list[str]] | None = None

    @property
    def lost(self) -> list[str]:
        return self._explain()[0]

    @property
    def kept(self) -> list[str]:
        return self._explain()[1]

    @property
    def differences(self) -> list[str]:
        return self._explain()[2]

    def where(self) -> str:
        """The crash point, in words."""
        if self.crashed_in is None:
            done = f"after the workload returned ({self.operations} operations)"
        elif self.after is None:
            done = "before the first operation"
        else:
            done = f"after {self.after.call}"
        if self.crashed_in is not None:
            done += f", at {self.crashed_in}"
        return f"crash point {self.crash_point}/{self.operations}: {done}"

    def __str__(self) -> str:
        lost, kept, differences = self._explain()
        drawn = f"crash state drawn {self.state}" if self.sampled else f"crash state {self.state}"
        lines = [f"{self.where()}; {drawn}:"]
        if lost or kept:
            lines.append(f"  lost: {'; '.join(lost) or 'nothing'}")
            lines.append(f"  kept: {'; '.join(kept) or 'nothing'}")
        else:
            lines.append("  nothing was pending: this state is what the program saw")
        lines.extend(f"  {line}" for line in differences)
        message = str(self.error) or type(self.error).__name__
        if not isinstance(self.error, AssertionError):
            message = f"{type(self.error).__name__}: {message}"
        lines.append(f"  check failed: {message}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Violation {self.where()}, state {self.state}: {self.error!r}>"

    def _explain(self) -> tuple[list[str], list[str], list[str]]:
        if self._explained is None:
            self._explained = self._compare()
        return self._explained

    def _compare(self) -> tuple[list[str], list[str], list[str]]:
        state_disk = self._found
        if state_disk is None:
            state_disk = next(itertools.islice(self._disk.crash_states(self._model),
                                               self.state, None))
        seen = _tree(self._disk, self._prefix)
        found = _tree(state_disk, self._prefix)
        where_seen = {ino: path for path, (ino, _) in seen.items()}
        where_found = {ino: path for path, (ino, _) in found.items()}
        content_seen = {ino: data for ino, data in seen.values()}
        content_found = {ino: data for ino, data in found.values()}
        lost: list[str] = []
        kept: list[str] = []
        for op, pending in zip(self._log, _pending(self._log), strict=True):
            if not pending or op.failed or op.ino is None:
                continue
            verdict = _verdict(op, where_seen, where_found, content_seen, content_found)
            if verdict is None:
                continue
            if verdict == "kept":
                kept.append(str(op))
            elif verdict == "lost":
                lost.append(str(op))
            else:
                lost.append(f"{op}: {verdict}")
        differences: list[str] = []
        for path in sorted(seen.keys() | found.keys()):
            a, b = seen.get(path), found.get(path)
            if a is not None and b is not None and a[1] == b[1]:
                continue
            if b is None:
                assert a is not None
                what = "directory" if a[1] is None else f"{len(a[1])} bytes"
                differences.append(f"{path}: missing (the program saw it: {what})")
            elif a is None:
                what = "directory" if b[1] is None else f"{len(b[1])} bytes {_short(b[1])}"
                differences.append(f"{path}: present ({what}), the program had removed it")
            elif a[1] is not None and b[1] is not None:
                differences.append(
                    f"{path}: {len(b[1])} bytes {_short(b[1])}, the program saw "
                    f"{len(a[1])} bytes {_short(a[1])}"
                )
            else:
                differences.append(f"{path}: a {'directory' if b[1] is None else 'file'} "
                                   f"where the program saw a "
                                   f"{'directory' if a[1] is None else 'file'}")
        return lost, kept, differences


def _pending(log: Sequence[Operation]) -> list[bool]:
    """For each operation, whether it was not yet durable at the end of ``log``: a data
    operation until an fsync of its inode, an entry operation until an fsync of every
    directory it changed (``os.sync`` makes everything durable)."""
    pending = [True] * len(log)
    synced_files: set[int] = set()
    synced_dirs: set[int] = set()
    for i in range(len(log) - 1, -1, -1):
        op = log[i]
        if op.failed:
            pending[i] = False
            continue
        if op.kind == "sync":
            pending[: i + 1] = [False] * (i + 1)
            break
        if op.kind == "fsync" and op.ino is not None:
            synced_files.add(op.ino)
            pending[i] = False
        elif op.kind == "fsync_dir":
            synced_dirs.update(op.dirs)
            pending[i] = False
        elif op.kind in _DATA_KINDS:
            pending[i] = op.ino not in synced_files
        elif op.kind in _ENTRY_KINDS:
            pending[i] = not op.dirs or not set(op.dirs) <= synced_dirs
        else:
            pending[i] = False
    return pending


def _verdict(
    op: Operation,
    where_seen: dict[int, str],
    where_found: dict[int, str],
    content_seen: dict[int, bytes | None],
    content_found: dict[int, bytes | None],
) -> str | None:
    """Whether the crash state kept ``op``: "kept", "lost", a description of a torn write,
    or None when it cannot be told (its file is gone from both the state and the program's
    view, or a write's bytes were since overwritten or cut off)."""
    ino = op.ino
    assert ino is not None
    if op.kind in ("unlink", "rmdir"):
        return "lost" if where_found.get(ino) == op.path else "kept"
    if ino not in where_found:
        # Gone from the state: lost, if the program still had it; if the program had
        # removed it too, nothing tells.
        return "lost" if ino in where_seen else None
    if op.kind in ("create", "mkdir"):
        return "kept"
    if op.kind == "rename":
        now = where_found[ino]
        if now == op.path or (where_seen.get(ino) != op.path and now == where_seen.get(ino)):
            return "kept"
        return "lost"
    if op.kind == "write":
        seen, found = content_seen.get(ino), content_found.get(ino)
        if seen is None or found is None:
            return None
        start, end = op.start, min(op.end, len(seen))
        if start >= end:
            return None
        same = [found[i] == seen[i] if i < len(found) else False for i in range(start, end)]
        if all(same):
            return "kept"
        if not any(same):
            return "lost"
        first_bad = same.index(False) + start
        last_bad = end - 1 - same[::-1].index(False)
        return f"torn (bytes {first_bad}-{last_bad} lost)"
    return None  # a truncate: see the file's difference


class CrashReport:
    """What ``check_crashes`` found.

    ``states``: crash states checked; ``crash_points``: the points crashed at (every
    state-changing operation, and after the workload returned); ``operations``: the
    state-changing operations of one run of the workload (``log``: them, as recorded in the
    run that was not crashed); ``seconds``; ``violations``: the states that failed the
    check, each a ``Violation``; ``sampled``: how many crash points had more than
    ``max_states`` states, of which ``max_states`` were drawn. ``ok`` when there is none;
    ``assert_ok()`` raises ``CrashCheckError`` with a summary otherwise.
    """

    def __init__(
        self,
        states: int,
        crash_points: int,
        operations: int,
        seconds: float,
        violations: list[Violation],
        log: list[Operation],
        model: PersistenceModel,
        sampled: int = 0,
    ) -> None:
        self.states = states
        self.sampled = sampled
        self.crash_points = crash_points
        self.operations = operations
        self.seconds = seconds
        self.violations = violations
        self.log = log
        self.model = model

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def rate(self) -> float:
        """Crash states checked per second."""
        return self.states / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        verdict = "no violation" if self.ok else f"{len(self.violations)} violations"
        sampled = (
            f", sampled at {self.sampled} of them (more than max_states)" if self.sampled else ""
        )
        return (
            f"{self.states} crash states at {self.crash_points} crash points "
            f"({self.operations} operations){sampled} checked in {self.seconds:.2f} s: "
            f"{verdict}"
        )

    def __str__(self) -> str:
        return self.text()

    def text(self, limit: int = 3) -> str:
        """The summary, and the first ``limit`` violations explained."""
        lines = [self.summary()]
        for violation in self.violations[:limit]:
            lines.append(str(violation))
        if len(self.violations) > limit:
            lines.append(f"... and {len(self.violations) - limit} more violations")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<CrashReport {self.summary()}>"

    def assert_ok(self) -> None:
        """Raise ``CrashCheckError`` (an ``AssertionError``) unless no state failed."""
        if self.violations:
            raise CrashCheckError(self.text())


class _RecordingFS:
    """A ``FileSystem`` over a disk that records each state-changing call as an
    ``Operation``, for ``check_crashes(fs=True)``."""

    def __init__(self, disk: SimulatedDisk, log: list[Operation]) -> None:
        self._disk = disk
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._disk, name)

    def _run(self, kind: str, call: str, path: str, fn: Callable[[], Any], *,
             before_ino: bool = False, dirs: tuple[str, ...] = (), start: int = 0,
             end: int = 0) -> Any:
        disk = self._disk
        before = disk.operations
        ino = _ino(disk, path) if before_ino else None
        dir_inos = tuple(i for i in (_ino(disk, d) for d in dirs) if i is not None)
        failed = True
        try:
            result = fn()
            failed = False
            return result
        finally:
            if disk.operations != before:
                if not before_ino:
                    ino = _ino(disk, path)
                if not dir_inos:
                    dir_inos = tuple(i for i in (_ino(disk, d) for d in dirs) if i is not None)
                self._log.append(Operation(before, disk.operations - before, kind, call, path,
                                           ino, dir_inos, start, end, failed))

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._run("mkdir", f"fs.mkdir({path!r})", path, lambda: self._disk.mkdir(path, mode),
                  dirs=(_parent(path),))

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        disk = self._disk
        exists = disk.exists(path)
        at = (disk.size(path) if exists else 0) if offset is None else offset
        call = f"fs.write to {path} (bytes {at}-{at + len(data) - 1})"
        before = len(self._log)
        self._run("write", call, path, lambda: disk.write(path, data, offset), start=at,
                  end=at + len(data))
        if not exists and len(self._log) > before:  # one disk call, two effects
            op = self._log[before]
            parent = _ino(disk, _parent(path))
            self._log.insert(before, op._replace(
                kind="create", call=f"{call}, creating it", disk_ops=op.disk_ops,
                dirs=() if parent is None else (parent,)))
            self._log[before + 1] = op._replace(disk_ops=0)

    def create(self, path: str) -> None:
        disk = self._disk
        if disk.exists(path):
            self._run("truncate", f"fs.create({path!r}) truncating it", path,
                      lambda: disk.create(path))
        else:
            self._run("create", f"fs.create({path!r})", path, lambda: disk.create(path),
                      dirs=(_parent(path),))

    def truncate(self, path: str, size: int) -> None:
        self._run("truncate", f"fs.truncate({path!r}, {size})", path,
                  lambda: self._disk.truncate(path, size))

    def fsync(self, path: str) -> None:
        kind = "fsync_dir" if self._disk.is_dir(path) else "fsync"
        self._run(kind, f"fs.fsync({path!r})", path, lambda: self._disk.fsync(path),
                  dirs=(path,) if kind == "fsync_dir" else ())

    def fsync_dir(self, path: str) -> None:
        self._run("fsync_dir", f"fs.fsync_dir({path!r})", path,
                  lambda: self._disk.fsync_dir(path), dirs=(path,))

    def replace(self, src: str, dst: str) -> None:
        disk = self._disk
        self._run("rename", f"fs.replace({src!r}, {dst!r})", dst,
                  lambda: disk.replace(src, dst), dirs=(_parent(src), _parent(dst)))

    def unlink(self, path: str) -> None:
        self._run("unlink", f"fs.unlink({path!r})", path, lambda: self._disk.unlink(path),
                  before_ino=True, dirs=(_parent(path),))

    def lock(self, path: str, *, shared: bool = False, blocking: bool = False) -> Any:
        return self._run("lock", f"fs.lock({path!r})", path,
                         lambda: self._disk.lock(path, shared=shared, blocking=blocking))


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def check_crashes(
    workload: Callable[..., object],
    check: Callable[..., object],
    *,
    at: str = "/app",
    setup: Callable[..., object] | None = None,
    model: PersistenceModel = POWER_LOSS,
    fs: bool = False,
    max_states: int | None = None,
) -> CrashReport:
    """Crash ``workload`` at every state-changing file operation it makes (and after it
    returns), and call ``check`` in every state each crash can leave under ``model``.

    Without ``fs``: ``setup()`` (optional) runs first on an empty ``SimulatedDisk`` mounted
    at ``at``, and what it leaves is made durable; then ``workload()`` runs with a copy of
    that disk mounted at ``at``, once to count its operations, then once per crash point,
    crashed there (it sees ``SimulatedCrash``, a ``BaseException``, at the crashing call,
    and every later file call under ``at`` raises it again). For every crash state,
    ``check()`` runs with that state mounted at ``at``: it reads the files as the program
    would after a restart, and may read variables the workload set (they are as the
    crashed run left them). A check that raises an ``Exception`` (an ``AssertionError``,
    or say a ``ValueError`` parsing a torn file) records a ``Violation``.

    With ``fs=True``: no mount; ``setup(fs)``, ``workload(fs)`` and ``check(fs)`` receive a
    ``pqueue.io.FileSystem`` (a simulated disk; for ``workload`` one that records what it
    does, to explain the violations), and paths are the disk's own.

    ``max_states``: at a crash point with more crash states than that, check only
    ``max_states`` distinct ones, the visible state first and the others drawn at random as
    ``pqueue.crashtest.crash_state`` draws them (from a generator seeded by the crash point,
    so a run is reproducible); the report counts those points as ``sampled``. ``None`` (by
    default): every state, however many.

    Returns a ``CrashReport``. ``ValueError`` if the workload made no state-changing file
    operation under ``at`` (nothing would be checked); the workload's own exceptions in its
    uncrashed run propagate, as does ``RuntimeError`` if a crashed run makes other
    operations than the first run did (the workload must be deterministic in what it does
    to the files).
    """
    if max_states is not None and (
        isinstance(max_states, bool) or not isinstance(max_states, int) or max_states < 1
    ):
        raise ValueError(f"max_states must be None or a positive int, got {max_states!r}")
    started = time.perf_counter()
    base = SimulatedDisk()
    prefix = "" if fs else at
    mounted = None if fs else Mount(base, at)
    log: list[Operation] = []

    def run(disk: SimulatedDisk, body: Callable[..., object], record: bool) -> None:
        del log[:]
        if mounted is None:
            body(_RecordingFS(disk, log) if record else disk)
        else:
            mounted.switch(disk)
            mounted.recorder = log.append if record else None
            try:
                body()
            finally:
                mounted.recorder = None

    def checked(state: SimulatedDisk) -> BaseException | None:
        try:
            if mounted is None:
                check(state)
            else:
                mounted.switch(state)
                check()
        except Exception as exc:  # the check's verdict: an AssertionError, or it broke
            return exc
        return None

    if mounted is not None:
        mounted.__enter__()
    try:
        if setup is not None:
            run(base, setup, record=False)
            base = next(base.crash_states(PROCESS_CRASH))  # all of it made durable
        disk = base.copy()
        run(disk, workload, record=True)
        total = disk.operations
        if total == 0:
            where = "in the file system given" if fs else f"under {at}"
            raise ValueError(
                f"the workload made no state-changing file operation {where}: there is "
                f"no crash to check"
            )
        first_log = list(log)
        violations: list[Violation] = []
        states = 0
        sampled = 0

        def sweep(disk: SimulatedDisk, point: int) -> None:
            nonlocal states, sampled
            run_log = list(log)
            # The calls this run made, so that names drawn at random (tempfile's) are this
            # run's; the call that crashed made no change and is known from the first run.
            after = _last_before(run_log, point)
            crashed_in = _containing(first_log, point) if point < total else None
            drawing = max_states is not None and _more_states(disk, model, max_states)
            found: Iterator[SimulatedDisk]
            if drawing:
                assert max_states is not None
                sampled += 1
                found = _sample(disk, model, max_states, seed=point)
            else:
                found = disk.crash_states(model)
            for index, state in enumerate(found):
                states += 1
                error = checked(state)
                if error is not None:
                    violations.append(Violation(
                        point, total, after, crashed_in, index, error, disk=disk,
                        model=model, log=run_log, prefix=prefix,
                        found=state if drawing else None, sampled=drawing,
                    ))

        sweep(disk, total)
        for point in range(total):
            disk = base.copy()
            disk.crash_after(point)
            try:
                run(disk, workload, record=True)
            except BaseException as exc:
                if not disk.crashed:
                    if isinstance(exc, SimulatedCrash):
                        raise
                    raise RuntimeError(
                        f"the workload, crashed after {point} operations, raised before "
                        f"the crash: it does not do the same each run"
                    ) from exc
            else:
                if not disk.crashed:
                    raise RuntimeError(
                        f"the workload made {disk.operations} operations in a run crashed "
                        f"after {point}, {total} in the first: it does not do the same each "
                        f"run"
                    )
            kinds = [op.kind for op in log]
            expected = [op.kind for op in first_log if op.number < point]
            if kinds[: len(expected)] != expected:
                raise RuntimeError(
                    f"the workload did other file operations when crashed after {point} "
                    f"than in its first run ({kinds} instead of {expected}): it does not "
                    f"do the same each run"
                )
            sweep(disk, point)
    finally:
        if mounted is not None:
            # What the crashed runs left open (a Queue, a file object) is finalised while its
            # descriptors are still the mount's, where closing them does nothing.
            if mounted.leftovers():
                gc.collect()
            mounted.unmount()
    violations.sort(key=lambda v: (v.crash_point, v.state))
    return _notified(CrashReport(states, total + 1, total, time.perf_counter() - started,
                                 violations, first_log, model, sampled))


def _more_states(disk: SimulatedDisk, model: PersistenceModel, limit: int) -> bool:
    """Whether ``disk`` has more than ``limit`` crash states under ``model`` (counted
    without building them, and only when the estimate allows more)."""
    if disk.estimate_crash_states(model) <= limit:
        return False
    return sum(1 for _ in itertools.islice(_enumerate(disk, model), limit + 1)) > limit


_DRAWS_PER_STATE = 8


def _sample(
    disk: SimulatedDisk, model: PersistenceModel, count: int, *, seed: int
) -> Iterator[SimulatedDisk]:
    """``count`` distinct crash states of ``disk`` (it has more): the visible one, then
    states drawn as ``crash_state`` draws them, from a generator seeded with ``seed``. Gives
    up after ``_DRAWS_PER_STATE`` draws per state asked for, if repeats keep coming."""
    rng = random.Random(seed)
    first = True

    def integer(lo: int, hi: int) -> int:
        return lo if first else rng.randint(lo, hi)

    def boolean() -> bool:
        return False if first else rng.random() < 0.5

    seen: set[tuple[tuple[str, ...], tuple[tuple[str, bytes], ...]]] = set()
    for _ in range(count * _DRAWS_PER_STATE):
        state = _draw_crash_state(disk, model, integer, boolean)
        first = False
        key = (tuple(state.dirs()), tuple(state.files().items()))
        if key in seen:
            continue
        seen.add(key)
        yield state
        if len(seen) == count:
            return


def _last_before(log: Sequence[Operation], point: int) -> Operation | None:
    """The last operation of ``log`` that had completed when ``point`` operations had run."""
    found = None
    for op in log:
        if op.number + op.disk_ops <= point:
            found = op
        else:
            break
    return found


def _containing(log: Sequence[Operation], point: int) -> Operation | None:
    """The operation of ``log`` whose disk calls include call number ``point + 1``."""
    for op in log:
        if op.number <= point < op.number + op.disk_ops:
            return op
    return None


# Called with every report check_crashes returns (pqueue.crashtest.plugin counts each test's
# crash states with one of these); an observer must not raise.
_report_observers: list[Callable[[CrashReport], object]] = []


def _notified(report: CrashReport) -> CrashReport:
    for observer in list(_report_observers):
        observer(report)
    return report
