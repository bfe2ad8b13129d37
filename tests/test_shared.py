"""One queue, many participants: Queue objects and processes sharing one directory.

Through the public API, on the real disk: several objects in one process, processes that
die (SIGKILL) while holding items, nack, attempts, leases, blocking across processes, and
the per-object life (close, shutdown). The crash sweeps of two processes are in
``tests/crashtest/test_shared_crash.py``; the multi-process kill test in
``tests/test_killnine_shared.py``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pqueue import Empty, LeaseExpiredError, Queue, ShutDown


def child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` (given ``sys.argv[1:]``), its stdout piped."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_two_objects_share_the_items_and_the_counts(qdir: str) -> None:
    a: Queue[int] = Queue(qdir)
    b: Queue[int] = Queue(qdir)
    for i in range(4):
        a.put(i)
    assert b.qsize() == 4
    assert [b.get(), a.get(), b.get()] == [0, 1, 2]  # one FIFO, whoever takes
    assert (a.qsize(), b.unfinished_tasks) == (1, 4)
    a.task_done()  # a's own delivery: item 1
    b.task_done()
    b.task_done()
    assert a.unfinished_tasks == 1
    assert a.get() == 3
    a.task_done()
    a.join()
    b.join()
    a.close()
    b.close()


def test_closing_one_object_gives_its_items_back_at_once(qdir: str) -> None:
    a: Queue[int] = Queue(qdir)
    b: Queue[int] = Queue(qdir)
    for i in range(3):
        a.put(i)
    assert [b.get(), b.get()] == [0, 1]
    b.close()
    assert a.qsize() == 3
    assert [a.get(), a.get(), a.get()] == [0, 1, 2]  # redeliveries first, in put order
    a.close()


def test_reassigning_a_queue_counts_the_old_objects_deliveries_at_once(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)
    q.put(1)
    q.put(2)
    assert q.get() == 1
    q = Queue(qdir)  # the old object is dropped: its delivery is waiting again
    gc.collect()
    assert q.qsize() == 2
    assert [q.get(), q.get()] == [1, 2]
    q.close()


def test_a_killed_process_gives_its_items_back_at_once(
    qdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pqueue")
    with Queue[int](qdir) as q:
        for i in range(5):
            q.put(i)
        holder = child(
            """
            import sys, time
            from pqueue import Queue
            q = Queue(sys.argv[1])
            print(q.get(), q.get(), flush=True)
            time.sleep(60)
            """,
            qdir,
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().split() == ["0", "1"]
        assert q.get() == 2  # the items it holds are its own while it lives
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        start = time.monotonic()
        assert [q.get(timeout=5), q.get(timeout=5)] == [0, 1]  # given back, first, in order
        assert time.monotonic() - start < 1.0  # no lease timeout: at once
        gone = [r for r in caplog.records if "is gone" in r.getMessage()]
        assert len(gone) == 1 and gone[0].levelname == "WARNING"  # for the operator
        assert "the 2 items it held are delivered again" in gone[0].getMessage()
        assert q.get(timeout=5) == 3
        for _ in range(4):
            q.task_done()
        assert q.qsize() == 1


def test_a_get_blocked_in_one_process_wakes_on_a_put_in_another(qdir: str) -> None:
    waiter = child(
        """
        import sys, time
        from pqueue import Queue
        q = Queue(sys.argv[1])
        print("ready", flush=True)
        item = q.get(timeout=30)
        print(item, time.monotonic(), flush=True)
        q.task_done()
        """,
        qdir,
    )
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # it is blocked now
    with Queue[str](qdir) as q:
        put_at = time.monotonic()
        q.put("wake")
        out, err = waiter.communicate(timeout=30)
    item, woke_at = out.split()
    assert item == "wake", err
    assert float(woke_at) - put_at < 0.5


def test_a_blocked_put_wakes_when_another_process_makes_room(qdir: str) -> None:
    with Queue[int](qdir, maxsize=1) as q:
        q.put(1)
        done = threading.Event()

        def put() -> None:
            q.put(2, timeout=30)
            done.set()

        thread = threading.Thread(target=put)
        thread.start()
        assert not done.wait(0.2)
        consumer = child(
            """
            import sys
            from pqueue import Queue
            q = Queue(sys.argv[1])
            print(q.get(timeout=10), flush=True)
            q.task_done()
            """,
            qdir,
        )
        out, err = consumer.communicate(timeout=30)
        assert out.strip() == "1", err
        assert done.wait(10)
        thread.join()
        assert q.get(timeout=0) == 2
        q.task_done()


def test_nack_gives_the_item_back_first_and_counts_attempts(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("a")
        q.put("b")
        first = q.get_delivery()
        assert (first.item, first.attempt) == ("a", 1)
        first.nack()
        with pytest.raises(ValueError, match="given back"):
            first.ack()
        again = q.get_delivery()
        assert (again.item, again.attempt) == ("a", 2)
        again.nack()
        with Queue[str](qdir) as other:  # attempts are shared
            third = other.get_delivery()
            assert (third.item, third.attempt) == ("a", 3)
            third.ack()
        last = q.get_delivery()
        assert (last.item, last.attempt) == ("b", 1)
        last.ack()
        assert q.unfinished_tasks == 0


def test_a_get_blocked_in_one_object_wakes_when_another_gives_an_item_back(qdir: str) -> None:
    """A waiting get wakes for changes that leave items waiting (here a nack), not only
    for puts; acknowledgements and gets of the others do not wake it."""
    a: Queue[str] = Queue(qdir)
    b: Queue[str] = Queue(qdir)
    a.put("x")
    held = a.get_delivery(timeout=0)
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(b.get(timeout=10)))
    waiter.start()
    time.sleep(0.2)
    a.put("y")  # wakes it: it gets "y"
    waiter.join(10)
    assert got == ["y"]
    b.task_done()
    waiter = threading.Thread(target=lambda: got.append(b.get(timeout=10)))
    waiter.start()
    time.sleep(0.2)
    start = time.monotonic()
    held.nack()
    waiter.join(10)
    assert got == ["y", "x"] and time.monotonic() - start < 1.0
    b.task_done()
    a.close()
    b.close()


def test_a_delayed_nack_lets_the_items_behind_it_through(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("slow")
        q.put("next")
        q.get_delivery().nack(delay=0.3)
        start = time.monotonic()
        behind = q.get_delivery(timeout=1)
        assert behind.item == "next" and time.monotonic() - start < 0.2
        behind.ack()
        back = q.get_delivery(timeout=5)  # waits for the delay, no longer
        waited = time.monotonic() - start
        assert (back.item, back.attempt) == ("slow", 2)
        assert 0.25 < waited < 2.0, waited
        back.ack()


def test_a_lease_that_runs_out_is_given_back_and_its_late_ack_refused(
    qdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pqueue")
    with Queue[str](qdir, lease_timeout=0.2) as q, Queue[str](qdir) as other:
        q.put("job")
        hung = q.get_delivery()
        with pytest.raises(Empty):
            other.get_delivery(block=False)  # held, lease running
        taken = other.get_delivery(timeout=5)  # once the lease ran out
        assert (taken.item, taken.attempt) == ("job", 2)
        assert any("the lease of 1 delivery ran out" in r.getMessage() for r in caplog.records)
        with pytest.raises(LeaseExpiredError, match="lease ran out") as raised:
            hung.ack()
        assert raised.value.seq == hung.seq
        taken.ack()
        assert q.unfinished_tasks == 0  # acknowledged once


@pytest.mark.parametrize("exclusive", [False, True], ids=["shared", "exclusive"])
def test_a_stale_handle_never_settles_the_redelivery_to_the_same_object(
    qdir: str, exclusive: bool
) -> None:
    """The lease of a delivery runs out and the same object gets the item again: the old
    handle raises ``LeaseExpiredError`` (then ``ValueError``) and leaves the new one alone."""
    with Queue[str](qdir, exclusive=exclusive, lease_timeout=0.1) as q:
        q.put("job")
        hung = q.get_delivery()
        time.sleep(0.2)
        again = q.get_delivery(timeout=5)
        assert (again.seq, again.attempt) == (hung.seq, 2)
        with pytest.raises(LeaseExpiredError, match="lease ran out") as raised:
            hung.extend(1.0)
        assert raised.value.seq == hung.seq
        for settle in (hung.ack, hung.nack):  # the handle is known lost now
            with pytest.raises(ValueError, match="lost with its lease"):
                settle()
        assert q.unfinished_tasks == 1  # nothing was acknowledged or given back
        with pytest.raises(Empty):
            q.get_delivery(block=False)  # the redelivery is still held
        again.ack()
        assert q.unfinished_tasks == 0
        assert again.acked and not hung.acked


def test_a_stale_handle_never_acknowledges_a_redelivery_got_with_get(qdir: str) -> None:
    with Queue[str](qdir, lease_timeout=0.1) as q:
        q.put("job")
        hung = q.get_delivery()
        time.sleep(0.2)
        assert q.get(timeout=5) == "job"  # delivered again, to task_done this time
        with pytest.raises(LeaseExpiredError):
            hung.ack()
        assert q.unfinished_tasks == 1
        q.task_done()
        assert q.unfinished_tasks == 0


def test_extending_a_lease_keeps_the_item(qdir: str) -> None:
    with Queue[str](qdir, lease_timeout=0.2) as q, Queue[str](qdir) as other:
        q.put("job")
        held = q.get_delivery()
        for _ in range(4):
            time.sleep(0.1)
            held.extend(0.3)
        with pytest.raises(Empty):
            other.get_delivery(block=False)
        held.ack()
        with pytest.raises(ValueError):
            held.extend(1.0)


@pytest.mark.parametrize("exclusive", [False, True], ids=["shared", "exclusive"])
@pytest.mark.parametrize("lease_timeout", [None, 60.0], ids=["no-lease", "long-lease"])
def test_a_lease_shortened_or_set_by_extend_runs_out(
    qdir: str, exclusive: bool, lease_timeout: float | None
) -> None:
    """``extend`` sets a lease where the queue has none, or shortens a long one, among many
    deliveries held without one: it runs out when it says, and the item comes back."""
    with Queue[int](qdir, exclusive=exclusive, lease_timeout=lease_timeout) as q:
        for i in range(50):
            q.put(i)
        held = [q.get_delivery(timeout=0) for _ in range(50)]
        q.put(50)
        assert q.get_delivery(timeout=0).item == 50  # a reap: nothing has run out yet
        held[7].extend(0.05)
        time.sleep(0.15)
        again = q.get_delivery(timeout=0)
        assert (again.item, again.attempt) == (7, 2)
        again.ack()
        assert q.unfinished_tasks == 50


def test_a_delivery_left_by_an_exception_is_given_back(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("job")
        with pytest.raises(RuntimeError), q.get_delivery():
            raise RuntimeError("the worker failed")
        again = q.get_delivery(timeout=0)
        assert (again.item, again.attempt) == ("job", 2)
        again.ack()


def test_attempts_survive_every_participant_dying(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("poison")
    for attempt in (1, 2, 3):
        worker = child(
            """
            import os, signal, sys
            from pqueue import Queue
            q = Queue(sys.argv[1])
            d = q.get_delivery(timeout=10)
            print(d.item, d.attempt, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # dies on the item, every time
            """,
            qdir,
        )
        out, err = worker.communicate(timeout=30)
        assert out.split() == ["poison", str(attempt)], err
    with Queue[str](qdir) as q:
        last = q.get_delivery(timeout=0)
        assert last.attempt == 4
        last.ack()


def test_shutdown_and_close_are_per_object(qdir: str) -> None:
    a: Queue[int] = Queue(qdir)
    b: Queue[int] = Queue(qdir)
    a.put(1)
    a.shutdown(immediate=True)
    with pytest.raises(ShutDown):
        a.get(timeout=0)
    assert b.get(timeout=0) == 1  # the other object goes on
    b.task_done()
    a.close()
    b.put(2)
    assert b.qsize() == 1
    b.close()


def test_participants_leave_no_files_behind(qdir: str) -> None:
    queues = [Queue[int](qdir) for _ in range(3)]
    assert len([n for n in os.listdir(qdir) if n.startswith("peer-")]) == 3
    for q in queues:
        q.close()
    assert sorted(os.listdir(qdir)) == ["acks", "info", "lock", "ready", "shared"]
