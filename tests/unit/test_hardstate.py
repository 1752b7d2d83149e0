"""The broker's hard-state journal: what a group saved is what it reads back after a crash,
a wave of saves costs one fsync, and pre-journal per-group files are still read."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import msgpack
import pytest

from strata.broker.replication import hardstate
from strata.broker.replication.hardstate import (
    JOURNAL_NAME,
    LEGACY_FILE_NAME,
    HardStateJournal,
    HardStateWriter,
)


def hs(term: int, vote: int | None = None) -> dict:
    return {"hs": [term, vote, [], False]}


def group_dir(data: Path, name: str) -> Path:
    d = data / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_a_wave_of_saves_is_one_fsync_and_reads_back_after_reopen(tmp_path: Path) -> None:
    async def wave() -> HardStateWriter:
        w = HardStateWriter(tmp_path)
        dirs = [group_dir(tmp_path, f"t-{i}") for i in range(500)]
        for d in dirs:
            assert w.load(d, 7) == {}
        await asyncio.gather(*(w.save(d, hs(3, i % 3)) for i, d in enumerate(dirs)))
        return w

    w = asyncio.run(wave())
    assert w.journal.fsyncs == 1 and w.batches == 1
    w.close()
    again = HardStateWriter(tmp_path)
    for i in range(500):
        assert again.load(tmp_path / f"t-{i}", 7) == hs(3, i % 3)
    again.close()


def test_the_latest_save_of_a_group_wins(tmp_path: Path) -> None:
    async def saves() -> None:
        w = HardStateWriter(tmp_path)
        d = group_dir(tmp_path, "t-0")
        w.load(d, 1)
        for term in range(1, 20):
            await w.save(d, hs(term, term % 3))
        w.close()

    asyncio.run(saves())
    j = HardStateJournal(tmp_path / JOURNAL_NAME)
    assert j.get("t-0", 1) == hs(19, 1)
    j.close()


def test_a_topic_created_again_under_the_same_name_starts_fresh(tmp_path: Path) -> None:
    async def run() -> None:
        w = HardStateWriter(tmp_path)
        d = group_dir(tmp_path, "t-0")
        w.load(d, 1)
        await w.save(d, hs(5, 2))
        # Created again (topic id 2) before the old one's tombstone was written:
        assert w.load(d, 2) == {}
        await w.save(d, hs(1, 1))
        w.forget(d, 1)  # the old topic's tombstone must not remove the new group's state
        await w.settle(d)
        await asyncio.sleep(0)
        while w.pending:
            await asyncio.sleep(0.001)
        w.close()

    asyncio.run(run())
    w = HardStateWriter(tmp_path)
    assert w.load(tmp_path / "t-0", 2) == hs(1, 1)
    assert w.load(tmp_path / "t-0", 1) == {}
    w.close()


def test_forget_removes_a_deleted_group(tmp_path: Path) -> None:
    async def run() -> None:
        w = HardStateWriter(tmp_path)
        d = group_dir(tmp_path, "t-0")
        w.load(d, 4)
        await w.save(d, hs(2))
        w.forget(d, 4)
        while w.pending:
            await asyncio.sleep(0.001)
        w.close()

    asyncio.run(run())
    j = HardStateJournal(tmp_path / JOURNAL_NAME)
    assert "t-0" not in j
    j.close()


def test_a_pre_journal_file_is_read_then_replaced_by_the_journal(tmp_path: Path) -> None:
    d = group_dir(tmp_path, "t-0")
    (d / LEGACY_FILE_NAME).write_bytes(msgpack.packb(hs(9, 1), use_bin_type=True))

    async def run() -> None:
        w = HardStateWriter(tmp_path)
        assert w.load(d, 3) == hs(9, 1)
        await w.save(d, hs(10, 2))
        w.close()

    asyncio.run(run())
    assert not (d / LEGACY_FILE_NAME).exists()
    w = HardStateWriter(tmp_path)
    assert w.load(d, 3) == hs(10, 2)
    w.close()


def test_a_torn_tail_is_cut_and_later_records_are_readable(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    j = HardStateJournal(path)
    j.write([("a", 1, hs(1))])
    j.write([("b", 1, hs(2))])
    j.close()
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x40torn")  # a record header whose body never made it
    j = HardStateJournal(path)
    assert path.stat().st_size == size
    j.write([("c", 1, hs(3))])
    j.close()
    j = HardStateJournal(path)
    assert (j.get("a", 1), j.get("b", 1), j.get("c", 1)) == (hs(1), hs(2), hs(3))
    j.close()


def test_a_crash_at_any_byte_keeps_every_acknowledged_batch(tmp_path: Path) -> None:
    """Cut the file anywhere: what reads back is the state after exactly the batches that
    ended before the cut (a batch is one frame: all of it or none of it)."""
    rng = random.Random(17)
    path = tmp_path / JOURNAL_NAME
    j = HardStateJournal(path)
    states: list[dict[str, dict]] = [{}]
    batch_ends = [0]
    for _ in range(60):
        batch = [(f"g{rng.randrange(12)}", 1, hs(rng.randrange(1, 1000), rng.randrange(3)))
                 for _ in range(rng.randint(1, 5))]
        j.write(batch)
        after = dict(states[-1])
        for g, _, s in batch:
            after[g] = s
        states.append(after)
        batch_ends.append(path.stat().st_size)
    j.close()
    data = path.read_bytes()
    for cut in sorted(rng.sample(range(len(data) + 1), 80)):
        p = tmp_path / f"cut-{cut}"
        p.write_bytes(data[:cut])
        r = HardStateJournal(p)
        got = {g: r.get(g, 1) for g in (f"g{i}" for i in range(12)) if g in r}
        r.close()
        whole = max(i for i, e in enumerate(batch_ends) if e <= cut)
        assert got == states[whole], cut
        assert p.stat().st_size == batch_ends[whole], cut


def test_the_journal_stays_bounded_by_the_live_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardstate, "COMPACT_MIN_BYTES", 4096)
    path = tmp_path / JOURNAL_NAME
    j = HardStateJournal(path)
    for term in range(2000):
        j.write([(f"g{term % 10}", 1, hs(term))])
    assert path.stat().st_size < 4 * 4096
    j.close()
    j = HardStateJournal(path)
    assert [j.get(f"g{i}", 1) for i in range(10)] == [hs(1990 + i) for i in range(10)]
    j.close()


def test_a_failed_fsync_acknowledges_nothing_and_the_journal_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / JOURNAL_NAME
    j = HardStateJournal(path)
    j.write([("a", 1, hs(1))])
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError):
        j.write([("a", 1, hs(2)), ("b", 1, hs(2))])
    assert j.get("a", 1) == hs(1) and j.get("b", 1) is None
    monkeypatch.setattr(os, "fdatasync", real)
    j.write([("b", 1, hs(3))])
    j.close()
    j = HardStateJournal(path)
    assert (j.get("a", 1), j.get("b", 1)) == (hs(1), hs(3))
    j.close()


def test_a_failed_batch_fails_every_save_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> list[object]:
        w = HardStateWriter(tmp_path)
        dirs = [group_dir(tmp_path, f"t-{i}") for i in range(3)]
        for d in dirs:
            w.load(d, 1)
        w.journal  # noqa: B018 - opened before the disk "fails"
        monkeypatch.setattr(os, "fdatasync", lambda fd: (_ for _ in ()).throw(OSError(5, "EIO")))
        out = await asyncio.gather(*(w.save(d, hs(2)) for d in dirs), return_exceptions=True)
        w.close()
        return out

    results = asyncio.run(run())
    assert all(isinstance(r, OSError) for r in results)
