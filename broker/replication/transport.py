"""Raft messages between brokers: one outbound connection per peer, coalesced frames.

Every Raft message a broker emits for a peer during one event-loop turn — heartbeats of all
its groups, appends, votes — leaves as **one** frame. Since all groups tick in the same turn,
that is one heartbeat message per broker pair per tick, however many partitions there are.

Raft tolerates loss, so the transport does: a peer that is down or slow has its queue
bounded (by bytes and by messages) and the overflow dropped; Raft resends. The frame is
one-way: a Raft reply is itself a message travelling the other way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from strata.client.protocol import Api, Connection, Frame, ProtocolError, Role

log = logging.getLogger("strata.broker.replication.transport")

RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 1.0


@dataclass(slots=True)
class _PeerQueue:
    msgs: list[Any] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)
    payload_bytes: int = 0
    dropped: int = 0
    #: Send a frame this turn even if it carries no message (a liveness ping).
    ping: bool = False


class _PeerProtocol(asyncio.Protocol):
    """Outbound connection, driven by the codec's ``Connection(Role.CLIENT)``: the handshake
    (answered), then one-way RAFT frames (never answered)."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_lost = on_lost
        self.writable = asyncio.Event()
        self.writable.set()
        self.handshake_done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.codec = Connection(Role.CLIENT, max_frame_bytes=1 << 20)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)

    def handshake(self, node_id: int) -> None:
        _, data = self.codec.send_request(Api.HANDSHAKE, {"client_id": f"broker-{node_id}", "peer_id": node_id})
        assert self.transport is not None
        self.transport.writelines(data)

    def send_raft(self, fields: dict[str, Any], payloads: list[Any]) -> None:
        _, data = self.codec.send_request(Api.RAFT, fields, payloads, oneway=True, validate=False)
        assert self.transport is not None
        self.transport.writelines(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.codec.receive_data(data)
            frame = self.codec.next_frame()
        except ProtocolError as exc:
            if not self.handshake_done.done():
                self.handshake_done.set_exception(ConnectionError(f"bad handshake reply: {exc.message}"))
            return
        if isinstance(frame, Frame) and not self.handshake_done.done():
            if frame.header.get("err", 0):
                self.handshake_done.set_exception(ConnectionError(frame.header.get("msg", "handshake refused")))
            else:
                self.handshake_done.set_result(frame.header)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(ConnectionError("connection lost during handshake"))
        self.writable.set()
        self.on_lost()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class PeerTransport:
    """Sends Raft messages to peers; the receiving side is the server's RAFT handler."""

    def __init__(
        self,
        node_id: int,
        peers: dict[int, tuple[str, int]],
        *,
        max_queue_bytes: int = 32 << 20,  # well below a peer's frame limit (64 MiB)
        max_queue_msgs: int = 100_000,
    ) -> None:
        self.node_id = node_id
        self.peers = {i: a for i, a in peers.items() if i != node_id}
        self.max_queue_bytes = max_queue_bytes
        self.max_queue_msgs = max_queue_msgs
        self._queues: dict[int, _PeerQueue] = {i: _PeerQueue() for i in self.peers}
        self._conns: dict[int, _PeerProtocol | None] = dict.fromkeys(self.peers)
        self._flush_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[int, asyncio.Event] = {}
        self._stopping = False
        self.frames_sent = 0
        self.messages_sent = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for peer_id in self.peers:
            self._wake[peer_id] = asyncio.Event()
            self._tasks.append(loop.create_task(self._connect_loop(peer_id), name=f"peer-{peer_id}"))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for conn in self._conns.values():
            if conn and conn.transport:
                conn.transport.close()

    def connected(self, peer_id: int) -> bool:
        c = self._conns.get(peer_id)
        return c is not None and c.transport is not None and not c.transport.is_closing()

    async def _connect_loop(self, peer_id: int) -> None:
        host, port = self.peers[peer_id]
        delay = RECONNECT_MIN_S
        loop = asyncio.get_running_loop()
        while not self._stopping:
            lost = asyncio.Event()
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(partial(_PeerProtocol, lost.set), host, port), timeout=2.0
                )
                proto.handshake(self.node_id)
                await asyncio.wait_for(proto.handshake_done, timeout=2.0)
            except (TimeoutError, OSError, ConnectionError) as exc:
                log.debug("peer %d at %s:%d unreachable: %s", peer_id, host, port, exc)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
                continue
            delay = RECONNECT_MIN_S
            self._conns[peer_id] = proto
            log.info("connected to peer %d at %s:%d", peer_id, host, port)
            self._schedule_flush()
            await lost.wait()
            self._conns[peer_id] = None
            log.info("lost connection to peer %d", peer_id)

    # -- sending -------------------------------------------------------------------------

    def send(self, to: int, group: list[Any], fields: list[Any], payload: bytes | memoryview | None) -> None:
        """Queue one Raft message for ``to``; it leaves with the others at the end of this turn."""
        q = self._queues.get(to)
        if q is None:
            return
        plen = len(payload) if payload else 0
        if len(q.msgs) >= self.max_queue_msgs or q.payload_bytes + plen > self.max_queue_bytes:
            q.dropped += 1
            return
        q.msgs.append((group, fields, q.payload_bytes, plen))
        if plen:
            q.payloads.append(payload)
            q.payload_bytes += plen
        self._schedule_flush()

    def ping(self) -> None:
        """Make sure every connected peer gets a frame this turn, if only an empty one.

        One ping per broker pair stands in for the heartbeats of all quiesced groups: a
        peer that hears nothing from this broker for an election timeout wakes them.
        """
        for q in self._queues.values():
            q.ping = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        for peer_id, q in self._queues.items():
            if not q.msgs and not q.ping:
                continue
            q.ping = False
            conn = self._conns.get(peer_id)
            if conn is None or conn.transport is None or conn.transport.is_closing():
                # Not connected: drop; Raft will resend once the peer is back.
                q.dropped += len(q.msgs)
                q.msgs, q.payloads, q.payload_bytes = [], [], 0
                continue
            conn.send_raft({"from": self.node_id, "msgs": [list(m) for m in q.msgs]}, q.payloads)
            self.frames_sent += 1
            self.messages_sent += len(q.msgs)
            q.msgs, q.payloads, q.payload_bytes = [], [], 0
