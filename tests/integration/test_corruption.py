"""Bits that rot while a broker is down are found by CRC, never served, and repaired from the
leader — even deep below the log's recovery point (found by the fault suite's soak)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.cluster import LocalCluster, wait_for
from tests.integration.rawclient import RawClient, make_batch
from tests.integration.test_cluster import read_replica_bytes
from tests.integration.test_quiesce import all_quiet

pytestmark = pytest.mark.integration


def wait_repaired(cluster: LocalCluster, topic: str, victim: int, acked: list) -> int:
    """Every acknowledged record reads back, and the damaged replica is in sync again."""

    async def read_back():
        c = RawClient(cluster.bootstrap)
        try:
            return await c.read_all(topic, 0)
        finally:
            await c.close()

    assert asyncio.run(read_back()) == acked

    async def in_sync():
        c = RawClient(cluster.bootstrap)
        try:
            p = (await c.metadata([topic]))["topics"][0]["partitions"][0]
            return p if victim in p["isr"] else None
        finally:
            await c.close()

    return wait_for(lambda: asyncio.run(in_sync()), 60, f"broker {victim} repaired and in sync")["high_watermark"]


def start_and_write(cluster: LocalCluster, topic: str) -> tuple[list, int, int]:
    """Start the cluster and write 60 acknowledged batches to ``topic``-0 (RF 3).

    Returns the acknowledged ``(offset, value)`` pairs, the leader, and a follower (the
    replica the test will damage)."""
    cluster.start()
    cluster.wait_ready()

    async def write():
        c = RawClient(cluster.bootstrap)
        try:
            await c.create_topic(topic, 1, 3)
            acked = []
            for i in range(60):
                values = [f"{i}-{j}".encode() * 20 for j in range(20)]
                resp = await c.produce(topic, 0, make_batch(values))
                assert resp["err"] == 0, resp
                acked += [(resp["base_offset"] + j, v) for j, v in enumerate(values)]
            return acked, await c.leader(topic, 0)
        finally:
            await c.close()

    acked, leader = asyncio.run(write())
    return acked, leader, next(b for b in cluster.brokers if b != leader)


def assert_identical_replicas(cluster: LocalCluster, topic: str, victim: int, leader: int, hw: int) -> None:
    copies = {b: read_replica_bytes(cluster.brokers[b].data_dir, topic, 0, hw) for b in cluster.brokers}
    assert copies[victim] == copies[leader] and len(copies[leader]) > 0


def test_corruption_below_the_recovery_point_is_cut_and_repaired_from_the_leader(tmp_path) -> None:
    cluster = LocalCluster(root=tmp_path, n=3)
    try:
        acked, leader, victim = start_and_write(cluster, "rot")
        cluster.stop()  # clean: every log checkpoints its recovery point at its end
        segment = sorted((cluster.brokers[victim].data_dir / "rot-0").glob("*.log"))[0]
        data = bytearray(segment.read_bytes())
        pos = len(data) // 3  # well inside the data, far below the recovery point
        for k in range(8):
            data[pos + 97 * k] ^= 0x5A
        segment.write_bytes(bytes(data))

        cluster.start()
        cluster.wait_ready()
        log_text = cluster.tail(victim, 400)
        assert "corrupt" in log_text.lower(), log_text
        hw = wait_repaired(cluster, "rot", victim, acked)
    finally:
        cluster.stop()
    assert_identical_replicas(cluster, "rot", victim, leader, hw)


@pytest.mark.parametrize("stop", ["clean", "sigkill-when-idle"])
def test_a_truncated_segment_is_not_taken_for_an_unsynced_tail(tmp_path, stop) -> None:
    """A segment cut short while the broker was down looks like a torn write to recovery;
    the replica still knows what it had made durable, refuses to vote, and is repaired.

    Killed rather than stopped, and once its group has gone quiet: the durable-end marker
    must have caught up without a clean shutdown, or a later Ready, to write it."""
    cluster = LocalCluster(root=tmp_path, n=3)
    try:
        acked, leader, victim = start_and_write(cluster, "cut")
        if stop == "clean":
            cluster.stop()
        else:
            wait_for(lambda: all_quiet(cluster, list(cluster.brokers)), 30, "the partition's group to quiesce")
            for i in cluster.brokers:
                cluster.kill(i)
        segment = sorted((cluster.brokers[victim].data_dir / "cut-0").glob("*.log"))[0]
        data = segment.read_bytes()
        segment.write_bytes(data[: len(data) // 2 + 7])  # mid-batch: a "torn tail"
        cluster.start()
        cluster.wait_ready()
        assert "storage-faulty" in cluster.tail(victim, 400)
        hw = wait_repaired(cluster, "cut", victim, acked)
    finally:
        cluster.stop()
    assert_identical_replicas(cluster, "cut", victim, leader, hw)
