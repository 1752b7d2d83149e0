"""The history checker: turns a recorded history into a list of anomalies and a report.

It is pure (no I/O, no clock): the same history always gives the same result,
so a report can be re-checked from its ``history.jsonl`` alone, and the
checker is tested by planting each anomaly in a hand-written history
(``test_checker.py``) rather than by hoping a cluster misbehaves.

What counts as the truth: the *final read* of each partition after the
cluster settled. Acknowledgements are promises checked against it; polls are
observations checked against it and against each other. Every anomaly names
its partition, the offsets and values involved and a sentence saying why it
is wrong, because a report is read by a person hunting a bug.

A compacted topic (declared in the history) is checked as a table instead: the
cleaner removes superseded records, so "every acknowledged record is in the
final read" does not hold there. What holds is that, per key, the latest record
of the final read is the latest acknowledged write of that key (or a write sent
after it whose outcome is unknown), at the offset it was acknowledged at.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from tests.fault.history import (
    Commit,
    CompactedTopic,
    Event,
    Fault,
    FinalRead,
    History,
    Poll,
    ReplicaDump,
    Reset,
    Seek,
    SendFail,
    SendInfo,
    SendInvoke,
    SendOk,
    TableRead,
    TopicPartition,
)


class AnomalyKind(StrEnum):
    """Every way a history can be wrong; the value is the name used in reports."""

    LOST = "lost"
    UNSEEN = "unseen"
    DUPLICATE = "duplicate"
    INCONSISTENT_OFFSET = "inconsistent-offset"
    ABORTED_READ = "aborted-read"
    NONMONOTONIC_SEND = "nonmonotonic-send"
    NONMONOTONIC_POLL = "nonmonotonic-poll"
    SKIPPED_POLL = "skipped-poll"
    PHANTOM = "phantom"
    COMMIT_REGRESSION = "commit-regression"
    DIVERGENT_REPLICAS = "divergent-replicas"
    MISSING_FINAL_READ = "missing-final-read"
    STALE_VALUE = "stale-value"


@dataclass(slots=True, frozen=True)
class Anomaly:
    """One thing that went wrong, with enough context to go and find it in the logs."""

    kind: AnomalyKind
    partition: TopicPartition | None
    offsets: tuple[int, ...]
    values: tuple[str, ...]
    detail: str

    def describe(self) -> str:
        """One line for the human report."""
        where = f"{self.partition[0]}/{self.partition[1]}" if self.partition else "-"
        return (f"[{self.kind}] {where} offsets={list(self.offsets)} "
                f"values={list(self.values)}: {self.detail}")


@dataclass(slots=True)
class Counts:
    """The size of the run, so that "no anomalies" can be told apart from "nothing happened"."""

    acknowledged: int = 0
    definitely_failed: int = 0
    indefinite: int = 0
    indefinite_appeared: int = 0
    polls: int = 0
    final_records: int = 0
    faults: int = 0
    fault_kinds: dict[str, int] = field(default_factory=dict)
    unseen_over_time: list[tuple[float, int]] = field(default_factory=list)


@dataclass(slots=True)
class CheckResult:
    """The checker's answer: structured anomalies for code, ``report()`` for people."""

    anomalies: list[Anomaly]
    counts: Counts

    @property
    def valid(self) -> bool:
        """True when no anomaly was found."""
        return not self.anomalies

    def kinds(self) -> set[AnomalyKind]:
        """The distinct anomaly kinds found."""
        return {a.kind for a in self.anomalies}

    def of_kind(self, kind: AnomalyKind) -> list[Anomaly]:
        """The anomalies of one kind, in the order they were found."""
        return [a for a in self.anomalies if a.kind == kind]

    def report(self, limit_per_kind: int = 20) -> str:
        """A plain-text report; long lists are cut per kind (the structured result keeps all)."""
        c = self.counts
        lines = [
            "VALID: no anomalies" if self.valid
            else f"INVALID: {len(self.anomalies)} anomalies "
                 f"({', '.join(f'{k}={n}' for k, n in sorted(Counter(a.kind.value for a in self.anomalies).items()))})",
            f"acknowledged writes: {c.acknowledged}",
            f"definitely failed writes: {c.definitely_failed}",
            f"unacknowledged (indefinite) writes: {c.indefinite}, of which appeared: "
            f"{c.indefinite_appeared}",
            f"polled records: {c.polls}",
            f"final-read records: {c.final_records}",
            f"faults injected: {c.faults}"
            + (f" ({', '.join(f'{k}={n}' for k, n in sorted(c.fault_kinds.items()))})"
               if c.fault_kinds else ""),
        ]
        if c.unseen_over_time:
            series = ", ".join(f"{t:.1f}s:{n}" for t, n in c.unseen_over_time)
            lines.append(f"acknowledged but not yet polled, over time: {series}")
        by_kind: dict[AnomalyKind, list[Anomaly]] = defaultdict(list)
        for a in self.anomalies:
            by_kind[a.kind].append(a)
        for kind in AnomalyKind:
            found = by_kind.get(kind)
            if not found:
                continue
            lines.append(f"-- {kind} ({len(found)})")
            lines.extend("  " + a.describe() for a in found[:limit_per_kind])
            if len(found) > limit_per_kind:
                lines.append(f"  ... {len(found) - limit_per_kind} more")
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class _Send:
    """A send with its outcome, assembled from its invoke and completion events."""

    invoke: SendInvoke
    outcome: str = "pending"  # ok | fail | info | pending
    offset: int | None = None
    done_time: float | None = None

    @property
    def tp(self) -> TopicPartition:
        return (self.invoke.topic, self.invoke.partition)


@dataclass(slots=True, frozen=True)
class _Observation:
    """A (partition, offset, value) someone read, and who, for the anomaly's detail."""

    tp: TopicPartition
    offset: int
    value: str
    source: str


def check(history: History | Iterable[Event], unseen_samples: int = 10) -> CheckResult:
    """Check a history and return every anomaly found plus the run's counts."""
    events = history.events() if isinstance(history, History) else list(history)
    compacted = {e.topic for e in events if isinstance(e, CompactedTopic)}
    all_sends = _collect_sends(events)
    table_sends = {op: s for op, s in all_sends.items() if s.tp[0] in compacted}
    sends = {op: s for op, s in all_sends.items() if s.tp[0] not in compacted}
    final = _final_reads(events)
    observations = _observations(events)
    anomalies: list[Anomaly] = []
    anomalies += _tables(table_sends, events)
    anomalies += _missing_final_reads(sends, final)
    anomalies += _lost(sends, final)
    anomalies += _unseen(sends, events, final)
    anomalies += _duplicates(observations)
    anomalies += _inconsistent_offsets(observations)
    anomalies += _aborted_and_phantom(sends, observations)
    anomalies += _nonmonotonic_sends(sends, final)
    anomalies += _polls(events, final)
    anomalies += _commit_regressions(events)
    anomalies += _divergent_replicas(events)
    counts = _counts(events, all_sends, final, unseen_samples)
    return CheckResult(anomalies, counts)


# -- assembling the history -------------------------------------------------


def _collect_sends(events: list[Event]) -> dict[int, _Send]:
    sends: dict[int, _Send] = {}
    for e in events:
        if isinstance(e, SendInvoke):
            sends[e.op] = _Send(e)
        elif isinstance(e, SendOk | SendFail | SendInfo):
            s = sends.get(e.op)
            if s is None or s.outcome != "pending":
                continue  # a completion without an invoke, or a second one: the first wins
            s.done_time = e.time
            if isinstance(e, SendOk):
                s.outcome, s.offset = "ok", e.offset
            elif isinstance(e, SendFail):
                s.outcome = "fail"
            else:
                s.outcome = "info"
    return sends


def _final_reads(events: list[Event]) -> dict[TopicPartition, dict[int, str]]:
    """The last final read of each partition, as offset -> value (first value wins at an offset)."""
    final: dict[TopicPartition, dict[int, str]] = {}
    for e in events:
        if isinstance(e, FinalRead):
            recs: dict[int, str] = {}
            for offset, value in e.records:
                recs.setdefault(offset, value)
            final[(e.topic, e.partition)] = recs
    return final


def _observations(events: list[Event]) -> list[_Observation]:
    obs: list[_Observation] = []
    for e in events:
        if isinstance(e, Poll):
            obs.append(_Observation((e.topic, e.partition), e.offset, e.value,
                                    f"poll by {e.consumer}"))
        elif isinstance(e, FinalRead):
            obs.extend(_Observation((e.topic, e.partition), o, v, "final read")
                       for o, v in e.records)
    return obs


def _offsets_by_value(records: dict[int, str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for offset in sorted(records):
        out[records[offset]].append(offset)
    return out


# -- the checks ---------------------------------------------------------------


def _missing_final_reads(sends: dict[int, _Send],
                         final: dict[TopicPartition, dict[int, str]]) -> list[Anomaly]:
    """Acknowledged writes to a partition nobody read at the end cannot be checked: say so."""
    acked: dict[TopicPartition, int] = Counter(s.tp for s in sends.values() if s.outcome == "ok")
    return [Anomaly(AnomalyKind.MISSING_FINAL_READ, tp, (), (),
                    f"{n} acknowledged writes but the history has no final read of the partition")
            for tp, n in sorted(acked.items()) if tp not in final]


def _lost(sends: dict[int, _Send],
          final: dict[TopicPartition, dict[int, str]]) -> list[Anomaly]:
    out: list[Anomaly] = []
    where = {tp: _offsets_by_value(recs) for tp, recs in final.items()}
    for s in sends.values():
        if s.outcome != "ok" or s.tp not in final:
            continue
        assert s.offset is not None
        found = where[s.tp].get(s.invoke.value, [])
        if not found:
            out.append(Anomaly(AnomalyKind.LOST, s.tp, (s.offset,), (s.invoke.value,),
                               f"acknowledged to {s.invoke.producer} at offset {s.offset} "
                               f"(t={s.done_time:.3f}s) but absent from the final read"))
        elif s.offset not in found:
            out.append(Anomaly(AnomalyKind.LOST, s.tp, (s.offset, *found), (s.invoke.value,),
                               f"acknowledged at offset {s.offset} but the final read has it at "
                               f"{found}; offset {s.offset} holds "
                               f"{final[s.tp].get(s.offset)!r}"))
    return out


def _unseen(sends: dict[int, _Send], events: list[Event],
            final: dict[TopicPartition, dict[int, str]]) -> list[Anomaly]:
    """Acknowledged values no consumer ever polled, on partitions that consumers did poll."""
    polled: dict[TopicPartition, set[str]] = defaultdict(set)
    for e in events:
        if isinstance(e, Poll):
            polled[(e.topic, e.partition)].add(e.value)
    out: list[Anomaly] = []
    for s in sends.values():
        if s.outcome != "ok" or s.tp not in polled or s.invoke.value in polled[s.tp]:
            continue
        at = _offsets_by_value(final.get(s.tp, {})).get(s.invoke.value)
        if at:
            why = (f"in the final read at {at}, yet no consumer polled it: "
                   "delivery badly delayed or skipped")
        elif s.tp in final:
            why = "absent from the final read too: lost"
        else:
            why = "never polled, and the partition has no final read"
        assert s.offset is not None
        out.append(Anomaly(AnomalyKind.UNSEEN, s.tp, (s.offset,), (s.invoke.value,),
                           f"acknowledged at t={s.done_time:.3f}s, {why}"))
    return out


def _duplicates(observations: list[_Observation]) -> list[Anomaly]:
    offsets: dict[tuple[TopicPartition, str], set[int]] = defaultdict(set)
    sources: dict[tuple[TopicPartition, str], set[str]] = defaultdict(set)
    for o in observations:
        offsets[(o.tp, o.value)].add(o.offset)
        sources[(o.tp, o.value)].add(o.source)
    return [Anomaly(AnomalyKind.DUPLICATE, tp, tuple(sorted(offs)), (value,),
                    f"value stored at {len(offs)} offsets (seen by "
                    f"{', '.join(sorted(sources[(tp, value)]))})")
            for (tp, value), offs in sorted(offsets.items()) if len(offs) > 1]


def _inconsistent_offsets(observations: list[_Observation]) -> list[Anomaly]:
    seen: dict[tuple[TopicPartition, int], dict[str, set[str]]] = defaultdict(
        lambda: defaultdict(set))
    for o in observations:
        seen[(o.tp, o.offset)][o.value].add(o.source)
    out: list[Anomaly] = []
    for (tp, offset), values in sorted(seen.items()):
        if len(values) > 1:
            who = "; ".join(f"{v!r} by {', '.join(sorted(src))}"
                            for v, src in sorted(values.items()))
            out.append(Anomaly(AnomalyKind.INCONSISTENT_OFFSET, tp, (offset,),
                               tuple(sorted(values)), f"reads disagree at one offset: {who}"))
    return out


def _aborted_and_phantom(sends: dict[int, _Send],
                         observations: list[_Observation]) -> list[Anomaly]:
    outcomes: dict[tuple[TopicPartition, str], set[str]] = defaultdict(set)
    for s in sends.values():
        outcomes[(s.tp, s.invoke.value)].add(s.outcome)
    written_anywhere: dict[str, set[TopicPartition]] = defaultdict(set)
    for s in sends.values():
        written_anywhere[s.invoke.value].add(s.tp)
    read_at: dict[tuple[TopicPartition, str], set[int]] = defaultdict(set)
    for o in observations:
        read_at[(o.tp, o.value)].add(o.offset)
    out: list[Anomaly] = []
    for (tp, value), offs in sorted(read_at.items()):
        got = outcomes.get((tp, value))
        if got is None:
            elsewhere = written_anywhere.get(value)
            detail = (f"read here but written only to {sorted(elsewhere)}" if elsewhere
                      else "read but no producer ever sent it")
            out.append(Anomaly(AnomalyKind.PHANTOM, tp, tuple(sorted(offs)), (value,), detail))
        elif got == {"fail"}:
            out.append(Anomaly(AnomalyKind.ABORTED_READ, tp, tuple(sorted(offs)), (value,),
                               "read, but its send definitely failed"))
    return out


def _landed_offset(s: _Send, where: dict[TopicPartition, dict[str, list[int]]]) -> int | None:
    found = where.get(s.tp, {}).get(s.invoke.value)
    if found:
        return found[0]
    return s.offset if s.outcome == "ok" else None


def _nonmonotonic_sends(sends: dict[int, _Send],
                        final: dict[TopicPartition, dict[int, str]]) -> list[Anomaly]:
    """Per producer and partition, offsets in send order must climb (op ids are invoke order)."""
    where = {tp: _offsets_by_value(recs) for tp, recs in final.items()}
    streams: dict[tuple[str, TopicPartition], list[_Send]] = defaultdict(list)
    for op in sorted(sends):
        s = sends[op]
        streams[(s.invoke.producer, s.tp)].append(s)
    out: list[Anomaly] = []
    for (producer, tp), stream in sorted(streams.items()):
        high: tuple[int, str] | None = None
        for s in stream:
            offset = _landed_offset(s, where)
            if offset is None:
                continue
            if high is not None and offset < high[0]:
                out.append(Anomaly(AnomalyKind.NONMONOTONIC_SEND, tp, (high[0], offset),
                                   (high[1], s.invoke.value),
                                   f"{producer} sent {high[1]!r} before {s.invoke.value!r} but "
                                   f"they landed at offsets {high[0]} and {offset}"))
            if high is None or offset > high[0]:
                high = (offset, s.invoke.value)
    return out


def _polls(events: list[Event],
           final: dict[TopicPartition, dict[int, str]]) -> list[Anomaly]:
    """Fixed-assignment consumers must read forwards, and never jump over a data record."""
    data_offsets = {tp: sorted(recs) for tp, recs in final.items()}
    last: dict[tuple[str, TopicPartition], int] = {}
    floor: dict[tuple[str, TopicPartition], int] = {}
    out: list[Anomaly] = []
    for e in events:
        if isinstance(e, Seek):
            key = (e.consumer, (e.topic, e.partition))
            last.pop(key, None)
            floor[key] = e.offset
            continue
        if not isinstance(e, Poll) or not e.fixed_assignment:
            continue
        tp = (e.topic, e.partition)
        key = (e.consumer, tp)
        prev = last.get(key)
        if prev is not None and e.offset <= prev:
            out.append(Anomaly(AnomalyKind.NONMONOTONIC_POLL, tp, (prev, e.offset), (e.value,),
                               f"{e.consumer} polled offset {e.offset} after {prev} "
                               f"(t={e.time:.3f}s)"))
            continue  # keep the higher position, so one step back is one anomaly
        low = prev + 1 if prev is not None else floor.get(key)
        if low is not None and tp in data_offsets:
            offs = data_offsets[tp]
            skipped = offs[bisect.bisect_left(offs, low):bisect.bisect_left(offs, e.offset)]
            if skipped:
                out.append(Anomaly(AnomalyKind.SKIPPED_POLL, tp, tuple(skipped),
                                   tuple(final[tp][o] for o in skipped),
                                   f"{e.consumer} went from "
                                   f"{'offset ' + str(prev) if prev is not None else 'seek ' + str(low)}"
                                   f" to {e.offset}, skipping {len(skipped)} data records "
                                   f"(t={e.time:.3f}s)"))
        last[key] = e.offset
    return out


def _commit_regressions(events: list[Event]) -> list[Anomaly]:
    last: dict[tuple[str, TopicPartition], int] = {}
    out: list[Anomaly] = []
    for e in events:
        if isinstance(e, Reset):
            last[(e.group, (e.topic, e.partition))] = e.offset
        elif isinstance(e, Commit):
            key = (e.group, (e.topic, e.partition))
            prev = last.get(key)
            if prev is not None and e.offset < prev:
                out.append(Anomaly(AnomalyKind.COMMIT_REGRESSION, key[1], (prev, e.offset), (),
                                   f"group {e.group}: committed offset went from {prev} to "
                                   f"{e.offset} ({e.source}, t={e.time:.3f}s) without a reset"))
            last[key] = e.offset
    return out


def _divergent_replicas(events: list[Event]) -> list[Anomaly]:
    dumps: dict[TopicPartition, dict[int, ReplicaDump]] = defaultdict(dict)
    for e in events:
        if isinstance(e, ReplicaDump):
            dumps[(e.topic, e.partition)][e.broker] = e
    out: list[Anomaly] = []
    for tp, by_broker in sorted(dumps.items()):
        if len({(d.high_watermark, d.digest) for d in by_broker.values()}) > 1:
            desc = "; ".join(f"broker {b}: hw={d.high_watermark} size={d.size} "
                             f"sha256={d.digest[:12]}" for b, d in sorted(by_broker.items()))
            out.append(Anomaly(AnomalyKind.DIVERGENT_REPLICAS, tp,
                               tuple(sorted({d.high_watermark for d in by_broker.values()})), (),
                               f"replicas differ below the high watermark after settling: {desc}"))
    return out


def _tables(sends: dict[int, _Send], events: list[Event]) -> list[Anomaly]:
    """Compacted partitions: each key's latest record in the final read is its latest
    acknowledged write, or a write of that key sent after it (outcome unknown)."""
    reads: dict[TopicPartition, TableRead] = {}
    for e in events:
        if isinstance(e, TableRead):
            reads[(e.topic, e.partition)] = e
    by_tp: dict[TopicPartition, list[_Send]] = defaultdict(list)
    for op in sorted(sends):
        by_tp[sends[op].tp].append(sends[op])
    out: list[Anomaly] = []
    for tp, stream in sorted(by_tp.items()):
        acked = [s for s in stream if s.outcome == "ok"]
        read = reads.get(tp)
        if read is None:
            if acked:
                out.append(Anomaly(AnomalyKind.MISSING_FINAL_READ, tp, (), (),
                                   f"{len(acked)} acknowledged writes but the history has no final read "
                                   "of the compacted partition"))
            continue
        sent = {(s.invoke.key, s.invoke.value): s for s in stream}
        latest: dict[str, tuple[int, str]] = {}
        at: dict[str, list[int]] = defaultdict(list)
        for offset, key, value in sorted(read.records):
            latest[key] = (offset, value)
            at[value].append(offset)
        for value, offsets in sorted(at.items()):
            if len(offsets) > 1:
                out.append(Anomaly(AnomalyKind.DUPLICATE, tp, tuple(offsets), (value,),
                                   f"value stored at {len(offsets)} offsets of the compacted partition"))
        reported: set[str] = set()  # keys whose latest value is already an anomaly of its own
        for key, (offset, value) in sorted(latest.items()):
            s = sent.get((key, value))
            if s is None or s.outcome == "fail":
                reported.add(key)
            if s is None:
                out.append(Anomaly(AnomalyKind.PHANTOM, tp, (offset,), (value,),
                                   f"the final read has {value!r} for key {key!r}, which no producer sent"))
            elif s.outcome == "fail":
                out.append(Anomaly(AnomalyKind.ABORTED_READ, tp, (offset,), (value,),
                                   f"key {key!r}: the final read's latest value was definitely not written"))
        last_ack: dict[str, _Send] = {}
        for s in acked:
            key = s.invoke.key or ""
            assert s.offset is not None
            cur = last_ack.get(key)
            if cur is None or (cur.offset is not None and s.offset > cur.offset):
                last_ack[key] = s
        for key, s in sorted(last_ack.items()):
            assert s.offset is not None
            if key in reported:
                continue
            found = latest.get(key)
            if found is None:
                out.append(Anomaly(AnomalyKind.STALE_VALUE, tp, (s.offset,), (s.invoke.value,),
                                   f"key {key!r}: acknowledged {s.invoke.value!r} at offset {s.offset}, "
                                   "but the final read has no record of the key"))
                continue
            offset, value = found
            if offset == s.offset and value == s.invoke.value:
                continue
            later = sent.get((key, value))
            if offset > s.offset and later is not None and later.outcome != "fail" and later.invoke.op > s.invoke.op:
                continue  # a later write of the key, acknowledged or not, landed after it
            out.append(Anomaly(AnomalyKind.STALE_VALUE, tp, (s.offset, offset), (s.invoke.value, value),
                               f"key {key!r}: acknowledged {s.invoke.value!r} at offset {s.offset} "
                               f"(t={s.done_time:.3f}s), but the final read's latest value is {value!r} "
                               f"at offset {offset}"))
    return out


# -- counts -------------------------------------------------------------------


def _counts(events: list[Event], sends: dict[int, _Send],
            final: dict[TopicPartition, dict[int, str]], samples: int) -> Counts:
    c = Counts()
    final_values = {tp: set(recs.values()) for tp, recs in final.items()}
    for s in sends.values():
        if s.outcome == "ok":
            c.acknowledged += 1
        elif s.outcome == "fail":
            c.definitely_failed += 1
        else:
            c.indefinite += 1
            if s.invoke.value in final_values.get(s.tp, ()):
                c.indefinite_appeared += 1
    kinds: Counter[str] = Counter()
    for e in events:
        if isinstance(e, Poll):
            c.polls += 1
        elif isinstance(e, FinalRead | TableRead):
            c.final_records += len(e.records)
        elif isinstance(e, Fault) and e.phase == "start":
            kinds[e.name] += 1
    c.faults = sum(kinds.values())
    c.fault_kinds = dict(kinds)
    c.unseen_over_time = _unseen_series(events, sends, samples)
    return c


def _unseen_series(events: list[Event], sends: dict[int, _Send],
                   samples: int) -> list[tuple[float, int]]:
    """How many acknowledged values were not yet polled, at evenly spaced times.

    Falling back to zero means consumers were slow; a plateau that never drains
    means values were lost (or consumers stuck): the shape tells them apart.
    """
    first_poll: dict[tuple[TopicPartition, str], float] = {}
    for e in events:
        if isinstance(e, Poll):
            first_poll.setdefault(((e.topic, e.partition), e.value), e.time)
    polled_tps = {tp for tp, _ in first_poll}
    acks = [(s.done_time, first_poll.get((s.tp, s.invoke.value)))
            for s in sends.values()
            if s.outcome == "ok" and s.tp in polled_tps and s.done_time is not None]
    if not acks or samples <= 0 or not events:
        return []
    end = max(e.time for e in events)
    points = [end * (i + 1) / samples for i in range(samples)]
    return [(t, sum(1 for acked, seen in acks if acked <= t and (seen is None or seen > t)))
            for t in points]
