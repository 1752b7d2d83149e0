"""The admin client: :class:`AdminClient` (sync) and :class:`AIOAdminClient` (asyncio),
with what they take and answer (:mod:`.types`: descriptions and changes, :mod:`.configs`)."""

from __future__ import annotations

from strata.client.admin.aio import AdminConfig, AIOAdminClient
from strata.client.admin.configs import (
    ConfigEntry,
    ConfigResource,
    ConfigResourceType,
    NewPartitions,
)
from strata.client.admin.sync import AdminClient
from strata.client.admin.types import NewTopic

__all__ = [
    "AIOAdminClient",
    "AdminClient",
    "AdminConfig",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceType",
    "NewPartitions",
    "NewTopic",
]
