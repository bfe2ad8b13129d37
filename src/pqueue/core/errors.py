"""The pqueue error hierarchy.

``Empty`` and ``Full`` are the standard library's own classes and ``ShutDown`` is
``queue.ShutDown`` where it exists (Python 3.13+), so ``except queue.Empty:`` keeps working.
Everything pqueue adds derives from ``PQueueError``.
"""

from __future__ import annotations

import queue as _stdlib_queue
import sys

__all__ = [
    "CorruptQueueError",
    "DiskFullError",
    "Empty",
    "Full",
    "LeaseExpiredError",
    "LegacyFormatError",
    "NotAQueueError",
    "PQueueError",
    "QueueBrokenError",
    "QueueClosedError",
    "QueueForkedError",
    "QueueLocked",
    "QueueSupersededError",
    "SerializerMismatchError",
    "SharedStateError",
    "ShutDown",
    "UnsupportedFormatError",
]

Empty = _stdlib_queue.Empty
Full = _stdlib_queue.Full

if sys.version_info >= (3, 13):
    ShutDown = _stdlib_queue.ShutDown
else:

    class ShutDown(Exception):  # noqa: N818 - the standard library's name
        """Raised when put() or get() is called on a Queue that has been shut down."""


class PQueueError(Exception):
    """Base class of every error pqueue defines."""


class QueueLocked(PQueueError):  # noqa: N818 - reads as a state, like queue.Empty
    """Another process holds the queue directory."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"queue directory {path!r} is in use: opened with exclusive=True by another "
            "Queue (or shared by others while this one asks for it alone)"
        )
        self.path = path


class CorruptQueueError(PQueueError):
    """The queue's files hold damage that cannot be repaired without losing data.

    ``path`` names the file and ``offset`` the byte where the damage was found.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class UnsupportedFormatError(PQueueError):
    """The queue directory was written in an on-disk format this pqueue cannot read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class LegacyFormatError(UnsupportedFormatError):
    """The queue directory was written by pqueue 0.1.x (a pickled ``info`` file) or by
    persist-queue's file ``Queue``: ``pqueue migrate`` converts it."""

    def __init__(
        self, path: str,
        writer: str = "pqueue 0.1.x (its info file is a pickle)",
        by_hand: str = "pqueue==0.1.7",
    ) -> None:
        super().__init__(
            path,
            f"this queue was written by {writer}, whose format this version does not read. "
            "To migrate it: python -m pqueue migrate SRC DST (SRC: this directory, which it "
            "only reads; DST: a new one), then remove the old directory. (By hand: drain it "
            f"with {by_hand} into a new queue.)",
        )
        self.writer = writer


class SerializerMismatchError(PQueueError):
    """The queue was created with another serializer than the one given on reopening."""

    def __init__(self, path: str, recorded: str, given: str) -> None:
        super().__init__(
            f"queue {path!r} stores items with serializer {recorded!r}, "
            f"but it was opened with serializer {given!r}"
        )
        self.path = path
        self.recorded = recorded
        self.given = given


class QueueClosedError(PQueueError):
    """The Queue object was closed; open the directory again to use it."""


class QueueSupersededError(QueueClosedError):
    """A newer Queue object in this process opened the same directory and took it over."""


class QueueForkedError(PQueueError):
    """The Queue object was inherited through ``fork()``: the child process must not use it.

    The parent that opened the queue still owns the directory (the child never releases
    the parent's lock); the child gets this error for every call instead of writing beside
    the parent.
    """


class QueueBrokenError(PQueueError):
    """An IO operation failed, or an exception interrupted one half done; the queue refuses
    every call until it is reopened.

    The failing ``OSError`` (or the interrupting exception) is the ``__cause__``. Reopening
    recovers from what is on disk.
    """


class DiskFullError(PQueueError):
    """A put found no space left on the device (``ENOSPC`` or ``EDQUOT``, the ``__cause__``).

    Nothing was put and the queue is unchanged and open: ``get`` and acknowledgements go on
    (they free space as consumed chunks are deleted), and a later put may succeed.
    """


class LeaseExpiredError(PQueueError):
    """An acknowledgement (or ``nack``, or ``extend``) of a delivery this consumer no longer
    holds: its lease ran out and the item was given back for another delivery. Nothing was
    acknowledged; the item is delivered again (or already was)."""

    def __init__(self, path: str, seq: int) -> None:
        super().__init__(
            f"item {seq} of the queue at {path!r} is no longer held by this consumer: its "
            "lease ran out and it was given back to be delivered again; nothing was "
            "acknowledged"
        )
        self.path = path
        self.seq = seq


class SharedStateError(QueueBrokenError):
    """The ``shared`` file of a queue that other participants hold open cannot be read
    (damaged, or written by another version). Close every Queue on the directory and open
    it again: the first one recovers from the durable files."""


class NotAQueueError(PQueueError):
    """``path`` is not a pqueue queue directory: it is missing, not a directory, or holds no
    ``info`` file. Raised by the read-only inspection (``pqueue.inspection``) and the
    command line, which never create a queue."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
