"""A child process of ``test_killnine_shared.py``: a producer or a consumer on a queue that
several processes share, killed with SIGKILL at random moments by the test.

    python killnine_shared_child.py producer PATH DURABILITY NAME LOG STOP SEED FIRST
    python killnine_shared_child.py consumer PATH DURABILITY NAME LOG STOP SEED

It appends one line per event to LOG (line-buffered: each line reaches the OS in one write
as soon as it is complete, which is all a SIGKILL needs), each written only after the call it
reports returned; times are ``time.monotonic_ns()``, one clock for every process:

- producer NAME: ``put NAME:<n> <t>`` after ``put`` returned, for n = FIRST, FIRST + 1, ...
- consumer: ``got <id> <attempt> <t>`` after ``get_delivery`` returned; then
  ``ack <id> <t0> <t1>`` or (one time in ten) ``nack <id> <t0> <t1>``, where ``t0`` was read
  just before the call and ``t1`` just after it returned.

Each stops when the file STOP exists (a consumer settles the item it holds first), logging
``closing <t>`` before ``close()`` and ``closed <t>`` after. An exception (none is expected)
is logged as ``error <t> <type>: <message>`` before it ends the process.
"""

from __future__ import annotations

import os
import random
import sys
import time

from pqueue import Empty, Queue
from pqueue.core.codec import ACK_RECORD_SIZE
from pqueue.core.state import Durability, Policy

# Small files and frequent checkpoints, so that kills land in their middle too.
CHUNKSIZE = 7
POLICY = Policy(
    checkpoint_every=2,
    checkpoint_when_drained=True,
    ack_log_bytes=16 * ACK_RECORD_SIZE,
    prealloc_bytes=0,
    reclaim_after=0.05,
)
NACK_RATE = 0.1
GET_TIMEOUT = 0.05  # seconds a consumer waits for an item before it looks for STOP again


def produce(q: Queue[str], name: str, say: _Say, stop: str, rng: random.Random, n: int) -> None:
    while not os.path.exists(stop):
        item = f"{name}:{n}"
        q.put(item)
        say(f"put {item} {time.monotonic_ns()}")
        n += 1
        if rng.random() < 0.5:
            time.sleep(rng.random() * 0.002)


def consume(q: Queue[str], say: _Say, stop: str, rng: random.Random) -> None:
    while not os.path.exists(stop):
        try:
            delivery = q.get_delivery(timeout=GET_TIMEOUT)
        except Empty:
            continue
        say(f"got {delivery.item} {delivery.attempt} {time.monotonic_ns()}")
        if rng.random() < 0.5:
            # Hold it a moment (kills land here too), a little slower than the producers
            # on average: items pile up, and the drain has some.
            time.sleep(rng.random() * 0.004)
        t0 = time.monotonic_ns()
        if rng.random() < NACK_RATE:
            delivery.nack()
            say(f"nack {delivery.item} {t0} {time.monotonic_ns()}")
        else:
            delivery.ack()
            say(f"ack {delivery.item} {t0} {time.monotonic_ns()}")


class _Say:
    def __init__(self, log: str) -> None:
        self._file = open(log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def __call__(self, line: str) -> None:
        self._file.write(line + "\n")


def main(argv: list[str]) -> None:
    role, path, mode, name, log, stop, seed = argv[:7]
    durability: Durability = "fsync" if mode == "fsync" else "flush"
    rng = random.Random(seed)
    say = _Say(log)
    try:
        q = Queue[str](path, chunksize=CHUNKSIZE, durability=durability, policy=POLICY)
        if role == "producer":
            produce(q, name, say, stop, rng, int(argv[7]))
        elif role == "consumer":
            consume(q, say, stop, rng)
        else:
            raise SystemExit(f"bad role {role!r}")
        say(f"closing {time.monotonic_ns()}")
        q.close()
        say(f"closed {time.monotonic_ns()}")
    except BaseException as exc:
        # At once: the test may kill this process before it exits. A queue that raises
        # may have broken, and a broken participant gives back what it holds at once.
        say(f"error {time.monotonic_ns()} {type(exc).__name__}: {exc}".replace("\n", " "))
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
