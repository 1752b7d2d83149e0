"""The native protocol's request handlers: decode the msgpack header, call the core, encode.

Field names follow the schemas in ``strata.client.protocol`` (``docs/protocol.md``); the
codec has already validated each request and filled in its defaults. No decision is made
here that the Kafka front-end would need too: errors come from the core as ``StrataError``
and are written as ``err``/``msg`` plus the details a client acts on (the leader, the
controller, the valid offset range).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strata.broker.config import INTERNAL
from strata.broker.core.types import (
    ACKS_NONE,
    ConfigChange,
    ConfigOp,
    ConfigResource,
    FetchPartition,
    FetchRequest,
    NewTopic,
    OffsetQuery,
    PartitionIncrease,
    PartitionState,
    TopicResult,
)
from strata.broker.frontends.native.connection import ClientConnection, Handler, Response
from strata.broker.groups.coordinator import OffsetCommit
from strata.broker.groups.group_state import (
    HeartbeatRequest,
    topic_lists_to_tps,
    tps_to_topic_lists,
)
from strata.client.errors import ErrorCode, StrataError
from strata.client.protocol import Api, api_ranges

if TYPE_CHECKING:
    from strata.broker.cluster.controller import Controller
    from strata.broker.config import Limits
    from strata.broker.core.admin import AdminService
    from strata.broker.core.partitions import PartitionService
    from strata.broker.groups.coordinator import GroupCoordinator
    from strata.broker.replication.manager import ReplicaManager

Header = dict[str, Any]


@dataclass(slots=True)
class NativeContext:
    """What the native handlers call: the core's services, and the peer-only parts."""

    node_id: int
    cluster_id: str
    limits: Limits
    partitions: PartitionService
    admin: AdminService
    groups: GroupCoordinator
    controller: Controller
    replicas: ReplicaManager
    broker_address: Callable[[int, str], tuple[str, int] | None]


def _partition(st: PartitionState) -> Header:
    out: Header = {"partition": st.partition, "leader": -1 if st.leader is None else st.leader,
                   "leader_epoch": st.leader_epoch, "replicas": st.replicas, "isr": st.isr,
                   "log_start_offset": st.log_start_offset, "log_end_offset": st.log_end_offset,
                   "high_watermark": st.high_watermark}
    if st.dirty_ratio is not None:
        out["dirty_ratio"] = float(st.dirty_ratio)
    return out


def _topic_result(r: TopicResult, fields: Header, ctx: NativeContext) -> Header:
    out: Header = {"name": r.name}
    if r.error is not None:
        out.update(error_fields(r.error, ctx))
    else:
        out.update(fields)
    return out


def error_fields(exc: StrataError, ctx: NativeContext, listener: str = INTERNAL) -> Header:
    """``err``/``msg`` and the details a client acts on, for any core error (addresses as a
    client of ``listener`` reaches them)."""
    h: Header = {"err": int(exc.code), "msg": exc.message}
    d = exc.details
    if exc.code == ErrorCode.NOT_LEADER:
        leader = d.get("leader")
        if isinstance(leader, int) and leader >= 0:
            h["leader"] = leader
            addr = ctx.broker_address(leader, listener)
            if addr:
                h["leader_addr"] = f"{addr[0]}:{addr[1]}"
    elif exc.code == ErrorCode.NOT_CONTROLLER:
        ctl = d.get("controller")
        h["controller"] = ctl if isinstance(ctl, int) else -1
    for k in ("log_start_offset", "high_watermark"):
        if k in d:
            h[k] = d[k]
    return h


class NativeHandlers:
    """One handler per API, each ``(conn, header, payload) -> Response | None``."""

    def __init__(self, ctx: NativeContext) -> None:
        self.ctx = ctx
        self.table: dict[Api, Handler] = {
            Api.HANDSHAKE: self.handshake,
            Api.METADATA: self.metadata,
            Api.CREATE_TOPICS: self.create_topics,
            Api.DELETE_TOPICS: self.delete_topics,
            Api.DESCRIBE_CLUSTER: self.describe_cluster,
            Api.PRODUCE: self.produce,
            Api.FETCH: self.fetch,
            Api.LIST_OFFSETS: self.list_offsets,
            Api.INIT_PRODUCER_ID: self.init_producer_id,
            Api.DESCRIBE_CONFIGS: self.describe_configs,
            Api.ALTER_CONFIGS: self.alter_configs,
            Api.CREATE_PARTITIONS: self.create_partitions,
            Api.FIND_COORDINATOR: self.find_coordinator,
            Api.GROUP_HEARTBEAT: self.group_heartbeat,
            Api.OFFSET_COMMIT: self.offset_commit,
            Api.OFFSET_FETCH: self.offset_fetch,
            Api.LIST_GROUPS: self.list_groups,
            Api.DESCRIBE_GROUPS: self.describe_groups,
            Api.DELETE_GROUPS: self.delete_groups,
            Api.RAFT: self.raft,
            Api.BROKER_HEARTBEAT: self.broker_heartbeat,
        }

    def _error(self, exc: StrataError, conn: ClientConnection, **fields: Any) -> Response:
        return Response({**error_fields(exc, self.ctx, conn.listener), **fields})

    # -- connection ------------------------------------------------------------------------

    async def handshake(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        ctx = self.ctx
        return Response({"apis": api_ranges(), "broker_id": ctx.node_id, "cluster_id": ctx.cluster_id,
                         "max_frame_bytes": ctx.limits.max_frame_bytes})

    # -- metadata and admin ----------------------------------------------------------------

    async def metadata(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            md = self.ctx.admin.metadata(conn.principal, hdr.get("topics"), conn.listener)
        except StrataError as exc:
            return self._error(exc, conn, brokers=[], topics=[])
        topics = []
        for t in md.topics:
            if t.error is not None:
                topics.append({"name": t.name, **error_fields(t.error, self.ctx), "partitions": []})
            else:
                topics.append({"name": t.name, "internal": t.internal, "configs": t.configs,
                               "partitions": [_partition(p) for p in t.partitions]})
        return Response({"cluster_id": md.cluster_id, "controller": -1 if md.controller_id is None else md.controller_id,
                         "brokers": [{"id": b.node_id, "host": b.host, "port": b.port} for b in md.brokers],
                         "topics": topics})

    async def describe_cluster(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            c = self.ctx.admin.describe_cluster(conn.principal, conn.listener)
        except StrataError as exc:
            return self._error(exc, conn, brokers=[])
        return Response({
            "cluster_id": c.cluster_id, "controller": -1 if c.controller_id is None else c.controller_id,
            "brokers": [{"id": b.node_id, "host": b.host, "port": b.port, "alive": b.alive,
                         "metrics_port": b.metrics_port} for b in c.brokers],
            "voters": c.voters, "topics": c.topics, "partitions": c.partitions,
            "under_replicated": c.under_replicated, "offline": c.offline,
        })

    async def create_topics(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        new = [NewTopic(t["name"], t["partitions"], t.get("replication_factor", -1),
                        {k: str(v) for k, v in (t.get("configs") or {}).items()}) for t in hdr["topics"]]
        try:
            results = await self.ctx.admin.create_topics(conn.principal, new,
                                                         validate_only=bool(hdr.get("validate_only")),
                                                         forwarded=bool(hdr.get("forwarded")))
        except StrataError as exc:
            return self._error(exc, conn)
        return Response({"topics": [_topic_result(r, {"partitions": r.partitions,
                                                      "replication_factor": r.replication_factor}, self.ctx)
                                    for r in results]})

    async def delete_topics(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            results = await self.ctx.admin.delete_topics(conn.principal, list(hdr["topics"]),
                                                         forwarded=bool(hdr.get("forwarded")))
        except StrataError as exc:
            return self._error(exc, conn)
        return Response({"topics": [_topic_result(r, {}, self.ctx) for r in results]})

    async def create_partitions(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        incs = [PartitionIncrease(t["name"], t["count"]) for t in hdr["topics"]]
        try:
            results = await self.ctx.admin.create_partitions(conn.principal, incs,
                                                             validate_only=bool(hdr.get("validate_only")),
                                                             forwarded=bool(hdr.get("forwarded")))
        except StrataError as exc:
            return self._error(exc, conn)
        return Response({"topics": [_topic_result(r, {}, self.ctx) for r in results]})

    async def describe_configs(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        wanted = [(ConfigResource(r["type"], r["name"]), r.get("keys")) for r in hdr["resources"]]
        try:
            described = self.ctx.admin.describe_configs(conn.principal, wanted)
        except StrataError as exc:
            return self._error(exc, conn, resources=[])
        out = []
        for d in described:
            entry: Header = {"type": d.resource.type, "name": d.resource.name}
            if d.error is not None:
                entry.update(error_fields(d.error, self.ctx))
                entry["configs"] = []
            else:
                entry["configs"] = [{"name": e.name, "value": e.value, "source": e.source, "read_only": e.read_only,
                                     "sensitive": e.sensitive, "doc": e.doc} for e in d.entries]
            out.append(entry)
        return Response({"resources": out})

    async def alter_configs(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        changes = [ConfigChange(ConfigResource(r["type"], r["name"]),
                                [ConfigOp(o["name"], o["op"], o.get("value")) for o in r["ops"]])
                   for r in hdr["resources"]]
        try:
            results = await self.ctx.admin.alter_configs(conn.principal, changes,
                                                         validate_only=bool(hdr.get("validate_only")),
                                                         forwarded=bool(hdr.get("forwarded")))
        except StrataError as exc:
            return self._error(exc, conn, resources=[])
        out = []
        for r in results:
            entry: Header = {"type": r.resource.type, "name": r.resource.name}
            if r.error is not None:
                entry.update(error_fields(r.error, self.ctx))
            out.append(entry)
        return Response({"resources": out})

    async def init_producer_id(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            pid, epoch = await self.ctx.admin.init_producer_id(conn.principal, hdr["timeout_ms"],
                                                               forwarded=bool(hdr.get("forwarded")))
        except StrataError as exc:
            return self._error(exc, conn)
        return Response({"producer_id": pid, "producer_epoch": epoch})

    # -- data ------------------------------------------------------------------------------

    async def produce(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response | None:
        acks = hdr["acks"]
        try:
            res = await self.ctx.partitions.produce(conn.principal, hdr["topic"], hdr["partition"], payload, acks,
                                                    hdr["timeout_ms"])
        except StrataError as exc:
            return None if acks == ACKS_NONE else self._error(exc, conn)
        if acks == ACKS_NONE:
            return None
        return Response({"base_offset": res.base_offset, "last_offset": res.last_offset,
                         "log_start_offset": res.log_start_offset})

    async def fetch(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        req = FetchRequest([FetchPartition(w["topic"], w["partition"], w["offset"], w["max_bytes"],
                                           w.get("leader_epoch", -1)) for w in hdr["partitions"]],
                           hdr["max_wait_ms"], hdr["min_bytes"], hdr["max_bytes"])
        fetched = await self.ctx.partitions.fetch(conn.principal, req)
        entries: list[Header] = []
        parts: list[Any] = []
        pos = 0
        for f in fetched:
            if f.error is not None:
                entries.append({"topic": f.topic, "partition": f.partition, "pos": pos, "size": 0,
                                **error_fields(f.error, self.ctx, conn.listener)})
                continue
            size = f.size
            sl = f.records
            if sl is not None:
                # Bytes already read (and CRC-checked) go as they are; a file range is sent
                # with sendfile by the connection.
                parts.append(sl if sl.data is None else memoryview(sl.data)[:size])
            entries.append({"topic": f.topic, "partition": f.partition, "high_watermark": f.high_watermark,
                            "log_start_offset": f.log_start_offset, "log_end_offset": f.log_end_offset,
                            "pos": pos, "size": size})
            pos += size
        return Response({"partitions": entries}, parts)

    async def list_offsets(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        queries = [OffsetQuery(w["topic"], w["partition"], w["timestamp"]) for w in hdr["partitions"]]
        out = []
        for o in self.ctx.partitions.list_offsets(conn.principal, queries):
            if o.error is not None:
                out.append({"topic": o.topic, "partition": o.partition, **error_fields(o.error, self.ctx, conn.listener)})
            else:
                out.append({"topic": o.topic, "partition": o.partition, "offset": o.offset,
                            "timestamp": o.timestamp, "log_start_offset": o.log_start_offset, "high_watermark": o.high_watermark,
                            "log_end_offset": o.log_end_offset})
        return Response({"partitions": out})

    # -- groups ----------------------------------------------------------------------------

    async def find_coordinator(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            c = self.ctx.groups.find_coordinator(conn.principal, hdr["group"], conn.listener)
        except StrataError as exc:
            return self._error(exc, conn)
        return Response({"coordinator": c.node_id, "host": c.host, "port": c.port, "partition": c.partition})

    async def group_heartbeat(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        owned = hdr.get("owned")
        req = HeartbeatRequest(
            member_id=hdr["member_id"], member_epoch=hdr["member_epoch"], subscribed=hdr.get("subscribed"),
            assignor=hdr.get("assignor"), owned=None if owned is None else topic_lists_to_tps(owned),
            session_timeout_ms=hdr.get("session_timeout_ms", -1),
            rebalance_timeout_ms=hdr.get("rebalance_timeout_ms", -1),
            client_id=conn.client_id, host=conn.remote or "")
        try:
            res = await self.ctx.groups.heartbeat(conn.principal, hdr["group"], req)
        except StrataError as exc:
            return self._error(exc, conn)
        fields: Header = {"member_id": res.member_id, "member_epoch": res.member_epoch,
                          "heartbeat_ms": res.heartbeat_ms}
        if res.member_epoch >= 0:
            fields["assignment"] = tps_to_topic_lists(res.assignment)
        return Response(fields)

    async def offset_commit(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        wants = hdr["partitions"]
        offsets = [OffsetCommit(w["topic"], w["partition"], w["offset"], w.get("leader_epoch", -1),
                                w.get("metadata", "")) for w in wants]
        try:
            errs = await self.ctx.groups.commit_offsets(conn.principal, hdr["group"], hdr["member_id"],
                                                        hdr["member_epoch"], offsets)
        except StrataError as exc:
            return self._error(exc, conn, partitions=[])
        out = []
        for w in wants:
            tp = (w["topic"], w["partition"])
            e = errs.get(tp)
            out.append({"topic": tp[0], "partition": tp[1], **(error_fields(e, self.ctx) if e else {})})
        return Response({"partitions": out})

    async def offset_fetch(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        wants = hdr.get("partitions")
        tps = None if wants is None else [(w["topic"], w["partition"]) for w in wants]
        try:
            offsets = self.ctx.groups.fetch_offsets(conn.principal, hdr["group"], tps)
        except StrataError as exc:
            return self._error(exc, conn, partitions=[])
        return Response({"partitions": [{"topic": o.topic, "partition": o.partition, "offset": o.offset,
                                         "leader_epoch": o.leader_epoch, "metadata": o.metadata} for o in offsets]})

    async def list_groups(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            groups = self.ctx.groups.list_groups(conn.principal, set(hdr.get("states") or ()))
        except StrataError as exc:
            return self._error(exc, conn, groups=[])
        return Response({"groups": [{"group": g, "state": st} for g, st in groups]})

    async def describe_groups(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        out = []
        for d in self.ctx.groups.describe_groups(conn.principal, list(hdr["groups"])):
            if d.error is not None:
                out.append({"group": d.group, **error_fields(d.error, self.ctx), "state": d.state})
                continue
            members = [{"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                        "member_epoch": m.member_epoch, "subscribed": list(m.subscribed),
                        "assignment": tps_to_topic_lists(m.assigned)} for m in d.members]
            offsets = [{"topic": o.topic, "partition": o.partition, "committed": o.committed,
                        "high_watermark": o.high_watermark, "lag": o.lag} for o in d.offsets]
            out.append({"group": d.group, "state": d.state, "epoch": d.epoch, "assignor": d.assignor,
                        "members": members, "offsets": offsets})
        return Response({"groups": out})

    async def delete_groups(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        results = await self.ctx.groups.delete_groups(conn.principal, list(hdr["groups"]))
        return Response({"groups": [{"group": g, **(error_fields(e, self.ctx) if e else {})}
                                    for g, e in results.items()]})

    # -- between brokers -------------------------------------------------------------------

    async def raft(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> None:
        """Peer Raft messages: many groups' messages in one frame per peer per loop turn."""
        self.ctx.replicas.deliver(hdr.get("from"), hdr.get("msgs", ()), memoryview(payload))
        return None

    async def broker_heartbeat(self, conn: ClientConnection, hdr: Header, payload: memoryview) -> Response:
        try:
            return Response(self.ctx.controller.handle_heartbeat(hdr))
        except StrataError as exc:
            return self._error(exc, conn)

