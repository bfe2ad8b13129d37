"""The code in docs/crashtest.md runs, and does what the text says."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "crashtest.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_the_crashtest_guide_runs() -> None:
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "crashtest_guide"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    # The checks in the guide ran: the right save passed, the wrong ones were caught.
    assert namespace["violations"] is not None
