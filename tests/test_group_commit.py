"""Group commit in fsync mode: puts and task_done() calls of several threads at once share
one write and one fsync, every call still returning only once its own work is durable; a
group fails or survives a crash whole (puts) or call by call (acknowledgements)."""

from __future__ import annotations

import errno
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pqueue import DiskFullError, Queue, QueueBrokenError
from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk
from pqueue.io import OsFileSystem

THREADS = 8
PER_THREAD = 25


class SlowFsync(OsFileSystem):
    """The real file system with an fsync that takes 5 ms and is counted, so that threads
    arriving during one certainly wait for the next."""

    def __init__(self) -> None:
        super().__init__()
        self.fsyncs: Counter[str] = Counter()
        self.failing: OSError | None = None

    def fsync(self, path: str) -> None:
        time.sleep(0.005)
        self.fsyncs[Path(path).name] += 1
        super().fsync(path)

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        if self.failing is not None and Path(path).name.startswith("q"):
            raise self.failing
        super().write(path, data, offset)


def together(target: Any, threads: int = THREADS) -> list[BaseException]:
    """Run ``target(i)`` in ``threads`` threads started at once; the exceptions raised."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return errors


@pytest.mark.parametrize("exclusive", [True, False])
def test_threads_share_fsyncs_and_every_put_and_ack_is_there_once(
    tmp_path: Path, exclusive: bool
) -> None:
    fs = SlowFsync()
    q: Queue[tuple[int, int]] = Queue(tmp_path / "q", fs=fs, exclusive=exclusive)
    def produce(i: int) -> None:
        for n in range(PER_THREAD):
            q.put((i, n))

    assert not together(produce)
    puts = THREADS * PER_THREAD
    chunk_fsyncs = sum(n for name, n in fs.fsyncs.items() if name.startswith("q"))
    assert chunk_fsyncs < puts / 2  # grouped: far fewer fsyncs than puts
    q.close()

    q = Queue(tmp_path / "q", fs=fs, exclusive=exclusive)
    got: list[tuple[int, int]] = []
    for _ in range(puts):
        got.append(q.get(timeout=0))
    # Every put is there once, each thread's in the order it put them.
    assert sorted(got) == sorted((i, n) for i in range(THREADS) for n in range(PER_THREAD))
    for i in range(THREADS):
        assert [n for t, n in got if t == i] == list(range(PER_THREAD))
    q.close()

    q = Queue(tmp_path / "q", fs=fs, exclusive=exclusive)
    fs.fsyncs.clear()

    def consume(_: int) -> None:
        for _ in range(PER_THREAD):
            q.get(timeout=5)
            q.task_done()

    assert not together(consume)
    assert fs.fsyncs["acks"] < puts / 2
    assert q.unfinished_tasks == 0
    q.close()
    q = Queue(tmp_path / "q", fs=fs, exclusive=exclusive)
    assert q.qsize() == 0  # every acknowledgement was durable
    q.close()


def test_a_group_that_finds_the_disk_full_fails_every_put_in_it(tmp_path: Path) -> None:
    fs = SlowFsync()
    q: Queue[int] = Queue(tmp_path / "q", fs=fs, chunksize=1000)
    q.put(-1)
    fs.failing = OSError(errno.ENOSPC, "No space left on device")
    errors = together(q.put)
    assert len(errors) == THREADS
    assert all(isinstance(e, DiskFullError) for e in errors)
    fs.failing = None
    q.put(99)  # the queue is unchanged and open
    assert q.get(timeout=0) == -1
    assert q.get(timeout=0) == 99
    q.close()


def test_task_done_errors_stay_with_their_caller(tmp_path: Path) -> None:
    q: Queue[int] = Queue(tmp_path / "q", fs=SlowFsync())
    for i in range(THREADS // 2):
        q.put(i)
    # Four items got, eight task_done calls in one group: four acknowledge one each (a
    # thread with none takes another's oldest), and only the other four see ValueError.
    def consume(i: int) -> None:
        if i % 2:
            q.get(timeout=0)
        q.task_done()

    errors = together(consume)
    assert len(errors) == THREADS // 2
    assert all(isinstance(e, ValueError) for e in errors)
    assert q.unfinished_tasks == 0
    q.close()


def test_join_waits_for_the_fsync_of_the_last_acknowledgement(tmp_path: Path) -> None:
    q: Queue[int] = Queue(tmp_path / "q", fs=SlowFsync())
    q.put(1)
    events: list[str] = []

    def consumer() -> None:
        q.get()
        q.task_done()
        events.append("task_done returned")

    worker = threading.Thread(target=consumer)
    worker.start()
    while q.qsize():
        time.sleep(0.0005)
    q.join()
    events.append("join returned")
    worker.join()
    assert events == ["task_done returned", "join returned"]
    q.close()


@pytest.mark.parametrize("crash_after", range(4, 60, 3))
def test_crashed_threads_lose_no_put_that_returned(crash_after: int) -> None:
    """Threads put at once on a simulated disk that crashes after ``crash_after`` calls;
    under a power loss every put that returned is there once, and each thread's items are
    a prefix of what it put (a group is whole or gone, never some of its items)."""
    disk = SimulatedDisk()
    q: Queue[tuple[int, int]] = Queue("/q", fs=disk, chunksize=4)
    returned: list[tuple[int, int]] = []
    lock = threading.Lock()
    disk.crash_after(crash_after)

    def put(i: int) -> None:
        for n in range(6):
            q.put((i, n))
            with lock:
                returned.append((i, n))

    errors = together(put, threads=4)
    # The thread whose call crashed sees the crash; the others, the queue broken by it.
    assert errors
    assert all(isinstance(e, SimulatedCrash) or (isinstance(e, QueueBrokenError)
               and isinstance(e.__cause__, SimulatedCrash)) for e in errors), errors
    for state in disk.crash_states(POWER_LOSS, limit=5000):
        reopened: Queue[tuple[int, int]] = Queue("/q", fs=state, chunksize=4)
        items = []
        while reopened.qsize():
            items.append(reopened.get(timeout=0))
            reopened.task_done()
        reopened.close()
        assert len(items) == len(set(items))
        assert set(returned) <= set(items)
        for i in range(4):
            mine = [n for t, n in items if t == i]
            assert mine == list(range(len(mine)))


@pytest.mark.parametrize("exclusive", [True, False])
def test_join_wakes_when_the_last_grouped_fsync_is_done(tmp_path: Path, exclusive: bool) -> None:
    """The last acknowledgements' fsync ends after they were published: a joiner waiting
    (on the shared files' watch, for a shared queue) must be woken by it, not hang."""
    for round_ in range(10):
        q: Queue[int] = Queue(tmp_path / f"q{round_}", fs=SlowFsync(), exclusive=exclusive)
        for i in range(20):
            q.put(i)

        def consume(q: Queue[int] = q) -> None:
            while True:
                try:
                    q.get(timeout=0.2)
                except Exception:
                    return
                q.task_done()

        workers = [threading.Thread(target=consume) for _ in range(4)]
        for w in workers:
            w.start()
        joined = threading.Event()
        def join(q: Queue[int] = q, joined: threading.Event = joined) -> None:
            q.join()
            joined.set()

        joiner = threading.Thread(target=join)
        joiner.start()
        assert joined.wait(10), f"join() still waits in round {round_}"
        for w in workers:
            w.join()
        joiner.join()
        q.close()
