"""The asyncio admin client: :class:`AIOAdminClient`, topics, configs, the cluster and
consumer groups.

Topic and config changes go to the controller (following ``NOT_CONTROLLER``); group
requests go to each group's coordinator (found with FIND_COORDINATOR and followed when it
moves); descriptions come from any broker. The sync
:class:`~strata.client.admin.sync.AdminClient` runs this same object on a background loop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from strata.client._types import TopicPartition
from strata.client.admin.configs import (
    ConfigEntry,
    ConfigResource,
    ConfigResourceType,
    NewPartitions,
    config_value,
)
from strata.client.admin.types import (
    BrokerDescription,
    ClusterDescription,
    CreatedTopic,
    GroupDescription,
    GroupListing,
    NewTopic,
    OffsetChange,
    PartitionDescription,
    TopicDescription,
)
from strata.client.backoff import Backoff
from strata.client.cluster import Cluster
from strata.client.config import ClientConfig
from strata.client.consumer.group import CoordinatorClient, admin_commit
from strata.client.consumer.offsets import (
    EARLIEST,
    LATEST,
    ListedOffset,
    list_offsets,
    list_offsets_once,
)
from strata.client.errors import (
    ClosedError,
    ErrorCode,
    FeatureNotAvailableError,
    GroupIdNotFoundError,
    NonEmptyGroupError,
    StrataError,
    TimedOutError,
    UnknownApiError,
    UnknownPartitionError,
    UnknownTopicError,
    UnsupportedVersionError,
    error_for,
)
from strata.client.protocol import Api

log = logging.getLogger("strata.client.admin")


@dataclass(slots=True)
class AdminConfig(ClientConfig):
    """Admin client settings (kafka-python's names, ``_ms`` in milliseconds)."""

    KIND: ClassVar[str] = "admin client"

    client_id: str = "strata-admin"


class AIOAdminClient:
    """Topic, cluster and consumer-group administration.

    Topic changes go to the controller; group requests go to each group's coordinator
    (found with FIND_COORDINATOR and followed when it moves).
    """

    def __init__(self, bootstrap: str | Sequence[str] | None = None, **options: Any) -> None:
        self.config = AdminConfig.build(bootstrap, **options)
        self.request_timeout_s = self.config.request_timeout_ms / 1000
        self._cluster = Cluster.from_config(self.config)
        self._retry_backoff_s = self.config.retry_backoff_ms / 1000
        self._coords: dict[str, CoordinatorClient] = {}
        self._closed = False

    async def start(self) -> None:
        await self._cluster.refresh(force=True)

    async def __aenter__(self) -> AIOAdminClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the admin client is closed; create a new one")

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout_ms: int | None = None,
    ) -> CreatedTopic:
        """Create a topic; with ``wait`` return once every partition has a leader.

        ``replication_factor=-1`` uses the cluster's default; the answer says what was used.
        """
        (created,) = await self.create_topics(
            [NewTopic(name, partitions, replication_factor, dict(configs or {}))],
            wait=wait,
            timeout_ms=timeout_ms,
        )
        return created

    async def create_topics(
        self,
        topics: Iterable[NewTopic],
        *,
        wait: bool = True,
        timeout_ms: int | None = None,
        validate_only: bool = False,
    ) -> list[CreatedTopic]:
        """Create several topics; raises the first topic's error (e.g. TopicAlreadyExistsError).

        Returns, per topic, the partition count and replication factor the controller used
        (-1 where a broker does not say).
        """
        self._check_open()
        new = list(topics)
        for t in new:
            if not isinstance(t.partitions, int) or not isinstance(t.replication_factor, int):
                raise TypeError("partitions and replication_factor must be ints")
        timeout_s = self.request_timeout_s if timeout_ms is None else timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        header = await self._cluster.controller_request(
            Api.CREATE_TOPICS,
            {
                "topics": [
                    {
                        "name": t.name,
                        "partitions": t.partitions,
                        "replication_factor": t.replication_factor,
                        "configs": {str(k): str(v) for k, v in t.configs.items()},
                    }
                    for t in new
                ],
                "timeout_ms": int(timeout_s * 1000),
                "validate_only": validate_only,
            },
            timeout_s=timeout_s,
        )
        entries = header.get("topics", ())
        _raise_first(entries)
        by_name = {e.get("name"): e for e in entries}
        created = [
            CreatedTopic(
                t.name,
                by_name.get(t.name, {}).get("partitions", -1),
                by_name.get(t.name, {}).get("replication_factor", -1),
            )
            for t in new
        ]
        if wait and not validate_only:
            await self._wait_for_leaders({t.name: t.partitions for t in new}, deadline)
        return created

    async def _wait_for_leaders(self, counts: Mapping[str, int], deadline: float) -> None:
        """Until each topic has (at least) its partition count, every one with a leader."""
        backoff = self._cluster.new_backoff()
        while True:
            await self._cluster.refresh(counts, force=True)
            cache = self._cluster.cache
            waiting = [
                n
                for n, count in counts.items()
                if n not in cache.topics
                or cache.topics[n].partition_count < count
                or any(p.leader is None for p in cache.topics[n].partitions)
            ]
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise TimedOutError(
                    f"topic(s) {', '.join(waiting)}: created, but not every partition has a "
                    "leader yet; describe the topic again in a moment"
                )
            await asyncio.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))

    async def delete_topic(self, name: str, *, timeout_ms: int | None = None) -> None:
        await self.delete_topics([name], timeout_ms=timeout_ms)

    async def delete_topics(
        self, names: Iterable[str], *, timeout_ms: int | None = None, wait: bool = True
    ) -> None:
        """Delete topics; raises the first failure (e.g. UnknownTopicError).

        With ``wait`` (the default) it returns once every reachable broker has applied the
        deletion, so a ``list_topics()`` right after, from any broker, no longer shows them.
        """
        self._check_open()
        names = list(names)
        timeout_s = self.request_timeout_s if timeout_ms is None else timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        header = await self._cluster.controller_request(
            Api.DELETE_TOPICS,
            {"topics": names, "timeout_ms": int(timeout_s * 1000)},
            timeout_s=timeout_s,
        )
        _raise_first(header.get("topics", ()))
        if wait:
            await self._wait_until_gone(names, deadline)

    async def _wait_until_gone(self, names: list[str], deadline: float) -> None:
        """Metadata changes reach each broker as it applies the controller's log."""
        await self._cluster.refresh([], force=True)
        for b in list(self._cluster.cache.brokers.values()):
            backoff = Backoff(0.05, self._cluster.retry_backoff_max_s)
            while True:
                try:
                    conn = await self._cluster.pool.get(b.host, b.port)
                    hdr, _ = await conn.request(
                        Api.METADATA, {"topics": names}, timeout=2.0, raise_on_error=False
                    )
                except StrataError:
                    break  # unreachable: it applies the deletion when it is back
                if not hdr.get("err") and all(
                    t.get("err") == ErrorCode.UNKNOWN_TOPIC for t in hdr.get("topics", ())
                ):
                    break
                if time.monotonic() >= deadline:
                    raise TimedOutError(
                        f"topic(s) {', '.join(names)} deleted, but broker {b.id} still lists "
                        "them; it will catch up: list the topics again in a moment"
                    )
                await asyncio.sleep(backoff.next())

    async def list_topics(self, *, internal: bool = False) -> list[str]:
        """Topic names, sorted (internal ``__`` topics only with ``internal=True``)."""
        self._check_open()
        header = await self._cluster.list_all()
        return sorted(
            t["name"]
            for t in header.get("topics", ())
            if not t.get("err") and (internal or not t.get("internal"))
        )

    async def describe_topic(self, name: str) -> TopicDescription:
        return (await self.describe_topics([name]))[0]

    async def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicDescription]:
        """Per partition: leader, replicas, ISR and offsets. UnknownTopicError if absent."""
        self._check_open()
        wanted = None if names is None else list(names)
        header = await self._cluster.metadata(wanted)
        out = []
        for t in header.get("topics", ()):
            if t.get("err"):
                code = ErrorCode.parse(t["err"])
                msg = t.get("msg", "") or f"topic {t['name']!r}: {code.name}"
                if code == ErrorCode.UNKNOWN_TOPIC:
                    raise UnknownTopicError(msg, retriable=False)
                raise error_for(code, msg)
            if wanted is None and t.get("internal"):
                continue
            parts = sorted(t.get("partitions", ()), key=lambda p: p["partition"])
            out.append(
                TopicDescription(
                    t["name"],
                    [
                        PartitionDescription(
                            p["partition"],
                            p["leader"] if p.get("leader", -1) >= 0 else None,
                            list(p.get("replicas", ())),
                            list(p.get("isr", ())),
                            p.get("log_start_offset", -1),
                            p.get("log_end_offset", -1),
                            p.get("high_watermark", -1),
                            _dirty_ratio(p.get("dirty_ratio", -1.0)),
                        )
                        for p in parts
                    ],
                    bool(t.get("internal", False)),
                    dict(t.get("configs") or {}),
                )
            )
        return out

    async def describe_cluster(self) -> ClusterDescription:
        self._check_open()
        h = await self._cluster.request_until_answered(Api.DESCRIBE_CLUSTER, {})
        ctl = h.get("controller", -1)
        return ClusterDescription(
            cluster_id=h.get("cluster_id", ""),
            controller=ctl if ctl >= 0 else None,
            brokers=[
                BrokerDescription(
                    b["id"],
                    b["host"],
                    b["port"],
                    bool(b.get("alive", True)),
                    b.get("rack", ""),
                    b.get("metrics_port", -1),
                )
                for b in h.get("brokers", ())
            ],
            voters=list(h.get("voters", ())),
            topics=h.get("topics", 0),
            partitions=h.get("partitions", 0),
            under_replicated=h.get("under_replicated", 0),
            offline=h.get("offline", 0),
        )

    # -- configs and partitions ----------------------------------------------------------

    async def describe_configs(
        self, config_resources: Iterable[ConfigResource], include_synonyms: bool = False
    ) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        """Every config of each resource (or the ones its ``configs`` name), with its value
        and source (``"default"``, ``"topic"``, ``"broker"``).

        Raises the first resource's error (e.g. :class:`UnknownTopicError`).
        ``include_synonyms`` is accepted for kafka-python compatibility and ignored.
        """
        self._check_open()
        resources = list(config_resources)
        fields = {
            "resources": [
                {"type": r.wire_type(), "name": r.name, "keys": r.keys()} for r in resources
            ]
        }
        try:
            header = await self._cluster.request_until_answered(Api.DESCRIBE_CONFIGS, fields)
        except (UnknownApiError, UnsupportedVersionError):
            return await self._configs_from_metadata(resources)
        _raise_first(header.get("resources", ()))
        by_key = {(e["type"], e["name"]): e for e in header.get("resources", ())}
        out: dict[ConfigResource, dict[str, ConfigEntry]] = {}
        for r in resources:
            entry = by_key.get((r.wire_type(), r.name), {})
            out[ConfigResource(r.resource_type, r.name)] = {
                c["name"]: ConfigEntry(
                    c["name"],
                    c.get("value"),
                    c.get("source", "default"),
                    bool(c.get("read_only", False)),
                    bool(c.get("sensitive", False)),
                    c.get("doc", ""),
                )
                for c in sorted(entry.get("configs", ()), key=lambda c: c["name"])
            }
        return out

    async def _configs_from_metadata(
        self, resources: list[ConfigResource]
    ) -> dict[ConfigResource, dict[str, ConfigEntry]]:
        """A broker without DESCRIBE_CONFIGS: a topic's own settings, from its metadata."""
        if any(r.resource_type is not ConfigResourceType.TOPIC for r in resources):
            raise FeatureNotAvailableError("this cluster's brokers cannot describe broker configs")
        descs = {d.name: d for d in await self.describe_topics([r.name for r in resources])}
        out: dict[ConfigResource, dict[str, ConfigEntry]] = {}
        for r in resources:
            keys = r.keys()
            configs = descs[r.name].configs
            out[ConfigResource(r.resource_type, r.name)] = {
                k: ConfigEntry(k, None if v is None else config_value(v), "topic")
                for k, v in sorted(configs.items())
                if keys is None or k in keys
            }
        return out

    async def alter_configs(
        self, config_resources: Iterable[ConfigResource], *, validate_only: bool = False
    ) -> None:
        """Set (``key: value``) or delete (``key: None``) configs of each resource.

        Incremental: keys not named keep their values. The controller applies the change
        on every replica without a restart. A bad key or value raises
        :class:`InvalidConfigError` naming it; nothing of that resource changes then.
        """
        self._check_open()
        resources = list(config_resources)
        fields = {
            "resources": [
                {"type": r.wire_type(), "name": r.name, "ops": r.ops()} for r in resources
            ],
            "validate_only": validate_only,
        }
        header = await self._cluster.controller_request(
            Api.ALTER_CONFIGS, fields, timeout_s=self.request_timeout_s
        )
        _raise_first(header.get("resources", ()))

    async def create_partitions(
        self,
        topic_partitions: Mapping[str, NewPartitions | int],
        timeout_ms: int | None = None,
        validate_only: bool = False,
        *,
        wait: bool = True,
    ) -> None:
        """Grow topics to a new total partition count (``{"events": NewPartitions(12)}``).

        Keys are spread by partition count, so records of a key go to another partition
        from now on. With ``wait``, returns once every new partition has a leader.
        """
        self._check_open()
        counts: dict[str, int] = {}
        for name, spec in topic_partitions.items():
            if isinstance(spec, NewPartitions):
                if spec.new_assignments is not None:
                    raise FeatureNotAvailableError(
                        "explicit replica assignments are not supported; leave new_assignments "
                        "None and the controller places the new partitions"
                    )
                count = spec.total_count
            else:
                count = spec
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"the new partition count of {name!r} must be a positive int")
            counts[name] = count
        timeout_s = self.request_timeout_s if timeout_ms is None else timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        header = await self._cluster.controller_request(
            Api.CREATE_PARTITIONS,
            {
                "topics": [{"name": n, "count": c} for n, c in counts.items()],
                "validate_only": validate_only,
                "timeout_ms": int(timeout_s * 1000),
            },
            timeout_s=timeout_s,
        )
        _raise_first(header.get("topics", ()))
        if wait and not validate_only:
            await self._wait_for_leaders(counts, deadline)

    # -- consumer groups -----------------------------------------------------------------

    def _coord(self, group: str) -> CoordinatorClient:
        if not isinstance(group, str) or not 1 <= len(group) <= 255:
            raise ValueError(f"a group id is a string of 1-255 characters, not {group!r}")
        c = self._coords.get(group)
        if c is None:
            if len(self._coords) >= 1024:  # bound the cache of coordinators
                self._coords.clear()
            c = self._coords[group] = CoordinatorClient(
                self._cluster,
                group,
                request_timeout_s=self.request_timeout_s,
                retry_backoff_s=self._retry_backoff_s,
            )
        return c

    async def find_coordinator(self, group: str) -> int:
        """The id of the broker coordinating ``group`` now."""
        self._check_open()
        coord = self._coord(group)
        broker, _, _ = await coord.find(time.monotonic() + self.request_timeout_s)
        return broker

    async def list_groups(self) -> list[GroupListing]:
        """Every group of the cluster, sorted by name.

        LIST_GROUPS answers only for the groups a broker coordinates, so every broker is
        asked and the answers merged; a broker that cannot be reached is skipped (its
        groups move to a live broker within an election).
        """
        self._check_open()
        await self._cluster.refresh(force=True)
        brokers = sorted(self._cluster.cache.brokers)

        async def ask(broker: int) -> list[GroupListing]:
            try:
                conn = await self._cluster.connection(broker)
                hdr, _ = await conn.request(
                    Api.LIST_GROUPS, {"states": []}, timeout=min(self.request_timeout_s, 5.0)
                )
            except (StrataError, OSError) as exc:
                log.info("list groups: broker %d did not answer: %s", broker, exc)
                return []
            return [GroupListing(g["group"], g.get("state", ""), broker) for g in hdr["groups"]]

        merged: dict[str, GroupListing] = {}
        for listing in await asyncio.gather(*(ask(b) for b in brokers)):
            for g in listing:
                merged.setdefault(g.group, g)
        return [merged[k] for k in sorted(merged)]

    async def describe_group(self, group: str) -> GroupDescription:
        """State, members with their partitions, committed offsets with lag.

        Raises :class:`GroupIdNotFoundError` for a group that does not exist.
        """
        self._check_open()
        coord = self._coord(group)
        hdr = await coord.request(Api.DESCRIBE_GROUPS, {"groups": [group]}, per_group=True)
        (entry,) = hdr["groups"]
        if entry.get("err"):
            raise error_for(entry["err"], entry.get("msg", "") or f"group {group!r}")
        broker = coord.coordinator[0] if coord.coordinator else -1
        return await self._with_leaders_lag(GroupDescription.from_wire(entry, broker))

    async def _with_leaders_lag(self, desc: GroupDescription) -> GroupDescription:
        """Lag against each partition's high watermark as its leader says it now (Kafka's
        tools do the same). The coordinator's own figures come from its cluster view, which
        can be a heartbeat or two behind a produce; they stay where a leader does not answer.
        """
        offsets = {TopicPartition(o.topic, o.partition): o for o in desc.offsets}
        if not offsets:
            return desc
        try:
            await self._cluster.refresh({tp.topic for tp in offsets}, force=True)
            got = await list_offsets_once(self._cluster, dict.fromkeys(offsets, LATEST), self.request_timeout_s)
        except StrataError as exc:
            log.debug("describe_group: high watermarks from the coordinator's view (%s)", exc)
            return desc
        fresh = [o.at(a.high_watermark) if isinstance(a := got.get(tp), ListedOffset) and a.high_watermark >= 0
                 else o for tp, o in offsets.items()]
        return replace(desc, offsets=fresh)

    async def delete_group(self, group: str) -> None:
        """Delete a group and its committed offsets (refused while it has live members)."""
        self._check_open()
        hdr = await self._coord(group).request(
            Api.DELETE_GROUPS, {"groups": [group]}, per_group=True
        )
        (entry,) = hdr["groups"]
        if entry.get("err"):
            raise error_for(entry["err"], entry.get("msg", "") or f"group {group!r}")

    async def list_group_offsets(self, group: str) -> dict[TopicPartition, int]:
        """Every committed offset of ``group`` (an unknown group has none)."""
        self._check_open()
        hdr = await self._coord(group).request(Api.OFFSET_FETCH, {"partitions": None})
        return {
            TopicPartition(p["topic"], p["partition"]): p["offset"]
            for p in hdr.get("partitions", ())
            if p.get("offset", -1) >= 0
        }

    async def seek_group_offsets(
        self,
        group: str,
        topic: str,
        to: str | int | datetime.datetime | None = None,
        *,
        shift_by: int | None = None,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> list[OffsetChange]:
        """Move ``group``'s committed offsets of ``topic`` (every partition, or ``partitions``).

        Exactly one of ``to`` — ``"earliest"`` (log start), ``"latest"`` (high watermark),
        an offset, or a ``datetime`` (the first record at or after it; the high watermark
        when there is none) — and ``shift_by`` (added to the committed offset; a partition
        with nothing committed is left alone). Offsets are clamped to each partition's
        valid range, as Kafka does. Accepted only while the group has no live members:
        :class:`NonEmptyGroupError` otherwise, with ``dry_run`` too (which commits nothing
        and returns what would change).
        """
        self._check_open()
        if (to is None) == (shift_by is None):
            raise ValueError("seek to one target: 'to' (earliest, latest, offset, datetime) or shift_by")
        meta = await self._cluster.topic(topic)
        wanted = list(range(meta.partition_count)) if partitions is None else list(partitions)
        for p in wanted:
            if not 0 <= p < meta.partition_count:
                raise UnknownPartitionError(
                    f"topic {topic!r} has partitions 0-{meta.partition_count - 1}; there is no "
                    f"partition {p}",
                    retriable=False,
                )
        tps = [TopicPartition(topic, p) for p in sorted(set(wanted))]
        timeout = self.request_timeout_s
        start = await list_offsets(self._cluster, dict.fromkeys(tps, EARLIEST), timeout)
        end = await list_offsets(self._cluster, dict.fromkeys(tps, LATEST), timeout)

        def clamp(tp: TopicPartition, offset: int) -> int:
            return min(max(offset, start[tp].or_end()), end[tp].or_end())

        committed = await self.list_group_offsets(group)
        targets: dict[TopicPartition, int | None]
        if shift_by is not None:
            if not isinstance(shift_by, int) or isinstance(shift_by, bool):
                raise ValueError(f"shift_by must be an int, not {shift_by!r}")
            targets = {
                tp: None if tp not in committed else clamp(tp, committed[tp] + shift_by)
                for tp in tps
            }
        elif isinstance(to, datetime.datetime):
            when = to if to.tzinfo is not None else to.astimezone()  # naive = local time
            ms = int(when.timestamp() * 1000)
            found = await list_offsets(self._cluster, dict.fromkeys(tps, ms), timeout)
            targets = {tp: found[tp].or_end() for tp in tps}
        elif to == "earliest":
            targets = {tp: start[tp].or_end() for tp in tps}
        elif to == "latest":
            targets = {tp: end[tp].or_end() for tp in tps}
        elif isinstance(to, int) and not isinstance(to, bool):
            if to < 0:
                raise ValueError(f"an offset to seek to must not be negative, not {to}")
            targets = {tp: clamp(tp, to) for tp in tps}
        else:
            raise ValueError(f"seek to 'earliest', 'latest', an offset or a datetime, not {to!r}")
        changes = [OffsetChange(tp.topic, tp.partition, committed.get(tp), targets[tp]) for tp in tps]
        todo = {tp: off for tp, off in targets.items() if off is not None}
        if dry_run:
            await self._check_group_empty(group)
        else:
            await admin_commit(self._coord(group), todo, timeout)
        return changes

    async def _check_group_empty(self, group: str) -> None:
        """What the coordinator would say to a commit from outside the group: refused
        while the group has live members."""
        try:
            desc = await self.describe_group(group)
        except GroupIdNotFoundError:
            return
        if desc.members:
            raise NonEmptyGroupError(
                f"group {group!r} has {len(desc.members)} active member(s); its offsets can be "
                "moved only while none of its consumers runs"
            )

    async def reset_offsets(
        self,
        group: str,
        topic: str,
        to: str | int | datetime.datetime = "earliest",
        *,
        partitions: Iterable[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of ``topic`` and return them (see
        :meth:`seek_group_offsets`, of which this is the ``to=`` form)."""
        changes = await self.seek_group_offsets(group, topic, to, partitions=partitions)
        return {
            TopicPartition(c.topic, c.partition): c.new for c in changes if c.new is not None
        }

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._cluster.close()


def _raise_first(entries: Iterable[Mapping[str, Any]]) -> None:
    for e in entries:
        if e.get("err"):
            code = ErrorCode.parse(e["err"])
            msg = e.get("msg", "") or code.name.lower()
            name = e.get("name", "")
            if name and name not in msg:
                msg = f"{e.get('type', 'topic')} {name!r}: {msg}"
            exc = error_for(code, msg)
            if code in (ErrorCode.UNKNOWN_TOPIC,):
                exc = UnknownTopicError(msg, retriable=False)
            raise exc




__all__ = ["AIOAdminClient", "AdminConfig"]


def _dirty_ratio(value: float) -> float | None:
    """The metadata's ``dirty_ratio`` (-1: not a compacted topic, or not reported yet)."""
    return None if value < 0 else float(value)
