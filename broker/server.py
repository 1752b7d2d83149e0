"""The broker process: lifecycle and wiring, nothing else.

Startup: bind the listeners (a port that cannot be bound is fatal, before anything else is
touched), open the controller's metadata replica (everything else follows from its log),
start the partition replicas this broker is assigned, then serve. SIGTERM shuts down
cleanly: leadership is handed to in-sync followers, logs are flushed and closed.

The parts, and which way they point (``docs/internals.md``): front-ends (the native
protocol, the metrics HTTP port) call the typed core (``core/``: partitions, admin, groups);
the core drives replication (``replication/``: replicas, Raft, peer transport) and the
cluster metadata (``cluster/``); replication drives storage.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from strata.broker.cluster.channel import ControllerChannel
from strata.broker.cluster.cleaning import RemovableOffsets
from strata.broker.cluster.controller import HEARTBEAT_S, Controller, ControllerSettings
from strata.broker.cluster.heartbeat import BrokerHeartbeater
from strata.broker.cluster.metadata import METADATA_TOPIC, OFFSETS_TOPIC
from strata.broker.cluster.view import ClusterView
from strata.broker.config import EXTERNAL, INTERNAL, KAFKA, KAFKA_EXTERNAL, BrokerConfig
from strata.broker.core.admin import AdminService
from strata.broker.core.auth import AllowAll
from strata.broker.core.partitions import PartitionHooks, PartitionService
from strata.broker.frontends.kafka.handlers import KafkaContext, handler_table
from strata.broker.frontends.kafka.listener import KafkaListener
from strata.broker.frontends.native.handlers import NativeContext, NativeHandlers
from strata.broker.frontends.native.listener import NativeListener
from strata.broker.frontends.stream import Listener
from strata.broker.groups.coordinator import GroupCoordinator
from strata.broker.metrics import BrokerMetrics, MetricsSource
from strata.broker.replication.cleaning import CleanerService
from strata.broker.replication.hardstate import HardStateCorruptError
from strata.broker.replication.manager import Assignment, ReplicaManager
from strata.broker.replication.replica import Replica
from strata.broker.replication.transport import PeerTransport
from strata.client.tasks import TaskOwner
from strata.storage import GroupCommit

log = logging.getLogger("strata.broker")

LOCK_FILE = ".lock"
#: How long one loop turn may spend opening new replicas (a new topic's, a restart's).
RECONCILE_SLICE_S = 0.02


class StartupError(Exception):
    """The broker cannot start (a port is taken, the data directory is in use): fatal, with
    what to do about it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def lock_data_dir(data_dir: Path) -> int:
    """Take the data directory for this process (Kafka's ``.lock``): an exclusive ``flock``
    held until the process exits. Two brokers on one directory would both write its logs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StartupError(f"data directory {data_dir} is in use by pid {holder}",
                               "stop the broker that runs on it, or give this one its own --data-dir") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.data_dir = Path(config.data_dir)
        self.cluster_id = "strata-" + "-".join(str(i) for i in sorted(config.peers))
        self.started_at = time.monotonic()
        self._stop = asyncio.Event()
        self._reconcile_pending = False
        #: The metadata changed since the last full reconcile.
        self._metadata_dirty = False
        self.tasks = TaskOwner(log, f"broker {self.node_id}")
        self.group_commit = GroupCommit()
        self.transport = PeerTransport(self.node_id, config.peers)
        self.controller = Controller(
            ControllerSettings(node_id=self.node_id, voters=sorted(config.peers),
                               max_partitions_per_topic=config.limits.max_partitions_per_topic,
                               offsets_partitions=config.offsets_partitions,
                               default_replication_factor=config.default_replication_factor,
                               default_partitions=config.default_partitions),
            on_change=self.metadata_changed, tasks=self.tasks,
            liveness_s=lambda: self.replicas.liveness.now * config.raft.tick_ms / 1000)
        self.replicas = ReplicaManager(config, group_commit=self.group_commit, transport=self.transport,
                                       tasks=self.tasks, on_leadership=self._leadership_changed)
        self.view = ClusterView(self.node_id, self.replicas.replicas)
        self.channel = ControllerChannel(self.node_id, config.peers, lambda: self.controller.leader_id)
        self.removable = RemovableOffsets(self.replicas.compacted)  # reports compacted replicas only
        self.heartbeater = BrokerHeartbeater(config, self.controller, self.view, self.replicas, self.channel,
                                             self.removable)
        self.cleaner = CleanerService(config, self.replicas.replicas, self.removable.removable_offset,
                                      trim_head_topics=frozenset({OFFSETS_TOPIC}))
        authorizer = AllowAll()
        self.coordinator = GroupCoordinator(node_id=self.node_id, controller=self.controller, view=self.view,
                                            broker_address=self.broker_address,
                                            offsets_retention_ms=config.offsets_retention_minutes * 60_000,
                                            authorizer=authorizer)
        self.metrics = BrokerMetrics(MetricsSource(
            node_id=self.node_id, metrics_listen=config.metrics_listen, replicas=self.replicas.replicas,
            controller=self.controller, coordinator=self.coordinator, ready=self.ready, data_dir=self.data_dir,
            started_at=self.started_at, group_commit=self.group_commit,
            cleaner=self.cleaner, replica_manager=self.replicas))
        self.partitions = PartitionService(
            node_id=self.node_id, replicas=self.replicas.replicas, controller=self.controller, view=self.view,
            limits=config.limits, authorizer=authorizer,
            hooks=PartitionHooks(self.metrics.bytes_in, self.metrics.bytes_out))
        self.admin = AdminService(config=config, controller=self.controller, view=self.view, authorizer=authorizer,
                                  cluster_id=self.cluster_id, broker_address=self.broker_address,
                                  forward=self.channel.request)
        self._lock_fd: int | None = None
        handlers = NativeHandlers(NativeContext(
            node_id=self.node_id, cluster_id=self.cluster_id, limits=config.limits, partitions=self.partitions,
            admin=self.admin, groups=self.coordinator, controller=self.controller, replicas=self.replicas,
            broker_address=self.broker_address))
        native = [(INTERNAL, "--listen", config.listen)]
        if config.external_listen is not None:
            native.append((EXTERNAL, "--external-listen", config.external_listen))
        #: (flag, address, listener), bound in this order at start.
        self.listeners: list[tuple[str, tuple[str, int], Listener]] = [
            (flag, addr, NativeListener(
                name, config.limits, handlers.table, instrument=self.metrics.instrument,
                on_protocol_error=lambda code: self.metrics.protocol_errors.labels(code=code.name).inc(),
                on_connections=self._count_connections))
            for name, flag, addr in native
        ]
        kafka_listeners = [(name, flag, addr) for name, flag, addr in (
            (KAFKA, "--kafka-listen", config.kafka_listen),
            (KAFKA_EXTERNAL, "--kafka-external-listen", config.kafka_external_listen)) if addr is not None]
        if kafka_listeners:
            kafka = KafkaContext(config=config, cluster_id=self.cluster_id, partitions=self.partitions,
                                 admin=self.admin, groups=self.coordinator, controller=self.controller,
                                 data_dir=self.data_dir, broker_address=self.broker_address)
            table = handler_table(kafka)
            self.listeners.extend((flag, addr, KafkaListener(
                name, config.limits, table,
                instrument=lambda api, h: self.metrics.instrument(api, h, _kafka_error),
                on_protocol_error=lambda what: self.metrics.protocol_errors.labels(code=f"kafka_{what}").inc(),
                on_connections=self._count_connections)) for name, flag, addr in kafka_listeners)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # The data directory, then the listeners, before anything else: a directory another
        # broker holds, or a port that is taken (an earlier cluster may still be running),
        # must stop this broker before it opens a log or talks to a peer.
        self._lock_fd = lock_data_dir(self.data_dir)
        for flag, (host, port), listener in self.listeners:
            await self._bind(flag, host, port, listener.start)
        if self.config.metrics_listen:
            await self._bind("--metrics-listen", *self.config.metrics_listen, self.metrics.start)
        # The Raft hard states (terms, votes) of every group: a journal damaged before its
        # end (not a torn tail) stops the broker here: starting would forget votes it gave.
        try:
            self.replicas.hard_state.open()
        except HardStateCorruptError as exc:
            raise StartupError(str(exc), exc.hint) from None
        # The controller's metadata replica first: everything else follows from its log.
        self.controller.replica = self.replicas.open(
            (METADATA_TOPIC, 0), sorted(self.config.peers), on_commit=self.controller.on_commit,
            metadata_log=True)
        self.transport.start()
        self.coordinator.start()
        self.tasks.spawn(self.replicas.ticker(), name="ticker")
        self.tasks.spawn(self.heartbeater.run(), name="heartbeat")
        self.tasks.spawn(self.replicas.retention(), name="retention")
        self.tasks.spawn(self.cleaner.run(), name="log-cleaner")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("broker %d listening on %s (data %s)", self.node_id,
                 ", ".join(f"{h}:{p}" for _, (h, p), _ in self.listeners), self.data_dir)
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("broker %d shutting down: handing over leadership", self.node_id)
        for _, _, listener in self.listeners:
            listener.stop_accepting()
        await self.replicas.transfer_all_leadership(timeout_s=5.0, poll_s=HEARTBEAT_S / 5)
        await self.tasks.close()
        await self.coordinator.stop()
        await self.replicas.stop()
        await self.transport.stop()
        await self.channel.close()
        for _, _, listener in self.listeners:
            listener.close_all()
        self.replicas.close()
        await self.metrics.stop()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        log.info("broker %d stopped", self.node_id)

    # -- wiring ----------------------------------------------------------------------------

    def metadata_changed(self) -> None:
        self._metadata_dirty = True
        self._schedule_reconcile()

    def _schedule_reconcile(self) -> None:
        if not self._reconcile_pending:
            self._reconcile_pending = True
            asyncio.get_running_loop().call_soon(self._reconcile)

    def _reconcile(self) -> None:
        """Hold the replicas the metadata assigns to this broker (and nothing else)."""
        self._reconcile_pending = False
        if not self._metadata_dirty:
            # Only replicas left to open from the last pass, the metadata unchanged since:
            # open the next slice of them without walking every partition of the cluster
            # again (a new topic of 1,000 partitions takes hundreds of slices).
            if self.replicas.open_pending(budget_s=RECONCILE_SLICE_S):
                self._schedule_reconcile()
            self.controller.ensure_offsets_topic()
            return
        self._metadata_dirty = False
        image = self.controller.image
        wanted: dict[tuple[str, int], Assignment] = {}
        for name, topic in image.topics.items():
            for p, reps in enumerate(topic.replicas):
                if self.node_id in reps:
                    wanted[(name, p)] = Assignment(reps, topic.topic_id, topic.configs)
        more = self.replicas.reconcile(wanted, keep=[(METADATA_TOPIC, 0)],
                                       on_commit_for=lambda key: self.coordinator.on_commit
                                       if key[0] == OFFSETS_TOPIC else None,
                                       budget_s=RECONCILE_SLICE_S)
        if more:
            self._schedule_reconcile()  # the rest in the next loop turn, after I/O and ticks
        self.controller.ensure_offsets_topic()

    def _leadership_changed(self, replica: Replica) -> None:
        if replica.key[0] == OFFSETS_TOPIC:
            self.coordinator.leadership_changed(replica)
        elif replica.key[0] == METADATA_TOPIC:
            self.controller.leadership_changed(replica)
        self.metrics.leadership_changed(replica)

    async def _bind(self, flag: str, host: str, port: int,
                    start: Callable[[str, int], Awaitable[object]]) -> None:
        try:
            await start(host, port)
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}",
                               "is another broker (or an earlier `make run`) still running on that port? "
                               "stop it, or choose another port") from None

    def _count_connections(self, _n: int) -> None:
        self.metrics.connections.set(sum(len(x.connections) for _, _, x in self.listeners))

    def broker_address(self, bid: int, listener: str = INTERNAL) -> tuple[str, int] | None:
        """Where a client of ``listener`` reaches broker ``bid``.

        Internal: its registered (advertised) address, else its ``--peers`` address. Other
        listeners: the address the broker registered for that listener, or None while it has
        not (a peer's address would not be reachable from outside).
        """
        info = self.controller.image.brokers.get(bid)
        if listener != INTERNAL:
            if bid == self.node_id:
                return self.config.endpoints().get(listener)
            return info.endpoints.get(listener) if info is not None else None
        if info is not None:
            return info.host, info.port
        return self.config.peers.get(bid)

    def ready(self) -> tuple[bool, str]:
        why = self.heartbeater.not_ready
        return (False, why) if why else (True, "ready")


def _kafka_error(answer: Any) -> str | None:
    """The top-level error of a Kafka answer, for the request metrics (per-partition errors
    are the clients' business)."""
    code = getattr(answer.body, "error_code", 0)
    return f"kafka_{code}" if code else None


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s [broker %(process)d] %(name)s: %(message)s",
    )


def run_broker(config: BrokerConfig) -> None:
    """Run a broker until SIGTERM/SIGINT (on uvloop)."""
    import uvloop

    configure_logging(os.environ.get("STRATA_LOG_LEVEL", "INFO"))
    broker = Broker(config)
    uvloop.run(broker.run())
