"""The file-system boundary: every disk operation pqueue performs goes through a FileSystem.

The IO shell never calls ``os`` or ``open`` for queue data itself; it calls the methods of
the ``FileSystem`` it was given. ``OsFileSystem`` is the real one. The crash harness's
``pqueue.crashtest.SimulatedDisk`` is another, which records what is durable and what is not,
so the same Queue code can be crashed at every operation.

Paths are plain ``str``. Every method raises ``OSError`` (or a subclass such as
``FileNotFoundError``) exactly where the operating system would.

Durability vocabulary used below:
- *visible*: what a read returns now (the page cache).
- *durable*: what survives a power loss. File content becomes durable with ``fsync(path)``;
  the existence of a name in a directory (create, rename, unlink) becomes durable with
  ``fsync_dir(directory)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import io
import os
import select
import stat
import sys
import threading
from collections.abc import Callable, Hashable
from typing import Literal, Protocol, cast, runtime_checkable

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX)
    raise ImportError(
        f"pqueue needs a POSIX system (Linux, or macOS and the BSDs): it locks with flock(), "
        f"which {sys.platform!r} does not have"
    ) from None

__all__ = ["FileKind", "FileMutex", "FileSystem", "Lock", "OsFileSystem", "Watch"]

FileKind = Literal["file", "dir", "symlink", "other"]
"""What ``FileSystem.file_type`` finds: a regular file, a directory, a symbolic link, or
anything else (a FIFO, a socket, a device)."""


@runtime_checkable
class Lock(Protocol):
    """An exclusive lock held on a file, released by ``release()`` (idempotent)."""

    def release(self) -> None: ...


@runtime_checkable
class Watch(Protocol):
    """Waits for a file to change: made by ``FileSystem.watch``."""

    def wait(self, timeout: float | None) -> bool:
        """Block until the file was changed (by anyone, in any process) since the watch was
        made or since the last ``wait`` returned, or ``wake()`` was called, or ``timeout``
        seconds passed (None: no limit). False if it timed out. May return True early."""
        ...

    def wake(self) -> None:
        """Make a ``wait`` in progress (or the next one) return at once. Thread-safe."""
        ...

    def close(self) -> None:
        """Let go of what the watch holds (idempotent)."""
        ...


@runtime_checkable
class FileSystem(Protocol):
    """The operations the IO shell needs, path-based, with POSIX semantics."""

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        """Create directory ``path`` and any missing parents; no error if it exists.

        Raises ``FileExistsError`` if ``path`` exists and is not a directory, and
        ``NotADirectoryError`` if a parent is not one.
        """
        ...

    def listdir(self, path: str) -> list[str]:
        """The names in directory ``path`` (no ``.``/``..``), in no particular order."""
        ...

    def exists(self, path: str) -> bool:
        """Whether anything (file or directory) exists at ``path``."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` exists and is a directory."""
        ...

    def file_type(self, path: str) -> FileKind | None:
        """What is at ``path``, not following a symbolic link (None when nothing is)."""
        ...

    def size(self, path: str) -> int:
        """The current (visible) size in bytes of regular file ``path`` (a directory's size
        is not defined: ``IsADirectoryError`` or a file-system dependent number)."""
        ...

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all when ``size < 0``) of ``path`` from ``offset``.

        Returns fewer bytes at the end of the file, and ``b""`` at or past it.
        """
        ...

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        """Write all of ``data`` to ``path``, creating the file if it does not exist.

        ``offset=None`` appends at the current end of file. Writing past the end extends the
        file, the gap reading as zeros. Not durable until ``fsync(path)`` (and, for a newly
        created file, ``fsync_dir`` of its directory).
        """
        ...

    def create(self, path: str) -> None:
        """Create ``path`` as an empty file, truncating it to zero bytes if it exists.

        This is how a new chunk is started: never by appending to whatever is there.
        """
        ...

    def truncate(self, path: str, size: int) -> None:
        """Cut (or extend with zeros) existing file ``path`` to exactly ``size`` bytes."""
        ...

    def fsync(self, path: str) -> None:
        """Make the content and size of file ``path`` durable (``fdatasync`` where it exists).

        A failed fsync must not be retried as if nothing happened: the data it covered may be
        lost even though reads still return it.
        """
        ...

    def fsync_dir(self, path: str) -> None:
        """Make the entries of directory ``path`` (creates, renames, unlinks) durable."""
        ...

    def write_back(self, path: str) -> None:
        """Start writing the data of ``path`` to disk and return without waiting.

        A hint with no visible effect: nothing becomes durable until ``fsync(path)``, which
        then finds less to do. ``path`` must exist.
        """
        ...

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` to ``dst``, replacing ``dst`` if it exists."""
        ...

    def unlink(self, path: str) -> None:
        """Remove the file ``path``."""
        ...

    def lock(self, path: str, *, shared: bool = False, blocking: bool = False) -> Lock:
        """Take a lock on file ``path``, creating it if missing, with ``flock`` semantics:
        exclusive (the default) or ``shared``; two locks conflict unless both are shared,
        also two taken by one process.

        Raises ``BlockingIOError`` at once on a conflict, unless ``blocking``: then it waits.
        The lock is released by ``Lock.release()`` or when the process ends. A child process
        forked while the lock is held must never release it for its parent: ``release()`` in
        the child only lets go of the child's handle.
        """
        ...

    def probe(self, path: str) -> bool:
        """Whether anyone holds a lock on file ``path`` (False if it does not exist)."""
        ...

    def boot_id(self) -> str | None:
        """A string that changes when the machine restarts (None if it cannot be known):
        what a file that only lives in the page cache may be trusted by."""
        ...

    def volatile(self, path: str) -> None:
        """Say that file ``path`` holds nothing that must survive a power loss (its writer
        never trusts it after a restart). A hint for the crash harness; no effect on disk."""
        ...

    def watch(self, path: str, closes: tuple[str, ...] = ()) -> Watch:
        """A ``Watch`` for changes to file ``path`` (which must exist), and for the release
        of the locks held on the files ``closes`` (their holders ended or let go)."""
        ...

    def lock_key(self, path: str) -> Hashable:
        """A value equal for any two paths that name the same directory on this file system.

        Used to find an earlier Queue of the same process on the same directory.
        """
        ...

    def same_filesystem(self, a: str, b: str) -> bool:
        """Whether existing paths ``a`` and ``b`` are on one file system (rename works)."""
        ...

    def release(self, path: str) -> None:
        """Drop any cached handle for ``path``; the next use of ``path`` opens it anew.

        Has no visible effect on content. Called when the shell is done with a file.
        """
        ...


class _FlockLock:
    """A ``flock`` on an open file description. A process forked while it is held shares
    that description, so unlocking it there would unlock the parent: in any process but the
    one that took it, ``release()`` only closes that process's descriptor, which leaves the
    parent's lock in place.

    The descriptor is held by an ``io.FileIO``, whose ``close()`` and finaliser are single
    C calls: an exception landing in ``release()`` (a signal's) or a lock dropped before its
    holder could keep it never leaves the lock held, nor closes a descriptor twice.
    """

    __slots__ = ("_file", "_pid")

    def __init__(self, file: io.FileIO) -> None:
        self._file = file
        self._pid = os.getpid()

    def release(self) -> None:
        file = self._file
        if file.closed:
            return
        try:
            if os.getpid() == self._pid:
                fcntl.flock(file, fcntl.LOCK_UN)
        finally:
            file.close()


class FileMutex:
    """A blocking exclusive ``flock`` on one descriptor, for short critical sections between
    processes: ``acquire`` and ``release`` are each one C call (no Python frame), so that an
    exception a signal handler raises lands before or after the call, never inside it
    between the lock and its bookkeeping. ``release`` of a lock not held does nothing.
    A forked child must not release a mutex its parent holds (it would unlock the parent's
    lock): Queue objects inherited through fork never do."""

    __slots__ = ("_file", "acquire", "release")

    def __init__(self, path: str) -> None:
        self._file = io.FileIO(_open_regular(path, os.O_RDWR | os.O_CREAT), "r+", closefd=True)
        fd = self._file.fileno()
        self.acquire: Callable[[], None] = functools.partial(fcntl.flock, fd, fcntl.LOCK_EX)
        self.release: Callable[[], None] = functools.partial(fcntl.flock, fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._file.close()


# Queue files are opened without following a symbolic link and without blocking (a FIFO put
# in place of one would block an open for reading forever), then checked to be regular.
# O_NONBLOCK changes nothing for a regular file.
_SAFE = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _open_regular(path: str, flags: int, mode: int = 0o600, *, dirs: bool = False) -> int:
    """``os.open`` of a regular file (or, with ``dirs``, a directory); anything else is an
    ``OSError`` naming ``path``."""
    fd = os.open(path, flags | _SAFE, mode)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or (dirs and stat.S_ISDIR(st.st_mode))):
            code = errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL
            raise OSError(code, f"{os.strerror(code)} (not a regular file)", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


class OsFileSystem:
    """The real file system, through ``os``. Caches one descriptor per file it writes.

    Descriptors are opened ``O_RDWR`` (never ``O_APPEND``: appends go to the end explicitly)
    and kept until ``release``, ``unlink``, ``replace`` or ``close``. Not thread-safe by
    itself: the Queue calls it under its own lock.
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._probes: dict[str, int] = {}  # descriptors kept to probe others' locks
        self._watches: dict[int, _InotifyWatch] = {}  # by thread: one kept for reuse

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = _open_regular(path, os.O_RDWR | os.O_CREAT)
            self._fds[path] = fd
        return fd

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        os.makedirs(path, mode=mode, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def file_type(self, path: str) -> FileKind | None:
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISREG(mode):
            return "file"
        if stat.S_ISDIR(mode):
            return "dir"
        if stat.S_ISLNK(mode):
            return "symlink"
        return "other"

    def size(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            return os.fstat(fd).st_size
        return os.stat(path).st_size

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset", path)
        fd = self._fds.get(path)
        if fd is not None:
            return _pread(fd, path, offset, size)
        fd = _open_regular(path, os.O_RDONLY)
        try:
            return _pread(fd, path, offset, size)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fd(path)
        if offset is None:
            offset = os.lseek(fd, 0, os.SEEK_END)
        written = os.pwrite(fd, data, offset)
        if written < len(data):
            view = memoryview(data)[written:]
            while view:
                offset += written
                written = os.pwrite(fd, view, offset)
                view = view[written:]

    def create(self, path: str) -> None:
        self.release(path)
        fd = _open_regular(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        self._fds[path] = fd

    def truncate(self, path: str, size: int) -> None:
        fd = self._fds.get(path)
        if fd is None:
            os.truncate(path, size)
        else:
            os.ftruncate(fd, size)

    def fsync(self, path: str) -> None:
        fd = self._fds.get(path)
        if fd is None:
            fd = _open_regular(path, os.O_RDONLY, dirs=True)
            try:
                _fdatasync(fd)
            finally:
                os.close(fd)
        else:
            _fdatasync(fd)

    def write_back(self, path: str) -> None:
        fd = self._fds.get(path)
        if fd is not None:
            _start_write_back(fd, path)
            return
        fd = _open_regular(path, os.O_RDONLY, dirs=True)
        try:
            _start_write_back(fd, path)
        finally:
            os.close(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        stale = (src, dst)
        inside = (src + "/", dst + "/")
        for path in [p for p in self._fds if p in stale or p.startswith(inside)]:
            self.release(path)  # a cached descriptor must not outlive its path
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        self.release(path)
        os.unlink(path)

    def lock(self, path: str, *, shared: bool = False, blocking: bool = False) -> Lock:
        # The descriptor goes into its FileIO at once: from then on only the FileIO closes
        # it, once, whatever exception lands where (a signal's), so no descriptor is ever
        # closed twice (which would close another file that reused its number).
        file = io.FileIO(_open_regular(path, os.O_RDWR | os.O_CREAT), "r+", closefd=True)
        operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (
            0 if blocking else fcntl.LOCK_NB
        )
        try:
            try:
                fcntl.flock(file.fileno(), operation)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise BlockingIOError(
                        exc.errno, f"{path} is locked by another holder"
                    ) from exc
                raise
            return _FlockLock(file)
        except BaseException:  # any exception, a signal's too: the lock is not left held
            file.close()
            raise

    def mutex(self, path: str) -> FileMutex:
        """An exclusive ``flock`` on ``path`` taken and released many times over one
        descriptor (no open, fstat or close per use)."""
        return FileMutex(path)

    def probe(self, path: str) -> bool:
        fd = self._probes.get(path)
        if fd is None:
            try:
                fd = _open_regular(path, os.O_RDONLY)
            except FileNotFoundError:
                return False
            self._probes[path] = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        # Nobody holds it: its holder is gone. Let go of the file for good.
        del self._probes[path]
        os.close(fd)
        return False

    def boot_id(self) -> str | None:
        return _BOOT_ID

    def volatile(self, path: str) -> None:
        pass  # the page cache is volatile enough: the boot id guards its content

    def watch(self, path: str, closes: tuple[str, ...] = ()) -> Watch:
        if _inotify is None:
            return _PollWatch()
        # Closing an inotify descriptor waits for the kernel (milliseconds): each thread
        # keeps the one its last watch used, and the next watch of that thread reuses it.
        watch = self._watches.pop(threading.get_ident(), None)
        if watch is None:
            return _InotifyWatch(path, closes, self._watches)
        try:
            watch.reuse(path, closes)
        except BaseException:
            watch.discard()
            raise
        return watch

    def lock_key(self, path: str) -> Hashable:
        st = os.stat(path)
        return ("os", st.st_dev, st.st_ino)

    def same_filesystem(self, a: str, b: str) -> bool:
        return os.stat(a).st_dev == os.stat(b).st_dev

    def release(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close every cached descriptor."""
        fds, self._fds = self._fds, {}
        probes, self._probes = self._probes, {}
        watches, self._watches = self._watches, {}
        for fd in (*fds.values(), *probes.values()):
            os.close(fd)
        for watch in watches.values():
            watch.discard()


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip() or None
    except OSError:
        return None


_BOOT_ID = _read_boot_id()

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008  # a process that had the file open for writing closed it


def _load_inotify() -> tuple[Callable[[int], int], Callable[[int, bytes, int], int]] | None:
    """Linux's ``inotify_init1`` and ``inotify_add_watch`` from the C library."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init = libc.inotify_init1
        add = libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes = (ctypes.c_int,)
    init.restype = ctypes.c_int
    add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    add.restype = ctypes.c_int
    return (
        cast("Callable[[int], int]", init),
        cast("Callable[[int, bytes, int], int]", add),
    )


_inotify = _load_inotify()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


class _InotifyWatch:
    """A watch through inotify: ``wait`` sleeps in ``select`` on the inotify descriptor and
    on a pipe that ``wake`` writes to. No polling: the kernel wakes it on the first write.
    ``close`` hands it back to the pool it came from, for the next watch of its thread."""

    def __init__(
        self, path: str, closes: tuple[str, ...], pool: dict[int, _InotifyWatch]
    ) -> None:
        assert _inotify is not None
        init, _ = _inotify
        self._pool = pool
        self._fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        self._wake_r, self._wake_w = -1, -1
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._add(path, closes)
        except BaseException:
            self.discard()
            raise

    def _add(self, path: str, closes: tuple[str, ...]) -> None:
        assert _inotify is not None
        _, add = _inotify
        if add(self._fd, os.fsencode(path), _IN_MODIFY) < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        for other in closes:
            # A lock holder that ends closes its descriptor (opened for writing). A file
            # gone already needs no watch: its holder is gone too.
            if add(self._fd, os.fsencode(other), _IN_CLOSE_WRITE) < 0:
                err = ctypes.get_errno()
                if err != errno.ENOENT:
                    raise OSError(err, os.strerror(err), other)

    def reuse(self, path: str, closes: tuple[str, ...]) -> None:
        """Watch ``path`` and ``closes`` from now on (what came before is dropped; files
        watched before stay watched, which may only wake a wait early)."""
        _drain(self._fd)
        _drain(self._wake_r)
        self._add(path, closes)

    def wait(self, timeout: float | None) -> bool:
        if self._fd < 0:
            return True
        ready, _, _ = select.select([self._fd, self._wake_r], [], [], timeout)
        for fd in ready:
            _drain(fd)
        return bool(ready)

    def wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed
                os.write(self._wake_w, b"w")

    def close(self) -> None:
        if self._fd >= 0 and self._pool.setdefault(threading.get_ident(), self) is self:
            return  # kept for this thread's next watch
        self.discard()

    def discard(self) -> None:
        """Close the descriptors for good."""
        fds = (self._fd, self._wake_r, self._wake_w)
        self._fd = self._wake_r = self._wake_w = -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)


class _PollWatch:
    """Where there is no inotify: ``wait`` sleeps in short steps (a few milliseconds), as
    the only way to see another process's write without it."""

    _STEP = 0.005

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float | None) -> bool:
        step = self._STEP if timeout is None else min(self._STEP, timeout)
        woken = self._event.wait(step)
        self._event.clear()
        return woken or timeout is None or timeout > step

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._event.set()


_fdatasync = getattr(os, "fdatasync", os.fsync)

_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start write-out of the dirty pages, do not wait
# Errors that say only that the call is not available here: the hint is then skipped.
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP})


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` from the C library (``os`` does not offer it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", function)


_sync_file_range = _load_sync_file_range()


def _start_write_back(fd: int, path: str) -> None:
    """Start writing back all dirty pages of ``fd`` (``sync_file_range`` where there is one;
    elsewhere nothing: the fsync that must follow does all the work)."""
    global _sync_file_range
    if _sync_file_range is None:
        return
    if _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
        err = ctypes.get_errno()
        if err in _UNSUPPORTED:
            _sync_file_range = None  # not on this kernel or file system: stop asking
            return
        raise OSError(err, os.strerror(err), path)


_SMALL_READ = 16 * 1024


def _pread(fd: int, path: str, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes (all when < 0) of ``fd`` from ``offset``. A large ``size`` is
    first cut to what the file holds, so that a generous block read of a small file costs
    no large buffer (a small one costs no ``fstat``)."""
    if not 0 < size <= _SMALL_READ:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        available = st.st_size - offset
        size = available if size < 0 else min(size, available)
    if size <= 0:
        return b""
    chunks = []
    while size > 0:
        data = os.pread(fd, size, offset)
        if not data:
            break
        chunks.append(data)
        offset += len(data)
        size -= len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
