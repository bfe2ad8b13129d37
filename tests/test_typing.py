"""Typing as users meet it: mypy (strict, as the project runs it on the tests) checks this
file, where ``queue.Queue`` and ``pqueue.Queue`` are both ``QueueLike``; and the README's
examples pass mypy strict too."""

from __future__ import annotations

import queue
import re
from pathlib import Path

import pytest

from pqueue import Durability, Queue, QueueLike

README = Path(__file__).resolve().parent.parent / "README.md"


def drain(jobs: QueueLike[int]) -> list[int]:
    out = []
    while not jobs.empty():
        out.append(jobs.get_nowait())
        jobs.task_done()
    return out


def test_the_stdlib_queue_and_pqueue_are_both_queue_like(qdir: str) -> None:
    stdlib: queue.Queue[int] = queue.Queue()
    mode: Durability = "flush"
    with Queue[int](qdir, durability=mode) as durable:
        for q in (stdlib, durable):
            q.put(1)
            q.put_nowait(2)
            assert drain(q) == [1, 2]
            q.join()


def readme_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    examples = readme_examples()
    assert len(examples) >= 4
    paths = []
    for i, code in enumerate(examples):
        path = tmp_path / f"readme_example_{i}.py"
        path.write_text(code)
        paths.append(str(path))
    out, err, status = api.run([
        "--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), *paths,
    ])
    assert status == 0, out + err
