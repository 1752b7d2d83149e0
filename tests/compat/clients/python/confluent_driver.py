"""Scenario driver for confluent-kafka (PyPI wheel with a current librdkafka), see ../README.md."""

from __future__ import annotations

import sys
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from tests.compat.clients.python import cli
from tests.compat.clients.python.cli import Args, emit


def _raise_on_error(err: Any) -> None:
    """librdkafka retries transient errors itself; only a fatal one ends the scenario."""
    if err.fatal():
        raise KafkaException(err)


def produce(args: Args) -> None:
    producer = Producer({
        "bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True,
        "compression.type": args.codec, "linger.ms": 5, "error_cb": _raise_on_error,
    })  # fmt: skip
    acks: list[tuple[int, int, str, str]] = []
    failures: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))
        else:
            acks.append((msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))

    pacer = cli.Pacer(args.rate)
    for i in range(args.count):
        pacer.wait()
        producer.produce(args.topic, key=cli.key_of(i), value=cli.value_of(args.prefix, i),
                         on_delivery=delivered)  # fmt: skip
        producer.poll(0)
    while producer.flush(cli.POLL_MS / 1000) > 0:
        args.check_deadline()
    if failures:
        raise KafkaException(failures[0])
    # Delivery reports come per partition; print them in send order as the others do.
    for partition, offset, key, value in sorted(acks, key=lambda a: int(a[2].split("-")[1])):
        emit("ack", partition=partition, offset=offset, key=key, value=value)
    emit("done", count=len(acks))


def _consumer(args: Args, extra: dict[str, Any]) -> Consumer:
    return Consumer({"bootstrap.servers": args.bootstrap, "enable.auto.commit": False,
                     "error_cb": _raise_on_error, **extra})  # fmt: skip


def _partition_ids(client: Consumer | AdminClient, args: Args) -> list[int]:
    while True:
        topic = client.list_topics(args.topic, timeout=args.remaining_s()).topics.get(args.topic)
        if topic is not None and topic.error is None and topic.partitions:
            return sorted(topic.partitions)
        args.check_deadline()


def consume(args: Args) -> None:
    # A group id is required by librdkafka even for assign(); nothing is ever committed.
    consumer = _consumer(args, {"group.id": f"assign-{args.topic}"})
    try:
        tps = [TopicPartition(args.topic, p) for p in _partition_ids(consumer, args)]
        if args.start_timestamp is None:
            start = [TopicPartition(args.topic, tp.partition, -2) for tp in tps]  # OFFSET_BEGINNING
        else:
            wanted = [TopicPartition(args.topic, tp.partition, args.start_timestamp) for tp in tps]
            # An offset of -1 (no record at or after the time) is OFFSET_END for assign().
            start = consumer.offsets_for_times(wanted, timeout=args.remaining_s())
        consumer.assign(start)
        seen = 0
        while seen < args.count:
            args.check_deadline()
            msg = consumer.poll(cli.POLL_MS / 1000)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            cli.emit_record(msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1])
            seen += 1
        emit("done", count=seen)
    finally:
        consumer.close()


def group(args: Args) -> None:
    consumer = _consumer(args, {
        "group.id": args.group, "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": max(100, args.session_timeout_ms // 6),
    })  # fmt: skip
    # librdkafka's default assignors (range, roundrobin) are eager: on_assign gets the whole
    # new assignment (consumer.assignment() is not updated until the callback returns).
    consumer.subscribe([args.topic], on_assign=lambda c, parts: cli.emit_assigned(
        [tp.partition for tp in parts]))
    try:
        while not args.stop.is_set():
            args.check_deadline()
            msgs = consumer.consume(num_messages=500, timeout=cli.POLL_MS / 1000)
            done: dict[int, int] = {}
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                cli.emit_record(msg.partition(), msg.offset(), msg.key(), msg.value(),
                                msg.timestamp()[1])  # fmt: skip
                done[msg.partition()] = msg.offset() + 1
            if done:
                consumer.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in done.items()],
                                asynchronous=False)  # fmt: skip
                cli.emit_committed(done)
    finally:
        consumer.close()  # leaves the group


def _describe(client: AdminClient, args: Args, step: str, partitions: int, want: dict[str, str]) -> None:
    """Emit the partition count and the configs read back once they show what the scenario
    did: Kafka's brokers learn a change a moment after it is acknowledged, each on its own."""
    keys = sorted({*args.config, *args.alter})
    resource = ConfigResource(ConfigResource.Type.TOPIC, args.topic)
    while True:
        try:
            configs = client.describe_configs([resource])[resource].result(timeout=args.remaining_s())
        except KafkaException as exc:  # a broker that has not heard of the new topic yet
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            args.check_deadline()
            continue
        picked = {k: configs[k].value for k in keys if k in configs}
        count = len(_partition_ids(client, args))
        if count >= partitions and cli.shows(picked, want):
            break
        args.check_deadline()
    emit("step", step=step, partitions=count, configs=picked)


def admin(args: Args) -> None:
    client = AdminClient({"bootstrap.servers": args.bootstrap})
    topic = NewTopic(args.topic, num_partitions=args.partitions,
                     replication_factor=args.replication_factor, config=args.config)  # fmt: skip
    client.create_topics([topic])[args.topic].result(timeout=args.remaining_s())
    emit("step", step="create")
    _describe(client, args, "describe", args.partitions, args.config)
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
               for k, v in args.alter.items()]  # fmt: skip
    resource = ConfigResource(ConfigResource.Type.TOPIC, args.topic, incremental_configs=entries)
    client.incremental_alter_configs([resource])[resource].result(timeout=args.remaining_s())
    emit("step", step="alter")
    _describe(client, args, "describe-after-alter", args.partitions, args.altered)
    added = client.create_partitions([NewPartitions(args.topic, args.add_partitions)])
    added[args.topic].result(timeout=args.remaining_s())
    emit("step", step="add-partitions")
    _describe(client, args, "describe-after-add", args.add_partitions, args.altered)


def delete(args: Args) -> None:
    client = AdminClient({"bootstrap.servers": args.bootstrap})
    client.delete_topics([args.topic])[args.topic].result(timeout=args.remaining_s())
    while args.topic in client.list_topics(timeout=args.remaining_s()).topics:
        args.check_deadline()
    emit("step", step="delete")


if __name__ == "__main__":
    sys.exit(cli.main({"produce": produce, "consume": consume, "group": group, "admin": admin,
                       "delete": delete}, prog="confluent_driver"))  # fmt: skip
