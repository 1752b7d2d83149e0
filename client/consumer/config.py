"""The consumer's settings, shared by the consumer, its fetcher and its group membership."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from strata.client.config import ClientConfig, check_ranges


@dataclass(slots=True)
class ConsumerConfig(ClientConfig):
    """Consumer settings (kafka-python's names, ``_ms`` in milliseconds)."""

    KIND: ClassVar[str] = "consumer"

    client_id: str = "strata-consumer"
    group_id: str | None = None
    auto_offset_reset: str = "latest"
    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 50 << 20
    max_partition_fetch_bytes: int = 1 << 20
    fetch_buffer_bytes: int = 64 << 20
    max_poll_records: int = 500
    check_crcs: bool = True
    consumer_timeout_ms: float = float("inf")
    key_deserializer: Callable[[bytes], Any] | None = None
    value_deserializer: Callable[[bytes], Any] | None = None
    #: Consumer groups (with ``subscribe()``): see docs/groups.md.
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int = 60_000
    group_assignor: str = "uniform"
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5_000

    def check(self) -> None:
        ClientConfig.check(self)
        cfg = self
        if cfg.auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(
                "auto_offset_reset must be 'earliest', 'latest' or 'none', "
                f"not {cfg.auto_offset_reset!r}"
            )
        check_ranges(
            cfg,
            positive=(
                "fetch_max_bytes",
                "max_partition_fetch_bytes",
                "fetch_buffer_bytes",
                "max_poll_records",
                "auto_commit_interval_ms",
            ),
        )
        if cfg.group_id is not None and (
            not isinstance(cfg.group_id, str) or not 1 <= len(cfg.group_id) <= 255
        ):
            raise ValueError(f"group_id must be a string of 1-255 characters, not {cfg.group_id!r}")
        if not 100 <= cfg.session_timeout_ms <= 300_000:
            raise ValueError("session_timeout_ms must be between 100 and 300000")
        if not 1 <= cfg.rebalance_timeout_ms <= 600_000:
            raise ValueError("rebalance_timeout_ms must be between 1 and 600000")
        if cfg.group_assignor not in ("uniform", "sticky", "range"):
            raise ValueError(
                f"group_assignor must be 'uniform' (alias 'sticky') or 'range', "
                f"not {cfg.group_assignor!r}"
            )


__all__ = ["ConsumerConfig"]
