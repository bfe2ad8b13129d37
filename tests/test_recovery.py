"""Reopening a directory left by a crash, or damaged: repaired when nothing acknowledged is
lost, a clear error naming file and offset when something would be.

A crash is simulated by opening the directory again in the same process: the new Queue
supersedes the old one without writing anything, as if the process had died.
"""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

import records
from pqueue import (
    CorruptQueueError,
    LegacyFormatError,
    Queue,
    QueueBrokenError,
    UnsupportedFormatError,
)
from pqueue.core.codec import HEADER_SIZE
from pqueue.io import shell
from pqueue.io.fs import OsFileSystem
from pqueue.serializers import BYTES


@pytest.fixture(autouse=True, params=["1 MiB", "5 B"], ids=["window-1MiB", "window-5B"])
def view_window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery reads chunk files a window at a time: run every scenario with the real
    window and with one so small that every record straddles windows."""
    if request.param == "5 B":
        monkeypatch.setattr(shell, "_VIEW_WINDOW", 5)


def crashed_queue(path: str, items: list[Any], **kwargs: Any) -> Queue[Any]:
    """A queue holding ``items``, left open (its last writes never checkpointed)."""
    q: Queue[Any] = Queue(path, **kwargs)
    for item in items:
        q.put(item)
    return q


def record_offsets(path: str) -> list[int]:
    """The offsets of the whole records at the start of chunk file ``path``, and their end."""
    return records.record_offsets(Path(path).read_bytes(), records.salt_of(Path(path).parent))


def snapshot(path: str) -> dict[str, bytes]:
    return {n: Path(path, n).read_bytes() for n in sorted(os.listdir(path)) if n != "lock"}


def drain(q: Queue[Any]) -> list[Any]:
    out = []
    while q.qsize():
        out.append(q.get())
        q.task_done()
    return out


# --- repaired --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["cut", "zeros", "garbage"])
def test_a_torn_last_record_is_cut_off(qdir: str, damage: str) -> None:
    crashed_queue(qdir, list(range(5)))
    chunk = Path(qdir, "q00000")
    offsets = record_offsets(str(chunk))
    last, end = offsets[-2], offsets[-1]
    data = bytearray(chunk.read_bytes())
    middle = last + (end - last) // 2
    if damage == "cut":
        del data[middle:]
    elif damage == "zeros":
        data[middle:end] = bytes(end - middle)
    else:
        data[middle:] = os.urandom(len(data) - middle)
    chunk.write_bytes(bytes(data))
    with Queue[int](qdir) as q:
        assert q.qsize() == 4
        q.put(99)
        assert drain(q) == [0, 1, 2, 3, 99]


def test_garbage_after_the_last_record_of_every_chunk_changes_nothing(qdir: str) -> None:
    crashed_queue(qdir, list(range(10)), chunksize=3)
    for name in ("q00000", "q00001", "q00002", "q00003"):
        chunk = Path(qdir, name)
        end = record_offsets(str(chunk))[-1]
        with chunk.open("r+b") as f:
            f.seek(end)
            f.write(b"\xd1" + os.urandom(300))
    with Queue[int](qdir) as q:
        assert q.qsize() == 10
        q.put(10)
        assert drain(q) == list(range(11))


def test_a_garbage_file_where_the_next_chunk_goes_is_not_read(qdir: str) -> None:
    crashed_queue(qdir, list(range(4)), chunksize=2)
    Path(qdir, "q00002").write_bytes(b"\xd1" + os.urandom(500))
    with Queue[int](qdir) as q:
        assert q.qsize() == 4
        for item in (4, 5, 6):
            q.put(item)
        assert drain(q) == [0, 1, 2, 3, 4, 5, 6]


def test_a_garbage_next_chunk_of_a_closed_queue_is_not_read(qdir: str) -> None:
    with Queue[int](qdir, chunksize=2) as q:
        for item in range(4):
            q.put(item)
    Path(qdir, "q00002").write_bytes(bytes(100) + b"\xd1" * 50)
    with Queue[int](qdir) as q:
        q.put(4)
        assert drain(q) == [0, 1, 2, 3, 4]


def test_orphaned_temp_files_are_removed(tmp_path: Path) -> None:
    qdir, temp = tmp_path / "q", tmp_path / "t"
    temp.mkdir()
    Queue(qdir, tempdir=temp).close()
    Path(qdir, "info.tmp").write_bytes(b"half a checkpoint")
    orphan = next(iter([*os.listdir(temp), "none"]))
    assert orphan == "none"
    with Queue[int](qdir) as q:
        q.put(1)
    assert not Path(qdir, "info.tmp").exists()
    with Queue[int](qdir, tempdir=temp) as q:
        digest_name = q._shell.state.config.temp_path
    Path(digest_name).write_bytes(b"{not json")
    with Queue[int](qdir, tempdir=temp) as q:
        assert q.get() == 1
    assert os.listdir(temp) == []


def test_opening_reads_only_the_checkpointed_end_of_the_backlog(qdir: str) -> None:
    with Queue[int](qdir, chunksize=10) as q:
        for i in range(500):
            q.put(i)
        q.get()
    reads: list[str] = []

    class Recording(OsFileSystem):
        def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
            reads.append(os.path.basename(path))
            return super().read(path, offset, size)

    with Queue[int](qdir, fs=Recording()) as q:
        assert q.qsize() == 500
    files = sorted(set(reads) - {"shared"})  # the shared state is read at every operation
    assert files in (["acks", "info", "q00050"], ["acks", "info"])


@pytest.mark.parametrize("closed", [True, False], ids=["closed", "crashed"])
def test_opening_a_queue_of_large_items_reads_a_window_at_a_time(
    tmp_path: Path, closed: bool
) -> None:
    # Recovery scans chunk files for whole records; it must not hold a whole chunk of
    # large items in memory to do so.
    qdir = str(tmp_path / "q")
    size = 4 * 1024 * 1024
    items = [bytes([i]) * size for i in range(6)]  # one chunk of 24 MiB
    q = crashed_queue(qdir, items, serializer=BYTES)
    if closed:
        q.close()
    else:
        del q
        gc.collect()
    tracemalloc.start()
    try:
        with Queue[bytes](qdir, serializer=BYTES) as q:
            _, peak = tracemalloc.get_traced_memory()
            assert q.qsize() == 6
    finally:
        tracemalloc.stop()
    assert peak < 2 * size  # a window and at most one record, never the 24 MiB chunk
    with Queue[bytes](qdir, serializer=BYTES) as q:
        assert [q.get()[0] for _ in range(6)] == list(range(6))


# --- refused ---------------------------------------------------------------------------------


def test_a_damaged_record_before_later_ones_is_refused_at_open(qdir: str) -> None:
    crashed_queue(qdir, list(range(6)))
    chunk = Path(qdir, "q00000")
    offsets = record_offsets(str(chunk))
    data = bytearray(chunk.read_bytes())
    data[offsets[2] + HEADER_SIZE] ^= 0xFF
    chunk.write_bytes(bytes(data))
    before = snapshot(qdir)
    with pytest.raises(CorruptQueueError) as raised:
        Queue(qdir)
    assert raised.value.path == str(chunk) and raised.value.offset == offsets[2]
    assert "item 2 is damaged, but item 3 follows" in str(raised.value)
    assert snapshot(qdir) == before  # nothing repaired away


def test_a_damaged_record_in_the_checkpointed_backlog_is_refused_at_get(qdir: str) -> None:
    with Queue[int](qdir) as q:
        for i in range(6):
            q.put(i)
    chunk = Path(qdir, "q00000")
    offsets = record_offsets(str(chunk))
    data = bytearray(chunk.read_bytes())
    data[offsets[3] + HEADER_SIZE] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with Queue[int](qdir) as q:
        assert [q.get(), q.get(), q.get()] == [0, 1, 2]
        for _ in range(2):  # named again on every try; never skipped
            with pytest.raises(CorruptQueueError, match="checksum") as raised:
                q.get()
            assert (raised.value.path, raised.value.offset) == (str(chunk), offsets[3])
        q.put(6)  # the rest of the queue goes on
        q.task_done()
        assert q.qsize() == 4
    with Queue[int](qdir) as q:
        assert q.get() == 1  # 1 and 2 were never acknowledged


def test_a_missing_chunk_between_tail_and_head_is_refused(qdir: str) -> None:
    with Queue[int](qdir, chunksize=2) as q:
        for i in range(8):
            q.put(i)
    Path(qdir, "q00001").unlink()
    before = snapshot(qdir)
    with pytest.raises(CorruptQueueError, match="missing") as raised:
        Queue(qdir)
    assert raised.value.path == os.path.join(qdir, "q00001")
    assert snapshot(qdir) == before


def test_a_missing_chunk_after_the_checkpoint_is_refused(qdir: str) -> None:
    crashed_queue(qdir, list(range(7)), chunksize=2)
    Path(qdir, "q00001").unlink()
    with pytest.raises(CorruptQueueError, match="missing") as raised:
        Queue(qdir)
    assert raised.value.path == os.path.join(qdir, "q00001")


def test_a_lost_info_file_with_items_left_is_refused(qdir: str) -> None:
    with Queue[int](qdir) as q:
        q.put(1)
    Path(qdir, "info").unlink()
    with pytest.raises(CorruptQueueError, match="info file is missing"):
        Queue(qdir)


def valid_info(qdir: str) -> bytes:
    with Queue[int](qdir) as q:
        q.put(1)
    return Path(qdir, "info").read_bytes()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (lambda good: b"", "empty"),
        (lambda good: bytes(len(good)), "zero bytes"),
        (lambda good: good[: len(good) // 2], "not valid JSON"),
        (lambda good: os.urandom(64).replace(b"\x80", b"\x81"), "not valid JSON|not a pqueue"),
        (lambda good: good.replace(b'"version":2', b'"version":7'), "format version 7"),
        (lambda good: good.replace(b'"tail":0', b'"tail":1'), "checksum mismatch"),
    ],
    ids=["empty", "zeros", "truncated", "garbage", "unknown-version", "edited"],
)
def test_a_bad_info_file_is_refused_and_left_alone(qdir: str, content: Any, match: str) -> None:
    Path(qdir, "info").write_bytes(bad := content(valid_info(qdir)))
    before = snapshot(qdir)
    with pytest.raises((CorruptQueueError, UnsupportedFormatError), match=match) as raised:
        Queue(qdir)
    error = raised.value
    assert isinstance(error, (CorruptQueueError, UnsupportedFormatError))
    assert error.path == os.path.join(qdir, "info")
    assert snapshot(qdir) == before and Path(qdir, "info").read_bytes() == bad


def test_a_pqueue_0_1_directory_is_refused_with_how_to_migrate(qdir: str) -> None:
    os.makedirs(qdir)
    with open(os.path.join(qdir, "q00000"), "wb") as f:
        for item in ("a", "b"):
            pickle.dump(item, f)
        end = f.tell()
    old_info = {"chunksize": 100, "size": 2, "tail": [0, 0, 0], "head": [0, 2, end]}
    Path(qdir, "info").write_bytes(pickle.dumps(old_info))
    before = snapshot(qdir)
    with pytest.raises(LegacyFormatError, match=r"pqueue 0\.1") as raised:
        Queue(qdir)
    assert "pqueue==0.1.7" in str(raised.value) and "drain" in str(raised.value)
    assert snapshot(qdir) == before


def test_a_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a queue")
    with pytest.raises(NotADirectoryError, match="not a directory") as raised:
        Queue(path)
    assert raised.value.filename == str(path)
    with pytest.raises(NotADirectoryError, match="parent"):
        Queue(path / "q")


NOBODY = 65534


def unprivileged(action: Any) -> str:
    """Run ``action()`` in a forked child without privileges (as nobody when run as root,
    since root ignores file permissions); what it returns, or the error it raised."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                result = str(action())
            except BaseException as exc:
                result = f"{type(exc).__name__} {getattr(exc, 'filename', '')} {exc}"
            os.write(write_end, result.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.fixture
def readonly_dir() -> Any:
    base = Path(tempfile.mkdtemp(prefix="pqueue-perm-"))
    base.chmod(0o755)
    locked = base / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    yield locked
    locked.chmod(0o755)
    shutil.rmtree(base)


def test_no_permission_to_create_the_directory(readonly_dir: Path) -> None:
    target = readonly_dir / "q"
    out = unprivileged(lambda: Queue(target))
    assert out.startswith(f"PermissionError {target} ")
    assert "cannot create the queue directory (permission denied)" in out
    assert not target.exists()


def test_no_permission_to_write_in_the_directory(readonly_dir: Path) -> None:
    out = unprivileged(lambda: Queue(readonly_dir))
    # The first file a shared open creates: its shared state.
    assert out.startswith(f"PermissionError {readonly_dir}/shared "), out
    assert os.listdir(readonly_dir) == []


def test_an_io_error_breaks_the_queue_until_it_is_reopened(qdir: str) -> None:
    class Failing(OsFileSystem):
        fail = False

        def write(self, path: str, data: bytes, offset: int | None = None) -> None:
            if self.fail:
                raise OSError(5, "Input/output error", path)
            super().write(path, data, offset)

    fs = Failing()
    q: Queue[int] = Queue(qdir, fs=fs)
    q.put(1)
    fs.fail = True
    with pytest.raises(QueueBrokenError, match="Input/output error") as raised:
        q.put(2)
    assert isinstance(raised.value.__cause__, OSError)
    fs.fail = False
    with pytest.raises(QueueBrokenError, match="broken") as again:
        q.get()
    assert again.value.__cause__ is raised.value.__cause__
    q.close()
    with Queue[int](qdir) as reopened:
        assert drain(reopened) == [1]
