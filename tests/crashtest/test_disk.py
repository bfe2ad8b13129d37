"""Examples of SimulatedDisk semantics: visibility, durability, crashes, faults, interrupts,
capacity and locks."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedCrash,
    SimulatedDisk,
    crash_state,
)
from pqueue.io import FileSystem, Lock

RECORD = bytes(range(1, 81))  # an 80-byte record with no zero byte
NO_TEARS = attrs.evolve(POWER_LOSS, torn_writes=False, zero_extend=False)


def contents(disk: SimulatedDisk, model: PersistenceModel, path: str) -> list[bytes | None]:
    """The content of ``path`` in each crash state (``None`` where it does not exist)."""
    return [state.files().get(path) for state in disk.crash_states(model)]


def synced_disk() -> SimulatedDisk:
    """A disk with a durable directory /q holding a durable 'info' file."""
    disk = SimulatedDisk()
    disk.mkdir("/q")
    disk.write("/q/info", b"old")
    disk.fsync("/q/info")
    disk.fsync_dir("/q")
    disk.fsync_dir("/")
    return disk


# -- the FileSystem operations ------------------------------------------------------------


def test_is_a_file_system() -> None:
    assert isinstance(SimulatedDisk(), FileSystem)


def test_root_exists_and_paths_are_normalised() -> None:
    disk = SimulatedDisk()
    assert disk.is_dir("/")
    assert disk.listdir("/") == []
    disk.mkdir("q//sub/")
    disk.write("/q/./sub/../f", b"x")
    assert disk.dirs() == ["/", "/q", "/q/sub"]
    assert disk.files() == {"/q/f": b"x"}
    assert disk.read("q/f") == b"x"


def test_write_read_size() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"hello")
    disk.write("/f", b" world")
    assert disk.read("/f") == b"hello world"
    assert disk.size("/f") == 11
    disk.write("/f", b"J", 0)
    assert disk.read("/f", 0, 5) == b"Jello"
    assert disk.read("/f", 6) == b"world"
    assert disk.read("/f", 20) == b""
    disk.write("/f", b"!", 13)
    assert disk.read("/f") == b"Jello world\0\0!"
    disk.write("/g", b"")
    assert disk.files()["/g"] == b""


def test_create_truncate() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"abcdef")
    disk.truncate("/f", 3)
    assert disk.read("/f") == b"abc"
    disk.truncate("/f", 5)
    assert disk.read("/f") == b"abc\0\0"
    disk.create("/f")
    assert disk.read("/f") == b""
    disk.create("/g")
    assert sorted(disk.listdir("/")) == ["f", "g"]


def test_replace_moves_the_inode() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/a")
    disk.mkdir("/b")
    disk.write("/a/f", b"one")
    disk.write("/b/f", b"two")
    disk.replace("/a/f", "/b/f")
    assert disk.files() == {"/b/f": b"one"}
    disk.replace("/b/f", "/b/f")
    disk.mkdir("/a/sub")
    disk.replace("/a", "/c")
    assert disk.dirs() == ["/", "/b", "/c", "/c/sub"]


def test_data_written_to_a_moved_file_moves_with_it() -> None:
    disk = SimulatedDisk()
    disk.write("/tmp", b"new")
    disk.replace("/tmp", "/info")
    disk.write("/info", b"er")
    disk.fsync("/info")
    disk.fsync_dir("/")
    assert contents(disk, POWER_LOSS, "/info") == [b"newer"]


ERRORS: list[tuple[str, Callable[[SimulatedDisk], object], int]] = [
    ("read missing", lambda d: d.read("/missing"), errno.ENOENT),
    ("read dir", lambda d: d.read("/d"), errno.EISDIR),
    ("read under file", lambda d: d.read("/f/x"), errno.ENOTDIR),
    ("read negative offset", lambda d: d.read("/f", -1), errno.EINVAL),
    ("size missing", lambda d: d.size("/missing"), errno.ENOENT),
    ("write into missing dir", lambda d: d.write("/nodir/f", b"x"), errno.ENOENT),
    ("write dir", lambda d: d.write("/d", b"x"), errno.EISDIR),
    ("write under file", lambda d: d.write("/f/x", b"x"), errno.ENOTDIR),
    ("write negative offset", lambda d: d.write("/f", b"x", -1), errno.EINVAL),
    ("create dir", lambda d: d.create("/d"), errno.EISDIR),
    ("truncate missing", lambda d: d.truncate("/missing", 0), errno.ENOENT),
    ("truncate dir", lambda d: d.truncate("/d", 0), errno.EISDIR),
    ("truncate negative", lambda d: d.truncate("/f", -1), errno.EINVAL),
    ("fsync missing", lambda d: d.fsync("/missing"), errno.ENOENT),
    ("fsync_dir missing", lambda d: d.fsync_dir("/missing"), errno.ENOENT),
    ("fsync_dir file", lambda d: d.fsync_dir("/f"), errno.ENOTDIR),
    ("unlink missing", lambda d: d.unlink("/missing"), errno.ENOENT),
    ("unlink dir", lambda d: d.unlink("/d"), errno.EISDIR),
    ("listdir missing", lambda d: d.listdir("/missing"), errno.ENOENT),
    ("listdir file", lambda d: d.listdir("/f"), errno.ENOTDIR),
    ("mkdir over file", lambda d: d.mkdir("/f"), errno.EEXIST),
    ("mkdir under file", lambda d: d.mkdir("/f/x/y"), errno.ENOTDIR),
    ("replace missing", lambda d: d.replace("/missing", "/x"), errno.ENOENT),
    ("replace into missing dir", lambda d: d.replace("/f", "/nodir/x"), errno.ENOENT),
    ("replace file over dir", lambda d: d.replace("/f", "/d"), errno.EISDIR),
    ("replace dir over file", lambda d: d.replace("/d", "/f"), errno.ENOTDIR),
    ("replace dir over non-empty", lambda d: d.replace("/e", "/d"), errno.ENOTEMPTY),
    ("replace dir into itself", lambda d: d.replace("/d", "/d/sub"), errno.EINVAL),
    ("replace dir over its parent", lambda d: d.replace("/d/g", "/d"), errno.ENOTEMPTY),
    ("replace root", lambda d: d.replace("/", "/x"), errno.EBUSY),
    ("lock dir", lambda d: d.lock("/d"), errno.EISDIR),
    ("lock_key missing", lambda d: d.lock_key("/missing"), errno.ENOENT),
    ("same_filesystem missing", lambda d: d.same_filesystem("/f", "/missing"), errno.ENOENT),
]


@pytest.mark.parametrize(("call", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_match_the_os(call: Callable[[SimulatedDisk], object], code: int) -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"data")
    disk.mkdir("/d")
    disk.write("/d/g", b"")
    disk.mkdir("/e")
    before = (disk.dirs(), disk.files())
    with pytest.raises(OSError) as info:
        call(disk)
    assert info.value.errno == code
    assert type(info.value) is type(OSError(code, "")), "the errno's own OSError subclass"
    # A failed call changes nothing (a write or lock on a missing path would create it).
    assert (disk.dirs(), disk.files()) == before


def test_size_of_a_directory_is_refused() -> None:
    disk = SimulatedDisk()
    with pytest.raises(IsADirectoryError):
        disk.size("/")


def test_exists_and_is_dir_never_raise() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"")
    assert disk.exists("/f")
    assert not disk.is_dir("/f")
    assert not disk.exists("/f/x")
    assert not disk.exists("/missing/x")
    assert not disk.is_dir("/missing")


# -- visible versus durable -------------------------------------------------------------------


def test_unsynced_write_is_visible_but_not_durable() -> None:
    disk = synced_disk()
    disk.write("/q/info", b"!")
    assert disk.read("/q/info") == b"old!"
    states = contents(disk, NO_TEARS, "/q/info")
    assert states == [b"old!", b"old"]
    disk.fsync("/q/info")
    assert contents(disk, POWER_LOSS, "/q/info") == [b"old!"]


def test_fsync_without_fsync_dir_loses_a_new_file() -> None:
    disk = synced_disk()
    disk.write("/q/new", RECORD)
    disk.fsync("/q/new")
    assert contents(disk, POWER_LOSS, "/q/new") == [RECORD, None]
    disk.fsync_dir("/q")
    assert contents(disk, POWER_LOSS, "/q/new") == [RECORD]


def test_new_directory_needs_its_parent_synced() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    disk.write("/q/f", b"x")
    disk.fsync("/q/f")
    disk.fsync_dir("/q")
    assert [state.dirs() for state in disk.crash_states(POWER_LOSS)] == [["/", "/q"], ["/"]]
    disk.fsync_dir("/")
    assert disk.count_crash_states(POWER_LOSS) == 1


def test_rename_survives_while_unsynced_data_does_not() -> None:
    disk = synced_disk()
    disk.write("/q/tmp", b"new")
    disk.replace("/q/tmp", "/q/info")
    disk.fsync_dir("/q")
    outcomes = contents(disk, NO_TEARS, "/q/info")
    assert outcomes == [b"new", b""]


def test_replace_is_atomic() -> None:
    disk = synced_disk()
    disk.write("/q/tmp", b"new")
    disk.fsync("/q/tmp")
    disk.replace("/q/tmp", "/q/info")
    states = [state.files() for state in disk.crash_states(POWER_LOSS)]
    assert states == [
        {"/q/info": b"new"},
        {"/q/info": b"old", "/q/tmp": b"new"},
        {"/q/info": b"old"},
    ]


def test_replace_without_fsync_of_the_temp_file() -> None:
    # /q: 3 prefixes of [create tmp, rename tmp -> info]; tmp: 5 contents ("new", torn at
    # byte 1 with zeros or garbage, zero-extended, empty). 1 + 5 + 5 states.
    disk = synced_disk()
    disk.write("/q/tmp", b"new")
    disk.replace("/q/tmp", "/q/info")
    assert disk.count_crash_states(POWER_LOSS) == 11
    infos = contents(disk, POWER_LOSS, "/q/info")
    assert b"" in infos
    assert b"old" in infos


def test_rename_across_directories_can_leave_both_or_neither() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/a")
    disk.mkdir("/b")
    disk.write("/a/f", b"x")
    disk.fsync("/a/f")
    disk.fsync_dir("/a")
    disk.fsync_dir("/")
    disk.replace("/a/f", "/b/f")
    states = [sorted(state.files()) for state in disk.crash_states(POWER_LOSS)]
    assert sorted(states) == [[], ["/a/f"], ["/a/f", "/b/f"], ["/b/f"]]
    disk.fsync_dir("/b")
    states = [sorted(state.files()) for state in disk.crash_states(POWER_LOSS)]
    assert sorted(states) == [["/a/f", "/b/f"], ["/b/f"]]


def test_a_directory_renamed_across_directories_keeps_one_parent() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/a/d")
    disk.mkdir("/b")
    disk.write("/a/d/f", b"x")
    for path in ("/a/d/f", "/a/d", "/a", "/b", "/"):
        disk.fsync(path)
    disk.replace("/a/d", "/b/d")
    trees = [state.dirs() for state in disk.crash_states(POWER_LOSS)]
    # When both halves of the rename survive, /a/d comes first and is kept; /b/d is dropped.
    assert sorted(trees) == [
        ["/", "/a", "/a/d", "/b"],
        ["/", "/a", "/b"],
        ["/", "/a", "/b", "/b/d"],
    ]


# -- torn writes and exact counts ------------------------------------------------------------


def test_an_unsynced_record_in_an_unsynced_file() -> None:
    # /: {} or {f}; f: the record, torn at byte 1 or 40 with zeros or garbage, zero-extended,
    # or empty: 1 + 7 states.
    disk = SimulatedDisk()
    disk.create("/f")
    disk.write("/f", RECORD)
    assert disk.count_crash_states(POWER_LOSS) == 8
    disk.fsync("/f")
    assert disk.count_crash_states(POWER_LOSS) == 2
    disk.fsync_dir("/")
    assert disk.count_crash_states(POWER_LOSS) == 1


def test_torn_tails_read_as_zeros_or_garbage() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fsync_dir("/")
    disk.write("/f", RECORD)
    outcomes = contents(disk, POWER_LOSS, "/f")
    assert outcomes[0] == RECORD
    assert outcomes[-1] == b""
    torn = outcomes[1:-1]
    assert RECORD[:1] + bytes(79) in torn
    assert RECORD[:40] + bytes(40) in torn
    assert bytes(80) in torn  # size grew, data did not
    garbage = [c for c in torn if c is not None and c[40:] != RECORD[40:] and 0 not in c]
    assert len(garbage) == 2
    assert all(c is not None and len(c) == 80 for c in torn)
    # Deterministic: the same history gives the same garbage.
    assert contents(disk, POWER_LOSS, "/f") == outcomes
    assert contents(disk.copy(), POWER_LOSS, "/f") == outcomes


def test_writes_tear_at_sector_boundaries() -> None:
    # Cuts at byte 1 (zeros or garbage to the end of sector 0) and at 512 (no fill), plus
    # zero-extended, whole and lost: 6 states, the torn ones 512 bytes long.
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fsync_dir("/")
    data = bytes([7]) * 1024
    disk.write("/f", data)
    outcomes = contents(disk, POWER_LOSS, "/f")
    assert [len(c or b"") for c in outcomes] == [1024, 512, 512, 512, 1024, 0]
    assert data[:512] in outcomes
    assert b"\7" + bytes(511) in outcomes


def test_a_torn_write_only_damages_its_own_bytes() -> None:
    disk = SimulatedDisk()
    old = bytes([9]) * 1000
    disk.write("/f", old)
    disk.fsync("/f")
    disk.fsync_dir("/")
    disk.write("/f", RECORD, 100)
    outcomes = contents(disk, POWER_LOSS, "/f")
    # Whole, torn at byte 1 or 40 with zeros or garbage, lost; no zero-extension.
    assert len(outcomes) == 6
    for content in outcomes:
        assert content is not None
        assert content[:100] == old[:100]
        assert content[180:] == old[180:]


def test_two_pending_records() -> None:
    # Both, second torn (4) or zero-extended, first only, first torn (4) or zero-extended,
    # none: 13 contents.
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fsync_dir("/")
    disk.write("/f", RECORD)
    disk.write("/f", RECORD[::-1])
    assert disk.count_crash_states(POWER_LOSS) == 13
    outcomes = contents(disk, POWER_LOSS, "/f")
    assert outcomes[0] == RECORD + RECORD[::-1]
    assert outcomes[6] == RECORD
    assert outcomes[-1] == b""


def test_model_variants_change_the_counts() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fsync_dir("/")
    disk.write("/f", RECORD)
    assert disk.count_crash_states(NO_TEARS) == 2
    assert disk.count_crash_states(attrs.evolve(POWER_LOSS, torn_fill=("zeros",))) == 5
    assert disk.count_crash_states(attrs.evolve(POWER_LOSS, zero_extend=False)) == 6
    assert disk.count_crash_states(PROCESS_CRASH) == 1


def test_reordered_directory_operations() -> None:
    disk = SimulatedDisk()
    for name in ("/a", "/b"):
        disk.write(name, b"x")
        disk.fsync(name)
    names = [sorted(s.files()) for s in disk.crash_states(POWER_LOSS)]
    assert names == [["/a", "/b"], ["/a"], []]
    reordered = attrs.evolve(POWER_LOSS, reorder_dir_ops=True)
    names = [sorted(s.files()) for s in disk.crash_states(reordered)]
    assert sorted(names) == [[], ["/a"], ["/a", "/b"], ["/b"]]


def test_identical_outcomes_are_yielded_once() -> None:
    # Rewriting the same bytes: whole and lost are the same state; torn at byte 1 with
    # zeros or garbage are the other two. Truncating to the same size adds nothing.
    disk = SimulatedDisk()
    disk.write("/f", b"abc")
    disk.fsync("/f")
    disk.fsync_dir("/")
    disk.write("/f", b"abc", 0)
    disk.truncate("/f", 3)
    outcomes = contents(disk, POWER_LOSS, "/f")
    assert len(outcomes) == len(set(outcomes)) == 3
    assert outcomes[0] == b"abc"
    assert b"a\0\0" in outcomes
    # Creating and removing /tmp: keeping both operations or neither is one state.
    disk.write("/tmp", b"")
    disk.unlink("/tmp")
    assert [sorted(s.files()) for s in disk.crash_states(NO_TEARS)] == [["/f"], ["/f", "/tmp"]]


def test_process_crash_keeps_the_visible_state() -> None:
    disk = synced_disk()
    disk.write("/q/tmp", RECORD)
    disk.replace("/q/tmp", "/q/info")
    disk.mkdir("/r/s")
    [state] = disk.crash_states(PROCESS_CRASH)
    assert state.files() == disk.files()
    assert state.dirs() == disk.dirs()


def test_crash_states_are_fresh_durable_disks() -> None:
    disk = synced_disk()
    disk.write("/q/info", RECORD)
    lock = disk.lock("/q/lock")
    states = list(disk.crash_states(POWER_LOSS))
    for state in states:
        assert state.count_crash_states(POWER_LOSS) == 1
        if state.exists("/q/lock"):
            state.lock("/q/lock").release()
        state.write("/q/x", b"1")  # usable, and independent of the others
    assert all(not s.exists("/q/x") for s in disk.crash_states(POWER_LOSS))
    lock.release()


def test_crash_states_snapshot_the_disk() -> None:
    disk = synced_disk()
    disk.write("/q/info", b"!")
    states = disk.crash_states(NO_TEARS)
    disk.fsync("/q/info")
    assert [s.files()["/q/info"] for s in states] == [b"old!", b"old"]


# -- crash_after, fail, operations -------------------------------------------------------


def test_crash_after_raises_and_blocks_everything() -> None:
    disk = synced_disk()
    disk.crash_after(2)
    disk.write("/q/info", b"1")
    disk.read("/q/info")  # reads are not counted
    disk.fsync("/q/info")
    with pytest.raises(SimulatedCrash):
        disk.write("/q/info", b"2")
    assert disk.crashed
    assert disk.files() == {"/q/info": b"old1"}  # the crashing call had no effect
    with pytest.raises(SimulatedCrash):
        disk.read("/q/info")
    with pytest.raises(SimulatedCrash):
        disk.exists("/q")
    disk.crash_after(None)
    with pytest.raises(SimulatedCrash):
        disk.write("/q/info", b"3")
    assert [s.files() for s in disk.crash_states(POWER_LOSS)] == [{"/q/info": b"old1"}]
    survivor = disk.copy()
    assert not survivor.crashed
    survivor.write("/q/info", b"4")
    assert survivor.read("/q/info") == b"old14"


def test_simulated_crash_is_not_an_exception() -> None:
    disk = SimulatedDisk()
    disk.crash_after(0)
    with pytest.raises(SimulatedCrash):
        try:
            disk.mkdir("/q")
        except Exception:  # what code under test may do; it must not swallow the crash
            pytest.fail("SimulatedCrash was caught as an Exception")
    assert not issubclass(SimulatedCrash, Exception)


def test_operations_count_state_changing_calls() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    disk.write("/q/f", b"x")
    disk.read("/q/f")
    disk.listdir("/q")
    disk.fsync("/q/f")
    lock = disk.lock("/q/lock")  # creates the file: counted
    lock.release()
    disk.lock("/q/lock").release()  # exists: not counted
    with pytest.raises(FileNotFoundError):
        disk.unlink("/q/missing")  # counted: it was a call that could have crashed
    assert disk.operations == 5
    assert disk.copy().operations == 0


def test_crash_after_sweep_covers_every_point() -> None:
    def workload(disk: SimulatedDisk) -> None:
        disk.write("/q/tmp", b"new")
        disk.fsync("/q/tmp")
        disk.replace("/q/tmp", "/q/info")
        disk.fsync_dir("/q")

    probe = synced_disk()
    start = probe.operations
    workload(probe)
    total = probe.operations - start
    assert total == 4
    seen = set()
    for n in range(total + 1):
        disk = synced_disk()
        disk.crash_after(n)
        try:
            workload(disk)
        except SimulatedCrash:
            assert n < total
        else:
            assert n == total
        for state in disk.crash_states(POWER_LOSS):
            info = state.files()["/q/info"]
            assert info in (b"old", b"new")
            seen.add(info)
    assert seen == {b"old", b"new"}


def test_the_package_example_and_its_counterexample() -> None:
    def save(fs: SimulatedDisk, data: bytes, *, sync: bool) -> None:
        fs.write("/app/config.tmp", data)
        if sync:
            fs.fsync("/app/config.tmp")
        fs.replace("/app/config.tmp", "/app/config")
        fs.fsync_dir("/app")

    before = SimulatedDisk()
    before.mkdir("/app")
    before.write("/app/config", b"old")
    before.fsync("/app/config")
    before.fsync_dir("/app")
    before.fsync_dir("/")
    for sync in (True, False):
        probe = before.copy()
        save(probe, b"new", sync=sync)
        found = set()
        for n in range(probe.operations + 1):
            disk = before.copy()
            disk.crash_after(n)
            with contextlib.suppress(SimulatedCrash):
                save(disk, b"new", sync=sync)
            found |= {state.read("/app/config") for state in disk.crash_states(POWER_LOSS)}
        if sync:
            assert found == {b"old", b"new"}
        else:
            assert b"" in found
            assert b"n\0\0" in found


def test_fail_injects_an_error_with_no_effect() -> None:
    disk = synced_disk()
    disk.fail(0, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError) as info:
        disk.write("/q/info", b"x")
    assert info.value.errno == errno.ENOSPC
    assert disk.read("/q/info") == b"old"
    disk.write("/q/info", b"x")
    assert disk.read("/q/info") == b"oldx"


def test_fail_counts_only_matching_ops_and_repeats() -> None:
    disk = synced_disk()
    disk.fail(1, OSError(errno.EIO, "Input/output error"), ops={"fsync"}, times=2)
    disk.write("/q/info", b"1")
    disk.fsync("/q/info")  # matching op 0: fine
    disk.write("/q/info", b"2")
    for _ in range(2):
        with pytest.raises(OSError) as info:
            disk.fsync("/q/info")
        assert info.value.errno == errno.EIO
    disk.fsync("/q/info")
    assert disk.count_crash_states(POWER_LOSS) == 1


def test_fail_can_target_reads() -> None:
    disk = synced_disk()
    disk.fail(0, OSError(errno.EIO, "Input/output error"), ops={"read"})
    disk.write("/q/info", b"x")  # not a read: unaffected
    with pytest.raises(OSError):
        disk.read("/q/info")
    assert disk.read("/q/info") == b"oldx"


def test_a_failed_fsync_keeps_the_data_pending() -> None:
    disk = synced_disk()
    disk.write("/q/info", b"!")
    disk.fail(0, OSError(errno.EIO, "Input/output error"), ops={"fsync"})
    with pytest.raises(OSError):
        disk.fsync("/q/info")
    assert disk.read("/q/info") == b"old!"
    assert contents(disk, NO_TEARS, "/q/info") == [b"old!", b"old"]


def test_a_failed_fsync_that_drops_writes_loses_them_for_good() -> None:
    # Linux after a write-back error: the pages are clean, the data is never written, and a
    # retried fsync succeeds without writing it.
    disk = synced_disk()
    disk.write("/q/info", b"!")
    disk.fail(0, OSError(errno.EIO, "Input/output error"), ops={"fsync"}, drops_writes=True)
    with pytest.raises(OSError):
        disk.fsync("/q/info")
    assert disk.read("/q/info") == b"old!"  # still visible
    disk.fsync("/q/info")  # the retry succeeds, and writes nothing
    assert contents(disk, NO_TEARS, "/q/info") == [b"old"]
    assert contents(disk, PROCESS_CRASH, "/q/info") == [b"old!"]  # the page cache survives
    disk.write("/q/info", b"?")
    disk.fsync("/q/info")  # only the write after the failure becomes durable
    assert contents(disk, NO_TEARS, "/q/info") == [b"old\x00?"]
    assert disk.read("/q/info") == b"old!?"


def test_harness_argument_checks() -> None:
    disk = SimulatedDisk()
    with pytest.raises(ValueError, match="crash_after"):
        disk.crash_after(-1)
    with pytest.raises(ValueError, match="fail"):
        disk.fail(0, OSError(errno.EIO, "x"), times=0)
    with pytest.raises(ValueError, match="fsnyc"):
        disk.fail(0, OSError(errno.EIO, "x"), ops={"fsnyc"})
    with pytest.raises(ValueError, match="torn_fill"):
        PersistenceModel(torn_fill=())
    with pytest.raises(ValueError, match="sector_size"):
        PersistenceModel(sector_size=0)


# -- locks, keys, copies ------------------------------------------------------------------


def test_lock_is_exclusive_and_release_is_idempotent() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    lock = disk.lock("/q/lock")
    assert isinstance(lock, Lock)
    assert disk.exists("/q/lock")
    with pytest.raises(BlockingIOError):
        disk.lock("/q/lock")
    lock.release()
    lock.release()
    again = disk.lock("/q/lock")
    with pytest.raises(BlockingIOError):
        disk.lock("q/lock/")
    again.release()


def test_lock_belongs_to_the_file_not_the_name() -> None:
    disk = SimulatedDisk()
    lock = disk.lock("/lock")
    disk.write("/other", b"")
    disk.replace("/other", "/lock")
    disk.lock("/lock").release()  # a different file now
    disk.replace("/lock", "/elsewhere")
    lock.release()


def test_lock_key_and_same_filesystem() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    assert disk.lock_key("/q") == disk.lock_key("q/") == disk.lock_key("/q/../q")
    assert disk.lock_key("/q") != disk.lock_key("/")
    assert disk.lock_key("/q") != disk.copy().lock_key("/q")
    assert disk.same_filesystem("/q", "/")
    disk.release("/q")


def test_copy_is_deep_and_keeps_pending_state() -> None:
    disk = synced_disk()
    disk.write("/q/info", RECORD)
    disk.write("/q/new", b"x")
    twin = disk.copy()
    assert twin.files() == disk.files()
    assert [s.files() for s in twin.crash_states(POWER_LOSS)] == [
        s.files() for s in disk.crash_states(POWER_LOSS)
    ]
    twin.write("/q/info", b"more")
    twin.fsync_dir("/q")
    assert disk.read("/q/info") == b"old" + RECORD
    assert disk.count_crash_states(POWER_LOSS) > twin.count_crash_states(POWER_LOSS) // 2


def test_repr_summarises_the_disk() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"abc")
    text = repr(disk)
    assert "'/f': 3" in text
    assert "pending_ops=2" in text


# -- interrupt -----------------------------------------------------------------------------


class Interrupted(Exception):  # noqa: N818 - stands for what a signal handler raises
    """A stand-in for the exception a signal handler raises (a SIGALRM timeout, say)."""


def test_an_interrupted_write_takes_effect_then_raises() -> None:
    disk = synced_disk()
    armed = KeyboardInterrupt("^C")
    disk.interrupt(0, armed)
    with pytest.raises(KeyboardInterrupt) as info:
        disk.write("/q/info", b"!")
    assert info.value is not armed, "a copy is raised"
    assert info.value.args == ("^C",)
    assert disk.read("/q/info") == b"old!"  # the write happened
    assert contents(disk, NO_TEARS, "/q/info") == [b"old!", b"old"]  # and is pending
    assert disk.operations == 6
    disk.write("/q/info", b"?")  # used up: the next call returns
    assert disk.read("/q/info") == b"old!?"


def test_interrupt_counts_only_the_matching_calls() -> None:
    disk = synced_disk()
    disk.interrupt(2, Interrupted(), ops={"fsync"})
    for data in (b"1", b"2"):
        disk.write("/q/info", data)
        disk.fsync("/q/info")  # matching calls 0 and 1
    disk.write("/q/info", b"3")
    with pytest.raises(Interrupted):
        disk.fsync("/q/info")  # matching call 2, which made the write durable
    assert contents(disk, POWER_LOSS, "/q/info") == [b"old123"]
    disk.fsync("/q/info")


def test_interrupt_with_no_ops_counts_the_state_changing_calls() -> None:
    disk = synced_disk()
    disk.interrupt(2, Interrupted())
    disk.write("/q/a", b"x")
    disk.read("/q/a")  # reads are not counted
    disk.exists("/q/b")
    disk.lock("/q/a").release()  # nor is locking an existing file
    disk.fsync("/q/a")
    with pytest.raises(Interrupted):
        disk.replace("/q/a", "/q/b")
    assert disk.files() == {"/q/b": b"x", "/q/info": b"old"}


def test_interrupt_repeats_times_times() -> None:
    disk = SimulatedDisk()
    armed = Interrupted("timeout")
    disk.interrupt(1, armed, ops={"write"}, times=2)
    disk.write("/f", b"a")
    raised = []
    for data in (b"b", b"c"):
        with pytest.raises(Interrupted) as info:
            disk.write("/f", data)
        raised.append(info.value)
    disk.write("/f", b"d")
    assert disk.read("/f") == b"abcd"
    assert raised[0] is not raised[1]
    assert armed not in raised


def test_interrupts_count_independently_and_the_first_armed_wins() -> None:
    disk = SimulatedDisk()
    disk.interrupt(0, Interrupted("first"), ops={"write"})
    disk.interrupt(0, Interrupted("second"), ops={"write", "create"}, times=2)
    with pytest.raises(Interrupted, match="second"):
        disk.create("/f")  # matches the second only
    with pytest.raises(Interrupted, match="first"):
        disk.write("/f", b"a")  # both are due: the first armed is raised, both used up
    disk.write("/f", b"b")
    disk.create("/g")
    assert disk.files() == {"/f": b"ab", "/g": b""}


def test_a_fault_due_on_the_same_call_wins_and_uses_the_interrupt_up() -> None:
    disk = synced_disk()
    disk.interrupt(1, KeyboardInterrupt())
    disk.fail(1, OSError(errno.EIO, "Input/output error"), ops={"write"})
    disk.write("/q/info", b"1")
    with pytest.raises(OSError) as info:
        disk.write("/q/info", b"2")
    assert info.value.errno == errno.EIO
    assert disk.read("/q/info") == b"old1"  # the fault's "no effect" holds
    disk.write("/q/info", b"3")  # the interrupt was used up on the failed call
    assert disk.read("/q/info") == b"old13"


def test_faults_and_interrupts_count_independently() -> None:
    disk = SimulatedDisk()
    disk.fail(1, OSError(errno.ENOSPC, "No space left on device"))
    disk.interrupt(0, KeyboardInterrupt(), ops={"write"}, times=2)
    with pytest.raises(KeyboardInterrupt):
        disk.write("/f", b"a")  # interrupt 0; the fault's call 0
    with pytest.raises(OSError):
        disk.write("/f", b"b")  # the fault's call 1 wins over interrupt 1
    disk.write("/f", b"c")
    assert disk.read("/f") == b"ac"


def test_a_crash_wins_over_an_interrupt() -> None:
    disk = synced_disk()
    disk.interrupt(0, KeyboardInterrupt())
    disk.crash_after(0)
    with pytest.raises(SimulatedCrash):
        disk.write("/q/info", b"x")
    assert disk.files() == {"/q/info": b"old"}
    with pytest.raises(SimulatedCrash):
        disk.read("/q/info")


def test_an_interrupted_lock_is_held() -> None:
    disk = SimulatedDisk()
    disk.interrupt(0, KeyboardInterrupt(), ops={"lock"}, times=2)
    with pytest.raises(KeyboardInterrupt):
        disk.lock("/lock")  # creates the file and takes the lock
    assert disk.exists("/lock")
    with pytest.raises(KeyboardInterrupt):
        disk.lock("/lock")  # a call that fails on its own raises the interrupt instead
    with pytest.raises(BlockingIOError):
        disk.lock("/lock")  # the lock leaked: nobody holds its release()
    disk.copy().lock("/lock").release()  # a copy holds no locks


def test_an_interrupt_replaces_the_calls_own_error() -> None:
    disk = SimulatedDisk()
    disk.interrupt(0, Interrupted())
    with pytest.raises(Interrupted) as info:
        disk.unlink("/missing")
    assert isinstance(info.value.__context__, FileNotFoundError)
    assert disk.operations == 1


def test_an_interrupted_read_returns_nothing_then_raises() -> None:
    disk = synced_disk()
    disk.interrupt(1, Interrupted(), ops={"read"})
    results = [disk.read("/q/info")]
    with pytest.raises(Interrupted):
        results.append(disk.read("/q/info"))
    results.append(disk.read("/q/info", 1))
    assert results == [b"old", b"ld"]
    assert disk.operations == 5  # reads are not counted, interrupted or not


# What each FileSystem method leaves behind on a disk holding /d/f = b"data" and /d/g.
EFFECTS: list[tuple[str, Callable[[SimulatedDisk], object], Callable[[SimulatedDisk], bool]]] = [
    ("mkdir", lambda d: d.mkdir("/d/n/m"), lambda d: d.is_dir("/d/n/m")),
    ("probe", lambda d: d.probe("/d/f"), lambda d: True),
    ("boot_id", lambda d: d.boot_id(), lambda d: True),
    ("volatile", lambda d: d.volatile("/d/f"), lambda d: True),
    ("watch", lambda d: d.watch("/d/f"), lambda d: True),
    ("write", lambda d: d.write("/d/f", b"!"), lambda d: d.read("/d/f") == b"data!"),
    ("create", lambda d: d.create("/d/f"), lambda d: d.read("/d/f") == b""),
    ("truncate", lambda d: d.truncate("/d/f", 2), lambda d: d.read("/d/f") == b"da"),
    ("fsync", lambda d: d.fsync("/d/f"), lambda d: d.count_crash_states(PROCESS_CRASH) == 1),
    ("fsync_dir", lambda d: d.fsync_dir("/d"), lambda d: d.listdir("/d") == ["f", "g"]),
    ("replace", lambda d: d.replace("/d/f", "/d/g"), lambda d: d.files() == {"/d/g": b"data"}),
    ("unlink", lambda d: d.unlink("/d/f"), lambda d: d.files() == {"/d/g": b""}),
    ("lock", lambda d: d.lock("/d/f"), lambda d: _is_locked(d, "/d/f")),
    ("exists", lambda d: d.exists("/d/f"), lambda d: True),
    ("file_type", lambda d: d.file_type("/d/f"), lambda d: True),
    ("is_dir", lambda d: d.is_dir("/d"), lambda d: True),
    ("listdir", lambda d: d.listdir("/d"), lambda d: True),
    ("lock_key", lambda d: d.lock_key("/d/f"), lambda d: True),
    ("read", lambda d: d.read("/d/f"), lambda d: True),
    ("release", lambda d: d.release("/d/f"), lambda d: True),
    ("same_filesystem", lambda d: d.same_filesystem("/d", "/d/f"), lambda d: True),
    ("size", lambda d: d.size("/d/f"), lambda d: True),
    ("write_back", lambda d: d.write_back("/d/f"), lambda d: True),
]


def _is_locked(disk: SimulatedDisk, path: str) -> bool:
    try:
        disk.lock(path).release()
    except BlockingIOError:
        return True
    return False


def test_the_interrupt_table_covers_every_file_system_method() -> None:
    names = {name for name, _, _ in EFFECTS}
    assert {name for name in vars(FileSystem) if not name.startswith("_")} <= names
    disk = SimulatedDisk()
    disk.fail(0, OSError(errno.EIO, "x"), ops=names)  # each one a name fail accepts
    disk.interrupt(0, KeyboardInterrupt(), ops=names)


@pytest.mark.parametrize(
    ("op", "call", "took_effect"), EFFECTS, ids=[name for name, _, _ in EFFECTS]
)
def test_an_interrupted_call_has_its_effect(
    op: str, call: Callable[[SimulatedDisk], object], took_effect: Callable[[SimulatedDisk], bool]
) -> None:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.write("/d/f", b"data")
    disk.write("/d/g", b"")
    disk.interrupt(0, Interrupted(op), ops={op})
    with pytest.raises(Interrupted, match=op):
        call(disk)
    assert took_effect(disk)


def test_interrupts_are_not_copied() -> None:
    disk = SimulatedDisk()
    disk.interrupt(0, KeyboardInterrupt(), ops={"write", "read"})
    twin = disk.copy()
    twin.write("/f", b"x")
    assert twin.read("/f") == b"x"
    with pytest.raises(KeyboardInterrupt):
        disk.write("/f", b"y")


def test_interrupt_argument_checks() -> None:
    disk = SimulatedDisk()
    with pytest.raises(ValueError, match="interrupt"):
        disk.interrupt(-1, KeyboardInterrupt())
    with pytest.raises(ValueError, match="interrupt"):
        disk.interrupt(0, KeyboardInterrupt(), times=0)
    with pytest.raises(ValueError, match="wirte"):
        disk.interrupt(0, KeyboardInterrupt(), ops={"write", "wirte"})
    with pytest.raises(TypeError, match="exception instance"):
        disk.interrupt(0, KeyboardInterrupt)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception instance"):
        disk.interrupt(0, "timeout")  # type: ignore[arg-type]
    disk.write("/f", b"x")  # nothing was armed by the refused calls
    assert disk.read("/f") == b"x"


FILE_NAMES = ["/a", "/d/b", "/d/c"]
calls = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(FILE_NAMES),
        st.binary(min_size=0, max_size=6),
        st.one_of(st.none(), st.integers(-1, 8)),
    ),
    st.tuples(st.just("create"), st.sampled_from(FILE_NAMES)),
    st.tuples(st.just("truncate"), st.sampled_from(FILE_NAMES), st.integers(0, 8)),
    st.tuples(st.just("fsync"), st.sampled_from(FILE_NAMES)),
    st.tuples(st.just("fsync_dir"), st.sampled_from(["/", "/d"])),
    st.tuples(st.just("replace"), st.sampled_from(FILE_NAMES), st.sampled_from(FILE_NAMES)),
    st.tuples(st.just("unlink"), st.sampled_from(FILE_NAMES)),
    st.tuples(st.just("mkdir"), st.sampled_from(["/d", "/d/e"])),
)
Call = tuple[Any, ...]


def perform(disk: SimulatedDisk, call: Call) -> type[BaseException] | None:
    """Run ``call`` on ``disk``; the type of what it raised, or None if it returned."""
    name, *args = call
    try:
        getattr(disk, name)(*args)
    except (OSError, Interrupted) as exc:
        return type(exc)
    return None


def snapshot(disk: SimulatedDisk) -> tuple[object, ...]:
    """Everything a crash or a reader could tell apart."""
    return (
        disk.dirs(),
        disk.files(),
        [(s.dirs(), s.files()) for s in disk.crash_states(POWER_LOSS)],
    )


@given(st.lists(calls, min_size=1, max_size=8), st.data())
def test_an_interrupted_call_does_what_it_would_have_done(
    history: list[Call], data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(history) - 1), label="interrupted call")
    reference = SimulatedDisk()
    reference.mkdir("/d")
    outcomes = [perform(reference, call) for call in history[: at + 1]]
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.interrupt(at, Interrupted())  # every call of the history is state-changing
    for call, outcome in zip(history[:at], outcomes, strict=False):
        assert perform(disk, call) is outcome
    assert perform(disk, history[at]) is Interrupted
    assert snapshot(disk) == snapshot(reference)
    assert disk.operations == reference.operations
    for call in history[at + 1 :]:  # used up: the rest runs as it would have
        assert perform(disk, call) is perform(reference, call)
    assert snapshot(disk) == snapshot(reference)


# -- capacity --------------------------------------------------------------------------------


def test_a_disk_is_unlimited_by_default() -> None:
    disk = SimulatedDisk()
    assert disk.capacity is None
    assert disk.used == 0
    disk.write("/f", bytes(10_000))
    assert disk.used == 10_000


def test_growth_past_the_capacity_fails_with_no_effect() -> None:
    disk = synced_disk()  # /q/info holds b"old"
    disk.capacity = 5
    before = snapshot(disk)
    refused: list[Callable[[SimulatedDisk], object]] = [
        lambda d: d.write("/q/info", b"abc"),  # append: 6 bytes
        lambda d: d.write("/q/info", b"abcde", 1),  # overwrites 2 bytes, adds 3
        lambda d: d.write("/q/info", b"!", 5),  # a gap of zeros counts too
        lambda d: d.write("/q/new", b"abc"),  # not even created
        lambda d: d.truncate("/q/info", 6),
    ]
    for n, call in enumerate(refused, start=1):
        with pytest.raises(OSError) as info:
            call(disk)
        assert info.value.errno == errno.ENOSPC
        assert info.value.strerror == os.strerror(errno.ENOSPC)
        assert info.value.filename in ("/q/info", "/q/new")
        assert snapshot(disk) == before
        assert disk.operations == 5 + n  # failed calls still count
    disk.write("/q/info", b"ab")  # exactly full
    assert disk.used == 5 == disk.capacity
    assert disk.read("/q/info") == b"oldab"


def test_a_full_disk_refuses_a_bad_path_with_the_path_error() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.capacity = 0
    with pytest.raises(FileNotFoundError):
        disk.write("/missing/f", b"x")
    with pytest.raises(IsADirectoryError):
        disk.write("/d", b"x")
    with pytest.raises(OSError) as info:
        disk.write("/f", b"x", -1)  # EINVAL after creating the file, as without a capacity
    assert info.value.errno == errno.EINVAL
    assert disk.files() == {"/f": b""}


def test_a_full_disk_allows_what_does_not_grow() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    disk.write("/q/a", b"aaaa")
    disk.write("/q/b", b"bbbb")
    disk.write("/q/c", b"cccc")
    disk.capacity = disk.used
    disk.write("/q/a", b"AA", 1)  # an overwrite within the file
    disk.write("/q/a", b"")
    disk.truncate("/q/b", 1)  # frees 3
    disk.truncate("/q/b", 1)
    disk.create("/q/c")  # frees 4
    disk.unlink("/q/c")
    disk.create("/q/empty")  # inodes are free
    disk.mkdir("/q/sub/dir")
    disk.lock("/q/lockfile").release()
    assert disk.files() == {"/q/a": b"aAAa", "/q/b": b"b", "/q/empty": b"", "/q/lockfile": b""}
    disk.write("/q/b", b"1234567")  # the 7 bytes freed
    with pytest.raises(OSError):
        disk.write("/q/b", b"8")
    assert disk.used == disk.capacity == 12


def test_replacing_a_file_frees_its_space() -> None:
    disk = SimulatedDisk()
    disk.write("/old", b"x" * 10)
    disk.write("/new", b"y" * 10)
    disk.capacity = 25
    with pytest.raises(OSError):
        disk.write("/more", b"z" * 10)
    disk.replace("/new", "/old")
    assert disk.used == 10
    disk.write("/more", b"z" * 10)
    assert disk.files() == {"/more": b"z" * 10, "/old": b"y" * 10}


def test_capacity_below_used_makes_the_disk_full() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"0123456789")
    disk.capacity = 4
    assert disk.used == 10
    with pytest.raises(OSError):
        disk.write("/f", b"!")
    disk.truncate("/f", 6)  # still over the capacity, but smaller
    with pytest.raises(OSError):
        disk.truncate("/f", 7)
    disk.capacity = None
    disk.write("/f", b"!")
    assert disk.read("/f") == b"012345!"
    with pytest.raises(ValueError, match="capacity"):
        disk.capacity = -1


def test_used_counts_an_inode_once() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/a")
    disk.mkdir("/b")
    disk.write("/a/f", b"12345")
    for path in ("/a/f", "/a", "/"):
        disk.fsync(path)
    disk.replace("/a/f", "/b/f")
    assert disk.used == 5
    # The state where both halves of the rename survived: one inode under two names.
    [both] = [s for s in disk.crash_states(POWER_LOSS) if len(s.files()) == 2]
    assert both.files() == {"/a/f": b"12345", "/b/f": b"12345"}
    assert both.used == 5
    both.capacity = 5
    with pytest.raises(OSError):
        both.write("/a/f", b"6")
    both.unlink("/a/f")  # the other name keeps it: nothing is freed
    assert both.used == 5


def test_copies_keep_the_capacity_and_crash_states_have_none() -> None:
    disk = synced_disk()
    disk.capacity = 3
    twin = disk.copy()
    assert twin.capacity == 3
    with pytest.raises(OSError):
        twin.write("/q/info", b"!")
    states = list(disk.crash_states(POWER_LOSS))
    assert states
    for state in states:
        assert state.capacity is None
        state.write("/q/info", b"!")


@given(st.data())
def test_drawn_crash_states_have_no_capacity(data: st.DataObject) -> None:
    disk = synced_disk()
    disk.write("/q/info", RECORD)
    disk.capacity = disk.used
    state = data.draw(crash_state(disk, POWER_LOSS))
    assert state.capacity is None
    state.write("/q/info", b"!")


@given(st.lists(calls, max_size=10), st.integers(0, 24))
def test_a_capacity_only_refuses_calls_that_would_overfill(
    history: list[Call], capacity: int
) -> None:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.capacity = capacity
    for call in history:
        roomy = disk.copy()
        roomy.capacity = None
        outcome = perform(roomy, call)  # what the call does with room to spare
        before = snapshot(disk)
        if outcome is None and roomy.used > capacity:
            name, *args = call
            with pytest.raises(OSError) as info:
                getattr(disk, name)(*args)
            assert info.value.errno == errno.ENOSPC
            assert snapshot(disk) == before
        else:
            assert perform(disk, call) is outcome
            assert snapshot(disk) == snapshot(roomy)
        assert disk.used <= capacity
        assert disk.used == sum(len(data) for data in disk.files().values())
    assert disk.operations == 1 + len(history)


# -- file_type -------------------------------------------------------------------------------


def test_file_type() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.write("/d/f", b"x")
    assert disk.file_type("/d/f") == "file"
    assert disk.file_type("d//f/") == "file"
    assert disk.file_type("/d") == "dir"
    assert disk.file_type("/") == "dir"
    assert disk.file_type("/d/missing") is None
    assert disk.file_type("/missing/f") is None  # a parent is missing
    assert disk.file_type("/d/f/x") is None  # a parent is a file
    assert disk.operations == 2  # a read, not counted


def test_file_type_is_a_read_that_faults_and_crashes_reach() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fail(0, OSError(errno.EIO, "Input/output error"), ops={"file_type"})
    with pytest.raises(OSError):
        disk.file_type("/f")
    assert disk.file_type("/f") == "file"
    disk.crash_after(0)
    assert disk.file_type("/f") == "file"  # not a crash point
    with pytest.raises(SimulatedCrash):
        disk.write("/f", b"x")
    with pytest.raises(SimulatedCrash):
        disk.file_type("/f")
    with pytest.raises(SimulatedCrash):
        disk.file_type("/missing")


def test_rmdir_tree_and_inode() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/a")
    disk.mkdir("/a/empty")
    disk.write("/a/f", b"xy")
    assert disk.tree() == {
        "/": (1, None),
        "/a": (disk.inode("/a"), None),
        "/a/empty": (disk.inode("/a/empty"), None),
        "/a/f": (disk.inode("/a/f"), b"xy"),
    }
    assert disk.inode("/a/missing") is None
    assert disk.inode(Path("/a/f")) == disk.tree()["/a/f"][0]
    for path, code in [("/a", errno.ENOTEMPTY), ("/a/f", errno.ENOTDIR),
                       ("/nope", errno.ENOENT), ("/", errno.EBUSY)]:
        with pytest.raises(OSError) as raised:
            disk.rmdir(path)
        assert raised.value.errno == code and raised.value.filename == path
    disk.fsync_dir("/a")
    disk.rmdir("/a/empty")
    assert disk.dirs() == ["/", "/a"]
    # An entry operation like unlink: a power loss may undo it until the parent is synced.
    kept = {tuple(state.dirs()) for state in disk.crash_states()}
    assert kept == {("/",), ("/", "/a"), ("/", "/a", "/a/empty")}
