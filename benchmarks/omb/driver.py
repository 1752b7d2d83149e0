"""The driver interface every benchmarked system implements.

The runner only ever talks to a system through these classes, so that Strata,
NATS JetStream and Redis Streams run the very same load generator, schedule
and latency accounting; the only per-system code is how to start servers, how
to produce with an acknowledgement, and how to consume.

A driver owns its servers: :meth:`Driver.start` launches them (in ``workdir``,
on free loopback ports, each in its own process group) and :meth:`Driver.stop`
must stop every one of them even after a failure half-way through a start.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: ``on_message(partition, payload, receive_time_ns)``; ``receive_time_ns`` is
#: ``time.time_ns()`` taken as soon as the client handed the record over, the
#: same clock as the send timestamp inside the payload.
OnMessage = Callable[[int, bytes, int], None]


class FailoverNotSupported(NotImplementedError):
    """The system (as deployed by its driver) has no leader to kill, e.g. one Redis server."""


class Producer(ABC):
    """One producer client, bound to one topic."""

    @abstractmethod
    async def send(self, partition: int, payload: bytes) -> asyncio.Future[Any]:
        """Hand one record to the client and return a future for its acknowledgement.

        The future resolves once the system acknowledged the write in the
        durable way the driver documents (quorum-replicated for replicated
        systems), or fails with the client's error. ``send`` itself should
        return as soon as the record is queued: the runner bounds the number
        of records in flight, so a driver need not.
        """

    async def flush(self) -> None:
        """Push out anything a driver batches; default: nothing is held back."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Close the client; outstanding futures may fail."""


class Consumer(ABC):
    """One consumer client reading some partitions of one topic, pushing to a callback."""

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering and close the client."""


class Driver(ABC):
    """A system under test: its servers and its clients."""

    #: Row label in the results, e.g. ``nats-jetstream`` or ``redis-aof-always``.
    name: str = "driver"
    #: Whether :meth:`find_leader`, :meth:`kill_node` and :meth:`restart_node` work.
    supports_failover: bool = False
    #: Whether the servers speak the Kafka protocol (:meth:`kafka_bootstrap`), so that
    #: the native load generator's workloads (``loadGenerator: kafka-perf``) apply.
    speaks_kafka: bool = False
    #: Whether the row exists only for the native load generator's workloads (Strata's
    #: Kafka listener: its Python-client rows would repeat ``strata-never``'s), so that
    #: the Python-client workloads show ``n/a`` instead of running twice.
    native_only: bool = False
    #: Set by the runner for ``--quick``: a driver may skip waits that only steady the
    #: figures of a long run (the quick run is a smoke test with a time budget).
    quick: bool = False

    @property
    @abstractmethod
    def client_name(self) -> str:
        """The client library (and version) that produced the figures, e.g. ``nats-py 2.16.0``."""

    @abstractmethod
    def server_version(self) -> str:
        """The server binary's version, recorded in the results."""

    @abstractmethod
    def durability(self) -> str:
        """One line on what an acknowledgement guarantees here, for the results table."""

    def nodes_for(self, replication_factor: int) -> int:
        """How many server processes a workload with this replication factor needs."""
        return replication_factor

    @abstractmethod
    async def start(self, nodes: int, workdir: Path) -> None:
        """Start ``nodes`` servers with their data under ``workdir``, on free loopback ports.

        Returns once the cluster accepts topic creation. Raising
        :class:`NotImplementedError` here makes the runner skip the system.
        """

    @abstractmethod
    async def stop(self) -> None:
        """Close every client and stop every server this driver started. Idempotent."""

    @abstractmethod
    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        """Create a topic of ``partitions`` partitions, each replicated ``replicas`` times."""

    @abstractmethod
    async def delete_topic(self, topic: str) -> None:
        """Delete a topic and its data, so that the next workload on the same cluster starts clean."""

    @abstractmethod
    async def create_producer(self, topic: str, *, lone: bool = False) -> Producer:
        """A new producer client (its own connection) for ``topic``.

        ``lone``: the runner keeps one record in flight, so nothing can join a batch and a
        client that lingers (Strata's, Kafka's) must send at once, as any application that
        writes and waits would configure it.
        """

    @abstractmethod
    async def create_consumer(
        self,
        topic: str,
        partitions: Sequence[int],
        on_message: OnMessage,
        *,
        from_beginning: bool,
    ) -> Consumer:
        """A new consumer client for ``partitions`` of ``topic``, delivering to ``on_message``.

        With ``from_beginning`` it reads each partition from its first record
        (the catch-up read); otherwise from the end, i.e. only new records.
        """

    @abstractmethod
    def server_pids(self) -> dict[str, int]:
        """Live server processes by label (``node-1``...), for CPU sampling from /proc.

        Each should lead its own process group (``procs.ServerProcess`` does that): the
        CPU of a server is its whole group's, so anything it forks is counted with it.
        """

    def kafka_bootstrap(self) -> str | None:
        """A Kafka-protocol bootstrap (``host:port,...``) of the running cluster, if it has one.

        Native load generators (Kafka's ProducerPerformance, ``benchmarks/omb/native.py``)
        run only against systems that return one; the others show ``n/a`` for them.
        """
        return None

    async def find_leader(self, topic: str, partition: int) -> int:
        """The index (0-based) of the node leading ``partition`` of ``topic``."""
        raise FailoverNotSupported(f"{self.name} has no leader to find")

    async def kill_node(self, node: int) -> None:
        """SIGKILL node ``node`` (a crash: no clean shutdown, no leadership hand-off)."""
        raise FailoverNotSupported(f"{self.name} cannot kill a node")

    async def restart_node(self, node: int) -> None:
        """Start a killed node again on its old ports and data directory."""
        raise FailoverNotSupported(f"{self.name} cannot restart a node")

    async def wait_in_sync(self, topic: str, partition: int, timeout: float) -> None:
        """Wait until every replica of ``partition`` is back and caught up (between failovers)."""
        raise FailoverNotSupported(f"{self.name} has no replicas to wait for")
