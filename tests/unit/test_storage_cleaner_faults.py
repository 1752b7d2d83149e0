"""The cleaner when things go wrong: a crash at every file operation of a swap, a disk
that fills during a clean, a corrupt batch met while cleaning. In every case the log
serves either the old or the new segments (never neither, never both), and nothing a
consumer could read changes meaning."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from strata.client.batch import CorruptBatchError, iter_batches
from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig, LogFullError, logical_digest
from strata.storage.cleaner import CleanPlan
from strata.storage.segment_swap import swap_steps
from tests.storage_helpers import Clock, keyed_batch, read_records, small_tmpfs

SALT = bytes(16)
CFG_KW = dict(segment_bytes=4096, index_interval_bytes=512, flush_policy="never",
              cleanup_policy="compact", delete_retention_ms=0, max_batch_bytes=64 << 10)
CFG = LogConfig(**CFG_KW)


def populate(lg: Log, clock: Clock, batches: int, *, keys: int = 6, value_size: int = 40) -> None:
    epoch = lg.latest_epoch or 1
    for i in range(batches):
        clock.now += 10
        recs = [(b"k%d" % ((i * 3 + j) % keys), b"%d.%d:" % (i, j) + b"v" * value_size) for j in range(3)]
        if i % 17 == 5:
            recs.append((b"k%d" % (i % keys), None))
        lg.append_as_leader(keyed_batch(recs, timestamp=clock.now), epoch + i // 50)


def layout(lg: Log) -> list[tuple[int, int]]:
    """(base offset, last offset) of every batch: the Raft log's entries."""
    out = []
    for seg in lg.segments:
        data = os.pread(seg.fd, seg.size, 0)
        out.extend((h.base_offset, h.last_offset) for _, h in iter_batches(data))
    return out


def leftovers(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith((".cleaned", ".swap")))


def crash_steps(plan: CleanPlan) -> Iterator[str]:
    """Every file operation of ``plan.swap()``, one at a time, in the order it does them."""
    for g in plan.groups:
        if g.output is not None:
            yield from swap_steps(plan.log.dir, g.output, [s.segment for s in g.sources])


@pytest.fixture
def pristine(tmp_path):
    """A log that has been cleaned once and grown since, so that the next pass merges
    shrunk segments (groups of several files) and drops records and tombstones."""
    clock = Clock()
    path = tmp_path / "pristine"
    lg = Log.open(path, CFG, clock=clock)
    populate(lg, clock, 120)
    LogCleaner(CleanerConfig(map_bytes=1 << 20), salt=SALT).clean(lg, lg.log_end_offset, lg.log_end_offset)
    populate(lg, clock, 60)
    lg.roll()
    lg.close()
    return path, clock


def reference_after_clean(path, clock) -> tuple[list, list[tuple[int, int]]]:
    lg = Log.open(path, CFG, clock=clock)
    plan = LogCleaner(CleanerConfig(map_bytes=1 << 20), salt=SALT).plan(
        lg, lg.log_end_offset, lg.log_end_offset, force=True)
    plan.run()
    groups = [(g.sources[0].base_offset, g.sources[-1].next_offset) for g in plan.groups if g.output]
    assert plan.swap() is not None
    records = read_records(lg)
    lg.close()
    return records, groups


def test_a_crash_after_any_file_operation_of_a_swap_leaves_old_or_new_never_both(pristine, tmp_path):
    src, clock = pristine
    lg = Log.open(src, CFG, clock=clock)
    old_records, old_layout, digest = read_records(lg), layout(lg), logical_digest(lg)
    lg.close()
    new_records, groups = reference_after_clean(shutil.copytree(src, tmp_path / "reference"), clock)
    assert len(groups) >= 2 and any(b - a > 0 for a, b in groups)
    assert old_records != new_records

    total_steps = None
    for k in itertools.count():
        path = shutil.copytree(src, tmp_path / f"crash-{k}")
        lg = Log.open(path, CFG, clock=clock)
        plan = LogCleaner(CleanerConfig(map_bytes=1 << 20), salt=SALT).plan(
            lg, lg.log_end_offset, lg.log_end_offset, force=True)
        plan.run()
        done = list(itertools.islice(crash_steps(plan), k))
        lg.abandon()  # the process dies here: no flush, no checkpoint, files as they are

        lg = Log.open(path, CFG, clock=clock)
        assert not lg.recovery.corrupt, (k, done, lg.recovery)
        assert leftovers(path) == []
        assert layout(lg) == old_layout  # every entry once, at its offsets
        assert logical_digest(lg) == digest
        records = read_records(lg)
        for a, b in groups:  # each group wholly old or wholly new
            part = [r for r in records if a <= r.offset < b]
            assert part in ([r for r in old_records if a <= r.offset < b],
                            [r for r in new_records if a <= r.offset < b]), (k, done, a, b)
        # And the log goes on: appendable, and the next clean reaches the same result.
        LogCleaner(CleanerConfig(map_bytes=1 << 20), salt=SALT).clean(
            lg, lg.log_end_offset, lg.log_end_offset, force=True)
        assert read_records(lg) == new_records
        lg.append_as_leader(keyed_batch([(b"after", b"crash")]), 9)
        lg.close()
        shutil.rmtree(path)
        if len(done) < k:
            total_steps = len(done)
            break
    assert total_steps is not None and total_steps >= 2 * 7  # several groups, several files each


def test_a_process_killed_mid_swap_recovers(pristine, tmp_path):
    """The same with a real process, killed by SIGKILL just after the swap committed."""
    src, clock = pristine
    path = shutil.copytree(src, tmp_path / "killed")
    lg = Log.open(path, CFG, clock=clock)
    digest, old_layout = logical_digest(lg), layout(lg)
    lg.close()
    script = textwrap.dedent(f"""
        import os, signal
        from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig
        from strata.storage.segment_swap import swap_steps
        cfg = LogConfig(**{CFG_KW!r})
        lg = Log.open({str(path)!r}, cfg, clock=lambda: {clock.now})
        plan = LogCleaner(CleanerConfig(map_bytes=1 << 20), salt=bytes(16)).plan(
            lg, lg.log_end_offset, lg.log_end_offset, force=True)
        plan.run()
        g = next(g for g in plan.groups if g.output is not None and len(g.sources) > 1)
        for step in swap_steps(lg.dir, g.output, [s.segment for s in g.sources]):
            if step.startswith("unlink"):
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert any(n.endswith(".swap") for n in os.listdir(path))
    lg = Log.open(path, CFG, clock=clock)
    assert not lg.recovery.corrupt and lg.recovery.indexes_rebuilt >= 1
    assert leftovers(path) == [] and layout(lg) == old_layout and logical_digest(lg) == digest
    lg.close()


# ------------------------------------------------------------------ corrupt data


@pytest.mark.parametrize("where", ["dirty", "clean"])
def test_a_corrupt_batch_met_while_cleaning_aborts_the_pass(pristine, tmp_path, where):
    src, clock = pristine
    path = shutil.copytree(src, tmp_path / "corrupt")
    lg = Log.open(path, CFG, clock=clock)
    cleaned = lg.cleaned_offset
    seg, pos, h = next((s, p, h) for s in lg.segments[:-1] if (s.base_offset >= cleaned) == (where == "dirty")
                       for p, h in iter_batches(os.pread(s.fd, s.size, 0)) if h.record_count)
    with open(seg.log_path, "r+b") as f:  # a flipped bit in a record: the CRC no longer holds
        f.seek(pos + h.size - 1)
        byte = f.read(1)
        f.seek(pos + h.size - 1)
        f.write(bytes([byte[0] ^ 0x10]))
    files = sorted(os.listdir(path))
    with pytest.raises(CorruptBatchError) as info:
        LogCleaner(CleanerConfig(map_bytes=1 << 20)).clean(lg, lg.log_end_offset, lg.log_end_offset, force=True)
    assert "CRC mismatch" in str(info.value) and os.path.basename(seg.log_path) in str(info.value)
    assert lg.corruption is info.value  # the replica knows it needs repair, as after a bad read
    assert sorted(os.listdir(path)) == files and lg.cleaned_offset == cleaned
    assert lg.cleaner_state.in_progress is None
    lg.close()
    # A full check cuts the log at the damage, as for any corrupt batch.
    lg = Log.open(path, CFG, clock=clock, full_check=True)
    assert lg.recovery.corrupt and lg.log_end_offset <= seg.next_offset
    lg.close()


# --------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with small_tmpfs(tmp_path / "mnt", "1m") as mnt:
        yield mnt


def fill_disk(directory) -> str:
    """Take every free byte of the file system (unbuffered writes: closing never fails)."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def test_a_disk_that_fills_during_a_clean(small_disk):
    clock = Clock()
    path = small_disk / "p0"
    lg = Log.open(path, CFG, clock=clock)
    populate(lg, clock, 400)
    lg.roll()
    lg.flush()
    before, digest, files = read_records(lg), logical_digest(lg), sorted(os.listdir(path))
    filler = fill_disk(small_disk)
    cleaner = LogCleaner(CleanerConfig(map_bytes=1 << 20))
    with pytest.raises(LogFullError) as info:
        cleaner.clean(lg, lg.log_end_offset, lg.log_end_offset)
    assert info.value.errno == errno.ENOSPC and "free space" in str(info.value)
    assert sorted(os.listdir(path)) == files  # the temporary files are gone
    assert read_records(lg) == before and lg.cleaned_offset == 0 and lg.corruption is None
    with pytest.raises(LogFullError):
        lg.append_as_leader(keyed_batch([(b"k", b"x" * 20_000)]), 9)
    os.unlink(filler)  # space again: the log appends and cleans
    lg.append_as_leader(keyed_batch([(b"k", b"after")]), 9)
    assert cleaner.clean(lg, lg.log_end_offset, lg.log_end_offset) is not None
    assert logical_digest(lg, max_offset=lg.log_end_offset - 1) == digest
    lg.close()
    lg = Log.open(path, CFG, clock=clock)
    assert not lg.recovery.corrupt and read_records(lg)[-1].value == b"after"
    lg.close()
