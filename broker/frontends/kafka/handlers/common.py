"""What every Kafka handler shares: the core it calls, topic ids as Kafka sees them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from strata.broker.config import KAFKA
from strata.broker.frontends.kafka.codec import KafkaErrorCode

if TYPE_CHECKING:
    from strata.broker.cluster.controller import Controller
    from strata.broker.config import BrokerConfig
    from strata.broker.core.admin import AdminService
    from strata.broker.core.partitions import PartitionService
    from strata.broker.groups.coordinator import GroupCoordinator


_TOPIC_ID_NAMESPACE = uuid.UUID("6b3c3d1e-5a0f-4c53-9a86-3f1d2b8e7a10")


@dataclass(slots=True)
class KafkaContext:
    config: BrokerConfig
    cluster_id: str
    partitions: PartitionService
    admin: AdminService
    groups: GroupCoordinator
    controller: Controller
    data_dir: Path
    broker_address: Callable[[int, str], tuple[str, int] | None]

    def topic_uuid(self, topic_id: int) -> uuid.UUID:
        """A topic's id as Kafka shows it (a UUID): derived from the cluster and Strata's
        topic id, so every broker gives the same one, and a topic created again under the
        same name gets another."""
        return uuid.uuid5(_TOPIC_ID_NAMESPACE, f"{self.cluster_id}/{topic_id}")

    def topic_by_uuid(self, topic_uuid: uuid.UUID) -> str | None:
        for name, t in self.controller.image.topics.items():
            if self.topic_uuid(t.topic_id) == topic_uuid:
                return name
        return None


NONE = int(KafkaErrorCode.NONE)

__all__ = ["KAFKA", "NONE", "KafkaContext"]
