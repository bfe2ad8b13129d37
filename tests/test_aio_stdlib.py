"""CPython's own tests of asyncio.Queue (``test.test_asyncio.test_queues``), run against
pqueue.aio.AsyncQueue: the module's ``asyncio`` is swapped for one whose ``Queue`` opens an
AsyncQueue in a fresh directory.

They run where the module is importable with its ``IsolatedAsyncioTestCase`` form (Python
3.11+; 3.10's runs on a virtual-time test loop that no thread can take part in). The cases
left out, and why, are in ``NOT_APPLICABLE``; test_aio.py runs the same scenarios on every
Python, with waits for the thread in place of single loop iterations.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import types
import unittest
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqueue.aio import AsyncQueue, QueueShutDown

_VIRTUAL_TIME = sys.version_info < (3, 11)  # a bool here, not a version check for mypy
try:
    if _VIRTUAL_TIME:
        raise ImportError("3.10's test_queues runs on a virtual-time test loop")
    test_queues: Any = importlib.import_module("test.test_asyncio.test_queues")
except ImportError as exc:  # Debian and others ship Python without its test package
    pytest.skip(f"CPython's test_queues is not usable here: {exc}", allow_module_level=True)

_PRIVATE = "reads asyncio.Queue's private attributes or repr"
_ONE_STEP = (
    "expects a queue operation to be over after one 'await asyncio.sleep(0)'; an AsyncQueue "
    "writes in a thread (test_aio.py waits for it instead)"
)
NOT_APPLICABLE = {
    "test_repr": _PRIVATE,
    "test_str": _PRIVATE,
    "test_format": _PRIVATE,
    "test_get_with_putters": _PRIVATE,
    "test_cancelled_getters_not_being_held_in_self_getters": _PRIVATE,
    "test_cancelled_puts_not_being_held_in_self_putters": _PRIVATE,
    "test_generic_alias": "asyncio.Queue[int] is a types.GenericAlias; AsyncQueue is a Generic",
    "test_float_maxsize": "pqueue's maxsize is an int (a float raises TypeError)",
    "test_maxsize": _ONE_STEP,
    "test_put_cancelled_race": _ONE_STEP,
    "test_why_are_putters_waiting": _ONE_STEP,
    "test_cancelled_put_silence_value_error_exception": (
        "cancels a put() that asyncio.Queue holds waiting for room, but AsyncQueue may already"
        " be writing (its room was made by get_nowait()): the put then finishes, by the rule"
    ),
    "test_shutdown_nonempty": _ONE_STEP,
    "test_put_cancelled": (
        "expects put()'s task to be done once a get() has its item; AsyncQueue's put returns "
        "when its thread reports the write, which may be after another task got the item"
    ),
}
CLASSES = ["QueueBasicTests", "QueueGetTests", "QueuePutTests", "QueueJoinTests",
           "QueueShutdownTests"]


def cases() -> list[tuple[str, str]]:
    found = []
    for class_name in CLASSES:
        cls = getattr(test_queues, class_name, None)
        if cls is None:  # QueueShutdownTests: Python 3.13+
            continue
        found += [(class_name, name) for name in unittest.TestLoader().getTestCaseNames(cls)]
    return found


class _Asyncio(types.ModuleType):
    """asyncio, but for Queue (an AsyncQueue in a new directory) and QueueShutDown."""

    def __init__(self, queue: Any) -> None:
        super().__init__("asyncio")
        self.Queue = queue
        self.QueueShutDown = QueueShutDown

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def opener(tmp_path: Path) -> Iterator[Any]:
    opened: list[AsyncQueue[Any]] = []

    def open_queue(maxsize: int = 0) -> AsyncQueue[Any]:
        q: AsyncQueue[Any] = AsyncQueue(tmp_path / f"q{len(opened)}", maxsize)
        opened.append(q)
        return q

    yield open_queue
    for q in opened:
        q.close()


@pytest.mark.parametrize(("class_name", "name"), cases(), ids=str)
def test_cpython_case(
    class_name: str, name: str, opener: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name in NOT_APPLICABLE:
        pytest.skip(NOT_APPLICABLE[name])
    monkeypatch.setattr(test_queues, "asyncio", _Asyncio(opener))
    base = getattr(test_queues, class_name)
    cls = type(class_name, (base,), {"q_class": staticmethod(opener)})
    result = unittest.TestResult()
    cls(name).run(result)
    problems = result.errors + result.failures
    assert not problems, problems[0][1]
    assert result.testsRun == 1 and not result.skipped
