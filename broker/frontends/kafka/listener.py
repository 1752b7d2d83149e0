"""The Kafka listener: every Kafka client and tool, on ``--kafka-listen``."""

from __future__ import annotations

from collections.abc import Callable

from strata.broker.config import Limits
from strata.broker.frontends.kafka.codec import ApiKey
from strata.broker.frontends.kafka.connection import KafkaConnection, KafkaHandler
from strata.broker.frontends.stream import Listener


class KafkaListener(Listener):
    def __init__(self, name: str, limits: Limits, handlers: dict[ApiKey, KafkaHandler], *,
                 instrument: Callable[[str, KafkaHandler], KafkaHandler],
                 on_protocol_error: Callable[[str], None],
                 on_connections: Callable[[int], None]) -> None:
        super().__init__(name, max_connections=limits.max_connections,
                         max_in_flight=limits.max_in_flight_per_connection, on_connections=on_connections)
        self.limits = limits
        self._handlers = {k: instrument(f"kafka_{k.name.lower()}", h) for k, h in handlers.items()}
        self._on_protocol_error = on_protocol_error

    def connection(self) -> KafkaConnection:
        return KafkaConnection(self)

    def handler_for(self, api_key: ApiKey) -> KafkaHandler | None:
        return self._handlers.get(api_key)

    def protocol_error(self, what: str) -> None:
        self._on_protocol_error(what)
