"""What every client's configuration has in common, and how options become a config.

Producer, consumer and admin client each have a config dataclass in kafka-python's names
(``_ms`` in milliseconds). They share the connection settings of :class:`ClientConfig`,
from which :meth:`strata.client.cluster.Cluster.from_config` builds the one
:class:`~strata.client.cluster.Cluster` each client object owns, and they turn a user's
keyword arguments into a config the same way (:func:`build_config`): a misspelt option
fails at construction, not on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

DEFAULT_BOOTSTRAP = "127.0.0.1:9192"


@dataclass(slots=True)
class ClientConfig:
    """The connection settings every client has (each client's config extends this)."""

    bootstrap: str | Sequence[str] = DEFAULT_BOOTSTRAP
    client_id: str = "strata-python"
    request_timeout_ms: int = 30_000
    connect_timeout_ms: int = 10_000
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 1_000

    #: What the options are called in errors ("unknown producer option(s): ...").
    KIND: ClassVar[str] = "client"

    @classmethod
    def build(
        cls: type[Cfg],
        bootstrap: str | Sequence[str] | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        **options: Any,
    ) -> Cfg:
        """Validate the user's arguments: a mistake fails here, not on first use."""
        cfg = build_config(cls, cls.KIND, bootstrap, bootstrap_servers, options)
        cfg.check()
        return cfg

    @property
    def request_timeout_s(self) -> float:
        return self.request_timeout_ms / 1000

    @property
    def retry_backoff_s(self) -> float:
        return self.retry_backoff_ms / 1000

    def check(self) -> None:
        """``ValueError`` for a setting out of range (subclasses check theirs too)."""
        check_ranges(
            self,
            positive=("request_timeout_ms", "connect_timeout_ms"),
            non_negative=("retry_backoff_ms", "retry_backoff_max_ms"),
        )


Cfg = TypeVar("Cfg", bound=ClientConfig)
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


__all__ = ["DEFAULT_BOOTSTRAP", "ClientConfig", "build_config", "check_ranges"]
