"""Every API of the native protocol: its number, its request and response shapes, and
the checks both ends run on a decoded header.

Numbers are stable: never renumbered, never reused. Peer APIs start at 64. Each
``(api, version)`` has a :class:`~.schema.Schema`; :data:`SUPPORTED_VERSIONS` is what a
handshake advertises. docs/protocol.md's reference section is rendered from
:data:`SCHEMAS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any, Final, NoReturn

from strata.client.errors import ErrorCode, ProtocolError

from .framing import DEFAULT_MAX_FRAME_BYTES
from .schema import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    STR,
    FieldError,
    List,
    Map,
    Nullable,
    Schema,
    Tuple,
    opt,
    req,
    struct_,
    tname,
)

#: ListOffsets timestamps with a special meaning (Kafka's).
EARLIEST_TIMESTAMP: Final = -2
LATEST_TIMESTAMP: Final = -1

class Api(IntEnum):
    """API keys. Stable numbers: never renumber, never reuse. Peer APIs start at 64."""

    HANDSHAKE = 0
    METADATA = 1
    CREATE_TOPICS = 2
    DELETE_TOPICS = 3
    DESCRIBE_CLUSTER = 4
    PRODUCE = 5
    FETCH = 6
    LIST_OFFSETS = 7
    INIT_PRODUCER_ID = 8
    FIND_COORDINATOR = 9
    OFFSET_COMMIT = 10
    OFFSET_FETCH = 11
    GROUP_HEARTBEAT = 12
    LIST_GROUPS = 13
    DESCRIBE_GROUPS = 14
    DELETE_GROUPS = 15
    DESCRIBE_CONFIGS = 16
    ALTER_CONFIGS = 17
    CREATE_PARTITIONS = 18
    # Between brokers.
    RAFT = 64
    BROKER_HEARTBEAT = 65



# Field groups used by many APIs.
_ERR = (
    opt("err", INT, 0, "ErrorCode; 0 = none"),
    opt("msg", STR, "", "error message"),
)
_TP = (req("topic", STR), req("partition", INT))
_LEADER = (
    opt("leader", INT, -1, "with NOT_LEADER: the leader's broker id, -1 if unknown"),
    opt("leader_addr", STR, "", 'with NOT_LEADER: the leader\'s "host:port", "" if unknown'),
)
_TOPIC_PARTITIONS = struct_(req("topic", STR), req("partitions", List(INT)))
_BROKER = struct_(req("id", INT), req("host", STR), req("port", INT), opt("rack", STR, ""))
_API_RANGE = Tuple((INT, INT, INT))

_HANDSHAKE_V0 = Schema(
    doc="Must be the first request on a connection. Versions are [api, min, max] triples.",
    request=struct_(
        opt("client_id", STR, "", "free-form, for logs and group descriptions"),
        opt("peer_id", INT, -1, "the connecting broker's id; -1 for clients"),
        opt("software", STR, "", "e.g. 'strata-python 0.1.0'"),
        opt("apis", List(_API_RANGE), [], "the client's supported [api, min_v, max_v]"),
    ),
    response=struct_(
        _ERR,
        req("apis", List(_API_RANGE), "the server's supported [api, min_v, max_v]"),
        opt("broker_id", INT, -1),
        opt("cluster_id", STR, ""),
        opt("max_frame_bytes", INT, DEFAULT_MAX_FRAME_BYTES, "largest request frame accepted"),
    ),
)

_METADATA_V0 = Schema(
    doc=(
        "Cluster metadata from any broker: who leads which partition. A broker that has not "
        "caught up with the metadata log yet answers LEADER_NOT_AVAILABLE (top-level, "
        "retriable) rather than a list it cannot vouch for."
    ),
    request=struct_(opt("topics", Nullable(List(STR)), None, "nil = every topic")),
    response=struct_(
        _ERR,
        opt("cluster_id", STR, ""),
        opt("controller", INT, -1, "controller broker id, -1 if none"),
        req("brokers", List(_BROKER)),
        req(
            "topics",
            List(
                struct_(
                    req("name", STR),
                    _ERR,
                    opt("internal", BOOL, False),
                    opt(
                        "partitions",
                        List(
                            struct_(
                                req("partition", INT),
                                _ERR,
                                req("leader", INT, "-1 = no leader"),
                                opt("leader_epoch", INT, -1),
                                req("replicas", List(INT)),
                                req("isr", List(INT)),
                                opt("log_start_offset", INT, -1, "as last reported by the leader"),
                                opt("log_end_offset", INT, -1),
                                opt("high_watermark", INT, -1),
                                opt("dirty_ratio", FLOAT, -1.0,
                                    "compacted topics: dirty / cleanable bytes on the leader; -1 = not "
                                    "compacted or unknown"),
                            )
                        ),
                        [],
                    ),
                )
            ),
        ),
    ),
)

_CREATE_TOPICS_V0 = Schema(
    doc=(
        "Topic configs are strings, as in Kafka (DESCRIBE_CONFIGS lists the known keys). "
        "The answer says what was used, defaults included."
    ),
    request=struct_(
        req(
            "topics",
            List(
                struct_(
                    req("name", STR),
                    req("partitions", INT),
                    opt(
                        "replication_factor",
                        INT,
                        -1,
                        "-1 = the cluster's default.replication.factor",
                    ),
                    opt("configs", Map(STR), {}),
                )
            ),
        ),
        opt("timeout_ms", INT, 30_000),
        opt("validate_only", BOOL, False),
    ),
    response=struct_(
        _ERR,
        req(
            "topics",
            List(
                struct_(
                    req("name", STR),
                    _ERR,
                    opt("partitions", INT, -1, "the partition count used"),
                    opt("replication_factor", INT, -1, "the replication factor used"),
                )
            ),
        ),
    ),
)

_DELETE_TOPICS_V0 = Schema(
    request=struct_(req("topics", List(STR)), opt("timeout_ms", INT, 30_000)),
    response=struct_(_ERR, req("topics", List(struct_(req("name", STR), _ERR)))),
)

_DESCRIBE_CLUSTER_V0 = Schema(
    doc="What `strata cluster status` prints.",
    request=struct_(),
    response=struct_(
        _ERR,
        opt("cluster_id", STR, ""),
        opt("controller", INT, -1),
        req(
            "brokers",
            List(
                struct_(
                    _BROKER.fields,
                    opt("alive", BOOL, True),
                    opt("metrics_port", INT, -1, "where /metrics is served, -1 if not"),
                )
            ),
        ),
        opt("voters", List(INT), [], "controller quorum voters"),
        opt("topics", INT, 0),
        opt("partitions", INT, 0),
        opt("under_replicated", INT, 0),
        opt("offline", INT, 0, "partitions without a leader"),
    ),
)

_PRODUCE_V0 = Schema(
    doc="One partition per request; pipeline requests for throughput. acks=0 sets oneway.",
    request=struct_(
        _TP,
        opt("acks", INT, -1, "-1 = all (committed), 1 = leader appended, 0 = no response"),
        opt("timeout_ms", INT, 30_000, "how long to wait for replication"),
    ),
    request_payload="one or more record batches (v2), back to back",
    response=struct_(
        _ERR,
        opt("base_offset", INT, -1, "offset of the first record written"),
        opt("last_offset", INT, -1, "offset of the last record written"),
        opt("log_start_offset", INT, -1),
        _LEADER,
    ),
)

_FETCH_V0 = Schema(
    doc=(
        "Long poll: answered once min_bytes are available or max_wait_ms passed. "
        "Each partition's batches are the payload slice [pos, pos+size); slices are in "
        "partition order and contiguous, so the broker can sendfile them one after another."
    ),
    request=struct_(
        opt("max_wait_ms", INT, 500),
        opt("min_bytes", INT, 1),
        opt("max_bytes", INT, 50 << 20, "for the whole response"),
        req(
            "partitions",
            List(
                struct_(
                    _TP,
                    req("offset", INT, "first offset wanted"),
                    opt(
                        "max_bytes",
                        INT,
                        1 << 20,
                        "for this partition (at least one batch is returned)",
                    ),
                    opt(
                        "leader_epoch",
                        INT,
                        -1,
                        "the fetcher's view of the leader epoch; -1 = unchecked",
                    ),
                )
            ),
        ),
    ),
    response=struct_(
        _ERR,
        req(
            "partitions",
            List(
                struct_(
                    _TP,
                    _ERR,
                    opt("high_watermark", INT, -1),
                    opt("log_start_offset", INT, -1),
                    opt("log_end_offset", INT, -1),
                    opt("pos", INT, 0, "start of this partition's batches in the payload"),
                    opt("size", INT, 0, "bytes of batches (0 = none)"),
                    _LEADER,
                )
            ),
        ),
    ),
    response_payload="the partitions' batches, concatenated in partition order",
)

_LIST_OFFSETS_V0 = Schema(
    doc="timestamp -2 = earliest (log start), -1 = latest (high watermark), else ms since epoch.",
    request=struct_(req("partitions", List(struct_(_TP, req("timestamp", INT))))),
    response=struct_(
        _ERR,
        req(
            "partitions",
            List(
                struct_(
                    _TP,
                    _ERR,
                    opt("offset", INT, -1, "-1 if no record at or after the timestamp"),
                    opt("timestamp", INT, -1),
                    opt("log_start_offset", INT, -1),
                    opt("high_watermark", INT, -1),
                    opt("log_end_offset", INT, -1),
                    _LEADER,
                )
            ),
        ),
    ),
)

_INIT_PRODUCER_ID_V0 = Schema(
    doc="Idempotent producers: a new id, or (given the current id and epoch) a bumped epoch.",
    request=struct_(
        opt("producer_id", INT, -1), opt("producer_epoch", INT, -1), opt("timeout_ms", INT, 30_000)
    ),
    response=struct_(_ERR, opt("producer_id", INT, -1), opt("producer_epoch", INT, -1)),
)

_FIND_COORDINATOR_V0 = Schema(
    request=struct_(req("group", STR)),
    response=struct_(
        _ERR, opt("coordinator", INT, -1, "broker id"), opt("host", STR, ""), opt("port", INT, 0)
    ),
)

_OFFSET_COMMIT_V0 = Schema(
    doc=(
        "member_epoch -1 with an empty member_id is an admin commit (reset-offsets), "
        "accepted only while the group has no members."
    ),
    request=struct_(
        req("group", STR),
        opt("member_id", STR, ""),
        opt("member_epoch", INT, -1),
        req(
            "partitions",
            List(
                struct_(
                    _TP,
                    req("offset", INT, "the next offset to consume"),
                    opt("leader_epoch", INT, -1),
                    opt("metadata", STR, ""),
                )
            ),
        ),
    ),
    response=struct_(_ERR, req("partitions", List(struct_(_TP, _ERR)))),
)

_OFFSET_FETCH_V0 = Schema(
    request=struct_(
        req("group", STR),
        opt("partitions", Nullable(List(struct_(_TP))), None, "nil = every committed partition"),
    ),
    response=struct_(
        _ERR,
        req(
            "partitions",
            List(
                struct_(
                    _TP,
                    req("offset", INT, "-1 = nothing committed"),
                    opt("leader_epoch", INT, -1),
                    opt("metadata", STR, ""),
                    _ERR,
                )
            ),
        ),
    ),
)

_GROUP_HEARTBEAT_V0 = Schema(
    doc=(
        "KIP-848 style: member_epoch 0 joins, -1 leaves; the coordinator assigns. "
        "nil fields mean 'unchanged since the last heartbeat'."
    ),
    request=struct_(
        req("group", STR),
        opt("member_id", STR, "", "empty on the first join: the coordinator assigns one"),
        req("member_epoch", INT),
        opt("rebalance_timeout_ms", INT, -1),
        opt(
            "session_timeout_ms",
            INT,
            -1,
            "-1 = the broker's default (10000); the member is removed after this long without a heartbeat",
        ),
        opt("subscribed", Nullable(List(STR)), None, "topic names"),
        opt("assignor", Nullable(STR), None),
        opt("owned", Nullable(List(_TOPIC_PARTITIONS)), None, "partitions the member owns now"),
    ),
    response=struct_(
        _ERR,
        opt("member_id", STR, ""),
        opt("member_epoch", INT, -1),
        opt("heartbeat_ms", INT, 5_000, "send the next heartbeat within this"),
        opt("assignment", Nullable(List(_TOPIC_PARTITIONS)), None, "the target assignment"),
    ),
)

_LIST_GROUPS_V0 = Schema(
    request=struct_(opt("states", List(STR), [], "empty = any state")),
    response=struct_(_ERR, req("groups", List(struct_(req("group", STR), opt("state", STR, ""))))),
)

_DESCRIBE_GROUPS_V0 = Schema(
    doc="Only the coordinator of a group describes it (others answer NOT_COORDINATOR per group).",
    request=struct_(req("groups", List(STR))),
    response=struct_(
        _ERR,
        req(
            "groups",
            List(
                struct_(
                    req("group", STR),
                    _ERR,
                    opt("state", STR, "", "empty | assigning | reconciling | stable | dead"),
                    opt("epoch", INT, -1, "group epoch"),
                    opt("assignor", STR, ""),
                    opt(
                        "members",
                        List(
                            struct_(
                                req("member_id", STR),
                                opt("client_id", STR, ""),
                                opt("host", STR, ""),
                                opt("member_epoch", INT, -1),
                                opt("subscribed", List(STR), []),
                                opt("assignment", List(_TOPIC_PARTITIONS), []),
                            )
                        ),
                        [],
                    ),
                    opt(
                        "offsets",
                        List(
                            struct_(
                                _TP,
                                req("committed", INT),
                                opt("high_watermark", INT, -1, "-1 = unknown (no leader)"),
                                opt("lag", INT, -1, "high_watermark - committed; -1 = unknown"),
                            )
                        ),
                        [],
                        "committed offsets with the partitions' high watermarks",
                    ),
                )
            ),
        ),
    ),
)

_DELETE_GROUPS_V0 = Schema(
    request=struct_(req("groups", List(STR))),
    response=struct_(_ERR, req("groups", List(struct_(req("group", STR), _ERR)))),
)

_CONFIG_RESOURCE_TYPE = "topic | broker"

_DESCRIBE_CONFIGS_V0 = Schema(
    doc=(
        "Every config of each resource with its value and where it comes from. Values are "
        "strings (nil when unset or sensitive), as in Kafka."
    ),
    request=struct_(
        req(
            "resources",
            List(
                struct_(
                    req("type", STR, _CONFIG_RESOURCE_TYPE),
                    req("name", STR, "the topic name, or the broker id as a string"),
                    opt("keys", Nullable(List(STR)), None, "nil = every config"),
                )
            ),
        )
    ),
    response=struct_(
        _ERR,
        req(
            "resources",
            List(
                struct_(
                    req("type", STR),
                    req("name", STR),
                    _ERR,
                    opt(
                        "configs",
                        List(
                            struct_(
                                req("name", STR),
                                req("value", Nullable(STR)),
                                opt("source", STR, "default", "default | topic | broker"),
                                opt("read_only", BOOL, False),
                                opt("sensitive", BOOL, False),
                                opt("doc", STR, ""),
                            )
                        ),
                        [],
                    ),
                )
            ),
        ),
    ),
)

_ALTER_CONFIGS_V0 = Schema(
    doc=(
        "Incremental, like Kafka's IncrementalAlterConfigs: keys not named keep their values. "
        "Goes to the controller (NOT_CONTROLLER names it); every replica applies the change "
        "without a restart. A bad key or value is INVALID_CONFIG naming it."
    ),
    request=struct_(
        req(
            "resources",
            List(
                struct_(
                    req("type", STR, _CONFIG_RESOURCE_TYPE),
                    req("name", STR),
                    req(
                        "ops",
                        List(
                            struct_(
                                req("name", STR),
                                req("op", STR, "set | delete (back to the default)"),
                                opt("value", Nullable(STR), None, "with set"),
                            )
                        ),
                    ),
                )
            ),
        ),
        opt("validate_only", BOOL, False),
    ),
    response=struct_(
        _ERR,
        req("resources", List(struct_(req("type", STR), req("name", STR), _ERR))),
    ),
)

_CREATE_PARTITIONS_V0 = Schema(
    doc=(
        "Grows topics to `count` partitions in all (Kafka's --partitions). Goes to the "
        "controller. Keys map to partitions by count, so adding partitions moves keys."
    ),
    request=struct_(
        req("topics", List(struct_(req("name", STR), req("count", INT, "the new total")))),
        opt("validate_only", BOOL, False),
        opt("timeout_ms", INT, 30_000),
    ),
    response=struct_(
        _ERR,
        req("topics", List(struct_(req("name", STR), _ERR))),
    ),
)

_RAFT_V0 = Schema(
    doc=(
        "Peer-to-peer, oneway. Every Raft message one broker has for another in one event-loop "
        "turn (all groups' heartbeats, appends, votes, replies) travels in one frame. Each "
        "message is [group, fields, pos, size]: group and fields are owned by the Raft layer "
        "(opaque here), [pos, pos+size) is its slice of the payload (record batches). A frame "
        "with no messages is a liveness ping, sent every heartbeat interval: it stands in for "
        "the heartbeats of quiesced (idle) groups."
    ),
    request=struct_(
        req("from", INT, "sender broker id"),
        req("msgs", List(Tuple((ANY, ANY, INT, INT)))),
    ),
    request_payload="the messages' batches, concatenated",
    response=struct_(_ERR),
)

_BROKER_HEARTBEAT_V0 = Schema(
    doc=(
        "Peer-to-peer: each broker tells the controller it is alive and where it listens; "
        "the controller answers with what the broker needs to catch up. Fields beyond these "
        "belong to the controller (unknown fields pass through)."
    ),
    request=struct_(
        req("id", INT, "the broker's id"),
        opt("host", STR, ""),
        opt("port", INT, 0),
        opt("known_version", INT, -1, "the metadata version the broker has applied"),
    ),
    response=struct_(_ERR),
)

#: Every (api, version) this build speaks.
SCHEMAS: Final[dict[tuple[Api, int], Schema]] = {
    (Api.HANDSHAKE, 0): _HANDSHAKE_V0,
    (Api.METADATA, 0): _METADATA_V0,
    (Api.CREATE_TOPICS, 0): _CREATE_TOPICS_V0,
    (Api.DELETE_TOPICS, 0): _DELETE_TOPICS_V0,
    (Api.DESCRIBE_CLUSTER, 0): _DESCRIBE_CLUSTER_V0,
    (Api.PRODUCE, 0): _PRODUCE_V0,
    (Api.FETCH, 0): _FETCH_V0,
    (Api.LIST_OFFSETS, 0): _LIST_OFFSETS_V0,
    (Api.INIT_PRODUCER_ID, 0): _INIT_PRODUCER_ID_V0,
    (Api.FIND_COORDINATOR, 0): _FIND_COORDINATOR_V0,
    (Api.OFFSET_COMMIT, 0): _OFFSET_COMMIT_V0,
    (Api.OFFSET_FETCH, 0): _OFFSET_FETCH_V0,
    (Api.GROUP_HEARTBEAT, 0): _GROUP_HEARTBEAT_V0,
    (Api.LIST_GROUPS, 0): _LIST_GROUPS_V0,
    (Api.DESCRIBE_GROUPS, 0): _DESCRIBE_GROUPS_V0,
    (Api.DELETE_GROUPS, 0): _DELETE_GROUPS_V0,
    (Api.DESCRIBE_CONFIGS, 0): _DESCRIBE_CONFIGS_V0,
    (Api.ALTER_CONFIGS, 0): _ALTER_CONFIGS_V0,
    (Api.CREATE_PARTITIONS, 0): _CREATE_PARTITIONS_V0,
    (Api.RAFT, 0): _RAFT_V0,
    (Api.BROKER_HEARTBEAT, 0): _BROKER_HEARTBEAT_V0,
}


def _ranges(schemas: Iterable[tuple[Api, int]]) -> dict[Api, tuple[int, int]]:
    out: dict[Api, tuple[int, int]] = {}
    for api, v in schemas:
        lo, hi = out.get(api, (v, v))
        out[api] = (min(lo, v), max(hi, v))
    return out


#: The version range this build speaks, per API (what the handshake advertises).
SUPPORTED_VERSIONS: Final[dict[Api, tuple[int, int]]] = _ranges(SCHEMAS)
assert set(SUPPORTED_VERSIONS) == set(Api), "every Api needs a schema"
assert all(
    (api, v) in SCHEMAS for api, (lo, hi) in SUPPORTED_VERSIONS.items() for v in range(lo, hi + 1)
), "version ranges must be contiguous"

def _raise_field_error(
    code: ErrorCode, exc: FieldError, header: dict[str, Any], what: str
) -> NoReturn:
    raise ProtocolError(code, f"{what}: {exc}", header=header) from None


def validate_request(
    header: dict[str, Any],
    *,
    versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS,
    fill: bool = True,
) -> Schema:
    """Check a decoded request header against its schema; fill in defaults if ``fill``.

    Raises ``ProtocolError`` with ``UNKNOWN_API``, ``UNSUPPORTED_VERSION`` or
    ``INVALID_REQUEST`` (``header`` attached, so it can be answered).
    """
    raw_api, version = header["api"], header["v"]
    try:
        api = Api(raw_api)
    except ValueError:
        raise ProtocolError(
            ErrorCode.UNKNOWN_API, f"unknown api {raw_api}", header=header
        ) from None
    rng = versions.get(api)
    if rng is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_API, f"api {api.name} is not served here", header=header
        )
    lo, hi = rng
    if not lo <= version <= hi:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"{api.name} version {version} is not supported; supported versions are {lo}-{hi}",
            header=header,
        )
    schema = SCHEMAS[(api, version)]
    try:
        schema.request.check(header, "", fill)
        if "oneway" in header and type(header["oneway"]) is not bool:
            raise FieldError("oneway", f"expected bool, got {tname(header['oneway'])}")
    except FieldError as exc:
        _raise_field_error(ErrorCode.INVALID_REQUEST, exc, header, f"{api.name} v{version} request")
    return schema


def validate_response(
    header: dict[str, Any],
    *,
    fill: bool = True,
    code: ErrorCode = ErrorCode.INVALID_RESPONSE,
) -> Schema:
    """Check a decoded response header; an error response (``err`` != 0) needs only err/msg."""
    try:
        api = Api(header["api"])
        schema = SCHEMAS[(api, header["v"])]
    except (ValueError, KeyError):
        raise ProtocolError(
            code, f"response for unknown api {header['api']} version {header['v']}", header=header
        ) from None
    try:
        err = header.get("err", 0)
        if type(err) is not int:
            raise FieldError("err", f"expected int, got {tname(err)}")
        if err:
            msg = header.setdefault("msg", "") if fill else header.get("msg", "")
            if type(msg) is not str:
                raise FieldError("msg", f"expected str, got {tname(msg)}")
        else:
            schema.response.check(header, "", fill)
    except FieldError as exc:
        _raise_field_error(code, exc, header, f"{api.name} v{header['v']} response")
    return schema


