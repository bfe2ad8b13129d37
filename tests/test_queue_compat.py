"""pqueue.Queue behaves as queue.Queue: the same scenarios run against both."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

import pqueue
from blocking import error_of_blocked_get


class AnyQueue(Protocol):
    maxsize: int

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None: ...
    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...
    def put_nowait(self, item: Any) -> None: ...
    def get_nowait(self) -> Any: ...
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def task_done(self) -> None: ...
    def join(self) -> None: ...


Factory = Callable[..., AnyQueue]


@pytest.fixture(params=["queue.Queue", "pqueue.Queue"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[pqueue.Queue[Any]] = []

    def stdlib(maxsize: int = 0) -> AnyQueue:
        return queue.Queue(maxsize)

    def persistent(maxsize: int = 0) -> AnyQueue:
        q: pqueue.Queue[Any] = pqueue.Queue(tmp_path / f"q{len(opened)}", maxsize, chunksize=3)
        opened.append(q)
        return q

    yield stdlib if request.param == "queue.Queue" else persistent
    for q in opened:
        q.close()


def test_the_exceptions_are_the_standard_library_ones() -> None:
    assert pqueue.Empty is queue.Empty
    assert pqueue.Full is queue.Full
    if sys.version_info >= (3, 13):
        assert pqueue.ShutDown is queue.ShutDown
    else:
        assert issubclass(pqueue.ShutDown, Exception)


def test_fifo_order(make: Factory) -> None:
    q = make()
    items = [1, "two", (3, 3), {"four": 4}, None, b"six", 7.5]
    for item in items:
        q.put(item)
    assert q.qsize() == len(items)
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_get_on_an_empty_queue(make: Factory) -> None:
    q = make()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=-1)  # the timeout is ignored when not blocking
    start = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - start >= 0.05


def test_put_on_a_full_queue(make: Factory) -> None:
    q = make(2)
    q.put("a")
    q.put("b")
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    start = time.monotonic()
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.05)
    assert time.monotonic() - start >= 0.05
    assert q.get() == "a"
    q.put_nowait("c")
    assert [q.get(), q.get()] == ["b", "c"]


def test_an_unbounded_queue_is_never_full(make: Factory) -> None:
    q = make()
    for i in range(10):
        q.put(i)
    assert not q.full()


def test_negative_timeouts_are_refused(make: Factory) -> None:
    q = make(1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-0.5)
    q.put(1)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(2, timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)  # checked even with an item waiting


def test_task_done_and_join(make: Factory) -> None:
    q = make()
    q.put("x")
    q.put("y")
    done = threading.Event()

    def joiner() -> None:
        q.join()
        done.set()

    thread = threading.Thread(target=joiner)
    thread.start()
    assert q.get() == "x"
    q.task_done()
    assert not done.wait(0.05)
    assert q.get() == "y"
    q.task_done()
    assert done.wait(5)
    thread.join()
    # queue.Queue says "called too many times"; pqueue says no delivered item waits.
    refused = r"task_done\(\) called (too many times|with no delivered item)"
    with pytest.raises(ValueError, match=refused):
        q.task_done()


def test_join_on_a_queue_with_nothing_unfinished_returns(make: Factory) -> None:
    make().join()


def test_a_blocked_get_wakes_for_a_put(make: Factory) -> None:
    q = make()
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(q.get(timeout=5)))
    thread.start()
    time.sleep(0.05)
    q.put("wake")
    thread.join()
    assert got == ["wake"]


def test_a_blocked_put_wakes_for_a_get(make: Factory) -> None:
    q = make(1)
    q.put("first")
    thread = threading.Thread(target=lambda: q.put("second", timeout=5))
    thread.start()
    time.sleep(0.05)
    assert q.get() == "first"
    thread.join()
    assert q.get() == "second"


def test_producers_and_consumers_lose_nothing(make: Factory) -> None:
    q = make(5)
    got: list[int] = []
    lock = threading.Lock()

    def produce(base: int) -> None:
        for i in range(40):
            q.put(base + i)

    def consume() -> None:
        while True:
            item = q.get()
            if item is None:
                q.task_done()
                return
            with lock:
                got.append(item)
            q.task_done()

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    producers = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join()
    q.join()
    for _ in consumers:
        q.put(None)
    for t in consumers:
        t.join()
    assert sorted(got) == sorted(k * 1000 + i for k in range(3) for i in range(40))
    for k in range(3):  # each producer's items stay in order
        mine = [g for g in got if g // 1000 == k]
        assert mine == sorted(mine)


def test_maxsize_can_change_at_run_time(make: Factory) -> None:
    q = make(1)
    q.put(1)
    assert q.full()
    q.maxsize = 3
    assert not q.full()
    q.put_nowait(2)
    q.put_nowait(3)
    assert q.full()
    q.maxsize = 0
    q.put_nowait(4)
    assert not q.full()


@pytest.mark.skipif(sys.version_info < (3, 13), reason="queue.Queue.shutdown is 3.13+")
def test_shutdown_matches_the_standard_library(make: Factory) -> None:
    _shutdown_scenario(make)


def test_shutdown_semantics(tmp_path: Path) -> None:
    # The same scenario on pqueue on every Python (it emulates 3.13's shutdown).
    with pqueue.Queue[str](tmp_path / "q") as q:
        _shutdown_scenario(lambda maxsize=0: q)


def _shutdown_scenario(make: Factory) -> None:
    q: Any = make()
    q.put("a")
    q.put("b")
    q.shutdown()
    assert q.is_shutdown
    with pytest.raises(pqueue.ShutDown):
        q.put("c")
    assert q.get() == "a"  # what is left can still be got
    assert q.get_nowait() == "b"
    with pytest.raises(pqueue.ShutDown):
        q.get()
    with pytest.raises(pqueue.ShutDown):
        q.get_nowait()
    q.task_done()
    q.task_done()
    q.join()
    q.shutdown()  # again: no error
    assert q.is_shutdown


def test_shutdown_wakes_blocked_getters(make: Factory) -> None:
    q: Any = make()
    if not hasattr(q, "shutdown"):
        pytest.skip("queue.Queue.shutdown is 3.13+")
    assert isinstance(error_of_blocked_get(q, q.shutdown), pqueue.ShutDown)


def test_immediate_shutdown_drains_and_releases_join(make: Factory) -> None:
    q: Any = make()
    if not hasattr(q, "shutdown"):
        pytest.skip("queue.Queue.shutdown is 3.13+")
    for item in "abc":
        q.put(item)
    assert q.get() == "a"
    q.shutdown(immediate=True)
    assert q.qsize() == 0 and q.empty()
    with pytest.raises(pqueue.ShutDown):
        q.get()
    assert q.unfinished_tasks == 1  # "a" was got and is not done
    q.task_done()
    q.join()
