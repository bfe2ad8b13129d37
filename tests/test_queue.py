"""What pqueue adds to queue.Queue: persistence, acknowledgement, ownership, lifecycle."""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import pqueue
from blocking import error_of_blocked_get
from pqueue import (
    Delivery,
    Queue,
    QueueClosedError,
    QueueLocked,
    QueueSupersededError,
    SerializerMismatchError,
)
from pqueue.io import OsFileSystem
from pqueue.serializers import BYTES, JSON


def chunk_files(path: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.startswith("q"))


# --- persistence and acknowledgement -----------------------------------------------------


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_items_survive_close_and_reopen(qdir: str, durability: Any) -> None:
    with Queue[dict[str, int]](qdir, durability=durability, chunksize=4) as q:
        for i in range(10):
            q.put({"n": i})
    with Queue[dict[str, int]](qdir, durability=durability) as q:
        assert q.qsize() == 10
        assert [q.get()["n"] for _ in range(10)] == list(range(10))


def test_items_survive_a_queue_never_closed(qdir: str) -> None:
    q: Queue[int] = Queue(qdir, chunksize=3)
    for i in range(7):
        q.put(i)
    del q
    gc.collect()
    with Queue[int](qdir) as q:
        assert [q.get() for _ in range(7)] == list(range(7))


def test_unacknowledged_items_come_back_first_and_in_order(qdir: str) -> None:
    with Queue[int](qdir, chunksize=3) as q:
        for i in range(8):
            q.put(i)
        assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]
        q.task_done()  # acknowledges 0
        q.task_done()  # acknowledges 1
    with Queue[int](qdir) as q:
        assert q.qsize() == 6  # every unacknowledged item
        assert q.unfinished_tasks == 6
        assert [q.get() for _ in range(6)] == [2, 3, 4, 5, 6, 7]


def test_acknowledged_items_never_come_back(qdir: str) -> None:
    with Queue[int](qdir, chunksize=2) as q:
        for i in range(6):
            q.put(i)
        for _ in range(6):
            q.get()
            q.task_done()
    with Queue[int](qdir) as q:
        assert q.qsize() == 0 and q.unfinished_tasks == 0
        with pytest.raises(pqueue.Empty):
            q.get_nowait()


def test_task_done_acknowledges_the_calling_threads_own_item(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("main's")
        q.put("worker's")
        assert q.get() == "main's"
        got: list[str] = []
        worker_has_item = threading.Event()
        main_acked = threading.Event()

        def worker() -> None:
            got.append(q.get())
            worker_has_item.set()
            main_acked.wait(5)

        thread = threading.Thread(target=worker)
        thread.start()
        worker_has_item.wait(5)
        q.task_done()  # this thread's item, not the worker's
        main_acked.set()
        thread.join()
        assert got == ["worker's"]
    with Queue[str](qdir) as q:
        assert q.get_nowait() == "worker's"  # the worker never acknowledged it


def test_threads_that_come_and_go_leave_no_bookkeeping_behind(qdir: str) -> None:
    # Each thread's deliveries are tracked by thread id; a service that runs each task on
    # a new thread must not grow that table for ever. Threads alive together have distinct
    # ids (ids of ended threads are reused, so they are kept alive here).
    rounds, threads = 3, 100
    with pqueue.Queue[int](qdir, durability="flush") as q:
        for i in range(rounds * threads):
            q.put(i)
        for _ in range(rounds):
            done = threading.Barrier(threads)

            def work(done: threading.Barrier = done) -> None:
                q.get()
                q.task_done()
                done.wait()

            batch = [threading.Thread(target=work) for _ in range(threads)]
            for thread in batch:
                thread.start()
            for thread in batch:
                thread.join()
        assert q.unfinished_tasks == 0
        assert len(q._deliveries) <= 64


def test_task_done_falls_back_to_the_oldest_outstanding_item(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("a")
        q.put("b")
        thread = threading.Thread(target=q.get)
        thread.start()
        thread.join()  # the other thread got "a" and ended
        q.task_done()  # this thread got nothing: the oldest outstanding item is acknowledged
    with Queue[str](qdir) as q:
        assert q.get_nowait() == "b"


def test_task_done_without_a_delivery_is_refused_unlike_queue_queue(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("waiting")
        with pytest.raises(ValueError, match="no delivered item waiting for acknowledgement"):
            q.task_done()  # before any get(): nothing was "called too many times"
        assert q.qsize() == 1


def test_a_delivery_is_acknowledged_explicitly(qdir: str) -> None:
    with Queue[str](qdir) as q:
        for item in "abc":
            q.put(item)
        first = q.get_delivery()
        second = q.get_delivery(timeout=1)
        assert isinstance(first, Delivery)
        assert (first.item, second.item, first.acked) == ("a", "b", False)
        second.ack()
        assert second.acked
        with pytest.raises(ValueError, match="acknowledged already"):
            second.ack()
        with pytest.raises(ValueError, match="no delivered item waiting"):
            q.task_done()  # task_done never acknowledges a Delivery
        assert "outstanding" in repr(first) and "acked" in repr(second)
    with Queue[str](qdir) as q:
        assert [q.get(), q.get()] == ["a", "c"]


def test_a_delivery_as_a_context_manager_acks_only_on_success(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("ok")
        q.put("fails")
        with q.get_delivery() as delivery:
            assert delivery.item == "ok"
        assert delivery.acked
        with pytest.raises(RuntimeError), q.get_delivery() as failing:
            raise RuntimeError("work failed")
        assert not failing.acked
    with Queue[str](qdir) as q:
        assert q.get_nowait() == "fails"


def test_join_waits_for_items_from_before_a_reopen(qdir: str) -> None:
    with Queue[int](qdir) as q:
        q.put(1)
        q.put(2)
    with Queue[int](qdir) as q:
        finished = threading.Event()
        def joiner() -> None:
            q.join()
            finished.set()

        thread = threading.Thread(target=joiner)
        thread.start()
        q.get()
        q.task_done()
        assert not finished.wait(0.05)
        q.get()
        q.task_done()
        assert finished.wait(5)
        thread.join()


def test_a_drained_queue_keeps_at_most_one_chunk_file(qdir: str) -> None:
    with Queue[int](qdir, chunksize=5) as q:
        for i in range(23):
            q.put(i)
        assert len(chunk_files(qdir)) == 5
        for _ in range(23):
            q.get()
            q.task_done()
        assert len(chunk_files(qdir)) <= 1


def test_a_drained_flush_queue_keeps_at_most_one_chunk_file_once_closed(qdir: str) -> None:
    with Queue[int](qdir, chunksize=5, durability="flush") as q:
        for i in range(23):
            q.put(i)
        for _ in range(23):
            q.get()
            q.task_done()
    assert len(chunk_files(qdir)) <= 1


def test_consumed_chunks_are_deleted_while_the_queue_runs(qdir: str) -> None:
    with Queue[int](qdir, chunksize=2) as q:
        for i in range(40):
            q.put(i)
        for _ in range(30):
            q.get()
            q.task_done()
        # Items 30..39 live in chunks 15..19; a few consumed chunks may wait for a checkpoint.
        files = chunk_files(qdir)
        assert files[-1] == "q00019"
        assert len(files) <= 5 + q._shell.state.config.policy.checkpoint_every


# --- serializers -----------------------------------------------------------------------------


def test_json_and_bytes_serializers(tmp_path: Path) -> None:
    with Queue[Any](tmp_path / "j", serializer=json) as q:
        q.put({"a": [1, 2]})
        assert q.get() == {"a": [1, 2]}
    with Queue[bytes](tmp_path / "b", serializer=BYTES) as q:
        q.put(b"raw")
        q.put(bytearray(b"ba"))  # type: ignore[arg-type]
        assert [q.get(), q.get()] == [b"raw", b"ba"]
        with pytest.raises(TypeError, match="bytes serializer"):
            q.put("text")  # type: ignore[arg-type]
    info = json.loads((tmp_path / "j" / "info").read_text())
    assert info["serializer"] == "json"


def test_a_custom_serializer_is_recorded_by_name(qdir: str) -> None:
    class Upper:
        name = "upper"

        def dumps(self, obj: Any) -> bytes:
            return str(obj).upper().encode()

        def loads(self, data: bytes) -> Any:
            return data.decode()

    with Queue[str](qdir, serializer=Upper()) as q:
        q.put("hello")
        assert q.get() == "HELLO"
    with pytest.raises(SerializerMismatchError, match=r"'upper'.*'pickle'"):
        Queue(qdir)


def test_a_serializer_returning_text_is_a_clear_error(qdir: str) -> None:
    class Text:
        def dumps(self, obj: Any) -> str:
            return str(obj)

        def loads(self, data: bytes) -> Any:
            return data

    with Queue[str](qdir, serializer=Text()) as q:  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="returned str"):
            q.put("x")
        assert q.qsize() == 0


def test_an_object_without_dumps_is_not_a_serializer(qdir: str) -> None:
    with pytest.raises(TypeError, match="dumps\\(\\) and loads\\(\\)"):
        Queue(qdir, serializer=object())  # type: ignore[arg-type]


def test_reopening_with_another_serializer_is_refused(qdir: str) -> None:
    Queue(qdir, serializer=JSON).close()
    with pytest.raises(SerializerMismatchError) as raised:
        Queue(qdir)
    assert (raised.value.recorded, raised.value.given) == ("json", "pickle")


def test_an_item_that_cannot_be_serialized_leaves_the_queue_unchanged(qdir: str) -> None:
    with Queue[Any](qdir) as q:
        q.put("before")
        with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
            q.put(lambda: None)
        with pytest.raises(TypeError):
            q.put(threading.Lock())
        assert q.qsize() == 1
        q.put("after")
        assert [q.get(), q.get()] == ["before", "after"]


def test_an_item_that_cannot_be_loaded_can_be_dropped_with_task_done(qdir: str) -> None:
    class Fragile:
        name = "fragile"

        def dumps(self, obj: Any) -> bytes:
            return pickle.dumps(obj)

        def loads(self, data: bytes) -> Any:
            value = pickle.loads(data)
            if value == "poison":
                raise ValueError("cannot load this one")
            return value

    with Queue[str](qdir, serializer=Fragile()) as q:
        q.put("poison")
        q.put("fine")
        with pytest.raises(ValueError, match="cannot load"):
            q.get()
        q.task_done()  # drop it
        assert q.get() == "fine"
        q.task_done()
        assert q.unfinished_tasks == 0


# --- construction, ownership and lifecycle --------------------------------------------------


def test_the_directory_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "q"
    Queue(path).close()
    assert path.is_dir()
    assert (path.stat().st_mode & 0o777) == 0o700
    assert sorted(os.listdir(path)) == ["acks", "info", "lock", "ready", "shared"]


def test_chunksize_is_recorded_and_wins_on_reopen(qdir: str) -> None:
    with Queue[int](qdir, chunksize=2) as q:
        for i in range(5):
            q.put(i)
    with Queue[int](qdir, chunksize=1000) as q:
        q.put(5)
        assert q._shell.state.config.chunksize == 2
    assert chunk_files(qdir) == ["q00000", "q00001", "q00002"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"maxsize": -1}, ValueError, "maxsize must be >= 0"),
        ({"maxsize": 1.5}, TypeError, "maxsize must be an int"),
        ({"maxsize": True}, TypeError, "maxsize must be an int"),
        ({"chunksize": 0}, ValueError, "chunksize must be >= 1"),
        ({"chunksize": "100"}, TypeError, "chunksize must be an int"),
        ({"durability": "always"}, ValueError, "durability must be"),
    ],
)
def test_bad_arguments_are_clear_errors(
    qdir: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Queue(qdir, **kwargs)
    assert not os.path.exists(qdir)


def test_setting_a_bad_maxsize_is_refused(qdir: str) -> None:
    with Queue[int](qdir, maxsize=2) as q:
        with pytest.raises(ValueError, match=">= 0"):
            q.maxsize = -3
        assert q.maxsize == 2


def test_a_tempdir_on_the_same_file_system_is_used(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    with Queue[int](tmp_path / "q", tempdir=temp) as q:
        q.put(1)
    assert os.listdir(temp) == []  # the checkpoint was renamed into the queue
    with Queue[int](tmp_path / "q", tempdir=str(temp)) as q:
        assert q.get() == 1


def test_a_missing_tempdir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an existing directory"):
        Queue(tmp_path / "q", tempdir=tmp_path / "nope")


def test_a_tempdir_on_another_file_system_is_refused(tmp_path: Path) -> None:
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system here")
    with pytest.raises(ValueError, match="same file system"):
        Queue(tmp_path / "q", tempdir="/dev/shm")


def test_operations_after_close_raise_a_clear_error(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)
    q.put(1)
    q.close()
    q.close()  # idempotent
    for call in (
        lambda: q.put(2), q.get, q.get_nowait, q.qsize, q.empty, q.full, q.task_done,
        q.join, q.shutdown, q.get_delivery,
    ):
        with pytest.raises(QueueClosedError, match="is closed"):
            call()
    assert "closed" in repr(q)


def test_close_wakes_blocked_callers(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)
    assert isinstance(error_of_blocked_get(q, q.close), QueueClosedError)


def test_repr_shows_path_size_and_mode(qdir: str) -> None:
    with Queue[int](qdir, durability="flush") as q:
        q.put(1)
        text = repr(q)
    assert qdir in text and "size=1" in text and "'flush'" in text and "open" in text


@pytest.mark.parametrize(("ours", "theirs"), [(True, False), (False, True), (True, True)])
def test_an_exclusive_queue_and_any_other_locks_each_other_out(
    qdir: str, ours: bool, theirs: bool
) -> None:
    with Queue[int](qdir, exclusive=ours):
        code = (
            "import sys, pqueue\n"
            "try:\n"
            f"    pqueue.Queue({qdir!r}, exclusive={theirs})\n"
            "except pqueue.QueueLocked as e:\n"
            "    print('locked', e.path)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
    assert out.stdout.strip() == f"locked {qdir}"
    assert issubclass(QueueLocked, pqueue.PQueueError)


def test_reopening_in_the_same_process_supersedes_the_earlier_object(qdir: str) -> None:
    old: Queue[int] = Queue(qdir, exclusive=True)
    old.put(1)
    old.put(2)
    assert old.get() == 1
    new: Queue[int] = Queue(qdir, exclusive=True)
    with pytest.raises(QueueSupersededError, match="superseded"):
        old.put(3)
    with pytest.raises(QueueSupersededError):
        old.task_done()
    assert isinstance(QueueSupersededError("x"), QueueClosedError)
    old.close()  # harmless
    assert [new.get(), new.get()] == [1, 2]  # as if the process had restarted
    new.close()


def test_a_superseded_queue_wakes_its_waiters(qdir: str) -> None:
    old: Queue[int] = Queue(qdir, exclusive=True)
    woken = error_of_blocked_get(old, lambda: Queue(qdir, exclusive=True).close())
    assert isinstance(woken, QueueSupersededError)


def test_a_failed_open_leaves_the_directory_free(qdir: str) -> None:
    Queue(qdir, serializer=JSON).close()
    with pytest.raises(SerializerMismatchError):
        Queue(qdir)
    Queue(qdir, serializer=JSON).close()  # not locked by the failed attempt


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_items_larger_than_a_read_block(qdir: str, durability: Any) -> None:
    big = [bytes([i]) * (300_000 + i) for i in range(3)]
    items = [b"small", big[0], b"x", big[1], big[2], b"tail"]
    with Queue[bytes](qdir, chunksize=4, durability=durability, serializer=BYTES) as q:
        for item in items:
            q.put(item)
        assert q.get() == b"small"
        q.task_done()
    with Queue[bytes](qdir, serializer=BYTES) as q:
        assert [q.get() for _ in range(5)] == items[1:]


class CountingReads(OsFileSystem):
    """The real file system, counting the reads of chunk files."""

    def __init__(self) -> None:
        super().__init__()
        self.chunk_reads = 0

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        if path.rsplit("/", 1)[1].startswith("q"):
            self.chunk_reads += 1
        return super().read(path, offset, size)


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_consumer_that_keeps_up_gets_items_without_reading_them_back(
    qdir: str, durability: Any
) -> None:
    fs = CountingReads()
    with pqueue.Queue[int](qdir, chunksize=10, durability=durability, fs=fs) as q:
        for i in range(35):
            q.put(i)
            assert q.get() == i
            q.task_done()
            q.put(100 + i)  # one item waiting: the consumer lags by one
            assert q.get() == 100 + i
            q.task_done()
        assert fs.chunk_reads == 0
    with pqueue.Queue[int](qdir, chunksize=10, durability=durability) as q:
        assert q.qsize() == 0


def test_items_put_while_older_ones_wait_on_disk_come_in_order(qdir: str) -> None:
    with pqueue.Queue[int](qdir, chunksize=10) as q:
        for i in range(25):
            q.put(i)
    fs = CountingReads()
    with pqueue.Queue[int](qdir, chunksize=10, fs=fs) as q:
        got = [q.get()]
        for i in range(25, 60):
            q.put(i)
            got.append(q.get())
        while not q.empty():
            got.append(q.get())
        assert got == list(range(60))
        assert fs.chunk_reads > 0  # the items from before the reopen came from disk


def test_a_consumer_one_item_behind_keeps_the_read_ahead_small(qdir: str) -> None:
    with pqueue.Queue[int](qdir, durability="flush") as q:
        for i in range(200):  # more than are kept for the reader: the rest are read back
            q.put(i)
        for i in range(200):
            assert q.get() == i
            q.task_done()
        q.put(0)
        for i in range(1, 5000):
            q.put(i)
            assert q.get() == i - 1
            q.task_done()
        # The records kept for the reader (internal): bounded, not one per item ever put.
        assert len(q._shell._records) <= 2 * 64


def test_large_items_put_for_a_waiting_reader_are_read_back_from_disk(qdir: str) -> None:
    fs = CountingReads()
    big = b"x" * (200 * 1024)
    with pqueue.Queue[bytes](qdir, serializer=BYTES, fs=fs) as q:
        for i in range(3):
            q.put(big + bytes([i]))
            assert q.get() == big + bytes([i])
            q.task_done()
        assert fs.chunk_reads >= 3  # not kept in memory for the reader
