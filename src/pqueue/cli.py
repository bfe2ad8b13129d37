"""The command line: ``pqueue`` (or ``python -m pqueue``), for operators.

``stat``, ``peek``, ``dump`` and ``verify`` only read (``pqueue.inspection``): they work on
a queue other processes hold open and never change it. ``purge`` drops the waiting items,
as one participant more. Exit codes: 0 done (for ``verify``: the queue is whole), 1 the
queue is damaged or the command failed, 2 a usage error or PATH is not a queue.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from pqueue import __version__, bench, demo, migrate, serializers
from pqueue.core.errors import (
    CorruptQueueError,
    LegacyFormatError,
    NotAQueueError,
    PQueueError,
    QueueLocked,
    UnsupportedFormatError,
)
from pqueue.inspection import QueueStat, loader, stat, upcoming, verify
from pqueue.progress import ProgressBar
from pqueue.queue import Queue

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_PICKLE_NOTE = (
    "items of a queue with the pickle serializer are loaded with pickle, which runs code the "
    "files name: only for directories you trust (or pass --raw)"
)


class _CommandError(Exception):
    """A command cannot go on: its message goes to stderr with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pqueue",
        description="Look into, check and run pqueue queues (persistent FIFO queues in a "
        "directory).",
        epilog="Exit codes: 0 done, 1 the queue is damaged or the command failed, 2 a usage "
        "error or PATH is not a queue.",
    )
    parser.add_argument("--version", action="version", version=f"pqueue {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "stat", help="counts, files and settings of a queue (read only)",
        description="Items waiting, delivered and not acknowledged, dead letters, files and "
        "settings of the queue at PATH. Read only: works on a queue other processes hold "
        "open, and never changes it.",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    for name, text in (
        ("peek", "the next items a get would deliver, without delivering them (read only)"),
        ("dump", "every waiting item, one per line, in delivery order (read only)"),
    ):
        p = commands.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}. "
                                f"{_PICKLE_NOTE[0].upper()}{_PICKLE_NOTE[1:]}.")
        p.add_argument("path", metavar="PATH")
        if name == "peek":
            p.add_argument("-n", type=_count, default=1, metavar="N",
                           help="how many items (default 1)")
        p.add_argument(
            "--format", choices=("auto", "json", "repr"), default="auto",
            help="json: one JSON value per line; repr: Python's repr; auto (default): json "
            "for a queue with the json serializer, repr otherwise",
        )
        p.add_argument("--json", dest="format", action="store_const", const="json",
                       help="the same as --format json")
        p.add_argument("--raw", action="store_true",
                       help="show the stored bytes of each item, never loading them")
        p.add_argument(
            "--serializer", metavar="MODULE:NAME",
            help="the serializer the queue was written with, when it is the application's own "
            "(an object with loads())",
        )

    p = commands.add_parser(
        "verify", help="read every record and report damage (read only)",
        description="Read every record of every chunk file and of the ack log of the queue "
        "at PATH. Exit 0 when the queue is whole, 1 naming each damaged file and offset.",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action="store_true",
                   help="draw a progress bar on stderr even when it is not a terminal")

    p = commands.add_parser(
        "purge", help="drop every waiting item (asks first)",
        description="Drop every waiting item of the queue at PATH, at once and durably. Items "
        "delivered and not yet acknowledged stay with their consumers. Works beside the "
        "processes that have the queue open (not one opened with exclusive=True).",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")

    p = commands.add_parser(
        "migrate", help="convert a pqueue 0.1.x or persist-queue directory into a new queue",
        description="Copy the items of a directory written by pqueue 0.1.x or persist-queue's "
        "file Queue into a new pqueue queue at DST, in order, keeping only the items the old "
        "package would still deliver. SRC is only read, and must be trusted (its items are "
        "unpickled). The old packages are not needed.",
    )
    migrate.add_arguments(p)

    p = commands.add_parser(
        "bench", help="measure put and get rates on this machine (short; --full for the "
        "standard run)",
        description="Throughput of pqueue beside its peers that are installed and the raw "
        "disk, in one run: a short run by default.",
    )
    p.add_argument("--full", action="store_true",
                   help=f"the standard sizes ({bench.FULL}) instead of {bench.QUICK}")
    bench.add_arguments(p, bench.QUICK)

    demo.add_arguments(commands)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``): the exit code."""
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = {
        "stat": _stat,
        "peek": _items,
        "dump": _items,
        "verify": _verify,
        "purge": _purge,
        "migrate": migrate.run,
        "bench": _bench,
    }.get(args.command, demo.run_command)
    try:
        return command(args)
    except _CommandError as exc:
        print(f"pqueue {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except (NotAQueueError, LegacyFormatError, UnsupportedFormatError) as exc:
        print(f"pqueue {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CorruptQueueError as exc:
        print(f"pqueue {args.command}: the queue is damaged: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (PQueueError, OSError) as exc:
        print(f"pqueue {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # pragma: no cover (``| head``)
        return EXIT_OK


# --- stat ------------------------------------------------------------------------------------


def _stat(args: argparse.Namespace) -> int:
    found = stat(args.path)
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
    else:
        for line in _stat_lines(found):
            print(line)
    return EXIT_OK


def _stat_lines(s: QueueStat) -> list[str]:
    def number(value: int | None, unknown: str) -> str:
        return unknown if value is None else f"{value:,}"

    if s.participants is None:
        users = "unknown (no /proc/locks here)"
    elif s.exclusive:
        users = "1 (opened with exclusive=True)"
    else:
        users = f"{s.participants} Queue object{'s' * (s.participants != 1)}"
    lines = [
        s.path,
        f"  waiting:            {s.waiting:,}",
        f"  delivered:          "
        f"{number(s.delivered, 'unknown (an exclusive queue keeps them to itself)')}"
        f"{' (not yet acknowledged)' if s.delivered else ''}",
        f"  dead letters:       {number(s.dead_letters, 'none (no dead-letter queue)')}",
        f"  open by:            {users}",
        f"  chunk files:        {s.chunk_files:,}",
        f"  bytes on disk:      {s.bytes_on_disk:,}",
        f"  durability:         {s.durability} (of the last checkpoint's writer)",
        f"  serializer:         {s.serializer}",
        f"  format version:     {s.format_version}",
        f"  chunksize:          {s.chunksize}",
        f"  next item number:   {s.next_seq:,}",
    ]
    lines.extend(f"  on the next open:   {notice}" for notice in s.notices)
    return lines


# --- peek and dump ---------------------------------------------------------------------------


def _items(args: argparse.Namespace) -> int:
    found = stat(args.path)
    limit = args.n if args.command == "peek" else None
    payloads = upcoming(args.path, limit)
    if args.raw:
        load: Callable[[bytes], Any] = bytes
    else:
        load = _loads(found.serializer, args.serializer)
    fmt = args.format
    if fmt == "auto":
        fmt = "json" if found.serializer == "json" and not args.raw else "repr"
    out = sys.stdout
    for number, payload in enumerate(payloads, 1):
        try:
            item = load(payload)
        except Exception as exc:
            raise _CommandError(
                f"item {number} (in delivery order) cannot be loaded with the "
                f"{found.serializer!r} serializer: {exc!r} (--raw shows its bytes)", EXIT_FAILED
            ) from exc
        _write_item(out, item, fmt, number)
    return EXIT_OK


def _write_item(out: TextIO, item: Any, fmt: str, number: int) -> None:
    if fmt == "repr":
        out.write(repr(item) + "\n")
        return
    try:
        out.write(json.dumps(item, ensure_ascii=False) + "\n")
    except (TypeError, ValueError) as exc:
        raise _CommandError(
            f"item {number} (in delivery order) is not JSON ({exc}); use --format repr",
            EXIT_FAILED,
        ) from exc


def _loads(serializer: str, given: str | None) -> Callable[[bytes], Any]:
    if given is not None:
        module, _, name = given.partition(":")
        try:
            found: Any = importlib.import_module(module)
            for part in filter(None, name.split(".")):
                found = getattr(found, part)
        except (ImportError, AttributeError) as exc:
            raise _CommandError(f"--serializer {given}: {exc}", EXIT_USAGE) from exc
        loads = getattr(found, "loads", None)
        if not callable(loads):
            raise _CommandError(f"--serializer {given}: it has no loads()", EXIT_USAGE)
        return loads  # type: ignore[no-any-return]
    known = loader(serializer)
    if known is None:
        raise _CommandError(
            f"the queue's serializer {serializer!r} is the application's own: pass "
            "--serializer MODULE:NAME to load its items, or --raw to show their bytes",
            EXIT_USAGE,
        )
    return known


# --- purge ----------------------------------------------------------------------------------


def _purge(args: argparse.Namespace) -> int:
    found = stat(args.path)
    if found.exclusive:
        raise _CommandError(
            f"{found.path} is open in a process with exclusive=True: close it first",
            EXIT_FAILED,
        )
    if not args.yes:
        sys.stderr.write(f"drop {found.waiting:,} waiting items from {found.path}? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            if not answer:
                sys.stderr.write("\n")
            raise _CommandError("nothing was dropped", EXIT_FAILED)
    # A participant like any other; it loads no item, so the serializer is named only.
    known = {"pickle": None, "json": json, "bytes": serializers.BYTES}
    serializer = known.get(found.serializer, serializers.NamedSerializer(
        found.serializer, _refuse_dumps, _refuse_loads))
    try:
        with Queue[Any](found.path, serializer=serializer) as q:
            dropped = q.purge()
    except QueueLocked as exc:
        raise _CommandError(f"{exc} (opened with exclusive=True elsewhere)", EXIT_FAILED) from exc
    print(f"{found.path}: dropped {dropped:,} waiting items")
    return EXIT_OK


def _refuse_dumps(item: Any) -> bytes:
    raise TypeError("pqueue purge puts nothing")


def _refuse_loads(data: bytes) -> Any:
    raise TypeError("pqueue purge loads nothing")


# --- bench ----------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    if args.full:
        for key, value in bench.FULL.items():
            if getattr(args, key) == bench.QUICK[key]:  # not given: the full run's size
                setattr(args, key, value)
    return bench.run(args)


# --- verify ----------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    bar = ProgressBar(sys.stderr, "bytes") if args.progress or sys.stderr.isatty() else None
    report = verify(args.path, bar)
    if bar is not None:
        bar.finish()
    if args.json:
        print(json.dumps({
            "path": report.path, "ok": report.ok, "records": report.records,
            "acks": report.acks, "chunk_files": report.chunk_files,
            "bytes_read": report.bytes_read,
            "damage": [
                {"path": d.path, "offset": d.offset, "reason": d.reason} for d in report.damage
            ],
            "notices": list(report.notices),
        }, indent=2))
    else:
        for notice in report.notices:
            print(f"note: {notice}")
        for damage in report.damage:
            print(f"damaged: {damage}")
        verdict = "whole" if report.ok else f"DAMAGED ({len(report.damage)} places)"
        print(f"{report.path}: {verdict}: {report.records:,} item records in "
              f"{report.chunk_files} chunk files and {report.acks:,} acknowledgements read")
    return EXIT_OK if report.ok else EXIT_FAILED
