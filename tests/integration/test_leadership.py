"""Leadership as users see it: clean shutdown hands leadership over, leadership returns to the
preferred replica, and idempotent producers never duplicate across a leader change."""

from __future__ import annotations

import asyncio

import pytest

from strata.client.errors import ErrorCode
from strata.client.protocol import Api
from tests.integration.cluster import LocalCluster, wait_for
from tests.integration.rawclient import RawClient, make_batch

pytestmark = pytest.mark.integration


def metadata(cluster, topic: str) -> list[dict]:
    async def go():
        c = RawClient(cluster.bootstrap)
        try:
            return (await c.metadata([topic]))["topics"][0]["partitions"]
        finally:
            await c.close()

    return asyncio.run(go())


def test_sigterm_hands_leadership_over_before_exiting(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()

        async def setup():
            c = RawClient(cluster.bootstrap)
            try:
                await c.create_topic("t", 3, 3)
                for p in range(3):
                    assert (await c.produce("t", p, make_batch([b"before"])))["err"] == 0
                return await c.leader("t", 0)
            finally:
                await c.close()

        leader = asyncio.run(setup())
        led_before = [p["partition"] for p in metadata(cluster, "t") if p["leader"] == leader]
        assert cluster.terminate(leader) == 0, cluster.tail(leader)
        log = cluster.tail(leader, 200)
        assert "handing over leadership" in log and "stopped" in log
        # Every partition it led has another leader at once, and takes writes.

        def moved():
            parts = metadata(cluster, "t")
            return all(parts[p]["leader"] not in (-1, leader) for p in led_before)

        wait_for(moved, 10, "leadership to have moved off the stopped broker")

        async def write_after():
            c = RawClient(cluster.bootstrap)
            try:
                for p in range(3):
                    assert (await c.produce("t", p, make_batch([b"after"])))["err"] == 0
                return {p: [v for _, v in await c.read_all("t", p)] for p in range(3)}
            finally:
                await c.close()

        assert asyncio.run(write_after()) == {p: [b"before", b"after"] for p in range(3)}


def test_leadership_returns_to_the_preferred_replica(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()

        async def setup():
            c = RawClient(cluster.bootstrap)
            try:
                await c.create_topic("pref", 6, 3)
            finally:
                await c.close()

        asyncio.run(setup())

        def balanced():
            parts = metadata(cluster, "pref")
            return all(p["leader"] == p["replicas"][0] and len(p["isr"]) == 3 for p in parts)

        wait_for(balanced, 60, "every partition led by its preferred replica")
        cluster.kill(1)
        wait_for(lambda: all(p["leader"] not in (-1, 1) for p in metadata(cluster, "pref")), 30,
                 "leaders elected without broker 1")
        cluster.start(1)
        cluster.wait_ready(1)
        wait_for(balanced, 60, "leadership back on the preferred replicas after broker 1 returned")
        leaders = [p["leader"] for p in metadata(cluster, "pref")]
        assert sorted(leaders) == [1, 1, 2, 2, 3, 3]


def test_idempotent_retries_never_duplicate_even_across_a_leader_change(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()

        async def scenario():
            c = RawClient(cluster.bootstrap)
            try:
                await c.create_topic("idem", 1, 3)
                pid = await c.init_producer_id()
                b0 = make_batch([b"a0", b"a1"], pid, 0)
                first = await c.produce("idem", 0, b0)
                again = await c.produce("idem", 0, b0)
                assert first["err"] == again["err"] == 0
                assert again["base_offset"] == first["base_offset"]
                gap = await c.produce("idem", 0, make_batch([b"skip"], pid, 5))
                assert gap["err"] == ErrorCode.OUT_OF_ORDER_SEQUENCE and "expected 2" in gap["msg"]
                b1 = make_batch([b"b0"], pid, 2)
                second = await c.produce("idem", 0, b1)
                assert second["err"] == 0
                # The leader dies; its successor rebuilds producer state from the log.
                cluster.kill(await c.leader("idem", 0))
                retried = await c.produce("idem", 0, b1)
                assert retried["err"] == 0 and retried["base_offset"] == second["base_offset"]
                third = await c.produce("idem", 0, make_batch([b"c0"], pid, 3))
                assert third["err"] == 0
                return [v for _, v in await c.read_all("idem", 0)]
            finally:
                await c.close()

        assert asyncio.run(scenario()) == [b"a0", b"a1", b"b0", b"c0"]


def test_producer_ids_are_unique_across_controller_changes(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()

        async def scenario():
            c = RawClient(cluster.bootstrap)
            try:
                ids = [await c.init_producer_id() for _ in range(3)]
                await c.metadata([])
                cluster.kill(c.controller)
                ids += [await c.init_producer_id() for _ in range(3)]
                hdr = await c.call_controller(Api.INIT_PRODUCER_ID, {})
                return ids + [hdr["producer_id"]]
            finally:
                await c.close()

        ids = asyncio.run(scenario())
        assert len(set(ids)) == len(ids), ids
