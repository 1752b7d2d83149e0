"""Redis Streams: one redis-server with an append-only file, one stream key per partition.

Redis has no built-in replicated log, so its rows are **a single server**: the
``replicationFactor`` of a workload is ignored and the results say so. The
durability knob is the AOF fsync policy, benchmarked as two rows:

* ``redis-aof-always``: fsync the AOF before answering (per event-loop turn, so
  every command of one pipeline shares one fsync) -- comparable to Strata's
  ``always`` flush policy, minus replication;
* ``redis-aof-everysec``: fsync once a second; an ack may be lost on power loss.

Producing pipelines ``XADD``: records handed to :meth:`RedisProducer.send`
while a pipeline is in flight are sent together as the next pipeline (a
producer "linger" of one round trip), which is how a Redis client gets
throughput. Consuming uses ``XREAD BLOCK`` over the consumer's stream keys.
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
from benchmarks.omb.procs import ServerProcess, free_port, wait_tcp

FIELD = b"d"
MAX_PIPELINE = 2000
READ_COUNT = 2000


def stream_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def _client(port: int) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis(host="127.0.0.1", port=port, decode_responses=False, socket_timeout=30)


class RedisProducer(Producer):
    """Queues XADDs and sends them as pipelines, one pipeline in flight at a time."""

    def __init__(self, client: Any, topic: str) -> None:
        self._client = client
        self._topic = topic
        self._keys: dict[int, str] = {}
        self._pending: list[tuple[str, bytes, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._closed = False

    async def send(self, partition: int, payload: bytes) -> asyncio.Future[Any]:
        if self._closed:
            raise RuntimeError("producer is closed")
        key = self._keys.get(partition)
        if key is None:
            key = self._keys[partition] = stream_key(self._topic, partition)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((key, payload, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(
                self._flush_loop(), name=f"redis-flush-{self._topic}"
            )
        self._wakeup.set()
        return fut

    async def _flush_loop(self) -> None:
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:MAX_PIPELINE]
                del self._pending[:MAX_PIPELINE]
                pipe = self._client.pipeline(transaction=False)
                for key, payload, _ in batch:
                    pipe.xadd(key, {FIELD: payload})
                try:
                    replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, _, fut), reply in zip(batch, replies, strict=True):
                    if fut.done():
                        continue
                    if isinstance(reply, Exception):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)

    async def flush(self) -> None:
        while self._pending:
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        for _, _, fut in self._pending:
            if not fut.done():
                fut.set_exception(RuntimeError("producer closed"))
        self._pending.clear()
        with contextlib.suppress(Exception):
            await self._client.aclose()


class RedisConsumer(Consumer):
    def __init__(self, client: Any, task: asyncio.Task[None]) -> None:
        self._client = client
        self._task = task

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        with contextlib.suppress(Exception):
            await self._client.aclose()


class RedisStreamsDriver(Driver):
    """One redis-server; ``appendfsync`` picks the durability row."""

    supports_failover = False

    def __init__(self, appendfsync: str = "always", binary: str = "redis-server") -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, got {appendfsync!r}")
        self.appendfsync = appendfsync
        self.name = f"redis-aof-{appendfsync}"
        self.binary = binary
        self.server: ServerProcess | None = None
        self.port = 0
        self._admin: Any = None
        self._owned: list[Producer | Consumer] = []

    @property
    def client_name(self) -> str:
        from importlib.metadata import version

        return f"redis-py {version('redis')}"

    def server_version(self) -> str:
        path = shutil.which(self.binary)
        if path is None:
            return "not installed"
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def durability(self) -> str:
        return f"single server, no replication; AOF appendfsync {self.appendfsync}"

    def nodes_for(self, replication_factor: int) -> int:
        return 1

    async def start(self, nodes: int, workdir: Path) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise RuntimeError(
                f"{self.binary} not found on PATH (apt-get install redis-server, or `make bench`)"
            )
        if nodes != 1:
            raise ValueError("the Redis driver runs exactly one server")
        node_dir = workdir / "redis"
        node_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [
            path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(node_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
        ]  # fmt: skip
        self.server = ServerProcess("node-1", argv, node_dir / "server.log", node_dir)
        try:
            self.server.start()
            await wait_tcp("127.0.0.1", self.port, 15, self.server)
            self._admin = _client(self.port)
            await self._admin.ping()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for owned in self._owned:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(owned.close(), 2)
        self._owned.clear()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.aclose()
            self._admin = None
        if self.server is not None:
            self.server.stop()

    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        # XGROUP CREATE ... MKSTREAM is the one command that makes an *empty*
        # stream key, so that idle partitions exist before any record does.
        pipe = self._admin.pipeline(transaction=False)
        for p in range(partitions):
            pipe.xgroup_create(stream_key(topic, p), "bench", id="$", mkstream=True)
        await pipe.execute()

    async def delete_topic(self, topic: str) -> None:
        keys = [k async for k in self._admin.scan_iter(match=f"{topic}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await self._admin.delete(*keys[start : start + 500])

    async def create_producer(self, topic: str, *, lone: bool = False) -> Producer:
        producer = RedisProducer(_client(self.port), topic)
        self._owned.append(producer)
        return producer

    async def create_consumer(
        self,
        topic: str,
        partitions: Sequence[int],
        on_message: OnMessage,
        *,
        from_beginning: bool,
    ) -> Consumer:
        client = _client(self.port)
        keys = {stream_key(topic, p).encode(): p for p in partitions}
        last: dict[bytes, bytes] = {}
        for key in keys:
            if from_beginning:
                last[key] = b"0-0"
            else:
                # "$" only means "after the last entry" for one call; pin the id now.
                tail = await client.xrevrange(key, count=1)
                last[key] = tail[0][0] if tail else b"0-0"

        async def read_loop() -> None:
            clock = time.time_ns
            while True:
                reply = await client.xread(last, count=READ_COUNT, block=100)
                now = clock()
                for key, entries in reply or ():
                    partition = keys[key]
                    for _entry_id, fields in entries:
                        on_message(partition, fields[FIELD], now)
                    last[key] = entries[-1][0]

        task = asyncio.create_task(read_loop(), name=f"redis-consume-{topic}")
        consumer = RedisConsumer(client, task)
        self._owned.append(consumer)
        return consumer

    def server_pids(self) -> dict[str, int]:
        if self.server is None or not self.server.alive():
            return {}
        return {self.server.name: self.server.pid}
