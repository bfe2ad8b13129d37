"""pqueue.crashtest: check file-handling code against every state a crash can leave.

Run the code under test on a ``SimulatedDisk`` (an in-memory ``pqueue.io.FileSystem``), stop
it at any state-changing operation with ``disk.crash_after(n)`` (the code then sees
``SimulatedCrash``), and check that what it wrote is acceptable in each state
``disk.crash_states(model)`` yields. The ``PersistenceModel`` says what a crash keeps:
``PROCESS_CRASH`` (``kill -9``: everything that completed) or ``POWER_LOSS`` (only what was
fsynced is certain; unsynced writes and directory entries may be lost, writes torn).
``crash_state(disk, model)`` is a Hypothesis strategy for when there are too many states to
try them all. ``disk.process()`` gives a ``SimulatedProcess``: the disk as one of several
processes sharing it sees it, with its own locks, that can be killed alone.

For example, to check an atomic save (write a temporary file, fsync it, rename it over the
old one, fsync the directory)::

    import contextlib

    from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk

    def save(fs, data):
        fs.write("/app/config.tmp", data)
        fs.fsync("/app/config.tmp")
        fs.replace("/app/config.tmp", "/app/config")
        fs.fsync_dir("/app")

    before = SimulatedDisk()
    before.mkdir("/app")
    before.write("/app/config", b"old")
    before.fsync("/app/config")
    before.fsync_dir("/app")
    before.fsync_dir("/")

    probe = before.copy()
    save(probe, b"new")
    for n in range(probe.operations + 1):  # every crash point, and no crash at all
        disk = before.copy()
        disk.crash_after(n)
        with contextlib.suppress(SimulatedCrash):
            save(disk, b"new")
        for state in disk.crash_states(POWER_LOSS):
            assert state.read("/app/config") in (b"old", b"new")

Drop the ``fsync`` of the temporary file and the check fails: the rename can reach the disk
before the data does, leaving an empty or torn ``/app/config``.
"""

from typing import TYPE_CHECKING

from pqueue.crashtest.check import CrashCheckError as CrashCheckError
from pqueue.crashtest.check import CrashReport as CrashReport
from pqueue.crashtest.check import Violation as Violation
from pqueue.crashtest.check import check_crashes as check_crashes
from pqueue.crashtest.disk import SimulatedCrash as SimulatedCrash
from pqueue.crashtest.disk import SimulatedDisk as SimulatedDisk
from pqueue.crashtest.disk import SimulatedProcess as SimulatedProcess
from pqueue.crashtest.models import POWER_LOSS as POWER_LOSS
from pqueue.crashtest.models import PROCESS_CRASH as PROCESS_CRASH
from pqueue.crashtest.models import PersistenceModel as PersistenceModel
from pqueue.crashtest.mount import Mount as Mount
from pqueue.crashtest.mount import UnsupportedCallError as UnsupportedCallError
from pqueue.crashtest.mount import mount as mount
from pqueue.crashtest.strategies import crash_state as crash_state

if TYPE_CHECKING:
    from pqueue.crashtest.machine import CrashMachine as CrashMachine


def __getattr__(name: str) -> object:
    # CrashMachine needs Hypothesis (the crashtest extra); import it only when asked for.
    if name == "CrashMachine":
        from pqueue.crashtest.machine import CrashMachine  # noqa: PLC0415

        return CrashMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "POWER_LOSS",
    "PROCESS_CRASH",
    "CrashCheckError",
    "CrashMachine",
    "CrashReport",
    "Mount",
    "PersistenceModel",
    "SimulatedCrash",
    "SimulatedDisk",
    "SimulatedProcess",
    "UnsupportedCallError",
    "Violation",
    "check_crashes",
    "crash_state",
    "mount",
]
