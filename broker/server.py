"""The broker process: one port for clients and peers, replicas, controller, ticker, metrics.

Startup: open the controller's metadata replica, replay it, start the partition replicas this
broker is assigned, listen. Every ``tick_ms`` all Raft groups tick in the same loop turn (so
their heartbeats to a peer coalesce into one frame). SIGTERM shuts down cleanly: leadership
is handed to in-sync followers, logs are flushed and closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import msgpack

from strata.broker.cluster.controller import HEARTBEAT_S, SESSION_TIMEOUT_S, Controller
from strata.broker.cluster.metadata import METADATA_TOPIC, OFFSETS_TOPIC, MetadataError
from strata.broker.config import BrokerConfig
from strata.broker.frontends.native.connection import (
    SENDFILE_MIN_BYTES,
    ClientConnection,
    FileSlice,
    Response,
)
from strata.broker.groups.coordinator import GroupCoordinator
from strata.broker.metrics import BrokerMetrics
from strata.broker.raft.messages import from_wire as raft_from_wire
from strata.broker.replication.replica import Replica, ReplicaError
from strata.client.batch import CorruptBatchError
from strata.client.errors import ErrorCode
from strata.client.protocol import Api, api_ranges
from strata.storage import GroupCommit, Log, LogConfig

log = logging.getLogger("strata.broker")

PARTITION_METADATA = "partition.metadata"


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.data_dir = Path(config.data_dir)
        self.replicas: dict[tuple[str, int], Replica] = {}
        self.controller = Controller(self)
        self.coordinator = GroupCoordinator(self)
        self.metrics = BrokerMetrics(self)
        self.connections: set[ClientConnection] = set()
        self.group_commit: GroupCommit | None = None
        self.transport = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self._reconcile_pending = False
        self._leadership_dirty = True
        self._lost_leadership: set[tuple[str, int]] = set()
        self._controller_conn = None
        self._controller_conn_id: int | None = None
        self.ready_reason = "starting"
        self.started_at = time.monotonic()
        #: Raft ticks since start; peers' liveness is counted in them.
        self.ticks = 0
        #: The tick at which a frame last came from each peer broker (see _watch_peers).
        self.peer_heard: dict[int, int] = dict.fromkeys((p for p in config.peers if p != self.node_id), 0)
        self._silent_peers: set[int] = set()
        self._handlers = {
            Api.HANDSHAKE: self.h_handshake,
            Api.METADATA: self.h_metadata,
            Api.CREATE_TOPICS: self.h_create_topics,
            Api.DELETE_TOPICS: self.h_delete_topics,
            Api.DESCRIBE_CLUSTER: self.h_describe_cluster,
            Api.PRODUCE: self.h_produce,
            Api.FETCH: self.h_fetch,
            Api.LIST_OFFSETS: self.h_list_offsets,
            Api.INIT_PRODUCER_ID: self.h_init_producer_id,
            Api.RAFT: self.h_raft,
            Api.BROKER_HEARTBEAT: self.h_broker_heartbeat,
        }
        self._handlers.update(self.coordinator.handlers())

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        from strata.broker.replication.transport import PeerTransport

        self.data_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self.group_commit = GroupCommit()
        self.transport = PeerTransport(self.node_id, self.config.peers)
        # The controller's metadata replica first: everything else follows from its log.
        voters = sorted(self.config.peers)
        self._open_replica((METADATA_TOPIC, 0), voters, on_commit=self.controller.on_commit)
        self.transport.start()
        host, port = self.config.listen
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, reuse_address=True, backlog=1024
        )
        if self.config.metrics_listen:
            await self.metrics.start(*self.config.metrics_listen)
        self.coordinator.start()
        self.spawn(self._ticker())
        self.spawn(self._heartbeat_loop())
        self.spawn(self._retention_loop())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info("broker %d listening on %s:%d (data %s)", self.node_id, host, port, self.data_dir)
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("broker %d shutting down: handing over leadership", self.node_id)
        self._server.close()
        await self._transfer_all_leadership(timeout_s=5.0)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        await self.coordinator.stop()
        for r in list(self.replicas.values()):
            await r.stop()
        await self.transport.stop()
        for conn in list(self.connections):
            if conn.transport:
                conn.transport.close()
        for r in list(self.replicas.values()):
            try:
                r.close_log()
            except Exception:
                log.exception("closing %s", r.key)
        await self.metrics.stop()
        log.info("broker %d stopped", self.node_id)

    async def _transfer_all_leadership(self, timeout_s: float) -> None:
        """Clean shutdown: hand every group this broker leads to an in-sync follower first."""
        led = [r for r in self.replicas.values() if r.is_leader and len(r.voters) > 1]
        for r in led:
            target = r.best_transfer_target()
            if target is not None:
                r.transfer_leadership(target)
        deadline = time.monotonic() + timeout_s
        while any(r.is_leader for r in led) and time.monotonic() < deadline:
            await asyncio.sleep(HEARTBEAT_S / 5)

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception(), exc_info=task.exception())

    # -- replicas --------------------------------------------------------------------------

    def _log_config(self, topic_configs: dict | None = None) -> LogConfig:
        c = self.config
        tc = topic_configs or {}
        retention_ms = tc.get("retention.ms", c.retention_ms)
        retention_bytes = tc.get("retention.bytes", c.retention_bytes)
        return LogConfig(
            segment_bytes=tc.get("segment.bytes", c.segment_bytes),
            segment_ms=tc.get("segment.ms", c.segment_ms),
            # Kafka's -1 means "keep forever"; the storage engine spells that None.
            retention_ms=None if retention_ms < 0 else retention_ms,
            retention_bytes=None if retention_bytes < 0 else retention_bytes,
            flush_policy=c.flush_policy,
            flush_interval_ms=c.flush_interval_ms,
            max_batch_bytes=c.limits.max_batch_bytes,
        )

    def _open_replica(self, key, voters, *, on_commit=None, topic_id: int | None = None, configs=None) -> Replica:
        d = self.data_dir / partition_dir_name(*key)
        if topic_id is not None:
            meta = d / PARTITION_METADATA
            if d.exists():
                try:
                    stored = msgpack.unpackb(meta.read_bytes())
                except (FileNotFoundError, ValueError):
                    stored = None
                if stored != topic_id:
                    log.warning("removing %s: it belongs to an older topic of the same name", d)
                    shutil.rmtree(d)
            d.mkdir(parents=True, exist_ok=True)
            meta.write_bytes(msgpack.packb(topic_id))
        else:
            d.mkdir(parents=True, exist_ok=True)
        # Every batch's CRC is checked on open, not only those after the recovery point:
        # bits that rotted (or were flipped) while the broker was down are found here, the log
        # is cut there, and the replica refuses to vote until its leader has repaired it.
        lg = Log.open(d, self._log_config(configs), full_check=True)
        if lg.recovery.truncated_bytes:
            log.warning("%s-%d: recovery cut %d bytes from offset %s%s", key[0], key[1], lg.recovery.truncated_bytes,
                        lg.recovery.first_bad_offset,
                        " (corrupt data: this replica will not vote until repaired from the leader)"
                        if lg.recovery.corrupt else "")
        r = Replica(key=key, node_id=self.node_id, voters=voters, log_obj=lg, directory=d, broker=self,
                    on_commit=on_commit)
        r.open_args = (key, voters, {"on_commit": on_commit, "topic_id": topic_id, "configs": configs})
        self.replicas[key] = r
        if key[0] == METADATA_TOPIC:
            self.controller.replica = r
        r.start()
        return r

    def restart_replica(self, r: Replica, reason: str) -> None:
        """Reopen a replica whose storage failed (see ``Replica.fail``), with backoff."""
        self.spawn(self._restart_replica(r))

    async def _restart_replica(self, r: Replica) -> None:
        await r.stop()
        try:
            r.log.abandon()
        except Exception:  # already broken; recovery will sort it out
            log.exception("abandoning %s's log", r.name)
        key, voters, kwargs = r.open_args
        delay = 0.2
        while not self._stop.is_set():
            if self.replicas.get(key) is not r:
                return  # deleted or replaced meanwhile
            try:
                self.replicas.pop(key, None)
                self._open_replica(key, voters, **kwargs)
                log.info("%s reopened after a storage failure", r.name)
                return
            except Exception as exc:  # e.g. the disk is still full
                self.replicas[key] = r
                log.error("reopening %s failed: %r; retrying in %.1fs", r.name, exc, delay)
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)

    def metadata_changed(self) -> None:
        if not self._reconcile_pending:
            self._reconcile_pending = True
            asyncio.get_running_loop().call_soon(self._reconcile)

    def _reconcile(self) -> None:
        """Start the replicas assigned to this broker; stop and delete those of deleted topics."""
        self._reconcile_pending = False
        image = self.controller.image
        wanted: dict[tuple[str, int], tuple] = {}
        for name, topic in image.topics.items():
            for p, reps in enumerate(topic.replicas):
                if self.node_id in reps:
                    wanted[(name, p)] = (reps, topic.topic_id, topic.configs)
        for key, (reps, tid, configs) in wanted.items():
            if key not in self.replicas:
                on_commit = self.coordinator.on_commit if key[0] == OFFSETS_TOPIC else None
                self._open_replica(key, reps, topic_id=tid, configs=configs, on_commit=on_commit)
        for key in list(self.replicas):
            if key[0] == METADATA_TOPIC or key in wanted:
                continue
            r = self.replicas.pop(key)
            self.spawn(self._delete_replica(r))
        if self.controller.is_leader and OFFSETS_TOPIC not in image.topics:
            self.spawn(self._ensure_offsets_topic())

    async def _delete_replica(self, r: Replica) -> None:
        await r.stop()
        r.log.close()
        shutil.rmtree(r.dir, ignore_errors=True)
        log.info("deleted %s-%d and its data", *r.key)

    async def _ensure_offsets_topic(self) -> None:
        image = self.controller.image
        live = self.controller.live_brokers()
        if OFFSETS_TOPIC in image.topics or len(live) < min(3, len(self.config.peers)):
            return
        try:
            # Offsets must outlive any size limit: only time-based retention applies, and the
            # coordinator re-writes live offsets before they age out (docs/groups.md).
            await self.controller.create_topic(OFFSETS_TOPIC, self.config.offsets_partitions,
                                               min(3, len(self.config.peers)),
                                               {"retention.bytes": -1, "segment.bytes": 16 << 20},
                                               allow_internal=True)
        except MetadataError as exc:
            if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                log.warning("could not create %s yet: %s", OFFSETS_TOPIC, exc.message)

    def leadership_changed(self, replica: Replica) -> None:
        self._leadership_dirty = True
        if replica.key[0] == OFFSETS_TOPIC:
            self.coordinator.leadership_changed(replica)
        if not replica.is_leader:
            self._lost_leadership.add(replica.key)
        self.metrics.leadership_changed(replica)

    # -- loops -----------------------------------------------------------------------------

    async def _ticker(self) -> None:
        timing = self.config.raft
        interval = timing.tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += interval
            self.ticks += 1
            if self.ticks % timing.heartbeat_ticks == 0:
                self.transport.ping()
            self._watch_peers()
            for r in list(self.replicas.values()):
                if not r.node.quiesced:
                    r.tick()  # never raises: a replica whose storage fails restarts itself
            delay = next_at - loop.time()
            if delay < -interval * timing.election_ticks:
                # This process stalled (paused, starved) for longer than an election
                # timeout: a group it led may have moved on meanwhile, and a quiesced
                # leader would not find out. Wake every group.
                log.warning("broker %d stalled for %.1fs; waking every quiesced group", self.node_id, -delay)
                for r in list(self.replicas.values()):
                    r.wake()
            if delay < -interval * 5:
                next_at = loop.time()  # we fell far behind: do not tick in a burst
            await asyncio.sleep(max(0.0, delay))

    def _watch_peers(self) -> None:
        """Wake the quiesced groups of a peer broker that went silent for an election timeout.

        Quiesced groups send nothing, so a leader's death would go unnoticed by its sleeping
        followers; the peers' pings (see ``PeerTransport.ping``) stand in for their heartbeats.
        """
        limit = self.config.raft.election_ticks
        for peer, heard in self.peer_heard.items():
            silent_for = self.ticks - heard
            if silent_for <= limit:
                self._silent_peers.discard(peer)
            elif peer not in self._silent_peers:
                self._silent_peers.add(peer)
                log.info("broker %d: no word from broker %d for %d ticks; waking the groups it shares",
                         self.node_id, peer, silent_for)
                for r in list(self.replicas.values()):
                    r.peer_silent(peer, silent_for)

    def _heartbeat_request(self) -> dict:
        host, port = self.config.advertised_address
        mport = self.config.metrics_listen[1] if self.config.metrics_listen else None
        parts = []
        for (t, p), r in self.replicas.items():
            if r.is_leader and t != METADATA_TOPIC:
                parts.append([t, p, r.node.term, r.in_sync_replicas(), r.log.log_start_offset,
                              r.log.log_end_offset, r.high_watermark])
        lost = [list(k) for k in self._lost_leadership]
        self._lost_leadership.clear()
        return {"id": self.node_id, "host": host, "port": port, "mport": mport, "parts": parts, "lost": lost,
                "known_version": self.controller.view_version}

    async def _heartbeat_loop(self) -> None:
        from strata.client.conn import open_connection

        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            ctl = self.controller
            leader = ctl.leader_id
            if leader is None:
                self.ready_reason = "no controller elected yet"
                continue
            req = self._heartbeat_request()
            try:
                if leader == self.node_id:
                    resp = ctl.handle_heartbeat(req)
                else:
                    if self._controller_conn is None or self._controller_conn_id != leader or self._controller_conn.closed:
                        if self._controller_conn is not None:
                            await self._controller_conn.close()
                        host, port = self.config.peers[leader]
                        self._controller_conn = await open_connection(host, port, client_id=f"broker-{self.node_id}",
                                                                      timeout=1.0)
                        self._controller_conn_id = leader
                    hdr, _ = await self._controller_conn.request(Api.BROKER_HEARTBEAT, req, timeout=1.0)
                    if hdr.get("err"):
                        raise ConnectionError(hdr.get("msg", "heartbeat refused"))
                    resp = hdr
            except Exception as exc:  # any failure: retry on the next beat
                log.debug("heartbeat to controller %s failed: %s", leader, exc)
                silent = time.monotonic() - last_ok
                if silent > SESSION_TIMEOUT_S:
                    self.ready_reason = f"cannot reach the controller (broker {leader}) for {silent:.0f}s"
                self._lost_leadership.update(tuple(k) for k in req["lost"])
                if self._controller_conn is not None:
                    try:
                        await self._controller_conn.close()
                    except Exception:
                        pass
                    self._controller_conn = None
                continue
            last_ok = time.monotonic()
            ctl.apply_view(resp)
            for topic, p, to in resp.get("transfers", ()):
                r = self.replicas.get((topic, p))
                if r is not None and r.is_leader:
                    log.info("moving leadership of %s-%d back to preferred replica %d", topic, p, to)
                    r.transfer_leadership(to)
            self.ready_reason = ""

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.retention_check_ms / 1000)
            now_ms = int(time.time() * 1000)
            for r in list(self.replicas.values()):
                # Raft needs the log start below the high watermark: only segments that are
                # wholly committed may go, so wait while the active segment is not committed.
                if r.high_watermark < r.log.active_segment.base_offset:
                    continue
                try:
                    r.log.apply_retention(now_ms)
                except Exception:
                    log.exception("retention on %s-%d failed", *r.key)

    def metadata_caught_up(self) -> bool:
        """Has this broker applied the metadata log as far as its leader has committed it?

        A broker that just started knows no topic until it has replayed the log: it must not
        answer "unknown topic" for one that exists (a producer would take that as "not
        written" for a batch that was), so until then it answers a retriable error.
        """
        r = self.controller.replica
        if r is None or r.node.leader is None or r.high_watermark <= 0:
            return False
        return self.controller.image.applied_offset + 1 >= r.high_watermark

    def ready(self) -> tuple[bool, str]:
        if self.ready_reason:
            return False, self.ready_reason
        return True, "ready"

    # -- connections -----------------------------------------------------------------------

    def connection_opened(self, conn: ClientConnection) -> None:
        if len(self.connections) >= self.config.limits.max_connections:
            log.warning("refusing connection from %s: %d connections open", conn.remote, len(self.connections))
            conn.transport.close()
            return
        self.connections.add(conn)
        self.metrics.connections.set(len(self.connections))

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.metrics.connections.set(len(self.connections))

    def handler_for(self, api: int):
        try:
            h = self._handlers.get(Api(api))
        except ValueError:
            return None
        if h is None:
            return None
        return self.metrics.instrument(api, h)

    def metrics_protocol_error(self, code: ErrorCode) -> None:
        self.metrics.protocol_errors.labels(code=code.name).inc()

    # -- handlers --------------------------------------------------------------------------
    # Field names follow the schemas in strata.client.protocol (docs/protocol.md).

    async def h_handshake(self, conn: ClientConnection, hdr: dict, payload) -> Response:
        conn.handshaken = True
        conn.client_id = hdr.get("client_id", "")
        if hdr.get("peer_id", -1) >= 0:
            conn.peer_id = hdr["peer_id"]
        return Response({"apis": api_ranges(), "broker_id": self.node_id, "cluster_id": self.cluster_id,
                         "max_frame_bytes": self.config.limits.max_frame_bytes}, [])

    @property
    def cluster_id(self) -> str:
        return "strata-" + "-".join(str(i) for i in sorted(self.config.peers))

    def _broker_address(self, bid: int) -> tuple[str, int] | None:
        info = self.controller.image.brokers.get(bid)
        if info is not None:
            return info.host, info.port
        return self.config.peers.get(bid)

    def _broker_list(self) -> list[dict]:
        out = []
        for bid in sorted(self.config.peers):
            host, port = self._broker_address(bid)
            out.append({"id": bid, "host": host, "port": port})
        return out

    def partition_state(self, topic: str, p: int, reps: list[int]) -> dict:
        """Leader, ISR and offsets of a partition: first-hand if we lead it, else the controller's view."""
        r = self.replicas.get((topic, p))
        if r is not None and r.is_leader:
            return {"partition": p, "leader": self.node_id, "leader_epoch": r.node.term, "replicas": reps,
                    "isr": r.in_sync_replicas(), "log_start_offset": r.log.log_start_offset,
                    "log_end_offset": r.log.log_end_offset, "high_watermark": r.high_watermark}
        v = self.controller.view.get((topic, p))
        if v is not None:
            leader = v.leader
            epoch = v.epoch
            if r is not None and r.node.leader is not None and r.node.term >= v.epoch:
                # First-hand: this broker's own replica follows that leader in that term.
                leader, epoch = r.node.leader, r.node.term
            return {"partition": p, "leader": -1 if leader is None else leader, "leader_epoch": epoch,
                    "replicas": reps, "isr": v.isr if leader == v.leader else [],
                    "log_start_offset": v.log_start_offset, "log_end_offset": v.log_end_offset,
                    "high_watermark": v.high_watermark}
        leader = r.node.leader if r is not None else None
        return {"partition": p, "leader": -1 if leader is None else leader,
                "leader_epoch": r.node.term if r else -1, "replicas": reps, "isr": [],
                "log_start_offset": -1, "log_end_offset": -1, "high_watermark": -1}

    async def h_metadata(self, conn, hdr: dict, payload) -> Response:
        image = self.controller.image
        names = hdr.get("topics")
        topics = []
        for name in (names if names is not None else sorted(image.topics)):
            t = image.topics.get(name)
            if t is None:
                if not self.metadata_caught_up():
                    topics.append({"name": name, "err": int(ErrorCode.LEADER_NOT_AVAILABLE),
                                   "msg": f"broker {self.node_id} is still loading the cluster metadata; retry",
                                   "partitions": []})
                else:
                    topics.append({"name": name, "err": int(ErrorCode.UNKNOWN_TOPIC),
                                   "msg": f"topic {name!r} does not exist", "partitions": []})
                continue
            if name == METADATA_TOPIC:
                continue
            topics.append({"name": name, "internal": name.startswith("__"), "configs": t.configs,
                           "partitions": [self.partition_state(name, p, reps) for p, reps in enumerate(t.replicas)]})
        ctl = self.controller.leader_id
        return Response({"cluster_id": self.cluster_id, "controller": -1 if ctl is None else ctl,
                         "brokers": self._broker_list(), "topics": topics}, [])

    async def h_describe_cluster(self, conn, hdr, payload) -> Response:
        image = self.controller.image
        live = self.controller.live or {self.node_id}
        brokers = []
        for b in self._broker_list():
            info = image.brokers.get(b["id"])
            brokers.append({**b, "alive": b["id"] in live, "metrics_port": info.metrics_port if info and info.metrics_port else -1})
        n_parts = under = offline = 0
        for name, t in image.topics.items():
            if name == METADATA_TOPIC:
                continue
            for p, reps in enumerate(t.replicas):
                n_parts += 1
                st = self.partition_state(name, p, reps)
                if st["leader"] < 0:
                    offline += 1
                elif len(st["isr"]) < len(reps):
                    under += 1
        ctl = self.controller.leader_id
        return Response({"cluster_id": self.cluster_id, "controller": -1 if ctl is None else ctl,
                         "brokers": brokers, "voters": sorted(self.config.peers),
                         "topics": sum(1 for n in image.topics if n != METADATA_TOPIC),
                         "partitions": n_parts, "under_replicated": under, "offline": offline}, [])

    def _not_controller(self, exc: MetadataError | ReplicaError) -> Response:
        ctl = self.controller.leader_id
        return Response({"err": int(exc.code), "msg": exc.message, "controller": -1 if ctl is None else ctl}, [])

    async def h_create_topics(self, conn, hdr, payload) -> Response:
        results = []
        for t in hdr["topics"]:
            try:
                if hdr.get("validate_only"):
                    self.controller.require_leader()
                    self.controller.image.validate_create(
                        t["name"], t["partitions"], t["replication_factor"], t.get("configs") or {},
                        self.controller.live_brokers(), max_partitions=self.config.limits.max_partitions_per_topic)
                else:
                    await self.controller.create_topic(t["name"], t["partitions"], t["replication_factor"],
                                                       t.get("configs") or {})
                results.append({"name": t["name"]})
            except MetadataError as exc:
                if exc.code == ErrorCode.NOT_CONTROLLER:
                    return self._not_controller(exc)
                results.append({"name": t["name"], "err": int(exc.code), "msg": exc.message})
            except ReplicaError as exc:
                return self._not_controller(exc)
            except TimeoutError:
                results.append({"name": t["name"], "err": int(ErrorCode.TIMED_OUT),
                                "msg": "the controller did not commit the topic in time; it may still appear"})
        return Response({"topics": results}, [])

    async def h_delete_topics(self, conn, hdr, payload) -> Response:
        results = []
        for name in hdr["topics"]:
            try:
                await self.controller.delete_topic(name)
                results.append({"name": name})
            except MetadataError as exc:
                if exc.code == ErrorCode.NOT_CONTROLLER:
                    return self._not_controller(exc)
                results.append({"name": name, "err": int(exc.code), "msg": exc.message})
            except ReplicaError as exc:
                return self._not_controller(exc)
            except TimeoutError:
                results.append({"name": name, "err": int(ErrorCode.TIMED_OUT),
                                "msg": "the controller did not commit the deletion in time"})
        return Response({"topics": results}, [])

    async def h_init_producer_id(self, conn, hdr, payload) -> Response:
        try:
            pid = await self.controller.allocate_producer_id()
        except MetadataError as exc:
            return self._not_controller(exc)
        except ReplicaError as exc:
            return self._not_controller(exc)
        except TimeoutError:
            return Response({"err": int(ErrorCode.TIMED_OUT), "msg": "the controller did not commit in time"}, [])
        return Response({"producer_id": pid, "producer_epoch": 0}, [])

    def _replica_for(self, topic: str, partition: int) -> Replica:
        r = self.replicas.get((topic, partition))
        if r is not None:
            return r
        t = self.controller.image.topics.get(topic)
        if t is None:
            if not self.metadata_caught_up():
                raise ReplicaError(ErrorCode.LEADER_NOT_AVAILABLE,
                                   f"broker {self.node_id} is still loading the cluster metadata; retry")
            raise ReplicaError(ErrorCode.UNKNOWN_TOPIC, f"topic {topic!r} does not exist")
        if not 0 <= partition < t.partitions:
            raise ReplicaError(ErrorCode.UNKNOWN_PARTITION,
                               f"topic {topic!r} has partitions 0-{t.partitions - 1}, not {partition}")
        v = self.controller.view.get((topic, partition))
        raise ReplicaError(ErrorCode.NOT_LEADER, f"broker {self.node_id} holds no replica of {topic}-{partition}",
                           leader=v.leader if v else None)

    def _leader_for(self, topic: str, partition: int) -> Replica:
        r = self._replica_for(topic, partition)
        if not r.is_leader:
            raise r.not_leader_error()
        return r

    def _error_fields(self, exc: ReplicaError) -> dict:
        h = {"err": int(exc.code), "msg": exc.message}
        leader = exc.details.get("leader")
        if exc.code == ErrorCode.NOT_LEADER and leader is not None:
            h["leader"] = leader
            addr = self._broker_address(leader)
            if addr:
                h["leader_addr"] = f"{addr[0]}:{addr[1]}"
        for k in ("log_start_offset", "high_watermark"):
            if k in exc.details:
                h[k] = exc.details[k]
        return h

    async def h_produce(self, conn, hdr, payload) -> Response | None:
        acks = hdr["acks"]
        timeout_s = min(hdr["timeout_ms"], self.config.limits.max_produce_timeout_ms) / 1000
        try:
            r = self._replica_for(hdr["topic"], hdr["partition"])
            res = await r.produce(payload, acks, timeout_s)
        except ReplicaError as exc:
            return None if acks == 0 else Response(self._error_fields(exc), [])
        self.metrics.bytes_in(hdr["topic"], len(payload))
        if acks == 0:
            return None
        return Response({"base_offset": res.base_offset, "last_offset": res.last_offset,
                         "log_start_offset": res.log_start_offset}, [])

    async def h_fetch(self, conn, hdr, payload) -> Response:
        limits = self.config.limits
        max_bytes = max(1, min(hdr["max_bytes"], limits.max_fetch_bytes))
        max_wait = max(0, min(hdr["max_wait_ms"], limits.max_fetch_wait_ms)) / 1000
        min_bytes = hdr["min_bytes"]
        wants = hdr["partitions"]
        deadline = time.monotonic() + max_wait
        while True:
            results, parts, total = self._fetch_once(wants, max_bytes)
            remaining = deadline - time.monotonic()
            if total >= min_bytes or remaining <= 0 or any(r.get("err") for r in results):
                break
            waiters = []
            for w in wants:
                r = self.replicas.get((w["topic"], w["partition"]))
                if r is not None:
                    waiters.append(asyncio.ensure_future(r.wait_for_data(w["offset"], remaining)))
            if not waiters:
                break
            _, pending = await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for w in pending:
                w.cancel()
        for res in results:
            if res.get("size"):
                self.metrics.bytes_out(res["topic"], res["size"])
        return Response({"partitions": results}, parts)

    def _fetch_once(self, wants, max_bytes: int):
        results, parts, total = [], [], 0
        for w in wants:
            topic, p, offset = w["topic"], w["partition"], w["offset"]
            try:
                r = self._leader_for(topic, p)
                budget = min(w["max_bytes"], max_bytes - total)
                sl = None
                if budget >= SENDFILE_MIN_BYTES:
                    # A catch-up read: find whole batches below the high watermark by their
                    # headers alone and let the connection sendfile them, so the payload is
                    # neither copied nor CRC-checked in Python (recovery checked what was not
                    # fsynced; the consumer checks every batch). Replica.read's checks first.
                    r.require_readable()
                    hw = r.high_watermark
                    if r.log.log_start_offset <= offset < hw:
                        try:
                            sl = r.log.read(offset, budget, max_offset=hw, zero_copy_min_bytes=SENDFILE_MIN_BYTES)
                        except CorruptBatchError:
                            sl = None  # Replica.read below reports it as it always does
                if sl is None and (budget > 0 or total == 0):
                    sl = r.read(offset, budget)
                size = 0
                if sl is not None and sl.data is None:
                    # The fd is dup'ed: the slice is sent later, maybe after retention closed it.
                    parts.append(FileSlice(os.dup(sl.fileno), sl.position, sl.size))
                    size = sl.size
                elif sl is not None:
                    # The storage read already holds the bytes (it walked and CRC-checked the
                    # batches), so they go out as they are.
                    data = sl.read_bytes()
                    parts.append(data if len(data) == sl.size else memoryview(data)[: sl.size])
                    size = sl.size
                results.append({"topic": topic, "partition": p, "high_watermark": r.high_watermark,
                                "log_start_offset": r.log.log_start_offset, "log_end_offset": r.log.log_end_offset,
                                "pos": total, "size": size})
                total += size
            except ReplicaError as exc:
                results.append({"topic": topic, "partition": p, "pos": total, "size": 0, **self._error_fields(exc)})
        return results, parts, total

    async def h_list_offsets(self, conn, hdr, payload) -> Response:
        out = []
        for w in hdr["partitions"]:
            topic, p, ts = w["topic"], w["partition"], w["timestamp"]
            try:
                r = self._leader_for(topic, p)
                r.require_readable()
            except ReplicaError as exc:
                out.append({"topic": topic, "partition": p, **self._error_fields(exc)})
                continue
            hw = r.high_watermark
            if ts == -2:
                offset = r.log.log_start_offset
            elif ts == -1:
                offset = hw
            else:
                found = r.log.offset_for_timestamp(ts)
                offset = -1 if found is None or found >= hw else found
            out.append({"topic": topic, "partition": p, "offset": offset, "log_start_offset": r.log.log_start_offset,
                        "high_watermark": hw, "log_end_offset": r.log.log_end_offset})
        return Response({"partitions": out}, [])

    async def h_raft(self, conn, hdr, payload) -> None:
        """Peer Raft messages: many groups' messages in one frame per peer per loop turn."""
        mv = memoryview(payload)
        frm = hdr.get("from")
        if frm in self.peer_heard:
            self.peer_heard[frm] = self.ticks
        for item in hdr.get("msgs", ()):
            try:
                group, fields, pos, size = item
                r = self.replicas.get((group[0], group[1]))
                if r is None:
                    continue  # not (yet) ours: Raft resends
                msg = raft_from_wire(fields, mv[pos: pos + size] if size else b"")
            except Exception as exc:
                log.warning("dropping malformed raft message from broker %s: %s", frm, exc)
                continue
            r.step(msg)
        return None

    async def h_broker_heartbeat(self, conn, hdr, payload) -> Response:
        try:
            return Response(self.controller.handle_heartbeat(hdr), [])
        except MetadataError as exc:
            return Response({"err": int(exc.code), "msg": exc.message}, [])


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
