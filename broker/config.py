"""Broker configuration: flags, an optional TOML file, and the limits on everything from outside.

Every bound the broker enforces lives here with its default, so an operator can read one
dataclass to learn what the broker will refuse.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Listener names: ``internal`` (``--listen``: peers and clients in the peers' network) and
#: ``external`` (``--external-listen``).
INTERNAL = "internal"
EXTERNAL = "external"
#: The Kafka API's listener (``--kafka-listen``), and its second one for Kafka clients outside
#: the brokers' network (``--kafka-external-listen``), as Kafka's INTERNAL/EXTERNAL listeners.
KAFKA = "kafka"
KAFKA_EXTERNAL = "kafka-external"


class ConfigError(ValueError):
    """A flag or config file value the broker cannot start with."""


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` to a tuple, with a message that says what was wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{what} {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what} {text!r}: port {port} is out of range 0-65535")
    return host.strip("[]"), port


def parse_peers(text: str) -> dict[int, tuple[str, int]]:
    """``1@h:p,2@h:p`` to ``{1: (h, p), 2: (h, p)}``."""
    peers: dict[int, tuple[str, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        ident, sep, addr = part.partition("@")
        if not sep:
            raise ConfigError(f"peer {part!r} is not ID@HOST:PORT")
        try:
            node_id = int(ident)
        except ValueError:
            raise ConfigError(f"peer {part!r}: id {ident!r} is not a number") from None
        if node_id < 0:
            raise ConfigError(f"peer {part!r}: id must be >= 0")
        if node_id in peers:
            raise ConfigError(f"peer id {node_id} is listed twice")
        peers[node_id] = parse_host_port(addr, what=f"peer {node_id}")
    if not peers:
        raise ConfigError("--peers lists no broker")
    return peers


@dataclass(slots=True)
class Limits:
    """Bounds on what clients and peers may ask of a broker."""

    max_frame_bytes: int = 64 << 20
    max_header_bytes: int = 1 << 20
    max_batch_bytes: int = 16 << 20
    max_connections: int = 1024
    max_in_flight_per_connection: int = 128
    max_fetch_bytes: int = 64 << 20
    max_fetch_wait_ms: int = 30_000
    max_produce_timeout_ms: int = 120_000
    max_partitions_per_topic: int = 10_000
    max_pending_appends: int = 10_000  # per replica: appends awaiting commit
    max_raft_inflight_bytes: int = 8 << 20  # per follower
    max_raft_inflight_msgs: int = 64  # per follower


@dataclass(slots=True)
class RaftTiming:
    """Raft ticks. Election timeouts are randomized in [election_ticks, 2*election_ticks)."""

    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 2


@dataclass(slots=True)
class BrokerConfig:
    node_id: int
    data_dir: Path
    listen: tuple[str, int]
    peers: dict[int, tuple[str, int]]
    metrics_listen: tuple[str, int] | None = None
    advertised: tuple[str, int] | None = None
    #: A second native listener for clients outside the peers' network (Docker's published
    #: ports, ...): a client is told the addresses of the listener it connected to.
    external_listen: tuple[str, int] | None = None
    external_advertised: tuple[str, int] | None = None
    #: The Kafka API (every Kafka client and tool), and the address its clients are told.
    kafka_listen: tuple[str, int] | None = None
    kafka_advertised: tuple[str, int] | None = None
    kafka_external_listen: tuple[str, int] | None = None
    kafka_external_advertised: tuple[str, int] | None = None
    flush_policy: str = "always"
    flush_interval_ms: int = 1000
    segment_bytes: int = 128 << 20
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    retention_check_ms: int = 30_000
    default_partitions: int = 1
    #: ``default.replication.factor`` for a topic created without one (-1: min(3, brokers));
    #: the cluster-wide setting in the metadata (ALTER_CONFIGS) takes precedence.
    default_replication_factor: int = -1
    offsets_partitions: int = 12
    #: Idle partitions' Raft groups stop ticking and heartbeating (see docs/internals.md).
    quiesce: bool = True
    #: The log cleaner's read + write budget, shared by every compacted partition (Kafka's
    #: ``log.cleaner.io.max.bytes.per.second``); 0: unthrottled. Kafka's default is unlimited,
    #: but here the cleaner shares the interpreter with the broker: at 16 MiB/s a concurrent
    #: appender keeps ~90% of its rate (docs/compaction.md, "Figures").
    cleaner_io_bytes_per_second: int = 16 << 20
    #: Memory for one cleaning pass's key map (``log.cleaner.dedupe.buffer.size``).
    cleaner_map_bytes: int = 128 << 20
    #: How long the cleaner sleeps when no log is due (``log.cleaner.backoff.ms``).
    cleaner_backoff_ms: int = 15_000
    #: A group's committed offsets are deleted this long after the group became empty (a
    #: group without members: after its last commit), as Kafka's ``offsets.retention.minutes``.
    offsets_retention_minutes: int = 7 * 24 * 60
    limits: Limits = field(default_factory=Limits)
    raft: RaftTiming = field(default_factory=RaftTiming)

    def __post_init__(self) -> None:
        if self.node_id not in self.peers:
            raise ConfigError(
                f"--id {self.node_id} is not among --peers ({', '.join(map(str, sorted(self.peers)))}); "
                "list this broker in --peers too"
            )
        if self.flush_policy not in ("always", "interval", "never"):
            raise ConfigError(f"flush policy {self.flush_policy!r} is not one of always, interval, never")
        for name in ("segment_bytes", "flush_interval_ms", "offsets_partitions", "default_partitions",
                     "cleaner_map_bytes", "cleaner_backoff_ms", "offsets_retention_minutes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.cleaner_io_bytes_per_second < 0:
            raise ConfigError(f"cleaner_io_bytes_per_second must be >= 0 (0: unthrottled), "
                              f"got {self.cleaner_io_bytes_per_second}")
        if self.external_advertised is not None and self.external_listen is None:
            raise ConfigError("--external-advertised needs --external-listen (the listener it advertises)")
        if self.kafka_advertised is not None and self.kafka_listen is None:
            raise ConfigError("--kafka-advertised needs --kafka-listen (the listener it advertises)")
        if self.kafka_external_advertised is not None and self.kafka_external_listen is None:
            raise ConfigError("--kafka-external-advertised needs --kafka-external-listen (the listener it advertises)")
        binds = [self.listen, self.external_listen, self.kafka_listen, self.kafka_external_listen,
                 self.metrics_listen]
        ports = [b for b in binds if b is not None]
        if len(set(ports)) != len(ports):
            raise ConfigError(f"listeners must have distinct addresses, got {', '.join(f'{h}:{p}' for h, p in ports)}")
        if self.raft.election_ticks <= self.raft.heartbeat_ticks:
            raise ConfigError("raft election_ticks must be larger than heartbeat_ticks")

    @property
    def advertised_address(self) -> tuple[str, int]:
        return self.advertised or self.listen

    def endpoints(self) -> dict[str, tuple[str, int]]:
        """The addresses clients are told, per listener other than the internal one."""
        out: dict[str, tuple[str, int]] = {}
        if self.external_listen is not None:
            out[EXTERNAL] = self.external_advertised or self.external_listen
        if self.kafka_listen is not None:
            out[KAFKA] = self.kafka_advertised or self.kafka_listen
        if self.kafka_external_listen is not None:
            out[KAFKA_EXTERNAL] = self.kafka_external_advertised or self.kafka_external_listen
        return out


_FILE_KEYS = {
    "flush_policy": str,
    "flush_interval_ms": int,
    "segment_bytes": int,
    "segment_ms": int,
    "retention_ms": int,
    "retention_bytes": int,
    "retention_check_ms": int,
    "default_partitions": int,
    "default_replication_factor": int,
    "offsets_partitions": int,
    "quiesce": bool,
    "cleaner_io_bytes_per_second": int,
    "cleaner_map_bytes": int,
    "cleaner_backoff_ms": int,
    "offsets_retention_minutes": int,
}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file: top-level keys as in ``BrokerConfig``, plus [limits] and [raft]."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "limits":
            out["limits"] = _sub(Limits, value, path, key)
        elif key == "raft":
            out["raft"] = _sub(RaftTiming, value, path, key)
        elif key in _FILE_KEYS:
            if not isinstance(value, _FILE_KEYS[key]) or (isinstance(value, bool) and _FILE_KEYS[key] is not bool):
                raise ConfigError(f"config file {path}: {key} must be {_FILE_KEYS[key].__name__}")
            out[key] = value
        else:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
    return out


def _sub(cls: type[Any], value: object, path: Path, section: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in value.items():
        if k not in names:
            raise ConfigError(f"config file {path}: unknown key {section}.{k}")
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"config file {path}: {section}.{k} must be a positive integer")
    return cls(**value)
