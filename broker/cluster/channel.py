"""A connection to the controller leader, for the requests only it can answer.

The broker's heartbeat goes through it, and so do requests a client may send to any broker
but only the controller can serve (a producer id for a Kafka producer, which asks the
least-loaded broker): the broker forwards them (Kafka's KIP-590 does the same).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from strata.client.conn import BrokerConnection, open_connection
from strata.client.errors import ErrorCode, StrataError, error_for
from strata.client.protocol import Api


class ControllerChannel:
    def __init__(self, node_id: int, peers: Mapping[int, tuple[str, int]], leader: Callable[[], int | None]) -> None:
        self.node_id = node_id
        self._peers = peers
        self._leader = leader
        self._conn: BrokerConnection | None = None
        self._conn_to: int | None = None

    async def request(self, api: Api, fields: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send ``api`` to the controller leader (not this broker); its answer's header.

        Raises ``StrataError``: the controller's own error, or ``NOT_CONTROLLER`` /
        ``BROKER_NOT_AVAILABLE`` when no controller is known or reachable.
        """
        leader = self._leader()
        if leader is None or leader == self.node_id:
            raise error_for(ErrorCode.NOT_CONTROLLER, "no controller is elected yet; retry shortly", controller=-1)
        try:
            if self._conn is None or self._conn_to != leader or self._conn.closed:
                await self.close()
                host, port = self._peers[leader]
                self._conn = await open_connection(host, port, client_id=f"broker-{self.node_id}",
                                                   timeout=min(1.0, timeout_s))
                self._conn_to = leader
            hdr, _ = await self._conn.request(api, fields, timeout=timeout_s, raise_on_error=False)
        except StrataError:
            await self.close()
            raise
        if hdr.get("err"):
            details = {k: v for k, v in hdr.items() if k not in ("api", "v", "cid", "err", "msg")}
            raise error_for(hdr["err"], hdr.get("msg", ""), **details)
        return hdr

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close()
            except Exception:
                pass
