"""Strata's wire protocol, sans-I/O: frames, the API registry, schemas and a connection state machine.

Nothing here touches a socket, a clock or a thread (h11's shape): bytes go in with
``receive_data``, decoded frames come out of ``next_frame``, and the ``send_*`` / ``encode_*``
functions turn messages into bytes for the caller to write. That is what lets the codec be
tested split at every byte boundary and fuzzed, and be shared by the broker, the clients
and the peers.

Frame::

    u32 frame_length | u32 header_length | msgpack header | raw payload

``frame_length`` counts every byte after itself (``4 + header_length + len(payload)``),
big-endian. The header is a msgpack map with string keys. Every header has ``api`` (an
:class:`Api`), ``v`` (the API version) and ``cid`` (correlation id, chosen by the sender of
the request and echoed in the response). Requests add their fields; responses echo
``api``/``v``/``cid`` and add ``err`` (an :class:`~strata.client.errors.ErrorCode`, 0 = none)
and ``msg``, plus their fields. A request with ``"oneway": true`` gets no response (acks=0
produce, Raft messages). The payload is opaque bytes — record batches exactly as they are
on disk — so a produce request is appended and a fetch response is served from the segment
file (``sendfile``) without re-encoding.

Rules both sides follow:

* The first request on a connection is ``HANDSHAKE``: the client lists the version range it
  speaks per API, the server answers with its own; afterwards each side uses the highest
  version in both ranges (:func:`negotiate`).
* Requests are pipelined; responses come back in request order, on the same connection.
* Unknown header fields are ignored (so new optional fields need no new version); missing
  optional fields take their documented defaults; a missing required field or a field of
  the wrong type is ``INVALID_REQUEST``.
* A request the server cannot accept (unknown ``api`` → ``UNKNOWN_API``, version outside
  the range → ``UNSUPPORTED_VERSION``, bad fields → ``INVALID_REQUEST``) is answered with an
  error response under its ``cid`` when the header could be decoded (:func:`error_response`),
  then the server closes the connection. Framing errors (oversized, garbage) just close it.
* A response with a non-zero top-level ``err`` need carry nothing else.

The message shapes of every API are in ``docs/protocol.md``, generated from
:data:`SCHEMAS` by :func:`render_schemas`.
"""

from __future__ import annotations

import copy
import struct
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Final, Literal, NoReturn, TypeAlias

import msgpack

from strata.client.errors import ErrorCode, ProtocolError

# -- limits ----------------------------------------------------------------------------

#: Largest frame accepted by default (the broker's ``limits.max_frame_bytes`` agrees).
DEFAULT_MAX_FRAME_BYTES: Final = 64 << 20
#: Largest header a server accepts by default: requests have small headers.
DEFAULT_MAX_HEADER_BYTES: Final = 1 << 20
#: Largest header a client accepts by default: a metadata response for a big cluster is large.
CLIENT_MAX_HEADER_BYTES: Final = 16 << 20
#: Frames at least this big, arriving in pieces, are assembled in a buffer of their own,
#: allocated once, so they are neither re-copied as the shared buffer grows nor copied out.
LARGE_FRAME_BYTES: Final = 64 << 10
#: Consumed bytes at the front of the shared buffer are dropped once there are this many
#: and they are at least half the buffer: copies stay linear in the bytes received.
_COMPACT_BYTES: Final = 64 << 10

_PREFIX = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U32_MAX: Final = 0xFFFFFFFF
_CID_MODULUS: Final = 1 << 31

#: ListOffsets timestamps with a special meaning (Kafka's).
EARLIEST_TIMESTAMP: Final = -2
LATEST_TIMESTAMP: Final = -1

Buffer: TypeAlias = bytes | bytearray | memoryview


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


class _Sentinel(Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


#: ``next_frame`` has no complete frame: feed more bytes.
NEED_DATA: Final = _Sentinel.NEED_DATA
#: ``next_frame`` after a clean end of stream (EOF between frames).
CLOSED: Final = _Sentinel.CLOSED


@dataclass(slots=True)
class Frame:
    """One decoded frame. ``payload`` is read-only and stays valid after more data arrives."""

    header: dict[str, Any]
    payload: memoryview

    @property
    def api(self) -> int:
        return self.header["api"]

    @property
    def version(self) -> int:
        return self.header["v"]

    @property
    def cid(self) -> int:
        return self.header["cid"]

    @property
    def err(self) -> int:
        return self.header.get("err", 0)


NextFrame: TypeAlias = Frame | Literal[_Sentinel.NEED_DATA, _Sentinel.CLOSED]


# -- schemas -----------------------------------------------------------------------------


class _FieldError(Exception):
    """A schema violation deep in a header; turned into a ProtocolError at the top."""

    def __init__(self, path: str, text: str) -> None:
        super().__init__(f"field {path}: {text}")


def _tname(value: Any) -> str:
    if value is None:
        return "nil"
    return {dict: "map", list: "list", bytes: "bytes", str: "str", bool: "bool"}.get(
        type(value), type(value).__name__
    )


class Type:
    """A field type: checks a decoded value and, for maps, fills defaults in place."""

    __slots__ = ()
    name: str  # a field or a property in each subclass: how messages and docs spell the type

    def check(self, value: Any, path: str, fill: bool) -> None:
        raise NotImplementedError


@dataclass(slots=True, frozen=True)
class Scalar(Type):
    name: str
    types: tuple[type, ...]

    def check(self, value: Any, path: str, fill: bool) -> None:
        # Exact type: msgpack yields exact ints/bools, and a bool is not an int here.
        if type(value) not in self.types:
            raise _FieldError(path, f"expected {self.name}, got {_tname(value)}")


@dataclass(slots=True, frozen=True)
class AnyType(Type):
    name: str = "any"

    def check(self, value: Any, path: str, fill: bool) -> None:
        return None


@dataclass(slots=True, frozen=True)
class Nullable(Type):
    inner: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.inner.name}|nil"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if value is not None:
            self.inner.check(value, path, fill)


@dataclass(slots=True, frozen=True)
class List(Type):
    item: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"[{self.item.name}]"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not list:
            raise _FieldError(path, f"expected list, got {_tname(value)}")
        check = self.item.check
        for i, item in enumerate(value):
            check(item, f"{path}[{i}]", fill)


@dataclass(slots=True, frozen=True)
class Tuple(Type):
    """A fixed-length msgpack array: compact where there are many of them."""

    items: tuple[Type, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "(" + ", ".join(t.name for t in self.items) + ")"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not list:
            raise _FieldError(path, f"expected list, got {_tname(value)}")
        if len(value) != len(self.items):
            raise _FieldError(path, f"expected {len(self.items)} items, got {len(value)}")
        for i, (t, item) in enumerate(zip(self.items, value, strict=True)):
            t.check(item, f"{path}[{i}]", fill)


@dataclass(slots=True, frozen=True)
class Map(Type):
    """A map with string keys and values of one type (e.g. topic configs)."""

    value: Type

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{{str: {self.value.name}}}"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not dict:
            raise _FieldError(path, f"expected map, got {_tname(value)}")
        for k, v in value.items():
            if type(k) is not str:
                raise _FieldError(path, f"expected str keys, got {_tname(k)}")
            self.value.check(v, f"{path}.{k}", fill)


_REQUIRED: Final = object()


@dataclass(slots=True, frozen=True)
class Field:
    name: str
    type: Type
    default: Any = _REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(slots=True, frozen=True)
class Struct(Type):
    """A map with named fields; unknown keys are kept and ignored."""

    fields: tuple[Field, ...]
    name: str = "map"

    def check(self, value: Any, path: str, fill: bool) -> None:
        if type(value) is not dict:
            raise _FieldError(path or "header", f"expected map, got {_tname(value)}")
        prefix = f"{path}." if path else ""
        for f in self.fields:
            if f.name in value:
                f.type.check(value[f.name], prefix + f.name, fill)
            elif f.default is _REQUIRED:
                raise _FieldError(prefix + f.name, f"required {f.type.name} is missing")
            elif fill:
                d = f.default
                value[f.name] = copy.deepcopy(d) if isinstance(d, list | dict) else d


INT: Final = Scalar("int", (int,))
STR: Final = Scalar("str", (str,))
BYTES: Final = Scalar("bytes", (bytes,))
BOOL: Final = Scalar("bool", (bool,))
ANY: Final = AnyType()


def req(name: str, type_: Type, doc: str = "") -> Field:
    return Field(name, type_, _REQUIRED, doc)


def opt(name: str, type_: Type, default: Any, doc: str = "") -> Field:
    return Field(name, type_, default, doc)


def struct_(*fields: Field | Sequence[Field]) -> Struct:
    flat: list[Field] = []
    for f in fields:
        if isinstance(f, Field):
            flat.append(f)
        else:
            flat.extend(f)
    return Struct(tuple(flat))


@dataclass(slots=True, frozen=True)
class Schema:
    """One API version: its request and response header shapes and where payloads go."""

    request: Struct
    response: Struct
    request_payload: str = ""
    response_payload: str = ""
    doc: str = ""


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
        opt("log_append_time", INT, -1, "ms, if the topic uses LogAppendTime; else -1"),
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

#: Fields every header has; checked by the frame decoder itself.
_ENVELOPE: Final = (("api", "api"), ("v", "version"), ("cid", "correlation id"))


def _raise_field_error(
    code: ErrorCode, exc: _FieldError, header: dict[str, Any], what: str
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
            raise _FieldError("oneway", f"expected bool, got {_tname(header['oneway'])}")
    except _FieldError as exc:
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
            raise _FieldError("err", f"expected int, got {_tname(err)}")
        if err:
            msg = header.setdefault("msg", "") if fill else header.get("msg", "")
            if type(msg) is not str:
                raise _FieldError("msg", f"expected str, got {_tname(msg)}")
        else:
            schema.response.check(header, "", fill)
    except _FieldError as exc:
        _raise_field_error(code, exc, header, f"{api.name} v{header['v']} response")
    return schema


# -- encoding ----------------------------------------------------------------------------


def _nbytes(buf: Buffer) -> int:
    return buf.nbytes if isinstance(buf, memoryview) else len(buf)


def _payload_parts(payload: Buffer | Sequence[Buffer]) -> list[Buffer]:
    if isinstance(payload, bytes | bytearray | memoryview):
        return [payload] if _nbytes(payload) else []
    return [p for p in payload if _nbytes(p)]


def frame_prefix(
    header: Mapping[str, Any], payload_len: int, *, max_frame_bytes: int | None = None
) -> bytes:
    """Everything of a frame before its payload; the caller writes ``payload_len`` bytes after.

    For payloads sent straight from a file (``sendfile``) or from several buffers.
    Raises ``ProtocolError(FRAME_TOO_LARGE)`` if the frame would exceed ``max_frame_bytes``
    (or what a u32 can count).
    """
    hdr = msgpack.packb(header, use_bin_type=True)
    frame_len = 4 + len(hdr) + payload_len
    limit = _U32_MAX if max_frame_bytes is None else min(max_frame_bytes, _U32_MAX)
    if payload_len < 0 or frame_len > limit:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame of {frame_len} bytes (header {len(hdr)}, payload {payload_len}) exceeds {limit}",
        )
    return _PREFIX.pack(frame_len, len(hdr)) + hdr


def encode_frame(
    header: Mapping[str, Any],
    payload: Buffer | Sequence[Buffer] = b"",
    *,
    payload_len: int | None = None,
    max_frame_bytes: int | None = None,
) -> list[Buffer]:
    """A frame as a list of buffers, for ``transport.writelines``.

    The first buffer is the prefix and header; the payload buffers follow untouched (no
    copy). With ``payload_len`` the payload is not included: the caller writes that many
    bytes itself (e.g. from a segment file).
    """
    if payload_len is not None:
        return [frame_prefix(header, payload_len, max_frame_bytes=max_frame_bytes)]
    parts = _payload_parts(payload)
    size = sum(_nbytes(p) for p in parts)
    return [frame_prefix(header, size, max_frame_bytes=max_frame_bytes), *parts]


def request_header(
    api: Api | int, version: int, cid: int, fields: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    header: dict[str, Any] = {"api": int(api), "v": version, "cid": cid}
    if fields:
        header.update(fields)
    return header


def response_header(
    request: Mapping[str, Any],
    fields: Mapping[str, Any] | None = None,
    *,
    err: ErrorCode | int = ErrorCode.NONE,
    msg: str = "",
) -> dict[str, Any]:
    """A response header for ``request``: echoes its api, v and cid."""
    header: dict[str, Any] = {"api": request["api"], "v": request["v"], "cid": request["cid"]}
    if fields:
        header.update(fields)
    if err or "err" not in header:
        header["err"] = int(err)
    if msg:
        header["msg"] = msg
    return header


def error_response(
    header_in: Mapping[str, Any], code: ErrorCode | int, message: str, **fields: Any
) -> dict[str, Any]:
    """The response header answering ``header_in`` with error ``code``.

    Works for headers that failed validation: ``api`` and ``v`` are echoed when they are
    ints (else -1 / 0), ``cid`` must be an int (see ``ProtocolError.correlation_id``).
    """
    api = header_in.get("api")
    v = header_in.get("v")
    header: dict[str, Any] = {
        "api": api if type(api) is int else -1,
        "v": v if type(v) is int else 0,
        "cid": header_in["cid"],
        **fields,
        "err": int(code),
        "msg": message,
    }
    return header


def api_ranges(versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS) -> list[list[int]]:
    """Version ranges as the handshake carries them: ``[[api, min, max], ...]``."""
    return [[int(api), lo, hi] for api, (lo, hi) in sorted(versions.items())]


def negotiate(
    ours: Mapping[Api, tuple[int, int]], theirs: Iterable[Sequence[int]]
) -> dict[Api, int]:
    """Per API, the highest version both sides speak; APIs without overlap are left out."""
    out: dict[Api, int] = {}
    for entry in theirs:
        raw, lo, hi = entry
        try:
            api = Api(raw)
        except ValueError:
            continue  # an API newer than this build
        if api not in ours:
            continue
        our_lo, our_hi = ours[api]
        best = min(hi, our_hi)
        if best >= max(lo, our_lo):
            out[api] = best
    return out


def handshake_request(
    client_id: str = "",
    *,
    peer_id: int | None = None,
    cid: int = 0,
    software: str = "",
    versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> list[Buffer]:
    """The encoded HANDSHAKE request frame, ready for ``writelines`` (for raw-decoder users)."""
    fields: dict[str, Any] = {"client_id": client_id, "apis": api_ranges(versions)}
    if peer_id is not None:
        fields["peer_id"] = peer_id
    if software:
        fields["software"] = software
    return encode_frame(request_header(Api.HANDSHAKE, versions[Api.HANDSHAKE][1], cid, fields))


def handshake_response(
    request: Mapping[str, Any],
    *,
    broker_id: int,
    cluster_id: str = "",
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    versions: Mapping[Api, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> dict[str, Any]:
    """The server's HANDSHAKE response header."""
    return response_header(
        request,
        {
            "apis": api_ranges(versions),
            "broker_id": broker_id,
            "cluster_id": cluster_id,
            "max_frame_bytes": max_frame_bytes,
        },
    )


def payload_slice(
    payload: memoryview,
    pos: int,
    size: int,
    *,
    code: ErrorCode = ErrorCode.INVALID_REQUEST,
) -> memoryview:
    """``payload[pos:pos+size]`` after checking it lies inside the payload (no copy)."""
    if pos < 0 or size < 0 or pos + size > payload.nbytes:
        raise ProtocolError(
            code, f"payload slice [{pos}, {pos + size}) outside a payload of {payload.nbytes} bytes"
        )
    return payload[pos : pos + size]


# -- decoding ----------------------------------------------------------------------------


class FrameDecoder:
    """Splits a byte stream into frames and decodes their headers.

    Role-agnostic: it checks framing, that the header is a msgpack map and that ``api``,
    ``v`` and ``cid`` are ints, nothing about any API's fields (see :class:`Connection`).
    Errors (all ``ProtocolError``):

    * ``FRAME_TOO_LARGE``: ``frame_length`` above ``max_frame_bytes``, or ``header_length``
      above ``max_header_bytes``. Detected from the first 4 (resp. 8) bytes, before any of
      the body is buffered.
    * ``invalid_code`` (``INVALID_REQUEST`` by default): a frame too short to hold the
      header length, a header length past the end of the frame, a header that is not
      msgpack or not a map, missing or ill-typed ``api``/``v``/``cid``, or the stream ending
      inside a frame.

    After an error the decoder stays failed: ``next_frame`` raises the same error again and
    incoming data is dropped. Memory held is bounded by one frame: after ``NEED_DATA`` at
    most ``4 + max_frame_bytes`` bytes are buffered.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        invalid_code: ErrorCode = ErrorCode.INVALID_REQUEST,
    ) -> None:
        if not 4 <= max_frame_bytes <= _U32_MAX or max_header_bytes < 1:
            raise ValueError("max_frame_bytes must be in [4, 2**32) and max_header_bytes >= 1")
        self.max_frame_bytes = max_frame_bytes
        self.max_header_bytes = max_header_bytes
        self.invalid_code = invalid_code
        self._buf = bytearray()
        self._pos = 0
        # A large frame being assembled: its body (everything after frame_length).
        self._big: bytearray | None = None
        self._big_filled = 0
        self._eof = False
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as frames."""
        return len(self._buf) - self._pos + self._big_filled

    @property
    def failed(self) -> bool:
        return self._error is not None

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes from the stream; ``b""`` means the stream ended (EOF)."""
        if self._error is not None:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data() after end of stream")
        if self._big is not None:
            room = len(self._big) - self._big_filled
            if room:
                n = min(room, _nbytes(data))
                with memoryview(data) as mv:
                    self._big[self._big_filled : self._big_filled + n] = mv[:n]
                    self._big_filled += n
                    if n == mv.nbytes:
                        return
                    data = bytes(mv[n:])
        buf = self._buf
        if self._pos:
            if self._pos == len(buf):
                buf.clear()
                self._pos = 0
            elif self._pos >= _COMPACT_BYTES and self._pos * 2 >= len(buf):
                del buf[: self._pos]
                self._pos = 0
        buf += data

    def next_frame(self) -> NextFrame:
        """The next complete frame, ``NEED_DATA``, or ``CLOSED`` after a clean EOF."""
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            self._pos = 0
            self._big = None
            self._big_filled = 0
            raise

    def _invalid(self, message: str, header: dict[str, Any] | None = None) -> ProtocolError:
        return ProtocolError(self.invalid_code, message, header=header)

    def _need_more(self) -> NextFrame:
        if not self._eof:
            return NEED_DATA
        if self.buffered:
            raise self._invalid(
                f"stream ended inside a frame ({self.buffered} bytes of it received)"
            )
        return CLOSED

    def _next(self) -> NextFrame:
        if self._big is not None:
            if self._big_filled < len(self._big):
                return self._need_more()
            body = self._big
            self._big = None
            self._big_filled = 0
            # The frame owns this buffer: hand out a view of it, no copy.
            return self._parse(memoryview(body).toreadonly(), copy_payload=False)

        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return self._need_more()
        (frame_len,) = _U32.unpack_from(buf, pos)
        if frame_len > self.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {frame_len} bytes exceeds the limit of {self.max_frame_bytes}",
            )
        if frame_len < 4:
            raise self._invalid(f"frame length {frame_len} cannot hold the 4-byte header length")
        if avail < 8:
            return self._need_more()
        (header_len,) = _U32.unpack_from(buf, pos + 4)
        self._check_header_len(header_len, frame_len)
        total = 4 + frame_len
        if avail < total:
            if frame_len >= LARGE_FRAME_BYTES:
                # Move what we have into a buffer of the frame's size; the rest goes
                # straight there as it arrives.
                big = bytearray(frame_len)
                have = avail - 4
                with memoryview(buf) as mv:
                    big[:have] = mv[pos + 4 : pos + avail]
                self._big, self._big_filled = big, have
                self._pos = len(buf)
            return self._need_more()
        self._pos = pos + total
        with memoryview(buf) as mv:
            body = mv[pos + 4 : pos + total]
            try:
                return self._parse(body, copy_payload=True)
            finally:
                body.release()

    def _check_header_len(self, header_len: int, frame_len: int) -> None:
        if header_len > frame_len - 4:
            raise self._invalid(
                f"header length {header_len} exceeds the frame's {frame_len - 4} bytes after it"
            )
        if header_len > self.max_header_bytes:
            raise ProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"header of {header_len} bytes exceeds the limit of {self.max_header_bytes}",
            )
        if header_len == 0:
            raise self._invalid("empty header: a frame needs a msgpack map with api, v and cid")

    def _parse(self, body: memoryview, *, copy_payload: bool) -> Frame:
        """Decode ``body`` (a frame minus its length prefix)."""
        (header_len,) = _U32.unpack_from(body, 0)
        self._check_header_len(header_len, body.nbytes)
        raw = body[4 : 4 + header_len]
        try:
            header = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
        except Exception as exc:  # msgpack raises many types for bad input
            raise self._invalid(
                f"header is not valid msgpack: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            raw.release()
        if type(header) is not dict:
            raise self._invalid(f"header must be a msgpack map, got {_tname(header)}")
        for key, what in _ENVELOPE:
            value = header.get(key)
            if type(value) is not int:
                problem = "missing" if key not in header else f"expected int, got {_tname(value)}"
                raise self._invalid(f"header field {key} ({what}): {problem}", header)
        if header["api"] < 0 or header["v"] < 0:
            raise self._invalid("header fields api and v must not be negative", header)
        payload = body[4 + header_len :]
        if copy_payload:
            try:
                view = memoryview(bytes(payload))
            finally:
                payload.release()
        else:
            view = payload
        return Frame(header, view)


# -- connection state machine ------------------------------------------------------------


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(slots=True)
class _Pending:
    cid: int
    api: int
    version: int


@dataclass(slots=True)
class Connection:
    """One end of a connection: framing plus the protocol's rules.

    A ``Role.SERVER`` connection decodes requests: it insists on the handshake first and
    validates every request against its schema (filling defaults), raising
    ``ProtocolError`` with the code to answer with (see :meth:`send_error`). A
    ``Role.CLIENT`` connection assigns correlation ids, negotiates versions from the
    handshake, and checks that every response answers the oldest request still waiting
    (``INVALID_RESPONSE`` otherwise). The server answers in request order; the caller
    orders its responses, this object does not hold them.
    """

    role: Role
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_header_bytes: int | None = None
    versions: Mapping[Api, tuple[int, int]] = field(
        default_factory=lambda: dict(SUPPORTED_VERSIONS)
    )
    #: Set by the handshake: the versions to use (client) / the peer's ranges (both).
    negotiated: dict[Api, int] = field(default_factory=dict)
    peer_versions: list[list[int]] | None = None
    handshake_done: bool = False
    #: From the handshake: the other side's identity and request size limit.
    peer_info: dict[str, Any] = field(default_factory=dict)
    peer_max_frame_bytes: int | None = None
    _decoder: FrameDecoder = field(init=False)
    _pending: deque[_Pending] = field(init=False, default_factory=deque)
    _next_cid: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        server = self.role is Role.SERVER
        if self.max_header_bytes is None:
            self.max_header_bytes = DEFAULT_MAX_HEADER_BYTES if server else CLIENT_MAX_HEADER_BYTES
        self._decoder = FrameDecoder(
            max_frame_bytes=self.max_frame_bytes,
            max_header_bytes=self.max_header_bytes,
            invalid_code=ErrorCode.INVALID_REQUEST if server else ErrorCode.INVALID_RESPONSE,
        )

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        self._decoder.receive_data(data)

    def next_frame(self) -> NextFrame:
        frame = self._decoder.next_frame()
        if isinstance(frame, Frame):
            if self.role is Role.SERVER:
                self._on_request(frame.header)
            else:
                self._on_response(frame.header)
        return frame

    @property
    def in_flight(self) -> int:
        """Requests sent that still wait for their response (client role)."""
        return len(self._pending)

    def _on_request(self, header: dict[str, Any]) -> None:
        if not self.handshake_done and header["api"] != Api.HANDSHAKE:
            raise ProtocolError(
                ErrorCode.INVALID_REQUEST,
                "the first request on a connection must be HANDSHAKE (api 0)",
                header=header,
            )
        validate_request(header, versions=self.versions)
        if header["api"] == Api.HANDSHAKE:
            self.handshake_done = True
            self.peer_versions = header["apis"]
            self.negotiated = negotiate(self.versions, header["apis"])
            self.peer_info = {k: header[k] for k in ("client_id", "peer_id", "software")}

    def _on_response(self, header: dict[str, Any]) -> None:
        code = ErrorCode.INVALID_RESPONSE
        if not self._pending:
            raise ProtocolError(
                code, f"response with cid {header['cid']} but no request in flight", header=header
            )
        head = self._pending[0]
        if header["cid"] != head.cid:
            raise ProtocolError(
                code,
                f"response cid {header['cid']} does not answer the oldest request (cid {head.cid})",
                header=header,
            )
        if header["api"] != head.api or header["v"] != head.version:
            raise ProtocolError(
                code,
                f"response for api {header['api']} v{header['v']} answers a request "
                f"for api {head.api} v{head.version}",
                header=header,
            )
        self._pending.popleft()
        validate_response(header, code=code)
        if head.api == Api.HANDSHAKE and not header["err"]:
            self.handshake_done = True
            self.peer_versions = header["apis"]
            self.negotiated = negotiate(self.versions, header["apis"])
            self.peer_max_frame_bytes = header["max_frame_bytes"]
            self.peer_info = {k: header[k] for k in ("broker_id", "cluster_id")}

    # -- output: client ------------------------------------------------------------------

    def version_for(self, api: Api) -> int:
        """The version to send ``api`` with: the negotiated one (the handshake: our highest)."""
        if api is Api.HANDSHAKE:
            return self.versions[Api.HANDSHAKE][1]
        if not self.handshake_done:
            raise ProtocolError(
                ErrorCode.INVALID_REQUEST, f"{api.name} before the handshake completed"
            )
        try:
            return self.negotiated[api]
        except KeyError:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"the broker speaks no version of {api.name} that this client speaks",
            ) from None

    def send_request(
        self,
        api: Api,
        fields: Mapping[str, Any] | None = None,
        payload: Buffer | Sequence[Buffer] = b"",
        *,
        oneway: bool = False,
        version: int | None = None,
    ) -> tuple[int, list[Buffer]]:
        """Encode a request: ``(cid, buffers to write)``. ``oneway`` requests get no response."""
        if self.role is not Role.CLIENT:
            raise RuntimeError("send_request() on a server connection")
        if version is None:
            version = self.version_for(api)
        cid = self._next_cid
        header = request_header(api, version, cid, fields)
        if api is Api.HANDSHAKE:
            header.setdefault("apis", api_ranges(self.versions))
        if oneway:
            header["oneway"] = True
        # Catch our own mistakes here, with a clear message, rather than at the broker.
        validate_request(header, versions=self.versions, fill=False)
        limit = self.peer_max_frame_bytes if self.peer_max_frame_bytes is not None else None
        data = encode_frame(header, payload, max_frame_bytes=limit)
        self._next_cid = (cid + 1) % _CID_MODULUS
        if not oneway:
            self._pending.append(_Pending(cid, int(api), version))
        return cid, data

    # -- output: server ------------------------------------------------------------------

    def send_response(
        self,
        request: Mapping[str, Any],
        fields: Mapping[str, Any] | None = None,
        payload: Buffer | Sequence[Buffer] = b"",
        *,
        err: ErrorCode | int = ErrorCode.NONE,
        msg: str = "",
    ) -> list[Buffer]:
        """Encode the response to ``request`` (a validated request header)."""
        if self.role is not Role.SERVER:
            raise RuntimeError("send_response() on a client connection")
        return encode_frame(response_header(request, fields, err=err, msg=msg), payload)

    def send_error(self, exc: ProtocolError) -> list[Buffer] | None:
        """The error response for a request that failed, or ``None`` if it cannot be answered.

        A HANDSHAKE refused for its version still carries the server's ranges, so the client
        can tell what to upgrade.
        """
        if self.role is not Role.SERVER or exc.correlation_id is None:
            return None
        extra: dict[str, Any] = {}
        if exc.header is not None and exc.header.get("api") == Api.HANDSHAKE:
            extra["apis"] = api_ranges(self.versions)
        return encode_frame(error_response(exc.header or {}, exc.code, exc.message, **extra))


# -- documentation -------------------------------------------------------------------------


def _render_struct(s: Struct, indent: int) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for f in s.fields:
        t = f.type
        inner: Struct | None = None
        while isinstance(t, Nullable | List):
            t = t.inner if isinstance(t, Nullable) else t.item
        if isinstance(t, Struct):
            inner = t
        tname = f.type.name
        need = "required" if f.required else f"default {f.default!r}"
        doc = f" — {f.doc}" if f.doc else ""
        lines.append(f"{pad}- `{f.name}`: {tname}, {need}{doc}")
        if inner is not None:
            lines.extend(_render_struct(inner, indent + 1))
    return lines


def render_schemas() -> str:
    """Markdown for every API version's schema (the reference part of docs/protocol.md)."""
    out: list[str] = []
    for (api, version), schema in SCHEMAS.items():
        out.append(f"### {api.name} ({int(api)}) v{version}")
        out.append("")
        if schema.doc:
            out.extend([schema.doc, ""])
        out.append("Request:")
        out.append("")
        out.extend(_render_struct(schema.request, 0) or ["- (no fields)"])
        if schema.request_payload:
            out.append(f"- payload: {schema.request_payload}")
        out.extend(["", "Response:", ""])
        out.extend(_render_struct(schema.response, 0))
        if schema.response_payload:
            out.append(f"- payload: {schema.response_payload}")
        out.append("")
    return "\n".join(out)


__all__ = [
    "CLIENT_MAX_HEADER_BYTES",
    "CLOSED",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "EARLIEST_TIMESTAMP",
    "LARGE_FRAME_BYTES",
    "LATEST_TIMESTAMP",
    "NEED_DATA",
    "SCHEMAS",
    "SUPPORTED_VERSIONS",
    "Api",
    "Connection",
    "Frame",
    "FrameDecoder",
    "ProtocolError",
    "Role",
    "Schema",
    "api_ranges",
    "encode_frame",
    "error_response",
    "frame_prefix",
    "handshake_request",
    "handshake_response",
    "negotiate",
    "payload_slice",
    "render_schemas",
    "request_header",
    "response_header",
    "validate_request",
    "validate_response",
]
