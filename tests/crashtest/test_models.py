"""Properties of crash states, checked against an independent oracle on random histories.

The oracle replays the same operations and keeps, per file (inode) and per directory, every
content or entry table since the last fsync. A crash state under ``POWER_LOSS`` must then be
explainable: each directory holds one of its recorded entry tables, and each file holds one
of its recorded contents or a torn version of the write that followed it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import attrs
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from pqueue.crashtest import (
    POWER_LOSS,
    PROCESS_CRASH,
    PersistenceModel,
    SimulatedDisk,
    crash_state,
)

SECTOR = 512
LIMIT = 3000  # crash states enumerated per example at most
DIRS = ("/", "/d")
FILES = ("/a", "/b", "/d/a", "/d/c")

Op = tuple[object, ...]


def examples(n: int) -> settings:
    """At least ``n`` examples; more under a longer profile (HYPOTHESIS_PROFILE=long)."""
    assert settings.default is not None
    return settings(max_examples=max(n, settings.default.max_examples), deadline=None)


ops = st.one_of(
    st.tuples(
        st.just("write"),
        st.sampled_from(FILES),
        st.one_of(st.binary(min_size=1, max_size=90), st.binary(min_size=500, max_size=1100)),
        st.one_of(st.none(), st.integers(0, 1100)),
    ),
    st.tuples(st.just("create"), st.sampled_from(FILES)),
    st.tuples(st.just("truncate"), st.sampled_from(FILES), st.integers(0, 1200)),
    st.tuples(st.just("fsync"), st.sampled_from(FILES)),
    st.tuples(st.just("fsync_dir"), st.sampled_from(DIRS)),
    st.tuples(st.just("replace"), st.sampled_from(FILES), st.sampled_from(FILES)),
    st.tuples(st.just("unlink"), st.sampled_from(FILES)),
)
histories = st.lists(ops, max_size=8)


@attrs.define
class Inode:
    """Contents since the last fsync (the first is durable) and the ops between them."""

    contents: list[bytes]
    ops: list[Op]


@attrs.define
class Oracle:
    """What each directory and inode went through since it was last synced."""

    tables: dict[str, list[dict[str, int]]]
    inodes: dict[int, Inode]

    def entries(self, d: str) -> dict[str, int]:
        return self.tables[d][-1]

    def link(self, d: str, table: dict[str, int]) -> None:
        self.tables[d].append(table)

    def content(self, ino: int) -> bytes:
        return self.inodes[ino].contents[-1]

    def change(self, ino: int, op: Op, new: bytes) -> None:
        self.inodes[ino].contents.append(new)
        self.inodes[ino].ops.append(op)

    def apply(self, op: Op) -> None:
        """Replay ``op``, which succeeded on the disk."""
        name, path = op[0], str(op[1])
        d, _, base = path.rpartition("/")
        d = d or "/"
        table = self.entries(d)
        if name in ("write", "create") and base not in table:
            ino = len(self.inodes) + 1
            self.inodes[ino] = Inode([b""], [])
            self.link(d, {**table, base: ino})
            if name == "create":
                return
        elif name == "create":
            self.change(table[base], ("truncate", path, 0), b"")
            return
        if name == "write":
            data, offset = op[2], op[3]
            assert isinstance(data, bytes)
            ino = self.entries(d)[base]
            old = self.content(ino)
            at = len(old) if offset is None else offset
            assert isinstance(at, int)
            new = old.ljust(at, b"\0")[:at] + data + old[at + len(data) :]
            self.change(ino, ("write", path, data, at), new)
        elif name == "truncate":
            size = op[2]
            assert isinstance(size, int)
            old = self.content(table[base])
            self.change(table[base], op, old[:size].ljust(size, b"\0"))
        elif name == "fsync":
            inode = self.inodes[table[base]]
            inode.contents, inode.ops = [inode.contents[-1]], []
        elif name == "fsync_dir":
            self.tables[path] = [self.entries(path)]
        elif name == "replace":
            dst = str(op[2])
            dd, _, dbase = dst.rpartition("/")
            dd = dd or "/"
            ino = table[base]
            if self.entries(dd).get(dbase) == ino:
                return
            if dd == d:
                moved = {k: v for k, v in table.items() if k != base}
                self.link(d, {**moved, dbase: ino})
            else:
                self.link(dd, {**self.entries(dd), dbase: ino})
                self.link(d, {k: v for k, v in table.items() if k != base})
        elif name == "unlink":
            self.link(d, {k: v for k, v in table.items() if k != base})

    def allowed(self, ino: int, content: bytes) -> bool:
        inode = self.inodes[ino]
        if content in inode.contents:
            return True
        for before, op in zip(inode.contents, inode.ops, strict=False):
            if op[0] == "write":
                data, offset = op[2], op[3]
                assert isinstance(data, bytes)
                assert isinstance(offset, int)
                if is_torn(content, before, offset, data):
                    return True
        return False

    def explains(self, files: dict[str, bytes], dirs: list[str]) -> bool:
        """Whether some choice of a recorded table per directory gives ``files``/``dirs``."""
        assert dirs == ["/", "/d"]  # /d is synced before the history starts
        for d in DIRS:
            prefix = "" if d == "/" else d
            names = {
                p.rpartition("/")[2]: c for p, c in files.items() if p.rpartition("/")[0] == prefix
            }
            if not any(
                set(table) == names.keys()
                and all(self.allowed(table[n], c) for n, c in names.items())
                for table in self.tables[d]
            ):
                return False
        return True


def is_torn(content: bytes, before: bytes, offset: int, data: bytes) -> bool:
    """Whether ``content`` is ``data`` written at ``offset`` over ``before``, torn (rules 2, 3)."""
    end = offset + len(data)
    if end > len(before) and content == before + bytes(end - len(before)):
        return True
    padded = before.ljust(offset, b"\0")
    written = content[offset:end]
    same = next(
        (i for i, (x, y) in enumerate(zip(written, data, strict=False)) if x != y), len(written)
    )
    for cut in range(min(same, len(data) - 1), 0, -1):
        at = offset + cut
        fill_end = at if at % SECTOR == 0 else min(end, (at // SECTOR + 1) * SECTOR)
        fill = content[at:fill_end]
        if (
            len(content) == max(len(before), fill_end)
            and content[:offset] == padded[:offset]
            and content[offset:at] == data[:cut]
            and (fill == bytes(len(fill)) or 0 not in fill)
            and content[fill_end:] == before[fill_end:]
        ):
            return True
    return False


def run(history: list[Op]) -> tuple[SimulatedDisk, Oracle]:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.fsync_dir("/")
    oracle = Oracle({"/": [{}], "/d": [{}]}, {})
    for op in history:
        name, *args = op
        try:
            getattr(disk, str(name))(*args)
        except OSError:
            continue
        oracle.apply(op)
    return disk, oracle


def key(disk: SimulatedDisk) -> tuple[list[str], dict[str, bytes]]:
    return disk.dirs(), disk.files()


def states(disk: SimulatedDisk, model: PersistenceModel) -> Iterator[SimulatedDisk]:
    return itertools.islice(disk.crash_states(model), LIMIT)


@examples(150)
@given(histories)
def test_power_loss_states_are_explained_by_the_history(history: list[Op]) -> None:
    disk, oracle = run(history)
    for state in states(disk, POWER_LOSS):
        assert oracle.explains(state.files(), state.dirs()), state


@examples(150)
@given(histories)
def test_process_crash_keeps_exactly_the_visible_state(history: list[Op]) -> None:
    disk, _ = run(history)
    found = [key(state) for state in disk.crash_states(PROCESS_CRASH)]
    assert found == [key(disk)]


@examples(100)
@given(histories)
def test_crash_states_are_distinct_and_start_with_the_visible_state(history: list[Op]) -> None:
    disk, _ = run(history)
    found = [repr(key(state)) for state in states(disk, POWER_LOSS)]
    assert len(found) == len(set(found))
    assert found[0] == repr(key(disk))
    if len(found) < LIMIT:
        assert disk.count_crash_states(POWER_LOSS) == len(found)


@examples(100)
@given(histories)
def test_weaker_models_allow_fewer_states(history: list[Op]) -> None:
    disk, _ = run(history)
    weaker = attrs.evolve(POWER_LOSS, torn_writes=False, zero_extend=False)
    stronger = attrs.evolve(POWER_LOSS, reorder_dir_ops=True)
    journaled = attrs.evolve(POWER_LOSS, journaled_dirs=True)
    paged = attrs.evolve(POWER_LOSS, page_size=SECTOR)
    subsets = attrs.evolve(POWER_LOSS, torn_sectors="any")
    for chain in (
        [PROCESS_CRASH, weaker, POWER_LOSS, stronger],
        [PROCESS_CRASH, journaled, POWER_LOSS],
        [weaker, POWER_LOSS, paged],
        [POWER_LOSS, subsets],
    ):
        sets = [{repr(key(s)) for s in states(disk, model)} for model in chain]
        if all(len(found) < LIMIT for found in sets):
            assert all(a <= b for a, b in itertools.pairwise(sets)), chain


@examples(100)
@given(histories)
def test_syncing_everything_leaves_one_state(history: list[Op]) -> None:
    disk, _ = run(history)
    for path in [*disk.files(), *reversed(disk.dirs())]:
        disk.fsync(path)
    [state] = disk.crash_states(POWER_LOSS)
    assert key(state) == key(disk)


@examples(100)
@given(histories, st.data())
def test_crash_state_draws_members_of_crash_states(history: list[Op], data: st.DataObject) -> None:
    disk, _ = run(history)
    model = data.draw(st.sampled_from(MODELS))
    members = {repr(key(s)) for s in states(disk, model)}
    if len(members) == LIMIT:
        return  # too many to enumerate here; the strategy exists for such disks
    for _ in range(3):
        drawn = data.draw(crash_state(disk, model))
        assert repr(key(drawn)) in members
        assert drawn.count_crash_states(POWER_LOSS) == 1


def test_crash_state_shrinks_to_the_visible_state() -> None:
    disk, _ = run([("write", "/a", b"x" * 80, None), ("write", "/d/c", b"y" * 600, None)])
    simplest = find(crash_state(disk, POWER_LOSS), lambda state: True)
    assert key(simplest) == key(disk)
    lost = find(crash_state(disk, POWER_LOSS), lambda s: s.files().get("/d/c") != b"y" * 600)
    # The least damage that changes /d/c: every entry survives, and its write is torn.
    assert lost.files()["/a"] == b"x" * 80
    assert lost.files()["/d/c"][:1] == b"y"
    assert len(lost.files()["/d/c"]) in (512, 600)


MODELS = [
    POWER_LOSS,
    PROCESS_CRASH,
    attrs.evolve(POWER_LOSS, reorder_dir_ops=True),
    attrs.evolve(POWER_LOSS, torn_writes=False, zero_extend=False),
    attrs.evolve(POWER_LOSS, torn_fill=("zeros",), sector_size=64),
    attrs.evolve(POWER_LOSS, journaled_dirs=True),
    attrs.evolve(POWER_LOSS, page_size=SECTOR),
    attrs.evolve(POWER_LOSS, torn_sectors="any", sector_size=256),
]


@examples(100)
@given(histories, st.sampled_from(MODELS))
def test_the_estimate_bounds_the_count(history: list[Op], model: PersistenceModel) -> None:
    disk, _ = run(history)
    estimate = disk.estimate_crash_states(model)
    assert estimate >= 1
    if estimate <= LIMIT:
        assert disk.count_crash_states(model) <= estimate
    else:
        assert disk.count_crash_states(model, limit=estimate) <= estimate
    if not model.lose_unsynced:
        assert estimate == 1


@examples(50)
@given(histories, st.integers(1, 40))
def test_a_limit_refuses_more_states_and_changes_nothing_else(
    history: list[Op], limit: int
) -> None:
    disk, _ = run(history)
    count = len(list(itertools.islice(disk.crash_states(), limit + 1)))
    if count <= limit:
        assert disk.count_crash_states(limit=limit) == count
        assert [s.files() for s in disk.crash_states(limit=limit)] == [
            s.files() for s in disk.crash_states()
        ]
    else:
        with pytest.raises(ValueError, match=f"more than {limit} crash states"):
            disk.count_crash_states(limit=limit)
        with pytest.raises(ValueError, match=f"more than {limit} crash states"):
            disk.crash_states(limit=limit)


@examples(50)
@given(histories, st.sampled_from(MODELS))
def test_every_crash_state_says_what_it_kept_of_each_pending_file(
    history: list[Op], model: PersistenceModel
) -> None:
    disk, _ = run(history)
    for state in itertools.islice(disk.crash_states(model), 200):
        text = repr(state)
        assert "crash state of #" in text
        assert re.search(r": \d+ pending[;>]", text) is None, text  # every content explained


def test_journaled_directories_keep_a_rename_across_directories_whole() -> None:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.write("/a", b"x")
    disk.fsync("/a")
    disk.fsync_dir("/")
    disk.fsync_dir("/d")
    disk.replace("/a", "/d/a")
    disk.create("/b")  # a later entry operation in another directory
    journaled = attrs.evolve(POWER_LOSS, journaled_dirs=True)
    found = [state.files() for state in disk.crash_states(journaled)]
    assert found == [{"/b": b"", "/d/a": b"x"}, {"/d/a": b"x"}, {"/a": b"x"}]
    assert disk.count_crash_states(journaled) == disk.estimate_crash_states(journaled)
    # Per directory (POWER_LOSS), the rename can be half kept: the file under both names,
    # or under none, even with the later /b kept.
    apart = [state.files() for state in disk.crash_states(POWER_LOSS)]
    assert {"/a": b"x", "/d/a": b"x"} in apart and {"/b": b""} in apart
    assert "/: kept 1 of 2, lost create 'b'; /d: kept all 1" in repr(
        next(s for s in disk.crash_states(journaled) if s.files() == {"/d/a": b"x"})
    )
    with pytest.raises(ValueError, match="contradict"):
        attrs.evolve(POWER_LOSS, journaled_dirs=True, reorder_dir_ops=True)


def test_pages_are_written_back_in_any_order() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fsync("/f")
    disk.fsync_dir("/")
    disk.write("/f", b"a" * 4096)
    disk.write("/f", b"b" * 4096)
    paged = attrs.evolve(POWER_LOSS, page_size=4096)
    second_only = bytes(4096) + b"b" * 4096  # the second page reached the disk, not the first
    assert second_only not in {s.files()["/f"] for s in disk.crash_states(POWER_LOSS)}
    found = {s.files()["/f"]: s for s in disk.crash_states(paged)}
    assert second_only in found
    assert repr(found[second_only]).endswith(
        "/f: written back page by page (4096 bytes): the size as of 2 of 2, page 0 as of 0 "
        "of 2>"
    )
    assert disk.count_crash_states(paged) <= disk.estimate_crash_states(paged)
    with pytest.raises(ValueError, match="page_size must be"):
        attrs.evolve(POWER_LOSS, page_size=1000)


def test_a_torn_write_may_keep_any_subset_of_its_sectors() -> None:
    disk = SimulatedDisk()
    disk.write("/f", b"")
    disk.fsync("/f")
    disk.fsync_dir("/")
    disk.write("/f", b"abc" * 512)  # three sectors
    subsets = attrs.evolve(POWER_LOSS, torn_sectors="any")
    middle_only = bytes(512) + (b"abc" * 512)[512:1024]  # the last sector not even sized
    contents = {s.files()["/f"]: s for s in disk.crash_states(subsets)}
    assert middle_only in contents
    assert middle_only not in {s.files()["/f"] for s in disk.crash_states(POWER_LOSS)}
    assert "torn, only sector 2 of 3 written" in repr(contents[middle_only])
    # The first and the last sector, without the middle one: the file keeps its full size.
    ends = (b"abc" * 512)[:512] + bytes(512) + (b"abc" * 512)[1024:]
    assert ends in contents
    assert disk.count_crash_states(subsets) <= disk.estimate_crash_states(subsets)
    with pytest.raises(ValueError, match="torn_sectors"):
        attrs.evolve(POWER_LOSS, torn_sectors="some")  # type: ignore[arg-type]
