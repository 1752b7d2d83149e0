"""LogSegment, OffsetIndex, TimeIndex and checkpoints on their own."""

from __future__ import annotations

import os

import pytest

from strata.client.batch import read_header
from strata.storage.checkpoint import read_checkpoint, write_checkpoint
from strata.storage.index import OffsetIndex, TimeIndex
from strata.storage.segment import LogSegment
from tests.storage_helpers import make_batch


def fill(seg: LogSegment, n: int, *, ts0: int = 100, start: int = 0) -> list[tuple[int, int, int]]:
    """Append batches ``start..start+n-1`` of 2 records; return (base offset, position, size) of each."""
    out = []
    for i in range(start, start + n):
        b = make_batch([b"x" * (10 + i % 7)] * 2, base_offset=seg.next_offset, timestamp=ts0 + i - start)
        h = read_header(b)
        out.append((h.base_offset, seg.size, h.size))
        seg.append([b], [(h.base_offset, h.next_offset, h.size, h.max_timestamp)], len(b))
    return out


@pytest.fixture
def seg(tmp_path):
    s = LogSegment.create(str(tmp_path), 1000, index_interval_bytes=150)
    yield s
    s.close()


def test_a_new_segment_is_named_by_its_base_offset_and_writes_its_indexes_when_persisted(tmp_path, seg):
    assert sorted(os.listdir(tmp_path)) == ["00000000000000001000.log"], "no empty index files at creation"
    assert seg.is_empty and seg.next_offset == 1000
    seg.persist_indexes(fsync=False)
    assert sorted(os.listdir(tmp_path)) == [
        "00000000000000001000.index",
        "00000000000000001000.log",
        "00000000000000001000.timeindex",
    ]


def test_index_entries_are_sparse_and_point_at_batch_starts(seg):
    batches = fill(seg, 40)
    idx = seg.offset_index
    assert 0 < len(idx) < 40
    starts = {base: pos for base, pos, _ in batches}
    for off, pos in zip(idx.offsets, idx.positions, strict=True):
        assert starts[off] == pos
    # Consecutive entries are at least index_interval_bytes apart.
    gaps = [b - a for a, b in zip(idx.positions, idx.positions[1:], strict=False)]
    assert min(gaps) >= 150
    # Every offset maps to its batch.
    for base, pos, _ in batches:
        for o in (base, base + 1):
            p, h = seg.batch_at(o)
            assert (p, h.base_offset) == (pos, base)
    assert seg.batch_at(seg.next_offset) is None


def test_indexes_round_trip_through_their_files(tmp_path, seg):
    fill(seg, 40)
    seg.persist_indexes(fsync=True)
    assert os.path.getsize(seg.offset_index.path) == 8 * len(seg.offset_index)
    assert os.path.getsize(seg.time_index.path) == 12 * len(seg.time_index)
    again = OffsetIndex(seg.offset_index.path, 1000)
    assert again.load(seg.size)
    assert list(again.offsets) == list(seg.offset_index.offsets)
    tidx = TimeIndex(seg.time_index.path, 1000)
    assert tidx.load(again.offsets)
    assert list(tidx.timestamps) == list(seg.time_index.timestamps)


@pytest.mark.parametrize("content", [b"\x00" * 64, b"\x01" * 7, b"\x00\x00\x00\x05\x00\x10\x00\x00"])
def test_an_index_that_fails_the_sanity_check_is_refused(tmp_path, seg, content):
    fill(seg, 10)
    with open(seg.offset_index.path, "wb") as f:
        f.write(content)
    assert not OffsetIndex(seg.offset_index.path, 1000).load(seg.size)


def test_time_index_must_pair_with_the_offset_index(seg):
    fill(seg, 40)
    seg.persist_indexes(fsync=False)
    t = TimeIndex(seg.time_index.path, 1000)
    assert not t.load(seg.offset_index.offsets[:-1])


def test_restore_rebuilds_the_tail_state_from_the_last_index_entry(tmp_path, seg):
    fill(seg, 30)
    seg.persist_indexes(fsync=False)
    expected = (seg.size, seg.next_offset, seg.max_timestamp, seg.bytes_since_index, list(seg.offset_index.offsets))
    again = LogSegment.open_existing(str(tmp_path), 1000, 150)
    assert again.restore()
    assert (again.size, again.next_offset, again.max_timestamp, again.bytes_since_index,
            list(again.offset_index.offsets)) == expected
    again.close()


def test_truncate_to_cuts_the_file_and_the_indexes(seg):
    batches = fill(seg, 30)
    base, pos, _ = batches[17]
    cut = seg.truncate_to(base)
    assert seg.size == pos and seg.next_offset == base and cut > 0
    assert os.fstat(seg.fd).st_size == pos
    assert all(o < base for o in seg.offset_index.offsets)
    assert seg.max_timestamp == 100 + 16
    with pytest.raises(ValueError, match="batch boundary"):
        seg.truncate_to(base - 1)
    # Appending after a truncation indexes exactly as a fresh segment would.
    fill(seg, 13, ts0=117, start=17)
    other = LogSegment.create(seg.directory, 7000, 150)
    fill(other, 30)
    assert [p for _, p, _ in fill_positions(other)] == [p for _, p, _ in fill_positions(seg)]
    assert list(other.offset_index.positions) == list(seg.offset_index.positions)
    assert list(other.time_index.timestamps) == list(seg.time_index.timestamps)
    assert other.max_timestamp == seg.max_timestamp
    other.delete()


def fill_positions(seg: LogSegment) -> list[tuple[int, int, int]]:
    out = []
    pos = 0
    while pos < seg.size:
        h = read_header(os.pread(seg.fd, 61, pos))
        out.append((h.base_offset, pos, h.size))
        pos += h.size
    return out


def test_find_timestamp_walks_at_most_from_the_right_entry(seg):
    fill(seg, 40, ts0=1000)
    assert seg.find_timestamp(999) == 1000
    assert seg.find_timestamp(1020) == 1040
    assert seg.find_timestamp(1039) == 1078
    assert seg.find_timestamp(1040) is None


def test_checkpoint_files_are_replaced_whole_and_bad_ones_ignored(tmp_path):
    p = str(tmp_path / "leader-epoch-checkpoint")
    write_checkpoint(p, [(1, 0), (3, 40)])
    with open(p) as f:
        assert f.read() == "0\n2\n1 0\n3 40\n"
    assert read_checkpoint(p, 2) == [(1, 0), (3, 40)]
    assert not os.path.exists(p + ".tmp")
    for bad in ["", "0\n3\n1 0\n", "1\n1\n5\n", "0\n1\nx y\n", "0\n1\n1 2 3\n"]:
        with open(p, "w") as f:
            f.write(bad)
        assert read_checkpoint(p, 2) is None
    assert read_checkpoint(str(tmp_path / "missing"), 1) is None
