"""Raft's persistent state per group (currentTerm, votedFor): write, fsync, rename, fsync dir.

Raft's safety depends on never voting twice in one term, so the vote reaches the disk before
any message that depends on it leaves. The file is tiny and changes only on elections, so
the cost of the fsyncs does not matter; what matters is that a crash at any instant leaves
either the old or the new state, never a torn one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack

FILE_NAME = "raft-state"


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
