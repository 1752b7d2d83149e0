"""Differential testing: one scripted request sequence, two brokers, what a user sees compared.

A *script* is a function of a :class:`Session` (one raw Kafka connection, see
:mod:`tests.compat.wire`) that sends requests and returns *observations*: a flat dict of
named values a user would notice (error codes, offsets, timestamps, config values, group
states). :meth:`Pair.run` runs the same script against the baseline (a single-node Apache
Kafka) and the subject (Strata, or a second Apache Kafka while Strata has no Kafka
listener, which proves the harness itself), each request at the same version (the
highest both brokers serve up to the one the script names), and :func:`compare` asserts
the observations equal, except where the subject differs on purpose: an
:class:`ExpectedDifference`, named, explained in ``docs/kafka-compatibility.md``, and
still checked (the subject must show the documented behaviour, not just any other one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka.record import MemoryRecords, MemoryRecordsBuilder

from tests.compat.wire import KafkaWire

Observations = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ExpectedDifference:
    """A documented way the subject differs: ``holds(baseline, subject)`` says it is this one."""

    name: str
    why: str
    holds: Callable[[Any, Any], bool]


#: Per subject kind, per observation key: the differences the docs explain. Kafka against
#: Kafka has none; Strata's are added as the listener lands and the tests find them, each
#: with its paragraph in docs/kafka-compatibility.md ("Known differences").
#: A Strata partition's log is its Raft log, and a new leader's first entry is a control
#: batch in its term (DESIGN.md, "Raft"): a new partition's first record is at offset 1,
#: after that batch, not 0. Consumers skip control batches (Kafka's transaction markers
#: are as invisible); ListOffsets earliest still answers 0, the log start.
FIRST_OFFSET_AFTER_LEADER_BATCH = ExpectedDifference(
    name="first record after the leader's control batch",
    why="a partition's log is its Raft log; a new leader appends a control batch first",
    holds=lambda baseline, subject: baseline == 0 and subject == 1,
)

EXPECTED_DIFFERENCES: dict[str, dict[str, ExpectedDifference]] = {
    "apache-kafka": {},
    "strata": {"first_record_offset": FIRST_OFFSET_AFTER_LEADER_BATCH},
}


class Session:
    """One connection to a single-node cluster, and the versions the script may use."""

    def __init__(self, wire: KafkaWire, versions: Mapping[int, int]) -> None:
        self.wire = wire
        self.versions = versions

    def send(self, request: Any) -> Any:
        return self.wire.send(request, version=self.versions[request.API_KEY])


Script = Callable[[Session], Observations]


@dataclass(slots=True)
class Pair:
    """The baseline and the subject, both single-node clusters, reachable at Kafka addresses."""

    baseline: str
    subject: str
    subject_kind: str
    _versions: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)

    def common_versions(self, preferred: Mapping[int, int]) -> dict[int, int]:
        """Per API key: the highest version both serve, at most the preferred one."""
        if not self._versions:
            for side in (self.baseline, self.subject):
                with KafkaWire.connect(side) as wire:
                    self._versions[side] = wire.api_versions()
        out = {}
        for key, want in preferred.items():
            ranges = [self._versions[side].get(key) for side in (self.baseline, self.subject)]
            if None in ranges:
                raise AssertionError(f"API {key} is not served by both brokers: {ranges}")
            low = max(r[0] for r in ranges)  # type: ignore[index]
            high = min([want, *(r[1] for r in ranges)])  # type: ignore[index]
            if high < low:
                raise AssertionError(f"API {key}: no common version up to {want} in {ranges}")
            out[key] = high
        return out

    def run(self, script: Script, preferred: Mapping[int, int]) -> tuple[Observations, Observations]:
        versions = self.common_versions(preferred)
        results = []
        for side in (self.baseline, self.subject):
            with KafkaWire.connect(side) as wire:
                results.append(script(Session(wire, versions)))
        return results[0], results[1]


def compare(baseline: Observations, subject: Observations, subject_kind: str) -> list[str]:
    """Assert the subject saw what the baseline saw, but for its named expected differences.

    Returns the names of the expected differences that applied (a test may print them).
    """
    expected = EXPECTED_DIFFERENCES[subject_kind]
    applied, mismatches = [], []
    for key in sorted(baseline.keys() | subject.keys()):
        want, got = baseline.get(key, "<absent>"), subject.get(key, "<absent>")
        difference = expected.get(key)
        if difference is not None:
            if not difference.holds(want, got):
                mismatches.append(f"{key}: expected difference {difference.name!r} does not hold: "
                                  f"baseline {want!r}, {subject_kind} {got!r}")  # fmt: skip
            applied.append(difference.name)
        elif want != got:
            mismatches.append(f"{key}: baseline {want!r}, {subject_kind} {got!r}")
    assert not mismatches, "observations differ:\n  " + "\n  ".join(mismatches)
    return applied


# --- record batches -------------------------------------------------------------------


def batch(records: list[tuple[int, bytes | None, bytes]], compression: int = 0) -> bytes:
    """A v2 record batch of (timestamp, key, value) records."""
    builder = MemoryRecordsBuilder(magic=2, compression_type=compression, batch_size=1 << 24)
    for ts, key, value in records:
        builder.append(ts, key, value, headers=[])
    builder.close()
    return builder.buffer()


def decode_records(data: bytes | None) -> list[tuple[int, int, str | None, str | None]]:
    """(offset, timestamp, key, value) of every data record in a fetch response's records."""
    out = []
    records = MemoryRecords(data or b"")
    while (b := records.next_batch()) is not None:
        if b.is_control_batch:
            continue
        for r in b:
            out.append((r.offset, r.timestamp, _text(r.key), _text(r.value)))
    return out


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode()


def now_ms() -> int:
    return int(time.time() * 1000)
