"""Proof that the checker bites: every anomaly kind, planted in a clean history, is reported.

A checker that never complains is indistinguishable from one that works, so
each kind gets a hand-made history that differs from a clean one by exactly
the defect, and the test asserts that exactly that kind is reported. The
clean history itself must report nothing, control-batch gaps included.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fault.checker import AnomalyKind, check
from tests.fault.history import (
    DEFAULT_TOPIC,
    Commit,
    Event,
    FinalRead,
    History,
    Poll,
    ReplicaDump,
    SendInfo,
    SendInvoke,
    SendOk,
    TableRead,
    digest_bytes,
)

T = DEFAULT_TOPIC
P0 = [(1, "p1-0"), (2, "p1-1"), (4, "p1-2"), (5, "p1-3"), (6, "p1-4")]  # 0 and 3: control batches
P1 = [(1, "p2-0"), (2, "p2-1")]
TABLE = "table"
#: What the compacted partition holds after the run: k1's first value was compacted away,
#: k2's acknowledged "t-2" was not cleaned yet, and its later "t-4" (outcome unknown) landed.
TABLE_READ = [(2, "k2", "t-2"), (3, "k1", "t-3"), (4, "k2", "t-4")]


def clean_history() -> History:
    """A run where nothing went wrong, with every kind of event the checker reads."""
    h = History()
    h.fault("partition-isolate", "start", [2])
    for offset, value in P0:
        h.send_ok(h.send_invoke("p1", 0, value), offset)
    failed = h.send_invoke("p1", 0, "p1-fail")
    h.send_fail(failed, "NOT_LEADER")
    h.send_info(h.send_invoke("p1", 0, "p1-info-gone"), "timeout")
    for offset, value in P1:
        h.send_ok(h.send_invoke("p2", 1, value), offset)
    h.compacted_topic(TABLE)
    for offset, key, value in [(1, "k1", "t-1"), (2, "k2", "t-2"), (3, "k1", "t-3")]:
        h.send_ok(h.send_invoke("pt", 0, value, topic=TABLE, key=key), offset)
    h.send_info(h.send_invoke("pt", 0, "t-4", topic=TABLE, key="k2"), "timeout")
    h.send_fail(h.send_invoke("pt", 0, "t-5", topic=TABLE, key="k1"), "NOT_LEADER")
    h.fault("partition-isolate", "end", [2])
    h.seek("c1", 0, 0)
    for offset, value in P0:
        h.poll("c1", 0, offset, value, fixed_assignment=True)
        h.poll("c2", 0, offset, value, fixed_assignment=False)
    h.commit("g", 0, 2)
    h.commit("g", 0, 5)
    h.reset("g", 0, 0)
    h.commit("g", 0, 3)
    h.commit("g", 0, 7, source="fetch")
    h.final_read(0, P0)
    h.final_read(1, P1)
    h.table_read(0, TABLE_READ, TABLE)
    for broker in (1, 2, 3):
        h.replica_dump(broker, 0, 7, data=b"batches of partition 0")
        h.replica_dump(broker, 1, 3, data=b"batches of partition 1")
        h.replica_dump(broker, 0, 5, digest="logical digest of the table", topic=TABLE)
    return h


Plant = Callable[[list[Event]], list[Event]]


def _replace_final(events: list[Event], partition: int,
                   records: list[tuple[int, str]]) -> list[Event]:
    return [dataclasses.replace(e, records=tuple(records))
            if isinstance(e, FinalRead) and e.partition == partition else e for e in events]


def _op_of(events: list[Event], value: str) -> int:
    return next(e.op for e in events if isinstance(e, SendInvoke) and e.value == value)


def lost_absent(events: list[Event]) -> list[Event]:
    return _replace_final(events, 0, [r for r in P0 if r[1] != "p1-2"])


def lost_moved(events: list[Event]) -> list[Event]:
    op = _op_of(events, "p1-1")
    return [dataclasses.replace(e, offset=9) if isinstance(e, SendOk) and e.op == op else e
            for e in events]


def unseen(events: list[Event]) -> list[Event]:
    events = _replace_final(events, 0, [*P0, (7, "p1-late")])
    return [*events, SendInvoke(100, 50.0, "p1", T, 0, "p1-late"), SendOk(100, 50.1, 7)]


def duplicate(events: list[Event]) -> list[Event]:
    return _replace_final(events, 0, [*P0, (7, "p1-1")])


def inconsistent_offset(events: list[Event]) -> list[Event]:
    return [*events, Poll(60.0, "c3", T, 0, 2, "p1-info-gone", False)]


def aborted_read(events: list[Event]) -> list[Event]:
    return [*events, Poll(60.0, "c3", T, 0, 8, "p1-fail", False)]


def nonmonotonic_send(events: list[Event]) -> list[Event]:
    events = [*events, SendInvoke(200, 1.0, "p2", T, 1, "p2-a"), SendInfo(200, 2.0, "timeout"),
              SendInvoke(201, 1.5, "p2", T, 1, "p2-b"), SendInfo(201, 2.0, "timeout")]
    return _replace_final(events, 1, [*P1, (3, "p2-b"), (4, "p2-a")])


def nonmonotonic_poll(events: list[Event]) -> list[Event]:
    return [*events, Poll(70.0, "c1", T, 0, 2, "p1-1", True)]


def skipped_poll(events: list[Event]) -> list[Event]:
    return [e for e in events
            if not (isinstance(e, Poll) and e.consumer == "c1" and e.offset == 4)]


def phantom(events: list[Event]) -> list[Event]:
    return [*events, Poll(70.0, "c2", T, 0, 9, "nobody-wrote-this", False)]


def commit_regression(events: list[Event]) -> list[Event]:
    return [*events, Commit(80.0, "g", T, 0, 1)]


def divergent_replicas(events: list[Event]) -> list[Event]:
    return [dataclasses.replace(e, digest=digest_bytes(b"a different history"))
            if isinstance(e, ReplicaDump) and e.broker == 3 and e.partition == 0 else e
            for e in events]


def missing_final_read(events: list[Event]) -> list[Event]:
    return [e for e in events if not (isinstance(e, FinalRead) and e.partition == 1)]


def _replace_table(events: list[Event], records: list[tuple[int, str, str]]) -> list[Event]:
    return [dataclasses.replace(e, records=tuple(records)) if isinstance(e, TableRead) else e for e in events]


def table_stale_value(events: list[Event]) -> list[Event]:
    """k1's acknowledged "t-3" is gone and its older "t-1" is what a reader gets."""
    return _replace_table(events, [(1, "k1", "t-1"), (2, "k2", "t-2"), (4, "k2", "t-4")])


def table_key_gone(events: list[Event]) -> list[Event]:
    """Compaction removed the key's latest value along with the older ones."""
    return _replace_table(events, [r for r in TABLE_READ if r[1] != "k1"])


def table_phantom(events: list[Event]) -> list[Event]:
    return _replace_table(events, [*TABLE_READ, (5, "k9", "t-9")])


def table_aborted_read(events: list[Event]) -> list[Event]:
    return _replace_table(events, [*TABLE_READ, (5, "k1", "t-5")])


def table_missing_final_read(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, TableRead)]


def table_divergent_replicas(events: list[Event]) -> list[Event]:
    return [dataclasses.replace(e, digest="another meaning")
            if isinstance(e, ReplicaDump) and e.topic == TABLE and e.broker == 2 else e for e in events]


PLANTS: list[tuple[AnomalyKind, Plant]] = [
    (AnomalyKind.LOST, lost_absent),
    (AnomalyKind.LOST, lost_moved),
    (AnomalyKind.UNSEEN, unseen),
    (AnomalyKind.DUPLICATE, duplicate),
    (AnomalyKind.INCONSISTENT_OFFSET, inconsistent_offset),
    (AnomalyKind.ABORTED_READ, aborted_read),
    (AnomalyKind.NONMONOTONIC_SEND, nonmonotonic_send),
    (AnomalyKind.NONMONOTONIC_POLL, nonmonotonic_poll),
    (AnomalyKind.SKIPPED_POLL, skipped_poll),
    (AnomalyKind.PHANTOM, phantom),
    (AnomalyKind.COMMIT_REGRESSION, commit_regression),
    (AnomalyKind.DIVERGENT_REPLICAS, divergent_replicas),
    (AnomalyKind.MISSING_FINAL_READ, missing_final_read),
    (AnomalyKind.STALE_VALUE, table_stale_value),
    (AnomalyKind.STALE_VALUE, table_key_gone),
    (AnomalyKind.PHANTOM, table_phantom),
    (AnomalyKind.ABORTED_READ, table_aborted_read),
    (AnomalyKind.MISSING_FINAL_READ, table_missing_final_read),
    (AnomalyKind.DIVERGENT_REPLICAS, table_divergent_replicas),
]


def test_clean_history_reports_nothing() -> None:
    result = check(clean_history())
    assert result.anomalies == [], result.report()
    assert result.valid
    c = result.counts
    assert (c.acknowledged, c.definitely_failed, c.indefinite, c.indefinite_appeared) == (10, 2, 2, 0)
    assert (c.polls, c.final_records, c.faults) == (10, 10, 1)
    assert result.report().startswith("VALID")


def test_every_kind_has_a_plant() -> None:
    assert {kind for kind, _ in PLANTS} == set(AnomalyKind)


@pytest.mark.parametrize(("kind", "plant"), PLANTS, ids=[p.__name__ for _, p in PLANTS])
def test_planted_anomaly_is_reported(kind: AnomalyKind, plant: Plant) -> None:
    result = check(plant(clean_history().events()))
    assert result.kinds() == {kind}, result.report()
    found = result.of_kind(kind)
    assert all(a.detail for a in found)
    report = result.report()
    assert report.startswith("INVALID") and f"[{kind}]" in report


def test_planted_details_name_offsets_and_values() -> None:
    (lost,) = check(lost_absent(clean_history().events())).anomalies
    assert (lost.partition, lost.offsets, lost.values) == ((T, 0), (4,), ("p1-2",))
    (moved,) = check(lost_moved(clean_history().events())).anomalies
    assert moved.offsets == (9, 2) and moved.values == ("p1-1",)
    (skip,) = check(skipped_poll(clean_history().events())).anomalies
    assert skip.offsets == (4,) and skip.values == ("p1-2",)
    (dup,) = check(duplicate(clean_history().events())).anomalies
    assert dup.offsets == (2, 7)
    (send,) = check(nonmonotonic_send(clean_history().events())).anomalies
    assert send.offsets == (4, 3) and send.values == ("p2-a", "p2-b")


def test_skip_at_start_after_seek_is_reported() -> None:
    events = [e for e in clean_history().events()
              if not (isinstance(e, Poll) and e.consumer == "c1" and e.offset == 1)]
    (skip,) = check(events).anomalies
    assert skip.kind is AnomalyKind.SKIPPED_POLL and skip.offsets == (1,)


def test_indefinite_write_that_appeared_is_counted_not_flagged() -> None:
    h = clean_history()
    events = _replace_final(h.events(), 0, [*P0, (7, "p1-info-gone")])
    result = check(events)
    assert result.valid, result.report()
    assert result.counts.indefinite_appeared == 1


def test_unseen_over_time_drains_when_consumers_catch_up() -> None:
    series = check(clean_history()).counts.unseen_over_time
    assert series and series[-1][1] == 0
    late = check(unseen(clean_history().events())).counts.unseen_over_time
    assert late[-1][1] == 1


def test_history_round_trips_through_json_lines() -> None:
    h = clean_history()
    again = History.from_jsonl(h.to_jsonl())
    assert again.events() == h.events()
    planted = History.from_events(lost_absent(h.events()))
    assert check(History.from_jsonl(planted.to_jsonl())).kinds() == {AnomalyKind.LOST}


def test_replica_dump_takes_bytes_or_digest() -> None:
    h = History()
    h.replica_dump(1, 0, 5, data=b"x")
    h.replica_dump(2, 0, 5, digest=digest_bytes(b"x"), size=1)
    assert check(h).valid
    with pytest.raises(ValueError):
        h.replica_dump(3, 0, 5)


# -- property: a correct log never yields an anomaly; losing an ack always does -----


def simulate_correct_run(seed: int, n_ops: int) -> History:
    """A single in-memory log per partition that behaves perfectly, with random control batches,
    failed and indefinite sends, and one fixed-assignment consumer per partition."""
    rng = random.Random(seed)
    h = History()
    logs: dict[int, list[tuple[int, str]]] = {0: [], 1: []}
    next_offset = {0: 0, 1: 0}
    for i in range(n_ops):
        partition = rng.randrange(2)
        if rng.random() < 0.2:
            next_offset[partition] += 1  # a control batch: an offset with no data
        value = f"p{partition}-{i}"
        op = h.send_invoke(f"prod{partition}", partition, value)
        outcome = rng.random()
        if outcome < 0.1:
            h.send_fail(op, "NOT_LEADER")
            continue
        offset = next_offset[partition]
        next_offset[partition] += 1
        logs[partition].append((offset, value))
        if outcome < 0.2:
            h.send_info(op, "timeout")
        else:
            h.send_ok(op, offset)
    for partition, records in logs.items():
        h.seek(f"c{partition}", partition, 0)
        for offset, value in records:
            h.poll(f"c{partition}", partition, offset, value, fixed_assignment=True)
        h.final_read(partition, records)
    return h


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n_ops=st.integers(0, 60))
def test_correct_runs_are_valid(seed: int, n_ops: int) -> None:
    result = check(simulate_correct_run(seed, n_ops))
    assert result.valid, result.report()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n_ops=st.integers(1, 60), pick=st.integers(0, 10**6))
def test_dropping_an_acknowledged_record_is_always_caught(seed: int, n_ops: int,
                                                          pick: int) -> None:
    events = simulate_correct_run(seed, n_ops).events()
    acked = {e.op for e in events if isinstance(e, SendOk)}
    values = [e for e in events if isinstance(e, SendInvoke) and e.op in acked]
    if not values:
        return
    victim = values[pick % len(values)]
    events = [dataclasses.replace(e, records=tuple(r for r in e.records if r[1] != victim.value))
              if isinstance(e, FinalRead) else e for e in events]
    assert AnomalyKind.LOST in check(events).kinds()
