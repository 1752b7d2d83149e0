"""The broker's side of liveness: a heartbeat to the controller leader every ``HEARTBEAT_S``.

The heartbeat carries this broker's address and the partitions it leads (topic id, leader
epoch, in-sync replicas, offsets); the answer carries the cluster view (adopted into the
:class:`ClusterView`) and the leadership transfers the controller planned for this broker
(preferred leaders). A broker that cannot reach the controller for a session says so in its
readiness.

**Only what changed.** Listing every led partition four times a second cost each broker
and the controller CPU in proportion to the partitions, idle or not (10,000 partitions:
~13,000 entries a second to build, encode, decode and compare). A heartbeat now carries the
partitions whose entry differs from what the controller acknowledged, plus a ``session``
token the controller handed out: a new controller leader (or the same broker leading again
in a later term) hands out another one and answers ``resync``, and the broker sends every
entry once more (``full``). A group that was already quiesced when its entry was
acknowledged with every replica in sync, and has not been woken (or marked) since
(``Replica.activity``), cannot have changed (losing a replica means its peer fell silent,
which marks the group, see ``Replica.peer_silent``), so it is not even looked at.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from strata.broker.cluster.channel import ControllerChannel
from strata.broker.cluster.controller import HEARTBEAT_S, SESSION_TIMEOUT_S, Controller
from strata.broker.cluster.metadata import METADATA_TOPIC
from strata.broker.cluster.view import ClusterView, PartitionView, dirty_ratio
from strata.client.protocol import Api

if TYPE_CHECKING:
    from strata.broker.cluster.cleaning import RemovableOffsets
    from strata.broker.config import BrokerConfig
    from strata.broker.replication.manager import ReplicaManager

log = logging.getLogger("strata.broker.heartbeat")


class BrokerHeartbeater:
    def __init__(self, config: BrokerConfig, controller: Controller, view: ClusterView,
                 replicas: ReplicaManager, channel: ControllerChannel,
                 cleaning: RemovableOffsets | None = None) -> None:
        self.config = config
        #: Compacted replicas' cleaned offsets go out, the partitions' minimums come back.
        self._cleaning = cleaning
        self.node_id = config.node_id
        self._controller = controller
        self._view = view
        self._replicas = replicas
        self._channel = channel
        #: Why this broker is not ready ("" once the controller has answered).
        self.not_ready = "starting"
        #: The controller's session token from its last answer (None: send everything).
        self._session: Any = None
        #: What the controller acknowledged of each partition this broker leads, by key: the
        #: entry, and the replica's activity count if it was quiesced then (else None).
        self._reported: dict[tuple[str, int], tuple[list[Any], int | None]] = {}
        #: The entries of the heartbeat in flight, to record once it is answered.
        self._snapshot: dict[tuple[str, int], tuple[list[Any], int | None]] = {}

    def request(self) -> dict[str, Any]:
        host, port = self.config.advertised_address
        mport = self.config.metrics_listen[1] if self.config.metrics_listen else None
        full = self._session is None
        reported = self._reported
        snapshot = self._snapshot = {}
        parts = []
        # Only the replicas that led at their last Ready (ReplicaManager.led), not every
        # replica: one elected since is reported by the next beat.
        for key, r in self._replicas.led.items():
            last = reported.get(key)
            quiesced = r.node.quiesced
            if not full and quiesced and last is not None and last[1] == r.activity:
                # Asleep since before its entry was acknowledged: nothing changed (its role
                # neither: losing it takes a message, which wakes the group). Checked first:
                # with 10,000 partitions this loop is most of an idle broker's time.
                continue
            if not r.is_leader or key[0] == METADATA_TOPIC or r.topic_id is None:
                continue
            lg = r.log
            isr = r.in_sync_replicas()
            wire = PartitionView(r.topic_id, self.node_id, r.node.term, isr,
                                 lg.log_start_offset, lg.log_end_offset, r.high_watermark,
                                 dirty_ratio(r)).to_wire(*key)
            # Only a sleeping group with every replica in sync is frozen: a shorter ISR can
            # grow back with the peers' pings alone, no input to the group; and a compacted
            # partition's dirty ratio moves with its cleaner, not with the group.
            frozen = quiesced and len(isr) >= len(r.voters) and not lg.config.compact
            snapshot[key] = (wire, r.activity if frozen else None)
            if full or last is None or last[0] != wire:
                parts.append(wire)
        lost: list[list[Any]] = []
        for key in self._replicas.lost_leadership:
            gone = self._replicas.replicas.get(key)
            # Lost and led again since the last beat: its entry in ``parts`` (or the one the
            # controller has) says so, and a "lost" beside it would make the controller
            # forget the leader it just learned (a beat carries both; "lost" is applied last).
            if gone is not None and gone.topic_id is not None and not gone.is_leader:
                lost.append([key[0], key[1], gone.topic_id])
        self._replicas.lost_leadership.clear()
        for t, p, _ in lost:
            reported.pop((t, p), None)
        req: dict[str, Any] = {"id": self.node_id, "host": host, "port": port, "mport": mport,
                               "endpoints": {k: list(v) for k, v in self.config.endpoints().items()},
                               "parts": parts, "lost": lost, "view": self._view.version}
        if full:
            req["full"] = True
        else:
            req["session"] = self._session
        if self._cleaning is not None:
            req.update(self._cleaning.request_fields())
        return req

    def acknowledged(self, req: dict[str, Any], resp: dict[str, Any]) -> None:
        """Note what the controller now knows, or start over if it asks for everything."""
        session = resp.get("session")
        if session is None or resp.get("resync"):
            # A controller that lost (or never had) this broker's entries: send them all.
            self._session = None
            self._reported.clear()
            return
        if req.get("full"):
            self._reported.clear()
        self._session = session
        self._reported.update(self._snapshot)
        if len(self._reported) > len(self._replicas.replicas):
            # Keys of partitions this broker no longer holds (deleted topics, moved replicas).
            self._reported = {k: v for k, v in self._reported.items() if k in self._replicas.replicas}

    async def run(self) -> None:
        last_ok = time.monotonic()
        ctl = self._controller
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            leader = ctl.leader_id
            if leader is None:
                self.not_ready = "no controller elected yet"
                continue
            req = self.request()
            try:
                resp = (ctl.handle_heartbeat(req) if leader == self.node_id
                        else await self._channel.request(Api.BROKER_HEARTBEAT, req, timeout_s=1.0))
            except Exception as exc:  # any failure: retry on the next beat
                log.debug("heartbeat to controller %s failed: %s", leader, exc)
                silent = time.monotonic() - last_ok
                if silent > SESSION_TIMEOUT_S:
                    self.not_ready = f"cannot reach the controller (broker {leader}) for {silent:.0f}s"
                self._replicas.lost_leadership.update((t, p) for t, p, _ in req["lost"])
                if self._cleaning is not None:
                    self._cleaning.failed()
                continue
            last_ok = time.monotonic()
            self.acknowledged(req, resp)
            self._view.apply(resp)
            if self._cleaning is not None:
                self._cleaning.answered(req, resp)
            for topic, p, to in resp.get("transfers", ()):
                r = self._replicas.replicas.get((topic, p))
                if r is not None and r.is_leader:
                    log.info("moving leadership of %s-%d back to preferred replica %d", topic, p, to)
                    r.transfer_leadership(to)
            self.not_ready = ""
