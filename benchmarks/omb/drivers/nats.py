"""NATS JetStream: three clustered nats-server processes, one R3 stream per partition.

Mapping a topic onto JetStream: **one stream per partition** (stream
``<topic>-p<N>`` holding subject ``<topic>.<N>``). Each stream is its own Raft
group with its own leader, which is what a Kafka/Strata partition is; one stream
per topic would put every partition behind a single Raft group and make the
"1,000 idle partitions" row measure one group instead of a thousand.

Acknowledgement: a JetStream publish ack arrives once the stream's Raft group
has stored the message on a quorum (2 of 3) of file-storage replicas. nats-server
2.9 does not fsync each message (it syncs on an interval), so an ack means
"replicated to a quorum's page cache" -- stated in the results as such.
Publishing uses nats-py's ``publish_async`` (many publishes in flight, each
with its own ack future); the runner bounds how many are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.omb.driver import Consumer, Driver, OnMessage, Producer
from benchmarks.omb.procs import ServerProcess, free_ports, wait_tcp

CLUSTER_NAME = "strata-bench"
STREAM_CREATE_CONCURRENCY = 16


def stream_name(topic: str, partition: int) -> str:
    return f"{topic}-p{partition}"


def subject_name(topic: str, partition: int) -> str:
    return f"{topic}.{partition}"


def node_config(
    name: str, client_port: int, cluster_port: int, route_ports: Sequence[int], store_dir: Path
) -> str:
    """A nats-server config for one clustered JetStream node on loopback."""
    routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in route_ports)
    return f"""server_name: "{name}"
host: "127.0.0.1"
port: {client_port}
jetstream {{
  store_dir: "{store_dir}"
  max_memory_store: 256MB
  max_file_store: 16GB
}}
cluster {{
  name: "{CLUSTER_NAME}"
  host: "127.0.0.1"
  port: {cluster_port}
  routes: [{routes}]
}}
"""


async def _quiet(*_args: Any) -> None:
    """nats-py prints every reconnect by default; during a failover that is noise."""


async def _connect(urls: list[str], name: str) -> Any:
    import nats

    return await nats.connect(
        servers=urls,
        name=name,
        connect_timeout=2,
        reconnect_time_wait=0.05,
        max_reconnect_attempts=-1,
        error_cb=_quiet,
        disconnected_cb=_quiet,
        reconnected_cb=_quiet,
        closed_cb=_quiet,
    )


class NatsProducer(Producer):
    def __init__(self, nc: Any, topic: str, max_pending: int) -> None:
        self._nc = nc
        self._js = nc.jetstream(publish_async_max_pending=max_pending)
        self._subjects: dict[int, str] = {}
        self._topic = topic

    async def send(self, partition: int, payload: bytes) -> asyncio.Future[Any]:
        subject = self._subjects.get(partition)
        if subject is None:
            subject = self._subjects[partition] = subject_name(self._topic, partition)
        fut: asyncio.Future[Any] = await self._js.publish_async(subject, payload)
        return fut

    async def flush(self) -> None:
        await self._nc.flush()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._nc.close()


class NatsConsumer(Consumer):
    def __init__(self, nc: Any) -> None:
        self._nc = nc
        self.subs: list[Any] = []

    async def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self._nc.close()


class NatsJetStreamDriver(Driver):
    """Three nats-server processes clustered on loopback, JetStream on file storage."""

    name = "nats-jetstream"
    supports_failover = True

    def __init__(self, binary: str = "nats-server") -> None:
        self.binary = binary
        self.servers: list[ServerProcess] = []
        self.client_ports: list[int] = []
        self._admin: Any = None
        self._clients: list[Any] = []
        self._topics: dict[str, int] = {}

    @property
    def client_name(self) -> str:
        from importlib.metadata import version

        return f"nats-py {version('nats-py')}"

    def server_version(self) -> str:
        path = shutil.which(self.binary)
        if path is None:
            return "not installed"
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip()

    def durability(self) -> str:
        return "ack after a quorum (2 of 3) stored the message (file storage, no per-message fsync)"

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    async def start(self, nodes: int, workdir: Path) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise RuntimeError(
                f"{self.binary} not found on PATH (apt-get install nats-server, or `make bench`)"
            )
        ports = free_ports(2 * nodes)
        self.client_ports = ports[:nodes]
        cluster_ports = ports[nodes:]
        self.servers = []
        try:
            for i in range(nodes):
                name = f"n{i + 1}"
                node_dir = workdir / name
                node_dir.mkdir(parents=True, exist_ok=True)
                routes = [p for j, p in enumerate(cluster_ports) if j != i]
                conf = node_dir / "nats.conf"
                conf.write_text(
                    node_config(
                        name, self.client_ports[i], cluster_ports[i], routes, node_dir / "js"
                    )
                )
                server = ServerProcess(
                    name, [path, "-c", str(conf)], node_dir / "server.log", node_dir
                )
                self.servers.append(server)
                server.start()
            for server, port in zip(self.servers, self.client_ports, strict=True):
                await wait_tcp("127.0.0.1", port, 15, server)
            self._admin = await _connect(self.urls, "bench-admin")
            await self._wait_meta_leader(timeout=30)
        except BaseException:
            await self.stop()
            raise

    async def _wait_meta_leader(self, timeout: float) -> None:
        """JetStream answers API calls only once the cluster elected its meta leader."""
        js = self._admin.jetstream()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                await js.account_info()
                return
            except Exception as exc:  # the API is unavailable until then
                last = exc
                await asyncio.sleep(0.1)
        raise TimeoutError(f"JetStream meta leader not elected after {timeout}s: {last!r}")

    async def stop(self) -> None:
        for nc in [*self._clients, self._admin]:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 2)
        self._clients.clear()
        self._admin = None
        for server in self.servers:
            server.stop()

    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        from nats.js.api import StorageType, StreamConfig

        js = self._admin.jetstream(timeout=30)
        limit = asyncio.Semaphore(STREAM_CREATE_CONCURRENCY)
        self._topics[topic] = partitions

        async def create(p: int) -> None:
            config = StreamConfig(
                name=stream_name(topic, p),
                subjects=[subject_name(topic, p)],
                num_replicas=replicas,
                storage=StorageType.FILE,
            )
            async with limit:
                await js.add_stream(config)

        async with asyncio.TaskGroup() as tg:
            for p in range(partitions):
                tg.create_task(create(p))
        # A stream answers publishes once its own Raft group has a leader.
        for p in range(partitions):
            await self._wait_stream_leader(topic, p, timeout=30)

    async def delete_topic(self, topic: str) -> None:
        js = self._admin.jetstream(timeout=30)
        names = [stream_name(topic, p) for p in range(self._topics.pop(topic, 0))]
        limit = asyncio.Semaphore(STREAM_CREATE_CONCURRENCY)

        async def delete(name: str) -> None:
            async with limit:
                await js.delete_stream(name)

        async with asyncio.TaskGroup() as tg:
            for name in names:
                tg.create_task(delete(name))

    async def _wait_stream_leader(self, topic: str, partition: int, timeout: float) -> str:
        js = self._admin.jetstream(timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(stream_name(topic, partition))
                if info.cluster is not None and info.cluster.leader:
                    return str(info.cluster.leader)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"stream {stream_name(topic, partition)} has no leader after {timeout}s"
                )
            await asyncio.sleep(0.05)

    async def create_producer(self, topic: str, *, lone: bool = False) -> Producer:
        nc = await _connect(self.urls, f"bench-producer-{topic}")
        self._clients.append(nc)
        return NatsProducer(nc, topic, max_pending=100_000)

    async def create_consumer(
        self,
        topic: str,
        partitions: Sequence[int],
        on_message: OnMessage,
        *,
        from_beginning: bool,
    ) -> Consumer:
        from nats.js.api import DeliverPolicy

        nc = await _connect(self.urls, f"bench-consumer-{topic}")
        self._clients.append(nc)
        js = nc.jetstream()
        consumer = NatsConsumer(nc)
        policy = DeliverPolicy.ALL if from_beginning else DeliverPolicy.NEW
        clock = time.time_ns
        for p in partitions:

            async def deliver(msg: Any, _p: int = p) -> None:
                on_message(_p, msg.data, clock())

            # Ordered consumers: ephemeral, no acks, flow-controlled push -- the
            # fastest way nats-py offers to stream a whole subject in order.
            sub = await js.subscribe(
                subject_name(topic, p),
                cb=deliver,
                ordered_consumer=True,
                deliver_policy=policy,
                stream=stream_name(topic, p),
                pending_msgs_limit=1_000_000,
                pending_bytes_limit=1 << 30,
            )
            consumer.subs.append(sub)
        return consumer

    def server_pids(self) -> dict[str, int]:
        return {s.name: s.pid for s in self.servers if s.alive()}

    async def find_leader(self, topic: str, partition: int) -> int:
        leader = await self._wait_stream_leader(topic, partition, timeout=30)
        return [s.name for s in self.servers].index(leader)

    async def kill_node(self, node: int) -> None:
        self.servers[node].kill()

    async def restart_node(self, node: int) -> None:
        server = self.servers[node]
        server.start()
        await wait_tcp("127.0.0.1", self.client_ports[node], 15, server)

    async def wait_in_sync(self, topic: str, partition: int, timeout: float) -> None:
        js = self._admin.jetstream(timeout=2)
        deadline = time.monotonic() + timeout
        want = len(self.servers) - 1
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(stream_name(topic, partition))
                cluster = info.cluster
                if cluster is not None and cluster.leader:
                    peers = cluster.replicas or []
                    if len(peers) >= want and all(r.current and not r.offline for r in peers):
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"stream {stream_name(topic, partition)} replicas not current after {timeout}s"
                )
            await asyncio.sleep(0.1)
