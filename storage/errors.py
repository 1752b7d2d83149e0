"""Exceptions raised by the storage engine.

Each one carries what a caller needs to answer a client or decide what to do next
(the valid offset range, the batch at fault), so the broker can map it to a wire
error code without parsing messages. :class:`CorruptBatchError` is the client
package's class, re-exported, because a batch is corrupt in the same way wherever
the bad bytes were found.
"""

from __future__ import annotations

import errno

from strata.client.batch import CorruptBatchError

__all__ = [
    "BatchTooLargeError",
    "CorruptBatchError",
    "InvalidAppendError",
    "LogFullError",
    "LogOfflineError",
    "OffsetOutOfRangeError",
    "StorageError",
]


class StorageError(Exception):
    """Base class for storage failures that are not about a single bad batch."""


class OffsetOutOfRangeError(StorageError):
    """A read asked for an offset outside ``[log_start_offset, log_end_offset]``.

    The valid range travels with the error so that a consumer (or a lagging
    follower) can reset to it without another round trip.
    """

    def __init__(self, offset: int, log_start_offset: int, log_end_offset: int, where: str = ""):
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset
        prefix = f"{where}: " if where else ""
        super().__init__(
            f"{prefix}offset {offset} is out of range: the log holds "
            f"[{log_start_offset}, {log_end_offset}) (log start offset, log end offset)"
        )


class InvalidAppendError(StorageError, ValueError):
    """An append that breaks the log's rules: offsets not contiguous, an epoch going back.

    The log is unchanged when this is raised.
    """


class BatchTooLargeError(InvalidAppendError):
    """A batch larger than ``LogConfig.max_batch_bytes`` (or a segment can ever hold)."""

    def __init__(self, size: int, limit: int):
        self.size = size
        self.limit = limit
        super().__init__(f"record batch of {size} bytes exceeds the limit of {limit} bytes")


class LogFullError(StorageError, OSError):
    """The disk is full (ENOSPC). The partial write was cut back; the log is as before."""

    def __init__(self, path: str, detail: str = ""):
        OSError.__init__(self, errno.ENOSPC, f"no space left on device while appending to {path}"
                         + (f" ({detail})" if detail else "") + "; free space, then retry")
        self.path = path


class LogOfflineError(StorageError):
    """An fsync or write failed in a way that leaves the on-disk state unknown.

    After a failed fsync the kernel may already have dropped the dirty pages, so
    retrying could report data durable that is not (PostgreSQL's "fsyncgate"). The
    log therefore refuses further appends and flushes until it is reopened, which
    runs recovery.
    """
