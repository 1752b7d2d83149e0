"""Records of ``__consumer_offsets``: they round-trip, the latest per key wins, and the
group-to-partition mapping is stable (the same in every process)."""

from __future__ import annotations

import subprocess
import sys

from strata.broker.groups.offsets_log import (
    GroupRecord,
    OffsetRecord,
    OffsetValue,
    build_batches,
    decode_records,
    group_key,
    group_value,
    offset_key,
    offset_value,
    partition_for_group,
)


def test_records_round_trip_through_batches_including_tombstones() -> None:
    recs = [
        (offset_key("g", "events", 3), offset_value(OffsetValue(42, 7, "meta"))),
        (group_key("g"), group_value({"epoch": 3, "assignor": "range", "members": []})),
        (offset_key("g", "events", 3), None),
        (group_key("g"), None),
    ]
    batches = build_batches(recs, now_ms=1234)
    out = list(decode_records(b"".join(batches)))
    assert out == [
        OffsetRecord("g", "events", 3, OffsetValue(42, 7, "meta"), 1234),
        GroupRecord("g", {"epoch": 3, "assignor": "range", "members": []}, 1234),
        OffsetRecord("g", "events", 3, None, 1234),
        GroupRecord("g", None, 1234),
    ]


def test_big_writes_split_into_bounded_batches() -> None:
    recs = [(offset_key("g", "t", p), offset_value(OffsetValue(p))) for p in range(2500)]
    batches = build_batches(recs, now_ms=1)
    assert len(batches) == 3
    assert [r.partition for r in decode_records(b"".join(batches))] == list(range(2500))


def test_unknown_kinds_and_versions_are_skipped() -> None:
    import msgpack

    from strata.client.records import RecordBatchBuilder

    b = RecordBatchBuilder()
    b.append(1, msgpack.packb([9, "future"]), msgpack.packb({"v": 0}))
    b.append(1, offset_key("g", "t", 0), msgpack.packb({"v": 99, "offset": 1}))
    b.append(1, b"\xc1not msgpack", b"x")
    b.append(1, None, b"no key")
    b.append(1, offset_key("g", "t", 1), offset_value(OffsetValue(5)))
    assert [r.partition for r in decode_records(b.build())] == [1]


def test_group_partition_is_stable_across_processes() -> None:
    here = [partition_for_group(g, 12) for g in ("orders", "billing", "g", "a-much-longer-group-name")]
    code = ("from strata.broker.groups.offsets_log import partition_for_group as f;"
            "print([f(g, 12) for g in ('orders', 'billing', 'g', 'a-much-longer-group-name')])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == str(here)
    assert all(0 <= p < 12 for p in here)
