"""``AsyncQueue``: the asyncio front of pqueue, with the interface of ``asyncio.Queue``.

    from pqueue.aio import AsyncQueue

    async with AsyncQueue("/var/lib/myapp/jobs") as q:
        await q.put({"job": 1})         # durable when it returns (fsync mode)
        item = await q.get()
        ...                             # work on it
        await q.atask_done()            # durable acknowledgement, written off the loop

An ``AsyncQueue`` wraps one ``pqueue.Queue`` and keeps every operation that waits, or waits
for an fdatasync (fsync mode), off the event loop, in daemon threads of its own (in flush
mode, a put, get or acknowledgement that nothing waits before runs on the loop's thread at
once: one operation, as ``put_nowait``, without two thread hops):

- the *IO thread* runs puts, acknowledgements, ``nack``/``extend`` and the giving back of
  items nobody took, one at a time, in the order they were asked for;
- the *getter thread* takes items for the coroutines waiting in ``get()``/``get_delivery()``
  (a blocking ``Queue.get_delivery`` with a time limit, which wakes on a put in any process);
- the *room thread* waits for room for the coroutines waiting in ``put()`` (bounded queues);
- the *join thread* waits for every item to be acknowledged, for ``join()``.

Each thread starts when it has work and ends about a second after it runs out of it (or at
``close()``). They are daemon threads: a program that ends (``asyncio.run`` returning, the
interpreter exiting) never waits for them, whatever they wait for. ``close()``/``aclose()``
ends them at once, after the IO thread has finished the writes under way.

The methods without ``await`` (``put_nowait``, ``get_nowait``, ``task_done``, ``qsize``,
``empty``, ``full``, ``shutdown``) run on the caller's thread, as in ``asyncio.Queue``, and so
block the loop for the one operation they make (``put_nowait`` and ``task_done``: one write,
with its fdatasync in fsync mode; the others a read), after the end of any operation on the
same queue already under way (in one of these threads, or, for the shared lock, in another
process). ``join()`` makes one such read before it waits.

Like ``asyncio.Queue``, an ``AsyncQueue`` is not thread-safe: use it from the thread of its
event loop only. It is bound to the first event loop that awaits one of its coroutines, and
refuses others while that loop is open.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from time import monotonic
from types import ModuleType, TracebackType
from typing import Any, Generic, TypeVar

from pqueue.core.errors import Empty, Full, PQueueError, QueueClosedError, ShutDown
from pqueue.core.state import Durability, Policy
from pqueue.core.transitions import Command, Phase
from pqueue.io.fs import FileSystem
from pqueue.io.shared import _block_signals
from pqueue.queue import Delivery, Queue
from pqueue.serializers import Serializer

__all__ = ["AsyncDelivery", "AsyncQueue", "QueueShutDown"]

T = TypeVar("T")
R = TypeVar("R")

if sys.version_info >= (3, 13):
    QueueShutDown = asyncio.QueueShutDown
else:

    class QueueShutDown(Exception):  # noqa: N818 - asyncio's name (3.13+)
        """Raised by ``put`` after ``shutdown()``, and by ``get`` once the queue is shut down
        and empty (``asyncio.QueueShutDown`` itself on Python 3.13+)."""


# Seconds a thread waits at most in one blocking call before it looks again whether anyone
# still wants what it waits for. The getter thread's get, once begun, cannot be called off:
# an item put within this time after the last waiting get was cancelled is taken, then
# given back at once (uncounted, first in line again).
_SLICE = 0.25
_LINGER = 1.0  # seconds a thread with nothing to do stays before it ends
_JOIN_TIMEOUT = 10.0  # seconds close() waits for a thread to end


class _SliceOverError(Exception):
    """A wait of ``_SLICE`` seconds ended with nothing to report."""


def _translated(exc: Exception) -> Exception:
    """The asyncio counterpart of ``exc``: ``QueueShutDown``, ``QueueEmpty``, ``QueueFull``;
    any other exception as it is."""
    new: Exception
    if isinstance(exc, ShutDown):
        new = QueueShutDown(str(exc) or "the queue was shut down")
    elif isinstance(exc, Empty):
        new = asyncio.QueueEmpty()
    elif isinstance(exc, Full):
        new = asyncio.QueueFull()
    else:
        return exc
    new.__cause__ = exc
    new.__suppress_context__ = True
    return new


def _seq(delivery: Delivery[Any]) -> int:
    return delivery.seq


def _cancel_again(task: asyncio.Task[Any]) -> None:
    """Deliver again a cancellation of ``task`` that an operation let finish (see ``put``).

    On Python 3.11+ only while the request stands (``task.cancelling()``): a request withdrawn
    since, as ``asyncio.timeout()`` withdraws its own when its block ends, is not delivered.
    The count of requests is left as it was, so that ``asyncio.timeout()`` still turns the
    cancellation into ``TimeoutError``. Python 3.10 keeps no such count: the cancellation is
    delivered at the task's next await if the task has not ended."""
    if task.done():
        return
    if sys.version_info >= (3, 11):
        if task.cancelling():
            task.cancel()
            task.uncancel()
    else:
        task.cancel()


async def _outcome(fut: asyncio.Future[R]) -> R:
    """The outcome of ``fut`` (an operation under way in a thread), waited for to the end even
    when the awaiting task is cancelled meanwhile. Such a cancellation is raised as
    ``CancelledError`` if the operation failed (it did not happen); if it succeeded, its result
    is returned and the cancellation is delivered again at the task's next await
    (``_cancel_again``)."""
    cancelled = False
    while not fut.done():
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:
            pass
    if not cancelled:
        return fut.result()
    if fut.exception() is not None:
        raise asyncio.CancelledError
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().call_soon(_cancel_again, task)
    return fut.result()


def _resolve(fut: asyncio.Future[Any], result: object, exc: Exception | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


# --- the waits of Queue, with a time limit ------------------------------------------------
# Queue waits for room inside put() and for the last acknowledgement inside join(), with no
# way to wait without putting, or to stop a join. These are the same waits, ended after
# ``timeout`` seconds, so that a thread waiting for coroutines that gave up stops soon.


def _wait_for_room(queue: Queue[Any], timeout: float) -> bool:
    """Wait until ``queue`` has room for a put (as ``Queue.put`` waits): True once it has,
    False after ``timeout`` seconds. Raises as ``put`` (``ShutDown``, ``QueueClosedError``...)."""
    with queue.mutex:
        if queue._phase is not Phase.OPEN:
            queue._enter(Command.PUT)
        try:
            queue._begin()
            if queue._shell.state.size >= queue._maxsize > 0:
                try:
                    queue._wait_for_room(timeout)
                except Full:
                    return False
            return True
        finally:
            queue._leave()


def _wait_until_done(queue: Queue[Any], timeout: float) -> bool:
    """Wait until every item of ``queue`` is acknowledged (as ``Queue.join`` waits): True
    once they are, False after ``timeout`` seconds."""
    endtime = monotonic() + timeout
    with queue.mutex:
        queue._enter(Command.INSPECT)
        queue._joiners += 1
        try:
            while queue._unfinished():
                try:
                    queue._wait(queue.all_tasks_done, endtime, _SliceOverError)
                except _SliceOverError:
                    return False
                queue._enter(Command.INSPECT)
            return True
        finally:
            queue._joiners -= 1
            queue._leave()


# --- the threads ---------------------------------------------------------------------------


class _Service:
    """One daemon thread of an AsyncQueue, doing one kind of work (``_step``) while there is
    some (``_wanted``, read under the AsyncQueue's lock). Started by ``poke`` when work
    appears; it ends after ``_LINGER`` seconds without work, or once stopped."""

    kind = ""

    def __init__(self, owner: AsyncQueue[Any]) -> None:
        self._owner = owner
        self._cond = threading.Condition(owner._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False

    def _wanted(self) -> bool:
        raise NotImplementedError

    def _step(self) -> None:
        raise NotImplementedError

    def poke(self) -> None:
        """(Under the lock.) There may be work: wake the thread, or start one."""
        if self._stopping or not self._wanted():
            return
        if self._thread is not None:
            self._cond.notify()
            return
        thread = threading.Thread(
            target=self._run, name=f"pqueue.aio {self.kind} {self._owner.path}", daemon=True
        )
        self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._thread = None
            raise

    def _run(self) -> None:
        _block_signals()  # signals are the main thread's: never handled here (see Queue)
        try:
            while True:
                with self._cond:
                    idle_until = monotonic() + _LINGER
                    while not self._wanted():
                        remaining = idle_until - monotonic()
                        if self._stopping or remaining <= 0.0:
                            self._thread = None
                            return
                        self._cond.wait(remaining)
                self._step()
        except BaseException:
            with self._cond:
                self._thread = None
            raise

    def stop(self) -> threading.Thread | None:
        """Ask the thread to end (once its work is done, for the IO thread); the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            return self._thread


class _Jobs(_Service):
    """The IO thread: runs the jobs given to it one at a time, in order; each job's outcome
    goes to its future on the loop. Stopping, it runs the jobs already given, then ends."""

    kind = "io"

    def __init__(self, owner: AsyncQueue[Any]) -> None:
        super().__init__(owner)
        self._jobs: deque[tuple[Callable[[], Any], asyncio.Future[Any] | None]] = deque()

    def submit(self, loop: asyncio.AbstractEventLoop, job: Callable[[], R]) -> asyncio.Future[R]:
        fut: asyncio.Future[R] = loop.create_future()
        with self._cond:
            if self._stopping:
                raise QueueClosedError(f"the queue at {self._owner.path!r} is closed")
            self._jobs.append((job, fut))
            self.poke()
        return fut

    def call(self, job: Callable[[], object]) -> None:
        """Run ``job`` (no outcome to report; it raises nothing)."""
        with self._cond:
            if not self._stopping:
                self._jobs.append((job, None))
                self.poke()

    def _wanted(self) -> bool:
        return bool(self._jobs)

    def _step(self) -> None:
        with self._cond:
            job, fut = self._jobs.popleft()
        try:
            result = job()
        except Exception as exc:
            if fut is not None:
                self._owner._post(_resolve, fut, None, exc)
            return
        if fut is not None:
            self._owner._post(_resolve, fut, result, None)


class _Fetcher(_Service):
    """The getter thread: takes one item for each coroutine waiting in get() that no item
    taken already is for, and hands it (or the exception its get raised) to the loop."""

    kind = "get"

    def __init__(self, owner: AsyncQueue[Any]) -> None:
        super().__init__(owner)
        # (Under the lock.) True from the moment the thread decides to take an item until
        # the item is among the spares: a get on the loop's thread (flush mode) must not
        # take one meanwhile, or it would overtake the older item on its way.
        self.taking = False

    def _wanted(self) -> bool:
        owner = self._owner
        if self._stopping or owner._returning:
            # Nothing is taken while an item goes back: it comes first again.
            self.taking = False
            return False
        supply = len(owner._errors) + (0 if owner._dropped else len(owner._spare))
        self.taking = owner._waiting > supply
        return self.taking

    def _step(self) -> None:
        owner = self._owner
        try:
            delivery = owner._queue.get_delivery(timeout=_SLICE)
        except Empty:
            with self._cond:
                self.taking = False
            return
        except Exception as exc:
            with self._cond:
                self.taking = False
                if self._stopping:  # closing: the waiting getters get QueueClosedError
                    return
                owner._errors.append(_translated(exc))
                owner._schedule_dispatch()
            return
        with self._cond:
            self.taking = False
            bisect.insort(owner._spare, delivery, key=_seq)
            owner._schedule_dispatch()


class _RoomWatch(_Service):
    """The room thread: waits for room while coroutines wait in put(), and tells the loop."""

    kind = "room"

    def _wanted(self) -> bool:
        owner = self._owner
        return not self._stopping and owner._putters_waiting > 0 and not owner._room_posted

    def _step(self) -> None:
        owner = self._owner
        with contextlib.suppress(Exception):  # an error: the putters' own attempts meet it
            if not _wait_for_room(owner._queue, _SLICE):
                return
        with self._cond:
            if not self._wanted():
                return
            owner._room_posted = True
            if not owner._post(owner._room_found):
                owner._loop_gone()


class _JoinWatch(_Service):
    """The join thread: waits until every item is acknowledged while coroutines wait in
    join(), and tells the loop which of them may return."""

    kind = "join"

    def _wanted(self) -> bool:
        owner = self._owner
        return (
            not self._stopping
            and owner._join_live > 0
            and owner._join_answered < owner._join_last
        )

    def _step(self) -> None:
        owner = self._owner
        with self._cond:
            upto = owner._join_last
        error: Exception | None = None
        try:
            if not _wait_until_done(owner._queue, _SLICE):
                return
        except Exception as exc:
            error = exc
        with self._cond:
            owner._join_answered = upto
            if not owner._post(owner._joins_answered, upto, error):
                owner._loop_gone()


# --- the queue -------------------------------------------------------------------------------


class AsyncDelivery(Generic[T]):
    """One delivered item, got from ``AsyncQueue.get_delivery()``, acknowledged explicitly with
    ``await ack()`` (or given back with ``await nack()``), as ``pqueue.Delivery``.

    ``item``, ``attempt`` (1 for the first delivery of the item, counted across processes) and
    ``seq`` are as ``Delivery``'s. ``ack``, ``nack`` and ``extend`` write in the IO thread and
    follow ``AsyncQueue.put``'s rule for cancellation: once called, they finish; a
    cancellation that arrives meanwhile is raised as ``CancelledError`` only if the operation
    failed (it then changed nothing), and otherwise delivered again at the task's next await,
    the call returning normally. As an async context manager it acknowledges when the block
    ends without an exception and gives the item back (``nack()``) when it ends with an
    exception or is cancelled.
    """

    __slots__ = ("_delivery", "_owner")

    def __init__(self, owner: AsyncQueue[T], delivery: Delivery[T]) -> None:
        self._owner = owner
        self._delivery = delivery

    @property
    def item(self) -> T:
        """The item."""
        return self._delivery.item

    @property
    def attempt(self) -> int:
        """How many times the item was delivered, this time included."""
        return self._delivery.attempt

    @property
    def seq(self) -> int:
        """The item's sequence number in its queue."""
        return self._delivery.seq

    @property
    def acked(self) -> bool:
        """Whether ``ack()`` has returned."""
        return self._delivery.acked

    @property
    def delivery(self) -> Delivery[T]:
        """The ``pqueue.Delivery`` (its methods block: not for the event loop's thread)."""
        return self._delivery

    async def ack(self) -> None:
        """Acknowledge the item (durably, in fsync mode): it is never delivered again.
        Raises as ``Delivery.ack`` (``ValueError``, ``LeaseExpiredError``)."""
        await self._owner._run(self._delivery.ack)

    async def nack(self, delay: float = 0.0) -> None:
        """Give the item back, to be delivered again at once or after ``delay`` seconds
        (this delivery counts as an attempt). Raises as ``Delivery.nack``."""
        if not delay >= 0.0:
            raise ValueError(f"delay must be a non-negative number of seconds, got {delay!r}")
        await self._owner._run(partial(self._delivery.nack, delay))

    async def extend(self, seconds: float) -> None:
        """Renew the lease: the item stays this consumer's for ``seconds`` from now. Raises
        as ``Delivery.extend``."""
        if not seconds > 0.0:
            raise ValueError(f"seconds must be a positive number, got {seconds!r}")
        await self._owner._run(partial(self._delivery.extend, seconds))

    async def __aenter__(self) -> AsyncDelivery[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._delivery._done:
            return
        if exc_type is None:
            await self.ack()
        elif issubclass(exc_type, (Exception, asyncio.CancelledError)):
            with contextlib.suppress(PQueueError):
                await self.nack()

    def __repr__(self) -> str:
        return f"<pqueue.aio.AsyncDelivery of {self._delivery!r}>"


class AsyncQueue(Generic[T]):
    """A persistent FIFO queue in directory ``path``, with the interface and semantics of
    ``asyncio.Queue`` (``shutdown`` as in Python 3.13, on every supported Python).

    The arguments are ``pqueue.Queue``'s, which says what each one does; opening the
    directory happens in the constructor and blocks while the queue is recovered (from a
    coroutine, ``await asyncio.to_thread(AsyncQueue, path)`` keeps the loop free). Any number
    of AsyncQueue and Queue objects, in any number of processes, may share the directory (the
    default, ``exclusive=False``): a put by any of them wakes a coroutine waiting in ``get()``
    here, and a get by any of them makes room for a ``put()`` waiting here.

    Errors are asyncio's: ``asyncio.QueueEmpty``, ``asyncio.QueueFull`` and, after
    ``shutdown()``, ``QueueShutDown`` (``asyncio.QueueShutDown`` on Python 3.13+, this
    module's own class before). pqueue's own errors (``QueueClosedError``,
    ``QueueBrokenError``, ``CorruptQueueError``, ``DiskFullError``...) are raised as
    ``Queue`` raises them.

    Waiting coroutines are served in the order they started waiting: getters strictly so;
    putters roughly so (a put that finds room writes at once, even while others wait for
    room in a shared queue filled by other processes).
    """

    def __init__(
        self,
        path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        maxsize: int = 0,
        chunksize: int = 100,
        tempdir: str | os.PathLike[str] | None = None,
        *,
        durability: Durability = "fsync",
        serializer: Serializer | ModuleType | None = None,
        exclusive: bool = False,
        lease_timeout: float | None = None,
        max_attempts: int | None = None,
        fs: FileSystem | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._queue: Queue[T] = Queue(
            path, maxsize, chunksize, tempdir, durability=durability, serializer=serializer,
            exclusive=exclusive, lease_timeout=lease_timeout, max_attempts=max_attempts,
            fs=fs, policy=policy,
        )
        self.path = self._queue.path
        # Guards what the threads share with the loop; never held while calling the Queue.
        self._lock = threading.RLock()
        # Held while an item goes back to the queue (and by qsize()), so that qsize() never
        # counts it twice or not at all. Taken before _lock, never after.
        self._return_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shut = False  # shutdown() was called
        self._dropped = False  # shutdown(immediate=True): nothing is delivered any more
        self._closed = False

        # get: the loop's waiting getters, and under _lock, how many wait, the deliveries
        # taken and not handed to one (in seq order), the exceptions of gets not handed.
        self._getters: deque[asyncio.Future[Delivery[T]]] = deque()
        self._waiting = 0
        self._spare: list[Delivery[T]] = []
        self._errors: deque[Exception] = deque()
        self._returning = 0  # spare deliveries being given back to the queue right now
        self._dispatching = False  # a _dispatch is scheduled on the loop
        self._got: deque[Delivery[T]] = deque()  # got with get(), for task_done (oldest first)

        # put: the loop's waiting putters; under _lock, how many wait, and whether the room
        # thread has told the loop of room it has not acted on yet.
        self._putters: deque[asyncio.Future[None]] = deque()
        self._putters_waiting = 0
        self._room_posted = False

        # join: the loop's waiting joiners, numbered; under _lock, how many wait, the number
        # of the latest, and up to which number they are answered.
        self._joiners: list[tuple[int, asyncio.Future[None]]] = []
        self._join_live = 0
        self._join_last = 0
        self._join_answered = 0

        # Flush mode writes no fdatasync: its operations run on the loop's thread when nothing
        # waits before them (one operation, as put_nowait does), instead of two thread hops.
        self._inline = self._queue.durability == "flush"
        self._io = _Jobs(self)
        self._fetcher = _Fetcher(self)
        self._room = _RoomWatch(self)
        self._join_watch = _JoinWatch(self)

    # --- asyncio.Queue ------------------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The bound on ``qsize()`` that makes ``put`` wait (0: unbounded)."""
        return self._queue.maxsize

    @property
    def queue(self) -> Queue[T]:
        """The ``pqueue.Queue`` underneath (for ``dead_letters``, ``discard_damaged``...; its
        blocking calls are not for the event loop's thread)."""
        return self._queue

    @property
    def unfinished_tasks(self) -> int:
        """Items not yet acknowledged, by any participant (``join`` waits for them)."""
        return self._queue.unfinished_tasks

    @property
    def is_shutdown(self) -> bool:
        """Whether ``shutdown()`` was called."""
        return self._shut

    def qsize(self) -> int:
        """The number of items waiting to be got (put by any participant), including any
        that a cancelled get had taken and that are on their way back."""
        with self._return_lock:
            size = self._queue.qsize()
            with self._lock:
                if not self._dropped:
                    size += len(self._spare) + self._returning
        return size

    def empty(self) -> bool:
        """Whether no item is waiting to be got."""
        return self.qsize() == 0

    def full(self) -> bool:
        """Whether ``put_nowait`` would raise ``QueueFull`` (never, for an unbounded queue)."""
        return 0 < self.maxsize <= self.qsize()

    async def put(self, item: T) -> None:
        """Put ``item`` at the end of the queue, waiting for room while the queue is full;
        in fsync mode the item is durable when put() returns.

        Cancellation: put() can be cancelled only while it waits for room, so that
        ``CancelledError`` from put() always means the item was not put. Once its write has
        begun (in the IO thread) it is not interrupted: a cancellation arriving then is
        held until the write ends. If the item was put, put() returns normally and the
        cancellation is delivered again at the task's next await, unless it was withdrawn
        meanwhile (Python 3.11+: ``asyncio.timeout()`` withdraws its own as its block ends,
        so that a timeout that expired during the write of the block's last put does not
        surface later; one that expired with more of the block to run still ends the block
        with ``TimeoutError``). If the write failed (no room after all, shutdown, an error),
        put() raises the ``CancelledError``. So after ``asyncio.wait_for(q.put(x), t)`` or
        ``async with asyncio.timeout(t): await q.put(x)``, ``TimeoutError`` means "not put"
        and a normal return means "put". A write takes one operation (one fdatasync in
        fsync mode): that is how long a cancellation can wait.

        Raises ``QueueShutDown`` after ``shutdown()`` (a put waiting for room included), the
        serializer's error or ``DiskFullError`` (nothing put), and pqueue's other errors.
        """
        loop = self._bind()
        self._check_open()
        if self._shut:
            raise QueueShutDown(f"the queue at {self.path!r} was shut down")
        if self._inline and not self._putters:
            try:
                self._put_now(item)  # flush mode, nobody waiting for room: at once
                return
            except Full:
                pass
            except ShutDown as exc:
                raise _translated(exc) from None
        if self._putters:
            await self._wait_turn(loop, first=False)
        writing = True
        try:
            while True:
                try:
                    await self._outcome_of(loop, partial(self._put_now, item))
                except Full:
                    writing = False
                    await self._wait_turn(loop, first=True)
                    writing = True
                    continue
                except ShutDown as exc:
                    raise _translated(exc) from None
                break
        finally:
            # The write is over, done or failed: the next putter in line tries now (there
            # may be room for it too, or its own error to meet).
            if writing and self._putters:
                self._pass_turn()

    def put_nowait(self, item: T) -> None:
        """Put ``item`` at once (on the calling thread: one write, with its fdatasync in
        fsync mode), or raise ``asyncio.QueueFull``; ``QueueShutDown`` after shutdown()."""
        self._check_open()
        try:
            self._put_now(item)
        except (Full, ShutDown) as exc:
            raise _translated(exc) from None

    def _put_now(self, item: T) -> None:
        """Put without waiting. In a bounded queue, the items a cancelled get had taken
        (on their way back) go back first, so that the room looked at is the room there is."""
        if self._queue.maxsize > 0 and self._spare:
            self._return_spares()
        self._queue.put_nowait(item)

    async def get(self) -> T:
        """Remove and return the next item, waiting until one is there.

        The item counts as unfinished until ``task_done()``/``atask_done()`` acknowledges it;
        until then it is delivered again if this participant closes or dies (or its lease
        runs out).

        Cancellation: get() can be cancelled at any moment, and a cancelled get() never
        takes an item: if an item had been taken for it already (the getter thread took it
        as the cancellation arrived), the item goes to the next waiting get() of this
        AsyncQueue, or back to the queue at once, in its place and without counting the
        attempt (its next delivery is still attempt 1). Nothing is lost, and nothing stays
        held.

        Raises ``QueueShutDown`` once the queue is shut down and empty (at once after
        ``shutdown(immediate=True)``), and pqueue's errors as ``Queue.get`` raises them
        (``CorruptQueueError``, the serializer's error for an item that cannot be loaded:
        that item is then dropped by a later ``task_done()``, see there).
        """
        return self._track(await self._take())

    def get_nowait(self) -> T:
        """Remove and return an item if one is there at once, else raise
        ``asyncio.QueueEmpty`` (``QueueShutDown`` if shut down and empty). Reads on the
        calling thread."""
        return self._track(self._take_nowait())

    async def get_delivery(self) -> AsyncDelivery[T]:
        """Like ``get()``, but return an ``AsyncDelivery`` to acknowledge explicitly with
        ``await ack()`` (or give back with ``await nack()``). ``task_done()`` never
        acknowledges an item got this way. Cancellation as ``get()``."""
        return AsyncDelivery(self, await self._take())

    def task_done(self) -> None:
        """Acknowledge the oldest item got with ``get()``/``get_nowait()`` on this AsyncQueue
        and not yet acknowledged; in fsync mode it is durable on return and never delivered
        again.

        It writes on the calling thread, as ``asyncio.Queue.task_done`` is synchronous: it
        blocks the loop for one acknowledgement (one fdatasync in fsync mode), plus the end of
        an operation of this AsyncQueue's threads under way, if any. ``await atask_done()``
        does the same off the loop.

        Raises ``ValueError`` when no such item waits for acknowledgement, and
        ``LeaseExpiredError`` when the item's lease ran out and it was given back (the next
        ``task_done`` then acknowledges the next item). An item whose loading failed (its
        get raised the serializer's error) is acknowledged, that is dropped, by a
        ``task_done()`` that finds no other item waiting.
        """
        if self._got:
            self._got.popleft().ack()
        else:
            self._queue.task_done()
        self._joins_check()

    async def atask_done(self) -> None:
        """``task_done()`` with its write in the IO thread: the loop goes on meanwhile.
        Once called it finishes (cancellation as ``put``: ``CancelledError`` only if nothing
        was acknowledged)."""
        settle = self._got.popleft().ack if self._got else self._queue.task_done
        await self._run(settle)

    async def join(self) -> None:
        """Wait until every item put (by any participant, including those from before a
        reopen) is acknowledged. Returns at once when none is unfinished (one read on the
        calling thread). Cancellable at any moment."""
        loop = self._bind()
        self._check_open()
        if not self._queue.unfinished_tasks:
            return
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._join_last += 1
            self._joiners.append((self._join_last, fut))
            self._join_live += 1
            self._join_watch.poke()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                with self._lock:
                    self._join_live -= 1
                self._joiners = [(n, f) for n, f in self._joiners if f is not fut]
            raise

    def shutdown(self, immediate: bool = False) -> None:
        """Shut this AsyncQueue down, as ``asyncio.Queue.shutdown`` (Python 3.13).

        Later ``put`` calls raise ``QueueShutDown``, and so do puts waiting for room.
        ``get`` drains what is left, then raises ``QueueShutDown`` (getters waiting on an
        empty queue at once). With ``immediate=True`` no item is delivered any more: every
        ``get`` raises ``QueueShutDown`` at once, and ``join`` waits only for the items
        already got: the items waiting stay on disk, for other participants and the next
        open. Other AsyncQueue and Queue objects on the directory go on as they were.
        """
        self._queue.shutdown(immediate)
        self._shut = True
        self._fail_putters(lambda: QueueShutDown(f"the queue at {self.path!r} was shut down"))
        with self._lock:
            if immediate:
                self._dropped = True
            spare = bool(self._spare) and not self._dropped
            if self._dropped and self._spare:
                self._io.call(self._return_spares)
        if immediate or (not spare and self._queue.qsize() == 0):
            self._fail_getters(
                lambda: QueueShutDown(f"the queue at {self.path!r} was shut down and is empty")
            )
        if immediate:
            self._joins_check()

    # --- life ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the writes under way, end the threads, give back any item taken for a get
        that was cancelled, then close the Queue (a checkpoint: it blocks the calling
        thread; from a coroutine, ``await aclose()``). Later calls raise
        ``QueueClosedError``, and so do coroutines still waiting. Idempotent.

        Items got and not acknowledged are delivered again: at once to the other
        participants, or at the next open.
        """
        if self._closed:
            return
        self._closed = True
        waits = [self._fetcher.stop(), self._room.stop(), self._join_watch.stop()]
        try:
            # Ends the blocking calls of the threads at once (a get wakes and finds the
            # queue shut down and empty, or takes one more item, which goes back below).
            with contextlib.suppress(PQueueError):
                self._queue.shutdown()
            _join(waits[0])
            _join(self._io.stop())
            self._return_spares(everything=True)
            self._queue.close()
        finally:
            for thread in waits[1:]:
                _join(thread)
            self._fail_waiters_soon(self.path)

    async def aclose(self) -> None:
        """``close()`` in a thread of its own; once called it finishes (a cancellation
        meanwhile is delivered again at the task's next await, as ``put``'s)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def run() -> None:
            _block_signals()
            try:
                self.close()
            except Exception as exc:
                _post_to(loop, _resolve, fut, None, exc)
            else:
                _post_to(loop, _resolve, fut, None, None)

        thread = threading.Thread(target=run, name=f"pqueue.aio close {self.path}", daemon=True)
        thread.start()
        try:
            await _outcome(fut)
        finally:
            # Its last step is posting the outcome: it ends at once, and is gone on return.
            thread.join()

    async def __aenter__(self) -> AsyncQueue[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        parts = [f"path={self.path!r}", f"maxsize={self.maxsize}"]
        if self._getters:
            parts.append(f"getters[{len(self._getters)}]")
        if self._putters:
            parts.append(f"putters[{len(self._putters)}]")
        if self._shut:
            parts.append("shutdown")
        if self._closed:
            parts.append("closed")
        return f"<pqueue.aio.AsyncQueue {' '.join(parts)}>"

    # --- inside --------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which this AsyncQueue is bound to from its first await on. A
        loop closed since leaves nothing waiting: the next loop takes its place."""
        loop = asyncio.get_running_loop()
        bound = self._loop
        if bound is not loop:
            if bound is not None and not bound.is_closed():
                raise RuntimeError(f"{self!r} is bound to a different event loop")
            with self._lock:
                self._loop_gone()
                self._getters.clear()
                self._putters.clear()
                self._joiners.clear()
                self._loop = loop
        return loop

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError(f"the queue at {self.path!r} is closed")

    def _post(self, callback: Callable[..., object], *args: Any) -> bool:
        """Have the loop call ``callback(*args)`` (from any thread); False if it cannot
        (no loop, or closed)."""
        loop = self._loop
        return loop is not None and _post_to(loop, callback, *args)

    def _loop_gone(self) -> None:
        """(Under the lock.) The loop can no longer be told anything: nobody waits any more."""
        self._waiting = 0
        self._putters_waiting = 0
        self._join_live = 0
        if self._spare:
            self._io.call(partial(self._return_spares, everything=True))

    async def _outcome_of(self, loop: asyncio.AbstractEventLoop, job: Callable[[], R]) -> R:
        return await _outcome(self._io.submit(loop, job))

    async def _run(self, job: Callable[[], R]) -> R:
        """Run ``job`` in the IO thread; its outcome, with ``_outcome``'s cancellation rule.
        In flush mode (no fdatasync to wait for) it runs at once, on the loop's thread."""
        loop = self._bind()
        if self._inline:
            return job()
        return await self._outcome_of(loop, job)

    # get

    def _track(self, delivery: Delivery[T]) -> T:
        self._got.append(delivery)
        return delivery.item

    async def _take(self) -> Delivery[T]:
        """The next delivery, waited for; a cancelled wait takes nothing."""
        loop = self._bind()
        self._check_open()
        if self._dropped:
            raise QueueShutDown(f"the queue at {self.path!r} was shut down")
        with self._lock:
            if self._spare:
                return self._spare.pop(0)
            # Flush mode: at once, on the loop's thread, unless a get waits before this one
            # or an item is on its way to the spares or back to the queue.
            inline = (
                self._inline and not self._getters and not self._fetcher.taking
                and not self._returning
            )
        if inline:
            try:
                return self._queue.get_delivery(block=False)
            except Empty:
                pass
            except ShutDown as exc:
                raise _translated(exc) from None
        with self._lock:
            if self._spare:
                return self._spare.pop(0)
            fut: asyncio.Future[Delivery[T]] = loop.create_future()
            self._getters.append(fut)
            self._waiting += 1
            self._fetcher.poke()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.cancelled():  # nothing was handed to it
                with self._lock:
                    self._waiting -= 1
                with contextlib.suppress(ValueError):
                    self._getters.remove(fut)
            elif fut.exception() is None:
                # Handed a delivery, then cancelled before it could return it: the delivery
                # goes to the next getter, or back to the queue uncounted.
                with self._lock:
                    bisect.insort(self._spare, fut.result(), key=_seq)
                self._dispatch()
            raise

    def _take_nowait(self) -> Delivery[T]:
        self._check_open()
        with self._lock:
            if self._spare and not self._dropped:
                return self._spare.pop(0)
        try:
            return self._queue.get_delivery(block=False)
        except (Empty, ShutDown) as exc:
            raise _translated(exc) from None

    def _schedule_dispatch(self) -> None:
        """(Under the lock, from the getter thread.) Have the loop hand out what was taken."""
        if self._dispatching:
            return
        self._dispatching = True
        if not self._post(self._dispatch):
            self._dispatching = False
            self._loop_gone()

    def _dispatch(self) -> None:
        """(On the loop.) Hand the deliveries taken, then the exceptions of gets, to the
        waiting getters in the order they came; give back the deliveries left over."""
        with self._lock:
            self._dispatching = False
            getters = self._getters
            while getters:
                fut = getters[0]
                if not fut.done():
                    if self._spare and not self._dropped:
                        fut.set_result(self._spare.pop(0))
                    elif self._errors:
                        fut.set_exception(self._errors.popleft())
                    else:
                        break
                    self._waiting -= 1
                getters.popleft()
            if not getters:
                self._errors.clear()  # answers to gets cancelled since
            if self._spare and (self._dropped or len(self._spare) > self._waiting):
                self._io.call(self._return_spares)

    def _return_spares(self, everything: bool = False) -> None:
        """(In the IO thread, or in close().) Give the deliveries taken for no getter back to
        the queue, uncounted: the newest first, so that those left go to the next getters.
        The getter thread takes nothing meanwhile: the items given back come first."""
        while True:
            with self._return_lock:
                with self._lock:
                    if not self._spare or not (
                        everything or self._dropped or len(self._spare) > self._waiting
                    ):
                        return
                    delivery = self._spare.pop()
                    self._returning += 1
                try:
                    # Errors: the lease ran out (given back already), the queue was closed
                    # or broke (which gives it back): the item is not lost either way.
                    with contextlib.suppress(PQueueError, ValueError):
                        self._queue._settle(delivery, 0.0, counted=False)
                finally:
                    with self._lock:
                        self._returning -= 1
                        self._fetcher.poke()

    def _fail_getters(self, error: Callable[[], Exception]) -> None:
        with self._lock:
            while self._getters:
                fut = self._getters.popleft()
                if not fut.done():
                    fut.set_exception(error())
                    self._waiting -= 1

    # put

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop, first: bool) -> None:
        """Wait in the putters' line until there may be room (cancellable: nothing is put)."""
        fut: asyncio.Future[None] = loop.create_future()
        if first:
            self._putters.appendleft(fut)
        else:
            self._putters.append(fut)
        with self._lock:
            self._putters_waiting += 1
            self._room.poke()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                with self._lock:
                    self._putters_waiting -= 1
                with contextlib.suppress(ValueError):
                    self._putters.remove(fut)
            elif fut.exception() is None:
                self._pass_turn()  # woken, then cancelled: the next one tries instead
            raise

    def _pass_turn(self) -> None:
        """(On the loop.) Wake the first putter in line to try its write."""
        while self._putters:
            fut = self._putters.popleft()
            if not fut.done():
                fut.set_result(None)
                with self._lock:
                    self._putters_waiting -= 1
                return

    def _room_found(self) -> None:
        with self._lock:
            self._room_posted = False
        self._pass_turn()

    def _fail_putters(self, error: Callable[[], Exception]) -> None:
        while self._putters:
            fut = self._putters.popleft()
            if not fut.done():
                fut.set_exception(error())
                with self._lock:
                    self._putters_waiting -= 1

    # join

    def _joins_answered(self, upto: int, error: Exception | None) -> None:
        """(On the loop.) Every item was acknowledged after the joiners up to number ``upto``
        started waiting (or their wait failed with ``error``): they return."""
        keep = []
        for number, fut in self._joiners:
            if number > upto:
                keep.append((number, fut))
            elif not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)
                with self._lock:
                    self._join_live -= 1
        self._joiners = keep

    def _joins_check(self) -> None:
        """(On the loop.) After an acknowledgement here: the joiners return if none is left
        unfinished (one read), without waiting for the join thread to see it."""
        if self._joiners and not self._queue.unfinished_tasks:
            with self._lock:
                upto = self._join_last
            self._joins_answered(upto, None)

    # close

    def _fail_waiters_soon(self, path: str) -> None:
        """Have every coroutine still waiting raise ``QueueClosedError`` (on the loop)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def fail() -> None:
            def error() -> Exception:
                return QueueClosedError(f"the queue at {path!r} was closed")

            self._fail_getters(error)
            self._fail_putters(error)
            for _number, fut in self._joiners:
                if not fut.done():
                    fut.set_exception(error())
            self._joiners = []

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fail()
        else:
            _post_to(loop, fail)


def _post_to(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> bool:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed
        return False
    return True


def _join(thread: threading.Thread | None) -> None:
    if thread is not None and thread is not threading.current_thread():
        thread.join(_JOIN_TIMEOUT)
