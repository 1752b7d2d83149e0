"""Idle partitions go quiet (no Raft ticks, no heartbeats) and wake for writes and for failures.

What a user would notice if quiescence were wrong: a write to an idle partition that hangs,
or a leader that dies while its partitions sleep and is never replaced. What an operator
sees: ``strata_raft_quiesced_groups`` counts the sleeping groups on each broker.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request

import pytest

from tests.integration.cluster import LocalCluster, wait_for
from tests.integration.rawclient import RawClient, make_batch

pytestmark = pytest.mark.integration

PARTITIONS = 4


def scrape(cluster: LocalCluster, node_id: int) -> str:
    port = cluster.brokers[node_id].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return r.read().decode()


def gauge(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m is None:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


def all_quiet(cluster: LocalCluster, nodes: list[int]) -> bool:
    """Every partition replica on these brokers (all but the metadata log's) is quiesced."""
    for i in nodes:
        text = scrape(cluster, i)
        if gauge(text, "strata_raft_quiesced_groups") != gauge(text, "strata_partitions") - 1:
            return False
    return True


def write_and_read(bootstrap: str, values: dict[int, list[bytes]], *, write: bool = True) -> dict[int, list[bytes]]:
    """Produce each partition's last value (acks=all), then read every partition back."""

    async def go():
        c = RawClient(bootstrap)
        try:
            for p, vals in values.items():
                if write:
                    hdr = await c.produce("idle", p, make_batch(vals[-1:]))
                    assert hdr["err"] == 0, hdr
            return {p: [v for _, v in await c.read_all("idle", p)] for p in values}
        finally:
            await c.close()

    return asyncio.run(go())


def create(cluster: LocalCluster) -> None:
    async def go():
        c = RawClient(cluster.bootstrap)
        try:
            await c.create_topic("idle", PARTITIONS, 3)
        finally:
            await c.close()

    asyncio.run(go())


def leader_of(bootstrap: str, partition: int) -> int:
    async def go():
        c = RawClient(bootstrap)
        try:
            return await c.leader("idle", partition)
        finally:
            await c.close()

    return asyncio.run(go())


def written_and_quiet(cluster: LocalCluster, tag: bytes) -> dict[int, list[bytes]]:
    """Create the topic, write a first record to each partition, wait until all sleep."""
    cluster.wait_ready()
    create(cluster)
    written = {p: [b"%s-%d" % (tag, p)] for p in range(PARTITIONS)}
    assert write_and_read(cluster.bootstrap, written) == written
    wait_for(lambda: all_quiet(cluster, [1, 2, 3]), 30, "every partition's group to quiesce")
    return written


def test_idle_partitions_quiesce_and_a_write_wakes_them(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        written = written_and_quiet(cluster, b"first")
        # A write to a sleeping group is taken and committed, and the group goes quiet again.
        for p in range(PARTITIONS):
            written[p].append(b"second-%d" % p)
        assert write_and_read(cluster.bootstrap, written) == written
        wait_for(lambda: all_quiet(cluster, [1, 2, 3]), 30, "the groups to quiesce again after the writes")


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_a_leader_lost_while_its_partitions_sleep_is_replaced(tmp_path, fault) -> None:
    """Sleeping followers hear no heartbeats; the dead (or paused) leader's broker going silent
    must wake them, so a new leader takes writes and nothing acknowledged is lost."""
    with LocalCluster(root=tmp_path, n=3) as cluster:
        written = written_and_quiet(cluster, b"before")
        victim = leader_of(cluster.bootstrap, 0)
        others = [i for i in cluster.brokers if i != victim]
        survivors = ",".join(cluster.brokers[i].address for i in others)
        if fault == "kill":
            cluster.kill(victim)
        else:
            cluster.pause(victim)

        def moved() -> bool:
            leader = leader_of(survivors, 0)
            return leader in others

        wait_for(moved, 30, f"a new leader for idle-0 after broker {victim} went silent")
        for p in range(PARTITIONS):
            written[p].append(b"after-%d" % p)
        assert write_and_read(survivors, written) == written
        if fault == "pause":
            cluster.resume(victim)

            def stepped_down() -> bool:
                return gauge(scrape(cluster, victim), "strata_partition_leader", topic="idle", partition="0") == 0

            wait_for(stepped_down, 30, f"broker {victim} to see that it no longer leads idle-0")
        else:
            cluster.start(victim)
            cluster.wait_ready(victim)
        # The returning broker catches up and everything goes quiet again, on all three.
        assert write_and_read(cluster.bootstrap, written, write=False) == written
        wait_for(lambda: all_quiet(cluster, [1, 2, 3]), 30, "every group to quiesce with the broker back")
