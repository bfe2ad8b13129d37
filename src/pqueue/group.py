"""Group commit: threads that would each write and fsync share one write and one fsync.

In ``fsync`` mode each put and each acknowledgement must be durable before it returns, and
an fsync costs far more than the write before it. When several threads put (or acknowledge)
at once, the first to arrive leads: it takes every request waiting, writes them all in one
step of the queue and makes them durable with one fsync, then wakes the others, whose
requests it carried; a request that arrives meanwhile waits for the next leader (one of
those waiting). A thread alone leads every time, with no thread started and no wait, so
one thread pays only a few uncontended lock operations.

The queue decides what a group is (a batch of puts is all or nothing, as ``put_many``;
acknowledgements succeed or fail one by one) and sets ``Request.error`` for each request
that failed; ``finish`` marks every request it led done.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

__all__ = ["GroupCommit", "Request"]

P = TypeVar("P")


class Request(Generic[P]):
    """One caller's part of a group: what it asks for (``payload``, ``count``), the thread
    asking (``ident``), and, once led, whether it is done and the error it must raise."""

    __slots__ = ("count", "done", "error", "ident", "payload")

    def __init__(self, payload: P, count: int, ident: int) -> None:
        self.payload = payload
        self.count = count
        self.ident = ident
        self.done = False
        self.error: BaseException | None = None


class GroupCommit(Generic[P]):
    """Requests waiting for a leader, and whether one leads now."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._waiting: list[Request[P]] = []
        self._leading = False

    def join(self, request: Request[P]) -> bool:
        """Wait until ``request`` is done by a leader (False), or until this thread is to
        lead (True: it must call ``take``, then ``finish`` whatever happens). A caller
        interrupted while it waits (a signal handler's exception) withdraws its request if
        no leader took it yet; a request taken already is carried out all the same."""
        with self._changed:
            self._waiting.append(request)
            try:
                while not request.done:
                    if not self._leading:
                        self._leading = True
                        return True
                    self._changed.wait()
            except BaseException:
                if request in self._waiting:
                    self._waiting.remove(request)
                raise
        return False

    def take(self) -> list[Request[P]]:
        """The leader takes every request waiting (its own among them)."""
        with self._changed:
            taken, self._waiting = self._waiting, []
        return taken

    def finish(self, led: list[Request[P]], own: Request[P]) -> None:
        """The leader is done with ``led`` (what ``take`` gave it, or nothing if it failed
        before taking): each is marked done, ``own`` withdrawn if it was never taken, and
        the next leader may go."""
        with self._changed:
            for request in led:
                request.done = True
            if own in self._waiting:
                self._waiting.remove(own)
            self._leading = False
            self._changed.notify_all()
