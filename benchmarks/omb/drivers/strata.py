"""Strata: ``strata broker start`` x N on loopback, driven through its own asyncio client.

Two rows, one per flush policy, so that the cost of durability is visible next to
the peers that make the same choice:

* ``strata-always``: every broker fsyncs before it counts an append (group commit:
  one fsync per loop turn); an ``acks=all`` ack means a Raft quorum has the batch
  on disk -- stronger than JetStream's ack (no per-message fsync) and what Redis's
  ``appendfsync always`` gives on a single server;
* ``strata-never``: the OS decides when to write back; an ack means a quorum has
  the batch in its page cache -- the same promise as a JetStream ack;
* ``strata-kafka``: ``flush never`` brokers with ``--kafka-listen`` as well, for the
  native load generator only (Kafka's ProducerPerformance through Strata's Kafka
  listener, beside Apache Kafka's row driven by the same tool). Its Python-client
  workloads are ``n/a``: they would repeat ``strata-never``'s.

Clients: :class:`~strata.client.aio.AIOProducer` (``acks="all"``, idempotent, a
short linger) and :class:`~strata.client.aio.AIOConsumer` with ``assign()``;
topics are created and described through :class:`~strata.client.aio.AIOAdminClient`.
Each broker runs in its own process group from :mod:`benchmarks.omb.procs`, so a
failover's SIGKILL is a real crash and every exit path stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.omb.driver import Consumer, Driver, OnMessage, Producer
from benchmarks.omb.procs import ServerProcess, free_ports, wait_tcp

#: Producer linger: long enough that a max-rate producer fills batches, short enough
#: that a paced producer's record is not held back noticeably (ms); 0 for a lone producer.
LINGER_MS = 1
#: How many records one consumer poll may hand over (the scenario counts each one).
POLL_RECORDS = 20_000
READY_TIMEOUT_S = 60.0
#: Batches in flight per partition. One: batches grow to fill the round trip, and five
#: (the client's default) measured no lower paced latency (docs/performance.md, "Known
#: issues found while benchmarking"). The client keeps pipelined batches in order since
#: 2026-11-26, so this is a tuning, not a workaround.
MAX_IN_FLIGHT_BATCHES = 1


class StrataProducer(Producer):
    """One :class:`AIOProducer`; each send's ack is bridged to an asyncio future."""

    def __init__(self, client: Any, topic: str) -> None:
        self._client = client
        self._topic = topic
        self._loop = asyncio.get_running_loop()

    async def send(self, partition: int, payload: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        record = await self._client.send(self._topic, payload, partition=partition)

        # The client completes batches on this loop (the asyncio client has no thread of
        # its own), so the future can be resolved directly, without call_soon_threadsafe.
        def done(r: Any) -> None:
            if fut.done():
                return
            exc = r.exception(0)
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(None)

        record.add_done_callback(done)
        return fut

    async def flush(self) -> None:
        await self._client.flush()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.close(timeout=5)


class StrataConsumer(Consumer):
    """One :class:`AIOConsumer` with a task that polls and hands records to ``on_message``."""

    def __init__(self, client: Any, on_message: OnMessage) -> None:
        self._client = client
        self._on_message = on_message
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="strata-bench-consumer")

    async def _run(self) -> None:
        clock = time.time_ns
        deliver = self._on_message
        while True:
            try:
                records = await self._client.poll(timeout_ms=200, max_records=POLL_RECORDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # a leader change mid-fetch: the client retries, so do we
                await asyncio.sleep(0.05)
                continue
            now = clock()
            for r in records:
                deliver(r.partition, r.value, now)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            await self._client.close()


class StrataDriver(Driver):
    """A Strata cluster of ``nodes`` brokers with one flush policy."""

    supports_failover = True

    def __init__(self, flush_policy: str = "always", *, kafka_listener: bool = False) -> None:
        if flush_policy not in ("always", "never"):
            raise ValueError(f"flush policy must be 'always' or 'never', not {flush_policy!r}")
        self.flush_policy = flush_policy
        self.name = "strata-kafka" if kafka_listener else f"strata-{flush_policy}"
        self.speaks_kafka = self.native_only = kafka_listener
        self.servers: list[ServerProcess] = []
        self.ports: list[int] = []
        self.metrics_ports: list[int] = []
        self.kafka_ports: list[int] = []
        self._admin: Any = None
        self._clients: list[Any] = []

    @property
    def client_name(self) -> str:
        if self.speaks_kafka:
            return "Kafka's perf tools through Strata's Kafka listener"
        return "strata client (asyncio)"

    def server_version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"strata {version('strata')}"
        except PackageNotFoundError:
            return "strata (not installed as a package)"

    def durability(self) -> str:
        if self.speaks_kafka:
            return (
                "acks=all through the Kafka listener: committed by the partition's Raft "
                "quorum, in page cache (flush never)"
            )
        if self.flush_policy == "always":
            return "acks=all: committed by the partition's Raft quorum, each replica fsynced (flush always)"
        return "acks=all: committed by the partition's Raft quorum, in page cache (flush never)"

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def kafka_bootstrap(self) -> str | None:
        if not self.speaks_kafka:
            return None
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    async def start(self, nodes: int, workdir: Path) -> None:
        ports = free_ports(3 * nodes)
        self.ports, self.metrics_ports = ports[:nodes], ports[nodes : 2 * nodes]
        self.kafka_ports = ports[2 * nodes :] if self.speaks_kafka else []
        peers = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(self.ports))
        self.servers = []
        try:
            for i in range(nodes):
                node_dir = workdir / f"broker-{i + 1}"
                node_dir.mkdir(parents=True, exist_ok=True)
                argv = [
                    sys.executable, "-m", "strata.broker.cli", "broker", "start",
                    "--id", str(i + 1),
                    "--data-dir", str(node_dir / "data"),
                    "--listen", f"127.0.0.1:{self.ports[i]}",
                    "--peers", peers,
                    "--metrics-listen", f"127.0.0.1:{self.metrics_ports[i]}",
                    "--flush-policy", self.flush_policy,
                ]  # fmt: skip
                if self.kafka_ports:
                    argv += ["--kafka-listen", f"127.0.0.1:{self.kafka_ports[i]}"]
                server = ServerProcess(f"node-{i + 1}", argv, node_dir / "broker.log", node_dir)
                self.servers.append(server)
                server.start()
            for server, port in zip(self.servers, self.ports, strict=True):
                await wait_tcp("127.0.0.1", port, 30, server)
            for i in range(nodes):
                await self._wait_ready(i, READY_TIMEOUT_S)
            from strata.client.aio import AIOAdminClient

            self._admin = AIOAdminClient(self.bootstrap, request_timeout_ms=30_000)
            await self._admin.start()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, node: int, timeout: float) -> None:
        """Poll the broker's ``/readyz`` (joined, controller known, partitions loaded)."""
        deadline = time.monotonic() + timeout
        server = self.servers[node]
        while True:
            if not server.alive():
                raise RuntimeError(f"{server.name} exited during start-up:\n{server.log_tail()}")
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                async with asyncio.timeout(2):
                    reader, writer = await asyncio.open_connection(
                        "127.0.0.1", self.metrics_ports[node]
                    )
                    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                    line = await reader.readline()
                    writer.close()
                    if b" 200 " in line:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server.name} not ready after {timeout:g}s:\n{server.log_tail()}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for client in [*self._clients, self._admin]:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 5)
        self._clients.clear()
        self._admin = None
        # In parallel: a clean stop hands leadership over, which takes a moment per broker.
        await asyncio.gather(*(asyncio.to_thread(s.stop, 3.0) for s in self.servers))

    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        await self._admin.create_topic(topic, partitions, replicas, timeout_ms=120_000)
        await self._wait_settled(topic, timeout=120)

    async def _wait_settled(self, topic: str, timeout: float) -> None:
        """Wait until every partition is led by its preferred replica with all replicas in sync.

        ``create_topic`` returns once each partition *has* a leader, often not the
        preferred one (the first to win an election); a few seconds later the
        controller moves leadership back to the preferred replicas, and a producer
        at full speed meets a burst of NOT_LEADER retries in the middle of its
        measurement. Waiting here measures a settled cluster, as the peers' rows do.
        The re-balancing runs every few seconds, so a ``--quick`` run (a smoke test
        with a time budget) only waits for the replicas to be in sync.
        """
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                desc = await self._admin.describe_topic(topic)
                if all(
                    p.replicas
                    and p.leader is not None
                    and (self.quick or p.leader == p.replicas[0])
                    and sorted(p.isr) == sorted(p.replicas)
                    for p in desc.partitions
                ):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic}: replicas not all in sync after {timeout:g}s")
            await asyncio.sleep(0.1)

    async def delete_topic(self, topic: str) -> None:
        await self._admin.delete_topic(topic, timeout_ms=60_000)

    async def create_producer(self, topic: str, *, lone: bool = False) -> Producer:
        from strata.client.aio import AIOProducer

        client = AIOProducer(
            self.bootstrap,
            acks="all",
            idempotent=True,
            linger_ms=0 if lone else LINGER_MS,
            retry_backoff_ms=20,
            retry_backoff_max_ms=100,
            buffer_memory=256 << 20,
            max_in_flight_requests_per_connection=MAX_IN_FLIGHT_BATCHES,
        )
        await client.start()
        self._clients.append(client)
        return StrataProducer(client, topic)

    async def create_consumer(
        self,
        topic: str,
        partitions: Sequence[int],
        on_message: OnMessage,
        *,
        from_beginning: bool,
    ) -> Consumer:
        from strata.client import TopicPartition
        from strata.client.aio import AIOConsumer

        client = AIOConsumer(
            bootstrap=self.bootstrap,
            auto_offset_reset="earliest" if from_beginning else "latest",
            fetch_max_wait_ms=100,
            # Each in-flight fetch reserves fetch_max_bytes of the 64 MiB fetch buffer for
            # as long as it long-polls; at the 50 MiB default two brokers' idle polls
            # starve the third. 8 MiB still covers 6 partitions x 1 MiB per fetch.
            fetch_max_bytes=8 << 20,
            max_poll_records=POLL_RECORDS,
            retry_backoff_ms=20,
        )
        await client.start()
        self._clients.append(client)
        tps = [TopicPartition(topic, p) for p in partitions]
        await client.assign(tps)
        if from_beginning:
            await client.seek_to_beginning(*tps)
        else:
            await client.seek_to_end(*tps)
        # Resolve the positions now: a lazy "latest" resolved after the producers
        # started would skip their first records, and the scenario waits for every one.
        for tp in tps:
            await client.position(tp)
        consumer = StrataConsumer(client, on_message)
        consumer.start()
        return consumer

    def server_pids(self) -> dict[str, int]:
        return {s.name: s.pid for s in self.servers if s.alive()}

    async def find_leader(self, topic: str, partition: int) -> int:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(Exception):
                desc = await self._admin.describe_topic(topic)
                leader = desc.partitions[partition].leader
                if leader is not None and self.servers[leader - 1].alive():
                    return int(leader) - 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}-{partition} has no live leader after 30s")
            await asyncio.sleep(0.05)

    async def kill_node(self, node: int) -> None:
        self.servers[node].kill()

    async def restart_node(self, node: int) -> None:
        server = self.servers[node]
        server.start()
        await wait_tcp("127.0.0.1", self.ports[node], 30, server)
        # Ready = rejoined the cluster: the next workload may need every broker alive.
        await self._wait_ready(node, READY_TIMEOUT_S)

    async def wait_in_sync(self, topic: str, partition: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                p = (await self._admin.describe_topic(topic)).partitions[partition]
                if p.leader is not None and sorted(p.isr) == sorted(p.replicas):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}-{partition}: replicas not in sync after {timeout:g}s")
            await asyncio.sleep(0.1)
