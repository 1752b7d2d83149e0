"""System drivers, one module per benchmarked system, and the registry the runner picks from.

Drivers are created lazily (a factory per name) so that selecting only Redis
never imports nats-py, and a missing client package fails that one system with
a clear line instead of the whole run.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.omb.driver import Driver


def _strata(flush_policy: str, *, kafka_listener: bool = False) -> Callable[[], Driver]:
    def make() -> Driver:
        from benchmarks.omb.drivers.strata import StrataDriver

        return StrataDriver(flush_policy, kafka_listener=kafka_listener)

    return make


def _nats() -> Driver:
    from benchmarks.omb.drivers.nats import NatsJetStreamDriver

    return NatsJetStreamDriver()


def _redis(appendfsync: str) -> Callable[[], Driver]:
    def make() -> Driver:
        from benchmarks.omb.drivers.redis import RedisStreamsDriver

        return RedisStreamsDriver(appendfsync)

    return make


def _apache_kafka() -> Driver:
    from benchmarks.omb.drivers.apache_kafka import ApacheKafkaDriver

    return ApacheKafkaDriver()


#: Row name -> factory, in the order the results list them (Strata's two flush policies first).
DRIVERS: dict[str, Callable[[], Driver]] = {
    "strata-always": _strata("always"),
    "strata-never": _strata("never"),
    "strata-kafka": _strata("never", kafka_listener=True),
    "apache-kafka": _apache_kafka,
    "nats-jetstream": _nats,
    "redis-aof-always": _redis("always"),
    "redis-aof-everysec": _redis("everysec"),
}

#: Short names accepted by ``--drivers``.
ALIASES: dict[str, tuple[str, ...]] = {
    "strata": ("strata-always", "strata-never", "strata-kafka"),
    "kafka": ("apache-kafka",),
    "nats": ("nats-jetstream",),
    "redis": ("redis-aof-always", "redis-aof-everysec"),
    "peers": ("apache-kafka", "nats-jetstream", "redis-aof-always", "redis-aof-everysec"),
    "all": tuple(DRIVERS),
}


def resolve(names: list[str] | None) -> list[str]:
    """Expand aliases and check names; keeps registry order and drops duplicates."""
    if not names:
        return list(DRIVERS)
    wanted: set[str] = set()
    for name in names:
        if name in ALIASES:
            wanted.update(ALIASES[name])
        elif name in DRIVERS:
            wanted.add(name)
        else:
            known = ", ".join([*DRIVERS, *ALIASES])
            raise ValueError(f"unknown driver {name!r}; known: {known}")
    return [n for n in DRIVERS if n in wanted]
