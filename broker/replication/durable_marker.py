"""The ``durable-end`` marker: how far a replica's log was known durable, kept beside it.

A log that reopens shorter than its marker lost data that had been fsynced (and may have
been acknowledged): the replica is then storage-faulty and does not vote until its
leader has re-sent what was lost. The marker is written at most every
``MARKER_INTERVAL_S`` while the log grows, and on a clean stop; a stale one only weakens
the check at the next open, so writing it is best effort.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["MARKER_FILE", "MARKER_INTERVAL_S", "DurableMarker", "read_marker", "write_marker"]

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


class DurableMarker:
    """One replica's marker, kept current: lowered at once on a truncation; raised at most
    ten times a second, with a plain write and no fsync (a stale, lower marker only weakens
    the check, never breaks it). A raise that falls inside the interval is written when it
    ends, so the marker catches up even if no further Ready comes (a quiesced group has none).
    Nothing is written for a replica that ``failed()``.
    """

    __slots__ = ("dir", "value", "_failed", "_written_at", "_due", "_timer")

    def __init__(self, directory: Path, failed: Callable[[], bool]) -> None:
        self.dir = directory
        #: The durable end on disk (what the last open found, or the last write).
        self.value = read_marker(directory)
        self._failed = failed
        self._written_at = 0.0
        #: A durable end waiting for the rate limit, and the timer that writes it.
        self._due = 0
        self._timer: asyncio.TimerHandle | None = None

    def lower(self, to: int) -> None:
        """The log was truncated to ``to``: the marker must not claim more, from now on."""
        self._due = min(self._due, to)
        if to < self.value:
            self.value = to
            write_marker(self.dir, to)
            self._written_at = time.monotonic()

    def advance(self, end: int) -> None:
        """Offsets below ``end`` are durable: raise the marker, within the rate limit."""
        if end <= self.value:
            return
        self._due = max(self._due, end)
        wait = self._written_at + MARKER_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._write_due()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._write_due)

    def write_now(self, end: int) -> None:
        """A clean stop: everything below ``end`` is durable; say so at once."""
        if end > self.value and not self._failed():
            self.value = end
            write_marker(self.dir, end)

    def cancel(self) -> None:
        """No more writes from a timer (the directory may be about to go with its topic)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write_due(self) -> None:
        self._timer = None
        due, self._due = self._due, 0
        if due > self.value and not self._failed():
            self.value = due
            write_marker(self.dir, due)
            self._written_at = time.monotonic()
