"""ApiVersions, Metadata, DescribeCluster, DescribeLogDirs, InitProducerId, and topic and
config administration: Kafka's control path over the core."""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from strata.broker.cluster.configs import CLUSTER_CONFIGS, TOPIC_CONFIGS
from strata.broker.core.types import (
    RESOURCE_BROKER,
    RESOURCE_TOPIC,
    ConfigChange,
    ConfigOp,
    ConfigResource,
    NewTopic,
    PartitionIncrease,
)
from strata.broker.frontends.kafka.codec import KafkaErrorCode, Request
from strata.broker.frontends.kafka.codec.messages.admin import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)
from strata.broker.frontends.kafka.codec.messages.cluster import (
    ApiVersionsResponse,
    DescribeClusterRequest,
    DescribeClusterResponse,
    MetadataRequest,
    MetadataResponse,
)
from strata.broker.frontends.kafka.codec.messages.produce import (
    InitProducerIdRequest,
    InitProducerIdResponse,
)
from strata.broker.frontends.kafka.connection import KafkaAnswer, KafkaConnection
from strata.broker.frontends.kafka.errors import kafka_code
from strata.broker.frontends.kafka.handlers.common import KafkaContext
from strata.broker.frontends.kafka.versions import ADVERTISED
from strata.client.errors import ErrorCode, StrataError, error_for

#: Kafka's ConfigResource types and config sources.
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4
_SOURCE = {"topic": 1, "broker": 3, "default": 5}
_TYPE = {int: 5, float: 6, str: 2}  # LONG, DOUBLE, STRING
#: How long a Metadata request waits for a broker that is still loading the metadata log
#: (Kafka's protocol has no "retry later" for it; an empty topic list would be a lie).
METADATA_LOADING_WAIT_S = 5.0
_UNKNOWN_TOPIC_ID = "topic id {} is not known"

log = logging.getLogger("strata.broker.frontends.kafka")


class ClusterHandlers:
    def __init__(self, ctx: KafkaContext) -> None:
        self.ctx = ctx

    async def api_versions(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        keys = [ApiVersionsResponse.ApiVersion(api_key=int(k), min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(ADVERTISED.items())]
        return KafkaAnswer(ApiVersionsResponse(error_code=0, api_keys=keys))

    # -- metadata --------------------------------------------------------------------------

    async def metadata(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, MetadataRequest)
        names: list[str] | None
        unknown_ids: list[Any] = []
        if body.topics is None or (req.api_version == 0 and not body.topics):
            names = None
        else:
            names = []
            for t in body.topics:
                if t.name is not None:
                    names.append(t.name)
                else:
                    found = self.ctx.topic_by_uuid(t.topic_id)
                    if found is None:
                        unknown_ids.append(t.topic_id)
                    else:
                        names.append(found)
        await self.ctx.admin.wait_caught_up(METADATA_LOADING_WAIT_S)
        try:
            md = self.ctx.admin.metadata(conn.principal, names, conn.listener)
        except StrataError as exc:
            # Still loading after the wait: every topic asked for is "leader not available"
            # (retriable), never "unknown".
            loading = [MetadataResponse.MetadataResponseTopic(error_code=kafka_code(exc), name=n)
                       for n in (names or [])]
            return KafkaAnswer(MetadataResponse(brokers=self._brokers(conn.listener), cluster_id=self.ctx.cluster_id,
                                                controller_id=-1, topics=loading))
        topics: list[MetadataResponse.MetadataResponseTopic] = []
        for tm in md.topics:
            if tm.error is not None:
                topics.append(MetadataResponse.MetadataResponseTopic(error_code=kafka_code(tm.error), name=tm.name))
                continue
            parts = [MetadataResponse.MetadataResponsePartition(
                error_code=0 if p.leader is not None else KafkaErrorCode.LEADER_NOT_AVAILABLE,
                partition_index=p.partition, leader_id=-1 if p.leader is None else p.leader,
                leader_epoch=p.leader_epoch, replica_nodes=list(p.replicas), isr_nodes=list(p.isr),
                offline_replicas=p.offline_replicas) for p in tm.partitions]
            topics.append(MetadataResponse.MetadataResponseTopic(
                error_code=0, name=tm.name, topic_id=self.ctx.topic_uuid(tm.topic_id), is_internal=tm.internal,
                partitions=parts))
        for tid in unknown_ids:
            topics.append(MetadataResponse.MetadataResponseTopic(
                error_code=KafkaErrorCode.UNKNOWN_TOPIC_ID, name=None if req.api_version >= 12 else "", topic_id=tid))
        return KafkaAnswer(MetadataResponse(
            brokers=[MetadataResponse.MetadataResponseBroker(node_id=b.node_id, host=b.host, port=b.port)
                     for b in md.brokers],
            cluster_id=md.cluster_id, controller_id=-1 if md.controller_id is None else md.controller_id,
            topics=topics))

    def _brokers(self, listener: str) -> list[MetadataResponse.MetadataResponseBroker]:
        return [MetadataResponse.MetadataResponseBroker(node_id=b.node_id, host=b.host, port=b.port)
                for b in self.ctx.admin.brokers(listener)]

    async def describe_cluster(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DescribeClusterRequest)
        if body.endpoint_type != 1:
            return KafkaAnswer(DescribeClusterResponse(
                error_code=KafkaErrorCode.UNSUPPORTED_ENDPOINT_TYPE, endpoint_type=body.endpoint_type,
                error_message="Strata's controllers are its brokers: ask for brokers (endpoint type 1)",
                cluster_id=self.ctx.cluster_id))
        c = self.ctx.admin.describe_cluster(conn.principal, conn.listener)
        return KafkaAnswer(DescribeClusterResponse(
            error_code=0, cluster_id=c.cluster_id, controller_id=-1 if c.controller_id is None else c.controller_id,
            brokers=[DescribeClusterResponse.DescribeClusterBroker(broker_id=b.node_id, host=b.host, port=b.port)
                     for b in c.brokers]))

    async def describe_log_dirs(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DescribeLogDirsRequest)
        wanted = None if body.topics is None else {(t.topic, p) for t in body.topics for p in t.partitions}
        by_topic: dict[str, list[DescribeLogDirsResponse.DescribeLogDirsPartition]] = {}
        for topic, p, size, lag in self.ctx.partitions.log_dir_usage(conn.principal, wanted):
            by_topic.setdefault(topic, []).append(DescribeLogDirsResponse.DescribeLogDirsPartition(
                partition_index=p, partition_size=size, offset_lag=lag, is_future_key=False))
        try:
            st = os.statvfs(self.ctx.data_dir)
            total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        except OSError:
            total = usable = -1
        return KafkaAnswer(DescribeLogDirsResponse(error_code=0, results=[DescribeLogDirsResponse.DescribeLogDirsResult(
            error_code=0, log_dir=str(self.ctx.data_dir.resolve()), total_bytes=total, usable_bytes=usable,
            topics=[DescribeLogDirsResponse.DescribeLogDirsTopic(name=t, partitions=ps) for t, ps in by_topic.items()],
        )]))

    async def init_producer_id(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, InitProducerIdRequest)
        if body.transactional_id is not None:
            return KafkaAnswer(InitProducerIdResponse(
                error_code=KafkaErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1))
        try:
            pid, epoch = await self.ctx.admin.init_producer_id(conn.principal)
        except Exception as exc:
            # A failure here is the controller being unreachable, busy or moving
            # (NOT_CONTROLLER, a full proposal queue, a lost leadership, a timed-out forward):
            # answered with the one retriable code every client understands for this API.
            # Anything else is fatal to a Kafka producer (the Java client gives up on
            # UNKNOWN_SERVER_ERROR), and a busy controller is no reason to kill it.
            log.warning("InitProducerId from %s failed (%r): answered COORDINATOR_NOT_AVAILABLE",
                        conn.remote, exc)
            return KafkaAnswer(InitProducerIdResponse(
                error_code=KafkaErrorCode.COORDINATOR_NOT_AVAILABLE, producer_id=-1, producer_epoch=-1))
        return KafkaAnswer(InitProducerIdResponse(error_code=0, producer_id=pid, producer_epoch=epoch))

    # -- topics ----------------------------------------------------------------------------

    async def create_topics(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, CreateTopicsRequest)
        results: list[CreateTopicsResponse.CreatableTopicResult] = []
        wanted: list[NewTopic] = []
        for t in body.topics:
            if t.assignments:
                results.append(CreateTopicsResponse.CreatableTopicResult(
                    name=t.name, error_code=KafkaErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    error_message="manual replica assignment is not supported: Strata places replicas itself"))
                continue
            configs = {c.name: c.value for c in t.configs if c.value is not None}
            wanted.append(NewTopic(t.name, t.num_partitions, t.replication_factor, configs))
        try:
            created = await self.ctx.admin.create_topics(conn.principal, wanted, validate_only=body.validate_only)
        except StrataError as exc:  # NOT_CONTROLLER: clients refresh metadata and go there
            created = []
            results.extend(CreateTopicsResponse.CreatableTopicResult(
                name=t.name, error_code=kafka_code(exc), error_message=exc.message) for t in wanted)
        image = self.ctx.controller.image
        for r in created:
            info = image.topics.get(r.name)
            ok = r.error is None and not body.validate_only
            config_error, entries = self._created_configs(conn, r.name) if ok else (None, [])
            results.append(CreateTopicsResponse.CreatableTopicResult(
                name=r.name, error_code=kafka_code(r.error), error_message=None if r.error is None else r.error.message,
                topic_id=self.ctx.topic_uuid(info.topic_id) if ok and info is not None else _zero_uuid(),
                num_partitions=r.partitions, replication_factor=r.replication_factor,
                topic_config_error_code=kafka_code(config_error), configs=entries))
        return KafkaAnswer(CreateTopicsResponse(topics=results))

    def _created_configs(self, conn: KafkaConnection, name: str
                         ) -> tuple[StrataError | None, list[CreateTopicsResponse.CreatableTopicConfigs]]:
        """A new topic's configs as DescribeConfigs shows them (CreateTopics v5+ answers them;
        the Java admin client reads them whenever their error code is 0, so never null).
        A validate-only create has no topic to describe: an empty list."""
        try:
            (described,) = self.ctx.admin.describe_configs(conn.principal, [(ConfigResource(RESOURCE_TOPIC, name), None)])
        except StrataError as exc:
            return exc, []
        if described.error is not None:
            return described.error, []
        return None, [CreateTopicsResponse.CreatableTopicConfigs(
            name=e.name, value=e.value, read_only=e.read_only, config_source=_SOURCE.get(e.source, 0),
            is_sensitive=e.sensitive) for e in described.entries]

    async def delete_topics(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DeleteTopicsRequest)
        results: list[DeleteTopicsResponse.DeletableTopicResult] = []
        names: list[str] = []
        if req.api_version >= 6:
            for t in body.topics:
                name = t.name if t.name is not None else self.ctx.topic_by_uuid(t.topic_id)
                if name is None:
                    results.append(DeleteTopicsResponse.DeletableTopicResult(
                        name=None, topic_id=t.topic_id, error_code=KafkaErrorCode.UNKNOWN_TOPIC_ID,
                        error_message=_UNKNOWN_TOPIC_ID.format(t.topic_id)))
                else:
                    names.append(name)
        else:
            names = list(body.topic_names)
        ids = {n: self.ctx.topic_uuid(t.topic_id) for n, t in self.ctx.controller.image.topics.items()}
        try:
            deleted = await self.ctx.admin.delete_topics(conn.principal, names)
        except StrataError as exc:
            results.extend(DeleteTopicsResponse.DeletableTopicResult(
                name=n, topic_id=ids.get(n, _zero_uuid()), error_code=kafka_code(exc), error_message=exc.message)
                for n in names)
            return KafkaAnswer(DeleteTopicsResponse(responses=results))
        results.extend(DeleteTopicsResponse.DeletableTopicResult(
            name=r.name, topic_id=ids.get(r.name, _zero_uuid()), error_code=kafka_code(r.error),
            error_message=None if r.error is None else r.error.message) for r in deleted)
        return KafkaAnswer(DeleteTopicsResponse(responses=results))

    async def create_partitions(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, CreatePartitionsRequest)
        results: list[CreatePartitionsResponse.CreatePartitionsTopicResult] = []
        incs = []
        for t in body.topics:
            if t.assignments is not None:
                results.append(CreatePartitionsResponse.CreatePartitionsTopicResult(
                    name=t.name, error_code=KafkaErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    error_message="manual replica assignment is not supported: Strata places replicas itself"))
            else:
                incs.append(PartitionIncrease(t.name, t.count))
        try:
            done = await self.ctx.admin.create_partitions(conn.principal, incs, validate_only=body.validate_only)
            results.extend(CreatePartitionsResponse.CreatePartitionsTopicResult(
                name=r.name, error_code=kafka_code(r.error), error_message=None if r.error is None else r.error.message)
                for r in done)
        except StrataError as exc:
            results.extend(CreatePartitionsResponse.CreatePartitionsTopicResult(
                name=i.name, error_code=kafka_code(exc), error_message=exc.message) for i in incs)
        return KafkaAnswer(CreatePartitionsResponse(results=results))

    # -- configs ---------------------------------------------------------------------------

    async def describe_configs(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DescribeConfigsRequest)
        wanted = []
        bad: dict[int, StrataError] = {}
        for i, r in enumerate(body.resources):
            kind = _resource_kind(r.resource_type)
            if kind is None:
                bad[i] = error_for(ErrorCode.INVALID_REQUEST, f"config resource type {r.resource_type} is not served "
                                   "(topics: 2, brokers: 4)")
            wanted.append((ConfigResource(kind or RESOURCE_TOPIC, r.resource_name), r.configuration_keys))
        described = self.ctx.admin.describe_configs(conn.principal, [w for i, w in enumerate(wanted) if i not in bad])
        it = iter(described)
        results = []
        for i, r in enumerate(body.resources):
            err = bad.get(i)
            d = None if err is not None else next(it)
            if d is not None and d.error is not None:
                err = d.error
            entries = [] if d is None or err is not None else d.entries
            table = TOPIC_CONFIGS if r.resource_type == TOPIC_RESOURCE else CLUSTER_CONFIGS
            results.append(DescribeConfigsResponse.DescribeConfigsResult(
                error_code=kafka_code(err), error_message=None if err is None else err.message,
                resource_type=r.resource_type, resource_name=r.resource_name,
                configs=[DescribeConfigsResponse.DescribeConfigsResourceResult(
                    name=e.name, value=e.value, read_only=e.read_only, config_source=_SOURCE.get(e.source, 0),
                    is_default=e.source == "default", is_sensitive=e.sensitive, synonyms=[],
                    config_type=_TYPE.get(table[e.name].kind, 0) if e.name in table else 0,
                    documentation=e.doc if body.include_documentation else None) for e in entries]))
        return KafkaAnswer(DescribeConfigsResponse(results=results))

    async def alter_configs(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        """The legacy AlterConfigs: the resource's settings become exactly those given (every
        key set on it before and not given goes back to its default), as in Kafka."""
        body = req.body
        assert isinstance(body, AlterConfigsRequest)
        changes: list[ConfigChange | StrataError] = []
        for r in body.resources:
            kind = _resource_kind(r.resource_type)
            if kind is None:
                changes.append(error_for(ErrorCode.INVALID_REQUEST, f"resource type {r.resource_type} is not served"))
                continue
            res = ConfigResource(kind, r.resource_name)
            given = {c.name: c.value for c in r.configs}
            ops = [ConfigOp(n, "set", v) if v is not None else ConfigOp(n, "delete") for n, v in given.items()]
            try:
                (current,) = self.ctx.admin.describe_configs(conn.principal, [(res, None)])
            except StrataError as exc:
                changes.append(exc)
                continue
            explicit = {"topic", "broker"}
            ops.extend(ConfigOp(e.name, "delete") for e in current.entries
                       if e.source in explicit and e.name not in given)
            changes.append(ConfigChange(res, ops))
        results = await self._alter(conn, [c for c in changes if isinstance(c, ConfigChange)], body.validate_only)
        out = []
        it = iter(results)
        for r, ch in zip(body.resources, changes, strict=True):
            err = ch if isinstance(ch, StrataError) else next(it)
            out.append(AlterConfigsResponse.AlterConfigsResourceResponse(
                error_code=kafka_code(err), error_message=None if err is None else err.message,
                resource_type=r.resource_type, resource_name=r.resource_name))
        return KafkaAnswer(AlterConfigsResponse(responses=out))

    async def incremental_alter_configs(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, IncrementalAlterConfigsRequest)
        changes: list[ConfigChange | StrataError] = []
        for r in body.resources:
            kind = _resource_kind(r.resource_type)
            ops: list[ConfigOp] = []
            err: StrataError | None = None
            for c in r.configs:
                if c.config_operation == 0:
                    ops.append(ConfigOp(c.name, "set", c.value))
                elif c.config_operation == 1:
                    ops.append(ConfigOp(c.name, "delete"))
                else:
                    err = error_for(ErrorCode.INVALID_CONFIG,
                                    f"config {c.name}: APPEND and SUBTRACT apply to list configs; use SET")
            if kind is None:
                err = error_for(ErrorCode.INVALID_REQUEST, f"resource type {r.resource_type} is not served")
            changes.append(err if err is not None else ConfigChange(ConfigResource(kind or "", r.resource_name), ops))
        results = await self._alter(conn, [c for c in changes if isinstance(c, ConfigChange)], body.validate_only)
        out = []
        it = iter(results)
        for r, ch in zip(body.resources, changes, strict=True):
            e = ch if isinstance(ch, StrataError) else next(it)
            out.append(IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
                error_code=kafka_code(e), error_message=None if e is None else e.message,
                resource_type=r.resource_type, resource_name=r.resource_name))
        return KafkaAnswer(IncrementalAlterConfigsResponse(responses=out))

    async def _alter(self, conn: KafkaConnection, changes: list[ConfigChange], validate_only: bool
                     ) -> list[StrataError | None]:
        try:
            done = await self.ctx.admin.alter_configs(conn.principal, changes, validate_only=validate_only)
        except StrataError as exc:
            return [exc for _ in changes]
        return [r.error for r in done]


def _resource_kind(resource_type: int) -> str | None:
    return {TOPIC_RESOURCE: RESOURCE_TOPIC, BROKER_RESOURCE: RESOURCE_BROKER}.get(resource_type)


def _zero_uuid() -> uuid.UUID:
    return uuid.UUID(int=0)
