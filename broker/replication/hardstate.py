"""Raft's persistent state per group (currentTerm, votedFor): write, fsync, rename, fsync dir.

Raft's safety depends on never voting twice in one term, so the vote reaches the disk before
any message that depends on it leaves. The file is tiny and changes only on elections; what
matters is that a crash at any instant leaves either the old or the new state, never a torn
one.

Elections come in waves, though: creating 1,000 partitions (or a broker's restart) makes
every replica save once, and two fsyncs each on the event loop were seconds of a stalled
broker. :class:`HardStateWriter` runs the saves on a small thread pool instead, so the saves
of many groups proceed side by side (a journaling filesystem commits concurrent fsyncs
together) while the loop keeps serving; each group still waits for its own save before it
sends what depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

FILE_NAME = "raft-state"
#: Saves in progress at once (threads); more are queued, at most one per Raft group.
WRITER_THREADS = 16


def load(directory: Path) -> dict[str, Any]:
    """The persisted state, or an empty dict for a new replica."""
    path = directory / FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    state = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: raft state is not a map")
    return state


def save(directory: Path, state: dict[str, Any]) -> None:
    path = directory / FILE_NAME
    tmp = directory / (FILE_NAME + ".tmp")
    data = msgpack.packb(state, use_bin_type=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class HardStateWriter:
    """Saves hard states off the event loop, many groups' at once (see the module docstring)."""

    def __init__(self, threads: int = WRITER_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="raft-state")
        #: The latest save of each directory: at most one per group, as a group waits for
        #: its save before its next one. Bounded by the groups this broker holds.
        self._latest: dict[Path, Future[None]] = {}
        #: Saves submitted and not yet returned (queued or running).
        self.pending = 0
        self.threads = threads

    async def save(self, directory: Path, state: dict[str, Any]) -> None:
        """:func:`save` on a pool thread; returns (or raises) once it is durable.

        Cancelling the caller does not stop a save that has started: :meth:`settle` waits
        for it before the group's directory is reopened or removed.
        """
        fut = self._pool.submit(save, directory, state)
        self._latest[directory] = fut
        self.pending += 1
        try:
            await asyncio.wrap_future(fut)
        finally:
            self.pending -= 1
            if self._latest.get(directory) is fut and fut.done():
                del self._latest[directory]

    async def settle(self, directory: Path) -> None:
        """Wait until no save of ``directory`` is running (its outcome no longer matters).

        A replica reopened from disk (after a storage failure) must read the vote its
        previous incarnation was saving, or it could vote twice in one term.
        """
        fut = self._latest.pop(directory, None)
        if fut is not None and not fut.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(fut))

    def close(self) -> None:
        """Wait for the saves in progress (a stopping broker's last votes) and stop the threads."""
        self._pool.shutdown(wait=True)
