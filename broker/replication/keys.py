"""The produce-path check of compacted topics: every record needs a key.

A compacted log keeps the latest record per key, so a record without one has no place in
it: Kafka refuses such a batch with ``INVALID_RECORD``, and so does Strata, on the leader,
before the batch takes a producer sequence number (the same producer goes on writing).
It is the one per-record check of the produce path, and only compacted topics pay it.
"""

from __future__ import annotations

from strata.client.batch import BatchHeader
from strata.client.errors import ErrorCode, error_for
from strata.storage import UndecodableRecords, first_record_without_key


def require_keys(topic: str, cleanup_policy: str, h: BatchHeader, batch: memoryview) -> None:
    """Raise ``INVALID_RECORD`` if a record of ``batch`` (of a compacted ``topic``) has no key."""
    try:
        delta = first_record_without_key(batch, h)
    except UndecodableRecords as exc:
        raise error_for(ErrorCode.INVALID_RECORD,
                        f"{topic} is compacted, so the broker reads each record's key, and "
                        f"cannot read this batch's records: {exc}") from None
    if delta is not None:
        raise error_for(ErrorCode.INVALID_RECORD,
                        f"{topic} is compacted (cleanup.policy={cleanup_policy}) "
                        f"and refuses records without a key; record {delta} of the batch has none")
