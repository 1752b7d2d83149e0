"""The broker workload: Strata's own clients against a live cluster while the nemesis breaks it.

What it records, and why each piece is there:

* **Producers** (one idempotent ``AIOProducer`` per partition, ``acks=all``) send unique
  values ``"<partition>-<n>"``. ``send_invoke`` is recorded right before ``send()`` in one
  coroutine per producer, so invoke order is the order records enter the producer, and
  the completion is recorded from the delivery callback: ``ok(offset)`` on an
  acknowledgement, ``fail`` only when the record definitely never reached a broker's log
  (refused by ``send()`` itself, expired before it was ever sent, or refused by the broker
  with a code the client documents as "not appended"), ``info`` for everything else
  (timeouts, lost connections, retries that ran out): those may or may not be in the log.
* **Fixed-assignment consumers** (one ``AIOConsumer`` per partition, ``assign`` + ``seek(0)``)
  record every record they poll. Their offsets must climb without skipping a data record.
  ``auto_offset_reset="none"``: a position the broker calls out of range is *not* silently
  reset (that would hide a high watermark going backwards); the consumer notes it in the
  history and resumes at the same position.
* **A committing group reader** (group ``readers``): the client library has no group
  membership yet, so it uses the group coordinator's offsets directly over the wire
  (``OFFSET_COMMIT`` as an admin commit of the empty group, ``OFFSET_FETCH``). It reads
  every partition, commits its positions about once a second (recorded once acknowledged),
  and every few seconds "restarts": it fetches the committed offsets back (recorded with
  ``source="fetch"``) and resumes from them, the way a restarted group member would. The
  checker then catches a committed offset moving backwards.
* **A compacted topic** (``table``, one partition, ``cleanup.policy=compact`` with small
  segments, so that the brokers' cleaners run during the run): one more idempotent producer
  writes ``TABLE_KEYS`` keys over and over. Its final read is checked per key: each key's
  latest acknowledged value is what the read returns (the checker's ``stale-value`` rule),
  and the replicas' dumps compare logical content (``logical_digest``: each replica
  cleans its own log, so their bytes may differ while their meaning may not).
* **Final reads** (after the nemesis healed everything and the cluster settled): every
  partition read from offset 0 through raw ``FETCH`` requests to the partition's leader,
  up to its high watermark.
* **Replica dumps**: once every replica has caught up, the cluster is stopped cleanly and
  each broker's segment files are opened with ``strata.storage.Log`` and read below the
  final high watermark; the checker compares the bytes.
* **The leader oracle** asks every broker which partitions it leads (first hand, the
  highest leader epoch wins) and names the broker leading the most of them.

Everything runs on one asyncio loop inside the runner's workload thread; the runner's
``ctx.stop`` (a ``threading.Event``) is bridged into the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.client import TopicPartition
from strata.client.aio import AIOAdminClient, AIOConsumer, AIOProducer
from strata.client.batch import CorruptBatchError
from strata.client.conn import BrokerConnection, open_connection
from strata.client.errors import (
    ErrorCode,
    OffsetOutOfRangeError,
    StrataError,
    TimedOutError,
    TopicAlreadyExistsError,
)
from strata.client.producer.accumulator import RecordFuture
from strata.client.protocol import Api
from strata.client.records import decode_batches
from strata.storage import logical_digest
from strata.storage.log import Log
from tests.fault.history import DEFAULT_TOPIC, SendOk
from tests.fault.nemesis import Nemesis
from tests.fault.net import isolate, wait_until
from tests.fault.workload import RunContext

log = logging.getLogger("tests.fault.strata")

TOPIC = DEFAULT_TOPIC
#: The compacted topic: one partition, keys written over and over.
TABLE = "table"
TABLE_KEYS = 32
#: Segments roll every few seconds at the workload's pace, so passes run during the run
#: (the brokers' cleaner looks for due logs every ``cleaner_backoff_ms``, 15 s by default).
TABLE_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.1"}
#: Padding in each table value, so that segments fill faster than the keys alone would.
TABLE_PAD = "." * 100
GROUP = "readers"
BROKER_PORT = 9092
METRICS_PORT = 9100

#: Codes with which the broker refuses a produce *before* appending anything (the client's
#: ``_NOT_WRITTEN``): a record that ends with one of these definitely is not in the log.
NOT_WRITTEN = frozenset({ErrorCode.BATCH_TOO_LARGE, ErrorCode.INVALID_REQUEST,
                         ErrorCode.UNSUPPORTED_COMPRESSION, ErrorCode.FRAME_TOO_LARGE})
#: The client's wording for a batch that expired while still queued, never sent.
NEVER_SENT = ("expired unsent", "were not sent within")
#: Coordinator answers worth retrying elsewhere.
COORDINATOR_RETRY = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE,
                               ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.TIMED_OUT})


def broker_command(unsafe: tuple[str, ...] = ()) -> list[str]:
    """The node template for ``tests.fault.cluster.Cluster``: one broker per namespace.

    With ``unsafe`` switches the broker is started through ``tests.fault.unsafe_broker``,
    which sets the broker's test hooks first (a broker that breaks safety on purpose)."""
    args = ["--id", "{id}", "--data-dir", "{data_dir}", "--listen", "{addr}:{port}", "--peers", "{peers}",
            "--metrics-listen", f"{{addr}}:{METRICS_PORT}"]
    if unsafe:
        return [sys.executable, "-m", "tests.fault.unsafe_broker", *unsafe, "--", *args]
    return [sys.executable, "-m", "strata.broker.cli", "broker", "start", *args]


def classify_send_error(exc: BaseException) -> tuple[bool, str]:
    """``(definite, description)`` for a failed delivery: definite only if never appended."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TimedOutError) and any(s in str(exc) for s in NEVER_SENT):
        return True, text
    if isinstance(exc, StrataError) and not exc.retriable and exc.code in NOT_WRITTEN:
        return True, text
    return False, text


@dataclass(slots=True, frozen=True)
class PartitionState:
    """One partition as its leader reports it first hand."""

    partition: int
    leader: int
    epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    log_end_offset: int
    high_watermark: int


@dataclass(slots=True)
class Brokers:
    """Raw-protocol access to every broker by id, with connections opened on demand.

    Independent of the client library's metadata cache on purpose: the oracle and the
    final reads ask each broker directly and believe only first-hand leadership claims.
    """

    endpoints: dict[int, tuple[str, int]]
    timeout: float = 3.0
    conns: dict[int, BrokerConnection] = field(default_factory=dict)

    async def request(self, broker: int, api: Api, fields: dict[str, Any],
                      timeout: float | None = None) -> tuple[dict[str, Any], bytes]:
        """One request; a failed connection is dropped so the next call reconnects."""
        t = timeout or self.timeout
        conn = self.conns.get(broker)
        try:
            if conn is None or conn.closed:
                host, port = self.endpoints[broker]
                conn = await open_connection(host, port, client_id="fault-oracle", timeout=t)
                self.conns[broker] = conn
            hdr, payload = await conn.request(api, fields, timeout=t, raise_on_error=False)
            return hdr, bytes(payload)
        except (StrataError, OSError, TimeoutError):
            dead = self.conns.pop(broker, None)
            if dead is not None:
                with contextlib.suppress(Exception):
                    await dead.close()
            raise

    async def partitions(self, topic: str) -> dict[int, PartitionState]:
        """Each partition's state from the broker that leads it (highest epoch if several claim it)."""

        async def ask(bid: int) -> list[PartitionState]:
            try:
                hdr, _ = await self.request(bid, Api.METADATA, {"topics": [topic]})
            except (StrataError, OSError, TimeoutError):
                return []
            out = []
            for t in hdr.get("topics", ()):
                if t.get("name") != topic or t.get("err"):
                    continue
                for p in t.get("partitions", ()):
                    if p.get("leader") == bid:
                        out.append(PartitionState(p["partition"], bid, p.get("leader_epoch", -1),
                                                  tuple(p.get("replicas", ())),
                                                  tuple(p.get("isr", ())),
                                                  p.get("log_end_offset", -1),
                                                  p.get("high_watermark", -1)))
            return out

        claims = await asyncio.gather(*(ask(b) for b in sorted(self.endpoints)))
        best: dict[int, PartitionState] = {}
        for states in claims:
            for s in states:
                if s.partition not in best or s.epoch > best[s.partition].epoch:
                    best[s.partition] = s
        return best

    async def close(self) -> None:
        for conn in self.conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
        self.conns.clear()


async def create_topic(admin: AIOAdminClient, name: str, partitions: int, rf: int,
                       configs: dict[str, str] | None = None, timeout: float = 60.0) -> None:
    """Create a topic, retrying what the controller calls retriable (an election of the
    metadata group on a loaded machine); a retry that finds the topic made by an earlier
    attempt is success."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        try:
            await admin.create_topic(name, partitions, rf, configs, timeout_ms=30_000)
            return
        except TopicAlreadyExistsError:
            if attempts == 0:
                raise
            return
        except StrataError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
        attempts += 1
        await asyncio.sleep(0.5)


async def until(what: str, timeout: float, check: Callable[[], Awaitable[bool]],
                interval: float = 0.2) -> None:
    """Poll an async condition until true; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f}s")
        await asyncio.sleep(interval)


@dataclass(slots=True)
class StrataWorkload:
    """Producers, consumers, a committing group reader, final reads and replica dumps."""

    name: str = "strata"
    unsafe: tuple[str, ...] = ()
    command: list[str] = field(default_factory=list)
    port: int = BROKER_PORT
    election_timeout: float = 1.0
    """The broker's upper election timeout (50 ms ticks x 20)."""
    tmpfs_bytes: int = 64 << 20
    partitions: int = 0
    """Partitions of the topic; 0 means one per broker (each broker leads about one)."""
    replication_factor: int = 3
    window: int = 16
    """Unacknowledged records per producer at most."""
    pace: float = 0.02
    """Seconds between two sends of one producer (keeps 2 cores from saturating)."""
    commit_every: float = 1.0
    restart_group_every: float = 7.0
    drain_timeout: float = 60.0
    settle_timeout: float = 120.0
    request_timeout_ms: int = 5000
    _brokers: Brokers | None = None
    _final_hw: dict[int, int] = field(default_factory=dict)
    _table_hw: int | None = None
    _acked_high: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.command:
            self.command = broker_command(self.unsafe)

    # -- helpers -------------------------------------------------------------------

    def _endpoints(self, ctx: RunContext) -> dict[int, tuple[str, int]]:
        return {n.id: (n.host.addr, n.port) for n in ctx.cluster.nodes.values()}

    def _bootstrap(self, ctx: RunContext) -> str:
        return ",".join(n.endpoint for n in ctx.cluster.nodes.values())

    @staticmethod
    def _note(ctx: RunContext, who: str, detail: str) -> None:
        """A workload remark in the history (a ``note``: never counted as a fault)."""
        ctx.history.fault(who, "note", (), detail)

    # -- setup ---------------------------------------------------------------------

    def setup(self, ctx: RunContext) -> None:
        """Wait for every broker to be alive, create the topic, wait for its leaders."""
        asyncio.run(self._setup(ctx))

    async def _setup(self, ctx: RunContext) -> None:
        rf = min(self.replication_factor, len(ctx.cluster.ids))
        self.partitions = self.partitions or len(ctx.cluster.ids)
        async with AIOAdminClient(bootstrap=self._bootstrap(ctx)) as admin:
            async def all_alive() -> bool:
                try:
                    d = await admin.describe_cluster()
                except StrataError:
                    return False
                return d.controller is not None and all(b.alive for b in d.brokers)

            await until("every broker registered", 60, all_alive)
            await create_topic(admin, TOPIC, self.partitions, rf)
            ctx.history.compacted_topic(TABLE)
            await create_topic(admin, TABLE, 1, rf, TABLE_CONFIGS)
        brokers = Brokers(self._endpoints(ctx))
        try:
            async def led() -> bool:
                return (len(await brokers.partitions(TOPIC)) == self.partitions
                        and len(await brokers.partitions(TABLE)) == 1)

            await until("a leader for every partition", 60, led)
        finally:
            await brokers.close()

    # -- the oracle ----------------------------------------------------------------

    def leader(self, ctx: RunContext) -> int | None:
        """The broker leading most of the workload's partitions right now (None if none)."""
        return asyncio.run(self._leader(ctx))

    async def _leader(self, ctx: RunContext) -> int | None:
        brokers = Brokers(self._endpoints(ctx), timeout=1.0)
        try:
            states = await brokers.partitions(TOPIC)
        finally:
            await brokers.close()
        if not states:
            return None
        counts = Counter(s.leader for s in states.values())
        first = states.get(0)
        return max(counts, key=lambda b: (counts[b], first is not None and first.leader == b))

    # -- run -----------------------------------------------------------------------

    def run(self, ctx: RunContext) -> None:
        """Drive every client until ``ctx.stop``; then flush producers and drain consumers."""
        # The clients log every failed metadata refresh; under a nemesis that is noise
        # (what matters is in the history and the brokers' logs).
        logging.getLogger("strata.client").setLevel(logging.ERROR)
        asyncio.run(self._run(ctx))

    async def _run(self, ctx: RunContext) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        producers_done = asyncio.Event()
        waiter = loop.run_in_executor(None, ctx.stop.wait)
        waiter.add_done_callback(lambda _: stop.set())
        self._brokers = Brokers(self._endpoints(ctx))
        try:
            async with asyncio.TaskGroup() as tg:
                producing = [tg.create_task(self._produce(ctx, p, stop))
                             for p in range(self.partitions)]
                producing.append(tg.create_task(self._produce(ctx, 0, stop, TABLE)))
                for p in range(self.partitions):
                    tg.create_task(self._consume(ctx, p, stop, producers_done))
                tg.create_task(self._group_reader(ctx, stop, producers_done))
                await asyncio.gather(*producing)
                producers_done.set()
        finally:
            await self._brokers.close()
            self._brokers = None

    async def _produce(self, ctx: RunContext, partition: int, stop: asyncio.Event,
                       topic: str = TOPIC) -> None:
        """One producer of one partition; to ``TABLE`` it writes keyed values."""
        h = ctx.history
        loop = asyncio.get_running_loop()
        name = f"producer-{partition}" if topic == TOPIC else f"producer-{topic}-{partition}"
        room = asyncio.Semaphore(self.window)
        pending: set[RecordFuture] = set()

        def done(op: int, fut: RecordFuture) -> None:
            pending.discard(fut)
            room.release()
            exc = fut.exception(0)
            if exc is None:
                offset = fut.result(0).offset
                h.send_ok(op, offset)
                self._acked_high[(topic, partition)] = max(self._acked_high.get((topic, partition), -1), offset)
                return
            definite, text = classify_send_error(exc)
            (h.send_fail if definite else h.send_info)(op, text)

        producer = AIOProducer(bootstrap=self._bootstrap(ctx), acks="all", linger_ms=2,
                               client_id=name, request_timeout_ms=self.request_timeout_ms,
                               retry_backoff_max_ms=500)
        await producer.start()
        try:
            n = 0
            while not stop.is_set():
                await room.acquire()
                key: str | None = None
                if topic == TOPIC:
                    value = f"{partition}-{n}"
                else:
                    key, value = f"k{n % TABLE_KEYS}", f"{topic}-{n}{TABLE_PAD}"
                n += 1
                op = h.send_invoke(name, partition, value, topic=topic, key=key)
                try:
                    fut = await producer.send(topic, value.encode(), partition=partition,
                                              key=None if key is None else key.encode())
                except StrataError as exc:  # refused before it was buffered: never sent
                    h.send_fail(op, f"send() raised {type(exc).__name__}: {exc}")
                    room.release()
                else:
                    pending.add(fut)
                    fut.add_done_callback(
                        lambda f, op=op: loop.call_soon_threadsafe(done, op, f))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.pace)
            # The cluster is healed now: every buffered record gets its answer (bounded by
            # the producer's delivery timeout), then the producer closes.
            with contextlib.suppress(StrataError):
                await producer.flush(timeout=self.drain_timeout)
        finally:
            await producer.close(timeout=5)
            # Completions scheduled by close() (failures of what was left) land in the history.
            await asyncio.sleep(0)

    async def _end_offset(self, partition: int) -> int:
        """The partition's high watermark from its leader, first hand (-1 if no leader)."""
        assert self._brokers is not None
        states = await self._brokers.partitions(TOPIC)
        s = states.get(partition)
        return s.high_watermark if s is not None else -1

    async def _consume(self, ctx: RunContext, partition: int, stop: asyncio.Event,
                       producers_done: asyncio.Event) -> None:
        h = ctx.history
        name = f"consumer-{partition}"
        tp = TopicPartition(TOPIC, partition)
        position = 0
        h.seek(name, partition, 0)
        target: int | None = None
        drain_deadline: float | None = None
        consumer: AIOConsumer | None = None
        try:
            while True:
                if producers_done.is_set():
                    if drain_deadline is None:
                        drain_deadline = time.monotonic() + self.drain_timeout
                    if target is None or position >= target:
                        with contextlib.suppress(StrataError, OSError, TimeoutError):
                            target = await self._end_offset(partition)
                        if target is not None and target >= 0 and position >= target:
                            return
                    if time.monotonic() > drain_deadline:
                        self._note(ctx, name, f"drain gave up at offset {position} "
                                              f"(high watermark {target})")
                        return
                try:
                    if consumer is None:
                        consumer = AIOConsumer(bootstrap=self._bootstrap(ctx), client_id=name,
                                               auto_offset_reset="none", fetch_max_wait_ms=300,
                                               request_timeout_ms=self.request_timeout_ms)
                        await consumer.assign([tp])
                        await consumer.seek(tp, position)
                    records = await consumer.poll(timeout_ms=300)
                    for r in records:
                        h.poll(name, partition, r.offset, (r.value or b"").decode(),
                               fixed_assignment=True)
                        position = r.offset + 1
                    # Past trailing control batches too, which poll() never returns.
                    position = max(position, await consumer.position(tp))
                except OffsetOutOfRangeError as exc:
                    self._note(ctx, name, f"out of range at {position}: {exc}; resuming there")
                    if consumer is not None:
                        await consumer.seek(tp, position)
                except (StrataError, OSError, TimeoutError) as exc:
                    # A new consumer resumes at the same position: to the checker this is
                    # one consumer that must still read every offset in order.
                    self._note(ctx, name, f"consumer failed at {position}: {exc!r}; new consumer")
                    if consumer is not None:
                        await consumer.close()
                    consumer = None
                    await asyncio.sleep(0.2)
        finally:
            if consumer is not None:
                await consumer.close()

    # -- the group reader -------------------------------------------------------------

    async def _group_call(self, brokers: Brokers, api: Api, fields: dict[str, Any],
                          timeout: float = 10.0) -> dict[str, Any] | None:
        """A request to the group's coordinator, found and followed; None if none answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for bid in sorted(brokers.endpoints):
                try:
                    hdr, _ = await brokers.request(bid, Api.FIND_COORDINATOR, {"group": GROUP})
                    if hdr.get("err"):
                        continue
                    coordinator = hdr["coordinator"]
                    hdr, _ = await brokers.request(coordinator, api, {"group": GROUP, **fields},
                                                   timeout=5.0)
                except (StrataError, OSError, TimeoutError, KeyError):
                    continue
                if hdr.get("err") and ErrorCode.parse(hdr["err"]) in COORDINATOR_RETRY:
                    continue
                return hdr
            await asyncio.sleep(0.2)
        return None

    async def _commit(self, ctx: RunContext, brokers: Brokers, positions: dict[int, int]) -> None:
        """Admin commit of the positions; recorded only for partitions the broker accepted."""
        hdr = await self._group_call(brokers, Api.OFFSET_COMMIT, {
            "member_id": "", "member_epoch": -1,
            "partitions": [{"topic": TOPIC, "partition": p, "offset": o}
                           for p, o in sorted(positions.items())]})
        if hdr is None or hdr.get("err"):
            return
        for p in hdr.get("partitions", ()):
            if not p.get("err"):
                ctx.history.commit(GROUP, p["partition"], positions[p["partition"]])

    async def _fetch_committed(self, ctx: RunContext, brokers: Brokers) -> dict[int, int] | None:
        hdr = await self._group_call(brokers, Api.OFFSET_FETCH, {"partitions": None})
        if hdr is None or hdr.get("err"):
            return None
        out = {}
        for p in hdr.get("partitions", ()):
            if p.get("topic") == TOPIC and not p.get("err") and p.get("offset", -1) >= 0:
                out[p["partition"]] = p["offset"]
                ctx.history.commit(GROUP, p["partition"], p["offset"], source="fetch")
        return out

    async def _group_reader(self, ctx: RunContext, stop: asyncio.Event,
                            producers_done: asyncio.Event) -> None:
        brokers = Brokers(self._endpoints(ctx))
        positions = {p: 0 for p in range(self.partitions)}
        generation = 0
        try:
            while not producers_done.is_set():
                committed = await self._fetch_committed(ctx, brokers)
                if committed is not None:
                    positions.update(committed)
                generation += 1
                name = f"group-{GROUP}-{generation}"
                consumer = AIOConsumer(bootstrap=self._bootstrap(ctx), client_id=name,
                                       auto_offset_reset="earliest", fetch_max_wait_ms=300,
                                       request_timeout_ms=self.request_timeout_ms)
                try:
                    tps = [TopicPartition(TOPIC, p) for p in range(self.partitions)]
                    await consumer.assign(tps)
                    for tp in tps:
                        await consumer.seek(tp, positions[tp.partition])
                    restart_at = time.monotonic() + self.restart_group_every
                    commit_at = time.monotonic() + self.commit_every
                    while time.monotonic() < restart_at and not producers_done.is_set():
                        records = await consumer.poll(timeout_ms=300)
                        for r in records:
                            ctx.history.poll(name, r.partition, r.offset,
                                             (r.value or b"").decode(), fixed_assignment=False)
                            positions[r.partition] = r.offset + 1
                        if time.monotonic() >= commit_at:
                            await self._commit(ctx, brokers, dict(positions))
                            commit_at = time.monotonic() + self.commit_every
                except (StrataError, OSError, TimeoutError) as exc:
                    self._note(ctx, name, f"group reader failed: {exc!r}; restarting it")
                    await asyncio.sleep(0.2)
                finally:
                    await consumer.close()
            await self._commit(ctx, brokers, dict(positions))
            await self._fetch_committed(ctx, brokers)
        finally:
            await brokers.close()

    # -- after settling -------------------------------------------------------------

    def final(self, ctx: RunContext) -> None:
        """Wait for every replica to catch up, read every partition, stop, dump replicas."""
        asyncio.run(self._final_reads(ctx))
        ctx.cluster.stop_all(clean=True)
        self._dump_replicas(ctx)

    async def _final_reads(self, ctx: RunContext) -> None:
        brokers = Brokers(self._endpoints(ctx))
        try:
            async def caught_up() -> bool:
                states = [*(await brokers.partitions(TOPIC)).values(), *(await brokers.partitions(TABLE)).values()]
                return len(states) == self.partitions + 1 and all(
                    set(s.isr) == set(s.replicas) and s.log_end_offset == s.high_watermark
                    for s in states)

            try:
                await until("every replica in sync", self.settle_timeout, caught_up, 0.5)
            except TimeoutError as exc:  # read anyway: the dumps will show who lags
                self._note(ctx, "final", str(exc))
            for p in range(self.partitions):
                try:
                    records, hw = await self._read_partition(brokers, p)
                except TimeoutError as exc:
                    # No final read: the checker reports ``missing-final-read`` for it.
                    self._note(ctx, "final", str(exc))
                    continue
                self._final_hw[p] = hw
                ctx.history.final_read(p, [(o, v) for o, _, v in records])
            try:
                records, hw = await self._read_partition(brokers, 0, topic=TABLE)
            except TimeoutError as exc:
                self._note(ctx, "final", str(exc))
            else:
                self._table_hw = hw
                ctx.history.table_read(0, [(o, k or "", v) for o, k, v in records], TABLE)
        finally:
            await brokers.close()

    async def _read_partition(self, brokers: Brokers, partition: int, timeout: float = 120.0,
                              topic: str = TOPIC) -> tuple[list[tuple[int, str | None, str]], int]:
        """Every data record (offset, key, value) below the leader's high watermark, from offset 0."""
        deadline = time.monotonic() + timeout
        records: list[tuple[int, str | None, str]] = []
        offset = 0
        last_error = ""
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"final read of {topic}-{partition} stuck at offset {offset}"
                                   f"{': ' + last_error if last_error else ''}")
            state = (await brokers.partitions(topic)).get(partition)
            if state is None:
                await asyncio.sleep(0.2)
                continue
            try:
                hdr, payload = await brokers.request(state.leader, Api.FETCH, {
                    "max_wait_ms": 0, "partitions": [{"topic": topic, "partition": partition,
                                                      "offset": offset, "max_bytes": 1 << 20}]})
            except (StrataError, OSError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            part = hdr["partitions"][0]
            if part.get("err"):
                last_error = (f"broker {state.leader} answered "
                              f"{ErrorCode.parse(part['err']).name}: {part.get('msg', '')}")
                await asyncio.sleep(0.2)
                continue
            data = payload[part["pos"]:part["pos"] + part["size"]]
            hw = part["high_watermark"]
            if not data:
                if offset >= hw:
                    return records, hw
                continue
            for batch in decode_batches(data):
                if not batch.is_control:
                    records.extend((r.offset, None if r.key is None else r.key.decode(), (r.value or b"").decode())
                                   for r in batch.records if r.offset >= offset)
                offset = batch.next_offset

    def _dump_replicas(self, ctx: RunContext) -> None:
        """Each stopped broker's copy of each partition below the final high watermark."""
        for node in ctx.cluster.nodes.values():
            for p, hw in sorted(self._final_hw.items()):
                path = Path(node.data_dir) / f"{TOPIC}-{p}"
                if not path.is_dir():
                    continue
                data, problem = read_log(path, hw)
                if problem:
                    self._note(ctx, "final", f"broker {node.id} {TOPIC}-{p}: {problem}")
                ctx.history.replica_dump(node.id, p, hw, data=data)
            table = Path(node.data_dir) / f"{TABLE}-0"
            if self._table_hw is not None and table.is_dir():
                lg = Log.open(str(table))
                try:
                    digest = logical_digest(lg, max_offset=self._table_hw)
                finally:
                    lg.close()
                ctx.history.replica_dump(node.id, 0, self._table_hw, digest=digest, topic=TABLE)


def read_log(path: Path, high_watermark: int) -> tuple[bytes, str]:
    """The raw batches of a partition directory below ``high_watermark`` (storage's own reader).

    Returns the bytes and, if the read stopped early, why: a corrupt batch below the high
    watermark that the broker never repaired ends the dump there, so the replica shows up
    as divergent (shorter) instead of crashing the run.
    """
    out = bytearray()
    log_ = Log.open(str(path))
    problem = ""
    try:
        offset = log_.log_start_offset
        while offset < high_watermark:
            try:
                chunk = log_.read(offset, 1 << 20, max_offset=high_watermark)
            except CorruptBatchError as exc:
                problem = f"corrupt batch at offset {offset}, below the high watermark: {exc}"
                break
            if chunk is None:
                break
            out += chunk.read_bytes()
            offset = chunk.next_offset
    finally:
        log_.close()
    return bytes(out), problem


def isolate_and_kill_leader(workload: StrataWorkload, ctx: RunContext, nemesis: Nemesis,
                            timeout: float = 60.0) -> None:
    """The scenario that loses writes when a leader acknowledges before commit.

    Cut the broker leading most partitions off from its followers (the client still
    reaches it), keep producing until the followers have elected new leaders and some
    writes were acknowledged meanwhile, then SIGKILL the old leader, heal, and restart it.
    A correct broker acknowledged nothing it could not commit, so nothing is lost; one
    started with the ``ack-before-commit`` test hook acknowledged the isolated leader's appends,
    which the new leaders never had: they are truncated away, and the checker says ``lost``.
    Every wait is for a condition, bounded by ``timeout``.
    """
    h, cluster = ctx.history, ctx.cluster
    assert nemesis.network is not None, "the scenario needs the namespaced network"

    def acked() -> int:
        return sum(1 for e in h.events() if isinstance(e, SendOk))

    wait_until(lambda: acked() > 100, timeout, what="100 acknowledged writes before the fault")
    old = workload.leader(ctx)
    assert old is not None, "no leader to isolate"
    before = asyncio.run(_partition_states(workload, ctx))
    led = {p for p, s in before.items() if s.leader == old}
    part = isolate(cluster.ids, old)
    h.fault("partition-isolate", "start", (old,), f"{part.description}; it led partitions {sorted(led)}")
    nemesis.network.apply(part)
    cut_at = acked()

    def moved() -> bool:
        now = asyncio.run(_partition_states(workload, ctx))
        return all(p in now and now[p].leader != old and now[p].epoch > before[p].epoch
                   for p in led)

    wait_until(moved, timeout, what=f"new leaders for partitions {sorted(led)} of broker {old}")
    wait_until(lambda: acked() > cut_at, timeout, what="writes acknowledged during the partition")
    h.fault("kill", "start", (old,), "SIGKILL the isolated old leader")
    cluster.kill(old)
    nemesis.network.heal()
    h.fault("partition-isolate", "end", (old,))
    cluster.start(old)
    cluster.wait_ready(old)
    h.fault("kill", "end", (old,))


async def _partition_states(workload: StrataWorkload, ctx: RunContext) -> dict[int, PartitionState]:
    brokers = Brokers(workload._endpoints(ctx), timeout=1.0)
    try:
        return await brokers.partitions(TOPIC)
    finally:
        await brokers.close()


def unsafe_ack_before_commit() -> StrataWorkload:
    """The workload against brokers that acknowledge ``acks=all`` before commit (must lose writes)."""
    return StrataWorkload(name="strata-unsafe-ack", unsafe=("ack-before-commit",))
