"""Usability fixes of the crashtest harness, each checked through the public API: a crash
that leaks out of ``CrashMachine.attempt``, crash points drawn from what an operation does,
what a crash state says it lost, argument checks, ``os.PathLike`` paths, and bounds on the
number of crash states."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule, run_state_machine_as_test

from pqueue.crashtest import CrashMachine, SimulatedDisk


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
