"""Usability fixes of the crashtest harness, each checked through the public API: a crash
that leaks out of ``CrashMachine.attempt``, crash points drawn from what an operation does,
what a crash state says it lost, argument checks, ``os.PathLike`` paths, and bounds on the
number of crash states."""

from __future__ import annotations

import contextlib
import errno
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule, run_state_machine_as_test

from pqueue.crashtest import (
    POWER_LOSS,
    CrashMachine,
    SimulatedDisk,
    SimulatedProcess,
    crash_state,
)


def quick(n: int = 50) -> settings:
    return settings(max_examples=n, derandomize=True, database=None, deadline=None)


# -- 1. a SimulatedCrash never leaks out of attempt, and one that escapes shrinks ------------


class CatchesItsOwnError(CrashMachine):
    """An operation that raises an ordinary error, caught by the rule, which then writes."""

    max_crash_ops = 1

    @initialize()
    def start(self) -> None:
        self.open(self.disk)

    def open(self, disk: SimulatedDisk) -> None:
        self.disk = disk

    def recovered(self) -> None:
        pass

    @rule(data=st.data())
    def fails_then_writes(self, data: st.DataObject) -> None:
        def failing() -> None:
            self.disk.write("/f", b"x")
            raise ValueError("refused")

        with contextlib.suppress(ValueError):
            self.attempt(failing, data)
        self.disk.write("/g", b"y")  # a plain call: no crash may be armed any more


def test_an_operation_that_raises_leaves_no_crash_armed() -> None:
    run_state_machine_as_test(CatchesItsOwnError, settings=quick())


class UsesAKilledProcess(CrashMachine):
    """A rule that makes a call through a process it killed: a SimulatedCrash the machine
    did not arm, which must fail the test as an ordinary (shrinkable) assertion."""

    @initialize()
    def start(self) -> None:
        self.open(self.disk)

    def open(self, disk: SimulatedDisk) -> None:
        self.disk = disk

    def recovered(self) -> None:
        pass

    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        self.attempt(lambda: self.disk.write("/f", b"x"), data)

    @rule()
    def use_a_killed_process(self) -> None:
        process = self.disk.process("worker")
        process.kill()
        process.write("/g", b"y")


def test_a_simulated_crash_the_machine_did_not_arm_is_an_assertion() -> None:
    with pytest.raises(AssertionError, match="SimulatedCrash") as found:
        run_state_machine_as_test(
            UsesAKilledProcess, settings=settings(quick(), report_multiple_bugs=False)
        )
    assert "process worker was killed" in str(found.value)


def test_an_unarmed_crash_inside_attempt_is_an_assertion_too() -> None:
    class KilledInside(UsesAKilledProcess):
        @rule(data=st.data())
        def use_a_killed_process_in_attempt(self, data: st.DataObject) -> None:
            process = self.disk.process("inside")
            process.kill()
            self.attempt(lambda: process.write("/g", b"y"), data)

    with pytest.raises(AssertionError, match="SimulatedCrash"):
        run_state_machine_as_test(
            KilledInside, settings=settings(quick(), report_multiple_bugs=False)
        )


# -- 2. crash points are drawn among the calls the operation makes --------------------------


class TwoCalls(CrashMachine):
    """An operation of two state-changing calls, under the default max_crash_ops (40); the
    class tallies where attempts ended."""

    ended: ClassVar[Counter[str]] = Counter()

    @initialize()
    def start(self) -> None:
        self.open(self.disk)

    def open(self, disk: SimulatedDisk) -> None:
        self.disk = disk

    def recovered(self) -> None:
        assert set(self.disk.files()) <= {"/a", "/b"}

    @rule(data=st.data())
    def two_writes(self, data: st.DataObject) -> None:
        before = self.crashes

        def operation() -> None:
            self.disk.write("/a", b"1")
            self.disk.write("/b", b"2")

        done = self.attempt(operation, data)
        if done:
            TwoCalls.ended["completed"] += 1
        else:
            assert self.crashes > before
            TwoCalls.ended["crashed"] += 1


def test_most_crash_points_land_inside_a_short_operation() -> None:
    TwoCalls.ended.clear()
    run_state_machine_as_test(
        TwoCalls, settings=settings(quick(100), stateful_step_count=5)
    )
    crashed, completed = TwoCalls.ended["crashed"], TwoCalls.ended["completed"]
    # Drawing crash points 0..40 for an operation of 2 calls crashed about 1 attempt in 40.
    assert crashed >= (crashed + completed) / 4, TwoCalls.ended


def save_in_place(fs: SimulatedDisk, value: bytes) -> None:
    fs.create("/app/config")  # truncates the old version: only a crash inside shows it
    fs.write("/app/config", value)
    fs.fsync("/app/config")
    fs.fsync_dir("/app")


class BrokenSave(CrashMachine):
    @initialize()
    def start(self) -> None:
        self.current = b""
        self.in_flight: bytes | None = None
        self.open(self.disk)

    def open(self, disk: SimulatedDisk) -> None:
        self.disk = disk
        disk.mkdir("/app")
        disk.fsync_dir("/")

    @rule(value=st.binary(min_size=2, max_size=8), data=st.data())
    def save(self, value: bytes, data: st.DataObject) -> None:
        self.in_flight = value
        if self.attempt(lambda: save_in_place(self.disk, value), data):
            self.current = value
        self.in_flight = None

    def recovered(self) -> None:
        found = self.disk.files().get("/app/config", b"")
        assert found in (self.current, self.in_flight), found
        self.current = found


def test_a_save_in_place_is_caught_within_a_few_examples() -> None:
    # Only a crash inside the save shows the bug; with crash points drawn from 0..40 for
    # its 4 calls, 200 examples of up to 3 saves did not.
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            BrokenSave,
            settings=settings(
                quick(30), stateful_step_count=3, report_multiple_bugs=False
            ),
        )


# -- 4. argument checks, and POWER_LOSS by default ------------------------------------------


def unsynced_disk() -> SimulatedDisk:
    disk = SimulatedDisk()
    disk.mkdir("/app")
    disk.write("/app/config", b"new")
    return disk


def test_models_may_be_named_and_power_loss_is_the_default() -> None:
    disk = unsynced_disk()
    power_loss = [state.files() for state in disk.crash_states(POWER_LOSS)]
    assert len(power_loss) > 1
    assert [state.files() for state in disk.crash_states()] == power_loss
    assert [state.files() for state in disk.crash_states("POWER_LOSS")] == power_loss
    assert [state.files() for state in disk.crash_states("PROCESS_CRASH")] == [disk.files()]
    assert disk.count_crash_states() == disk.count_crash_states("POWER_LOSS") == len(power_loss)
    assert disk.count_crash_states("PROCESS_CRASH") == 1


@given(st.data())
def test_crash_state_takes_a_named_model_and_defaults_to_power_loss(
    data: st.DataObject,
) -> None:
    disk = unsynced_disk()
    states = [state.files() for state in disk.crash_states()]
    assert data.draw(crash_state(disk)).files() in states
    assert data.draw(crash_state(disk, "PROCESS_CRASH")).files() == disk.files()


def test_a_bad_model_is_refused_naming_the_argument() -> None:
    disk = unsynced_disk()
    with pytest.raises(ValueError, match=r"model.*'POWER_LOSS', 'PROCESS_CRASH'"):
        disk.crash_states("power loss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model"):
        disk.count_crash_states("POWERLOSS")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        disk.crash_states(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        crash_state(disk, None)  # type: ignore[arg-type]


def test_fail_needs_an_os_error_instance_and_whole_counts() -> None:
    disk = SimulatedDisk()
    with pytest.raises(TypeError, match=r"error.*OSError.*ValueError"):
        disk.fail(0, ValueError("not a device error"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"error.*instance"):
        disk.fail(0, OSError)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="after"):
        disk.fail("1", OSError(errno.EIO, "x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="times"):
        disk.fail(0, OSError(errno.EIO, "x"), times=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="crash_after"):
        disk.crash_after(1.0)  # type: ignore[arg-type]
    assert disk.armed == 0
    disk.fail(0, OSError(errno.EIO, "Input/output error"))  # 0: the very next call fails
    with pytest.raises(OSError, match="Input/output"):
        disk.write("/f", b"x")
    assert disk.files() == {}


# -- 5. os.PathLike paths -------------------------------------------------------------------


class Named:
    """An ``os.PathLike[str]`` that is not a ``pathlib`` path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


@pytest.mark.parametrize("kind", ["disk", "process"])
@pytest.mark.parametrize("as_path", [PurePosixPath, Path, Named])
def test_every_path_may_be_a_path_like(kind: str, as_path: Callable[[str], Any]) -> None:
    # SimulatedDisk's methods are annotated ``str`` (so that subclasses overriding them with
    # ``str`` stay well typed) and take any os.PathLike[str] at run time; SimulatedProcess's
    # are annotated with both. ``Any`` stands for both here.
    disk = SimulatedDisk()
    fs: Any = disk if kind == "disk" else disk.process()
    app, f, g = as_path("/app"), as_path("/app/f"), as_path("/app/g")
    fs.mkdir(app)
    fs.write(f, b"hello")
    fs.create(g)
    fs.truncate(g, 2)
    assert fs.read(f, 1, 3) == b"ell"
    assert fs.size(f) == 5
    assert fs.exists(f) and fs.is_dir(app) and fs.file_type(f) == "file"
    assert sorted(fs.listdir(app)) == ["f", "g"]
    fs.fsync(f)
    fs.fsync_dir(app)
    fs.write_back(f)
    watch = fs.watch(f, closes=(g,))
    fs.replace(g, as_path("/app/h"))
    fs.unlink(as_path("/app/h"))
    lock = fs.lock(as_path("/app/lock"))
    assert fs.probe(as_path("/app/lock"))
    lock.release()
    assert fs.lock_key(f) == fs.lock_key("/app/f")
    assert fs.same_filesystem(app, f)
    fs.volatile(f)
    fs.release(f)
    watch.close()
    assert disk.files() == {"/app/f": b"hello", "/app/lock": b""}


def test_a_bytes_path_is_refused() -> None:
    disk = SimulatedDisk()
    with pytest.raises(TypeError, match="path"):
        disk.write(b"/f", b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        disk.process().exists(b"/f")  # type: ignore[arg-type]


def test_a_process_is_typed_to_take_a_path() -> None:
    process: SimulatedProcess = SimulatedDisk().process()
    process.write(Path("/f"), b"x")  # no type: ignore needed
    assert process.read(PurePosixPath("/f")) == b"x"


# -- 6. how many crash states, without enumerating them ------------------------------------


def twelve_unsynced_files() -> SimulatedDisk:
    disk = SimulatedDisk()
    for i in range(12):
        disk.write(f"/f{i:02}", bytes([65 + i]) * 100)
    return disk


def test_the_estimate_of_twelve_unsynced_files_is_immediate() -> None:
    disk = twelve_unsynced_files()
    start = time.perf_counter()
    estimate = disk.estimate_crash_states()
    assert time.perf_counter() - start < 0.5
    # 13 prefixes of the creates in /; per file: the write lost, kept, zero-extended, torn
    # after 1 byte or in the middle, the rest of the sector zeros or garbage: 7.
    assert estimate == 13 * 7**12
    assert disk.estimate_crash_states("PROCESS_CRASH") == 1


def test_a_limit_refuses_twelve_unsynced_files_at_once() -> None:
    disk = twelve_unsynced_files()
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"more than 1000 crash states.*crash_state"):
        disk.count_crash_states(limit=1000)
    with pytest.raises(ValueError, match="more than 1000 crash states"):
        disk.crash_states(limit=1000)  # raised by the call, before any state is made
    assert time.perf_counter() - start < 1.0


def test_a_limit_above_the_count_yields_every_state() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"ab")
    every = [state.files() for state in disk.crash_states()]
    assert len(every) == disk.count_crash_states(limit=len(every)) <= disk.estimate_crash_states()
    assert [state.files() for state in disk.crash_states(limit=len(every))] == every
    with pytest.raises(ValueError, match="limit"):
        disk.count_crash_states(limit=-1)


# -- 3. a crash state says what it lost -----------------------------------------------------


def save_without_fsync_then_crash() -> SimulatedDisk:
    disk = SimulatedDisk()
    disk.mkdir("/app")
    disk.write("/app/config", b"old")
    disk.fsync("/app/config")
    disk.fsync_dir("/app")
    disk.fsync_dir("/")
    disk.create("/app/config.tmp")
    disk.write("/app/config.tmp", b"new value")
    disk.replace("/app/config.tmp", "/app/config")
    return disk


def test_a_crash_state_says_what_it_kept_and_lost() -> None:
    disk = save_without_fsync_then_crash()
    states = list(disk.crash_states())
    visible = repr(states[0])
    assert f"crash state of #{disk_number(disk)} under POWER_LOSS" in visible
    assert "pending_ops" not in visible
    assert "/app: kept all 2" in visible
    assert "/app/config: kept all 1" in visible
    # The rename survived, the data did not: the bug a missing fsync makes.
    [empty] = [s for s in states if s.files().get("/app/config") == b""]
    text = repr(empty)
    assert "/app/config: kept 0 of 1, lost write 9 bytes at 0" in text, text
    assert "/app: kept all 2" in text, text
    [old] = [s for s in states if s.files().get("/app/config") == b"old" and s.files() == {
        "/app/config": b"old"}]
    assert "/app: kept 0 of 2, lost create 'config.tmp', rename 'config.tmp' -> 'config'" in (
        repr(old)
    )
    torn = [repr(s) for s in states if s.files().get("/app/config", b"")[:1] == b"n"]
    assert any("torn after 1 byte" in text and "zeros" in text for text in torn), torn
    assert any("zero-extended" in repr(s) for s in states)


@given(st.data())
def test_a_drawn_crash_state_says_what_it_lost_too(data: st.DataObject) -> None:
    disk = save_without_fsync_then_crash()
    state = data.draw(crash_state(disk))
    assert f"crash state of #{disk_number(disk)} under POWER_LOSS: /app" in repr(state)


def test_an_ordinary_disk_still_counts_its_pending_operations() -> None:
    disk = save_without_fsync_then_crash()
    assert "pending_ops=3" in repr(disk)  # /app: create and rename; /app/config: write
    assert "crash state" not in repr(disk)
    assert "PROCESS_CRASH: nothing lost" in repr(next(disk.crash_states("PROCESS_CRASH")))


def disk_number(disk: SimulatedDisk) -> int:
    return int(repr(disk).split("#", 1)[1].split(" ", 1)[0].rstrip(">"))


def test_a_crash_state_of_a_variant_names_what_differs() -> None:
    reordered = attrs.evolve(POWER_LOSS, reorder_dir_ops=True)
    disk = save_without_fsync_then_crash()
    states = list(disk.crash_states(reordered))
    assert all("under POWER_LOSS with reorder_dir_ops=True:" in repr(s) for s in states)
    # With reordering, the rename can survive without the create it depended on.
    assert any("kept 1 of 2, lost create 'config.tmp'" in repr(s) for s in states)
