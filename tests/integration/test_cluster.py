"""The cluster, end to end, with real broker processes on loopback.

What a user relies on: every acknowledged record is there exactly once, in order, at the
offset it was acknowledged at, through a leader's SIGKILL and through a whole-cluster
restart; a restarted broker catches up to byte-identical logs; a deleted topic's data is
gone from every broker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from strata.client.errors import ErrorCode
from strata.client.protocol import Api
from strata.storage import Log, LogConfig
from tests.integration.cluster import LocalCluster, wait_for
from tests.integration.rawclient import RawClient, make_batch

pytestmark = pytest.mark.integration

TOPIC = "events"
PARTITIONS = 6
RECORDS = 100_000
PER_BATCH = 100


def read_replica_bytes(data_dir: Path, topic: str, partition: int, below: int) -> bytes:
    """The raw batches a broker holds for a partition, below offset ``below`` (broker stopped)."""
    log = Log.open(data_dir / f"{topic}-{partition}", LogConfig(flush_policy="never"))
    try:
        out = bytearray()
        offset = log.log_start_offset
        while offset < below:
            sl = log.read(offset, 1 << 20, max_offset=below)
            if sl is None:
                break
            out += sl.read_bytes()[: sl.size]
            offset = sl.next_offset
        return bytes(out)
    finally:
        log.close()


async def produce_all(client: RawClient, pid: int, n_batches_per_partition: int, kill_after: int | None,
                      on_kill) -> dict[int, list[tuple[int, bytes]]]:
    """Write unique values to every partition; return what was acknowledged, per partition."""
    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    sent = 0
    killed = asyncio.Event()

    async def writer(p: int) -> None:
        nonlocal sent
        for i in range(n_batches_per_partition):
            values = [f"p{p}-b{i}-r{j}".encode() for j in range(PER_BATCH)]
            resp = await client.produce(TOPIC, p, make_batch(values, pid, i * PER_BATCH))
            assert resp["err"] == 0, resp
            base = resp["base_offset"]
            acked[p].extend((base + j, v) for j, v in enumerate(values))
            sent += 1
            if kill_after is not None and sent >= kill_after and not killed.is_set():
                killed.set()
                await on_kill()

    await asyncio.gather(*(writer(p) for p in range(PARTITIONS)))
    return acked


def test_acknowledged_records_survive_leader_kill_and_replicas_converge(tmp_path: Path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()
        victim: list[int] = []

        async def scenario():
            client = RawClient(cluster.bootstrap)
            try:
                await client.create_topic(TOPIC, PARTITIONS, 3)
                pid = await client.init_producer_id()

                async def kill_leader():
                    leader = await client.leader(TOPIC, 0)
                    victim.append(leader)
                    cluster.kill(leader)

                per_partition = RECORDS // PER_BATCH // PARTITIONS + 1
                acked = await produce_all(client, pid, per_partition, kill_after=PARTITIONS * per_partition // 3,
                                          on_kill=kill_leader)
                assert sum(len(v) for v in acked.values()) >= RECORDS
                # Every acknowledged record exactly once, in order, at its acknowledged offset.
                for p in range(PARTITIONS):
                    got = await client.read_all(TOPIC, p)
                    assert got == acked[p], f"partition {p}: read back differs from what was acknowledged"
                return acked
            finally:
                await client.close()

        acked = asyncio.run(scenario())
        assert victim, "the leader was never killed"
        # The killed broker comes back, catches up and is shown in sync everywhere.
        cluster.start(victim[0])
        cluster.wait_ready(victim[0])

        async def in_sync():
            client = RawClient(cluster.bootstrap)
            try:
                md = await client.metadata([TOPIC])
                parts = md["topics"][0]["partitions"]
                ok = all(victim[0] in p["isr"] and p["high_watermark"] >= len(acked[p["partition"]])
                         for p in parts)
                return parts if ok else None
            finally:
                await client.close()

        parts = wait_for(lambda: asyncio.run(in_sync()), 60, f"broker {victim[0]} back in sync")
        hws = {p["partition"]: p["high_watermark"] for p in parts}
    # Stopped cleanly: every replica's log is byte-identical below the high watermark.
    for p in range(PARTITIONS):
        copies = {b: read_replica_bytes(cluster.brokers[b].data_dir, TOPIC, p, hws[p]) for b in cluster.brokers}
        reference = copies[1]
        assert len(reference) > 0
        for b, data in copies.items():
            assert data == reference, f"partition {p}: broker {b}'s log differs from broker 1's below the HW"


def test_whole_cluster_restart_keeps_every_committed_record(tmp_path: Path) -> None:
    cluster = LocalCluster(root=tmp_path, n=3)
    try:
        cluster.start()
        cluster.wait_ready()

        async def write():
            client = RawClient(cluster.bootstrap)
            try:
                await client.create_topic("durable", 2, 3)
                acked = {0: [], 1: []}
                for i in range(40):
                    for p in (0, 1):
                        values = [f"{p}-{i}-{j}".encode() for j in range(10)]
                        resp = await client.produce("durable", p, make_batch(values))
                        assert resp["err"] == 0, resp
                        acked[p].extend((resp["base_offset"] + j, v) for j, v in enumerate(values))
                return acked
            finally:
                await client.close()

        acked = asyncio.run(write())
        cluster.stop()
        cluster.start()
        cluster.wait_ready()

        async def read():
            client = RawClient(cluster.bootstrap)
            try:
                return {p: await client.read_all("durable", p) for p in (0, 1)}
            finally:
                await client.close()

        got = asyncio.run(read())
        assert got == acked
    finally:
        cluster.stop()


def test_deleted_topic_data_is_gone_from_every_broker(tmp_path: Path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()

        async def scenario():
            client = RawClient(cluster.bootstrap)
            try:
                await client.create_topic("doomed", 3, 3)
                for p in range(3):
                    resp = await client.produce("doomed", p, make_batch([b"bye"] * 5))
                    assert resp["err"] == 0
                hdr = await client.call_controller(Api.DELETE_TOPICS, {"topics": ["doomed"]})
                assert hdr["topics"][0]["err"] == 0, hdr
            finally:
                await client.close()

        asyncio.run(scenario())

        async def unknown_everywhere():
            # Each broker drops the topic as it applies the controller's record.
            client = RawClient(cluster.bootstrap)
            try:
                await client.metadata([])
                for b in cluster.brokers:
                    hdr, _ = await (await client.conn(b)).request(Api.METADATA, {"topics": ["doomed"]})
                    if hdr["topics"][0]["err"] != ErrorCode.UNKNOWN_TOPIC:
                        return False
                return True
            finally:
                await client.close()

        wait_for(lambda: asyncio.run(unknown_everywhere()), 30, "every broker to answer UNKNOWN_TOPIC")

        def gone():
            return not any((b.data_dir / f"doomed-{p}").exists() for b in cluster.brokers.values() for p in range(3))

        wait_for(gone, 30, "the deleted topic's partition directories to disappear on every broker")
