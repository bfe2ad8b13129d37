"""Crash states: what a crash of a ``SimulatedDisk`` can leave, enumerated, drawn, explained.

``_enumerate`` yields every distinct state a ``PersistenceModel`` allows (directory entries
chosen per directory, then file contents per inode), ``_estimate`` bounds their number
without building them, ``_draw_crash_state`` builds one from a stream of choices (for the
Hypothesis strategy), and ``_describe`` says what a state kept and lost of the pending
operations of the disk it came from.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from pqueue.crashtest import disk as _disk
from pqueue.crashtest.inodes import (
    _apply_data,
    _apply_entry,
    _DataOp,
    _Dir,
    _EntryOp,
    _File,
    _Link,
    _Node,
    _Truncate,
    _Unlink,
    _Write,
)
from pqueue.crashtest.models import (
    PersistenceModel,
    _model_name,
    _torn_count,
    _torn_labels,
    _torn_outcomes,
)

if TYPE_CHECKING:
    from pqueue.crashtest.disk import SimulatedDisk

_StateKey = tuple[tuple[str, ...], tuple[str, ...], tuple[bytes, ...]]


def _dedupe_entries(options: Iterable[dict[str, _Node]]) -> list[dict[str, _Node]]:
    seen: set[frozenset[tuple[str, int]]] = set()
    kept: list[dict[str, _Node]] = []
    for entries in options:
        key = frozenset((name, node.ino) for name, node in entries.items())
        if key not in seen:
            seen.add(key)
            kept.append(entries)
    return kept


def _dir_options(d: _Dir, model: PersistenceModel) -> list[dict[str, _Node]]:
    """The entries ``d`` may have after a crash, the visible ones first."""
    if not model.lose_unsynced or not d.pending:
        return [d.entries]
    ops = d.pending
    if model.reorder_dir_ops:
        subsets: list[dict[str, _Node]] = []
        for lost in range(1 << len(ops)):
            entries = dict(d.durable)
            for i, op in enumerate(ops):
                if not lost >> i & 1:
                    _apply_entry(entries, op)
            subsets.append(entries)
        return _dedupe_entries(subsets)
    prefixes = [dict(d.durable)]
    for op in ops:
        entries = dict(prefixes[-1])
        _apply_entry(entries, op)
        prefixes.append(entries)
    return _dedupe_entries(reversed(prefixes))


def _file_options(f: _File, model: PersistenceModel) -> list[bytes]:
    """The contents ``f`` may have after a crash, from nothing lost to everything lost.

    What is visible survives a process crash. A power loss keeps the durable content and
    some of the pending operations: never the writes a failed fsync dropped (see
    ``SimulatedDisk.fail``), which are visible but no longer pending. A volatile file keeps
    all of them or is left empty.
    """
    if not model.lose_unsynced:
        return [bytes(f.data)]
    if not f.pending:
        return [f.durable]
    if f.volatile:
        return list(dict.fromkeys([_all_kept(f), b""]))
    prefixes = [f.durable]
    torn: list[list[bytes]] = []
    buf = bytearray(f.durable)
    for op in f.pending:
        base = prefixes[-1]
        if isinstance(op, _Write):
            torn.append(_torn_outcomes(model, f.ino, base, op.offset, op.data))
        else:
            torn.append([])
        _apply_data(buf, op)
        prefixes.append(bytes(buf))
    ordered = [prefixes[-1]]
    for k in range(len(f.pending) - 1, -1, -1):
        ordered.extend(torn[k])
        ordered.append(prefixes[k])
    if model.page_size is not None:
        ordered.extend(_paged(prefixes, model.page_size))
    return list(dict.fromkeys(ordered))


def _page_versions(prefixes: list[bytes], page: int) -> tuple[list[int], list[list[bytes]]]:
    """Under ``page_size``: the sizes the file may have (of each prefix of its pending
    operations, the last first) and, for each page, the contents it may hold (its content
    after each prefix, the last first, without repeats)."""
    sizes = list(dict.fromkeys(len(p) for p in reversed(prefixes)))
    pages = -(-max(sizes) // page)
    versions = [
        list(dict.fromkeys(p[i * page : (i + 1) * page].ljust(page, b"\0")
                           for p in reversed(prefixes)))
        for i in range(pages)
    ]
    return sizes, versions


def _paged(prefixes: list[bytes], page: int) -> Iterator[bytes]:
    """Every content a file may have when each of its pages was written back as of its own
    prefix of the pending operations and its size as of another (``page_size``)."""
    sizes, versions = _page_versions(prefixes, page)
    for size in sizes:
        for combo in itertools.product(*versions[: -(-size // page)]):
            yield b"".join(combo)[:size]


def _all_kept(f: _File) -> bytes:
    """The content of ``f`` with every pending data operation kept."""
    buf = bytearray(f.durable)
    for op in f.pending:
        _apply_data(buf, op)
    return bytes(buf)


class _Layout(NamedTuple):
    """One directory tree a crash can leave, before file contents are chosen."""

    dirs: list[tuple[str, _Dir]]
    files: list[tuple[str, _File]]
    edges: list[tuple[int, str, _Node]]


def _layout(root: _Dir, chosen: dict[int, dict[str, _Node]]) -> _Layout:
    """The tree from ``root`` when each directory has the entries ``chosen`` for it.

    Walked breadth first, in name order. A directory met a second time (both halves of its
    rename across directories survived) is dropped there, so every directory keeps one
    parent, the first path found, and no cycle can form.
    """
    dirs: list[tuple[str, _Dir]] = []
    files: list[tuple[str, _File]] = []
    edges: list[tuple[int, str, _Node]] = []
    seen = {root.ino}
    queue: deque[tuple[str, _Dir]] = deque([("", root)])
    while queue:
        path, d = queue.popleft()
        dirs.append((path or "/", d))
        for name, child in sorted(chosen[d.ino].items(), key=_by_name):
            if isinstance(child, _Dir):
                if child.ino in seen:
                    continue
                seen.add(child.ino)
                queue.append((f"{path}/{name}", child))
            else:
                files.append((f"{path}/{name}", child))
            edges.append((d.ino, name, child))
    return _Layout(dirs, files, edges)


def _by_name(entry: tuple[str, _Node]) -> str:
    return entry[0]


class _Origin(NamedTuple):
    """Where a crash state came from: the disk (its number), the model, and the choices."""

    source: int
    model: PersistenceModel
    layout: _Layout
    inodes: list[_File]
    contents: tuple[bytes, ...]


def _build(
    next_ino: int,
    layout: _Layout,
    inodes: list[_File],
    contents: tuple[bytes, ...],
    boot: str | None,
    origin: tuple[int, PersistenceModel] | None = None,
) -> SimulatedDisk:
    """A new disk holding ``layout`` with ``contents[i]`` in ``inodes[i]``, all durable,
    booted as ``boot`` (``None``: a new boot), a crash state of ``origin`` (the source
    disk's number and the model) if given."""
    disk = _disk.SimulatedDisk()
    if origin is not None:
        disk._origin = _Origin(origin[0], origin[1], layout, inodes, contents)
    disk._next_ino = next_ino
    if boot is not None:
        disk._boot = boot
    dirs: dict[int, _Dir] = {1: disk._root}
    for _, d in layout.dirs[1:]:
        dirs[d.ino] = _Dir(d.ino, {}, {}, [])
    nodes: dict[int, _Node] = dict(dirs)
    for f, data in zip(inodes, contents, strict=True):
        nodes[f.ino] = _File(f.ino, data, data, [], f.volatile)
    for parent, name, child in layout.edges:
        dirs[parent].entries[name] = nodes[child.ino]
    for d in dirs.values():
        d.durable = dict(d.entries)
    return disk


def _structures(
    root: _Dir, options: Callable[[_Dir], list[dict[str, _Node]]]
) -> Iterator[dict[int, dict[str, _Node]]]:
    """Every choice of entries for the directories reachable from ``root``.

    Yields the same (mutated) dict each time: use it before asking for the next one.
    """
    chosen: dict[int, dict[str, _Node]] = {}

    def walk(todo: list[_Dir]) -> Iterator[None]:
        if not todo:
            yield None
            return
        d, rest = todo[-1], todo[:-1]
        for entries in options(d):
            chosen[d.ino] = entries
            more = [
                child
                for child in entries.values()
                if isinstance(child, _Dir) and child.ino not in chosen and child not in rest
            ]
            yield from walk(rest + more)
        del chosen[d.ino]

    for _ in walk([root]):
        yield chosen


def _entry_seqs(root: _Dir) -> list[int]:
    """The calls that made the pending entry operations under ``root``, in order."""
    return sorted({op.seq for node in _all_nodes(root) if isinstance(node, _Dir)
                   for op in node.pending})


def _journal_cut(root: _Dir, lost: int) -> dict[int, dict[str, _Node]]:
    """The entries of every directory when the last ``lost`` calls that changed entries were
    lost, all directories together (``journaled_dirs``)."""
    seqs = _entry_seqs(root)
    limit = seqs[len(seqs) - lost] if lost else None
    chosen: dict[int, dict[str, _Node]] = {}
    for node in _all_nodes(root):
        if isinstance(node, _Dir):
            if not node.pending:
                chosen[node.ino] = node.entries
                continue
            entries = dict(node.durable)
            for op in node.pending:
                if limit is None or op.seq < limit:
                    _apply_entry(entries, op)
            chosen[node.ino] = entries
    return chosen


def _journaled(root: _Dir) -> Iterator[dict[int, dict[str, _Node]]]:
    """Every choice of entries under ``journaled_dirs``: one cut in the order of the calls,
    from nothing lost to everything lost."""
    for lost in range(len(_entry_seqs(root)) + 1):
        yield _journal_cut(root, lost)


def _enumerate(
    disk: SimulatedDisk, model: PersistenceModel, source: int | None = None
) -> Iterator[tuple[_StateKey, Callable[[], SimulatedDisk]]]:
    """The distinct crash states of ``disk``: a key and a function building the disk.
    ``source``: the number of the disk ``disk`` is a snapshot of (its own by default)."""
    origin = (disk._uid if source is None else source, model)
    dir_cache: dict[int, list[dict[str, _Node]]] = {}
    file_cache: dict[int, list[bytes]] = {}

    def dir_options(d: _Dir) -> list[dict[str, _Node]]:
        found = dir_cache.get(d.ino)
        if found is None:
            found = dir_cache[d.ino] = _dir_options(d, model)
        return found

    def file_options(f: _File) -> list[bytes]:
        found = file_cache.get(f.ino)
        if found is None:
            found = file_cache[f.ino] = _file_options(f, model)
        return found

    seen: set[_StateKey] = set()
    next_ino = disk._next_ino
    boot = _boot_after(disk, model)
    structures = (
        _journaled(disk._root) if model.lose_unsynced and model.journaled_dirs
        else _structures(disk._root, dir_options)
    )
    for chosen in structures:
        layout = _layout(disk._root, chosen)
        dir_paths = tuple(sorted(path for path, _ in layout.dirs))
        by_path = sorted(layout.files, key=lambda item: item[0])
        file_paths = tuple(path for path, _ in by_path)
        inodes = list({f.ino: f for _, f in by_path}.values())
        index = {f.ino: i for i, f in enumerate(inodes)}
        slots = [index[f.ino] for _, f in by_path]
        shared = len(inodes) != len(by_path)
        for contents in itertools.product(*(file_options(f) for f in inodes)):
            per_path = tuple(contents[i] for i in slots) if shared else contents
            key = (dir_paths, file_paths, per_path)
            if key in seen:
                continue
            seen.add(key)
            yield key, _builder(next_ino, layout, inodes, contents, boot, origin)


def _estimate(root: _Dir, model: PersistenceModel) -> int:
    """``SimulatedDisk.estimate_crash_states`` of the tree at ``root``."""
    if not model.lose_unsynced:
        return 1
    total = len(_entry_seqs(root)) + 1 if model.journaled_dirs else 1
    for node in _all_nodes(root):
        if not node.pending:
            continue
        if isinstance(node, _Dir):
            if model.journaled_dirs:
                continue
            n = len(node.pending)
            total *= 2**n if model.reorder_dir_ops else n + 1
        elif node.volatile:
            total *= 2
        else:
            choices = 1  # every pending operation lost
            size = len(node.durable)
            for op in node.pending:
                choices += 1  # the prefix that ends with ``op``
                if isinstance(op, _Write):
                    choices += _torn_count(model, size, op.offset, len(op.data))
                    size = max(size, op.offset + len(op.data))
                else:
                    size = op.size
            if model.page_size is not None:
                sizes, versions = _page_versions(_prefixes(node), model.page_size)
                choices += len(sizes) * math.prod(len(v) for v in versions)
            total *= choices
    return total


def _prefixes(f: _File) -> list[bytes]:
    """The content of ``f`` after each prefix of its pending operations, none first."""
    found = [f.durable]
    buf = bytearray(f.durable)
    for op in f.pending:
        _apply_data(buf, op)
        found.append(bytes(buf))
    return found


def _check_limit(where: str, snapshot: SimulatedDisk, model: PersistenceModel, limit: int) -> int:
    """The number of crash states of ``snapshot`` if it is at most ``limit`` (counted up to
    ``limit + 1``); ``ValueError`` if it is more."""
    _disk._check_count(where, "limit", limit, 0)
    estimate = _estimate(snapshot._root, model)
    counted = sum(1 for _ in itertools.islice(_enumerate(snapshot, model), limit + 1))
    if counted > limit:
        raise ValueError(
            f"{where}: more than {limit} crash states (at most {estimate}, by "
            f"estimate_crash_states); raise limit, sync more before the crash point, or draw "
            f"states with pqueue.crashtest.crash_state(disk, model)"
        )
    return counted


def _builder(
    next_ino: int,
    layout: _Layout,
    inodes: list[_File],
    contents: tuple[bytes, ...],
    boot: str | None,
    origin: tuple[int, PersistenceModel],
) -> Callable[[], SimulatedDisk]:
    return lambda: _build(next_ino, layout, inodes, contents, boot, origin)


def _boot_after(disk: SimulatedDisk, model: PersistenceModel) -> str | None:
    """The boot of a crash state of ``disk``: the same after a process crash, the next
    after a power loss (the machine restarted)."""
    return _disk._new_boot_id(disk._boot) if model.lose_unsynced else disk._boot


_TEAR_CHOICES = 1 << 30


def _all_nodes(root: _Dir) -> list[_Node]:
    """Every node a crash state of ``root`` could contain, by inode number."""
    found: dict[int, _Node] = {}
    todo: list[_Node] = [root]
    while todo:
        node = todo.pop()
        if node.ino in found:
            continue
        found[node.ino] = node
        if isinstance(node, _Dir):
            todo.extend(node.entries.values())
            todo.extend(node.durable.values())
            todo.extend(op.node for op in node.pending if isinstance(op, _Link))
    return [found[ino] for ino in sorted(found)]


def _draw_crash_state(
    disk: SimulatedDisk,
    model: PersistenceModel,
    integer: Callable[[int, int], int],
    boolean: Callable[[], bool],
    source: int | None = None,
) -> SimulatedDisk:
    """One crash state of ``disk``, chosen by ``integer(lo, hi)`` and ``boolean()``.

    ``0`` and ``False`` always lose the least, so all zeros is the visible state (less the
    writes a failed fsync dropped, under a power loss). The same
    choices are asked for whatever the answers (one or two per directory and file with
    pending operations, in inode order), so a shrinker that prefers fewer and smaller
    choices moves toward losing less, never toward losing a directory entry to skip the
    choices of the files behind it. (A volatile file asks only one, 0 keeping all of its
    pending operations and 1 none of its content.) Each state returned is one
    ``crash_states`` yields.
    """
    nodes = _all_nodes(disk._root)
    journaled = model.lose_unsynced and model.journaled_dirs
    chosen: dict[int, dict[str, _Node]] = {}
    if journaled:
        chosen = _journal_cut(disk._root, integer(0, len(_entry_seqs(disk._root))))
    lost: dict[int, tuple[int, int]] = {}
    paged: dict[int, bytes] = {}
    for node in nodes:
        if not model.lose_unsynced or not node.pending:
            if isinstance(node, _Dir) and not journaled:
                chosen[node.ino] = node.entries
        elif isinstance(node, _File):
            if node.volatile:
                lost[node.ino] = (integer(0, 1), 0)
                continue
            lost[node.ino] = (integer(0, len(node.pending)), integer(0, _TEAR_CHOICES))
            if model.page_size is not None:
                sizes, versions = _page_versions(_prefixes(node), model.page_size)
                size = integer(0, len(sizes) - 1)
                pages = [integer(0, len(v) - 1) for v in versions]
                if size or any(pages):  # all zeros: the prefix drawn above
                    end = sizes[size]
                    picked = [v[i] for v, i in zip(versions, pages, strict=True)]
                    paged[node.ino] = b"".join(picked[: -(-end // model.page_size)])[:end]
        elif journaled:
            continue
        elif model.reorder_dir_ops:
            entries = dict(node.durable)
            for op in node.pending:
                if not boolean():
                    _apply_entry(entries, op)
            chosen[node.ino] = entries
        else:
            entries = dict(node.durable)
            for op in node.pending[: len(node.pending) - integer(0, len(node.pending))]:
                _apply_entry(entries, op)
            chosen[node.ino] = entries
    layout = _layout(disk._root, chosen)
    inodes = list({f.ino: f for _, f in sorted(layout.files, key=_by_name)}.values())
    contents = tuple(
        paged[f.ino] if f.ino in paged else _drawn_content(f, model, *lost.get(f.ino, (0, 0)))
        for f in inodes
    )
    origin = (disk._uid if source is None else source, model)
    return _build(disk._next_ino, layout, inodes, contents, _boot_after(disk, model), origin)


def _drawn_content(f: _File, model: PersistenceModel, lost: int, tear: int) -> bytes:
    """The content of ``f`` with its last ``lost`` pending operations lost and, if the
    last one kept is a write, torn the ``tear``-th way (modulo the ways; 0: not torn). A
    volatile file with pending operations keeps them all (``lost`` 0) or is left empty.
    """
    if not model.lose_unsynced:
        return bytes(f.data)
    if f.volatile and f.pending:
        return b"" if lost else _all_kept(f)
    kept = len(f.pending) - lost
    buf = bytearray(f.durable)
    for op in f.pending[: max(kept - 1, 0)]:
        _apply_data(buf, op)
    if kept:
        last = f.pending[kept - 1]
        if isinstance(last, _Write):
            torn = _torn_outcomes(model, f.ino, bytes(buf), last.offset, last.data)
            which = tear % (len(torn) + 1)
            if which:
                return torn[which - 1]
        _apply_data(buf, last)
    return bytes(buf)


# -- what a crash state lost ----------------------------------------------------------------

_SHOWN_OPS = 4  # lost operations listed per file or directory, the rest counted


def _describe(origin: _Origin) -> str:
    """What a crash state kept and lost of the pending operations of its source disk."""
    model = origin.model
    where = f"crash state of #{origin.source} under {_model_name(model)}"
    if not model.lose_unsynced:
        return f"{where}: nothing lost"
    layout = origin.layout
    parts: list[tuple[str, str]] = []
    for path, d in layout.dirs:
        if d.pending:
            entries = {(name, child.ino) for ino, name, child in layout.edges if ino == d.ino}
            parts.append((path, _describe_dir(d, entries, model)))
    paths = {f.ino: path for path, f in sorted(layout.files, key=_by_name, reverse=True)}
    for f, content in zip(origin.inodes, origin.contents, strict=True):
        if f.pending:
            parts.append((paths[f.ino], _describe_file(f, content, model)))
    if not parts:
        return f"{where}: nothing was pending"
    return f"{where}: " + "; ".join(f"{path}: {text}" for path, text in sorted(parts))


def _describe_dir(d: _Dir, entries: set[tuple[str, int]], model: PersistenceModel) -> str:
    ops = d.pending
    n = len(ops)

    def key(table: dict[str, _Node]) -> set[tuple[str, int]]:
        return {(name, node.ino) for name, node in table.items()}

    if model.reorder_dir_ops and n <= 16:
        for lost in range(1 << n):
            table = dict(d.durable)
            for i, op in enumerate(ops):
                if not lost >> i & 1:
                    _apply_entry(table, op)
            if key(table) == entries:
                return _kept_lost(n, [op for i, op in enumerate(ops) if lost >> i & 1])
    elif not model.reorder_dir_ops:
        prefixes = [dict(d.durable)]
        for op in ops:
            prefixes.append(dict(prefixes[-1]))
            _apply_entry(prefixes[-1], op)
        for kept in range(n, -1, -1):
            if key(prefixes[kept]) == entries:
                return _kept_lost(n, ops[kept:])
    return f"{n} pending (a directory reachable under two names was kept under one)"


def _describe_file(f: _File, content: bytes, model: PersistenceModel) -> str:
    ops = f.pending
    n = len(ops)
    if f.volatile:
        return f"volatile, kept all {n}" if content else f"volatile, emptied ({n} pending)"
    prefixes = [f.durable]
    buf = bytearray(f.durable)
    for op in ops:
        _apply_data(buf, op)
        prefixes.append(bytes(buf))
    if content == prefixes[n]:
        return f"kept all {n}"
    for kept in range(n - 1, -1, -1):
        op = ops[kept]
        if isinstance(op, _Write):
            base = prefixes[kept]
            outcomes = _torn_outcomes(model, f.ino, base, op.offset, op.data)
            if content in outcomes:
                labels = _torn_labels(model, len(base), op.offset, len(op.data))
                how = labels[outcomes.index(content)]
                lost = ops[kept + 1 :]
                text = f"kept {kept + 1} of {n}, the last ({_op_text(op)}) {how}"
                return text + (f", lost {_ops_text(lost)}" if lost else "")
        if content == prefixes[kept]:
            return _kept_lost(n, ops[kept:])
    if model.page_size is not None:
        return _describe_pages(prefixes, content, model.page_size)
    return f"{n} pending"  # not reached: every content is one of those


def _describe_pages(prefixes: list[bytes], content: bytes, page: int) -> str:
    """What a content that ``page_size`` write-back made kept, page by page."""
    n = len(prefixes) - 1
    size = max(k for k, p in enumerate(prefixes) if len(p) == len(content))
    parts = [f"written back page by page ({page} bytes): the size as of {size} of {n}"]
    for i in range(-(-len(content) // page)):
        have = content[i * page : (i + 1) * page]
        kept = max(k for k, p in enumerate(prefixes)
                   if p[i * page : (i + 1) * page].ljust(page, b"\0")[: len(have)] == have)
        if kept != n:
            parts.append(f"page {i} as of {kept} of {n}")
    return ", ".join(parts)


def _kept_lost(n: int, lost: list[_DataOp] | list[_EntryOp]) -> str:
    if not lost:
        return f"kept all {n}"
    return f"kept {n - len(lost)} of {n}, lost {_ops_text(lost)}"


def _ops_text(ops: list[_DataOp] | list[_EntryOp]) -> str:
    shown = ", ".join(_op_text(op) for op in ops[:_SHOWN_OPS])
    more = len(ops) - _SHOWN_OPS
    return f"{shown} and {more} more" if more > 0 else shown


def _op_text(op: _DataOp | _EntryOp) -> str:
    if isinstance(op, _Write):
        return f"write {len(op.data)} byte{'' if len(op.data) == 1 else 's'} at {op.offset}"
    if isinstance(op, _Truncate):
        return f"truncate to {op.size}"
    if isinstance(op, _Link):
        return f"{'mkdir' if isinstance(op.node, _Dir) else 'create'} {op.name!r}"
    if isinstance(op, _Unlink):
        return f"unlink {op.name!r}"
    return f"rename {op.src!r} -> {op.dst!r}"
