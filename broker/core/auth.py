"""Who is asking, and whether they may: the seam where security plugs into the core.

A front-end authenticates a connection (today: nobody is authenticated, every connection is
:data:`ANONYMOUS`) and passes the resulting :class:`Principal` into every core call; the
core asks its :class:`Authorizer` before acting, whichever door the request came in by.
Kafka's model is the target (principal, host, resource type and name, operation; deny
wins): :class:`Operation` and :class:`Resource` use its names so that ACLs can be added
without touching the call sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


@dataclass(slots=True, frozen=True)
class Principal:
    """An authenticated identity (Kafka's ``KafkaPrincipal``: ``User:alice``)."""

    type: str = "User"
    name: str = "ANONYMOUS"
    #: The client's address, for host-scoped rules.
    host: str = ""

    def __str__(self) -> str:
        return f"{self.type}:{self.name}"


ANONYMOUS = Principal()


class Operation(Enum):
    READ = "Read"
    WRITE = "Write"
    CREATE = "Create"
    DELETE = "Delete"
    ALTER = "Alter"
    DESCRIBE = "Describe"
    CLUSTER_ACTION = "ClusterAction"
    DESCRIBE_CONFIGS = "DescribeConfigs"
    ALTER_CONFIGS = "AlterConfigs"
    IDEMPOTENT_WRITE = "IdempotentWrite"


class ResourceType(Enum):
    TOPIC = "Topic"
    GROUP = "Group"
    CLUSTER = "Cluster"


@dataclass(slots=True, frozen=True)
class Resource:
    type: ResourceType
    name: str


CLUSTER = Resource(ResourceType.CLUSTER, "kafka-cluster")


class Authorizer(Protocol):
    def authorize(self, principal: Principal, operation: Operation, resource: Resource) -> None:
        """Return if allowed; raise a ``StrataError`` with an authorization code if not."""


class AllowAll:
    """The open cluster's authorizer: everything is allowed (the dev cluster's default)."""

    def authorize(self, principal: Principal, operation: Operation, resource: Resource) -> None:
        return None
