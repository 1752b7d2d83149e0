"""The hard-state journal tells a torn tail (a batch a crash cut short: never acknowledged,
cut at open) from damage to a batch that was acknowledged (a whole batch follows it: the
journal refuses to open rather than forget the votes after it), and still reads the
journals of its first format (records without frames)."""

from __future__ import annotations

import struct
from pathlib import Path

import msgpack
import pytest
from crc32c import crc32c

from strata.broker.replication import hardstate
from strata.broker.replication.hardstate import (
    JOURNAL_NAME,
    MAGIC,
    HardStateCorruptError,
    HardStateJournal,
)


def hs(term: int, vote: int | None = None) -> dict:
    return {"hs": [term, vote, [], False]}


def journal_of_batches(path: Path, batches: list[list[tuple[str, int | None, dict | None]]]) -> list[int]:
    """Write ``batches`` (one frame each); returns where each frame starts, and the end."""
    j = HardStateJournal(path)
    starts = [0]
    for batch in batches:
        j.write(batch)
        starts.append(path.stat().st_size)
    j.close()
    return starts


def states(path: Path, groups: list[str], topic_id: int | None = 1) -> list[dict | None]:
    j = HardStateJournal(path)
    try:
        return [j.get(g, topic_id) for g in groups]
    finally:
        j.close()


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


THREE = [[("a", 1, hs(1, 1))], [("b", 1, hs(2, 2)), ("a", 1, hs(3, 2))], [("c", 1, hs(4, 3))]]


@pytest.mark.parametrize("torn", ["short header", "short payload", "bad crc", "unwritten page"])
def test_a_torn_last_batch_is_cut_and_the_batches_before_it_are_kept(tmp_path: Path, torn: str) -> None:
    path = tmp_path / JOURNAL_NAME
    starts = journal_of_batches(path, THREE)
    data = path.read_bytes()
    last = starts[2]
    if torn == "short header":
        path.write_bytes(data[:last + 7])
    elif torn == "short payload":
        path.write_bytes(data[:-3])
    elif torn == "bad crc":
        flip(path, len(data) - 2)
    else:  # the length made it to disk, part of the payload did not
        path.write_bytes(data[:last + 14] + bytes(len(data) - last - 14))
    assert states(path, ["a", "b", "c"]) == [hs(3, 2), hs(2, 2), None]
    assert path.stat().st_size == last  # cut at open
    # And the journal goes on from there.
    j = HardStateJournal(path)
    j.write([("c", 1, hs(5, 1))])
    j.close()
    assert states(path, ["a", "b", "c"]) == [hs(3, 2), hs(2, 2), hs(5, 1)]


def test_a_crash_between_write_and_fsync_loses_only_the_unsynced_batch(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    journal_of_batches(path, THREE)
    acknowledged = path.read_bytes()
    # The next batch was being written: part of it reached the disk, the rest is garbage.
    unsynced = hardstate._frames([hardstate._pack_record("a", 1, hs(9, 9))])[0][0]
    with open(path, "ab") as f:
        f.write(unsynced[:len(unsynced) // 2] + b"\xde\xad\xbe\xef" * 5)
    assert states(path, ["a", "b", "c"]) == [hs(3, 2), hs(2, 2), hs(4, 3)]
    assert path.read_bytes() == acknowledged


@pytest.mark.parametrize("where", ["magic", "version", "length", "crc", "payload"])
def test_a_damaged_batch_followed_by_a_whole_one_refuses_to_open(tmp_path: Path, where: str) -> None:
    path = tmp_path / JOURNAL_NAME
    starts = journal_of_batches(path, THREE)
    middle = starts[1]
    at = middle + {"magic": 1, "version": 3, "length": 6, "crc": 9, "payload": 14}[where]
    flip(path, at)
    damaged = path.read_bytes()
    with pytest.raises(HardStateCorruptError) as err:
        HardStateJournal(path)
    message = str(err.value)
    assert str(path) in message and f"at byte {middle}" in message, message
    assert f"followed by a whole one at byte {starts[2]}" in message, message
    assert "refusing to start" in message
    assert err.value.hint
    # Nothing was cut: the operator finds the file as the disk left it.
    assert path.read_bytes() == damaged


def test_a_damaged_first_batch_is_not_taken_for_a_journal_of_the_first_format(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    journal_of_batches(path, THREE)
    flip(path, 0)  # the magic of the first frame
    with pytest.raises(HardStateCorruptError, match="at byte 0"):
        HardStateJournal(path)


def test_a_payload_that_spells_the_magic_does_not_pass_for_a_batch(tmp_path: Path) -> None:
    """A term can spell the magic and version, and garbage can follow it like a length and
    a CRC: torn, that batch is still a torn tail, not damage followed by a whole batch."""
    spelled = int.from_bytes(MAGIC + bytes([hardstate.FORMAT_VERSION]), "big")
    path = tmp_path / JOURNAL_NAME
    starts = journal_of_batches(path, [[("a", 1, hs(1))], [("b", 1, hs(spelled, 1)), ("c", 1, hs(2))]])
    data = path.read_bytes()
    assert data.count(MAGIC) == 3  # two frames, and the term
    flip(path, len(data) - 1)  # the last batch torn after the term
    assert states(path, ["a", "b", "c"]) == [hs(1), None, None]
    assert path.stat().st_size == starts[1]


def test_a_frame_of_an_unknown_format_version_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    payload = msgpack.packb([["a", 1, hs(1)]], use_bin_type=True)
    prefix = struct.pack(">3sBI", MAGIC, 3, len(payload))
    path.write_bytes(prefix + struct.pack(">I", crc32c(payload, crc32c(prefix))) + payload)
    with pytest.raises(HardStateCorruptError, match="journal format 3") as err:
        HardStateJournal(path)
    assert "version" in err.value.hint


def first_format(records: list[tuple[str, int | None, dict | None]]) -> bytes:
    """A journal as the first format wrote it: ``length | crc32c | msgpack`` per record."""
    out = b""
    for rec in records:
        payload = msgpack.packb(list(rec), use_bin_type=True)
        out += struct.pack(">II", len(payload), crc32c(payload)) + payload
    return out


def test_a_journal_of_the_first_format_keeps_every_state_and_is_rewritten_in_frames(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    records = [(f"t-{i}", 7, hs(i, i % 3)) for i in range(50)]
    records += [("t-3", 7, None), ("t-4", 8, hs(40, 1)), ("t-5", 6, None)]  # deleted; created again; old tombstone
    path.write_bytes(first_format(records))
    expect = {f"t-{i}": (7, hs(i, i % 3)) for i in range(50)}
    del expect["t-3"]
    expect["t-4"] = (8, hs(40, 1))

    j = HardStateJournal(path)
    assert {g: j.get(g, t) for g, (t, _) in expect.items()} == {g: s for g, (_, s) in expect.items()}
    assert "t-3" not in j and j.get("t-4", 7) is None
    j.write([("t-0", 7, hs(100, 2))])
    j.close()
    assert path.read_bytes().startswith(MAGIC)

    expect["t-0"] = (7, hs(100, 2))
    j = HardStateJournal(path)
    assert {g: j.get(g, t) for g, (t, _) in expect.items()} == {g: s for g, (_, s) in expect.items()}
    assert len(j) == len(expect)
    j.close()


def test_a_journal_of_the_first_format_keeps_its_rule_for_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(first_format([("a", 1, hs(1)), ("b", 1, hs(2))]) + b"\x00\x00\x00\x40torn")
    assert states(path, ["a", "b"]) == [hs(1), hs(2)]
    assert path.read_bytes().startswith(MAGIC)


def test_a_rewrite_then_reopen_keeps_every_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardstate, "COMPACT_MIN_BYTES", 2048)
    path = tmp_path / JOURNAL_NAME
    j = HardStateJournal(path)
    expect: dict[str, dict] = {}
    rewrites = 0
    for term in range(400):
        batch = [(f"g{(term * 7 + k) % 23}", 1, hs(term, k)) for k in range(3)]
        size = path.stat().st_size
        j.write(batch)
        if path.stat().st_size < size:
            rewrites += 1
        expect.update({g: s for g, _, s in batch})
    j.write([("g0", 1, None)])
    del expect["g0"]
    j.close()
    assert rewrites >= 2
    j = HardStateJournal(path)
    assert [j.get(g, 1) for g in sorted(expect)] == [expect[g] for g in sorted(expect)]
    assert "g0" not in j and len(j) == len(expect)
    j.close()


def test_a_batch_bigger_than_a_frame_is_written_as_several_and_reads_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardstate, "MAX_FRAME_BYTES", 256)
    path = tmp_path / JOURNAL_NAME
    j = HardStateJournal(path)
    j.write([(f"group-{i}", 1, hs(i, 1)) for i in range(40)])
    assert j.fsyncs > 1
    j.close()
    assert path.read_bytes().count(MAGIC) == j.fsyncs
    assert states(path, [f"group-{i}" for i in range(40)]) == [hs(i, 1) for i in range(40)]


def test_a_first_batch_that_never_reached_the_disk_opens_an_empty_journal(tmp_path: Path) -> None:
    """The file's length made it to disk, its bytes did not (zeros): nothing was acknowledged."""
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(bytes(300))
    j = HardStateJournal(path)
    assert len(j) == 0
    j.write([("a", 1, hs(1))])
    j.close()
    assert states(path, ["a"]) == [hs(1)]
