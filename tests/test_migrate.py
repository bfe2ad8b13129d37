"""``pqueue.migrate``: pqueue 0.1.x and persist-queue directories into new pqueue queues.

The directories under ``tests/data/legacy/`` were written by the real pqueue 0.1.7 and
persist-queue 1.1.0 (``make_fixtures.py`` there), and each ``.expected.json`` says what that
package delivers when it reopens the directory: a migration must deliver exactly that. A
writer of the format in this file (checked against those directories byte for byte) makes
more of them for a Hypothesis property.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pqueue import CorruptQueueError, LegacyFormatError, PQueueError, Queue
from pqueue import migrate as migrate_module
from pqueue.migrate import (
    FORMATS,
    AlreadyPQueueError,
    DamagedSourceError,
    DestinationError,
    ItemLoadError,
    MigrationError,
    MigrationReport,
    UnknownFormatError,
    add_arguments,
    detect,
    migrate,
    run,
)

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"
FIXTURES = sorted(p.name[: -len(".expected.json")] for p in LEGACY.glob("*.expected.json"))
WHOLE = [name for name in FIXTURES if name != "pqueue01-torn"]

Snapshot = dict[str, tuple[bool, bytes, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every file and directory under ``root`` (itself included): bytes, mtime and mode."""
    out: Snapshot = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st_ = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
        out[str(path.relative_to(root))] = (path.is_dir(), data, st_.st_mtime_ns, st_.st_mode)
    return out


def expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((LEGACY / f"{name}.expected.json").read_text("utf-8"))
    return data


def copy_fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / "src" / name
    shutil.copytree(LEGACY / name, target)
    return target


def drain(path: str | Path) -> list[Any]:
    q: Queue[Any] = Queue(path)
    items = []
    while not q.empty():
        items.append(q.get())
        q.task_done()
    q.close()
    return items


@pytest.fixture(scope="module", autouse=True)
def committed_fixtures_untouched() -> Any:
    """No test may change the committed fixtures (they are copied before use)."""
    before = snapshot(LEGACY)
    yield
    assert snapshot(LEGACY) == before


# --- the real packages' directories ---------------------------------------------------------


def test_the_fixtures_are_there_and_small() -> None:
    assert len(WHOLE) >= 8
    size = sum(p.stat().st_size for p in LEGACY.rglob("*") if p.is_file() and p.suffix == "")
    assert size < 8 * 1024


@pytest.mark.parametrize("name", WHOLE)
def test_a_fixture_migrates_to_what_its_package_delivers_on_reopen(
    name: str, tmp_path: Path
) -> None:
    want = expected(name)
    assert want["error"] is None
    src = copy_fixture(name, tmp_path)
    before = snapshot(src)
    dst = tmp_path / "new"
    report = migrate(src, dst)
    assert snapshot(src) == before
    assert report == MigrationReport(
        format=want["format"], items=len(want["delivered"]), source=str(src),
        destination=str(dst),
    )
    assert detect(src) == want["format"] and want["format"] in FORMATS
    got = drain(dst)
    assert [repr(item) for item in got] == want["delivered"]
    assert got == [ast.literal_eval(text) for text in want["delivered"]]
    assert not os.path.exists(f"{dst}.partial")


def test_the_migrated_queue_is_an_ordinary_queue(tmp_path: Path) -> None:
    dst = tmp_path / "new"
    migrate(copy_fixture("pqueue01-partial", tmp_path), dst)
    info = json.loads((dst / "info").read_bytes())
    assert info["format"] == "pqueue" and info["serializer"] == "pickle"
    assert info["chunksize"] == expected("pqueue01-partial")["chunksize"]  # the source's
    with Queue[Any](dst) as q:
        first = q.get()
        q.task_done()
        q.put("after")
    rest = drain(dst)
    assert [first, *rest][-1] == "after"
    assert [repr(x) for x in [first, *rest][:-1]] == expected("pqueue01-partial")["delivered"]


def test_chunksize_and_flush_durability(tmp_path: Path) -> None:
    dst = tmp_path / "new"
    migrate(copy_fixture("pqueue01-partial", tmp_path), dst, chunksize=2, durability="flush")
    assert json.loads((dst / "info").read_bytes())["chunksize"] == 2
    assert [repr(x) for x in drain(dst)] == expected("pqueue01-partial")["delivered"]


def test_an_empty_directory_as_destination_is_replaced(tmp_path: Path) -> None:
    dst = tmp_path / "new"
    dst.mkdir()
    migrate(copy_fixture("persistqueue-json-partial", tmp_path), dst)
    assert [repr(x) for x in drain(dst)] == expected("persistqueue-json-partial")["delivered"]


def test_missing_parents_of_the_destination_are_made(tmp_path: Path) -> None:
    dst = tmp_path / "a" / "b" / "new"
    migrate(copy_fixture("pqueue01-unfinished", tmp_path), dst)
    assert len(drain(dst)) == len(expected("pqueue01-unfinished")["delivered"])


@pytest.mark.parametrize("fixture", ["pqueue01-partial", "persistqueue-json-partial"])
def test_pqueue_refuses_a_legacy_directory_and_names_the_command(
    tmp_path: Path, fixture: str
) -> None:
    src = copy_fixture(fixture, tmp_path)
    with pytest.raises(LegacyFormatError) as raised:
        Queue(src)
    message = str(raised.value)
    assert "python -m pqueue migrate SRC DST" in message
    assert raised.value.path == str(src / "info")


# --- damage ----------------------------------------------------------------------------------


def record_start(chunk: Path, index: int) -> int:
    """Where record ``index`` (0-based) of a pickle chunk starts."""
    with chunk.open("rb") as f:
        for _ in range(index):
            pickle.load(f)
        return f.tell()


def test_a_torn_last_record_is_an_error_naming_file_and_offset(tmp_path: Path) -> None:
    want = expected("pqueue01-torn")
    assert want["error"].startswith("UnpicklingError")  # what pqueue 0.1.7 raised
    src = copy_fixture("pqueue01-torn", tmp_path)
    before = snapshot(src)
    dst = tmp_path / "new"
    with pytest.raises(DamagedSourceError) as raised:
        migrate(src, dst)
    error = raised.value
    assert isinstance(error, CorruptQueueError) and isinstance(error, MigrationError)
    assert isinstance(error, PQueueError)
    assert error.path == str(src / "q00001")
    assert error.offset == record_start(src / "q00001", 1)
    assert f"{src / 'q00001'} at offset {error.offset}" in str(error)
    assert "torn" in str(error)
    assert snapshot(src) == before
    assert not dst.exists() and not Path(f"{dst}.partial").exists()


def test_skip_damaged_migrates_what_the_package_delivered_before_the_damage(
    tmp_path: Path,
) -> None:
    want = expected("pqueue01-torn")
    src = copy_fixture("pqueue01-torn", tmp_path)
    dst = tmp_path / "new"
    report = migrate(src, dst, skip_damaged=True)
    assert report.items == len(want["delivered"]) and report.skipped == 1
    (damage,) = report.damage
    assert damage.path == str(src / "q00001") and damage.items == 1
    assert damage.offset == record_start(src / "q00001", 1)
    assert "skipped 1 damaged" in report.summary()
    assert [repr(x) for x in drain(dst)] == want["delivered"]


def test_damage_in_a_middle_chunk_skips_the_rest_of_that_chunk_only(tmp_path: Path) -> None:
    want = expected("pqueue01-partial")["delivered"]  # 1 item in q00001, 3 in q00002, 3 in q00003
    src = copy_fixture("pqueue01-partial", tmp_path)
    chunk = src / "q00002"
    at = record_start(chunk, 1)
    os.truncate(chunk, at + 2)
    with pytest.raises(DamagedSourceError) as raised:
        migrate(src, tmp_path / "a")
    assert (raised.value.path, raised.value.offset) == (str(chunk), at)
    report = migrate(src, tmp_path / "b", skip_damaged=True)
    assert report.skipped == 2 and report.items == len(want) - 2
    assert [repr(x) for x in drain(tmp_path / "b")] == want[:2] + want[4:]


def test_a_missing_chunk_is_damage_at_offset_zero(tmp_path: Path) -> None:
    want = expected("pqueue01-partial")["delivered"]
    src = copy_fixture("pqueue01-partial", tmp_path)
    (src / "q00002").unlink()
    with pytest.raises(DamagedSourceError, match="missing") as raised:
        migrate(src, tmp_path / "a")
    assert (raised.value.path, raised.value.offset) == (str(src / "q00002"), 0)
    report = migrate(src, tmp_path / "b", skip_damaged=True)
    assert report.skipped == 3
    assert [repr(x) for x in drain(tmp_path / "b")] == want[:1] + want[4:]


def test_a_torn_json_line_is_damage(tmp_path: Path) -> None:
    src = copy_fixture("persistqueue-json-partial", tmp_path)
    info = json.loads((src / "info").read_bytes())
    hnum, _, hoffset = info["head"]
    chunk = src / f"q{hnum:05d}"
    os.truncate(chunk, hoffset - 1)  # the last line loses its newline
    start = chunk.read_bytes().rfind(b"\n") + 1
    with pytest.raises(DamagedSourceError) as raised:
        migrate(src, tmp_path / "new")
    assert (raised.value.path, raised.value.offset) == (str(chunk), start)


def test_a_garbled_record_is_damage(tmp_path: Path) -> None:
    src = copy_fixture("pqueue01-unfinished", tmp_path)
    chunk = src / "q00001"
    at = record_start(chunk, 1)
    data = bytearray(chunk.read_bytes())
    data[at] = 0xFF  # not a pickle opcode
    chunk.write_bytes(bytes(data))
    with pytest.raises(DamagedSourceError) as raised:
        migrate(src, tmp_path / "new")
    assert (raised.value.path, raised.value.offset) == (str(chunk), at)


def test_an_empty_or_garbled_info_is_damage(tmp_path: Path) -> None:
    src = copy_fixture("pqueue01-partial", tmp_path)
    (src / "info").write_bytes(b"")
    with pytest.raises(DamagedSourceError, match="empty") as raised:
        detect(src)
    assert (raised.value.path, raised.value.offset) == (str(src / "info"), 0)
    (src / "info").write_bytes(pickle.dumps({"chunksize": 3}, protocol=4)[:-4])
    with pytest.raises(DamagedSourceError, match="not a readable pickle"):
        migrate(src, tmp_path / "new")
    info = {"chunksize": 3, "size": 9, "tail": [1, 2, 74], "head": [4, 0, 0]}
    (src / "info").write_bytes(pickle.dumps(info, protocol=4))
    with pytest.raises(DamagedSourceError, match="hold 7"):
        migrate(src, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_an_info_file_is_read_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
            return (os.mkdir, (str(marker),))

    src = tmp_path / "src"
    src.mkdir()
    (src / "info").write_bytes(pickle.dumps({"chunksize": Evil()}, protocol=2))
    with pytest.raises(DamagedSourceError, match=r"(posix|nt|os)\.mkdir"):
        detect(src)
    assert not marker.exists()


def test_an_item_that_cannot_be_unpickled_here_is_never_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    record = b"cno_such_module_for_migrate\nThing\n)\x81."  # an object of a missing class
    write_raw(src, [pickle.dumps("a", protocol=4), record, pickle.dumps("b", protocol=4)], 3)
    for skip in (False, True):
        with pytest.raises(ItemLoadError, match="no_such_module_for_migrate") as raised:
            migrate(src, tmp_path / "new", skip_damaged=skip)
        assert raised.value.path == str(src / "q00000")
        assert raised.value.offset == len(pickle.dumps("a", protocol=4))
        assert isinstance(raised.value.__cause__, ImportError)
        assert not (tmp_path / "new").exists()


# --- what the source and destination may be ----------------------------------------------------


def test_a_destination_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    src = copy_fixture("pqueue01-partial", tmp_path)
    before = snapshot(src)
    dst = tmp_path / "new"
    dst.mkdir()
    (dst / "something").write_text("x")
    with pytest.raises(DestinationError, match="not empty") as raised:
        migrate(src, dst)
    assert raised.value.path == str(dst)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DestinationError, match="not a directory"):
        migrate(src, tmp_path / "file")
    assert snapshot(src) == before
    assert sorted(os.listdir(dst)) == ["something"]


def test_a_destination_inside_the_source_or_the_source_itself_is_refused(
    tmp_path: Path,
) -> None:
    src = copy_fixture("pqueue01-partial", tmp_path)
    before = snapshot(src)
    for dst in (src / "new", src, src.parent):
        with pytest.raises(DestinationError, match="overlaps"):
            migrate(src, dst)
    assert snapshot(src) == before


def test_a_partial_queue_left_by_an_interrupted_run_is_reported(tmp_path: Path) -> None:
    src = copy_fixture("pqueue01-partial", tmp_path)
    dst = tmp_path / "new"
    left = Path(f"{dst}.partial")
    left.mkdir()
    (left / "info").write_text("half")
    with pytest.raises(DestinationError, match="interrupted") as raised:
        migrate(src, dst)
    assert raised.value.path == str(left) and f"rm -r {left}" in str(raised.value)
    assert (left / "info").read_text() == "half" and not dst.exists()
    shutil.rmtree(left)
    assert migrate(src, dst).items == len(expected("pqueue01-partial")["delivered"])


def test_an_interruption_leaves_neither_destination_nor_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = copy_fixture("pqueue01-partial", tmp_path)
    dst = tmp_path / "new"

    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(migrate_module, "_PROGRESS_INTERVAL", 0.0)
    with pytest.raises(KeyboardInterrupt):
        migrate(src, dst, progress=interrupt)
    assert not dst.exists() and not Path(f"{dst}.partial").exists()
    assert migrate(src, dst).items == len(expected("pqueue01-partial")["delivered"])


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda p: p.mkdir(), "an empty directory"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "notes.txt"),
        (lambda p: p.write_text("x"), "not a directory"),
        (lambda p: None, "no such file"),
        (lambda p: (p.mkdir(), (p / "info").write_bytes(b"hello")), "neither a pickle nor"),
        (lambda p: (p.mkdir(), (p / "info").write_bytes(b"\x05\x00\x00\x00\x85abcd")),
         "msgpack or cbor2"),
        (lambda p: (p.mkdir(), (p / "info").write_bytes(b'{"a": 1}')), "not chunksize"),
        (lambda p: (p.mkdir(), (p / "data.db").write_bytes(b"SQLite format 3\x00")),
         "SQLite queue"),
    ],
    ids=["empty", "other files", "a file", "missing", "garbage info", "msgpack", "other json",
         "sqlite"],
)
def test_an_unknown_source_is_a_typed_error_naming_path_and_what_is_there(
    tmp_path: Path, make: Callable[[Path], object], found: str
) -> None:
    src = tmp_path / "src"
    make(src)
    with pytest.raises(UnknownFormatError, match=found) as raised:
        detect(src)
    assert raised.value.path == str(src) and found in raised.value.found
    with pytest.raises(UnknownFormatError):
        migrate(src, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_a_pqueue_queue_is_already_migrated(tmp_path: Path) -> None:
    src = tmp_path / "q"
    with Queue[int](src) as q:
        q.put(1)
    before = snapshot(src)
    with pytest.raises(AlreadyPQueueError, match="already a pqueue queue") as raised:
        detect(src)
    assert raised.value.path == str(src)
    with pytest.raises(AlreadyPQueueError):
        migrate(src, tmp_path / "new")
    assert snapshot(src) == before
    assert not (tmp_path / "new").exists()


# --- progress ----------------------------------------------------------------------------------


def test_progress_counts_up_to_the_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate_module, "_PROGRESS_INTERVAL", 0.0)
    calls: list[tuple[int, int]] = []
    total = len(expected("pqueue01-partial")["delivered"])
    migrate(copy_fixture("pqueue01-partial", tmp_path), tmp_path / "new",
            progress=lambda done, n: calls.append((done, n)))
    assert calls == [(done, total) for done in range(total + 1)]


def test_progress_with_the_default_interval_starts_at_zero_and_ends_at_total(
    tmp_path: Path,
) -> None:
    calls: list[tuple[int, int]] = []
    migrate(copy_fixture("pqueue01-torn", tmp_path), tmp_path / "new", skip_damaged=True,
            progress=lambda done, n: calls.append((done, n)))
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})
    empty: list[tuple[int, int]] = []
    migrate(copy_fixture("pqueue01-empty", tmp_path), tmp_path / "new2",
            progress=lambda done, n: empty.append((done, n)))
    assert empty == [(0, 0)]


# --- the command line --------------------------------------------------------------------------


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pqueue migrate")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def test_run_prints_one_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = copy_fixture("pqueue01-partial", tmp_path)
    dst = tmp_path / "new"
    assert cli([str(src), str(dst)]) == 0
    out, err = capsys.readouterr()
    n = len(expected("pqueue01-partial")["delivered"])
    assert out == f"migrated {n} items from {src} (pqueue-0.1) to {dst}\n"
    assert err == ""  # stderr is no terminal here and --progress was not given


def test_run_draws_a_progress_bar_on_stderr_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = copy_fixture("persistqueue-partial", tmp_path)
    assert cli([str(src), str(tmp_path / "new"), "--progress", "--chunksize", "5"]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("migrated 7 items")
    assert "7/7 items (100%)" in err and err.endswith("\n")


def test_run_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torn = copy_fixture("pqueue01-torn", tmp_path)
    assert cli([str(torn), str(tmp_path / "a")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"the source is damaged: {torn / 'q00001'} at offset" in err
    assert cli([str(torn), str(tmp_path / "a"), "--skip-damaged"]) == 0
    out, err = capsys.readouterr()
    assert "skipped 1 damaged" in out and "skipped 1 item(s)" in err
    assert cli([str(torn), str(tmp_path / "a")]) == 2  # now a queue: not empty
    out, err = capsys.readouterr()
    assert out == "" and "not empty" in err
    assert cli([str(tmp_path / "a"), str(tmp_path / "b")]) == 2  # already a pqueue queue
    assert cli([str(tmp_path / "missing"), str(tmp_path / "b")]) == 2  # not a queue
    assert "no such file" in capsys.readouterr().err
    unreadable = copy_fixture("pqueue01-unfinished", tmp_path)
    (unreadable / "q00001").write_bytes(b"cno_such_module_for_migrate\nThing\n)\x81.")
    assert cli([str(unreadable), str(tmp_path / "b")]) == 1
    assert "no_such_module_for_migrate" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        cli([str(torn), str(tmp_path / "c"), "--chunksize", "0"])
    assert raised.value.code == 2


def test_main_parses_its_own_arguments(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = copy_fixture("pqueue01-drained", tmp_path)
    assert migrate_module.main([str(src), str(tmp_path / "new")]) == 0
    assert capsys.readouterr().out.startswith("migrated 0 items")


# --- a writer of the old format, checked against the real packages' files -----------------------


def dump_pickle(item: object) -> bytes:
    return pickle.dumps(item, protocol=4)


def dump_json(item: object) -> bytes:
    return json.dumps(item).encode() + b"\n"


def write_raw(path: Path, records: list[bytes], chunksize: int, consumed: int = 0,
              garbage: bytes = b"", info_dump: Callable[[object], bytes] = dump_pickle) -> None:
    """A legacy queue directory as the old packages leave it: ``records`` put, the first
    ``consumed`` of them consumed (the chunks before the tail's deleted), ``garbage`` after
    the recorded head (a put whose info was never written)."""
    path.mkdir(parents=True, exist_ok=True)
    chunks: dict[int, bytearray] = {0: bytearray()}
    starts = []
    for index, record in enumerate(records):
        chunk = chunks.setdefault(index // chunksize, bytearray())
        starts.append(len(chunk))
        chunk.extend(record)
        chunks.setdefault((index + 1) // chunksize, bytearray())  # a full chunk opens the next
    n = len(records)

    def position(k: int) -> list[int]:
        if k == n:
            return [n // chunksize, n % chunksize, len(chunks[n // chunksize])]
        return [k // chunksize, k % chunksize, starts[k]]

    tail, head = position(consumed), position(n)
    chunks[head[0]].extend(garbage)
    for number, data in chunks.items():
        if number >= tail[0]:
            (path / f"q{number:05d}").write_bytes(bytes(data))
    if records:
        info = {"chunksize": chunksize, "size": n - consumed, "tail": tail, "head": head}
        (path / "info").write_bytes(info_dump(info))


def write_legacy(path: Path, items: list[Any], chunksize: int, consumed: int,
                 json_format: bool = False, garbage: bytes = b"") -> None:
    dump = dump_json if json_format else dump_pickle
    write_raw(path, [dump(item) for item in items], chunksize, consumed, garbage,
              dump_json if json_format else dump_pickle)


def load_make_fixtures() -> Any:
    """``make_fixtures.py`` as a module (it imports the old packages only when run)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", LEGACY / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_writer_makes_the_real_packages_files(tmp_path: Path) -> None:
    made = load_make_fixtures()
    cs, pickled, json_items = made.CHUNKSIZE, made.PICKLED_ITEMS, made.JSON_ITEMS
    cases = [  # fixture, items put, consumed, JSON
        ("pqueue01-partial", pickled, 5, False),
        ("persistqueue-partial", pickled, 5, False),
        ("pqueue01-unfinished", pickled[:7], 0, False),
        ("pqueue01-drained", pickled[:5], 5, False),
        ("persistqueue-autosave", pickled[:7], 2, False),
        ("persistqueue-json-partial", json_items, 5, True),
        ("persistqueue-json-drained", json_items[:5], 5, True),
        ("pqueue01-empty", [], 0, False),
    ]
    for name, items, consumed, json_format in cases:
        mine = tmp_path / name
        write_legacy(mine, items, cs, consumed, json_format)
        real = LEGACY / name
        assert {p.name: p.read_bytes() for p in mine.iterdir()} == {
            p.name: p.read_bytes() for p in real.iterdir()
        }, name


json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=5,
)
pickled_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)


@st.composite
def legacy_queues(draw: st.DrawFn) -> tuple[bool, list[Any], int, int, bytes]:
    json_format = draw(st.booleans())
    items = draw(st.lists(json_values if json_format else pickled_values, max_size=12))
    chunksize = draw(st.integers(1, 4))
    consumed = draw(st.integers(0, len(items)))
    garbage = b""
    cut_short: bool = draw(st.booleans())
    if items and cut_short:  # a put cut short before its info was written
        record = dump_json("x") if json_format else dump_pickle(draw(pickled_values))
        garbage = record[: draw(st.integers(1, len(record)))]
    return json_format, items, chunksize, consumed, garbage


@given(legacy_queues())
def test_any_legacy_queue_migrates_to_its_unconsumed_items(
    queue: tuple[bool, list[Any], int, int, bytes],
) -> None:
    json_format, items, chunksize, consumed, garbage = queue
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        write_legacy(src, items, chunksize, consumed, json_format, garbage)
        before = snapshot(src)
        calls: list[int] = []
        mp.setattr(migrate_module, "_PROGRESS_INTERVAL", 0.0)
        report = migrate(src, base / "new", progress=lambda done, n: calls.append(done))
        assert snapshot(src) == before
        # with nothing ever put there is no info to tell the serializer by
        assert report.format == ("persist-queue" if json_format and items else "pqueue-0.1")
        assert report.items == len(items) - consumed
        assert calls == list(range(len(items) - consumed + 1))
        assert drain(base / "new") == items[consumed:]
