"""Make the legacy queue directories that ``tests/test_migrate.py`` migrates, with the real
old packages (pqueue 0.1.7 and persist-queue 1.x), and record what they deliver.

Run it with the Python of a separate virtual environment that has the old packages (they
cannot live beside this pqueue: pqueue 0.1.7 has the same import name)::

    python3 -m venv /tmp/legacy-venv
    /tmp/legacy-venv/bin/pip install 'pqueue==0.1.7' 'persist-queue>=1,<2'
    /tmp/legacy-venv/bin/python tests/data/legacy/make_fixtures.py

It replaces the fixture directories next to this file (only those named in ``FIXTURES``).
Each ``<name>/`` is a queue directory as the old package left it; ``<name>.expected.json``
says which package and Python made it and what reopening a copy of it with that package
delivers, in order (``delivered``: the ``repr`` of each item, read back in the tests with
``ast.literal_eval``), and the error that stopped the delivery, if any.

What "consumed" means in these directories: both old packages keep a read position (the
``tail``) in memory and write it to ``info`` on ``task_done()`` and on every ``put()``.
An item got without ``task_done()`` is therefore delivered again after a reopen, unless a
later ``task_done()`` (of any item) or ``put()`` wrote the position past it; with
persist-queue's ``autosave=True`` every ``get()`` writes it at once. The recorded
``delivered`` list is what the package itself delivers on reopen, whatever the reason.

The old packages write their checkpoint's temp file into ``tempdir``; it is a directory of
the staging area here (on the fixtures' file system), never the system temp dir.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import platform
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHUNKSIZE = 3

# Items of several types that pickle round-trips and repr states (for ast.literal_eval).
PICKLED_ITEMS: list[Any] = [
    "alpha",
    b"\x00\xffraw bytes",
    42,
    {"job": 7, "tags": ["a", "b"]},
    (1, "two", 3.5),
    "ünïcödé",
    -(2**70),
    None,
    [1, [2, [3]]],
    {1, 2},
    2.25,
    {"nested": {"t": (True, False)}},
]
# What JSON round-trips unchanged.
JSON_ITEMS: list[Any] = [
    "alpha",
    42,
    {"job": 7, "tags": ["a", "b"]},
    [1, "two", 3.5],
    "ünïcödé",
    None,
    2.25,
    True,
    {"nested": {"n": [1, 2]}},
    -3,
    "last",
]

Opener = Callable[[str], Any]


def _staging() -> Path:
    path = HERE / ".staging"
    if path.exists():
        shutil.rmtree(path)
    (path / "tmp").mkdir(parents=True)
    return path


def _drain_copy(source: Path, opener: Opener, staging: Path) -> tuple[list[str], str | None]:
    """What reopening a copy of ``source`` with the old package delivers, in order, and the
    error that stopped it (None when the queue emptied)."""
    copy = staging / "reopen"
    shutil.copytree(source, copy)
    delivered: list[str] = []
    error = None
    try:
        q = opener(str(copy))
        while q.qsize() > 0:
            delivered.append(repr(q.get(block=False)))
    except Exception as exc:  # what the old package raises on damage
        error = f"{type(exc).__name__}: {exc}"
    shutil.rmtree(copy)
    return delivered, error


def _partly_consumed(q: Any, items: list[Any]) -> None:
    """Spread ``items`` over several chunks and consume some of them in each of the ways the
    old packages record (or do not record) consumption."""
    for item in items[:8]:
        q.put(item)
    for _ in range(4):  # got and finished: consumed (task_done writes the tail)
        q.get()
        q.task_done()
    q.get()  # got, never finished, but the next put writes the tail past it: consumed
    q.put(items[8])
    for item in items[9:]:
        q.put(item)
    q.get()  # got and never finished, nothing written after: delivered again on reopen
    q.get()


def _drained(q: Any, items: list[Any]) -> None:
    """Every item got and finished."""
    for item in items[:5]:
        q.put(item)
    for _ in range(5):
        q.get()
        q.task_done()


def _nothing(q: Any, items: list[Any]) -> None:
    """Opened (which makes the directory and an empty first chunk), never used."""


def _unfinished_only(q: Any, items: list[Any]) -> None:
    """Items got without ``task_done()`` and nothing written since: all delivered again."""
    for item in items[:7]:
        q.put(item)
    for _ in range(3):
        q.get()


def _autosaved(q: Any, items: list[Any]) -> None:
    """persist-queue with ``autosave=True``: each ``get()`` writes the tail, so items got
    without ``task_done()`` are consumed."""
    for item in items[:7]:
        q.put(item)
    for _ in range(2):
        q.get()


def _crash_after_write(q: Any, items: list[Any]) -> None:
    """A put whose record reached the chunk file but whose ``info`` was never written (the
    process died in between): the old package cuts the record off on reopen."""
    for item in items[:4]:
        q.put(item)
    hnum = q.info["head"][0]
    with open(os.path.join(q.path, f"q{hnum:05d}"), "ab") as f:
        f.write(pickle.dumps(items[4], protocol=4))


def _torn_last_record(q: Any, items: list[Any]) -> None:
    """The head chunk lost the end of its last record while ``info`` (renamed into place)
    survived: what a power loss can leave, since neither package fsyncs the chunk before
    the rename. The old package delivers the items before it, then fails on every get."""
    for item in items[:5]:
        q.put(item)
    hnum, _, hoffset = q.info["head"]
    path = os.path.join(q.path, f"q{hnum:05d}")
    del q
    os.truncate(path, hoffset - 3)


Scenario = Callable[[Any, list[Any]], None]


def main() -> int:
    old_pqueue = importlib.import_module("pqueue")
    persistqueue = importlib.import_module("persistqueue")
    pq_json = importlib.import_module("persistqueue.serializers.json")
    pq_version = metadata.version("pqueue")
    ps_version = metadata.version("persist-queue")
    if pq_version != "0.1.7" or not ps_version.startswith("1."):
        print(f"need pqueue 0.1.7 and persist-queue 1.x, found {pq_version}, {ps_version}",
              file=sys.stderr)
        return 1
    staging = _staging()
    tmp = str(staging / "tmp")

    def pqueue_017(path: str) -> Any:
        return old_pqueue.Queue(path, chunksize=CHUNKSIZE, tempdir=tmp)

    def persist_pickle(path: str) -> Any:
        return persistqueue.Queue(path, chunksize=CHUNKSIZE, tempdir=tmp)

    def persist_json(path: str) -> Any:
        return persistqueue.Queue(path, chunksize=CHUNKSIZE, tempdir=tmp, serializer=pq_json)

    def persist_autosave(path: str) -> Any:
        return persistqueue.Queue(path, chunksize=CHUNKSIZE, tempdir=tmp, autosave=True)

    pq = f"pqueue {pq_version}"
    ps = f"persist-queue {ps_version}"
    # name -> (made with, format, scenario, items, opener that writes, opener that reopens)
    fixtures: dict[str, tuple[str, str, Scenario, list[Any], Opener, Opener]] = {
        "pqueue01-partial": (pq, "pqueue-0.1", _partly_consumed, PICKLED_ITEMS,
                             pqueue_017, pqueue_017),
        "pqueue01-unfinished": (pq, "pqueue-0.1", _unfinished_only, PICKLED_ITEMS,
                                pqueue_017, pqueue_017),
        "pqueue01-drained": (pq, "pqueue-0.1", _drained, PICKLED_ITEMS, pqueue_017,
                             pqueue_017),
        "pqueue01-empty": (pq, "pqueue-0.1", _nothing, PICKLED_ITEMS, pqueue_017, pqueue_017),
        "pqueue01-crash-after-write": (pq, "pqueue-0.1", _crash_after_write, PICKLED_ITEMS,
                                       pqueue_017, pqueue_017),
        "pqueue01-torn": (pq, "pqueue-0.1", _torn_last_record, PICKLED_ITEMS, pqueue_017,
                          pqueue_017),
        "persistqueue-partial": (ps, "pqueue-0.1", _partly_consumed, PICKLED_ITEMS,
                                 persist_pickle, persist_pickle),
        "persistqueue-autosave": (ps, "pqueue-0.1", _autosaved, PICKLED_ITEMS,
                                  persist_autosave, persist_pickle),
        "persistqueue-json-partial": (ps, "persist-queue", _partly_consumed, JSON_ITEMS,
                                      persist_json, persist_json),
        "persistqueue-json-drained": (ps, "persist-queue", _drained, JSON_ITEMS,
                                      persist_json, persist_json),
    }
    for name, (made_with, fmt, scenario, items, writer, reader) in fixtures.items():
        build = staging / name
        build.mkdir()  # pqueue 0.1.7 looks at the directory before it makes it
        q = writer(str(build))
        scenario(q, items)
        del q  # neither package writes anything when the object goes
        delivered, error = _drain_copy(build, reader, staging)
        target = HERE / name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(build), target)
        expected = {
            "made_with": made_with,
            "python": platform.python_version(),
            "format": fmt,
            "chunksize": CHUNKSIZE,
            "scenario": " ".join((scenario.__doc__ or "").split()),
            "delivered": delivered,
            "error": error,
        }
        (HERE / f"{name}.expected.json").write_text(
            json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        files = sorted(p.name for p in target.iterdir())
        print(f"{name}: {files}, {len(delivered)} delivered, error {error}")
    shutil.rmtree(staging)
    return 0


if __name__ == "__main__":
    sys.exit(main())
