"""``LogConfig``: the knobs of one partition log, with Kafka's defaults where Kafka has one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FlushPolicy = Literal["always", "interval", "never"]

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

    def __post_init__(self) -> None:
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
