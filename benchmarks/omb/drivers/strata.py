"""Strata's driver: a placeholder until the broker and client can run a cluster.

The coordinator fills this in with the cluster issue. What it must do, in terms
of :class:`benchmarks.omb.driver.Driver` (see ``benchmarks/README.md``):

* ``start(nodes, workdir)``: run ``strata broker start`` ``nodes`` times (ids 1..n,
  data dirs under ``workdir``, ``--listen`` and ``--peers`` on ports from
  :func:`benchmarks.omb.procs.free_ports`) through
  :class:`benchmarks.omb.procs.ServerProcess`, then wait until the controller
  answers metadata;
* ``create_topic``: ``AdminClient`` topic creation with the replication factor,
  then wait for every partition to have a leader;
* ``create_producer``: an ``AIOProducer(acks="all")`` whose ``send`` returns the
  future of the record's metadata; ``create_consumer``: an ``AIOConsumer`` with
  ``assign`` (from the beginning or from the end) feeding ``on_message``;
* failover: ``find_leader`` from metadata, ``kill_node``/``restart_node`` on the
  ``ServerProcess``, ``wait_in_sync`` until the ISR is full again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.omb.driver import Consumer, Driver, OnMessage, Producer

NOT_YET = "Strata driver arrives with the cluster issue"


class StrataDriver(Driver):
    """Strata, through its own asyncio client (``strata.client.aio``)."""

    name = "strata"
    supports_failover = True

    @property
    def client_name(self) -> str:
        return "strata client"

    def server_version(self) -> str:
        return "unreleased"

    def durability(self) -> str:
        return "acks=all: committed by the partition's Raft quorum, fsync per batch (flush policy always)"

    async def start(self, nodes: int, workdir: Path) -> None:
        raise NotImplementedError(NOT_YET)

    async def stop(self) -> None:
        return None

    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        raise NotImplementedError(NOT_YET)

    async def create_producer(self, topic: str) -> Producer:
        raise NotImplementedError(NOT_YET)

    async def create_consumer(
        self,
        topic: str,
        partitions: Sequence[int],
        on_message: OnMessage,
        *,
        from_beginning: bool,
    ) -> Consumer:
        raise NotImplementedError(NOT_YET)

    def server_pids(self) -> dict[str, int]:
        return {}

    async def delete_topic(self, topic: str) -> None:
        raise NotImplementedError(NOT_YET)
