"""LeaderEpochCache: epoch -> start offset, as Raft and OffsetsForLeaderEpoch use it."""

from __future__ import annotations

from strata.storage.epoch_cache import LeaderEpochCache


def cache(tmp_path, entries) -> LeaderEpochCache:
    return LeaderEpochCache(str(tmp_path / "leader-epoch-checkpoint"), entries)


def test_assign_only_records_new_epochs(tmp_path):
    c = cache(tmp_path, [])
    assert c.assign(1, 0)
    assert not c.assign(1, 5)
    assert c.assign(4, 10)
    assert c.entries == [(1, 0), (4, 10)] and c.latest_epoch == 4


def test_lookup_and_end_offsets(tmp_path):
    c = cache(tmp_path, [(1, 0), (4, 10), (6, 25)])
    assert [c.epoch_for_offset(o) for o in (0, 9, 10, 24, 25, 1000)] == [1, 1, 4, 4, 6, 6]
    assert c.end_offset_for_epoch(0, 30) == (-1, -1)
    assert c.end_offset_for_epoch(1, 30) == (1, 10)
    assert c.end_offset_for_epoch(5, 30) == (4, 25)
    assert c.end_offset_for_epoch(6, 30) == (6, 30)
    assert c.end_offset_for_epoch(9, 30) == (6, 30)


def test_truncation_from_both_ends(tmp_path):
    c = cache(tmp_path, [(1, 0), (4, 10), (6, 25), (7, 40)])
    assert c.truncate_from_end(25)
    assert c.entries == [(1, 0), (4, 10)]
    assert not c.truncate_from_end(11)
    assert c.assign(8, 30)
    assert c.truncate_from_start(31)
    # The epoch covering log_start_offset - 1 stays, with its own start offset.
    assert c.entries == [(8, 30)]
    c = cache(tmp_path, [(1, 0), (4, 10), (6, 25)])
    assert c.truncate_from_start(25)
    assert c.entries == [(4, 10), (6, 25)] and c.epoch_for_offset(24) == 4


def test_checkpoint_round_trip_and_rejection_of_bad_files(tmp_path):
    c = cache(tmp_path, [(1, 0), (4, 10)])
    c.flush()
    again, ok = LeaderEpochCache.load(c.path)
    assert ok and again.entries == c.entries
    with open(c.path, "w") as f:
        f.write("0\n2\n4 10\n1 20\n")  # epochs going back
    again, ok = LeaderEpochCache.load(c.path)
    assert not ok and again.entries == []
