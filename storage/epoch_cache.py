"""``LeaderEpochCache``: leader epoch (= Raft term) -> first offset of that epoch.

Kafka's design (KIP-101/KIP-279): a short list of ``(epoch, start_offset)`` pairs,
strictly increasing in both, persisted in ``leader-epoch-checkpoint``. It answers
"which epoch wrote offset o" by binary search instead of a scan of the log, and
"where does epoch e end" for a follower finding the point where its log diverges
from the leader's (``OffsetsForLeaderEpoch``, Raft's fast backtracking).

One Strata refinement: when the log start offset moves forward (retention, or a
follower reset to the leader's log start), the entry covering ``log_start_offset - 1``
is kept with its original start offset, so the epoch of the last offset *before* the
log still answers. Raft needs it as ``prevLogTerm`` for the first entry the log holds.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right
from collections.abc import Sequence

from strata.storage.checkpoint import read_checkpoint, write_checkpoint

__all__ = ["UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET", "LeaderEpochCache"]

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1

#: A partition that sees more leader changes than this without retention catching
#: up is misbehaving; the bound keeps the checkpoint (written on every change) small.
MAX_EPOCH_ENTRIES = 1 << 16

log = logging.getLogger("strata.storage")


class LeaderEpochCache:
    __slots__ = ("_changes", "_epochs", "_lock", "_starts", "_written", "path")

    def __init__(self, path: str, entries: list[tuple[int, int]] | None = None):
        self.path = path
        self._epochs: list[int] = []
        self._starts: list[int] = []
        #: Changes made (on the owner's thread) and the count the checkpoint on disk
        #: reflects: a flush job may write the checkpoint from another thread (see
        #: ``Log.begin_flush``), so writes are serialized and never go back in time.
        self._changes = 0
        self._written = 0
        self._lock = threading.Lock()
        for epoch, start in entries or []:
            self._epochs.append(epoch)
            self._starts.append(start)
        self._check()

    @classmethod
    def load(cls, path: str) -> tuple[LeaderEpochCache, bool]:
        """The cache from its checkpoint, and whether the checkpoint was there and sane."""
        raw = read_checkpoint(path, 2)
        if raw is None:
            return cls(path), False
        entries = [(e, s) for e, s in raw]
        ok = all(e >= 0 and s >= 0 for e, s in entries) and all(
            a[0] < b[0] and a[1] < b[1] for a, b in zip(entries, entries[1:], strict=False)
        )
        if not ok:
            log.warning("%s: entries are not increasing; ignoring it", path)
            return cls(path), False
        return cls(path, entries), True

    def _check(self) -> None:
        assert len(self._epochs) == len(self._starts)
        assert len(self._epochs) <= MAX_EPOCH_ENTRIES

    def flush(self) -> None:
        """Write the checkpoint now (write, fsync, rename, fsync the directory)."""
        self.write(self._changes, self.entries)

    @property
    def unsaved(self) -> bool:
        """Whether the checkpoint on disk lags the cache."""
        return self._changes != self._written

    def snapshot(self) -> tuple[int, list[tuple[int, int]]]:
        """What :meth:`write` needs to save the cache as it is now, from any thread."""
        return self._changes, self.entries

    def write(self, changes: int, entries: Sequence[tuple[int, ...]]) -> None:
        """Save a :meth:`snapshot` (thread-safe); a snapshot older than what is on disk is dropped."""
        with self._lock:
            if changes < self._written:
                return
            write_checkpoint(self.path, list(entries))
            self._written = changes

    @property
    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts, strict=True))

    @property
    def latest_epoch(self) -> int | None:
        return self._epochs[-1] if self._epochs else None

    @property
    def last_start_offset(self) -> int:
        return self._starts[-1] if self._starts else -1

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset`` if it is newer than the latest.

        Returns whether the cache changed (the caller then writes the checkpoint).
        """
        assert epoch >= 0 and start_offset >= 0, (epoch, start_offset)
        if self._epochs and epoch <= self._epochs[-1]:
            assert epoch == self._epochs[-1], f"epoch {epoch} goes back from {self._epochs[-1]}"
            return False
        assert not self._starts or start_offset > self._starts[-1], (start_offset, self._starts[-1])
        if len(self._epochs) >= MAX_EPOCH_ENTRIES:
            # Keep the newest; the oldest only serve offsets long deleted by now.
            del self._epochs[0]
            del self._starts[0]
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        self._changes += 1
        return True

    def epoch_for_offset(self, offset: int) -> int | None:
        """Epoch of the entry covering ``offset`` (the caller bounds ``offset`` to the log)."""
        i = bisect_right(self._starts, offset) - 1
        return self._epochs[i] if i >= 0 else None

    def end_offset_for_epoch(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka's ``endOffsetFor``: ``(largest epoch <= epoch, first offset after it)``.

        The end offset is the start of the next higher epoch, or the log end offset for
        the latest epoch. ``(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`` if ``epoch`` is
        below every known epoch or the cache is empty.
        """
        i = bisect_right(self._epochs, epoch) - 1
        if i < 0:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if i == len(self._epochs) - 1:
            return self._epochs[i], log_end_offset
        return self._epochs[i], self._starts[i + 1]

    def truncate_from_end(self, end_offset: int) -> bool:
        """Forget epochs that start at or after ``end_offset`` (the log was cut there)."""
        i = bisect_right(self._starts, end_offset - 1)
        if i == len(self._starts):
            return False
        del self._epochs[i:]
        del self._starts[i:]
        self._changes += 1
        return True

    def truncate_from_start(self, log_start_offset: int) -> bool:
        """Forget epochs wholly before the log, keeping the one covering ``log_start_offset - 1``."""
        i = bisect_right(self._starts, log_start_offset - 1) - 1
        if i <= 0:
            return False
        del self._epochs[:i]
        del self._starts[:i]
        self._changes += 1
        return True

    def reset(self, epoch: int | None, start_offset: int) -> None:
        """Start over with (at most) one entry: used when the whole log is replaced."""
        self._epochs.clear()
        self._starts.clear()
        self._changes += 1
        if epoch is not None:
            self._epochs.append(epoch)
            self._starts.append(start_offset)
