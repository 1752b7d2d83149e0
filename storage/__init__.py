"""Strata's storage engine: segment files, indexes and the partition log.

``Log`` is the entry point (see ``docs/internals.md``, section Storage);
``GroupCommit`` shares fsyncs between concurrent appends to many logs;
``LogCleaner`` compacts logs whose ``cleanup_policy`` includes ``compact``
(``docs/compaction.md``).
"""

from strata.storage.batch_rewrite import UndecodableRecords, first_record_without_key
from strata.storage.clean_state import CleaningStatus
from strata.storage.cleaner import (
    CleanAbandonedError,
    CleanerConfig,
    CleanPlan,
    CleanStats,
    LogCleaner,
)
from strata.storage.config import LogConfig
from strata.storage.epoch_cache import LeaderEpochCache
from strata.storage.errors import (
    BatchTooLargeError,
    CorruptBatchError,
    InvalidAppendError,
    LogFullError,
    LogOfflineError,
    OffsetOutOfRangeError,
    StorageError,
)
from strata.storage.group_commit import GroupCommit
from strata.storage.index import OffsetIndex, TimeIndex
from strata.storage.log import AppendInfo, FlushJob, Log, RecoveryReport
from strata.storage.logical_digest import logical_digest
from strata.storage.segment import FileSlice, LogSegment

__all__ = [
    "AppendInfo",
    "BatchTooLargeError",
    "CleanAbandonedError",
    "CleanPlan",
    "CleanStats",
    "CleanerConfig",
    "CleaningStatus",
    "CorruptBatchError",
    "FileSlice",
    "FlushJob",
    "GroupCommit",
    "InvalidAppendError",
    "LeaderEpochCache",
    "Log",
    "LogCleaner",
    "LogConfig",
    "LogFullError",
    "LogOfflineError",
    "LogSegment",
    "OffsetIndex",
    "OffsetOutOfRangeError",
    "RecoveryReport",
    "StorageError",
    "TimeIndex",
    "UndecodableRecords",
    "first_record_without_key",
    "logical_digest",
]
