"""``QueueLike``: the interface ``queue.Queue`` and ``pqueue.Queue`` share, for code that
accepts either (``def worker(jobs: QueueLike[Job]) -> None``)."""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["QueueLike"]

T = TypeVar("T")


class QueueLike(Protocol[T]):
    """What ``queue.Queue[T]`` and ``pqueue.Queue[T]`` both offer, with the same meaning."""

    @property
    def maxsize(self) -> int: ...

    def qsize(self) -> int: ...

    def empty(self) -> bool: ...

    def full(self) -> bool: ...

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None: ...

    def put_nowait(self, item: T) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> T: ...

    def get_nowait(self) -> T: ...

    def task_done(self) -> None: ...

    def join(self) -> None: ...
