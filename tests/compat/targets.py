"""The clusters the compatibility tests run against: Apache Kafka itself, or Strata.

Both are started the same way and look the same to a test: a Kafka bootstrap address, a
node count, and ``kill``/``restart`` of one node by its Kafka node id. ``apache-kafka`` is
the launcher in :mod:`tests.compat.apache_kafka` (KRaft nodes from ``make kafka-dist``);
``strata`` is :class:`tests.integration.cluster.LocalCluster` with a Kafka listener per
broker (``kafka=True``: ``--kafka-listen``), whose Kafka node ids are the Strata broker ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tests.compat.apache_kafka import (
    ApacheKafkaCluster,
    KafkaClusterConfig,
    KafkaDist,
    KafkaDistMissing,
    metadata_broker_ids,
)
from tests.integration.cluster import LocalCluster, wait_for

TARGETS = ("apache-kafka", "strata")
READY_TIMEOUT_S = 120.0


class Target(Protocol):
    name: str

    @property
    def bootstrap(self) -> str: ...

    @property
    def nodes(self) -> int: ...

    def kill(self, node_id: int) -> None: ...

    def restart(self, node_id: int) -> None: ...

    def stop(self) -> None: ...


class ApacheKafkaTarget:
    """Apache Kafka's KRaft nodes (broker and controller in one process each)."""

    name = "apache-kafka"

    def __init__(self, root: Path, nodes: int) -> None:
        # Offsets and transactions topics with one partition each keep a node's start-up
        # and a group's first join short; nothing here needs them spread.
        config = KafkaClusterConfig(nodes=nodes, extra_properties={
            "offsets.topic.num.partitions": "1", "transaction.state.log.num.partitions": "1",
        })  # fmt: skip
        self.cluster = ApacheKafkaCluster(config, root=root)

    @classmethod
    def missing(cls) -> str | None:
        try:
            KafkaDist.find()
        except KafkaDistMissing as exc:
            return str(exc)
        return None

    def start(self) -> ApacheKafkaTarget:
        self.cluster.start()
        return self

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def nodes(self) -> int:
        return len(self.cluster.nodes)

    def kill(self, node_id: int) -> None:
        self.cluster.kill_node(node_id)

    def restart(self, node_id: int) -> None:
        self.cluster.restart_node(node_id)

    def stop(self) -> None:
        self.cluster.stop()


class StrataTarget:
    """Strata brokers with their Kafka listeners, as ``strata dev`` runs them."""

    name = "strata"

    def __init__(self, root: Path, nodes: int) -> None:
        self.cluster = LocalCluster(root=root, n=nodes, kafka=True)

    @classmethod
    def missing(cls) -> str | None:
        return None  # the listener is part of every broker (issue 15)

    def start(self) -> StrataTarget:
        try:
            self.cluster.start()
            self.cluster.wait_ready(timeout=READY_TIMEOUT_S)
            self.wait_kafka_ready()
        except BaseException:
            self.cluster.stop()
            raise
        return self

    def wait_kafka_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Every live broker's Kafka port lists every live broker (as Apache Kafka's readiness)."""
        live = {n: b for n, b in self.cluster.brokers.items() if b.alive}

        def ready() -> bool:
            return all(set(live) <= metadata_broker_ids("127.0.0.1", b.kafka_port or 0) for b in live.values())

        wait_for(ready, timeout, f"Strata brokers {sorted(live)} on their Kafka listeners")

    @property
    def bootstrap(self) -> str:
        return self.cluster.kafka_bootstrap

    @property
    def nodes(self) -> int:
        return self.cluster.n

    def kill(self, node_id: int) -> None:
        self.cluster.kill(node_id)

    def restart(self, node_id: int) -> None:
        self.cluster.start(node_id)
        self.cluster.wait_ready(node_id, timeout=READY_TIMEOUT_S)
        self.wait_kafka_ready()

    def stop(self) -> None:
        self.cluster.stop()


def target_class(name: str) -> type[ApacheKafkaTarget] | type[StrataTarget]:
    return {"apache-kafka": ApacheKafkaTarget, "strata": StrataTarget}[name]


def start_target(name: str, root: Path, nodes: int) -> Target:
    """A started cluster of ``nodes`` nodes; the caller stops it."""
    return target_class(name)(root, nodes).start()
