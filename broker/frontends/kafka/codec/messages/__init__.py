"""Every declared Kafka message, and the registry the connection looks requests up in.

``REQUESTS[api_key]`` / ``RESPONSES[api_key]`` give the declaration classes; ``DECLARED``
the version range each API is declared for (what the listener may advertise, at most).
The declarations live one module per group of APIs; importing this package imports them
all (which registers them).
"""

from __future__ import annotations

from typing import Final

from strata.broker.frontends.kafka.codec.messages import (  # noqa: F401  (registers them)
    admin,
    cluster,
    fetch,
    groups,
    offsets,
    produce,
    security,
)
from strata.broker.frontends.kafka.codec.messages.admin import *  # noqa: F403
from strata.broker.frontends.kafka.codec.messages.cluster import *  # noqa: F403
from strata.broker.frontends.kafka.codec.messages.fetch import *  # noqa: F403
from strata.broker.frontends.kafka.codec.messages.groups import *  # noqa: F403
from strata.broker.frontends.kafka.codec.messages.offsets import *  # noqa: F403
from strata.broker.frontends.kafka.codec.messages.produce import *  # noqa: F403
from strata.broker.frontends.kafka.codec.messages.security import *  # noqa: F403
from strata.broker.frontends.kafka.codec.schema import REGISTRY, RequestMessage, ResponseMessage

REQUESTS: Final[dict[int, type[RequestMessage]]] = {
    key: cls for (key, _), cls in sorted(REGISTRY.items()) if issubclass(cls, RequestMessage)
}
RESPONSES: Final[dict[int, type[ResponseMessage]]] = {
    key: cls for (key, _), cls in sorted(REGISTRY.items()) if issubclass(cls, ResponseMessage)
}
#: The declared version range of every API: ``{api_key: (min, max)}``.
DECLARED: Final[dict[int, tuple[int, int]]] = {
    key: (cls.__kafka_api__.versions.low, cls.__kafka_api__.versions.high)
    for key, cls in REQUESTS.items()
}
