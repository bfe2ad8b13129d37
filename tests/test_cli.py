"""The command line (``pqueue`` / ``python -m pqueue``), run as an operator runs it: in a
process of its own, on queues that other processes hold open, on damaged ones."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import pqueue
from pqueue import Queue, serializers


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pqueue", *args], capture_output=True, text=True, timeout=60,
        check=False,
    )


def files(directory: str) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time."""
    out = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[path] = (f.read(), os.stat(path).st_mtime_ns)
    return out


@contextmanager
def holder(qdir: str, code: str, exclusive: bool = False) -> Iterator[subprocess.Popen[str]]:
    """A process that opens the queue at ``qdir`` (as ``q``), runs ``code``, says so, and
    keeps it open until its stdin closes."""
    script = textwrap.dedent(f"""
        import sys
        from pqueue import Queue
        q = Queue({qdir!r}, exclusive={exclusive!r})
        {code}
        print("ready", flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_version_and_help_show_the_public_commands_only() -> None:
    out = cli("--version")
    assert (out.returncode, out.stdout.strip()) == (0, f"pqueue {pqueue.__version__}")
    out = cli("--help")
    assert out.returncode == 0
    for command in ("stat", "peek", "dump", "verify", "purge", "migrate", "bench", "demo"):
        assert f"    {command} " in out.stdout
    assert "_producer" not in out.stdout and "_worker" not in out.stdout
    for command in ("stat", "peek", "dump", "verify", "purge", "migrate", "bench", "demo"):
        sub = cli(command, "--help")
        assert sub.returncode == 0 and "usage: pqueue " + command in sub.stdout


def test_stat_counts_a_queue_another_process_holds_open_and_changes_nothing(qdir: str) -> None:
    with Queue[int](qdir, chunksize=4) as q:
        for i in range(10):
            q.put(i)
    with holder(qdir, "held = [q.get_delivery() for _ in range(3)]; held[1].ack()"):
        before = files(qdir)
        out = cli("stat", "--json", qdir)
        assert out.returncode == 0, out.stderr
        found = json.loads(out.stdout)
        assert files(qdir) == before  # read only
        text = cli("stat", qdir)
    assert {k: found[k] for k in ("waiting", "delivered", "unfinished", "participants")} == {
        "waiting": 7, "delivered": 2, "unfinished": 9, "participants": 1,
    }
    assert found["exclusive"] is False and found["dead_letters"] is None
    assert (found["serializer"], found["durability"], found["chunksize"]) == ("pickle", "fsync", 4)
    assert found["format_version"] == 2 and found["next_seq"] == 10
    assert found["chunk_files"] == 3 and found["bytes_on_disk"] > 0
    assert text.returncode == 0
    assert "  waiting:            7" in text.stdout
    assert "  delivered:          2 (not yet acknowledged)" in text.stdout
    # Once the holder is gone its deliveries are waiting items again.
    found = json.loads(cli("stat", "--json", qdir).stdout)
    assert (found["waiting"], found["delivered"], found["participants"]) == (9, 0, 0)


def test_stat_of_a_queue_held_exclusively_says_deliveries_are_unknown(qdir: str) -> None:
    with Queue[int](qdir) as q:
        q.put(1)
    with holder(qdir, "q.get()", exclusive=True):
        found = json.loads(cli("stat", "--json", qdir).stdout)
    assert (found["exclusive"], found["delivered"], found["unfinished"]) == (True, None, None)
    assert found["waiting"] == 1  # as far as the files say


def test_stat_counts_dead_letters(qdir: str) -> None:
    with Queue[str](qdir, max_attempts=1) as q:
        q.put("poison")
        q.put("fine")
        q.get_delivery().nack()
        assert q.get() == "fine"
        q.task_done()
    found = json.loads(cli("stat", "--json", qdir).stdout)
    assert (found["waiting"], found["dead_letters"]) == (0, 1)


def test_peek_shows_the_next_items_without_delivering_them(qdir: str) -> None:
    with Queue[Any](qdir, chunksize=2) as q:
        for item in ("a", {"b": 1}, (2, 3), b"\x00"):
            q.put(item)
        d = q.get_delivery()
        d.nack()  # given back: first again
    with holder(qdir, "pass"):
        before = files(qdir)
        out = cli("peek", "-n", "3", qdir)
        assert files(qdir) == before
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["'a'", "{'b': 1}", "(2, 3)"]
    with Queue[Any](qdir) as q:
        assert q.get_delivery().attempt == 2  # peeking delivered nothing
    assert cli("peek", qdir).stdout == "'a'\n"  # given back when its Queue closed
    assert cli("peek", "-n", "0", qdir).stdout == ""


def test_dump_writes_json_lines_for_a_json_queue_and_repr_otherwise(tmp_path: Any) -> None:
    jdir, pdir = str(tmp_path / "json"), str(tmp_path / "pickle")
    with Queue[Any](jdir, serializer=json) as q:
        for item in ({"id": 1}, [2, "x"], "é"):
            q.put(item)
    out = cli("dump", jdir)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [{"id": 1}, [2, "x"], "é"]
    with Queue[Any](pdir) as q:
        q.put((1, 2))
        q.put({3})
    assert cli("dump", pdir).stdout.splitlines() == ["(1, 2)", "{3}"]
    out = cli("dump", "--json", pdir)
    assert out.returncode == 1
    assert "item 2 (in delivery order) is not JSON" in out.stderr
    raw = cli("dump", "--raw", pdir).stdout.splitlines()
    assert [pickle.loads(ast.literal_eval(line)) for line in raw] == [(1, 2), {3}]


def test_dump_of_an_applications_own_serializer_needs_it_named(qdir: str) -> None:
    with Queue[bytes](qdir, serializer=serializers.BYTES) as q:
        q.put(b"abc")
    assert cli("dump", qdir).stdout == "b'abc'\n"  # a serializer pqueue knows
    custom = str(os.path.dirname(qdir))
    with open(os.path.join(custom, "myser.py"), "w") as f:
        f.write("name = 'myser'\ndef dumps(o): return o.encode()[::-1]\n"
                "def loads(b): return b[::-1].decode()\n")
    sys.path.insert(0, custom)
    try:
        myser = importlib.import_module("myser")
        with Queue[str](qdir + "2", serializer=myser) as q:
            q.put("hello")
    finally:
        sys.path.remove(custom)
        sys.modules.pop("myser", None)
    out = cli("dump", qdir + "2")
    assert out.returncode == 2 and "--serializer MODULE:NAME" in out.stderr
    env_out = subprocess.run(
        [sys.executable, "-m", "pqueue", "dump", "--serializer", "myser", qdir + "2"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": custom}, timeout=60,
        check=False,
    )
    assert (env_out.returncode, env_out.stdout) == (0, "'hello'\n")


def test_verify_passes_a_whole_queue_held_open_by_another_process(qdir: str) -> None:
    with Queue[int](qdir, chunksize=3) as q:
        for i in range(10):
            q.put(i)
        q.get()
        q.task_done()
    with holder(qdir, "q.get_delivery()"):
        before = files(qdir)
        out = cli("verify", qdir)
        assert files(qdir) == before
    assert out.returncode == 0, out.stdout + out.stderr
    assert "whole: 10 item records in 4 chunk files" in out.stdout


def test_verify_names_each_damaged_file_and_offset(qdir: str) -> None:
    with Queue[bytes](qdir, chunksize=3) as q:
        for i in range(9):
            q.put(bytes([i]) * 50)
    record = 17 + len(pickle.dumps(b"x" * 50))
    for name, index in (("q00000", 1), ("q00002", 0)):
        with open(os.path.join(qdir, name), "r+b") as f:
            f.seek(index * record + 30)
            f.write(b"\xff\xff")
    out = cli("verify", "--json", qdir)
    assert out.returncode == 1
    found = json.loads(out.stdout)
    assert found["ok"] is False
    assert [(os.path.basename(d["path"]), d["offset"]) for d in found["damage"]] == [
        ("q00000", record), ("q00002", 0),
    ]
    assert all(d["reason"] == "checksum mismatch" for d in found["damage"])
    text = cli("verify", qdir)
    assert f"damaged: {os.path.join(qdir, 'q00000')} at offset {record}: checksum" in text.stdout
    assert "DAMAGED (2 places)" in text.stdout


def test_verify_reports_a_torn_tail_as_repairable(qdir: str) -> None:
    with Queue[int](qdir, durability="flush") as q:
        q.put(1)
    with open(os.path.join(qdir, "q00000"), "ab") as f:
        f.write(b"\xd1\x01\x02")  # a record a crash cut short
    out = cli("verify", qdir)
    assert out.returncode == 0, out.stdout
    assert "note:" in out.stdout and "whole: 1 item records" in out.stdout


def test_a_damaged_info_file_is_named(qdir: str) -> None:
    with Queue[int](qdir) as q:
        q.put(1)
    info = os.path.join(qdir, "info")
    with open(info, "r+b") as f:
        f.seek(5)
        f.write(b"#")
    for command in ("stat", "peek", "dump"):
        out = cli(command, qdir)
        assert out.returncode == 1 and info in out.stderr, (command, out.stderr)
    out = cli("verify", qdir)
    assert out.returncode == 1 and f"damaged: {info} at offset" in out.stdout


def test_what_is_not_a_queue_is_a_usage_error(tmp_path: Any) -> None:
    missing = str(tmp_path / "missing")
    out = cli("stat", missing)
    assert out.returncode == 2 and f"{missing}: no such directory" in out.stderr
    out = cli("verify", str(tmp_path))
    assert out.returncode == 2 and "not a pqueue queue directory" in out.stderr
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "info").write_bytes(pickle.dumps({"head": [0, 0, 0], "tail": [0, 0, 0]}))
    out = cli("stat", str(legacy))
    assert out.returncode == 2 and "0.1" in out.stderr
    out = cli("peek", "-n", "-1", str(tmp_path))
    assert out.returncode == 2 and "must be >= 0" in out.stderr


@pytest.mark.parametrize("command", ["stat", "peek", "dump", "verify"])
def test_the_read_only_commands_never_create_a_queue(tmp_path: Any, command: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(command, str(empty)).returncode == 2
    assert list(empty.iterdir()) == []


def test_bench_runs_the_benchmark_from_the_installed_package(tmp_path: Any) -> None:
    out = cli("bench", "--dir", str(tmp_path), "--n-slow", "10", "--n-fast", "100")
    assert out.returncode == 0, out.stderr
    assert "| pqueue fsync" in out.stdout or "pqueue" in out.stdout.splitlines()[0]
    assert "## Targets" in out.stdout
    assert list(tmp_path.iterdir()) == []  # its directories are removed
