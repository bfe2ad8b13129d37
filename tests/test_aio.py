"""pqueue.aio.AsyncQueue behaves as asyncio.Queue (one suite run against both), and keeps
pqueue's promises under asyncio: cancellation loses nothing and counts no attempt, the loop
is never blocked waiting, no thread holds up the end of a program, other processes wake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

import pqueue
from pqueue.aio import AsyncDelivery, AsyncQueue, QueueShutDown

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
LIVENESS = 5.0  # seconds: a generous bound for "it wakes", never a measure of speed


class AnyQueue(Protocol):
    """What asyncio.Queue and AsyncQueue share (shutdown aside: asyncio's is 3.13+)."""

    @property
    def maxsize(self) -> int: ...
    async def put(self, item: Any) -> None: ...
    async def get(self) -> Any: ...
    def put_nowait(self, item: Any) -> None: ...
    def get_nowait(self) -> Any: ...
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def task_done(self) -> None: ...
    async def join(self) -> None: ...


Factory = Callable[..., AnyQueue]
KINDS = ["asyncio.Queue", "AsyncQueue shared fsync", "AsyncQueue exclusive flush"]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` in a fresh event loop, with a bound that turns a hang into a failure."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), 30)

    return asyncio.run(bounded())


async def eventually(condition: Callable[[], bool], what: str = "the condition") -> None:
    """Wait (yielding to the loop) until ``condition()``; fail after LIVENESS seconds."""
    deadline = time.monotonic() + LIVENESS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {LIVENESS} s")
        await asyncio.sleep(0.002)


async def stays(condition: Callable[[], bool], seconds: float = 0.05) -> bool:
    """Whether ``condition()`` holds throughout ``seconds`` (for "it does not happen")."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        await asyncio.sleep(0.002)
    return condition()


def shutdown(q: AnyQueue, immediate: bool = False) -> None:
    q_any: Any = q
    q_any.shutdown(immediate=immediate)


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[AsyncQueue[Any]] = []
    kind: str = request.param

    def factory(maxsize: int = 0) -> AnyQueue:
        if kind == "asyncio.Queue":
            return asyncio.Queue(maxsize)
        q: AsyncQueue[Any] = AsyncQueue(
            tmp_path / f"q{len(opened)}", maxsize, chunksize=3,
            durability="fsync" if "fsync" in kind else "flush", exclusive="exclusive" in kind,
        )
        opened.append(q)
        return q

    yield factory
    for q in opened:
        q.close()


@pytest.fixture
def needs_shutdown(make: Factory) -> None:
    if not hasattr(make(), "shutdown"):
        pytest.skip("asyncio.Queue.shutdown is Python 3.13+")


def shutdown_error() -> type[Exception]:
    error: type[Exception] = getattr(asyncio, "QueueShutDown", QueueShutDown)
    return error


# --- the same scenarios against asyncio.Queue and AsyncQueue -----------------------------------


def test_order_and_sizes(make: Factory) -> None:
    async def main() -> None:
        q = make()
        assert q.empty() and not q.full() and q.qsize() == 0 and q.maxsize == 0
        for i in [1, 3, 2]:
            await q.put(i)
        assert q.qsize() == 3 and not q.empty() and not q.full()
        assert [await q.get() for _ in range(3)] == [1, 3, 2]
        assert q.empty()

    run(main)


def test_nowait_calls_need_no_event_loop(make: Factory) -> None:
    q = make(maxsize=1)
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    q.put_nowait("a")
    assert q.full()
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait("b")
    assert q.get_nowait() == "a"
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()


def test_a_get_waits_for_a_put(make: Factory) -> None:
    async def main() -> None:
        q = make()
        getter = asyncio.create_task(q.get())
        assert await stays(lambda: not getter.done())
        q.put_nowait("x")
        assert await asyncio.wait_for(getter, LIVENESS) == "x"

    run(main)


def test_a_put_waits_for_room(make: Factory) -> None:
    async def main() -> None:
        q = make(maxsize=2)
        have_been_put = []

        async def putter() -> None:
            for i in range(3):
                await q.put(i)
                have_been_put.append(i)

        task = asyncio.create_task(putter())
        await eventually(lambda: have_been_put == [0, 1], "two puts")
        assert q.full()
        assert await stays(lambda: have_been_put == [0, 1])
        assert await q.get() == 0
        await eventually(lambda: have_been_put == [0, 1, 2], "the third put")
        assert [await q.get(), await q.get()] == [1, 2]
        await task

    run(main)


def test_many_waiting_getters_get_distinct_items_in_the_order_they_came(make: Factory) -> None:
    async def main() -> None:
        q = make()
        getters = []
        for _ in range(12):
            getters.append(asyncio.create_task(q.get()))
            await asyncio.sleep(0)  # each starts waiting before the next
        for i in range(12):
            q.put_nowait(i)
        assert await asyncio.gather(*getters) == list(range(12))

    run(main)


def test_putters_waiting_for_room_all_get_in(make: Factory) -> None:
    async def main() -> None:
        q = make(maxsize=2)
        putters = [asyncio.create_task(q.put(i)) for i in range(10)]
        got: list[int] = []
        while len(got) < 10:
            got.append(await asyncio.wait_for(q.get(), LIVENESS))
        await asyncio.gather(*putters)
        assert sorted(got) == list(range(10))
        assert q.empty()

    run(main)


def test_a_cancelled_get_takes_nothing(make: Factory) -> None:
    async def main() -> None:
        q = make()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await q.put("a")
        assert await asyncio.wait_for(second, LIVENESS) == "a"
        assert q.empty()

    run(main)


def test_get_cancelled_as_items_arrive_drops_none(make: Factory) -> None:
    async def main() -> None:
        q = make()
        reader = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.put_nowait(1)
        q.put_nowait(2)
        reader.cancel()
        try:
            first = await reader
        except asyncio.CancelledError:
            first = await asyncio.wait_for(q.get(), LIVENESS)
        assert first == 1  # 2 would mean that 1 was dropped (or overtaken)
        assert await asyncio.wait_for(q.get(), LIVENESS) == 2

    run(main)


def test_wait_for_get_times_out_and_leaves_the_queue_as_it_was(make: Factory) -> None:
    async def main() -> None:
        q = make()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.get(), 0.05)
        await q.put("later")
        assert q.qsize() == 1
        assert await asyncio.wait_for(q.get(), LIVENESS) == "later"

    run(main)


def test_a_put_cancelled_while_waiting_for_room_puts_nothing(make: Factory) -> None:
    async def main() -> None:
        q = make(maxsize=1)
        q.put_nowait(1)
        writer = asyncio.create_task(q.put(2))
        assert await stays(lambda: not writer.done())
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
        assert q.qsize() == 1
        assert q.get_nowait() == 1
        assert await stays(q.empty)
        with pytest.raises(asyncio.QueueEmpty):
            q.get_nowait()

    run(main)


def test_wait_for_put_on_a_full_queue_times_out_and_puts_nothing(make: Factory) -> None:
    async def main() -> None:
        q = make(maxsize=1)
        await q.put("in")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(q.put("out"), 0.05)
        assert q.get_nowait() == "in"
        assert await stays(q.empty)

    run(main)


def test_task_done_and_join(make: Factory) -> None:
    async def main() -> None:
        q = make()
        for i in range(30):
            q.put_nowait(i)
        total = 0

        async def worker() -> None:
            nonlocal total
            while True:
                item = await q.get()
                total += item
                q.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(3)]
        await asyncio.wait_for(q.join(), LIVENESS)
        assert total == sum(range(30))
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await q.join()  # twice, and on a queue with nothing unfinished: at once
        with pytest.raises(ValueError):
            q.task_done()

    run(main)


def test_join_waits_for_the_last_task_done(make: Factory) -> None:
    async def main() -> None:
        q = make()
        await q.put("a")
        joiner = asyncio.create_task(q.join())
        assert await q.get() == "a"
        assert await stays(lambda: not joiner.done())
        q.task_done()
        await asyncio.wait_for(joiner, LIVENESS)

    run(main)


def test_a_cancelled_join_leaves_the_others(make: Factory) -> None:
    async def main() -> None:
        q = make()
        q.put_nowait("a")
        cancelled = asyncio.create_task(q.join())
        kept = asyncio.create_task(q.join())
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await q.get()
        q.task_done()
        await asyncio.wait_for(kept, LIVENESS)

    run(main)


@pytest.mark.usefixtures("needs_shutdown")
def test_shutdown_empty(make: Factory) -> None:
    error = shutdown_error()

    async def main() -> None:
        q = make()
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        shutdown(q)
        assert q.qsize() == 0
        await q.join()
        with pytest.raises(error):
            await asyncio.wait_for(getter, LIVENESS)
        with pytest.raises(error):
            await q.put("data")
        with pytest.raises(error):
            q.put_nowait("data")
        with pytest.raises(error):
            await q.get()
        with pytest.raises(error):
            q.get_nowait()

    run(main)


@pytest.mark.usefixtures("needs_shutdown")
def test_shutdown_drains_then_raises(make: Factory) -> None:
    error = shutdown_error()

    async def main() -> None:
        q = make(maxsize=1)
        q.put_nowait("data")
        joiner = asyncio.create_task(q.join())
        putter = asyncio.create_task(q.put("data2"))
        assert await stays(lambda: not putter.done())
        shutdown(q)
        assert q.qsize() == 1
        with pytest.raises(error):
            await asyncio.wait_for(putter, LIVENESS)
        assert await q.get() == "data"
        assert await stays(lambda: not joiner.done())
        with pytest.raises(error):
            await q.put("data")
        with pytest.raises(error):
            await q.get()
        with pytest.raises(error):
            q.get_nowait()
        q.task_done()
        await asyncio.wait_for(joiner, LIVENESS)
        with pytest.raises(ValueError):
            q.task_done()

    run(main)


@pytest.mark.usefixtures("needs_shutdown")
def test_shutdown_immediate(make: Factory) -> None:
    error = shutdown_error()

    async def main() -> None:
        q = make()
        q.put_nowait("data")
        q.put_nowait("data")
        joiner = asyncio.create_task(q.join())
        getter = asyncio.create_task(q.get())
        assert await asyncio.wait_for(getter, LIVENESS) == "data"
        waiting = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        shutdown(q, immediate=True)
        assert q.qsize() == 0 and q.empty()
        assert not joiner.done()  # one item got and not done
        with pytest.raises(error):
            await q.get()
        with pytest.raises(error):
            q.get_nowait()
        with pytest.raises(error):
            await q.put("data")
        with contextlib.suppress(error):  # asyncio's may have taken the second one
            await asyncio.wait_for(waiting, LIVENESS)
        if not waiting.exception():
            q.task_done()
        q.task_done()
        await asyncio.wait_for(joiner, LIVENESS)
        with pytest.raises(ValueError):
            q.task_done()

    run(main)


@pytest.mark.usefixtures("needs_shutdown")
def test_shutdown_immediate_unblocks_join(make: Factory) -> None:
    async def main() -> None:
        q = make()
        q.put_nowait("data")
        joiner = asyncio.create_task(q.join())
        await asyncio.sleep(0)
        shutdown(q, immediate=True)
        await asyncio.wait_for(joiner, LIVENESS)
        await q.join()

    run(main)


def test_random_cancellations_of_gets_lose_nothing(make: Factory) -> None:
    """Gets cancelled at random moments (wait_for timeouts and cancel()) while puts happen:
    every item put is got once or still waiting."""
    rng = random.Random(7)

    async def main() -> None:
        q = make()
        n = 120
        received: list[int] = []

        async def producer() -> None:
            for i in range(n):
                await q.put(i)
                if rng.random() < 0.3:
                    await asyncio.sleep(rng.random() * 0.002)

        stop = False

        async def consumer() -> None:
            # Python < 3.12: wait_for may swallow a cancellation (returning the item): the
            # flag ends such a consumer.
            while not stop:
                with contextlib.suppress(asyncio.TimeoutError):
                    received.append(await asyncio.wait_for(q.get(), rng.random() * 0.004))
                    q.task_done()

        consumers = [asyncio.create_task(consumer()) for _ in range(6)]

        async def chaos() -> None:
            while True:
                await asyncio.sleep(rng.random() * 0.003)
                live = [task for task in consumers if not task.done()]
                rng.choice(live).cancel()
                consumers.append(asyncio.create_task(consumer()))

        chaos_task = asyncio.create_task(chaos())
        await producer()
        await eventually(lambda: len(received) > n // 2, "half the items got")
        chaos_task.cancel()
        await asyncio.gather(chaos_task, return_exceptions=True)
        stop = True
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        remaining = []
        while q.qsize():
            remaining.append(await asyncio.wait_for(q.get(), LIVENESS))
            q.task_done()
        assert sorted(received + remaining) == list(range(n))
        with pytest.raises(ValueError):
            q.task_done()
        await asyncio.wait_for(q.join(), LIVENESS)

    run(main)


def test_random_cancellations_of_puts_are_never_ambiguous(make: Factory) -> None:
    """Puts cancelled at random moments, on a bounded queue being drained: the items in the
    queue are exactly those whose put() returned normally."""
    rng = random.Random(11)

    async def main() -> None:
        q = make(maxsize=3)
        put: list[int] = []
        got: list[int] = []

        async def putter(i: int) -> None:
            await q.put(i)
            put.append(i)

        async def drain() -> None:
            while True:
                await asyncio.sleep(rng.random() * 0.003)
                with contextlib.suppress(asyncio.QueueEmpty):
                    got.append(q.get_nowait())
                    q.task_done()

        drainer = asyncio.create_task(drain())
        tasks = []
        for i in range(60):
            task = asyncio.create_task(putter(i))
            tasks.append(task)
            if rng.random() < 0.5:
                await asyncio.sleep(rng.random() * 0.002)
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
        while q.qsize():
            got.append(await asyncio.wait_for(q.get(), LIVENESS))
        assert sorted(got) == sorted(put)
        # Cancelled means not put; returned means put.
        cancelled = {i for i, task in enumerate(tasks) if task.cancelled()}
        assert cancelled.isdisjoint(put)
        assert cancelled | set(put) == set(range(60))

    run(main)


# --- AsyncQueue only -----------------------------------------------------------------------------


@pytest.fixture
def aq(tmp_path: Path) -> Iterator[AsyncQueue[Any]]:
    q: AsyncQueue[Any] = AsyncQueue(tmp_path / "aq", chunksize=3, durability="flush")
    yield q
    q.close()


def test_the_exceptions_are_asyncio_ones() -> None:
    if sys.version_info >= (3, 13):
        assert QueueShutDown is asyncio.QueueShutDown
    else:
        assert issubclass(QueueShutDown, Exception)
        assert not issubclass(QueueShutDown, pqueue.PQueueError)


def test_items_survive_and_acknowledgements_hold_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "q"

    async def first() -> None:
        async with AsyncQueue[Any](path) as q:
            for i in range(5):
                await q.put(i)
            assert await q.get() == 0
            q.task_done()
            assert await q.get() == 1
            await q.atask_done()
            assert await q.get() == 2  # got, never acknowledged: delivered again

    async def second() -> list[int]:
        async with AsyncQueue[Any](path) as q:
            assert q.unfinished_tasks == 3
            items = [await q.get() for _ in range(3)]
            for _ in items:
                await q.atask_done()
            return items

    run(first)
    assert run(second) == [2, 3, 4]


def test_a_cancelled_get_counts_no_attempt(aq: AsyncQueue[Any]) -> None:
    """The getter thread took the item, then the get was cancelled: before the item was
    handed over, or after, before the get could return it. Either way the item is back, in
    its place, and its next delivery is attempt 1."""

    async def main() -> None:
        for yields in range(3):
            item = f"item{yields}"
            getter = asyncio.create_task(aq.get())
            await asyncio.sleep(0)
            aq.put_nowait(item)
            aq.put_nowait("behind")
            # Block the loop until the getter thread has taken the item.
            deadline = time.monotonic() + LIVENESS
            while aq.queue.qsize() != 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert aq.queue.qsize() == 1  # the thread holds it, the coroutine has not
            assert aq.qsize() == 2  # ...and qsize() still counts it
            for _ in range(yields):
                await asyncio.sleep(0)
            getter.cancel()
            try:
                assert await getter == item  # it had returned before the cancellation
                aq.task_done()
            except asyncio.CancelledError:
                delivery = await asyncio.wait_for(aq.get_delivery(), LIVENESS)
                assert (delivery.item, delivery.attempt) == (item, 1)
                await delivery.ack()
            assert aq.get_nowait() == "behind"
            aq.task_done()
            assert aq.unfinished_tasks == 0

    run(main)


def test_random_cancellations_of_deliveries_count_no_attempt(aq: AsyncQueue[Any]) -> None:
    rng = random.Random(3)

    async def main() -> None:
        n = 100
        attempts: dict[int, int] = {}

        stop = False

        async def consumer() -> None:
            while not stop:  # see test_random_cancellations_of_gets_lose_nothing
                with contextlib.suppress(asyncio.TimeoutError):
                    delivery = await asyncio.wait_for(aq.get_delivery(), rng.random() * 0.003)
                    assert delivery.item not in attempts
                    attempts[delivery.item] = delivery.attempt
                    await delivery.ack()

        consumers = [asyncio.create_task(consumer()) for _ in range(5)]
        for i in range(n):
            await aq.put(i)
            if rng.random() < 0.2:
                rng.choice([task for task in consumers if not task.done()]).cancel()
                consumers.append(asyncio.create_task(consumer()))
            await asyncio.sleep(rng.random() * 0.001)
        await eventually(lambda: len(attempts) > n // 2, "half the items got")
        stop = True
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        held_by_cancelled = aq.unfinished_tasks - aq.qsize()  # got, not acked, by a consumer
        while aq.qsize():
            delivery = await asyncio.wait_for(aq.get_delivery(), LIVENESS)
            attempts[delivery.item] = delivery.attempt
            await delivery.ack()
        # A consumer cancelled between get_delivery() returning and its ack() keeps the
        # item (its delivery was made); every other item was delivered once.
        assert len(attempts) + held_by_cancelled == n
        assert set(attempts.values()) == {1}

    run(main)


def test_deliveries_ack_nack_extend(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncQueue[Any](tmp_path / "q", lease_timeout=30) as q:
            await q.put("a")
            await q.put("b")
            first = await q.get_delivery()
            assert isinstance(first, AsyncDelivery)
            assert (first.item, first.attempt, first.acked) == ("a", 1, False)
            await first.extend(60)
            await first.nack()
            again = await q.get_delivery()
            assert (again.item, again.attempt, again.seq) == ("a", 2, first.seq)
            await again.ack()
            assert again.acked
            with pytest.raises(ValueError):
                await again.ack()
            with pytest.raises(ValueError):
                await again.nack(-1)
            with pytest.raises(RuntimeError):
                async with await q.get_delivery() as delivery:
                    assert delivery.item == "b"
                    raise RuntimeError("the handler failed")
            async with await q.get_delivery() as delivery:
                assert (delivery.item, delivery.attempt) == ("b", 2)
            assert q.unfinished_tasks == 0
            with pytest.raises(ValueError):
                q.task_done()  # task_done never acknowledges a delivery

    run(main)


class SlowPickle:
    """pickle, whose dumps takes a while for the item "slow": a write that is long enough
    for a timeout or a cancellation to arrive while it runs."""

    started = threading.Event()

    def dumps(self, obj: object) -> bytes:
        if obj == "slow":
            SlowPickle.started.set()
            time.sleep(0.3)
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> object:
        return pickle.loads(data)


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[AsyncQueue[Any]]:
    SlowPickle.started.clear()
    q: AsyncQueue[Any] = AsyncQueue(tmp_path / "slow", serializer=SlowPickle())
    yield q
    q.close()


async def write_begun() -> None:
    await eventually(SlowPickle.started.is_set, "the write")


def test_a_cancellation_during_the_write_lets_the_put_finish(slow: AsyncQueue[Any]) -> None:
    async def main() -> None:
        reached = []

        async def produce() -> None:
            await slow.put("slow")
            reached.append("after put")
            await asyncio.sleep(10)  # the cancellation is delivered here
            reached.append("after sleep")

        task = asyncio.create_task(produce())
        await write_begun()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reached == ["after put"]
        assert slow.get_nowait() == "slow"

    run(main)


def test_wait_for_put_returns_normally_when_the_item_was_put(slow: AsyncQueue[Any]) -> None:
    async def main() -> None:
        await asyncio.wait_for(slow.put("slow"), 0.05)  # expires during the write
        assert slow.qsize() == 1
        await asyncio.sleep(0.01)  # and no cancellation surfaces later
        assert slow.get_nowait() == "slow"

    run(main)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+")
def test_asyncio_timeout_around_a_put(slow: AsyncQueue[Any]) -> None:
    async def main() -> None:
        if sys.version_info >= (3, 11):  # (mypy checks as 3.10)
            task = asyncio.current_task()
            assert task is not None
            # Expiring during the write of the block's last statement: the item is put, the
            # block ends normally, and nothing is raised later.
            async with asyncio.timeout(0.05) as scope:
                await slow.put("slow")
            assert scope.expired() and task.cancelling() == 0
            await asyncio.sleep(0.01)
            assert slow.get_nowait() == "slow"
            # With more of the block to run, the block still ends with TimeoutError.
            SlowPickle.started.clear()
            reached = []
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await slow.put("slow")
                    reached.append("after put")
                    await asyncio.sleep(10)
            assert reached == ["after put"] and task.cancelling() == 0
            assert slow.get_nowait() == "slow"
            await asyncio.sleep(0.01)
            # A put that fails (a full queue) under an expired timeout: TimeoutError, not put.
            full: AsyncQueue[Any] = AsyncQueue(slow.path + "-full", maxsize=1)
            try:
                await full.put("in")
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await full.put("out")
                assert full.qsize() == 1 and task.cancelling() == 0
            finally:
                await full.aclose()

    run(main)


def test_a_write_that_fails_under_cancellation_raises_cancelled(tmp_path: Path) -> None:
    async def main() -> None:
        SlowPickle.started.clear()
        async with AsyncQueue[Any](tmp_path / "q", maxsize=1, serializer=SlowPickle()) as q:
            await q.put("in")
            writer = asyncio.create_task(q.put("slow"))  # pickles, then finds no room
            await write_begun()
            writer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await writer
            assert q.qsize() == 1 and q.get_nowait() == "in"
            assert await stays(q.empty)

    run(main)


class FailsTheSecondTime:
    """pickle, but the second dumps of the item "bad" fails: a put that waited for room,
    then fails to write."""

    def __init__(self) -> None:
        self.calls = 0

    def dumps(self, obj: object) -> bytes:
        if obj == "bad":
            self.calls += 1
            if self.calls == 2:
                raise ValueError("cannot write this one")
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> object:
        return pickle.loads(data)


def test_a_put_that_fails_after_waiting_lets_the_next_one_in(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "q"
        async with AsyncQueue[Any](path, maxsize=1, serializer=FailsTheSecondTime()) as q:
            q.put_nowait("in")
            failing = asyncio.create_task(q.put("bad"))
            assert await stays(lambda: not failing.done())
            behind = asyncio.create_task(q.put("good"))
            assert await stays(lambda: not behind.done())
            assert q.get_nowait() == "in"
            with pytest.raises(ValueError):
                await asyncio.wait_for(failing, LIVENESS)
            await asyncio.wait_for(behind, LIVENESS)
            assert q.get_nowait() == "good"

    run(main)


def test_the_loop_keeps_running_while_operations_wait(slow: AsyncQueue[Any]) -> None:
    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        getter = asyncio.create_task(slow.get())
        await asyncio.sleep(0.05)
        before = ticks
        await slow.put("slow")  # 0.3 s in the IO thread
        assert ticks > before + 5
        assert await getter == "slow"
        tick.cancel()

    run(main)


def test_a_put_by_another_queue_object_wakes_a_get(tmp_path: Path) -> None:
    path = tmp_path / "q"

    async def main() -> None:
        async with AsyncQueue[Any](path) as q:
            other: pqueue.Queue[Any] = pqueue.Queue(path)
            try:
                getter = asyncio.create_task(q.get())
                assert await stays(lambda: not getter.done())
                await asyncio.to_thread(other.put, "from the other")
                assert await asyncio.wait_for(getter, LIVENESS) == "from the other"
                # ...and a get by the other makes room for a put waiting here.
                q.task_done()
                await q.put("a")
                bounded: AsyncQueue[Any] = AsyncQueue(path, maxsize=1)
                try:
                    putter = asyncio.create_task(bounded.put("b"))
                    assert await stays(lambda: not putter.done())
                    assert await asyncio.to_thread(other.get) == "a"
                    await asyncio.wait_for(putter, LIVENESS)
                    assert await q.get() == "b"
                finally:
                    await bounded.aclose()
            finally:
                other.close()

    run(main)


def test_a_put_by_another_process_wakes_a_get(tmp_path: Path) -> None:
    path = tmp_path / "q"
    code = textwrap.dedent(
        f"""
        import time
        from pqueue import Queue
        q = Queue({str(path)!r})
        time.sleep(0.2)
        q.put("from the child")
        q.close()
        """
    )

    async def main() -> None:
        async with AsyncQueue[Any](path) as q:
            getter = asyncio.create_task(q.get())
            child = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
            assert await asyncio.wait_for(getter, LIVENESS + 5) == "from the child"
            assert await child.wait() == 0

    run(main)


EXIT_SCRIPT = """
import asyncio, sys
from pqueue.aio import AsyncQueue

async def main() -> None:
    q = AsyncQueue(sys.argv[1], maxsize=1)
    try:
        await asyncio.wait_for(q.get(), 0.1)
    except asyncio.TimeoutError:
        pass
    await q.put("fills it")
    asyncio.create_task(q.put("waits for room"))       # abandoned
    asyncio.create_task(q.join())                       # abandoned
    other = AsyncQueue(sys.argv[1] + "-empty")
    asyncio.create_task(other.get())                   # abandoned
    await asyncio.sleep(0.1)
    print("main returns", flush=True)

asyncio.run(main())
print("asyncio.run returned", flush=True)
"""


def test_abandoned_waits_do_not_keep_the_program_from_ending(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tmp_path / "q")],
        check=False, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["main returns", "asyncio.run returned"]
    assert elapsed < 15  # a liveness bound: threads waiting do not hold the exit up
    # The item put is there; the abandoned put was cancelled while waiting: not put.
    q: pqueue.Queue[Any] = pqueue.Queue(tmp_path / "q")
    try:
        assert q.qsize() == 1 and q.get_nowait() == "fills it"
    finally:
        q.close()


def test_threads_end_when_idle_and_at_close(tmp_path: Path) -> None:
    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("pqueue.aio")]

    async def main() -> None:
        q: AsyncQueue[Any] = AsyncQueue(tmp_path / "q", maxsize=1)
        await q.put(1)
        waiters = [asyncio.create_task(q.put(2)), asyncio.create_task(q.join())]
        await asyncio.sleep(0.02)
        assert ours()
        for w in waiters:
            w.cancel()
        assert await q.get() == 1
        q.task_done()
        await eventually(lambda: not ours(), "the threads ending")  # about 2 s: linger
        getter = asyncio.create_task(q.get())
        await asyncio.sleep(0.02)
        assert ours()
        await q.aclose()
        assert not ours()
        with pytest.raises(pqueue.QueueClosedError):
            await getter
        with pytest.raises(pqueue.QueueClosedError):
            await q.get()
        with pytest.raises(pqueue.QueueClosedError):
            q.put_nowait(1)
        q.close()  # idempotent

    run(main)


def test_bound_to_one_loop_at_a_time(aq: AsyncQueue[Any]) -> None:
    async def put_one() -> None:
        await aq.put(1)

    run(put_one)
    run(put_one)  # the first loop is closed: the next one takes its place
    assert aq.qsize() == 2

    async def hold() -> None:
        other_loop: list[BaseException] = []

        def in_thread() -> None:
            try:
                asyncio.run(put_one())
            except RuntimeError as exc:
                other_loop.append(exc)

        await aq.put(3)
        thread = threading.Thread(target=in_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert other_loop and "different event loop" in str(other_loop[0])

    run(hold)


def test_loop_is_never_blocked_by_a_get_waiting_on_another_process(tmp_path: Path) -> None:
    """With a shared queue and nothing in it, a waiting get costs the loop nothing: other
    coroutines run meanwhile (the get waits in its thread, on the other participants)."""

    async def main() -> None:
        async with AsyncQueue[Any](tmp_path / "q") as q:
            getter = asyncio.create_task(q.get())
            started = time.monotonic()
            steps = 0
            while time.monotonic() - started < 0.1:
                await asyncio.sleep(0)
                steps += 1
            assert steps > 50 and not getter.done()
            getter.cancel()

    run(main)


def test_repr_and_properties(aq: AsyncQueue[Any]) -> None:
    async def main() -> None:
        getter = asyncio.create_task(aq.get())
        await asyncio.sleep(0)
        assert "getters[1]" in repr(aq) and "AsyncQueue" in repr(aq)
        aq.put_nowait(0)
        assert await getter == 0
        assert aq.unfinished_tasks == 1 and "shutdown" not in repr(aq)
        aq.shutdown()
        assert aq.is_shutdown and "shutdown" in repr(aq)

    run(main)


def awaitable_names() -> list[str]:
    """AsyncQueue's coroutine methods (for the docs test below)."""
    return [n for n in dir(AsyncQueue) if asyncio.iscoroutinefunction(getattr(AsyncQueue, n))]


def test_the_interface_of_asyncio_queue_is_there() -> None:
    for name in ["put", "get", "join"]:
        assert name in awaitable_names()
    for name in ["put_nowait", "get_nowait", "task_done", "qsize", "empty", "full", "shutdown"]:
        method: Callable[..., object] = getattr(AsyncQueue, name)
        assert not asyncio.iscoroutinefunction(method)
    awaitables: list[Callable[..., Awaitable[object]]] = [
        AsyncDelivery.ack, AsyncDelivery.nack, AsyncDelivery.extend,
    ]
    assert all(asyncio.iscoroutinefunction(f) for f in awaitables)
