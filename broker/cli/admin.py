"""The admin commands of ``strata``: topics (create, list, describe, configs, partitions,
delete), consumer groups (list, describe, seek, reset, delete) and cluster status.

Built on the sync :class:`~strata.client.AdminClient`, with the option, output and error
conventions of :mod:`strata.broker.cli.client`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import click

from strata.broker.cli.client import (
    _admin,
    _bootstrap,
    _errors,
    _fail,
    _ids,
    _kv,
    _off,
    _output,
    _parse_time,
    _start,
    _table,
)

# -- topic -------------------------------------------------------------------------------


@click.group("topic")
def topic_group() -> None:
    """Create, list, describe, configure and delete topics."""


@topic_group.command("create")
@click.argument("name")
@_bootstrap
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--replication-factor", "-r", type=click.IntRange(min=1), default=None,
              help="Replicas per partition (default: the cluster's default.replication.factor, "
                   "min(3, brokers) unless configured).")
@click.option("--config", "-c", "configs", multiple=True, metavar="K=V",
              help="Topic config (repeatable), e.g. retention.ms, retention.bytes, segment.bytes, "
                   "max.message.bytes; 'strata topic describe' lists them all.")
@click.option("--no-wait", is_flag=True, help="Return before every partition has a leader.")
def topic_create(name: str, bootstrap: str, partitions: int, replication_factor: int | None,
                 configs: tuple[str, ...], no_wait: bool) -> None:
    """Create topic NAME.

    \b
    Examples:
      strata topic create events --partitions 6 --replication-factor 3
      strata topic create logs --partitions 3 --config retention.ms=86400000
    """
    cfg = dict(_kv(configs, "config"))
    _start()
    with _errors(), _admin(bootstrap) as admin:
        created = admin.create_topic(name, partitions, replication_factor or -1, cfg,
                                     wait=not no_wait)
    rf = created.replication_factor if created.replication_factor > 0 else replication_factor
    used = f"replication factor {rf}" if rf else "the cluster's default replication factor"
    if replication_factor is None and rf:
        used += " (the cluster's default)"
    n = created.partitions if created.partitions > 0 else partitions
    click.echo(f"created topic {name} ({n} partition{'s' if n != 1 else ''}, {used})")


@topic_group.command("list")
@_bootstrap
@_output
@click.option("--internal", is_flag=True, help="Include internal topics (names starting with '__').")
def topic_list(bootstrap: str, output: str, internal: bool) -> None:
    """List topics.

    \b
    Examples:
      strata topic list
      strata topic list --output json
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        names = admin.list_topics(internal=internal)
        descs = admin.describe_topics(names) if names else []
    rows = [{"name": d.name, "partitions": len(d.partitions),
             "replication_factor": max((len(p.replicas) for p in d.partitions), default=0)}
            for d in descs]
    if output == "json":
        click.echo(json.dumps({"topics": rows}))
        return
    _table(["NAME", "PARTITIONS", "REPLICAS"],
           [[r["name"], r["partitions"], r["replication_factor"]] for r in rows])


@topic_group.command("describe")
@click.argument("name")
@_bootstrap
@_output
def topic_describe(name: str, bootstrap: str, output: str) -> None:
    """Show each partition of NAME (leader, replicas, in-sync replicas, offsets; for a
    compacted topic the dirty ratio: the share of the cleanable log not cleaned yet), the
    cleanup policy, and the topic's configs, each with its source: 'topic' when set on the
    topic, else 'default'.

    \b
    Examples:
      strata topic describe events
      strata topic describe events --output json | jq '.configs["retention.ms"]'
    """
    from strata.client.aio import ConfigResource, ConfigResourceType

    _start()
    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_topic(name)
        resource = ConfigResource(ConfigResourceType.TOPIC, name)
        configs = admin.describe_configs([resource])[resource]
    policy_entry = configs.get("cleanup.policy")
    policy = policy_entry.value if policy_entry is not None and policy_entry.value else "delete"
    if output == "json":
        doc = desc.to_dict()
        doc["cleanup_policy"] = policy
        doc["configs"] = {k: c.to_dict() for k, c in configs.items()}
        click.echo(json.dumps(doc))
        return
    click.echo(f"Topic: {name}  cleanup.policy: {policy}")
    _table(
        ["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END", "HIGH-WATERMARK", "DIRTY-RATIO"],
        [[p.partition, "-" if p.leader is None else p.leader, _ids(p.replicas), _ids(p.isr),
          _off(p.log_start_offset), _off(p.log_end_offset), _off(p.high_watermark),
          "-" if p.dirty_ratio is None else f"{p.dirty_ratio:.3f}"]
         for p in desc.partitions],
    )
    click.echo("")
    _table(["CONFIG", "VALUE", "SOURCE"],
           [[c.name, "-" if c.value is None else c.value, c.source] for c in configs.values()])


@topic_group.command("alter-config")
@click.argument("name")
@_bootstrap
@click.option("--set", "sets", multiple=True, metavar="K=V", help="Set a config (repeatable).")
@click.option("--delete", "deletes", multiple=True, metavar="K",
              help="Delete a config: back to its default (repeatable).")
@click.option("--dry-run", is_flag=True, help="Validate the change without applying it.")
def topic_alter_config(name: str, bootstrap: str, sets: tuple[str, ...], deletes: tuple[str, ...],
                       dry_run: bool) -> None:
    """Change configs of topic NAME; configs not named keep their values.

    Every replica applies the change at once, without a restart.

    \b
    Examples:
      strata topic alter-config events --set retention.ms=86400000
      strata topic alter-config events --set max.message.bytes=20971520 --delete segment.bytes
    """
    from strata.client.aio import ConfigResource, ConfigResourceType

    changes: dict[str, str | None] = dict(_kv(sets, "set"))
    for key in deletes:
        if key in changes:
            _fail(f"{key} is both set and deleted", "name each config once", code=2)
        changes[key] = None
    if not changes:
        _fail("nothing to change", "give --set K=V and/or --delete K", code=2)
    _start()
    with _errors(), _admin(bootstrap) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, changes)],
                            validate_only=dry_run)
    verb = "would change" if dry_run else "changed"
    for key, value in changes.items():
        click.echo(f"{verb} {name}: {key} = {value}" if value is not None
                   else f"{verb} {name}: {key} deleted (default)")


@topic_group.command("add-partitions")
@click.argument("name")
@_bootstrap
@click.option("--num", "total", type=click.IntRange(min=1), required=True,
              help="The new total number of partitions (as Kafka's --partitions).")
def topic_add_partitions(name: str, bootstrap: str, total: int) -> None:
    """Grow topic NAME to N partitions in all.

    Keys map to partitions by the partition count, so records of a key may go to a new
    partition from now on.

    \b
    Example:
      strata topic add-partitions events --num 12
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        before = len(admin.describe_topic(name).partitions)
        if total <= before:
            _fail(f"topic {name} has {before} partitions already; --num is the new total",
                  f"e.g. --num {before + 1}", code=2)
        admin.create_partitions({name: total})
    click.echo(f"topic {name} now has {total} partitions (was {before})")


@topic_group.command("delete")
@click.argument("name")
@_bootstrap
def topic_delete(name: str, bootstrap: str) -> None:
    """Delete topic NAME and all its records.

    \b
    Example:
      strata topic delete events
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}")


# -- group -------------------------------------------------------------------------------


@click.group("group")
def group_group() -> None:
    """List, describe, seek and delete consumer groups."""


@group_group.command("list")
@_bootstrap
@_output
def group_list(bootstrap: str, output: str) -> None:
    """List consumer groups, their state and coordinating broker.

    \b
    Examples:
      strata group list
      strata group list --output json
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        groups = admin.list_groups()
    if output == "json":
        click.echo(json.dumps({"groups": [g.to_dict() for g in groups]}))
        return
    _table(["GROUP", "STATE", "COORDINATOR"], [[g.group, g.state, g.coordinator] for g in groups])


@group_group.command("describe")
@click.argument("group")
@_bootstrap
@_output
def group_describe(group: str, bootstrap: str, output: str) -> None:
    """Show GROUP's members, the partitions each holds, committed offsets and lag.

    LAG is the high watermark minus the committed offset: how many records the group
    has yet to process ('-' when the partition has no leader right now).

    \b
    Examples:
      strata group describe billing
      strata group describe billing --output json | jq '.offsets[].lag'
    """
    from strata.client import TopicPartition

    _start()
    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_group(group)
    if output == "json":
        click.echo(json.dumps(desc.to_dict()))
        return
    click.echo(f"group        {desc.group}")
    click.echo(f"state        {desc.state}")
    click.echo(f"coordinator  {desc.coordinator}")
    click.echo(f"assignor     {desc.assignor or '-'}")
    click.echo("")
    _table(["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"],
           [[m.member_id, m.client_id or "-", m.host or "-",
             ",".join(f"{tp.topic}-{tp.partition}" for tp in m.assignment) or "-"]
            for m in desc.members])
    click.echo("")
    owner = {tp: m for m in desc.members for tp in m.assignment}
    committed = {(o.topic, o.partition): o for o in desc.offsets}
    keys = sorted(set(committed) | {(tp.topic, tp.partition) for tp in owner})
    rows = []
    for t, p in keys:
        m = owner.get(TopicPartition(t, p))
        o = committed.get((t, p))
        rows.append([t, p, "-" if o is None else o.committed,
                     "-" if o is None else _off(o.high_watermark),
                     "-" if o is None or o.lag < 0 else o.lag,
                     "-" if m is None else m.member_id, "-" if m is None else (m.client_id or "-")])
    _table(["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG", "MEMBER", "CLIENT-ID"],
           rows)


def _seek_target(to_earliest: bool, to_latest: bool, to_offset: int | None,
                 to_datetime: str | None, shift_by: int | None, usage: str
                 ) -> tuple[str | int | datetime.datetime | None, int | None]:
    """The one target the seek flags name: ``(to, shift_by)``."""
    chosen = [x for x in (to_earliest, to_latest, to_offset is not None, to_datetime is not None,
                          shift_by is not None) if x]
    flags = "--to-earliest, --to-latest, --to-offset N, --to-datetime T"
    if shift_by is not None or "--shift-by" in usage:
        flags += ", --shift-by N"
    if len(chosen) != 1:
        _fail(f"give exactly one of {flags}", f"e.g. {usage}", code=2)
    if to_earliest:
        return "earliest", None
    if to_latest:
        return "latest", None
    if to_offset is not None:
        return to_offset, None
    if to_datetime is not None:
        return _parse_time(to_datetime, "--to-datetime"), None
    return None, shift_by


_seek_options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--topic", "-t", required=True, help="The topic whose offsets to move."),
    click.option("--to-earliest", is_flag=True, help="To the oldest record still kept."),
    click.option("--to-latest", is_flag=True, help="To the end (skip everything so far)."),
    click.option("--to-offset", type=click.IntRange(min=0), default=None,
                 help="To offset N (clamped to each partition's range)."),
    click.option("--to-datetime", default=None, metavar="TIME",
                 help="To the first record at or after TIME: ISO 8601, e.g. 2024-05-01T12:00:00Z "
                      "(no zone = local time), or milliseconds since the epoch."),
]


def _with_seek_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_seek_options):
        fn = option(fn)
    return fn


@group_group.command("seek")
@click.argument("group")
@_bootstrap
@_output
@_with_seek_options
@click.option("--shift-by", type=int, default=None,
              help="Move each committed offset by N (negative: back); clamped to the range.")
@click.option("--partition", "-p", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Only this partition (repeatable; default: every partition of the topic).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
def group_seek(group: str, bootstrap: str, output: str, topic: str, to_earliest: bool,
               to_latest: bool, to_offset: int | None, to_datetime: str | None,
               shift_by: int | None, partitions: tuple[int, ...], dry_run: bool) -> None:
    """Move GROUP's committed offsets of a topic, per partition (only while none of the
    group's consumers runs). Prints each partition's old and new offset.

    \b
    Examples:
      strata group seek billing --topic events --to-datetime 2024-05-01T12:00:00Z
      strata group seek billing --topic events --shift-by -100 --partition 0 --dry-run
      strata group seek billing --topic events --to-earliest
    """
    to, shift = _seek_target(to_earliest, to_latest, to_offset, to_datetime, shift_by,
                             "strata group seek G --topic T --to-earliest")
    _start()
    with _errors(), _admin(bootstrap) as admin:
        changes = admin.seek_group_offsets(group, topic, to, shift_by=shift,
                                           partitions=partitions or None, dry_run=dry_run)
    if output == "json":
        click.echo(json.dumps({"group": group, "dry_run": dry_run,
                               "partitions": [c.to_dict() for c in changes]}))
        return
    _table(["TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"],
           [[c.topic, c.partition, "-" if c.old is None else c.old,
             "-" if c.new is None else c.new] for c in changes])
    skipped = [c for c in changes if c.new is None]
    if skipped:
        click.echo(f"note: {len(skipped)} partition(s) had no committed offset to shift; "
                   "left alone", err=True)
    if dry_run:
        click.echo("dry run: nothing was changed", err=True)


@group_group.command("reset-offsets")
@click.argument("group")
@_bootstrap
@_output
@_with_seek_options
def group_reset_offsets(group: str, bootstrap: str, output: str, topic: str, to_earliest: bool,
                        to_latest: bool, to_offset: int | None, to_datetime: str | None) -> None:
    """Set GROUP's committed offsets for TOPIC (only while none of its consumers runs).

    'strata group seek' does the same per partition, shows old and new offsets, and has
    --shift-by and --dry-run.

    \b
    Examples:
      strata group reset-offsets billing --topic events --to-earliest
      strata group reset-offsets billing --topic events --to-offset 1000
      strata group reset-offsets billing --topic events --to-datetime 2024-05-01T12:00:00Z
    """
    to, _ = _seek_target(to_earliest, to_latest, to_offset, to_datetime, None,
                         "strata group reset-offsets G --topic T --to-earliest")
    assert to is not None
    _start()
    with _errors(), _admin(bootstrap) as admin:
        done = admin.reset_offsets(group, topic, to)
    if output == "json":
        click.echo(json.dumps({"group": group, "offsets": [
            {"topic": tp.topic, "partition": tp.partition, "offset": off}
            for tp, off in sorted(done.items())]}))
        return
    _table(["TOPIC", "PARTITION", "NEW-OFFSET"],
           [[tp.topic, tp.partition, off] for tp, off in sorted(done.items())])


@group_group.command("delete")
@click.argument("group")
@_bootstrap
def group_delete(group: str, bootstrap: str) -> None:
    """Delete GROUP and its committed offsets (only while none of its consumers runs).

    \b
    Example:
      strata group delete billing
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        admin.delete_group(group)
    click.echo(f"deleted group {group}")


# -- cluster -----------------------------------------------------------------------------


@click.group("cluster")
def cluster_group() -> None:
    """Inspect the cluster."""


@cluster_group.command("status")
@_bootstrap
@_output
def cluster_status(bootstrap: str, output: str) -> None:
    """Brokers (alive or not), the controller, and partition health.

    \b
    Examples:
      strata cluster status
      strata cluster status --output json
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_cluster()
    if output == "json":
        click.echo(json.dumps(desc.to_dict()))
        return
    click.echo(f"cluster     {desc.cluster_id}")
    click.echo(f"controller  {'-' if desc.controller is None else desc.controller}")
    click.echo(f"topics      {desc.topics}")
    click.echo(f"partitions  {desc.partitions} ({desc.under_replicated} under-replicated, "
               f"{desc.offline} offline)")
    click.echo("")
    _table(["ID", "ADDRESS", "ALIVE", "CONTROLLER", "VOTER"],
           [[b.id, f"{b.host}:{b.port}", "yes" if b.alive else "NO",
             "*" if b.id == desc.controller else "", "yes" if b.id in desc.voters else "no"]
            for b in desc.brokers])
