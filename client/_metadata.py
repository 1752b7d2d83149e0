"""Cluster metadata for the clients: who leads which partition, and how to reach brokers.

:class:`MetadataCache` is the pure part: it turns METADATA responses into
:class:`TopicMeta`/:class:`PartitionMeta` and answers "who leads this partition" and
"where does broker N listen". :class:`Cluster` is the I/O around it, shared by the
producer, the consumer and the admin client:

- connections (one per broker, from a :class:`~strata.client.conn.ConnectionPool`);
- metadata refreshes that coalesce (many partitions noticing a leader change at once
  cause one METADATA request, not one each) and fail over between brokers, so a dead or
  stopped broker costs one timeout, not a hang;
- requests that must reach the controller (topic admin, producer ids), following the
  ``controller`` named in ``NOT_CONTROLLER`` answers and retrying while none is elected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strata.client.conn import BrokerConnection, ConnectionPool, parse_bootstrap
from strata.client.errors import (
    BrokerConnectionError,
    ErrorCode,
    NoBrokersAvailableError,
    StrataError,
    TimedOutError,
    UnknownPartitionError,
    UnknownTopicError,
    error_for,
)
from strata.client.protocol import Api

#: A refresh forced by an error is not repeated more often than this (seconds), so a
#: partition bouncing between errors cannot turn the client into a METADATA flood.
MIN_REFRESH_INTERVAL_S = 0.05
#: Bound on one METADATA attempt against one broker before trying the next.
METADATA_ATTEMPT_TIMEOUT_S = 5.0


@dataclass(slots=True, frozen=True)
class BrokerMeta:
    id: int
    host: str
    port: int
    rack: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(slots=True, frozen=True)
class PartitionMeta:
    """One partition as metadata describes it; ``leader`` is ``None`` while none is elected."""

    partition: int
    leader: int | None
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()
    log_start_offset: int = -1
    log_end_offset: int = -1
    high_watermark: int = -1


@dataclass(slots=True, frozen=True)
class TopicMeta:
    name: str
    partitions: tuple[PartitionMeta, ...]
    internal: bool = False
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


class MetadataCache:
    """The latest metadata the client has seen. Pure: no I/O, no clock."""

    __slots__ = ("brokers", "cluster_id", "controller", "missing", "topics", "version")

    def __init__(self) -> None:
        self.brokers: dict[int, BrokerMeta] = {}
        self.topics: dict[str, TopicMeta] = {}
        #: Topics the last refresh reported as unknown (name -> broker's message).
        self.missing: dict[str, str] = {}
        self.controller: int | None = None
        self.cluster_id = ""
        #: Bumped by every update: a cheap "did anything change since" check.
        self.version = 0

    def update(self, header: Mapping[str, Any], *, all_topics: bool = False) -> None:
        """Apply a METADATA response. ``all_topics``: the request asked for every topic,
        so topics absent from the answer are gone."""
        self.version += 1
        self.cluster_id = header.get("cluster_id", self.cluster_id)
        ctl = header.get("controller", -1)
        self.controller = ctl if ctl >= 0 else None
        brokers = {
            b["id"]: BrokerMeta(b["id"], b["host"], b["port"], b.get("rack", ""))
            for b in header.get("brokers", ())
        }
        if brokers:
            self.brokers = brokers
        if all_topics:
            self.topics = {}
        for t in header.get("topics", ()):
            name = t["name"]
            err = t.get("err", 0)
            if err == ErrorCode.UNKNOWN_TOPIC:
                self.topics.pop(name, None)
                self.missing[name] = t.get("msg", "") or f"topic {name!r} does not exist"
                continue
            if err:
                continue  # transient (e.g. leader not available): keep what we knew
            self.missing.pop(name, None)
            parts = tuple(
                sorted(
                    (_partition_meta(p) for p in t.get("partitions", ())),
                    key=lambda p: p.partition,
                )
            )
            self.topics[name] = TopicMeta(
                name, parts, bool(t.get("internal", False)), dict(t.get("configs") or {})
            )

    def leader_for(self, topic: str, partition: int) -> int | None:
        t = self.topics.get(topic)
        if t is None or not 0 <= partition < len(t.partitions):
            return None
        return t.partitions[partition].leader

    def set_leader(self, topic: str, partition: int, leader: int) -> None:
        """Take a ``NOT_LEADER`` hint: the broker told us who leads now."""
        t = self.topics.get(topic)
        if t is None or not 0 <= partition < len(t.partitions):
            return
        old = t.partitions[partition]
        if old.leader == leader:
            return
        parts = list(t.partitions)
        parts[partition] = PartitionMeta(
            old.partition,
            leader,
            old.leader_epoch,
            old.replicas,
            old.isr,
            old.log_start_offset,
            old.log_end_offset,
            old.high_watermark,
        )
        self.topics[topic] = TopicMeta(t.name, tuple(parts), t.internal, t.configs)
        self.version += 1

    def add_broker_address(self, broker_id: int, addr: str) -> None:
        """Learn a broker's address from a ``leader_addr`` hint."""
        if broker_id < 0 or not addr or broker_id in self.brokers:
            return
        with contextlib.suppress(ValueError):
            ((host, port),) = parse_bootstrap(addr)
            self.brokers[broker_id] = BrokerMeta(broker_id, host, port)


def _partition_meta(p: Mapping[str, Any]) -> PartitionMeta:
    leader = p.get("leader", -1)
    return PartitionMeta(
        partition=p["partition"],
        leader=leader if leader >= 0 else None,
        leader_epoch=p.get("leader_epoch", -1),
        replicas=tuple(p.get("replicas", ())),
        isr=tuple(p.get("isr", ())),
        log_start_offset=p.get("log_start_offset", -1),
        log_end_offset=p.get("log_end_offset", -1),
        high_watermark=p.get("high_watermark", -1),
    )


class Cluster:
    """Connections, metadata and controller requests, for one client object (asyncio)."""

    def __init__(
        self,
        bootstrap: str | Iterable[str],
        *,
        client_id: str = "strata-python",
        request_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        retry_backoff_s: float = 0.1,
        metadata_max_age_s: float = 300.0,
    ) -> None:
        self.bootstrap = parse_bootstrap(bootstrap)  # ValueError for a malformed address
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.metadata_max_age_s = metadata_max_age_s
        self.pool = ConnectionPool(
            [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.bootstrap],
            client_id=client_id,
            timeout=connect_timeout_s,
            request_timeout=request_timeout_s,
        )
        self.cache = MetadataCache()
        #: Topics this client cares about; a refresh asks for all of them.
        self.interest: set[str] = set()
        self._refreshing: asyncio.Task[None] | None = None
        self._last_refresh = float("-inf")
        self._last_good: tuple[str, int] | None = None
        self._closed = False

    # -- connections -------------------------------------------------------------------

    async def connection(self, broker_id: int) -> BrokerConnection:
        """The connection to broker ``broker_id`` (made on first use)."""
        b = self.cache.brokers.get(broker_id)
        if b is None:
            await self.refresh(force=True)
            b = self.cache.brokers.get(broker_id)
            if b is None:
                raise BrokerConnectionError(f"broker {broker_id} is not in the cluster metadata")
        return await self.pool.get(b.host, b.port)

    def _candidates(self) -> list[tuple[str, int]]:
        """Addresses to ask for metadata: the last one that worked, known brokers, bootstrap."""
        out: list[tuple[str, int]] = []
        if self._last_good is not None:
            out.append(self._last_good)
        for b in self.cache.brokers.values():
            if (b.host, b.port) not in out:
                out.append((b.host, b.port))
        for addr in self.bootstrap:
            if addr not in out:
                out.append(addr)
        return out

    async def any_request(
        self, api: Api, fields: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send a request any broker can answer, failing over between brokers.

        Each broker gets at most ``timeout`` (default: a few seconds) before the next is
        tried; when none answers, :class:`NoBrokersAvailableError` names them all.
        """
        attempt_timeout = timeout or min(self.request_timeout_s, METADATA_ATTEMPT_TIMEOUT_S)
        failures: list[str] = []
        for host, port in self._candidates():
            try:
                conn = await self.pool.get(host, port)
                header, _ = await conn.request(api, fields, timeout=attempt_timeout)
            except (BrokerConnectionError, TimedOutError) as exc:
                failures.append(f"{host}:{port} ({exc.message})")
                if isinstance(exc, TimedOutError):
                    await self.discard(host, port)
                continue
            self._last_good = (host, port)
            return header
        if self._closed:
            raise BrokerConnectionError("the client is closed")
        raise NoBrokersAvailableError(
            "no broker reachable: "
            + "; ".join(failures)
            + ". Check --bootstrap / STRATA_BOOTSTRAP and that the brokers are running."
        )

    async def discard(self, host: str, port: int) -> None:
        """Drop the connection to ``host:port`` (it timed out: the broker may be stopped)."""
        conn = self.pool._conns.pop((host, port), None)
        if conn is not None:
            await conn.close()

    async def discard_conn(self, conn: BrokerConnection) -> None:
        await self.discard(conn.host, conn.port)

    # -- metadata ----------------------------------------------------------------------

    async def refresh(self, topics: Iterable[str] = (), *, force: bool = False) -> MetadataCache:
        """Fetch fresh metadata for ``topics`` plus every topic of interest.

        Concurrent callers share one request. Without ``force`` a recent refresh is reused.
        """
        new = set(topics) - self.interest
        self.interest.update(new)
        now = time.monotonic()
        fresh = now - self._last_refresh < (
            MIN_REFRESH_INTERVAL_S if force else self.metadata_max_age_s
        )
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.shield(self._refreshing)
            if not new:
                return self.cache
        elif fresh and not new and self.cache.brokers:
            return self.cache
        self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)
        return self.cache

    async def _refresh(self) -> None:
        names = sorted(self.interest)
        header = await self.any_request(Api.METADATA, {"topics": names})
        self.cache.update(header)
        self._last_refresh = time.monotonic()

    async def list_all(self) -> dict[str, Any]:
        """Metadata for every topic (admin: list/describe); also updates the cache."""
        header = await self.any_request(Api.METADATA, {"topics": None})
        self.cache.update(header, all_topics=False)
        return header

    async def topic(self, name: str) -> TopicMeta:
        """A topic's metadata, refreshing once if unknown; :class:`UnknownTopicError` if absent."""
        t = self.cache.topics.get(name)
        if t is not None:
            return t
        await self.refresh([name], force=True)
        t = self.cache.topics.get(name)
        if t is None:
            msg = self.cache.missing.get(name) or f"topic {name!r} does not exist"
            raise UnknownTopicError(f"{msg}; create it first (strata topic create {name} ...)")
        return t

    async def partition_count(self, topic: str) -> int:
        return (await self.topic(topic)).partition_count

    async def check_partition(self, topic: str, partition: int) -> None:
        n = await self.partition_count(topic)
        if not 0 <= partition < n:
            raise UnknownPartitionError(
                f"topic {topic!r} has partitions 0-{n - 1}; partition {partition} does not exist",
                retriable=False,
            )

    def note_not_leader(self, topic: str, partition: int, exc: StrataError) -> bool:
        """Apply a ``NOT_LEADER`` answer's hint; True if it named a leader we can go to."""
        leader = exc.details.get("leader", -1)
        addr = exc.details.get("leader_addr", "")
        if isinstance(leader, int) and leader >= 0:
            self.cache.add_broker_address(leader, addr)
            self.cache.set_leader(topic, partition, leader)
            return leader in self.cache.brokers
        return False

    # -- the controller ----------------------------------------------------------------

    async def controller_request(
        self, api: Api, fields: Mapping[str, Any], *, timeout_s: float
    ) -> dict[str, Any]:
        """Send ``api`` to the controller and return its answer (top-level errors raised).

        Follows ``NOT_CONTROLLER`` answers (their ``controller`` field, else fresh
        metadata) and retries while no controller is elected or it cannot be reached,
        until ``timeout_s`` has passed.
        """
        deadline = time.monotonic() + timeout_s
        backoff = self.retry_backoff_s
        hint: int | None = None
        last: StrataError | None = None
        while True:
            ctl = hint if hint is not None else self.cache.controller
            hint = None
            try:
                if ctl is None:
                    await self.refresh(force=True)
                    ctl = self.cache.controller
                if ctl is not None:
                    conn = await self.connection(ctl)
                    remaining = max(0.1, deadline - time.monotonic())
                    header, _ = await conn.request(
                        api, fields, timeout=remaining, raise_on_error=False
                    )
                    err = header.get("err", 0)
                    if not err:
                        return header
                    exc = error_for(
                        err,
                        header.get("msg", ""),
                        **{k: v for k, v in header.items() if k not in ("api", "v", "cid")},
                    )
                    if err == ErrorCode.NOT_CONTROLLER:
                        new = header.get("controller", -1)
                        hint = new if isinstance(new, int) and new >= 0 and new != ctl else None
                        self.cache.controller = hint
                    elif not exc.retriable:
                        raise exc
                    last = exc
                else:
                    last = StrataError(
                        "no controller is elected yet", code=ErrorCode.NOT_CONTROLLER
                    )
            except (BrokerConnectionError, TimedOutError) as exc:
                if isinstance(exc, NoBrokersAvailableError):
                    raise
                last = exc
                self.cache.controller = None
            if time.monotonic() + backoff > deadline:
                assert last is not None
                raise TimedOutError(
                    f"{api.name} could not reach the controller within {timeout_s:g}s: "
                    f"{last.message or last}"
                )
            if hint is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def close(self) -> None:
        self._closed = True
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()
            with contextlib.suppress(BaseException):
                await self._refreshing
        await self.pool.close()
