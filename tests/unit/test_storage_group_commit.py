"""GroupCommit: appends made while no fsync runs share the next one; durability is
reported only after the fsync that covers it; failures reach every waiter."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from strata.storage import GroupCommit, Log, LogConfig, LogOfflineError, StorageError
from tests.storage_helpers import make_batch


class FsyncSpy:
    """Wraps os.fsync: records the file of each call and can hold calls until released."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_with: OSError | None = None
        self.real = os.fsync
        self.lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        with self.lock:
            self.paths.append(path)
        if path.endswith(".log"):
            self.entered.set()
            if self.gate is not None:
                assert self.gate.wait(30), "test never released the fsync"
            if self.fail_with is not None:
                raise self.fail_with
        self.real(fd)

    def log_fsyncs(self, log: Log | None = None) -> int:
        return sum(p.endswith(".log") and (log is None or p.startswith(log.dir)) for p in self.paths)


@pytest.fixture
def spy(monkeypatch) -> FsyncSpy:
    s = FsyncSpy()
    monkeypatch.setattr(os, "fsync", s)
    return s


@pytest.fixture
def logs(tmp_path):
    opened: list[Log] = []

    def _open(name: str = "p0") -> Log:
        lg = Log.open(tmp_path / name, LogConfig(flush_policy="always", segment_bytes=1 << 20))
        opened.append(lg)
        return lg

    yield _open
    for lg in opened:
        lg.abandon()


def batch() -> bytes:
    return make_batch([b"record"] * 4)


def test_appends_in_the_same_loop_turn_share_one_fsync(logs, spy):
    log = logs()
    spy.paths.clear()

    async def main() -> None:
        async with GroupCommit() as gc:
            async def produce() -> int:
                info = log.append_as_leader(batch(), 1)
                await gc.durable(log, info.last_offset)
                assert log.flushed_offset > info.last_offset
                return info.last_offset

            done = await asyncio.gather(*(produce() for _ in range(50)))
            assert sorted(done) == [4 * i + 3 for i in range(50)]

    asyncio.run(main())
    assert spy.log_fsyncs(log) == 1
    assert log.flushed_offset == log.log_end_offset == 200


def test_appends_during_an_fsync_are_covered_by_exactly_one_more(logs, spy):
    log = logs()
    spy.paths.clear()
    spy.gate = threading.Event()

    async def main() -> None:
        async with GroupCommit() as gc:
            first = log.append_as_leader(batch(), 1)
            t1 = asyncio.create_task(gc.durable(log, first.last_offset))
            # Wait (without sleeping) until the worker thread is inside fsync.
            await asyncio.get_running_loop().run_in_executor(None, spy.entered.wait)
            later = []
            for _ in range(20):
                info = log.append_as_leader(batch(), 1)  # the loop keeps appending meanwhile
                later.append(asyncio.create_task(gc.durable(log, info.last_offset)))
            await asyncio.sleep(0)
            assert not t1.done() and log.flushed_offset == 0  # not durable before its fsync returns
            spy.gate.set()
            await t1
            await asyncio.gather(*later)

    asyncio.run(main())
    assert spy.log_fsyncs(log) == 2
    assert log.flushed_offset == 84


def test_many_logs_get_one_fsync_each_per_round(logs, spy):
    group = [logs(f"p{i}") for i in range(5)]
    spy.paths.clear()

    async def main() -> None:
        async with GroupCommit() as gc:
            waits = []
            for lg in group:
                for _ in range(10):
                    info = lg.append_as_leader(batch(), 0)
                    waits.append(gc.durable(lg, info.last_offset))
            await asyncio.gather(*waits)
            assert gc.rounds == 5

    asyncio.run(main())
    for lg in group:
        assert spy.log_fsyncs(lg) == 1 and lg.flushed_offset == 40


def test_already_durable_offsets_return_at_once(logs, spy):
    log = logs()
    log.append_as_leader(batch(), 0)
    log.flush()
    spy.paths.clear()

    async def main() -> None:
        gc = GroupCommit()
        await gc.durable(log, 3)
        with pytest.raises(ValueError):
            await gc.durable(log, 4)  # not appended yet
        await gc.aclose()

    asyncio.run(main())
    assert spy.log_fsyncs() == 0


def test_a_failed_fsync_fails_every_waiter_and_takes_the_log_offline(logs, spy):
    log = logs()
    spy.fail_with = OSError(5, "Input/output error")

    async def main() -> None:
        async with GroupCommit() as gc:
            infos = [log.append_as_leader(batch(), 0) for _ in range(3)]
            results = await asyncio.gather(*(gc.durable(log, i.last_offset) for i in infos),
                                           return_exceptions=True)
            assert all(isinstance(r, LogOfflineError) for r in results)

    asyncio.run(main())
    assert log.flushed_offset == 0
    with pytest.raises(LogOfflineError):
        log.append_as_leader(batch(), 0)


def test_waiters_for_offsets_truncated_away_get_an_error(logs, spy):
    log = logs()
    spy.gate = threading.Event()

    async def main() -> None:
        async with GroupCommit() as gc:
            a = log.append_as_leader(batch(), 0)
            ta = asyncio.create_task(gc.durable(log, a.last_offset))
            await asyncio.get_running_loop().run_in_executor(None, spy.entered.wait)
            b = log.append_as_leader(batch(), 0)
            tb = asyncio.create_task(gc.durable(log, b.last_offset))
            await asyncio.sleep(0)
            log.truncate_to(b.base_offset)  # a Raft conflict while the fsync runs
            spy.gate.set()
            with pytest.raises(StorageError, match="truncated"):
                await tb
            await ta  # the stale round does not count; the next one covers a
            assert log.flushed_offset > a.last_offset

    asyncio.run(main())


def test_the_waiter_queue_is_bounded(logs, spy):
    log = logs()
    spy.gate = threading.Event()

    async def main() -> None:
        async with GroupCommit(max_waiters=2) as gc:
            infos = [log.append_as_leader(batch(), 0) for _ in range(4)]
            tasks = [asyncio.create_task(gc.durable(log, i.last_offset)) for i in infos]
            await asyncio.get_running_loop().run_in_executor(None, spy.entered.wait)
            await asyncio.sleep(0)
            state = gc._states[log]
            assert len(state.waiters) == 2  # the other two wait for a slot
            spy.gate.set()
            await asyncio.gather(*tasks)

    asyncio.run(main())
    assert log.flushed_offset == 16


def test_rolls_and_retention_while_an_fsync_runs_are_safe(tmp_path, spy):
    cfg = LogConfig(flush_policy="always", segment_bytes=400, retention_bytes=0)
    log = Log.open(tmp_path / "p0", cfg)
    spy.gate = threading.Event()

    async def main() -> None:
        async with GroupCommit() as gc:
            first = log.append_as_leader(batch(), 1)
            t1 = asyncio.create_task(gc.durable(log, first.last_offset))
            await asyncio.get_running_loop().run_in_executor(None, spy.entered.wait)
            infos = [log.append_as_leader(batch(), 1) for _ in range(12)]  # rolls several times
            assert log.segment_count > 2
            log.apply_retention()  # deletes the segment whose fd the worker is fsyncing
            assert log.segments[0].base_offset > 0
            waits = [asyncio.create_task(gc.durable(log, i.last_offset)) for i in infos]
            spy.gate.set()
            await t1
            await asyncio.gather(*waits)

    asyncio.run(main())
    leo, lso = log.log_end_offset, log.log_start_offset
    assert log.flushed_offset == leo
    log.abandon()  # a crash right after: everything reported durable must be there
    log = Log.open(tmp_path / "p0", cfg)
    assert (log.log_start_offset, log.log_end_offset) == (lso, leo)
    assert not log.recovery.corrupt and log.recovery.truncated_bytes == 0
    log.close()
