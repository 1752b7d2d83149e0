"""Error codes on the wire and the exceptions a client raises for them.

On the wire an error is a value: every response carries ``err`` (an :class:`ErrorCode`)
and ``msg`` (a human-readable message), at the top level and, for multi-partition APIs,
per entry. In the client an error is an exception: :func:`error_for` turns a code, its
message and the response's other fields into the most specific :class:`StrataError`
subclass, so callers can ``except NotLeaderError`` and still find ``.code``,
``.retriable`` and ``.hint`` on every error.

The numbers are part of the wire contract. They are grouped in ranges (general,
partition/data, producer, topic admin, cluster, groups) with room to grow inside each
range; a code, once shipped, is **never renumbered or reused**. A code a client does not
know decodes as :attr:`ErrorCode.UNKNOWN` with the original number kept in the message.

``CORRUPT_BATCH`` and :mod:`strata.client.batch`: the batch parser raises
``strata.client.batch.CorruptBatchError`` (a ``ValueError``) for bytes it cannot trust;
storage and the broker catch that one. When the *broker* reports ``CORRUPT_BATCH`` in a
response, the client raises :class:`CorruptBatchResponseError`, which derives from both
:class:`StrataError` and ``batch.CorruptBatchError``: ``except CorruptBatchError`` catches
corruption whether it was found locally or by the broker, and ``except StrataError``
catches it with its code. :func:`code_for_exception` maps the other way, for the broker.

Client-side failures that never travel on the wire (a dropped connection, a request that
timed out locally, a full producer buffer, a closed client, an undecodable frame) are
``StrataError`` subclasses too, so one ``except StrataError`` covers everything the
client raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from strata.client import batch as _batch


class ErrorCode(IntEnum):
    """Wire error codes. Stable numbers: never renumber, never reuse."""

    NONE = 0

    # General and protocol (1-19).
    UNKNOWN = 1
    INVALID_REQUEST = 2
    UNSUPPORTED_VERSION = 3
    UNKNOWN_API = 4
    FRAME_TOO_LARGE = 5
    TIMED_OUT = 6
    THROTTLED = 7
    SHUTTING_DOWN = 8
    INVALID_RESPONSE = 9  # client side only: a response frame that does not decode

    # Partitions and data (20-39).
    CORRUPT_BATCH = 20
    BATCH_TOO_LARGE = 21
    NOT_LEADER = 22
    LEADER_NOT_AVAILABLE = 23
    UNKNOWN_TOPIC = 24
    UNKNOWN_PARTITION = 25
    OFFSET_OUT_OF_RANGE = 26
    NOT_ENOUGH_REPLICAS = 27
    NOT_ENOUGH_REPLICAS_AFTER_APPEND = 28
    STORAGE_ERROR = 29
    DISK_FULL = 30
    FENCED_LEADER_EPOCH = 31
    UNKNOWN_LEADER_EPOCH = 32
    UNSUPPORTED_COMPRESSION = 33
    INVALID_RECORD = 34  # Kafka's: a record the topic refuses (no key on a compacted topic)

    # Idempotent producers (40-49).
    OUT_OF_ORDER_SEQUENCE = 40
    DUPLICATE_SEQUENCE = 41
    INVALID_PRODUCER_EPOCH = 42
    UNKNOWN_PRODUCER_ID = 43

    # Topic administration (50-59).
    TOPIC_ALREADY_EXISTS = 50
    INVALID_TOPIC = 51
    INVALID_PARTITIONS = 52
    INVALID_REPLICATION_FACTOR = 53
    INVALID_CONFIG = 54

    # Cluster (60-69).
    NOT_CONTROLLER = 60
    BROKER_NOT_AVAILABLE = 61

    # Consumer groups (70-89).
    COORDINATOR_NOT_AVAILABLE = 70
    NOT_COORDINATOR = 71
    COORDINATOR_LOAD_IN_PROGRESS = 72
    UNKNOWN_MEMBER_ID = 73
    FENCED_MEMBER_EPOCH = 74
    STALE_MEMBER_EPOCH = 75
    GROUP_ID_NOT_FOUND = 76
    NON_EMPTY_GROUP = 77
    INVALID_GROUP_ID = 78
    UNSUPPORTED_ASSIGNOR = 79
    GROUP_MAX_SIZE_REACHED = 80
    # Kafka's classic group protocol (JoinGroup/SyncGroup), served on the Kafka listener.
    ILLEGAL_GENERATION = 81
    INCONSISTENT_GROUP_PROTOCOL = 82
    INVALID_SESSION_TIMEOUT = 83
    REBALANCE_IN_PROGRESS = 84
    MEMBER_ID_REQUIRED = 85
    FENCED_INSTANCE_ID = 86
    GROUP_SUBSCRIBED_TO_TOPIC = 87

    @property
    def retriable(self) -> bool:
        """Whether sending the same request again (after the hint) may succeed."""
        return _INFO[self].retriable

    @property
    def hint(self) -> str:
        """What a caller should do about it, in a few words."""
        return _INFO[self].hint

    @classmethod
    def parse(cls, value: int) -> ErrorCode:
        """The code for ``value``; numbers this client does not know map to ``UNKNOWN``."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@dataclass(slots=True, frozen=True)
class _Info:
    retriable: bool
    hint: str


_E = ErrorCode
_INFO: dict[ErrorCode, _Info] = {
    _E.NONE: _Info(False, "no error"),
    _E.UNKNOWN: _Info(False, "unexpected broker error; check the broker's log"),
    _E.INVALID_REQUEST: _Info(False, "the request is malformed; this is a client bug"),
    _E.UNSUPPORTED_VERSION: _Info(
        False, "upgrade the client or the broker so their versions overlap"
    ),
    _E.UNKNOWN_API: _Info(False, "the broker does not know this API; upgrade the broker"),
    _E.FRAME_TOO_LARGE: _Info(False, "send smaller requests or raise the frame size limit"),
    _E.TIMED_OUT: _Info(True, "retry; if it persists check broker load and the timeout"),
    _E.THROTTLED: _Info(True, "back off and retry later"),
    _E.SHUTTING_DOWN: _Info(True, "the broker is stopping; retry against another broker"),
    _E.INVALID_RESPONSE: _Info(False, "the broker's response did not decode; check versions"),
    _E.CORRUPT_BATCH: _Info(True, "the batch failed its CRC on arrival; resend it"),
    _E.BATCH_TOO_LARGE: _Info(False, "lower batch_size or raise the broker's max batch size"),
    _E.NOT_LEADER: _Info(True, "refresh metadata and send to the new leader"),
    _E.LEADER_NOT_AVAILABLE: _Info(True, "an election is in progress; refresh metadata and retry"),
    _E.UNKNOWN_TOPIC: _Info(
        True, "create the topic or check its name (a new topic may take a moment)"
    ),
    _E.UNKNOWN_PARTITION: _Info(True, "check the partition number against the topic's metadata"),
    _E.OFFSET_OUT_OF_RANGE: _Info(
        False, "reset the position (auto_offset_reset) or seek inside the valid range"
    ),
    _E.NOT_ENOUGH_REPLICAS: _Info(True, "too few replicas in sync; retry once replicas catch up"),
    _E.NOT_ENOUGH_REPLICAS_AFTER_APPEND: _Info(
        True, "written but not replicated; retry (idempotence avoids duplicates)"
    ),
    _E.STORAGE_ERROR: _Info(True, "the broker's disk failed; retry against another replica"),
    _E.DISK_FULL: _Info(True, "the broker's disk is full; free space or lower retention"),
    _E.FENCED_LEADER_EPOCH: _Info(True, "the leader epoch is stale; refresh metadata and retry"),
    _E.UNKNOWN_LEADER_EPOCH: _Info(True, "the broker is behind on metadata; retry"),
    _E.UNSUPPORTED_COMPRESSION: _Info(False, "use a compression codec the broker supports"),
    _E.INVALID_RECORD: _Info(
        False, "the topic refused a record (a compacted topic needs a key on every record)"
    ),
    _E.OUT_OF_ORDER_SEQUENCE: _Info(
        False, "records were lost between retries; restart the producer"
    ),
    _E.DUPLICATE_SEQUENCE: _Info(False, "the batch was already written; treat it as success"),
    _E.INVALID_PRODUCER_EPOCH: _Info(
        False, "another producer with this id fenced this one; close it"
    ),
    _E.UNKNOWN_PRODUCER_ID: _Info(
        False, "the producer's state expired; re-initialize the producer id"
    ),
    _E.TOPIC_ALREADY_EXISTS: _Info(False, "pick another name or delete the existing topic"),
    _E.INVALID_TOPIC: _Info(
        False, "topic names are 1-249 of [A-Za-z0-9._-] and must not start with '__'"
    ),
    _E.INVALID_PARTITIONS: _Info(
        False, "ask for at least one partition, within the broker's limit"
    ),
    _E.INVALID_REPLICATION_FACTOR: _Info(
        False, "use a replication factor between 1 and the number of brokers"
    ),
    _E.INVALID_CONFIG: _Info(False, "fix the config key or value named in the message"),
    _E.NOT_CONTROLLER: _Info(True, "refresh metadata and send to the controller"),
    _E.BROKER_NOT_AVAILABLE: _Info(
        True, "the broker is unreachable; retry or use another bootstrap address"
    ),
    _E.COORDINATOR_NOT_AVAILABLE: _Info(True, "the group coordinator is not ready; retry shortly"),
    _E.NOT_COORDINATOR: _Info(True, "find the coordinator again and resend"),
    _E.COORDINATOR_LOAD_IN_PROGRESS: _Info(
        True, "the coordinator is loading offsets; retry shortly"
    ),
    _E.UNKNOWN_MEMBER_ID: _Info(False, "rejoin the group with member epoch 0"),
    _E.FENCED_MEMBER_EPOCH: _Info(False, "rejoin the group with member epoch 0"),
    _E.STALE_MEMBER_EPOCH: _Info(True, "heartbeat to learn the current epoch, then commit again"),
    _E.GROUP_ID_NOT_FOUND: _Info(False, "check the group name"),
    _E.NON_EMPTY_GROUP: _Info(False, "stop the group's consumers first"),
    _E.INVALID_GROUP_ID: _Info(False, "group ids are non-empty strings"),
    _E.UNSUPPORTED_ASSIGNOR: _Info(
        False, "use an assignor the broker supports ('uniform' or 'range')"
    ),
    _E.GROUP_MAX_SIZE_REACHED: _Info(False, "the group has too many members; add fewer consumers"),
    _E.ILLEGAL_GENERATION: _Info(False, "the group rebalanced; rejoin it"),
    _E.INCONSISTENT_GROUP_PROTOCOL: _Info(
        False, "the group is used by consumers of another protocol or assignor; use another group id"
    ),
    _E.INVALID_SESSION_TIMEOUT: _Info(False, "use a session timeout within the broker's bounds"),
    _E.REBALANCE_IN_PROGRESS: _Info(True, "the group is rebalancing; rejoin"),
    _E.MEMBER_ID_REQUIRED: _Info(True, "join again with the member id the broker gave"),
    _E.FENCED_INSTANCE_ID: _Info(False, "another consumer took this group.instance.id"),
    _E.GROUP_SUBSCRIBED_TO_TOPIC: _Info(
        False, "the group's members consume this topic; stop them before deleting its offsets"
    ),
}
del _E
assert set(_INFO) == set(ErrorCode), "every ErrorCode needs retriable + hint"


class StrataError(Exception):
    """Base of every error the client raises.

    ``code`` is the wire code (client-side errors use the closest one), ``message`` the
    specific message, ``details`` the response fields that came with it (for example the
    new leader), ``retriable`` whether trying again may help, ``hint`` what to do.
    """

    #: The code this class stands for; :func:`error_for` looks classes up by it.
    default_code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN
    _registry: ClassVar[dict[ErrorCode, type[StrataError]]] = {}

    def __init_subclass__(cls, code: ErrorCode | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.default_code = code
            if code in StrataError._registry:
                raise TypeError(
                    f"{code.name} already maps to {StrataError._registry[code].__name__}"
                )
            StrataError._registry[code] = cls

    def __init__(
        self,
        message: str = "",
        *,
        code: ErrorCode | int | None = None,
        retriable: bool | None = None,
        **details: Any,
    ) -> None:
        self.code = ErrorCode.parse(code) if code is not None else self.default_code
        self.message = message
        self.details = details
        self._retriable = retriable
        super().__init__(message)

    @property
    def retriable(self) -> bool:
        return self.code.retriable if self._retriable is None else self._retriable

    @property
    def hint(self) -> str:
        return self.code.hint

    def __str__(self) -> str:
        text = self.message or self.code.name.lower().replace("_", " ")
        return f"{self.code.name}: {text} ({self.hint})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r})"


# -- errors the broker reports ---------------------------------------------------------


class InvalidRequestError(StrataError, code=ErrorCode.INVALID_REQUEST):
    """The broker could not parse or accept the request's fields."""


class UnsupportedVersionError(StrataError, code=ErrorCode.UNSUPPORTED_VERSION):
    """No version of an API that both sides speak."""


class UnknownApiError(StrataError, code=ErrorCode.UNKNOWN_API):
    """The broker does not implement the API."""


class TimedOutError(StrataError, code=ErrorCode.TIMED_OUT):
    """The broker gave up waiting (replication, a long poll's deadline, the controller)."""


class NotLeaderError(StrataError, code=ErrorCode.NOT_LEADER):
    """The broker is not the partition's leader.

    ``leader_id`` / ``leader_addr`` ("host:port") name the leader it knows of, or are
    ``-1`` / ``""`` when it knows none; a client can go there without a metadata round trip.
    """

    def __init__(
        self, message: str = "", *, leader: int = -1, leader_addr: str = "", **details: Any
    ):
        super().__init__(message, leader=leader, leader_addr=leader_addr, **details)
        self.leader_id = leader
        self.leader_addr = leader_addr


class LeaderNotAvailableError(StrataError, code=ErrorCode.LEADER_NOT_AVAILABLE):
    """The partition has no leader right now (an election is running)."""


class UnknownTopicError(StrataError, code=ErrorCode.UNKNOWN_TOPIC):
    """No topic by that name."""


class UnknownPartitionError(StrataError, code=ErrorCode.UNKNOWN_PARTITION):
    """The topic exists but not that partition."""


class OffsetOutOfRangeError(StrataError, code=ErrorCode.OFFSET_OUT_OF_RANGE):
    """The requested offset is outside ``[log_start_offset, high_watermark]``."""

    def __init__(
        self,
        message: str = "",
        *,
        log_start_offset: int = -1,
        high_watermark: int = -1,
        **details: Any,
    ):
        super().__init__(
            message, log_start_offset=log_start_offset, high_watermark=high_watermark, **details
        )
        self.log_start_offset = log_start_offset
        self.high_watermark = high_watermark


class NotEnoughReplicasError(StrataError, code=ErrorCode.NOT_ENOUGH_REPLICAS):
    """Too few replicas in sync to accept an ``acks=all`` write."""


class NotEnoughReplicasAfterAppendError(
    NotEnoughReplicasError, code=ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
):
    """Appended by the leader but not replicated in time; a retry may duplicate without idempotence."""


class CorruptBatchResponseError(
    StrataError, _batch.CorruptBatchError, code=ErrorCode.CORRUPT_BATCH
):
    """The broker found a batch's CRC or lengths wrong.

    Also a ``strata.client.batch.CorruptBatchError``, so code that handles local
    corruption handles this too; ``reason``/``offset``/``position`` are filled as there.
    """

    def __init__(self, message: str = "", **details: Any):
        StrataError.__init__(self, message, **details)
        self.reason = message
        offset = details.get("base_offset")
        self.offset = offset if isinstance(offset, int) and offset >= 0 else None
        self.position = None


class BatchTooLargeError(StrataError, code=ErrorCode.BATCH_TOO_LARGE):
    """The batch exceeds the broker's limit."""


class InvalidRecordError(StrataError, code=ErrorCode.INVALID_RECORD):
    """The topic refused a record of the batch: on a compacted topic, a record without a key
    (Kafka's ``InvalidRecordException``). Nothing of the batch was written."""


class StorageError(StrataError, code=ErrorCode.STORAGE_ERROR):
    """The broker's log could not be written or read."""


class OutOfOrderSequenceError(StrataError, code=ErrorCode.OUT_OF_ORDER_SEQUENCE):
    """An idempotent producer's sequence skipped ahead: records in between were lost."""


class DuplicateSequenceError(StrataError, code=ErrorCode.DUPLICATE_SEQUENCE):
    """The batch had already been written; the producer treats it as delivered."""


class InvalidProducerEpochError(StrataError, code=ErrorCode.INVALID_PRODUCER_EPOCH):
    """A newer producer with the same id fenced this one."""


class UnknownProducerIdError(StrataError, code=ErrorCode.UNKNOWN_PRODUCER_ID):
    """The broker no longer has this producer's state."""


class TopicAlreadyExistsError(StrataError, code=ErrorCode.TOPIC_ALREADY_EXISTS):
    """A topic by that name exists."""


class InvalidTopicError(StrataError, code=ErrorCode.INVALID_TOPIC):
    """The topic name is not allowed."""


class InvalidConfigError(StrataError, code=ErrorCode.INVALID_CONFIG):
    """A topic config key or value was rejected."""


class NotControllerError(StrataError, code=ErrorCode.NOT_CONTROLLER):
    """The request must go to the controller, which this broker is not."""


class CoordinatorNotAvailableError(StrataError, code=ErrorCode.COORDINATOR_NOT_AVAILABLE):
    """The group's coordinator is not ready."""


class NotCoordinatorError(StrataError, code=ErrorCode.NOT_COORDINATOR):
    """This broker is not the group's coordinator."""


class CoordinatorLoadInProgressError(StrataError, code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS):
    """The coordinator is still rebuilding the group's state."""


class UnknownMemberIdError(StrataError, code=ErrorCode.UNKNOWN_MEMBER_ID):
    """The coordinator does not know this member (expired or never joined)."""


class FencedMemberEpochError(StrataError, code=ErrorCode.FENCED_MEMBER_EPOCH):
    """The member's epoch is behind the coordinator's: it must rejoin."""


class GroupIdNotFoundError(StrataError, code=ErrorCode.GROUP_ID_NOT_FOUND):
    """No group by that id."""


class StaleMemberEpochError(StrataError, code=ErrorCode.STALE_MEMBER_EPOCH):
    """A commit carried an old member epoch, or named a partition the member does not own."""


class NonEmptyGroupError(StrataError, code=ErrorCode.NON_EMPTY_GROUP):
    """The group has live members: offsets cannot be reset and it cannot be deleted now."""


class InvalidGroupIdError(StrataError, code=ErrorCode.INVALID_GROUP_ID):
    """Group ids are 1-255 characters."""


class UnsupportedAssignorError(StrataError, code=ErrorCode.UNSUPPORTED_ASSIGNOR):
    """The assignor is unknown, or not the one the group already uses."""


class GroupMaxSizeReachedError(StrataError, code=ErrorCode.GROUP_MAX_SIZE_REACHED):
    """The group (or its coordinator) is full."""


class InconsistentGroupProtocolError(StrataError, code=ErrorCode.INCONSISTENT_GROUP_PROTOCOL):
    """The group id is in use by consumers of another group protocol (Kafka's classic
    rebalance protocol and Strata's native one cannot share a group)."""


# -- errors raised on the client side ---------------------------------------------------


class ProtocolError(StrataError):
    """Bytes that do not make a valid frame or message.

    Raised by the sans-I/O codec. ``header`` is the decoded header when the frame got that
    far (so the peer can be answered under its correlation id), else ``None``.
    """

    def __init__(
        self, code: ErrorCode | int, message: str, *, header: dict[str, Any] | None = None
    ):
        super().__init__(message, code=code, retriable=False)
        self.header = header

    @property
    def correlation_id(self) -> int | None:
        """The offending frame's ``cid`` if it could be read, else ``None``."""
        cid = self.header.get("cid") if self.header is not None else None
        return cid if type(cid) is int else None


class BrokerConnectionError(StrataError):
    """The connection to a broker could not be made, or was lost with requests in flight."""

    default_code = ErrorCode.BROKER_NOT_AVAILABLE


class NoBrokersAvailableError(BrokerConnectionError):
    """None of the bootstrap addresses answered.

    ``causes`` holds each address's own error, so a caller can tell "nothing listens"
    from "something else listens there" (:class:`NotStrataBrokerError`).
    """

    def __init__(self, message: str = "", *, causes: list[StrataError] | None = None, **details: Any):
        super().__init__(message, **details)
        self.causes: list[StrataError] = list(causes or ())


class NotStrataBrokerError(BrokerConnectionError):
    """Something answered at the address, but not Strata's protocol.

    An HTTP server, a Kafka listener or another service on the port: retrying there
    cannot help, so this is not retriable. The message quotes what came back.
    """

    def __init__(self, message: str = "", **details: Any):
        super().__init__(message, retriable=False, **details)

    @property
    def hint(self) -> str:
        return "use the address of a Strata broker's client port"


class UnresolvableHostError(BrokerConnectionError):
    """A broker's host name does not resolve from this client (bootstrap or advertised).

    Not retriable: a name that does not resolve now will not resolve on the next attempt
    a few milliseconds later, and waiting out a delivery timeout only hides the cause.
    """

    def __init__(self, message: str = "", **details: Any):
        super().__init__(message, retriable=False, **details)

    @property
    def hint(self) -> str:
        return "check the host name; brokers must advertise addresses their clients can resolve"


class RequestTimedOutError(TimedOutError):
    """No response within the client's request timeout (the broker may still act on it)."""


class ClosedError(StrataError):
    """The connection or client was closed by its owner."""

    def __init__(self, message: str = "closed", **details: Any):
        super().__init__(message, retriable=False, **details)


class BufferFullError(StrataError):
    """The producer's buffer is full: records arrive faster than the brokers take them."""

    default_code = ErrorCode.THROTTLED


class NoOffsetForPartitionError(StrataError):
    """A consumer has no position for a partition and ``auto_offset_reset`` is ``"none"``."""

    default_code = ErrorCode.OFFSET_OUT_OF_RANGE

    def __init__(self, message: str = "", **details: Any):
        super().__init__(message, retriable=False, **details)


class FeatureNotAvailableError(StrataError, NotImplementedError):
    """The client asked for something this version of Strata does not offer yet."""

    default_code = ErrorCode.UNKNOWN

    def __init__(self, message: str = "", **details: Any):
        super().__init__(message, retriable=False, **details)

    @property
    def hint(self) -> str:
        return "not available in this version; the message says what to use instead"

    def __str__(self) -> str:
        return self.message


def error_for(code: ErrorCode | int, message: str = "", **details: Any) -> StrataError:
    """The exception for a wire error: the most specific class registered for ``code``.

    ``details`` are the response's other fields (e.g. ``leader``, ``leader_addr``,
    ``log_start_offset``, ``high_watermark``); classes keep the ones they know as
    attributes and all of them in ``.details``.
    """
    parsed = ErrorCode.parse(code)
    if parsed is ErrorCode.UNKNOWN and code != ErrorCode.UNKNOWN:
        message = f"unknown error code {int(code)}: {message}"
    for reserved in ("code", "retriable", "message"):  # would clash with the constructor's
        details.pop(reserved, None)
    cls = StrataError._registry.get(parsed)
    if cls is None:
        return StrataError(message, code=parsed, **details)
    return cls(message, **details)


def code_for_exception(exc: BaseException) -> tuple[ErrorCode, str]:
    """The wire code and message the broker answers with for an exception it caught."""
    if isinstance(exc, StrataError):
        return exc.code, exc.message
    if isinstance(exc, _batch.CorruptBatchError):
        return ErrorCode.CORRUPT_BATCH, str(exc)
    if isinstance(exc, TimeoutError):
        return ErrorCode.TIMED_OUT, str(exc) or "timed out"
    return ErrorCode.UNKNOWN, f"{type(exc).__name__}: {exc}"


__all__ = [
    "BatchTooLargeError",
    "BrokerConnectionError",
    "BufferFullError",
    "ClosedError",
    "CoordinatorLoadInProgressError",
    "CoordinatorNotAvailableError",
    "CorruptBatchResponseError",
    "DuplicateSequenceError",
    "ErrorCode",
    "FeatureNotAvailableError",
    "FencedMemberEpochError",
    "GroupIdNotFoundError",
    "GroupMaxSizeReachedError",
    "InconsistentGroupProtocolError",
    "InvalidConfigError",
    "InvalidGroupIdError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidRequestError",
    "InvalidTopicError",
    "LeaderNotAvailableError",
    "NoBrokersAvailableError",
    "NoOffsetForPartitionError",
    "NonEmptyGroupError",
    "NotStrataBrokerError",
    "NotControllerError",
    "NotCoordinatorError",
    "NotEnoughReplicasAfterAppendError",
    "NotEnoughReplicasError",
    "NotLeaderError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "ProtocolError",
    "RequestTimedOutError",
    "StaleMemberEpochError",
    "StorageError",
    "StrataError",
    "TimedOutError",
    "TopicAlreadyExistsError",
    "UnknownApiError",
    "UnknownMemberIdError",
    "UnknownPartitionError",
    "UnknownProducerIdError",
    "UnknownTopicError",
    "UnresolvableHostError",
    "UnsupportedAssignorError",
    "UnsupportedVersionError",
    "code_for_exception",
    "error_for",
]
