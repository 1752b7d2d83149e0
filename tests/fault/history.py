"""The history of a fault-injection run: what clients did, saw, and what the nemesis broke.

A history is the only thing the checker looks at, so everything a client
learns about the log must be written here *as it happens*, with a monotonic
timestamp, and nothing is ever edited afterwards: an operation that ends is a
second event that refers to the first one (``invoke`` then ``ok``/``fail``/
``info``), exactly the way a client experiences it. That keeps the recording
cheap and thread-safe (one lock, one list append) and makes a history a plain
stream that can be written out as JSON lines and checked again later, offline.

Vocabulary (Jepsen's, because it is precise about uncertainty):

* ``ok``: the broker acknowledged the write at an offset. It must survive.
* ``fail``: the write *definitely* did not happen (the broker said so before
  appending, e.g. ``NOT_LEADER``). It must never be read.
* ``info``: we do not know (timeout, connection lost). It may or may not appear.

A topic declared with ``compacted_topic`` is a table, not a log: its sends carry a key,
its final read (``TableRead``) keeps only what compaction left, and what must hold is
that each key's latest acknowledged value is what that read returns (the checker's
``stale-value`` rule) rather than that every acknowledged record is still there.

Events are recorded by the workload; the history does no I/O of its own until
``write_jsonl`` is called.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

TopicPartition = tuple[str, int]
"""(topic, partition): the key every partition-scoped event carries."""

DEFAULT_TOPIC = "fault"
"""The topic a workload uses when it does not care to name one."""


@dataclass(slots=True, frozen=True)
class SendInvoke:
    """A producer started sending ``value`` to a partition; ``op`` ties the completion to it."""

    TYPE: ClassVar[str] = "send-invoke"
    op: int
    time: float
    producer: str
    topic: str
    partition: int
    value: str
    #: The record's key, for sends to a compacted topic (None elsewhere).
    key: str | None = None


@dataclass(slots=True, frozen=True)
class SendOk:
    """The send ``op`` was acknowledged at ``offset``: the record must stay there forever."""

    TYPE: ClassVar[str] = "send-ok"
    op: int
    time: float
    offset: int


@dataclass(slots=True, frozen=True)
class SendFail:
    """The send ``op`` definitely did not take effect (the broker refused it before appending)."""

    TYPE: ClassVar[str] = "send-fail"
    op: int
    time: float
    error: str


@dataclass(slots=True, frozen=True)
class SendInfo:
    """The send ``op`` ended without an answer: it may or may not be in the log."""

    TYPE: ClassVar[str] = "send-info"
    op: int
    time: float
    error: str


@dataclass(slots=True, frozen=True)
class Seek:
    """A consumer positioned itself at ``offset``; its next poll must return the next data record."""

    TYPE: ClassVar[str] = "seek"
    time: float
    consumer: str
    topic: str
    partition: int
    offset: int


@dataclass(slots=True, frozen=True)
class Poll:
    """A consumer received ``value`` at ``offset``.

    ``fixed_assignment`` says the consumer owned the partition for its whole
    life (``assign``, not a group subscription): only then must its offsets
    climb without gaps, because a group member may legitimately be handed a
    partition at the committed offset after someone else read further.
    """

    TYPE: ClassVar[str] = "poll"
    time: float
    consumer: str
    topic: str
    partition: int
    offset: int
    value: str
    fixed_assignment: bool


@dataclass(slots=True, frozen=True)
class Commit:
    """A group's committed offset as the client learnt it.

    ``source`` is ``"commit"`` for an acknowledged commit and ``"fetch"`` for a
    committed offset read back from the broker: both are observations of the
    same register, so both must never move backwards without a reset.
    """

    TYPE: ClassVar[str] = "commit"
    time: float
    group: str
    topic: str
    partition: int
    offset: int
    source: str = "commit"


@dataclass(slots=True, frozen=True)
class Reset:
    """An administrator reset a group's offset: the one legitimate way to move it backwards."""

    TYPE: ClassVar[str] = "reset"
    time: float
    group: str
    topic: str
    partition: int
    offset: int


@dataclass(slots=True, frozen=True)
class FinalRead:
    """A direct read of a whole partition from offset 0 after the cluster settled.

    ``records`` holds ``(offset, value)`` for every *data* record; control
    batches are absent, which is why the checker uses these offsets (and not
    arithmetic) to decide whether a consumer skipped anything.
    """

    TYPE: ClassVar[str] = "final-read"
    time: float
    topic: str
    partition: int
    records: tuple[tuple[int, str], ...]


@dataclass(slots=True, frozen=True)
class CompactedTopic:
    """``topic`` has ``cleanup.policy=compact``: its sends and reads are checked per key."""

    TYPE: ClassVar[str] = "compacted-topic"
    time: float
    topic: str


@dataclass(slots=True, frozen=True)
class TableRead:
    """A direct read of a whole compacted partition from offset 0 after the cluster settled.

    ``records`` holds ``(offset, key, value)`` for every data record the log still holds:
    superseded values may be gone (compacted) or still there (not cleaned yet).
    """

    TYPE: ClassVar[str] = "table-read"
    time: float
    topic: str
    partition: int
    records: tuple[tuple[int, str, str], ...]


@dataclass(slots=True, frozen=True)
class ReplicaDump:
    """One broker's copy of one partition below the high watermark, as a digest.

    Only the digest is kept: comparing replicas needs equality, not content,
    and a digest keeps the history small enough to write into every report.
    """

    TYPE: ClassVar[str] = "replica-dump"
    time: float
    broker: int
    topic: str
    partition: int
    high_watermark: int
    digest: str
    size: int


@dataclass(slots=True, frozen=True)
class Fault:
    """A nemesis event: ``phase`` is ``start``/``end`` around a fault, or ``note`` for a remark.

    Only ``start`` events count as injected faults in the report.
    """

    TYPE: ClassVar[str] = "fault"
    time: float
    name: str
    phase: str
    targets: tuple[int, ...] = ()
    detail: str = ""


Event = (
    SendInvoke | SendOk | SendFail | SendInfo | Seek | Poll | Commit | Reset | FinalRead
    | CompactedTopic | TableRead | ReplicaDump | Fault
)
EVENT_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls
    for cls in (SendInvoke, SendOk, SendFail, SendInfo, Seek, Poll, Commit, Reset, FinalRead,
                CompactedTopic, TableRead, ReplicaDump, Fault)
}


def digest_bytes(data: bytes) -> str:
    """The digest used for replica dumps; one place so that every dumper agrees."""
    return hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class History:
    """An append-only, thread-safe log of events with monotonic timestamps.

    Timestamps are seconds since the history was created (``time.monotonic``),
    so they order events across threads and survive wall-clock jumps, and a
    report reads "fault at 12.3 s" rather than an epoch number.
    """

    _events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _start: float = field(default_factory=time.monotonic)
    _next_op: int = 0

    def now(self) -> float:
        """Seconds since the history started; the clock every event uses."""
        return time.monotonic() - self._start

    def _record(self, cls: type[Any], **kwargs: Any) -> None:
        # The timestamp is taken under the lock so that list order and time order agree.
        with self._lock:
            self._events.append(cls(time=self.now(), **kwargs))

    # -- sends -------------------------------------------------------------

    def send_invoke(self, producer: str, partition: int, value: str,
                    topic: str = DEFAULT_TOPIC, key: str | None = None) -> int:
        """Record the start of a send and return the op id to complete it with."""
        with self._lock:
            op = self._next_op
            self._next_op += 1
            self._events.append(SendInvoke(op=op, time=self.now(), producer=producer, topic=topic,
                                           partition=partition, value=value, key=key))
        return op

    def send_ok(self, op: int, offset: int) -> None:
        """The send was acknowledged at ``offset``."""
        self._record(SendOk, op=op, offset=offset)

    def send_fail(self, op: int, error: str) -> None:
        """The send definitely failed; only use this when the broker said it did not append."""
        self._record(SendFail, op=op, error=error)

    def send_info(self, op: int, error: str) -> None:
        """The send's outcome is unknown (timeout, lost connection)."""
        self._record(SendInfo, op=op, error=error)

    # -- reads -------------------------------------------------------------

    def seek(self, consumer: str, partition: int, offset: int,
             topic: str = DEFAULT_TOPIC) -> None:
        """A fixed-assignment consumer set its position; lets the checker catch a skip at the start."""
        self._record(Seek, consumer=consumer, topic=topic, partition=partition, offset=offset)

    def poll(self, consumer: str, partition: int, offset: int, value: str,
             fixed_assignment: bool, topic: str = DEFAULT_TOPIC) -> None:
        """A consumer received one record."""
        self._record(Poll, consumer=consumer, topic=topic, partition=partition, offset=offset,
                     value=value, fixed_assignment=fixed_assignment)

    def commit(self, group: str, partition: int, offset: int, topic: str = DEFAULT_TOPIC,
               source: str = "commit") -> None:
        """A committed offset was acknowledged (``source="commit"``) or read back (``"fetch"``)."""
        self._record(Commit, group=group, topic=topic, partition=partition, offset=offset,
                     source=source)

    def reset(self, group: str, partition: int, offset: int, topic: str = DEFAULT_TOPIC) -> None:
        """A group's offset was reset on purpose."""
        self._record(Reset, group=group, topic=topic, partition=partition, offset=offset)

    def final_read(self, partition: int, records: Iterable[tuple[int, str]],
                   topic: str = DEFAULT_TOPIC) -> None:
        """The settled contents of a partition, read directly from offset 0."""
        recs = tuple((int(o), str(v)) for o, v in records)
        self._record(FinalRead, topic=topic, partition=partition, records=recs)

    def compacted_topic(self, topic: str) -> None:
        """Declare ``topic`` compacted (before anything is sent to it)."""
        self._record(CompactedTopic, topic=topic)

    def table_read(self, partition: int, records: Iterable[tuple[int, str, str]], topic: str) -> None:
        """The settled contents of a compacted partition, read directly from offset 0."""
        recs = tuple((int(o), str(k), str(v)) for o, k, v in records)
        self._record(TableRead, topic=topic, partition=partition, records=recs)

    def replica_dump(self, broker: int, partition: int, high_watermark: int,
                     data: bytes | None = None, digest: str | None = None, size: int = -1,
                     topic: str = DEFAULT_TOPIC) -> None:
        """One replica's bytes below the high watermark (pass the bytes, or a digest of them)."""
        if (data is None) == (digest is None):
            raise ValueError("replica_dump takes exactly one of data= or digest=")
        if data is not None:
            digest, size = digest_bytes(data), len(data)
        assert digest is not None
        self._record(ReplicaDump, broker=broker, topic=topic, partition=partition,
                     high_watermark=high_watermark, digest=digest, size=size)

    # -- faults ------------------------------------------------------------

    def fault(self, name: str, phase: str, targets: Iterable[int] = (), detail: str = "") -> None:
        """A nemesis event, so that anomalies can be read against what was broken when."""
        self._record(Fault, name=name, phase=phase, targets=tuple(targets), detail=detail)

    # -- access and serialisation -------------------------------------------

    def events(self) -> list[Event]:
        """A snapshot copy; recording may continue while the caller iterates."""
        with self._lock:
            return list(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def to_jsonl(self) -> str:
        """One JSON object per line, ``type`` first: easy to grep, stream and diff."""
        return "".join(json.dumps(event_to_dict(e), sort_keys=False) + "\n" for e in self.events())

    def write_jsonl(self, path: Path) -> None:
        """Write the history next to a report, so that a failing run can be re-checked offline."""
        path.write_text(self.to_jsonl())

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> History:
        """Build a history from events (tests plant anomalies this way)."""
        h = cls()
        for e in events:
            h._events.append(e)
            if isinstance(e, SendInvoke):
                h._next_op = max(h._next_op, e.op + 1)
        return h

    @classmethod
    def from_jsonl(cls, text: str) -> History:
        """Parse what ``to_jsonl`` wrote."""
        return cls.from_events(event_from_dict(json.loads(line))
                               for line in text.splitlines() if line.strip())

    @classmethod
    def read_jsonl(cls, path: Path) -> History:
        """Load a history written by ``write_jsonl``."""
        return cls.from_jsonl(path.read_text())


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict: tuples become lists, and ``type`` names the event class."""
    return {"type": event.TYPE, **asdict(event)}


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of ``event_to_dict``; tuples are restored so that events compare equal."""
    cls = EVENT_TYPES[d["type"]]
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name == "records" and cls is TableRead:
            v = tuple((int(o), str(k), str(val)) for o, k, val in v)
        elif f.name == "records":
            v = tuple((int(o), str(val)) for o, val in v)
        elif f.name == "targets":
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)
