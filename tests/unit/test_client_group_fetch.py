"""The fetcher under a group assignment: partitions added and revoked while it runs, and
every partition leader getting its fetch (a regression: with three leaders, the first two
took the whole buffer and the third partition was never fetched)."""

from __future__ import annotations

import asyncio
from typing import Any

from strata.client._types import TopicPartition
from strata.client.consumer.config import ConsumerConfig
from strata.client.consumer.fetcher import Fetcher


class _Cache:
    def leader_for(self, topic: str, partition: int) -> int:
        return partition + 1  # partition p is led by broker p + 1


class _Cluster:
    cache = _Cache()


def _fetcher() -> tuple[Fetcher, list[tuple[int, list[TopicPartition], int]]]:
    f = Fetcher(_Cluster(), ConsumerConfig(fetch_buffer_bytes=64 << 20))  # type: ignore[arg-type]
    spawned: list[tuple[int, list[TopicPartition], int]] = []

    def spawn(coro: Any) -> None:
        if coro.cr_code.co_name == "_fetch":  # (not the offset resets or metadata refreshes)
            args = coro.cr_frame.f_locals
            spawned.append((args["leader"], list(args["tps"]), args["max_bytes"]))
        coro.close()

    class Owner:  # stands in for the fetcher's TaskOwner: records, never runs
        def spawn(self, coro: Any) -> None:
            spawn(coro)

    f._tasks = Owner()  # type: ignore[assignment]
    return f, spawned


def test_every_leader_gets_a_fetch_and_a_share_of_the_buffer():
    async def go():
        f, spawned = _fetcher()
        tps = [TopicPartition("t", p) for p in range(3)]
        f.add_partitions({tp: 0 for tp in tps})
        f._dispatch(0.0)
        assert sorted(leader for leader, _, _ in spawned) == [1, 2, 3]
        assert sum(b for _, _, b in spawned) <= 64 << 20
        # Broker 1's long poll comes back empty: it is fetched again, the others still are.
        f._brokers[1].busy = False
        f._brokers[1].reserved = 0
        f.states[tps[0]].fetching = False
        spawned.clear()
        f._dispatch(0.0)
        assert [leader for leader, _, _ in spawned] == [1]

    asyncio.run(go())


def test_revoked_partitions_are_neither_fetched_nor_returned():
    async def go():
        f, spawned = _fetcher()
        a, b = TopicPartition("t", 0), TopicPartition("t", 1)
        f.add_partitions({a: 5, b: None})
        assert f.positions() == {a: 5}  # b waits for auto_offset_reset
        f.stop_fetching([a])
        f._dispatch(0.0)
        assert all(a not in tps for _, tps, _ in spawned)
        assert f.positions() == {a: 5}  # kept for the commit on revocation
        f.remove_partitions([a])
        assert a not in f.states and b in f.states

    asyncio.run(go())
