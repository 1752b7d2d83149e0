"""BrokerMetrics without a broker process: what a scrape shows for a given broker state.

The broker objects are stand-ins with the attributes the collector reads (replicas with a
log and Raft progress, a controller, a coordinator with ``lag_snapshot()``), so each value's
meaning is pinned down: follower lag, under-replicated, leaderless, consumer lag, readiness.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from strata.broker.metrics import BrokerMetrics, MetricsSource
from strata.client.errors import ErrorCode
from strata.client.protocol import Api
from strata.storage import CleaningStatus, LogConfig


@dataclass
class FakeReplica:
    node_id: int
    voters: list[int]
    leader: int | None
    isr: list[int] = field(default_factory=list)
    matches: dict[int, int] = field(default_factory=dict)
    leo: int = 100
    hw: int = 90
    term: int = 4
    quiesced: bool = False
    #: A compacted partition's log, as the cleaner left it (None: cleanup.policy=delete).
    cleaning: CleaningStatus | None = None
    last_clean_ms: int | None = None

    def __post_init__(self) -> None:
        self.key = ("events", 0)
        self.topic_id = 7
        self.log = SimpleNamespace(log_end_offset=self.leo, log_start_offset=10, size_bytes=4096, segment_count=2,
                                   config=LogConfig(cleanup_policy="compact" if self.cleaning else "delete"),
                                   cleaned_offset=self.cleaning.cleaned_offset if self.cleaning else 0,
                                   last_clean_time=self.last_clean_ms, bytes_cleaned=1 << 20,
                                   cleaning_status=lambda max_offset: self.cleaning)
        self.high_watermark = self.hw
        progress = {p: SimpleNamespace(match=m) for p, m in self.matches.items()}
        self.node = SimpleNamespace(term=self.term, leader=self.leader, progress=progress, quiesced=self.quiesced)

    @property
    def is_leader(self) -> bool:
        return self.leader == self.node_id

    def in_sync_replicas(self) -> list[int]:
        return self.isr


def fake_broker(tmp_path: Path, *, metrics_listen=("127.0.0.1", 0), lag_rows=None, ready=(True, "ready"),
                compacted: bool = False):
    topics = {"events": SimpleNamespace(replicas=[[1, 2, 3], [2, 3, 1], [3, 1, 2]])}
    replicas = {
        ("events", 0): FakeReplica(1, [1, 2, 3], leader=1, isr=[1, 2], matches={1: 99, 2: 99, 3: 60}),
        ("events", 1): FakeReplica(1, [2, 3, 1], leader=2, quiesced=True),
        ("events", 2): FakeReplica(1, [3, 1, 2], leader=None),
    }
    cleaner = None
    if compacted:
        # 40 clean bytes below offset 60, then 120 dirty bytes up to the high watermark.
        replicas[("table", 0)] = FakeReplica(1, [1, 2, 3], leader=1, cleaning=CleaningStatus(
            cleaned_offset=60, cleanable_end=90, clean_bytes=40, dirty_bytes=120, oldest_dirty_ms=None, due=True),
            last_clean_ms=1_700_000_000_500)
        cleaner = SimpleNamespace(totals=SimpleNamespace(passes=3, failures=1),
                                  removable_offset=lambda r: 55)
    controller = SimpleNamespace(
        is_leader=True, replica=SimpleNamespace(high_watermark=7),
        image=SimpleNamespace(topics=topics, applied_offset=6),
        partitions={("events", 0): SimpleNamespace(leader=1), ("events", 1): SimpleNamespace(leader=2)},
        live_brokers=lambda: [1, 2], view_entries_sent=12,
    )
    coordinator = SimpleNamespace()
    if lag_rows is not None:
        coordinator.lag_snapshot = lambda: lag_rows
    return MetricsSource(
        node_id=1, metrics_listen=metrics_listen, data_dir=tmp_path, replicas=replicas, controller=controller,
        coordinator=coordinator, ready=lambda: ready, started_at=0.0, group_commit=None, cleaner=cleaner,
        replica_manager=SimpleNamespace(wakes={"Heartbeat": 4, "leader_silent": 2}, sleeps=9),
    )


def scrape(metrics: BrokerMetrics, body: bytes | None = None) -> dict[tuple[str, tuple], float]:
    """What /metrics serves (``render()``), parsed the way Prometheus parses it."""
    out = {}
    for fam in text_string_to_metric_families((metrics.render() if body is None else body).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_partition_replication_and_controller_values(tmp_path: Path) -> None:
    s = scrape(BrokerMetrics(fake_broker(tmp_path)))
    p0 = (("partition", "0"), ("topic", "events"))
    assert s[("strata_partition_leader", p0)] == 1
    assert s[("strata_partition_under_replicated", p0)] == 1
    assert s[("strata_partition_in_sync_replicas", p0)] == 2
    # leader LEO 100: follower 2 matched 99 (caught up), follower 3 matched 60 (39 behind).
    assert s[("strata_partition_follower_lag", (("follower", "2"),) + p0)] == 0
    assert s[("strata_partition_follower_lag", (("follower", "3"),) + p0)] == 39
    assert ("strata_partition_follower_lag", (("follower", "1"),) + p0) not in s
    assert s[("strata_partition_leader", (("partition", "1"), ("topic", "events")))] == 0
    assert s[("strata_under_replicated_partitions", ())] == 1
    assert s[("strata_leaderless_partitions", ())] == 1
    assert s[("strata_raft_quiesced_groups", ())] == 1
    assert s[("strata_raft_wakes_total", (("cause", "Heartbeat"),))] == 4
    assert s[("strata_raft_wakes_total", (("cause", "leader_silent"),))] == 2
    assert s[("strata_raft_sleeps_total", ())] == 9
    assert s[("strata_controller_view_entries_sent_total", ())] == 12
    # events-2's view is missing and events-1's leader (2) is live: one offline partition.
    assert s[("strata_controller_offline_partitions", ())] == 1
    assert s[("strata_controller_active", ())] == 1
    assert s[("strata_data_dir_free_bytes", ())] > 0 and s[("strata_data_dir_size_bytes", ())] > 0
    (info,) = [dict(labels) for name, labels in s if name == "strata_broker_info"]
    assert info["broker_id"] == "1" and info["version"]


def test_compacted_partitions_show_their_cleaning_and_others_do_not(tmp_path: Path) -> None:
    s = scrape(BrokerMetrics(fake_broker(tmp_path, compacted=True)))
    t0 = (("partition", "0"), ("topic", "table"))
    assert s[("strata_partition_dirty_ratio", t0)] == 0.75  # 120 / (40 + 120)
    assert s[("strata_partition_cleaner_backlog_bytes", t0)] == 120
    assert s[("strata_partition_cleaned_offset", t0)] == 60
    assert s[("strata_partition_cleaner_removable_offset", t0)] == 55
    assert s[("strata_partition_last_clean_timestamp_seconds", t0)] == 1_700_000_000.5
    assert s[("strata_partition_cleaner_bytes_total", t0)] == 1 << 20
    assert s[("strata_cleaner_backlog_bytes", ())] == 120
    assert s[("strata_cleaner_passes_total", ())] == 3
    assert s[("strata_cleaner_failures_total", ())] == 1
    # A partition of a topic that is not compacted has no cleaning series at all.
    assert not [k for k in s if k[0].startswith("strata_partition_dirty") and ("topic", "events") in k[1]]


def test_consumer_group_lag_leaves_unknown_lag_out(tmp_path: Path) -> None:
    rows = [("g", "events", 0, 40, 100, 60), ("g", "events", 1, 5, -1, -1)]
    s = scrape(BrokerMetrics(fake_broker(tmp_path, lag_rows=rows)))
    g0 = (("group", "g"), ("partition", "0"), ("topic", "events"))
    g1 = (("group", "g"), ("partition", "1"), ("topic", "events"))
    assert s[("strata_consumer_group_lag", g0)] == 60
    assert ("strata_consumer_group_lag", g1) not in s
    assert s[("strata_consumer_group_committed_offset", g1)] == 5


def test_readiness_waits_for_metadata_and_assigned_partitions(tmp_path: Path) -> None:
    b = fake_broker(tmp_path)
    m = BrokerMetrics(b)
    assert m.ready() == (True, "ready")
    b.controller.image.applied_offset = 3
    assert m.ready() == (False, "applying metadata: 4 of 7 records")
    b.controller.image.applied_offset = 6
    del b.replicas[("events", 2)]
    assert m.ready() == (False, "opening 1 assigned partition replica(s)")
    b.ready = lambda: (False, "no controller elected yet")
    assert m.ready() == (False, "no controller elected yet")


def test_requests_errors_and_latency_are_counted_by_api_and_code(tmp_path: Path) -> None:
    m = BrokerMetrics(fake_broker(tmp_path))

    async def ok(conn, hdr, payload):
        return SimpleNamespace(header={})

    async def refused(conn, hdr, payload):
        return SimpleNamespace(header={"err": int(ErrorCode.NOT_LEADER)})

    async def broken(conn, hdr, payload):
        raise RuntimeError("bug")

    async def run() -> None:
        assert m.instrument(Api.PRODUCE, ok) is m.instrument(Api.PRODUCE, ok)  # built once per API
        await m.instrument(Api.PRODUCE, ok)(None, {}, b"")
        await m.instrument(Api.FETCH, refused)(None, {}, b"")
        with pytest.raises(RuntimeError):
            await m.instrument(Api.METADATA, broken)(None, {}, b"")

    asyncio.run(run())
    s = scrape(m)
    assert s[("strata_requests_total", (("api", "produce"),))] == 1
    assert s[("strata_request_latency_seconds_count", (("api", "produce"),))] == 1
    assert s[("strata_request_errors_total", (("api", "fetch"), ("code", "NOT_LEADER")))] == 1
    assert s[("strata_request_errors_total", (("api", "metadata"), ("code", "EXCEPTION")))] == 1


def test_without_metrics_listen_handlers_run_unwrapped(tmp_path: Path) -> None:
    m = BrokerMetrics(fake_broker(tmp_path, metrics_listen=None))

    async def handler(conn, hdr, payload):
        return None

    assert m.instrument(Api.PRODUCE, handler) is handler
    m.bytes_in("events", 100)
    assert ("strata_bytes_in_total", (("topic", "events"),)) not in scrape(m)


def test_the_fast_text_writer_says_what_prometheus_client_would(tmp_path: Path) -> None:
    rows = [('we"ird\\group\nname', "events", 0, 40, 100, 60)]
    m = BrokerMetrics(fake_broker(tmp_path, lag_rows=rows, compacted=True))
    served, reference = scrape(m), scrape(m, generate_latest(m.registry))
    volatile = {"strata_broker_uptime_seconds", "strata_data_dir_free_bytes", "process_cpu_seconds_total",
                "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds"}
    assert {k for k in served if k[0] not in volatile} == {k for k in reference if k[0] not in volatile}
    assert all(served[k] == reference[k] for k in served if k[0] not in volatile)
    assert ("strata_consumer_group_lag", (("group", 'we"ird\\group\nname'), ("partition", "0"),
                                          ("topic", "events"))) in served
