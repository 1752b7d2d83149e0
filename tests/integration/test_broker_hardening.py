"""What a new user and an operator broke in the first hour, on real broker processes:

* a topic deleted and created again after a restart must be a new topic on every broker;
* two brokers on one data directory, or a broker on a port that is taken, must not start;
* every metadata answer right after a start tells the truth or says "retry", and a topic
  with replication factor 3 can be created the moment the cluster reports ready, or the
  moment a new controller is elected.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request

import pytest

from strata.client import AdminClient, Producer
from strata.client.conn import open_connection
from strata.client.errors import ErrorCode, StrataError
from strata.client.protocol import Api
from tests.integration.cluster import LocalCluster, free_ports, wait_for

pytestmark = pytest.mark.integration

TOPIC = "reborn"
PARTITIONS = 3


def broker_view(cluster: LocalCluster, node_id: int, topic: str | None) -> dict:
    """METADATA for ``topic`` (None: every topic) as broker ``node_id`` alone answers it (no
    client retries)."""
    b = cluster.brokers[node_id]

    async def ask() -> dict:
        conn = await open_connection("127.0.0.1", b.port, client_id="hardening-test", timeout=5.0)
        try:
            topics = None if topic is None else [topic]
            hdr, _ = await conn.request(Api.METADATA, {"topics": topics}, timeout=5.0, raise_on_error=False)
            return hdr
        finally:
            await conn.close()

    return asyncio.run(ask())


def offline_partitions_metric(cluster: LocalCluster) -> float:
    """``strata_controller_offline_partitions`` from the active controller."""
    for b in cluster.brokers.values():
        body = urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}/metrics", timeout=5).read().decode()
        if "strata_controller_active 1" in body:
            for line in body.splitlines():
                if line.startswith("strata_controller_offline_partitions "):
                    return float(line.split()[1])
    raise AssertionError("no active controller exports strata_controller_offline_partitions")


def every_broker_sees_leaders(cluster: LocalCluster, topic: str) -> bool:
    for node_id in cluster.brokers:
        hdr = broker_view(cluster, node_id, topic)
        if hdr.get("err"):
            return False
        (t,) = hdr["topics"]
        if t.get("err") or len(t["partitions"]) != PARTITIONS:
            return False
        if any(p["leader"] < 0 for p in t["partitions"]):
            return False
    return True


def test_a_topic_recreated_after_a_full_restart_is_a_new_topic_on_every_broker(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()
        with AdminClient(cluster.bootstrap) as admin:
            admin.create_topic(TOPIC, PARTITIONS, 3)
        p = Producer(bootstrap=cluster.bootstrap, acks="all")
        for i in range(60):
            p.send(TOPIC, value=b"old-%d" % i, partition=i % PARTITIONS)
        p.flush()
        p.close()
        # A whole-cluster restart: every partition's Raft term goes above 1.
        cluster.stop()
        cluster.start()
        cluster.wait_ready()
        p = Producer(bootstrap=cluster.bootstrap, acks="all")
        for i in range(30):
            p.send(TOPIC, value=b"older-%d" % i, partition=i % PARTITIONS)
        p.flush()
        p.close()

        with AdminClient(cluster.bootstrap) as admin:
            admin.delete_topic(TOPIC)
            admin.create_topic(TOPIC, PARTITIONS, 3)

        # Every broker, asked on its own, knows a leader for every partition of the new topic,
        # and none reports the old topic's offsets.
        wait_for(lambda: every_broker_sees_leaders(cluster, TOPIC), 30, "every broker to see the new leaders")
        for node_id in cluster.brokers:
            (t,) = broker_view(cluster, node_id, TOPIC)["topics"]
            for part in t["partitions"]:
                assert part["high_watermark"] <= 1 and part["log_end_offset"] <= 1, (node_id, part)
        # Produce to every partition is acknowledged (it used to hang until its timeout).
        p = Producer(bootstrap=cluster.bootstrap, acks="all", delivery_timeout_ms=20_000)
        futures = [p.send(TOPIC, value=b"new-%d" % i, partition=i) for i in range(PARTITIONS)]
        p.flush()
        metas = [f.result(timeout=20) for f in futures]
        p.close()
        assert [m.partition for m in metas] == list(range(PARTITIONS))
        assert all(m.offset <= 1 for m in metas), metas
        with AdminClient(cluster.bootstrap) as admin:
            wait_for(lambda: admin.describe_cluster().offline == 0, 30, "cluster status to show no offline partition")
        wait_for(lambda: offline_partitions_metric(cluster) == 0, 30, "the offline-partitions gauge to drop to 0")


def start_broker(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strata.broker.cli", "broker", "start", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_second_broker_on_the_same_data_directory_refuses_to_start(tmp_path) -> None:
    with LocalCluster(root=tmp_path, n=1) as cluster:
        cluster.wait_ready()
        b = cluster.brokers[1]
        port, mport = free_ports(2)
        r = start_broker(["--id", "1", "--data-dir", str(b.data_dir), "--listen", f"127.0.0.1:{port}",
                          "--peers", f"1@127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{mport}"])
        assert r.returncode == 1, r
        assert f"data directory {b.data_dir} is in use by pid {b.proc.pid}" in r.stderr, r.stderr
        assert "hint:" in r.stderr
        # The running broker is unharmed.
        assert b.alive
        cluster.wait_ready()


def test_a_broker_whose_port_is_taken_exits_at_once_and_says_so(tmp_path) -> None:
    with LocalCluster(root=tmp_path / "live", n=1) as cluster:
        cluster.wait_ready()
        taken = cluster.brokers[1].port
        (mport,) = free_ports(1)
        other = tmp_path / "other"
        r = start_broker(["--id", "1", "--data-dir", str(other), "--listen", f"127.0.0.1:{taken}",
                          "--peers", f"1@127.0.0.1:{taken}", "--metrics-listen", f"127.0.0.1:{mport}"])
        assert r.returncode == 1, r
        assert f"cannot listen on 127.0.0.1:{taken} (--listen)" in r.stderr, r.stderr
        assert "still running on that port" in r.stderr
        # It opened no log before failing: nothing under its data directory but the lock.
        assert sorted(x.name for x in other.iterdir()) == [".lock"]
        assert cluster.brokers[1].alive


def test_answers_right_after_a_start_are_true_or_say_retry_and_creation_works_at_once(tmp_path) -> None:
    existing = {"ledger", "audit"}
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()
        with AdminClient(cluster.bootstrap) as admin:
            for name in existing:
                admin.create_topic(name, 2, 3)
        cluster.stop()
        cluster.start()

        # From the first answer on, each broker either lists every topic or says "retry";
        # never an empty or partial list (it used to answer {"topics": []} for a second).
        answered: set[int] = set()

        def every_broker_answered_truly() -> bool:
            for node_id in cluster.brokers:
                try:
                    hdr = broker_view(cluster, node_id, None)
                except (OSError, TimeoutError, StrataError):
                    continue  # not listening yet
                if hdr.get("err"):
                    assert hdr["err"] == ErrorCode.LEADER_NOT_AVAILABLE, hdr
                    continue
                names = {t["name"] for t in hdr["topics"]}
                assert existing <= names, (node_id, names)
                answered.add(node_id)
            return answered == set(cluster.brokers)

        wait_for(every_broker_answered_truly, 60, "every broker to answer metadata", interval=0.01)

        # The moment the cluster reports ready, a topic with replication factor 3 is created.
        cluster.wait_ready()
        with AdminClient(cluster.bootstrap) as admin:
            created = admin.create_topic("right-after-ready", 3, 3)
            assert created.replication_factor == 3

            # And the moment a new controller is elected: it has not yet heard the surviving
            # brokers' heartbeats, yet must not count them as dead.
            old = admin.describe_cluster().controller
            assert old is not None
            cluster.kill(old)
            wait_for(lambda: admin.describe_cluster().controller not in (None, old), 30,
                     "a new controller", interval=0.01)
            created = admin.create_topic("right-after-failover", 3, 2)
            assert created.replication_factor == 2
            # What cannot be placed is still refused, with the reason.
            with pytest.raises(StrataError) as refused:
                admin.create_topic("too-wide", 1, 3)
            assert refused.value.code == ErrorCode.INVALID_REPLICATION_FACTOR
            assert "than the 2 live broker(s)" in refused.value.message
