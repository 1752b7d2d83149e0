"""Topic and broker configuration as the admin client sees it (kafka-python's names).

``ConfigResource`` names what to describe or alter; ``ConfigEntry`` is one config as
described (value, and where it comes from); ``NewPartitions`` is the new partition count
of a topic. Values are strings on the wire, as in Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class ConfigResourceType(Enum):
    TOPIC = "topic"
    BROKER = "broker"

    @classmethod
    def parse(cls, value: ConfigResourceType | str) -> ConfigResourceType:
        """``ConfigResourceType.TOPIC``, ``"TOPIC"`` or ``"topic"``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise ValueError(f"a config resource type is 'topic' or 'broker', not {value!r}")


@dataclass(slots=True, frozen=True)
class ConfigResource:
    """A topic (or broker) whose configs to describe or alter.

    For ``describe_configs`` the keys of ``configs`` (or a list of names) narrow the
    answer to those configs. For ``alter_configs`` ``configs`` maps each key to its new
    value, or to ``None`` to delete it (back to its default); keys not named keep their
    values (an incremental change).
    """

    resource_type: ConfigResourceType
    name: str
    configs: Mapping[str, str | None] | Iterable[str] | None = field(
        default=None, compare=False, hash=False
    )

    def __init__(
        self,
        resource_type: ConfigResourceType | str,
        name: str,
        configs: Mapping[str, Any] | Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a config resource needs a name, not {name!r}")
        object.__setattr__(self, "resource_type", ConfigResourceType.parse(resource_type))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "configs", configs)

    def wire_type(self) -> str:
        return self.resource_type.value

    def keys(self) -> list[str] | None:
        """The config names asked for, or None for all of them."""
        if self.configs is None:
            return None
        return sorted(str(k) for k in self.configs)

    def ops(self) -> list[dict[str, Any]]:
        """``configs`` as ALTER_CONFIGS operations (set, or delete for ``None``)."""
        if not isinstance(self.configs, Mapping) or not self.configs:
            raise ValueError(
                f"alter_configs() needs ConfigResource({self.resource_type.name}, {self.name!r}, "
                "configs={key: value or None})"
            )
        out: list[dict[str, Any]] = []
        for key, value in sorted(self.configs.items()):
            if value is None:
                out.append({"name": str(key), "op": "delete", "value": None})
            else:
                out.append({"name": str(key), "op": "set", "value": config_value(value)})
        return out


def config_value(value: Any) -> str:
    """Config values travel as strings; booleans as Kafka spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(slots=True, frozen=True)
class ConfigEntry:
    """One config of a resource, as ``describe_configs`` reports it.

    ``source`` is ``"topic"`` (set on the topic), ``"broker"`` (set on the broker) or
    ``"default"``; ``value`` is None for a sensitive or unset config.
    """

    name: str
    value: str | None
    source: str = "default"
    read_only: bool = False
    sensitive: bool = False
    doc: str = ""

    @property
    def is_default(self) -> bool:
        return self.source == "default"

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source}


@dataclass(slots=True, frozen=True)
class NewPartitions:
    """The partition count a topic should grow to (the new total, as Kafka's ``--partitions``).

    Explicit replica assignments are not supported: the controller places new partitions
    as it places a new topic's.
    """

    total_count: int
    new_assignments: list[list[int]] | None = None


__all__ = ["ConfigEntry", "ConfigResource", "ConfigResourceType", "NewPartitions", "config_value"]
