"""``CrashMachine``: a Hypothesis state machine that crashes the system under test anywhere.

Subclass it, open your system on ``self.disk`` in an ``@initialize`` rule (through
``self.open``), and run every operation of your rules through ``self.attempt(operation,
data)``. Hypothesis then decides, for each operation, whether the disk crashes inside it
(after how many of the state-changing file operations it was measured to make) and, if it
does, which of the states that crash could leave the disk in (under ``self.model``) the
system reopens on. After every crash the machine calls ``open`` on the crashed disk and then
your ``recovered()``, which checks the reopened system against your model. A ``crash`` rule
also crashes between operations. Failures shrink to the fewest operations, crash points and
lost writes::

    from hypothesis import strategies as st
    from hypothesis.stateful import initialize, rule

    from pqueue.crashtest import POWER_LOSS, CrashMachine, SimulatedDisk


    def atomic_save(fs, path: str, value: bytes) -> None:
        fs.create(path + ".tmp")
        fs.write(path + ".tmp", value)
        fs.fsync(path + ".tmp")
        fs.replace(path + ".tmp", path)
        fs.fsync_dir(path.rsplit("/", 1)[0])


    class SavedFile(CrashMachine):
        model = POWER_LOSS

        @initialize()
        def start(self) -> None:
            self.saved = [b""]  # every value save() returned for; the last is current
            self.pending = None  # a save in flight at a crash
            self.open(self.disk)

        def open(self, disk: SimulatedDisk) -> None:
            self.disk = disk
            disk.mkdir("/app")
            disk.fsync_dir("/")

        @rule(value=st.binary(max_size=8), data=st.data())
        def save(self, value: bytes, data: st.DataObject) -> None:
            self.pending = value
            if self.attempt(lambda: atomic_save(self.disk, "/app/f", value), data):
                self.saved.append(value)
            self.pending = None

        def recovered(self) -> None:
            found = self.disk.read("/app/f") if self.disk.exists("/app/f") else b""
            assert found in (self.saved[-1], self.pending)
            self.saved.append(found)


    TestSavedFile = SavedFile.TestCase

``crash_state`` draws the state, so Hypothesis explores and shrinks crash states along with
the operations; for exhaustive checks of short workloads iterate ``disk.crash_states``
instead (see docs/crashtest.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from pqueue.crashtest.disk import SimulatedCrash, SimulatedDisk
from pqueue.crashtest.models import POWER_LOSS, PersistenceModel
from pqueue.crashtest.strategies import crash_state

__all__ = ["CrashMachine"]


class CrashMachine(RuleBasedStateMachine):
    """Runs a system on a ``SimulatedDisk`` and crashes it inside and between operations.

    Class attributes a subclass may set:

    - ``model``: the ``PersistenceModel`` crashes follow (default ``POWER_LOSS``; an
      ``@initialize`` rule may also set ``self.model`` per run).
    - ``max_crash_ops``: a crash inside an operation (or a reopening) comes after at most
      this many of its state-changing file operations (40 by default). The crash point is
      drawn among the calls the operation was measured to make (see ``attempt``), so a
      short operation crashes as often as a long one.
    - ``max_nested_crashes``: how many times reopening after a crash may itself crash.

    Subclasses implement ``open(disk)`` and ``recovered()``. ``self.disk`` is the disk the
    system runs on (a new one after each crash), ``self.crashes`` counts the crashes so far.
    Each crash is also reported as a Hypothesis ``event`` (``pytest
    --hypothesis-show-statistics`` shows how often each kind happened).
    """

    model: PersistenceModel = POWER_LOSS
    max_crash_ops: int = 40
    max_nested_crashes: int = 2

    def __init__(self) -> None:
        super().__init__()
        self.disk = SimulatedDisk()
        self.crashes = 0

    def open(self, disk: SimulatedDisk) -> None:
        """Open the system under test on ``disk`` (the first time, and after each crash)."""
        raise NotImplementedError

    def recovered(self) -> None:
        """Check the system, just reopened after a crash, against the model (and bring the
        model up to date with what survived)."""
        raise NotImplementedError

    def attempt(self, operation: Callable[[], object], data: st.DataObject) -> bool:
        """Run ``operation``, perhaps crashing the disk inside it.

        Returns True if it completed. If the disk crashed, the system was reopened on a drawn
        crash state and ``recovered()`` was called; returns False. An operation that did not
        complete may or may not have taken effect: the model must allow both.

        The crash point is drawn among the state-changing calls the operation made: the
        operation runs to its end with the disk kept as it was before each of those calls
        (up to ``max_crash_ops + 1`` of them), then Hypothesis draws whether it crashed and
        after how many of them. A crash after ``n`` calls leaves the disk as it was before
        call ``n + 1``, what ``crash_after(n)`` would have left, and marks the disk the
        operation ran on crashed, so that any later call on it raises ``SimulatedCrash``.
        The operation itself never sees the crash: its effects outside the disk (on the
        test's own state) happen whole, so keep them out of it, as the model should change
        only after ``attempt`` returns. An exception the operation raises (an ``Exception``)
        is raised again unless a crash was drawn before it.
        """
        crashed = self._measure(operation, data, "crash after operations")
        if crashed is None:
            return True
        event("crash: inside an operation")
        self._restart(data, self.max_nested_crashes, crashed)
        return False

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """Crash between operations: the disk loses what the model allows, the system
        reopens."""
        event("crash: between operations")
        self._restart(data, self.max_nested_crashes, self.disk)

    def teardown(self) -> None:
        """Turn a ``SimulatedCrash`` that escaped a rule into an ``AssertionError``.

        The machine catches the crashes it arms. Any other one (a call through a process the
        test killed, on a disk that crashed before, or after a ``crash_after`` of the test's
        own) is a ``BaseException``, which Hypothesis would let through without shrinking
        or printing the steps; as an ``AssertionError`` it is a failure like any other.
        Hypothesis calls ``teardown`` as the run ends, however it ends: a subclass that
        overrides it must call ``super().teardown()``.
        """
        escaped = sys.exc_info()[1]
        super().teardown()
        if isinstance(escaped, SimulatedCrash):
            raise AssertionError(
                f"SimulatedCrash escaped a rule where the machine had not armed a crash: "
                f"{escaped} (a call on a disk that had crashed, through a killed process, "
                f"or a crash_after outside attempt?)"
            ) from escaped

    def _measure(
        self, operation: Callable[[], object], data: st.DataObject, label: str
    ) -> SimulatedDisk | None:
        """Run ``operation`` on ``self.disk`` and draw a crash point among its calls.

        ``None`` if it did not crash (an ``Exception`` it raised is raised again); else the
        disk as the crash left it, and the disk it ran on is crashed.
        """
        disk = self.disk
        error: Exception | None = None
        with disk._recording(self.max_crash_ops + 1) as before:
            try:
                operation()
            except SimulatedCrash:
                raise  # not a crash of the machine's: teardown() makes it a failure
            except Exception as exc:  # raised again below unless a crash came before it
                error = exc
        crash_at = None
        if before:
            crash_at = data.draw(
                st.none() | st.integers(min_value=0, max_value=len(before) - 1), label=label
            )
        if crash_at is None:
            if error is not None:
                raise error
            return None
        disk._crash()
        return before[crash_at]

    def _restart(self, data: st.DataObject, nesting: int, crashed: SimulatedDisk) -> None:
        """Reopen on a crash state of ``crashed``, perhaps crashing the reopening too."""
        self.crashes += 1
        self.disk = data.draw(crash_state(crashed, self.model), label="crash state")
        if nesting > 0:
            again = self._measure(
                lambda: self.open(self.disk), data, "crash while reopening after operations"
            )
            if again is not None:
                event("crash: while reopening after a crash")
                self._restart(data, nesting - 1, again)
                return
        else:
            self.open(self.disk)
        self.recovered()
