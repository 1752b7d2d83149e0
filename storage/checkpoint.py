"""Checkpoint files: small text files replaced atomically (write, fsync, rename, fsync dir).

Kafka's format, one per partition directory here (Kafka keeps one per log
directory for all partitions)::

    0            <- version
    N            <- number of entries
    a b          <- N lines of space-separated integers

``recovery-point-offset-checkpoint`` and ``log-start-offset-checkpoint`` hold one
entry of one integer; ``leader-epoch-checkpoint`` holds ``epoch start_offset`` pairs.
A reader treats a missing or malformed file as absent, because every checkpoint
can be rebuilt (at the cost of a longer recovery); it never guesses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

__all__ = [
    "LEADER_EPOCH_CHECKPOINT",
    "LOG_START_OFFSET_CHECKPOINT",
    "RECOVERY_POINT_CHECKPOINT",
    "fsync_dir",
    "read_checkpoint",
    "read_offset_checkpoint",
    "write_atomic",
    "write_checkpoint",
    "write_offset_checkpoint",
]

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"

_VERSION = 0
#: No checkpoint is allowed to grow without bound; a longer file is treated as corrupt.
MAX_CHECKPOINT_ENTRIES = 1 << 20

log = logging.getLogger("strata.storage")


def fsync_dir(path: str) -> None:
    """fsync a directory so that file creations, renames and deletions in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def write_checkpoint(path: str, entries: Sequence[tuple[int, ...]]) -> None:
    lines = [str(_VERSION), str(len(entries))]
    lines.extend(" ".join(str(v) for v in e) for e in entries)
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def read_checkpoint(path: str, arity: int) -> list[tuple[int, ...]] | None:
    """Entries of the checkpoint at ``path``, or ``None`` if it is missing or malformed."""
    try:
        with open(path, "rb") as f:
            text = f.read(64 << 20).decode("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        log.warning("checkpoint %s is unreadable (%s); ignoring it", path, e)
        return None
    try:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if int(lines[0]) != _VERSION:
            raise ValueError(f"unknown version {lines[0]!r}")
        count = int(lines[1])
        if not 0 <= count <= MAX_CHECKPOINT_ENTRIES or len(lines) != count + 2:
            raise ValueError(f"says {count} entries, holds {len(lines) - 2}")
        entries = []
        for line in lines[2:]:
            parts = tuple(int(p) for p in line.split(" "))
            if len(parts) != arity:
                raise ValueError(f"entry {line!r} does not have {arity} fields")
            entries.append(parts)
        return entries
    except (ValueError, IndexError) as e:
        log.warning("checkpoint %s is malformed (%s); ignoring it", path, e)
        return None


def read_offset_checkpoint(path: str) -> int | None:
    entries = read_checkpoint(path, 1)
    if entries is None or len(entries) != 1 or entries[0][0] < 0:
        return None
    return entries[0][0]


def write_offset_checkpoint(path: str, offset: int) -> None:
    assert offset >= 0, offset
    write_checkpoint(path, [(offset,)])
