"""The leader's commit path without a file read or a timer per write (issue 17).

* ``StorageRaftLog`` serves the followers' appends of the batch just written from memory:
  the bytes must be exactly what a read from the segment file gives (offsets and epoch
  stamped), and never stale after a truncation or once committed.
* ``CommitWaiters`` answers produce requests on commit and times them out with one timer.
"""

from __future__ import annotations

import asyncio

import pytest

from strata.broker.replication.commit_waiters import CommitWaiters
from strata.broker.replication.raft_log import StorageRaftLog
from strata.client.batch import validate_batches
from strata.storage import Log, LogConfig
from tests.storage_helpers import make_batch


def _log(tmp_path, name: str = "p0") -> Log:
    return Log.open(tmp_path / name, LogConfig(segment_bytes=1 << 20, flush_policy="never"))


def _from_file(lg: Log, offset: int):
    """The same read, by an adapter that holds no batch in memory."""
    return StorageRaftLog(lg).read(offset, 1 << 20)


def test_the_batch_just_appended_is_served_from_memory_exactly_as_the_file_holds_it(tmp_path) -> None:
    lg = _log(tmp_path)
    rl = StorageRaftLog(lg)
    rl.append_as_leader(make_batch([b"a"]), 1, validate_batches(make_batch([b"a"])))
    batch = make_batch([b"b", b"c", b"d"], base_offset=77, leader_epoch=9)
    base, last = rl.append_as_leader(batch, 2, validate_batches(batch))
    assert (base, last) == (1, 3)
    kept = rl.read(1, 1 << 20)
    on_disk = _from_file(lg, 1)
    assert kept is not None and on_disk is not None
    assert kept is rl.read(1, 1 << 20), "both followers get the kept batch, not a file read"
    assert (kept.base, kept.last, kept.term) == (on_disk.base, on_disk.last, on_disk.term) == (1, 3, 2)
    assert bytes(kept.data) == bytes(on_disk.data)
    # A follower further behind reads from the file, across both batches.
    behind = rl.read(0, 1 << 20)
    assert behind is not None and behind.base == 0 and behind is not kept
    lg.close()


def test_the_kept_batch_is_dropped_on_commit_truncation_and_follower_append(tmp_path) -> None:
    lg = _log(tmp_path)
    rl = StorageRaftLog(lg)
    b1 = make_batch([b"x"])
    rl.append_as_leader(b1, 1, validate_batches(b1))
    kept = rl.read(0, 1 << 20)
    rl.release_tail(0)
    assert rl.read(0, 1 << 20) is kept, "not committed yet: still kept"
    rl.release_tail(1)
    after = rl.read(0, 1 << 20)
    assert after is not kept and after is not None and bytes(after.data) == bytes(kept.data)

    b2 = make_batch([b"y"])
    rl.append_as_leader(b2, 1, validate_batches(b2))
    rl.truncate_to(1)
    assert rl.read(1, 1 << 20) is None, "a truncated batch is never served"
    b3 = make_batch([b"z"], base_offset=1, leader_epoch=3)
    rl.append_as_follower(b3)
    run = rl.read(1, 1 << 20)
    assert run is not None and run.term == 3 and bytes(run.data) == bytes(_from_file(lg, 1).data)
    lg.close()


def test_a_read_smaller_than_the_kept_batch_falls_back_to_the_file(tmp_path) -> None:
    lg = _log(tmp_path)
    rl = StorageRaftLog(lg)
    batch = make_batch([b"v" * 500])
    rl.append_as_leader(batch, 1, validate_batches(batch))
    small = rl.read(0, 10)
    assert small is not None and bytes(small.data) == bytes(_from_file(lg, 0).data)
    lg.close()


def _timed_out(offset: int) -> BaseException:
    return TimeoutError(f"offset {offset} timed out")


def test_waiters_are_answered_in_offset_order_by_the_commit() -> None:
    async def scenario() -> list[int]:
        w = CommitWaiters(_timed_out)
        done: list[int] = []

        async def one(offset: int) -> None:
            await w.wait(offset, 30)
            done.append(offset)

        tasks = [asyncio.create_task(one(o)) for o in (5, 9, 3)]
        await asyncio.sleep(0)
        w.release(6)  # 3 and 5 are committed, 9 is not
        await asyncio.sleep(0)
        assert sorted(done) == [3, 5] and len(w) == 1
        w.release(10)
        await asyncio.gather(*tasks)
        w.close()
        return done

    assert sorted(asyncio.run(scenario())) == [3, 5, 9]


def test_a_waiter_times_out_alone_and_the_shared_timer_moves_to_the_next_deadline() -> None:
    async def scenario() -> None:
        w = CommitWaiters(_timed_out)
        long = asyncio.create_task(w.wait(2, 30))
        short = asyncio.create_task(w.wait(1, 0.05))  # earlier deadline: the timer moves
        with pytest.raises(TimeoutError, match="offset 1 timed out"):
            await asyncio.wait_for(short, 5)
        assert not long.done() and len(w) == 1
        w.release(3)
        await asyncio.wait_for(long, 5)
        w.close()

    asyncio.run(scenario())


def test_failing_all_waiters_answers_each_with_its_own_error() -> None:
    async def scenario() -> list[str]:
        w = CommitWaiters(_timed_out)
        tasks = [asyncio.create_task(w.wait(o, 30)) for o in (1, 2)]
        await asyncio.sleep(0)
        w.fail_all(lambda: ConnectionError("leadership lost"))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [str(r) for r in results]

    assert asyncio.run(scenario()) == ["leadership lost", "leadership lost"]
