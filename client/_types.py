"""The small value types users see: partitions, delivery reports, consumed records.

Named as kafka-python and aiokafka name them, so code written for those reads the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: ``ConsumerRecord.timestamp_type``: the producer's clock (Kafka's CreateTime).
CREATE_TIME = 0
#: ``ConsumerRecord.timestamp_type``: the broker's clock at append (LogAppendTime).
LOG_APPEND_TIME = 1


@dataclass(slots=True, frozen=True, order=True)
class TopicPartition:
    """One partition of one topic; hashable, so it keys dicts and sets."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(slots=True, frozen=True)
class RecordMetadata:
    """Where an acknowledged record was written.

    ``offset`` is -1 for ``acks=0`` (the broker never says). ``timestamp`` is the record's
    timestamp in ms: the one it was sent with, or the broker's append time if the topic
    uses LogAppendTime.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(slots=True, frozen=True)
class ConsumerRecord:
    """One consumed record. ``key``/``value`` are bytes or None; header values likewise."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int = -1
    timestamp_type: int = CREATE_TIME

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(slots=True, frozen=True)
class OffsetAndTimestamp:
    """``Consumer.offsets_for_times()``'s answer for a partition (kafka-python's shape):
    the first offset whose record is at or after the time asked for, and that record's
    timestamp (-1 when the broker does not report it)."""

    offset: int
    timestamp: int
