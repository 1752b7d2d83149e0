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
import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strata.client.backoff import Backoff
from strata.client.config import ClientConfig
from strata.client.conn import BrokerConnection, ConnectionPool, no_brokers, parse_bootstrap
from strata.client.errors import (
    BrokerConnectionError,
    ClosedError,
    ErrorCode,
    NoBrokersAvailableError,
    StrataError,
    TimedOutError,
    UnknownPartitionError,
    UnknownTopicError,
    UnresolvableHostError,
    error_for,
)
from strata.client.protocol import Api

log = logging.getLogger("strata.client.metadata")

#: A refresh forced by an error is not repeated more often than this (seconds), so a
#: partition bouncing between errors cannot turn the client into a METADATA flood.
MIN_REFRESH_INTERVAL_S = 0.05
#: Bound on one METADATA attempt against one broker before trying the next.
METADATA_ATTEMPT_TIMEOUT_S = 5.0
#: Where background refreshes (:meth:`Cluster.request_refresh`) back off to while
#: nothing changes (seconds), unless the client is configured otherwise.
DEFAULT_REFRESH_BACKOFF_MAX_S = 1.0


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

    def fingerprint(self) -> Hashable:
        """What a refresh may change that clients act on: brokers, leaders, partition counts.

        Two equal fingerprints mean a refresh taught nothing new, so the background
        refresh backs off further instead of polling at full rate.
        """
        return (
            self.controller,
            tuple(sorted(self.brokers.items())),
            tuple(
                (name, tuple((p.leader, p.leader_epoch) for p in t.partitions))
                for name, t in sorted(self.topics.items())
            ),
            tuple(sorted(self.missing)),
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


def _loading_topic(header: Mapping[str, Any]) -> StrataError | None:
    """A topic the broker cannot vouch for yet (it is still loading the metadata log)."""
    for t in header.get("topics", ()):
        if t.get("err") == ErrorCode.LEADER_NOT_AVAILABLE:
            return error_for(t["err"], t.get("msg", "") or f"topic {t.get('name')!r} is loading")
    return None


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
        retry_backoff_max_s: float = DEFAULT_REFRESH_BACKOFF_MAX_S,
        metadata_max_age_s: float = 300.0,
    ) -> None:
        self.bootstrap = parse_bootstrap(bootstrap)  # ValueError for a malformed address
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = max(retry_backoff_max_s, retry_backoff_s)
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
        # Background refreshes (request_refresh): one at a time, paced by a backoff that
        # grows while refreshes teach nothing new, and the loops to wake after each.
        self._background: asyncio.Task[None] | None = None
        self._refresh_backoff = self.new_backoff()
        self._next_background_at = 0.0
        self._listeners: list[Callable[[], None]] = []
        #: The last refresh failure logged (one line per change of state, not per attempt).
        self._logged_failure: str | None = None

    @classmethod
    def from_config(cls, c: ClientConfig) -> Cluster:
        """The cluster a client with these settings talks to (every client builds it here)."""
        return cls(
            c.bootstrap,
            client_id=c.client_id,
            request_timeout_s=c.request_timeout_ms / 1000,
            connect_timeout_s=c.connect_timeout_ms / 1000,
            retry_backoff_s=c.retry_backoff_ms / 1000,
            retry_backoff_max_s=c.retry_backoff_max_ms / 1000,
        )

    @classmethod
    async def connect(cls, c: ClientConfig) -> Cluster:
        """:meth:`from_config`, then a first metadata refresh (``NoBrokersAvailableError``
        when no broker answers); nothing is left open when it fails."""
        cluster = cls.from_config(c)
        try:
            await cluster.refresh(force=True)
        except BaseException:
            await cluster.close()
            raise
        return cluster

    def new_backoff(self) -> Backoff:
        """A backoff with this client's retry settings, for a loop of its own."""
        return Backoff(self.retry_backoff_s, self.retry_backoff_max_s)

    # -- connections -------------------------------------------------------------------

    async def connection(self, broker_id: int) -> BrokerConnection:
        """The connection to broker ``broker_id`` (made on first use)."""
        b = self.cache.brokers.get(broker_id)
        if b is None:
            await self.refresh(force=True)
            b = self.cache.brokers.get(broker_id)
            if b is None:
                raise BrokerConnectionError(f"broker {broker_id} is not in the cluster metadata")
        try:
            return await self.pool.get(b.host, b.port)
        except UnresolvableHostError as exc:
            raise UnresolvableHostError(
                f"broker {broker_id} advertises {b.address}, which does not resolve from this "
                f"client: {exc.message}",
                address=b.address,
            ) from None

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
        tried, and so does a broker answering with a retriable error (e.g. one still
        loading the cluster metadata). When no broker could be reached,
        :class:`NoBrokersAvailableError` names them all; when one answered with a
        retriable error, that error is raised (the caller decides whether to retry).
        """
        attempt_timeout = timeout or min(self.request_timeout_s, METADATA_ATTEMPT_TIMEOUT_S)
        failures: list[tuple[str, StrataError]] = []
        answered: StrataError | None = None
        for host, port in self._candidates():
            try:
                conn = await self.pool.get(host, port)
                header, _ = await conn.request(api, fields, timeout=attempt_timeout)
            except (BrokerConnectionError, TimedOutError) as exc:
                failures.append((f"{host}:{port}", exc))
                if isinstance(exc, TimedOutError):
                    await self.discard(host, port)
                continue
            except ClosedError:
                raise
            except StrataError as exc:
                if not exc.retriable:
                    raise
                answered = exc
                continue
            self._last_good = (host, port)
            return header
        if self._closed:
            raise ClosedError("the client is closed")
        if answered is not None:
            raise answered
        raise no_brokers(failures)

    async def discard(self, host: str, port: int) -> None:
        """Drop the connection to ``host:port`` (it timed out: the broker may be stopped)."""
        conn = self.pool._conns.pop((host, port), None)
        if conn is not None:
            await conn.close()

    async def discard_conn(self, conn: BrokerConnection) -> None:
        await self.discard(conn.host, conn.port)

    # -- metadata ----------------------------------------------------------------------

    async def request_until_answered(
        self,
        api: Api,
        fields: Mapping[str, Any] | None,
        *,
        timeout_s: float | None = None,
        transient: Callable[[dict[str, Any]], StrataError | None] | None = None,
    ) -> dict[str, Any]:
        """:meth:`any_request`, retried with backoff while brokers answer retriable errors.

        A broker that has not caught up with the cluster's metadata log answers
        ``LEADER_NOT_AVAILABLE`` instead of something it cannot vouch for: that is waited
        out here, within ``timeout_s`` (default: the request timeout), asking the other
        brokers first. ``transient(header)`` may name a retriable error inside an answer
        (e.g. one topic's); past the deadline such an answer is returned as it is.
        Unreachable brokers are not waited for (:class:`NoBrokersAvailableError`).
        """
        limit = self.request_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        backoff = self.new_backoff()
        while True:
            header: dict[str, Any] | None = None
            try:
                header = await self.any_request(api, fields)
            except StrataError as exc:
                if not exc.retriable or isinstance(exc, BrokerConnectionError | ClosedError):
                    raise
                last = exc
            else:
                inner = transient(header) if transient is not None else None
                if inner is None:
                    return header
                last = inner
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                if header is not None:
                    return header
                raise TimedOutError(
                    f"{api.name}: no broker could answer within {limit:g}s: "
                    f"{last.message or last}"
                )
            await asyncio.sleep(delay)

    async def metadata(
        self, topics: Iterable[str] | None, *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """A METADATA answer for ``topics`` (None: every topic) that a broker vouches for:
        brokers still loading the cluster metadata are waited out (see
        :meth:`request_until_answered`)."""
        names = None if topics is None else sorted(set(topics))
        return await self.request_until_answered(
            Api.METADATA, {"topics": names}, timeout_s=timeout_s, transient=_loading_topic
        )

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
        header = await self.metadata(self.interest)
        self.cache.update(header)
        self._last_refresh = time.monotonic()

    def request_refresh(self) -> None:
        """Ask for fresh metadata soon, without waiting for it (the I/O loops' way).

        Coalesced (one background refresh at a time) and paced: the next one starts no
        sooner than a backoff after the last, and that backoff doubles (up to
        ``retry_backoff_max_s``) for as long as refreshes bring nothing new, so a client
        waiting for a leader that does not come polls gently instead of spinning. After
        each refresh the listeners (:meth:`add_listener`) are called, so a loop looks again.
        """
        if self._closed or (self._background is not None and not self._background.done()):
            return
        self._background = asyncio.ensure_future(self._background_refresh())

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every background refresh (e.g. to wake a send loop)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    async def _background_refresh(self) -> None:
        delay = self._next_background_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        before = self.cache.fingerprint()
        try:
            await self.refresh(force=True)
        except ClosedError:
            return
        except StrataError as exc:
            self._note_refresh(exc)
        else:
            self._note_refresh(None)
            if self.cache.fingerprint() != before:
                self._refresh_backoff.reset()
        self._next_background_at = time.monotonic() + self._refresh_backoff.next()
        for fn in list(self._listeners):
            fn()

    def _note_refresh(self, exc: StrataError | None) -> None:
        """Log refresh failures once per change of state, not once per attempt."""
        if exc is None:
            if self._logged_failure is not None:
                log.warning("cluster metadata reachable again")
                self._logged_failure = None
            return
        what = f"{type(exc).__name__}: {exc.message}"
        if what != self._logged_failure:
            log.warning(
                "cannot refresh cluster metadata (%s); retrying every %.1fs at most",
                exc.message,
                self.retry_backoff_max_s,
            )
            self._logged_failure = what

    async def list_all(self) -> dict[str, Any]:
        """Metadata for every topic (admin: list/describe); also updates the cache."""
        header = await self.metadata(None)
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
            raise UnknownTopicError(msg)
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
        backoff = self.new_backoff()
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
                if isinstance(exc, NoBrokersAvailableError) or not exc.retriable:
                    raise
                last = exc
                self.cache.controller = None
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                assert last is not None
                raise TimedOutError(
                    f"{api.name} could not reach the controller within {timeout_s:g}s: "
                    f"{last.message or last}"
                )
            if hint is None:
                await asyncio.sleep(delay)

    async def close(self) -> None:
        self._closed = True
        self._listeners.clear()
        for task in (self._refreshing, self._background):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self.pool.close()
