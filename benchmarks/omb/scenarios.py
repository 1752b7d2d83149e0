"""The load generator and the five scenarios, written once against the driver interface.

Every system runs exactly this code; a driver only supplies clients. Times for
latency come from ``time.perf_counter_ns`` (monotonic); the end-to-end
timestamp inside a payload is ``time.time_ns`` so that it would still mean
something if a consumer ran in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.omb.driver import Consumer, Driver, Producer
from benchmarks.omb.payload import PayloadFactory, send_time_ns
from benchmarks.omb.stats import CpuWindow, LatencyHistogram, SendSchedule, median

Progress = Callable[[str], None]
MIB = float(1 << 20)
DRAIN_TIMEOUT_S = 15.0
FAILOVER_PROBE_INTERVAL_S = 0.005
FAILOVER_PROBE_TIMEOUT_S = 2.0
FAILOVER_MAX_PROBES = 500


@dataclass(slots=True)
class Recorder:
    """Counters and histograms shared by a scenario's producers and consumers."""

    publish: LatencyHistogram = field(default_factory=LatencyHistogram)
    delay: LatencyHistogram = field(default_factory=LatencyHistogram)
    e2e: LatencyHistogram = field(default_factory=LatencyHistogram)
    sent: int = 0
    acked: int = 0
    failed: int = 0
    received: int = 0
    received_bytes: int = 0
    first_error: str | None = None

    def on_message(self, partition: int, payload: bytes, receive_ns: int) -> None:
        self.received += 1
        self.received_bytes += len(payload)
        self.e2e.record_ns(receive_ns - send_time_ns(payload))

    def fail(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"

    def reset_latency(self) -> None:
        """End of warm-up: what happened before says nothing about the steady state."""
        self.publish.reset()
        self.delay.reset()
        self.e2e.reset()

    @property
    def outstanding(self) -> int:
        return self.sent - self.acked - self.failed


async def produce(
    handle: Producer,
    producer_id: int,
    partitions: Sequence[int],
    schedule: SendSchedule,
    factory: PayloadFactory,
    max_in_flight: int,
    rec: Recorder,
    stop: asyncio.Event,
    limit: int | None = None,
) -> None:
    """Send records round-robin over ``partitions`` on ``schedule``, at most ``max_in_flight`` unacked.

    A send that waits for a free window slot starts late, and the publish delay
    records it: back-pressure is visible rather than silently lowering the rate.
    """
    window = asyncio.Semaphore(max_in_flight)
    perf = time.perf_counter_ns
    wall = time.time_ns
    count = len(partitions)
    fixed_rate = not schedule.unlimited

    def on_ack(started: int, fut: asyncio.Future[Any]) -> None:
        window.release()
        if fut.cancelled():
            rec.fail(asyncio.CancelledError("send cancelled"))
            return
        exc = fut.exception()
        if exc is not None:
            rec.fail(exc)
            return
        rec.acked += 1
        rec.publish.record_ns(perf() - started)

    i = 0
    while not stop.is_set() and (limit is None or i < limit):
        if fixed_rate:
            due = schedule.due_ns(i)
            now = perf()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
                if stop.is_set():
                    break
        await window.acquire()
        started = perf()
        try:
            fut = await handle.send(partitions[i % count], factory.make(wall(), producer_id, i))
        except Exception as exc:
            window.release()
            rec.sent += 1
            rec.fail(exc)
            i += 1
            await asyncio.sleep(0.01)  # a client that refuses sends must not spin the loop
            continue
        rec.sent += 1
        if fixed_rate:
            rec.delay.record_ns(schedule.delay_ns(i, started))
        fut.add_done_callback(lambda f, s=started: on_ack(s, f))
        i += 1
        if i & 63 == 0:
            await asyncio.sleep(0)  # let acks and consumers run between bursts


async def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll)
    return True


def topic_names(workload_name: str, topics: int) -> list[str]:
    return [f"{workload_name}-t{k}" for k in range(topics)]


def split_partitions(partitions: int, consumers: int) -> list[list[int]]:
    """Partitions of one subscription split round-robin over its consumers (none left idle)."""
    groups = [[p for p in range(partitions) if p % consumers == c] for c in range(consumers)]
    return [g for g in groups if g]


@dataclass(slots=True)
class Clients:
    """Everything a scenario opened, closed in one place whatever happened."""

    producers: list[Producer] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)

    async def close(self) -> None:
        for client in [*self.producers, *self.consumers]:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5)


async def open_consumers(
    driver: Driver,
    topics: Sequence[str],
    w: Any,
    rec: Recorder,
    clients: Clients,
    *,
    from_beginning: bool,
) -> int:
    """Open every subscription's consumers; returns how many subscriptions read each record."""
    for topic in topics:
        for _ in range(w.subscriptions_per_topic):
            for parts in split_partitions(w.partitions_per_topic, w.consumer_per_subscription):
                clients.consumers.append(
                    await driver.create_consumer(
                        topic, parts, rec.on_message, from_beginning=from_beginning
                    )
                )
    return w.subscriptions_per_topic


def _rates(msgs: int, nbytes: int, seconds: float) -> tuple[float, float]:
    if seconds <= 0:
        return 0.0, 0.0
    return msgs / seconds, nbytes / MIB / seconds


async def run_steady(driver: Driver, w: Any, progress: Progress) -> dict[str, Any]:
    """max-rate and fixed-rate: produce and consume for warm-up + duration, then report."""
    topics = topic_names(w.name, w.topics)
    for topic in topics:
        await driver.create_topic(topic, w.partitions_per_topic, w.replication_factor)
    rec = Recorder()
    clients = Clients()
    stop = asyncio.Event()
    try:
        subscriptions = await open_consumers(driver, topics, w, rec, clients, from_beginning=False)
        producers_total = w.topics * w.producers_per_topic
        per_producer_rate = w.producer_rate / producers_total
        factory = PayloadFactory(w.message_size)
        async with asyncio.TaskGroup() as tg:
            pid = 0
            for topic in topics:
                for k in range(w.producers_per_topic):
                    handle = await driver.create_producer(topic, lone=w.max_in_flight == 1)
                    clients.producers.append(handle)
                    parts = [
                        (p + k) % w.partitions_per_topic for p in range(w.partitions_per_topic)
                    ]
                    schedule = SendSchedule(per_producer_rate, time.perf_counter_ns())
                    tg.create_task(
                        produce(handle, pid, parts, schedule, factory, w.max_in_flight, rec, stop)
                    )
                    pid += 1
            try:
                await asyncio.sleep(w.warmup_s)
                rec.reset_latency()
                cpu = CpuWindow.begin(driver.server_pids())
                t0 = time.perf_counter()
                acked0, recv0, bytes0 = rec.acked, rec.received, rec.received_bytes
                end = t0 + w.duration_s
                while (left := end - time.perf_counter()) > 0:
                    await asyncio.sleep(min(1.0, left))
                    el = time.perf_counter() - t0
                    progress(
                        f"{el:4.1f}/{w.duration_s:g}s  publish {(rec.acked - acked0) / el:9.0f} msg/s"
                        f"  consume {(rec.received - recv0) / el:9.0f} msg/s  errors {rec.failed}"
                    )
                t1 = time.perf_counter()
                acked1, recv1, bytes1 = rec.acked, rec.received, rec.received_bytes
                usage = cpu.end()
            finally:
                stop.set()
        await wait_until(lambda: rec.outstanding == 0, DRAIN_TIMEOUT_S)
        await wait_until(lambda: rec.received >= rec.acked * subscriptions, DRAIN_TIMEOUT_S)
    finally:
        stop.set()
        await clients.close()
    seconds = t1 - t0
    pub_msgs, pub_mib = _rates(acked1 - acked0, (acked1 - acked0) * w.message_size, seconds)
    con_msgs, con_mib = _rates(recv1 - recv0, bytes1 - bytes0, seconds)
    return {
        "target_rate_msgs": w.producer_rate or None,
        "publish_rate_msgs": pub_msgs,
        "publish_rate_mib": pub_mib,
        "consume_rate_msgs": con_msgs,
        "consume_rate_mib": con_mib,
        "publish_latency_ms": rec.publish.summary_ms(),
        "publish_delay_ms": rec.delay.summary_ms(),
        "end_to_end_latency_ms": rec.e2e.summary_ms(),
        **usage.metrics((acked1 - acked0) * w.message_size / MIB),
        "server_cpu_percent_by_node": _percent_by_label(usage.server_seconds_by_label, seconds),
        "sent": rec.sent,
        "acked": rec.acked,
        "failed": rec.failed,
        "received": rec.received,
        "first_error": rec.first_error,
    }


async def run_backlog(driver: Driver, w: Any, progress: Progress) -> dict[str, Any]:
    """Build a backlog with no consumer, then time consumers reading it all from the start."""
    topics = topic_names(w.name, w.topics)
    for topic in topics:
        await driver.create_topic(topic, w.partitions_per_topic, w.replication_factor)
    total = math.ceil(w.backlog_bytes / w.message_size)
    producers_total = w.topics * w.producers_per_topic
    per_producer = math.ceil(total / producers_total)
    total = per_producer * producers_total
    rec = Recorder()
    clients = Clients()
    stop = asyncio.Event()
    factory = PayloadFactory(w.message_size)
    try:
        produce_cpu = CpuWindow.begin(driver.server_pids())
        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            pid = 0
            for topic in topics:
                for k in range(w.producers_per_topic):
                    handle = await driver.create_producer(topic)
                    clients.producers.append(handle)
                    parts = [
                        (p + k) % w.partitions_per_topic for p in range(w.partitions_per_topic)
                    ]
                    tg.create_task(
                        produce(
                            handle, pid, parts, SendSchedule(0, 0), factory, w.max_in_flight,
                            rec, stop, limit=per_producer,
                        )
                    )  # fmt: skip
                    pid += 1
            reporter = tg.create_task(_report_every_second(
                lambda: f"backlog {rec.acked * w.message_size / MIB:8.1f}/{total * w.message_size / MIB:.0f} MiB",
                progress,
            ))  # fmt: skip
            await wait_until(lambda: rec.sent >= total, 3600, poll=0.05)
            await wait_until(lambda: rec.outstanding == 0, DRAIN_TIMEOUT_S)
            reporter.cancel()
        produce_s = time.perf_counter() - t0
        produce_usage = produce_cpu.end()
        if rec.failed:
            raise RuntimeError(f"{rec.failed} backlog writes failed; first: {rec.first_error}")
        for handle in clients.producers:
            await handle.close()
        clients.producers.clear()

        read_cpu = CpuWindow.begin(driver.server_pids())
        t1 = time.perf_counter()
        subscriptions = await open_consumers(driver, topics, w, rec, clients, from_beginning=True)
        want = total * subscriptions
        timeout = max(120.0, w.backlog_bytes / MIB)  # generous: 1 MiB/s at worst
        reporter_task = asyncio.create_task(_report_every_second(
            lambda: f"catch-up {rec.received_bytes / MIB:8.1f}/{want * w.message_size / MIB:.0f} MiB",
            progress,
        ))  # fmt: skip
        try:
            done = await wait_until(lambda: rec.received >= want, timeout)
        finally:
            reporter_task.cancel()
        catchup_s = time.perf_counter() - t1
        read_usage = read_cpu.end()
        if not done:
            raise TimeoutError(f"catch-up read {rec.received}/{want} records in {timeout:.0f}s")
    finally:
        stop.set()
        await clients.close()
    return {
        "backlog_messages": total,
        "backlog_mib": total * w.message_size / MIB,
        "backlog_publish_rate_mib": total * w.message_size / MIB / produce_s,
        "catchup_seconds": catchup_s,
        "catchup_rate_msgs": want / catchup_s,
        "catchup_rate_mib": want * w.message_size / MIB / catchup_s,
        **produce_usage.metrics(total * w.message_size / MIB, prefix="backlog_"),
        **read_usage.metrics(want * w.message_size / MIB, prefix="catchup_"),
    }


def _percent_by_label(seconds_by_label: dict[str, float], window_s: float) -> dict[str, float]:
    """CPU seconds over a window as % of one core, per server."""
    if window_s <= 0:
        return {}
    return {label: 100.0 * sec / window_s for label, sec in seconds_by_label.items()}


async def _report_every_second(line: Callable[[], str], progress: Progress) -> None:
    while True:
        await asyncio.sleep(1.0)
        progress(line())


async def run_idle(driver: Driver, w: Any, progress: Progress) -> dict[str, Any]:
    """Create many partitions, let them settle (warm-up), then sample server CPU over the window."""
    topics = topic_names(w.name, w.topics)
    t0 = time.perf_counter()
    for topic in topics:
        await driver.create_topic(topic, w.partitions_per_topic, w.replication_factor)
    created_s = time.perf_counter() - t0
    progress(
        f"{w.total_partitions} partitions created in {created_s:.1f}s; settling {w.warmup_s:g}s"
    )
    await asyncio.sleep(w.warmup_s)
    cpu = CpuWindow.begin(driver.server_pids())
    await asyncio.sleep(w.duration_s)
    usage = cpu.end()
    window = usage.window_s
    per_node = _percent_by_label(usage.server_seconds_by_label, window)
    if not per_node:
        raise RuntimeError("no live server process to sample")
    return {
        "partitions": w.total_partitions,
        "replicas": w.replication_factor,
        "topic_create_seconds": created_s,
        "window_seconds": window,
        "cpu_percent_by_node": per_node,
        "cpu_percent_mean": sum(per_node.values()) / len(per_node),
        "cpu_percent_max": max(per_node.values()),
    }


async def run_failover(driver: Driver, w: Any, progress: Progress) -> dict[str, Any]:
    """SIGKILL a partition's leader under a stream of writes; time until the next acknowledged one.

    Writes are probes started every few milliseconds, each with its own
    timeout, so a write stuck on the dead leader does not hide the first one
    that succeeds elsewhere; only a probe *started* after the kill counts.
    """
    topic = topic_names(w.name, 1)[0]
    await driver.create_topic(topic, 1, w.replication_factor)
    handle = await driver.create_producer(topic)
    factory = PayloadFactory(w.message_size)
    perf = time.perf_counter_ns
    state: dict[str, int | None] = {"kill": None, "first": None}
    first_ack = asyncio.Event()
    probes = asyncio.Semaphore(FAILOVER_MAX_PROBES)
    stop = asyncio.Event()
    seq = 0

    async def probe(n: int) -> None:
        started = perf()
        try:
            async with asyncio.timeout(FAILOVER_PROBE_TIMEOUT_S):
                fut = await handle.send(0, factory.make(time.time_ns(), 0, n))
                await fut
        except Exception:  # a timeout or a refused write: the next probe tries again
            return
        finally:
            probes.release()
        acked = perf()
        kill = state["kill"]
        if kill is not None and started >= kill and state["first"] is None:
            state["first"] = acked
            first_ack.set()

    async def writer(tg: asyncio.TaskGroup) -> None:
        nonlocal seq
        while not stop.is_set():
            await probes.acquire()
            tg.create_task(probe(seq))
            seq += 1
            await asyncio.sleep(FAILOVER_PROBE_INTERVAL_S)

    trials: list[float] = []
    try:
        async with asyncio.TaskGroup() as tg:
            writer_task = tg.create_task(writer(tg))
            try:
                for trial in range(w.failover_trials):
                    await driver.wait_in_sync(topic, 0, 120)
                    await asyncio.sleep(0.5)  # writes flowing through the healthy leader
                    leader = await driver.find_leader(topic, 0)
                    state["first"] = None
                    first_ack.clear()
                    state["kill"] = perf()
                    await driver.kill_node(leader)
                    async with asyncio.timeout(120):
                        await first_ack.wait()
                    first = state["first"]
                    kill = state["kill"]
                    assert first is not None and kill is not None
                    trials.append((first - kill) / 1e6)
                    state["kill"] = None
                    progress(f"trial {trial + 1}/{w.failover_trials}: node {leader + 1} killed, "
                             f"next ack after {trials[-1]:.0f} ms")  # fmt: skip
                    await driver.restart_node(leader)
            finally:
                stop.set()
                writer_task.cancel()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.close(), 5)
    return {
        "trials": len(trials),
        "failover_ms_each": trials,
        "failover_ms_median": median(trials),
        "failover_ms_max": max(trials),
    }


SCENARIO_RUNNERS = {
    "max-rate": run_steady,
    "fixed-rate": run_steady,
    "backlog": run_backlog,
    "idle": run_idle,
    "failover": run_failover,
}
