"""Metadata refreshes, without a broker: backed off while nothing changes, woken loops
instead of spinning ones, and brokers still loading the metadata log waited out.

Issue 13 saw ``strata produce`` burn 95-98 % of a core for two minutes while its partition
had no leader: every finished refresh woke the send loop, which asked for another at once.
These tests count what a busy loop would do thousands of times a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from strata.client._types import TopicPartition
from strata.client.backoff import Backoff
from strata.client.cluster import Cluster
from strata.client.consumer.config import ConsumerConfig
from strata.client.consumer.fetcher import Fetcher
from strata.client.errors import ErrorCode, LeaderNotAvailableError, NoBrokersAvailableError
from strata.client.producer.accumulator import RecordAccumulator
from strata.client.producer.sender import Sender, SenderConfig
from strata.client.protocol import Api

TP = TopicPartition("events", 0)
#: How long the loops run against a leaderless partition (a window, not a pass/fail time).
WINDOW_S = 1.5


def metadata_answer(leader: int, *, topic_err: int = 0) -> dict[str, Any]:
    topic: dict[str, Any] = {"name": TP.topic, "err": topic_err, "partitions": []}
    if not topic_err:
        topic["partitions"] = [
            {"partition": 0, "leader": leader, "replicas": [1], "isr": [1] if leader >= 0 else []}
        ]
    return {
        "controller": 1,
        "brokers": [{"id": 1, "host": "127.0.0.1", "port": 1}],
        "topics": [topic],
    }


class FakeBrokers:
    """Stands in for ``Cluster.any_request``: answers METADATA from a script, counts asks."""

    def __init__(self, *answers: dict[str, Any] | BaseException) -> None:
        self.answers = list(answers)
        self.metadata_requests = 0

    async def __call__(self, api: Api, fields: Any = None, **_: Any) -> dict[str, Any]:
        assert api is Api.METADATA
        self.metadata_requests += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def cluster_with(fake: FakeBrokers, **kw: Any) -> Cluster:
    c = Cluster("127.0.0.1:1", retry_backoff_s=0.1, retry_backoff_max_s=1.0, **kw)
    c.any_request = fake  # type: ignore[method-assign]
    return c


def test_backoff_doubles_to_its_bound_and_resets() -> None:
    b = Backoff(0.1, 1.0, jitter=0)
    assert [b.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next() == 0.1
    jittered = Backoff(1.0, 1.0)
    assert all(0.8 <= jittered.next() <= 1.2 for _ in range(100))


def test_a_producer_waiting_for_a_leader_backs_off_instead_of_spinning() -> None:
    fake = FakeBrokers(metadata_answer(-1))
    dispatches = 0

    async def main() -> None:
        nonlocal dispatches
        cluster = cluster_with(fake)
        await cluster.refresh([TP.topic], force=True)
        acc = RecordAccumulator(batch_size=1 << 16, linger_s=0, buffer_memory=1 << 20)
        sender = Sender(
            acc,
            cluster,
            SenderConfig(
                acks=1,
                idempotent=False,
                max_in_flight=5,
                request_timeout_s=5,
                retry_backoff_s=0.1,
                retry_backoff_max_s=1.0,
                retries=10,
            ),
        )
        real = sender._dispatch

        def counting(now: float) -> float | None:
            nonlocal dispatches
            dispatches += 1
            return real(now)

        sender._dispatch = counting  # type: ignore[method-assign]
        sender.start()
        acc.try_append(TP.topic, 0, 1, 0, None, b"waiting for a leader", [], 64)
        sender.wakeup()
        cpu0 = time.process_time()
        await asyncio.sleep(WINDOW_S)
        cpu = time.process_time() - cpu0
        await sender.stop(0)
        await cluster.close()
        # A busy loop dispatches and re-asks thousands of times in this window and burns
        # the whole window in CPU; a backed-off one asks a handful of times (0.1 s, doubling).
        assert fake.metadata_requests <= 12, fake.metadata_requests
        assert dispatches <= 30, dispatches
        assert cpu < WINDOW_S / 2, cpu

    asyncio.run(main())


def test_a_consumer_waiting_for_a_leader_backs_off_instead_of_spinning() -> None:
    fake = FakeBrokers(metadata_answer(-1))

    async def main() -> None:
        cluster = cluster_with(fake)
        await cluster.refresh([TP.topic], force=True)
        fetcher = Fetcher(cluster, ConsumerConfig(auto_offset_reset="earliest"))
        fetcher.start()
        fetcher.assign([TP])
        await asyncio.sleep(WINDOW_S)
        await fetcher.close()
        await cluster.close()
        assert fake.metadata_requests <= 12, fake.metadata_requests

    asyncio.run(main())


def test_a_refresh_that_changes_something_resets_the_backoff() -> None:
    fake = FakeBrokers(metadata_answer(-1))

    async def main() -> None:
        cluster = cluster_with(fake)
        woken = asyncio.Event()
        cluster.add_listener(woken.set)
        for _ in range(4):  # nothing changes: the pause before the next one grows
            cluster.request_refresh()
            await woken.wait()
            woken.clear()
        assert cluster._refresh_backoff.attempts == 4
        fake.answers = [metadata_answer(1)]  # a leader is elected
        cluster.request_refresh()
        await woken.wait()
        assert cluster.cache.leader_for(TP.topic, 0) == 1
        assert cluster._refresh_backoff.attempts == 1  # reset, then one pause ahead
        await cluster.close()

    asyncio.run(main())


def test_metadata_waits_out_brokers_still_loading_the_metadata_log() -> None:
    loading = LeaderNotAvailableError("broker 1 is still loading the cluster metadata")
    fake = FakeBrokers(
        loading,
        metadata_answer(-1, topic_err=ErrorCode.LEADER_NOT_AVAILABLE),
        metadata_answer(1),
    )

    async def main() -> None:
        cluster = cluster_with(fake)
        header = await cluster.metadata(None, timeout_s=10)
        assert [t["name"] for t in header["topics"]] == [TP.topic]  # never an empty list
        assert fake.metadata_requests == 3
        await cluster.close()

    asyncio.run(main())


def test_metadata_gives_up_at_its_deadline_with_what_kept_failing() -> None:
    fake = FakeBrokers(LeaderNotAvailableError("still loading the cluster metadata"))

    async def main() -> None:
        cluster = cluster_with(fake)
        with pytest.raises(Exception, match="still loading"):
            await cluster.metadata(None, timeout_s=0.5)
        await cluster.close()

    asyncio.run(main())


def test_unreachable_brokers_are_not_waited_for() -> None:
    fake = FakeBrokers(NoBrokersAvailableError("no broker reachable"))

    async def main() -> None:
        cluster = cluster_with(fake)
        with pytest.raises(NoBrokersAvailableError):
            await cluster.metadata(None, timeout_s=30)
        assert fake.metadata_requests == 1
        await cluster.close()

    asyncio.run(main())
