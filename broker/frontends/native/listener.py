"""The native protocol's listener: one TCP port for Strata's clients and the peer brokers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from strata.broker.config import Limits
from strata.broker.frontends.native.connection import ClientConnection, Handler
from strata.client.errors import ErrorCode
from strata.client.protocol import Api

log = logging.getLogger("strata.broker.native")


class NativeListener:
    """Accepts connections (bounded in number) and hands each request to its handler."""

    def __init__(self, name: str, limits: Limits, handlers: dict[Api, Handler], *,
                 instrument: Callable[[int, Handler], Handler],
                 on_protocol_error: Callable[[ErrorCode], None],
                 on_connections: Callable[[int], None]) -> None:
        #: The listener's name (``config.INTERNAL`` / ``EXTERNAL``): its clients are told the
        #: brokers' addresses on it.
        self.name = name
        self.limits = limits
        self._handlers = handlers
        self._instrument = instrument
        self._on_protocol_error = on_protocol_error
        self._on_connections = on_connections
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind and listen; an address that cannot be bound raises ``OSError`` (fatal for the broker)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientConnection(self, self.name), host, port, backlog=1024)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def close_all(self) -> None:
        for conn in list(self.connections):
            if conn.transport:
                conn.transport.close()

    # -- ConnectionOwner -------------------------------------------------------------------

    def connection_opened(self, conn: ClientConnection) -> None:
        if len(self.connections) >= self.limits.max_connections:
            log.warning("refusing connection from %s: %d connections open", conn.remote, len(self.connections))
            if conn.transport is not None:
                conn.transport.close()
            return
        self.connections.add(conn)
        self._on_connections(len(self.connections))

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self._on_connections(len(self.connections))

    def handler_for(self, api: int) -> Handler | None:
        try:
            h = self._handlers.get(Api(api))
        except ValueError:
            return None
        if h is None:
            return None
        return self._instrument(api, h)

    def protocol_error(self, code: ErrorCode) -> None:
        self._on_protocol_error(code)
