"""A helper for tests of what wakes a caller blocked in get()."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def error_of_blocked_get(q: Any, wake: Callable[[], object]) -> BaseException | None:
    """Block a thread in ``q.get(timeout=5)``, call ``wake()``, return what get raised."""
    errors: list[BaseException] = []

    def getter() -> None:
        try:
            q.get(timeout=5)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=getter)
    thread.start()
    deadline = time.monotonic() + 5
    # pqueue counts its waiting getters; queue.Queue lists them on its condition.
    while time.monotonic() < deadline and not (
        getattr(q, "_getters", 0) or getattr(getattr(q, "not_empty", None), "_waiters", ())
    ):
        time.sleep(0.001)
    wake()
    thread.join()
    return errors[0] if errors else None
