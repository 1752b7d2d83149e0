"""Prometheus metrics for one broker, under ``strata_`` in base units (seconds, bytes).

Two kinds, by cost:

* **Per request** (the hot path): request and error counters and a latency histogram by
  API, bytes in/out by topic, fsync round latency. Each costs a cached child lookup and an
  ``inc``/``observe``. Without ``--metrics-listen`` nobody can read them, so the broker's
  handlers are served unwrapped and the byte counters do nothing: metrics off costs nothing.
* **Per partition and per group** (state): computed when Prometheus scrapes, by
  :class:`_StateCollector`, from the objects that already hold the truth (replicas, their
  Raft progress, the controller's view, the group coordinator, the data directory). Nothing
  is updated per request, so a broker with thousands of partitions pays only at scrape time.

The catalogue (names, labels, meaning) is in ``docs/operations.md``; the dashboard and the
alert rules in ``ops/`` read only these names, and ``tests/ops`` checks that they exist.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from strata.client.errors import ErrorCode
from strata.client.protocol import Api

if TYPE_CHECKING:
    from strata.broker.replication.replica import Replica

#: Sub-millisecond to tens of seconds: fsync'd produce on a laptop and a long-poll fetch both fit.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
#: An fsync takes tens of microseconds on a RAM disk and can take seconds on a busy spinning one.
FSYNC_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)

#: The topic of the controller's metadata log (kept literal: importing it here would make
#: the metrics module depend on the metadata module's import graph for one string).
METADATA_TOPIC = "__cluster_metadata"

Handler = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class MetricsSource:
    """What the metrics read, at scrape time: the broker's own objects, passed in."""

    node_id: int
    metrics_listen: tuple[str, int] | None
    #: ``(topic, partition) -> Replica``.
    replicas: Mapping[tuple[str, int], Any]
    #: The ``Controller`` (metadata image, the active controller's view of partitions).
    controller: Any
    #: The ``GroupCoordinator`` (``lag_snapshot()``).
    coordinator: Any
    #: The broker's own readiness verdict (joined, controller reachable).
    ready: Callable[[], tuple[bool, str]]
    data_dir: Path
    started_at: float
    group_commit: Any = None
    #: The ``CleanerService`` (``totals``, ``removable_offset(replica)``), if the broker runs one.
    cleaner: Any = None
    #: The ``ReplicaManager`` (``wakes``, ``sleeps``: quiescence counters), if any.
    replica_manager: Any = None


def _api_name(api: int) -> str:
    try:
        return Api(api).name.lower()
    except ValueError:
        return str(api)


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def _native_error(resp: Any) -> str | None:
    """The error a native answer carries (its header's ``err``), by name."""
    err = resp.header.get("err")
    return _error_name(err) if err else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("strata")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


class BrokerMetrics:
    """The broker's registry and the hooks the broker calls on its hot path.

    ``enabled`` follows ``--metrics-listen``: when no one can scrape, :meth:`instrument`
    hands the handler back untouched and the counters are not touched at all.
    """

    def __init__(self, source: MetricsSource, *, enabled: bool | None = None) -> None:
        from strata.broker.http import MetricsServer

        self.source = source
        self.enabled = (source.metrics_listen is not None) if enabled is None else enabled
        # ``*_created`` series double every counter's cardinality and no dashboard reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        #: Per-request metrics and process metrics, exposed by prometheus_client's writer.
        self._base = CollectorRegistry()
        r = self._base
        self.requests = Counter("strata_requests_total", "Requests handled, by API.", ["api"], registry=r)
        self.errors = Counter("strata_request_errors_total", "Requests answered with an error, by API and code.",
                              ["api", "code"], registry=r)
        self.latency = Histogram("strata_request_latency_seconds", "Time from a request's dispatch to its answer.",
                                 ["api"], buckets=LATENCY_BUCKETS, registry=r)
        self.protocol_errors = Counter("strata_protocol_errors_total",
                                       "Connections closed for bad frames, by error code.", ["code"], registry=r)
        self._bytes_in = Counter("strata_bytes_in_total", "Record batch bytes produced, by topic.", ["topic"],
                                 registry=r)
        self._bytes_out = Counter("strata_bytes_out_total", "Record batch bytes fetched, by topic.", ["topic"],
                                  registry=r)
        self.connections = Gauge("strata_connections", "Open client and peer connections.", registry=r)
        self.elections = Counter("strata_raft_leader_elections_total",
                                 "Raft elections won by this broker (it became leader of a group).", registry=r)
        self.leadership_changes = Counter("strata_raft_leadership_changes_total",
                                          "Leader or role changes seen by this broker's replicas.", registry=r)
        self.fsync = Histogram("strata_fsync_duration_seconds",
                               "Time of one group-commit fsync round of one partition log.",
                               buckets=FSYNC_BUCKETS, registry=r)
        info = Gauge("strata_broker_info", "Always 1; labels say which broker and version this is.",
                     ["broker_id", "version"], registry=r)
        info.labels(broker_id=str(source.node_id), version=_version()).set(1)
        # CPU, memory, open files under their standard ``process_*`` names (every exporter's).
        ProcessCollector(registry=r)
        self._state = _StateCollector(source, self.ready)
        #: Everything a scrape shows, as one registry (for generate_latest and tests).
        self.registry = CollectorRegistry()
        self.registry.register(_Union(self._base, self._state))
        self._server = MetricsServer(self.render, self.ready)
        self._wrapped: dict[int | str, tuple[Handler, Handler]] = {}
        self._bytes_in_children: dict[str, Any] = {}
        self._bytes_out_children: dict[str, Any] = {}
        self._error_children: dict[tuple[str, str], Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        self.enabled = True
        self.hook_group_commit()
        await self._server.start(host, port)

    async def stop(self) -> None:
        await self._server.stop()

    def hook_group_commit(self) -> None:
        """Time each fsync round: GroupCommit calls ``on_round(seconds)`` after every round."""
        gc = self.source.group_commit
        if gc is not None and getattr(gc, "on_round", None) is None:
            gc.on_round = self.fsync.observe

    def render(self) -> bytes:
        """The body of ``/metrics``: the registry's metrics, then the scrape-time gauges."""
        return generate_latest(self._base) + self._state.render().encode()

    # -- readiness ---------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """``/readyz``: the broker's own verdict (joined, controller known), then local partitions.

        ``Broker.ready()`` says the broker heard from the controller. Serving also needs the
        metadata log applied up to its commit and a replica open for every partition assigned
        here; until then a client sent here would get ``NOT_LEADER`` for partitions it should own.
        """
        src = self.source
        ok, why = src.ready()
        if not ok:
            return ok, why
        ctl = src.controller
        rep = getattr(ctl, "replica", None)
        if rep is None:
            return False, "metadata log not open yet"
        hw = rep.high_watermark
        applied = ctl.image.applied_offset
        if applied + 1 < hw:
            return False, f"applying metadata: {applied + 1} of {hw} records"
        node_id = src.node_id
        replicas = src.replicas
        missing = 0
        for name, topic in ctl.image.topics.items():
            for p, reps in enumerate(topic.replicas):
                if node_id in reps and (name, p) not in replicas:
                    missing += 1
        if missing:
            return False, f"opening {missing} assigned partition replica(s)"
        return True, "ready"

    # -- the hot path ------------------------------------------------------------------------

    def instrument(self, api: int | str, handler: Handler,
                   error_of: Callable[[Any], str | None] | None = None) -> Handler:
        """The handler wrapped to count and time it; the handler itself when metrics are off.

        ``api`` is a native API number or a name (``kafka_produce``); ``error_of`` names the
        error an answer carries (default: the native header's ``err``). Called per request,
        so the wrapper is built once per API and reused.
        """
        if not self.enabled:
            return handler
        cached = self._wrapped.get(api)
        if cached is not None and cached[0] is handler:
            return cached[1]
        name = api if isinstance(api, str) else _api_name(api)
        count = self.requests.labels(api=name)
        hist = self.latency.labels(api=name)
        error = self._error
        perf = time.perf_counter
        error_of = error_of or _native_error

        async def wrapped(*args: Any) -> Any:
            t0 = perf()
            try:
                resp = await handler(*args)
            except Exception:
                count.inc()
                hist.observe(perf() - t0)
                error(name, "EXCEPTION")
                raise
            count.inc()
            hist.observe(perf() - t0)
            if resp is not None:
                err = error_of(resp)
                if err:
                    error(name, err)
            return resp

        self._wrapped[api] = (handler, wrapped)
        return wrapped

    def _error(self, api_name: str, code: str) -> None:
        key = (api_name, code)
        child = self._error_children.get(key)
        if child is None:
            child = self.errors.labels(api=api_name, code=code)
            self._error_children[key] = child
        child.inc()

    def bytes_in(self, topic: str, n: int) -> None:
        if not self.enabled:
            return
        child = self._bytes_in_children.get(topic)
        if child is None:
            child = self._bytes_in_children[topic] = self._bytes_in.labels(topic=topic)
        child.inc(n)

    def bytes_out(self, topic: str, n: int) -> None:
        if not self.enabled:
            return
        child = self._bytes_out_children.get(topic)
        if child is None:
            child = self._bytes_out_children[topic] = self._bytes_out.labels(topic=topic)
        child.inc(n)

    def leadership_changed(self, replica: Replica) -> None:
        self.leadership_changes.inc()
        if replica.is_leader:
            self.elections.inc()


def _lag_rows(snapshot: Iterable[Any]) -> Iterator[tuple[str, str, int, int | None, int | None]]:
    """Normalise ``coordinator.lag_snapshot()`` into (group, topic, partition, committed, lag).

    The coordinator returns ``(group, topic, partition, committed, high_watermark, lag)`` rows,
    with ``lag`` -1 when it does not know the partition's high watermark; mappings with those
    keys are accepted too. An unknown lag is left out rather than exported as a number.
    """
    for row in snapshot:
        if isinstance(row, dict):
            group, topic, partition = row["group"], row["topic"], row["partition"]
            committed, lag = row.get("committed"), row.get("lag")
        else:
            group, topic, partition, committed, _hw, lag = row
        yield (str(group), str(topic), int(partition), None if committed is None else int(committed),
               None if lag is None or lag < 0 else int(lag))


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if type(value) is int:
        return str(value)
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Gauge:
    """A gauge (or counter) family built at scrape time.

    With 1,000 partitions a scrape holds ~10,000 samples; prometheus_client's generic text
    writer spends most of a scrape formatting them, so :meth:`render` writes the exposition
    format directly. :meth:`family` gives the same data as a ``GaugeMetricFamily`` for
    registries (``generate_latest``, tests).
    """

    __slots__ = ("doc", "kind", "labels", "name", "samples")

    def __init__(self, name: str, doc: str, labels: Iterable[str] = (), value: float | None = None,
                 kind: str = "gauge") -> None:
        #: A counter's family name is without ``_total``; its samples carry it.
        self.name = name.removesuffix("_total") if kind == "counter" else name
        self.doc = doc
        self.kind = kind
        self.labels = tuple(labels)
        self.samples: list[tuple[list[str], float]] = []
        if value is not None:
            self.samples.append(([], value))

    def add_metric(self, label_values: list[str], value: float) -> None:
        self.samples.append((label_values, value))

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        cls = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        if not self.labels:
            return cls(self.name, self.doc, value=self.samples[0][1] if self.samples else 0)
        fam = cls(self.name, self.doc, labels=self.labels)
        for lv, v in self.samples:
            fam.add_metric(lv, v)
        return fam

    def render(self, out: list[str]) -> None:
        family = self.name
        doc = self.doc.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {family} {doc}\n# TYPE {family} {self.kind}\n")
        name = family + "_total" if self.kind == "counter" else family
        if not self.labels:
            for _, v in self.samples:
                out.append(f"{name} {_number(v)}\n")
            return
        keys = [f'{k}="' for k in self.labels]
        for lv, v in self.samples:
            body = ",".join(k + _escape(x) + '"' for k, x in zip(keys, lv, strict=True))
            out.append(f"{name}{{{body}}} {_number(v)}\n")


class _Union:
    """One collector over the base registry and the state collector (``BrokerMetrics.registry``)."""

    def __init__(self, base: CollectorRegistry, state: _StateCollector) -> None:
        self.base = base
        self.state = state

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self.base.collect()
        yield from self.state.collect()


class _StateCollector:
    """Gauges computed at scrape time from the broker's own objects.

    Runs on the broker's event loop (the HTTP server lives there), so it reads replicas and
    the controller without locks and sees one consistent moment.
    """

    def __init__(self, source: MetricsSource, ready: Callable[[], tuple[bool, str]]) -> None:
        self.source = source
        self.ready = ready

    def describe(self) -> list[Metric]:
        return []

    def gauges(self) -> Iterator[_Gauge]:
        yield from self._partitions()
        yield from self._cleaning()
        yield from self._controller()
        yield from self._groups()
        yield from self._broker()

    def collect(self) -> Iterator[Metric]:
        for g in self.gauges():
            yield g.family()

    def render(self) -> str:
        """The text exposition of every gauge, written directly (the scrape's fast path)."""
        out: list[str] = []
        for g in self.gauges():
            g.render(out)
        return "".join(out)

    def _partitions(self) -> Iterator[_Gauge]:
        labels = ["topic", "partition"]
        leo = _Gauge("strata_partition_log_end_offset", "Next offset to be written.", labels=labels)
        hw = _Gauge("strata_partition_high_watermark",
                               "Committed offsets are below it; consumers read only below it.", labels=labels)
        lso = _Gauge("strata_partition_log_start_offset", "First offset still held.", labels=labels)
        size = _Gauge("strata_partition_size_bytes", "Segment bytes on disk.", labels=labels)
        segs = _Gauge("strata_partition_segments", "Segment files.", labels=labels)
        leader = _Gauge("strata_partition_leader", "1 if this broker leads the partition, else 0.",
                                   labels=labels)
        epoch = _Gauge("strata_partition_leader_epoch",
                                  "The replica's Raft term; it rises with every election.", labels=labels)
        replicas = _Gauge("strata_partition_replicas", "Voters of the partition's Raft group.",
                                     labels=labels)
        isr = _Gauge("strata_partition_in_sync_replicas",
                                "In-sync replicas, leader included (exported by the leader only).", labels=labels)
        under = _Gauge("strata_partition_under_replicated",
                                  "1 if this broker leads the partition and a replica is out of sync "
                                  "(exported by the leader only).", labels=labels)
        lag = _Gauge("strata_partition_follower_lag",
                                "Offsets a follower is behind the leader: leader log end offset - follower "
                                "match - 1 (exported by the leader, per follower).",
                                labels=["topic", "partition", "follower"])
        n_under = n_leaderless = n_quiesced = 0
        for (topic, p), r in list(self.source.replicas.items()):
            lv = [topic, str(p)]
            lg = r.log
            end = lg.log_end_offset
            leo.add_metric(lv, end)
            hw.add_metric(lv, r.high_watermark)
            lso.add_metric(lv, lg.log_start_offset)
            size.add_metric(lv, lg.size_bytes)
            segs.add_metric(lv, lg.segment_count)
            node = r.node
            n_quiesced += node.quiesced
            epoch.add_metric(lv, node.term)
            replicas.add_metric(lv, len(r.voters))
            if node.leader is None:
                n_leaderless += 1
            if r.is_leader:
                leader.add_metric(lv, 1)
                in_sync = len(r.in_sync_replicas())
                isr.add_metric(lv, in_sync)
                is_under = in_sync < len(r.voters)
                n_under += is_under
                under.add_metric(lv, 1 if is_under else 0)
                me = r.node_id
                for peer, pr in node.progress.items():
                    if peer != me:
                        lag.add_metric([topic, str(p), str(peer)], max(0, end - pr.match - 1))
            else:
                leader.add_metric(lv, 0)
        yield from (leo, hw, lso, size, segs, leader, epoch, replicas, isr, under, lag)
        yield _Gauge("strata_under_replicated_partitions",
                                "Partitions this broker leads with a replica out of sync.", value=n_under)
        yield _Gauge("strata_leaderless_partitions",
                                "Partition replicas on this broker that know no leader.", value=n_leaderless)
        yield _Gauge("strata_partitions", "Partition replicas this broker holds (metadata log included).",
                                value=len(self.source.replicas))
        yield _Gauge("strata_raft_quiesced_groups",
                     "Partition replicas whose Raft group is idle: no ticks, no heartbeats.", value=n_quiesced)
        manager = self.source.replica_manager
        if manager is not None:
            wakes = _Gauge("strata_raft_wakes_total", "Times a quiesced Raft group on this broker woke, by cause: "
                           "a message of that type from a peer, leader_silent/follower_silent (a peer's "
                           "pings stopped), stall (this broker's own), proposal, transfer.",
                           labels=["cause"], kind="counter")
            for cause, n in sorted(manager.wakes.items()):
                wakes.add_metric([cause], n)
            yield wakes
            yield _Gauge("strata_raft_sleeps_total", "Times a Raft group on this broker quiesced.",
                         value=manager.sleeps, kind="counter")

    def _cleaning(self) -> Iterator[_Gauge]:
        """Compaction, per compacted partition replica (each replica cleans its own log)."""
        cleaner = self.source.cleaner
        labels = ["topic", "partition"]
        ratio = _Gauge("strata_partition_dirty_ratio",
                       "Dirty bytes / cleanable bytes below the high watermark: the cleaner starts at the "
                       "topic's min.cleanable.dirty.ratio.", labels=labels)
        backlog = _Gauge("strata_partition_cleaner_backlog_bytes",
                         "Dirty bytes the cleaner could clean now (closed segments below the high watermark).",
                         labels=labels)
        cleaned = _Gauge("strata_partition_cleaned_offset", "Offsets below it are compacted on this replica.",
                         labels=labels)
        removable = _Gauge("strata_partition_cleaner_removable_offset",
                           "Tombstones may be removed below it: the minimum cleaned offset of all the "
                           "partition's replicas (a replica that is down holds it back).", labels=labels)
        last = _Gauge("strata_partition_last_clean_timestamp_seconds",
                      "When the last cleaning pass of this replica finished (Unix time; absent before the "
                      "first pass since the broker started).", labels=labels)
        done = _Gauge("strata_partition_cleaner_bytes_total",
                      "Log bytes read by cleaning passes of this replica since the broker started.",
                      labels=labels, kind="counter")
        total_backlog = 0
        for (topic, p), r in list(self.source.replicas.items()):
            lg = r.log
            if not lg.config.compact:
                continue
            lv = [topic, str(p)]
            try:
                st = lg.cleaning_status(r.high_watermark)
            except Exception:  # a log being reopened after a storage failure
                continue
            ratio.add_metric(lv, st.dirty_ratio)
            backlog.add_metric(lv, st.dirty_bytes)
            total_backlog += st.dirty_bytes
            cleaned.add_metric(lv, lg.cleaned_offset)
            if cleaner is not None:
                removable.add_metric(lv, cleaner.removable_offset(r))
            if lg.last_clean_time is not None:
                last.add_metric(lv, lg.last_clean_time / 1000)
            done.add_metric(lv, lg.bytes_cleaned)
        yield from (ratio, backlog, cleaned, removable, last, done)
        yield _Gauge("strata_cleaner_backlog_bytes", "Dirty bytes of all compacted partition replicas on this "
                     "broker that the cleaner could clean now.", value=total_backlog)
        if cleaner is not None:
            t = cleaner.totals
            yield _Gauge("strata_cleaner_passes_total", "Cleaning passes this broker finished since it started.",
                         value=t.passes, kind="counter")
            yield _Gauge("strata_cleaner_failures_total",
                         "Cleaning passes that failed (full disk, corrupt batch, storage error).",
                         value=t.failures, kind="counter")

    def _controller(self) -> Iterator[_Gauge]:
        """The cluster-wide view, exported by the active controller only (so ``sum()`` counts once)."""
        ctl = self.source.controller
        active = bool(ctl.is_leader)
        yield _Gauge("strata_controller_active", "1 on the broker that is the active controller.",
                                value=1 if active else 0)
        if not active:
            return
        live = set(ctl.live_brokers())
        offline = total = 0
        view = ctl.partitions
        for name, topic in ctl.image.topics.items():
            if name == METADATA_TOPIC:
                continue
            for p in range(len(topic.replicas)):
                total += 1
                v = view.get((name, p))
                if v is None or v.leader is None or v.leader not in live:
                    offline += 1
        yield _Gauge("strata_controller_live_brokers", "Brokers the controller heard from lately.",
                                value=len(live))
        yield _Gauge("strata_controller_view_entries_sent_total",
                     "Partition entries the controller sent in heartbeat answers (the view, when it changed).",
                     value=ctl.view_entries_sent, kind="counter")
        yield _Gauge("strata_controller_partitions", "Partitions in the cluster's metadata.",
                                value=total)
        yield _Gauge("strata_controller_offline_partitions",
                                "Partitions without a live leader, as the controller sees them.", value=offline)

    def _groups(self) -> Iterator[_Gauge]:
        """Consumer-group lag from the groups this broker coordinates (if the coordinator says)."""
        snap = getattr(self.source.coordinator, "lag_snapshot", None)
        if snap is None:
            return
        lag = _Gauge("strata_consumer_group_lag",
                                "Offsets a group is behind: high watermark - committed offset.",
                                labels=["group", "topic", "partition"])
        committed = _Gauge("strata_consumer_group_committed_offset",
                                      "The group's committed offset.", labels=["group", "topic", "partition"])
        for group, topic, p, off, n in _lag_rows(snap()):
            lv = [group, topic, str(p)]
            if n is not None:
                lag.add_metric(lv, n)
            if off is not None:
                committed.add_metric(lv, off)
        yield lag
        yield committed

    def _broker(self) -> Iterator[_Gauge]:
        ok, _ = self.ready()
        yield _Gauge("strata_broker_ready", "1 when /readyz answers 200.", value=1 if ok else 0)
        yield _Gauge("strata_broker_uptime_seconds", "Seconds since this broker process started.",
                                value=time.monotonic() - self.source.started_at)
        try:
            st = os.statvfs(self.source.data_dir)
        except OSError:
            return
        yield _Gauge("strata_data_dir_size_bytes", "Size of the filesystem holding the data dir.",
                                value=st.f_blocks * st.f_frsize)
        yield _Gauge("strata_data_dir_free_bytes",
                                "Bytes available to the broker on the data dir's filesystem.",
                                value=st.f_bavail * st.f_frsize)
