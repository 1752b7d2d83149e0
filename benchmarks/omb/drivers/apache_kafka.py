"""Apache Kafka: three KRaft nodes from ``make kafka-dist``, driven through confluent-kafka.

The cluster is :mod:`tests.compat.apache_kafka`'s: 3 combined broker+controller nodes on
loopback, static voters, ``min.insync.replicas=2``, and otherwise Kafka's defaults -- in
particular its flush settings (``log.flush.interval.messages`` and ``.ms`` unset), so an
``acks=all`` acknowledgement means every in-sync replica (at least 2 of 3) appended the
batch to its log *in the page cache*; nothing is fsynced before the ack. That is
``strata-never``'s promise, not ``strata-always``'s, and the report says so next to the
row. Failure detection is Kafka's default too (``broker.session.timeout.ms=9000``), which
the failover row measures.

Client: confluent-kafka (librdkafka), the fastest Kafka client Python has: records are
encoded and batched in C threads, so the Python side only hands payloads over and counts
acknowledgements. The producer is idempotent with ``acks=all`` and ``linger.ms=1``, as
Strata's row is. librdkafka reports deliveries and records through ``poll``/``consume``,
which block; each client gets one thread that makes those calls and hands results to the
event loop in batches (one loop wake-up per batch, a bounded number outstanding).

The same cluster also serves the native load generator (``kafka_bootstrap``), which
drives it with Kafka's own ProducerPerformance instead of a Python client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.omb.driver import Consumer, Driver, OnMessage, Producer
from tests.compat.apache_kafka import ApacheKafkaCluster, KafkaClusterConfig, KafkaDist

#: Producer linger (ms): Strata's row uses 1 ms too (Kafka's own default is 5 ms since 4.0).
LINGER_MS = 1
MIN_INSYNC_REPLICAS = 2
#: How many records one ``consume`` call may return (the scenario counts each one).
CONSUME_BATCH = 10_000
#: Result batches handed to the loop but not yet processed, per client: the bound that
#: keeps a fast client thread from queueing unbounded work on a busy event loop.
MAX_PENDING_BATCHES = 16
POLL_TIMEOUT_S = 0.05
ADMIN_TIMEOUT_S = 30.0
#: librdkafka's log level (syslog numbers): critical only. Connection-refused lines from
#: every client during a failover are expected noise; failed writes are counted anyway.
CLIENT_LOG_LEVEL = 2
#: A one-partition topic each new producer writes one record to before the benchmark
#: uses it: an idempotent producer's first write waits for its producer id, and on a
#: fresh cluster the broker must first fetch a block of ids from the controller
#: (COORDINATOR_LOAD_IN_PROGRESS, retried for seconds). That is start-up, not throughput.
WARMUP_TOPIC = "strata-bench-warmup"
PRODUCER_READY_TIMEOUT_S = 60.0
#: Seconds of max-rate produce into the warm-up topic right after start. The brokers are
#: JVMs: under load the JIT keeps compiling the produce and replication paths for about
#: a minute on this 2-core machine, and until then a broker costs 2-3x the CPU per MiB
#: it costs later. Measured here, 10 s steps of this very warm-up: 2,232 -> 6,520 msg/s,
#: 359 -> 129 server CPU-ms/MiB, single-record acks=all p50 22 -> 1.8 ms over 60 s.
#: Strata's brokers have no JIT; OMB warms up for a minute too. The quick run (a smoke
#: test) warms up less and measures a Kafka still warming up.
JIT_WARMUP_S = 60.0
JIT_WARMUP_QUICK_S = 15.0


def _client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "log_level": CLIENT_LOG_LEVEL, **extra}


def warm_up(bootstrap: str, topic: str, partitions: int, seconds: float) -> int:
    """Produce 1 KiB records as fast as acks come back for ``seconds``; returns how many.

    Blocking (run it in a thread). At most 1,000 records are unacknowledged at a time,
    the benchmark's own window, so the brokers warm up on the request sizes they will see.
    """
    import os

    from confluent_kafka import Producer as RdProducer

    client = RdProducer(
        _client_config(
            bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": LINGER_MS}
        )
    )
    acked = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            acked[0] += 1

    payload = os.urandom(1024)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sent - acked[0] < 1000:
            client.produce(topic, payload, partition=sent % partitions, on_delivery=on_delivery)
            sent += 1
        else:
            client.poll(0.001)
    client.flush(30)
    return acked[0]


class _LoopHandoff:
    """Results from a client thread to the event loop, in batches, with a bound.

    The thread calls :meth:`hand` with a batch; the loop runs ``apply`` on it. At most
    :data:`MAX_PENDING_BATCHES` batches wait for the loop: beyond that the thread blocks
    (which, for a consumer, stops fetching: back-pressure instead of memory growth).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, apply: Callable[[Any], None]) -> None:
        self._loop = loop
        self._apply = apply
        self._slots = threading.BoundedSemaphore(MAX_PENDING_BATCHES)

    def hand(self, batch: Any, stop: threading.Event) -> None:
        while not self._slots.acquire(timeout=0.1):
            if stop.is_set():
                return
        try:
            self._loop.call_soon_threadsafe(self._run, batch)
        except RuntimeError:  # the loop closed under us: nobody is waiting any more
            self._slots.release()

    def _run(self, batch: Any) -> None:
        try:
            self._apply(batch)
        finally:
            self._slots.release()


class KafkaProducerHandle(Producer):
    """One confluent-kafka Producer; each record's delivery report resolves an asyncio future."""

    def __init__(self, client: Any, topic: str) -> None:
        self._client = client
        self._topic = topic
        self._loop = asyncio.get_running_loop()
        self._reports: list[tuple[asyncio.Future[Any], Any]] = []
        self._handoff = _LoopHandoff(self._loop, self._resolve)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        """Serve delivery reports (``poll`` runs the callbacks, in this thread)."""
        while not self._stop.is_set():
            self._client.poll(POLL_TIMEOUT_S)
            self._flush_reports()

    def _flush_reports(self) -> None:
        if self._reports:
            batch, self._reports = self._reports, []
            self._handoff.hand(batch, self._stop)

    @staticmethod
    def _resolve(batch: list[tuple[asyncio.Future[Any], Any]]) -> None:
        from confluent_kafka import KafkaException

        for fut, err in batch:
            if fut.done():  # e.g. a failover probe that gave up waiting
                continue
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(KafkaException(err))

    async def send(self, partition: int, payload: bytes) -> asyncio.Future[Any]:
        return await self.send_to(self._topic, partition, payload)

    async def send_to(self, topic: str, partition: int, payload: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()

        # Runs inside poll() in the poll thread, which also swaps the list: no lock needed.
        def on_delivery(err: Any, _msg: Any, fut: asyncio.Future[Any] = fut) -> None:
            self._reports.append((fut, err))

        self._client.produce(topic, payload, partition=partition, on_delivery=on_delivery)
        return fut

    async def flush(self) -> None:
        await asyncio.to_thread(self._client.flush, 10)

    async def close(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5)
        # Deliver what is still in flight (bounded), then report it on this loop.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._client.flush, 5)
            await asyncio.to_thread(self._client.poll, 0)
        batch, self._reports = self._reports, []
        self._resolve(batch)


class KafkaConsumerHandle(Consumer):
    """One confluent-kafka Consumer with ``assign()``; a thread consumes and hands records over."""

    def __init__(self, client: Any, on_message: OnMessage) -> None:
        self._client = client
        self._on_message = on_message
        self._stop = threading.Event()
        self._handoff = _LoopHandoff(asyncio.get_running_loop(), self._deliver)
        self._thread = threading.Thread(target=self._consume, name="kafka-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _consume(self) -> None:
        clock = time.time_ns
        while not self._stop.is_set():
            try:
                messages = self._client.consume(CONSUME_BATCH, POLL_TIMEOUT_S)
            except Exception:  # closed under us, or a transient client error: try again
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            if not messages:
                continue
            now = clock()
            batch = [(m.partition(), m.value()) for m in messages if m.error() is None]
            if batch:
                self._handoff.hand((batch, now), self._stop)

    def _deliver(self, item: tuple[list[tuple[int, bytes]], int]) -> None:
        batch, now = item
        deliver = self._on_message
        for partition, value in batch:
            deliver(partition, value, now)

    async def close(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 5)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._client.close)


class ApacheKafkaDriver(Driver):
    """Apache Kafka (KRaft) of ``nodes`` combined nodes, RF from the workload, min ISR 2."""

    name = "apache-kafka"
    supports_failover = True
    speaks_kafka = True

    def __init__(self, heap: str = "512m") -> None:
        self.dist = KafkaDist.find()
        self.heap = heap
        self.cluster: ApacheKafkaCluster | None = None
        self._admin: Any = None
        self._producers: list[KafkaProducerHandle] = []
        self._consumers: list[KafkaConsumerHandle] = []

    @property
    def client_name(self) -> str:
        from importlib.metadata import version

        import confluent_kafka

        return (
            f"confluent-kafka {version('confluent-kafka')} "
            f"(librdkafka {confluent_kafka.libversion()[0]})"
        )

    def server_version(self) -> str:
        return f"Apache Kafka {self.dist.version} (KRaft; {self.dist.java_version()})"

    def durability(self) -> str:
        return (
            f"acks=all, min.insync.replicas={MIN_INSYNC_REPLICAS}: appended by every in-sync "
            "replica (at least 2 of 3), in page cache -- Kafka's default flush settings do not "
            "fsync before the ack (compare with strata-never)"
        )

    def kafka_bootstrap(self) -> str | None:
        return None if self.cluster is None else self.cluster.bootstrap

    async def start(self, nodes: int, workdir: Path) -> None:
        config = KafkaClusterConfig(
            nodes=nodes,
            min_insync_replicas=min(MIN_INSYNC_REPLICAS, nodes),
            heap=self.heap,
        )
        cluster = ApacheKafkaCluster(config, root=workdir, dist=self.dist)
        self.cluster = cluster
        await asyncio.to_thread(cluster.start)
        from confluent_kafka.admin import AdminClient

        self._admin = AdminClient(_client_config(cluster.bootstrap))
        await self.create_topic(WARMUP_TOPIC, 2 * nodes, nodes)
        seconds = JIT_WARMUP_QUICK_S if self.quick else JIT_WARMUP_S
        await asyncio.to_thread(warm_up, cluster.bootstrap, WARMUP_TOPIC, 2 * nodes, seconds)

    async def stop(self) -> None:
        for client in [*self._producers, *self._consumers]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 10)
        self._producers.clear()
        self._consumers.clear()
        self._admin = None
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop)

    @property
    def _bootstrap(self) -> str:
        if self.cluster is None:
            raise RuntimeError("the cluster is not running")
        return self.cluster.bootstrap

    async def _partitions(self, topic: str) -> dict[int, Any]:
        """The topic's partitions (leader, replicas, isrs) as the cluster's metadata has them."""
        md = await asyncio.to_thread(self._admin.list_topics, topic, timeout=10)
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {topic}: {None if meta is None else meta.error}")
        return dict(meta.partitions)

    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        from confluent_kafka.admin import NewTopic

        futures = self._admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replicas)],
            request_timeout=ADMIN_TIMEOUT_S,
        )
        await asyncio.wrap_future(futures[topic])
        await self._wait_settled(topic, partitions, timeout=120)

    async def _wait_settled(self, topic: str, partitions: int, timeout: float) -> None:
        """Every partition led by its preferred replica with its full replica set in sync."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                parts = await self._partitions(topic)
                if len(parts) == partitions and all(
                    p.replicas and p.leader == p.replicas[0] and sorted(p.isrs) == sorted(p.replicas)
                    for p in parts.values()
                ):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic}: replicas not all in sync after {timeout:g}s")
            await asyncio.sleep(0.1)

    async def delete_topic(self, topic: str) -> None:
        futures = self._admin.delete_topics([topic], request_timeout=ADMIN_TIMEOUT_S)
        await asyncio.wrap_future(futures[topic])

    async def create_producer(self, topic: str, *, lone: bool = False) -> Producer:
        from confluent_kafka import Producer as RdProducer

        client = RdProducer(
            _client_config(
                self._bootstrap,
                **{
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 0 if lone else LINGER_MS,
                    "compression.type": "none",
                },
            )
        )
        handle = KafkaProducerHandle(client, topic)
        self._producers.append(handle)
        ready = await handle.send_to(WARMUP_TOPIC, 0, b"producer ready")
        await asyncio.wait_for(ready, PRODUCER_READY_TIMEOUT_S)
        return handle

    async def create_consumer(
        self,
        topic: str,
        partitions: Sequence[int],
        on_message: OnMessage,
        *,
        from_beginning: bool,
    ) -> Consumer:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition
        from confluent_kafka import Consumer as RdConsumer

        # A group id is required by the client; nothing is committed and assign() never
        # joins the group, so it only names the consumer.
        client = RdConsumer(
            _client_config(
                self._bootstrap,
                **{
                    "group.id": f"strata-bench-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 100,
                },
            )
        )
        if from_beginning:
            offsets = {p: OFFSET_BEGINNING for p in partitions}
        else:
            # The end now, resolved before any producer starts: a lazily resolved "end"
            # would skip the first records, and the scenario waits for every one.
            offsets = {p: await self._end_offset(client, topic, p) for p in partitions}
        client.assign([TopicPartition(topic, p, offset) for p, offset in offsets.items()])
        handle = KafkaConsumerHandle(client, on_message)
        handle.start()
        self._consumers.append(handle)
        return handle

    @staticmethod
    async def _end_offset(client: Any, topic: str, partition: int) -> int:
        """The partition's high watermark, asked until its leader answers (bounded).

        Right after creation a broker can still answer NOT_LEADER for a partition the
        controller's metadata already shows it leading: its own copy is a moment behind.
        """
        from confluent_kafka import TopicPartition

        deadline = time.monotonic() + ADMIN_TIMEOUT_S
        while True:
            try:
                _low, high = await asyncio.to_thread(
                    client.get_watermark_offsets, TopicPartition(topic, partition), 5
                )
                return int(high)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def server_pids(self) -> dict[str, int]:
        if self.cluster is None:
            return {}
        return {f"node-{node_id}": pid for node_id, pid in self.cluster.pids.items()}

    async def find_leader(self, topic: str, partition: int) -> int:
        assert self.cluster is not None
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(Exception):
                leader = (await self._partitions(topic))[partition].leader
                if leader is not None and leader >= 1 and self.cluster.node(leader).alive:
                    return int(leader) - 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}-{partition} has no live leader after 30s")
            await asyncio.sleep(0.05)

    async def kill_node(self, node: int) -> None:
        assert self.cluster is not None
        self.cluster.kill_node(node + 1)

    async def restart_node(self, node: int) -> None:
        assert self.cluster is not None
        await asyncio.to_thread(self.cluster.restart_node, node + 1)

    async def wait_in_sync(self, topic: str, partition: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                p = (await self._partitions(topic))[partition]
                if p.leader is not None and p.leader >= 0 and sorted(p.isrs) == sorted(p.replicas):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}-{partition}: replicas not in sync after {timeout:g}s")
            await asyncio.sleep(0.1)
