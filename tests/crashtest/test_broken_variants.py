"""The harness catches the classic bugs of file-backed stores and queues.

Each test builds a deliberately broken store or Queue variant, shows the harness finds the
violation within the default budget, and shows the correct version passes the same check.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Callable, Iterable

import pytest
from hypothesis import find
from hypothesis.errors import NoSuchExample

from crashtest.exhaustive import explore, opener, workloads
from crashtest.queue_model import PATH, small_policy
from pqueue import Queue
from pqueue.core.effects import Effect, FsyncDir, Replace, Unlink
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedCrash,
    SimulatedDisk,
    crash_state,
)
from pqueue.io import FileSystem, shell

# --- a small atomic "save" helper, right and wrong --------------------------------------


def save(fs: FileSystem, path: str, value: bytes, *, sync_file: bool, sync_dir: bool) -> None:
    temp = path + ".tmp"
    fs.create(temp)
    fs.write(temp, value)
    if sync_file:
        fs.fsync(temp)
    fs.replace(temp, path)
    if sync_dir:
        fs.fsync_dir(path.rsplit("/", 1)[0])


def save_violations(saver: Callable[[FileSystem], None], model: PersistenceModel) -> list[str]:
    """Crash ``saver`` (saving b"new" over a durable b"old") at every point; in every crash
    state the file must hold old or new, and new once the save returned."""
    before = SimulatedDisk()
    before.mkdir("/app")
    before.write("/app/f", b"old")
    before.fsync("/app/f")
    before.fsync_dir("/app")
    before.fsync_dir("/")
    probe = before.copy()
    saver(probe)
    found = []
    for crash_at in range(probe.operations + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned = True
        try:
            saver(disk)
        except SimulatedCrash:
            returned = False
        for state in disk.crash_states(model):
            value = state.read("/app/f") if state.exists("/app/f") else None
            allowed = [b"new"] if returned else [b"old", b"new"]
            if value not in allowed:
                found.append(f"crash after {crash_at}: /app/f holds {value!r}")
    return found


def test_no_fsync_before_rename_is_caught() -> None:
    broken = save_violations(
        lambda fs: save(fs, "/app/f", b"new", sync_file=False, sync_dir=True), POWER_LOSS
    )
    assert any("b''" in v for v in broken), broken  # the rename outran the data: empty file


def test_no_directory_fsync_after_rename_is_caught() -> None:
    broken = save_violations(
        lambda fs: save(fs, "/app/f", b"new", sync_file=True, sync_dir=False), POWER_LOSS
    )
    assert any("b'old'" in v for v in broken), broken  # save() returned, yet old came back


def test_the_right_save_passes() -> None:
    right = lambda fs: save(fs, "/app/f", b"new", sync_file=True, sync_dir=True)  # noqa: E731
    assert save_violations(right, POWER_LOSS) == []
    assert save_violations(right, PROCESS_CRASH) == []


# --- a record log whose checksum lets zeros parse ----------------------------------------

WEAK = struct.Struct("<II")  # length, sum of the payload's bytes: zeros parse as records
STRONG = struct.Struct("<BIIQ")  # magic, crc32, length, sequence number


def append_weak(fs: FileSystem, path: str, offset: int, value: bytes) -> int:
    fs.write(path, WEAK.pack(len(value), sum(value)) + value + bytes(64), offset)  # preallocate
    fs.fsync(path)
    return offset + WEAK.size + len(value)


def read_weak(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos + WEAK.size <= len(data) and len(out) < 8:
        n, check = WEAK.unpack_from(data, pos)
        value = data[pos + WEAK.size : pos + WEAK.size + n]
        if len(value) < n or sum(value) != check:
            break
        out.append(value)
        pos += WEAK.size + n
    return out


def append_strong(fs: FileSystem, path: str, offset: int, value: bytes, seq: int) -> int:
    body = struct.pack("<IQ", len(value), seq) + value
    fs.write(path, struct.pack("<BI", 0xD1, zlib.crc32(body)) + body + bytes(64), offset)
    fs.fsync(path)
    return offset + STRONG.size + len(value)


def read_strong(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos + STRONG.size <= len(data):
        magic, crc, n, seq = STRONG.unpack_from(data, pos)
        end = pos + STRONG.size + n
        if magic != 0xD1 or seq != len(out) or end > len(data):
            break
        if zlib.crc32(data[pos + 5 : end]) != crc:
            break
        out.append(data[pos + STRONG.size : end])
        pos = end
    return out


def log_violations(append: Callable[[FileSystem, int, bytes, int], int],
                   read: Callable[[bytes], list[bytes]]) -> list[str]:
    values = [b"a1", b"b22"]
    probe = SimulatedDisk()
    probe.create("/log")
    probe.fsync_dir("/")
    before = probe.copy()
    offset = 0
    for i, v in enumerate(values):
        offset = append(probe, offset, v, i)
    found = []
    for crash_at in range(probe.operations + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned: list[bytes] = []
        with contextlib.suppress(SimulatedCrash):
            offset = 0
            for i, v in enumerate(values):
                offset = append(disk, offset, v, i)
                returned.append(v)
        for state in disk.crash_states(POWER_LOSS):
            got = read(state.read("/log"))
            if got[: len(returned)] != returned or got != values[: len(got)]:
                found.append(f"crash after {crash_at}: read back {got}")
    return found


def test_a_checksum_that_zeros_satisfy_is_caught() -> None:
    broken = log_violations(lambda fs, o, v, i: append_weak(fs, "/log", o, v), read_weak)
    assert any("b''" in v for v in broken), broken  # a zero-filled tail read as records


def test_a_framed_log_with_crc_and_sequence_numbers_passes() -> None:
    assert log_violations(lambda fs, o, v, i: append_strong(fs, "/log", o, v, i),
                          read_strong) == []


# --- Queue variants ----------------------------------------------------------------------


def rewrite_effects(
    monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[list[Effect]], Iterable[Effect]]
) -> None:
    """Make the Queue apply its effects rewritten (the variant's bug)."""
    original = shell.apply

    def apply(fs: FileSystem, effects: Iterable[Effect]) -> None:
        original(fs, list(rewrite(list(effects))))

    monkeypatch.setattr(shell, "apply", apply)
    monkeypatch.setattr("pqueue.queue.apply", apply)


def first_violation(durability: str, chunksize: int, length: int,
                    model: PersistenceModel = POWER_LOSS) -> str | None:
    for ops in workloads(length):
        try:
            explore(ops, opener(durability, chunksize), durability, model)  # type: ignore[arg-type]
        except AssertionError as exc:
            return str(exc)
    return None


def test_the_real_queue_passes_the_checks_the_variants_fail() -> None:
    assert first_violation("fsync", 1, 4) is None


def test_dropping_directory_fsyncs_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    rewrite_effects(monkeypatch, lambda effects: [e for e in effects if type(e) is not FsyncDir])
    found = first_violation("fsync", 1, 2)
    assert found is not None and "crash after" in found


def test_unlinking_chunks_before_the_checkpoint_is_durable_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unlink_first(effects: list[Effect]) -> list[Effect]:
        if not any(type(e) is Replace for e in effects):
            return effects
        unlinks = [e for e in effects if type(e) is Unlink and "/q0" in e.path]
        return unlinks + [e for e in effects if e not in unlinks]

    rewrite_effects(monkeypatch, unlink_first)
    found = first_violation("fsync", 1, 4)
    assert found is not None and ("missing" in found or "lost" in found), found


def test_appending_to_a_garbage_chunk_is_caught() -> None:
    class AppendingFS(SimulatedDisk):
        """Opens files in append mode: create keeps what is there, writes go to the end."""

        def create(self, path: str) -> None:
            if not self.exists(path):
                super().create(path)

        def write(self, path: str, data: bytes, offset: int | None = None) -> None:
            super().write(path, data, None)

    def violations(disk_type: type[SimulatedDisk]) -> list[str]:
        disk = disk_type()
        disk.mkdir(PATH)
        disk.write(f"{PATH}/q00000", b"\xd1 garbage where the first chunk goes")
        q: Queue[int] = Queue(PATH, chunksize=4, fs=disk, policy=small_policy("fsync"))
        for item in range(3):
            q.put(item)
        found = []
        for state in disk.crash_states(PROCESS_CRASH):
            with contextlib.suppress(Exception):
                reopened: Queue[int] = Queue(PATH, fs=state, policy=small_policy("fsync"))
                items = [reopened.get() for _ in range(reopened.qsize())]
                if items == [0, 1, 2]:
                    continue
                found.append(f"read back {items}")
                continue
            found.append("did not reopen")
        return found

    assert violations(AppendingFS)
    assert violations(SimulatedDisk) == []


def test_acknowledging_every_got_item_on_one_task_done_is_caught() -> None:
    class AckAll(Queue[int]):
        """task_done as pqueue 0.1.7 and persist-queue do it: everything got so far."""

        def task_done(self) -> None:
            while True:
                try:
                    super().task_done()
                except ValueError:
                    return

    def open_ack_all(disk: SimulatedDisk) -> Queue[int]:
        return AckAll(PATH, chunksize=1, fs=disk, policy=small_policy("fsync"))

    with pytest.raises(AssertionError, match="lost"):
        explore(("put", "put", "get", "get", "ack"), open_ack_all, "fsync", PROCESS_CRASH)
    explore(("put", "put", "get", "get", "ack"), opener("fsync", 1), "fsync", PROCESS_CRASH)


def test_a_drawn_crash_state_finds_the_missing_fsync_too() -> None:
    # Without enumerating: Hypothesis, drawing crash states, finds the bug as well.
    def saved(sync_file: bool) -> SimulatedDisk:
        disk = SimulatedDisk()
        disk.mkdir("/app")
        disk.write("/app/f", b"old")
        disk.fsync("/app/f")
        disk.fsync_dir("/app")
        disk.fsync_dir("/")
        save(disk, "/app/f", b"new", sync_file=sync_file, sync_dir=True)
        return disk

    def lost(state: SimulatedDisk) -> bool:
        return state.read("/app/f") != b"new"

    found = find(crash_state(saved(sync_file=False), POWER_LOSS), lost)
    assert found.read("/app/f") not in (b"old", b"new")  # the rename outran the data: torn
    with pytest.raises(NoSuchExample):
        find(crash_state(saved(sync_file=True), POWER_LOSS), lost)
