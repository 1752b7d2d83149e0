"""Metadata, topic and config administration, producer ids: the control path of the core.

Reads (metadata, describe) are answered by any broker from its metadata image, once it has
caught up with the metadata log (before that: a retriable ``LEADER_NOT_AVAILABLE``, never
an empty or partial answer). Changes are commits of the controller's log, made by the
controller leader; any other broker forwards them to it (Kafka's KIP-590: a client may send
an administrative request to whichever broker it likes) and relays the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from strata.broker.cluster.configs import (
    CLUSTER_CONFIGS,
    TOPIC_CONFIGS,
    effective,
    to_text,
)
from strata.broker.cluster.controller import Controller
from strata.broker.cluster.metadata import METADATA_TOPIC, TopicInfo
from strata.broker.cluster.view import ClusterView
from strata.broker.config import INTERNAL, BrokerConfig
from strata.broker.core.auth import (
    CLUSTER,
    Authorizer,
    Operation,
    Principal,
    Resource,
    ResourceType,
)
from strata.broker.core.types import (
    RESOURCE_BROKER,
    RESOURCE_TOPIC,
    BrokerEndpoint,
    ClusterMetadata,
    ClusterSummary,
    ConfigChange,
    ConfigEntry,
    ConfigResource,
    ConfigResult,
    DescribedConfigs,
    NewTopic,
    PartitionIncrease,
    TopicMetadata,
    TopicResult,
)
from strata.client.errors import ErrorCode, StrataError, error_for
from strata.client.protocol import Api

#: How long a forwarded administrative request may take at the controller.
FORWARD_TIMEOUT_S = 30.0


def _error(entry: dict[str, Any]) -> StrataError | None:
    """The error of one entry of a native answer (forwarded requests come back natively)."""
    err = entry.get("err")
    if not err:
        return None
    details = {k: v for k, v in entry.items() if k in ("controller",)}
    return error_for(err, entry.get("msg", ""), **details)


class AdminService:
    def __init__(
        self,
        *,
        config: BrokerConfig,
        controller: Controller,
        view: ClusterView,
        authorizer: Authorizer,
        cluster_id: str,
        broker_address: Callable[[int, str], tuple[str, int] | None],
        forward: Callable[[Api, dict[str, Any], float], Awaitable[dict[str, Any]]],
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self._controller = controller
        self._view = view
        self._authz = authorizer
        self.cluster_id = cluster_id
        self._address = broker_address
        self._forward = forward

    def _local(self, forwarded: bool) -> bool:
        """Serve a controller-only request here (this broker leads the controller), or forward
        it. A request forwarded to this broker is never forwarded again: if this broker is no
        longer the controller, it answers ``NOT_CONTROLLER`` (the sender relays it)."""
        if self._controller.is_leader:
            return True
        if forwarded:
            self._controller.require_leader()
        return False

    # -- metadata --------------------------------------------------------------------------

    def brokers(self, listener: str = INTERNAL) -> list[BrokerEndpoint]:
        """Every broker of the cluster with the address a client of ``listener`` should use
        (a broker whose address on that listener is not known yet is left out)."""
        image = self._controller.image
        live = self._view.live or {self.node_id}
        out = []
        for bid in sorted(self.config.peers):
            addr = self._address(bid, listener)
            if addr is None:
                continue
            info = image.brokers.get(bid)
            mport = info.metrics_port if info is not None and info.metrics_port else -1
            out.append(BrokerEndpoint(bid, addr[0], addr[1], None, bid in live, mport))
        return out

    def metadata(self, principal: Principal, topics: list[str] | None, listener: str = INTERNAL) -> ClusterMetadata:
        """Brokers, the controller, and topics with their partitions (``topics`` None: all).

        Until this broker has applied the metadata log as far as it is committed, this raises
        ``LEADER_NOT_AVAILABLE`` (retriable) rather than answer from a partial image.
        """
        ctl = self._controller
        ctl.require_caught_up()
        image = ctl.image
        names = sorted(n for n in image.topics if n != METADATA_TOPIC) if topics is None else topics
        out: list[TopicMetadata] = []
        for name in names:
            t = image.topics.get(name)
            if t is None or name == METADATA_TOPIC:
                out.append(TopicMetadata(name, error_for(ErrorCode.UNKNOWN_TOPIC, f"topic {name!r} does not exist")))
                continue
            try:
                self._authz.authorize(principal, Operation.DESCRIBE, Resource(ResourceType.TOPIC, name))
            except StrataError as exc:
                out.append(TopicMetadata(name, exc))
                continue
            out.append(self._topic(t))
        return ClusterMetadata(self.cluster_id, ctl.leader_id, self.brokers(listener), out)

    def _topic(self, t: TopicInfo) -> TopicMetadata:
        view = self._view
        parts = [view.partition_state(t, p) for p in range(t.partitions)]
        return TopicMetadata(t.name, None, t.topic_id, t.internal, parts, dict(t.configs))

    def describe_cluster(self, principal: Principal, listener: str = INTERNAL) -> ClusterSummary:
        self._authz.authorize(principal, Operation.DESCRIBE, CLUSTER)
        ctl = self._controller
        image = ctl.image
        n_parts = under = offline = 0
        for name, t in image.topics.items():
            if name == METADATA_TOPIC:
                continue
            for p in range(t.partitions):
                n_parts += 1
                st = self._view.partition_state(t, p)
                if st.leader is None:
                    offline += 1
                elif len(st.isr) < len(st.replicas):
                    under += 1
        return ClusterSummary(self.cluster_id, ctl.leader_id, self.brokers(listener), sorted(self.config.peers),
                              sum(1 for n in image.topics if n != METADATA_TOPIC), n_parts, under, offline)

    # -- topics ----------------------------------------------------------------------------

    async def create_topics(self, principal: Principal, topics: list[NewTopic], *,
                            validate_only: bool = False, forwarded: bool = False) -> list[TopicResult]:
        """Create each topic (or only check it); per-topic errors in the results.

        Raises ``NOT_CONTROLLER`` (for the whole request) on a broker that is not the
        controller leader.
        """
        ctl = self._controller
        if not self._local(forwarded):
            hdr = await self._forward(Api.CREATE_TOPICS, {
                "topics": [{"name": t.name, "partitions": t.partitions, "replication_factor": t.replication_factor,
                            "configs": dict(t.configs)} for t in topics],
                "validate_only": validate_only, "forwarded": True}, FORWARD_TIMEOUT_S)
            return [TopicResult(r["name"], _error(r), r.get("partitions", -1), r.get("replication_factor", -1))
                    for r in hdr["topics"]]
        results = []
        for t in topics:
            partitions = t.partitions if t.partitions != -1 else ctl.default_partitions()
            try:
                self._authz.authorize(principal, Operation.CREATE, Resource(ResourceType.TOPIC, t.name))
                if validate_only:
                    rf, _ = await ctl.validate_topic(t.name, partitions, t.replication_factor, t.configs)
                else:
                    rf = await ctl.create_topic(t.name, partitions, t.replication_factor, t.configs)
                results.append(TopicResult(t.name, None, partitions, rf))
            except StrataError as exc:
                if exc.code == ErrorCode.NOT_CONTROLLER:
                    raise
                results.append(TopicResult(t.name, exc))
        return results

    async def delete_topics(self, principal: Principal, names: list[str], *, forwarded: bool = False
                            ) -> list[TopicResult]:
        ctl = self._controller
        if not self._local(forwarded):
            hdr = await self._forward(Api.DELETE_TOPICS, {"topics": names, "forwarded": True}, FORWARD_TIMEOUT_S)
            return [TopicResult(r["name"], _error(r)) for r in hdr["topics"]]
        results = []
        for name in names:
            try:
                self._authz.authorize(principal, Operation.DELETE, Resource(ResourceType.TOPIC, name))
                await ctl.delete_topic(name)
                results.append(TopicResult(name))
            except StrataError as exc:
                if exc.code == ErrorCode.NOT_CONTROLLER:
                    raise
                results.append(TopicResult(name, exc))
        return results

    async def create_partitions(self, principal: Principal, increases: list[PartitionIncrease], *,
                                validate_only: bool = False, forwarded: bool = False) -> list[TopicResult]:
        ctl = self._controller
        if not self._local(forwarded):
            hdr = await self._forward(Api.CREATE_PARTITIONS, {
                "topics": [{"name": i.name, "count": i.count} for i in increases], "validate_only": validate_only,
                "forwarded": True}, FORWARD_TIMEOUT_S)
            return [TopicResult(r["name"], _error(r), next((i.count for i in increases if i.name == r["name"]), -1))
                    for r in hdr["topics"]]
        results = []
        for inc in increases:
            try:
                self._authz.authorize(principal, Operation.ALTER, Resource(ResourceType.TOPIC, inc.name))
                if validate_only:
                    await ctl.validate_partitions(inc.name, inc.count)
                else:
                    await ctl.create_partitions(inc.name, inc.count)
                results.append(TopicResult(inc.name, None, inc.count))
            except StrataError as exc:
                if exc.code == ErrorCode.NOT_CONTROLLER:
                    raise
                results.append(TopicResult(inc.name, exc))
        return results

    # -- configs ---------------------------------------------------------------------------

    def describe_configs(self, principal: Principal, resources: list[tuple[ConfigResource, list[str] | None]]
                         ) -> list[DescribedConfigs]:
        """Every config of each resource (or the ``keys`` asked for), with its source."""
        ctl = self._controller
        ctl.require_caught_up()
        out = []
        for res, keys in resources:
            try:
                entries = self._describe(principal, res)
            except StrataError as exc:
                out.append(DescribedConfigs(res, exc))
                continue
            if keys is not None:
                wanted = set(keys)
                entries = [e for e in entries if e.name in wanted]
            out.append(DescribedConfigs(res, None, entries))
        return out

    def _describe(self, principal: Principal, res: ConfigResource) -> list[ConfigEntry]:
        if res.type == RESOURCE_TOPIC:
            self._authz.authorize(principal, Operation.DESCRIBE_CONFIGS, Resource(ResourceType.TOPIC, res.name))
            t = self._controller.image.topics.get(res.name)
            if t is None or res.name == METADATA_TOPIC:
                raise error_for(ErrorCode.UNKNOWN_TOPIC, f"topic {res.name!r} does not exist")
            values = effective(TOPIC_CONFIGS, t.configs, "topic", self.config)
            return [ConfigEntry(name, to_text(v), source, doc=TOPIC_CONFIGS[name].doc)
                    for name, (v, source) in sorted(values.items())]
        if res.type == RESOURCE_BROKER:
            self._authz.authorize(principal, Operation.DESCRIBE_CONFIGS, CLUSTER)
            self._check_broker_name(res.name)
            values = effective(CLUSTER_CONFIGS, self._controller.image.cluster_configs, "broker", self.config)
            return [ConfigEntry(name, to_text(v), source, doc=CLUSTER_CONFIGS[name].doc)
                    for name, (v, source) in sorted(values.items())]
        raise error_for(ErrorCode.INVALID_REQUEST, f"unknown config resource type {res.type!r} (topic or broker)")

    def _check_broker_name(self, name: str) -> None:
        if name and (not name.isdigit() or int(name) not in self.config.peers):
            raise error_for(ErrorCode.INVALID_REQUEST,
                            f"no broker {name!r}: name a broker id of the cluster, or '' for the cluster default")

    async def alter_configs(self, principal: Principal, changes: list[ConfigChange], *,
                            validate_only: bool = False, forwarded: bool = False) -> list[ConfigResult]:
        """Incremental changes (set / delete per key), applied by the controller; every replica
        of a topic takes the new values without a restart."""
        ctl = self._controller
        if not self._local(forwarded):
            hdr = await self._forward(Api.ALTER_CONFIGS, {
                "resources": [{"type": ch.resource.type, "name": ch.resource.name,
                               "ops": [{"name": o.name, "op": o.op, "value": o.value} for o in ch.ops]}
                              for ch in changes], "validate_only": validate_only, "forwarded": True}, FORWARD_TIMEOUT_S)
            return [ConfigResult(ConfigResource(r["type"], r["name"]), _error(r)) for r in hdr["resources"]]
        out = []
        for ch in changes:
            ops = [(op.name, op.op, op.value) for op in ch.ops]
            res = ch.resource
            try:
                if res.type == RESOURCE_TOPIC:
                    self._authz.authorize(principal, Operation.ALTER_CONFIGS, Resource(ResourceType.TOPIC, res.name))
                    if validate_only:
                        ctl.validate_topic_config_ops(res.name, ops)
                    else:
                        await ctl.alter_topic_configs(res.name, ops)
                elif res.type == RESOURCE_BROKER:
                    self._authz.authorize(principal, Operation.ALTER_CONFIGS, CLUSTER)
                    self._check_broker_name(res.name)
                    if res.name:
                        raise error_for(ErrorCode.INVALID_CONFIG,
                                        "configs are set for the whole cluster: use the broker resource '' "
                                        "(the cluster default), not one broker's id")
                    if validate_only:
                        ctl.validate_cluster_config_ops(ops)
                    else:
                        await ctl.alter_cluster_configs(ops)
                else:
                    raise error_for(ErrorCode.INVALID_REQUEST,
                                    f"unknown config resource type {res.type!r} (topic or broker)")
                out.append(ConfigResult(res))
            except StrataError as exc:
                if exc.code == ErrorCode.NOT_CONTROLLER:
                    raise
                out.append(ConfigResult(res, exc))
        return out

    # -- producer ids ----------------------------------------------------------------------

    async def init_producer_id(self, principal: Principal, timeout_ms: int = 30_000, *,
                               forwarded: bool = False) -> tuple[int, int]:
        """A new idempotent producer id and epoch 0. The controller leader hands them out; any
        other broker forwards the request to it (Kafka clients ask whichever broker they like)."""
        self._authz.authorize(principal, Operation.IDEMPOTENT_WRITE, CLUSTER)
        if self._local(forwarded):
            return await self._controller.allocate_producer_id(), 0
        hdr = await self._forward(Api.INIT_PRODUCER_ID, {"timeout_ms": timeout_ms, "forwarded": True},
                                  timeout_ms / 1000)
        return int(hdr["producer_id"]), int(hdr["producer_epoch"])

    async def wait_caught_up(self, timeout_s: float) -> None:
        """Wait (bounded) until this broker has applied the metadata log (after a start):
        for doors whose protocol has no retriable answer for "not yet"."""
        deadline = time.monotonic() + timeout_s
        while not self._controller.caught_up() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
