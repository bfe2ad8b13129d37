"""pqueue: a persistent, crash-safe, disk-backed drop-in for ``queue.Queue``.

    from pqueue import Queue

    q = Queue("/var/lib/myapp/jobs")    # a directory; created if missing
    q.put({"job": 1})                   # durable when put() returns
    item = q.get()
    ...                                 # work on it
    q.task_done()                       # durable acknowledgement: never delivered again
"""

import importlib
from typing import TYPE_CHECKING, Any

from pqueue.core.errors import CorruptQueueError as CorruptQueueError
from pqueue.core.errors import DiskFullError as DiskFullError
from pqueue.core.errors import Empty as Empty
from pqueue.core.errors import Full as Full
from pqueue.core.errors import LeaseExpiredError as LeaseExpiredError
from pqueue.core.errors import LegacyFormatError as LegacyFormatError
from pqueue.core.errors import NotAQueueError as NotAQueueError
from pqueue.core.errors import PQueueError as PQueueError
from pqueue.core.errors import QueueBrokenError as QueueBrokenError
from pqueue.core.errors import QueueClosedError as QueueClosedError
from pqueue.core.errors import QueueForkedError as QueueForkedError
from pqueue.core.errors import QueueLocked as QueueLocked
from pqueue.core.errors import QueueSupersededError as QueueSupersededError
from pqueue.core.errors import SerializerMismatchError as SerializerMismatchError
from pqueue.core.errors import SharedStateError as SharedStateError
from pqueue.core.errors import ShutDown as ShutDown
from pqueue.core.errors import UnsupportedFormatError as UnsupportedFormatError
from pqueue.core.state import Durability as Durability
from pqueue.protocols import QueueLike as QueueLike
from pqueue.queue import DeadLetter as DeadLetter
from pqueue.queue import Delivery as Delivery
from pqueue.queue import Queue as Queue

__version__ = "0.2.0.dev0"

if TYPE_CHECKING:
    from pqueue.aio import AsyncDelivery as AsyncDelivery
    from pqueue.aio import AsyncQueue as AsyncQueue


def __getattr__(name: str) -> Any:
    # The asyncio front is imported when first named: ``import pqueue`` stays free of asyncio.
    if name in ("AsyncQueue", "AsyncDelivery"):
        return getattr(importlib.import_module("pqueue.aio"), name)
    raise AttributeError(f"module 'pqueue' has no attribute {name!r}")

__all__ = [
    "AsyncDelivery",
    "AsyncQueue",
    "CorruptQueueError",
    "DeadLetter",
    "Delivery",
    "DiskFullError",
    "Durability",
    "Empty",
    "Full",
    "LeaseExpiredError",
    "LegacyFormatError",
    "NotAQueueError",
    "PQueueError",
    "Queue",
    "QueueBrokenError",
    "QueueClosedError",
    "QueueForkedError",
    "QueueLike",
    "QueueLocked",
    "QueueSupersededError",
    "SerializerMismatchError",
    "SharedStateError",
    "ShutDown",
    "UnsupportedFormatError",
]
