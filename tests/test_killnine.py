"""SIGKILL: a child process puts and consumes, is killed at random moments many times and
restarted on the same directory; then the queue is drained and checked against what the
children reported (a line is written only after the call it reports returned)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pqueue import Queue

WORKER = textwrap.dedent(
    """
    import random, sys
    from pqueue import Queue

    path, generation, durability, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    q = Queue(path, chunksize=7, durability=durability)
    say = sys.stdout.write
    n = 0
    while True:
        roll = rng.random()
        if roll < 0.5:
            item = f"{generation}:{n}"
            n += 1
            q.put(item)
            say(f"P {item}\\n")
        elif q.qsize():
            if roll < 0.9:
                item = q.get()
                say(f"G {item}\\n")
                sys.stdout.flush()
                q.task_done()
                say(f"D {item}\\n")
            else:
                with q.get_delivery() as delivery:
                    say(f"G {delivery.item}\\n")
                    sys.stdout.flush()
                say(f"D {delivery.item}\\n")
        sys.stdout.flush()
    """
)


def run_until_killed(path: str, generation: int, durability: str, rng: random.Random) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, path, str(generation), durability, str(rng.random())[2:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    wanted = rng.randrange(1, 250)
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if len(lines) >= wanted:
            break
    proc.send_signal(signal.SIGKILL)
    lines.extend(proc.stdout)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err
    return [line.rstrip("\n") for line in lines if line.endswith("\n")]


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_nothing_acknowledged_is_lost_across_sigkills(tmp_path: Path, durability: str) -> None:
    path = str(tmp_path / "q")
    rng = random.Random(f"sigkill-{durability}")
    put_order: dict[str, int] = {}
    acked: set[str] = set()
    maybe_acked: set[str] = set()  # got, then killed before "D" was written
    maybe_put: set[str] = set()  # the put in flight when a child was killed
    for generation in range(12):
        lines = run_until_killed(path, generation, durability, rng)
        for line in lines:
            verb, item = line.split(" ")
            if verb == "P":
                put_order[item] = len(put_order)
            elif verb == "G":
                assert item not in acked, f"{item} was acknowledged, then delivered again"
                assert item in put_order or item in maybe_put, f"{item} was never put"
            else:
                acked.add(item)
        if lines and lines[-1].startswith("G "):
            maybe_acked.add(lines[-1].split(" ")[1])
        n = sum(1 for item in put_order if item.startswith(f"{generation}:"))
        maybe_put.add(f"{generation}:{n}")
    assert len(put_order) > 100 and len(acked) > 50  # the children did real work

    with Queue[str](path) as q:
        drained = []
        while q.qsize():
            drained.append(q.get())
            q.task_done()
    for item in drained:
        assert item not in acked, f"{item} was acknowledged, then delivered again"
        assert item in put_order or item in maybe_put, f"{item} was never put"
    waiting = [i for i in put_order if i not in acked and i not in maybe_acked]
    missing = set(waiting) - set(drained)
    assert not missing, f"acknowledged puts lost: {sorted(missing)}"
    order = [put_order[item] for item in drained if item in put_order]
    assert order == sorted(order), "items came back out of put order"
