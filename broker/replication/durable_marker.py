"""The ``durable-end`` marker: how far a replica's log was known durable, kept beside it.

A log that reopens shorter than its marker lost data that had been fsynced (and may have
been acknowledged): the replica is then storage-faulty and does not vote until its
leader has re-sent what was lost. The marker is written at most every
``MARKER_INTERVAL_S`` while the log grows, and on a clean stop; a stale one only weakens
the check at the next open, so writing it is best effort.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

__all__ = ["MARKER_FILE", "MARKER_INTERVAL_S", "read_marker", "write_marker"]

MARKER_FILE = "durable-end"
MARKER_INTERVAL_S = 0.1
_OFFSET = struct.Struct(">q")


def read_marker(directory: Path) -> int:
    try:
        data = (directory / MARKER_FILE).read_bytes()
    except FileNotFoundError:
        return 0
    return int(_OFFSET.unpack(data)[0]) if len(data) == _OFFSET.size else 0


def write_marker(directory: Path, offset: int) -> None:
    try:
        fd = os.open(directory / MARKER_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, _OFFSET.pack(offset), 0)
        finally:
            os.close(fd)
    except OSError:
        pass  # best effort: a stale marker only weakens the check at the next open
