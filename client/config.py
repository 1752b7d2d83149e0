"""What every client's configuration has in common, and how options become a config.

Producer, consumer and admin client each have a config dataclass in kafka-python's names
(``_ms`` in milliseconds). They share the connection settings of :class:`ClusterOptions`,
from which :meth:`strata.client.cluster.Cluster.from_config` builds the one
:class:`~strata.client.cluster.Cluster` each client object owns, and they turn a user's
keyword arguments into a config the same way (:func:`build_config`): a misspelt option
fails at construction, not on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class ClusterOptions(Protocol):
    """The connection settings every client config has."""

    bootstrap: str | Sequence[str]
    client_id: str
    request_timeout_ms: int
    connect_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int


C = TypeVar("C")


def build_config(
    cls: Callable[..., C],
    what: str,
    bootstrap: str | Sequence[str] | None,
    bootstrap_servers: str | Sequence[str] | None,
    options: Mapping[str, Any],
) -> C:
    """``cls(**options)`` with the bootstrap resolved (``bootstrap_servers`` is kafka-python's
    name for it); an unknown option raises ``TypeError`` naming it."""
    known = set(getattr(cls, "__dataclass_fields__", ()))
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")
    return cls(bootstrap=bootstrap or bootstrap_servers or DEFAULT_BOOTSTRAP, **options)


def check_ranges(
    config: object, *, positive: Iterable[str] = (), non_negative: Iterable[str] = ()
) -> None:
    """``ValueError`` for the first named setting out of its range."""
    for name in positive:
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive")
    for name in non_negative:
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must not be negative")


__all__ = ["DEFAULT_BOOTSTRAP", "ClusterOptions", "build_config", "check_ranges"]
