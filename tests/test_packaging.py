"""What the distribution says of itself: one version, its name on the package index, and a
clear refusal on a platform it cannot run on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata

import pqueue


def test_the_distribution_is_pqueue_durable_with_the_packages_version() -> None:
    dist = metadata.distribution("pqueue-durable")
    assert dist.version == pqueue.__version__
    assert dist.metadata["License-Expression"] == "MIT"
    assert "pqueue" in (dist.read_text("top_level.txt") or "pqueue").split()


def test_importing_without_flock_says_which_platforms_pqueue_needs() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["fcntl"] = None  # as on a platform without it
        try:
            import pqueue
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "pqueue needs a POSIX system" in out.stdout
    assert "flock()" in out.stdout


def test_the_asyncio_front_is_imported_only_when_named() -> None:
    code = textwrap.dedent("""
        import sys
        import pqueue
        print("asyncio" in sys.modules)
        from pqueue import AsyncQueue
        from pqueue.aio import AsyncQueue as Same
        print(AsyncQueue is Same)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["False", "True"]
