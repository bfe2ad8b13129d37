"""How items become bytes: ``pickle`` (the default), ``json`` and raw ``bytes``.

A serializer is any object with ``dumps(obj) -> bytes`` and ``loads(data) -> obj``. Its
``name`` (or, for a module such as ``pickle``, its ``__name__``) is recorded in the queue's
``info`` file: reopening a queue with a different serializer raises
``SerializerMismatchError`` instead of misreading the items.
"""

from __future__ import annotations

import functools
import json
import pickle
from collections.abc import Callable
from typing import Any, Protocol

import attrs

__all__ = ["BYTES", "JSON", "PICKLE", "Serializer", "resolve"]


class Serializer(Protocol):
    """What ``Queue(serializer=...)`` accepts."""

    def dumps(self, obj: Any, /) -> bytes: ...

    def loads(self, data: bytes, /) -> Any: ...


@attrs.frozen
class NamedSerializer:
    """A serializer with the name pqueue records for it."""

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _bytes_dumps(obj: Any) -> bytes:
    if type(obj) is bytes:
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"the bytes serializer stores bytes-like items, not {type(obj).__name__}")


def _bytes_loads(data: bytes) -> bytes:
    return data


PICKLE = NamedSerializer(
    "pickle", functools.partial(pickle.dumps, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads
)
JSON = NamedSerializer("json", _json_dumps, json.loads)
BYTES = NamedSerializer("bytes", _bytes_dumps, _bytes_loads)


def resolve(serializer: object | None) -> NamedSerializer:
    """The named serializer for what was passed as ``serializer=``."""
    if serializer is None or serializer is pickle:
        return PICKLE
    if serializer is json:
        return JSON
    if isinstance(serializer, NamedSerializer):
        return serializer
    dumps = getattr(serializer, "dumps", None)
    loads = getattr(serializer, "loads", None)
    if not callable(dumps) or not callable(loads):
        raise TypeError(
            f"serializer must have dumps() and loads() methods, got {serializer!r}"
        )
    name = getattr(serializer, "name", None) or getattr(serializer, "__name__", None)
    if not isinstance(name, str) or not name:
        kind = type(serializer)
        name = f"{kind.__module__}.{kind.__qualname__}"

    def checked_dumps(obj: Any) -> bytes:
        data = dumps(obj)
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                return bytes(data)
            raise TypeError(
                f"serializer {name!r} returned {type(data).__name__} from dumps(), not bytes"
            )
        return data

    return NamedSerializer(name, checked_dumps, loads)
