"""A minimal interpreter of core effects over a dict, for testing the core on its own.

It keeps only what is visible (no durability): enough to run transitions, apply their
effects and recover from the result, without the IO shell.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from pqueue.core import transitions
from pqueue.core.codec import ITEM_MAGIC, Record, decode
from pqueue.core.effects import (
    Create,
    Effect,
    Fsync,
    FsyncDir,
    Release,
    Replace,
    Truncate,
    Unlink,
    Write,
    WriteBack,
)
from pqueue.core.state import Config, QueueState, chunk_path, default_policy

DIRECTORY = "/q"


def config(
    *, chunksize: int = 4, durability: str = "fsync", serializer: str = "pickle",
    salt: int = 0x5A17, **policy: Any,
) -> Config:
    """A Config for ``/q`` with the default policy of ``durability`` changed by ``policy``
    (no reclaim timer: the core has none; the Queue runs it)."""
    policy.setdefault("reclaim_after", None)
    assert durability in ("fsync", "flush")
    base = default_policy("fsync" if durability == "fsync" else "flush")
    return Config(
        directory=DIRECTORY,
        chunksize=chunksize,
        durability="fsync" if durability == "fsync" else "flush",
        serializer=serializer,
        temp_path=f"{DIRECTORY}/info.tmp",
        policy=attrs.evolve(base, **policy),
        salt=salt,
    )


class MemDisk:
    """Files by path; applies effects in order, as the shell would."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}
        self.log: list[Effect] = []

    def apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            self.log.append(effect)
            if isinstance(effect, Write):
                data = self.files.setdefault(effect.path, bytearray())
                end = effect.offset + len(effect.data)
                if len(data) < end:
                    data.extend(bytes(end - len(data)))
                data[effect.offset : end] = effect.data
            elif isinstance(effect, Create):
                self.files[effect.path] = bytearray()
            elif isinstance(effect, Truncate):
                data = self.files[effect.path]
                del data[effect.size :]
            elif isinstance(effect, Replace):
                self.files[effect.dst] = self.files.pop(effect.src)
            elif isinstance(effect, Unlink):
                del self.files[effect.path]
            elif isinstance(effect, (Fsync, WriteBack)):
                assert effect.path in self.files, f"{effect} of a missing file"
            elif isinstance(effect, Release):
                pass
            elif isinstance(effect, FsyncDir):
                assert effect.path == DIRECTORY

    def names(self) -> frozenset[str]:
        return frozenset(p.rsplit("/", 1)[1] for p in self.files)

    def chunks(self) -> list[str]:
        return sorted(n for n in self.names() if n.startswith("q"))

    def recover(self, cfg: Config) -> QueueState:
        """Open the queue on this disk as the shell does: recover, apply the repairs,
        preallocate the ack log, checkpoint; return the state."""
        obs = transitions.Observation(
            names=self.names(),
            info=bytes(self.files[cfg.info_path]) if cfg.info_path in self.files else None,
            acks=bytes(self.files[cfg.ack_path]) if cfg.ack_path in self.files else None,
            temp_exists=cfg.temp_path in self.files,
        )
        chunks: dict[int, bytes] = {}
        while True:
            outcome = transitions.recover(cfg, obs)
            if isinstance(outcome, transitions.ReadChunks):
                for n in outcome.numbers:
                    chunks[n] = bytes(self.files[chunk_path(cfg, n)])
                obs = transitions.Observation(
                    names=obs.names, info=obs.info, acks=obs.acks,
                    temp_exists=obs.temp_exists, chunks=chunks,
                )
                continue
            self.apply(outcome.repairs)
            state = outcome.state
            reserve = transitions.reserve_acks(state, outcome.ack_size)
            if reserve is not None:
                state = self.run(reserve)
            if outcome.checkpoint:
                state = self.run(transitions.checkpoint(state))
            return state

    def run(self, step: transitions.Step) -> QueueState:
        state, effects = step
        self.apply(effects)
        return state

    def put(self, state: QueueState, payload: bytes) -> QueueState:
        """Put as the shell does: the put, then a checkpoint if one is due."""
        state = self.run(transitions.put(state, payload))
        if transitions.wants_checkpoint(state):
            state = self.run(transitions.checkpoint(state))
        return state

    def ack(self, state: QueueState, seq: int) -> QueueState:
        """Acknowledge as the shell does: the ack, then a checkpoint if one is due."""
        state = self.run(transitions.ack(state, seq))
        if transitions.wants_checkpoint(state):
            state = self.run(transitions.checkpoint(state))
        return state

    def deliver(self, state: QueueState) -> tuple[QueueState, int, bytes]:
        """Read the record at ``state.read`` and deliver it (skipping acknowledged ones)."""
        while True:
            cs = state.config.chunksize
            data = bytes(self.files[chunk_path(state.config, state.read // cs)])
            rec = decode(data, state.read_offset, ITEM_MAGIC, state.config.salt)
            assert isinstance(rec, Record), rec
            state, delivered = transitions.deliver(state, rec.seq, rec.end)
            if delivered:
                return state, rec.seq, data[rec.start : rec.end]
