"""The code in docs/crashtest.md, and the examples in the docstrings of ``pqueue.crashtest``
and ``pqueue.crashtest.machine``, run and do what the text says."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from hypothesis import settings

import pqueue.crashtest
import pqueue.crashtest.machine
from pqueue.crashtest import SimulatedDisk

DOC = Path(__file__).resolve().parents[2] / "docs" / "crashtest.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def docstring_blocks(doc: str) -> list[str]:
    """The literal blocks (after a line ending in ``::``) of a reStructuredText docstring."""
    blocks = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        body = []
        for follow in lines[i + 1 :]:
            if follow.strip() and not follow.startswith(" "):
                break
            body.append(follow)
        blocks.append(textwrap.dedent("\n".join(body)))
    return blocks


def test_the_crashtest_guide_runs() -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "crashtest_guide"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    # The checks in the guide ran: the right save passed, the wrong ones were caught.
    assert namespace["violations"] is not None


def test_the_package_docstring_example_runs() -> None:
    (block,) = docstring_blocks(pqueue.crashtest.__doc__ or "")
    namespace: dict[str, object] = {}
    exec(compile(block, "pqueue/crashtest/__init__.py", "exec"), namespace)
    # It checked every crash point of the save, each in every crash state.
    assert isinstance(namespace["probe"], SimulatedDisk)
    assert namespace["probe"].operations == 4


def test_the_crash_machine_docstring_example_runs() -> None:
    (block,) = docstring_blocks(pqueue.crashtest.machine.__doc__ or "")
    namespace: dict[str, object] = {"__name__": "crash_machine_example"}
    exec(compile(block, "pqueue/crashtest/machine.py", "exec"), namespace)
    test_case: Any = namespace["TestSavedFile"]  # a unittest.TestCase class
    test_case.settings = settings(test_case.settings, stateful_step_count=10)
    test_case().runTest()
