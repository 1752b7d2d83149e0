"""Scenario driver for aiokafka (asyncio, non-flexible protocol versions), see ../README.md.

aiokafka's admin client hands back the raw responses, so this driver checks their error
codes itself, and its AlterConfigs is Kafka's non-incremental one: the request carries
every config the topic should keep, not only the changed one.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import UnknownTopicOrPartitionError, for_code

from tests.compat.clients.python import cli
from tests.compat.clients.python.cli import Args, emit


def _check(errors: list[dict[str, Any]]) -> None:
    for entry in errors:
        if entry.get("error_code", 0) != 0:
            raise for_code(entry["error_code"])(entry.get("error_message") or str(entry))


async def produce(args: Args) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True,
        compression_type=None if args.codec == "none" else args.codec,
    )  # fmt: skip
    await producer.start()
    try:
        pacer_interval = 1.0 / args.rate if args.rate > 0 else 0.0
        sent = []
        for i in range(args.count):
            if pacer_interval:
                await asyncio.sleep(pacer_interval)
            key, value = cli.key_of(i), cli.value_of(args.prefix, i)
            sent.append((key, value, await producer.send(args.topic, key=key.encode(),
                                                         value=value.encode())))  # fmt: skip
        for key, value, future in sent:
            meta = await asyncio.wait_for(future, args.remaining_s())
            emit("ack", partition=meta.partition, offset=meta.offset, key=key, value=value)
        emit("done", count=len(sent))
    finally:
        await producer.stop()


async def _partition_ids(args: Args) -> list[int]:
    """The topic's partitions, from the admin client: a consumer's ``partitions_for_topic``
    knows only the topics it already fetches."""
    client = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await client.start()
    try:
        while not (count := await _partition_count(client, args)):
            args.check_deadline()
        return list(range(count))
    finally:
        await client.close()


async def consume(args: Args) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=args.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(args.topic, p) for p in await _partition_ids(args)]
        consumer.assign(tps)
        if args.start_timestamp is None:
            await consumer.seek_to_beginning(*tps)
        else:
            found = await consumer.offsets_for_times({tp: args.start_timestamp for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                at = found.get(tp)
                consumer.seek(tp, at.offset if at is not None else ends[tp])
        seen = 0
        while seen < args.count:
            args.check_deadline()
            for records in (await consumer.getmany(timeout_ms=cli.POLL_MS)).values():
                for r in records:
                    cli.emit_record(r.partition, r.offset, r.key, r.value, r.timestamp)
                    seen += 1
        emit("done", count=seen)
    finally:
        await consumer.stop()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        cli.emit_assigned([tp.partition for tp in self.consumer.assignment()])


async def group(args: Args) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 6),
    )  # fmt: skip
    consumer.subscribe([args.topic], listener=_Listener(consumer))
    await consumer.start()
    try:
        while not args.stop.is_set():
            args.check_deadline()
            polled = await consumer.getmany(timeout_ms=cli.POLL_MS)
            done: dict[int, int] = {}
            for records in polled.values():
                for r in records:
                    cli.emit_record(r.partition, r.offset, r.key, r.value, r.timestamp)
                    done[r.partition] = r.offset + 1
            if done:
                await consumer.commit({TopicPartition(args.topic, p): o for p, o in done.items()})
                cli.emit_committed(done)
    finally:
        await consumer.stop()  # leaves the group


async def _partition_count(client: AIOKafkaAdminClient, args: Args) -> int:
    (topic,) = await client.describe_topics([args.topic])
    return 0 if topic["error_code"] else len(topic["partitions"])


async def _describe(client: AIOKafkaAdminClient, args: Args, step: str, partitions: int,
                    want: dict[str, str]) -> None:  # fmt: skip
    """Emit the partition count and the configs read back once they show what the scenario
    did: Kafka's brokers learn a change a moment after it is acknowledged, each on its own."""
    keys = sorted({*args.config, *args.alter})
    while True:
        (response,) = await client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)])
        (resource,) = response.to_object()["resources"]
        if resource["error_code"] == UnknownTopicOrPartitionError.errno:
            args.check_deadline()  # a broker that has not heard of the new topic yet
            continue
        _check([resource])
        configs = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        picked = {k: configs[k] for k in keys if k in configs}
        count = await _partition_count(client, args)
        if count >= partitions and cli.shows(picked, want):
            break
        args.check_deadline()
    emit("step", step=step, partitions=count, configs=picked)


async def admin(args: Args) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await client.start()
    try:
        created = await client.create_topics([NewTopic(args.topic, args.partitions,
                                                       args.replication_factor,
                                                       topic_configs=args.config)])  # fmt: skip
        _check(created.to_object()["topic_errors"])
        emit("step", step="create")
        await _describe(client, args, "describe", args.partitions, args.config)
        # AlterConfigs replaces the topic's whole config set: send the kept ones too.
        for response in await client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, args.topic, configs=args.altered)]
        ):
            _check(response.to_object()["resources"])
        emit("step", step="alter")
        await _describe(client, args, "describe-after-alter", args.partitions, args.altered)
        added = await client.create_partitions({args.topic: NewPartitions(args.add_partitions)})
        _check(added.to_object()["topic_errors"])
        emit("step", step="add-partitions")
        await _describe(client, args, "describe-after-add", args.add_partitions, args.altered)
    finally:
        await client.close()


async def delete(args: Args) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    await client.start()
    try:
        _check((await client.delete_topics([args.topic])).to_object()["topic_error_codes"])
        while args.topic in await client.list_topics():
            args.check_deadline()
        emit("step", step="delete")
    finally:
        await client.close()


def _sync(run: Any) -> Any:
    """A scenario coroutine as the plain function cli.main calls, bounded by --timeout-ms."""

    def call(args: Args) -> None:
        async def bounded() -> None:
            try:
                async with asyncio.timeout(args.remaining_s()):
                    await run(args)
            except TimeoutError as exc:
                raise cli.Timeout(f"{args.scenario} did not finish within {args.timeout_ms} ms") from exc

        asyncio.run(bounded())

    return call


if __name__ == "__main__":
    scenarios = {"produce": produce, "consume": consume, "group": group, "admin": admin,
                 "delete": delete}  # fmt: skip
    sys.exit(cli.main({name: _sync(run) for name, run in scenarios.items()}, prog="aiokafka_driver"))
