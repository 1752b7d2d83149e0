"""The configs a user may set, their types, bounds and defaults, in Kafka's names.

One table serves every door: topic creation and ``ALTER_CONFIGS`` validate against it,
``DESCRIBE_CONFIGS`` lists it (with each value's source), and the broker turns a topic's
effective values into its partitions' ``LogConfig``. Values travel as strings (as in Kafka)
and are kept typed in the metadata log.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strata.client.errors import ErrorCode, error_for

if TYPE_CHECKING:
    from strata.broker.config import BrokerConfig

ConfigValue = int | float | str

_LONG_MAX = 2**63 - 1


@dataclass(slots=True, frozen=True)
class ConfigDef:
    name: str
    kind: type
    doc: str
    #: The broker setting that gives the default (``BrokerConfig`` attribute).
    default: Callable[[BrokerConfig], ConfigValue]
    lo: int | float | None = None
    hi: int | float | None = None
    choices: tuple[str, ...] = ()
    #: Spelling a string value the one way it is stored (before ``choices`` are checked).
    normalize: Callable[[str], str] | None = None

    def parse(self, value: object) -> ConfigValue:
        """The typed value for ``value`` (a string from the wire, or already typed)."""
        text = value if isinstance(value, str) else None
        if self.kind is str:
            if not isinstance(value, str):
                raise _invalid(self.name, value, "expected a string")
            v = value.strip() if self.normalize is None else self.normalize(value)
            if self.choices and v not in self.choices:
                raise _invalid(self.name, value, f"expected one of {', '.join(self.choices)}")
            return v
        try:
            if self.kind is int:
                if isinstance(value, bool | float):
                    raise ValueError
                number: int | float = int(text.strip()) if text is not None else int(value)  # type: ignore[call-overload]
            else:
                number = float(text.strip()) if text is not None else float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _invalid(self.name, value, f"expected {'an integer' if self.kind is int else 'a number'}") from None
        if (self.lo is not None and number < self.lo) or (self.hi is not None and number > self.hi):
            raise _invalid(self.name, value, f"must be between {self.lo} and {self.hi}")
        return number


def _invalid(name: str, value: object, why: str) -> Exception:
    return error_for(ErrorCode.INVALID_CONFIG, f"invalid value {value!r} for config {name}: {why}")


def _retention_ms(c: BrokerConfig) -> int:
    return c.retention_ms


def _cleanup_policy(value: str) -> str:
    """Kafka's ``cleanup.policy`` is a list: "delete,compact", "compact, delete" and
    "compact,delete" are one policy, stored as "compact,delete"."""
    parts = sorted({p.strip() for p in value.split(",") if p.strip()})
    return ",".join(parts)


#: Kafka's defaults for the compaction settings (``docs/compaction.md``).
DEFAULT_CLEANUP_POLICY = "delete"
DEFAULT_MIN_CLEANABLE_DIRTY_RATIO = 0.5
DEFAULT_DELETE_RETENTION_MS = 24 * 3600 * 1000
#: ``max.compaction.lag.ms`` = Long.MAX_VALUE: never forced by age.
MAX_COMPACTION_LAG_NEVER = _LONG_MAX


TOPIC_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in (
        ConfigDef("retention.ms", int, "How long records are kept, in ms; -1 keeps them forever.",
                  _retention_ms, -1, _LONG_MAX),
        ConfigDef("retention.bytes", int,
                  "Largest size a partition may grow to before old segments are deleted; -1: no limit.",
                  lambda c: c.retention_bytes, -1, _LONG_MAX),
        ConfigDef("segment.bytes", int, "Size of one segment file; the active segment rolls at this size.",
                  lambda c: c.segment_bytes, 1 << 14, (1 << 31) - 1),
        ConfigDef("segment.ms", int, "Age at which the active segment rolls even if not full, in ms.",
                  lambda c: c.segment_ms, 1000, _LONG_MAX),
        ConfigDef("max.message.bytes", int,
                  "Largest record batch the topic accepts, in bytes (after compression).",
                  lambda c: c.limits.max_batch_bytes, 1, 1 << 30),
        ConfigDef("cleanup.policy", str,
                  "delete: old segments go by retention.ms/bytes; compact: keep each key's latest "
                  "record (records need keys); compact,delete: both.",
                  lambda c: DEFAULT_CLEANUP_POLICY, choices=("compact", "compact,delete", "delete"),
                  normalize=_cleanup_policy),
        ConfigDef("min.cleanable.dirty.ratio", float,
                  "A compacted partition is cleaned once its dirty bytes reach this share of its "
                  "cleanable bytes.", lambda c: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO, 0.0, 1.0),
        ConfigDef("min.compaction.lag.ms", int, "Records younger than this are never compacted, in ms.",
                  lambda c: 0, 0, _LONG_MAX),
        ConfigDef("max.compaction.lag.ms", int,
                  "A compacted partition whose oldest dirty record is older than this is cleaned "
                  "whatever its dirty ratio, in ms.", lambda c: MAX_COMPACTION_LAG_NEVER, 1, _LONG_MAX),
        ConfigDef("delete.retention.ms", int,
                  "How long a tombstone (a null value) stays readable after its segment was first "
                  "cleaned, in ms.", lambda c: DEFAULT_DELETE_RETENTION_MS, 0, _LONG_MAX),
    )
}


#: Cluster-wide settings (Kafka's dynamic cluster-default broker configs), kept in the
#: metadata log and changed with ALTER_CONFIGS on the broker resource "" (the cluster).
CLUSTER_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in (
        ConfigDef("default.replication.factor", int,
                  "Replication factor of a topic created without one (default: min(3, brokers)).",
                  lambda c: c.default_replication_factor if c.default_replication_factor > 0
                  else min(3, len(c.peers)), 1, 32),
        ConfigDef("num.partitions", int, "Partitions of a topic created without a partition count.",
                  lambda c: c.default_partitions, 1, 10_000),
    )
}


def parse_topic_configs(configs: Mapping[str, object]) -> dict[str, ConfigValue]:
    """Validate a whole set (creation): unknown keys and bad values raise INVALID_CONFIG."""
    out: dict[str, ConfigValue] = {}
    for key, value in configs.items():
        out[key] = topic_config_def(key).parse(value)
    check_topic_configs(out)
    return out


def check_topic_configs(configs: Mapping[str, ConfigValue]) -> None:
    """The rules between a topic's settings (each value is already valid on its own)."""
    lo = configs.get("min.compaction.lag.ms", 0)
    hi = configs.get("max.compaction.lag.ms", MAX_COMPACTION_LAG_NEVER)
    if isinstance(lo, int) and isinstance(hi, int) and hi < lo:
        raise error_for(ErrorCode.INVALID_CONFIG,
                        f"max.compaction.lag.ms ({hi}) must be at least min.compaction.lag.ms ({lo})")


def topic_config_def(key: str) -> ConfigDef:
    return _lookup(TOPIC_CONFIGS, key, "topic")


def cluster_config_def(key: str) -> ConfigDef:
    return _lookup(CLUSTER_CONFIGS, key, "cluster")


def _lookup(table: Mapping[str, ConfigDef], key: str, what: str) -> ConfigDef:
    d = table.get(key)
    if d is None:
        raise error_for(ErrorCode.INVALID_CONFIG, f"unknown {what} config {key!r}; known: {', '.join(sorted(table))}")
    return d


def effective(table: Mapping[str, ConfigDef], configs: Mapping[str, ConfigValue], set_source: str,
              broker: BrokerConfig) -> dict[str, tuple[ConfigValue, str]]:
    """Every config of ``table`` with its value and where it comes from (``set_source`` or "default")."""
    out: dict[str, tuple[ConfigValue, str]] = {}
    for name, d in table.items():
        if name in configs:
            out[name] = (configs[name], set_source)
        else:
            out[name] = (d.default(broker), "default")
    return out


def config_ops(ops: list[tuple[str, str, str | None]], lookup: Callable[[str], ConfigDef]
               ) -> tuple[dict[str, ConfigValue], list[str]]:
    """``(to_set, to_delete)`` for an incremental change; raises INVALID_CONFIG naming the problem."""
    to_set: dict[str, ConfigValue] = {}
    to_delete: list[str] = []
    for name, op, value in ops:
        d = lookup(name)
        if op == "set":
            if value is None:
                raise error_for(ErrorCode.INVALID_CONFIG, f"config {name}: 'set' needs a value")
            to_set[name] = d.parse(value)
        elif op == "delete":
            to_delete.append(name)
        else:
            raise error_for(ErrorCode.INVALID_CONFIG, f"config {name}: unknown operation {op!r} (set or delete)")
    return to_set, to_delete


def to_text(value: ConfigValue) -> str:
    return repr(value) if isinstance(value, float) else str(value)
