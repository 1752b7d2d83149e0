"""Prometheus metrics for one broker, under ``strata_`` in base units.

Request counters and latency histograms are updated per request (cheap: one dict lookup and
an observe). Per-partition values are *not* updated on the hot path: a custom collector
reads them from the replicas when Prometheus scrapes.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from strata.client.errors import ErrorCode
from strata.client.protocol import Api

#: Sub-millisecond to tens of seconds: fsync'd produce on a laptop and a long-poll fetch both fit.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


def _api_name(api: int) -> str:
    try:
        return Api(api).name.lower()
    except ValueError:
        return str(api)


class BrokerMetrics:
    def __init__(self, broker) -> None:
        from strata.broker.http import MetricsServer

        self.broker = broker
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("strata_requests_total", "Requests handled, by API.", ["api"], registry=r)
        self.errors = Counter("strata_request_errors_total", "Requests answered with an error, by API and code.",
                              ["api", "code"], registry=r)
        self.latency = Histogram("strata_request_latency_seconds", "Time from a request's arrival to its answer.",
                                 ["api"], buckets=LATENCY_BUCKETS, registry=r)
        self.protocol_errors = Counter("strata_protocol_errors_total",
                                       "Connections closed for bad frames, by error code.", ["code"], registry=r)
        self._bytes_in = Counter("strata_bytes_in_total", "Record batch bytes produced, by topic.", ["topic"],
                                 registry=r)
        self._bytes_out = Counter("strata_bytes_out_total", "Record batch bytes fetched, by topic.", ["topic"],
                                  registry=r)
        self.connections = Gauge("strata_connections", "Open client and peer connections.", registry=r)
        self.elections = Counter("strata_raft_leader_elections_total",
                                 "Times this broker became leader of a Raft group.", registry=r)
        self.leadership_changes = Counter("strata_raft_leadership_changes_total",
                                          "Leadership changes seen by this broker's replicas.", registry=r)
        r.register(_PartitionCollector(broker))
        self._server = MetricsServer(r, broker.ready)
        self._api_children: dict[int, tuple] = {}

    async def start(self, host: str, port: int) -> None:
        await self._server.start(host, port)

    async def stop(self) -> None:
        await self._server.stop()

    def instrument(self, api: int, handler):
        children = self._api_children.get(api)
        if children is None:
            name = _api_name(api)
            children = (self.requests.labels(api=name), self.latency.labels(api=name), name)
            self._api_children[api] = children
        count, hist, name = children
        errors = self.errors

        async def wrapped(conn, hdr, payload):
            t0 = time.perf_counter()
            resp = await handler(conn, hdr, payload)
            count.inc()
            hist.observe(time.perf_counter() - t0)
            if resp is not None and resp.header.get("err"):
                try:
                    code = ErrorCode(resp.header["err"]).name
                except ValueError:
                    code = str(resp.header["err"])
                errors.labels(api=name, code=code).inc()
            return resp

        return wrapped

    def bytes_in(self, topic: str, n: int) -> None:
        self._bytes_in.labels(topic=topic).inc(n)

    def bytes_out(self, topic: str, n: int) -> None:
        self._bytes_out.labels(topic=topic).inc(n)

    def leadership_changed(self, replica) -> None:
        self.leadership_changes.inc()
        if replica.is_leader:
            self.elections.inc()


class _PartitionCollector:
    """Per-partition gauges, computed at scrape time from the replicas."""

    def __init__(self, broker) -> None:
        self.broker = broker

    def describe(self):
        return []

    def collect(self):
        labels = ["topic", "partition"]
        leo = GaugeMetricFamily("strata_partition_log_end_offset", "Next offset to be written.", labels=labels)
        hw = GaugeMetricFamily("strata_partition_high_watermark", "Offsets below it are committed.", labels=labels)
        lso = GaugeMetricFamily("strata_partition_log_start_offset", "First offset still held.", labels=labels)
        size = GaugeMetricFamily("strata_partition_size_bytes", "Bytes on disk.", labels=labels)
        segs = GaugeMetricFamily("strata_partition_segments", "Segment files.", labels=labels)
        leader = GaugeMetricFamily("strata_partition_leader", "1 if this broker leads the partition.", labels=labels)
        under = GaugeMetricFamily("strata_partition_under_replicated",
                                  "1 if this broker leads the partition and a replica is out of sync.", labels=labels)
        for (topic, p), r in list(self.broker.replicas.items()):
            lv = [topic, str(p)]
            lg = r.log
            leo.add_metric(lv, lg.log_end_offset)
            hw.add_metric(lv, r.high_watermark)
            lso.add_metric(lv, lg.log_start_offset)
            size.add_metric(lv, lg.size_bytes)
            segs.add_metric(lv, lg.segment_count)
            is_leader = r.is_leader
            leader.add_metric(lv, 1 if is_leader else 0)
            if is_leader:
                under.add_metric(lv, 1 if len(r.in_sync_replicas()) < len(r.voters) else 0)
        yield from (leo, hw, lso, size, segs, leader, under)
