"""The reliability holes an adversarial user found, each as it was found: fork, interrupts,
new parent directories, torn records holding records, silent damage to ``info`` and the ack
log, a full disk, hangs on special files, unbounded numbers, failed opens, held deliveries,
and what a new user tripped over. Real disk where the case is about the real disk."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pqueue import (
    CorruptQueueError,
    DiskFullError,
    Queue,
    QueueBrokenError,
    QueueForkedError,
    SerializerMismatchError,
)
from pqueue.core.codec import (
    ACK_RECORD_SIZE,
    HEADER_SIZE,
    ITEM_MAGIC,
    encode,
    encode_ack,
)
from pqueue.core.state import Policy
from pqueue.core.transitions import Phase
from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk
from pqueue.io import OsFileSystem
from pqueue.serializers import BYTES
from records import record_offsets, salt_of

ROOT = Path(__file__).resolve().parent.parent


class OsFileSystemWithHook(OsFileSystem):
    """The real file system, calling ``hook(name)`` after each fsync or write."""

    hook: Any = None

    def fsync(self, path: str) -> None:
        super().fsync(path)
        if self.hook is not None:
            self.hook("fsync")

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        super().write(path, data, offset)
        if self.hook is not None:
            self.hook("write")


def drain(q: Queue[Any]) -> list[Any]:
    out = []
    while q.qsize():
        out.append(q.get(timeout=0))
        q.task_done()
    return out


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


OPENS = """
    import sys
    from pqueue import Queue, QueueLocked
    try:
        Queue(sys.argv[1], exclusive=True).close()
    except QueueLocked:
        print("locked")
    else:
        print("opened")
"""


# --- 1. fork -------------------------------------------------------------------------------


def test_a_forked_child_that_exits_never_unlocks_the_parents_queue(qdir: str) -> None:
    out = run_python(
        """
        import os, subprocess, sys
        from pqueue import Queue, QueueForkedError, QueueLocked
        path, opens = sys.argv[1], sys.argv[2]
        q = Queue(path, exclusive=True)
        q.put("parent-1")
        pid = os.fork()
        if pid == 0:  # the child: try the inherited object, then exit normally
            try:
                q.put("child")
            except QueueForkedError as exc:
                print("child refused:", exc, flush=True)
            try:
                Queue(path, exclusive=True)
            except QueueLocked:
                print("child locked out", flush=True)
            del q
            sys.exit(0)  # runs atexit, and with it the finaliser of the child's copy
        os.waitpid(pid, 0)
        third = subprocess.run([sys.executable, "-c", opens, path], capture_output=True,
                               text=True, check=True)
        print("third process:", third.stdout.strip(), flush=True)
        q.put("parent-2")
        print("parent got:", q.get(), q.get(), flush=True)
        """,
        qdir, textwrap.dedent(OPENS),
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("child refused:") and "fork" in line for line in lines), lines
    assert "child locked out" in lines
    assert "third process: locked" in lines  # the parent still owns the directory
    assert "parent got: parent-1 parent-2" in lines


def test_a_multiprocessing_child_cannot_use_an_inherited_queue(qdir: str) -> None:
    out = run_python(
        """
        import multiprocessing, subprocess, sys
        from pqueue import Queue, QueueForkedError
        path, opens = sys.argv[1], sys.argv[2]

        def child(q):
            try:
                q.get(timeout=0)
            except QueueForkedError:
                print("child refused", flush=True)

        if __name__ == "__main__":
            q = Queue(path, exclusive=True)
            q.put(1)
            ctx = multiprocessing.get_context("fork")
            p = ctx.Process(target=child, args=(q,))
            p.start()
            p.join()
            third = subprocess.run([sys.executable, "-c", opens, path], capture_output=True,
                                   text=True, check=True)
            print("third process:", third.stdout.strip())
            print("parent got:", q.get(timeout=0))
        """,
        qdir, textwrap.dedent(OPENS),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child refused", "third process: locked", "parent got: 1"]


def test_an_inherited_queue_refuses_every_call_in_the_child(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)
    q.put(1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            refused = 0
            calls: list[Callable[[], object]] = [
                lambda: q.put(2), q.get_nowait, q.task_done, q.qsize, q.join, q.shutdown,
                lambda: q.get_delivery(block=False),
            ]
            for call in calls:
                try:
                    call()
                except QueueForkedError:
                    refused += 1
            q.close()  # a no-op for the child's copy
            os.write(write_end, str(refused).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        assert pipe.read() == "7"
    os.waitpid(pid, 0)
    assert q.get_nowait() == 1  # the parent's object is untouched
    q.task_done()
    q.close()


# --- 2. an exception arriving in the middle of an operation -----------------------------


class Alarm(Exception):  # noqa: N818 - a timeout, named as signal-timeout libraries do
    """What the SIGALRM handler raises: a timeout, as a signal-based timeout library would."""


class Signals:
    """A SIGALRM every few ms whose handler raises ``Alarm``, but only inside ``call``: the
    exceptions land anywhere in pqueue's code, never in the test's own bookkeeping."""

    def __init__(self, rng: random.Random) -> None:
        self.armed = False
        self.rng = rng

    def __enter__(self) -> Signals:
        self.previous = signal.signal(signal.SIGALRM, self._handler)
        signal.setitimer(signal.ITIMER_REAL, self.rng.uniform(0.001, 0.015), 0.004)
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)

    def _handler(self, signum: int, frame: object) -> None:
        if self.armed:
            self.armed = False
            raise Alarm

    def call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)``, with the signals' exceptions allowed to land
        anywhere in it."""
        try:
            self.armed = True
            return function(*args, **kwargs)
        finally:
            self.armed = False


OPERATIONS_PER_ROUND = 120


# The signals land in garbage collection's callbacks too, which Python reports and ignores.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("exclusive", [True, False], ids=["exclusive", "shared"])
def test_a_real_sigalrm_in_the_middle_of_operations_never_loses_or_brings_back(
    qdir: str, exclusive: bool
) -> None:
    """A SIGALRM every 1-15 ms whose handler raises, for ten rounds of operations in both modes
    (in fsync mode every put and acknowledgement goes through group commit, even alone, and
    signals wait while it is under way: an exception in its bookkeeping would leave the
    group's lock held and every later call waiting for good): after each
    interruption the queue is opened again (under the same signals) and used on.

    An exclusive queue is broken by the signals that land in the middle of a step. A shared
    one holds signals back for the length of each operation (they are handled as it
    returns), so that no participant is left holding the lock they all need: it is never
    broken."""
    rng = random.Random(7)
    put: list[int] = []
    maybe_put: set[int] = set()
    acked: set[int] = set()
    maybe_acked: set[int] = set()
    interrupts = broken = 0
    item = 0

    def reopen(signals: Signals, durability: Any) -> Queue[int]:
        for _ in range(5):  # opening itself may be interrupted (on a slow disk, every time:
            # an open that outlasts the signals' interval always ends in one)
            try:
                q: Queue[int] = signals.call(
                    Queue, qdir, chunksize=3, durability=durability, exclusive=exclusive
                )
            except Alarm:
                continue
            return q
        # Longer than the signals allow:
        return Queue(qdir, chunksize=3, durability=durability, exclusive=exclusive)

    for round_no in range(10):
        durability = "flush" if round_no % 2 else "fsync"
        with Signals(rng) as signals:
            q = reopen(signals, durability)
            got: list[int] = []
            for _ in range(OPERATIONS_PER_ROUND):  # a count, not a time: the same on any disk
                try:
                    if rng.random() < 0.5:
                        maybe_put.add(item)
                        item += 1  # the put in flight may happen: never reuse its number
                        signals.call(q.put, item - 1)
                        put.append(item - 1)
                    elif got:
                        maybe_acked.add(got[0])
                        signals.call(q.task_done)
                        acked.add(got.pop(0))
                    elif q.qsize():
                        got.append(signals.call(q.get, timeout=0))
                except (Alarm, QueueBrokenError) as exc:
                    if isinstance(exc, QueueBrokenError):
                        assert isinstance(exc.__cause__, Alarm)  # an earlier interruption
                    interrupts += 1
                    broken += q._phase is Phase.BROKEN  # it landed in the middle of a step
                    q = reopen(signals, durability)  # supersedes the interrupted object
                    got.clear()  # what was got and not acknowledged comes back
        q.close()
    with Queue[int](qdir) as q:  # it always reopens
        items = drain(q)
    assert interrupts > 50
    assert broken > 10 if exclusive else broken == 0, broken
    assert items == sorted(items) and len(set(items)) == len(items)
    assert not [x for x in items if x in acked], "acknowledged items came back"
    lost = [x for x in put if x not in items and x not in acked and x not in maybe_acked]
    assert not lost, f"acknowledged puts lost: {lost}"
    assert set(items) <= set(put) | maybe_put


def test_an_interrupt_inside_a_put_breaks_the_queue_and_a_reopen_recovers(qdir: str) -> None:
    fs = OsFileSystemWithHook()
    q: Queue[int] = Queue(qdir, fs=fs)
    q.put(1)
    fs.hook = lambda name: _raise(KeyboardInterrupt()) if name == "fsync" else None
    with pytest.raises(KeyboardInterrupt):  # the exception itself reaches the caller
        q.put(2)
    fs.hook = None
    with pytest.raises(QueueBrokenError, match="broken") as raised:
        q.task_done()
    assert isinstance(raised.value.__cause__, KeyboardInterrupt)
    with Queue[int](qdir) as reopened:
        assert drain(reopened) in ([1], [1, 2])  # the put in flight may have happened


def test_an_interrupt_while_waiting_changes_nothing(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)

    def alarm(signum: int, frame: object) -> None:
        raise Alarm

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Alarm):
            q.get()  # blocks: nothing waits
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    q.put(1)  # still open: a timeout while blocked is no reason to break the queue
    assert q.get() == 1
    q.task_done()
    q.close()


def _raise(exc: BaseException) -> None:
    raise exc


# --- 3. new parent directories -------------------------------------------------------------


def test_every_new_parent_directory_is_made_durable() -> None:
    """Crash opening ``/data/a/b/q`` (where only ``/data`` exists) and putting one item at
    every file operation: once the put returned, every power-loss state still has it."""
    base = SimulatedDisk()
    base.mkdir("/data")
    base.fsync_dir("/")
    base.fsync_dir("/data")
    probe = base.copy()
    Queue[int]("/data/a/b/q", fs=probe).put(1)
    states = 0
    for n in range(probe.operations + 1):
        disk = base.copy()
        disk.crash_after(n)
        returned = False
        with contextlib.suppress(SimulatedCrash):
            Queue[int]("/data/a/b/q", fs=disk).put(1)
            returned = True
        for state in disk.crash_states(POWER_LOSS):
            states += 1
            items = drain(Queue("/data/a/b/q", fs=state))
            assert items == [1] if returned else items in ([], [1]), (n, items)
    assert states > probe.operations


# --- 4. torn records whose payload holds records -------------------------------------------


def chunk_bytes(directory: str, name: str = "q00000") -> bytes:
    return Path(directory, name).read_bytes()


@pytest.mark.parametrize("source", ["another queue", "this queue"])
@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_torn_put_of_queue_files_never_stops_the_queue(
    tmp_path: Path, source: str, durability: Any
) -> None:
    qdir = str(tmp_path / "q")
    other = str(tmp_path / "other")
    with Queue[bytes](other, chunksize=1000, serializer=BYTES) as o:
        for i in range(200):  # records numbered 0..199: the numbers this queue uses next
            o.put(b"x%d" % i)
    with Queue[bytes](qdir, chunksize=1000, serializer=BYTES, durability=durability) as q:
        for i in range(5):
            q.put(b"item %d" % i)
    # Chunk files, zero-padded where preallocated; the payload ends in bytes that are not.
    payload = chunk_bytes(other if source == "another queue" else qdir) * 40 + b"#end"
    saved = {name: Path(qdir, name).read_bytes() for name in ("info", "acks")}
    q = Queue(qdir, serializer=BYTES, durability=durability)
    q.put(payload)  # item 5, its payload full of valid records
    q.put(b"after")
    chunk = Path(qdir, "q00000")
    data = chunk.read_bytes()
    q.close()
    offsets = record_offsets(data, salt_of(qdir))
    start, end = offsets[5], offsets[6]
    for cut in (start + HEADER_SIZE + 100, start + (end - start) // 2, end - 10):
        for rest in (b"", bytes(len(data) - cut)):  # cut short, or zeros after the cut
            # A kill -9 in the middle of the put: the record torn at ``cut``.
            for name, content in saved.items():
                Path(qdir, name).write_bytes(content)
            chunk.write_bytes(data[:cut] + rest)
            with Queue[bytes](qdir, serializer=BYTES, durability=durability) as reopened:
                assert reopened.qsize() == 5, (cut - start, len(rest))
                assert [reopened.get() for _ in range(5)] == [b"item %d" % i for i in range(5)]


# --- 5. info ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"), [(b'"tail":12', b'"tail":17'), (b'"seq":35', b'"seq":33')]
)
def test_an_edit_to_info_that_keeps_valid_json_is_found(qdir: str, old: bytes, new: bytes) -> None:
    with Queue[int](qdir, chunksize=100) as q:
        for i in range(35):
            q.put(i)
        for _ in range(12):
            q.get()
            q.task_done()
    info = Path(qdir, "info")
    data = info.read_bytes()
    assert old in data
    info.write_bytes(data.replace(old, new))
    with pytest.raises(CorruptQueueError, match="checksum mismatch") as raised:
        Queue(qdir)
    assert raised.value.path == str(info)


def test_a_queue_written_in_format_version_1_still_opens(qdir: str) -> None:
    os.makedirs(qdir)
    records = b"".join(encode(ITEM_MAGIC, seq, json.dumps(seq).encode()) for seq in range(5))
    Path(qdir, "q00000").write_bytes(records)
    Path(qdir, "acks").write_bytes(encode_ack(1, 1) + bytes(100))
    info = {
        "format": "pqueue", "version": 1, "chunksize": 10, "serializer": "json",
        "durability": "fsync", "head": {"seq": 5, "offset": len(records)}, "tail": 0,
        "acked": [2], "ack_generation": 1,
    }
    Path(qdir, "info").write_text(json.dumps(info))
    with Queue[int](qdir, serializer=json) as q:
        assert q.qsize() == 3  # items 1 and 2 were acknowledged out of order
        assert [q.get() for _ in range(3)] == [0, 3, 4]
        q.put(5)  # the queue goes on, in the new format
        q.task_done()
    assert json.loads(Path(qdir, "info").read_text())["version"] == 2
    with Queue[int](qdir, serializer=json) as q:
        assert drain(q) == [3, 4, 5]


# --- 6. the ack log --------------------------------------------------------------------------


def acked_queue(qdir: str, durability: Any, acks: int) -> None:
    """Items 0..9 put, 0..acks-1 got and acknowledged, left without a checkpoint since."""
    with Queue[int](qdir, chunksize=100, durability=durability) as q:
        for i in range(10):
            q.put(i)
    q = Queue(qdir, chunksize=100, durability=durability)
    for _ in range(acks):
        q.get()
        q.task_done()
    del q  # never closed: the acknowledgements are in the ack log only


def test_a_damaged_ack_record_before_later_ones_is_refused_in_fsync_mode(qdir: str) -> None:
    acked_queue(qdir, "fsync", 4)
    log = Path(qdir, "acks")
    data = bytearray(log.read_bytes())
    data[10] ^= 0x01  # the first record of the generation
    log.write_bytes(bytes(data))
    with pytest.raises(CorruptQueueError, match="ack record damaged") as raised:
        Queue(qdir)
    assert (raised.value.path, raised.value.offset) == (str(log), 0)


def test_a_truncated_ack_log_is_refused_in_fsync_mode(qdir: str) -> None:
    acked_queue(qdir, "fsync", 2)
    Path(qdir, "acks").write_bytes(b"")
    with pytest.raises(CorruptQueueError, match="truncated") as raised:
        Queue(qdir)
    assert raised.value.path == str(Path(qdir, "acks"))


def test_a_torn_last_ack_record_is_dropped_in_fsync_mode(qdir: str) -> None:
    acked_queue(qdir, "fsync", 3)
    log = Path(qdir, "acks")
    data = bytearray(log.read_bytes())
    torn = 2 * ACK_RECORD_SIZE + 9  # the third record cut in its header, zeros after
    data[torn:] = bytes(len(data) - torn)
    log.write_bytes(bytes(data))
    with Queue[int](qdir) as q:  # the acknowledgement in flight may be lost, nothing else
        assert drain(q) == list(range(2, 10))


def test_damaged_ack_records_are_passed_over_with_a_warning_in_flush_mode(
    qdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    acked_queue(qdir, "flush", 6)
    log = Path(qdir, "acks")
    data = bytearray(log.read_bytes())
    data[2 * ACK_RECORD_SIZE + 12] ^= 0x40  # record 3 of 6
    log.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="pqueue"), Queue[int](
        qdir, durability="flush"
    ) as q:
        assert drain(q) == [2, 6, 7, 8, 9]  # only the damaged acknowledgement is lost
    assert f"{log} at offset {2 * ACK_RECORD_SIZE}" in caplog.text


# --- 7. flush mode says what it drops -------------------------------------------------------


def test_flush_mode_logs_what_a_damaged_record_made_it_drop(
    qdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Queue[int](qdir, chunksize=100, durability="flush") as q:
        q.put(0)
    q = Queue(qdir, chunksize=100, durability="flush")
    for i in range(1, 35):
        q.put(i)
    del q  # never checkpointed: items 1..34 follow the checkpoint
    chunk = Path(qdir, "q00000")
    offsets = record_offsets(chunk.read_bytes(), salt_of(qdir))
    data = bytearray(chunk.read_bytes())
    data[offsets[15] + HEADER_SIZE] ^= 0xFF  # item 15
    chunk.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="pqueue"), Queue[int](
        qdir, durability="flush"
    ) as q:
        assert drain(q) == list(range(15))
    [record] = [r for r in caplog.records if r.name == "pqueue"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"{chunk} at offset {offsets[15]}" in message
    assert "item 15" in message and "19 items after it" in message


def test_pqueue_logs_through_its_own_logger_and_configures_no_handler() -> None:
    assert logging.getLogger("pqueue").handlers == []


# --- 8. a full disk ---------------------------------------------------------------------------


def fill(q: Queue[bytes]) -> int:
    """Put 1 KiB items until the disk is full: how many went in."""
    n = 0
    while True:
        try:
            q.put(b"%06d" % n + bytes(1018))
        except DiskFullError as exc:
            assert isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.ENOSPC
            return n
        n += 1


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_full_disk_still_opens_delivers_and_acknowledges(durability: Any) -> None:
    disk = SimulatedDisk()
    disk.capacity = 600_000
    q: Queue[bytes] = Queue("/q", chunksize=20, fs=disk, durability=durability,
                            serializer=BYTES)
    n = fill(q)
    assert n > 50
    assert q.qsize() == n  # a put that found no space put nothing, and the queue is open
    q.close()
    disk.capacity = disk.used  # not a byte to spare
    with Queue[bytes]("/q", chunksize=20, fs=disk, durability=durability,
                      serializer=BYTES) as q:  # opens read-mostly: no checkpoint fits
        assert q.qsize() == n
        got = [q.get() for _ in range(30)]
        for _ in range(30):
            q.task_done()  # into the room the ack log has
        assert got[0].startswith(b"000000") and got[-1].startswith(b"000029")
        with pytest.raises(DiskFullError):
            q.put(b"no room")
        disk.capacity = None  # space is freed: the next checkpoint deletes consumed chunks
        assert drain(q)[0].startswith(b"000030")
    assert [p for p in disk.files() if "/q0" in p] == []


def test_a_full_ack_log_on_a_full_disk_breaks_the_queue_with_the_cause() -> None:
    disk = SimulatedDisk()
    small = Policy(checkpoint_every=100, checkpoint_when_drained=False,
                   ack_log_bytes=4 * ACK_RECORD_SIZE, prealloc_bytes=4096)
    with Queue[int]("/q", fs=disk, policy=small) as q:
        for i in range(10):
            q.put(i)
    disk.capacity = disk.used
    q = Queue("/q", fs=disk, policy=small)
    for _ in range(4):
        q.get()
        q.task_done()
    q.get()
    with pytest.raises(QueueBrokenError) as raised:
        q.task_done()  # the log is full, and no checkpoint fits
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == errno.ENOSPC
    disk.capacity = None
    with Queue[int]("/q", fs=disk, policy=small) as reopened:
        assert drain(reopened) == list(range(4, 10))


@pytest.fixture
def small_ext4(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB ext4 file system, mounted through a loop device (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    image, mount = tmp_path / "disk.img", tmp_path / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(4 * 1024 * 1024)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True,
                          check=False)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, check=False
    ).returncode == 0
    if not mounted:
        pytest.skip("no loop-mounted ext4 here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_real_disk_still_opens_delivers_and_acknowledges(small_ext4: Path) -> None:
    qdir = small_ext4 / "q"
    q: Queue[bytes] = Queue(qdir, chunksize=50, serializer=BYTES)
    n = fill(q)
    assert n > 1000
    q.close()
    with contextlib.suppress(OSError), open(small_ext4 / "ballast", "wb") as f:
        while True:  # take what is left, to the last byte
            f.write(bytes(4096))
            f.flush()
    with Queue[bytes](qdir, serializer=BYTES) as q:
        assert q.qsize() == n
        for _ in range(100):
            q.get()
            q.task_done()
        with pytest.raises(DiskFullError):
            q.put(b"x" * 5000)
        (small_ext4 / "ballast").unlink()
        assert len(drain(q)) == n - 100
    assert sorted(os.listdir(qdir)) == ["acks", "info", "lock", "ready", "shared"]


# --- 9. special files where queue files go ---------------------------------------------------


def make_fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def make_dir(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def make_dangling_symlink(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(path.parent / "nowhere")


def make_socket(path: Path) -> None:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


@pytest.mark.parametrize(
    "make", [make_fifo, make_dir, make_dangling_symlink, make_socket],
    ids=["fifo", "directory", "dangling-symlink", "socket"],
)
@pytest.mark.parametrize("name", ["info", "acks", "lock", "info.tmp", "q00000"])
def test_a_special_file_in_place_of_a_queue_file_is_a_clear_error(
    qdir: str, name: str, make: Any
) -> None:
    q: Queue[int] = Queue(qdir, chunksize=100)
    q.put(1)
    del q  # the head chunk q00000 holds item 1
    target = Path(qdir, name)
    make(target)
    started = time.monotonic()
    with pytest.raises(CorruptQueueError, match=r"not a regular file|is a") as raised:
        Queue(qdir)  # never blocks on a FIFO
    assert time.monotonic() - started < 5
    assert raised.value.path == str(target)


def test_a_special_file_in_place_of_a_backlog_chunk_is_found_at_get(qdir: str) -> None:
    with Queue[int](qdir, chunksize=2) as q:
        for i in range(10):
            q.put(i)
    make_fifo(Path(qdir, "q00001"))
    with Queue[int](qdir, chunksize=2) as q:
        assert [q.get(), q.get()] == [0, 1]
        with pytest.raises(CorruptQueueError, match="not a regular file") as raised:
            q.get(timeout=0)
        assert raised.value.path == str(Path(qdir, "q00001"))
        q.put(99)  # the queue goes on
        assert q.discard_damaged() == 2


# --- 10. numbers in info ----------------------------------------------------------------------


def signed(raw: dict[str, Any]) -> bytes:
    body = json.dumps(raw, separators=(",", ":")).encode()[:-1]
    return body + b',"crc32":' + str(zlib.crc32(body)).encode() + b"}\n"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ack_generation", 2**64 - 1),
        ("head", {"seq": 2**64 + 4, "offset": 0}),
        ("tail", -1),
        ("chunksize", 2**63),
        ("salt", -1),
        ("ack_log", 2**70),
    ],
)
def test_an_out_of_bounds_number_in_info_is_refused_at_open(
    qdir: str, field: str, value: Any
) -> None:
    with Queue[int](qdir) as q:
        q.put(1)
    path = Path(qdir, "info")
    raw = json.loads(path.read_bytes())
    raw.pop("crc32")
    raw[field] = value
    path.write_bytes(signed(raw))
    with pytest.raises(CorruptQueueError, match="invalid checkpoint") as raised:
        Queue(qdir)
    assert raised.value.path == str(path)


def test_a_deeply_nested_info_is_refused_at_open(qdir: str) -> None:
    Queue(qdir).close()
    Path(qdir, "info").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(CorruptQueueError, match="nested too deeply"):
        Queue(qdir)


# --- 11. a failed open changes nothing -------------------------------------------------------


def test_a_failed_reopen_leaves_the_live_queue_working(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)
    q.put(1)
    with pytest.raises(SerializerMismatchError):
        Queue(qdir, serializer=json)
    q.put(2)  # not superseded: the failed open took nothing over
    assert [q.get(), q.get()] == [1, 2]
    q.close()


def test_a_reopen_that_finds_damage_leaves_the_live_queue_working(qdir: str) -> None:
    q: Queue[int] = Queue(qdir)
    q.put(1)
    info = Path(qdir, "info")
    good = info.read_bytes()
    info.write_bytes(good.replace(b'"tail":0', b'"tail":1'))
    with pytest.raises(CorruptQueueError):
        Queue(qdir)
    info.write_bytes(good)
    q.put(2)
    assert q.qsize() == 2
    q.close()


# --- 12. bookkeeping stays small whatever is held ---------------------------------------------


@pytest.mark.parametrize("held", [1, 300])
def test_acknowledgement_bookkeeping_stays_small_whatever_is_held(qdir: str, held: int) -> None:
    q: Queue[int] = Queue(qdir, chunksize=1000, durability="flush")
    for i in range(held + 5000):
        q.put(i)
    deliveries = [q.get_delivery() for _ in range(held)]  # held to the end
    for _ in range(5000):
        q.get()
        q.task_done()
    state = q._shell.state
    assert len(state.acked) == 2  # every acknowledgement after the held items: one range
    assert (state.tail, state.outstanding, state.size) == (0, held, 0)
    for delivery in reversed(deliveries):  # out of order, again
        delivery.ack()
    assert (q._shell.state.tail, q._shell.state.acked) == (held + 5000, ())
    q.close()


# --- 13. the demo never touches an existing queue -------------------------------------------


def test_the_demo_refuses_a_directory_that_holds_a_queue(qdir: str) -> None:
    with Queue[int](qdir, serializer=json) as q:
        for i in range(5):
            q.put(i)
    before = {n: Path(qdir, n).read_bytes() for n in os.listdir(qdir) if n != "lock"}
    out = subprocess.run([sys.executable, "-m", "pqueue", "demo", qdir], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "already holds a queue" in out.stderr and "Traceback" not in out.stderr
    assert {n: Path(qdir, n).read_bytes() for n in os.listdir(qdir) if n != "lock"} == before
    with Queue[int](qdir, serializer=json) as q:
        assert q.qsize() == 5


def test_the_demo_refuses_a_directory_that_holds_anything(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    out = subprocess.run([sys.executable, "-m", "pqueue", "demo", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "already holds files" in out.stderr
    assert os.listdir(tmp_path) == ["notes.txt"]


# --- 14. paths ----------------------------------------------------------------------------------


def test_an_empty_path_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        Queue("")
    with pytest.raises(ValueError, match="empty"):
        Queue(b"")
    assert os.listdir(tmp_path) == []


def test_a_bytes_path_works(tmp_path: Path) -> None:
    target = tmp_path / "q"
    with Queue[int](os.fsencode(target)) as q:
        q.put(1)
        assert q.path == str(target)
    assert sorted(os.listdir(target)) == ["acks", "info", "lock", "q00000", "ready", "shared"]
    with Queue[int](str(target)) as q:
        assert q.get() == 1


def test_a_path_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="path must be"):
        Queue(42)  # type: ignore[arg-type]


# --- 15. a drained queue gives its space back ---------------------------------------------------


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_drained_queue_keeps_no_large_chunk_after_close(qdir: str, durability: Any) -> None:
    with Queue[bytes](qdir, serializer=BYTES, durability=durability) as q:
        for _ in range(20):
            q.put(bytes(1024 * 1024))
        drain(q)
    assert sorted(os.listdir(qdir)) == ["acks", "info", "lock", "ready", "shared"]
    with Queue[bytes](qdir, serializer=BYTES, durability=durability) as q:
        q.put(b"next")
        assert q.get() == b"next"
        q.task_done()


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_drained_open_queue_deletes_its_chunks_within_a_bounded_time(
    qdir: str, durability: Any
) -> None:
    q: Queue[bytes] = Queue(qdir, serializer=BYTES, durability=durability)
    for _ in range(3000):
        q.put(b"x" * 100)
    drain(q)
    deadline = time.monotonic() + 10  # the reclaim runs 1 s after the queue drained
    while time.monotonic() < deadline and [n for n in os.listdir(qdir) if n.startswith("q")]:
        time.sleep(0.05)
    names = sorted(n for n in os.listdir(qdir) if not n.startswith("peer-"))  # q's own file
    assert names == ["acks", "info", "lock", "ready", "shared"]
    q.put(b"more")
    assert q.get() == b"more"
    q.task_done()
    q.close()


# --- 16. packaging -------------------------------------------------------------------------------


def test_the_build_requirement_supports_the_license_field_used() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = project["build-system"]["requires"]
    [setuptools] = [r for r in requires if r.startswith("setuptools")]
    minimum = tuple(int(part) for part in setuptools.split(">=")[1].split("."))
    if isinstance(project["project"]["license"], str):  # an SPDX expression (PEP 639)
        assert minimum >= (77, 0, 3), "setuptools reads a license expression from 77.0.3 on"


# --- 17. task_done before any get --------------------------------------------------------------


def test_task_done_before_any_get_says_what_is_wrong(qdir: str) -> None:
    with Queue[int](qdir) as q:
        q.put(1)
        with pytest.raises(ValueError, match="no delivered item waiting for acknowledgement"):
            q.task_done()
