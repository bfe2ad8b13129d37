"""The harness catches the classic bugs of file-backed stores and queues.

Each test builds a deliberately broken store or Queue variant, shows the harness finds a
violation of the contract within the default budget, and shows the correct version passes
the same check. How many crash states each took is reported at the end of the run (see
conftest.py).

- (a) no fsync before a rename: a toy atomic save, and the Queue's checkpoint;
- (b) no directory fsync after creating a file or after a rename: a toy save, and the
  Queue's new chunks and checkpoints;
- (c) unlinking consumed chunks before the checkpoint that drops them is durable;
- (d) a checksum that a zero-filled tail satisfies: a toy record log;
- (e) chunk files opened in append mode, over whatever a crash left at their end;
- (f) one task_done() acknowledging every item got so far, by any thread;
- (g) retrying a failed fsync and carrying on: a toy atomic save.
"""

from __future__ import annotations

import errno
import re
import struct
import zlib
from collections.abc import Callable, Hashable, Iterable

import pytest
from hypothesis import Phase, find, settings
from hypothesis.errors import NoSuchExample
from hypothesis.stateful import run_state_machine_as_test

from crashtest.exhaustive import TALLY, Opener, Violation, first_violation, opener, workloads
from crashtest.queue_model import PATH, small_policy
from crashtest.test_queue_machine import QueueMachine
from pqueue import CorruptQueueError, PQueueError, Queue
from pqueue.core.effects import Create, Effect, Fsync, FsyncDir, Replace, Unlink
from pqueue.core.state import Durability
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedCrash,
    SimulatedDisk,
    crash_state,
)
from pqueue.io import FileSystem, Lock, shell
from pqueue.io.fs import FileKind, Watch


def caught(variant: str, checked: int, found: object) -> None:
    """Report a caught variant in the session summary."""
    first_line = str(found).splitlines()[0]
    TALLY.caught.append(f"{variant}: caught after {checked} crash states: {first_line}")


# --- (a), (b): a small atomic "save" helper, right and wrong ------------------------------


def save(fs: FileSystem, path: str, value: bytes, *, sync_file: bool, sync_dir: bool) -> None:
    temp = path + ".tmp"
    fs.create(temp)
    fs.write(temp, value)
    if sync_file:
        fs.fsync(temp)
    fs.replace(temp, path)
    if sync_dir:
        fs.fsync_dir(path.rsplit("/", 1)[0])


def save_violations(
    saver: Callable[[FileSystem], None], model: PersistenceModel
) -> tuple[list[str], int]:
    """Crash ``saver`` (saving b"new" over a durable b"old") at every point; in every crash
    state the file must hold old or new, and new once the save returned. Returns the
    violations and the number of crash states checked up to the first (or all of them)."""
    before = SimulatedDisk()
    before.mkdir("/app")
    before.write("/app/f", b"old")
    before.fsync("/app/f")
    before.fsync_dir("/app")
    before.fsync_dir("/")
    probe = before.copy()
    saver(probe)
    found: list[str] = []
    checked = until_first = 0
    for crash_at in range(probe.operations + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned = True
        try:
            saver(disk)
        except SimulatedCrash:
            returned = False
        for state in disk.crash_states(model):
            checked += 1
            value = state.read("/app/f") if state.exists("/app/f") else None
            allowed = [b"new"] if returned else [b"old", b"new"]
            if value not in allowed:
                until_first = until_first or checked
                found.append(f"crash after {crash_at}: /app/f holds {value!r}")
    return found, until_first or checked


def test_no_fsync_before_rename_is_caught() -> None:
    broken, checked = save_violations(
        lambda fs: save(fs, "/app/f", b"new", sync_file=False, sync_dir=True), POWER_LOSS
    )
    assert any("b''" in v for v in broken), broken  # the rename outran the data: empty file
    caught("(a) atomic save without fsync before the rename", checked, broken[0])


def test_no_directory_fsync_after_rename_is_caught() -> None:
    broken, checked = save_violations(
        lambda fs: save(fs, "/app/f", b"new", sync_file=True, sync_dir=False), POWER_LOSS
    )
    assert any("b'old'" in v for v in broken), broken  # save() returned, yet old came back
    caught("(b) atomic save without directory fsync after the rename", checked, broken[0])


def test_the_right_save_passes() -> None:
    right = lambda fs: save(fs, "/app/f", b"new", sync_file=True, sync_dir=True)  # noqa: E731
    assert save_violations(right, POWER_LOSS)[0] == []
    assert save_violations(right, PROCESS_CRASH)[0] == []


def save_retrying_fsync(fs: FileSystem, path: str, value: bytes) -> None:
    """(g) The atomic save of (a) and (b), but a failed fsync is retried until it passes."""
    temp = path + ".tmp"
    fs.create(temp)
    fs.write(temp, value)
    while True:
        try:
            fs.fsync(temp)
            break
        except OSError:
            continue  # the bug: the data the failed fsync covered may never reach the disk
    fs.replace(temp, path)
    fs.fsync_dir(path.rsplit("/", 1)[0])


def retried_save_states(drops_writes: bool) -> list[bytes | None]:
    """What /app/f may hold after a power loss once the retrying save has returned, its
    first fsync having failed with EIO."""
    disk = SimulatedDisk()
    disk.mkdir("/app")
    disk.write("/app/f", b"old")
    disk.fsync("/app/f")
    disk.fsync_dir("/app")
    disk.fsync_dir("/")
    disk.fail(0, OSError(errno.EIO, "Input/output error"), ops={"fsync"},
              drops_writes=drops_writes)
    save_retrying_fsync(disk, "/app/f", b"new")
    return [state.files().get("/app/f") for state in disk.crash_states(POWER_LOSS)]


def test_retrying_a_failed_fsync_is_caught_when_it_drops_writes() -> None:
    # The save returned, so only b"new" is allowed. With a failed fsync that drops the
    # writes it covered, as Linux does, the retry "succeeds" and the file can come back
    # empty; a model that keeps the writes pending cannot see this bug.
    states = retried_save_states(drops_writes=True)
    broken = [state for state in states if state != b"new"]
    assert b"" in broken, states
    caught("(g) atomic save retrying a failed fsync", len(states), f"/app/f holds {broken[0]!r}")
    assert set(retried_save_states(drops_writes=False)) == {b"new"}


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

    tried = 0

    def lost(state: SimulatedDisk) -> bool:
        nonlocal tried
        tried += 1
        return state.read("/app/f") != b"new"

    found = find(crash_state(saved(sync_file=False), POWER_LOSS), lost)
    assert found.read("/app/f") not in (b"old", b"new")  # the rename outran the data: torn
    TALLY.caught.append(
        f"(a) atomic save without fsync, by drawn crash states: found in {tried} examples "
        f"(shrinking included): /app/f holds {found.read('/app/f')!r}"
    )
    with pytest.raises(NoSuchExample):
        find(
            crash_state(saved(sync_file=True), POWER_LOSS), lost,
            settings=settings(max_examples=100),
        )


# --- (d): a record log whose checksum lets zeros parse ------------------------------------

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


def log_violations(
    append: Callable[[FileSystem, int, bytes, int], int], read: Callable[[bytes], list[bytes]]
) -> tuple[list[str], int]:
    """Append two records, crashing at every point; in every crash state the log must read
    back a prefix of them that includes every append that returned. Returns the violations
    and the number of crash states checked up to the first (or all of them)."""
    values = [b"a1", b"b22"]
    before = SimulatedDisk()
    before.create("/log")
    before.fsync_dir("/")
    probe = before.copy()
    offset = 0
    for i, v in enumerate(values):
        offset = append(probe, offset, v, i)
    found: list[str] = []
    checked = until_first = 0
    for crash_at in range(probe.operations + 1):
        disk = before.copy()
        disk.crash_after(crash_at)
        returned: list[bytes] = []
        try:
            offset = 0
            for i, v in enumerate(values):
                offset = append(disk, offset, v, i)
                returned.append(v)
        except SimulatedCrash:
            pass
        for state in disk.crash_states(POWER_LOSS):
            checked += 1
            got = read(state.read("/log"))
            if got[: len(returned)] != returned or got != values[: len(got)]:
                until_first = until_first or checked
                found.append(f"crash after {crash_at}: read back {got}")
    return found, until_first or checked


def test_a_checksum_that_zeros_satisfy_is_caught() -> None:
    broken, checked = log_violations(
        lambda fs, o, v, i: append_weak(fs, "/log", o, v), read_weak
    )
    assert any("b''" in v for v in broken), broken  # a zero-filled tail read as records
    caught("(d) record log whose checksum zeros satisfy", checked, broken[0])


def test_a_framed_log_with_crc_and_sequence_numbers_passes() -> None:
    found, _ = log_violations(lambda fs, o, v, i: append_strong(fs, "/log", o, v, i), read_strong)
    assert found == []


# --- Queue variants ------------------------------------------------------------------------

# Each: (the durability, chunk size, persistence model, whether each recovered queue must
# also take a put and reopen, workload length) the harness checks a variant with.
Check = tuple[Durability, int, PersistenceModel, bool, int]
FSYNC_CHECK: Check = ("fsync", 1, POWER_LOSS, False, 4)
# With one item per chunk, every put fills its chunk and checkpoints at once, and the
# directory fsync after the checkpoint's rename covers the chunk's name too: use two.
CHUNK2_CHECK: Check = ("fsync", 2, POWER_LOSS, False, 4)
APPEND_CHECK: Check = ("flush", 2, POWER_LOSS, True, 4)
ACK_ALL_CHECK: Check = ("fsync", 1, PROCESS_CRASH, False, 5)


def violation(check: Check, open_queue: Opener | None = None) -> tuple[Violation | None, int]:
    durability, chunksize, model, then, length = check
    return first_violation(
        workloads(length), open_queue or opener(durability, chunksize), durability, model,
        then=then,
    )


@pytest.mark.parametrize(
    "check",
    [FSYNC_CHECK, CHUNK2_CHECK, APPEND_CHECK, ACK_ALL_CHECK],
    ids=["fsync-power-chunk1", "fsync-power-chunk2", "flush-power-chunk2-then", "fsync-kill"],
)
def test_the_real_queue_passes_the_checks_the_variants_fail(check: Check) -> None:
    found, checked = violation(check)
    assert found is None, found
    assert checked > 500


def rewrite_effects(
    monkeypatch: pytest.MonkeyPatch, rewrite: Callable[[list[Effect]], Iterable[Effect]]
) -> None:
    """Make the Queue apply its effects rewritten (the variant's bug): every step of the
    Queue goes through ``shell.apply``."""
    original = shell.apply

    def apply(fs: FileSystem, effects: Iterable[Effect]) -> None:
        original(fs, list(rewrite(list(effects))))

    monkeypatch.setattr(shell, "apply", apply)


def is_chunk(path: str) -> bool:
    return re.fullmatch(r"q\d{5,}", path.rsplit("/", 1)[1]) is not None


def test_no_fsync_of_the_checkpoint_before_its_rename_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rewrite_effects(
        monkeypatch,
        lambda effects: [e for e in effects if not (type(e) is Fsync and "tmp" in e.path)],
    )
    found, checked = violation(FSYNC_CHECK)
    assert found is not None and "CorruptQueueError" in str(found), found  # info torn/empty
    caught("(a) Queue: checkpoint renamed before its fsync", checked, found)


def test_no_directory_fsync_after_creating_a_chunk_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def drop(effects: list[Effect]) -> Iterable[Effect]:
        created = False  # a chunk was created, and no checkpoint rename came since
        for e in effects:
            if type(e) is Create and is_chunk(e.path):
                created = True
            elif type(e) is Replace:
                created = False
            elif type(e) is FsyncDir and created:
                continue
            yield e

    rewrite_effects(monkeypatch, drop)
    found, checked = violation(CHUNK2_CHECK)
    assert found is not None and "lost" in str(found), found  # the chunk's name was lost
    caught("(b) Queue: no directory fsync after creating a chunk", checked, found)


def test_no_directory_fsync_after_the_checkpoint_rename_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def drop(effects: list[Effect]) -> Iterable[Effect]:
        renamed = False
        for e in effects:
            if renamed and type(e) is FsyncDir:
                renamed = False
                continue
            renamed = type(e) is Replace
            yield e

    rewrite_effects(monkeypatch, drop)
    found, checked = violation(FSYNC_CHECK)
    assert found is not None, "not caught"
    caught("(b) Queue: no directory fsync after the checkpoint's rename", checked, found)


def test_unlinking_chunks_before_the_checkpoint_is_durable_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unlink_first(effects: list[Effect]) -> list[Effect]:
        if not any(type(e) is Replace for e in effects):
            return effects
        unlinks = [e for e in effects if type(e) is Unlink and is_chunk(e.path)]
        return unlinks + [e for e in effects if e not in unlinks]

    rewrite_effects(monkeypatch, unlink_first)
    found, checked = violation(FSYNC_CHECK)
    assert found is not None and ("missing" in str(found) or "lost" in str(found)), found
    caught("(c) Queue: consumed chunks unlinked before the checkpoint", checked, found)


class AppendingChunks:
    """A FileSystem opening chunk files in append mode, as pqueue 0.1.7 does: ``create``
    keeps what is there and every write goes to the end, whatever a crash left there."""

    def __init__(self, disk: SimulatedDisk) -> None:
        self.disk = disk

    def create(self, path: str) -> None:
        if not (is_chunk(path) and self.disk.exists(path)):
            self.disk.create(path)

    def write(self, path: str, data: bytes, offset: int | None = None) -> None:
        self.disk.write(path, data, None if is_chunk(path) else offset)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self.disk.mkdir(path, mode)

    def listdir(self, path: str) -> list[str]:
        return self.disk.listdir(path)

    def exists(self, path: str) -> bool:
        return self.disk.exists(path)

    def is_dir(self, path: str) -> bool:
        return self.disk.is_dir(path)

    def size(self, path: str) -> int:
        return self.disk.size(path)

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        return self.disk.read(path, offset, size)

    def truncate(self, path: str, size: int) -> None:
        self.disk.truncate(path, size)

    def fsync(self, path: str) -> None:
        self.disk.fsync(path)

    def fsync_dir(self, path: str) -> None:
        self.disk.fsync_dir(path)

    def write_back(self, path: str) -> None:
        self.disk.write_back(path)

    def file_type(self, path: str) -> FileKind | None:
        return self.disk.file_type(path)

    def replace(self, src: str, dst: str) -> None:
        self.disk.replace(src, dst)

    def unlink(self, path: str) -> None:
        self.disk.unlink(path)

    def lock(self, path: str, *, shared: bool = False, blocking: bool = False) -> Lock:
        return self.disk.lock(path, shared=shared, blocking=blocking)

    def probe(self, path: str) -> bool:
        return self.disk.probe(path)

    def boot_id(self) -> str | None:
        return self.disk.boot_id()

    def volatile(self, path: str) -> None:
        self.disk.volatile(path)

    def watch(self, path: str, closes: tuple[str, ...] = ()) -> Watch:
        return self.disk.watch(path, closes)

    def lock_key(self, path: str) -> Hashable:
        return self.disk.lock_key(path)

    def same_filesystem(self, a: str, b: str) -> bool:
        return self.disk.same_filesystem(a, b)

    def release(self, path: str) -> None:
        self.disk.release(path)


def test_appending_to_a_chunk_over_what_a_crash_left_is_caught() -> None:
    chunksize = APPEND_CHECK[1]

    def open_appending(disk: SimulatedDisk) -> Queue[int]:
        return Queue(
            PATH, chunksize=chunksize, durability="flush", fs=AppendingChunks(disk),
            policy=small_policy("flush"),
        )

    assert isinstance(AppendingChunks(SimulatedDisk()), FileSystem)
    found, checked = violation(APPEND_CHECK, open_appending)
    # A power loss left zeros at the end of the head chunk; the next put went after them.
    assert found is not None and "zero bytes where a record should start" in str(found), found
    caught("(e) Queue: chunks opened in append mode", checked, found)


def test_acknowledging_every_got_item_on_one_task_done_is_caught() -> None:
    class AckAll(Queue[int]):
        """task_done as pqueue 0.1.7 and persist-queue do it: everything got so far."""

        def task_done(self, n: int = 1) -> None:
            while True:
                try:
                    super().task_done()
                except ValueError:
                    return

    def open_ack_all(disk: SimulatedDisk) -> Queue[int]:
        return AckAll(PATH, chunksize=1, fs=disk, policy=small_policy("fsync"))

    found, checked = violation(ACK_ALL_CHECK, open_ack_all)
    assert found is not None and "lost" in str(found), found
    caught("(f) Queue: task_done acknowledging every item got", checked, found)


def test_the_crash_machine_catches_the_checkpoint_renamed_before_its_fsync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Drawing operations, crash points and crash states instead of enumerating them. (Not
    # shrunk here: shrinking a Queue history replays it hundreds of times, ~40 s.)
    rewrite_effects(
        monkeypatch,
        lambda effects: [e for e in effects if not (type(e) is Fsync and "tmp" in e.path)],
    )

    class Counting(QueueMachine):
        runs = 0
        first_failure: int | None = None

        def __init__(self) -> None:
            super().__init__()
            Counting.runs += 1

        def open(self, disk: SimulatedDisk) -> None:
            try:
                super().open(disk)
            except PQueueError:
                Counting.first_failure = Counting.first_failure or Counting.runs
                raise

    assert settings.default is not None
    with pytest.raises(CorruptQueueError) as found:
        run_state_machine_as_test(
            Counting,
            settings=settings(
                settings.default, derandomize=True, database=None, stateful_step_count=30,
                report_multiple_bugs=False, phases=[Phase.generate],
            ),
        )
    TALLY.caught.append(
        f"(a) Queue: checkpoint renamed before its fsync, by the CrashMachine: caught in "
        f"run {Counting.first_failure} of the default budget: {found.value}"
    )
