"""The broker's side of liveness: a heartbeat to the controller leader every ``HEARTBEAT_S``.

The heartbeat carries this broker's address and the partitions it leads (topic id, leader
epoch, in-sync replicas, offsets); the answer carries the cluster view (adopted into the
:class:`ClusterView`) and the leadership transfers the controller planned for this broker
(preferred leaders). A broker that cannot reach the controller for a session says so in its
readiness.
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

    def request(self) -> dict[str, Any]:
        host, port = self.config.advertised_address
        mport = self.config.metrics_listen[1] if self.config.metrics_listen else None
        parts = []
        for (t, p), r in self._replicas.replicas.items():
            if r.is_leader and t != METADATA_TOPIC and r.topic_id is not None:
                lg = r.log
                parts.append(PartitionView(r.topic_id, self.node_id, r.node.term, r.in_sync_replicas(),
                                           lg.log_start_offset, lg.log_end_offset, r.high_watermark,
                                           dirty_ratio(r)).to_wire(t, p))
        lost = []
        for key in self._replicas.lost_leadership:
            gone = self._replicas.replicas.get(key)
            if gone is not None and gone.topic_id is not None:
                lost.append([key[0], key[1], gone.topic_id])
        self._replicas.lost_leadership.clear()
        req = {"id": self.node_id, "host": host, "port": port, "mport": mport,
               "endpoints": {k: list(v) for k, v in self.config.endpoints().items()},
               "parts": parts, "lost": lost, "known_version": self._view.version}
        if self._cleaning is not None:
            req.update(self._cleaning.request_fields())
        return req

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
            self._view.apply(resp)
            if self._cleaning is not None:
                self._cleaning.answered(req, resp)
            for topic, p, to in resp.get("transfers", ()):
                r = self._replicas.replicas.get((topic, p))
                if r is not None and r.is_leader:
                    log.info("moving leadership of %s-%d back to preferred replica %d", topic, p, to)
                    r.transfer_leadership(to)
            self.not_ready = ""
