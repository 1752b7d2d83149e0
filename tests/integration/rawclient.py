"""A deliberately small client for broker tests, speaking the wire protocol directly.

It is an independent oracle: the broker's guarantees (acks, idempotence, high watermark,
NOT_LEADER hints) are checked without relying on the client library's own retries. Each
partition is written sequentially (one batch in flight), with an idempotent producer id,
so a retried batch must come back with its original offset.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from strata.client.conn import BrokerConnection, connect_any, open_connection
from strata.client.errors import StrataError
from strata.client.protocol import Api
from strata.client.records import RecordBatchBuilder, decode_batches

RETRIABLE_SLEEP_S = 0.05


@dataclass
class RawClient:
    bootstrap: str
    timeout_s: float = 60.0
    conns: dict[int, BrokerConnection] = field(default_factory=dict)
    brokers: dict[int, tuple[str, int]] = field(default_factory=dict)
    controller: int = -1
    _boot: BrokerConnection | None = None

    async def close(self) -> None:
        for c in list(self.conns.values()) + ([self._boot] if self._boot else []):
            try:
                await c.close()
            except Exception:
                pass
        self.conns.clear()
        self._boot = None

    async def _any(self) -> BrokerConnection:
        if self._boot is None or self._boot.closed:
            self._boot = await connect_any(self.bootstrap, client_id="rawclient", timeout=2.0)
        return self._boot

    async def metadata(self, topics: list[str] | None = None) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                conn = await self._any()
                hdr, _ = await conn.request(Api.METADATA, {"topics": topics}, timeout=5.0)
                self.brokers = {b["id"]: (b["host"], b["port"]) for b in hdr["brokers"]}
                self.controller = hdr["controller"]
                return hdr
            except StrataError:
                self._boot = None
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(RETRIABLE_SLEEP_S)

    async def conn(self, broker_id: int) -> BrokerConnection:
        c = self.conns.get(broker_id)
        if c is None or c.closed:
            host, port = self.brokers[broker_id]
            c = await open_connection(host, port, client_id="rawclient", timeout=2.0)
            self.conns[broker_id] = c
        return c

    async def call_controller(self, api: Api, fields: dict) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while True:
            await self.metadata([])
            if self.controller >= 0:
                try:
                    hdr, _ = await (await self.conn(self.controller)).request(api, fields, timeout=10.0,
                                                                              raise_on_error=False)
                    if hdr.get("err") == 60:  # NOT_CONTROLLER: follow it
                        raise StrataError("not controller")
                    return hdr
                except StrataError:
                    self.conns.pop(self.controller, None)
            if time.monotonic() > deadline:
                raise TimeoutError("no controller answered")
            await asyncio.sleep(RETRIABLE_SLEEP_S)

    async def create_topic(self, name: str, partitions: int, rf: int, configs: dict | None = None) -> None:
        hdr = await self.call_controller(Api.CREATE_TOPICS, {"topics": [
            {"name": name, "partitions": partitions, "replication_factor": rf, "configs": configs or {}}]})
        t = hdr["topics"][0]
        assert t["err"] == 0, t
        await self.wait_leaders(name)

    async def wait_leaders(self, name: str) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while True:
            md = await self.metadata([name])
            t = md["topics"][0]
            if t["err"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"]):
                return t
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions of {name} have no leader: {t}")
            await asyncio.sleep(RETRIABLE_SLEEP_S)

    async def leader(self, topic: str, partition: int) -> int:
        t = await self.wait_leaders(topic)
        return t["partitions"][partition]["leader"]

    async def init_producer_id(self) -> int:
        hdr = await self.call_controller(Api.INIT_PRODUCER_ID, {})
        assert hdr["err"] == 0, hdr
        return hdr["producer_id"]

    async def produce(self, topic: str, partition: int, batch: bytes, *, acks: int = -1,
                      timeout_s: float | None = None) -> dict:
        """Send one batch, retrying retriable errors (same bytes, so idempotence de-duplicates)."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        leader = None
        while True:
            try:
                if leader is None:
                    leader = await self.leader(topic, partition)
                hdr, _ = await (await self.conn(leader)).request(
                    Api.PRODUCE, {"topic": topic, "partition": partition, "acks": acks, "timeout_ms": 5000},
                    batch, timeout=10.0, raise_on_error=False)
                if hdr["err"] == 0:
                    return hdr
                from strata.client.errors import ErrorCode

                code = ErrorCode.parse(hdr["err"])
                if not code.retriable:
                    return hdr
                leader = hdr.get("leader", -1) if code == ErrorCode.NOT_LEADER else None
                if leader is not None and leader < 0:
                    leader = None
            except StrataError:
                if leader is not None:
                    self.conns.pop(leader, None)
                leader = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not produce to {topic}-{partition}")
            await asyncio.sleep(RETRIABLE_SLEEP_S)

    async def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20,
                    max_wait_ms: int = 0) -> tuple[dict, bytes]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                leader = await self.leader(topic, partition)
                hdr, payload = await (await self.conn(leader)).request(
                    Api.FETCH, {"max_wait_ms": max_wait_ms, "partitions": [
                        {"topic": topic, "partition": partition, "offset": offset, "max_bytes": max_bytes}]},
                    timeout=10.0)
                part = hdr["partitions"][0]
                if part["err"] == 0 or part["err"] == 26:  # OFFSET_OUT_OF_RANGE is an answer
                    return part, bytes(payload[part["pos"]: part["pos"] + part["size"]])
            except StrataError:
                self.conns.clear()
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not fetch {topic}-{partition}")
            await asyncio.sleep(RETRIABLE_SLEEP_S)

    async def read_all(self, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
        """Every data record below the high watermark, from the log start."""
        out: list[tuple[int, bytes | None]] = []
        offset = 0
        while True:
            part, data = await self.fetch(topic, partition, offset)
            if part["err"] == 26:
                offset = part["log_start_offset"]
                continue
            if not data:
                if offset >= part["high_watermark"]:
                    return out
                continue
            for b in decode_batches(data):
                if not b.header.is_control:
                    out.extend((r.offset, r.value) for r in b.records)
                offset = b.header.next_offset


def make_batch(values: list[bytes], producer_id: int = -1, base_sequence: int = -1) -> bytes:
    b = RecordBatchBuilder(producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                           base_sequence=base_sequence)
    now = int(time.time() * 1000)
    for v in values:
        b.append(now, None, v)
    return b.build()
