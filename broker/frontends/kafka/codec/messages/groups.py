"""Consumer groups (the classic protocol): FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup, DescribeGroups, ListGroups, DeleteGroups.

Declarations transcribed from Kafka's published message specs (the ``*Request.json`` /
``*Response.json`` schemas), limited to the versions Strata declares. See
``docs/kafka-codec.md`` for how to read and extend them.
"""

from __future__ import annotations

from strata.broker.frontends.kafka.codec.api_keys import ApiKey
from strata.broker.frontends.kafka.codec.schema import (
    RequestMessage,
    ResponseMessage,
    Struct,
    f,
    message,
)
from strata.broker.frontends.kafka.codec.types import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    STRING,
    Array,
)


@message(ApiKey.FIND_COORDINATOR, "0-4", flexible="3+")
class FindCoordinatorRequest(RequestMessage):
    """FindCoordinator request: the broker coordinating a group (or a transactional id)."""

    key: str = f(STRING, "0-3")
    key_type: int = f(INT8, "1+")
    coordinator_keys: list[str] = f(Array(STRING), "4+")


@message(ApiKey.FIND_COORDINATOR, "0-4", flexible="3+")
class FindCoordinatorResponse(ResponseMessage):
    """FindCoordinator response: the coordinator's node id, host and port."""

    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "0-3")
    error_message: str | None = f(STRING, "1-3", nullable="1-3")
    node_id: int = f(INT32, "0-3")
    host: str = f(STRING, "0-3")
    port: int = f(INT32, "0-3")
    coordinators: list[FindCoordinatorResponse.Coordinator] = f(Array("Coordinator"), "4+")

    class Coordinator(Struct):
        key: str = f(STRING, "4+")
        node_id: int = f(INT32, "4+")
        host: str = f(STRING, "4+")
        port: int = f(INT32, "4+")
        error_code: int = f(INT16, "4+")
        error_message: str | None = f(STRING, "4+", nullable="4+")


@message(ApiKey.JOIN_GROUP, "0-9", flexible="6+")
class JoinGroupRequest(RequestMessage):
    """JoinGroup request: join a consumer group (the classic rebalance protocol)."""

    group_id: str = f(STRING, "0+")
    session_timeout_ms: int = f(INT32, "0+")
    rebalance_timeout_ms: int = f(INT32, "1+", default=-1)
    member_id: str = f(STRING, "0+")
    group_instance_id: str | None = f(STRING, "5+", nullable="5+", default=None)
    protocol_type: str = f(STRING, "0+")
    protocols: list[JoinGroupRequest.JoinGroupRequestProtocol] = f(
        Array("JoinGroupRequestProtocol"), "0+"
    )
    reason: str | None = f(STRING, "8+", nullable="8+", default=None)

    class JoinGroupRequestProtocol(Struct):
        name: str = f(STRING, "0+")
        metadata: bytes = f(BYTES, "0+")


@message(ApiKey.JOIN_GROUP, "0-9", flexible="6+")
class JoinGroupResponse(ResponseMessage):
    """JoinGroup response: the generation, the leader and, for the leader, the members."""

    throttle_time_ms: int = f(INT32, "2+")
    error_code: int = f(INT16, "0+")
    generation_id: int = f(INT32, "0+", default=-1)
    protocol_type: str | None = f(STRING, "7+", nullable="7+", default=None)
    protocol_name: str | None = f(STRING, "0+", nullable="7+")
    leader: str = f(STRING, "0+")
    skip_assignment: bool = f(BOOL, "9+", default=False)
    member_id: str = f(STRING, "0+")
    members: list[JoinGroupResponse.JoinGroupResponseMember] = f(
        Array("JoinGroupResponseMember"), "0+"
    )

    class JoinGroupResponseMember(Struct):
        member_id: str = f(STRING, "0+")
        group_instance_id: str | None = f(STRING, "5+", nullable="5+", default=None)
        metadata: bytes = f(BYTES, "0+")


@message(ApiKey.HEARTBEAT, "0-4", flexible="4+")
class HeartbeatRequest(RequestMessage):
    """Heartbeat request: keep a group membership alive."""

    group_id: str = f(STRING, "0+")
    generation_id: int = f(INT32, "0+")
    member_id: str = f(STRING, "0+")
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)


@message(ApiKey.HEARTBEAT, "0-4", flexible="4+")
class HeartbeatResponse(ResponseMessage):
    """Heartbeat response: an error code only (REBALANCE_IN_PROGRESS means rejoin)."""

    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "0+")


@message(ApiKey.LEAVE_GROUP, "0-5", flexible="4+")
class LeaveGroupRequest(RequestMessage):
    """LeaveGroup request: leave a consumer group."""

    group_id: str = f(STRING, "0+")
    member_id: str = f(STRING, "0-2")
    members: list[LeaveGroupRequest.MemberIdentity] = f(Array("MemberIdentity"), "3+")

    class MemberIdentity(Struct):
        member_id: str = f(STRING, "3+")
        group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)
        reason: str | None = f(STRING, "5+", nullable="5+", default=None)


@message(ApiKey.LEAVE_GROUP, "0-5", flexible="4+")
class LeaveGroupResponse(ResponseMessage):
    """LeaveGroup response: the outcome, per member from v3."""

    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "0+")
    members: list[LeaveGroupResponse.MemberResponse] = f(Array("MemberResponse"), "3+")

    class MemberResponse(Struct):
        member_id: str = f(STRING, "3+")
        group_instance_id: str | None = f(STRING, "3+", nullable="3+")
        error_code: int = f(INT16, "3+")


@message(ApiKey.SYNC_GROUP, "0-5", flexible="4+")
class SyncGroupRequest(RequestMessage):
    """SyncGroup request: the leader's assignment, or a follower's wait for its own."""

    group_id: str = f(STRING, "0+")
    generation_id: int = f(INT32, "0+")
    member_id: str = f(STRING, "0+")
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    protocol_type: str | None = f(STRING, "5+", nullable="5+", default=None)
    protocol_name: str | None = f(STRING, "5+", nullable="5+", default=None)
    assignments: list[SyncGroupRequest.SyncGroupRequestAssignment] = f(
        Array("SyncGroupRequestAssignment"), "0+"
    )

    class SyncGroupRequestAssignment(Struct):
        member_id: str = f(STRING, "0+")
        assignment: bytes = f(BYTES, "0+")


@message(ApiKey.SYNC_GROUP, "0-5", flexible="4+")
class SyncGroupResponse(ResponseMessage):
    """SyncGroup response: this member's assignment."""

    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "0+")
    protocol_type: str | None = f(STRING, "5+", nullable="5+", default=None)
    protocol_name: str | None = f(STRING, "5+", nullable="5+", default=None)
    assignment: bytes = f(BYTES, "0+")


@message(ApiKey.DESCRIBE_GROUPS, "0-5", flexible="5+")
class DescribeGroupsRequest(RequestMessage):
    """DescribeGroups request: the state and members of groups."""

    groups: list[str] = f(Array(STRING), "0+")
    include_authorized_operations: bool = f(BOOL, "3+")


@message(ApiKey.DESCRIBE_GROUPS, "0-5", flexible="5+")
class DescribeGroupsResponse(ResponseMessage):
    """DescribeGroups response: state, protocol and members per group."""

    throttle_time_ms: int = f(INT32, "1+")
    groups: list[DescribeGroupsResponse.DescribedGroup] = f(Array("DescribedGroup"), "0+")

    class DescribedGroup(Struct):
        error_code: int = f(INT16, "0+")
        group_id: str = f(STRING, "0+")
        group_state: str = f(STRING, "0+")
        protocol_type: str = f(STRING, "0+")
        protocol_data: str = f(STRING, "0+")
        members: list[DescribeGroupsResponse.DescribedGroupMember] = f(
            Array("DescribedGroupMember"), "0+"
        )
        authorized_operations: int = f(INT32, "3+", default=-2147483648)

    class DescribedGroupMember(Struct):
        member_id: str = f(STRING, "0+")
        group_instance_id: str | None = f(STRING, "4+", nullable="4+", default=None)
        client_id: str = f(STRING, "0+")
        client_host: str = f(STRING, "0+")
        member_metadata: bytes = f(BYTES, "0+")
        member_assignment: bytes = f(BYTES, "0+")


@message(ApiKey.LIST_GROUPS, "0-4", flexible="3+")
class ListGroupsRequest(RequestMessage):
    """ListGroups request: the groups a coordinator knows."""

    states_filter: list[str] = f(Array(STRING), "4+")


@message(ApiKey.LIST_GROUPS, "0-4", flexible="3+")
class ListGroupsResponse(ResponseMessage):
    """ListGroups response: group ids and protocol types (and states from v4)."""

    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "0+")
    groups: list[ListGroupsResponse.ListedGroup] = f(Array("ListedGroup"), "0+")

    class ListedGroup(Struct):
        group_id: str = f(STRING, "0+")
        protocol_type: str = f(STRING, "0+")
        group_state: str = f(STRING, "4+")


@message(ApiKey.DELETE_GROUPS, "0-2", flexible="2+")
class DeleteGroupsRequest(RequestMessage):
    """DeleteGroups request: delete empty groups."""

    groups_names: list[str] = f(Array(STRING), "0+")


@message(ApiKey.DELETE_GROUPS, "0-2", flexible="2+")
class DeleteGroupsResponse(ResponseMessage):
    """DeleteGroups response: the outcome per group."""

    throttle_time_ms: int = f(INT32, "0+")
    results: list[DeleteGroupsResponse.DeletableGroupResult] = f(
        Array("DeletableGroupResult"), "0+"
    )

    class DeletableGroupResult(Struct):
        group_id: str = f(STRING, "0+")
        error_code: int = f(INT16, "0+")
