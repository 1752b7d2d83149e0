"""``LogConfig``: the knobs of one partition log, with Kafka's defaults where Kafka has one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FlushPolicy = Literal["always", "interval", "never"]
#: Kafka's ``cleanup.policy``; "delete,compact" is accepted and stored as "compact,delete".
CleanupPolicy = Literal["delete", "compact", "compact,delete"]
_POLICIES = {"delete": "delete", "compact": "compact", "compact,delete": "compact,delete",
             "delete,compact": "compact,delete"}

#: Relative offsets and positions in the index files are u32.
MAX_SEGMENT_BYTES = (1 << 31) - 1


@dataclass(slots=True, frozen=True)
class LogConfig:
    """Settings for one partition log.

    ``retention_ms``/``retention_bytes`` of ``None`` mean "keep forever" (Kafka's -1).
    ``flush_policy``:

    * ``always``: every append must be fsynced before it is reported durable. The log
      does not fsync by itself on append; the caller awaits
      :meth:`GroupCommit.durable` (or calls :meth:`Log.flush`) before acknowledging,
      which is what lets concurrent appends share one fsync.
    * ``interval``: an append fsyncs the log when ``flush_interval_ms`` has passed
      since the last flush (Kafka's ``flush.ms``).
    * ``never``: the OS decides; the log fsyncs only on :meth:`Log.flush` and
      :meth:`Log.close`.

    Compaction (``docs/compaction.md``) uses Kafka's topic settings under the same names:
    ``cleanup_policy`` with ``compact`` keeps the latest record per key; time and size
    retention apply only when it includes ``delete``. A log is due for cleaning when
    its dirty bytes reach ``min_cleanable_dirty_ratio`` of its cleanable bytes, or when
    a dirty record is older than ``max_compaction_lag_ms`` (``None``: never forced).
    Records newer than ``min_compaction_lag_ms`` stay dirty. A tombstone (a key with a
    null value) that is its key's latest record is kept for ``delete_retention_ms``
    after its offset was first cleaned, so a consumer reading from the start sees it.
    """

    segment_bytes: int = 1 << 30
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_ms: int | None = 7 * 24 * 3600 * 1000
    retention_bytes: int | None = None
    index_interval_bytes: int = 4096
    flush_policy: FlushPolicy = "always"
    flush_interval_ms: int = 1000
    #: Largest batch accepted by an append (Kafka's ``max.message.bytes`` is 1 MiB; a
    #: producer's 1 MiB batch plus its overhead must fit, so the default is larger).
    max_batch_bytes: int = 4 << 20
    #: Check each batch's CRC when it is read. Off, a read is header-walk only (cheaper,
    #: sendfile-friendly) and relies on recovery and the consumer's own CRC check.
    verify_crc_on_read: bool = True
    cleanup_policy: CleanupPolicy = "delete"
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int | None = None
    delete_retention_ms: int = 24 * 3600 * 1000

    @property
    def compact(self) -> bool:
        """The cleaner keeps only the latest record per key."""
        return self.cleanup_policy != "delete"

    @property
    def delete(self) -> bool:
        """Retention by time and size deletes old segments."""
        return self.cleanup_policy != "compact"

    def __post_init__(self) -> None:
        policy = _POLICIES.get(str(self.cleanup_policy).replace(" ", ""))
        if policy is None:
            raise ValueError(f"cleanup_policy must be delete, compact or compact,delete, "
                             f"got {self.cleanup_policy!r}")
        object.__setattr__(self, "cleanup_policy", policy)
        if not 0.0 <= self.min_cleanable_dirty_ratio <= 1.0:
            raise ValueError(f"min_cleanable_dirty_ratio must be in [0, 1], got {self.min_cleanable_dirty_ratio}")
        if self.min_compaction_lag_ms < 0:
            raise ValueError(f"min_compaction_lag_ms must be >= 0, got {self.min_compaction_lag_ms}")
        if self.max_compaction_lag_ms is not None and self.max_compaction_lag_ms < self.min_compaction_lag_ms:
            raise ValueError(f"max_compaction_lag_ms ({self.max_compaction_lag_ms}) must be >= "
                             f"min_compaction_lag_ms ({self.min_compaction_lag_ms}) or None")
        if self.delete_retention_ms < 0:
            raise ValueError(f"delete_retention_ms must be >= 0, got {self.delete_retention_ms}")
        if not 0 < self.segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in (0, {MAX_SEGMENT_BYTES}], got {self.segment_bytes}")
        if self.segment_ms <= 0:
            raise ValueError(f"segment_ms must be positive, got {self.segment_ms}")
        if self.retention_ms is not None and self.retention_ms < 0:
            raise ValueError(f"retention_ms must be >= 0 or None, got {self.retention_ms}")
        if self.retention_bytes is not None and self.retention_bytes < 0:
            raise ValueError(f"retention_bytes must be >= 0 or None, got {self.retention_bytes}")
        if self.index_interval_bytes <= 0:
            raise ValueError(f"index_interval_bytes must be positive, got {self.index_interval_bytes}")
        if self.flush_policy not in ("always", "interval", "never"):
            raise ValueError(f"flush_policy must be always, interval or never, got {self.flush_policy!r}")
        if self.flush_interval_ms <= 0:
            raise ValueError(f"flush_interval_ms must be positive, got {self.flush_interval_ms}")
        if not 61 <= self.max_batch_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"max_batch_bytes must be in [61, {MAX_SEGMENT_BYTES}], got {self.max_batch_bytes}")
