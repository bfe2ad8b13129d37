"""``Queue.purge()`` and ``pqueue purge``: every waiting item dropped at once, durably;
deliveries not yet acknowledged stay with their consumers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from pqueue import Queue, QueueClosedError, ShutDown


@pytest.fixture(params=[False, True], ids=["shared", "exclusive"])
def exclusive(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_purge_drops_the_waiting_items_and_keeps_the_outstanding_ones(
    qdir: str, exclusive: bool
) -> None:
    with Queue[int](qdir, chunksize=3, exclusive=exclusive) as q:
        for i in range(10):
            q.put(i)
        held = q.get_delivery()
        given_back = q.get_delivery()
        given_back.nack()
        later = q.get_delivery()
        later.nack(delay=60.0)  # given back, not yet due: dropped too
        assert q.purge() == 9
        assert (q.qsize(), q.unfinished_tasks) == (0, 1)
        assert q.purge() == 0
        q.put(10)  # the queue goes on after a purge
        assert q.get() == 10
        q.task_done()
        held.ack()
        assert q.unfinished_tasks == 0
    with Queue[int](qdir, exclusive=exclusive) as q:
        assert q.qsize() == 0  # durable: the purged items never come back
        assert [n for n in os.listdir(qdir) if n.startswith("q0")] == []  # chunks reclaimed


def test_an_item_held_while_purging_is_delivered_again_if_its_holder_dies(qdir: str) -> None:
    with Queue[str](qdir) as q:
        q.put("held")
        q.put("waiting")
        other = Queue[str](qdir)
        other.get_delivery()
        assert q.purge() == 1
        other.close()  # its delivery comes back
        assert q.get_nowait() == "held"


def test_purge_wakes_a_blocked_put_and_a_join(qdir: str) -> None:
    with Queue[int](qdir, maxsize=2) as q:
        q.put(1)
        q.put(2)
        done = threading.Event()

        def put() -> None:
            q.put(3, timeout=10)
            done.set()

        thread = threading.Thread(target=put)
        thread.start()
        joined = threading.Thread(target=q.join)
        assert q.purge() == 2
        thread.join(10)
        assert done.is_set()
        assert q.get() == 3
        q.task_done()
        joined.start()
        joined.join(10)
        assert not joined.is_alive()


def test_purge_of_a_closed_queue_is_refused_and_of_a_shut_down_one_empties_it(
    qdir: str,
) -> None:
    q = Queue[int](qdir)
    q.close()
    with pytest.raises(QueueClosedError):
        q.purge()
    with Queue[int](qdir) as q:
        q.put(1)
        q.shutdown()
        assert q.purge() == 1
        with pytest.raises(ShutDown):
            q.get()


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pqueue", *args], capture_output=True, text=True, timeout=60,
        input=stdin, check=False,
    )


def test_the_purge_command_asks_first(qdir: str) -> None:
    with Queue[int](qdir) as q:
        for i in range(5):
            q.put(i)
    out = cli("purge", qdir, stdin="n\n")
    assert out.returncode == 1 and "nothing was dropped" in out.stderr
    assert "drop 5 waiting items" in out.stderr
    out = cli("purge", qdir)  # no answer at all
    assert out.returncode == 1
    assert json.loads(cli("stat", "--json", qdir).stdout)["waiting"] == 5
    out = cli("purge", qdir, stdin="y\n")
    assert out.returncode == 0, out.stderr
    assert "dropped 5 waiting items" in out.stdout
    assert json.loads(cli("stat", "--json", qdir).stdout)["waiting"] == 0


def test_the_purge_command_with_yes_works_beside_a_consumer(qdir: str) -> None:
    with Queue[str](qdir, serializer=json) as q, Queue[str](qdir, serializer=json) as consumer:
        for i in range(4):
            q.put(str(i))
        held = consumer.get_delivery()
        out = cli("purge", "--yes", qdir)
        assert out.returncode == 0, out.stderr
        assert "dropped 3 waiting items" in out.stdout
        assert q.qsize() == 0 and q.unfinished_tasks == 1
        held.ack()


def test_the_purge_command_refuses_a_queue_held_exclusively(qdir: str) -> None:
    with Queue[int](qdir, exclusive=True) as q:
        q.put(1)
        out = cli("purge", "--yes", qdir)
        assert out.returncode == 1 and "exclusive" in out.stderr.lower()
        assert q.qsize() == 1
