"""SimulatedDisk against the real disk: the same operations must give the same results.

Random sequences of FileSystem calls, valid and invalid, run on ``OsFileSystem`` in a fresh
temporary directory and on a ``SimulatedDisk``; every call must return the same value or
raise the same exception (type and errno), and afterwards both trees must hold the same
directories, names and bytes. This keeps the simulator from drifting from the OS.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from pqueue.crashtest import SimulatedDisk
from pqueue.io import FileSystem, Lock, OsFileSystem

# Paths on the simulated disk; on the real one they are under the temporary directory. The
# root itself is only read, synced or (invalidly) written: renaming it is not comparable.
NAMES = ("/a", "/b", "/d", "/d/a", "/d/e", "/d/e/f", "/a/x", "/e")
ROOT_TOO = ("/", *NAMES)

Call = tuple[str, tuple[object, ...]]


def examples(n: int) -> settings:
    """At least ``n`` examples; more under a longer profile (HYPOTHESIS_PROFILE=long)."""
    assert settings.default is not None
    return settings(max_examples=max(n, settings.default.max_examples), deadline=None)


payloads = st.one_of(st.binary(max_size=40), st.binary(min_size=500, max_size=700))
positions = st.one_of(st.sampled_from((-1, 0, 1)), st.integers(0, 800))
offsets = st.one_of(st.none(), positions)
# Not negative: OsFileSystem.read(path, -1, 0) raises EINVAL or returns b"" depending on
# whether it has a descriptor cached for ``path``; the simulated disk always raises.
read_offsets = st.integers(0, 800)
files = st.sampled_from(("/a", "/b", "/d/a", "/d/e/f"))
calls: st.SearchStrategy[Call] = st.one_of(
    st.tuples(st.just("read"), st.tuples(files, read_offsets, positions)),
    st.tuples(st.just("write"), st.tuples(files, payloads, offsets)),
    st.tuples(st.just("truncate"), st.tuples(files, positions)),
    st.tuples(st.just("replace"), st.tuples(files, files)),
    st.tuples(st.just("mkdir"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("listdir"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("exists"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("is_dir"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("size"), st.tuples(st.sampled_from(NAMES))),
    st.tuples(
        st.just("read"),
        st.tuples(st.sampled_from(ROOT_TOO), read_offsets, positions),
    ),
    st.tuples(st.just("write"), st.tuples(st.sampled_from(ROOT_TOO), payloads, offsets)),
    st.tuples(st.just("write"), st.tuples(st.sampled_from(NAMES), payloads, offsets)),
    st.tuples(st.just("create"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("truncate"), st.tuples(st.sampled_from(ROOT_TOO), st.integers(-1, 900))),
    st.tuples(st.just("fsync"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("fsync_dir"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("write_back"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("replace"), st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES))),
    st.tuples(st.just("unlink"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("release"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("lock"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(st.just("unlock"), st.tuples(st.integers(0, 3))),
    st.tuples(st.just("lock_key"), st.tuples(st.sampled_from(ROOT_TOO))),
    st.tuples(
        st.just("same_filesystem"),
        st.tuples(st.sampled_from(ROOT_TOO), st.sampled_from(ROOT_TOO)),
    ),
)

# Start most scripts with a few files and directories, so later calls find something.
setup: st.SearchStrategy[Call] = st.one_of(
    st.tuples(st.just("mkdir"), st.tuples(st.sampled_from(("/d", "/d/e", "/e")))),
    st.tuples(st.just("write"), st.tuples(st.sampled_from(NAMES), payloads, st.none())),
)
scripts = st.builds(
    lambda first, then: first + then,
    st.lists(setup, max_size=6),
    st.lists(calls, max_size=25),
)


class Side:
    """One file system under test, with the locks it has handed out."""

    def __init__(self, fs: FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        self.locks: list[Lock] = []

    def path(self, path: object) -> str:
        assert isinstance(path, str)
        return self.root if path == "/" else self.root + path

    def call(self, name: str, args: tuple[object, ...]) -> object:
        """Perform a call; return its comparable result or the exception's type and errno."""
        try:
            return self._call(name, args)
        except OSError as exc:
            return (type(exc).__name__, exc.errno)

    def _call(self, name: str, args: tuple[object, ...]) -> object:
        if name == "unlock":
            index = args[0]
            assert isinstance(index, int)
            if index < len(self.locks):
                self.locks.pop(index).release()
            return None
        if name in ("replace", "same_filesystem"):
            method: Callable[..., object] = getattr(self.fs, name)
            return method(self.path(args[0]), self.path(args[1]))
        result = getattr(self.fs, name)(self.path(args[0]), *args[1:])
        if name == "lock":
            assert isinstance(result, Lock)
            self.locks.append(result)
            return None
        if name == "listdir":
            assert isinstance(result, list)
            return sorted(result)
        if name == "lock_key":
            return None
        return result

    def tree(self) -> dict[str, object]:
        """Every path under the root: a sorted listing for directories, bytes for files."""
        found: dict[str, object] = {}
        todo = ["/"]
        while todo:
            path = todo.pop()
            names = sorted(self.fs.listdir(self.path(path)))
            found[path] = names
            for name in names:
                child = path.rstrip("/") + "/" + name
                if self.fs.is_dir(self.path(child)):
                    todo.append(child)
                else:
                    data = self.fs.read(self.path(child))
                    assert self.fs.size(self.path(child)) == len(data)
                    found[child] = data
        return found

    def close(self) -> None:
        for lock in self.locks:
            lock.release()
        if isinstance(self.fs, OsFileSystem):
            self.fs.close()


def directory_size(real: object, simulated: object) -> bool:
    """``size`` of a directory: the OS gives a file-system-specific number, the disk refuses."""
    return isinstance(real, int) and simulated == ("IsADirectoryError", 21)


@examples(200)
@given(scripts)
def test_simulated_disk_behaves_like_the_os(script: list[Call]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        real = Side(OsFileSystem(), os.path.realpath(tmp))
        simulated = Side(SimulatedDisk(), "")
        try:
            for name, args in script:
                if name == "replace" and real.fs.is_dir(real.path(args[0])):
                    # OsFileSystem caches descriptors by path; a moved directory would leave
                    # them pointing at the old names, so start afresh (see OsFileSystem).
                    assert isinstance(real.fs, OsFileSystem)
                    real.fs.close()
                expected = real.call(name, args)
                got = simulated.call(name, args)
                if name == "size" and directory_size(expected, got):
                    continue
                assert got == expected, (name, args)
            assert simulated.tree() == real.tree()
        finally:
            real.close()
            simulated.close()


def test_the_differential_harness_sees_a_difference() -> None:
    """The comparison is not vacuous: a tree difference is reported."""
    disk = SimulatedDisk()
    with tempfile.TemporaryDirectory() as tmp:
        real = Side(OsFileSystem(), tmp)
        simulated = Side(disk, "")
        real.call("write", ("/a", b"x", None))
        simulated.call("write", ("/a", b"y", None))
        assert simulated.tree() != real.tree()
        real.close()
