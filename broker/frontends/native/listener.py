"""The native protocol's listener: Strata's clients and the peer brokers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from strata.broker.config import Limits
from strata.broker.frontends.native.connection import ClientConnection, Handler
from strata.broker.frontends.stream import Listener
from strata.client.errors import ErrorCode
from strata.client.protocol import Api


class NativeListener(Listener):
    """Accepts native connections and hands each request to its handler."""

    def __init__(self, name: str, limits: Limits, handlers: Mapping[Api, Handler], *,
                 instrument: Callable[[int, Handler], Handler],
                 on_protocol_error: Callable[[ErrorCode], None],
                 on_connections: Callable[[int], None]) -> None:
        super().__init__(name, max_connections=limits.max_connections,
                         max_in_flight=limits.max_in_flight_per_connection, on_connections=on_connections)
        self.limits = limits
        #: By the API's number: a request's ``api`` is looked up as it came, no enum made.
        self._handlers: dict[int, Handler] = {int(a): h for a, h in handlers.items()}
        self._instrument = instrument
        self._on_protocol_error = on_protocol_error

    def connection(self) -> ClientConnection:
        return ClientConnection(self)

    def handler_for(self, api: int) -> Handler | None:
        h = self._handlers.get(api)
        if h is None:
            return None
        return self._instrument(api, h)

    def protocol_error(self, code: ErrorCode) -> None:
        self._on_protocol_error(code)
