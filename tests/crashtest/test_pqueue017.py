"""pqueue 0.1.7, our predecessor, run unmodified under ``check_crashes``: its source
(``tests/data/pqueue017/pqueue.py``, BSD licence) knows nothing of the harness, and the mount
sends its ``open``/``os`` calls to the simulated disk.

0.1.7 never fsyncs: it appends each item to a chunk file and flushes it, then writes its
``info`` file (a pickle of head, tail and size) to a temp file with ``os.write`` and renames
it over ``info``. That survives ``kill -9``, but a power loss can keep the rename and lose
the data behind it (of the temp file: ``info`` is empty and the queue no longer opens; of
the chunk: ``info`` points past its end and the item is gone). The same workload and check
pass with pqueue's own ``Queue``.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pqueue import Empty, Queue
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    CrashReport,
    PersistenceModel,
    SimulatedDisk,
    Violation,
    check_crashes,
    mount,
)

SOURCE = Path(__file__).resolve().parent.parent / "data" / "pqueue017" / "pqueue.py"
QUEUE = "/app/q"
TEMPDIR = "/app/tmp"  # 0.1.7's default, the real /tmp, is another file system (EXDEV)


def load_pqueue017() -> ModuleType:
    """The vendored source as a module of its own, under a private name (never ``pqueue``,
    which is this project)."""
    spec = importlib.util.spec_from_file_location("_pqueue017_under_test", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pqueue017() -> ModuleType:
    return load_pqueue017()


class History:
    """A workload of ``steps`` (an item to put, ``"get"`` or ``"task_done"``) on a queue
    that ``open`` makes and ``close`` closes, noting which calls returned; and the check of
    what reopening the queue finds: every item whose put returned, in put order, unless its
    ``task_done`` was called (an item got but not finished must come back), and nothing
    that was never put."""

    def __init__(self, open_queue: Callable[[], Any], close: Callable[[Any], None],
                 steps: tuple[str, ...]) -> None:
        self.open = open_queue
        self.close = close
        self.steps = steps
        self.called: list[str] = []
        self.returned: list[str] = []
        self.got: list[str] = []
        self.acking: str | None = None
        self.acked: list[str] = []

    @staticmethod
    def setup() -> None:
        os.makedirs(QUEUE)
        os.makedirs(TEMPDIR)

    def workload(self) -> None:
        self.called, self.returned, self.got, self.acking, self.acked = [], [], [], None, []
        q = self.open()
        for step in self.steps:
            if step == "get":
                self.got.append(q.get(block=False))
            elif step == "task_done":
                self.acking = self.got[len(self.acked)]
                q.task_done()
                self.acked.append(self.acking)
                self.acking = None
            else:
                self.called.append(step)
                q.put(step)
                self.returned.append(step)
        self.close(q)

    def check(self) -> None:
        try:
            q = self.open()
        except Exception as exc:
            raise AssertionError(f"the queue does not open: {exc!r}") from exc
        delivered: list[str] = []
        try:
            while True:
                try:
                    delivered.append(q.get(block=False))
                except Empty:
                    break
                except Exception as exc:
                    raise AssertionError(
                        f"reopened, it delivers {delivered}, then get() raises {exc!r}"
                    ) from exc
        finally:
            self.close(q)
        # Raised, not asserted: the violations then quote these messages as they are.
        if not set(delivered) <= set(self.called):
            raise AssertionError(f"never put: {delivered}")
        owed = [item for item in self.returned if item not in [*self.acked, self.acking]]
        missing = [item for item in owed if item not in delivered]
        if missing:
            raise AssertionError(f"lost {missing}: reopened, it delivers {delivered}")
        if [item for item in delivered if item in owed] != owed:
            raise AssertionError(f"out of order or twice: {delivered}, owed {owed}")

    def run(self, model: PersistenceModel) -> CrashReport:
        return check_crashes(self.workload, self.check, at="/app", setup=self.setup,
                             model=model)


PUTS = ("a", "b")
RECORD = len(pickle.dumps("a"))  # the bytes of one item in 0.1.7's chunk file
PUT_GET_DONE = ("a", "b", "get", "task_done")


def history017(module: ModuleType, steps: tuple[str, ...]) -> History:
    def close(q: Any) -> None:  # 0.1.7 has no close(): its two chunk files stay open
        q.headf.close()
        q.tailf.close()

    return History(lambda: module.Queue(QUEUE, tempdir=TEMPDIR), close, steps)


def test_the_queue_and_its_tempdir_are_on_one_device_of_the_mount(
    pqueue017: ModuleType,
) -> None:
    """0.1.7 refuses a tempdir whose ``st_dev`` is not the queue's: the mount gives every
    path of its disk one device, and not that of the real file system."""
    with mount(SimulatedDisk(), at="/app"):
        History.setup()
        assert os.stat(QUEUE).st_dev == os.stat(TEMPDIR).st_dev != os.stat("/tmp").st_dev
        q = pqueue017.Queue(QUEUE, tempdir=TEMPDIR)
        q.headf.close()
        q.tailf.close()
        with pytest.raises(ValueError, match="same path filesystem"):
            pqueue017.Queue(QUEUE, tempdir="/tmp")


def test_0_1_7_survives_a_process_crash(pqueue017: ModuleType) -> None:
    report = history017(pqueue017, PUT_GET_DONE).run(PROCESS_CRASH)
    report.assert_ok()
    kinds = [op.kind for op in report.log]
    assert {"create", "write", "rename"} <= set(kinds)
    assert "fsync" not in kinds and "fsync_dir" not in kinds  # it never calls fsync
    renames = [op.call for op in report.log if op.kind == "rename"]
    assert len(renames) == 3  # info, saved by each put and by task_done
    assert all(re.fullmatch(r"os\.rename\('/app/tmp/tmp\w+', '/app/q/info'\)", call)
               for call in renames), renames


def test_0_1_7_loses_an_unfinished_item_to_the_next_put_even_in_a_process_crash(
    pqueue017: ModuleType,
) -> None:
    """Its ``get`` moves the tail in memory only, and the next ``put`` saves it in ``info``:
    an item got but not finished is gone after a restart, without any lost write."""
    report = history017(pqueue017, ("a", "get", "b")).run(PROCESS_CRASH)
    assert not report.ok
    assert report.log[-1].kind == "rename"  # the put of b saving info, the tail past a
    assert [v.crash_point for v in report.violations] == [report.operations]
    violation = report.violations[0]
    assert violation.crashed_in is None  # the workload had returned
    assert violation.differences == []  # every file is as the program left it
    assert str(violation).endswith("\n  check failed: lost ['a']: reopened, it delivers ['b']")


def lost_info_data(v: Violation) -> bool:
    """The queue's ``info`` rename kept, the data of the temp file renamed lost: ``info``
    is empty, and the queue does not open."""
    temps = [m.group(1) for m in (
        re.fullmatch(r"#\d+ os\.write to (/app/tmp/tmp\w+) \(bytes 0-\d+\)", lost)
        for lost in v.lost) if m is not None]
    text = str(v)
    return (
        any(re.fullmatch(rf"#\d+ os\.rename\('{re.escape(temp)}', '/app/q/info'\)", kept)
            for temp in temps for kept in v.kept)
        and "\n  /app/q/info: 0 bytes b'', the program saw " in text
        and text.endswith(
            "\n  check failed: the queue does not open: EOFError('Ran out of input')")
    )


def lost_chunk_data(v: Violation) -> bool:
    """Every call returned, the last ``info`` rename kept, the second item's write to the
    chunk lost: ``info`` points past the end of the chunk, where 0.1.7 reads nothing."""
    text = str(v)
    return (
        v.crashed_in is None
        and any(re.fullmatch(rf"#\d+ write to /app/q/q00000 \(bytes {RECORD}-{2 * RECORD - 1}\)",
                             lost) for lost in v.lost)
        and any(re.fullmatch(r"#\d+ os\.rename\('/app/tmp/tmp\w+', '/app/q/info'\)", kept)
                and kept.startswith(f"#{v.operations} ") for kept in v.kept)
        and f"\n  /app/q/q00000: {RECORD} bytes " in text
        and text.endswith("\n  check failed: reopened, it delivers ['a'], then get() raises "
                          "EOFError('Ran out of input')")
    )


def test_0_1_7_loses_items_to_a_power_loss(pqueue017: ModuleType) -> None:
    """Two puts: from the first that returns on, a crash state loses it or the queue."""
    report = history017(pqueue017, PUTS).run(POWER_LOSS)
    assert not report.ok
    first_put = next(op for op in report.log if op.kind == "rename").number + 1
    assert report.violations[0].crash_point == first_put  # as soon as a put has returned
    failures = {str(v.error).split(":")[0] for v in report.violations}
    assert "the queue does not open" in failures
    assert "lost ['b']" in failures  # info lost, or an older one: it opens without b
    # Explaining a violation enumerates the crash states again: only a few are explained.
    empty_info = [v for v in report.violations if v.crash_point == first_put
                  and str(v.error) == "the queue does not open: EOFError('Ran out of input')"]
    assert any(lost_info_data(v) for v in empty_info), report.text()
    chunk_lost = [v for v in report.violations if v.crashed_in is None and str(v.error)
                  == "reopened, it delivers ['a'], then get() raises EOFError('Ran out of input')"]
    assert any(lost_chunk_data(v) for v in chunk_lost), report.text()


def test_pqueue_passes_the_same_check_on_a_power_loss() -> None:
    """The contrast: the same workload and check with pqueue's own queue, its temp files
    in the same tempdir (``test_check_crashes.py`` checks its contract more fully;
    ``exclusive``: a shared queue's peer files take several times the crash states)."""

    def close(q: Any) -> None:
        q.close()

    history = History(lambda: Queue(QUEUE, tempdir=TEMPDIR, exclusive=True), close, PUTS)
    report = history.run(POWER_LOSS)
    report.assert_ok()
    assert {"fsync", "fsync_dir"} <= {op.kind for op in report.log}
    assert any(op.call.startswith("os.replace('/app/tmp/") for op in report.log)
