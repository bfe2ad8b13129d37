"""crashtest.mount: unmodified code (open, os, os.path, pathlib, tempfile, shutil, json) on
a SimulatedDisk, every other path on the real system."""

from __future__ import annotations

import builtins
import errno
import fcntl
import io
import json
import mmap
import os
import pathlib
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from pqueue.crashtest import POWER_LOSS, SimulatedCrash, SimulatedDisk
from pqueue.crashtest.mount import FD_BASE, UnsupportedCallError, mount


@pytest.fixture
def disk() -> SimulatedDisk:
    return SimulatedDisk()


def test_text_and_binary_buffered_and_not(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        with open("/app/t.txt", "w", encoding="utf-8") as f:
            f.write("héllo\n")
            f.write("world\n")
        assert disk.files() == {"/t.txt": "héllo\nworld\n".encode()}
        with open("/app/t.txt", encoding="utf-8") as f:
            assert f.readline() == "héllo\n"
            assert f.read() == "world\n"
        with open("/app/b.bin", "wb") as fb:
            assert fb.write(b"0123456789") == 10
            assert disk.files()["/b.bin"] == b""  # still in Python's buffer
            fb.flush()
            assert disk.files()["/b.bin"] == b"0123456789"  # the write(2) happened
        with open("/app/b.bin", "rb", buffering=0) as raw:
            assert raw.read(3) == b"012"
            assert raw.tell() == 3
            assert raw.seek(-2, os.SEEK_END) == 8
            assert raw.read() == b"89"
        with open("/app/b.bin", "r+b") as fr:
            fr.seek(4)
            fr.write(b"xy")
            assert fr.tell() == 6
            fr.truncate(7)
            fr.seek(0)
            assert fr.read() == b"0123xy6"
            assert isinstance(fr.fileno(), int)
            assert fr.fileno() >= FD_BASE
        with open("/app/b.bin", "ab") as fa:
            assert fa.tell() == 7
            fa.write(b"!")
        with open("/app/b.bin", "a+") as ft:
            ft.write("?")
            ft.seek(0)
            assert ft.read() == "0123xy6!?"
        with open("/app/b.bin", "w+b") as fw:
            assert fw.read() == b""  # truncated by "w"
        with pytest.raises(FileExistsError):
            open("/app/b.bin", "x")  # noqa: SIM115
        with open("/app/new", "x") as fx:
            fx.write("n")
        with pytest.raises(FileNotFoundError) as missing:
            open("/app/missing")  # noqa: SIM115
        assert missing.value.filename == "/app/missing"
        with pytest.raises(IsADirectoryError):
            open("/app", "w")  # noqa: SIM115
        with pytest.raises(ValueError, match="unbuffered text"):
            open("/app/new", buffering=0)  # noqa: SIM115
        assert io.open is builtins.open
        with io.open("/app/new") as f:  # noqa: UP020
            assert f.read() == "n"
        assert isinstance(f.buffer.raw, io.FileIO)  # type: ignore[attr-defined]
    assert disk.files()["/new"] == b"n"


def test_os_calls(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        fd = os.open("/app/f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        assert fd >= FD_BASE
        assert os.write(fd, b"hello") == 5
        assert os.lseek(fd, 0, os.SEEK_CUR) == 5
        assert os.pwrite(fd, b"J", 0) == 1
        assert os.lseek(fd, 0, os.SEEK_CUR) == 5  # pwrite does not move the offset
        os.ftruncate(fd, 4)
        st = os.fstat(fd)
        assert st.st_size == 4
        os.fsync(fd)
        os.fdatasync(fd)
        with pytest.raises(OSError) as not_readable:
            os.read(fd, 1)
        assert not_readable.value.errno == errno.EBADF
        os.close(fd)
        with pytest.raises(OSError) as closed:
            os.close(fd)
        assert closed.value.errno == errno.EBADF
        with pytest.raises(FileExistsError):
            os.open("/app/f", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with pytest.raises(FileNotFoundError):
            os.open("/app/g", os.O_RDONLY)
        fd = os.open("/app/f", os.O_RDWR)
        assert os.read(fd, 2) == b"Je"
        assert os.pread(fd, 10, 1) == b"ell"
        assert os.lseek(fd, 0, os.SEEK_END) == 4
        assert os.read(fd, 10) == b""
        os.close(fd)
        fd = os.open("/app/f", os.O_WRONLY | os.O_APPEND)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"!")  # O_APPEND: at the end whatever the offset
        os.pwrite(fd, b"?", 0)  # at the end too, as on Linux
        os.close(fd)
        fd = os.open("/app/f", os.O_RDWR | os.O_TRUNC)
        assert os.fstat(fd).st_size == 0
        os.close(fd)
        os.truncate("/app/f", 3)
        assert os.stat("/app/f").st_size == 3
        os.close(os.open("/app/f", os.O_RDONLY | os.O_TRUNC))  # truncates, as on Linux
        assert os.stat("/app/f").st_size == 0
        os.truncate("/app/f", 3)
        assert os.lstat("/app/f").st_size == 3

        os.mkdir("/app/d")
        with pytest.raises(FileExistsError):
            os.mkdir("/app/d")
        with pytest.raises(FileNotFoundError):
            os.mkdir("/app/x/y")
        os.makedirs("/app/x/y/z")
        os.makedirs("/app/x/y/z", exist_ok=True)
        with pytest.raises(FileExistsError):
            os.makedirs("/app/x/y/z")
        assert sorted(os.listdir("/app")) == ["d", "f", "x"]
        assert os.listdir(b"/app/x") == [b"y"]
        with os.scandir("/app") as entries:
            found = {e.name: (e.is_dir(), e.is_file(), e.path) for e in entries}
        assert found["d"] == (True, False, "/app/d")
        assert found["f"] == (False, True, "/app/f")
        assert os.path.exists("/app/f")
        assert os.path.isfile("/app/f")
        assert not os.path.isfile("/app/d")
        assert os.path.isdir("/app/d")
        assert os.path.isdir("/app")
        assert os.path.getsize("/app/f") == 3
        assert not os.path.exists("/app/nothing")
        assert os.access("/app/f", os.R_OK)
        assert [root for root, _, _ in os.walk("/app/x")] == ["/app/x", "/app/x/y", "/app/x/y/z"]

        os.rename("/app/f", "/app/d/f")
        os.replace("/app/d/f", "/app/g")
        assert sorted(os.listdir("/app")) == ["d", "g", "x"]
        with pytest.raises(OSError) as notempty:
            os.rmdir("/app/x")
        assert notempty.value.errno == errno.ENOTEMPTY
        os.rmdir("/app/x/y/z")
        os.removedirs("/app/x/y")
        assert not os.path.exists("/app/x")
        with pytest.raises(IsADirectoryError):
            os.unlink("/app/d")
        os.remove("/app/g")
        with pytest.raises(FileNotFoundError) as gone:
            os.unlink("/app/g")
        assert gone.value.filename == "/app/g"

        dfd = os.open("/app/d", os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)  # a directory's entries made durable
        os.close(dfd)
        with pytest.raises(IsADirectoryError):
            os.open("/app/d", os.O_RDWR)
        os.chmod("/app/d", 0o700)  # accepted and ignored: no permissions on the disk
        os.utime("/app/d")
    assert disk.dirs() == ["/", "/d"]
    assert disk.files() == {}


def test_fsync_makes_writes_durable(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        with open("/app/a", "wb") as f:
            f.write(b"data")
            f.flush()
            os.fsync(f.fileno())
        dfd = os.open("/app", os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        with open("/app/b", "wb") as f:
            f.write(b"lost")
    states = [state.files() for state in disk.crash_states(POWER_LOSS)]
    assert all(files["/a"] == b"data" for files in states)  # durable
    assert any("/b" not in files for files in states)  # name never fsynced


def test_o_dsync_writes_are_durable(disk: SimulatedDisk) -> None:
    disk.write("/a", b"")
    disk.fsync("/a")
    disk.fsync_dir("/")
    with mount(disk, at="/app"):
        fd = os.open("/app/a", os.O_WRONLY | os.O_DSYNC)
        os.write(fd, b"sync")
        os.close(fd)
    assert [s.files()["/a"] for s in disk.crash_states(POWER_LOSS)] == [b"sync"]


def test_pathlib(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        root = Path("/app")
        assert root.exists()
        assert root.is_dir()
        (root / "sub").mkdir()
        (root / "sub" / "deep").mkdir(parents=True, exist_ok=True)
        (root / "a" / "b").mkdir(parents=True)
        p = root / "sub" / "x.txt"
        p.write_text("text")
        assert p.read_text() == "text"
        p.write_bytes(b"bytes")
        assert p.read_bytes() == b"bytes"
        assert p.exists()
        assert p.is_file()
        assert p.stat().st_size == 5
        assert sorted(c.name for c in (root / "sub").iterdir()) == ["deep", "x.txt"]
        assert sorted(str(c) for c in root.glob("*/x.txt")) == ["/app/sub/x.txt"]
        moved = p.rename(root / "y.txt")
        assert moved == root / "y.txt"
        assert not p.exists()
        (root / "z.txt").touch()
        (root / "y.txt").replace(root / "z.txt")
        assert (root / "z.txt").read_bytes() == b"bytes"
        (root / "z.txt").unlink()
        (root / "z.txt").unlink(missing_ok=True)
        (root / "sub" / "deep").rmdir()
        assert not (root / "z.txt").exists()
        assert (root / "sub").resolve() == root / "sub"
        with (root / "w").open("w") as f:
            f.write("w")
    assert disk.files() == {"/w": b"w"}
    assert disk.dirs() == ["/", "/a", "/a/b", "/sub"]


def test_tempfile_shutil_json(disk: SimulatedDisk, tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text('{"from": "real"}')
    with mount(disk, at="/app"):
        fd, name = tempfile.mkstemp(dir="/app", suffix=".tmp")
        assert name.startswith("/app/")
        assert fd >= FD_BASE
        with os.fdopen(fd, "w") as f:
            json.dump({"a": [1, 2]}, f)
        with open(name) as f:
            assert json.load(f) == {"a": [1, 2]}
        with tempfile.NamedTemporaryFile(dir="/app", delete=False) as named:
            named.write(b"named")
        assert open(named.name, "rb").read() == b"named"  # noqa: SIM115
        with tempfile.TemporaryFile(dir="/app") as anonymous:  # O_TMPFILE refused, falls back
            anonymous.write(b"anon")
            anonymous.seek(0)
            assert anonymous.read() == b"anon"
        shutil.copyfile(name, "/app/copy.json")
        shutil.copyfile(tmp_path / "real.json", "/app/from-real.json")  # across "devices"
        shutil.copyfile("/app/copy.json", tmp_path / "to-real.json")
        shutil.move("/app/copy.json", "/app/moved.json")
        with pytest.raises(shutil.SameFileError):
            shutil.copyfile("/app/moved.json", "/app/moved.json")
        (tmp_path / "during.txt").write_text("real")  # the real disk meanwhile
    files = disk.files()
    assert json.loads(files["/moved.json"]) == {"a": [1, 2]}
    assert files["/from-real.json"] == b'{"from": "real"}'
    assert files["/" + named.name.rsplit("/", 1)[1]] == b"named"
    assert json.loads((tmp_path / "to-real.json").read_text()) == {"a": [1, 2]}
    assert (tmp_path / "during.txt").read_text() == "real"
    assert sorted(os.listdir(tmp_path)) == ["during.txt", "real.json", "to-real.json"]


def test_real_paths_untouched(disk: SimulatedDisk, tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    with mount(disk, at=str(tmp_path / "sim")):
        real.write_text("real")
        with open(real, "a") as f:
            f.write("!")
        fd = os.open(real, os.O_RDONLY)
        assert fd < FD_BASE
        assert os.read(fd, 10) == b"real!"
        os.close(fd)
        (tmp_path / "sim" / "x").write_text("simulated")
        assert sorted(os.listdir(tmp_path)) == ["real.txt"]  # sim does not exist for real
        assert os.listdir(tmp_path / "sim") == ["x"]
    assert real.read_text() == "real!"
    assert disk.files() == {"/x": b"simulated"}


def test_unlinked_open_file_keeps_its_data(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        with open("/app/a", "w+b") as f:
            f.write(b"before")
            f.flush()
            os.unlink("/app/a")
            f.write(b"-after")
            f.flush()
            f.seek(0)
            assert f.read() == b"before-after"
            assert not os.path.exists("/app/a")
        assert disk.files() == {}
        # a descriptor follows its file through a rename
        fd = os.open("/app/b", os.O_RDWR | os.O_CREAT)
        os.rename("/app/b", "/app/c")
        os.write(fd, b"through the rename")
        os.fsync(fd)
        os.close(fd)
    assert disk.files() == {"/c": b"through the rename"}


def test_flock(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        a = os.open("/app/lock", os.O_RDWR | os.O_CREAT)
        b = os.open("/app/lock", os.O_RDWR)
        fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(b, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert disk.probe("/lock")
        fcntl.flock(a, fcntl.LOCK_UN)
        fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
        with open("/app/lock") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a file object, shared with b
        os.close(b)  # closing releases
        assert not disk.probe("/lock")
        fcntl.flock(a, fcntl.LOCK_EX)
        os.close(a)
        assert not disk.probe("/lock")


def test_unsupported_calls_name_themselves(disk: SimulatedDisk, tmp_path: Path) -> None:
    with mount(disk, at="/app"):
        open("/app/f", "w").close()
        fd = os.open("/app/f", os.O_RDWR)
        with pytest.raises(UnsupportedCallError, match=r"os\.link"):
            os.link("/app/f", "/app/g")
        with pytest.raises(UnsupportedCallError, match=r"os\.symlink"):
            os.symlink("/app/f", "/app/g")
        with pytest.raises(UnsupportedCallError, match=r"mmap\.mmap"):
            mmap.mmap(fd, 0)
        with pytest.raises(UnsupportedCallError, match=r"os\.dup"):
            os.dup(fd)
        with pytest.raises(UnsupportedCallError, match=r"os\.chown"):
            os.chown("/app/f", 0, 0)
        with pytest.raises(UnsupportedCallError, match=r"fcntl\.fcntl"):
            fcntl.fcntl(fd, fcntl.F_GETFL)
        with pytest.raises(UnsupportedCallError, match=r"os\.statvfs"):
            os.statvfs("/app")
        with pytest.raises(OSError) as tmpfile:
            os.open("/app", os.O_RDWR | os.O_TMPFILE)
        assert tmpfile.value.errno == errno.EOPNOTSUPP
        with pytest.raises(OSError) as readlink:
            os.readlink("/app/f")
        assert readlink.value.errno == errno.EINVAL
        with pytest.raises(OSError) as exdev:
            os.rename("/app/f", tmp_path / "f")
        assert exdev.value.errno == errno.EXDEV
        os.close(fd)
        # the same calls still work on real paths
        (tmp_path / "r").write_text("r")
        os.link(tmp_path / "r", tmp_path / "r2")
        real = os.open(tmp_path / "r", os.O_RDONLY)
        os.close(os.dup(real))
        with mmap.mmap(real, 0, prot=mmap.PROT_READ) as mapped:
            assert mapped[:1] == b"r"
            assert isinstance(mapped, mmap.mmap)
        os.close(real)
    assert disk.files() == {"/f": b""}


def test_restored_on_exit_and_on_error(disk: SimulatedDisk) -> None:
    originals = (builtins.open, io.open, io.FileIO, os.open, os.stat, os.fsync, os.replace,
                 fcntl.flock, mmap.mmap, os.link)
    with mount(disk, at="/app"):
        assert os.open is not originals[3]
        kept = open("/app/kept", "wb")  # noqa: SIM115
    restored = (builtins.open, io.open, io.FileIO, os.open, os.stat, os.fsync, os.replace,
                fcntl.flock, mmap.mmap, os.link)
    assert restored == originals
    assert not os.path.exists("/app/kept")
    with pytest.raises(OSError) as after:
        kept.write(b"x")
        kept.flush()
    assert after.value.errno == errno.EBADF
    with pytest.raises(OSError):
        kept.close()  # its flush fails as the write did; then it is closed
    assert kept.closed
    with pytest.raises(RuntimeError, match="boom"), mount(disk, at="/app"):
        raise RuntimeError("boom")
    assert (builtins.open, os.open, os.stat) == (originals[0], originals[3], originals[4])
    with pytest.raises(SimulatedCrash), mount(disk, at="/app"):
        disk.crash_after(0)
        open("/app/crashed", "w")  # noqa: SIM115
    assert os.replace is originals[6]


def test_nested_mounts_and_reentry_refused(tmp_path: Path) -> None:
    a, b = SimulatedDisk(), SimulatedDisk()
    with mount(a, at="/app") as outer, mount(b, at="/app/inner"):
        Path("/app/x").write_text("a")
        Path("/app/inner/x").write_text("b")
        with pytest.raises(OSError) as exdev:
            os.replace("/app/x", "/app/inner/y")
        assert exdev.value.errno == errno.EXDEV
        with pytest.raises(RuntimeError), outer:
            pass
        with pytest.raises(RuntimeError), mount(SimulatedDisk(), at="/app"):
            pass
    assert a.files() == {"/x": b"a"}
    assert b.files() == {"/x": b"b"}
    with pytest.raises(ValueError, match="'/'"):
        mount(a, at="/")
    with pytest.raises(ValueError, match="absolute"):
        mount(a, at="app")


def test_descriptors_never_collide(disk: SimulatedDisk, tmp_path: Path) -> None:
    with mount(disk, at="/app"):
        sim = [os.open(f"/app/{i}", os.O_RDWR | os.O_CREAT) for i in range(20)]
        real = [os.open(tmp_path / str(i), os.O_RDWR | os.O_CREAT) for i in range(20)]
        assert not set(sim) & set(real)
        assert min(sim) >= FD_BASE
        assert max(real) < FD_BASE
        for fd in real:
            os.write(fd, b"real")
        for fd in sim:
            os.write(fd, b"sim")
        for fd in sim + real:
            os.close(fd)
    assert all(data == b"sim" for data in disk.files().values())
    assert all((tmp_path / str(i)).read_bytes() == b"real" for i in range(20))


def test_two_threads_at_once(disk: SimulatedDisk, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(name: str, root: str) -> None:
        try:
            barrier.wait()
            for i in range(100):
                with open(f"{root}/{name}-{i}", "w") as f:
                    f.write(f"{name} {i}")
                os.replace(f"{root}/{name}-{i}", f"{root}/{name}")
                with open(f"{root}/{name}") as f:
                    assert f.read() == f"{name} {i}"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with mount(disk, at="/app"):
        threads = [threading.Thread(target=work, args=("a", "/app")),
                   threading.Thread(target=work, args=("b", str(tmp_path)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert disk.files() == {"/a": b"a 99"}
    assert (tmp_path / "b").read_text() == "b 99"


def test_a_simulated_process_can_be_mounted(disk: SimulatedDisk) -> None:
    p = disk.process("worker")
    with mount(p, at="/app"):
        fd = os.open("/app/lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        p.kill()
        assert not disk.probe("/lock")  # the kill released it
        with pytest.raises(SimulatedCrash):
            os.write(fd, b"x")


def test_pathlib_mkdir_over_a_file_and_errors_name_user_paths(disk: SimulatedDisk) -> None:
    with mount(disk, at="/app"):
        pathlib.Path("/app/f").write_text("f")
        with pytest.raises(FileExistsError):
            pathlib.Path("/app/f").mkdir()
        with pytest.raises(NotADirectoryError) as not_dir:
            os.stat("/app/f/x")
        assert not_dir.value.filename == "/app/f/x"
        with pytest.raises(FileNotFoundError) as missing:
            os.replace("/app/none", "/app/other")
        assert missing.value.filename == "/app/none"
