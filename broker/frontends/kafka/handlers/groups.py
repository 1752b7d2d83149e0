"""FindCoordinator, the classic group protocol, offsets, and group administration.

Groups and committed offsets are one set, seen through two doors: a Kafka consumer group's
offsets appear in ``strata group describe`` (with lag), and a native group shows in Kafka's
admin tools, its members' assignments in Kafka's consumer-protocol encoding.
"""

from __future__ import annotations

from strata.broker.frontends.kafka.codec import KafkaErrorCode, Request
from strata.broker.frontends.kafka.codec.messages.groups import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)
from strata.broker.frontends.kafka.codec.messages.offsets import (
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
)
from strata.broker.frontends.kafka.connection import KafkaAnswer, KafkaConnection
from strata.broker.frontends.kafka.errors import kafka_code
from strata.broker.frontends.kafka.handlers.common import KafkaContext
from strata.broker.groups.classic import JoinRequest
from strata.broker.groups.consumer_protocol import encode_assignment, encode_subscription
from strata.broker.groups.coordinator import GroupDescription, OffsetCommit
from strata.client.errors import ErrorCode, StrataError

#: FindCoordinator key types: 0 = group, 1 = transactional id.
GROUP_KEY = 0
#: Kafka's names for Strata's native group states (those of its own KIP-848 groups).
NATIVE_STATES = {"empty": "Empty", "reconciling": "Reconciling", "stable": "Stable", "dead": "Dead"}


class GroupHandlers:
    def __init__(self, ctx: KafkaContext) -> None:
        self.ctx = ctx

    # -- finding the coordinator -----------------------------------------------------------

    def _coordinator(self, conn: KafkaConnection, key: str, key_type: int
                     ) -> tuple[int, str, int, int, str | None]:
        """(node id, host, port, error code, message) for one key."""
        if key_type != GROUP_KEY:
            return -1, "", -1, KafkaErrorCode.COORDINATOR_NOT_AVAILABLE, "transactions are not supported by Strata"
        try:
            c = self.ctx.groups.find_coordinator(conn.principal, key, conn.listener)
        except StrataError as exc:
            return -1, "", -1, kafka_code(exc), exc.message
        return c.node_id, c.host, c.port, 0, None

    async def find_coordinator(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, FindCoordinatorRequest)
        if req.api_version >= 4:
            found = []
            for key in body.coordinator_keys:
                node, host, port, code, msg = self._coordinator(conn, key, body.key_type)
                found.append(FindCoordinatorResponse.Coordinator(key=key, node_id=node, host=host, port=port,
                                                                 error_code=code, error_message=msg))
            return KafkaAnswer(FindCoordinatorResponse(coordinators=found))
        node, host, port, code, msg = self._coordinator(conn, body.key, body.key_type)
        return KafkaAnswer(FindCoordinatorResponse(error_code=code, error_message=msg, node_id=node, host=host,
                                                   port=port))

    # -- the classic protocol --------------------------------------------------------------

    async def join_group(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, JoinGroupRequest)
        rebalance = body.rebalance_timeout_ms if body.rebalance_timeout_ms >= 0 else body.session_timeout_ms
        jr = JoinRequest(
            member_id=body.member_id, group_instance_id=body.group_instance_id,
            session_timeout_ms=body.session_timeout_ms, rebalance_timeout_ms=rebalance,
            protocol_type=body.protocol_type, protocols=[(p.name, bytes(p.metadata)) for p in body.protocols],
            client_id=conn.client_id, client_host=conn.remote.rsplit(":", 1)[0],
            require_known_member_id=req.api_version >= 4)
        # protocol_name is nullable from v7; before that "no protocol" is the empty string.
        no_name = None if req.api_version >= 7 else ""
        try:
            res = await self.ctx.groups.join_group(conn.principal, body.group_id, jr)
        except StrataError as exc:
            return KafkaAnswer(JoinGroupResponse(error_code=kafka_code(exc), generation_id=-1, protocol_name=no_name,
                                                 leader="", member_id=body.member_id, members=[]))
        if res.error is not None:
            return KafkaAnswer(JoinGroupResponse(error_code=kafka_code(res.error), generation_id=-1,
                                                 protocol_name=no_name, leader="", member_id=res.member_id,
                                                 members=[]))
        return KafkaAnswer(JoinGroupResponse(
            error_code=0, generation_id=res.generation, protocol_type=res.protocol_type,
            protocol_name=res.protocol_name if res.protocol_name is not None else no_name, leader=res.leader,
            member_id=res.member_id,
            members=[JoinGroupResponse.JoinGroupResponseMember(member_id=m, group_instance_id=inst, metadata=meta)
                     for m, inst, meta in res.members]))

    async def sync_group(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, SyncGroupRequest)
        assignments = {a.member_id: bytes(a.assignment) for a in body.assignments}
        try:
            assignment = await self.ctx.groups.sync_group(conn.principal, body.group_id, body.member_id,
                                                          body.group_instance_id, body.generation_id, assignments)
        except StrataError as exc:
            return KafkaAnswer(SyncGroupResponse(error_code=kafka_code(exc), assignment=b""))
        except TimeoutError:
            return KafkaAnswer(SyncGroupResponse(error_code=KafkaErrorCode.REBALANCE_IN_PROGRESS, assignment=b""))
        return KafkaAnswer(SyncGroupResponse(error_code=0, protocol_type=body.protocol_type,
                                             protocol_name=body.protocol_name, assignment=assignment))

    async def heartbeat(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, HeartbeatRequest)
        try:
            await self.ctx.groups.classic_heartbeat(conn.principal, body.group_id, body.member_id,
                                                    body.group_instance_id, body.generation_id)
        except StrataError as exc:
            return KafkaAnswer(HeartbeatResponse(error_code=kafka_code(exc)))
        return KafkaAnswer(HeartbeatResponse(error_code=0))

    async def leave_group(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, LeaveGroupRequest)
        if req.api_version >= 3:
            members = [(m.member_id, m.group_instance_id) for m in body.members]
        else:
            members = [(body.member_id, None)]
        try:
            outcomes = await self.ctx.groups.leave_group(conn.principal, body.group_id, members)
        except StrataError as exc:
            return KafkaAnswer(LeaveGroupResponse(error_code=kafka_code(exc), members=[]))
        if req.api_version < 3:
            return KafkaAnswer(LeaveGroupResponse(error_code=kafka_code(outcomes[0])))
        return KafkaAnswer(LeaveGroupResponse(error_code=0, members=[
            LeaveGroupResponse.MemberResponse(member_id=m, group_instance_id=inst, error_code=kafka_code(e))
            for (m, inst), e in zip(members, outcomes, strict=True)]))

    # -- offsets ---------------------------------------------------------------------------

    async def offset_commit(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, OffsetCommitRequest)
        offsets = [OffsetCommit(t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch,
                                p.committed_metadata or "") for t in body.topics for p in t.partitions]
        errs: dict[tuple[str, int], StrataError] = {}
        whole: StrataError | None = None
        try:
            errs = await self.ctx.groups.commit_offsets(
                conn.principal, body.group_id, body.member_id, -1, offsets,
                generation=body.generation_id_or_member_epoch, instance_id=body.group_instance_id)
        except StrataError as exc:
            whole = exc
        return KafkaAnswer(OffsetCommitResponse(topics=[
            OffsetCommitResponse.OffsetCommitResponseTopic(name=t.name, partitions=[
                OffsetCommitResponse.OffsetCommitResponsePartition(
                    partition_index=p.partition_index,
                    error_code=kafka_code(whole if whole is not None else errs.get((t.name, p.partition_index))))
                for p in t.partitions]) for t in body.topics]))

    def _fetch_group(self, conn: KafkaConnection, group: str, topics: list[tuple[str, list[int]]] | None
                     ) -> tuple[int, list[tuple[str, list[tuple[int, int, int, str]]]]]:
        """(group error, [(topic, [(partition, offset, leader epoch, metadata)])])."""
        tps = None if topics is None else [(t, p) for t, ps in topics for p in ps]
        try:
            found = self.ctx.groups.fetch_offsets(conn.principal, group, tps)
        except StrataError as exc:
            return kafka_code(exc), []
        by_topic: dict[str, list[tuple[int, int, int, str]]] = {}
        for o in found:
            by_topic.setdefault(o.topic, []).append((o.partition, o.offset, o.leader_epoch, o.metadata))
        return 0, list(by_topic.items())

    async def offset_fetch(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, OffsetFetchRequest)
        if req.api_version >= 8:
            groups = []
            for g in body.groups:
                wanted = None if g.topics is None else [(t.name, list(t.partition_indexes)) for t in g.topics]
                code, topics = self._fetch_group(conn, g.group_id, wanted)
                groups.append(OffsetFetchResponse.OffsetFetchResponseGroup(group_id=g.group_id, error_code=code, topics=[
                    OffsetFetchResponse.OffsetFetchResponseTopics(name=t, partitions=[
                        OffsetFetchResponse.OffsetFetchResponsePartitions(
                            partition_index=p, committed_offset=off, committed_leader_epoch=ep, metadata=meta,
                            error_code=0) for p, off, ep, meta in parts]) for t, parts in topics]))
            return KafkaAnswer(OffsetFetchResponse(groups=groups))
        wanted = None if body.topics is None else [(t.name, list(t.partition_indexes)) for t in body.topics]
        code, topics = self._fetch_group(conn, body.group_id, wanted)
        if code and req.api_version < 2:
            # v1 has no group error: each partition carries it.
            topics = [(t, [(p, -1, -1, "") for p in ps]) for t, ps in (wanted or [])]
        return KafkaAnswer(OffsetFetchResponse(error_code=code, topics=[
            OffsetFetchResponse.OffsetFetchResponseTopic(name=t, partitions=[
                OffsetFetchResponse.OffsetFetchResponsePartition(
                    partition_index=p, committed_offset=off, committed_leader_epoch=ep, metadata=meta,
                    error_code=code if req.api_version < 2 else 0) for p, off, ep, meta in parts])
            for t, parts in topics]))

    async def offset_delete(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, OffsetDeleteRequest)
        tps = [(t.name, p.partition_index) for t in body.topics for p in t.partitions]
        try:
            out = await self.ctx.groups.delete_offsets(conn.principal, body.group_id, tps)
        except StrataError as exc:
            return KafkaAnswer(OffsetDeleteResponse(error_code=kafka_code(exc), topics=[]))
        return KafkaAnswer(OffsetDeleteResponse(error_code=0, topics=[
            OffsetDeleteResponse.OffsetDeleteResponseTopic(name=t.name, partitions=[
                OffsetDeleteResponse.OffsetDeleteResponsePartition(
                    partition_index=p.partition_index, error_code=kafka_code(out.get((t.name, p.partition_index))))
                for p in t.partitions]) for t in body.topics]))

    # -- group administration --------------------------------------------------------------

    async def describe_groups(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DescribeGroupsRequest)
        out = [_described(d) for d in self.ctx.groups.describe_groups(conn.principal, list(body.groups))]
        return KafkaAnswer(DescribeGroupsResponse(groups=out))

    async def list_groups(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, ListGroupsRequest)
        try:
            groups = self.ctx.groups.list_group_kinds(conn.principal)
        except StrataError as exc:
            return KafkaAnswer(ListGroupsResponse(error_code=kafka_code(exc), groups=[]))
        states = {s.lower() for s in body.states_filter}
        listed = []
        for gid, state, classic in groups:
            name = state if classic else NATIVE_STATES.get(state, state)
            if not states or name.lower() in states:
                listed.append(ListGroupsResponse.ListedGroup(group_id=gid, protocol_type="consumer", group_state=name))
        return KafkaAnswer(ListGroupsResponse(error_code=0, groups=listed))

    async def delete_groups(self, conn: KafkaConnection, req: Request) -> KafkaAnswer:
        body = req.body
        assert isinstance(body, DeleteGroupsRequest)
        results = await self.ctx.groups.delete_groups(conn.principal, list(body.groups_names))
        return KafkaAnswer(DeleteGroupsResponse(results=[
            DeleteGroupsResponse.DeletableGroupResult(group_id=g, error_code=kafka_code(e)) for g, e in results.items()]))


def _described(d: GroupDescription) -> DescribeGroupsResponse.DescribedGroup:
    if d.error is not None:
        state = "Dead" if d.error.code == ErrorCode.GROUP_ID_NOT_FOUND else ""
        # Kafka describes a group it does not know as Dead, without an error.
        code = 0 if d.error.code == ErrorCode.GROUP_ID_NOT_FOUND else kafka_code(d.error)
        return DescribeGroupsResponse.DescribedGroup(error_code=code, group_id=d.group, group_state=state,
                                                     protocol_type="", protocol_data="", members=[])
    members = []
    if d.classic:
        for m in d.members:
            members.append(DescribeGroupsResponse.DescribedGroupMember(
                member_id=m.member_id, group_instance_id=m.group_instance_id, client_id=m.client_id,
                client_host=m.client_host, member_metadata=m.metadata_for(d.assignor), member_assignment=m.assignment))
        state = d.state
    else:
        for m in d.members:
            members.append(DescribeGroupsResponse.DescribedGroupMember(
                member_id=m.member_id, client_id=m.client_id, client_host=m.host,
                member_metadata=encode_subscription(m.subscribed), member_assignment=encode_assignment(m.assigned)))
        state = NATIVE_STATES.get(d.state, d.state)
    return DescribeGroupsResponse.DescribedGroup(error_code=0, group_id=d.group, group_state=state,
                                                 protocol_type=d.protocol_type, protocol_data=d.assignor,
                                                 members=members)
