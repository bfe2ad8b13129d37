"""crashtest.check_crashes: every crash point and crash state of plain code (open, os,
pathlib) or FileSystem code, with violations that say what the crash lost."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from pqueue import Empty, Queue
from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    CrashCheckError,
    CrashReport,
    SimulatedDisk,
    check_crashes,
)
from pqueue.io import FileSystem

CONFIG = "/app/config.json"


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(path: str, value: object) -> None:
    """The right way: a temporary file, written, flushed and fsynced, renamed over the old
    version, and the directory fsynced."""
    temp = path + ".tmp"
    with open(temp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_dir(os.path.dirname(path))


def save_with_pathlib(path: str, value: object) -> None:
    """The right way again, through pathlib."""
    target = Path(path)
    temp = target.with_name(target.name + ".tmp")
    temp.write_text(json.dumps(value))
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    temp.replace(target)
    fsync_dir(str(target.parent))


def save_without_fsync(path: str, value: object) -> None:
    temp = path + ".tmp"
    with open(temp, "w") as f:
        json.dump(value, f)
    os.replace(temp, path)  # the rename may reach the disk before the data
    fsync_dir(os.path.dirname(path))


def save_without_directory_fsync(path: str, value: object) -> None:
    temp = path + ".tmp"
    with open(temp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)  # returns before the rename is durable


def save_renaming_before_fsync(path: str, value: object) -> None:
    temp = path + ".tmp"
    with open(temp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.replace(temp, path)  # the name points at data not durable yet
        os.fsync(f.fileno())
    fsync_dir(os.path.dirname(path))


def save_in_place(path: str, value: object) -> None:
    with open(path, "w") as f:  # truncates the old version first
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())


def save_through_system_temp(path: str, value: object) -> None:
    """The temporary file in the system's temp directory: another file system, so the
    rename fails with EXDEV and ``shutil.move`` falls back to copying over the old version
    in place."""
    fd, temp = tempfile.mkstemp()
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    shutil.move(temp, path)
    fsync_dir(os.path.dirname(path))


def save_with_random_temp_names(path: str, value: object) -> None:
    """No fsync, and a temporary file named at random: each run names it differently."""
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    os.replace(temp, path)


class ConfigFile:
    """A workload that saves version 2 over version 1, and the check of what a restart
    finds: the last version whose save returned, or the one being saved."""

    def __init__(self, saver: Callable[[str, object], None]) -> None:
        self.saver = saver
        self.returned = 1
        self.in_flight: int | None = None

    def setup(self) -> None:
        save(CONFIG, {"version": 1})

    def workload(self) -> None:
        self.returned, self.in_flight = 1, 2
        self.saver(CONFIG, {"version": 2})
        self.returned, self.in_flight = 2, None

    def check(self) -> None:
        with open(CONFIG) as f:
            version = json.load(f)["version"]
        allowed = {self.returned} if self.in_flight is None else {self.returned, 2}
        assert version in allowed, f"found version {version}, expected one of {allowed}"

    def run(self, model: Any = POWER_LOSS) -> CrashReport:
        return check_crashes(self.workload, self.check, setup=self.setup, model=model)


@pytest.mark.parametrize("saver", [save, save_with_pathlib])
def test_the_right_saver_passes(saver: Callable[[str, object], None]) -> None:
    for model in (POWER_LOSS, PROCESS_CRASH):
        report = ConfigFile(saver).run(model)
        report.assert_ok()
        assert report.ok
        assert report.operations >= 5
        assert report.crash_points == report.operations + 1
        assert report.states >= report.crash_points
        assert "no violation" in str(report)
        assert report.seconds > 0


def test_no_fsync_is_caught_with_the_lost_write_and_the_kept_rename() -> None:
    report = ConfigFile(save_without_fsync).run()
    assert not report.ok
    text = [str(v) for v in report.violations]
    assert any(
        "after os.replace('/app/config.json.tmp', '/app/config.json')" in t
        and "lost: #2 write to /app/config.json.tmp (bytes 0-13)" in t
        and "kept: #1 os.open('/app/config.json.tmp', O_WRONLY|O_CREAT|O_TRUNC); "
        "#3 os.replace('/app/config.json.tmp', '/app/config.json')" in t
        and "/app/config.json: 0 bytes b'', the program saw 14 bytes" in t
        for t in text
    ), text[0]
    assert any("torn (bytes" in t for t in text)
    with pytest.raises(CrashCheckError, match="violations"):
        report.assert_ok()
    assert ConfigFile(save_without_fsync).run(PROCESS_CRASH).ok  # only a power loss shows it


def test_no_directory_fsync_is_caught_after_the_save_returned() -> None:
    report = ConfigFile(save_without_directory_fsync).run()
    assert not report.ok
    returned = [v for v in report.violations if v.crash_point == report.operations]
    assert returned
    violation = returned[0]
    assert violation.crashed_in is None
    assert violation.lost == ["#4 os.replace('/app/config.json.tmp', '/app/config.json')"]
    text = str(violation)
    assert f"after the workload returned ({report.operations} operations)" in text
    assert "/app/config.json.tmp: present" in text
    assert "check failed: found version 1, expected one of {2}" in text


def test_rename_before_fsync_is_caught() -> None:
    report = ConfigFile(save_renaming_before_fsync).run()
    assert not report.ok
    assert any(
        v.after is not None and v.after.kind == "rename"
        and any("write" in lost for lost in v.lost)
        and any("os.replace" in kept for kept in v.kept)
        for v in report.violations
    ), report.text()


def test_writing_in_place_is_caught_even_by_a_process_crash() -> None:
    report = ConfigFile(save_in_place).run()
    assert not report.ok
    crashed = ConfigFile(save_in_place).run(PROCESS_CRASH)
    assert not crashed.ok  # between the truncate and the write
    text = str(crashed.violations[0])
    assert "nothing was pending: this state is what the program saw" in text
    assert "JSONDecodeError" in text  # an empty file: the check broke, a violation too


def test_a_temporary_file_on_another_file_system_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the runs crashed leave some
    report = ConfigFile(save_through_system_temp).run()
    assert not report.ok
    # The rename across file systems failed (EXDEV), so the copy wrote the file in place:
    # a crash between its truncate and its write leaves it empty, even without a power loss.
    assert [op.kind for op in report.log][:2] == ["truncate", "write"]
    first = report.violations[0]
    assert first.after is not None
    assert first.after.call == "os.open('/app/config.json', O_WRONLY|O_CREAT|O_TRUNC)"
    assert "JSONDecodeError" in str(first)
    assert not ConfigFile(save_through_system_temp).run(PROCESS_CRASH).ok


def always_fails() -> None:
    raise AssertionError("every state fails")


def test_explanations_name_this_runs_files_and_only_what_it_lost() -> None:
    report = ConfigFile(save_with_random_temp_names).run()
    assert not report.ok
    for violation in report.violations:
        after = violation.after
        if after is not None and after.kind == "rename":
            # The rename the crash came after is this run's, whatever its random name.
            temp = after.call.split("'")[1]
            assert f"#1 os.open('{temp}'" in str(violation), str(violation)
    # The rename of a file that the crash state does not have at all is lost, not left out.
    lost_renames = [v for v in report.violations
                    if any("os.replace" in lost for lost in v.lost)]
    assert lost_renames, report.text()
    # A process crash loses nothing: no violation says it lost anything.
    always = check_crashes(
        lambda: save_with_random_temp_names(CONFIG, {"version": 2}),
        always_fails,
        setup=lambda: save(CONFIG, {"version": 1}), model=PROCESS_CRASH,
    )
    assert always.violations
    assert all(v.lost == [] for v in always.violations), always.text()


def test_a_workload_without_file_operations_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no state-changing file operation under /app"):
        check_crashes(lambda: None, lambda: None)

    def elsewhere() -> None:
        (tmp_path / "real").write_text("not under /app")
        os.listdir("/app")  # a read: nothing to crash

    with pytest.raises(ValueError, match="under /app"):
        check_crashes(elsewhere, lambda: None)
    assert (tmp_path / "real").read_text() == "not under /app"


def test_a_workload_that_does_not_do_the_same_each_run_is_an_error() -> None:
    runs = []

    def workload() -> None:
        runs.append(1)
        for i in range(3 if len(runs) == 1 else 1):
            Path(f"/app/{i}").write_text("x")

    with pytest.raises(RuntimeError, match="does not do the same each run"):
        check_crashes(workload, lambda: None)


def test_the_mount_ends_even_when_the_check_breaks() -> None:
    import builtins  # noqa: PLC0415

    real_open = builtins.open

    def workload() -> None:
        Path("/app/x").write_text("x")

    def check() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check_crashes(workload, check)
    assert builtins.open is real_open


# -- FileSystem code -----------------------------------------------------------------------


def fs_save(fs: FileSystem, path: str, value: bytes) -> None:
    temp = path + ".tmp"
    fs.create(temp)
    fs.write(temp, value)
    fs.fsync(temp)
    fs.replace(temp, path)
    fs.fsync_dir(path.rsplit("/", 1)[0] or "/")


def fs_save_without_fsync(fs: FileSystem, path: str, value: bytes) -> None:
    fs.create(path + ".tmp")
    fs.write(path + ".tmp", value)
    fs.replace(path + ".tmp", path)
    fs.fsync_dir(path.rsplit("/", 1)[0] or "/")


@pytest.mark.parametrize(("saver", "ok"), [(fs_save, True), (fs_save_without_fsync, False)])
def test_filesystem_code(saver: Callable[[FileSystem, str, bytes], None], ok: bool) -> None:
    done = {"returned": False}

    def setup(fs: FileSystem) -> None:
        fs.mkdir("/app")
        fs.write("/app/config", b"old")

    def workload(fs: FileSystem) -> None:
        done["returned"] = False
        saver(fs, "/app/config", b"new")
        done["returned"] = True

    def check(fs: FileSystem) -> None:
        assert isinstance(fs, SimulatedDisk)
        value = fs.read("/app/config")
        assert value in ({b"new"} if done["returned"] else {b"old", b"new"}), value

    report = check_crashes(workload, check, setup=setup, fs=True)
    assert report.ok is ok
    if not ok:
        assert any("lost: #2 fs.write to /app/config.tmp (bytes 0-2)" in str(v)
                   and "fs.replace('/app/config.tmp', '/app/config')" in str(v)
                   for v in report.violations), report.text()


# -- pqueue's own Queue, with its OsFileSystem, on a mount --------------------------------


class QueueHistory:
    """Put 2, get, task_done, with the Queue's default OsFileSystem on /app/q; the contract
    after reopening: every put that returned is there unless acknowledged, nothing
    acknowledged comes back, nothing that was never put appears."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.called: list[str] = []
        self.returned: list[str] = []
        self.acking: str | None = None
        self.acked: list[str] = []

    def workload(self) -> None:
        self.called, self.returned, self.acking, self.acked = [], [], None, []
        q: Queue[str] = Queue("/app/q", **self.options)
        for item in ("a", "b"):
            self.called.append(item)
            q.put(item)
            self.returned.append(item)
        got = q.get(block=False)
        self.acking = got
        q.task_done()
        self.acked.append(got)
        self.acking = None
        q.close()

    def check(self) -> None:
        q: Queue[str] = Queue("/app/q", **self.options)
        drained = []
        try:
            while True:
                try:
                    drained.append(q.get(block=False))
                except Empty:
                    break
                q.task_done()
        finally:
            q.close()
        assert len(drained) == len(set(drained)), f"delivered twice: {drained}"
        assert set(drained) <= set(self.called), f"never put: {drained}"
        assert not set(drained) & set(self.acked), f"acknowledged, back: {drained}"
        owed = set(self.returned) - set(self.acked) - {self.acking}
        assert owed <= set(drained), f"lost {owed - set(drained)}: {drained}"


def test_the_queue_passes_on_a_mount() -> None:
    history = QueueHistory(exclusive=True)
    report = check_crashes(history.workload, history.check, model=POWER_LOSS)
    report.assert_ok()
    assert report.operations > 20
    kinds = {op.kind for op in report.log}
    assert {"mkdir", "create", "write", "fsync", "fsync_dir", "rename"} <= kinds
    check_crashes(history.workload, history.check, model=PROCESS_CRASH).assert_ok()


@pytest.mark.parametrize("option", [
    {"journaled_dirs": True}, {"page_size": 4096}, {"torn_sectors": "any"},
], ids=str)
def test_the_queue_passes_under_every_model_option(option: dict[str, Any]) -> None:
    model = attrs.evolve(POWER_LOSS, **option)
    history = QueueHistory(exclusive=True)
    report = check_crashes(history.workload, history.check, model=model)
    report.assert_ok()
    assert report.model == model


def test_a_shared_queue_passes_on_a_mount() -> None:
    history = QueueHistory()
    report = check_crashes(history.workload, history.check, model=PROCESS_CRASH)
    report.assert_ok()
    assert any(op.kind == "unlink" for op in report.log)  # its peer file


def test_a_queue_that_never_fsyncs_a_directory_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pqueue.io.fs import OsFileSystem  # noqa: PLC0415

    monkeypatch.setattr(OsFileSystem, "fsync_dir", lambda self, path: None)
    history = QueueHistory(exclusive=True)
    report = check_crashes(history.workload, history.check)
    assert not report.ok
    assert any(
        "lost: #10 os.open('/app/q/q00000', O_RDWR|O_CREAT|O_TRUNC)" in str(v)
        and "/app/q/q00000: missing" in str(v)
        for v in report.violations
    ), report.text()


# -- the example of docs/crashtest.md ------------------------------------------------------


def test_docs_example() -> None:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415

    from pqueue.crashtest import check_crashes  # noqa: PLC0415

    def save(path: str, value: dict[str, int]) -> None:
        with open(path + ".tmp", "w") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())  # without it, a crash can leave an empty or torn file
        os.replace(path + ".tmp", path)
        fd = os.open(os.path.dirname(path), os.O_RDONLY)
        os.fsync(fd)  # without it, the rename can be lost after save() returned
        os.close(fd)

    saved = {"version": 1}  # what the program knows was saved

    def setup() -> None:
        save("/app/config.json", {"version": 1})

    def workload() -> None:
        saved["version"] = 1
        save("/app/config.json", {"version": 2})
        saved["version"] = 2

    def check() -> None:
        with open("/app/config.json") as f:
            found = json.load(f)["version"]
        assert found >= saved["version"], f"found {found} after saving {saved['version']}"

    report = check_crashes(workload, check, at="/app", setup=setup)
    report.assert_ok()
    print(report)  # N crash states at 6 crash points (5 operations) checked in ...: no violation
    assert report.crash_points == 6


def test_max_states_samples_the_crash_points_that_have_more() -> None:
    names = [f"/app/f{i}" for i in range(12)]

    def workload() -> None:
        for name in names:  # twelve new files, none synced: millions of crash states
            with open(name, "wb") as f:
                f.write(name.encode() * 40)

    def check_complete() -> None:  # wrong: a power loss can tear or lose any of them
        for name in names:
            if os.path.exists(name):
                with open(name, "rb") as f:
                    assert f.read() == name.encode() * 40, f"{name} is torn"

    def check_sizes() -> None:  # right: nothing is longer than what was written to it
        for name in names:
            if os.path.exists(name):
                assert os.path.getsize(name) <= len(name) * 40, name

    report = check_crashes(workload, check_complete, max_states=50)
    assert report.sampled > 0
    assert report.states <= 50 * report.crash_points
    assert "sampled at" in report.summary()
    assert not report.ok
    violation = next(v for v in report.violations if v.sampled)
    assert "crash state drawn" in str(violation) and "is torn" in str(violation)
    assert violation.lost  # the drawn state is explained like an enumerated one
    again = check_crashes(workload, check_complete, max_states=50)
    assert (again.states, len(again.violations)) == (report.states, len(report.violations))
    check_crashes(workload, check_sizes, max_states=50).assert_ok()
    with pytest.raises(ValueError, match="max_states"):
        check_crashes(workload, check_sizes, max_states=0)
