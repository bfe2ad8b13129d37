"""mount: run unmodified file-handling code on a ``SimulatedDisk``.

``with mount(disk, at="/app"):`` sends every file operation on a path under ``/app`` to
``disk``, and every other path to the real operating system, for code that calls ``open``,
``os`` and ``os.path`` (and so ``pathlib``, ``tempfile``, ``shutil`` and ``json`` on top of
them) instead of a ``pqueue.io.FileSystem``. The directory ``at`` is the root of the disk:
``/app/config`` is the disk's ``/config``, and the mount point itself always exists.

The semantics are those of the real system with the page cache standing for what is visible
on the disk: a write reaches the disk when the program makes the system call (for a buffered
file object, when Python flushes it: ``flush``, ``close``, a full buffer), and becomes
durable with ``os.fsync``/``os.fdatasync`` of its descriptor (of a directory's descriptor,
for its entries). ``O_CREAT``, ``O_EXCL``, ``O_TRUNC``, ``O_APPEND`` and ``O_DSYNC``/``O_SYNC``
behave as on Linux. Simulated descriptors are numbered from ``FD_BASE`` (above any number
the kernel hands out), so they never collide with real ones, and a call this module does not
intercept fails on them with ``EBADF`` instead of reaching a real file.

What is intercepted, what is accepted and ignored, and what is refused with
``UnsupportedCallError`` (naming the call) is listed in ``INTERCEPTED``, ``IGNORED`` and
``REFUSED``. Functions bound to another name before the mount (``from os import fsync``)
are not intercepted, with one exception: pqueue's own ``OsFileSystem`` (its ``fdatasync``,
``sync_file_range`` and inotify hooks), so that a ``pqueue.Queue`` runs on a mount unchanged;
its watches then poll.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import io
import itertools
import mmap
import os
import posixpath
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from pqueue.crashtest.disk import SimulatedDisk, SimulatedProcess

__all__ = [
    "FD_BASE",
    "IGNORED",
    "INTERCEPTED",
    "REFUSED",
    "Mount",
    "Operation",
    "UnsupportedCallError",
    "mount",
]

FD_BASE = 0x6000_0000
"""The first simulated descriptor number: above ``fs.nr_open``'s largest possible value
(2**30), so the kernel never hands out a real descriptor with such a number."""

INTERCEPTED = (
    "builtins.open", "io.open", "io.FileIO", "os.open", "os.close", "os.read", "os.write",
    "os.pread", "os.pwrite", "os.lseek", "os.fsync", "os.fdatasync", "os.ftruncate",
    "os.truncate", "os.fstat", "os.stat", "os.lstat", "os.access", "os.listdir",
    "os.scandir", "os.mkdir", "os.makedirs", "os.rename", "os.replace", "os.remove",
    "os.unlink", "os.rmdir", "os.sendfile", "os.sync", "os.isatty", "os.device_encoding",
    "os.readlink", "os.path.*", "fcntl.flock",
)
"""What a mount sends to the disk for paths under it (``os.makedirs`` and ``os.path`` through
``os.mkdir`` and ``os.stat``; ``os.readlink`` raises ``EINVAL``: the disk has no symbolic
links)."""

IGNORED = ("os.chmod", "os.fchmod", "os.utime", "os.posix_fadvise")
"""Accepted and ignored on a mount: the disk has no permissions nor timestamps."""

REFUSED = (
    "os.link", "os.symlink", "os.mkfifo", "os.mknod", "os.chown", "os.lchown", "os.fchown",
    "os.chdir", "os.fchdir", "os.chroot", "os.statvfs", "os.fstatvfs", "os.pathconf",
    "os.fpathconf", "os.getxattr", "os.setxattr", "os.listxattr", "os.removexattr",
    "os.dup", "os.dup2", "os.readv", "os.writev", "os.preadv", "os.pwritev",
    "os.posix_fallocate", "os.copy_file_range", "os.splice", "os.lockf", "os.set_blocking",
    "os.get_blocking", "os.set_inheritable", "os.get_inheritable", "os.ttyname",
    "fcntl.fcntl", "fcntl.ioctl", "fcntl.lockf", "mmap.mmap", "O_TMPFILE",
)
"""Refused with ``UnsupportedCallError`` on a simulated path or descriptor (``O_TMPFILE``
with ``OSError(EOPNOTSUPP)``, as a file system without it does, which ``tempfile`` handles)."""


class UnsupportedCallError(NotImplementedError):
    """A call a mount cannot simulate, made on a simulated path or descriptor.

    Not an ``OSError``, so that code handling ``OSError`` does not take it for a failure of
    the disk and carry on: the check stops, naming the call.
    """


class Operation(NamedTuple):
    """One call under a mount that changed (or tried to change) the disk.

    ``number`` is the disk's operation count before it (a crash at that count is a crash
    just before this call), ``disk_ops`` the state-changing disk calls it made (see
    ``SimulatedDisk.operations``; two or more for ``os.sync``, a ``sendfile``...). ``kind``
    is ``write``, ``truncate``, ``create``, ``mkdir``, ``rename``, ``unlink``, ``rmdir``,
    ``fsync``, ``fsync_dir``, ``lock`` or ``sync``; ``call`` says it as the program made it.
    ``ino`` is the inode it acted on, ``dirs`` the directories whose entries it changed (or,
    for ``fsync_dir``, made durable), ``start``/``end`` the bytes a write covered.
    ``failed``: it raised (an ``OSError``) instead of taking effect.
    """

    number: int
    disk_ops: int
    kind: str
    call: str
    path: str
    ino: int | None = None
    dirs: tuple[int, ...] = ()
    start: int = 0
    end: int = 0
    failed: bool = False

    def __str__(self) -> str:
        return f"#{self.number + 1} {self.call}"


Recorder = Callable[[Operation], None]

_real: dict[str, Any] = {}
for _name in (
    "open", "close", "read", "write", "pread", "pwrite", "lseek", "fsync", "fdatasync",
    "ftruncate", "truncate", "fstat", "stat", "lstat", "access", "listdir", "scandir",
    "mkdir", "rename", "replace", "remove", "unlink", "rmdir", "sendfile", "sync", "isatty",
    "device_encoding", "readlink", "chmod", "fchmod", "utime", "posix_fadvise", "getcwd",
):
    if hasattr(os, _name):
        _real["os." + _name] = getattr(os, _name)
_real_open = builtins.open
_real_fileio = io.FileIO
_real_flock = fcntl.flock
_real_mmap = mmap.mmap

_lock = threading.RLock()  # the registry, the descriptor table and every handle
_mounts: list[Mount] = []  # active, longest mount point first
_handles: dict[int, _Handle] = {}
# Descriptors a mount let go of (``switch``, ``unmount``) while other code may still hold
# their numbers: kept until no mount is left, so that using them does what ``_live`` says
# (nothing, or EBADF) instead of reaching the real system with a number it never gave.
_detached: dict[int, _Handle] = {}
_fds = itertools.count(FD_BASE)
_DEV_BASE = 0x5100_0000  # st_dev of a simulated disk: this plus the disk's number
_saved: list[tuple[object, str, object]] = []  # what install() replaced, to put back


def _error(code: int, path: object = None, path2: object = None) -> OSError:
    return OSError(code, os.strerror(code), path, None, path2)


def _refuse(call: str, what: object) -> UnsupportedCallError:
    return UnsupportedCallError(
        f"{call}({what!r}): not supported on a simulated disk (pqueue.crashtest.mount); "
        f"it would not reach the simulated file"
    )


def _inner(fs: SimulatedDisk | SimulatedProcess) -> SimulatedDisk:
    return fs._disk if isinstance(fs, SimulatedProcess) else fs


def _ino(fs: SimulatedDisk | SimulatedProcess, path: str) -> int | None:
    """The inode number at ``path`` on the disk (visible), or None."""
    return _inner(fs).inode(path)


def _rmdir_on(fs: SimulatedDisk | SimulatedProcess, path: str) -> None:
    """``rmdir`` on the disk: a state-changing entry operation, counted and crashed like the
    others."""
    fs.rmdir(path)


class _Handle:
    """An open file description on a mount: a path on the disk (kept up to date through
    renames made under the mount), or, once that file is unlinked, the bytes it had."""

    __slots__ = (
        "append", "data", "detached", "disk", "fd", "is_dir", "lock", "lock_shared", "mount",
        "offset", "path", "readable", "sync", "writable",
    )

    def __init__(
        self, mount: Mount, path: str, *, readable: bool, writable: bool, append: bool,
        sync: bool, is_dir: bool,
    ) -> None:
        self.mount = mount
        self.disk = mount.disk
        self.path: str | None = path
        self.data: bytearray | None = None
        self.offset = 0
        self.readable = readable
        self.writable = writable
        self.append = append
        self.sync = sync
        self.is_dir = is_dir
        self.lock: Any = None
        self.lock_shared = False
        self.detached: str | None = None  # "closed", or "discard"/"unmounted" by the mount
        self.fd = next(_fds)

    def user_path(self) -> str:
        return "<unlinked>" if self.path is None else self.mount.outside(self.path)


def _handle(fd: object) -> _Handle | None:
    if type(fd) is not int or fd < FD_BASE:
        return None
    h = _handles.get(fd)
    if h is None:
        return _detached.get(fd)
    return h


def _live(h: _Handle) -> bool:
    """False when a detached handle should do nothing (its run is over); raises
    ``EBADF`` when it was closed by the end of its mount."""
    if h.detached is None:
        return True
    if h.detached == "discard":
        return False
    if h.detached == "unmounted":
        raise OSError(
            errno.EBADF,
            f"descriptor {h.fd} of the simulated disk at {h.mount.at} used after its mount "
            f"ended",
        )
    raise _error(errno.EBADF)


class Mount:
    """A ``SimulatedDisk`` (or one ``SimulatedProcess`` of it) mounted at directory ``at``.

    Made by ``mount()``; a context manager. ``disk`` may be replaced while mounted
    (``switch``): the descriptors open on the old disk are discarded. ``recorder``, when
    set, is called with an ``Operation`` for every call that changed the disk.
    """

    def __init__(self, disk: SimulatedDisk | SimulatedProcess, at: str) -> None:
        if not isinstance(disk, (SimulatedDisk, SimulatedProcess)):
            raise TypeError(f"mount needs a SimulatedDisk or SimulatedProcess, got {disk!r}")
        at = os.fsdecode(os.fspath(at))
        if not at.startswith("/"):
            raise ValueError(f"mount needs an absolute mount point, got {at!r}")
        at = "/" + posixpath.normpath(at).lstrip("/")
        if at == "/":
            raise ValueError("mount cannot take '/': the interpreter itself needs the real disk")
        self.at = at
        self._prefix = at + "/"
        self.disk = disk
        self.recorder: Recorder | None = None
        self.time = time.time()
        self._active = False

    def __repr__(self) -> str:
        state = "mounted" if self._active else "not mounted"
        return f"<Mount {self.disk!r} at {self.at!r} ({state})>"

    # -- the context manager ------------------------------------------------------------

    def __enter__(self) -> Mount:
        with _lock:
            if self._active:
                raise RuntimeError(f"{self!r} is already mounted")
            if any(m.at == self.at for m in _mounts):
                raise RuntimeError(f"something is mounted at {self.at} already")
            if not _mounts:
                _install()
            _mounts.append(self)
            _mounts.sort(key=lambda m: -len(m.at))
            self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    def unmount(self) -> None:
        """End the mount (idempotent): its descriptors still open stop working (``EBADF``),
        and the last mount to end puts every replaced function back."""
        with _lock:
            if not self._active:
                return
            self._active = False
            _mounts.remove(self)
            self._detach("unmounted")
            if not _mounts:
                _uninstall()

    def switch(self, disk: SimulatedDisk | SimulatedProcess, *, discard: bool = True) -> None:
        """Mount ``disk`` in place of the current one. The descriptors open on the old one
        are discarded: later calls on them do nothing (with ``discard``, the default: the
        program that used them is over, as after a crash) or raise ``EBADF``."""
        with _lock:
            self._detach("discard" if discard else "unmounted")
            self.disk = disk

    def leftovers(self) -> int:
        """How many descriptors this mount let go of (``switch``) are still open: held
        by objects the program left behind, which will close them when finalised."""
        with _lock:
            return sum(1 for h in _detached.values() if h.mount is self)

    def _detach(self, how: str) -> None:
        for fd, h in list(_handles.items()):
            if h.mount is self:
                del _handles[fd]
                h.detached = how
                _detached[fd] = h

    # -- paths -----------------------------------------------------------------------------

    def outside(self, path: str) -> str:
        """The path, as the program names it, of disk path ``path``."""
        return self.at if path == "/" else self.at + path

    def _fix(self, exc: OSError) -> None:
        """Name the program's paths, not the disk's, in an error of the disk."""
        for attr in ("filename", "filename2"):
            value = getattr(exc, attr)
            if isinstance(value, str) and value.startswith("/"):
                setattr(exc, attr, self.outside(posixpath.normpath(value)))

    def _record(
        self, before: int, kind: str, call: str, path: str, *, ino: int | None = None,
        dirs: tuple[int, ...] = (), start: int = 0, end: int = 0, failed: bool = False,
        disk: SimulatedDisk | SimulatedProcess | None = None,
    ) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        after = _inner(self.disk if disk is None else disk).operations
        if after == before:
            return
        recorder(Operation(before, after - before, kind, call, path, ino, dirs, start, end,
                           failed))

    def _ops(self, disk: SimulatedDisk | SimulatedProcess | None = None) -> int:
        return _inner(self.disk if disk is None else disk).operations

    def _dir_ino(self, path: str) -> tuple[int, ...]:
        ino = _ino(self.disk, posixpath.dirname(path))
        return () if ino is None else (ino,)

    # -- calls on paths ---------------------------------------------------------------------

    def open(self, path: str, flags: int, call: str) -> int:
        """``os.open`` of disk path ``path``: a new descriptor."""
        disk = self.disk
        accmode = flags & os.O_ACCMODE
        if (flags & os.O_TMPFILE) == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "O_TMPFILE is not supported on a simulated disk",
                          self.outside(path))
        with _lock:
            kind = disk.file_type(path)
            if kind is None:
                if not flags & os.O_CREAT:
                    raise _error(errno.ENOENT, self.outside(path))
                if flags & os.O_DIRECTORY:
                    raise _error(errno.ENOENT, self.outside(path))
                before = self._ops()
                failed = True
                try:
                    disk.create(path)
                    failed = False
                except OSError as exc:
                    self._fix(exc)
                    raise
                finally:
                    self._record(before, "create", call, self.outside(path),
                                 ino=_ino(disk, path), dirs=self._dir_ino(path), failed=failed)
            elif kind == "dir":
                if flags & os.O_CREAT and flags & os.O_EXCL:
                    raise _error(errno.EEXIST, self.outside(path))
                if accmode != os.O_RDONLY or flags & os.O_CREAT:
                    raise _error(errno.EISDIR, self.outside(path))
            else:
                if flags & os.O_CREAT and flags & os.O_EXCL:
                    raise _error(errno.EEXIST, self.outside(path))
                if flags & os.O_DIRECTORY:
                    raise _error(errno.ENOTDIR, self.outside(path))
                if flags & os.O_TRUNC and disk.size(path):  # O_RDONLY too, as on Linux
                    before = self._ops()
                    failed = True
                    try:
                        disk.truncate(path, 0)
                        failed = False
                    except OSError as exc:
                        self._fix(exc)
                        raise
                    finally:
                        self._record(before, "truncate", call, self.outside(path),
                                     ino=_ino(disk, path), failed=failed)
            h = _Handle(
                self, path,
                readable=accmode in (os.O_RDONLY, os.O_RDWR),
                writable=accmode in (os.O_WRONLY, os.O_RDWR),
                append=bool(flags & os.O_APPEND),
                sync=bool(flags & os.O_DSYNC),
                is_dir=kind == "dir",
            )
            _handles[h.fd] = h
            return h.fd

    def stat(self, path: str) -> os.stat_result:
        disk = self.disk
        with _lock:
            kind = disk.file_type(path)
            if kind is None:
                # ENOTDIR when a parent is a file, as the kernel says
                parent = posixpath.dirname(path)
                while parent != "/" and disk.file_type(parent) is None:
                    parent = posixpath.dirname(parent)
                code = errno.ENOTDIR if disk.file_type(parent) == "file" else errno.ENOENT
                raise _error(code, self.outside(path))
            size = 0 if kind == "dir" else disk.size(path)
            return self._stat_result(kind == "dir", _ino(disk, path) or 0, size, disk)

    def _stat_result(
        self, is_dir: bool, ino: int, size: int, disk: SimulatedDisk | SimulatedProcess
    ) -> os.stat_result:
        """A ``stat_result``; ``st_dev`` tells the disk apart from every other, crash states
        of it included, as code that keys by (device, inode) must not take the file of a
        crash state for the one an earlier, crashed run of it had open."""
        mode = (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o644)
        t = self.time
        ns = int(t * 1e9)
        return os.stat_result(
            (mode, ino, _DEV_BASE + _inner(disk)._uid, 2 if is_dir else 1, os.getuid(),
             os.getgid(), size, int(t), int(t), int(t)),
            {"st_atime": t, "st_mtime": t, "st_ctime": t, "st_atime_ns": ns,
             "st_mtime_ns": ns, "st_ctime_ns": ns, "st_blksize": 4096,
             "st_blocks": (size + 511) // 512, "st_rdev": 0},
        )

    def listdir(self, path: str) -> list[str]:
        with _lock:
            try:
                return self.disk.listdir(path)
            except OSError as exc:
                self._fix(exc)
                raise

    def mkdir(self, path: str, call: str) -> None:
        disk = self.disk
        with _lock:
            if disk.file_type(path) is not None:
                raise _error(errno.EEXIST, self.outside(path))
            parent = posixpath.dirname(path)
            kind = disk.file_type(parent)
            if kind != "dir":
                code = errno.ENOTDIR if kind == "file" else errno.ENOENT
                raise _error(code, self.outside(path))
            before = self._ops()
            failed = True
            try:
                disk.mkdir(path)
                failed = False
            finally:
                self._record(before, "mkdir", call, self.outside(path), ino=_ino(disk, path),
                             dirs=self._dir_ino(path), failed=failed)

    def rmdir(self, path: str, call: str) -> None:
        disk = self.disk
        with _lock:
            ino, dirs = _ino(disk, path), self._dir_ino(path)
            before = self._ops()
            failed = True
            try:
                _rmdir_on(disk, path)
                failed = False
            except OSError as exc:
                self._fix(exc)
                raise
            finally:
                self._record(before, "rmdir", call, self.outside(path), ino=ino, dirs=dirs,
                             failed=failed)

    def unlink(self, path: str, call: str) -> None:
        disk = self.disk
        with _lock:
            ino, dirs = _ino(disk, path), self._dir_ino(path)
            if disk.file_type(path) == "file":
                self._orphan(path)
            before = self._ops()
            failed = True
            try:
                disk.unlink(path)
                failed = False
            except OSError as exc:
                self._fix(exc)
                raise
            finally:
                self._record(before, "unlink", call, self.outside(path), ino=ino, dirs=dirs,
                             failed=failed)

    def replace(self, src: str, dst: str, call: str) -> None:
        disk = self.disk
        with _lock:
            ino = _ino(disk, src)
            dirs = tuple(dict.fromkeys(self._dir_ino(src) + self._dir_ino(dst)))
            moving = ino is not None and ino != _ino(disk, dst)
            if moving and disk.file_type(dst) == "file" and disk.file_type(src) == "file":
                self._orphan(dst)
            before = self._ops()
            failed = True
            try:
                disk.replace(src, dst)
                failed = False
            except OSError as exc:
                self._fix(exc)
                raise
            finally:
                self._record(before, "rename", call, self.outside(dst), ino=ino, dirs=dirs,
                             failed=failed)
            if moving:
                inside = src + "/"
                for h in _handles.values():
                    if h.mount is self and h.disk is disk and h.path is not None:
                        if h.path == src:
                            h.path = dst
                        elif h.path.startswith(inside):
                            h.path = dst + h.path[len(src):]

    def _orphan(self, path: str) -> None:
        """The descriptors open on file ``path``, about to lose their name, keep its bytes."""
        data: bytearray | None = None
        for h in _handles.values():
            if h.mount is self and h.disk is self.disk and h.path == path:
                if data is None:
                    data = bytearray(self.disk.read(path))
                h.path = None
                h.data = bytearray(data)

    def truncate(self, path: str, size: int, call: str) -> None:
        disk = self.disk
        with _lock:
            before = self._ops()
            failed = True
            try:
                disk.truncate(path, size)
                failed = False
            except OSError as exc:
                self._fix(exc)
                raise
            finally:
                self._record(before, "truncate", call, self.outside(path),
                             ino=_ino(disk, path), failed=failed)

    def exists(self, path: str) -> bool:
        return self.disk.exists(path)

    def sync(self) -> None:
        """``os.sync``: every file and directory of the disk made durable."""
        disk = self.disk
        with _lock:
            before = self._ops()
            try:
                inner = _inner(disk)
                for path in inner.files():
                    disk.fsync(path)
                for path in inner.dirs():
                    disk.fsync_dir(path)
            finally:
                self._record(before, "sync", "os.sync()", self.at)


# -- descriptors --------------------------------------------------------------------------


def _call(h: _Handle, kind: str, call: str, fn: Callable[[], Any], **info: Any) -> Any:
    """Run ``fn`` on the disk of ``h``, recording it as ``kind`` and naming the program's
    paths in its errors."""
    m = h.mount
    path = h.path
    assert path is not None
    before = _inner(h.disk).operations
    failed = True
    try:
        result = fn()
        failed = False
        return result
    except OSError as exc:
        m._fix(exc)
        raise
    finally:
        if m.recorder is not None:
            m._record(before, kind, call, m.outside(path), ino=_ino(h.disk, path),
                      failed=failed, disk=h.disk, **info)


def _fd_read(h: _Handle, n: int, offset: int | None, call: str) -> bytes:
    with _lock:
        if not _live(h):
            return b""
        if not h.readable:
            raise _error(errno.EBADF)
        if h.is_dir:
            raise _error(errno.EISDIR, h.user_path())
        at = h.offset if offset is None else offset
        if at < 0:
            raise _error(errno.EINVAL)
        if h.path is None:
            assert h.data is not None
            data = bytes(h.data[at : None if n < 0 else at + n])
        else:
            path = h.path
            try:
                data = h.disk.read(path, at, n)
            except OSError as exc:
                h.mount._fix(exc)
                raise
        if offset is None:
            h.offset += len(data)
        return data


def _fd_write(h: _Handle, data: bytes, offset: int | None, call: str) -> int:
    with _lock:
        if not _live(h):
            return len(data)
        if not h.writable:
            raise _error(errno.EBADF)
        if offset is not None and offset < 0:
            raise _error(errno.EINVAL)
        if h.path is None:
            assert h.data is not None
            buf = h.data
            at = len(buf) if h.append else (h.offset if offset is None else offset)
            if at > len(buf):
                buf.extend(bytes(at - len(buf)))
            buf[at : at + len(data)] = data
            if offset is None:
                h.offset = at + len(data)
            return len(data)
        path = h.path
        disk = h.disk
        # O_APPEND: at the end, pwrite too (as Linux does)
        at = disk.size(path) if h.append else h.offset if offset is None else offset
        if data:
            _call(h, "write", f"{call} to {h.mount.outside(path)} (bytes {at}-"
                  f"{at + len(data) - 1})", lambda: disk.write(path, data, at),
                  start=at, end=at + len(data))
        if offset is None:
            h.offset = at + len(data)
        if h.sync and data:
            _call(h, "fsync", f"O_DSYNC of {call} to {h.mount.outside(path)}",
                  lambda: disk.fsync(path))
        return len(data)


def _fd_lseek(h: _Handle, pos: int, how: int) -> int:
    with _lock:
        if not _live(h):
            return 0
        if h.is_dir:
            base_end = 0
        elif h.path is None:
            assert h.data is not None
            base_end = len(h.data)
        else:
            base_end = h.disk.size(h.path)
        if how == os.SEEK_SET:
            new = pos
        elif how == os.SEEK_CUR:
            new = h.offset + pos
        elif how == os.SEEK_END:
            new = base_end + pos
        elif how == getattr(os, "SEEK_DATA", -1):
            if pos >= base_end:
                raise _error(errno.ENXIO)
            new = pos
        elif how == getattr(os, "SEEK_HOLE", -1):
            if pos >= base_end:
                raise _error(errno.ENXIO)
            new = base_end
        else:
            raise _error(errno.EINVAL)
        if new < 0:
            raise _error(errno.EINVAL)
        h.offset = new
        return new


def _fd_fsync(h: _Handle, call: str) -> None:
    with _lock:
        if not _live(h) or h.path is None:
            return
        path = h.path
        disk = h.disk
        if h.is_dir:
            m = h.mount
            before = m._ops(disk)
            failed = True
            try:
                disk.fsync_dir(path)
                failed = False
            except OSError as exc:
                m._fix(exc)
                raise
            finally:
                ino = _ino(disk, path)
                m._record(before, "fsync_dir", f"{call} of directory {m.outside(path)}",
                          m.outside(path), ino=ino, dirs=() if ino is None else (ino,),
                          failed=failed, disk=disk)
        else:
            _call(h, "fsync", f"{call} of {h.mount.outside(path)}", lambda: disk.fsync(path))


def _fd_truncate(h: _Handle, size: int, call: str) -> None:
    with _lock:
        if not _live(h):
            return
        if not h.writable or h.is_dir:
            raise _error(errno.EINVAL)
        if size < 0:
            raise _error(errno.EINVAL)
        if h.path is None:
            assert h.data is not None
            del h.data[size:]
            h.data.extend(bytes(size - len(h.data)))
            return
        path = h.path
        disk = h.disk
        _call(h, "truncate", f"{call} of {h.mount.outside(path)} to {size} bytes",
              lambda: disk.truncate(path, size))


def _fd_stat(h: _Handle) -> os.stat_result:
    with _lock:
        _live(h)
        m = h.mount
        if h.path is None:
            assert h.data is not None
            return m._stat_result(False, 0, len(h.data), h.disk)
        if h.detached:
            return m._stat_result(h.is_dir, 0, 0, h.disk)
        size = 0 if h.is_dir else h.disk.size(h.path)
        return m._stat_result(h.is_dir, _ino(h.disk, h.path) or 0, size, h.disk)


def _fd_close(h: _Handle) -> None:
    with _lock:
        lock = h.lock
        h.lock = None
        if h.detached is None:
            if _handles.get(h.fd) is h:
                del _handles[h.fd]
            h.detached = "closed"
        elif h.detached == "discard":
            _detached.pop(h.fd, None)  # closed by whoever held it: nothing left to do
            h.detached = "closed"
        else:
            _live(h)
    if lock is not None:
        lock.release()


def _fd_flock(h: _Handle, operation: int) -> None:
    with _lock:
        if not _live(h):
            return
        held = h.lock
        unlock = operation & fcntl.LOCK_UN
        shared = not operation & fcntl.LOCK_EX and bool(operation & fcntl.LOCK_SH)
        if not unlock and not operation & (fcntl.LOCK_EX | fcntl.LOCK_SH):
            raise _error(errno.EINVAL)
        if held is not None and not unlock and h.lock_shared == shared:
            return
        h.lock = None
        path, disk = h.path, h.disk
    if held is not None:
        held.release()  # a conversion is an unlock then a lock, as on Linux
    if unlock or path is None:
        return
    blocking = not operation & fcntl.LOCK_NB
    m = h.mount
    before = m._ops(disk)
    try:
        lock = disk.lock(path, shared=shared, blocking=blocking)
    except OSError as exc:
        m._fix(exc)
        if isinstance(exc, BlockingIOError):
            raise BlockingIOError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK)) from None
        raise
    finally:
        m._record(before, "lock", f"fcntl.flock of {m.outside(path)}", m.outside(path),
                  ino=_ino(disk, path), disk=disk)
    with _lock:
        if h.detached is not None:
            lock.release()
            return
        h.lock = lock
        h.lock_shared = shared


# -- file objects -------------------------------------------------------------------------


class SimulatedFileIO(io.RawIOBase):
    """What ``open`` and ``io.FileIO`` return (under the buffered and text layers) for a
    simulated file: an ``io.FileIO`` look-alike over a simulated descriptor."""

    def __init__(self, fd: int, mode: str, closefd: bool, name: object) -> None:
        super().__init__()
        handle = _handle(fd)
        if handle is None:
            raise _error(errno.EBADF)
        self._handle = handle
        self._fd = fd
        self.mode = mode
        self.closefd = closefd
        self.name = name
        self._blksize = 4096

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<SimulatedFileIO{state} name={self.name!r} mode={self.mode!r}>"

    def _h(self) -> _Handle:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._handle

    def fileno(self) -> int:
        self._h()
        return self._fd

    def readable(self) -> bool:
        return self._h().readable

    def writable(self) -> bool:
        return self._h().writable

    def seekable(self) -> bool:
        self._h()
        return True

    def isatty(self) -> bool:
        self._h()
        return False

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = _fd_read(self._h(), len(view), None, "read")
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        return _fd_read(self._h(), size, None, "read")

    def readall(self) -> bytes:
        return _fd_read(self._h(), -1, None, "read")

    def write(self, data: Any) -> int:
        return _fd_write(self._h(), bytes(data), None, "write")

    def seek(self, pos: int, whence: int = 0) -> int:
        return _fd_lseek(self._h(), pos, whence)

    def tell(self) -> int:
        return _fd_lseek(self._h(), 0, os.SEEK_CUR)

    def truncate(self, size: int | None = None) -> int:
        h = self._h()
        if size is None:
            size = h.offset
        _fd_truncate(h, size, "truncate")
        return size

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            if self.closefd:
                _fd_close(self._handle)


def _parse_mode(mode: str) -> tuple[int, str, bool]:
    """``open`` mode -> (os flags, the raw file's mode, text)."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    chars = set(mode)
    if len(chars) != len(mode) or not chars <= set("rwxabt+") or (
        sum(c in chars for c in "rwxa") != 1
    ):
        raise ValueError(f"invalid mode: {mode!r}")
    if "b" in chars and "t" in chars:
        raise ValueError("can't have text and binary mode at once")
    plus = "+" in chars
    first = next(c for c in mode if c in "rwxa")
    base = {"r": 0, "w": os.O_CREAT | os.O_TRUNC, "x": os.O_CREAT | os.O_EXCL,
            "a": os.O_CREAT | os.O_APPEND}[first]
    access = os.O_RDWR if plus else os.O_RDONLY if first == "r" else os.O_WRONLY
    raw = {"r": "rb", "w": "wb", "x": "xb", "a": "ab"}[first] + ("+" if plus else "")
    if first == "w" and plus:
        raw = "rb+"
    return base | access | os.O_CLOEXEC, raw, "b" not in chars


def _sim_open(
    file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
    errors: str | None = None, newline: str | None = None, closefd: bool = True,
    opener: Callable[[Any, int], int] | None = None,
) -> Any:
    """``open`` (and ``io.open``): the real one unless ``file`` is simulated."""
    if not _mounts:
        return _real_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    if isinstance(file, int):
        if _handle(file) is None:
            return _real_open(file, mode, buffering, encoding, errors, newline, closefd,
                              opener)
        resolved = None
    else:
        resolved = _resolve(file)
        if resolved is None:
            return _real_open(file, mode, buffering, encoding, errors, newline, closefd,
                              opener)
    flags, raw_mode, text = _parse_mode(mode)
    if not text:
        if encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
    if buffering == 0 and text:
        raise ValueError("can't have unbuffered text I/O")
    if resolved is None:
        fd = file
        name: object = file
    else:
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        name = os.fsdecode(os.fspath(file)) if not isinstance(file, bytes) else file
        fd = opener(name, flags) if opener is not None else _os_open(name, flags, 0o666)
        if _handle(fd) is None:  # the opener opened something real
            return _real_open(fd, mode, buffering, encoding, errors, newline, True)
    raw = SimulatedFileIO(fd, raw_mode, closefd, name)
    try:
        if "a" in raw_mode:
            raw.seek(0, os.SEEK_END)
        line_buffering = buffering == 1
        if buffering in (1, -1):
            buffering = raw._blksize
        if buffering == 0:
            return raw
        buffer: Any
        if "+" in raw_mode:
            buffer = io.BufferedRandom(raw, buffering)
        elif raw_mode.startswith("r"):
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if not text:
            return buffer
        wrapper = io.TextIOWrapper(buffer, encoding, errors, newline, line_buffering)
        wrapper.mode = mode  # type: ignore[misc]
        return wrapper
    except BaseException:
        raw.close()
        raise


class _FileIOMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, (_real_fileio, SimulatedFileIO))

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, (_real_fileio, SimulatedFileIO))


class _FileIO(metaclass=_FileIOMeta):
    """What ``io.FileIO`` is while mounted: a real ``FileIO``, or a ``SimulatedFileIO``."""

    def __new__(
        cls, file: Any, mode: str = "r", closefd: bool = True,
        opener: Callable[[Any, int], int] | None = None,
    ) -> Any:
        if isinstance(file, int):
            if _handle(file) is None:
                return _real_fileio(file, mode, closefd, opener)
            resolved = None
        else:
            resolved = _resolve(file)
            if resolved is None:
                return _real_fileio(file, mode, closefd, opener)
        flags, raw_mode, _ = _parse_mode(mode.replace("b", "") + "b")
        if resolved is None:
            return SimulatedFileIO(file, raw_mode, closefd, file)
        name = os.fsdecode(os.fspath(file))
        fd = opener(name, flags) if opener is not None else _os_open(name, flags, 0o666)
        if _handle(fd) is None:
            return _real_fileio(fd, mode, True)
        raw = SimulatedFileIO(fd, raw_mode, True, name)
        if "a" in raw_mode:
            raw.seek(0, os.SEEK_END)
        return raw


class _MmapMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, _real_mmap)


class _Mmap(metaclass=_MmapMeta):
    """What ``mmap.mmap`` is while mounted: refused on a simulated descriptor."""

    def __new__(cls, fileno: int, *args: Any, **kwargs: Any) -> Any:
        if _handle(fileno) is not None:
            raise _refuse("mmap.mmap", fileno)
        return _real_mmap(fileno, *args, **kwargs)


# -- the os functions ---------------------------------------------------------------------


def _resolve(path: Any, dir_fd: int | None = None) -> tuple[Mount, str] | None:
    """The mount and disk path of ``path`` if it is under a mount, else None."""
    if not _mounts or isinstance(path, int):
        return None
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    if not isinstance(p, str) or not p:
        return None
    if not p.startswith("/"):
        if dir_fd is not None:
            h = _handle(dir_fd)
            if h is None or h.path is None:
                return None
            base = h.mount.outside(h.path)
        else:
            base = _real["os.getcwd"]()
        p = base + "/" + p
    p = "/" + posixpath.normpath(p).lstrip("/")
    for m in _mounts:
        if p == m.at:
            return m, "/"
        if p.startswith(m._prefix):
            return m, p[len(m.at):]
    return None


def _sim(path: Any, dir_fd: int | None = None) -> tuple[Mount, str] | None:
    if not _mounts:
        return None
    try:
        return _resolve(path, dir_fd)
    except TypeError:
        return None


def _flags_text(flags: int) -> str:
    names = [{os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}.get(
        flags & os.O_ACCMODE, "O_ACCMODE")]
    for name in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_DSYNC", "O_DIRECTORY"):
        if flags & getattr(os, name) == getattr(os, name):
            names.append(name)
    return "|".join(names)


def _os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    r = _sim(path, dir_fd)
    if r is None:
        return int(_real["os.open"](path, flags, mode, dir_fd=dir_fd))
    m, p = r
    call = f"os.open({m.outside(p)!r}, {_flags_text(flags)})" if m.recorder else "os.open"
    return m.open(p, flags, call)


def _os_close(fd: int) -> None:
    h = _handle(fd)
    if h is None:
        _real["os.close"](fd)
        return
    _fd_close(h)


def _os_read(fd: int, n: int) -> bytes:
    h = _handle(fd)
    if h is None:
        return bytes(_real["os.read"](fd, n))
    if n < 0:
        raise ValueError("negative size")
    return _fd_read(h, n, None, "os.read")


def _os_write(fd: int, data: Any) -> int:
    h = _handle(fd)
    if h is None:
        return int(_real["os.write"](fd, data))
    return _fd_write(h, bytes(data), None, "os.write")


def _os_pread(fd: int, n: int, offset: int) -> bytes:
    h = _handle(fd)
    if h is None:
        return bytes(_real["os.pread"](fd, n, offset))
    if n < 0:
        raise ValueError("negative size")
    return _fd_read(h, n, offset, "os.pread")


def _os_pwrite(fd: int, data: Any, offset: int) -> int:
    h = _handle(fd)
    if h is None:
        return int(_real["os.pwrite"](fd, data, offset))
    return _fd_write(h, bytes(data), offset, "os.pwrite")


def _os_lseek(fd: int, pos: int, how: int) -> int:
    h = _handle(fd)
    if h is None:
        return int(_real["os.lseek"](fd, pos, how))
    return _fd_lseek(h, pos, how)


def _fileno(fd: Any) -> Any:
    if isinstance(fd, int):
        return fd
    fileno = getattr(fd, "fileno", None)
    return fileno() if fileno is not None else fd


def _os_fsync(fd: Any) -> None:
    h = _handle(_fileno(fd))
    if h is None:
        _real["os.fsync"](fd)
        return
    _fd_fsync(h, "os.fsync")


def _os_fdatasync(fd: Any) -> None:
    h = _handle(_fileno(fd))
    if h is None:
        _real["os.fdatasync"](fd)
        return
    _fd_fsync(h, "os.fdatasync")


def _os_ftruncate(fd: int, length: int) -> None:
    h = _handle(fd)
    if h is None:
        _real["os.ftruncate"](fd, length)
        return
    _fd_truncate(h, length, "os.ftruncate")


def _os_truncate(path: Any, length: int) -> None:
    h = _handle(path)
    if h is not None:
        _fd_truncate(h, length, "os.truncate")
        return
    r = _sim(path)
    if r is None:
        _real["os.truncate"](path, length)
        return
    m, p = r
    if length < 0:
        raise _error(errno.EINVAL, m.outside(p))
    m.truncate(p, length, f"os.truncate({m.outside(p)!r}, {length})")


def _os_fstat(fd: int) -> os.stat_result:
    h = _handle(fd)
    if h is None:
        return _real["os.fstat"](fd)  # type: ignore[no-any-return]
    return _fd_stat(h)


def _os_stat(
    path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True
) -> os.stat_result:
    h = _handle(path)
    if h is not None:
        return _fd_stat(h)
    r = _sim(path, dir_fd)
    if r is None:
        return _real["os.stat"](  # type: ignore[no-any-return]
            path, dir_fd=dir_fd, follow_symlinks=follow_symlinks
        )
    return r[0].stat(r[1])


def _os_lstat(path: Any, *, dir_fd: int | None = None) -> os.stat_result:
    r = _sim(path, dir_fd)
    if r is None:
        return _real["os.lstat"](path, dir_fd=dir_fd)  # type: ignore[no-any-return]
    return r[0].stat(r[1])


def _os_access(path: Any, mode: int, *, dir_fd: int | None = None,
               effective_ids: bool = False, follow_symlinks: bool = True) -> bool:
    r = _sim(path, dir_fd)
    if r is None:
        return bool(_real["os.access"](path, mode, dir_fd=dir_fd, effective_ids=effective_ids,
                                       follow_symlinks=follow_symlinks))
    return r[0].exists(r[1])


def _names(path: Any) -> tuple[Mount, str] | None:
    h = _handle(path)
    if h is not None:
        if not h.is_dir or h.path is None:
            raise _error(errno.ENOTDIR)
        return h.mount, h.path
    return _sim("." if path is None else path)


def _os_listdir(path: Any = None) -> list[Any]:
    r = _names(path)
    if r is None:
        return _real["os.listdir"]() if path is None else _real["os.listdir"](path)  # type: ignore[no-any-return]
    names = r[0].listdir(r[1])
    if isinstance(path, bytes):
        return [os.fsencode(name) for name in names]
    return names


class _DirEntry:
    """What ``os.scandir`` yields for a simulated directory."""

    __slots__ = ("_dir", "_mount", "_path", "name", "path")

    def __init__(self, mount: Mount, disk_path: str, name: Any, path: Any) -> None:
        self._mount = mount
        self._path = disk_path
        self.name = name
        self.path = path

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return self._mount.stat(self._path)

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._mount.disk.file_type(self._path) == "dir"

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._mount.disk.file_type(self._path) == "file"

    def is_symlink(self) -> bool:
        return False

    def is_junction(self) -> bool:
        return False

    def inode(self) -> int:
        return _ino(self._mount.disk, self._path) or 0


class _ScandirIterator:
    def __init__(self, entries: list[_DirEntry]) -> None:
        self._entries = iter(entries)

    def __iter__(self) -> Iterator[_DirEntry]:
        return self._entries

    def __next__(self) -> _DirEntry:
        return next(self._entries)

    def __enter__(self) -> _ScandirIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._entries = iter(())


def _os_scandir(path: Any = None) -> Any:
    r = _names(path)
    if r is None:
        return _real["os.scandir"]() if path is None else _real["os.scandir"](path)
    m, p = r
    base: Any = "." if path is None else (path if isinstance(path, int) else os.fspath(path))
    entries = []
    for name in m.listdir(p):
        child = posixpath.join(p, name)
        if isinstance(base, bytes):
            entries.append(_DirEntry(m, child, os.fsencode(name),
                                     os.path.join(base, os.fsencode(name))))
        elif isinstance(base, int):
            entries.append(_DirEntry(m, child, name, name))
        else:
            entries.append(_DirEntry(m, child, name, os.path.join(base, name)))
    return _ScandirIterator(entries)


def _os_mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
    r = _sim(path, dir_fd)
    if r is None:
        _real["os.mkdir"](path, mode, dir_fd=dir_fd)
        return
    m, p = r
    m.mkdir(p, f"os.mkdir({m.outside(p)!r})")


def _os_rmdir(path: Any, *, dir_fd: int | None = None) -> None:
    r = _sim(path, dir_fd)
    if r is None:
        _real["os.rmdir"](path, dir_fd=dir_fd)
        return
    m, p = r
    m.rmdir(p, f"os.rmdir({m.outside(p)!r})")


def _unlinker(name: str) -> Callable[..., None]:
    def unlink(path: Any, *, dir_fd: int | None = None) -> None:
        r = _sim(path, dir_fd)
        if r is None:
            _real[name](path, dir_fd=dir_fd)
            return
        m, p = r
        m.unlink(p, f"{name}({m.outside(p)!r})")

    unlink.__name__ = name.split(".")[1]
    return unlink


def _renamer(name: str) -> Callable[..., None]:
    def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None,
               dst_dir_fd: int | None = None) -> None:
        rs, rd = _sim(src, src_dir_fd), _sim(dst, dst_dir_fd)
        if rs is None and rd is None:
            _real[name](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            return
        if rs is None or rd is None or rs[0] is not rd[0]:
            raise _error(errno.EXDEV, os.fspath(src), os.fspath(dst))
        m = rs[0]
        m.replace(rs[1], rd[1], f"{name}({m.outside(rs[1])!r}, {m.outside(rd[1])!r})")

    rename.__name__ = name.split(".")[1]
    return rename


def _os_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
    hout, hin = _handle(out_fd), _handle(in_fd)
    if hout is None and hin is None:
        return int(_real["os.sendfile"](out_fd, in_fd, offset, count))
    if hin is not None:
        data = _fd_read(hin, count, offset, "os.sendfile")
    else:
        data = (_real["os.read"](in_fd, count) if offset is None
                else _real["os.pread"](in_fd, count, offset))
    if not data:
        return 0
    if hout is not None:
        return _fd_write(hout, data, None, "os.sendfile")
    return int(_real["os.write"](out_fd, data))


def _os_sync() -> None:
    _real["os.sync"]()
    for m in list(_mounts):
        m.sync()


def _os_isatty(fd: int) -> bool:
    if _handle(fd) is not None:
        return False
    return bool(_real["os.isatty"](fd))


def _os_device_encoding(fd: int) -> str | None:
    if _handle(fd) is not None:
        return None
    return _real["os.device_encoding"](fd)  # type: ignore[no-any-return]


def _os_readlink(path: Any, *, dir_fd: int | None = None) -> Any:
    r = _sim(path, dir_fd)
    if r is None:
        return _real["os.readlink"](path, dir_fd=dir_fd)
    m, p = r
    m.stat(p)  # ENOENT if missing
    raise _error(errno.EINVAL, m.outside(p))


def _ignorer(name: str, takes_path: bool) -> Callable[..., None]:
    def ignore(target: Any, *args: Any, **kwargs: Any) -> None:
        if _handle(target) is not None:
            return
        r = _sim(target, kwargs.get("dir_fd")) if takes_path else None
        if r is None:
            _real[name](target, *args, **kwargs)
            return
        r[0].stat(r[1])  # ENOENT if missing

    ignore.__name__ = name.split(".")[1]
    return ignore


def _refuser(module: Any, name: str, real: Callable[..., Any], path_args: int,
             fd_args: int) -> Callable[..., Any]:
    """``real``, refused when one of its first ``path_args`` arguments is a simulated path
    or one of its first ``fd_args`` a simulated descriptor."""
    call = f"{module.__name__}.{name}"

    def refuse(*args: Any, **kwargs: Any) -> Any:
        if _mounts:
            for arg in args[:fd_args]:
                if _handle(_fileno(arg)) is not None:
                    raise _refuse(call, arg)
            for arg in args[:path_args]:
                if not isinstance(arg, int) and _sim(arg) is not None:
                    raise _refuse(call, arg)
        return real(*args, **kwargs)

    refuse.__name__ = name
    return refuse


def _flock(fd: Any, operation: int) -> None:
    h = _handle(_fileno(fd))
    if h is None:
        _real_flock(fd, operation)
        return
    _fd_flock(h, operation)


_REFUSED_OS = {  # name: (path arguments, descriptor arguments) checked
    "link": (2, 0), "symlink": (2, 0), "mkfifo": (1, 0), "mknod": (1, 0), "chown": (1, 1),
    "lchown": (1, 0), "fchown": (0, 1), "chdir": (1, 1), "fchdir": (0, 1), "chroot": (1, 0),
    "statvfs": (1, 1), "fstatvfs": (0, 1), "pathconf": (1, 1), "fpathconf": (0, 1),
    "getxattr": (1, 1), "setxattr": (1, 1), "listxattr": (1, 1), "removexattr": (1, 1),
    "dup": (0, 1), "dup2": (0, 2), "readv": (0, 1), "writev": (0, 1), "preadv": (0, 1),
    "pwritev": (0, 1), "posix_fallocate": (0, 1), "copy_file_range": (0, 2),
    "splice": (0, 2), "lockf": (0, 1), "set_blocking": (0, 1), "get_blocking": (0, 1),
    "set_inheritable": (0, 1), "get_inheritable": (0, 1), "ttyname": (0, 1),
}


def _replacements() -> list[tuple[object, str, object]]:
    table: list[tuple[object, str, object]] = [
        (builtins, "open", _sim_open), (io, "open", _sim_open), (io, "FileIO", _FileIO),
        (os, "open", _os_open), (os, "close", _os_close), (os, "read", _os_read),
        (os, "write", _os_write), (os, "pread", _os_pread), (os, "pwrite", _os_pwrite),
        (os, "lseek", _os_lseek), (os, "fsync", _os_fsync), (os, "ftruncate", _os_ftruncate),
        (os, "truncate", _os_truncate), (os, "fstat", _os_fstat), (os, "stat", _os_stat),
        (os, "lstat", _os_lstat), (os, "access", _os_access), (os, "listdir", _os_listdir),
        (os, "scandir", _os_scandir), (os, "mkdir", _os_mkdir), (os, "rmdir", _os_rmdir),
        (os, "remove", _unlinker("os.remove")), (os, "unlink", _unlinker("os.unlink")),
        (os, "rename", _renamer("os.rename")), (os, "replace", _renamer("os.replace")),
        (os, "isatty", _os_isatty), (os, "device_encoding", _os_device_encoding),
        (os, "readlink", _os_readlink), (os, "chmod", _ignorer("os.chmod", True)),
        (os, "fchmod", _ignorer("os.fchmod", False)), (os, "utime", _ignorer("os.utime", True)),
        (fcntl, "flock", _flock), (mmap, "mmap", _Mmap),
    ]
    if "os.fdatasync" in _real:
        table.append((os, "fdatasync", _os_fdatasync))
    if "os.sendfile" in _real:
        table.append((os, "sendfile", _os_sendfile))
    if "os.sync" in _real:
        table.append((os, "sync", _os_sync))
    if "os.posix_fadvise" in _real:
        table.append((os, "posix_fadvise", _ignorer("os.posix_fadvise", False)))
    for name, (paths, fds) in _REFUSED_OS.items():
        if hasattr(os, name):
            table.append((os, name, _refuser(os, name, getattr(os, name), paths, fds)))
    for name in ("fcntl", "ioctl", "lockf"):
        table.append((fcntl, name, _refuser(fcntl, name, getattr(fcntl, name), 0, 1)))
    globber = getattr(sys.modules.get("glob"), "_StringGlobber", None)
    if isinstance(globber, type):  # pathlib's glob (3.13+) bound these at import
        for name, replacement in (("lstat", _os_lstat), ("scandir", _os_scandir)):
            if isinstance(vars(globber).get(name), staticmethod):
                table.append((globber, name, staticmethod(replacement)))
    fs_module = sys.modules.get("pqueue.io.fs")
    if fs_module is not None:
        # pqueue's OsFileSystem bound these at import: fdatasync, and the C library's
        # sync_file_range and inotify through ctypes, which cannot see simulated files.
        table.append((fs_module, "_fdatasync", _os_fdatasync))
        real_range = getattr(fs_module, "_sync_file_range", None)
        if real_range is not None:
            table.append((fs_module, "_sync_file_range", _sync_file_range(real_range)))
        table.append((fs_module, "_inotify", None))
    return table


def _sync_file_range(real: Callable[[int, int, int, int], int]) -> Callable[..., int]:
    def sync_file_range(fd: int, offset: int, nbytes: int, flags: int) -> int:
        h = _handle(fd)
        if h is None:
            return real(fd, offset, nbytes, flags)
        with _lock:
            if _live(h) and h.path is not None:
                h.disk.write_back(h.path)
        return 0

    return sync_file_range


def _install() -> None:
    """Put the replacements in place (the registry's lock is held)."""
    for module, name, replacement in _replacements():
        original = vars(module)[name] if isinstance(module, type) else getattr(module, name)
        _saved.append((module, name, original))
        setattr(module, name, replacement)


def _uninstall() -> None:
    """Put back everything ``_install`` replaced (the registry's lock is held)."""
    while _saved:
        module, name, original = _saved.pop()
        setattr(module, name, original)
    _detached.clear()


def mount(disk: SimulatedDisk | SimulatedProcess, at: str = "/app") -> Mount:
    """Mount ``disk`` at directory ``at``: a context manager under which every file
    operation on a path under ``at`` goes to ``disk``, and every other to the real system.

    ``at`` is the root of the disk (``/app/x`` is the disk's ``/x``); it need not exist on
    the real system, and it shadows it if it does. Several mounts may be active at once at
    different points, from any thread; a rename between two of them (or between one and
    the real disk) fails with ``EXDEV``, as across real file systems. Leaving the block,
    normally or by an exception, ends the mount: the descriptors still open on it stop
    working, and once no mount is left every replaced function is put back. Works with
    ``disk.process(name)`` too, whose locks are that process's.

    While mounted, the disk must be changed only through the mount (descriptors follow
    renames made through it, not those made on the disk directly).
    """
    return Mount(disk, at)
