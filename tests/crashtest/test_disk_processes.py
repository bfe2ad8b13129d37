"""SimulatedDisk as a kernel shared by several processes: flock-like locks (shared,
exclusive, blocking), probe, boot ids, volatile files, watches, and SimulatedProcess with its
kill and kill_after."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedCrash,
    SimulatedDisk,
    SimulatedProcess,
    crash_state,
)
from pqueue.io import FileSystem, Lock

NO_TEARS = attrs.evolve(POWER_LOSS, torn_writes=False, zero_extend=False)
SETTLE = 0.05  # how long a thread is given to reach a wait it should stay in
DEADLINE = 10.0  # how long a thread that should finish is waited for


class Running:
    """``call()`` running in a daemon thread: its result or what it raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.outcome: list[object] = []
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.outcome.append(call())
        except BaseException as exc:  # SimulatedCrash is one
            self.outcome.append(exc)

    def still_waiting(self) -> bool:
        """Whether it is still running after a moment to get where it blocks."""
        self._thread.join(SETTLE)
        return self._thread.is_alive()

    def result(self) -> object:
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the thread did not finish"
        [outcome] = self.outcome
        return outcome


def durable_dir() -> SimulatedDisk:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    disk.fsync_dir("/q")
    disk.fsync_dir("/")
    return disk


# -- locks ----------------------------------------------------------------------------------


def test_shared_locks_coexist_and_exclude_exclusive_ones() -> None:
    disk = SimulatedDisk()
    a, b = disk.process(), disk.process()
    first = a.lock("/lock", shared=True)
    second = b.lock("/lock", shared=True)
    third = disk.lock("/lock", shared=True)
    for fs in (a, b, disk):
        with pytest.raises(BlockingIOError) as info:
            fs.lock("/lock")
        assert info.value.errno == errno.EWOULDBLOCK
    for lock in (first, second):
        lock.release()
    with pytest.raises(BlockingIOError):
        b.lock("/lock")  # one shared holder is left
    third.release()
    b.lock("/lock").release()


def test_an_exclusive_lock_excludes_every_other_holder() -> None:
    disk = SimulatedDisk()
    a, b = disk.process(), disk.process()
    lock = a.lock("/lock")
    assert isinstance(lock, Lock)
    with pytest.raises(BlockingIOError):
        b.lock("/lock", shared=True)
    with pytest.raises(BlockingIOError):
        b.lock("/lock")
    with pytest.raises(BlockingIOError):
        a.lock("/lock")  # the same process, another holder: as flock on another open()
    with pytest.raises(BlockingIOError):
        a.lock("/lock", shared=True)
    lock.release()
    lock.release()  # idempotent
    b.lock("/lock", shared=True).release()


def test_locks_of_different_files_do_not_conflict() -> None:
    disk = SimulatedDisk()
    a, b = disk.process(), disk.process()
    a.lock("/one")
    b.lock("/two").release()


def test_a_blocking_lock_waits_for_a_release_in_another_thread() -> None:
    disk = SimulatedDisk()
    holder, waiter = disk.process(), disk.process()
    lock = holder.lock("/lock", shared=True)
    disk.lock("/lock", shared=True).release()  # shared: no wait, even blocking
    holder.lock("/lock", shared=True, blocking=True).release()
    running = Running(lambda: waiter.lock("/lock", blocking=True))
    assert running.still_waiting()
    assert disk.read("/lock") == b""  # the disk serves others while the lock waits
    lock.release()
    taken = running.result()
    assert isinstance(taken, Lock)
    assert disk.probe("/lock")
    with pytest.raises(BlockingIOError):
        holder.lock("/lock", shared=True)
    taken.release()
    assert not disk.probe("/lock")


def test_a_blocking_lock_creates_the_file_before_it_waits() -> None:
    disk = SimulatedDisk()
    disk.write("/lock", b"")
    held = disk.lock("/lock")
    disk.replace("/lock", "/old")  # the lock stays on the inode, now /old
    running = Running(lambda: disk.lock("/old", blocking=True))
    assert running.still_waiting()
    before = disk.operations
    disk.lock("/lock", blocking=True).release()  # a new file: nothing to wait for
    assert disk.operations == before + 1
    held.release()
    taken = running.result()
    assert isinstance(taken, Lock)
    taken.release()


def test_a_blocking_lock_gets_the_lock_of_a_killed_holder() -> None:
    disk = SimulatedDisk()
    holder, waiter = disk.process("holder"), disk.process("waiter")
    holder.lock("/lock")
    holder.lock("/other", shared=True)
    running = Running(lambda: waiter.lock("/lock", blocking=True))
    assert running.still_waiting()
    holder.kill()
    assert isinstance(running.result(), Lock)
    assert not disk.probe("/other")


def test_a_blocking_lock_raises_when_its_process_is_killed() -> None:
    disk = SimulatedDisk()
    held = disk.lock("/lock")
    waiter = disk.process("w")
    running = Running(lambda: waiter.lock("/lock", blocking=True))
    assert running.still_waiting()
    waiter.kill()
    outcome = running.result()
    assert isinstance(outcome, SimulatedCrash)
    assert str(outcome) == "process w was killed"
    held.release()
    assert not disk.probe("/lock")  # the killed waiter did not take it
    disk.lock("/lock").release()


def test_a_blocking_lock_raises_when_the_disk_crashes() -> None:
    disk = SimulatedDisk()
    disk.lock("/lock")
    waiters = [
        Running(lambda: disk.lock("/lock", blocking=True)),
        Running(lambda: disk.process().lock("/lock", shared=True, blocking=True)),
    ]
    assert all(waiter.still_waiting() for waiter in waiters)
    disk.crash_after(0)
    with pytest.raises(SimulatedCrash):
        disk.write("/f", b"x")
    for waiter in waiters:
        assert isinstance(waiter.result(), SimulatedCrash)


def test_a_blocking_lock_takes_the_lock_then_raises_its_interrupt() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    held = disk.lock("/lock")
    disk.interrupt(0, KeyboardInterrupt(), ops={"lock"})
    running = Running(lambda: process.lock("/lock", blocking=True))
    assert running.still_waiting()
    assert disk.read("/lock") == b""  # the waiting call's interrupt is not delivered here
    held.release()
    assert isinstance(running.result(), KeyboardInterrupt)
    assert disk.probe("/lock")  # taken, and nobody got its release()
    process.kill()
    assert not disk.probe("/lock")


def test_an_interrupted_lock_of_a_process_is_released_by_its_kill() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    disk.interrupt(0, KeyboardInterrupt(), ops={"lock"})
    with pytest.raises(KeyboardInterrupt):
        process.lock("/lock")
    with pytest.raises(BlockingIOError):
        disk.lock("/lock")
    process.kill()
    disk.lock("/lock").release()


# -- probe ----------------------------------------------------------------------------------


def test_probe_says_whether_anyone_holds_a_lock() -> None:
    disk = SimulatedDisk()
    a, b = disk.process(), disk.process()
    assert not disk.probe("/lock")  # missing
    assert not a.probe("/missing/lock")
    disk.write("/lock", b"")
    assert not disk.probe("/lock")
    shared = a.lock("/lock", shared=True)
    assert disk.probe("/lock")
    assert a.probe("/lock")  # its own lock counts
    assert b.probe("/lock")
    shared.release()
    assert not b.probe("/lock")
    b.lock("/lock")
    assert a.probe("lock/")  # normalised
    b.kill()
    assert not a.probe("/lock")


def test_probe_is_a_read() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.write("/f", b"")
    before = disk.operations
    disk.crash_after(0)
    assert not disk.probe("/f")  # not counted, not a crash point
    assert disk.operations == before
    with pytest.raises(IsADirectoryError):
        disk.probe("/d")
    with pytest.raises(NotADirectoryError):
        disk.probe("/f/x")
    disk.crash_after(None)
    disk.fail(0, OSError(errno.EIO, "probe failed"), ops={"probe"})
    with pytest.raises(OSError, match="probe failed"):
        disk.probe("/f")


def test_a_lock_follows_its_inode_for_probe() -> None:
    disk = SimulatedDisk()
    lock = disk.lock("/lock")
    disk.replace("/lock", "/moved")
    assert not disk.probe("/lock")
    assert disk.probe("/moved")
    lock.release()


# -- boot ids -------------------------------------------------------------------------------


def test_boot_ids_are_numbered_by_history_and_kept_by_copies() -> None:
    disk, other = SimulatedDisk(), SimulatedDisk()
    assert disk.boot_id() == other.boot_id() == "simulated-boot-1"  # reproducible
    assert disk.copy().boot_id() == disk.boot_id()
    assert disk.process().boot_id() == disk.boot_id()


@pytest.mark.parametrize("model", [PROCESS_CRASH, POWER_LOSS], ids=["process", "power"])
def test_crash_states_keep_the_boot_only_after_a_process_crash(model: PersistenceModel) -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"abc")
    disk.mkdir("/d")
    states = list(disk.crash_states(model))
    ids = [state.boot_id() for state in states]
    if model.lose_unsynced:
        assert len(states) > 1
        assert set(ids) == {"simulated-boot-2"}  # the machine restarted
        after = next(iter(states[-1].crash_states(model)))
        assert after.boot_id() == "simulated-boot-3"
    else:
        assert ids == [disk.boot_id()]


@settings(max_examples=20)
@given(data=st.data(), lose=st.booleans())
def test_drawn_crash_states_follow_the_boot_rule(data: st.DataObject, lose: bool) -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"abc")
    model = POWER_LOSS if lose else PROCESS_CRASH
    state = data.draw(crash_state(disk, model))
    assert state.boot_id() == ("simulated-boot-2" if lose else disk.boot_id())


# -- volatile files -------------------------------------------------------------------------


def volatile_disk() -> SimulatedDisk:
    """/q/v, durable with b"base", then written three times without an fsync."""
    disk = durable_dir()
    disk.write("/q/v", b"base")
    disk.fsync("/q/v")
    disk.fsync_dir("/q")
    for chunk in (b"-one", b"-two", b"-three"):
        disk.write("/q/v", chunk)
    return disk


def test_a_volatile_file_has_two_outcomes_under_a_power_loss() -> None:
    disk = volatile_disk()
    assert disk.count_crash_states(NO_TEARS) == 4  # a prefix of the three writes
    assert disk.count_crash_states(POWER_LOSS) > 4
    disk.volatile("/q/v")
    for model in (NO_TEARS, POWER_LOSS):
        states = list(disk.crash_states(model))
        assert [s.files() for s in states] == [
            {"/q/v": b"base-one-two-three"},
            {"/q/v": b""},
        ]
        assert disk.count_crash_states(model) == 2
    assert [s.files() for s in disk.crash_states(PROCESS_CRASH)] == [
        {"/q/v": b"base-one-two-three"}
    ]


def test_a_volatile_file_with_nothing_pending_has_one_outcome() -> None:
    disk = volatile_disk()
    disk.volatile("/q/v")
    disk.fsync("/q/v")
    assert [s.files() for s in disk.crash_states(POWER_LOSS)] == [{"/q/v": b"base-one-two-three"}]


def test_the_name_of_a_volatile_file_follows_the_usual_rules() -> None:
    disk = durable_dir()
    disk.write("/q/v", b"data")  # neither the name nor the data is durable
    disk.volatile("/q/v")
    outcomes = [s.files().get("/q/v") for s in disk.crash_states(POWER_LOSS)]
    assert outcomes == [b"data", b"", None]


def test_the_volatile_mark_belongs_to_the_inode_and_is_kept() -> None:
    disk = volatile_disk()
    disk.volatile("/q/v")
    disk.replace("/q/v", "/q/w")
    disk.fsync_dir("/q")
    assert disk.copy().count_crash_states(POWER_LOSS) == 2
    [state] = disk.crash_states(PROCESS_CRASH)
    for twin in (disk.copy(), state):
        twin.write("/q/w", b"-four")
        twin.write("/q/w", b"-five")
        assert [s.read("/q/w") for s in twin.crash_states(POWER_LOSS)] == [
            b"base-one-two-three-four-five",
            b"",
        ]
    disk.write("/q/v", b"a new file")  # another inode, not marked
    disk.fsync_dir("/q")
    disk.write("/q/v", b"!")
    assert disk.count_crash_states(NO_TEARS) == 2 * 3


def test_volatile_needs_an_existing_file_and_changes_nothing() -> None:
    disk = durable_dir()
    with pytest.raises(FileNotFoundError):
        disk.volatile("/q/missing")
    with pytest.raises(IsADirectoryError):
        disk.volatile("/q")
    disk.write("/q/v", b"x")
    before = disk.operations
    disk.crash_after(0)
    disk.volatile("/q/v")  # not a crash point
    assert disk.operations == before
    assert disk.read("/q/v") == b"x"


@settings(max_examples=30)
@given(data=st.data())
def test_drawn_crash_states_of_a_volatile_file_are_enumerated_ones(data: st.DataObject) -> None:
    disk = durable_dir()
    disk.write("/q/f", b"plain")
    disk.write("/q/v", b"volatile")
    disk.volatile("/q/v")
    disk.write("/q/v", b" and more")

    def key(state: SimulatedDisk) -> tuple[object, ...]:
        return (tuple(state.dirs()), tuple(state.files().items()))

    allowed = {key(state) for state in disk.crash_states(POWER_LOSS)}
    assert key(data.draw(crash_state(disk, POWER_LOSS))) in allowed


# -- watches --------------------------------------------------------------------------------


WATCHED = "/q/w"
# Calls on a disk holding /q/w = b"data" and /q/x, and whether each changes /q/w.
CHANGES: list[tuple[str, Callable[[FileSystem], object], bool]] = [
    ("write", lambda fs: fs.write(WATCHED, b"!"), True),
    ("write empty", lambda fs: fs.write(WATCHED, b""), True),
    ("truncate", lambda fs: fs.truncate(WATCHED, 1), True),
    ("create", lambda fs: fs.create(WATCHED), True),
    ("replace onto", lambda fs: fs.replace("/q/x", WATCHED), True),
    ("unlink", lambda fs: fs.unlink(WATCHED), True),
    ("write elsewhere", lambda fs: fs.write("/q/x", b"!"), False),
    ("replace away", lambda fs: fs.replace(WATCHED, "/q/z"), False),
    ("read", lambda fs: fs.read(WATCHED), False),
    ("fsync", lambda fs: fs.fsync(WATCHED), False),
    ("lock", lambda fs: fs.lock(WATCHED), False),
]


def watched_disk() -> SimulatedDisk:
    disk = SimulatedDisk()
    disk.mkdir("/q")
    disk.write(WATCHED, b"data")
    disk.write("/q/x", b"")
    return disk


@pytest.mark.parametrize(("name", "call", "changes"), CHANGES, ids=[c[0] for c in CHANGES])
def test_what_wakes_a_watch(name: str, call: Callable[[FileSystem], object], changes: bool) -> None:
    disk = watched_disk()
    watch = disk.process().watch(WATCHED)
    assert not watch.wait(0)
    call(disk.process())
    assert watch.wait(0) is changes
    assert not watch.wait(0)  # each change is reported once


def test_a_replace_onto_a_directory_above_wakes_watches_under_it() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/a")
    disk.write("/a/f", b"new")
    disk.mkdir("/b")
    watch = disk.watch("/b/f")
    other = disk.watch("/bb/f")
    disk.replace("/a", "/b")
    assert watch.wait(0)
    assert not other.wait(0)


def test_a_call_that_fails_wakes_no_watch() -> None:
    disk = watched_disk()
    watch = disk.watch(WATCHED)
    disk.fail(0, OSError(errno.EIO, "x"), ops={"write", "unlink"}, times=2)
    with pytest.raises(OSError, match="x"):
        disk.write(WATCHED, b"!")
    with pytest.raises(OSError, match="x"):
        disk.unlink(WATCHED)
    disk.capacity = 0
    with pytest.raises(OSError, match="space"):
        disk.write(WATCHED, b"!")
    assert not watch.wait(0)


def test_a_write_from_another_process_wakes_a_waiting_watch() -> None:
    disk = watched_disk()
    consumer, producer = disk.process(), disk.process()
    watch = consumer.watch(WATCHED)
    running = Running(lambda: watch.wait(None))
    assert running.still_waiting()
    producer.write(WATCHED, b"more")
    assert running.result() is True


def test_a_watch_sees_a_file_that_does_not_exist_yet() -> None:
    disk = SimulatedDisk()
    watch = disk.watch("/later/f")
    disk.mkdir("/later")
    assert not watch.wait(0)
    disk.write("/later/f", b"")
    assert watch.wait(0)


def test_changes_between_waits_are_kept_for_the_next_wait() -> None:
    disk = watched_disk()
    watch = disk.watch(WATCHED)
    disk.write(WATCHED, b"1")  # before any wait: counted from the watch's making
    disk.write(WATCHED, b"2")
    assert watch.wait(None)  # at once
    assert not watch.wait(0)


def test_wake_makes_the_current_or_next_wait_return() -> None:
    disk = SimulatedDisk()
    watch = disk.watch("/f")
    watch.wake()
    assert watch.wait(None)  # the wake came first: at once
    assert not watch.wait(0)
    running = Running(lambda: watch.wait(None))
    assert running.still_waiting()
    threading.Thread(target=watch.wake).start()
    assert running.result() is True


def test_wait_times_out() -> None:
    disk = SimulatedDisk()
    watch = disk.watch("/f")
    start = time.monotonic()
    assert watch.wait(0.05) is False
    assert time.monotonic() - start >= 0.05
    assert watch.wait(-1) is False


def test_a_crash_wakes_every_watch() -> None:
    disk = watched_disk()
    watches = [disk.watch(WATCHED), disk.process().watch("/elsewhere")]
    running = [Running(lambda w=w: w.wait(None)) for w in watches]  # type: ignore[misc]
    assert all(r.still_waiting() for r in running)
    disk.crash_after(0)
    with pytest.raises(SimulatedCrash):
        disk.mkdir("/x")
    assert [r.result() for r in running] == [True, True]
    assert all(w.wait(None) for w in watches)  # at once, from now on
    with pytest.raises(SimulatedCrash):
        disk.watch(WATCHED)


def test_a_kill_wakes_the_watches_of_the_process_only() -> None:
    disk = watched_disk()
    victim, survivor = disk.process(), disk.process()
    mine, theirs, the_disks = victim.watch(WATCHED), survivor.watch(WATCHED), disk.watch("/f")
    running = Running(lambda: mine.wait(None))
    assert running.still_waiting()
    victim.kill()
    assert running.result() is True
    assert mine.wait(None)
    assert not theirs.wait(0)
    assert not the_disks.wait(0)


def test_a_watch_fires_when_a_lock_on_a_closes_file_is_released() -> None:
    disk = watched_disk()
    holder, other = disk.process(), disk.process()
    lock = holder.lock("/q/lock", shared=True)
    holder.lock("/q/lock", shared=True)
    disk.lock("/q/other")
    watch = other.watch(WATCHED, closes=("/q/lock", "/q/missing"))
    assert not watch.wait(0)
    disk.replace("/q/lock", "/q/moved")  # the inode is watched, not the name
    lock.release()
    assert watch.wait(0)  # any release, while others still hold it
    assert disk.probe("/q/moved")
    assert not watch.wait(0)
    running = Running(lambda: watch.wait(None))
    assert running.still_waiting()
    holder.kill()  # a kill releases too
    assert running.result() is True
    disk.lock("/q/moved").release()
    assert watch.wait(0)
    watch.close()
    assert disk._lock_watches == {}
    assert disk.process().watch("/q/w", closes=("/q/other",)).wait(0) is False


def test_a_closed_watch_returns_at_once() -> None:
    disk = watched_disk()
    watch = disk.watch(WATCHED)
    running = Running(lambda: watch.wait(None))
    assert running.still_waiting()
    watch.close()
    watch.close()
    assert running.result() is True
    assert watch.wait(None)
    disk.write(WATCHED, b"!")  # nothing left to notify
    assert disk._watches == {}


# -- processes ------------------------------------------------------------------------------


def test_a_process_is_a_file_system_on_the_same_disk() -> None:
    disk = SimulatedDisk()
    a, b = disk.process(), disk.process("writer")
    assert isinstance(a, FileSystem)
    assert isinstance(disk, FileSystem)
    protocol = {name for name in vars(FileSystem) if not name.startswith("_")}
    assert protocol <= set(vars(SimulatedProcess))
    assert (a.name, b.name) == ("p1", "writer")
    assert disk.process().name == "p3"
    b.mkdir("/q")
    b.write("/q/f", b"abc")
    assert a.read("/q/f") == b"abc"
    assert disk.files() == {"/q/f": b"abc"}
    assert a.lock_key("/q") == b.lock_key("q/") == disk.lock_key("/q")
    assert a.same_filesystem("/q", "/q/f")
    assert a.file_type("/q") == "dir"
    assert a.listdir("/q") == ["f"]
    assert "writer" in repr(b)


def calls_on(fs: FileSystem) -> list[tuple[str, Callable[[], object]]]:
    """A call of every FileSystem method, on a disk holding /f."""
    return [
        ("mkdir", lambda: fs.mkdir("/d")),
        ("listdir", lambda: fs.listdir("/")),
        ("exists", lambda: fs.exists("/f")),
        ("is_dir", lambda: fs.is_dir("/f")),
        ("file_type", lambda: fs.file_type("/f")),
        ("size", lambda: fs.size("/f")),
        ("read", lambda: fs.read("/f")),
        ("write", lambda: fs.write("/f", b"!")),
        ("create", lambda: fs.create("/g")),
        ("truncate", lambda: fs.truncate("/f", 0)),
        ("fsync", lambda: fs.fsync("/f")),
        ("fsync_dir", lambda: fs.fsync_dir("/")),
        ("write_back", lambda: fs.write_back("/f")),
        ("replace", lambda: fs.replace("/f", "/g")),
        ("unlink", lambda: fs.unlink("/f")),
        ("lock", lambda: fs.lock("/f")),
        ("probe", lambda: fs.probe("/f")),
        ("boot_id", fs.boot_id),
        ("volatile", lambda: fs.volatile("/f")),
        ("watch", lambda: fs.watch("/f")),
        ("lock_key", lambda: fs.lock_key("/f")),
        ("same_filesystem", lambda: fs.same_filesystem("/", "/f")),
        ("release", lambda: fs.release("/f")),
    ]


def test_the_call_table_covers_every_file_system_method() -> None:
    names = {name for name, _ in calls_on(SimulatedDisk())}
    assert {name for name in vars(FileSystem) if not name.startswith("_")} <= names


@pytest.mark.parametrize("index", range(len(calls_on(SimulatedDisk()))))
def test_every_call_through_a_killed_process_raises(index: int) -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"data")
    process, other = disk.process("victim"), disk.process()
    _, call = calls_on(process)[index]
    process.kill()
    assert process.killed
    with pytest.raises(SimulatedCrash, match=r"^process victim was killed$"):
        call()
    assert disk.files() == {"/f": b"data"}  # no effect
    assert not disk.crashed
    _, same_call = calls_on(other)[index]
    same_call()  # the disk and the other processes go on


def test_kill_releases_every_lock_of_the_process_at_once() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    locks = [process.lock("/a"), process.lock("/b", shared=True)]
    disk.lock("/b", shared=True)  # the disk's own, not the process's
    process.kill()
    process.kill()  # idempotent
    assert not disk.probe("/a")
    assert disk.probe("/b")
    disk.lock("/a").release()
    for lock in locks:
        lock.release()  # nothing left to release
    assert disk.probe("/b")


def test_kill_after_kills_the_process_at_its_own_nth_call() -> None:
    disk = SimulatedDisk()
    process, other = disk.process("p"), disk.process()
    lock = process.lock("/lock")  # counted: it creates the file
    process.kill_after(2)
    process.write("/f", b"1")
    other.write("/f", b"x")  # other processes' calls and reads do not count
    disk.write("/f", b"y")
    process.read("/f")
    process.lock("/lock2", shared=True)
    with pytest.raises(SimulatedCrash, match=r"^process p was killed at write #4$"):
        process.write("/f", b"2")
    assert process.killed
    assert not disk.crashed
    assert disk.read("/f") == b"1xy"  # the killing call had no effect
    assert not disk.probe("/lock")
    assert not disk.probe("/lock2")
    lock.release()
    assert process.operations == 3
    assert disk.operations == 5  # the killing call is counted nowhere
    with pytest.raises(SimulatedCrash, match=r"^process p was killed$"):
        process.exists("/f")
    other.write("/f", b"z")


def test_kill_after_zero_and_disarming() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    process.kill_after(0)
    process.read("/") if disk.exists("/f") else None
    process.kill_after(None)
    process.write("/f", b"")
    process.kill_after(0)
    with pytest.raises(SimulatedCrash):
        process.unlink("/f")
    assert disk.exists("/f")
    with pytest.raises(ValueError, match="kill_after"):
        disk.process().kill_after(-1)


def test_operations_count_the_calls_through_each_process() -> None:
    disk = SimulatedDisk()
    a, b = disk.process(), disk.process()
    a.mkdir("/q")
    a.write("/q/f", b"x")
    a.read("/q/f")
    a.lock("/q/lock").release()  # creates the file: counted
    a.lock("/q/lock").release()  # exists: not counted
    a.probe("/q/lock")
    a.volatile("/q/f")
    a.watch("/q/f")
    with pytest.raises(FileNotFoundError):
        b.unlink("/q/missing")  # counted: it could have crashed
    disk.fsync("/q/f")
    assert (a.operations, b.operations, disk.operations) == (3, 1, 5)


def test_a_crash_of_the_disk_stops_every_process() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    disk.crash_after(1)
    process.write("/f", b"1")
    with pytest.raises(SimulatedCrash, match="simulated crash at write #2"):
        process.write("/f", b"2")
    assert disk.crashed
    with pytest.raises(SimulatedCrash, match="the disk has crashed"):
        disk.process().exists("/f")
    process.kill()  # harness controls keep working
    assert [s.files() for s in disk.crash_states(PROCESS_CRASH)] == [{"/f": b"1"}]


def test_crash_after_wins_over_kill_after_on_the_same_call() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    disk.crash_after(0)
    process.kill_after(0)
    with pytest.raises(SimulatedCrash, match="simulated crash"):
        process.write("/f", b"")
    assert disk.crashed


def test_copies_and_crash_states_have_no_processes_nor_locks() -> None:
    disk = SimulatedDisk()
    process = disk.process()
    process.lock("/lock")
    watch = process.watch("/lock")
    for twin in (disk.copy(), *disk.crash_states(POWER_LOSS)):
        if twin.exists("/lock"):
            assert not twin.probe("/lock")
        twin.write("/lock", b"!")
    assert not watch.wait(0)


# -- the new methods under fail and interrupt ---------------------------------------------


class Interrupted(Exception):  # noqa: N818 (as in test_disk.py)
    pass


NEW_METHODS: list[tuple[str, Callable[[SimulatedDisk], Any], Callable[[SimulatedDisk], bool]]] = [
    ("probe", lambda d: d.probe("/f"), lambda d: True),
    ("boot_id", lambda d: d.boot_id(), lambda d: True),
    ("volatile", lambda d: d.volatile("/f"), lambda d: d.count_crash_states(NO_TEARS) == 2),
    ("watch", lambda d: d.watch("/f"), lambda d: True),
]


@pytest.mark.parametrize(
    ("op", "call", "took_effect"), NEW_METHODS, ids=[m[0] for m in NEW_METHODS]
)
def test_the_new_methods_can_fail_and_be_interrupted(
    op: str, call: Callable[[SimulatedDisk], object], took_effect: Callable[[SimulatedDisk], bool]
) -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"data")
    disk.fsync_dir("/")
    disk.write("/f", b"more")
    disk.fail(0, OSError(errno.EIO, op), ops={op})
    with pytest.raises(OSError, match=op):
        call(disk)
    disk.interrupt(0, Interrupted(op), ops={op})
    with pytest.raises(Interrupted, match=op):
        call(disk)
    assert took_effect(disk)
    assert disk.operations == 3
