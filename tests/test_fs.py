"""OsFileSystem details that the differential test against SimulatedDisk cannot reach."""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

import pytest

from pqueue.io import fs as fsmod
from pqueue.io.fs import OsFileSystem


def failing_sync_file_range(code: int) -> object:
    def call(fd: int, offset: int, nbytes: int, flags: int) -> int:
        ctypes.set_errno(code)
        return -1

    return call


def test_write_back_of_a_written_file_changes_nothing_visible(tmp_path: Path) -> None:
    fs = OsFileSystem()
    path = str(tmp_path / "f")
    fs.write(path, b"abc", 0)
    fs.write_back(path)
    assert fs.read(path) == b"abc"
    fs.close()
    with pytest.raises(FileNotFoundError):
        fs.write_back(str(tmp_path / "missing"))


def test_a_failed_write_back_raises_an_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsmod, "_sync_file_range", failing_sync_file_range(errno.EIO))
    fs = OsFileSystem()
    path = str(tmp_path / "f")
    fs.write(path, b"abc", 0)
    with pytest.raises(OSError) as raised:
        fs.write_back(path)
    assert raised.value.errno == errno.EIO
    assert raised.value.filename == path
    fs.close()


def test_write_back_where_the_kernel_lacks_it_is_skipped_from_then_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fsmod, "_sync_file_range", failing_sync_file_range(errno.ENOSYS))
    fs = OsFileSystem()
    path = str(tmp_path / "f")
    fs.write(path, b"abc", 0)
    fs.write_back(path)  # a hint the kernel does not take: no error
    assert fsmod._sync_file_range is None
    fs.write_back(path)
    fs.close()
